// A thin wrapper around uPlot for process trends: several series, each an
// average line with an optional min–max band per bucket; booleans and states
// as steps; dashed horizontal alarm-limit lines (HI/HIHI/LO/LOLO); vertical
// markers; y-scale from the engineering range when given; zoom by drag
// (reported to the page, which refetches), pan and reset by the page.
import { h, clear } from './dom.js';
import { fmtNumber, fmtValue, LIMIT_LABEL } from './format.js';

const UPLOT = new URL('../vendor/uplot/uPlot.esm.js', import.meta.url).href;
const UPLOT_CSS = new URL('../vendor/uplot/uPlot.min.css', import.meta.url).href;

/** Pens: dark, desaturated, never an alarm colour; told apart by dash too. */
export const PENS = [
  { color: '#1b3d8f', dash: null },
  { color: '#111111', dash: [8, 4] },
  { color: '#5c2a82', dash: null },
  { color: '#0c5a4e', dash: [3, 3] },
  { color: '#6b4410', dash: null },
  { color: '#2f6590', dash: [10, 3, 2, 3] },
  { color: '#444444', dash: [2, 2] },
  { color: '#7a2f5a', dash: [6, 2] },
];

function rgba(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
}

let loading = null;
/** The uPlot class (loaded on first use, with its style sheet). */
export function loadUPlot() {
  if (!loading) {
    if (!document.querySelector(`link[href="${UPLOT_CSS}"]`)) {
      document.head.append(h('link', { rel: 'stylesheet', href: UPLOT_CSS }));
    }
    loading = import(UPLOT).then((m) => m.default);
  }
  return loading;
}

const AXIS = {
  stroke: '#1a1a1a',
  font: '12px system-ui, sans-serif',
  labelFont: '12px system-ui, sans-serif',
  grid: { stroke: 'rgba(0,0,0,0.12)', width: 1 },
  ticks: { stroke: 'rgba(0,0,0,0.35)', width: 1, size: 5 },
};

/**
 * new Chart(el, {height, onSelect(minSec, maxSec), onReset(), label})
 * chart.set(series, data, view)
 *   series: [{label, unit, kind: 'number'|'bool'|'state', range: [lo,hi]|null,
 *             limits: [{kind, value}], band: bool, pen: index, states: [names] (kind 'state')}]
 *   data:   {x: [seconds], series: [{avg: [], min: [], max: []}]}  (min/max only with band)
 *   view:   {min, max} in seconds (x range)
 *   markers: [{x, label}] vertical lines
 */
export class Chart {
  constructor(el, opts = {}) {
    this.el = el;
    this.opts = opts;
    this.u = null;
    this.series = [];
    this.markers = [];
    this.view = null;
    this.sig = '';
    this.plotEl = h('div', { class: 'chart-plot' });
    this.legendEl = h('ul', { class: 'chart-legend', 'aria-label': `${opts.label || 'chart'} legend` });
    el.append(this.plotEl, this.legendEl);
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(el);
  }

  width() { return Math.max(200, Math.floor(this.plotEl.clientWidth || this.el.clientWidth || 600)); }

  height() { return this.opts.height || 320; }

  resize() {
    if (!this.u) return;
    const w = this.width();
    if (Math.abs(w - this.u.width) > 2) this.u.setSize({ width: w, height: this.height() });
  }

  async set(series, data, view, markers) {
    const uPlot = await loadUPlot();
    this.markers = markers || [];
    const sig = JSON.stringify(series.map((s) => [s.label, s.unit, s.kind, s.range, s.band, s.pen, s.limits, s.states, s.scale, s.axisLabel]));
    if (!this.u || sig !== this.sig) {
      this.sig = sig;
      this.series = series;
      this.build(uPlot);
    }
    this.setData(data, view);
  }

  /** scale key for a series: numbers share a scale per unit; each discrete series has its own lane. */
  static scaleKey(s, i) {
    if (s.kind === 'bool' || s.kind === 'state') return `d:${i}`;
    // An explicit scale (e.g. one per tag when units are not known) keeps
    // unrelated magnitudes apart; its axis is labelled with `axisLabel`.
    if (s.scale) return `s:${s.scale}`;
    return `u:${s.unit || ''}`;
  }

  /** Discrete series (bool, state) stack in lanes at the bottom (all of the height without numbers). */
  laneRange(i) {
    const s = this.series[i];
    const discrete = this.series.map((x, k) => [x, k]).filter(([x]) => x.kind === 'bool' || x.kind === 'state');
    const lane = discrete.findIndex(([, k]) => k === i);
    const hasNumeric = this.series.some((x) => x.kind === 'number' || !x.kind);
    const share = hasNumeric ? Math.min(0.4, 0.14 * discrete.length) : 1;
    const L = share / discrete.length;
    const a = lane * L + L * 0.15;
    const b = (lane + 1) * L - L * 0.15;
    const m = s.kind === 'bool' ? 1 : Math.max(1, (s.states || []).length - 1);
    const span = m / (b - a);
    const lo = -a * span;
    return [lo, lo + span];
  }

  build(uPlot) {
    if (this.u) { this.u.destroy(); this.u = null; }
    clear(this.plotEl);
    const series = this.series;
    const hasNumeric = series.some((s) => s.kind === 'number' || !s.kind);
    const scales = { x: { time: true } };
    const axes = [{ ...AXIS, space: 80, size: 44, values: timeValues }];
    const uSeries = [{}];
    const bands = [];
    this.map = []; // per input series: {avg, min, max} indexes into uPlot data
    const numericKeys = [];
    for (const [i, s] of series.entries()) {
      const pen = PENS[(s.pen ?? i) % PENS.length];
      const key = Chart.scaleKey(s, i);
      if (!scales[key]) {
        scales[key] = key.startsWith('d:') ? { auto: true, range: () => this.laneRange(i) } : { auto: true, range: this.rangeFn(key) };
        if (!key.startsWith('d:')) numericKeys.push(key);
      }
      const step = s.kind === 'bool' || s.kind === 'state';
      const paths = step ? uPlot.paths.stepped({ align: 1 }) : undefined;
      const entry = {};
      if (s.band) {
        entry.max = uSeries.length;
        uSeries.push({ scale: key, stroke: 'transparent', width: 0, points: { show: false }, paths });
        entry.min = uSeries.length;
        uSeries.push({ scale: key, stroke: 'transparent', width: 0, points: { show: false }, paths });
        bands.push({ series: [entry.max, entry.min], fill: rgba(pen.color, 0.16) });
      }
      entry.avg = uSeries.length;
      uSeries.push({
        label: s.label, scale: key, stroke: pen.color, width: 2, dash: pen.dash || undefined,
        points: { show: false }, paths, spanGaps: false,
      });
      this.map.push(entry);
    }
    const axisLabel = (key) => (key.startsWith('s:')
      ? (series.find((x, k) => Chart.scaleKey(x, k) === key) || {}).axisLabel || key.slice(2)
      : key.slice(2));
    // axes: first numeric unit on the left, second on the right
    numericKeys.slice(0, 2).forEach((key, n) => {
      axes.push({
        ...AXIS, scale: key, side: n === 0 ? 3 : 1, label: axisLabel(key) || undefined, size: 64,
        grid: n === 0 ? AXIS.grid : { show: false },
        values: (u, vals, ax, space, incr) => vals.map((v) => fmtNumber(v, decimalsFor(incr))),
      });
    });
    const discrete = series.map((s, i) => [s, i]).filter(([s]) => s.kind === 'bool' || s.kind === 'state');
    if (!hasNumeric && discrete.length === 1) {
      const [s, i] = discrete[0];
      const names = s.kind === 'bool' ? ['OFF', 'ON'] : (s.states || []);
      axes.push({ ...AXIS, scale: `d:${i}`, side: 3, size: 90, splits: () => names.map((_, k) => k), values: (u, vals) => vals.map((v) => names[v] ?? '') });
    }
    const self = this;
    const opts = {
      width: this.width(),
      height: this.height(),
      scales,
      axes,
      series: uSeries,
      bands,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      select: { show: true },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const min = u.posToVal(u.select.left, 'x');
          const max = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          if (self.opts.onSelect) self.opts.onSelect(min, max);
        }],
        setCursor: [(u) => self.updateLegend(u.cursor.idx)],
        draw: [(u) => self.drawOverlays(u)],
      },
    };
    this.u = new uPlot(opts, [[]].concat(uSeries.slice(1).map(() => [])), this.plotEl);
    this.u.over.addEventListener('dblclick', () => { if (self.opts.onReset) self.opts.onReset(); });
    this.buildLegend();
  }

  rangeFn(key) {
    return (u, dmin, dmax) => {
      const ser = this.series.filter((s, i) => Chart.scaleKey(s, i) === key);
      let lo = null;
      let hi = null;
      for (const s of ser) {
        if (s.range && Number.isFinite(s.range[0]) && Number.isFinite(s.range[1])) {
          lo = lo === null ? s.range[0] : Math.min(lo, s.range[0]);
          hi = hi === null ? s.range[1] : Math.max(hi, s.range[1]);
        }
      }
      if (lo !== null) {
        // the engineering range, widened only if the data leaves it
        if (dmin !== null && Number.isFinite(dmin) && dmin < lo) lo = dmin;
        if (dmax !== null && Number.isFinite(dmax) && dmax > hi) hi = dmax;
        return [lo, hi];
      }
      if (dmin === null || dmax === null || !Number.isFinite(dmin) || !Number.isFinite(dmax)) return [0, 1];
      if (dmin === dmax) {
        const d = Math.abs(dmin) * 0.05 || 1;
        return [dmin - d, dmax + d];
      }
      const pad = (dmax - dmin) * 0.08;
      return [dmin - pad, dmax + pad];
    };
  }

  setData(data, view) {
    if (!this.u) return;
    this.data = data;
    const cols = [data.x];
    const nU = this.u.series.length;
    for (let k = 1; k < nU; k += 1) cols.push(null);
    this.map.forEach((m, i) => {
      const d = data.series[i] || {};
      cols[m.avg] = d.avg || [];
      if (m.min !== undefined) cols[m.min] = d.min || d.avg || [];
      if (m.max !== undefined) cols[m.max] = d.max || d.avg || [];
    });
    for (let k = 1; k < nU; k += 1) if (!cols[k]) cols[k] = [];
    if (view) this.view = view;
    this.u.batch(() => {
      this.u.setData(cols, !this.view);
      if (this.view) this.u.setScale('x', { min: this.view.min, max: this.view.max });
    });
    this.el.dataset.points = String(data.x.length);
    this.updateLegend(null);
  }

  setView(min, max) {
    this.view = { min, max };
    if (this.u) this.u.setScale('x', { min, max });
  }

  buildLegend() {
    clear(this.legendEl);
    this.legendItems = this.series.map((s, i) => {
      const pen = PENS[(s.pen ?? i) % PENS.length];
      const sw = h('span', { class: 'pen', 'aria-hidden': 'true' });
      sw.style.borderTopColor = pen.color;
      sw.style.borderTopStyle = pen.dash ? 'dashed' : 'solid';
      const val = h('span', { class: 'legend-value num' });
      const li = h('li', null, sw, h('span', { class: 'legend-label', text: s.label }), val,
        s.unit ? h('span', { class: 'legend-unit', text: s.unit }) : null);
      return { li, val, s };
    });
    this.legendEl.append(...this.legendItems.map((x) => x.li));
  }

  /** Legend values: at the cursor, else the last non-null value. */
  updateLegend(idx) {
    if (!this.legendItems || !this.data) return;
    this.legendItems.forEach((item, i) => {
      const col = (this.data.series[i] || {}).avg || [];
      let v = null;
      if (idx !== null && idx !== undefined) v = col[idx];
      else for (let k = col.length - 1; k >= 0; k -= 1) if (col[k] !== null && col[k] !== undefined) { v = col[k]; break; }
      let text;
      if (v === null || v === undefined) text = '—';
      else if (item.s.kind === 'state') text = (item.s.states || [])[v] ?? String(v);
      else text = fmtValue(v, { kind: item.s.kind, range: item.s.range });
      if (item.val.textContent !== text) item.val.textContent = text;
    });
  }

  drawOverlays(u) {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    const px = devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `${Math.round(11 * px)}px system-ui, sans-serif`;
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    const withLimits = this.series.filter((s) => s.limits && s.limits.length).length;
    const placed = []; // label boxes already drawn: move a colliding one to the left
    ctx.lineWidth = 1.5 * px;
    // alarm limits
    this.series.forEach((s, i) => {
      if (!s.limits || !s.limits.length) return;
      const key = Chart.scaleKey(s, i);
      for (const lim of s.limits) {
        if (!Number.isFinite(lim.value)) continue;
        const y = Math.round(u.valToPos(lim.value, key, true));
        if (y < top || y > top + height) continue;
        ctx.strokeStyle = '#333';
        ctx.setLineDash([6 * px, 4 * px]);
        ctx.beginPath();
        ctx.moveTo(left, y);
        ctx.lineTo(left + width, y);
        ctx.stroke();
        const label = `${LIMIT_LABEL[lim.kind] || lim.kind} ${fmtValue(lim.value, { range: s.range })}${withLimits > 1 ? ` (${s.label})` : ''}`;
        const tw = ctx.measureText(label).width;
        const ty = lim.kind === 'lo' || lim.kind === 'lolo' ? y + 13 * px : y - 4 * px;
        let x1 = left + width - 2 * px; // right edge of the label box
        for (;;) {
          const hit = placed.find((b) => Math.abs(b.y - ty) < 14 * px && x1 > b.x0 - 6 * px && x1 - tw - 6 * px < b.x1);
          if (!hit) break;
          x1 = hit.x0 - 10 * px;
        }
        placed.push({ y: ty, x0: x1 - tw - 6 * px, x1 });
        ctx.setLineDash([]);
        ctx.fillStyle = 'rgba(230,230,230,0.9)';
        ctx.fillRect(x1 - tw - 6 * px, ty - 11 * px, tw + 6 * px, 14 * px);
        ctx.fillStyle = '#111';
        ctx.fillText(label, x1 - tw - 3 * px, ty);
      }
    });
    // vertical markers
    for (const m of this.markers) {
      const x = Math.round(u.valToPos(m.x, 'x', true));
      if (x < left || x > left + width) continue;
      ctx.strokeStyle = '#222';
      ctx.setLineDash([2 * px, 3 * px]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      if (m.label) {
        ctx.setLineDash([]);
        ctx.fillStyle = '#111';
        ctx.fillText(m.label, x + 4 * px, top + 12 * px);
      }
    }
    ctx.restore();
  }

  destroy() {
    this.ro.disconnect();
    if (this.u) this.u.destroy();
    this.u = null;
    clear(this.el);
  }
}

/** Decimals enough to show a tick increment exactly (2.5 → 1). */
function decimalsFor(incr) {
  if (!Number.isFinite(incr) || incr <= 0) return 2;
  let d = 0;
  while (d < 6 && Math.abs(Math.round(incr * 10 ** d) - incr * 10 ** d) > 1e-6 * 10 ** d) d += 1;
  return d;
}

const pad2 = (n) => String(n).padStart(2, '0');

/** Time axis in 24 h local time; the date under the first tick and at day changes. */
function timeValues(u, splits, ax, space, incr) {
  let lastDay = null;
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const day = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    let s;
    if (incr >= 86400) s = `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
    else if (incr < 60) s = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
    else s = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    if (incr < 86400 && day !== lastDay) s += `\n${day}`;
    lastDay = day;
    return s;
  });
}
