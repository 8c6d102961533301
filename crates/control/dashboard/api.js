// The client of floopy-control's public API (/v1/): the same calls a script
// makes, with the session cookie and its CSRF token instead of a personal
// access token. Errors keep the API's shape: status, code, param and the
// list of bad fields of a 422.

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the server answered ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.param = e.param || null;
    this.fields = e.fields || [];
  }

  // The message for one field of a form, or null.
  fieldMessage(name) {
    const f = this.fields.find((f) => f.param === name);
    if (f) return f.message;
    return this.param === name ? this.message : null;
  }
}

// Listeners told when the session has ended (a 401 on any call).
const signedOut = new Set();
export function onSignedOut(fn) {
  signedOut.add(fn);
}

function queryString(query) {
  if (!query) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// One call: the parsed JSON (null for 204), or an ApiError.
export async function api(method, path, { body, query } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  let response;
  try {
    response = await fetch(`/v1${path}${queryString(query)}`, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { error: { message: `floopy-control cannot be reached (${e.message})`, code: "unreachable" } });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const err = new ApiError(response.status, data);
    if (response.status === 401 && path !== "/auth/login") signedOut.forEach((fn) => fn(err));
    throw err;
  }
  return data;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body) => api("POST", path, { body: body === undefined ? {} : body });
export const patch = (path, body) => api("PATCH", path, { body });
export const put = (path, body) => api("PUT", path, { body });
export const del = (path) => api("DELETE", path);

// Every page of a list (the projects of an org, its keys, …), up to `max`
// items.
export async function all(path, query = {}, max = 2000) {
  const items = [];
  let cursor = null;
  do {
    const page = await get(path, { ...query, limit: 200, cursor });
    items.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
