// Node drill-down: current KPIs, a KPI trend with comparison across nodes
// (overlay) and across periods (the same span a week earlier, shifted onto
// this one), and the node's health details.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { Chart } from '/common/js/chart.js';
import { fmtAge, fmtInt, fmtStamp, fmtDateTime, fmtBytes, fmtDuration } from '/common/js/format.js';
import {
  panel, errorBox, showError, nodePicker, rangePicker, allPages, iso, nodeQuery, joinSeries, withGaps,
  getFleet, nodeKey, nodeLabel, tickAges, statusBadge, agoSpan, flagged,
} from '../ui.js';
import { figures, kpiName, kpiWindow, isOee, kpiScale, kpiUnit, kpiTile, FACTORS } from '../kpi.js';

const WEEK = 7 * 86400e3;

export function mount(root, ctx) {
  let node = null; // {site, node}
  let kpis = []; // current values
  let kpi = ctx.params.get('kpi') || '';
  let win = ctx.params.get('window') || '';
  let compare = ctx.params.getAll('cmp'); // other nodes "site/node"
  let lastWeek = ctx.params.get('week') === '1';
  let token = 0;
  let abort = null;

  const err = errorBox();
  const title = h('h1', { class: 'page-title', 'data-testid': 'node-title', text: 'Node' });
  const picker = nodePicker(ctx, (n) => { node = n; kpi = ''; win = ''; compare = []; saveParams(); loadAll(); });
  const tiles = h('div', { class: 'tiles', 'data-testid': 'kpi-tiles' });
  const health = h('div', { 'data-testid': 'node-health' });
  const kpiSel = h('select', { id: 'kpi-pick', 'data-testid': 'kpi-picker' });
  const winSel = h('select', { id: 'kpi-window' });
  const weekBox = h('input', { type: 'checkbox', id: 'kpi-week', 'data-testid': 'kpi-last-week' });
  const cmpBox = h('fieldset', { class: 'checks' }, h('legend', { text: 'Compare with nodes' }));
  const range = rangePicker(ctx, () => { saveParams(); loadTrend(); }, { presets: ['1h', '8h', '24h', '7d', '30d', '1y'], dflt: '24h', idPrefix: 'kpi-rng' });
  const status = h('div', { class: 'status-line' });
  const trendErr = h('span', { class: 'dlg-error', role: 'alert' });
  const chartEl = h('div', { class: 'chart', 'data-testid': 'kpi-chart', 'data-points': '0', role: 'figure', 'aria-label': 'KPI trend chart' });

  root.append(
    h('div', { class: 'toolbar' }, picker.el, title),
    err,
    h('div', { class: 'node-grid' },
      h('div', { class: 'stack' },
        panel('Current KPIs', tiles),
        panel('KPI trend',
          h('div', { class: 'toolbar' },
            h('div', { class: 'field' }, h('label', { for: 'kpi-pick', text: 'KPI' }), kpiSel),
            h('div', { class: 'field' }, h('label', { for: 'kpi-window', text: 'Window' }), winSel),
            range.el),
          h('div', { class: 'toolbar' },
            h('label', { class: 'inline', for: 'kpi-week' }, weekBox, 'Same span a week earlier (shifted onto this one)'),
            cmpBox),
          h('div', { class: 'status-line' }, status, trendErr),
          chartEl,
          h('p', { class: 'chart-note', text: 'One point per KPI window (at its end). Drag across the chart to zoom; OEE and its factors in percent.' }))),
      panel('Node health', health)));

  const chart = new Chart(chartEl, {
    height: 340,
    label: 'KPI trend',
    onSelect: (min, max) => range.set(min * 1000, max * 1000),
    onReset: () => { range.refresh(); },
  });

  function saveParams() {
    ctx.setParams({ site: node && node.site, node: node && node.node, kpi, window: win, week: lastWeek ? '1' : '', cmp: compare, ...range.params() });
  }

  kpiSel.addEventListener('change', () => { kpi = kpiSel.value; win = ''; fillWindows(); saveParams(); loadTrend(); });
  winSel.addEventListener('change', () => { win = winSel.value; saveParams(); loadTrend(); });
  weekBox.checked = lastWeek;
  weekBox.addEventListener('change', () => { lastWeek = weekBox.checked; saveParams(); loadTrend(); });

  /* ---- current KPIs ---- */
  async function loadKpis() {
    if (!node) return;
    try {
      const res = await api(`/api/v1/analysis/kpis?${nodeQuery(node)}`);
      kpis = Array.isArray(res) ? res : res.items || [];
      showError(err, null);
      renderTiles();
      fillKpis();
    } catch (e) {
      showError(err, e, 'KPIs not available: ');
    }
  }

  function renderTiles() {
    clear(tiles);
    const now = ctx.now();
    if (!kpis.length) tiles.append(h('p', { class: 'muted', text: 'This node has sent no KPI values.' }));
    for (const k of kpis) tiles.append(kpiTile(k, now));
  }

  function fillKpis() {
    const names = [...new Set(kpis.map(kpiName))].sort();
    const had = kpiSel.value;
    clear(kpiSel);
    for (const n of names) kpiSel.append(h('option', { value: n, text: n }));
    if (!names.length) { kpiSel.append(h('option', { value: '', text: 'no KPIs' })); return; }
    const want = kpi || had;
    kpi = names.includes(want) ? want : (names.find((n) => /oee/i.test(n)) || names[0]);
    kpiSel.value = kpi;
    const before = win;
    fillWindows();
    if (!chartLoaded || before !== win) loadTrend();
  }

  function fillWindows() {
    const wins = [...new Set(kpis.filter((k) => kpiName(k) === kpi).map(kpiWindow).filter(Boolean))];
    clear(winSel);
    for (const w of wins) winSel.append(h('option', { value: w, text: w }));
    // Rolling windows overlap; the shortest calendar-free one makes the densest trend.
    win = wins.includes(win) ? win : (wins.find((w) => w !== 'shift' && w !== 'day' && w !== 'week') || wins[0] || '');
    winSel.value = win;
  }

  /* ---- other nodes to compare with ---- */
  function fillCompare() {
    getFleet().then((nodes) => {
      for (const el of [...cmpBox.querySelectorAll('label')]) el.remove();
      const others = nodes.filter((n) => !node || nodeKey(n) !== nodeKey(node));
      if (!others.length) { cmpBox.append(h('label', { class: 'muted', text: 'no other node in the fleet' })); return; }
      others.forEach((n, i) => {
        const id = `cmp-${i}`;
        const box = h('input', { type: 'checkbox', id, value: nodeKey(n), checked: compare.includes(nodeKey(n)) });
        box.addEventListener('change', () => {
          compare = box.checked ? [...compare, box.value] : compare.filter((x) => x !== box.value);
          saveParams();
          loadTrend();
        });
        cmpBox.append(h('label', { for: id }, box, nodeLabel(n)));
      });
    }).catch(() => {});
  }

  /* ---- trend ---- */
  let chartLoaded = false;
  async function history(n, from, to, signal) {
    const q = `/api/v1/analysis/kpis/history?${nodeQuery(n)}&kpi=${seg(kpi)}&window=${seg(win)}&from=${iso(from)}&to=${iso(to)}`;
    const { items } = await allPages(q, { signal, maxItems: 20_000 });
    return items.filter((it) => it.end_ms !== undefined).sort((a, b) => a.end_ms - b.end_ms);
  }

  async function loadTrend() {
    if (!node || !kpi) return;
    const my = ++token;
    if (abort) abort.abort();
    abort = new AbortController();
    const { from, to } = range.get();
    setText(trendErr, '');
    setText(status, 'loading…');
    const others = compare.map((k) => { const i = k.indexOf('/'); return { site: k.slice(0, i), node: k.slice(i + 1) }; });
    const jobs = [history(node, from, to, abort.signal)];
    if (lastWeek) jobs.push(history(node, from - WEEK, to - WEEK, abort.signal));
    for (const o of others) jobs.push(history(o, from, to, abort.signal));
    let res;
    try {
      res = await Promise.all(jobs.map((p) => p.catch((e) => { if (e.name === 'AbortError') throw e; return { error: e }; })));
    } catch {
      return; // superseded
    }
    if (my !== token) return;
    const mine = Array.isArray(res[0]) ? res[0] : [];
    // The summary carries the unit; the history's figures tell OEE apart.
    const ref = kpis.find((k) => kpiName(k) === kpi && kpiWindow(k) === win) || kpis.find((k) => kpiName(k) === kpi) || mine[0] || { kpi };
    const oee = isOee(ref);
    const unit = kpiUnit(ref);
    const defs = [];
    const parts = [];
    // Windows that follow each other: a jump of over 2.5 windows is a gap.
    const span = (items) => {
      const w = items.length ? items[0].end_ms - items[0].start_ms : 0;
      return w > 0 ? w * 2.5 : 15 * 60e3;
    };
    const add = (label, items, pick, shift = 0, pen = defs.length) => {
      const t = items.map((it) => it.end_ms + shift);
      const vals = items.map((it) => kpiScale(ref, pick(it)));
      const g = withGaps(t, { avg: vals }, span(items));
      defs.push({ label, unit, kind: 'number', pen, band: false });
      parts.push({ t: g.t, cols: g.cols });
    };
    const here = nodeLabel(node);
    // The factors first, so that the headline (pen 0) is drawn over them
    // where they coincide (OEE equals performance when the others are 100 %).
    if (oee) FACTORS.forEach((f, k) => add(`${f} ${here}`, mine, (it) => figures(it)[f], 0, k + 1));
    add(`${kpi} ${here}`, mine, (it) => it.value, 0, 0);
    const errs = [];
    let i = 1;
    if (lastWeek) {
      if (res[i].error) errs.push(`a week earlier: ${res[i].error.detail || res[i].error.message}`);
      else add(`${kpi} ${here}, a week earlier`, res[i], (it) => it.value, WEEK);
      i += 1;
    }
    for (const o of others) {
      if (res[i].error) errs.push(`${nodeLabel(o)}: ${res[i].error.detail || res[i].error.message}`);
      else add(`${kpi} ${nodeLabel(o)}`, res[i], (it) => it.value);
      i += 1;
    }
    if (res[0].error) errs.unshift(`${here}: ${res[0].error.detail || res[0].error.message}`);
    setText(trendErr, errs.join('; '));
    const data = joinSeries(parts);
    await chart.set(defs, data, { min: from / 1000, max: to / 1000 });
    chartEl.dataset.points = String(mine.length);
    chartLoaded = true;
    const closed = mine.filter((it) => it.closed).length;
    setText(status, `${fmtInt(mine.length)} windows of ${win} (${fmtInt(closed)} closed) from ${fmtDateTime(from)} to ${fmtStamp(to, from)}`);
  }

  /* ---- health ---- */
  async function loadHealth() {
    if (!node) return;
    try {
      const d = await api(`/api/v1/monitoring/nodes/${seg(node.site)}/${seg(node.node)}`);
      renderHealth(d);
    } catch (e) {
      clear(health);
      health.append(h('p', { class: 'dlg-error', role: 'alert', text: `Health not available: ${e.detail || e.message}` }));
    }
  }

  /** NodeDetail: {row: FleetNode, gaps: [{first, last}], lost: [...], quarantine: [...]} */
  function renderHealth(d) {
    clear(health);
    const now = ctx.now();
    const r = d.row || d;
    const dl = h('dl', { class: 'kv live-figure' });
    const row = (k, v) => dl.append(h('dt', { text: k }), h('dd', null, v));
    // What the node reported last is stale once it is not online.
    const stale = r.status !== 'online' && r.last_seen_ms ? `STALE ${fmtAge(now - r.last_seen_ms)}` : null;
    const rep = (text, bad, code) => flagged(text, !!stale || bad, stale || code);
    row('Status', statusBadge(r.status));
    row('Last seen', agoSpan(r.last_seen_ms, now));
    row('Software', r.software_version ? rep(r.software_version, false) : h('span', { class: 'muted', text: '—' }));
    row('Outbox', r.outbox_batches === null || r.outbox_batches === undefined ? h('span', { class: 'muted', text: '—' })
      : rep(`${fmtInt(r.outbox_batches)} batches, ${fmtBytes(r.outbox_bytes)}`, false));
    row('Oldest unacked', r.oldest_unacked_age_s === null || r.oldest_unacked_age_s === undefined ? h('span', { class: 'muted', text: 'none' })
      : rep(fmtAge(r.oldest_unacked_age_s * 1000), r.oldest_unacked_age_s > 300, 'BEHIND'));
    row('Dropped at the edge', flagged(fmtInt(r.dropped_batches ?? 0), r.dropped_batches > 0, 'DATA LOST'));
    row('Batches stored', h('span', { text: `${fmtInt(r.batches)} (highest seq ${fmtInt(r.max_seq)})` }));
    row('Missing seqs', flagged(fmtInt(r.missing ?? 0), r.missing > 0, 'GAP'));
    row('Lost spans', flagged(fmtInt(r.lost_spans ?? 0), r.lost_spans > 0, 'LOST'));
    row('Quarantined', flagged(fmtInt(r.quarantined ?? 0), r.quarantined > 0, 'CHECK'));
    row('Windows stored', h('span', { text: fmtInt(r.windows) }));
    row('Alarms shelved or suppressed', h('span', { text: fmtInt(r.alarms_hidden ?? 0) }));
    if (r.in_flood !== null && r.in_flood !== undefined) row('Alarm flood', r.in_flood ? h('span', { class: 'hdr-flood bg-p4', text: 'IN FLOOD' }) : h('span', { text: 'no' }));
    if (r.configured === false) row('Configured', h('span', { class: 'state-bad', text: 'NOT IN hub.toml' }));
    health.append(dl);
    const list = (title, items, fmt) => {
      if (!items || !items.length) return;
      health.append(h('h3', { text: title }), h('ul', { class: 'plain-list' }, items.map((x) => h('li', { text: fmt(x) }))));
    };
    list('Missing sequence numbers', d.gaps, (g) => (g.first === g.last ? `seq ${g.first}` : `seqs ${g.first}–${g.last} (${fmtInt(g.last - g.first + 1)})`));
    list('Lost spans (the edge never recorded them)', d.lost, (l) => `${fmtDateTime(l.from_ms)} – ${fmtStamp(l.to_ms, l.from_ms)}, ${fmtDuration(l.width_ms / 1000)} windows: ${l.reason}`);
    list('Quarantined batches', d.quarantine, (q) => `seq ${q.seq} at ${fmtDateTime(q.received_ms)}: ${q.reason}`);
  }

  function loadAll() {
    if (!node) return;
    setText(title, `${node.site} / ${node.node}`);
    document.title = `${node.site} / ${node.node} — APOS hub`;
    chartLoaded = false;
    fillCompare();
    loadKpis();
    loadHealth();
  }

  picker.ready.then((n) => {
    node = n;
    if (!n) { setText(title, 'No node yet'); return; }
    saveParams();
    const mine = (m) => node && m.site === node.site && m.node === node.node;
    ctx.refresh(loadAll, { ms: 60_000, on: [] });
    ctx.on('kpis', (m) => { if (mine(m)) { loadKpis(); } });
    ctx.on('node', (m) => { if (mine(m)) loadHealth(); });
    ctx.every(5 * 60_000, () => loadTrend());
  }).catch((e) => showError(err, e, 'Fleet not available: '));
  ctx.every(1000, () => tickAges(root, ctx.now()));

  return {
    update(params) {
      const want = params.get('site') && params.get('node') ? { site: params.get('site'), node: params.get('node') } : null;
      if (want && (!node || nodeKey(want) !== nodeKey(node))) {
        node = want;
        picker.select.value = nodeKey(want);
        kpi = params.get('kpi') || '';
        win = params.get('window') || '';
        compare = params.getAll('cmp');
        loadAll();
      }
    },
    unmount() { if (abort) abort.abort(); chart.destroy(); },
  };
}

