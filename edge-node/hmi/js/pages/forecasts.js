// Forecasts: per model, actual history of the target and the forecast with
// its lo–hi band, rolling accuracy, and the top feature attributions.
import { h, clear, setText } from '/common/js/dom.js';
import { Chart } from '/common/js/chart.js';
import { fmtNumber, fmtPct, fmtInt, fmtStamp, fmtDuration, fmtAge } from '/common/js/format.js';
import { panel, errorText, getTags } from '../ui.js';

const TOP = 8;

export function mount(root, ctx) {
  const err = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const list = h('div', { class: 'stack' });
  root.append(h('h1', { class: 'sr-only', text: 'Forecasts' }), err, list);
  const cards = new Map(); // model → {chart, metrics, attr, head}
  let info = new Map();
  getTags().then((t) => { info = t.byName; }).catch(() => {});

  function card(f) {
    let c = cards.get(f.model);
    if (c) return c;
    const chartEl = h('div', { class: 'chart', 'data-testid': 'forecast-chart', 'data-model': f.model, role: 'figure', 'aria-label': `Forecast of ${f.target} by ${f.model}` });
    const metrics = h('div', { class: 'fc-metrics' });
    const attr = h('ol', { class: 'attr-list', 'data-testid': 'forecast-explanation', 'aria-label': `Feature attributions of ${f.model}` });
    const head = h('span', { class: 'h-extra muted' });
    const sec = panel([h('span', { class: 'h-name', text: `${f.model} → ${f.target}` }), head],
      h('div', { class: 'fc-card' },
        chartEl,
        h('div', null, metrics, h('h3', { text: 'Why: top feature attributions' }), attr,
          h('p', { class: 'muted', text: 'Bar right of the centre line: pushes the forecast up; hatched bar left: pushes it down.' }))));
    sec.dataset.testid = 'forecast-card';
    list.append(sec);
    c = { sec, chart: new Chart(chartEl, { height: 280, label: f.model, onReset: () => {} }), metrics, attr, head };
    cards.set(f.model, c);
    return c;
  }

  function metric(label, value, sub) {
    return h('div', { class: 'fc-metric' }, h('span', { class: 'm-label', text: label }), h('span', { class: 'm-value', text: value }),
      sub ? h('span', { class: 'muted', text: ` ${sub}` }) : null);
  }

  function render(fcs) {
    const seen = new Set();
    const now = ctx.now();
    if (!fcs.length) {
      clear(list);
      cards.clear();
      list.append(h('p', { class: 'panel muted', text: 'No forecast models are running on this node.' }));
      return;
    }
    for (const f of fcs) {
      seen.add(f.model);
      const c = card(f);
      // issued_ms is null until the model's first forecast
      setText(c.head, f.issued_ms === null || f.issued_ms === undefined
        ? `no forecast yet (collecting history), horizon ${fmtDuration(f.horizon_s)}`
        : `issued ${fmtStamp(f.issued_ms, now)} (${fmtAge(now - f.issued_ms)} ago), horizon ${fmtDuration(f.horizon_s)}`);
      clear(c.metrics);
      c.metrics.append(
        metric('MAE', f.mae === null || f.mae === undefined ? '—' : `${fmtNumber(f.mae)} ${f.unit || ''}`),
        metric('MAPE', f.mape === null || f.mape === undefined ? '—' : fmtPct(f.mape, 1)),
        metric('Samples', fmtInt(f.accuracy_n), 'scored'));
      const last = (f.points || [])[(f.points || []).length - 1];
      if (last) c.metrics.append(metric(`Forecast at +${fmtDuration((last.t - f.issued_ms) / 1000)}`, `${fmtNumber(last.value)} ${f.unit || ''}`, `(${fmtNumber(last.lo)} … ${fmtNumber(last.hi)})`));

      // explanation: sorted by |contribution|, signed bars
      clear(c.attr);
      const ex = [...(f.explanation || [])].sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, TOP);
      const maxAbs = Math.max(1e-12, ...ex.map((e) => Math.abs(e.contribution)));
      for (const e of ex) {
        const fill = h('span', { class: `attr-fill${e.contribution < 0 ? ' neg' : ''}` });
        const w = (Math.abs(e.contribution) / maxAbs) * 50;
        fill.style.width = `${w}%`;
        fill.style.left = e.contribution < 0 ? `${50 - w}%` : '50%';
        const sign = e.contribution > 0 ? '+' : '';
        c.attr.append(h('li', { 'data-feature': e.feature },
          h('span', { class: 'attr-name', text: e.feature, title: e.feature }),
          h('span', { class: 'attr-bar', role: 'img', 'aria-label': `${sign}${fmtNumber(e.contribution)} ${f.unit || ''}` }, fill),
          h('span', { class: 'attr-val', text: `${sign}${fmtNumber(e.contribution)}` })));
      }
      if (!ex.length) c.attr.append(h('li', { class: 'muted', text: 'no attributions' }));

      // chart: actual line, forecast avg + lo–hi band
      const xs = new Set();
      for (const p of f.actual || []) xs.add(p.t);
      for (const p of f.points || []) xs.add(p.t);
      const x = [...xs].sort((a, b) => a - b);
      const ix = new Map(x.map((t, i) => [t, i]));
      const actual = new Array(x.length).fill(undefined);
      const fc = new Array(x.length).fill(undefined);
      const lo = new Array(x.length).fill(undefined);
      const hi = new Array(x.length).fill(undefined);
      for (const p of f.actual || []) actual[ix.get(p.t)] = p.value;
      for (const p of f.points || []) { const i = ix.get(p.t); fc[i] = p.value; lo[i] = p.lo; hi[i] = p.hi; }
      const t = info.get(f.target);
      const limits = t ? (t.limits || []).map((l) => ({ kind: l.kind, value: l.value })) : [];
      c.chart.set([
        { label: `${f.target} actual`, unit: f.unit || '', kind: 'number', range: t ? t.range : null, pen: 1, band: false, limits },
        { label: 'forecast (lo–hi band)', unit: f.unit || '', kind: 'number', range: t ? t.range : null, pen: 0, band: true, limits: [] },
      ], { x: x.map((v) => v / 1000), series: [{ avg: actual }, { avg: fc, min: lo, max: hi }] },
      x.length ? { min: x[0] / 1000, max: x[x.length - 1] / 1000 } : null,
      f.issued_ms === null || f.issued_ms === undefined ? [] : [{ x: f.issued_ms / 1000, label: 'issued' }]);
    }
    for (const [model, c] of cards) {
      if (!seen.has(model)) { c.chart.destroy(); c.sec.remove(); cards.delete(model); }
    }
  }

  ctx.poll('/api/v1/forecasts', 30000, (d, e) => {
    err.hidden = !e;
    if (e) { setText(err, `Forecasts not available: ${errorText(e)}`); return; }
    render(d || []);
  });
  return { unmount() { for (const c of cards.values()) c.chart.destroy(); } };
}
