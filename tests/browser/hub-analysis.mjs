// Browser checks of the hub's analysis pages (issue 19), driven by
// tests/e2e/hub_analysis_web.rs against a running `apos-demo`:
//
//   node tests/browser/hub-analysis.mjs --url http://127.0.0.1:PORT/ --site S --node N \
//        --screenshots DIR [--pdftotext /usr/bin/pdftotext]
//
// The analyst's password comes from HUB_ANALYST_PASSWORD. Checks: a
// historian CSV with a stuck sensor is imported through the import page
// (upload, mapping, progress, report); the insights page lists the stuck
// sensor over the imported days, ranked, with a link that opens its chart;
// the live demo's insights page lists items or says nothing stands out;
// a report is made on the Reports page, its HTML renders with
// every section, its PDF is fetched and its text (pdftotext) names the
// site and the sections; the SQL page counts the imported windows and the
// export page exports them as CSV (downloaded and counted). No request may leave the hub's host. Screenshots go to DIR.
//
// Every failed check throws `CHECK FAILED: ...`; the exit code is 1.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import { parseArgs, launch, CONTEXT, log, check, until, guardForeign, screenshot, reportFailure } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const URL_ = args.url;
const SITE = args.site;
const NODE = args.node;
const SHOTS = args.screenshots;
const PDFTOTEXT = args.pdftotext || '/usr/bin/pdftotext';
const USER = [process.env.HUB_ANALYST_USER || 'analyst', process.env.HUB_ANALYST_PASSWORD];
if (!URL_ || !SITE || !NODE || !SHOTS || !USER[1]) {
  console.error('usage: HUB_ANALYST_PASSWORD=… node hub-analysis.mjs --url URL --site S --node N --screenshots DIR');
  process.exit(2);
}
const HOST = new URL(URL_).host;

fs.mkdirSync(SHOTS, { recursive: true });
const browser = await launch();
const context = await browser.newContext({ ...CONTEXT, acceptDownloads: true });
const pageErrors = [];
let exitCode = 0;
try {
  const foreign = await guardForeign(context, HOST);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  const goto = async (hash) => {
    await page.evaluate((h) => { location.hash = h; }, hash);
    await page.waitForFunction(() => !document.querySelector('#page .loading'), null, { timeout: 10_000 });
  };
  const shot = (p, name) => screenshot(p, SHOTS, name);

  /* ---- login as the analyst ---- */
  await page.goto(URL_, { waitUntil: 'load' });
  await page.getByTestId('login-user').waitFor({ state: 'visible' });
  await page.getByTestId('login-user').fill(USER[0]);
  await page.getByTestId('login-password').fill(USER[1]);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('logout-button').waitFor({ state: 'visible' });
  log(`logged in as ${USER[0]}`);

  // The demo's windows must have reached the hub.
  const NODE_Q = `site=${encodeURIComponent(SITE)}&node=${encodeURIComponent(NODE)}`;
  await until('the hub has tag windows of the demo node', 180_000, async () => page.evaluate(async (q) => {
    const t = await fetch(`/api/v1/analysis/tags?${q}`);
    return t.ok && ((await t.json()).items || []).length >= 2;
  }, NODE_Q), 2000);

  /* ---- import a historian export through the page, then its insights ---- */
  // Two days of 1-minute samples, wide form: TI-501 lives for a day, then
  // reads 351.2 without change for the second day; FI-502 lives throughout.
  // The hub must find the stuck sensor in the imported data.
  const D0 = Date.UTC(2026, 10, 2); // Monday 2 November 2026, 00:00 UTC
  const DAY = 86_400_000;
  const lines = ['Timestamp,TI-501 [degC],FI-502 [m3/h]'];
  for (let k = 0; k < 2 * 1440; k += 1) {
    const t = D0 + k * 60_000;
    const x = (t % DAY) / DAY * 2 * Math.PI;
    const wiggle = (Math.floor(t / 600_000) % 7) * 0.05;
    const ti = t >= D0 + DAY ? 351.2 : 350 + 3 * Math.sin(x) + wiggle;
    const fi = 50 + 5 * Math.cos(x) + wiggle;
    lines.push(`${new Date(t).toISOString()},${ti.toFixed(3)},${fi.toFixed(3)}`);
  }
  const csvFile = path.join(SHOTS, 'historian-stuck.csv');
  fs.writeFileSync(csvFile, `${lines.join('\n')}\n`);
  const IMP_NODE = `hist-${Date.now() % 100000}`;
  await goto('#/import');
  await page.getByTestId('import-node').fill(IMP_NODE);
  await page.getByTestId('import-file').setInputFiles(csvFile);
  await page.getByTestId('import-upload').click();
  await page.getByTestId('import-form').waitFor({ state: 'visible', timeout: 30_000 });
  await shot(page, 'import-mapping');
  await page.getByTestId('import-start').click();
  const counts = await until('the import finishes with its report', 120_000, async () => {
    const c = page.getByTestId('import-counts');
    return (await c.count()) ? c.textContent() : null;
  }, 500);
  check(/2,880 rows read: 2,880 accepted, 0 rejected/.test(counts), `the import report counts every row: ${counts}`);
  check(counts.includes(`import / ${IMP_NODE}`), `the import report names its site and node: ${counts}`);
  await shot(page, 'import-report');
  log(`imported through the page: ${counts}`);

  await goto(`#/insights?site=import&node=${IMP_NODE}&from=${D0}&to=${D0 + 2 * DAY}`);
  await page.getByTestId('insights-list').waitFor({ state: 'attached' });
  await until('an insight about the imported node', 60_000, async () => (await page.getByTestId('insight').count()) > 0, 500);
  const items = await page.getByTestId('insight').evaluateAll((els) => els.map((e) => ({
    kind: e.dataset.kind,
    importance: Number(e.dataset.importance),
    text: e.querySelector('[data-testid="insight-text"]').textContent,
    link: e.querySelector('[data-testid="insight-link"]').getAttribute('href'),
  })));
  await shot(page, 'insights');
  for (const it of items) {
    check(it.text.length > 20, `an insight with a sentence: ${JSON.stringify(it)}`);
    check(/^#\/(node|tags|forecasts|quality)\?/.test(it.link), `an insight links to its chart page: ${it.link}`);
  }
  for (let i = 1; i < items.length; i += 1) check(items[i - 1].importance >= items[i].importance, `ranked by importance: ${JSON.stringify(items.map((x) => x.importance))}`);
  const stuck = items.filter((x) => x.kind === 'sensor_stuck');
  check(stuck.length === 1 && /Sensor TI-501 at node .* read 351 without change for (2[34](\.\d)? h|1 day)/.test(stuck[0].text),
    `one stuck-sensor insight about TI-501 at 351.2 for about a day: ${JSON.stringify(items)}`);
  check(!items.some((x) => x.text.includes('FI-502')), `nothing said about the living FI-502: ${JSON.stringify(items)}`);
  log(`insights on the import: ${items.length} item(s); ${stuck[0].text}`);
  await page.locator('[data-testid="insight"][data-kind="sensor_stuck"] [data-testid="insight-link"]').click();
  await until('the insight opens the tag chart', 10_000, async () => page.evaluate(() => location.hash).then((h) => h.startsWith('#/tags?') && h.includes('TI-501')));
  await until('the tag chart has points', 30_000, async () => Number(await page.getByTestId('tag-chart').first().getAttribute('data-points')) > 0, 500);
  await shot(page, 'insight-chart');

  // The live demo: the page lists its insights or says in words that
  // nothing stands out (its staged trip comes 8 min after the start,
  // later than this test looks).
  await goto('#/insights?range=15m');
  await page.waitForFunction(() => {
    const l = document.querySelector('[data-testid="insights-list"]');
    return l && (l.querySelector('[data-testid="insight"]') || l.querySelector('[data-testid="insights-empty"]'));
  }, null, { timeout: 60_000 });
  if (await page.getByTestId('insight').count() === 0) {
    const said = await page.getByTestId('insights-empty').textContent();
    check(/Nothing stands out/.test(said), `the empty insights list says so: ${said}`);
  }
  await shot(page, 'insights-demo');

  /* ---- reports: make one, open it, print it to PDF ---- */
  await goto('#/reports');
  await page.getByTestId('reports-list').waitFor({ state: 'attached' });
  await until('the site is offered in the report form', 10_000, async () => (await page.getByTestId('report-site').locator('option').count()) > 0);
  await page.getByTestId('report-site').selectOption(SITE);
  await page.getByTestId('report-period').selectOption('1h');
  const before = await page.getByTestId('report-row').count();
  await page.getByTestId('report-make').click();
  await until('the new report is listed', 120_000, async () => (await page.getByTestId('report-row').count()) > before, 500);
  const first = page.getByTestId('report-row').first();
  const id = await first.getAttribute('data-id');
  const status = await page.getByTestId('report-status').textContent();
  check(await first.getByTestId('report-pdf').count() === 1, `report ${id} has a PDF link (status: ${status})`);
  log(`report ${id} made (${status.trim()})`);
  await shot(page, 'reports');

  // The HTML report renders with every section.
  const rp = await context.newPage();
  rp.on('pageerror', (e) => pageErrors.push(`report page: ${String(e)}`));
  const resp = await rp.goto(new URL(`/api/v1/reports/${encodeURIComponent(id)}/html`, URL_).href, { waitUntil: 'load' });
  check(resp.status() === 200, `the report's HTML answers 200, not ${resp.status()}`);
  const h1 = (await rp.locator('h1').textContent()).trim();
  check(h1 === `Site report: ${SITE}`, `the report's heading: ${h1}`);
  const h2 = await rp.locator('h2').allTextContents();
  for (const s of ['Summary', 'Insights', 'KPIs', 'Trends', 'Alarms', 'Data quality']) check(h2.includes(s), `the report has a ${s} section: ${h2.join(', ')}`);
  const rows = await rp.locator('table tbody tr').count();
  check(rows > 0, 'the report has table rows (KPIs or data quality)');
  await shot(rp, 'report-html');
  await rp.emulateMedia({ media: 'print' });
  await shot(rp, 'report-print');
  await rp.close();
  log(`report HTML: sections ${h2.join(', ')}; ${rows} table rows`);

  // The PDF: fetched with the session, then its text.
  const pdf = await page.request.get(new URL(`/api/v1/reports/${encodeURIComponent(id)}/pdf`, URL_).href);
  check(pdf.status() === 200, `the PDF answers 200, not ${pdf.status()}`);
  check((pdf.headers()['content-type'] || '').startsWith('application/pdf'), `the PDF's type: ${pdf.headers()['content-type']}`);
  const bytes = await pdf.body();
  check(bytes.subarray(0, 5).toString() === '%PDF-', 'the PDF starts with %PDF-');
  const pdfFile = path.join(SHOTS, 'report.pdf');
  fs.writeFileSync(pdfFile, bytes);
  const text = execFileSync(PDFTOTEXT, ['-layout', pdfFile, '-'], { encoding: 'utf8' });
  for (const s of [`Site report: ${SITE}`, 'Summary', 'Insights', 'KPIs', 'Alarms', 'Data quality', NODE]) {
    check(text.includes(s), `the PDF's text contains ${JSON.stringify(s)}:\n${text.slice(0, 2000)}`);
  }
  console.log(`REPORT_PDF bytes=${bytes.length} text_chars=${text.length} file=${pdfFile}`);

  /* ---- SQL and export through their pages, on the imported node ---- */
  await goto('#/sql');
  await page.getByTestId('sql-editor').fill(`SELECT tag, count(*) AS windows FROM aggregates WHERE site = 'import' AND node = '${IMP_NODE}' GROUP BY tag ORDER BY tag`);
  await page.getByTestId('sql-run').click();
  const sqlText = await until('the SQL result lists both imported tags', 60_000, async () => {
    const t = await page.getByTestId('sql-result').textContent();
    return /FI-502[\s\S]*2,?880[\s\S]*TI-501[\s\S]*2,?880/.test(t) ? t : null;
  }, 500);
  await shot(page, 'sql');
  log(`SQL page: ${sqlText.replace(/\s+/g, ' ').slice(0, 120)}`);

  await goto('#/export');
  await page.getByTestId('export-what').selectOption('windows');
  // datetime-local is in the browser's zone (Europe/Berlin, UTC+1 in November).
  await page.getByTestId('export-from').fill('2026-11-02T01:00');
  await page.getByTestId('export-to').fill('2026-11-04T01:00');
  await page.getByTestId('export-sites').fill('import');
  await page.getByTestId('export-nodes').fill(IMP_NODE);
  await page.getByTestId('export-format').selectOption('csv');
  await page.getByTestId('export-start').click();
  const href = await until('the export offers its download', 120_000, async () => page.getByTestId('export-download').locator('a').first().getAttribute('href').catch(() => null), 500);
  const dl = await page.request.get(new URL(href, URL_).href);
  check(dl.status() === 200, `the export's download answers 200, not ${dl.status()}`);
  const body = await dl.body();
  const rowsOut = (body.toString('latin1').match(/TI-501|FI-502/g) || []).length;
  check(rowsOut === 2 * 2880, `the export holds the 5,760 imported windows: ${rowsOut} rows name a tag (${body.length} bytes)`);
  await shot(page, 'export');
  log(`export page: ${body.length} bytes, ${rowsOut} windows`);

  check(foreign.length === 0, `requests left the hub's host: ${foreign.join(', ')}`);
  check(pageErrors.length === 0, `script errors: ${pageErrors.join(' | ')}`);
  console.log('ALL CHECKS PASSED');
} catch (e) {
  exitCode = 1;
  await reportFailure(e, context, SHOTS);
} finally {
  await browser.close().catch(() => {});
}
process.exit(exitCode);
