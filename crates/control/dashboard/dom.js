// Building the page: elements from data (text is always set as text, never
// parsed as HTML), number formats, tables, forms, dialogs, and the loading,
// empty and error states every page shows.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [event, fn] of Object.entries(v)) el.addEventListener(event, fn);
    } else if (k === "class") {
      el.className = v;
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (k === "value") {
      el.value = v;
    } else if (k === "checked" || k === "disabled" || k === "selected") {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  return append(el, ...children);
}

// Adds `children` to `el` and returns it: nodes as they are, arrays
// flattened, null, undefined and false left out (so `cond ? node : null`
// and lists of nodes work), anything else as text. Pages add to an element
// only through this, `h` and `clear`, never with the DOM's own
// `Element.append`, which writes an array or a null as text
// ("[object HTMLHeadingElement],[object HTMLDivElement]", "null"); the
// browser test checks the pages' scripts for it.
export function append(el, ...children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, ...c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, ...children);
}

// Formats ------------------------------------------------------------------

const intFormat = new Intl.NumberFormat("en-US");

export function int(n) {
  return n === null || n === undefined ? "–" : intFormat.format(n);
}

// Micro-USD (integers, exact) as dollars.
export function usd(micro) {
  if (micro === null || micro === undefined) return "–";
  const dollars = Number(micro) / 1e6;
  const digits = Math.abs(dollars) >= 100 ? 2 : Math.abs(dollars) >= 1 ? 4 : 6;
  return `$${dollars.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits })}`;
}

// A decimal USD string from the API, exact to the micro-dollar
// ("5.000000"), as `usd` shows it ("$5.00"): every amount the dashboard
// shows goes through `usd`.
export function usdText(text) {
  if (text === null || text === undefined || text === "") return "–";
  return usd(Math.round(Number(text) * 1e6));
}

// The same string as the value of an amount's input: what a person types,
// with no dollar sign or separators, and exact, so saving the form again
// keeps the amount ("5.000000" is 5.00, "0.001500" is 0.0015,
// "123.456789" stays whole). Empty for none.
export function usdInput(text) {
  if (text === null || text === undefined || text === "") return "";
  const m = /^(-?\d+)(?:\.(\d*))?$/.exec(String(text).trim());
  if (!m) return String(text);
  const frac = (m[2] || "").replace(/0+$/, "").padEnd(2, "0");
  return `${m[1]}.${frac}`;
}

export function pct(x, digits = 1) {
  return x === null || x === undefined || Number.isNaN(x) ? "–" : `${(x * 100).toFixed(digits)}%`;
}

export function ms(n) {
  if (n === null || n === undefined) return "–";
  return n >= 10000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
}

export function score(x) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(2);
}

export function when(value) {
  if (value === null || value === undefined || value === "") return "–";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// The part of an id that tells it from its neighbours, for a table cell
// (put the whole id in the cell's title). A UUID v7 starts with its time,
// so ids made in the same minute share their first characters, and a
// request id ends with a tag of its org, so an org's requests share their
// last eight: the eight hex digits between (`89ab-cdef`, the counter and
// random bits after the time) differ from one id to the next.
export function short(id) {
  if (!id) return "–";
  const s = String(id);
  if (UUID.test(s)) return `…${s.slice(19, 28)}…`;
  return s.length > 12 ? `…${s.slice(-8)}` : s;
}

// States ---------------------------------------------------------------------

export function loading(what = "Loading") {
  return h("p", { class: "state loading", role: "status" }, `${what}…`);
}

export function empty(message, action) {
  return h("div", { class: "state empty" }, h("p", {}, message), action || null);
}

export function failure(err, retry) {
  const status = err && err.status;
  const text =
    status === 503 && err.code === "analytics_unavailable"
      ? "Analytics are not available: floopy-control has no ClickHouse configured, or it cannot be reached."
      : status === 403
        ? `Your role does not allow this: ${err.message}`
        : status === 404
          ? `Not found: ${err.message}`
          : `Something went wrong: ${err ? err.message : "unknown error"}`;
  return h(
    "div",
    { class: "state error", role: "alert" },
    h("p", {}, text),
    retry ? h("button", { type: "button", class: "secondary", on: { click: retry } }, "Try again") : null,
  );
}

// Runs `load` into `el`: a loading state first, then what `render` makes of
// the result, or the error with a retry button. When runs overlap (a
// reload while loading), only the latest one fills `el`.
export async function section(el, load, render, what) {
  const run = async () => {
    const token = (el.sectionRun = (el.sectionRun || 0) + 1);
    if (!el.childElementCount) clear(el, loading(what));
    try {
      const data = await load();
      if (token === el.sectionRun) clear(el, render(data));
    } catch (err) {
      if (token === el.sectionRun) clear(el, failure(err, run));
    }
  };
  await run();
}

// Tables ---------------------------------------------------------------------

// columns: [{key, label, value(row) -> sortable value, cell(row) -> node/text,
// numeric}]; sortable: whether headers sort (by clicking, or Enter).
export function table(columns, rows, { sortable = false, caption, emptyText = "Nothing here yet.", sort } = {}) {
  if (!rows.length) return empty(emptyText);
  let by = sort ? sort.key : null;
  let desc = sort ? sort.desc : true;
  const tbody = h("tbody");
  const draw = () => {
    let list = rows;
    if (by) {
      const col = columns.find((c) => c.key === by);
      const val = col.value || ((r) => r[col.key]);
      list = [...rows].sort((a, b) => {
        const x = val(a);
        const y = val(b);
        const cmp = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
        return desc ? -cmp : cmp;
      });
    }
    clear(
      tbody,
      list.map((r) =>
        h(
          "tr",
          {},
          columns.map((c) => h("td", { class: c.numeric ? "num" : null }, c.cell ? c.cell(r) : r[c.key] ?? "–")),
        ),
      ),
    );
    for (const th of thead.querySelectorAll("th")) {
      const active = th.dataset.key === by;
      th.setAttribute("aria-sort", active ? (desc ? "descending" : "ascending") : "none");
    }
  };
  const thead = h(
    "thead",
    {},
    h(
      "tr",
      {},
      columns.map((c) => {
        if (!sortable || c.sortable === false) return h("th", { scope: "col", class: c.numeric ? "num" : null }, c.label);
        return h(
          "th",
          { scope: "col", class: c.numeric ? "num" : null, dataset: { key: c.key } },
          h(
            "button",
            {
              type: "button",
              class: "sort",
              on: {
                click: () => {
                  desc = by === c.key ? !desc : true;
                  by = c.key;
                  draw();
                },
              },
            },
            c.label,
          ),
        );
      }),
    ),
  );
  draw();
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", {}, caption) : null, thead, tbody));
}

// Forms ----------------------------------------------------------------------

let fieldCounter = 0;

// A labelled control with a place for its error (aria-describedby).
export function field(label, control, hint) {
  const id = control.id || `f${++fieldCounter}`;
  control.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, role: "alert" });
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  control.setAttribute("aria-describedby", [hintEl ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(" "));
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl, error);
  wrap.setError = (message) => {
    error.textContent = message || "";
    control.setAttribute("aria-invalid", message ? "true" : "false");
    wrap.classList.toggle("invalid", Boolean(message));
  };
  return wrap;
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([v, label]) => h("option", { value: v, selected: String(v) === String(value ?? "") }, label)),
  );
}

// Shows an API error on a form: each bad field under its control, anything
// else in the form's own message.
export function showErrors(form, fields, err) {
  let shown = false;
  for (const [name, f] of Object.entries(fields)) {
    const m = err.fieldMessage ? err.fieldMessage(name) : null;
    f.setError(m);
    shown = shown || Boolean(m);
  }
  const general = form.querySelector(".form-error");
  if (general) general.textContent = shown ? "" : err.message;
}

// A form of labelled `fields` (from `field`) with one submit button:
// `action(form)` runs on submit, the button disabled meanwhile; an API
// error shows under its fields, or in the form's own message.
export function apiForm(fields, submitLabel, action) {
  const submit = h("button", { type: "submit" }, submitLabel);
  const form = h(
    "form",
    {
      class: "stack",
      on: {
        submit: async (e) => {
          e.preventDefault();
          submit.disabled = true;
          try {
            await action(form);
          } catch (err) {
            showErrors(form, fields, err);
          } finally {
            submit.disabled = false;
          }
        },
      },
    },
    Object.values(fields),
    h("p", { class: "form-error", role: "alert" }),
    h("div", { class: "actions" }, submit),
  );
  return form;
}

// Dialogs --------------------------------------------------------------------

// A modal dialog (Escape closes it; focus goes to its first control).
export function dialog(title, body, { onClose } = {}) {
  const heading = h("h2", { id: `d${++fieldCounter}` }, title);
  const d = h(
    "dialog",
    { "aria-labelledby": heading.id },
    h(
      "div",
      { class: "dialog-head" },
      heading,
      h("button", { type: "button", class: "icon", "aria-label": "Close", on: { click: () => d.close() } }, "×"),
    ),
    body,
  );
  d.addEventListener("close", () => {
    d.remove();
    if (onClose) onClose();
  });
  document.body.append(d);
  d.showModal();
  const first = d.querySelector("input, select, textarea, button:not(.icon)");
  if (first) first.focus();
  return d;
}

export function confirmDialog(title, message, confirmLabel, action) {
  return new Promise((resolve) => {
    const error = h("p", { class: "form-error", role: "alert" });
    const ok = h("button", { type: "submit", class: "danger" }, confirmLabel);
    const form = h(
      "form",
      {
        method: "dialog",
        on: {
          submit: async (e) => {
            e.preventDefault();
            ok.disabled = true;
            try {
              await action();
              d.close();
              resolve(true);
            } catch (err) {
              error.textContent = err.message;
              ok.disabled = false;
            }
          },
        },
      },
      h("p", {}, message),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", on: { click: () => d.close() } }, "Cancel"),
        ok,
      ),
    );
    const d = dialog(title, form, { onClose: () => resolve(false) });
  });
}

// How many messages `toast` keeps on the screen at once.
const TOASTS_SHOWN = 4;

// A short message at the bottom of the page, for four seconds. Messages
// shown in a row stack, the newest at the bottom, so each stays readable.
export function toast(message) {
  let stack = document.getElementById("toasts");
  if (!stack) {
    stack = h("div", { id: "toasts", class: "toasts" });
    document.body.append(stack);
  }
  const t = h("div", { class: "toast", role: "status" }, message);
  stack.append(t);
  while (stack.childElementCount > TOASTS_SHOWN) stack.firstElementChild.remove();
  setTimeout(() => t.remove(), 4000);
}

// Project icons the dashboard draws (a project's `icon` is a short
// identifier; one it does not know is shown as text).
export const ICONS = {
  bot: "M5 6h6a2 2 0 0 1 2 2v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2zM8 3v3M6 9.5h.01M10 9.5h.01",
  chat: "M3 4h10v7H7l-3 2.5V11H3z",
  search: "M7 3a4 4 0 1 1 0 8a4 4 0 0 1 0-8zM10 10l3.5 3.5",
  code: "M6 4L2 8l4 4M10 4l4 4-4 4",
  doc: "M4 2h5l3 3v9H4zM9 2v3h3M6 8h4M6 11h4",
  chart: "M3 13V3M3 13h10M6 11V8M9 11V5M12 11V7",
  shield: "M8 2l5 2v4c0 3-2 5-5 6c-3-1-5-3-5-6V4z",
  spark: "M8 2v4M8 10v4M2 8h4M10 8h4M4 4l2 2M10 10l2 2M12 4l-2 2M6 10l-2 2",
};

export function icon(name) {
  if (!name) return null;
  const d = ICONS[name];
  if (!d) return h("span", { class: "icon-text" }, name);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}

// A badge with the project's color and icon.
export function projectBadge(project) {
  if (!project) return h("span", { class: "badge muted" }, "Organization");
  const b = h("span", { class: "badge project" }, icon(project.icon), project.name);
  if (project.color) b.style.setProperty("--c", project.color);
  return b;
}
