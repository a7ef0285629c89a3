// APOS hub dashboards: router, navigation, header (live link, clock with
// the browser's zone, user), the link-lost banner. Pages load lazily from
// ./pages/ and get a ctx that cleans up after them.
import { h, clear, setText } from '/common/js/dom.js';
import { whoAmI, can, onSessionChange, mountUserBox, session, showLogin } from '/common/js/session.js';
import { fmtTime, fmtAge } from '/common/js/format.js';
import { getLive } from './live.js';
import { zoneName } from './ui.js';

const PAGES = {
  fleet: { title: 'Fleet', load: () => import('./pages/fleet.js') },
  node: { title: 'Node', load: () => import('./pages/node.js') },
  tags: { title: 'Tags', load: () => import('./pages/tags.js') },
  forecasts: { title: 'Forecasts', load: () => import('./pages/forecasts.js') },
  alarms: { title: 'Alarms', load: () => import('./pages/alarms.js') },
  quality: { title: 'Data quality', load: () => import('./pages/quality.js') },
  alerts: { title: 'Alerts', load: () => import('./pages/alerts.js') },
  insights: { title: 'Insights', load: () => import('./pages/insights.js') },
  reports: { title: 'Reports', load: () => import('./pages/reports.js') },
  optimization: { title: 'Optimization', load: () => import('./pages/optimization.js') },
  import: { title: 'Import', load: () => import('./pages/import.js'), role: 'analyst' },
  export: { title: 'Export', load: () => import('./pages/export.js'), role: 'analyst' },
  sql: { title: 'SQL', load: () => import('./pages/sql.js'), role: 'analyst' },
  admin: { title: 'Admin', load: () => import('./pages/admin.js'), role: 'admin' },
};

const live = getLive();
const pageEl = document.getElementById('page');
const mainEl = document.getElementById('main');
let current = null; // {name, page, ctx}
let routeToken = 0;

/* ---------- router ---------- */

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const name = PAGES[path] ? path : 'fleet';
  return { name, params: new URLSearchParams(query || '') };
}

function makeCtx(name) {
  const cleanups = [];
  const ctx = {
    live,
    name,
    params: null,
    now: () => live.now(),
    can,
    /** Subscribe to a live notice ('node', 'kpis', 'alarms', 'alert', 'resync', 'link'). */
    on(type, fn) {
      const wrapped = (ev) => fn(ev.detail);
      live.addEventListener(type, wrapped);
      cleanups.push(() => live.removeEventListener(type, wrapped));
    },
    every(ms, fn) {
      const id = setInterval(fn, ms);
      cleanups.push(() => clearInterval(id));
      return id;
    },
    /**
     * Call load() now, every `ms`, after a reconnect, and (debounced) on
     * the live notices named in `on` that concern `filter(msg)`.
     */
    refresh(load, { ms = 30_000, on = [], filter = () => true } = {}) {
      let timer = null;
      let stopped = false;
      const run = () => { if (!stopped) load(); };
      const soon = () => { clearTimeout(timer); timer = setTimeout(run, 400); };
      for (const t of on) ctx.on(t, (m) => { if (filter(m)) soon(); });
      ctx.on('resync', soon);
      const id = setInterval(run, ms);
      cleanups.push(() => { stopped = true; clearTimeout(timer); clearInterval(id); });
      run();
      return { now: run };
    },
    onCleanup(fn) { cleanups.push(fn); },
    /** Change the route's query without reloading the page. */
    setParams(obj) {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(obj)) {
        if (Array.isArray(v)) { for (const x of v) p.append(k, x); } else if (v !== null && v !== undefined && v !== '') p.set(k, v);
      }
      const q = p.toString();
      history.replaceState(null, '', `#/${name}${q ? `?${q}` : ''}`);
      ctx.params = p;
    },
    dispose() { for (const f of cleanups.splice(0)) { try { f(); } catch (e) { console.error(e); } } },
  };
  return ctx;
}

async function route() {
  const { name, params } = parseHash();
  const token = ++routeToken;
  for (const a of document.querySelectorAll('nav.pages a')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const def = PAGES[name];
  document.title = `${def.title} — APOS hub`;
  if (current && current.name === name && current.page && current.page.update) {
    current.ctx.params = params;
    current.page.update(params);
    return;
  }
  unmount();
  clear(pageEl);
  const s = session();
  if (!s || s.anonymous) {
    pageEl.append(h('section', { class: 'panel notice' },
      h('h1', { text: 'Log in to view the fleet' }),
      h('p', { text: 'The hub dashboards need a user. Log in with your APOS hub account.' }),
      h('button', { type: 'button', class: 'btn btn-primary', text: 'Log in', onclick: () => showLogin() })));
    return;
  }
  if (def.role && !can(def.role)) {
    pageEl.append(h('section', { class: 'panel notice', 'data-testid': 'not-allowed' },
      h('h1', { text: `${def.title}: not allowed` }),
      h('p', { text: `This page needs the ${def.role} role. You are logged in as ${s.user} (${s.role}).` }),
      h('p', null, h('a', { href: '#/fleet', text: 'Back to the fleet overview' }))));
    return;
  }
  pageEl.append(h('p', { class: 'loading', text: 'Loading…' }));
  let mod;
  try {
    mod = await def.load();
  } catch (e) {
    if (token !== routeToken) return;
    clear(pageEl);
    pageEl.append(h('p', { class: 'panel', role: 'alert', text: `Could not load the page: ${e.message}` }));
    return;
  }
  if (token !== routeToken) return;
  clear(pageEl);
  const ctx = makeCtx(name);
  ctx.params = params;
  const root = h('div', { class: `page page-${name}` });
  pageEl.append(root);
  let page = null;
  try {
    page = mod.mount(root, ctx) || {};
  } catch (e) {
    console.error(e);
    root.append(h('p', { class: 'panel', role: 'alert', text: `Page error: ${e.message}` }));
  }
  current = { name, page, ctx };
}

function unmount() {
  if (!current) return;
  try { if (current.page && current.page.unmount) current.page.unmount(); } catch (e) { console.error(e); }
  current.ctx.dispose();
  current = null;
}

/* ---------- header: link state, clock, zone ---------- */

const linkEl = document.getElementById('link-state');
const banner = document.getElementById('link-banner');
const clockEl = document.getElementById('clock');

function renderLink() {
  const s = session();
  const up = live.up;
  document.body.dataset.link = up ? 'up' : 'lost';
  clear(linkEl);
  if (!s || s.anonymous) { linkEl.append('Live: —'); banner.hidden = true; return; }
  if (up) {
    linkEl.append('Live: ', h('span', { class: 'state-ok', text: 'connected' }));
  } else if (live.reason === 'connecting') {
    linkEl.append('Live: connecting…');
  } else {
    linkEl.append('Live: ', h('span', { class: 'state-bad', text: 'LINK LOST' }));
  }
  // While connecting for the first time there is nothing stale on screen yet.
  banner.hidden = up || live.reason === 'connecting';
  renderSince();
}

function renderSince() {
  if (live.up || banner.hidden) return;
  const since = live.lostSince;
  const last = live.lastUpdate;
  setText(document.getElementById('lb-since'),
    `since ${fmtTime(since)} (${fmtAge(Date.now() - since)}).${last ? ` Last live update ${fmtTime(last)}.` : ''}`);
}

setText(document.getElementById('zone'), zoneName());
document.getElementById('zone').title = 'Times on these pages are in this time zone';
setInterval(() => {
  setText(clockEl, fmtTime(live.now()));
  renderSince();
}, 1000);
setText(clockEl, fmtTime(Date.now()));

/* ---------- boot ---------- */

let bootSocket = false;

function onSession(s) {
  document.getElementById('nav-admin').hidden = !can('admin');
  if (s && !s.anonymous) {
    if (live.stopped) live.start();
    else if (bootSocket) bootSocket = false;
    else live.restart();
  } else {
    bootSocket = false;
    live.stop();
  }
  renderLink();
  // Another user or role may see other things: mount the page again.
  unmount();
  route();
}

live.addEventListener('link', renderLink);

window.addEventListener('hashchange', () => {
  route();
  mainEl.focus({ preventScroll: true });
});

mountUserBox(document.getElementById('user-box'));

async function boot() {
  let first = true;
  onSessionChange((s) => { if (!first) onSession(s); });
  // The page's module and the live socket start at once, in parallel with
  // the session check (with a session cookie the hello is on its way).
  PAGES[parseHash().name].load().catch(() => {});
  bootSocket = true;
  live.start();
  try {
    await whoAmI();
  } catch (e) {
    pageEl.append(h('p', { class: 'panel', role: 'alert', text: `The hub did not answer: ${e.detail || e.message}` }));
  }
  first = false;
  onSession(session());
}

boot();
