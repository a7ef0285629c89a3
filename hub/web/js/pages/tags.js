// Tags: one node, several tags on one chart, any range from minutes to a
// year. The hub downsamples in DuckDB to one bucket per chart pixel keeping
// min and max, so spikes survive; the chart draws the min–max band and the
// mean, and a stretch without windows as a gap.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { Chart, PENS } from '/common/js/chart.js';
import { fmtInt, fmtStamp, fmtDateTime, fmtDuration, fmtPct } from '/common/js/format.js';
import { panel, errorBox, showError, nodePicker, rangePicker, allPages, iso, nodeQuery, joinSeries, withGaps } from '../ui.js';

const MAX_TAGS = 8;

export function mount(root, ctx) {
  let node = null;
  let tags = []; // [{tag, first_ms, last_ms, widths_ms, unit?}]
  let selected = ctx.params.getAll('tag').slice(0, MAX_TAGS);
  let token = 0;
  let abort = null;

  const err = errorBox();
  const picker = nodePicker(ctx, (n) => { node = n; selected = []; save(); loadTags(); });
  const range = rangePicker(ctx, () => { save(); loadSeries(); }, { dflt: '1h', idPrefix: 'tag-rng' });
  const filter = h('input', { type: 'search', id: 'tag-filter', placeholder: 'filter tags…', autocomplete: 'off', 'data-testid': 'tag-filter' });
  const list = h('div', { class: 'tag-list', role: 'group', 'aria-label': 'Tags of the node', 'data-testid': 'tag-list' });
  const countEl = h('p', { class: 'chart-note' });
  const chips = h('ul', { class: 'chips', 'aria-label': 'Tags in the chart' });
  const status = h('span');
  const qual = h('span');
  const chartErr = h('span', { class: 'dlg-error', role: 'alert' });
  const chartEl = h('div', { class: 'chart', 'data-testid': 'tag-chart', 'data-points': '0', role: 'figure', 'aria-label': 'Tag chart: min–max band and mean per bucket' });
  const hint = h('p', { class: 'muted', text: 'Tick one or more tags on the left. Drag across the chart to zoom in.' });

  root.append(
    h('h1', { class: 'sr-only', text: 'Tags' }),
    err,
    h('div', { class: 'toolbar' }, picker.el, range.el),
    h('div', { class: 'tags-layout' },
      panel('Tags', h('div', { class: 'field' }, h('label', { for: 'tag-filter', text: 'Filter' }), filter), list, countEl),
      h('section', { class: 'panel chart-wrap' },
        h('h2', null, 'Chart'),
        chips,
        h('div', { class: 'status-line' }, status, qual, chartErr),
        chartEl,
        hint)));

  const chart = new Chart(chartEl, {
    height: Math.max(320, Math.min(600, window.innerHeight - 330)),
    label: 'Tags',
    onSelect: (min, max) => range.set(min * 1000, max * 1000),
  });

  function save() {
    ctx.setParams({ site: node && node.site, node: node && node.node, tag: selected, ...range.params() });
  }

  filter.addEventListener('input', renderList);

  async function loadTags() {
    if (!node) return;
    clear(list);
    list.append(h('p', { class: 'muted', text: 'loading…' }));
    try {
      const { items } = await allPages(`/api/v1/analysis/tags?${nodeQuery(node)}`, { maxItems: 20_000 });
      tags = items.sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
      showError(err, null);
    } catch (e) {
      tags = [];
      showError(err, e, 'Tags not available: ');
    }
    const known = new Set(tags.map((t) => t.tag));
    selected = selected.filter((t) => known.has(t));
    renderList();
    renderChips();
    loadSeries();
  }

  function renderList() {
    clear(list);
    const q = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const t of tags) {
      if (q && !t.tag.toLowerCase().includes(q)) continue;
      shown += 1;
      const id = `tg-${shown}`;
      const box = h('input', { type: 'checkbox', id, value: t.tag, checked: selected.includes(t.tag), 'data-testid': 'tag-check' });
      box.addEventListener('change', () => toggle(t.tag, box));
      list.append(h('label', { for: id, title: `${t.tag}: ${fmtDateTime(t.first_ms)} – ${fmtDateTime(t.last_ms)}` }, box,
        h('span', { text: t.tag }),
        h('span', { class: 'tl-range', text: `${t.last_ms ? fmtStamp(t.last_ms, ctx.now()) : '—'}` })));
    }
    if (!tags.length) list.append(h('p', { class: 'muted', text: node ? 'This node has sent no tag windows.' : 'Pick a node.' }));
    setText(countEl, `${fmtInt(shown)} of ${fmtInt(tags.length)} tags; ${selected.length} of at most ${MAX_TAGS} in the chart. The time at the right is the newest window.`);
  }

  function toggle(tag, box) {
    if (box.checked) {
      if (selected.length >= MAX_TAGS) { box.checked = false; setText(chartErr, `At most ${MAX_TAGS} tags in one chart.`); return; }
      selected.push(tag);
    } else selected = selected.filter((t) => t !== tag);
    save();
    renderChips();
    renderList();
    loadSeries();
  }

  function renderChips() {
    clear(chips);
    selected.forEach((tag, i) => {
      const pen = PENS[i % PENS.length];
      const sw = h('span', { class: 'pen', 'aria-hidden': 'true' });
      sw.style.borderTopColor = pen.color;
      sw.style.borderTopStyle = pen.dash ? 'dashed' : 'solid';
      chips.append(h('li', { class: 'chip' }, sw, h('span', { text: tag }),
        h('button', { type: 'button', 'aria-label': `Remove ${tag}`, text: '×', onclick: () => { selected = selected.filter((x) => x !== tag); save(); renderChips(); renderList(); loadSeries(); } })));
    });
    hint.hidden = selected.length > 0;
  }

  async function loadSeries() {
    const my = ++token;
    if (abort) abort.abort();
    abort = new AbortController();
    const { from, to } = range.get();
    setText(chartErr, '');
    setText(qual, '');
    if (!node || !selected.length) {
      await chart.set([], { x: [], series: [] }, { min: from / 1000, max: to / 1000 });
      chartEl.dataset.points = '0';
      setText(status, '');
      return;
    }
    const points = Math.max(50, Math.min(4000, Math.floor(chartEl.clientWidth || 800)));
    const q = `${nodeQuery(node)}${selected.map((t) => `&tag=${seg(t)}`).join('')}&from=${iso(from)}&to=${iso(to)}&points=${points}`;
    setText(status, 'loading…');
    let res;
    try {
      res = await api(`/api/v1/analysis/series?${q}`, { signal: abort.signal });
    } catch (e) {
      if (e.name === 'AbortError' || my !== token) return;
      setText(status, '');
      setText(chartErr, `Series not available: ${e.detail || e.message}`);
      return;
    }
    if (my !== token) return;
    const step = Math.max(res.bucket_ms || 0, res.source_width_ms || 0) * 2 || 60e3;
    const byTag = new Map((res.series || []).map((s) => [s.tag, s]));
    const info = new Map(tags.map((t) => [t.tag, t]));
    let total = 0;
    let partBad = 0;
    const parts = selected.map((tag) => {
      const s = byTag.get(tag) || { t: [], min: [], max: [], mean: [], good_share: [] };
      total += s.t.length;
      partBad += (s.good_share || []).filter((g) => g !== null && g < 1).length;
      const g = withGaps(s.t, { avg: s.mean, min: s.min, max: s.max }, step);
      return { t: g.t, cols: g.cols };
    });
    // The hub does not know tag units (the windows carry none): each tag
    // gets its own scale, so that 4,000 kg/h and 360 °C are both readable.
    const defs = selected.map((tag, i) => {
      const unit = (info.get(tag) || {}).unit || '';
      return { label: tag, unit, kind: 'number', band: true, pen: i, scale: unit ? null : tag, axisLabel: unit || tag };
    });
    await chart.set(defs, joinSeries(parts), { min: from / 1000, max: to / 1000 });
    chartEl.dataset.points = String(total);
    setText(status, `${fmtInt(total)} buckets of ${fmtDuration((((res.series || [])[0] || {}).bucket_ms || res.bucket_ms || 0) / 1000)} from ${res.source_width_ms ? fmtDuration(res.source_width_ms / 1000) : '—'} windows, ${fmtDateTime(from)} – ${fmtStamp(to, from)}`);
    if (partBad) setText(qual, `${fmtInt(partBad)} buckets hold samples of bad or uncertain quality (${fmtPct(partBad / Math.max(1, total), 1)})`);
  }

  picker.ready.then((n) => { node = n; if (n) { save(); loadTags(); } }).catch((e) => showError(err, e, 'Fleet not available: '));
  // A preset range follows now.
  ctx.every(60_000, () => { if (range.get().preset) loadSeries(); });
  ctx.on('resync', () => loadSeries());

  return {
    unmount() { if (abort) abort.abort(); chart.destroy(); },
  };
}
