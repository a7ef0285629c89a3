// Formatting of values, ages, times and quality codes. Pure functions.

const nf = new Map();
function numFmt(decimals) {
  let f = nf.get(decimals);
  if (!f) {
    f = new Intl.NumberFormat('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals, useGrouping: true });
    nf.set(decimals, f);
  }
  return f;
}

/** Decimals for a tag: from its engineering range when given, else from the value. */
export function decimalsFor(v, range) {
  let mag = Math.abs(v);
  if (range && range.length === 2 && Number.isFinite(range[0]) && Number.isFinite(range[1])) {
    mag = Math.max(Math.abs(range[1] - range[0]), 1e-9);
  }
  if (mag >= 1000) return 0;
  if (mag >= 100) return 1;
  if (mag >= 10) return 2;
  if (mag >= 1) return 2;
  if (mag === 0) return 1;
  return 3;
}

export function fmtNumber(v, decimals) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  const d = decimals === undefined ? decimalsFor(v) : decimals;
  return numFmt(d).format(v).replace('-', '−');
}

/** A live or stored value as text, without its unit. kind: number|bool|text */
export function fmtValue(v, info) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'boolean') return v ? 'ON' : 'OFF';
  if (typeof v === 'number') {
    if (info && info.kind === 'bool') return v ? 'ON' : 'OFF';
    return fmtNumber(v, decimalsFor(v, info && info.range));
  }
  return String(v);
}

export function fmtValueUnit(v, unit, info) {
  const s = fmtValue(v, info);
  return unit && s !== '—' ? `${s} ${unit}` : s;
}

/** Age in ms as "3 s", "2 min", "5 h", "3 d". */
export function fmtAge(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, ms) / 1000;
  if (s < 1) return '<1 s';
  if (s < 60) return `${Math.floor(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** A duration in seconds as "2 h 5 min", "3 d 4 h", "45 s". */
export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return '—';
  sec = Math.max(0, Math.round(sec));
  const d = Math.floor(sec / 86400);
  const h = Math.floor((sec % 86400) / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = sec % 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min${s ? ` ${s} s` : ''}`;
  return `${s} s`;
}

const pad = (n) => String(n).padStart(2, '0');

export function fmtTime(ms) {
  if (!ms && ms !== 0) return '—';
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDate(ms) {
  if (!ms && ms !== 0) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function fmtDateTime(ms) {
  if (!ms && ms !== 0) return '—';
  return `${fmtDate(ms)} ${fmtTime(ms)}`;
}

/** "today 14:05" style short stamp: time only when on the same day as now. */
export function fmtStamp(ms, nowMs = Date.now()) {
  if (!ms && ms !== 0) return '—';
  return fmtDate(ms) === fmtDate(nowMs) ? fmtTime(ms) : fmtDateTime(ms);
}

export function fmtBytes(b) {
  if (b === null || b === undefined || !Number.isFinite(b)) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = b;
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i += 1; }
  return `${fmtNumber(v, i === 0 ? 0 : v >= 100 ? 0 : 1)} ${u[i]}`;
}

export function fmtPct(f, decimals = 1) {
  if (f === null || f === undefined || !Number.isFinite(f)) return '—';
  return `${fmtNumber(f * 100, decimals)} %`;
}

export function fmtInt(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return numFmt(0).format(n);
}

/** Quality code text: '' for good, "UNC range", "BAD timeout". */
export function qualityCode(q, r) {
  if (!q || q === 'good') return '';
  const base = q === 'bad' ? 'BAD' : q === 'uncertain' ? 'UNC' : String(q).toUpperCase();
  return r ? `${base} ${r}` : base;
}

/**
 * The state of a live value: {ok, code, age}. Not ok (outlined, with a code)
 * when its quality is not good or it is older than the tag's stale_after_ms.
 */
export function valueState(live, info, nowMs) {
  if (!live) return { ok: false, code: 'NO DATA', age: null };
  const age = live.ts ? nowMs - live.ts : null;
  const q = qualityCode(live.q, live.r);
  if (q) return { ok: false, code: q, age };
  const stale = info && info.stale_after_ms;
  if (stale && age !== null && age > stale) return { ok: false, code: `STALE ${fmtAge(age)}`, age };
  return { ok: true, code: '', age };
}

export const PRIORITIES = {
  4: { name: 'urgent', label: 'Urgent', letter: 'U', shape: 'diamond' },
  3: { name: 'high', label: 'High', letter: 'H', shape: 'triangle' },
  2: { name: 'medium', label: 'Medium', letter: 'M', shape: 'circle' },
  1: { name: 'low', label: 'Low', letter: 'L', shape: 'square' },
};

export const ALARM_STATE_TEXT = {
  normal: 'Normal',
  unacknowledged: 'Active, unacknowledged',
  acknowledged: 'Active, acknowledged',
  returned_unacknowledged: 'Returned, unacknowledged',
  shelved: 'Shelved',
  suppressed: 'Suppressed by design',
  out_of_service: 'Out of service',
};

export const LIMIT_LABEL = { hihi: 'HIHI', hi: 'HI', lo: 'LO', lolo: 'LOLO' };
