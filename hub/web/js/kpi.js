// KPI values as the hub stores them (docs/kpi.md): OEE and its factors are
// fractions shown as percent; other KPIs carry their own unit.
import { h } from '/common/js/dom.js';
import { fmtNumber, fmtPct, fmtAge, qualityCode } from '/common/js/format.js';

export const FACTORS = ['availability', 'performance', 'quality'];

/** The figures object (the store keeps it as JSON text). */
export function figures(k) {
  let f = k && k.figures;
  if (typeof f === 'string') { try { f = JSON.parse(f); } catch { f = null; } }
  if (Array.isArray(f)) return Object.fromEntries(f.map((x) => [x.name, x.value]));
  return f && typeof f === 'object' ? f : {};
}

export const kpiName = (k) => k.kpi || k.name;
export const kpiWindow = (k) => k.window || k.win;

/** OEE-like: its figures carry the three factors. */
export function isOee(k) {
  const f = figures(k);
  return k.kind === 'oee' || k.type === 'oee' || FACTORS.every((x) => x in f);
}

export function isFraction(k) {
  return isOee(k) && (!k.unit || k.unit === 'ratio' || k.unit === 'fraction' || k.unit === '');
}

export function kpiUnit(k) { return isFraction(k) ? '%' : (k.unit || ''); }

/** The number as shown (percent for fractions). */
export function kpiScale(k, v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return null;
  return isFraction(k) ? v * 100 : v;
}

export function kpiText(k, v) {
  const s = kpiScale(k, v);
  if (s === null) return '—';
  const a = Math.abs(s);
  return fmtNumber(s, isFraction(k) ? 1 : a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3);
}

/** A KPI tile: value with unit, window, coverage, quality, age; outlined when not good. */
export function kpiTile(k, now) {
  const f = figures(k);
  const q = qualityCode(k.quality);
  const cov = k.coverage;
  const lowCov = Number.isFinite(cov) && cov < 0.95;
  const bad = !!q || k.value === null || k.value === undefined;
  const at = k.computed_ms ?? k.until_ms ?? k.end_ms;
  const tile = h('div', { class: 'tile live-figure', 'data-testid': 'kpi-tile', 'data-kpi': kpiName(k) },
    h('div', { class: 'tile-head' },
      h('span', { class: 'tile-name', text: kpiName(k) }),
      h('span', { class: 'tile-window', text: `${kpiWindow(k) || ''}${k.label ? ` · ${k.label}` : ''}${k.closed ? ' (closed)' : ''}` })),
    h('div', { class: 'tile-main' },
      h('span', { class: `tile-value ${bad ? 'bad' : ''}`, text: kpiText(k, k.value) }),
      h('span', { class: 'tile-unit', text: kpiUnit(k) }),
      q ? h('span', { class: 'qcode', text: q }) : null));
  if (isOee(k)) {
    const short = { availability: 'avail.', performance: 'perf.', quality: 'quality' };
    tile.append(h('div', { class: 'tile-factors' }, FACTORS.map((x) => h('span', { title: x },
      h('span', { 'aria-hidden': 'true', text: short[x] }), h('span', { class: 'sr-only', text: x }), h('span', { class: 'f-v', text: fmtPct(f[x], 1) })))));
  }
  tile.append(h('div', { class: 'tile-meta' },
    h('span', null, 'coverage ', lowCov ? h('span', { class: 'val bad', text: fmtPct(cov, 0) }) : fmtPct(cov, 0)),
    at ? h('span', { class: 'tick-age', 'data-ms': String(at), text: `(${fmtAge(now - at)} ago)` }) : null));
  return tile;
}
