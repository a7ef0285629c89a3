// Alarms: flood banner, active list (priority, then newest), acknowledge /
// shelve / unshelve, journal history, legend of priority shapes.
import { h, clear, setText, setClass, openDialog, field } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { alarmOrder } from '/common/js/live.js';
import { fmtAge, fmtValueUnit, fmtNumber, fmtStamp, fmtDuration, fmtDateTime, ALARM_STATE_TEXT, LIMIT_LABEL, PRIORITIES } from '/common/js/format.js';
import { prioBadge, prioShape, prioLegend } from '/common/js/prio.js';
import { panel, errorText, getTags, scrollWrap } from '../ui.js';

const SHELVE_CHOICES = [
  ['15', '15 min'], ['60', '1 h'], ['240', '4 h'], ['480', '8 h'], ['oneshot', 'one-shot (until it clears)'],
];

export function mount(root, ctx) {
  const { live } = ctx;
  const operator = ctx.can('operator');
  let fallback = null; // alarms from GET before the first snapshot
  let tagInfo = new Map();
  const rows = new Map(); // name → tr

  /* ---- flood banner ---- */
  const floodText = h('span');
  const flood = h('div', { class: 'flood-banner bg-p4', role: 'alert', 'data-testid': 'flood-banner', hidden: true }, prioShape(4), floodText);

  /* ---- tabs ---- */
  const tabActive = h('button', { type: 'button', role: 'tab', id: 'tab-active', 'aria-controls': 'panel-active', 'aria-selected': 'true', text: 'Active' });
  const tabHist = h('button', { type: 'button', role: 'tab', id: 'tab-history', 'aria-controls': 'panel-history', 'aria-selected': 'false', tabindex: '-1', text: 'History' });
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Alarm views' }, tabActive, tabHist);

  /* ---- active ---- */
  const cols = ['Priority', 'Active for', 'Alarm', 'Message', 'Value / limit', 'State'];
  if (operator) cols.push('Actions');
  const tbody = h('tbody');
  const emptyRow = h('tr', null, h('td', { colspan: String(cols.length), class: 'muted', text: 'No active alarms.' }));
  const activeTable = h('table', { class: 'grid alarms', 'data-testid': 'alarm-table' },
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: c === 'Value / limit' || c === 'Active for' ? 'num' : null, text: c })))),
    tbody);
  const summary = h('span', { class: 'h-extra', 'aria-live': 'polite' });
  const actErr = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const activePanel = h('section', { class: 'panel', id: 'panel-active', role: 'tabpanel', 'aria-labelledby': 'tab-active' },
    h('h2', null, h('span', { text: 'Active alarms' }), summary), actErr, scrollWrap(activeTable, 'Active alarms table'));

  /* ---- history ---- */
  const hBody = h('tbody');
  const hTable = h('table', { class: 'grid', 'data-testid': 'alarm-history' },
    h('thead', null, h('tr', null, ['Time', 'Alarm', 'Priority', 'Change', 'State', 'Value', 'By', 'Comment', 'Seq'].map((c) =>
      h('th', { scope: 'col', class: c === 'Value' || c === 'Seq' ? 'num' : null, text: c })))),
    hBody);
  const more = h('button', { type: 'button', class: 'btn', text: 'Load more', 'data-testid': 'history-more' });
  const hErr = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const histPanel = h('section', { class: 'panel', id: 'panel-history', role: 'tabpanel', 'aria-labelledby': 'tab-history', hidden: true },
    h('h2', { text: 'Alarm journal (newest first)' }), hErr, scrollWrap(hTable, 'Alarm journal table'), h('div', { class: 'more-row' }, more));

  root.append(
    h('h1', { class: 'sr-only', text: 'Alarms' }),
    flood, tabs, activePanel, histPanel,
    panel('Priority legend', prioLegend(),
      h('p', { class: 'muted', text: 'Colour, shape and number always go together. Unacknowledged alarms are in bold. Shelved, suppressed and out-of-service alarms stay in the list with their state.' })));

  function select(which) {
    const act = which === 'active';
    tabActive.setAttribute('aria-selected', String(act));
    tabHist.setAttribute('aria-selected', String(!act));
    tabActive.tabIndex = act ? 0 : -1;
    tabHist.tabIndex = act ? -1 : 0;
    activePanel.hidden = !act;
    histPanel.hidden = act;
    ctx.setParams({ view: act ? '' : 'history' });
    if (!act && !hBody.firstChild) loadHistory();
  }
  tabActive.addEventListener('click', () => select('active'));
  tabHist.addEventListener('click', () => select('history'));
  tabs.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      const next = document.activeElement === tabActive ? tabHist : tabActive;
      next.focus();
      select(next === tabActive ? 'active' : 'history');
    }
  });

  /* ---- active list ---- */

  function alarmsNow() {
    if (live.alarms.size || live.up) return live.sortedAlarms();
    return fallback ? [...fallback].sort(alarmOrder) : [];
  }

  function predictedText(a) {
    const p = a.predicted;
    if (!p) return null;
    let lim = null;
    const info = tagInfo.get(a.tag);
    if (info && info.limits) {
      const l = info.limits.find((x) => x.value === a.limit && x.kind);
      if (l) lim = LIMIT_LABEL[l.kind];
    }
    if (!lim && a.limit !== null && p.forecast_value !== null && p.forecast_value !== undefined) lim = p.forecast_value >= a.limit ? 'HI' : 'LO';
    const when = p.crosses_in_s === null || p.crosses_in_s === undefined ? 'soon' : `in ${fmtDuration(p.crosses_in_s)}`;
    return `forecast to cross ${lim || 'its limit'}${a.limit !== null ? ` (${fmtValueUnit(a.limit, a.unit)})` : ''} ${when} — model ${p.model}`;
  }

  function buildRow(a) {
    const tr = h('tr', { class: 'alarm-row', 'data-testid': 'alarm-row' });
    tr._c = {
      prio: h('td'), age: h('td', { class: 'num age' }), name: h('td', { class: 'a-name' }),
      msg: h('td', { class: 'alarm-msg wrap' }), val: h('td', { class: 'num nowrap' }), state: h('td', { class: 'a-state' }),
      act: operator ? h('td') : null,
    };
    const c = tr._c;
    tr.append(c.prio, c.age, c.name, c.msg, c.val, c.state);
    if (c.act) tr.append(c.act);
    updateRow(tr, a);
    return tr;
  }

  function updateRow(tr, a) {
    const c = tr._c;
    tr._a = a;
    tr.dataset.alarm = a.name;
    tr.dataset.state = a.state;
    tr.className = `alarm-row p${a.priority}${a.state === 'unacknowledged' || a.state === 'returned_unacknowledged' ? ' unack' : ''}${a.active ? '' : ' inactive'}`;
    const sig = JSON.stringify([a.priority, a.state, a.message, a.value, a.limit, a.shelved, a.predicted, a.acked, a.active]);
    if (tr._sig === sig) { tickRow(tr); return; }
    tr._sig = sig;
    clear(c.prio).append(prioBadge(a.priority));
    clear(c.name).append(h('span', { text: a.name }), h('span', { class: 'a-shelf', text: a.tag }));
    clear(c.msg).append(h('span', { text: a.message || '' }));
    const pt = predictedText(a);
    if (pt) c.msg.append(h('span', { class: 'a-predict', text: pt }));
    const kindLabel = LIMIT_LABEL[a.kind] || a.kind;
    clear(c.val).append(h('span', { text: a.value === null || a.value === undefined ? '—' : fmtValueUnit(a.value, a.unit) }));
    if (a.limit !== null && a.limit !== undefined) c.val.append(h('span', { class: 'a-shelf', text: `${LIMIT_LABEL[a.kind] ? `${kindLabel} ` : ''}limit ${fmtValueUnit(a.limit, a.unit)}` }));
    clear(c.state).append(h('span', { class: 'a-state-text', text: ALARM_STATE_TEXT[a.state] || a.state }));
    if (a.latched) c.state.append(h('span', { class: 'a-shelf', text: 'latched' }));
    if (a.shelved) {
      const s = a.shelved;
      const until = s.one_shot ? 'until it clears (one-shot)' : s.until_ms ? `until ${fmtStamp(s.until_ms, ctx.now())}` : '';
      c.state.append(h('span', { class: 'a-shelf', text: `by ${s.by || '?'} ${until}: ${s.reason || ''}` }));
    }
    if (c.act) {
      clear(c.act);
      const box = h('div', { class: 'a-actions' });
      if (!a.acked && (a.state === 'unacknowledged' || a.state === 'returned_unacknowledged')) {
        box.append(h('button', { type: 'button', class: 'btn btn-small', 'data-write': '', 'data-testid': 'ack-button', text: 'Acknowledge', 'aria-label': `Acknowledge ${a.name}`, onclick: () => ackDialog(tr._a) }));
      }
      if (a.state === 'shelved' || a.shelved) {
        box.append(h('button', { type: 'button', class: 'btn btn-small', 'data-write': '', 'data-testid': 'unshelve-button', text: 'Unshelve', 'aria-label': `Unshelve ${a.name}`, onclick: () => unshelve(tr._a) }));
      } else if (a.state !== 'out_of_service' && a.state !== 'suppressed') {
        box.append(h('button', { type: 'button', class: 'btn btn-small', 'data-write': '', 'data-testid': 'shelve-button', text: 'Shelve', 'aria-label': `Shelve ${a.name}`, onclick: () => shelveDialog(tr._a) }));
      }
      c.act.append(box);
      ctx.applyWrites(box);
    }
    tickRow(tr);
  }

  function tickRow(tr) {
    const a = tr._a;
    const t = a.since_ms ?? a.last_change_ms;
    setText(tr._c.age, t ? fmtAge(ctx.now() - t) : '—');
    tr._c.age.title = t ? fmtDateTime(t) : '';
  }

  let raf = 0;
  function render() {
    if (raf) return;
    raf = requestAnimationFrame(() => {
      raf = 0;
      const list = alarmsNow().filter((a) => a.state !== 'normal');
      const keep = new Set(list.map((a) => a.name));
      for (const [name, tr] of rows) if (!keep.has(name)) { tr.remove(); rows.delete(name); }
      const order = [];
      for (const a of list) {
        let tr = rows.get(a.name);
        if (!tr) { tr = buildRow(a); rows.set(a.name, tr); } else updateRow(tr, a);
        order.push(tr);
      }
      // move rows only when the order changed (moving a row would blur a focused button)
      const cur = [...tbody.children].filter((x) => x !== emptyRow);
      const same = cur.length === order.length && cur.every((x, i) => x === order[i]);
      if (!same) {
        emptyRow.remove();
        order.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
      }
      if (!order.length && !emptyRow.parentNode) tbody.append(emptyRow);
      if (order.length && emptyRow.parentNode) emptyRow.remove();
      const unack = list.filter((a) => a.state === 'unacknowledged' || a.state === 'returned_unacknowledged').length;
      setText(summary, `${list.length} not normal, ${unack} unacknowledged`);
      renderFlood();
    });
  }

  function renderFlood() {
    const on = live.flood || (!live.up && fallback && fallback.flood);
    flood.hidden = !on;
    if (on) {
      const since = ctx.now() - 600000;
      const n = alarmsNow().filter((a) => (a.since_ms ?? 0) >= since).length;
      setText(floodText, `ALARM FLOOD — ${n} alarms in 10 min`);
    }
  }

  /* ---- actions ---- */

  async function act(name, what, body) {
    const res = await api(`/api/v1/alarms/${seg(name)}/${what}`, { method: 'POST', body: body || {} });
    if (res && res.name) {
      live.updateAlarm(res);
      if (!live.up && fallback) fallback = fallback.map((x) => (x.name === res.name ? res : x));
    }
    render();
    return res;
  }

  function ackDialog(a) {
    const comment = h('textarea', { name: 'comment', maxlength: '500', 'data-testid': 'ack-comment' });
    const err = h('p', { class: 'dlg-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-write': '', 'data-testid': 'ack-submit', text: 'Acknowledge' });
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    const d = openDialog({
      title: `Acknowledge ${a.name}`,
      testid: 'ack-dialog',
      body: [h('p', { text: a.message || '' }), field('Comment (optional)', comment).wrap, err],
      actions: [cancel, submit],
    });
    ctx.applyWrites(d.dialog);
    cancel.addEventListener('click', () => d.close());
    d.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      submit.disabled = true;
      try {
        await act(a.name, 'ack', comment.value.trim() ? { comment: comment.value.trim() } : {});
        d.close();
      } catch (e) {
        setText(err, errorText(e));
        ctx.applyWrites(d.dialog);
        if (ctx.writable()) submit.disabled = false;
      }
    });
  }

  function shelveDialog(a) {
    const reason = h('input', { type: 'text', name: 'reason', required: true, maxlength: '200', autocomplete: 'off', 'data-testid': 'shelve-reason' });
    const dur = h('select', { name: 'duration', 'data-testid': 'shelve-duration' }, SHELVE_CHOICES.map(([v, l]) => h('option', { value: v, text: l })));
    dur.value = '60';
    const err = h('p', { class: 'dlg-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-write': '', 'data-testid': 'shelve-submit', text: 'Shelve' });
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    const d = openDialog({
      title: `Shelve ${a.name}`,
      testid: 'shelve-dialog',
      body: [h('p', { text: a.message || '' }), field('Reason (required)', reason).wrap, field('Duration', dur).wrap, err],
      actions: [cancel, submit],
    });
    ctx.applyWrites(d.dialog);
    cancel.addEventListener('click', () => d.close());
    d.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      if (!reason.value.trim()) {
        setText(err, 'A reason is required to shelve an alarm.');
        reason.setAttribute('aria-invalid', 'true');
        reason.focus();
        return;
      }
      submit.disabled = true;
      const body = dur.value === 'oneshot' ? { reason: reason.value.trim(), one_shot: true } : { reason: reason.value.trim(), minutes: Number(dur.value) };
      try {
        await act(a.name, 'shelve', body);
        d.close();
      } catch (e) {
        setText(err, errorText(e));
        ctx.applyWrites(d.dialog);
        if (ctx.writable()) submit.disabled = false;
      }
    });
  }

  async function unshelve(a) {
    actErr.hidden = true;
    try {
      await act(a.name, 'unshelve');
    } catch (e) {
      actErr.hidden = false;
      setText(actErr, `Unshelve ${a.name}: ${errorText(e)}`);
    }
  }

  /* ---- history ---- */

  let oldest = null;
  let loadingHist = false;
  async function loadHistory(reset) {
    if (loadingHist) return;
    loadingHist = true;
    more.disabled = true;
    if (reset) { clear(hBody); oldest = null; }
    try {
      const q = new URLSearchParams({ limit: '100' });
      if (oldest !== null) q.set('before', String(oldest));
      const res = await api(`/api/v1/alarms/history?${q}`);
      const entries = res.entries || [];
      const now = ctx.now();
      for (const e of entries) {
        hBody.append(h('tr', { 'data-testid': 'history-row' },
          h('td', { class: 'nowrap', text: fmtStamp(e.ts_ms, now) }),
          h('td', { text: e.alarm }),
          h('td', null, e.priority ? prioBadge(e.priority, { short: true }) : '—'),
          h('td', { text: e.change }),
          h('td', { text: ALARM_STATE_TEXT[e.state] || e.state || '' }),
          h('td', { class: 'num', text: e.value === null || e.value === undefined ? '—' : fmtNumber(e.value) }),
          h('td', { text: e.by || '' }),
          h('td', { class: 'wrap', text: e.comment || '' }),
          h('td', { class: 'num', text: String(e.seq) })));
        oldest = oldest === null ? e.seq : Math.min(oldest, e.seq);
      }
      if (!hBody.firstChild) hBody.append(h('tr', null, h('td', { colspan: '9', class: 'muted', text: 'No journal entries.' })));
      more.hidden = entries.length < 100;
      hErr.hidden = true;
    } catch (e) {
      hErr.hidden = false;
      setText(hErr, `History not available: ${errorText(e)}`);
    }
    more.disabled = false;
    loadingHist = false;
  }
  more.addEventListener('click', () => loadHistory(false));

  /* ---- wiring ---- */

  getTags().then((t) => { tagInfo = t.byName; for (const tr of rows.values()) { tr._sig = ''; } render(); }).catch(() => {});
  if (!live.alarms.size) {
    api('/api/v1/alarms').then((res) => { fallback = res.alarms || []; fallback.flood = res.flood; render(); })
      .catch((e) => { actErr.hidden = false; setText(actErr, `Alarms not available: ${errorText(e)}`); });
  }
  ctx.on('snapshot', render);
  ctx.on('alarm', render);
  ctx.on('alarms', render);
  ctx.on('status', renderFlood);
  ctx.every(1000, () => { for (const tr of rows.values()) tickRow(tr); });
  render();
  if (ctx.params.get('view') === 'history') select('history');

  return {
    update(params) { select(params.get('view') === 'history' ? 'history' : 'active'); },
    unmount() { cancelAnimationFrame(raf); },
  };
}
