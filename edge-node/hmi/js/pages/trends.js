// Trends: several tags, min–max band + average per bucket, live tail while
// following now, zoom by drag, pan, reset, alarm limits, CSV download.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { Chart, PENS } from '/common/js/chart.js';
import { fmtDateTime, fmtStamp, fmtInt } from '/common/js/format.js';
import { getTags, errorText } from '../ui.js';

const RANGES = [
  ['15m', '15 min', 15 * 60e3], ['1h', '1 h', 3600e3], ['8h', '8 h', 8 * 3600e3], ['24h', '24 h', 24 * 3600e3], ['7d', '7 d', 7 * 86400e3],
];
const RANGE_MS = Object.fromEntries(RANGES.map(([k, , ms]) => [k, ms]));
const MAX_TAGS = 8;

export function mount(root, ctx) {
  const { live } = ctx;
  let info = new Map();
  let allTags = [];
  let selected = (ctx.params.get('tags') || '').split(',').map((s) => s.trim()).filter(Boolean).slice(0, MAX_TAGS);
  let range = RANGE_MS[ctx.params.get('range')] ? ctx.params.get('range') : '1h';
  let following = true;
  let view = null; // {from, to} ms
  let data = null; // {x: [s], series: [{avg,min,max}]}
  let states = new Map(); // tag → [state names] for text tags
  let bucketMs = 1000;
  let fetchToken = 0;
  let abort = null;
  if (ctx.params.get('from') && ctx.params.get('to')) {
    const f = Number(ctx.params.get('from'));
    const t = Number(ctx.params.get('to'));
    if (f && t && t > f) { view = { from: f, to: t }; following = false; }
  }

  /* ---- controls ---- */
  const pickInput = h('input', { type: 'search', id: 'trend-pick', autocomplete: 'off', placeholder: 'search tags…', role: 'combobox', 'aria-expanded': 'false', 'aria-controls': 'trend-pick-list', 'aria-autocomplete': 'list', 'data-testid': 'trend-picker' });
  const pickList = h('ul', { class: 'picker-list', id: 'trend-pick-list', role: 'listbox', 'aria-label': 'Matching tags', hidden: true });
  const picker = h('div', { class: 'picker field' }, h('label', { for: 'trend-pick', text: 'Add tag' }), pickInput, pickList);
  const chips = h('ul', { class: 'chips', 'aria-label': 'Tags in the chart' });
  const rangeBtns = h('div', { class: 'range-buttons', role: 'group', 'aria-label': 'Time range' },
    RANGES.map(([k, label]) => h('button', { type: 'button', class: 'btn', 'data-range': k, 'aria-pressed': String(k === range), text: label, onclick: () => setRange(k) })));
  const panLeft = h('button', { type: 'button', class: 'btn', text: '◀ Earlier', 'data-testid': 'trend-pan-left', onclick: () => pan(-0.5) });
  const panRight = h('button', { type: 'button', class: 'btn', text: 'Later ▶', 'data-testid': 'trend-pan-right', onclick: () => pan(0.5) });
  const reset = h('button', { type: 'button', class: 'btn', text: 'Reset to now', 'data-testid': 'trend-reset', onclick: () => setRange(range) });
  const zoomIn = h('button', { type: 'button', class: 'btn', text: 'Zoom in', 'data-testid': 'trend-zoom-in', onclick: () => zoom(0.5) });
  const zoomOut = h('button', { type: 'button', class: 'btn', text: 'Zoom out', 'data-testid': 'trend-zoom-out', onclick: () => zoom(2) });
  const csv = h('a', { class: 'btn', href: '#', download: 'trend.csv', text: 'Download CSV', 'data-testid': 'trend-csv' });
  const statusFollow = h('span');
  const statusSpan = h('span');
  const statusErr = h('span', { class: 'dlg-error', role: 'alert' });
  const chartEl = h('div', { class: 'chart', 'data-testid': 'trend-chart', 'data-points': '0', role: 'figure', tabindex: '0', 'aria-label': 'Trend chart. Drag to zoom; keys: arrows pan, + and − zoom, Escape back to now' });
  chartEl.addEventListener('keydown', (e) => {
    const keys = { ArrowLeft: () => pan(-0.25), ArrowRight: () => pan(0.25), '+': () => zoom(0.5), '=': () => zoom(0.5), '-': () => zoom(2), Escape: () => setRange(range), Home: () => setRange(range) };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });
  const hint = h('p', { class: 'muted', text: 'Pick one or more tags to trend. Drag across the chart to zoom in; double-click or "Reset to now" to go back.' });

  root.append(
    h('h1', { class: 'sr-only', text: 'Trends' }),
    h('section', { class: 'panel stack' },
      h('div', { class: 'trend-tools' },
        picker,
        h('div', { class: 'field' }, h('span', { class: 'field-label', text: 'Range' }), rangeBtns),
        h('div', { class: 'row' }, panLeft, panRight, zoomIn, zoomOut, reset),
        h('div', { class: 'row spacer-left' }, csv)),
      chips,
      h('div', { class: 'trend-status' }, statusFollow, statusSpan, statusErr),
      chartEl,
      hint));

  const chart = new Chart(chartEl, {
    height: Math.max(300, Math.min(620, window.innerHeight - 380)),
    label: 'Trend',
    onSelect: (min, max) => {
      following = false;
      view = { from: Math.round(min * 1000), to: Math.round(max * 1000) };
      changed();
    },
    onReset: () => setRange(range),
  });

  /* ---- picker ---- */
  let matches = [];
  let hl = -1;
  function renderMatches() {
    const q = pickInput.value.trim().toLowerCase();
    clear(pickList);
    if (!q) { pickList.hidden = true; pickInput.setAttribute('aria-expanded', 'false'); return; }
    matches = [];
    for (const t of allTags) {
      if (selected.includes(t.name)) continue;
      if (t.name.toLowerCase().includes(q) || (t.description || '').toLowerCase().includes(q)) {
        matches.push(t);
        if (matches.length >= 30) break;
      }
    }
    hl = matches.length ? 0 : -1;
    matches.forEach((t, i) => {
      const b = h('button', { type: 'button', tabindex: '-1', class: i === hl ? 'hl' : null, onclick: () => add(t.name) },
        h('span', { text: t.name }), h('span', { class: 'pk-desc', text: `${t.description || ''}${t.unit ? ` (${t.unit})` : ''}` }));
      pickList.append(h('li', { role: 'option', id: `pk-${i}`, 'aria-selected': String(i === hl) }, b));
    });
    if (!matches.length) pickList.append(h('li', { role: 'option', 'aria-disabled': 'true', 'aria-selected': 'false' }, h('span', { class: 'pk-desc', text: 'no matching tag' })));
    pickList.hidden = false;
    pickInput.setAttribute('aria-expanded', 'true');
    if (hl >= 0) pickInput.setAttribute('aria-activedescendant', `pk-${hl}`); else pickInput.removeAttribute('aria-activedescendant');
  }
  function moveHl(d) {
    if (!matches.length) return;
    hl = (hl + d + matches.length) % matches.length;
    [...pickList.children].forEach((li, i) => {
      li.setAttribute('aria-selected', String(i === hl));
      if (li.firstChild) li.firstChild.classList.toggle('hl', i === hl);
      if (i === hl) li.scrollIntoView({ block: 'nearest' });
    });
    pickInput.setAttribute('aria-activedescendant', `pk-${hl}`);
  }
  pickInput.addEventListener('input', renderMatches);
  pickInput.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown') { e.preventDefault(); moveHl(1); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); moveHl(-1); }
    else if (e.key === 'Enter') { e.preventDefault(); if (hl >= 0 && matches[hl]) add(matches[hl].name); }
    else if (e.key === 'Escape') { pickInput.value = ''; renderMatches(); }
  });
  pickInput.addEventListener('blur', () => setTimeout(() => { if (!picker.contains(document.activeElement)) { pickList.hidden = true; pickInput.setAttribute('aria-expanded', 'false'); } }, 150));

  function add(name) {
    if (selected.includes(name)) return;
    if (selected.length >= MAX_TAGS) { setText(statusErr, `At most ${MAX_TAGS} tags in one chart.`); return; }
    selected.push(name);
    pickInput.value = '';
    renderMatches();
    pickInput.focus();
    changed();
  }
  function remove(name) {
    selected = selected.filter((x) => x !== name);
    changed();
  }
  function renderChips() {
    clear(chips);
    selected.forEach((name, i) => {
      const pen = PENS[i % PENS.length];
      const sw = h('span', { class: 'pen', 'aria-hidden': 'true' });
      sw.style.borderTopColor = pen.color;
      sw.style.borderTopStyle = pen.dash ? 'dashed' : 'solid';
      const t = info.get(name);
      chips.append(h('li', { class: 'chip', title: t ? t.description || '' : 'unknown tag' }, sw, h('span', { text: name }),
        h('button', { type: 'button', 'aria-label': `Remove ${name}`, text: '×', onclick: () => remove(name) })));
    });
    hint.hidden = selected.length > 0;
  }

  /* ---- view ---- */
  function setRange(k) {
    range = k;
    following = true;
    view = null;
    for (const b of rangeBtns.children) b.setAttribute('aria-pressed', String(b.dataset.range === k));
    changed();
  }
  function pan(f) {
    const v = currentView();
    const span = v.to - v.from;
    let from = v.from + span * f;
    let to = v.to + span * f;
    const now = ctx.now();
    if (to >= now) { to = now; from = now - span; following = span === RANGE_MS[range]; } else following = false;
    view = { from, to };
    changed();
  }
  /** Zoom around the middle of the view (f < 1 in, f > 1 out); the right edge stays at now when following. */
  function zoom(f) {
    const v = currentView();
    const now = ctx.now();
    const span = Math.max(10e3, Math.min(366 * 86400e3, (v.to - v.from) * f));
    let to = following ? now : (v.from + v.to) / 2 + span / 2;
    if (to > now) to = now;
    view = { from: to - span, to };
    following = false;
    changed();
  }

  function currentView() {
    if (following || !view) {
      const now = ctx.now();
      return { from: now - RANGE_MS[range], to: now };
    }
    return view;
  }
  function changed() {
    ctx.setParams({ tags: selected.join(','), range, from: following ? '' : Math.round(currentView().from), to: following ? '' : Math.round(currentView().to) });
    renderChips();
    load();
  }

  function seriesDefs() {
    return selected.map((name, i) => {
      const t = info.get(name) || { name, kind: 'number' };
      const kind = t.kind === 'bool' ? 'bool' : t.kind === 'text' ? 'state' : 'number';
      return {
        label: name, unit: t.unit || '', kind, range: t.range || null, pen: i,
        band: kind === 'number',
        limits: (t.limits || []).map((l) => ({ kind: l.kind, value: l.value })),
        states: kind === 'state' ? (states.get(name) || []) : undefined,
      };
    });
  }

  function stateIndex(name, v) {
    if (v === null || v === undefined) return null;
    let list = states.get(name);
    if (!list) { list = []; states.set(name, list); }
    const s = String(v);
    let i = list.indexOf(s);
    if (i < 0) { list.push(s); i = list.length - 1; }
    return i;
  }

  async function load() {
    const token = ++fetchToken;
    if (abort) abort.abort();
    abort = new AbortController();
    const v = currentView();
    if (!following) view = v;
    updateCsv(v);
    renderStatus(v);
    if (!selected.length) {
      data = { x: [], series: [] };
      await chart.set([], data, { min: v.from / 1000, max: v.to / 1000 });
      return;
    }
    const points = Math.max(50, Math.min(5000, Math.floor(chartEl.clientWidth || 800)));
    bucketMs = (v.to - v.from) / points;
    setText(statusErr, '');
    let results;
    try {
      results = await Promise.all(selected.map((name) =>
        api(`/api/v1/tags/${seg(name)}/history?from=${Math.round(v.from)}&to=${Math.round(v.to)}&points=${points}`, { signal: abort.signal })
          .catch((e) => { if (e.name === 'AbortError') throw e; return { error: e, buckets: [] }; })));
    } catch (e) {
      return; // superseded
    }
    if (token !== fetchToken) return;
    const errs = results.filter((r) => r.error).map((r, i) => `${selected[i]}: ${errorText(r.error)}`);
    setText(statusErr, errs.join('; '));
    // join on bucket times
    const xs = new Set();
    for (const r of results) for (const b of r.buckets || []) xs.add(b.t);
    const x = [...xs].sort((a, b) => a - b);
    const idx = new Map(x.map((t, i) => [t, i]));
    const defs = seriesDefs();
    states = new Map([...states].filter(([k]) => selected.includes(k)));
    const series = results.map((r, si) => {
      const n = x.length;
      const avg = new Array(n).fill(undefined);
      const min = new Array(n).fill(undefined);
      const max = new Array(n).fill(undefined);
      const kind = defs[si].kind;
      for (const b of r.buckets || []) {
        const i = idx.get(b.t);
        if (kind === 'state') {
          avg[i] = stateIndex(selected[si], b.last);
        } else if (kind === 'bool') {
          avg[i] = b.last === null || b.last === undefined ? null : Number(b.last);
          min[i] = b.min; max[i] = b.max;
        } else {
          avg[i] = b.avg; min[i] = b.min; max[i] = b.max;
        }
      }
      return { avg, min, max };
    });
    data = { x: x.map((t) => t / 1000), series };
    await chart.set(seriesDefs(), data, { min: v.from / 1000, max: v.to / 1000 });
    renderStatus(v);
  }

  /** While following now: put the live values at the right edge. */
  function tail() {
    if (!following || !data || !selected.length) return;
    const now = ctx.now();
    const v = { from: now - RANGE_MS[range], to: now };
    const defs = seriesDefs();
    const vals = selected.map((name, i) => {
      const lv = live.values.get(name);
      if (!lv || lv.q === 'bad' || lv.v === null || lv.v === undefined) return null;
      if (defs[i].kind === 'state') return stateIndex(name, lv.v);
      if (typeof lv.v === 'boolean') return lv.v ? 1 : 0;
      return typeof lv.v === 'number' ? lv.v : null;
    });
    const lastX = data.x.length ? data.x[data.x.length - 1] * 1000 : -Infinity;
    if (now - lastX >= bucketMs) {
      data.x.push(now / 1000);
      data.series.forEach((s, i) => { s.avg.push(vals[i]); s.min.push(vals[i]); s.max.push(vals[i]); });
    } else {
      const k = data.x.length - 1;
      data.series.forEach((s, i) => {
        const val = vals[i];
        if (val === null) return;
        s.avg[k] = val;
        s.min[k] = s.min[k] === null || s.min[k] === undefined ? val : Math.min(s.min[k], val);
        s.max[k] = s.max[k] === null || s.max[k] === undefined ? val : Math.max(s.max[k], val);
      });
    }
    // drop what scrolled out on the left
    let cut = 0;
    const from = (v.from - bucketMs) / 1000;
    while (cut < data.x.length && data.x[cut] < from) cut += 1;
    if (cut) {
      data.x.splice(0, cut);
      data.series.forEach((s) => { s.avg.splice(0, cut); s.min.splice(0, cut); s.max.splice(0, cut); });
    }
    if (defs.some((d) => d.kind === 'state')) chart.set(defs, data, { min: v.from / 1000, max: v.to / 1000 });
    else chart.setData(data, { min: v.from / 1000, max: v.to / 1000 });
    updateCsv(v);
    renderStatus(v);
  }

  function updateCsv(v) {
    const p = new URLSearchParams({ tags: selected.join(','), from: String(Math.round(v.from)), to: String(Math.round(v.to)), points: String(Math.max(50, Math.min(5000, Math.floor(chartEl.clientWidth || 800)))) });
    csv.href = `/api/v1/history.csv?${p.toString().replace(/%2C/gi, ',')}`;
    csv.setAttribute('download', `trend-${new Date(v.from).toISOString().slice(0, 16).replace(':', '')}.csv`);
    csv.hidden = !selected.length;
  }

  function renderStatus(v) {
    clear(statusFollow);
    if (following) statusFollow.append(h('span', { class: 'following', text: `Following now (live tail), last ${RANGES.find((r) => r[0] === range)[1]}` }));
    else statusFollow.append(h('span', { text: `Paused: ${fmtDateTime(v.from)} – ${fmtStamp(v.to, v.from)}` }));
    setText(statusSpan, data && data.x.length ? `${fmtInt(data.x.length)} points per tag` : '');
    panRight.disabled = following;
  }

  getTags().then((t) => {
    allTags = t;
    info = t.byName;
    selected = selected.filter((n) => info.has(n));
    changed();
  }).catch((e) => setText(statusErr, `Tags not available: ${errorText(e)}`));

  ctx.every(1000, tail);
  ctx.every(60000, () => { if (following) load(); });

  return {
    update(params) {
      const tagsP = (params.get('tags') || '').split(',').filter(Boolean);
      // the nav link (#/trends without tags) keeps the chart as it is
      if (tagsP.length && tagsP.join(',') !== selected.join(',')) { selected = tagsP.filter((n) => !info.size || info.has(n)).slice(0, MAX_TAGS); }
      if (RANGE_MS[params.get('range')]) range = params.get('range');
      following = true;
      view = null;
      for (const b of rangeBtns.children) b.setAttribute('aria-pressed', String(b.dataset.range === range));
      changed();
    },
    unmount() { if (abort) abort.abort(); chart.destroy(); },
  };
}
