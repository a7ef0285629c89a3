// Import: a historian export (CSV or .xlsx) into the fleet database. Upload,
// check the proposed mapping (columns to tags and units, time format and
// zone, target site and node, window width, valid ranges), optionally save
// it as a named profile, start, follow the progress, read the validation
// report with every rejected row. docs/import.md.
import { h, clear, setText, field } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtInt, fmtNumber, fmtDateTime, fmtBytes, fmtDuration } from '/common/js/format.js';
import { errorBox, showError, scrollWrap, grid, emptyRow, panel } from '../ui.js';

const opt = (v, label, sel) => h('option', { value: v, text: label ?? v, selected: sel ? true : null });

async function csrf() {
  try { const s = await api('/api/v1/session', { quiet401: true }); return s && s.csrf; } catch { return null; }
}

// The file goes as the request body, streamed (XHR for the upload progress).
function uploadFile(file, site, node, onProgress) {
  return csrf().then((token) => new Promise((resolve, reject) => {
    const q = new URLSearchParams({ name: file.name, site, node });
    const x = new XMLHttpRequest();
    x.open('POST', `/api/v1/etl/imports/uploads?${q}`);
    x.setRequestHeader('Content-Type', 'application/octet-stream');
    x.setRequestHeader('Accept', 'application/json, application/problem+json');
    if (token) x.setRequestHeader('X-CSRF-Token', token);
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    x.onload = () => {
      let body = null;
      try { body = JSON.parse(x.responseText); } catch { /* not JSON */ }
      if (x.status >= 200 && x.status < 300) resolve(body);
      else reject(Object.assign(new Error((body && body.detail) || x.statusText), { status: x.status, detail: body && body.detail }));
    };
    x.onerror = () => reject(new Error('The hub did not answer (network error).'));
    x.send(file);
  }));
}

export function mount(root, ctx) {
  const err = errorBox();
  let upload = null;
  let columns = [];
  let timer = null;

  // 1. Upload.
  const fileIn = h('input', { type: 'file', accept: '.csv,.txt,.xlsx', 'data-testid': 'import-file' });
  const siteIn = h('input', { type: 'text', value: 'import', size: '12', 'data-testid': 'import-site' });
  const nodeIn = h('input', { type: 'text', value: 'historian', size: '12', 'data-testid': 'import-node' });
  const upBtn = h('button', { type: 'submit', class: 'btn', text: 'Upload', 'data-testid': 'import-upload' });
  const upNote = h('p', { class: 'chart-note', text: 'CSV (any delimiter) or .xlsx; long form (time, tag, value[, quality]) or wide form (time, one column per tag).' });
  const upForm = h('form', { class: 'form-row', 'data-testid': 'import-upload-form' },
    field('File', fileIn).wrap, field('Site', siteIn).wrap, field('Node', nodeIn).wrap, upBtn);

  // 2. Mapping.
  const saved = h('select', { 'data-testid': 'import-saved' }, opt('', '— proposed from the file —'));
  const layout = h('select', { 'data-testid': 'import-layout' }, opt('long', 'long (time, tag, value)'), opt('wide', 'wide (one column per tag)'));
  const timeCol = h('select', { 'data-testid': 'import-time-col' });
  const timeFmt = h('input', { type: 'text', size: '18', 'data-testid': 'import-time-format' });
  const zone = h('input', { type: 'text', size: '16', value: 'UTC', 'data-testid': 'import-zone' });
  const width = h('input', { type: 'number', min: '1', max: '86400', value: '60', size: '6', 'data-testid': 'import-width' });
  const tagCol = h('select', { 'data-testid': 'import-tag-col' });
  const valCol = h('select', { 'data-testid': 'import-value-col' });
  const qCol = h('select', { 'data-testid': 'import-quality-col' });
  const tags = grid(['Import', 'Column / name in file', 'Tag', 'Unit', ['Min', 'num'], ['Max', 'num']], { testid: 'import-tags' });
  const profName = h('input', { type: 'text', size: '18', placeholder: 'profile name', 'data-testid': 'import-profile-name' });
  const save = h('input', { type: 'checkbox', 'data-testid': 'import-save-profile' });
  const startBtn = h('button', { type: 'submit', class: 'btn primary', text: 'Import', 'data-testid': 'import-start' });
  const preview = h('div');
  const longOnly = h('div', { class: 'form-row' }, field('Tag column', tagCol).wrap, field('Value column', valCol).wrap, field('Quality column', qCol).wrap);
  const mapForm = h('form', { 'data-testid': 'import-form', hidden: true },
    h('div', { class: 'form-row' }, field('Saved profile', saved).wrap, field('Layout', layout).wrap),
    h('div', { class: 'form-row' }, field('Time column', timeCol).wrap,
      field('Time format', timeFmt, 'rfc3339, excel, unix_ms, unix_s or a strftime pattern like %d.%m.%Y %H:%M:%S').wrap,
      field('Time zone (IANA)', zone, 'for times without an offset').wrap,
      field('Window (s)', width).wrap),
    longOnly,
    scrollWrap(tags.table, 'Tags'),
    h('p', { class: 'chart-note', text: 'Long form: list tags to give them a unit, a name or a valid range; unlisted tags are imported as named in the file. Values outside a tag\u2019s range are rejected.' }),
    h('div', { class: 'form-row' }, field('Profile name', profName).wrap, h('label', null, save, ' save as a profile'), startBtn),
    preview);

  // 3. Progress and report.
  const bar = h('progress', { max: '1', value: '0' });
  const progText = h('span', { 'data-testid': 'import-progress-text' });
  const progress = h('section', { class: 'panel', 'data-testid': 'import-progress', hidden: true }, h('h2', { text: 'Progress' }), bar, ' ', progText);
  const report = h('section', { class: 'panel', 'data-testid': 'import-report', hidden: true });
  const recent = grid(['Started', 'File', 'Status', 'Node', ['Rows', 'num'], ['Accepted', 'num'], ['Rejected', 'num'], ['Windows', 'num'], 'By'], { testid: 'import-list' });

  root.append(h('h1', { class: 'sr-only', text: 'Import' }), err,
    panel('Historian export', upNote, upForm), panel('Mapping', mapForm), progress, report,
    panel('Imports', scrollWrap(recent.table, 'Imports')));

  function fillSelect(sel, value, none) {
    clear(sel);
    if (none) sel.append(opt('', '— none —'));
    for (const c of columns) sel.append(opt(c, c, c === value));
  }

  function tagRow(m, included) {
    const inc = h('input', { type: 'checkbox', checked: included ? true : null });
    const col = h('input', { type: 'text', size: '16', value: m.column || '' });
    const tag = h('input', { type: 'text', size: '16', value: m.tag || m.column || '' });
    const unit = h('input', { type: 'text', size: '8', value: m.unit || '' });
    const min = h('input', { type: 'number', step: 'any', size: '8', value: m.min ?? '' });
    const max = h('input', { type: 'number', step: 'any', size: '8', value: m.max ?? '' });
    const tr = h('tr', { 'data-testid': 'import-tag-row' }, ...[inc, col, tag, unit, min, max].map((x) => h('td', null, x)));
    tr.read = () => inc.checked && col.value.trim() ? {
      column: col.value.trim(), tag: tag.value.trim() || null, unit: unit.value.trim() || null,
      min: min.value === '' ? null : Number(min.value), max: max.value === '' ? null : Number(max.value),
    } : null;
    return tr;
  }

  function showProfile(p) {
    layout.value = p.layout;
    fillSelect(timeCol, p.time_column);
    timeFmt.value = p.time_format || 'rfc3339';
    zone.value = p.time_zone || 'UTC';
    width.value = String((p.width_ms || 60000) / 1000);
    fillSelect(tagCol, p.tag_column);
    fillSelect(valCol, p.value_column);
    fillSelect(qCol, p.quality_column, true);
    if (p.site) siteIn.value = p.site;
    if (p.node) nodeIn.value = p.node;
    clear(tags.tbody);
    const listed = new Map((p.tags || []).map((t) => [t.column, t]));
    if (p.layout === 'wide') {
      for (const c of columns) if (c !== p.time_column) tags.tbody.append(tagRow(listed.get(c) || { column: c }, listed.size === 0 || listed.has(c)));
    } else {
      for (const t of p.tags || []) tags.tbody.append(tagRow(t, true));
      tags.tbody.append(tagRow({}, true));
    }
    longOnly.hidden = p.layout !== 'long';
    mapForm.extra = { delimiter: p.delimiter, decimal_comma: p.decimal_comma, skip_rows: p.skip_rows, sheet: p.sheet, good_quality: p.good_quality, any_offset: p.any_offset };
  }

  function readProfile() {
    const p = {
      layout: layout.value, site: siteIn.value.trim(), node: nodeIn.value.trim(),
      width_ms: Math.round(Number(width.value) * 1000), time_column: timeCol.value,
      time_format: timeFmt.value.trim(), time_zone: zone.value.trim() || 'UTC',
      tags: [...tags.tbody.children].map((tr) => tr.read && tr.read()).filter(Boolean),
    };
    if (p.layout === 'long') {
      p.tag_column = tagCol.value; p.value_column = valCol.value;
      if (qCol.value) p.quality_column = qCol.value;
    }
    for (const [k, v] of Object.entries(mapForm.extra || {})) if (v !== null && v !== undefined) p[k] = v;
    return p;
  }

  layout.addEventListener('change', () => showProfile({ ...readProfile(), layout: layout.value, tags: [] }));

  async function loadSaved() {
    try {
      const list = await api('/api/v1/etl/import-profiles');
      clear(saved);
      saved.append(opt('', '— proposed from the file —'));
      for (const s of list) saved.append(opt(s.name));
      saved.profiles = new Map(list.map((s) => [s.name, s.profile]));
    } catch (e) { showError(err, e, 'Profiles not available: '); }
  }
  saved.addEventListener('change', () => {
    const p = saved.profiles && saved.profiles.get(saved.value);
    if (p) { showProfile(p); profName.value = saved.value; } else if (upload && upload.proposal) showProfile(upload.proposal.profile);
  });

  upForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = fileIn.files && fileIn.files[0];
    if (!f) return;
    upBtn.disabled = true;
    progress.hidden = false;
    report.hidden = true;
    try {
      upload = await uploadFile(f, siteIn.value.trim() || 'import', nodeIn.value.trim() || 'historian', (d, t) => {
        bar.max = t; bar.value = d; setText(progText, `uploading: ${fmtBytes(d)} of ${fmtBytes(t)}`);
      });
      setText(progText, `uploaded ${fmtBytes(upload.bytes)}`);
      if (!upload.proposal) throw Object.assign(new Error(upload.proposal_error || 'no proposal'), { detail: upload.proposal_error });
      columns = upload.proposal.columns;
      showProfile(upload.proposal.profile);
      clear(preview);
      const pv = grid(columns, { testid: 'import-preview' });
      for (const r of upload.proposal.preview.slice(0, 5)) pv.tbody.append(h('tr', null, r.map((c) => h('td', { text: c }))));
      preview.append(h('h3', { text: 'First rows' }), scrollWrap(pv.table, 'First rows'));
      mapForm.hidden = false;
      await loadSaved();
      showError(err, null);
    } catch (e) { showError(err, e, 'Upload failed: '); }
    upBtn.disabled = false;
  });

  mapForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!upload) return;
    startBtn.disabled = true;
    try {
      const body = { upload: upload.upload, profile: readProfile(), save_profile: save.checked };
      if (profName.value.trim()) body.profile_name = profName.value.trim();
      const a = await api('/api/v1/etl/imports', { method: 'POST', body });
      upload = null;
      mapForm.hidden = true;
      follow(a.id, a.already_imported);
      showError(err, null);
    } catch (e) { showError(err, e, 'Import not started: '); }
    startBtn.disabled = false;
  });

  function follow(id, already) {
    progress.hidden = false;
    clearInterval(timer);
    const tick = async () => {
      try {
        const s = await api(`/api/v1/etl/imports/${seg(id)}`);
        const p = s.progress;
        if (p) {
          bar.max = Math.max(1, p.total); bar.value = Math.min(p.done, p.total);
          setText(progText, `${p.phase}: ${fmtInt(p.rows)} rows, ${fmtInt(Math.round(p.rows_per_s))} rows/s` +
            (p.eta_s !== null && p.phase === 'reading' ? `, about ${fmtDuration(p.eta_s)} left` : '') +
            (p.rejections ? `, ${fmtInt(p.rejections)} rejected` : ''));
        }
        if (s.record.status !== 'running') {
          clearInterval(timer);
          bar.max = 1; bar.value = 1;
          setText(progText, s.record.status);
          showReport(s.record, already);
          loadList();
        }
      } catch (e) { clearInterval(timer); showError(err, e, 'Progress not available: '); }
    };
    timer = setInterval(tick, 500);
    tick();
  }

  async function showReport(r, already) {
    clear(report);
    report.hidden = false;
    const failed = r.status === 'failed';
    report.append(h('h2', { text: `Report: ${r.file_name}` }),
      already ? h('p', { 'data-testid': 'import-already', text: `Already imported with this profile on ${fmtDateTime(r.started_ms)}: nothing was stored again.` }) : '',
      failed ? h('p', { class: 'state-bad', text: `FAILED: ${r.error || ''}` }) : '',
      h('p', { 'data-testid': 'import-counts', text: `${fmtInt(r.rows_total)} rows read: ${fmtInt(r.rows_accepted)} accepted, ${fmtInt(r.rows_rejected)} rejected (${fmtInt(r.rejections)} rejections). Stored ${fmtInt(r.samples)} samples of ${fmtInt(r.tags)} tags in ${fmtInt(r.windows)} windows of ${fmtNumber(r.width_ms / 1000)} s at ${r.site} / ${r.node}` +
        (r.first_ms ? `, ${fmtDateTime(r.first_ms)} to ${fmtDateTime(r.last_ms)}.` : '.') }));
    if (r.site && r.first_ms) report.append(h('p', null, h('a', { href: `#/analysis?site=${seg(r.site)}&node=${seg(r.node)}`, text: 'Show the imported tags in the charts' })));
    const t = grid([['Row', 'num'], 'Column', 'Reason', 'Cell'], { testid: 'import-rejections' });
    report.append(scrollWrap(t.table, 'Rejected rows'));
    try {
      const page = await api(`/api/v1/etl/imports/${seg(r.id)}/rejections?limit=1000`);
      for (const j of page.items) {
        t.tbody.append(h('tr', { 'data-testid': 'import-rejection' },
          h('td', { class: 'num', text: String(j.row) }), h('td', { text: j.column || '(row)' }),
          h('td', null, h('span', { class: 'val bad', text: j.reason })), h('td', { text: j.value ?? '' })));
      }
      if (!page.items.length) emptyRow(t.tbody, 4, 'No row was rejected.');
      if (page.total > page.items.length) report.append(h('p', { class: 'chart-note', text: `The first ${page.items.length} of ${fmtInt(page.total)} rejections.` }));
    } catch (e) { showError(err, e, 'Report not available: '); }
  }

  async function loadList() {
    try {
      const list = await api('/api/v1/etl/imports');
      clear(recent.tbody);
      for (const r of list) {
        const tr = h('tr', { 'data-testid': 'import-row' },
          h('td', { class: 'nowrap', text: fmtDateTime(r.started_ms) }), h('td', { text: r.file_name }),
          h('td', null, r.status === 'failed' ? h('span', { class: 'state-bad', text: 'FAILED' }) : h('span', { text: r.status })),
          h('td', { text: `${r.site} / ${r.node}` }), h('td', { class: 'num', text: fmtInt(r.rows_total) }),
          h('td', { class: 'num', text: fmtInt(r.rows_accepted) }),
          h('td', { class: 'num' }, r.rows_rejected ? h('span', { class: 'val bad', text: fmtInt(r.rows_rejected) }) : '0'),
          h('td', { class: 'num', text: fmtInt(r.windows) }), h('td', { text: r.by_user || '' }));
        tr.style.cursor = 'pointer';
        tr.addEventListener('click', () => { if (r.status === 'running') follow(r.id, false); else showReport(r, false); });
        recent.tbody.append(tr);
      }
      if (!recent.tbody.firstChild) emptyRow(recent.tbody, 9, 'Nothing imported yet.');
    } catch (e) { showError(err, e, 'Imports not available: '); }
  }
  loadList();
  loadSaved();
  ctx.onCleanup(() => clearInterval(timer));
}
