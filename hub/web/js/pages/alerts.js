// Alerts: what the hub's alert rules raised (node offline, backlog growing,
// sequence gaps, KPI below target, alarm flood), active or all, with every
// webhook delivery attempt.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtNumber, fmtStamp, fmtDateTime, fmtDuration } from '/common/js/format.js';
import { errorBox, showError, scrollWrap, grid, emptyRow, agoSpan, tickAges } from '../ui.js';

const PAGE = 100;

function deliveries(list, now) {
  if (!list || !list.length) return h('span', { class: 'muted', text: 'none' });
  const ok = list.filter((d) => d.ok === true || (d.status >= 200 && d.status < 300) || d.outcome === 'delivered');
  const last = list[list.length - 1];
  const lastOk = ok.includes(last);
  const lastAt = last.at_ms ?? last.ts_ms ?? last.attempt_ms;
  const what = last.status ? `HTTP ${last.status}` : (last.error || last.outcome || '');
  const text = `${list.length} attempt${list.length === 1 ? '' : 's'}, last ${lastAt ? fmtStamp(lastAt, now) : ''} ${what}`.trim();
  if (lastOk) return h('span', { text });
  return h('span', null, h('span', { class: 'val bad', text }), h('span', { class: 'qcode', text: 'NOT DELIVERED' }));
}

export function mount(root, ctx) {
  let state = ctx.params.get('state') === 'all' ? 'all' : 'active';
  let cursor = null;
  const err = errorBox();
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Which alerts' });
  const t = grid(['State', 'Rule', 'Kind', 'Node', 'Since', 'Resolved', ['Value', 'num'], 'Message', 'Deliveries'], { testid: 'alerts-table' });
  const more = h('button', { type: 'button', class: 'btn', text: 'Load more', 'data-testid': 'alerts-more' });
  const tabpanel = h('section', { class: 'panel live-figure', role: 'tabpanel', id: 'alerts-panel' }, scrollWrap(t.table, 'Alerts'), h('div', { class: 'more-row' }, more));
  for (const [k, label] of [['active', 'Active'], ['all', 'All (history)']]) {
    tabs.append(h('button', { type: 'button', role: 'tab', id: `tab-${k}`, 'aria-controls': 'alerts-panel', 'aria-selected': String(k === state), 'data-state': k, text: label, onclick: () => { state = k; ctx.setParams({ state }); renderTabs(); load(true); } }));
  }
  function renderTabs() {
    for (const b of tabs.children) b.setAttribute('aria-selected', String(b.dataset.state === state));
    tabpanel.setAttribute('aria-labelledby', `tab-${state}`);
  }
  renderTabs();
  root.append(h('h1', { class: 'sr-only', text: 'Alerts' }), err, tabs, tabpanel,
    h('p', { class: 'chart-note', text: 'Alert rules are set in the hub configuration ([[alert]] in hub.toml); each alert goes to its webhooks, HMAC-signed, retried with backoff.' }));

  let loading = false;
  async function load(reset) {
    if (loading) return;
    loading = true;
    more.disabled = true;
    if (reset) cursor = null;
    try {
      const q = new URLSearchParams({ state, limit: String(PAGE) });
      if (cursor) q.set('cursor', cursor);
      const res = await api(`/api/v1/monitoring/alerts?${q}`);
      const items = res.items || [];
      if (reset) clear(t.tbody);
      const now = ctx.now();
      for (const a of items) {
        const active = a.state === 'active' || a.state === 'firing';
        t.tbody.append(h('tr', { 'data-testid': 'alert-row', 'data-state': a.state, class: active ? null : 'stale' },
          h('td', null, active ? h('span', { class: 'state-bad', text: 'ACTIVE' }) : h('span', { text: a.state || 'resolved' })),
          h('td', { class: 'c-name', text: a.rule }),
          h('td', { text: a.kind || '' }),
          h('td', { class: 'nowrap' }, a.site ? h('a', { href: `#/node?site=${seg(a.site)}&node=${seg(a.node)}`, text: `${a.site} / ${a.node}` }) : '—'),
          h('td', null, agoSpan(a.since_ms, now, { never: '—' })),
          h('td', { class: 'nowrap', title: a.resolved_ms ? fmtDateTime(a.resolved_ms) : '' , text: a.resolved_ms ? `${fmtStamp(a.resolved_ms, now)} (after ${fmtDuration((a.resolved_ms - a.since_ms) / 1000)})` : '—' }),
          h('td', { class: 'num', text: a.value === null || a.value === undefined ? '—' : fmtNumber(a.value) }),
          h('td', { class: 'wrap', text: a.message || '' }),
          h('td', null, deliveries(a.deliveries, now))));
      }
      if (!t.tbody.firstChild) emptyRow(t.tbody, 9, state === 'active' ? 'No active alert.' : 'No alert has been raised.');
      cursor = res.next_cursor || null;
      more.hidden = !cursor;
      showError(err, null);
    } catch (e) {
      showError(err, e, 'Alerts not available: ');
    }
    more.disabled = false;
    loading = false;
  }
  more.addEventListener('click', () => load(false));
  ctx.refresh(() => load(true), { ms: 30_000, on: ['alert'] });
  ctx.every(1000, () => tickAges(root, ctx.now()));
  setText(more, 'Load more');
  return {};
}
