// Diagnostics: communication per device, outbox, hub, storage, samples,
// software, WebSocket clients and alarm-system health (EEMUA 191 targets).
import { h, clear, setText } from '/common/js/dom.js';
import { fmtAge, fmtBytes, fmtDuration, fmtInt, fmtNumber, fmtPct, fmtStamp } from '/common/js/format.js';
import { panel, errorText, statusWord, scrollWrap } from '../ui.js';

function kv(rows) {
  const dl = h('dl', { class: 'kv' });
  for (const [k, v, extra] of rows) {
    const dd = h('dd', null, v);
    if (extra) dd.append(' ', h('span', { class: 'target', text: extra }));
    dl.append(h('dt', { text: k }), dd);
  }
  return dl;
}

/** A value outlined with a text code when it is off its target. */
function checked(text, bad, code) {
  if (!bad) return h('span', { text });
  return h('span', null, h('span', { class: 'val bad', text }), h('span', { class: 'qcode', text: code || 'OVER TARGET' }));
}

export function mount(root, ctx) {
  const err = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const body = h('div', { class: 'stack' });
  root.append(h('h1', { class: 'sr-only', text: 'Diagnostics' }), err, body);

  function render(d) {
    clear(body);
    const now = ctx.now();
    const cols = ['Device', 'Protocol', 'Connection', 'Requests', 'Errors', 'Error rate', 'Cycle (ms)', 'Restarts', 'Units', 'Last good', 'Last error'];
    const numCols = new Set(['Requests', 'Errors', 'Error rate', 'Cycle (ms)', 'Restarts', 'Last good']);
    const tb = h('tbody');
    for (const dev of d.devices || []) {
      const rate = dev.requests ? dev.errors / dev.requests : null;
      tb.append(h('tr', { 'data-testid': 'diag-device-row' },
        h('td', { class: 'c-name', text: dev.name }),
        h('td', { text: dev.protocol }),
        h('td', null, statusWord(dev.connected, 'connected', 'NOT CONNECTED')),
        h('td', { class: 'num', text: fmtInt(dev.requests) }),
        h('td', { class: 'num', text: fmtInt(dev.errors) }),
        h('td', { class: 'num' }, checked(rate === null ? '—' : fmtPct(rate, 2), rate !== null && rate > 0.01, 'HIGH')),
        h('td', { class: 'num', text: dev.cycle_ms === null || dev.cycle_ms === undefined ? '—' : fmtNumber(dev.cycle_ms, 0) }),
        h('td', { class: 'num', text: fmtInt(dev.restarts) }),
        // units: [{device, unit_id, state}] (one per Modbus unit id)
        h('td', { text: (dev.units || []).map((u) => (u && typeof u === 'object' ? `unit ${u.unit_id}: ${String(u.state || '?').toLowerCase()}` : String(u))).join(', ') || '—' }),
        h('td', { class: 'num nowrap', text: dev.last_good_ms ? `${fmtAge(now - dev.last_good_ms)} ago` : 'never' }),
        h('td', { class: 'wrap', text: dev.last_error || '—' })));
    }
    body.append(panel('Communication', scrollWrap(h('table', { class: 'grid' },
      h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: numCols.has(c) ? 'num' : null, text: c })))), tb), 'Communication per device')));

    const hub = d.hub || {};
    const ob = d.outbox || {};
    const st = d.storage || {};
    const sm = d.samples || {};
    const ah = d.alarm_health || {};
    const used = st.max_size_bytes ? st.size_bytes / st.max_size_bytes : null;
    const grid = h('div', { class: 'diag-grid' });
    grid.append(
      panel('Hub and outbox', kv([
        ['Hub', hub.enabled ? statusWord(hub.connected, 'connected', 'NOT CONNECTED') : 'not used'],
        ['Last ack', hub.last_ack_ms ? `${fmtStamp(hub.last_ack_ms, now)} (${fmtAge(now - hub.last_ack_ms)} ago)` : '—'],
        ['Outbox depth', fmtInt(ob.depth ?? hub.outbox_depth)],
        ['Oldest unacked', (ob.oldest_unacked_s ?? hub.oldest_unacked_s) ? fmtAge((ob.oldest_unacked_s ?? hub.oldest_unacked_s) * 1000) : '—'],
        ['Sealed / published', `${fmtInt(ob.sealed)} / ${fmtInt(ob.published)}`],
        ['Acked / resent', `${fmtInt(ob.acked)} / ${fmtInt(ob.resent)}`],
        ['Dropped', checked(fmtInt(ob.dropped), ob.dropped > 0, 'DATA LOST')],
      ])),
      panel('Storage', kv([
        ['Size', checked(`${fmtBytes(st.size_bytes)} of ${fmtBytes(st.max_size_bytes)}${used !== null ? ` (${fmtPct(used, 0)})` : ''}`, !!st.over_limit, 'OVER LIMIT')],
        ['Free on disk', fmtBytes(st.free_bytes)],
        ['Retention', st.retention_s ? fmtDuration(st.retention_s) : '—'],
        ['Write failures', checked(fmtInt(st.write_failures), st.write_failures > 0, 'FAILURES')],
        ['Path', h('span', { class: 'mono', text: st.path || '—' })],
      ])),
      panel('Samples', kv([
        ['Seen', fmtInt(sm.seen)],
        ['Stored', fmtInt(sm.stored)],
        ['Filtered', `${fmtInt(sm.filtered)}${sm.seen ? ` (${fmtPct(sm.filtered / sm.seen, 0)})` : ''}`],
      ])),
      panel('Software', kv([
        ['Version', d.version || '—'],
        ['Uptime', fmtDuration(d.uptime_s)],
        ['WebSocket clients', fmtInt(d.websocket_clients)],
      ])),
    );
    const hrows = [
      ['Average alarms per 10 min', fmtNumber(ah.avg_per_10min, 1), ah.avg_per_10min > 1, '≤ 1 per 10 min (manageable)'],
      ['Peak alarms per 10 min', fmtInt(ah.peak_per_10min), ah.peak_per_10min > 10, '≤ 10 per 10 min'],
      ['Time in flood', `${fmtNumber(ah.flood_percent, 1)} %`, ah.flood_percent > 1, '< 1 % of the time'],
      ['Share of the 10 most frequent', fmtPct(ah.top10_share, 0), ah.top10_share > 0.05, '≤ 5 % of all alarms'],
      ['Chattering alarms', (ah.chattering || []).length ? `${(ah.chattering || []).length}: ${(ah.chattering || []).join(', ')}` : 'none', (ah.chattering || []).length > 0, 'none'],
      ['Stale alarms (active > 24 h)', (ah.stale || []).length ? `${(ah.stale || []).length}: ${(ah.stale || []).join(', ')}` : 'none', (ah.stale || []).length > 0, 'none'],
    ];
    const hb = h('tbody');
    for (const [label, text, bad, target] of hrows) {
      hb.append(h('tr', null,
        h('td', { text: label }),
        h('td', { class: 'num' }, bad ? h('span', { class: 'val bad', text }) : h('span', { text })),
        h('td', null, bad ? h('span', { class: 'qcode', text: 'OFF TARGET' }) : 'ok'),
        h('td', { class: 'target', text: `target: ${target}` })));
    }
    const flood = ah.in_flood ? h('span', { class: 'hdr-flood bg-p4', text: 'IN FLOOD NOW' }) : h('span', { class: 'muted', text: 'not in flood now' });
    grid.append(h('section', { class: 'panel span-2' },
      h('h2', null, h('span', { text: 'Alarm system health (EEMUA 191)' }), h('span', { class: 'h-extra' }, flood)),
      h('table', { class: 'grid health' },
        h('thead', null, h('tr', null, ['Figure', 'Value', 'Check', 'Reference'].map((c) => h('th', { scope: 'col', class: c === 'Value' ? 'num' : null, text: c })))),
        hb)));
    body.append(grid);
  }

  ctx.poll('/api/v1/diagnostics', 5000, (d, e) => {
    err.hidden = !e;
    if (e) { setText(err, `Diagnostics not available: ${errorText(e)}`); return; }
    render(d);
  });
  return {};
}
