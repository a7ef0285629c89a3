// How KPI values are shown: OEE and its factors as percent, others with their unit.
import { fmtNumber, fmtPct } from '/common/js/format.js';

/** OEE figures come as fractions (0..1) unless the unit says otherwise. */
export function isFraction(k) {
  return k.kind === 'oee' && (!k.unit || k.unit === '' || k.unit === 'ratio' || k.unit === 'fraction');
}

export function kpiNumber(k, v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  if (isFraction(k)) return fmtNumber(v * 100, 1);
  const a = Math.abs(v);
  return fmtNumber(v, a >= 1000 ? 0 : a >= 100 ? 1 : a >= 1 ? 2 : 3);
}

export function kpiUnit(k) {
  if (isFraction(k)) return '%';
  return k.unit || '';
}

/** 'higher' | 'lower' | null: which way is better. */
export function better(k) {
  if (k.kind === 'specific_energy') return 'lower';
  if (k.kind === 'oee' || k.kind === 'throughput') return 'higher';
  return null;
}

/** True when the value is on the wrong side of its target. */
export function offTarget(k) {
  if (k.value === null || k.value === undefined || k.target === null || k.target === undefined) return false;
  const b = better(k);
  if (b === 'higher') return k.value < k.target;
  if (b === 'lower') return k.value > k.target;
  return false;
}

export function factorText(f) {
  return fmtPct(f, 1);
}

export function coverageText(c) {
  return fmtPct(c, 0);
}
