// Forecasts: per node and model, the forecast at a chosen lead against what
// actually happened, accuracy (MAE, MAPE) over time, and the latest
// explanation (feature attributions) the edge sent.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { Chart } from '/common/js/chart.js';
import { fmtNumber, fmtInt, fmtDuration } from '/common/js/format.js';
import { errorBox, showError, nodePicker, rangePicker, iso, nodeQuery, joinSeries, withGaps, agoSpan, tickAges } from '../ui.js';

const TOP = 8;

/** [[feature, contribution]] or [{feature|name, contribution|value}] → [{feature, contribution}] */
function attributions(x) {
  const list = (x && (x.items || x.explanation)) || [];
  return list.map((e) => (Array.isArray(e) ? { feature: e[0], contribution: e[1] }
    : { feature: e.feature ?? e.name, contribution: e.contribution ?? e.value })).filter((e) => Number.isFinite(e.contribution));
}

const modelName = (m) => m.model || m.name;

export function mount(root, ctx) {
  let node = null;
  const cards = new Map();
  const err = errorBox();
  const picker = nodePicker(ctx, (n) => { node = n; dropCards(); save(); load(); });
  const range = rangePicker(ctx, () => { save(); reloadCards(); }, { presets: ['1h', '8h', '24h', '7d', '30d'], dflt: '8h', idPrefix: 'fc-rng' });
  const list = h('div', { class: 'stack' });
  root.append(h('h1', { class: 'sr-only', text: 'Forecasts' }), err, h('div', { class: 'toolbar' }, picker.el, range.el), list);

  function save() { ctx.setParams({ site: node && node.site, node: node && node.node, ...range.params() }); }

  function metric(label, value, sub) {
    return h('div', { class: 'fc-metric' }, h('span', { class: 'm-label', text: label }), h('span', { class: 'm-value', text: value }),
      sub ? h('span', { class: 'muted', text: ` ${sub}` }) : null);
  }

  function card(m) {
    const name = modelName(m);
    let c = cards.get(name);
    if (c) { c.m = m; return c; }
    const vsEl = h('div', { class: 'chart', 'data-testid': 'forecast-chart', 'data-model': name, 'data-points': '0', role: 'figure', 'aria-label': `Forecast against actual, ${name}` });
    const accEl = h('div', { class: 'chart', 'data-testid': 'accuracy-chart', 'data-model': name, 'data-points': '0', role: 'figure', 'aria-label': `Accuracy over time, ${name}` });
    const leadSel = h('select', { id: `lead-${cards.size}` });
    const metrics = h('div', { class: 'fc-metrics' });
    const attr = h('ol', { class: 'attr-list', 'data-testid': 'forecast-explanation', 'aria-label': `Feature attributions of ${name}` });
    const explHead = h('p', { class: 'chart-note' });
    const note = h('p', { class: 'chart-note' });
    const cerr = h('p', { class: 'dlg-error', role: 'alert' });
    const sec = h('section', { class: 'panel', 'data-testid': 'forecast-card', 'data-model': name },
      h('h2', null, h('span', { class: 'h-name', text: `${name}${m.tag ? ` → ${m.tag}` : ''}` }),
        h('span', { class: 'h-sub', text: [m.version ? `version ${m.version}` : null, m.step_ms ? `step ${fmtDuration(m.step_ms / 1000)}` : null, m.horizon ? `horizon ${m.horizon} steps` : null].filter(Boolean).join(', ') })),
      h('div', { class: 'fc-card-grid' },
        h('div', { class: 'stack' },
          h('div', { class: 'toolbar' }, h('div', { class: 'field' }, h('label', { for: leadSel.id, text: 'Lead' }), leadSel), note),
          vsEl,
          h('h3', { text: 'Accuracy over time' }),
          accEl),
        h('div', null, metrics, h('h3', { text: 'Latest explanation: top feature attributions' }), explHead, attr,
          h('p', { class: 'chart-note', text: 'Bar right of the centre line: pushes the forecast up; hatched bar left: pushes it down. In the target\'s units, averaged over the horizon.' }))),
      cerr);
    list.append(sec);
    const horizon = m.horizon || 12;
    for (let l = 1; l <= horizon; l += 1) {
      leadSel.append(h('option', { value: String(l), text: m.step_ms ? `${l} (${fmtDuration((l * m.step_ms) / 1000)} ahead)` : String(l) }));
    }
    leadSel.value = '1';
    c = {
      m, sec, leadSel, metrics, attr, explHead, note, cerr, vsEl, accEl,
      vs: new Chart(vsEl, { height: 260, label: `forecast ${name}`, onSelect: (a, b) => range.set(a * 1000, b * 1000) }),
      acc: new Chart(accEl, { height: 170, label: `accuracy ${name}`, onSelect: (a, b) => range.set(a * 1000, b * 1000) }),
    };
    leadSel.addEventListener('change', () => loadCard(c));
    cards.set(name, c);
    return c;
  }

  async function loadCard(c) {
    const name = modelName(c.m);
    const { from, to } = range.get();
    const base = `${nodeQuery(node)}&model=${seg(name)}&from=${iso(from)}&to=${iso(to)}`;
    const lead = Number(c.leadSel.value) || 1;
    const errs = [];
    const [vs, acc, ex] = await Promise.all([
      api(`/api/v1/forecasting/versus?${base}&lead=${lead}`).catch((e) => { errs.push(`forecast against actual: ${e.detail || e.message}`); return null; }),
      api(`/api/v1/forecasting/accuracy?${base}`).catch((e) => { errs.push(`accuracy: ${e.detail || e.message}`); return null; }),
      api(`/api/v1/forecasting/explanations?${nodeQuery(node)}&model=${seg(name)}`).catch((e) => { errs.push(`explanation: ${e.detail || e.message}`); return null; }),
    ]);
    setText(c.cerr, errs.join('; '));
    const unit = (vs && vs.unit) || c.m.unit || '';
    if (vs) {
      const step = (vs.step_ms || c.m.step_ms || 60e3) * 2.5;
      const a = withGaps(vs.t || [], { avg: vs.actual || [] }, step);
      const f = withGaps(vs.t || [], { avg: vs.forecast || [] }, step);
      await c.vs.set([
        { label: `${vs.tag || c.m.tag || 'target'} actual`, unit, kind: 'number', pen: 1, band: false },
        { label: `forecast ${fmtDuration(((vs.lead || lead) * (vs.step_ms || c.m.step_ms || 0)) / 1000)} ahead`, unit, kind: 'number', pen: 0, band: false },
      ], joinSeries([{ t: a.t, cols: a.cols }, { t: f.t, cols: f.cols }]), { min: from / 1000, max: to / 1000 });
      c.vsEl.dataset.points = String((vs.t || []).length);
      setText(c.note, `${fmtInt((vs.t || []).length)} forecast values at lead ${vs.lead || lead}`);
    }
    // The edge's scores (its own actuals, every sample) and the hub's
    // cross-check of the same forecasts against the windows it stores.
    const edgeItems = ((acc && acc.items) || []).slice().sort((x, y) => x.ts_ms - y.ts_ms);
    const hubItems = ((acc && acc.hub && acc.hub.items) || []).slice().sort((x, y) => x.ts_ms - y.ts_ms);
    const gap = ((acc && acc.bucket_ms) || c.m.step_ms || 60e3) * 2.5;
    const e1 = withGaps(edgeItems.map((x) => x.ts_ms), { avg: edgeItems.map((x) => x.mae) }, gap);
    const e2 = withGaps(hubItems.map((x) => x.ts_ms), { avg: hubItems.map((x) => x.mae) }, gap);
    const e3 = withGaps(edgeItems.map((x) => x.ts_ms), { avg: edgeItems.map((x) => x.mape) }, gap);
    await c.acc.set([
      { label: 'MAE (edge)', unit, kind: 'number', pen: 0, band: false },
      { label: 'MAE (hub cross-check)', unit, kind: 'number', pen: 1, band: false },
      { label: 'MAPE (edge)', unit: '%', kind: 'number', pen: 2, band: false },
    ], joinSeries([{ t: e1.t, cols: e1.cols }, { t: e2.t, cols: e2.cols }, { t: e3.t, cols: e3.cols }]), { min: from / 1000, max: to / 1000 });
    c.accEl.dataset.points = String(edgeItems.length);
    const ed = (acc && acc.edge) || {};
    const hb = (acc && acc.hub) || {};
    const u = unit ? ` ${unit}` : '';
    clear(c.metrics);
    c.metrics.append(
      metric('MAE', Number.isFinite(ed.mae) ? `${fmtNumber(ed.mae)}${u}` : '—', 'edge, over the range'),
      metric('MAPE', Number.isFinite(ed.mape) ? `${fmtNumber(ed.mape, 1)} %` : '—'),
      metric('Scored', fmtInt(ed.forecasts ?? 0), 'forecasts'),
      metric('Hub cross-check MAE', Number.isFinite(hb.mae) ? `${fmtNumber(hb.mae)}${u}` : '—', hb.forecasts ? `${fmtInt(hb.forecasts)} forecasts` : ''));
    renderExplanation(c, ex, unit);
  }

  function renderExplanation(c, ex, unit) {
    const item = ex;
    clear(c.attr);
    clear(c.explHead);
    const list = item ? attributions(item).sort((a, b) => Math.abs(b.contribution) - Math.abs(a.contribution)).slice(0, TOP) : [];
    const at = item && item.ts_ms;
    if (at) c.explHead.append('scored ', agoSpan(at, ctx.now()));
    const maxAbs = Math.max(1e-12, ...list.map((e) => Math.abs(e.contribution)));
    for (const e of list) {
      const fill = h('span', { class: `attr-fill${e.contribution < 0 ? ' neg' : ''}` });
      const w = (Math.abs(e.contribution) / maxAbs) * 50;
      fill.style.width = `${w}%`;
      fill.style.left = e.contribution < 0 ? `${50 - w}%` : '50%';
      const sign = e.contribution > 0 ? '+' : '';
      c.attr.append(h('li', { 'data-feature': e.feature },
        h('span', { class: 'attr-name', text: e.feature, title: e.feature }),
        h('span', { class: 'attr-bar', role: 'img', 'aria-label': `${sign}${fmtNumber(e.contribution)} ${unit}` }, fill),
        h('span', { class: 'attr-val', text: `${sign}${fmtNumber(e.contribution)}` })));
    }
    if (!list.length) c.attr.append(h('li', { class: 'muted', text: 'no explanation received yet' }));
  }

  function dropCards() {
    for (const c of cards.values()) { c.vs.destroy(); c.acc.destroy(); c.sec.remove(); }
    cards.clear();
    clear(list);
  }

  function reloadCards() { for (const c of cards.values()) loadCard(c); }

  async function load() {
    if (!node) return;
    let models;
    try {
      const res = await api(`/api/v1/forecasting/models?${nodeQuery(node)}`);
      models = Array.isArray(res) ? res : res.items || [];
      showError(err, null);
    } catch (e) {
      showError(err, e, 'Models not available: ');
      return;
    }
    const names = new Set(models.map(modelName));
    for (const [name, c] of cards) if (!names.has(name)) { c.vs.destroy(); c.acc.destroy(); c.sec.remove(); cards.delete(name); }
    if (!models.length) {
      clear(list);
      list.append(h('p', { class: 'panel muted', 'data-testid': 'no-models', text: `No forecast from ${node.site} / ${node.node} has reached the hub.` }));
      return;
    }
    for (const p of list.querySelectorAll('[data-testid="no-models"]')) p.remove();
    for (const m of models) loadCard(card(m));
  }

  picker.ready.then((n) => {
    node = n;
    if (!n) return;
    save();
    ctx.refresh(load, { ms: 60_000 });
  }).catch((e) => showError(err, e, 'Fleet not available: '));
  ctx.every(1000, () => tickAges(root, ctx.now()));
  return { unmount: dropCards };
}

