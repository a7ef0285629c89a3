// Session: who am I, login dialog, logout, role checks.
import { api, setCsrf, onUnauthorized } from './api.js';
import { h, clear, openDialog, field } from './dom.js';

// Ranks as web/src/access.rs has them: operator and analyst are different
// jobs of the same rank.
const RANK = { viewer: 0, operator: 1, analyst: 1, engineer: 2, admin: 3 };

/** {user, role, csrf, expires_ms, anonymous} or null when not logged in. */
let current = null;
let loaded = false;
const listeners = new Set();
let loginOpen = null;

export function session() { return current; }
export function isLoaded() { return loaded; }

/** Role check: can('operator') is true for operator (and analyst), engineer and admin. */
export function can(role) {
  if (!current || !current.role || !(current.role in RANK) || !(role in RANK)) return false;
  return RANK[current.role] >= RANK[role];
}

/** fn(session) on every change (login, logout, expiry). Returns an unsubscribe. */
export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function set(s) {
  current = s;
  loaded = true;
  setCsrf(s && s.csrf);
  for (const fn of listeners) {
    try { fn(current); } catch (e) { console.error(e); }
  }
}

/** GET /api/v1/session; null (and the login dialog) when there is none. */
export async function whoAmI() {
  try {
    const s = await api('/api/v1/session', { quiet401: true });
    set(s);
  } catch (e) {
    if (e.status === 401) {
      set(null);
      showLogin();
    } else {
      throw e;
    }
  }
  return current;
}

export async function login(user, password) {
  const s = await api('/api/v1/session', { method: 'POST', body: { user, password }, quiet401: true });
  set({ anonymous: false, ...s });
  return current;
}

export async function logout() {
  try {
    await api('/api/v1/session', { method: 'DELETE', quiet401: true });
  } catch (e) {
    if (e.status !== 401) console.warn('logout', e);
  }
  set(null);
  // Anonymous view may still be allowed: ask again (shows the login dialog when not).
  await whoAmI().catch(() => {});
}

// Any 401 from the API means the session is gone: ask for a login.
onUnauthorized(() => {
  if (current && !current.anonymous) set(null);
  showLogin('Your session has ended. Please log in again.');
});

/** The login dialog (modal). Resolves with the session or null when cancelled. */
export function showLogin(message) {
  if (loginOpen) return loginOpen;
  loginOpen = new Promise((resolve) => {
    const user = h('input', { type: 'text', name: 'user', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false', 'data-testid': 'login-user' });
    const pass = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' });
    const err = h('p', { class: 'dlg-error', role: 'alert', 'aria-live': 'assertive' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'login-submit', text: 'Log in' });
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    let done = null;
    let timer = null;
    const body = [
      message ? h('p', { class: 'dlg-note', text: message }) : null,
      field('User', user).wrap,
      field('Password', pass).wrap,
      err,
    ];
    const d = openDialog({
      title: 'Log in to APOS',
      body,
      actions: [cancel, submit],
      testid: 'login-dialog',
      onClose: () => {
        clearInterval(timer);
        loginOpen = null;
        resolve(done);
      },
    });
    cancel.addEventListener('click', () => d.close());
    const countdown = (secs) => {
      clearInterval(timer);
      let left = Math.max(1, Math.ceil(secs));
      const tick = () => {
        if (left <= 0) {
          clearInterval(timer);
          submit.disabled = false;
          err.textContent = '';
          return;
        }
        err.textContent = `Too many attempts, retry in ${left} s.`;
        left -= 1;
      };
      submit.disabled = true;
      tick();
      timer = setInterval(tick, 1000);
    };
    d.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      if (!user.value.trim() || !pass.value) {
        err.textContent = 'Enter your user name and password.';
        (user.value.trim() ? pass : user).focus();
        return;
      }
      submit.disabled = true;
      err.textContent = '';
      try {
        done = await login(user.value.trim(), pass.value);
        d.close();
      } catch (e) {
        pass.value = '';
        if (e.status === 429) {
          countdown(e.retryAfter ?? 30);
          return;
        }
        err.textContent = e.status === 401 ? (e.detail || 'Wrong user name or password.') : (e.detail || String(e));
        submit.disabled = false;
        pass.focus();
      }
    });
    user.focus();
  });
  return loginOpen;
}

/**
 * The header's user box: "name (role)" + Log out, or "viewing anonymously" + Log in.
 * Re-renders itself on session changes.
 */
export function mountUserBox(el) {
  const render = () => {
    clear(el);
    const s = current;
    if (s && s.user && !s.anonymous) {
      el.append(
        h('span', { class: 'user-name', 'data-testid': 'user-name', text: s.user }),
        h('span', { class: 'user-role', text: s.role }),
        h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'logout-button', text: 'Log out', onclick: () => logout() }),
      );
    } else {
      el.append(
        h('span', { class: 'user-anon', text: s && s.anonymous ? 'viewing anonymously' : 'not logged in' }),
        h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'login-button', text: 'Log in', onclick: () => showLogin() }),
      );
    }
  };
  render();
  return onSessionChange(render);
}
