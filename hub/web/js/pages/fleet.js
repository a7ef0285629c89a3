// Fleet overview: every node's status, last seen, backlog, gaps, software,
// active alarms by priority and active alerts. Refetched on the live
// notices and every 20 s (statuses turn late/offline by time alone).
import { h, clear, setText, append } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtAge, fmtInt, fmtTime, PRIORITIES } from '/common/js/format.js';
import { prioShape } from '/common/js/prio.js';
import { panel, errorBox, showError, scrollWrap, grid, emptyRow, statusBadge, agoSpan, tickAges, fleetItems, flagged } from '../ui.js';

const COLS = ['Node', 'Status', 'Last seen', ['Outbox', 'num'], ['Oldest unacked', 'num'], ['Missing seqs', 'num'], ['Lost spans', 'num'], 'Software', 'Active alarms', ['Alerts', 'num']];

/** {4: n, 3: n, 2: n, 1: n} from `alarms_active` ({p1 … p4}). */
export function alarmCounts(n) {
  const by = n.alarms_active || {};
  const out = {};
  for (const p of [4, 3, 2, 1]) out[p] = Number(by[`p${p}`]) || 0;
  return out;
}

/** Priority shapes with counts, and a text for screen readers. */
export function prioCounts(counts) {
  const any = [4, 3, 2, 1].some((p) => counts[p]);
  if (!any) return h('span', { class: 'muted', text: 'none' });
  return h('span', { class: 'prio-counts' },
    [4, 3, 2, 1].filter((p) => counts[p]).map((p) => h('span', { class: 'prio-count', 'aria-hidden': 'true' }, prioShape(p), h('span', { text: String(counts[p]) }))),
    h('span', { class: 'sr-only', text: [4, 3, 2, 1].filter((p) => counts[p]).map((p) => `${counts[p]} priority ${p} ${PRIORITIES[p].label}`).join(', ') }));
}

export function mount(root, ctx) {
  const err = errorBox();
  const summary = h('div', { class: 'fleet-summary', 'data-testid': 'fleet-summary' });
  const asOf = h('span', { class: 'h-sub' });
  const { table, tbody } = grid(COLS, { testid: 'fleet-table' });
  root.append(
    h('h1', { class: 'sr-only', text: 'Fleet overview' }),
    err,
    panel([h('span', { text: 'Fleet' }), h('span', { class: 'h-extra' }, asOf)], summary),
    h('section', { class: 'panel live-figure' }, h('h2', null, 'Nodes'), scrollWrap(table, 'Nodes of the fleet')));

  let fetchedAt = null;

  let nodes = [];

  function render() {
    const now = ctx.now();
    clear(tbody);
    const count = { online: 0, late: 0, offline: 0, never: 0 };
    for (const n of nodes) {
      count[n.status] = (count[n.status] || 0) + 1;
      const stale = n.status !== 'online';
      const outbox = n.outbox_batches;
      const oldestAge = n.oldest_unacked_age_s === null || n.oldest_unacked_age_s === undefined ? null : n.oldest_unacked_age_s * 1000;
      const missing = n.missing;
      const lost = n.lost_spans;
      const alerts = n.alerts_active;
      const href = `#/node?site=${seg(n.site)}&node=${seg(n.node)}`;
      // A node that is not online shows what it reported last, marked stale with its age.
      const staleCode = stale && n.last_seen_ms ? `STALE ${fmtAge(now - n.last_seen_ms)}` : null;
      const reported = (text, bad, code) => (staleCode ? flagged(text, true, staleCode) : flagged(text, bad, code));
      tbody.append(h('tr', { 'data-testid': 'fleet-row', 'data-site': n.site, 'data-node': n.node, 'data-status': n.status || '', class: stale ? 'stale' : null },
        h('td', { class: 'c-name nowrap' }, h('a', { href, text: `${n.site} / ${n.node}` })),
        h('td', null, statusBadge(n.status)),
        h('td', { 'data-testid': 'last-seen' }, agoSpan(n.last_seen_ms, now)),
        h('td', { class: 'num' }, outbox === null || outbox === undefined ? h('span', { class: 'muted', text: '—' }) : reported(`${fmtInt(outbox)} batches`, false)),
        h('td', { class: 'num' }, oldestAge === null || oldestAge === undefined ? h('span', { class: 'muted', text: 'none' }) : reported(fmtAge(oldestAge), oldestAge > 5 * 60e3, 'BEHIND')),
        h('td', { class: 'num' }, flagged(fmtInt(missing ?? 0), missing > 0, 'GAP')),
        h('td', { class: 'num' }, flagged(fmtInt(lost ?? 0), lost > 0, 'LOST')),
        h('td', { class: 'mono' }, n.software_version ? reported(n.software_version, false) : h('span', { class: 'muted', text: '—' })),
        h('td', null, prioCounts(alarmCounts(n))),
        h('td', { class: 'num' }, alerts === null || alerts === undefined ? h('span', { class: 'muted', text: '—' })
          : alerts ? flagged(fmtInt(alerts), true, 'FIRING') : h('span', { class: 'muted', text: '0' }))));
    }
    if (!nodes.length) emptyRow(tbody, COLS.length, 'No node has reported to this hub yet.');
    clear(summary);
    append(summary, [
      h('span', null, h('b', { text: fmtInt(nodes.length) }), nodes.length === 1 ? ' node' : ' nodes'),
      h('span', null, h('b', { text: fmtInt(count.online) }), ' online'),
      h('span', null, h('b', { text: fmtInt(count.late) }), ' late'),
      h('span', null, h('b', { text: fmtInt(count.offline) }), ' offline'),
      count.never ? h('span', null, h('b', { text: fmtInt(count.never) }), ' never seen') : null]);
    root.dataset.loaded = 'true';
  }

  async function load() {
    try {
      const [res, alerts] = await Promise.all([
        api('/api/v1/monitoring/fleet'),
        api('/api/v1/monitoring/alerts?state=active&limit=1000').catch(() => null),
      ]);
      ctx.live.clock(res.now_ms);
      const firing = new Map();
      for (const a of (alerts && alerts.items) || []) firing.set(`${a.site}/${a.node}`, (firing.get(`${a.site}/${a.node}`) || 0) + 1);
      for (const n of fleetItems(res)) n.alerts_active = alerts ? firing.get(`${n.site}/${n.node}`) || 0 : null;
      fetchedAt = Date.now();
      showError(err, null);
      nodes = fleetItems(res);
      render();
      setText(asOf, `as of ${fmtTime(fetchedAt)}`);
    } catch (e) {
      showError(err, e, 'Fleet not available: ');
    }
  }

  // A node notice says the node was just heard from (and, for a status,
  // what it reports): the row changes in place; anything else refetches.
  const known = ctx.refresh(load, { ms: 20_000, on: ['alarms', 'alert'] });
  ctx.on('node', (m) => {
    const n = nodes.find((x) => x.site === m.site && x.node === m.node);
    if (!n) { known.now(); return; }
    n.last_seen_ms = m.last_seen_ms;
    n.status = 'online';
    if (m.max_seq > (n.max_seq || 0)) n.max_seq = m.max_seq;
    if (m.cause === 'status') {
      n.software_version = m.software_version;
      n.outbox_batches = m.outbox_batches;
      n.outbox_bytes = m.outbox_bytes;
      n.dropped_batches = m.dropped_batches;
      n.oldest_unacked_ms = m.oldest_unacked_ms;
      // Both on the edge's clock.
      n.oldest_unacked_age_s = m.oldest_unacked_ms ? Math.max(0, Math.floor((m.status_ts_ms - m.oldest_unacked_ms) / 1000)) : null;
    }
    render();
  });
  ctx.every(1000, () => {
    tickAges(tbody, ctx.now());
    if (fetchedAt) setText(asOf, `as of ${fmtTime(fetchedAt)} (${fmtAge(Date.now() - fetchedAt)} ago)`);
  });
  return {};
}
