// What every page shares, and nothing else: the user, the org and their
// role in it, the projects they see, the selection (project, time range),
// and links that keep it. A leaf: the shell (app.js) and the pages
// (pages.js, manage.js) import it; it imports only the API client.

import { all } from "./api.js";

// What every page reads: the user, the org and their role in it, the
// projects they see, the selection.
export const ctx = {
  me: null,
  org: null,
  orgRole: null,
  projects: [],
  project: "",
  range: "7d",
  params: new URLSearchParams(),
};

export const RANGES = [
  ["24h", "Last 24 hours", 86400e3],
  ["7d", "Last 7 days", 7 * 86400e3],
  ["30d", "Last 30 days", 30 * 86400e3],
];

// The analytics query of the selection: project and time range.
export function scope(extra = {}) {
  const span = (RANGES.find((r) => r[0] === ctx.range) || RANGES[1])[2];
  const to = Date.now();
  return { project: ctx.project || undefined, from: String(to - span), to: String(to + 1), ...extra };
}

export function rangeInterval() {
  return ctx.range === "24h" ? "hour" : "day";
}

export const runsTheOrg = () => ctx.orgRole === "owner" || ctx.orgRole === "admin";
export const canCreateProjects = () => runsTheOrg() || ctx.orgRole === "manager";
export const adminProjects = () => ctx.projects.filter((p) => p.role === "owner" || p.role === "admin");
export const projectById = (id) => ctx.projects.find((p) => p.id === id) || null;

// The link to `page` keeping the org, project and range, plus `extra`.
export function link(page, extra = {}) {
  const q = new URLSearchParams();
  if (ctx.org) q.set("org", ctx.org);
  if (ctx.project) q.set("project", ctx.project);
  if (ctx.range !== "7d") q.set("range", ctx.range);
  for (const [k, v] of Object.entries(extra)) {
    if (v === null || v === undefined || v === "") q.delete(k);
    else q.set(k, v);
  }
  return `#/${page}?${q}`;
}

export function go(page, extra) {
  location.hash = link(page, extra);
}

// The org's projects, the Default first, then by name.
export async function reloadProjects() {
  ctx.projects = await all(`/orgs/${ctx.org}/projects`);
  ctx.projects.sort((a, b) => Number(b.is_default) - Number(a.is_default) || a.name.localeCompare(b.name));
}
