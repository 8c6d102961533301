// The management pages: projects, API keys, members and invitations,
// budgets and alerts, and Settings (the org and its environment limits).
// Each offers only what the caller's role allows; the API refuses the rest
// all the same.

import { get, post, patch, put, del, all } from "./api.js";
import { h, append, clear, section, table, empty, field, select, showErrors, apiForm, dialog, confirmDialog, toast, usdText, usdInput, pct, when, short, projectBadge, ICONS } from "./dom.js";
import { progress } from "./charts.js";
import { ctx, link, runsTheOrg, canCreateProjects, adminProjects, projectById, reloadProjects } from "./state.js";

const O = (path = "") => `/orgs/${ctx.org}${path}`;
const ENVIRONMENTS = ["development", "staging", "production", "other"];
const SLUG = /^[a-z0-9]+(-[a-z0-9]+)*$/;
const COLOR = /^#[0-9a-fA-F]{6}$/;

function pageHead(title, ...actions) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "actions" }, ...actions));
}

// A part of a page under its own heading, a landmark named by it.
let regionCounter = 0;
function region(title, ...children) {
  const heading = h("h2", { id: `r${++regionCounter}` }, title);
  return h("section", { "aria-labelledby": heading.id }, heading, ...children);
}

function errorLine() {
  return h("p", { class: "form-error", role: "alert" });
}

// Projects -------------------------------------------------------------------

// The product's rules for a project's fields, as the user types. Returns
// {field: message} for what is wrong now.
export function projectProblems(v) {
  const p = {};
  const n = [...v.name].length;
  if (n < 1) p.name = "A name is required.";
  else if (n > 100) p.name = `At most 100 characters (${n}).`;
  if (!v.slug) p.slug = "A slug is required.";
  else if ([...v.slug].length > 63) p.slug = `At most 63 characters (${[...v.slug].length}).`;
  else if (!SLUG.test(v.slug)) p.slug = "Lowercase letters and digits in groups joined by single hyphens, e.g. support-bot.";
  if ([...v.description].length > 500) p.description = `At most 500 characters (${[...v.description].length}).`;
  if (v.color && !COLOR.test(v.color)) p.color = "A color like #4338ca.";
  if ([...v.icon].length > 32) p.icon = "At most 32 characters.";
  return p;
}

function slugOf(name) {
  return name
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
}

function projectForm(existing, onSaved) {
  const inputs = {
    name: h("input", { name: "name", value: existing ? existing.name : "", maxlength: 200, autocomplete: "off" }),
    slug: h("input", { name: "slug", value: existing ? existing.slug : "", autocomplete: "off", spellcheck: "false" }),
    description: h("textarea", { name: "description", rows: 2 }, existing ? existing.description || "" : ""),
    color: h("input", { name: "color", value: existing ? existing.color || "#4338ca" : "#4338ca", placeholder: "#4338ca" }),
    icon: select(
      "icon",
      [["", "None"], ...[...new Set([...Object.keys(ICONS), ...(existing && existing.icon ? [existing.icon] : [])])].map((n) => [n, n])],
      existing ? existing.icon || "" : "",
    ),
  };
  const fields = {
    name: field("Name", inputs.name, "1 to 100 characters."),
    slug: field("Slug", inputs.slug, "Lowercase letters, digits and single hyphens; at most 63; unique in the organization."),
    description: field("Description", inputs.description, "Optional, at most 500 characters."),
    color: field("Color", inputs.color, "#rrggbb"),
    icon: field("Icon", inputs.icon, "Optional: shown beside the name."),
  };
  let slugTouched = Boolean(existing);
  const values = () => Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()]));
  const error = errorLine();
  const submit = h("button", { type: "submit" }, existing ? "Save" : "Create project");
  const check = () => {
    const problems = projectProblems(values());
    for (const [k, f] of Object.entries(fields)) f.setError(problems[k]);
    submit.disabled = Object.keys(problems).length > 0;
    return problems;
  };
  inputs.name.addEventListener("input", () => {
    if (!slugTouched) inputs.slug.value = slugOf(inputs.name.value);
    check();
  });
  inputs.slug.addEventListener("input", () => {
    slugTouched = true;
    check();
  });
  for (const k of ["description", "color", "icon"]) inputs[k].addEventListener("input", check);
  inputs.icon.addEventListener("change", check);
  const form = h(
    "form",
    {
      class: "stack",
      novalidate: true,
      on: {
        submit: async (e) => {
          e.preventDefault();
          if (Object.keys(check()).length) return;
          const v = values();
          const body = { name: v.name, slug: v.slug, description: v.description || null, color: v.color || null, icon: v.icon || null };
          submit.disabled = true;
          try {
            const saved = existing ? await patch(O(`/projects/${existing.id}`), body) : await post(O("/projects"), body);
            await onSaved(saved);
          } catch (err) {
            showErrors(form, fields, err);
            submit.disabled = false;
          }
        },
      },
    },
    Object.values(fields),
    error,
    h("div", { class: "actions" }, submit),
  );
  error.classList.add("form-error");
  if (existing) check();
  else submit.disabled = true;
  return form;
}

export async function projects(main) {
  const listEl = h("div");
  let org = null;
  try {
    org = await get(O());
  } catch {
    org = null;
  }
  const used = ctx.projects.length;
  const max = org ? org.max_projects : null;
  const atLimit = runsTheOrg() && max !== null && used >= max;
  const newButton = canCreateProjects()
    ? h(
        "button",
        {
          type: "button",
          disabled: atLimit,
          title: atLimit ? `The ${org.plan} plan allows ${max} projects` : null,
          on: {
            click: () => {
              const d = dialog(
                "New project",
                projectForm(null, async (saved) => {
                  d.close();
                  await reloadProjects();
                  toast(`Project ${saved.name} created.`);
                  location.hash = link("projects", { created: saved.id });
                }),
              );
            },
          },
        },
        "New project",
      )
    : null;
  append(main, 
    pageHead("Projects", newButton),
    org && runsTheOrg() ? h("p", { class: "quota" + (atLimit ? " bad" : "") }, max === null ? `${used} projects (the ${org.plan} plan has no limit).` : `${used} of ${max} projects on the ${org.plan} plan${atLimit ? ": the limit is reached; archive does not free a place, deleting does." : "."}`) : null,
    listEl,
  );
  const rows = ctx.projects;
  clear(
    listEl,
    table(
      [
        { key: "name", label: "Project", value: (p) => p.name, cell: (p) => h("span", {}, projectBadge(p), p.archived ? h("span", { class: "badge muted" }, "archived") : null) },
        { key: "slug", label: "Slug", cell: (p) => h("code", {}, p.slug) },
        { key: "description", label: "Description", cell: (p) => p.description || "" },
        { key: "role", label: "Your role", cell: (p) => p.role || "–" },
        { key: "created_at", label: "Created", cell: (p) => when(p.created_at) },
        { key: "actions", label: "Actions", sortable: false, cell: projectActions },
      ],
      rows,
      { sortable: true, emptyText: "No project yet." },
    ),
  );
}

function projectActions(p) {
  const manages = p.role === "owner" || p.role === "admin";
  const deletes = p.role === "owner" || runsTheOrg();
  const after = async (message) => {
    await reloadProjects();
    toast(message);
    location.hash = link("projects", { t: Date.now() });
  };
  const buttons = [h("a", { href: link("overview", { project: p.id }), class: "button secondary small" }, "View")];
  if (manages) {
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "secondary small",
          on: {
            click: () => {
              const d = dialog(
                `Edit ${p.name}`,
                projectForm(p, async () => {
                  d.close();
                  await after("Project saved.");
                }),
              );
            },
          },
        },
        "Edit",
      ),
    );
    if (!p.is_default) {
      buttons.push(
        h(
          "button",
          {
            type: "button",
            class: "secondary small",
            on: {
              click: async () => {
                try {
                  await post(O(`/projects/${p.id}/${p.archived ? "unarchive" : "archive"}`));
                  await after(p.archived ? "Project restored." : "Project archived: its keys are refused until it is restored.");
                } catch (err) {
                  toast(err.message);
                }
              },
            },
          },
          p.archived ? "Unarchive" : "Archive",
        ),
      );
    }
  }
  if (deletes && !p.is_default) {
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "danger small",
          on: {
            click: async () => {
              const ok = await confirmDialog(
                `Delete ${p.name}?`,
                `Deleting revokes every key locked to ${p.name} and clears it as a key's default project. Its request logs stay. This cannot be undone.`,
                "Delete project",
                () => del(O(`/projects/${p.id}`)),
              );
              if (ok) await after("Project deleted.");
            },
          },
        },
        "Delete",
      ),
    );
  }
  return h("div", { class: "row-actions" }, buttons);
}

// API keys --------------------------------------------------------------------

function keyForm(onCreated) {
  const lockable = runsTheOrg() ? ctx.projects.filter((p) => !p.archived) : adminProjects().filter((p) => !p.archived);
  const inputs = {
    name: h("input", { name: "name", autocomplete: "off" }),
    environment: select("environment", ENVIRONMENTS.map((e) => [e, e]), "production"),
    project_id: select("project_id", [...(runsTheOrg() ? [["", "No lock (any project)"]] : []), ...lockable.map((p) => [p.id, p.name])], ctx.project || ""),
    default_project_id: select("default_project_id", [["", "None"], ...ctx.projects.filter((p) => !p.archived).map((p) => [p.id, p.name])], ""),
  };
  const fields = {
    name: field("Name", inputs.name, "1 to 200 characters, e.g. the application using it."),
    environment: field("Environment", inputs.environment, "Its rate limit and monthly cap apply."),
    project_id: field("Lock to project", inputs.project_id, "Every request of a locked key goes to this project."),
    default_project_id: field("Default project", inputs.default_project_id, "For requests that name no project."),
  };
  return apiForm(fields, "Create key", async () => {
    const created = await post(O("/keys"), {
      name: inputs.name.value.trim(),
      environment: inputs.environment.value,
      project_id: inputs.project_id.value || null,
      default_project_id: inputs.default_project_id.value || null,
    });
    onCreated(created);
  });
}

// A secret shown once, with a copy button.
function secretBox(label, secret, note) {
  const status = h("span", { class: "sub", role: "status" });
  const input = h("input", { readonly: true, value: secret, class: "secret", "aria-label": label, id: "secret-value" });
  return h(
    "div",
    { class: "secret-box" },
    h("p", { class: "warn" }, note),
    h(
      "div",
      { class: "copy-row" },
      input,
      h(
        "button",
        {
          type: "button",
          on: {
            click: async () => {
              try {
                await navigator.clipboard.writeText(secret);
                status.textContent = "Copied.";
              } catch {
                input.select();
                status.textContent = "Selected: press Ctrl+C to copy.";
              }
            },
          },
        },
        "Copy",
      ),
    ),
    status,
  );
}

export async function keys(main) {
  const may = runsTheOrg() || adminProjects().length > 0;
  const listEl = h("div");
  const create = may
    ? h(
        "button",
        {
          type: "button",
          on: {
            click: () => {
              const d = dialog(
                "New API key",
                keyForm((created) => {
                  clear(
                    d.querySelector(".stack").parentElement,
                    h(
                      "div",
                      { class: "dialog-head" },
                      h("h2", {}, `Key ${created.name} created`),
                    ),
                    secretBox("The new key's secret", created.key, "This is the only time the secret is shown. Copy it now and store it where your application reads it."),
                    h("div", { class: "actions" }, h("button", { type: "button", on: { click: () => d.close() } }, "Done")),
                  );
                  load();
                }),
              );
            },
          },
        },
        "New API key",
      )
    : null;
  append(main, pageHead("API keys", create), listEl);
  let budgets = [];
  const load = () =>
    section(
      listEl,
      async () => {
        const [list, b] = await Promise.all([all(O("/keys")), all(O("/budgets")).catch(() => [])]);
        budgets = b;
        return ctx.project ? list.filter((k) => k.project_id === ctx.project || k.default_project_id === ctx.project) : list;
      },
      (list) =>
        table(
          [
            { key: "name", label: "Name" },
            { key: "prefix", label: "Key", cell: (k) => h("code", {}, `${k.prefix || ""}…`) },
            { key: "environment", label: "Environment", cell: (k) => k.environment || "–" },
            { key: "project_id", label: "Locked to", cell: (k) => (k.project_id ? projectBadge(projectById(k.project_id) || { name: short(k.project_id) }) : "–") },
            { key: "default_project_id", label: "Default project", cell: (k) => (k.default_project_id ? (projectById(k.default_project_id) || { name: short(k.default_project_id) }).name : "–") },
            { key: "created_at", label: "Created", cell: (k) => when(k.created_at) },
            { key: "state", label: "State", value: (k) => (k.revoked ? 1 : 0), cell: (k) => keyState(k, budgets, load) },
          ],
          list,
          { sortable: true, emptyText: may ? "No key yet: create one for each application and environment." : "No key you can see." },
        ),
      "Loading the keys",
    );
  await load();
}

// A revoked key's badge and, for those who manage it, a Restore button that
// runs `restore` (a toast says how it went), then reloads.
function revokedWithRestore(badge, manages, restore, reload) {
  const button = h(
    "button",
    {
      type: "button",
      class: "secondary small",
      on: {
        click: async () => {
          try {
            toast(await restore());
            reload();
          } catch (err) {
            toast(err.code === "budget_exceeded" ? "The budget is still exceeded: raise it, or wait for the next period." : err.message);
          }
        },
      },
    },
    "Restore",
  );
  return h("div", { class: "row-actions" }, h("span", { class: "badge bad" }, badge), manages ? button : null);
}

function keyState(k, budgets, reload) {
  const manages = runsTheOrg() || (k.project_id && adminProjects().some((p) => p.id === k.project_id));
  if (k.revoked && k.revoked_by_budget) {
    const b = budgets.find((x) => x.id === k.revoked_by_budget);
    const restore = async () => `${(await post(O(`/budgets/${k.revoked_by_budget}/restore`))).keys_restored} key(s) restored.`;
    return revokedWithRestore(`Revoked by budget ${b ? b.name : short(k.revoked_by_budget)}`, manages, restore, reload);
  }
  if (k.revoked && k.restorable) {
    // Its budget was deleted: the key comes back through itself.
    const restore = async () => (await post(O(`/keys/${k.id}/restore`)), `${k.name} restored.`);
    return revokedWithRestore("Revoked by a deleted budget", manages, restore, reload);
  }
  if (k.revoked) return h("span", { class: "badge muted" }, `Revoked ${when(k.revoked_at)}`);
  return h(
    "div",
    { class: "row-actions" },
    h("span", { class: "badge good" }, "Active"),
    manages
      ? h(
          "button",
          {
            type: "button",
            class: "danger small",
            on: {
              click: async () => {
                const ok = await confirmDialog(`Revoke ${k.name}?`, "Every gateway refuses the key within a second. A revoked key cannot be used again.", "Revoke key", () => post(O(`/keys/${k.id}/revoke`)));
                if (ok) reload();
              },
            },
          },
          "Revoke",
        )
      : null,
  );
}

// Members -----------------------------------------------------------------------

const ORG_ROLES = ["owner", "admin", "manager", "member"];
const PROJECT_ROLES = ["owner", "admin", "member"];

export async function members(main) {
  const orgEl = h("div");
  const invitesEl = h("div");
  const projectEl = h("div");
  const invite = runsTheOrg()
    ? h(
        "button",
        {
          type: "button",
          on: {
            click: () => {
              const email = h("input", { type: "email", name: "email" });
              const role = select("role", ORG_ROLES.map((r) => [r, r]), "member");
              const fields = { email: field("Email", email), role: field("Organization role", role) };
              const form = apiForm(fields, "Create invitation", async () => {
                const inv = await post(O("/invitations"), { email: email.value.trim(), role: role.value });
                const url = `${location.origin}/#/accept?token=${encodeURIComponent(inv.token)}`;
                clear(form, secretBox("The invitation link", url, `Send this one-time link to ${inv.email}; it is shown only now and expires ${when(inv.expires_at)}.`));
                loadInvites();
              });
              dialog("Invite a member", form);
            },
          },
        },
        "Invite member",
      )
    : null;
  append(
    main,
    pageHead("Members", invite),
    region("Organization", orgEl),
    runsTheOrg() ? region("Pending invitations", h("p", { class: "sub" }, "Invitations not yet accepted; revoking one makes its link stop working."), invitesEl) : null,
    region("Project members", projectEl),
  );
  let orgMembers = [];
  const loadOrg = () =>
    section(
      orgEl,
      async () => (orgMembers = await all(O("/members"))),
      (list) =>
        table(
          [
            { key: "name", label: "Name", cell: (m) => m.name || "–" },
            { key: "email", label: "Email" },
            {
              key: "role",
              label: "Role",
              cell: (m) =>
                ctx.orgRole === "owner" || (runsTheOrg() && m.role !== "owner")
                  ? h(
                      "select",
                      {
                        "aria-label": `Role of ${m.email}`,
                        on: {
                          change: async (e) => {
                            try {
                              await patch(O(`/members/${m.user_id}`), { role: e.target.value });
                              toast(`${m.email} is now ${e.target.value}.`);
                            } catch (err) {
                              toast(err.message);
                              loadOrg();
                            }
                          },
                        },
                      },
                      ORG_ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)),
                    )
                  : m.role,
            },
            {
              key: "actions",
              label: "",
              cell: (m) =>
                runsTheOrg() && m.user_id !== ctx.me.id
                  ? h(
                      "button",
                      {
                        type: "button",
                        class: "danger small",
                        on: { click: async () => (await confirmDialog(`Remove ${m.email}?`, "They lose access to the organization and its projects.", "Remove", () => del(O(`/members/${m.user_id}`)))) && loadOrg() },
                      },
                      "Remove",
                    )
                  : null,
            },
          ],
          list,
        ),
      "Loading the members",
    );
  const loadInvites = () =>
    section(
      invitesEl,
      () => all(O("/invitations")),
      (list) =>
        table(
          [
            { key: "email", label: "Email" },
            { key: "role", label: "Role" },
            { key: "expires_at", label: "Expires", cell: (i) => when(i.expires_at) },
            {
              key: "actions",
              label: "",
              cell: (i) =>
                h(
                  "button",
                  {
                    type: "button",
                    class: "danger small",
                    "aria-label": `Revoke the invitation of ${i.email}`,
                    on: {
                      click: async () => {
                        const ok = await confirmDialog(
                          `Revoke the invitation of ${i.email}?`,
                          "Its link stops working at once. You can invite them again.",
                          "Revoke invitation",
                          () => del(O(`/invitations/${i.id}`)),
                        );
                        if (ok) {
                          toast(`The invitation of ${i.email} is revoked.`);
                          loadInvites();
                        }
                      },
                    },
                  },
                  "Revoke",
                ),
            },
          ],
          list,
          { emptyText: "No pending invitation." },
        ),
      "Loading the invitations",
    );
  await Promise.all([loadOrg(), runsTheOrg() ? loadInvites() : null]);
  await projectMembers(projectEl, () => orgMembers);
}

async function projectMembers(el, orgMembers) {
  const visible = ctx.projects;
  if (!visible.length) return clear(el, empty("No project."));
  // The picker's choice, else the header's project, else the first.
  const chosen = ctx.params.get("members_of") || ctx.project || visible[0].id;
  const project = projectById(chosen) || visible[0];
  const picker = field(
    "Project",
    h("select", { id: "members-project", on: { change: (e) => (location.hash = link("members", { members_of: e.target.value })) } }, visible.map((p) => h("option", { value: p.id, selected: p.id === project.id }, p.name))),
  );
  const listEl = h("div");
  const manages = project.role === "owner" || project.role === "admin";
  const load = () =>
    section(
      listEl,
      () => all(O(`/projects/${project.id}/members`)),
      (list) => {
        const user = select("user", orgMembers().filter((m) => !list.some((x) => x.user_id === m.user_id)).map((m) => [m.user_id, `${m.name || m.email} (${m.email})`]), "");
        const role = select("role", PROJECT_ROLES.map((r) => [r, r]), "member");
        const error = errorLine();
        return h(
          "div",
          {},
          table(
            [
              { key: "name", label: "Name", cell: (m) => m.name || "–" },
              { key: "email", label: "Email" },
              {
                key: "role",
                label: "Project role",
                cell: (m) =>
                  manages
                    ? h(
                        "select",
                        { "aria-label": `Project role of ${m.email}`, on: { change: async (e) => { try { await put(O(`/projects/${project.id}/members/${m.user_id}`), { role: e.target.value }); toast("Role changed."); } catch (err) { toast(err.message); load(); } } } },
                        PROJECT_ROLES.map((r) => h("option", { value: r, selected: r === m.role }, r)),
                      )
                    : m.role,
              },
              { key: "actions", label: "", cell: (m) => (manages ? h("button", { type: "button", class: "danger small", on: { click: async () => { try { await del(O(`/projects/${project.id}/members/${m.user_id}`)); load(); } catch (err) { toast(err.message); } } } }, "Remove") : null) },
            ],
            list,
            { emptyText: "No listed member (org owners and admins manage every project without being listed)." },
          ),
          manages && user.options.length
            ? h(
                "form",
                {
                  class: "inline-form",
                  "aria-label": "Add a project member",
                  on: {
                    submit: async (e) => {
                      e.preventDefault();
                      try {
                        await put(O(`/projects/${project.id}/members/${user.value}`), { role: role.value });
                        toast("Member added.");
                        load();
                      } catch (err) {
                        error.textContent = err.message;
                      }
                    },
                  },
                },
                field("Member", user),
                field("Role", role),
                h("button", { type: "submit" }, "Add to project"),
                error,
              )
            : null,
        );
      },
      "Loading the project's members",
    );
  clear(el, picker, listEl);
  await load();
}

// Budgets and alerts ------------------------------------------------------------------

function scopeOptions() {
  const managed = runsTheOrg() ? ctx.projects : adminProjects();
  return [...(runsTheOrg() ? [["", "The whole organization"]] : []), ...managed.map((p) => [p.id, p.name])];
}

function budgetForm(onSaved) {
  const inputs = {
    name: h("input", { name: "name", autocomplete: "off" }),
    amount_usd: h("input", { name: "amount_usd", type: "number", min: "0", step: "0.01" }),
    period: select("period", [["month", "Calendar month (UTC)"], ["week", "Week (UTC)"], ["day", "Day (UTC)"]], "month"),
    project_id: select("project_id", scopeOptions(), ctx.project || ""),
    thresholds: h("input", { name: "thresholds", value: "50, 80, 100" }),
    action: select("action", [["alert", "Alert"], ["alert_and_revoke", "Alert and revoke the scope's keys"]], "alert"),
    webhook_url: h("input", { name: "webhook_url", type: "url", placeholder: "https://…" }),
    webhook_secret: h("input", { name: "webhook_secret", autocomplete: "off" }),
  };
  const fields = {
    name: field("Name", inputs.name),
    amount_usd: field("Amount (USD)", inputs.amount_usd),
    period: field("Period", inputs.period),
    project_id: field("Scope", inputs.project_id),
    thresholds: field("Alert at (percent)", inputs.thresholds, "Comma-separated, e.g. 50, 80, 100."),
    action: field("On breach", inputs.action),
    webhook_url: field("Webhook URL", inputs.webhook_url, "Optional: alerts are POSTed here, signed with the secret."),
    webhook_secret: field("Webhook secret", inputs.webhook_secret, "Optional."),
  };
  return apiForm(fields, "Create budget", async () => {
    const thresholds = inputs.thresholds.value.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
    await post(O("/budgets"), {
      name: inputs.name.value.trim(),
      amount_usd: Number(inputs.amount_usd.value),
      period: inputs.period.value,
      project_id: inputs.project_id.value || null,
      thresholds,
      action: inputs.action.value,
      webhook_url: inputs.webhook_url.value.trim() || null,
      webhook_secret: inputs.webhook_secret.value || null,
    });
    onSaved();
  });
}

// A breach stays recorded for the period until its keys are restored; a
// budget raised above its spend says so.
function budgetState(b) {
  const over = Number(b.spent_usd) >= Number(b.amount_usd);
  if (b.breached && over) return h("span", { class: "badge bad" }, "Breached");
  if (b.breached && b.action === "alert_and_revoke") return h("span", { class: "badge warn" }, "Within budget: revoked keys can be restored");
  return h("span", { class: "badge good" }, "Within budget");
}

export async function budgets(main) {
  const may = runsTheOrg() || adminProjects().length > 0;
  const budgetsEl = h("div");
  const alertsEl = h("div");
  const create = may
    ? h(
        "button",
        {
          type: "button",
          on: {
            click: () => {
              const d = dialog(
                "New budget",
                budgetForm(() => {
                  d.close();
                  toast("Budget created.");
                  loadBudgets();
                }),
              );
            },
          },
        },
        "New budget",
      )
    : null;
  const rulesEl = h("div");
  const newRule = may
    ? h("button", { type: "button", class: "secondary", on: { click: () => ruleDialog(() => loadRules()) } }, "New alert rule")
    : null;
  append(main, 
    pageHead("Budgets & alerts", create),
    budgetsEl,
    h("div", { class: "page-head" }, h("h2", {}, "Alert rules"), h("div", { class: "actions" }, newRule)),
    h("p", { class: "sub" }, "A rule posts to its webhook once per period when the scope's spend crosses its amount."),
    rulesEl,
    h("h2", {}, "Alert history"),
    alertsEl,
  );
  const inScope = (x) => !ctx.project || x.project_id === ctx.project;
  let budgetList = [];
  const sourceName = (a) => {
    const b = a.source === "budget" ? budgetList.find((x) => x.id === a.source_id) : null;
    return b ? `budget ${b.name}` : a.source === "rule" ? "alert rule" : a.source;
  };
  const loadBudgets = () =>
    section(
      budgetsEl,
      async () => (budgetList = await all(O("/budgets"))).filter(inScope),
      (list) =>
        table(
          [
            { key: "name", label: "Budget" },
            { key: "project_id", label: "Scope", cell: (b) => projectBadge(b.project_id ? projectById(b.project_id) || { name: short(b.project_id) } : null) },
            { key: "period", label: "Period" },
            {
              key: "spent",
              label: "Spent",
              value: (b) => Number(b.spent_usd) / Number(b.amount_usd),
              cell: (b) => progress(Number(b.spent_usd), Number(b.amount_usd), `${usdText(b.spent_usd)} of ${usdText(b.amount_usd)} (${pct(Number(b.spent_usd) / Number(b.amount_usd), 0)})`),
            },
            { key: "thresholds", label: "Alerts at", cell: (b) => (b.thresholds || []).map((t) => `${t}%`).join(", ") },
            { key: "action", label: "On breach", cell: (b) => (b.action === "alert_and_revoke" ? "alert and revoke keys" : "alert") },
            { key: "breached", label: "State", cell: budgetState },
            {
              key: "actions",
              label: "",
              cell: (b) => {
                const manages = runsTheOrg() || (b.project_id && adminProjects().some((p) => p.id === b.project_id));
                if (!manages) return null;
                const amount = h("input", { type: "number", min: "0", step: "0.01", value: usdInput(b.amount_usd), "aria-label": `New amount of ${b.name}`, class: "narrow" });
                return h(
                  "div",
                  { class: "row-actions" },
                  amount,
                  h("button", { type: "button", class: "secondary small", on: { click: async () => { try { await patch(O(`/budgets/${b.id}`), { amount_usd: Number(amount.value) }); toast("Budget changed."); loadBudgets(); } catch (err) { toast(err.fieldMessage("amount_usd") || err.message); } } } }, "Set amount"),
                  b.breached && b.action === "alert_and_revoke"
                    ? h("button", { type: "button", class: "secondary small", on: { click: async () => { try { const r = await post(O(`/budgets/${b.id}/restore`)); toast(`${r.keys_restored} key(s) restored.`); loadBudgets(); } catch (err) { toast(err.code === "budget_exceeded" ? "Still exceeded: raise the amount first." : err.message); } } } }, "Restore keys")
                    : null,
                  h("button", { type: "button", class: "danger small", on: { click: async () => (await confirmDialog(`Delete ${b.name}?`, `${b.keys_revoked > 0 ? `Deleting it restores the ${b.keys_revoked === 1 ? "key" : `${b.keys_revoked} keys`} it revoked. ` : ""}Its alerts stay in the history.`, "Delete budget", () => del(O(`/budgets/${b.id}`)))) && loadBudgets() } }, "Delete"),
                );
              },
            },
          ],
          list,
          { emptyText: "No budget yet." },
        ),
      "Loading the budgets",
    );
  const loadAlerts = () =>
    section(
      alertsEl,
      async () => (await get(O("/alerts"), { limit: 100 })).data.filter(inScope),
      (list) =>
        table(
          [
            { key: "created_at", label: "When", cell: (a) => when(a.created_at) },
            { key: "project_id", label: "Scope", cell: (a) => projectBadge(a.project_id ? projectById(a.project_id) || { name: short(a.project_id) } : null) },
            { key: "source", label: "Source", cell: (a) => `${sourceName(a)}${a.kind === "revocation" ? `: ${a.body.keys_revoked} ${a.body.keys_revoked === 1 ? "key" : "keys"} revoked` : a.source === "budget" ? ` at ${a.threshold_percent}%` : ""}` },
            { key: "period_start", label: "Period", cell: (a) => String(a.period_start).slice(0, 10) },
            {
              key: "state",
              label: "Delivery",
              cell: (a) =>
                h(
                  "div",
                  {},
                  h(
                    "span",
                    { class: `badge ${a.state === "delivered" ? "good" : a.state === "failed" ? "bad" : "muted"}` },
                    a.webhook_url ? `${a.state}${a.attempts ? ` after ${a.attempts} attempt(s)` : ""}` : "listed (no webhook)",
                  ),
                  a.last_error ? h("p", { class: "sub small-text" }, a.last_error) : null,
                ),
            },
          ],
          list,
          { emptyText: "No alert has fired." },
        ),
      "Loading the alerts",
    );
  const loadRules = () =>
    section(
      rulesEl,
      async () => (await all(O("/alert-rules"))).filter(inScope),
      (list) =>
        table(
          [
            { key: "name", label: "Rule" },
            { key: "project_id", label: "Scope", cell: (r) => projectBadge(r.project_id ? projectById(r.project_id) || { name: short(r.project_id) } : null) },
            { key: "threshold_usd", label: "Fires at", cell: (r) => usdText(r.threshold_usd) },
            { key: "period", label: "Period" },
            { key: "webhook_url", label: "Webhook", cell: (r) => h("code", {}, r.webhook_url) },
            {
              key: "actions",
              label: "",
              cell: (r) =>
                runsTheOrg() || (r.project_id && adminProjects().some((p) => p.id === r.project_id))
                  ? h("button", { type: "button", class: "danger small", on: { click: async () => (await confirmDialog(`Delete ${r.name}?`, "Its alerts stay in the history.", "Delete rule", () => del(O(`/alert-rules/${r.id}`)))) && loadRules() } }, "Delete")
                  : null,
            },
          ],
          list,
          { emptyText: "No alert rule." },
        ),
      "Loading the alert rules",
    );
  await loadBudgets();
  await Promise.all([loadRules(), loadAlerts()]);
}

// A new alert rule; its webhook secret is shown once.
function ruleDialog(onSaved) {
  const inputs = {
    name: h("input", { name: "name", autocomplete: "off" }),
    threshold_usd: h("input", { name: "threshold_usd", type: "number", min: "0", step: "0.01" }),
    period: select("period", [["month", "Calendar month (UTC)"], ["week", "Week (UTC)"], ["day", "Day (UTC)"]], "month"),
    project_id: select("project_id", scopeOptions(), ctx.project || ""),
    webhook_url: h("input", { name: "webhook_url", type: "url", placeholder: "https://…" }),
  };
  const fields = {
    name: field("Name", inputs.name),
    threshold_usd: field("Fires at (USD)", inputs.threshold_usd),
    period: field("Period", inputs.period),
    project_id: field("Scope", inputs.project_id),
    webhook_url: field("Webhook URL", inputs.webhook_url, "Alerts are POSTed here, signed (floopy-signature) with the rule's secret."),
  };
  const form = apiForm(fields, "Create rule", async () => {
    const rule = await post(O("/alert-rules"), {
      name: inputs.name.value.trim(),
      threshold_usd: Number(inputs.threshold_usd.value),
      period: inputs.period.value,
      project_id: inputs.project_id.value || null,
      webhook_url: inputs.webhook_url.value.trim(),
    });
    clear(form, rule.webhook_secret ? secretBox("The rule's webhook secret", rule.webhook_secret, "Receivers verify floopy-signature with this secret; it is shown only now.") : h("p", {}, "Rule created."));
    onSaved();
  });
  dialog("New alert rule", form);
}

// Settings ----------------------------------------------------------------------------

export async function settings(main) {
  const orgEl = h("div", { class: "card" });
  const limitsEl = h("div");
  append(main, pageHead("Settings"), h("h2", {}, "Organization"), orgEl, h("h2", { id: "limits" }, "Limits"), h("p", { class: "sub" }, "Per environment, for every key of the organization together; each gateway enforces them within a second of a change."), limitsEl);
  await section(
    orgEl,
    () => get(O()),
    (org) => {
      const owner = ctx.orgRole === "owner";
      const name = h("input", { name: "name", value: org.name, disabled: !owner });
      const plan = select("plan", ["free", "starter", "pro", "enterprise"].map((p) => [p, p]), org.plan);
      plan.disabled = !owner;
      const fields = { name: field("Name", name), plan: field("Plan", plan, org.max_projects === null ? "No project limit." : `Up to ${org.max_projects} projects.`) };
      const form = h(
        "form",
        { class: "inline-form", on: { submit: async (e) => { e.preventDefault(); try { await patch(O(), { name: name.value.trim(), plan: plan.value }); toast("Organization saved."); } catch (err) { showErrors(form, fields, err); } } } },
        Object.values(fields),
        owner ? h("button", { type: "submit" }, "Save") : h("p", { class: "sub" }, "Only owners change the name and the plan."),
        errorLine(),
      );
      return form;
    },
    "Loading",
  );
  const load = () =>
    section(
      limitsEl,
      async () => (await get(O("/limits"))).data,
      (list) =>
        table(
          [
            { key: "environment", label: "Environment" },
            { key: "rpm", label: "Requests per minute", cell: (l) => limitInput(l, "rpm") },
            { key: "monthly_cost_usd", label: "Monthly cap (USD)", cell: (l) => limitInput(l, "monthly_cost_usd") },
            {
              key: "spend",
              label: "This month",
              // The spend is given for every environment, capped or not.
              cell: (l) =>
                l.monthly_cost_usd
                  ? progress(Number(l.month_to_date_usd || 0), Number(l.monthly_cost_usd), `${usdText(l.month_to_date_usd || "0")} of ${usdText(l.monthly_cost_usd)}`)
                  : l.month_to_date_usd !== undefined && l.month_to_date_usd !== null
                    ? `${usdText(l.month_to_date_usd)}, no cap`
                    : "–",
            },
            { key: "actions", label: "", cell: (l) => limitActions(l, load) },
          ],
          ENVIRONMENTS.map((e) => list.find((l) => l.environment === e) || { environment: e, rpm: null, monthly_cost_usd: null, unset: true }),
        ),
      "Loading the limits",
    );
  await load();
}

function limitInput(l, key) {
  return h("input", {
    type: "number",
    min: key === "rpm" ? "1" : "0",
    step: key === "rpm" ? "1" : "0.01",
    value: key === "rpm" ? l.rpm ?? "" : usdInput(l.monthly_cost_usd),
    placeholder: "no limit",
    class: "narrow",
    "aria-label": `${key === "rpm" ? "Requests per minute" : "Monthly cap in USD"} of ${l.environment}`,
    dataset: { env: l.environment, key },
  });
}

function limitActions(l, reload) {
  const save = async (e) => {
    const row = e.target.closest("tr");
    const rpm = row.querySelector('[data-key="rpm"]').value;
    const cap = row.querySelector('[data-key="monthly_cost_usd"]').value;
    try {
      if (!rpm && !cap) await del(O(`/limits/${l.environment}`));
      else await put(O(`/limits/${l.environment}`), { rpm: rpm ? Number(rpm) : null, monthly_cost_usd: cap ? Number(cap) : null });
      toast(`Limits of ${l.environment} saved.`);
      reload();
    } catch (err) {
      toast(err.fieldMessage("rpm") || err.fieldMessage("monthly_cost_usd") || err.message);
    }
  };
  return h("button", { type: "button", class: "secondary small", on: { click: save } }, "Save");
}
