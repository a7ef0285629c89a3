// Alarms across the fleet: the active ones (priority, then newest), the
// journal history page by page, and each node's alarm-system figures
// against the EEMUA 191 targets.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtNumber, fmtInt, fmtPct, fmtStamp, fmtDateTime, ALARM_STATE_TEXT, PRIORITIES } from '/common/js/format.js';
import { prioBadge, prioLegend } from '/common/js/prio.js';
import { panel, errorBox, showError, scrollWrap, grid, emptyRow, agoSpan, tickAges, flagged } from '../ui.js';

const PAGE = 100;

// EEMUA 191 (and ISA-18.2) figures of a manageable alarm system; the same
// references as the edge HMI's Diagnostics page.
const TARGETS = {
  avg: [1, '≤ 1 per 10 min'],
  peak: [10, '≤ 10 per 10 min'],
  flood: [0.01, '< 1 % of the time'],
  top10: [0.05, '≤ 5 % of all alarms'],
};

const prio = (a) => Number(a.priority) || 1;
const when = (a) => a.ts_ms ?? null;
const alarmName = (a) => a.alarm || a.name;

function stateText(s) { return ALARM_STATE_TEXT[s] || String(s || '—'); }

export function mount(root, ctx) {
  const err = errorBox();
  const act = grid(['Priority', 'Node', 'Alarm', 'State', ['Value', 'num'], 'Last change'], { class: 'alarms', testid: 'active-alarms' });
  const actCount = h('span', { class: 'h-sub' });
  const hist = grid(['Time', 'Node', 'Alarm', 'Priority', 'Change', 'State', ['Value', 'num'], 'By', 'Comment'], { class: 'alarms', testid: 'alarm-history' });
  const more = h('button', { type: 'button', class: 'btn', text: 'Load older entries', 'data-testid': 'history-more' });
  const histErr = errorBox();
  const health = grid(['Node', 'As of', ['Avg per 10 min', 'num'], ['Peak per 10 min', 'num'], ['Time in flood', 'num'], ['Top-10 share', 'num'], 'Flood now', 'Chattering', 'Stale (> 24 h)'], { testid: 'alarm-health' });
  const healthErr = errorBox();

  root.append(
    h('h1', { class: 'sr-only', text: 'Alarms across the fleet' }),
    err,
    h('section', { class: 'panel live-figure' },
      h('h2', null, h('span', { text: 'Active alarms' }), actCount, h('span', { class: 'h-extra' }, prioLegend())),
      scrollWrap(act.table, 'Active alarms')),
    h('section', { class: 'panel live-figure' },
      h('h2', null, h('span', { text: 'Alarm-system health per node (EEMUA 191)' })),
      healthErr,
      scrollWrap(health.table, 'Alarm-system health per node'),
      h('p', { class: 'chart-note', text: `Targets: average ${TARGETS.avg[1]}, peak ${TARGETS.peak[1]}, flood ${TARGETS.flood[1]}, top ten ${TARGETS.top10[1]}; no chattering (3 or more activations in 60 s) and no stale alarm. Off-target figures are outlined.` })),
    panel('History', histErr, scrollWrap(hist.table, 'Alarm history'), h('div', { class: 'more-row' }, more)));

  async function loadActive() {
    try {
      const res = await api('/api/v1/monitoring/alarms?active=true&limit=1000');
      const items = (Array.isArray(res) ? res : res.items || []).slice();
      items.sort((a, b) => prio(b) - prio(a) || (when(b) ?? 0) - (when(a) ?? 0));
      showError(err, null);
      const now = ctx.now();
      clear(act.tbody);
      for (const a of items) {
        const p = prio(a);
        const unack = a.state === 'unacknowledged' || a.state === 'returned_unacknowledged';
        act.tbody.append(h('tr', { class: `alarm-row p${p} ${unack ? 'unack' : ''}`, 'data-testid': 'alarm-row', 'data-alarm': alarmName(a), 'data-node': a.node },
          h('td', null, prioBadge(p)),
          h('td', { class: 'nowrap' }, h('a', { href: `#/node?site=${seg(a.site)}&node=${seg(a.node)}`, text: `${a.site} / ${a.node}` })),
          h('td', { class: 'a-name' }, alarmName(a)),
          h('td', { text: stateText(a.state) }),
          h('td', { class: 'num', text: a.value === null || a.value === undefined ? '—' : fmtNumber(a.value) }),
          h('td', null, agoSpan(when(a), now, { never: '—' }), a.change ? ` ${a.change}` : '')));
      }
      if (!items.length) emptyRow(act.tbody, 6, 'No active alarm anywhere in the fleet.');
      const counts = [4, 3, 2, 1].map((q) => [q, items.filter((a) => prio(a) === q).length]).filter(([, n]) => n);
      setText(actCount, items.length ? `${items.length}: ${counts.map(([q, n]) => `${n} ${PRIORITIES[q].label.toLowerCase()}`).join(', ')}` : 'none');
    } catch (e) {
      showError(err, e, 'Active alarms not available: ');
    }
  }

  async function loadHealth() {
    try {
      const res = await api('/api/v1/monitoring/alarm-health');
      ctx.live.clock(res.now_ms);
      const items = res.nodes || [];
      showError(healthErr, null);
      const now = ctx.now();
      clear(health.tbody);
      for (const n of items) {
        const cur = n;
        const chat = cur.chattering || [];
        const stale = cur.stale || [];
        const names = (l) => (l.length ? flagged(`${l.length}: ${l.slice(0, 4).join(', ')}${l.length > 4 ? ' …' : ''}`, true, 'OFF TARGET') : h('span', { text: 'none' }));
        health.tbody.append(h('tr', { 'data-testid': 'health-row', 'data-node': n.node },
          h('td', { class: 'c-name nowrap' }, `${n.site} / ${n.node}`),
          h('td', null, agoSpan(cur.ts_ms, now, { never: 'no report yet' })),
          h('td', { class: 'num' }, flagged(fmtNumber(cur.avg_per_10min, 1), cur.avg_per_10min > TARGETS.avg[0], 'OFF TARGET')),
          h('td', { class: 'num' }, flagged(fmtInt(cur.peak_per_10min), cur.peak_per_10min > TARGETS.peak[0], 'OFF TARGET')),
          h('td', { class: 'num' }, flagged(fmtPct(cur.flood_share, 1), cur.flood_share >= TARGETS.flood[0], 'OFF TARGET')),
          h('td', { class: 'num' }, flagged(fmtPct(cur.top10_share, 0), cur.top10_share > TARGETS.top10[0], 'OFF TARGET')),
          h('td', null, cur.in_flood ? h('span', { class: 'hdr-flood bg-p4', text: 'IN FLOOD' }) : h('span', { text: 'no' })),
          h('td', null, names(chat)),
          h('td', null, names(stale))));
      }
      if (!items.length) emptyRow(health.tbody, 9, 'No node has sent alarm-system figures yet (every 10 minutes).');
    } catch (e) {
      showError(healthErr, e, 'Alarm-system health not available: ');
    }
  }

  let cursor = null;
  let histLoading = false;
  async function loadHistory(reset) {
    if (histLoading) return;
    histLoading = true;
    more.disabled = true;
    if (reset) cursor = null;
    try {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (cursor) q.set('cursor', cursor);
      const res = await api(`/api/v1/monitoring/alarms?${q}`);
      const items = res.items || [];
      if (reset) clear(hist.tbody);
      const now = ctx.now();
      for (const a of items) {
        const p = prio(a);
        hist.tbody.append(h('tr', { class: `alarm-row p${p}`, 'data-testid': 'history-row' },
          h('td', { class: 'nowrap', title: fmtDateTime(a.ts_ms), text: fmtStamp(a.ts_ms, now) }),
          h('td', { class: 'nowrap', text: `${a.site} / ${a.node}` }),
          h('td', { text: alarmName(a) }),
          h('td', null, prioBadge(p, { short: true })),
          h('td', { text: a.change || '' }),
          h('td', { text: stateText(a.state) }),
          h('td', { class: 'num', text: a.value === null || a.value === undefined ? '—' : fmtNumber(a.value) }),
          h('td', { text: a.by_user || a.by || '' }),
          h('td', { class: 'wrap', text: a.comment || '' })));
      }
      if (!hist.tbody.firstChild) emptyRow(hist.tbody, 9, 'No alarm has reached the hub.');
      cursor = res.next_cursor || null;
      more.hidden = !cursor;
      showError(histErr, null);
    } catch (e) {
      showError(histErr, e, 'Alarm history not available: ');
    }
    more.disabled = false;
    histLoading = false;
  }
  more.addEventListener('click', () => loadHistory(false));

  ctx.refresh(loadActive, { ms: 30_000, on: ['alarms'] });
  ctx.refresh(loadHealth, { ms: 120_000, on: ['alarms'] });
  loadHistory(true);
  ctx.on('resync', () => loadHistory(true));
  ctx.every(1000, () => tickAges(root, ctx.now()));
  return {};
}

