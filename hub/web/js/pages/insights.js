// Insights: what changed in the fleet over a period and why, most
// important first; each with the numbers behind it and a link to the page
// whose chart shows it (docs/insights.md).
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtNumber, fmtDateTime, fmtStamp } from '/common/js/format.js';
import { panel, errorBox, showError, rangePicker, iso, getFleet, nodeKey, nodeLabel } from '../ui.js';

const KIND = {
  kpi_change: 'KPI change',
  forecast_degraded: 'Forecast accuracy',
  sensor_stuck: 'Stuck sensor',
  sensor_drift: 'Drifting sensor',
  data_quality: 'Data quality',
  kpi_trend: 'KPI trend',
};

// Shown beside each insight: its key numbers, with units.
function figureText(f) {
  if (f.value === null || f.value === undefined) return null;
  if (f.name.endsWith('_ms') && f.unit === 'ms') return null;
  const abs = Math.abs(f.value);
  const d = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return `${f.name.replace(/_/g, ' ')} ${fmtNumber(f.value, d)}${f.unit ? ` ${f.unit}` : ''}`;
}

function item(it, rank) {
  const figs = (it.figures || []).map(figureText).filter(Boolean);
  return h('li', { class: 'insight', 'data-testid': 'insight', 'data-kind': it.kind, 'data-importance': String(Math.round(it.importance)) },
    h('div', { class: 'insight-head' },
      h('span', { class: 'insight-rank', text: `${rank}.` }),
      h('span', { class: 'insight-kind', text: KIND[it.kind] || it.kind }),
      h('span', { class: 'insight-where', text: `${it.site}/${it.node}${it.subject ? ` · ${it.subject}` : ''}` }),
      h('span', { class: 'insight-imp', title: 'Importance (0–100): how the list is ranked', text: `importance ${Math.round(it.importance)}` })),
    h('p', { class: 'insight-text', 'data-testid': 'insight-text', text: it.text }),
    figs.length ? h('details', { class: 'insight-figures' },
      h('summary', { text: 'Numbers' }),
      h('ul', {}, figs.map((t) => h('li', { class: 'num', text: t })))) : null,
    h('a', { href: it.link, class: 'insight-link', 'data-testid': 'insight-link', text: 'Show the chart' }));
}

export function mount(root, ctx) {
  let which = ctx.params.get('site') && ctx.params.get('node') ? `${ctx.params.get('site')}/${ctx.params.get('node')}` : '';
  const err = errorBox();
  const sel = h('select', { id: 'i-node', 'data-testid': 'node-picker' }, h('option', { value: '', text: 'all nodes' }));
  const range = rangePicker(ctx, () => { save(); load(); }, { presets: ['15m', '1h', '8h', '24h', '7d', '30d'], dflt: '7d', idPrefix: 'i-rng' });
  const list = h('ol', { class: 'insights', 'data-testid': 'insights-list', 'aria-live': 'polite', 'data-count': '0' });
  const span = h('span', { class: 'h-sub' });
  const note = h('p', { class: 'chart-note' });
  root.append(
    h('h1', { class: 'sr-only', text: 'Insights' }),
    h('div', { class: 'toolbar' }, h('div', { class: 'field' }, h('label', { for: 'i-node', text: 'Node' }), sel), range.el),
    err,
    panel([h('span', { text: 'Insights, most important first' }), span], list, note));

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
    let { from, to, preset } = range.get();
    if (preset) {
      // Whole minutes: the hub reuses an answer for the same period.
      const span = to - from;
      to = Math.floor(to / 60e3) * 60e3;
      from = to - span;
    }
    const i = which.indexOf('/');
    const q = `${i > 0 ? `site=${seg(which.slice(0, i))}&node=${seg(which.slice(i + 1))}&` : ''}from=${iso(from)}&to=${iso(to)}`;
    let res;
    try {
      res = await api(`/api/v1/analysis/insights?${q}`);
    } catch (e) {
      if (my === token) showError(err, e, 'Insights not available: ');
      return;
    }
    if (my !== token) return;
    showError(err, null);
    setText(span, `${fmtDateTime(res.from_ms)} – ${fmtStamp(res.to_ms, res.from_ms)}, against ${fmtDateTime(res.before_from_ms)} – ${fmtStamp(res.from_ms, res.before_from_ms)}`);
    clear(list);
    const items = res.items || [];
    items.forEach((it, k) => list.append(item(it, k + 1)));
    if (!items.length) list.append(h('li', { class: 'insight-none', 'data-testid': 'insights-empty', text: 'Nothing stands out in this period: no KPI moved past its threshold, no forecast got worse, no sensor is stuck or drifting and the data arrived.' }));
    list.dataset.count = String(items.length);
    setText(note, `Computed ${fmtStamp(res.computed_ms, Date.now())}; an answer is reused for a minute. Thresholds: docs/insights.md.`);
  }

  load();
  return { unmount() { token++; } };
}
