// Reports: the stored site reports (newest first) with open, print and PDF
// links, the configured schedule, and a form to make one now (analyst).
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtDateTime, fmtStamp, fmtBytes, fmtInt } from '/common/js/format.js';
import { can } from '/common/js/session.js';
import { panel, errorBox, showError, scrollWrap, grid, emptyRow, getFleet } from '../ui.js';

// Seconds as the config says them: 7 d, 8 h, 30 min.
function span(s) {
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  return `${Math.round(s / 60)} min`;
}

const COLS = [['Report'], ['Site'], ['Period'], ['Made'], ['Insights', 'num'], ['Files']];

// Print through a hidden same-origin frame: the report's print stylesheet applies.
function printReport(id) {
  const old = document.getElementById('report-print-frame');
  if (old) old.remove();
  const f = h('iframe', { id: 'report-print-frame', src: `/api/v1/reports/${seg(id)}/html`, title: 'Report for printing', class: 'sr-only', tabindex: '-1' });
  f.addEventListener('load', () => { try { f.contentWindow.focus(); f.contentWindow.print(); } catch (e) { window.open(f.src, '_blank', 'noopener'); } });
  document.body.append(f);
}

function row(m) {
  const html = `/api/v1/reports/${seg(m.id)}/html`;
  const files = h('td', { class: 'report-files' },
    h('a', { href: html, target: '_blank', rel: 'noopener', 'data-testid': 'report-open', text: 'Open' }), ' · ',
    h('button', { type: 'button', class: 'btn btn-small', 'data-testid': 'report-print', text: 'Print', onclick: () => printReport(m.id) }), ' · ',
    m.pdf_bytes != null
      ? h('a', { href: `/api/v1/reports/${seg(m.id)}/pdf`, target: '_blank', rel: 'noopener', 'data-testid': 'report-pdf', text: `PDF (${fmtBytes(m.pdf_bytes)})` })
      : h('span', { class: 'muted', title: m.pdf_note || '', 'data-testid': 'report-no-pdf', text: 'no PDF' }));
  return h('tr', { 'data-testid': 'report-row', 'data-id': m.id },
    h('td', { text: m.id }),
    h('td', { text: m.site }),
    h('td', { text: `${fmtDateTime(m.from_ms)} – ${fmtStamp(m.to_ms, m.from_ms)}` }),
    h('td', { text: `${fmtDateTime(m.made_ms)} (${m.trigger === 'schedule' ? 'scheduled' : 'on demand'})` }),
    h('td', { class: 'num', text: fmtInt(m.insights) }),
    files);
}

export function mount(root) {
  const err = errorBox();
  const t = grid(COLS, { testid: 'reports-list' });
  const sched = h('ul', { class: 'plain-list', 'data-testid': 'reports-schedule' });
  const note = h('p', { class: 'chart-note' });
  const siteSel = h('select', { id: 'r-site', 'data-testid': 'report-site' });
  const periodSel = h('select', { id: 'r-period', 'data-testid': 'report-period' },
    [['1h', '1 hour'], ['8h', '8 hours'], ['1d', '1 day'], ['7d', '7 days'], ['30d', '30 days']].map(([v, l]) => h('option', { value: v, text: l })));
  periodSel.value = '1d';
  const status = h('span', { class: 'muted', 'data-testid': 'report-status', 'aria-live': 'polite' });
  const makeBtn = h('button', { type: 'submit', class: 'btn', 'data-testid': 'report-make', text: 'Make report now' });
  const form = h('form', { class: 'toolbar', 'data-testid': 'report-form' },
    h('div', { class: 'field' }, h('label', { for: 'r-site', text: 'Site' }), siteSel),
    h('div', { class: 'field' }, h('label', { for: 'r-period', text: 'Period (ending now)' }), periodSel),
    makeBtn, status);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!siteSel.value) return;
    makeBtn.disabled = true;
    setText(status, 'Making the report (Chromium prints the PDF; this takes a few seconds)…');
    try {
      const m = await api('/api/v1/reports', { method: 'POST', body: { site: siteSel.value, period: periodSel.value } });
      setText(status, `Made ${m.id}${m.pdf_note ? ` (${m.pdf_note})` : ''}.`);
      showError(err, null);
      await load();
    } catch (e) {
      setText(status, '');
      showError(err, e, 'Report not made: ');
    } finally {
      makeBtn.disabled = false;
    }
  });
  root.append(
    h('h1', { class: 'sr-only', text: 'Reports' }),
    err,
    can('analyst') ? panel('Make a report', form) : null,
    panel('Stored reports (newest first)', scrollWrap(t.table, 'Stored reports'), note),
    panel('Schedule ([[report]] in the hub configuration)', sched));

  getFleet().then((nodes) => {
    const sites = [...new Set(nodes.map((n) => n.site))].sort();
    for (const s of sites) siteSel.append(h('option', { value: s, text: s }));
  }).catch(() => {});

  let alive = true;
  async function load() {
    let res;
    try {
      res = await api('/api/v1/reports');
    } catch (e) {
      if (alive) showError(err, e, 'Reports not available: ');
      return;
    }
    if (!alive) return;
    clear(t.tbody);
    const items = res.items || [];
    for (const m of items) t.tbody.append(row(m));
    if (!items.length) emptyRow(t.tbody, COLS.length, 'No reports yet: they are made on the schedule below, or now with the form above.');
    t.table.dataset.count = String(items.length);
    clear(sched);
    for (const s of res.scheduled || []) sched.append(h('li', { text: `${s.name}: site ${s.site}, ${s.schedule}, covering ${span(s.period_s)}${s.pdf ? ', with PDF' : ', HTML only'}` }));
    if (!(res.scheduled || []).length) sched.append(h('li', { class: 'muted', text: 'No scheduled reports.' }));
    setText(note, 'Open shows the report; Print opens your browser\'s print dialog with the report\'s print layout; PDF is Chromium\'s print of the same page.');
  }
  load();
  const timer = setInterval(load, 30000);
  return { unmount() { alive = false; clearInterval(timer); } };
}
