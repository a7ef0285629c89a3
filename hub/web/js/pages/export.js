// Export: windows, KPIs, forecasts or alarms as CSV or Parquet
// (docs/export.md). An export runs on the hub as a job; this page starts
// one, shows its progress and offers the download when it is done. The
// finished exports of the last day are listed below the form.
import { h, clear } from '/common/js/dom.js';
import { api, post, del, seg } from '/common/js/api.js';
import { fmtInt, fmtBytes, fmtStamp, fmtDateTime } from '/common/js/format.js';
import { errorBox, showError, panel, scrollWrap, grid, emptyRow } from '../ui.js';

const WHAT = [['windows', 'Windows (aggregates)'], ['kpis', 'KPIs'], ['forecasts', 'Forecasts'], ['alarms', 'Alarms']];

/** A local datetime-local value → RFC 3339 UTC ("" stays ""). */
function toRfc(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

function progressText(j) {
  if (j.state === 'running') return j.progress == null ? 'running' : `running, ${j.progress.toFixed(0)} %`;
  if (j.state === 'done') return `done: ${fmtInt(j.rows)} rows, ${fmtBytes(j.bytes)}`;
  if (j.state === 'failed') return `failed: ${j.error || ''}`;
  return j.state;
}

export function mount(root, ctx) {
  const err = errorBox();
  const now = Date.now();
  const what = h('select', { id: 'ex-what', 'data-testid': 'export-what' }, WHAT.map(([v, t]) => h('option', { value: v, text: t })));
  const from = h('input', { type: 'datetime-local', id: 'ex-from', required: true, value: localInput(now - 86_400_000), 'data-testid': 'export-from' });
  const to = h('input', { type: 'datetime-local', id: 'ex-to', required: true, value: localInput(now), 'data-testid': 'export-to' });
  const sites = h('input', { type: 'text', id: 'ex-sites', placeholder: 'all', 'data-testid': 'export-sites' });
  const nodes = h('input', { type: 'text', id: 'ex-nodes', placeholder: 'all', 'data-testid': 'export-nodes' });
  const tags = h('input', { type: 'text', id: 'ex-tags', placeholder: 'all', 'data-testid': 'export-tags' });
  const format = h('select', { id: 'ex-format', 'data-testid': 'export-format' }, h('option', { value: 'parquet', text: 'Parquet (zstd)' }), h('option', { value: 'csv', text: 'CSV' }));
  const partition = h('input', { type: 'checkbox', id: 'ex-partition', 'data-testid': 'export-partition' });
  const go = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Export', 'data-testid': 'export-start' });
  const status = h('div', { role: 'status', 'aria-live': 'polite', 'data-testid': 'export-progress' });
  const bar = h('progress', { max: '100', hidden: true, 'aria-label': 'Export progress' });
  const link = h('p', { 'data-testid': 'export-download' });
  const field = (id, label, el, note) => h('div', { class: 'field' }, h('label', { for: id, text: label }), el, note ? h('span', { class: 'muted', text: note }) : null);
  const form = h('form', { class: 'form-row', novalidate: true, 'data-testid': 'export-form' },
    field('ex-what', 'What', what),
    field('ex-from', 'From (inclusive, local time)', from),
    field('ex-to', 'To (exclusive)', to),
    field('ex-sites', 'Sites', sites, 'comma-separated'),
    field('ex-nodes', 'Nodes', nodes, 'comma-separated'),
    field('ex-tags', 'Tags / KPIs / alarms', tags, 'comma-separated'),
    field('ex-format', 'Format', format),
    h('div', { class: 'field' }, h('label', { for: 'ex-partition', text: 'Partition by site and day (.tar)' }), partition),
    go);
  const jobs = grid(['Started', 'By', 'What', 'Range (UTC)', 'Format', 'State', ['Rows', 'num'], ['Size', 'num'], 'Download'], { testid: 'export-jobs' });
  root.append(h('h1', { class: 'sr-only', text: 'Export' }), err,
    panel('Export', form, status, bar, link,
      h('p', { class: 'chart-note', text: 'Times are sent as UTC; windows and KPIs are selected by their start, forecasts by their origin, alarms by their time. Exports are kept on the hub for a day.' })),
    panel('Recent exports', scrollWrap(jobs.table, 'Recent exports')));

  let polling = null;
  function downloadLink(j) {
    return h('a', { href: `/api/v1/etl/exports/${seg(j.id)}/download`, download: j.file_name, text: j.file_name });
  }

  async function follow(id) {
    clearTimeout(polling);
    try {
      const j = await api(`/api/v1/etl/exports/${seg(id)}`);
      status.textContent = progressText(j);
      status.className = j.state === 'failed' ? 'val bad' : '';
      bar.hidden = !(j.state === 'queued' || j.state === 'running');
      if (j.progress != null) bar.value = j.progress; else bar.removeAttribute('value');
      clear(link);
      if (j.state === 'done') { link.append(downloadLink(j)); loadJobs(); }
      else if (j.state === 'queued' || j.state === 'running') polling = setTimeout(() => follow(id), 1000);
      else loadJobs();
    } catch (e) { showError(err, e, 'Export status not available: '); }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { what: what.value, from: toRfc(from.value), to: toRfc(to.value), sites: list(sites.value), nodes: list(nodes.value), tags: list(tags.value), format: format.value, partition: partition.checked };
    if (!body.from || !body.to) { showError(err, { message: 'Give both times.' }); return; }
    go.disabled = true;
    try {
      const j = await post('/api/v1/etl/exports', body);
      showError(err, null);
      clear(link);
      follow(j.id);
    } catch (e) { showError(err, e, 'The export was refused: '); }
    go.disabled = false;
  });

  async function loadJobs() {
    try {
      const res = await api('/api/v1/etl/exports');
      clear(jobs.tbody);
      const t = ctx.now();
      for (const j of res.items || []) {
        const rm = h('button', { type: 'button', class: 'btn btn-small', text: j.state === 'running' || j.state === 'queued' ? 'Cancel' : 'Remove',
          onclick: async () => { try { await del(`/api/v1/etl/exports/${seg(j.id)}`); loadJobs(); } catch (e) { showError(err, e); } } });
        jobs.tbody.append(h('tr', { 'data-state': j.state },
          h('td', { class: 'nowrap', title: fmtDateTime(j.created_ms), text: fmtStamp(j.created_ms, t) }),
          h('td', { text: j.by }),
          h('td', { text: j.what + (j.sites.length ? ` site ${j.sites.join(',')}` : '') + (j.nodes.length ? ` node ${j.nodes.join(',')}` : '') + (j.tags.length ? ` ${j.tags.join(',')}` : '') }),
          h('td', { class: 'nowrap', text: `${j.from} – ${j.to}` }),
          h('td', { text: j.format + (j.partition ? ', site/day' : '') }),
          h('td', null, j.state === 'failed' ? h('span', { class: 'val bad', text: progressText(j) }) : h('span', { text: progressText(j) })),
          h('td', { class: 'num', text: j.rows == null ? '—' : fmtInt(j.rows) }),
          h('td', { class: 'num', text: j.bytes == null ? '—' : fmtBytes(j.bytes) }),
          h('td', { class: 'nowrap' }, j.state === 'done' ? downloadLink(j) : '—', ' ', rm)));
      }
      if (!jobs.tbody.firstChild) emptyRow(jobs.tbody, 9, 'No export in the last day.');
    } catch (e) { showError(err, e, 'Exports not available: '); }
  }
  loadJobs();
  return { unmount: () => clearTimeout(polling) };
}
