// Charts drawn as SVG: a line chart over time, horizontal bars, stacked bars
// and progress against a cap. Each chart is an image with a text
// alternative (role="img", aria-label) and a title on every mark.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#4338ca", "#0891b2", "#d97706", "#be185d", "#15803d", "#7c3aed", "#b91c1c", "#475569"];

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

// series: [{name, color?, points: [[x (ms), y]]}]; format(y) labels the axis.
// domain: [from, to] of the time axis (default: the points' own span).
export function lineChart(series, { label, format = String, height = 180, domain } = {}) {
  const W = 640;
  const H = height;
  const pad = { l: 64, r: 12, t: 12, b: 26 };
  const xs = series.flatMap((se) => se.points.map((p) => p[0]));
  const ys = series.flatMap((se) => se.points.map((p) => p[1] ?? 0));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  if (!xs.length) {
    svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "No data in this range"));
    return svg;
  }
  const x0 = domain ? Math.min(domain[0], ...xs) : Math.min(...xs);
  const x1 = domain ? Math.max(domain[1], ...xs) : Math.max(...xs);
  const yMax = niceMax(Math.max(...ys));
  const X = (x) => pad.l + (x1 === x0 ? (W - pad.l - pad.r) / 2 : ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r));
  const Y = (y) => H - pad.b - (y / yMax) * (H - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    svg.append(s("line", { x1: pad.l, x2: W - pad.r, y1: Y(v), y2: Y(v), class: "grid" }));
    svg.append(s("text", { x: pad.l - 6, y: Y(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
  }
  const day = (t) => new Date(t).toISOString().slice(5, 10);
  const hour = (t) => new Date(t).toISOString().slice(11, 16);
  const span = x1 - x0;
  const tick = span > 2 * 86400e3 ? day : hour;
  for (let i = 0; i <= 4; i++) {
    const t = x0 + (span * i) / 4;
    svg.append(s("text", { x: X(t), y: H - 6, "text-anchor": "middle", class: "axis" }, tick(t)));
  }
  series.forEach((se, i) => {
    const color = se.color || PALETTE[i % PALETTE.length];
    const pts = se.points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (!pts.length) return;
    const d = pts.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of pts) {
      svg.append(
        s("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: color }, s("title", {}, `${se.name} ${new Date(p[0]).toISOString().slice(0, 16).replace("T", " ")}: ${format(p[1])}`)),
      );
    }
  });
  return svg;
}

// A legend for series or segments.
export function legend(items) {
  const ul = document.createElement("ul");
  ul.className = "legend";
  items.forEach((it, i) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = it.color || PALETTE[i % PALETTE.length];
    li.append(sw, document.createTextNode(it.name));
    ul.append(li);
  });
  return ul;
}

// Horizontal bars: [{label, value, color?}].
export function bars(items, { label, format = String } = {}) {
  const W = 640;
  const row = 26;
  const H = Math.max(row * items.length + 8, 40);
  const max = niceMax(Math.max(0, ...items.map((it) => it.value || 0)));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  items.forEach((it, i) => {
    const y = 4 + i * row;
    const w = ((it.value || 0) / max) * (W - 300);
    svg.append(s("text", { x: 150, y: y + 16, "text-anchor": "end", class: "axis" }, it.label));
    svg.append(
      s("rect", { x: 158, y: y + 4, width: Math.max(w, 1), height: row - 10, rx: 3, fill: it.color || PALETTE[0] }, s("title", {}, `${it.label}: ${format(it.value)}`)),
    );
    svg.append(s("text", { x: 164 + w, y: y + 16, class: "axis" }, format(it.value)));
  });
  return svg;
}

// One stacked bar per row: rows [{label, segments: [{name, value}]}], the
// segment colors shared by name.
export function stackedBars(rows, { label, format = String, names } = {}) {
  const W = 640;
  const row = 30;
  const H = Math.max(row * rows.length + 8, 40);
  const total = (r) => r.segments.reduce((a, sg) => a + (sg.value || 0), 0);
  const max = niceMax(Math.max(0, ...rows.map(total)));
  const color = (name) => PALETTE[Math.max(0, names.indexOf(name)) % PALETTE.length];
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  rows.forEach((r, i) => {
    const y = 4 + i * row;
    svg.append(s("text", { x: 120, y: y + 18, "text-anchor": "end", class: "axis" }, r.label));
    let x = 128;
    for (const sg of r.segments) {
      const w = ((sg.value || 0) / max) * (W - 260);
      if (w > 0) {
        svg.append(s("rect", { x, y: y + 4, width: w, height: row - 10, fill: color(sg.name) }, s("title", {}, `${r.label}, ${sg.name}: ${format(sg.value)}`)));
      }
      x += w;
    }
    svg.append(s("text", { x: x + 6, y: y + 18, class: "axis" }, format(total(r))));
  });
  return svg;
}

// Progress of `value` against `cap` (both numbers), as a labelled meter.
export function progress(value, cap, text) {
  const wrap = document.createElement("div");
  wrap.className = "progress";
  const share = cap > 0 ? value / cap : 0;
  wrap.setAttribute("role", "meter");
  wrap.setAttribute("aria-valuemin", "0");
  wrap.setAttribute("aria-valuemax", String(cap));
  wrap.setAttribute("aria-valuenow", String(Math.min(value, cap)));
  wrap.setAttribute("aria-label", text);
  const fill = document.createElement("div");
  fill.className = share >= 1 ? "fill over" : share >= 0.8 ? "fill warn" : "fill";
  fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  wrap.append(fill);
  const label = document.createElement("span");
  label.className = "progress-label";
  label.textContent = text;
  const box = document.createElement("div");
  box.append(wrap, label);
  return box;
}
