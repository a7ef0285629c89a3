// fetch wrapper for the APOS JSON API: same-origin credentials, the CSRF
// header on state-changing requests, problem+json errors as ApiError.

export class ApiError extends Error {
  constructor(status, title, detail, extra = {}) {
    super(detail || title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.title = title || '';
    this.detail = detail || title || `HTTP ${status}`;
    this.type = extra.type || null;
    this.retryAfter = extra.retryAfter ?? null;
  }
}

let csrfToken = null;
let unauthorizedHandler = null;

/** The session's CSRF token (set by session.js after login / who-am-i). */
export function setCsrf(token) { csrfToken = token || null; }

/** Called with the ApiError on a 401 (session.js shows the login dialog). */
export function onUnauthorized(fn) { unauthorizedHandler = fn; }

const WRITE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * api('/api/v1/overview') → parsed JSON (or text for non-JSON, null for 204).
 * opts: {method, body (object → JSON), signal, quiet401 (no login dialog)}
 */
export async function api(path, opts = {}) {
  const method = (opts.method || 'GET').toUpperCase();
  const headers = { Accept: 'application/json, application/problem+json;q=0.9, */*;q=0.1' };
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (WRITE.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res;
  try {
    res = await fetch(path, { method, headers, body, credentials: 'same-origin', signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'Network error', 'The node did not answer (network error).');
  }
  if (res.status === 204) return null;
  const type = res.headers.get('Content-Type') || '';
  if (!res.ok) {
    let title = res.statusText;
    let detail = '';
    let ptype = null;
    if (type.includes('json')) {
      try {
        const p = await res.json();
        title = p.title || title;
        detail = p.detail || '';
        ptype = p.type || null;
      } catch { /* not JSON after all */ }
    } else {
      try { detail = (await res.text()).slice(0, 300); } catch { /* ignore */ }
    }
    const ra = res.headers.get('Retry-After');
    const err = new ApiError(res.status, title, detail, { type: ptype, retryAfter: ra !== null && ra !== '' ? Number(ra) : null });
    if (res.status === 401 && !opts.quiet401 && unauthorizedHandler) unauthorizedHandler(err);
    throw err;
  }
  if (type.includes('json')) return res.json();
  return res.text();
}

export const get = (path, opts) => api(path, { ...opts, method: 'GET' });
export const post = (path, body, opts) => api(path, { ...opts, method: 'POST', body: body ?? {} });
export const del = (path, opts) => api(path, { ...opts, method: 'DELETE' });

/** Path segment escape for names in URLs. */
export const seg = (s) => encodeURIComponent(s);
