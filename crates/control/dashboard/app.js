// The dashboard's shell: signing in, the org and project switchers, the
// navigation, and the router. The view lives in the URL's fragment
// (#/page?org=…&project=…&range=…), so a view can be shared by its link.

import { api, get, post, setCsrf, onSignedOut, ApiError } from "./api.js";
import { h, append, clear, field, failure, loading } from "./dom.js";
import { ctx, RANGES, link, go, runsTheOrg, projectById, reloadProjects } from "./state.js";
import * as pages from "./pages.js";
import * as manage from "./manage.js";

const ANALYTICS = [
  ["overview", "Overview", pages.overview],
  ["requests", "Requests", pages.requests],
  ["sessions", "Sessions", pages.sessions],
  ["users", "Users", pages.users],
  ["properties", "Properties", pages.properties],
  ["cache", "Cache", pages.cache],
  ["rate-limits", "Rate limits", pages.rateLimits],
  ["security", "Security", pages.security],
  ["evaluations", "Evaluations", pages.evaluations],
];

// [route, label, page, shown to this caller?]
function manageRoutes() {
  return [
    ["projects", "Projects", manage.projects, true],
    ["keys", "API keys", manage.keys, true],
    ["members", "Members", manage.members, true],
    ["budgets", "Budgets & alerts", manage.budgets, true],
    ["settings", "Settings", manage.settings, runsTheOrg()],
  ];
}

// Links and navigation ------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  return { page: path || "overview", params: new URLSearchParams(query || "") };
}

// Signing in ----------------------------------------------------------------

function loginPage(root, message) {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "form-error", role: "alert" }, message || "");
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "card login",
      "aria-labelledby": "login-title",
      on: {
        submit: async (e) => {
          e.preventDefault();
          submit.disabled = true;
          error.textContent = "";
          try {
            const r = await api("POST", "/auth/login", { body: { email: email.value, password: password.value } });
            setCsrf(r.csrf_token);
            await start();
          } catch (err) {
            error.textContent =
              err.status === 401 ? "The email or the password is wrong." : err.status === 429 ? "Too many failed attempts: wait a few minutes and try again." : err.message;
            submit.disabled = false;
            password.focus();
          }
        },
      },
    },
    h("div", { class: "brand big" }, h("img", { src: "/assets/favicon.svg", alt: "" }), "floopy"),
    h("h1", { id: "login-title" }, "Sign in"),
    field("Email", email),
    field("Password", password),
    error,
    submit,
  );
  clear(root, h("main", { id: "main", class: "center" }, form));
  email.focus();
}

function acceptPage(root, token) {
  const name = h("input", { name: "name", autocomplete: "name" });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", minlength: 12 });
  const fields = { name: field("Your name", name), password: field("Choose a password", password, "12 characters or more.") };
  const error = h("p", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Join");
  const form = h(
    "form",
    {
      class: "card login",
      novalidate: true,
      on: {
        submit: async (e) => {
          e.preventDefault();
          submit.disabled = true;
          try {
            const body = ctx.me ? { token } : { token, name: name.value, password: password.value };
            const r = await post("/invitations/accept", body);
            location.hash = `#/overview?org=${r.org_id}`;
            if (ctx.me) await start();
            else loginPage(root, "You have joined. Sign in with your email and the password you chose.");
          } catch (err) {
            for (const [k, f] of Object.entries(fields)) f.setError(err.fieldMessage ? err.fieldMessage(k) : null);
            error.textContent = err.fields && err.fields.length ? "" : err.message;
            submit.disabled = false;
          }
        },
      },
    },
    h("h1", {}, "Accept the invitation"),
    ctx.me ? h("p", {}, `You are signed in as ${ctx.me.email}; the invitation will be added to this account.`) : [fields.name, fields.password],
    error,
    submit,
  );
  clear(root, h("main", { id: "main", class: "center" }, form));
}

// The shell ------------------------------------------------------------------

async function loadOrg(orgId) {
  const org = ctx.me.orgs.find((o) => o.id === orgId) || ctx.me.orgs[0];
  ctx.org = org ? org.id : null;
  ctx.orgRole = org ? org.role : null;
  if (ctx.org) await reloadProjects();
  else ctx.projects = [];
}

function header() {
  const orgs = ctx.me.orgs;
  const orgSwitch =
    orgs.length > 1
      ? field(
          "Organization",
          h(
            "select",
            { id: "org-switch", on: { change: (e) => (location.hash = `#/overview?org=${e.target.value}`) } },
            orgs.map((o) => h("option", { value: o.id, selected: o.id === ctx.org }, o.name)),
          ),
        )
      : h("span", { class: "org-name" }, orgs[0] ? orgs[0].name : "");
  const projectSwitch = field(
    "Project",
    h(
      "select",
      {
        id: "project-switch",
        on: { change: (e) => ((ctx.project = e.target.value), go(parseHash().page)) },
      },
      h("option", { value: "", selected: !ctx.project }, "All Projects"),
      ctx.projects.map((p) => h("option", { value: p.id, selected: p.id === ctx.project }, `${p.name}${p.archived ? " (archived)" : ""}`)),
    ),
  );
  const range = field(
    "Time range",
    h(
      "select",
      { id: "range-switch", on: { change: (e) => ((ctx.range = e.target.value), go(parseHash().page)) } },
      RANGES.map(([v, label]) => h("option", { value: v, selected: v === ctx.range }, label)),
    ),
  );
  return h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: link("overview") }, h("img", { src: "/assets/favicon.svg", alt: "" }), "floopy"),
    orgSwitch,
    projectSwitch,
    range,
    h(
      "div",
      { class: "user" },
      h("span", {}, ctx.me.name || ctx.me.email, h("small", {}, ` ${ctx.orgRole || ""}`)),
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          on: {
            click: async () => {
              try {
                await post("/auth/logout");
              } finally {
                ctx.me = null;
                setCsrf(null);
                location.hash = "#/";
                loginPage(document.getElementById("app"), "You are signed out.");
              }
            },
          },
        },
        "Sign out",
      ),
    ),
  );
}

function nav(current) {
  const item = ([route, label]) =>
    h("li", {}, h("a", { href: link(route), "aria-current": route === current ? "page" : null }, label));
  return h(
    "nav",
    { class: "side", "aria-label": "Pages" },
    h("p", { class: "nav-title" }, "Analytics"),
    h("ul", {}, ANALYTICS.map(item)),
    h("p", { class: "nav-title" }, "Manage"),
    h("ul", {}, manageRoutes().filter((r) => r[3]).map(item)),
  );
}

async function render() {
  const root = document.getElementById("app");
  const { page, params } = parseHash();
  if (page === "accept") return acceptPage(root, params.get("token") || "");
  if (!ctx.me) return;
  const orgId = params.get("org") || ctx.org || (ctx.me.orgs[0] && ctx.me.orgs[0].id);
  if (orgId !== ctx.org || !ctx.projects.length) {
    clear(root, loading("Loading the organization"));
    try {
      await loadOrg(orgId);
    } catch (err) {
      return clear(root, h("main", { id: "main" }, failure(err, render)));
    }
  }
  if (!ctx.org) {
    return clear(root, h("main", { id: "main", class: "center" }, h("div", { class: "card" }, h("h1", {}, "No organization"), h("p", {}, "You are not a member of any organization yet. Ask an owner for an invitation link."))));
  }
  // A project the list does not have may be one made since it was loaded.
  const wanted = params.get("project") || "";
  if (wanted && !projectById(wanted)) await reloadProjects().catch(() => {});
  ctx.project = projectById(wanted) ? wanted : "";
  ctx.range = RANGES.some((r) => r[0] === params.get("range")) ? params.get("range") : "7d";
  ctx.params = params;
  const routes = [...ANALYTICS.map(([r, l, f]) => [r, l, f, true]), ...manageRoutes()];
  const route = routes.find((r) => r[0] === page);
  const main = h("main", { id: "main", tabindex: "-1" });
  clear(root, header(), h("div", { class: "body" }, nav(route ? route[0] : ""), main));
  if (!route) {
    append(main, h("h1", {}, "Not found"), h("p", {}, "There is no such page. "), h("a", { href: link("overview") }, "Go to the overview"));
    return;
  }
  if (!route[3]) {
    append(main, h("h1", {}, route[1]), failure(new ApiError(403, { error: { message: "only the organization's owners and admins see this page" } })));
    return;
  }
  // A link to a project the caller does not see says so, rather than
  // showing every project as if that had been asked for.
  if (wanted && !ctx.project) {
    append(
      main,
      h("h1", {}, route[1]),
      failure(new ApiError(404, { error: { message: "this project does not exist, or you may not see it" } })),
      h("p", {}, h("a", { href: link(route[0]) }, `${route[1]} of all your projects`)),
    );
    return;
  }
  document.title = `${route[1]} · floopy`;
  try {
    await route[2](main);
  } catch (err) {
    append(main, failure(err, render));
  }
}

async function start() {
  const root = document.getElementById("app");
  try {
    ctx.me = await get("/me");
  } catch (err) {
    ctx.me = null;
    if (err.status === 401) {
      if (parseHash().page === "accept") return render();
      return loginPage(root);
    }
    return clear(root, h("main", { id: "main" }, failure(err, start)));
  }
  setCsrf(ctx.me.csrf_token);
  ctx.projects = [];
  ctx.org = null;
  await render();
}

onSignedOut(() => {
  if (ctx.me) {
    ctx.me = null;
    loginPage(document.getElementById("app"), "Your session has ended: sign in again.");
  }
});

window.addEventListener("hashchange", render);
start();
