// Overview: devices, KPI tiles, active alarms by priority, hub link.
import { h, clear, setText } from '/common/js/dom.js';
import { fmtAge, fmtInt, fmtNumber, qualityCode, fmtStamp, PRIORITIES } from '/common/js/format.js';
import { prioShape } from '/common/js/prio.js';
import { panel, errorText, statusWord, scrollWrap } from '../ui.js';
import { kpiNumber, kpiUnit, offTarget, better, factorText, coverageText, isFraction } from '../kpi-format.js';

export function mount(root, ctx) {
  const { live } = ctx;
  let data = null;

  const err = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const tiles = h('div', { class: 'tiles' });
  const devBody = h('tbody');
  const devTable = h('table', { class: 'grid' },
    h('thead', null, h('tr', null,
      ['Device', 'Protocol', 'Connection', 'Last good', 'Cycle (ms)', 'Errors', 'Last error'].map((l, i) =>
        h('th', { scope: 'col', class: i >= 3 && i <= 5 ? 'num' : null, text: l })))),
    devBody);
  const alarmList = h('ul', { class: 'alarm-counts' });
  const alarmExtra = h('div', { class: 'row' });
  const hubBox = h('dl', { class: 'kv' });

  root.append(h('h1', { class: 'sr-only', text: 'Overview' }), err, h('div', { class: 'ov-grid' },
    h('div', { class: 'stack' },
      panel('Key figures', tiles),
      panel('Devices', scrollWrap(devTable, 'Devices'))),
    h('div', { class: 'stack' },
      panel([h('span', { text: 'Active alarms' }), h('a', { class: 'h-extra', href: '#/alarms', text: 'Alarm list →' })], alarmList, alarmExtra),
      panel('Hub link', hubBox))));

  function renderKpis() {
    clear(tiles);
    const kpis = (data && data.kpis) || [];
    const seen = new Set();
    const pick = [];
    for (const k of kpis) if (!k.closed && !seen.has(k.name)) { seen.add(k.name); pick.push(k); }
    for (const k of kpis) if (!seen.has(k.name)) { seen.add(k.name); pick.push(k); }
    if (!pick.length) tiles.append(h('p', { class: 'muted', text: 'No KPIs configured.' }));
    for (const k of pick) tiles.append(kpiTile(k));
  }

  function renderDevices() {
    clear(devBody);
    const now = ctx.now();
    const devs = (data && data.devices) || [];
    if (!devs.length) devBody.append(h('tr', null, h('td', { colspan: '7', class: 'muted', text: 'No devices.' })));
    for (const d of devs) {
      const age = d.last_good_ms ? now - d.last_good_ms : null;
      devBody.append(h('tr', { 'data-testid': 'device-row', 'data-device': d.name },
        h('td', { class: 'c-name nowrap', text: d.name }),
        h('td', { class: 'nowrap', text: d.protocol }),
        h('td', { class: 'nowrap' }, statusWord(d.connected, 'connected', 'NOT CONNECTED')),
        h('td', { class: 'num' }, h('span', { class: 'dev-age', 'data-ms': d.last_good_ms ?? '', text: age === null ? 'never' : `${fmtAge(age)} ago` })),
        h('td', { class: 'num', text: d.cycle_ms === null || d.cycle_ms === undefined ? '—' : fmtNumber(d.cycle_ms, 0) }),
        h('td', { class: 'num', text: fmtInt(d.errors) }),
        h('td', { class: 'wrap', text: d.last_error || '—' })));
    }
  }

  function tickAges() {
    const now = ctx.now();
    for (const el of devBody.querySelectorAll('.dev-age')) {
      const ms = Number(el.dataset.ms);
      if (el.dataset.ms) setText(el, `${fmtAge(now - ms)} ago`);
    }
    renderHub();
  }

  function renderAlarms() {
    const counts = { 4: 0, 3: 0, 2: 0, 1: 0 };
    let unack = 0;
    let flood = false;
    if (live.up || (live.alarms.size && !data)) {
      for (const a of live.alarms.values()) {
        if (a.state === 'unacknowledged' || a.state === 'acknowledged') counts[a.priority] += 1;
        if (a.state === 'unacknowledged' || a.state === 'returned_unacknowledged') unack += 1;
      }
      flood = live.flood;
    } else if (data && data.alarms) {
      counts[4] = data.alarms.urgent; counts[3] = data.alarms.high; counts[2] = data.alarms.medium; counts[1] = data.alarms.low;
      unack = data.alarms.unacknowledged;
      flood = data.alarms.flood;
    }
    clear(alarmList);
    for (const p of [4, 3, 2, 1]) {
      alarmList.append(h('li', { 'data-testid': 'alarm-count', 'data-priority': String(p) },
        prioShape(p), h('span', { text: `${p} ${PRIORITIES[p].label}` }), h('span', { class: 'cnt', text: String(counts[p] || 0) })));
    }
    clear(alarmExtra);
    alarmExtra.append(h('span', { class: unack ? 'hdr-unack' : 'muted', text: `${unack} unacknowledged` }));
    if (flood) alarmExtra.append(h('span', { class: 'hdr-flood bg-p4', text: 'ALARM FLOOD' }));
  }

  function renderHub() {
    const hub = (live.status && live.status.hub) || (data && data.hub);
    clear(hubBox);
    if (!hub) { hubBox.append(h('dt', { text: 'State' }), h('dd', { text: '—' })); return; }
    const now = ctx.now();
    const rows = [
      ['State', hub.enabled ? statusWord(hub.connected, 'connected', 'NOT CONNECTED') : 'not used (no hub configured)'],
      ['Outbox depth', fmtInt(hub.outbox_depth)],
      ['Oldest unacked', hub.oldest_unacked_s ? fmtAge(hub.oldest_unacked_s * 1000) : '—'],
      ['Last ack', hub.last_ack_ms ? `${fmtStamp(hub.last_ack_ms, now)} (${fmtAge(now - hub.last_ack_ms)} ago)` : '—'],
    ];
    for (const [k, v] of rows) hubBox.append(h('dt', { text: k }), h('dd', null, v));
  }

  ctx.poll('/api/v1/overview', 5000, (d, e) => {
    err.hidden = !e;
    if (e) { setText(err, `Overview not available: ${errorText(e)}`); return; }
    data = d;
    renderKpis();
    renderDevices();
    renderAlarms();
    renderHub();
  });
  ctx.on('snapshot', renderAlarms);
  ctx.on('alarm', renderAlarms);
  ctx.on('alarms', renderAlarms);
  ctx.on('status', renderHub);
  ctx.every(1000, tickAges);
  renderAlarms();
  return {};
}

function kpiTile(k) {
  const qOk = k.quality === 'good';
  const unit = kpiUnit(k);
  const frac = isFraction(k);
  const val = h('span', { class: `tile-value${qOk ? '' : ' bad'}`, text: kpiNumber(k, k.value) });
  const main = h('div', { class: 'tile-main' }, val, h('span', { class: 'tile-unit', text: unit }));
  if (!qOk) main.append(h('span', { class: 'qcode', text: qualityCode(k.quality, null) }));
  const tile = h('article', { class: 'tile', 'data-testid': 'kpi-tile', 'data-kpi': k.name, 'aria-label': `${k.name} ${k.label || k.window}` },
    h('div', { class: 'tile-head' },
      h('span', { class: 'tile-name', text: k.name }),
      h('span', { class: 'tile-window', text: `${k.label || k.window}${k.closed ? '' : ', so far'}` })),
    main);
  if (k.target !== null && k.target !== undefined) {
    const max = Math.max(k.target * 1.25, k.value || 0, frac ? 1 : 0) || 1;
    const scale = frac ? 1 : max;
    const fill = h('div', { class: 'bar-fill' });
    fill.style.width = `${Math.max(0, Math.min(100, ((k.value || 0) / scale) * 100))}%`;
    const tgt = h('div', { class: 'bar-target' });
    tgt.style.left = `${Math.max(0, Math.min(100, (k.target / scale) * 100))}%`;
    const off = offTarget(k);
    tile.append(
      h('div', { class: 'bar', role: 'img', 'aria-label': `${kpiNumber(k, k.value)} ${unit} against target ${kpiNumber(k, k.target)} ${unit}` }, fill, tgt),
      h('div', { class: 'tile-target' },
        `target ${kpiNumber(k, k.target)} ${unit}`,
        off ? h('span', { class: 'tile-below', text: better(k) === 'lower' ? '  ▲ above target' : '  ▼ below target' }) : null));
  }
  if (k.factors) {
    const f = k.factors;
    tile.append(h('div', { class: 'tile-factors' },
      [['Availability', f.availability], ['Performance', f.performance], ['Quality', f.quality]].map(([l, v]) =>
        h('div', null, h('span', { class: 'f-l muted', text: l }), h('span', { class: 'f-v', text: factorText(v) })))));
  }
  tile.append(h('div', { class: 'tile-meta' },
    h('span', { text: `coverage ${coverageText(k.coverage)}` }),
    h('span', { text: `quality ${k.quality}` })));
  return tile;
}
