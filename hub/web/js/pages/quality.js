// Data quality: per node and tag over a chosen period, the windows the hub
// expected and has, the gaps (count and longest) and the share of samples
// of bad quality. Worst coverage first; node totals on top.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtInt, fmtPct, fmtDuration, fmtDateTime, fmtStamp } from '/common/js/format.js';
import { panel, errorBox, showError, scrollWrap, grid, emptyRow, rangePicker, iso, getFleet, nodeKey, nodeLabel, flagged } from '../ui.js';

const COV_MIN = 0.99;

function cells(r) {
  const cov = r.coverage;
  return [
    h('td', { class: 'num', text: r.width_ms ? fmtDuration(r.width_ms / 1000) : '—' }),
    h('td', { class: 'num', text: fmtInt(r.expected) }),
    h('td', { class: 'num', text: fmtInt(r.present) }),
    h('td', { class: 'num' }, flagged(fmtPct(cov, 1), Number.isFinite(cov) && cov < COV_MIN, 'LOW')),
    h('td', { class: 'num' }, flagged(fmtInt(r.gaps ?? 0), r.gaps > 0, 'GAPS')),
    h('td', { class: 'num', text: r.longest_gap_ms ? fmtDuration(r.longest_gap_ms / 1000) : '—' }),
    h('td', { class: 'num' }, flagged(fmtPct(r.bad_share, 2), r.bad_share > 0, 'BAD')),
  ];
}

const COLS = ['Window', 'Expected', 'Present', 'Coverage', 'Gaps', 'Longest gap', 'Bad quality'].map((c) => [c, 'num']);

export function mount(root, ctx) {
  let which = ctx.params.get('site') && ctx.params.get('node') ? `${ctx.params.get('site')}/${ctx.params.get('node')}` : '';
  const err = errorBox();
  const sel = h('select', { id: 'q-node', 'data-testid': 'node-picker' }, h('option', { value: '', text: 'all nodes' }));
  const range = rangePicker(ctx, () => { save(); load(); }, { presets: ['1h', '8h', '24h', '7d', '30d', '1y'], dflt: '24h', idPrefix: 'q-rng' });
  const totals = grid([['Node'], ...COLS], { testid: 'quality-totals' });
  const tags = grid([['Node'], ['Tag'], ...COLS], { testid: 'quality-tags' });
  const span = h('span', { class: 'h-sub' });
  root.append(
    h('h1', { class: 'sr-only', text: 'Data quality' }),
    h('div', { class: 'toolbar' }, h('div', { class: 'field' }, h('label', { for: 'q-node', text: 'Node' }), sel), range.el),
    err,
    panel([h('span', { text: 'Per node' }), span], scrollWrap(totals.table, 'Data quality per node')),
    panel('Per tag (worst coverage first)', scrollWrap(tags.table, 'Data quality per tag'),
      h('p', { class: 'chart-note', text: `Expected: windows of the tag's finest width due in the period (those ending in the last 2 minutes are not due yet; a tag that began within the period counts as missing before). A gap is a run of missing windows. Coverage under ${fmtPct(COV_MIN, 0)}, any gap and any bad-quality share are outlined.` })));

  getFleet().then((nodes) => {
    for (const n of nodes) sel.append(h('option', { value: nodeKey(n), text: nodeLabel(n) }));
    if (which && !nodes.some((n) => nodeKey(n) === which)) sel.append(h('option', { value: which, text: which }));
    sel.value = which;
  }).catch(() => {});
  sel.addEventListener('change', () => { which = sel.value; save(); load(); });

  function save() {
    const i = which.indexOf('/');
    ctx.setParams({ site: i > 0 ? which.slice(0, i) : '', node: i > 0 ? which.slice(i + 1) : '', ...range.params() });
  }

  let token = 0;
  async function load() {
    const my = ++token;
    const { from, to } = range.get();
    const i = which.indexOf('/');
    const q = `${i > 0 ? `site=${seg(which.slice(0, i))}&node=${seg(which.slice(i + 1))}&` : ''}from=${iso(from)}&to=${iso(to)}`;
    let res;
    try {
      res = await api(`/api/v1/monitoring/quality?${q}`);
    } catch (e) {
      if (my === token) showError(err, e, 'Data quality not available: ');
      return;
    }
    if (my !== token) return;
    showError(err, null);
    setText(span, `${fmtDateTime(from)} – ${fmtStamp(to, from)}`);
    // Either {nodes: [{site, node, totals, tags: [...]}]} or {items: [...], totals|nodes: [...]}.
    let rows = [];
    let tots = [];
    if (Array.isArray(res.nodes) && res.nodes.some((n) => Array.isArray(n.tags))) {
      for (const n of res.nodes) {
        tots.push({ site: n.site, node: n.node, ...(n.totals || n.total || {}) });
        for (const t of n.tags || []) rows.push({ site: n.site, node: n.node, ...t });
      }
    } else {
      rows = res.items || res.tags || (Array.isArray(res) ? res : []);
      tots = res.totals || res.nodes || [];
    }
    rows.sort((a, b) => (a.coverage ?? 1) - (b.coverage ?? 1) || (b.gaps ?? 0) - (a.gaps ?? 0));
    clear(totals.tbody);
    for (const t of tots) totals.tbody.append(h('tr', { 'data-testid': 'quality-node-row' }, h('td', { class: 'c-name nowrap', text: `${t.site} / ${t.node}` }), cells(t)));
    if (!tots.length) emptyRow(totals.tbody, 8, 'No data in this period.');
    clear(tags.tbody);
    for (const r of rows) {
      tags.tbody.append(h('tr', { 'data-testid': 'quality-row' },
        h('td', { class: 'nowrap', text: `${r.site} / ${r.node}` }),
        h('td', { class: 'c-name' }, h('a', { href: `#/tags?site=${seg(r.site)}&node=${seg(r.node)}&tag=${seg(r.tag)}&from=${Math.round(from)}&to=${Math.round(to)}`, text: r.tag })),
        cells(r)));
    }
    if (!rows.length) emptyRow(tags.tbody, 9, 'No tag windows in this period.');
  }

  ctx.refresh(load, { ms: 120_000 });
  return {};
}
