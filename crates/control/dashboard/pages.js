// The analytics pages: overview (the five widgets of one project, or the
// all-projects table), requests, sessions, users, properties, cache, rate
// limits, security and evaluations. Each reads the analytics API with the
// selected project and time range.

import { get, post } from "./api.js";
import { h, append, clear, section, table, empty, loading, failure, field, select, dialog, toast, int, usd, pct, ms, score, when, short, projectBadge } from "./dom.js";
import { lineChart, legend, bars, stackedBars, progress, PALETTE } from "./charts.js";
import { ctx, scope, rangeInterval, link, go, projectById } from "./state.js";

const A = (path) => `/orgs/${ctx.org}/analytics/${path}`;

// The selected range as [from, to] in epoch ms, the charts' time axis.
function range() {
  const q = scope();
  return [Number(q.from), Number(q.to)];
}

function heading(title, ...extra) {
  const p = ctx.project ? projectById(ctx.project) : null;
  return h("div", { class: "page-head" }, h("h1", {}, title), h("span", { class: "scope" }, p ? projectBadge(p) : "All Projects"), ...extra);
}

function card(title, value, sub, extra) {
  return h("section", { class: "card stat", "aria-label": title }, h("h2", {}, title), h("p", { class: "value" }, value), sub ? h("p", { class: "sub" }, sub) : null, extra || null);
}

function versus(c, format, lowerIsBetter) {
  if (c.difference === null || c.difference === undefined) return `Org average ${format(c.org_average)}`;
  const better = lowerIsBetter ? c.difference < 0 : c.difference > 0;
  const sign = c.difference > 0 ? "+" : "";
  const tone = Math.abs(c.difference) < 0.0005 ? "neutral" : better ? "good" : "bad";
  return h("span", {}, h("span", { class: tone }, `${sign}${(c.difference * 100).toFixed(1)}%`), ` vs org average ${format(c.org_average)}`);
}

const projectName = (id) => {
  if (!id || id === "00000000-0000-0000-0000-000000000000") return projectById(id) ? projectById(id).name : "Default";
  const p = projectById(id);
  return p ? p.name : short(id);
};

// Overview ---------------------------------------------------------------------

export async function overview(main) {
  append(main, heading("Overview"));
  if (ctx.project) return projectOverview(main);
  const tableEl = h("div");
  const seriesEl = h("div", { class: "card" });
  append(main, h("section", { "aria-label": "Cost over time" }, seriesEl), h("h2", {}, "Projects"), tableEl);
  await Promise.all([
    series(seriesEl),
    section(
      tableEl,
      () => get(A("projects"), scope()),
      (r) =>
        table(
          [
            { key: "name", label: "Project", value: (x) => projectName(x.project_id), cell: (x) => h("a", { href: link("overview", { project: x.project_id }) }, projectName(x.project_id)) },
            { key: "requests", label: "Requests", numeric: true, cell: (x) => int(x.requests) },
            { key: "tokens", label: "Tokens", numeric: true, cell: (x) => int(x.tokens) },
            { key: "cost_micro_usd", label: "Cost", numeric: true, cell: (x) => usd(x.cost_micro_usd) },
            { key: "cost_per_mtok", label: "$ / M tokens", numeric: true, cell: (x) => (x.cost_per_mtok === null ? "–" : `$${x.cost_per_mtok.toFixed(2)}`) },
            { key: "avg_latency_ms", label: "Avg latency", numeric: true, cell: (x) => ms(x.avg_latency_ms) },
            { key: "p95_latency_ms", label: "p95 latency", numeric: true, cell: (x) => ms(x.p95_latency_ms) },
            { key: "error_rate", label: "Errors", numeric: true, cell: (x) => pct(x.error_rate) },
            { key: "feedback_score", label: "Score", numeric: true, cell: (x) => score(x.feedback_score) },
            { key: "cost_share", label: "Share of cost", numeric: true, cell: (x) => pct(x.cost_share) },
          ],
          r.data,
          { sortable: true, caption: "Every project with requests in the range; click a header to sort.", emptyText: "No requests in this range yet.", sort: { key: "cost_micro_usd", desc: true } },
        ),
      "Loading the projects",
    ),
  ]);
}

async function series(el) {
  await section(
    el,
    () => get(A("timeseries"), scope({ interval: rangeInterval() })),
    (r) => {
      const pts = (f) => r.data.map((p) => [Date.parse(p.time), f(p)]);
      const domain = range();
      return h(
        "div",
        { class: "grid two" },
        h("div", {}, h("h2", {}, "Requests"), lineChart([{ name: "Requests", points: pts((p) => p.requests) }, { name: "Errors", points: pts((p) => p.errors), color: "#b91c1c" }], { label: "Requests and errors over time", format: (v) => int(Math.round(v)), domain }), legend([{ name: "Requests" }, { name: "Errors", color: "#b91c1c" }])),
        h("div", {}, h("h2", {}, "Cost"), lineChart([{ name: "Cost", points: pts((p) => p.cost_micro_usd) }], { label: "Cost over time", format: usd, domain })),
        h(
          "div",
          {},
          h("h2", {}, "Latency"),
          lineChart(
            [
              { name: "p50", points: pts((p) => p.p50_latency_ms) },
              { name: "p95", points: pts((p) => p.p95_latency_ms) },
              { name: "p99", points: pts((p) => p.p99_latency_ms) },
            ],
            { label: "Latency percentiles over time", format: ms, domain },
          ),
          legend([{ name: "p50" }, { name: "p95" }, { name: "p99" }]),
        ),
        h("div", {}, h("h2", {}, "Tokens"), lineChart([{ name: "Prompt", points: pts((p) => p.prompt_tokens) }, { name: "Completion", points: pts((p) => p.completion_tokens) }], { label: "Tokens over time", format: (v) => int(Math.round(v)), domain }), legend([{ name: "Prompt" }, { name: "Completion" }])),
      );
    },
    "Loading the time series",
  );
}

async function projectOverview(main) {
  const widgets = h("div", { class: "grid widgets" });
  const costEl = h("section", { class: "card", "aria-label": "Cost per million tokens" });
  const qualityEl = h("section", { class: "card", "aria-label": "Feedback score" });
  const latencyEl = h("section", { class: "card", "aria-label": "Latency" });
  const rankEl = h("section", { class: "card", "aria-label": "Rank among projects" });
  const envEl = h("section", { class: "card wide", "aria-label": "Cost by environment" });
  append(widgets, costEl, qualityEl, latencyEl, rankEl, envEl);
  const seriesEl = h("div", { class: "card" });
  append(main, widgets, seriesEl);
  const q = scope();
  const stat = (title, value, sub) => [h("h2", {}, title), h("p", { class: "value" }, value), h("p", { class: "sub" }, sub)];
  const money = (v) => (v === null || v === undefined ? "–" : `$${Number(v).toFixed(2)}`);
  await Promise.all([
    section(costEl, () => get(A("widgets/cost-per-mtok"), q), (c) => stat("Cost per million tokens", money(c.project), versus(c, money, true)), "Loading"),
    section(qualityEl, () => get(A("widgets/quality"), q), (c) => stat("Feedback score", score(c.project), versus(c, score, false)), "Loading"),
    section(latencyEl, () => get(A("widgets/latency"), q), (c) => stat("Average latency", ms(c.project), versus(c, ms, true)), "Loading"),
    rankWidget(rankEl, q),
    section(envEl, () => get(A("widgets/cost-by-environment"), q), costByEnvironment, "Loading"),
    series(seriesEl),
  ]);
}

async function rankWidget(el, q) {
  const metrics = [
    ["requests", "Requests"],
    ["cost", "Cost"],
    ["cost_per_mtok", "Cost per million tokens"],
    ["latency", "Latency"],
    ["quality", "Feedback score"],
  ];
  const metric = ctx.params.get("rank") || "requests";
  const choose = h(
    "select",
    { on: { change: (e) => go("overview", { rank: e.target.value }) } },
    metrics.map(([v, l]) => h("option", { value: v, selected: v === metric }, l)),
  );
  await section(
    el,
    () => get(A("widgets/rank"), { ...q, metric }),
    (r) => [
      h("h2", {}, "Rank among projects"),
      field("By", choose),
      h("p", { class: "value" }, r.rank ? `#${r.rank} of ${r.projects}` : "–"),
      h("p", { class: "sub" }, r.percentile === null ? "Nothing to rank in this range" : `${Math.round(r.percentile)}th percentile`),
    ],
    "Loading",
  );
}

function costByEnvironment(r) {
  const names = r.data.map((e) => e.environment || "none");
  const month = `${String(r.month).slice(0, 4)}-${String(r.month).slice(4)}`;
  return h(
    "div",
    {},
    h("h2", {}, `Cost by environment, ${month}`),
    r.data.length
      ? [
          stackedBars(
            [{ label: "This project", segments: r.data.map((e) => ({ name: e.environment || "none", value: e.cost_micro_usd })) }],
            { label: "This project's cost this month by environment", format: usd, names },
          ),
          legend(names.map((n) => ({ name: n }))),
        ]
      : h("p", {}, "No requests this month."),
    h(
      "ul",
      { class: "caps" },
      r.data
        .filter((e) => e.org_spend_micro_usd !== null && e.org_spend_micro_usd !== undefined)
        .map((e) =>
          h(
            "li",
            {},
            h("strong", {}, e.environment),
            e.cap_micro_usd
              ? progress(e.org_spend_micro_usd, e.cap_micro_usd, `The org's ${e.environment} spend ${usd(e.org_spend_micro_usd)} of its ${usd(e.cap_micro_usd)} cap (this project ${usd(e.cost_micro_usd)})`)
              : h("span", {}, ` the org's spend ${usd(e.org_spend_micro_usd)}, no cap`),
          ),
        ),
    ),
  );
}

// Requests ---------------------------------------------------------------------

// What a request was for (`kind`): the list shows calls to a model unless
// asked for the others.
const KINDS = [
  ["", "Calls to a model"],
  ["feedback", "Scores (POST /v1/feedback)"],
  ["models", "Model listings (GET /v1/models)"],
  ["other", "Other paths"],
  ["all", "Every request"],
];

const FILTERS = [
  ["kind", "Kind"],
  ["environment", "Environment"],
  ["model", "Model"],
  ["provider", "Provider"],
  ["status", "Status"],
  ["error_code", "Error code"],
  ["key", "API key id"],
  ["session", "Session"],
  ["user", "User"],
  ["property", "Property"],
  ["property_value", "Property value"],
];

function filterValues() {
  const f = {};
  for (const [k] of FILTERS) if (ctx.params.get(k)) f[k] = ctx.params.get(k);
  return f;
}

export async function requests(main) {
  const values = filterValues();
  const control = (k) => (k === "kind" ? select(k, KINDS, values[k] || "") : h("input", { name: k, value: values[k] || "", autocomplete: "off" }));
  const inputs = FILTERS.map(([k, label]) => [k, field(label, control(k))]);
  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Filters",
      on: {
        submit: (e) => {
          e.preventDefault();
          const extra = {};
          for (const [k] of FILTERS) extra[k] = form.elements[k].value.trim();
          go("requests", extra);
        },
      },
    },
    inputs.map(([, f]) => f),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply"), h("a", { class: "button secondary", href: link("requests", Object.fromEntries(FILTERS.map(([k]) => [k, null]))) }, "Clear")),
  );
  const list = h("div");
  append(main, heading("Requests"), h("details", { class: "card", open: Object.keys(values).length > 0 }, h("summary", {}, `Filters${Object.keys(values).length ? ` (${Object.keys(values).length})` : ""}`), form), list);
  await pagedTable(
    list,
    (cursor) => get(A("requests"), scope({ ...values, cursor, limit: 50 })),
    [
      { key: "time", label: "Time", cell: (r) => h("button", { type: "button", class: "link", on: { click: () => requestDetail(r.request_id) } }, when(r.ts_ms)) },
      { key: "project", label: "Project", cell: (r) => projectName(r.project_id) },
      { key: "environment", label: "Env", cell: (r) => r.environment || "–" },
      { key: "model", label: "Model", cell: (r) => r.model || (values.kind ? r.path : "–") },
      { key: "status", label: "Status", cell: (r) => h("span", { class: r.status >= 400 ? "status bad" : "status" }, String(r.status), r.error_code ? ` ${r.error_code}` : "") },
      { key: "tokens", label: "Tokens", numeric: true, cell: (r) => int(r.prompt_tokens + r.completion_tokens) },
      { key: "cost", label: "Cost", numeric: true, cell: (r) => usd(r.cost_micro_usd) },
      { key: "latency", label: "Latency", numeric: true, cell: (r) => ms(r.latency_ms) },
    ],
    "No requests match in this range.",
  );
  if (ctx.params.get("request")) requestDetail(ctx.params.get("request"));
}

// A table with "Load more" (cursor pages).
async function pagedTable(el, load, columns, emptyText) {
  const rows = [];
  let cursor = null;
  const more = h("button", { type: "button", class: "secondary", on: { click: () => next() } }, "Load more");
  const status = h("div");
  const holder = h("div");
  clear(el, holder, status);
  const next = async () => {
    clear(status, loading(rows.length ? "Loading more" : "Loading"));
    try {
      const page = await load(cursor);
      rows.push(...page.data);
      cursor = page.next_cursor;
      clear(holder, table(columns, rows, { emptyText }));
      clear(status, cursor ? more : rows.length ? h("p", { class: "sub" }, `${rows.length} shown, the end of the list.`) : null);
    } catch (err) {
      clear(status, failure(err, next));
    }
  };
  await next();
}

// A request's key as the key list shows it, "name (fpk_12345678…)"; its id
// when the key is not in the org any more.
function keyName(r) {
  const prefix = r.api_key_prefix ? `${r.api_key_prefix}…` : null;
  if (r.api_key_name) return prefix ? `${r.api_key_name} (${prefix})` : r.api_key_name;
  return prefix || r.api_key_id || "–";
}

async function requestDetail(id) {
  const body = h("div", { class: "detail" }, loading("Loading the request"));
  dialog("Request", body);
  try {
    const r = await get(A(`requests/${id}`));
    const rows = [
      ["Request id", r.request_id],
      ["Time", when(r.ts_ms)],
      ["Project", projectName(r.project_id)],
      ["Environment", r.environment || "–"],
      ["API key", keyName(r)],
      ["Path", r.path || "–"],
      ...(r.kind ? [["Kind", r.kind]] : []),
      ["Provider / model", `${r.provider || "–"} / ${r.model || "–"}`],
      ["Status", `${r.status}${r.error_code ? ` ${r.error_code}` : ""}`],
      ["Stream", r.stream ? "yes" : "no"],
      ["Prompt / cached / completion tokens", `${int(r.prompt_tokens)} / ${int(r.cached_tokens)} / ${int(r.completion_tokens)}`],
      ["Cost", usd(r.cost_micro_usd)],
      ["Latency (first byte)", `${ms(r.latency_ms)} (${ms(r.ttfb_ms)})`],
      ["Session / user", `${r.session_id || "–"} / ${r.user_id || "–"}`],
      ["Gateway", r.gateway_id || "–"],
    ];
    const props = Object.entries(r.properties || {});
    const fb = r.feedback;
    const scoreInput = h("input", { type: "number", name: "score", min: 0, max: 1, step: 0.05, required: true });
    const comment = h("textarea", { name: "comment", maxlength: 2000, rows: 2 });
    const scoreField = field("Score (0 to 1)", scoreInput);
    const commentField = field("Comment", comment);
    const error = h("p", { class: "form-error", role: "alert" });
    const form = h(
      "form",
      {
        class: "inline-form",
        on: {
          submit: async (e) => {
            e.preventDefault();
            try {
              await post(`/orgs/${ctx.org}/feedback`, { request_id: r.request_id, score: Number(scoreInput.value), comment: comment.value || undefined });
              toast("Score saved: it shows once ClickHouse has it.");
              error.textContent = "";
            } catch (err) {
              scoreField.setError(err.fieldMessage("score"));
              commentField.setError(err.fieldMessage("comment"));
              error.textContent = err.fields.length ? "" : err.message;
            }
          },
        },
      },
      scoreField,
      commentField,
      error,
      h("button", { type: "submit" }, "Score"),
    );
    clear(
      body,
      h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      props.length ? [h("h3", {}, "Properties"), h("dl", {}, props.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))] : null,
      h("h3", {}, "Feedback"),
      fb ? h("p", { class: "feedback" }, `Score ${score(fb.score)} (${fb.ratings} rating${fb.ratings === 1 ? "" : "s"}, last ${when(fb.scored_at)})`, fb.comment ? h("q", {}, fb.comment) : null) : h("p", {}, "No feedback yet."),
      r.project_id ? form : null,
    );
  } catch (err) {
    clear(body, failure(err));
  }
}

// Sessions, users, properties ---------------------------------------------------

function groupPage(title, path, filterName, what) {
  return async (main) => {
    const list = h("div");
    append(main, heading(title), list);
    await pagedTable(
      list,
      (cursor) => get(A(path), scope({ cursor, limit: 50 })),
      [
        { key: "id", label: what, cell: (g) => h("a", { href: link("requests", { [filterName]: g.id }) }, g.id) },
        { key: "requests", label: "Requests", numeric: true, cell: (g) => int(g.requests) },
        { key: "tokens", label: "Tokens", numeric: true, cell: (g) => int(g.tokens) },
        { key: "cost", label: "Cost", numeric: true, cell: (g) => usd(g.cost_micro_usd) },
        { key: "errors", label: "Errors", numeric: true, cell: (g) => int(g.errors) },
        { key: "latency", label: "Avg latency", numeric: true, cell: (g) => ms(g.avg_latency_ms) },
        { key: "first", label: "First seen", cell: (g) => when(g.first_seen) },
        { key: "last", label: "Last seen", cell: (g) => when(g.last_seen) },
      ],
      `No ${what.toLowerCase()}s in this range. Requests carry one in the floopy-${filterName}-id header.`,
    );
  };
}

export const sessions = groupPage("Sessions", "sessions", "session", "Session");
export const users = groupPage("Users", "users", "user", "User");

export async function properties(main) {
  const list = h("div");
  append(main, heading("Properties"), list);
  await pagedTable(
    list,
    (cursor) => get(A("properties"), scope({ cursor, limit: 50 })),
    [
      { key: "name", label: "Property", cell: (p) => p.name },
      { key: "value", label: "Value", cell: (p) => h("a", { href: link("requests", { property: p.name, property_value: p.value }) }, p.value) },
      { key: "requests", label: "Requests", numeric: true, cell: (p) => int(p.requests) },
      { key: "tokens", label: "Tokens", numeric: true, cell: (p) => int(p.tokens) },
      { key: "cost", label: "Cost", numeric: true, cell: (p) => usd(p.cost_micro_usd) },
    ],
    "No properties in this range. Requests carry them in floopy-property-<name> headers.",
  );
}

// Cache ---------------------------------------------------------------------------

export async function cache(main) {
  const el = h("div");
  append(main, heading("Cache"), el);
  await section(
    el,
    () => get(A("cache"), scope()),
    (r) =>
      h(
        "div",
        {},
        h(
          "div",
          { class: "grid widgets" },
          card("Cached share of prompt tokens", pct(r.cached_share), `${int(r.cached_tokens)} of ${int(r.prompt_tokens)} prompt tokens`),
          card("Saved by provider caching", r.saved_micro_usd === null ? "–" : usd(r.saved_micro_usd), "At the configured prices"),
        ),
        r.data.length ? bars(r.data.map((m) => ({ label: m.model, value: m.cached_share })), { label: "Cached share by model", format: pct }) : null,
        table(
          [
            { key: "model", label: "Model" },
            { key: "requests", label: "Requests", numeric: true, cell: (m) => int(m.requests) },
            { key: "cached_requests", label: "With cache hits", numeric: true, cell: (m) => int(m.cached_requests) },
            { key: "prompt_tokens", label: "Prompt tokens", numeric: true, cell: (m) => int(m.prompt_tokens) },
            { key: "cached_tokens", label: "Cached tokens", numeric: true, cell: (m) => int(m.cached_tokens) },
            { key: "cached_share", label: "Cached share", numeric: true, cell: (m) => pct(m.cached_share) },
            { key: "saved_micro_usd", label: "Saved", numeric: true, cell: (m) => (m.saved_micro_usd === null ? "no price" : usd(m.saved_micro_usd)) },
          ],
          r.data,
          { sortable: true, emptyText: "No requests in this range." },
        ),
      ),
    "Loading the cache report",
  );
}

// Rate limits and security -------------------------------------------------------

function bucketSeries(data, keyOf, valueOf) {
  const names = [...new Set(data.map(keyOf))];
  const times = [...new Set(data.map((p) => p.time))].sort();
  return names.map((n, i) => ({
    name: n,
    color: PALETTE[i % PALETTE.length],
    points: times.map((t) => [Date.parse(t), data.filter((p) => p.time === t && keyOf(p) === n).reduce((a, p) => a + valueOf(p), 0)]),
  }));
}

export async function rateLimits(main) {
  const el = h("div");
  append(main, heading("Rate limits"), el);
  await section(
    el,
    () => get(A("rate-limits"), scope({ interval: rangeInterval() })),
    (r) => {
      if (!r.data.length) return empty("No request was refused by a rate limit (429) or a cost cap (402) in this range.");
      const limited = bucketSeries(r.data, (p) => `${p.environment || "none"} 429`, (p) => p.rate_limited);
      const capped = bucketSeries(r.data, (p) => `${p.environment || "none"} 402`, (p) => p.cost_capped);
      const all = [...limited, ...capped].filter((s) => s.points.some((p) => p[1] > 0));
      all.forEach((s, i) => (s.color = PALETTE[i % PALETTE.length]));
      return h(
        "div",
        {},
        h("div", { class: "card" }, lineChart(all, { label: "Requests refused by rate limits and cost caps over time, by environment", format: (v) => int(Math.round(v)), domain: range() }), legend(all)),
        table(
          [
            { key: "time", label: "Time", cell: (p) => when(p.time) },
            { key: "environment", label: "Environment", cell: (p) => p.environment || "–" },
            { key: "rate_limited", label: "Rate limited (429)", numeric: true, cell: (p) => int(p.rate_limited) },
            { key: "cost_capped", label: "Over cost cap (402)", numeric: true, cell: (p) => int(p.cost_capped) },
          ],
          [...r.data].reverse(),
          { sortable: true },
        ),
      );
    },
    "Loading",
  );
}

export async function security(main) {
  const el = h("div");
  append(main, heading("Security"), el);
  await section(
    el,
    () => get(A("security"), scope({ interval: rangeInterval() })),
    (r) => {
      if (!r.data.length) return empty("No request was refused for its credentials (401) or its rights (403) in this range.");
      const lines = bucketSeries(r.data, (p) => `${p.status} ${p.error_code}`, (p) => p.requests);
      const byKey = new Map();
      for (const p of r.data) {
        const k = `${p.api_key_id}|${p.status}|${p.error_code}`;
        const e = byKey.get(k) || { api_key_id: p.api_key_id, status: p.status, error_code: p.error_code, requests: 0, last: p.time };
        e.requests += p.requests;
        if (p.time > e.last) e.last = p.time;
        byKey.set(k, e);
      }
      return h(
        "div",
        {},
        h("div", { class: "card" }, lineChart(lines, { label: "Refused requests over time by status and code", format: (v) => int(Math.round(v)), domain: range() }), legend(lines)),
        table(
          [
            { key: "api_key_id", label: "API key", cell: (e) => e.api_key_id || "no key" },
            { key: "status", label: "Status", numeric: true },
            { key: "error_code", label: "Code" },
            { key: "requests", label: "Requests", numeric: true, cell: (e) => int(e.requests) },
            { key: "last", label: "Last", cell: (e) => when(e.last) },
          ],
          [...byKey.values()],
          { sortable: true, sort: { key: "requests", desc: true } },
        ),
      );
    },
    "Loading",
  );
}

// Evaluations ----------------------------------------------------------------------

export async function evaluations(main) {
  const el = h("div");
  append(main, heading("Evaluations"), el);
  await section(
    el,
    () => get(A("evaluations"), scope()),
    (r) => {
      if (!r.ratings) return empty("No request was scored in this range. Applications score with POST /v1/feedback on the gateway; members score from a request's detail.");
      return h(
        "div",
        {},
        h("div", { class: "grid widgets" }, card("Average score", score(r.avg_score), `${int(r.ratings)} scored requests`)),
        h(
          "section",
          { class: "card" },
          h("h2", {}, "Scores"),
          bars(
            r.histogram.map((n, i) => ({ label: `${(i / 10).toFixed(1)}–${((i + 1) / 10).toFixed(1)}`, value: n })),
            { label: "Scored requests per tenth of the score", format: (v) => int(v) },
          ),
        ),
        h("h2", {}, "By project"),
        table(
          [
            { key: "project", label: "Project", value: (p) => projectName(p.project_id), cell: (p) => projectName(p.project_id) },
            { key: "avg_score", label: "Average score", numeric: true, cell: (p) => score(p.avg_score) },
            { key: "ratings", label: "Scored requests", numeric: true, cell: (p) => int(p.ratings) },
          ],
          r.by_project,
          { sortable: true },
        ),
        h("h2", {}, "Recent scores"),
        table(
          [
            { key: "scored_at", label: "Scored", cell: (s) => when(s.scored_at) },
            { key: "request_id", label: "Request", cell: (s) => h("a", { href: link("requests", { request: s.request_id }), title: s.request_id }, short(s.request_id)) },
            { key: "project", label: "Project", cell: (s) => projectName(s.project_id) },
            { key: "score", label: "Score", numeric: true, cell: (s) => score(s.score) },
            { key: "comment", label: "Comment", cell: (s) => s.comment || "" },
          ],
          r.recent,
        ),
      );
    },
    "Loading the scores",
  );
}
