// Widgets shared by the hub's pages: panels, node status, node and range
// pickers, paging, time parameters.
import { h, clear, setText, svg } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtAge, fmtStamp, fmtDateTime } from '/common/js/format.js';

export { seg };

/** The browser's time zone, named in the header and beside time inputs. */
export function zoneName() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time'; } catch { return 'local time'; }
}

/** API time parameter: RFC 3339 in UTC with `Z`. */
export const iso = (ms) => new Date(Math.round(ms)).toISOString();

export function panel(title, ...children) {
  const sec = h('section', { class: 'panel' });
  const head = h('h2', null);
  if (Array.isArray(title)) head.append(...title); else head.append(title);
  sec.append(head, ...children.flat());
  return sec;
}

export function errorText(e) {
  if (!e) return '';
  if (e.status === 403) return 'Not allowed for your role.';
  if (e.status === 404) return `Not found${e.detail && e.detail !== 'Not Found' ? `: ${e.detail}` : ''}.`;
  return e.detail || e.message || String(e);
}

export function errorBox() {
  return h('p', { class: 'dlg-error', role: 'alert', hidden: true });
}

export function showError(el, e, prefix = '') {
  el.hidden = !e;
  setText(el, e ? `${prefix}${errorText(e)}` : '');
}

/** A wide table in a horizontally scrollable, keyboard-focusable region. */
export function scrollWrap(tableEl, label) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, tableEl);
}

/** <table class="grid"> with headers; cols: [label | [label, 'num']]. Returns {table, tbody}. */
export function grid(cols, attrs = {}) {
  const tbody = h('tbody');
  const table = h('table', { class: `grid ${attrs.class || ''}`, 'data-testid': attrs.testid || null },
    h('thead', null, h('tr', null, cols.map((c) => {
      const [label, cls] = Array.isArray(c) ? c : [c, null];
      return h('th', { scope: 'col', class: cls, text: label });
    }))),
    tbody);
  return { table, tbody };
}

export function emptyRow(tbody, cols, text) {
  tbody.append(h('tr', null, h('td', { colspan: String(cols), class: 'muted', text })));
}

/** A value outlined with a text code when abnormal (never colour alone). */
export function flagged(text, bad, code) {
  if (!bad) return h('span', { text });
  return h('span', { class: 'nowrap' }, h('span', { class: 'val bad', text }), h('span', { class: 'qcode', text: code }));
}

/* ---------- node status: text + shape ---------- */

const STATUS = {
  online: { text: 'online', shape: () => svg('circle', { cx: '8', cy: '8', r: '6' }), ok: true },
  late: { text: 'LATE', shape: () => svg('polygon', { points: '8,1.5 14.5,14 1.5,14' }), ok: false },
  offline: { text: 'OFFLINE', shape: () => svg('path', { d: 'M3 3 L13 13 M13 3 L3 13' }), ok: false },
  never: { text: 'never seen', shape: () => svg('circle', { cx: '8', cy: '8', r: '5.5', class: 'hollow' }), ok: false },
};

/** "● online", "▲ LATE", "✕ OFFLINE", "○ never seen": abnormal ones outlined. */
export function statusBadge(status) {
  const s = STATUS[status] || { text: String(status || 'unknown').toUpperCase(), shape: () => svg('rect', { x: '3', y: '3', width: '10', height: '10' }), ok: false };
  return h('span', { class: `nstatus nstatus-${status || 'unknown'} ${s.ok ? '' : 'state-bad'}`, 'data-status': status || 'unknown' },
    svg('svg', { class: 'nstatus-shape', viewBox: '0 0 16 16', width: '14', height: '14', 'aria-hidden': 'true', focusable: 'false' }, s.shape()),
    h('span', { text: s.text }));
}

/** "14:05:03 (3 min ago)" with data-ms so ages can tick. */
export function agoSpan(ms, now, { never = 'never' } = {}) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted', text: never });
  return h('span', { class: 'nowrap', title: fmtDateTime(ms) },
    h('span', { text: fmtStamp(ms, now) }), ' ',
    h('span', { class: 'age tick-age', 'data-ms': String(ms), text: `(${fmtAge(now - ms)} ago)` }));
}

/** Refresh every `.tick-age[data-ms]` under root. */
export function tickAges(root, now) {
  for (const el of root.querySelectorAll('.tick-age[data-ms]')) {
    const ms = Number(el.dataset.ms);
    if (Number.isFinite(ms)) setText(el, el.dataset.bare ? fmtAge(now - ms) : `(${fmtAge(now - ms)} ago)`);
  }
}

/* ---------- the fleet (for pickers), cached briefly ---------- */

let fleetP = null;
let fleetAt = 0;

/** [{site, node, status, ...}] from GET /api/v1/monitoring/fleet, cached 15 s. */
export function getFleet(force = false) {
  if (force || !fleetP || Date.now() - fleetAt > 15_000) {
    fleetAt = Date.now();
    fleetP = api('/api/v1/monitoring/fleet').then(fleetItems).catch((e) => { fleetP = null; throw e; });
  }
  return fleetP;
}

export function fleetItems(res) {
  const list = Array.isArray(res) ? res : (res && (res.items || res.nodes)) || [];
  return list;
}

export const nodeKey = (n) => `${n.site}/${n.node}`;
export const nodeLabel = (n) => `${n.site} / ${n.node}`;

/**
 * A node <select>; the current choice comes from the route (site, node) or
 * the first node. onChange({site, node}). Returns {el, ready: Promise<{site,node}|null>}.
 */
export function nodePicker(ctx, onChange, { id = 'node-pick', label = 'Node' } = {}) {
  const sel = h('select', { id, 'data-testid': 'node-picker' });
  const el = h('div', { class: 'field' }, h('label', { for: id, text: label }), sel);
  const ready = getFleet().then((nodes) => {
    clear(sel);
    const want = ctx.params.get('site') && ctx.params.get('node') ? `${ctx.params.get('site')}/${ctx.params.get('node')}` : null;
    for (const n of nodes) sel.append(h('option', { value: nodeKey(n), text: nodeLabel(n) }));
    if (!nodes.length) { sel.append(h('option', { value: '', text: 'no nodes yet' })); sel.disabled = true; return null; }
    if (want && !nodes.some((n) => nodeKey(n) === want)) {
      const [site, node] = want.split('/');
      sel.prepend(h('option', { value: want, text: `${site} / ${node} (not in the fleet)` }));
    }
    sel.value = want || nodeKey(nodes[0]);
    return split(sel.value);
  });
  sel.addEventListener('change', () => onChange(split(sel.value)));
  return { el, ready, select: sel };
}

function split(v) {
  const i = v.indexOf('/');
  return i < 0 ? null : { site: v.slice(0, i), node: v.slice(i + 1) };
}

/* ---------- time range: presets and from/to ---------- */

export const PRESETS = [
  ['15m', '15 min', 15 * 60e3], ['1h', '1 h', 3600e3], ['8h', '8 h', 8 * 3600e3], ['24h', '24 h', 86400e3],
  ['7d', '7 d', 7 * 86400e3], ['30d', '30 d', 30 * 86400e3], ['1y', '1 year', 365 * 86400e3],
];

const pad = (n) => String(n).padStart(2, '0');
/** ms → value of <input type="datetime-local"> in the browser's zone. */
function localInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * Range presets plus from/to inputs in the browser's zone. State in the
 * route: range=<preset> or from=<ms>&to=<ms>. onChange() after a change.
 * Returns {el, get() → {from, to, preset}, params() → {range, from, to}}.
 */
export function rangePicker(ctx, onChange, { presets = PRESETS.map((p) => p[0]), dflt = '24h', idPrefix = 'rng' } = {}) {
  const list = PRESETS.filter((p) => presets.includes(p[0]));
  let preset = list.some((p) => p[0] === ctx.params.get('range')) ? ctx.params.get('range') : dflt;
  let fixed = null;
  const pf = Number(ctx.params.get('from'));
  const pt = Number(ctx.params.get('to'));
  if (pf && pt && pt > pf) { fixed = { from: pf, to: pt }; preset = null; }
  const btns = h('div', { class: 'range-buttons', role: 'group', 'aria-label': 'Time range' },
    list.map(([k, label]) => h('button', { type: 'button', class: 'btn', 'data-range': k, text: label, onclick: () => setPreset(k) })));
  const zone = zoneName();
  const from = h('input', { type: 'datetime-local', id: `${idPrefix}-from`, 'data-testid': 'range-from' });
  const to = h('input', { type: 'datetime-local', id: `${idPrefix}-to`, 'data-testid': 'range-to' });
  const apply = h('button', { type: 'button', class: 'btn', text: 'Apply', onclick: () => applyInputs() });
  const err = h('span', { class: 'dlg-error', role: 'alert' });
  const el = h('div', { class: 'range-picker' },
    h('div', { class: 'field' }, h('span', { class: 'field-label', text: 'Range' }), btns),
    h('div', { class: 'field' }, h('label', { for: from.id, text: `From (${zone})` }), from),
    h('div', { class: 'field' }, h('label', { for: to.id, text: `To (${zone})` }), to),
    h('div', { class: 'field' }, h('span', { class: 'field-label', 'aria-hidden': 'true', text: '\u00a0' }), apply),
    err);

  function get() {
    if (fixed) return { ...fixed, preset: null };
    const now = ctx.now();
    const ms = (PRESETS.find((p) => p[0] === preset) || PRESETS[3])[2];
    return { from: now - ms, to: now, preset };
  }
  function render() {
    for (const b of btns.children) b.setAttribute('aria-pressed', String(b.dataset.range === preset));
    const v = get();
    from.value = localInput(v.from);
    to.value = localInput(v.to);
    setText(err, '');
  }
  function setPreset(k) {
    preset = k;
    fixed = null;
    render();
    onChange();
  }
  function applyInputs() {
    const f = from.value ? new Date(from.value).getTime() : NaN;
    const t = to.value ? new Date(to.value).getTime() : NaN;
    if (!Number.isFinite(f) || !Number.isFinite(t) || t <= f) { setText(err, 'Give a start before the end.'); return; }
    fixed = { from: f, to: t };
    preset = null;
    render();
    onChange();
  }
  render();
  return {
    el,
    get,
    /** Zoom to a span picked on a chart. */
    set(f, t) { fixed = { from: f, to: t }; preset = null; render(); onChange(); },
    params() { return fixed ? { from: Math.round(fixed.from), to: Math.round(fixed.to) } : { range: preset }; },
    refresh: render,
  };
}

/* ---------- paging ---------- */

/** Follow next_cursor up to maxItems; returns {items, more}. */
export async function allPages(path, { maxItems = 5000, limit = 1000, signal } = {}) {
  const items = [];
  let cursor = null;
  for (;;) {
    const sep = path.includes('?') ? '&' : '?';
    const res = await api(`${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { signal });
    items.push(...(res.items || []));
    cursor = res.next_cursor || null;
    if (!cursor) return { items, more: false };
    if (items.length >= maxItems) return { items, more: true };
  }
}

/** `?site=..&node=..` */
export const nodeQuery = (n) => `site=${seg(n.site)}&node=${seg(n.node)}`;

/**
 * Join several series of (t ms, values) on one x axis (seconds) for
 * chart.js. A missing point is `undefined` (uPlot draws across it), an
 * explicit gap is `null` (uPlot breaks the line): see withGaps.
 * parts: [{t: [ms], cols: {avg: [], min: [], max: []}}]
 */
export function joinSeries(parts) {
  const xs = new Set();
  for (const p of parts) for (const t of p.t) xs.add(t);
  const x = [...xs].sort((a, b) => a - b);
  const idx = new Map(x.map((t, i) => [t, i]));
  const series = parts.map((p) => {
    const out = {};
    for (const [k, vals] of Object.entries(p.cols)) {
      const col = new Array(x.length).fill(undefined);
      p.t.forEach((t, i) => { col[idx.get(t)] = vals[i] === undefined ? null : vals[i]; });
      out[k] = col;
    }
    return out;
  });
  return { x: x.map((t) => t / 1000), series };
}

/**
 * Insert a null after any point followed by a jump longer than `maxStepMs`,
 * so that missing data shows as a gap, never as a line across it.
 */
export function withGaps(t, cols, maxStepMs) {
  const ot = [];
  const oc = Object.fromEntries(Object.keys(cols).map((k) => [k, []]));
  for (let i = 0; i < t.length; i += 1) {
    if (i > 0 && t[i] - t[i - 1] > maxStepMs) {
      ot.push(t[i - 1] + Math.min(maxStepMs, (t[i] - t[i - 1]) / 2));
      for (const k of Object.keys(cols)) oc[k].push(null);
    }
    ot.push(t[i]);
    for (const k of Object.keys(cols)) oc[k].push(cols[k][i] ?? null);
  }
  return { t: ot, cols: oc };
}
