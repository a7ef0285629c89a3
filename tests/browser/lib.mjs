// What the browser checks (hmi.mjs, hub.mjs, hub-analysis.mjs) share:
// arguments, Debian's Chromium with the flags the guide names, timed log
// lines, checks that fail with `CHECK FAILED: ...`, polling, the guard that
// refuses every request to another host, and screenshots.
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const AXE_SOURCE = fs.readFileSync(path.join(HERE, 'node_modules/axe-core/axe.min.js'), 'utf8');
const T0 = Date.now();

/** `--key value` pairs; the names in `flags` take no value (true when given). */
export function parseArgs(argv, flags = []) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (flags.includes(key)) { out[key] = true; continue; }
    out[key] = argv[i + 1];
    i += 1;
  }
  return out;
}

export const LAUNCH = {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
};
export const CONTEXT = { viewport: { width: 1440, height: 900 }, locale: 'en-GB', timezoneId: 'Europe/Berlin' };

export function launch() { return chromium.launch(LAUNCH); }

export const elapsed = () => `${((Date.now() - T0) / 1000).toFixed(1)} s`;
export const sinceStart = () => Date.now() - T0;
export function log(msg) { console.log(`[${elapsed()}] ${msg}`); }
export class CheckFailed extends Error {}
export function fail(msg) { throw new CheckFailed(`CHECK FAILED: ${msg}`); }
export function check(cond, msg) { if (!cond) fail(msg); }

/** Poll fn() (async) until it returns a truthy value; fail with msg on timeout. */
export async function until(msg, timeoutMs, fn, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) fail(`${msg} (within ${(timeoutMs / 1000).toFixed(0)} s; last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Every HTTP(S) or WebSocket request of `context` to a host other than
 * `host` is aborted and listed in the returned array (pages must work with
 * no internet: no CDN, no font service).
 */
export async function guardForeign(context, host) {
  const foreign = [];
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (/^(https?|wss?):$/.test(u.protocol) && u.host !== host) {
      foreign.push(`${route.request().method()} ${u.href}`);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  context.on('page', (p) => p.on('websocket', (ws) => {
    if (new URL(ws.url()).host !== host) foreign.push(`WebSocket ${ws.url()}`);
  }));
  return foreign;
}

/** A full-page screenshot `DIR/name.png`, after the page settles. */
export async function screenshot(page, dir, name) {
  await page.waitForTimeout(300);
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
  return file;
}

/** On a failure: the error's message, and a screenshot of the first page. */
export async function reportFailure(e, context, dir) {
  console.error(e instanceof CheckFailed ? e.message : `ERROR: ${e.stack || e}`);
  try {
    const pages = context.pages();
    if (pages.length) await pages[0].screenshot({ path: path.join(dir, 'failure.png'), fullPage: true });
  } catch { /* best effort */ }
}

/**
 * axe-core over the page; serious and critical violations are pushed onto
 * `findings` (the caller fails on them at the end), lesser ones logged.
 * The pages' CSP (script-src 'self') refuses an injected <script>, and the
 * checks keep the CSP on (bypassCSP would hide the pages' own CSP
 * violations): axe is evaluated through the DevTools protocol instead.
 */
export async function axeScan(page, name, findings) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE_SOURCE);
  const res = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, count: v.nodes.length, nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`) })));
  for (const v of res) {
    const line = `${name}: [${v.impact}] ${v.id} (${v.help}) on ${v.count} node(s)\n      ${v.nodes.join('\n      ')}`;
    if (v.impact === 'serious' || v.impact === 'critical') findings.push(line);
    else log(`axe (minor, not failing) ${line}`);
  }
  log(`axe ${name}: ${res.length} violation(s), ${res.filter((v) => v.impact === 'serious' || v.impact === 'critical').length} serious/critical`);
}
