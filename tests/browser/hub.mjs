// End-to-end browser checks of the APOS hub dashboards, driven by
// tests/e2e/hub_web.rs against a running `apos-demo` (see that file).
//
//   node tests/browser/hub.mjs --url http://127.0.0.1:PORT/ --site S --node N \
//        [--screenshots DIR]
//
// Passwords come from HUB_ANALYST_PASSWORD, HUB_ADMIN_PASSWORD and
// HUB_VIEWER_PASSWORD (users analyst, admin, viewer; the names can be
// changed with HUB_ANALYST_USER, HUB_ADMIN_USER, HUB_VIEWER_USER).
// The demo node must have sent tag windows and KPI values before the
// script starts (the Rust test waits for them over the API).
//
// Every failed check throws `CHECK FAILED: ...`; the exit code is 1.
import path from 'node:path';
import os from 'node:os';
import fs from 'node:fs';
import { parseArgs, launch, CONTEXT, log, fail, check, until, CheckFailed, guardForeign, screenshot, axeScan } from './lib.mjs';

const args = parseArgs(process.argv.slice(2));
const URL_ = args.url;
const SITE = args.site;
const NODE = args.node;
const USERS = {
  analyst: [process.env.HUB_ANALYST_USER || 'analyst', process.env.HUB_ANALYST_PASSWORD],
  admin: [process.env.HUB_ADMIN_USER || 'admin', process.env.HUB_ADMIN_PASSWORD],
  viewer: [process.env.HUB_VIEWER_USER || 'viewer', process.env.HUB_VIEWER_PASSWORD],
};
const SHOTS = args.screenshots || path.join(os.tmpdir(), 'hub-screenshots');
if (!URL_ || !SITE || !NODE || Object.values(USERS).some(([, pw]) => !pw)) {
  console.error('usage: HUB_{ANALYST,ADMIN,VIEWER}_PASSWORD=… node hub.mjs --url URL --site S --node N [--screenshots DIR]');
  process.exit(2);
}
const HOST = new URL(URL_).host;
const NODE_Q = `site=${encodeURIComponent(SITE)}&node=${encodeURIComponent(NODE)}`;
/**
 * In the page: how many canvas pixels of the chart under `sel` are close
 * to the first pen's colour (#1b3d8f): the first series was drawn.
 */
async function inked(page, sel) {
  return page.evaluate((s) => {
    const c = document.querySelector(`${s} canvas`);
    if (!c || !c.width || !c.height) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] > 200 && Math.abs(d[i] - 0x1b) < 40 && Math.abs(d[i + 1] - 0x3d) < 40 && Math.abs(d[i + 2] - 0x8f) < 40) n += 1;
    }
    return n;
  }, sel);
}

/** A chart with data: data-points > 0 and its first series on the canvas. */
async function chartDrawn(page, testid, what, timeoutMs = 30_000) {
  const sel = `[data-testid="${testid}"]`;
  return until(`${what}: ${sel} has data-points > 0 and its first series drawn`, timeoutMs, async () => {
    const pts = Number(await page.locator(sel).first().getAttribute('data-points'));
    if (!(pts > 0)) return null;
    const ink = await inked(page, sel);
    return ink > 20 ? { pts, ink } : null;
  }, 500);
}

/* ---------- first load: bytes and time to the first chart ---------- */

/**
 * #/node (the KPI trend) in a fresh context with a cold cache and the
 * session's cookies: bytes on the wire (HTTP encodedDataLength + WebSocket
 * frames) until the KPI chart has drawn its first series, and that time.
 */
async function firstLoad(browser, cookies) {
  const ctx = await browser.newContext(CONTEXT);
  try {
    await ctx.addCookies(cookies);
    const page = await ctx.newPage();
    const cdp = await ctx.newCDPSession(page);
    const m = { http: 0, ws: 0, requests: 0, counting: true, foreign: [] };
    cdp.on('Network.loadingFinished', (e) => { if (m.counting) { m.http += e.encodedDataLength; m.requests += 1; } });
    cdp.on('Network.webSocketFrameReceived', (e) => {
      if (!m.counting) return;
      const len = Buffer.byteLength(e.response.payloadData, 'utf8');
      m.ws += len + 2 + (len >= 126 ? 2 : 0);
    });
    page.on('request', (r) => { const u = new URL(r.url()); if (u.host !== HOST && /^https?:$/.test(u.protocol)) m.foreign.push(u.href); });
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    const t0 = Date.now();
    await page.goto(`${URL_}#/node?${NODE_Q}&range=1h`, { waitUntil: 'commit' });
    await chartDrawn(page, 'kpi-chart', 'cold #/node load', 20_000);
    const ms = Date.now() - t0;
    m.counting = false;
    check(m.foreign.length === 0, `the cold load asked other hosts: ${m.foreign.join(', ')}`);
    return { bytes: m.http + m.ws, http: m.http, ws: m.ws, requests: m.requests, ms };
  } finally {
    await ctx.close().catch(() => {});
  }
}

/* ---------- the run ---------- */

fs.mkdirSync(SHOTS, { recursive: true });
const browser = await launch();
const context = await browser.newContext(CONTEXT);
const pageErrors = [];
const liveFrames = [];
let exitCode = 0;
try {
  const foreign = await guardForeign(context, HOST);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('websocket', (ws) => {
    ws.on('framereceived', (f) => { try { liveFrames.push(JSON.parse(f.payload).type); } catch { /* binary */ } });
  });

  const goto = async (hash) => {
    await page.evaluate((h) => { location.hash = h; }, hash);
    await page.waitForFunction(() => !document.querySelector('#page .loading'), null, { timeout: 10_000 });
  };
  const shot = (name) => screenshot(page, SHOTS, name);
  const axeFindings = [];
  const axe = (name) => axeScan(page, name, axeFindings);
  const login = async (who) => {
    const [user, pw] = USERS[who];
    if (await page.getByTestId('login-user').count() === 0) await page.getByTestId('login-button').click();
    await page.getByTestId('login-user').fill(user);
    await page.getByTestId('login-password').fill(pw);
    await page.getByTestId('login-submit').click();
    await page.getByTestId('logout-button').waitFor({ state: 'visible' });
    log(`logged in as ${user}`);
  };
  // Logging out opens the login dialog (no anonymous view on the hub).
  const logout = async () => {
    await page.getByTestId('logout-button').click();
    await page.getByTestId('login-user').waitFor({ state: 'visible' });
  };

  /* ---- login ---- */
  await page.goto(URL_, { waitUntil: 'load' });
  await page.getByTestId('login-user').waitFor({ state: 'visible' });
  await shot('login');
  await axe('login');
  await page.getByTestId('login-user').fill(USERS.analyst[0]);
  await page.getByTestId('login-password').fill('certainly-not-the-password');
  await page.getByTestId('login-submit').click();
  await until('a wrong password is refused in the dialog', 10_000, async () => /wrong|password/i.test(await page.locator('.dlg-error').first().textContent()));
  await page.getByTestId('login-password').fill(USERS.analyst[1]);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('logout-button').waitFor({ state: 'visible' });
  log('login: a wrong password refused, the right one accepted');

  // The demo's first KPI windows and tag windows take a while to reach the hub.
  const have = await until('the hub has KPI values and tag windows of the demo node', 180_000, async () => page.evaluate(async (q) => {
    const k = await fetch(`/api/v1/analysis/kpis?${q}`);
    const t = await fetch(`/api/v1/analysis/tags?${q}`);
    if (!k.ok || !t.ok) return null;
    const kj = await k.json();
    const tj = await t.json();
    const ks = (kj.items || []).filter((x) => x.value !== null);
    const tn = (tj.items || []).length;
    // A trend needs a few windows: the page's default KPI (OEE) in its rolling window.
    const oee = ks.find((x) => /oee/i.test(x.kpi) && x.window !== 'shift') || ks[0];
    if (!oee || tn < 2) return null;
    const hq = `${q}&kpi=${encodeURIComponent(oee.kpi)}&window=${encodeURIComponent(oee.window)}&from=${new Date(Date.now() - 3600e3).toISOString()}`;
    const hist = await fetch(`/api/v1/analysis/kpis/history?${hq}`);
    const hn = hist.ok ? ((await hist.json()).items || []).length : 0;
    return hn >= 3 ? { kpis: ks.length, tags: tn, windows: hn } : null;
  }, NODE_Q), 2000);
  log(`the hub has ${have.kpis} KPI values (${have.windows} windows of the OEE trend) and ${have.tags} tags of ${SITE}/${NODE}`);

  /* ---- first load ---- */
  const load = await firstLoad(browser, await context.cookies());
  console.log(`HUB_PAGE_LOAD bytes=${load.bytes} first_chart_ms=${load.ms} http_bytes=${load.http} ws_bytes=${load.ws} requests=${load.requests}`);

  /* ---- fleet: the demo node, online, live ---- */
  await goto('#/fleet');
  await page.waitForSelector('body[data-link="up"]', { timeout: 15_000 });
  const row = page.locator(`[data-testid="fleet-row"][data-site="${SITE}"][data-node="${NODE}"]`);
  await row.waitFor({ state: 'visible' });
  await until(`${SITE}/${NODE} shows status online`, 30_000, async () => (await row.getAttribute('data-status')) === 'online');
  const statusText = (await row.locator('.nstatus').textContent()).trim();
  check(statusText === 'online', `the status cell reads ${JSON.stringify(statusText)}, expected the word "online"`);
  const seen0 = await row.locator('[data-testid="last-seen"] [data-ms]').getAttribute('data-ms');
  await until('the live socket brings a node notice and the row\'s last-seen time moves', 40_000, async () => {
    const seen = await row.locator('[data-testid="last-seen"] [data-ms]').getAttribute('data-ms');
    return liveFrames.includes('node') && seen !== seen0;
  }, 500);
  log(`fleet: ${SITE}/${NODE} online, last seen moved with the live socket (frames: ${[...new Set(liveFrames)].join(', ')})`);
  await shot('fleet');
  await axe('fleet');

  /* ---- node drill-down: a KPI chart with data ---- */
  await goto(`#/node?${NODE_Q}&range=1h`);
  await page.getByTestId('kpi-tile').first().waitFor({ state: 'visible' });
  const kpi = await chartDrawn(page, 'kpi-chart', 'KPI trend');
  log(`node: KPI chart ${kpi.pts} windows, ${kpi.ink} px of the first series`);
  // Compare with last week: a second series appears in the legend.
  await page.getByTestId('kpi-last-week').check();
  await until('the legend lists the week-earlier series', 15_000, async () => (await page.locator('[data-testid="kpi-chart"] .chart-legend li').allTextContents()).some((t) => /week earlier/.test(t)));
  await shot('node');
  await axe('node');

  /* ---- tags: several tags on one chart ---- */
  const tags = await page.evaluate(async (q) => (await (await fetch(`/api/v1/analysis/tags?${q}&limit=1000`)).json()).items.map((t) => t.tag), NODE_Q);
  check(tags.length >= 2, `the demo node has ${tags.length} tags at the hub`);
  const pick = ['heater.outlet_temp', 'heater.fuel_gas_flow'].filter((t) => tags.includes(t));
  const chosen = pick.length === 2 ? pick : tags.slice(0, 2);
  await goto(`#/tags?${NODE_Q}&${chosen.map((t) => `tag=${encodeURIComponent(t)}`).join('&')}&range=15m`);
  const tagChart = await chartDrawn(page, 'tag-chart', 'tag chart');
  const legend = await page.locator('[data-testid="tag-chart"] .chart-legend li').count();
  check(legend === chosen.length, `the tag chart's legend has ${legend} entries for ${chosen.length} tags`);
  log(`tags: ${chosen.join(', ')}: ${tagChart.pts} buckets, ${tagChart.ink} px of the first series`);
  await shot('tags');
  await axe('tags');

  /* ---- the other pages render (screenshots, axe) ---- */
  for (const [hash, name, ready] of [
    [`#/forecasts?${NODE_Q}`, 'forecasts', '[data-testid="forecast-card"], [data-testid="no-models"]'],
    ['#/alarms', 'alarms', '[data-testid="alarm-history"] tbody tr'],
    ['#/quality?range=1h', 'quality', '[data-testid="quality-totals"] tbody tr'],
    ['#/alerts', 'alerts', '[data-testid="alerts-table"] tbody tr'],
  ]) {
    await goto(hash);
    // Rendered: what the page shows when it has data, or an error text.
    await page.waitForFunction((sel) => document.querySelector(sel)
      || [...document.querySelectorAll('#page .dlg-error')].some((e) => !e.hidden && e.textContent.trim()), ready, { timeout: 20_000 })
      .catch(() => fail(`${name}: nothing rendered (${ready})`));
    const errs = (await page.locator('#page .dlg-error:not([hidden])').allTextContents()).filter((t) => t.trim());
    check(errs.length === 0, `${name} shows errors: ${errs.join(' | ')}`);
    await page.waitForTimeout(1500);
    await shot(name);
    await axe(name);
  }

  /* ---- admin links: not for an analyst, not for a viewer ---- */
  check(await page.locator('#nav-admin').isHidden(), 'an analyst sees the Admin link');
  await logout();
  await login('viewer');
  check(await page.locator('#nav-admin').isHidden(), 'a viewer sees the Admin link');
  await goto('#/admin');
  await page.getByTestId('not-allowed').waitFor({ state: 'visible' });
  const api403 = await page.evaluate(async () => Promise.all(['/api/v1/users', '/api/v1/audit'].map(async (p) => [p, (await fetch(p)).status])));
  check(api403.every(([, s]) => s === 403), `a viewer's admin API calls answered ${JSON.stringify(api403)}, expected 403`);
  log(`viewer: no Admin link, #/admin says not allowed, API ${JSON.stringify(api403)}`);
  await shot('admin-viewer');
  await axe('admin-viewer');

  /* ---- admin: users, a token shown once, the audit log ---- */
  await logout();
  await login('admin');
  check(await page.locator('#nav-admin').isVisible(), 'an admin does not see the Admin link');
  await goto('#/admin');
  await page.getByTestId('user-row').first().waitFor({ state: 'visible' });
  await page.getByTestId('token-name').fill('e2e-grafana');
  await page.getByTestId('token-create').click();
  const secret = await page.getByTestId('token-secret').inputValue();
  check(secret.length >= 20, `the new token shown is ${JSON.stringify(secret)}`);
  await page.locator('[data-testid="token-row"][data-name="e2e-grafana"]').waitFor({ state: 'visible' });
  const viaToken = await page.evaluate(async (t) => (await fetch('/api/v1/monitoring/fleet', { credentials: 'omit', headers: { Authorization: `Bearer ${t}` } })).status, secret);
  check(viaToken === 200, `the new token read the fleet with status ${viaToken}`);
  await page.getByTestId('audit-row').first().waitFor({ state: 'visible' });
  log('admin: users listed, token created, shown once and usable, audit log shown');
  await shot('admin');
  await axe('admin');

  check(foreign.length === 0, `requests to other hosts than ${HOST}:\n  ${foreign.join('\n  ')}`);
  log('no request left the hub\'s host');
  check(axeFindings.length === 0, `axe-core found serious or critical violations:\n  ${axeFindings.join('\n  ')}`);
  log('axe-core: no serious or critical violation');
  if (pageErrors.length) fail(`uncaught page errors:\n  ${pageErrors.join('\n  ')}`);
  log('ALL CHECKS PASSED');
} catch (e) {
  exitCode = 1;
  console.error(e instanceof CheckFailed ? e.message : `CHECK FAILED (error): ${e.stack || e}`);
  if (pageErrors.length) console.error(`uncaught page errors:\n  ${pageErrors.join('\n  ')}`);
  try {
    const p = context.pages()[0];
    if (p) await p.screenshot({ path: path.join(SHOTS, 'failure.png'), fullPage: true });
  } catch { /* ignore */ }
} finally {
  await browser.close().catch(() => {});
}
process.exit(exitCode);
