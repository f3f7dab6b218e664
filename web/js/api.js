// The public REST API, and nothing else: the browser has no private door into the server.

const TOKEN_KEY = 'tidings.token';
const USER_KEY = 'tidings.user';

/** An API failure with the server's error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const session = {
  get token() { return localStorage.getItem(TOKEN_KEY); },
  get user() {
    try { return JSON.parse(localStorage.getItem(USER_KEY) || 'null'); } catch { return null; }
  },
  save(token, user) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  setUser(user) { localStorage.setItem(USER_KEY, JSON.stringify(user)); },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  },
};

// Cluster mode: the highest change-log position an answer reported. Sent back on every call so
// whichever node answers next has applied this page's own writes first (read-your-writes behind
// a load balancer). The embedded store sends no position.
let position = null;

/** Calls `/api/v1{path}`; resolves to the JSON body (null for 204), throws ApiError. */
export async function api(method, path, body, { headers = {} } = {}, retried = false) {
  const init = { method, headers: { ...headers } };
  if (session.token) init.headers.authorization = `Bearer ${session.token}`;
  if (position !== null) init.headers['tidings-position'] = String(position);
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, init);
  } catch {
    throw new ApiError(0, 'network', 'cannot reach the server; check the connection');
  }
  const reported = Number(res.headers.get('tidings-position'));
  if (res.headers.has('tidings-position') && Number.isSafeInteger(reported)) {
    position = position === null ? reported : Math.max(position, reported);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!res.ok) {
    const err = json && json.error ? json.error : {};
    // A position this cluster does not know (its database was restored): forget it, once.
    if (err.code === 'invalid_position' && !retried) {
      position = null;
      return api(method, path, body, { headers }, true);
    }
    const e = new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText, err.details);
    if (res.status === 401 && session.token) window.dispatchEvent(new CustomEvent('tidings:unauthorized'));
    throw e;
  }
  return json;
}

/** Builds a query string from the defined, non-empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);
