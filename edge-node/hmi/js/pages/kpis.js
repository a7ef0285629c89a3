// KPIs: current and closed windows, grouped by KPI name.
import { h, clear, setText } from '/common/js/dom.js';
import { fmtStamp, qualityCode } from '/common/js/format.js';
import { panel, errorText } from '../ui.js';
import { kpiNumber, kpiUnit, factorText, coverageText, offTarget, better } from '../kpi-format.js';

/** "14:00" today (or the same day as ref), else "2026-05-03 14:00". */
function stamp(ms, ref) {
  const s = fmtStamp(ms, ref);
  return s.length > 8 ? s.slice(0, -3) : s.slice(0, 5);
}

export function mount(root, ctx) {
  const err = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const groups = h('div', { class: 'stack' });
  root.append(h('h1', { class: 'sr-only', text: 'KPIs' }), err, groups);

  function render(list) {
    clear(groups);
    const byName = new Map();
    for (const k of list) {
      if (!byName.has(k.name)) byName.set(k.name, []);
      byName.get(k.name).push(k);
    }
    if (!byName.size) groups.append(h('p', { class: 'panel muted', text: 'No KPIs configured.' }));
    const now = ctx.now();
    for (const [name, ks] of byName) {
      ks.sort((a, b) => (a.closed === b.closed ? b.start_ms - a.start_ms : a.closed ? 1 : -1));
      const hasFactors = ks.some((k) => k.factors);
      const cols = ['Window', 'Start – end', 'Value', 'Target', 'Coverage', 'Quality'];
      if (hasFactors) cols.push('Availability', 'Performance', 'Quality rate');
      const numeric = new Set(['Value', 'Target', 'Coverage', 'Availability', 'Performance', 'Quality rate']);
      const tbody = h('tbody');
      for (const k of ks) {
        const unit = kpiUnit(k);
        const qOk = k.quality === 'good';
        const val = h('span', { class: `val${qOk ? '' : ' bad'}`, text: kpiNumber(k, k.value) });
        const off = offTarget(k);
        const tr = h('tr', { class: k.closed ? 'kpi-closed' : 'kpi-current', 'data-testid': 'kpi-row', 'data-kpi': k.name },
          h('td', { text: `${k.label || k.window}${k.closed ? '' : ' (current)'}` }),
          h('td', { class: 'nowrap', text: `${stamp(k.start_ms, now)} – ${k.end_ms && k.closed ? stamp(k.end_ms, k.start_ms) : 'so far'}` }),
          h('td', { class: 'num nowrap' }, val, h('span', { class: 'unit', text: unit }),
            h('span', { class: 'kmark' },
              h('span', { 'aria-hidden': 'true', text: off ? (better(k) === 'lower' ? '▲' : '▼') : '' }),
              off ? h('span', { class: 'sr-only', text: better(k) === 'lower' ? 'above target' : 'below target' }) : null)),
          h('td', { class: 'num nowrap', text: k.target === null || k.target === undefined ? '—' : `${kpiNumber(k, k.target)} ${unit}` }),
          h('td', { class: 'num', text: coverageText(k.coverage) }),
          h('td', null, qOk ? 'good' : h('span', { class: 'qcode', text: qualityCode(k.quality, null) })));
        if (hasFactors) {
          const f = k.factors || {};
          tr.append(h('td', { class: 'num', text: factorText(f.availability) }), h('td', { class: 'num', text: factorText(f.performance) }), h('td', { class: 'num', text: factorText(f.quality) }));
        }
        tbody.append(tr);
      }
      const kind = ks[0].kind.replace('_', ' ');
      groups.append(panel([h('span', { class: 'h-name', text: name }), h('span', { class: 'h-extra muted', text: kind })],
        h('table', { class: 'grid' },
          h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: numeric.has(c) ? 'num' : null, text: c })))),
          tbody)));
    }
  }

  ctx.poll('/api/v1/kpis', 15000, (d, e) => {
    err.hidden = !e;
    if (e) { setText(err, `KPIs not available: ${errorText(e)}`); return; }
    render(d || []);
  });
  return {};
}
