// APOS edge HMI: router, navigation, header (node, hub link, alarms, clock,
// user), link-lost overlay. Pages are loaded lazily from ./pages/.
import { h, clear, setText, setClass } from '/common/js/dom.js';
import { api } from '/common/js/api.js';
import { whoAmI, can, onSessionChange, mountUserBox, session, showLogin } from '/common/js/session.js';
import { getLive } from '/common/js/live.js';
import { fmtTime, fmtAge } from '/common/js/format.js';
import { prioShape } from '/common/js/prio.js';

const PAGES = {
  overview: { title: 'Overview', load: () => import('./pages/overview.js') },
  tags: { title: 'Live tags', load: () => import('./pages/tags.js') },
  trends: { title: 'Trends', load: () => import('./pages/trends.js') },
  forecasts: { title: 'Forecasts', load: () => import('./pages/forecasts.js') },
  kpis: { title: 'KPIs', load: () => import('./pages/kpis.js') },
  alarms: { title: 'Alarms', load: () => import('./pages/alarms.js') },
  approvals: { title: 'Approvals', load: () => import('./pages/approvals.js') },
  diagnostics: { title: 'Diagnostics', load: () => import('./pages/diagnostics.js') },
  admin: { title: 'Admin', load: () => import('./pages/admin.js'), role: 'admin' },
};

const live = getLive();
const pageEl = document.getElementById('page');
const mainEl = document.getElementById('main');
let nodeName = '';
let current = null; // {name, page, ctx}
let routeToken = 0;

/* ---------- write buttons: only for operators, never while the link is lost ---------- */

function writable() {
  return can('operator') && live.up;
}

/** Disable every [data-write] control under root unless writes are allowed now. */
function applyWrites(root = document) {
  const ok = writable();
  for (const el of root.querySelectorAll('[data-write]')) {
    if (el.disabled === ok) el.disabled = !ok;
    if (!ok) el.title = can('operator') ? 'Disabled: link lost' : 'Operator role needed';
    else el.removeAttribute('title');
  }
}

/* ---------- router ---------- */

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const name = PAGES[path] ? path : 'overview';
  return { name, params: new URLSearchParams(query || '') };
}

function makeCtx(name) {
  const cleanups = [];
  const ctx = {
    live,
    name,
    params: null,
    now: () => live.now(),
    writable,
    applyWrites: (root) => applyWrites(root || pageEl),
    can,
    /** Subscribe to a live event; removed when the page goes. */
    on(type, fn) {
      const wrapped = (ev) => fn(ev.detail);
      live.addEventListener(type, wrapped);
      cleanups.push(() => live.removeEventListener(type, wrapped));
    },
    /** setInterval that stops with the page. */
    every(ms, fn) {
      const id = setInterval(fn, ms);
      cleanups.push(() => clearInterval(id));
      return id;
    },
    /** Poll an API path every ms (and now); fn(data) or fn(null, error). */
    poll(path, ms, fn) {
      let stopped = false;
      let timer = null;
      const run = async () => {
        try {
          const d = await api(path);
          if (!stopped) fn(d, null);
        } catch (e) {
          if (!stopped) fn(null, e);
        }
        if (!stopped) timer = setTimeout(run, ms);
      };
      run();
      cleanups.push(() => { stopped = true; clearTimeout(timer); });
      return { now: () => { clearTimeout(timer); run(); } };
    },
    onCleanup(fn) { cleanups.push(fn); },
    /** Change the route's query without reloading the page. */
    setParams(obj) {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(obj)) if (v !== null && v !== undefined && v !== '') p.set(k, v);
      const q = p.toString().replace(/%2C/gi, ',');
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
  document.title = `${def.title} — APOS${nodeName ? ` ${nodeName}` : ''}`;
  if (current && current.name === name && current.page && current.page.update) {
    current.ctx.params = params;
    current.page.update(params);
    return;
  }
  if (current) {
    try { if (current.page && current.page.unmount) current.page.unmount(); } catch (e) { console.error(e); }
    current.ctx.dispose();
    current = null;
  }
  clear(pageEl);
  const s = session();
  if (!s) {
    pageEl.append(h('section', { class: 'panel notice' },
      h('h1', { text: 'Log in to view this node' }),
      h('p', { text: 'This HMI needs a user. Log in with your APOS account.' }),
      h('button', { type: 'button', class: 'btn btn-primary', text: 'Log in', onclick: () => showLogin() })));
    return;
  }
  if (def.role && !can(def.role)) {
    pageEl.append(h('section', { class: 'panel notice' },
      h('h1', { text: `${def.title}: ${def.role} only` }),
      h('p', { text: `This page needs the ${def.role} role. You are ${s.user ? `${s.user} (${s.role})` : 'viewing anonymously'}.` })));
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
  applyWrites(pageEl);
}

/* ---------- header ---------- */

const hubEl = document.getElementById('hub-state');
const clockEl = document.getElementById('clock');
const alarmsEl = document.getElementById('hdr-alarms');

function renderHub() {
  const hub = live.status && live.status.hub;
  clear(hubEl);
  if (!hub || (!live.up && live.reason !== 'no-data')) { hubEl.append('Hub: —'); hubEl.title = 'unknown while the link is lost'; return; }
  hubEl.removeAttribute('title');
  if (!hub.enabled) { hubEl.append('Hub: not used'); return; }
  hubEl.append('Hub: ');
  if (hub.connected) hubEl.append(h('span', { class: 'state-ok', text: 'connected' }));
  else hubEl.append(h('span', { class: 'state-bad', text: 'NOT CONNECTED' }));
}

let alarmsDirty = true;
function renderHeaderAlarms() {
  if (!alarmsDirty) return;
  alarmsDirty = false;
  const counts = { 4: 0, 3: 0, 2: 0, 1: 0 };
  let unack = 0;
  for (const a of live.alarms.values()) {
    if (a.state === 'unacknowledged' || a.state === 'acknowledged' || a.state === 'returned_unacknowledged') {
      if (a.state !== 'returned_unacknowledged') counts[a.priority] = (counts[a.priority] || 0) + 1;
    }
    if (!a.acked && (a.state === 'unacknowledged' || a.state === 'returned_unacknowledged')) unack += 1;
  }
  clear(alarmsEl);
  alarmsEl.append(h('span', { class: 'hdr-label', text: 'Alarms' }));
  let any = false;
  for (const p of [4, 3, 2, 1]) {
    if (!counts[p]) continue;
    any = true;
    alarmsEl.append(h('span', { class: 'hdr-count', 'aria-hidden': 'true' }, prioShape(p), h('span', { class: 'num', text: String(counts[p]) })));
  }
  if (!any) alarmsEl.append(h('span', { class: 'hdr-none', text: 'none active' }));
  if (unack) alarmsEl.append(h('span', { class: 'hdr-unack', text: `${unack} unack` }));
  if (live.flood) alarmsEl.append(h('span', { class: 'hdr-flood bg-p4', text: 'FLOOD' }));
  alarmsEl.append(h('span', { class: 'sr-only', text: `: ${[4, 3, 2, 1].map((p) => `${counts[p]} priority ${p}`).join(', ')}; ${unack} unacknowledged${live.flood ? '; alarm flood' : ''}` }));
}

/* ---------- link-lost overlay ---------- */

const overlay = document.getElementById('link-lost');
const llTitle = document.getElementById('ll-title');
const llSince = document.getElementById('ll-since');

function renderLink() {
  const up = live.up;
  document.body.dataset.link = up ? 'up' : 'lost';
  overlay.hidden = up || !session();
  if (!up) {
    const reason = live.reason;
    setClass(overlay, 'connecting', reason === 'connecting');
    setText(llTitle, reason === 'no-data' ? 'NO DATA FROM THE PLANT — values are not live'
      : reason === 'connecting' ? 'CONNECTING — values are not live yet'
        : 'LINK LOST — values are not live');
    setText(document.getElementById('ll-retry'), reason === 'no-data'
      ? 'The node is up but no sample has reached it for 5 s: check the devices.'
      : 'Reconnecting…');
    renderSince();
  }
  applyWrites(document);
}

function renderSince() {
  if (live.up) return;
  const since = live.lostSince;
  setText(llSince, since ? `since ${fmtTime(since + live.offset)} (${fmtAge(Date.now() - since)})` : '');
}

/* ---------- boot ---------- */

async function loadNode() {
  try {
    const o = await api('/api/v1/overview');
    if (o && o.node) {
      nodeName = [o.node.site, o.node.node].filter(Boolean).join(' / ');
      setText(document.getElementById('node-name'), nodeName);
      document.title = `${PAGES[parseHash().name].title} — APOS ${nodeName}`;
    }
  } catch (e) {
    if (e.status !== 401) console.warn('overview', e);
  }
}

let bootSocket = false;

function onSession(s) {
  document.getElementById('nav-admin').hidden = !can('admin');
  if (s) {
    if (live.stopped) live.start();
    // The socket opened at boot already carries this session's cookie.
    else if (bootSocket) bootSocket = false;
    else live.restart();
    loadNode();
  } else {
    bootSocket = false;
    live.stop();
    nodeName = '';
    setText(document.getElementById('node-name'), '');
    renderHeaderAlarms();
  }
  renderLink();
  // the page may show other things for another role: mount it again
  if (current) { try { current.page.unmount && current.page.unmount(); } catch (e) { console.error(e); } current.ctx.dispose(); current = null; }
  route();
}

live.addEventListener('link', () => { renderLink(); renderHub(); });
live.addEventListener('status', () => { renderHub(); alarmsDirty = true; });
live.addEventListener('snapshot', () => { alarmsDirty = true; renderHeaderAlarms(); });
live.addEventListener('alarm', () => { alarmsDirty = true; });
live.addEventListener('alarms', () => { alarmsDirty = true; });

setInterval(() => {
  setText(clockEl, fmtTime(live.now()));
  renderSince();
  renderHeaderAlarms();
}, 1000);
setText(clockEl, fmtTime(Date.now()));

window.addEventListener('hashchange', () => {
  route();
  mainEl.focus({ preventScroll: true });
});

mountUserBox(document.getElementById('user-box'));

async function boot() {
  let first = true;
  onSessionChange((s) => {
    if (first) return;
    onSession(s);
  });
  // Work that does not depend on who is logged in starts at once, in
  // parallel with the session check: the page's module and the live socket
  // (with an existing session cookie the snapshot is on its way; without
  // one the socket is refused and stopped when the check says so).
  PAGES[parseHash().name].load().catch(() => {});
  bootSocket = true;
  live.start();
  try {
    await whoAmI();
  } catch (e) {
    pageEl.append(h('p', { class: 'panel', role: 'alert', text: `The node did not answer: ${e.detail || e.message}` }));
  }
  first = false;
  onSession(session());
}

boot();
