// SQL: an analyst's read-only query over a snapshot of the fleet database,
// run by the hub in a locked-down worker process (docs/sql.md). The answer
// shows each column's DuckDB type and how old the snapshot is.
import { h, clear, setText } from '/common/js/dom.js';
import { post } from '/common/js/api.js';
import { fmtInt } from '/common/js/format.js';
import { errorBox, showError, scrollWrap, grid, emptyRow, agoSpan, tickAges, panel } from '../ui.js';

const EXAMPLE = `SELECT site, node, tag, count(*) AS windows, avg(mean) AS mean
FROM aggregates
WHERE start_ms > epoch_ms(now() - INTERVAL 1 DAY)
GROUP BY ALL
ORDER BY windows DESC`;

const KEY = 'apos.sql.query';

function cellText(v) {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

const NUMERIC = /^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE|DECIMAL)/;

export function mount(root, ctx) {
  let saved = null;
  try { saved = sessionStorage.getItem(KEY); } catch { /* storage off */ }
  const editor = h('textarea', {
    id: 'sql-editor', class: 'sql-editor', rows: '8', spellcheck: 'false', 'data-testid': 'sql-editor',
    'aria-describedby': 'sql-hint',
  });
  editor.value = saved || EXAMPLE;
  const run = h('button', { type: 'submit', class: 'btn primary', text: 'Run', 'data-testid': 'sql-run' });
  const status = h('span', { class: 'muted', 'aria-live': 'polite', 'data-testid': 'sql-status' });
  const err = errorBox();
  err.setAttribute('data-testid', 'sql-error');
  const asOf = h('p', { class: 'chart-note', 'data-testid': 'sql-as-of' });
  const result = h('div', { 'data-testid': 'sql-result' });
  const form = h('form', { class: 'panel', 'aria-label': 'SQL query' },
    h('label', { for: 'sql-editor', text: 'Query (DuckDB SQL, read-only)' }),
    editor,
    h('p', { id: 'sql-hint', class: 'chart-note', text: 'Ctrl+Enter runs. Reads a snapshot of the fleet database; files, network, extensions and writes are refused. Tables: aggregates, kpis, forecasts, alarms, nodes, … (SHOW TABLES lists them).' }),
    h('div', { class: 'more-row' }, run, ' ', status));
  root.append(h('h1', { class: 'sr-only', text: 'SQL' }), form, err, panel('Result', asOf, result));

  let running = false;
  async function go() {
    if (running) return;
    running = true;
    run.disabled = true;
    setText(status, 'running…');
    const q = editor.value;
    try { sessionStorage.setItem(KEY, q); } catch { /* storage off */ }
    const t0 = performance.now();
    try {
      const a = await post('/api/v1/analysis/sql', { query: q });
      showError(err, null);
      render(a);
      setText(status, `${fmtInt(a.row_count)} row${a.row_count === 1 ? '' : 's'}${a.truncated ? ' (truncated: more rows exist)' : ''} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    } catch (e) {
      setText(status, '');
      showError(err, e, e.status === 429 ? 'Busy: ' : e.status === 408 ? 'Stopped: ' : 'Refused: ');
    }
    run.disabled = false;
    running = false;
  }

  function render(a) {
    clear(result);
    const now = ctx.now();
    clear(asOf);
    asOf.append('Data as of ', agoSpan(a.as_of_ms, now), '; stored after that is not included.');
    const cols = a.columns.map((c) => [c.name, NUMERIC.test(c.type) ? 'num' : null]);
    const t = grid(cols, { testid: 'sql-table' });
    const typeRow = h('tr', { class: 'muted' }, a.columns.map((c) => h('th', { scope: 'col', class: NUMERIC.test(c.type) ? 'num' : null, 'data-testid': 'sql-type', text: c.type })));
    t.table.tHead.append(typeRow);
    for (const r of a.rows) {
      t.tbody.append(h('tr', null, r.map((v, i) => h('td', { class: cols[i] && cols[i][1] === 'num' ? 'num' : null, text: cellText(v) }))));
    }
    if (!a.rows.length) emptyRow(t.tbody, Math.max(1, a.columns.length), 'No rows.');
    result.append(scrollWrap(t.table, 'Query result'));
    if (a.truncated) result.append(h('p', { class: 'chart-note', text: `Only the first ${fmtInt(a.row_count)} rows are shown ([sql] max_rows); add a LIMIT or aggregate.` }));
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); go(); });
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); go(); }
  });
  ctx.every(1000, () => tickAges(root, ctx.now()));
  return {};
}
