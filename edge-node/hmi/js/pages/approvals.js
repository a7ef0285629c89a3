// Approvals: setpoint recommendations from the hub, waiting for an
// operator. Each shows the plant's current value (live, with quality and
// age), the proposed value and what this edge would write (clamped into its
// own limits), the expected benefit, the rationale, the model's confidence
// and the time left. Operators approve or reject (a comment is required to
// reject); engineers may edit the value within the limits before approving.
// Nothing here writes to the PLC directly: the edge's setpoint task does,
// in bounded steps, verifying each by read-back.
import { h, clear, setText, openDialog, field } from '/common/js/dom.js';
import { post, seg } from '/common/js/api.js';
import { fmtValueUnit, fmtNumber, fmtAge, fmtStamp, fmtDuration } from '/common/js/format.js';
import { session } from '/common/js/session.js';
import { panel, errorText, scrollWrap } from '../ui.js';

const STATE_TEXT = {
  pending: 'Waiting for approval',
  approved: 'Approved',
  executing: 'Writing',
  ended: 'Done',
  rejected: 'Rejected',
  expired: 'Expired',
  superseded: 'Superseded',
};

function outcomeText(o) {
  if (!o) return '';
  switch (o.kind) {
    case 'completed': return `completed at ${fmtNumber(o.final_value)}`;
    case 'rolled_back': return `ROLLED BACK to ${fmtNumber(o.value)}: ${o.reason}`;
    case 'rollback_failed': return `ROLLBACK FAILED (${o.error}) after: ${o.reason}`;
    case 'failed': return `stopped at ${fmtNumber(o.left_at)}: ${o.reason}`;
    case 'aborted': return `not started: ${o.reason}`;
    default: return o.kind;
  }
}

// Analysts rank with operators but do not approve plant writes (the API
// answers 403): no buttons for them.
function mayApprove(ctx) {
  const s = session();
  return ctx.can('operator') && !(s && s.role === 'analyst');
}

export function mount(root, ctx) {
  const engineer = ctx.can('engineer');
  const status = h('p', { class: 'muted', 'aria-live': 'polite' });
  const err = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const pendingBox = h('div', { class: 'sp-cards', 'data-testid': 'approval-queue' });
  const hBody = h('tbody');
  const histTable = h('table', { class: 'grid', 'data-testid': 'approval-history' },
    h('thead', null, h('tr', null, ['Updated', 'Setpoint', 'Proposed', 'Approved', 'State', 'By', 'Comment / result'].map((c) =>
      h('th', { scope: 'col', class: c === 'Proposed' || c === 'Approved' ? 'num' : null, text: c })))),
    hBody);
  const limBody = h('tbody');
  const limTable = h('table', { class: 'grid', 'data-testid': 'setpoint-limits' },
    h('thead', null, h('tr', null, ['Setpoint', 'Min', 'Max', 'Max step', 'Min interval', 'Interlocks'].map((c) =>
      h('th', { scope: 'col', class: ['Min', 'Max', 'Max step', 'Min interval'].includes(c) ? 'num' : null, text: c })))),
    limBody);
  const refusedList = h('ul', { class: 'sp-refused', 'data-testid': 'refused' });
  root.append(
    h('h1', { class: 'sr-only', text: 'Approvals' }),
    status, err,
    panel('Waiting for approval', pendingBox),
    panel('Recent decisions and moves', scrollWrap(histTable, 'Recent setpoint decisions')),
    panel('This edge\'s write limits', scrollWrap(limTable, 'Setpoint limits'),
      h('p', { class: 'muted', text: 'Every write stays within these limits whatever the hub proposes; larger moves are ramped in steps, each verified by read-back and rolled back with an alarm if it does not take.' })),
    panel('Refused recommendations', refusedList),
  );

  let data = null;
  const poller = ctx.poll('/api/v1/setpoints', 2000, (d, e) => {
    err.hidden = !e;
    if (e) { setText(err, `Cannot read the approval queue: ${errorText(e)}`); return; }
    data = d;
    render();
  });
  ctx.every(1000, () => { if (data) tickAges(); });

  function currentOf(tag) {
    return data && data.current ? data.current[tag] : null;
  }

  function currentText(tag, unit) {
    const c = currentOf(tag);
    if (!c || c.value === null || c.value === undefined) return { text: 'no reading', bad: true };
    const bad = !c.good;
    return { text: fmtValueUnit(c.value, unit), bad, quality: c.quality, age: c.age_ms };
  }

  function tickAges() {
    for (const el of root.querySelectorAll('[data-expires]')) {
      const left = Number(el.dataset.expires) - ctx.now();
      setText(el, left > 0 ? `expires in ${fmtDuration(Math.round(left / 1000))}` : 'expired');
    }
  }

  function render() {
    if (!data.enabled) {
      setText(status, 'Write-back is off on this edge (no [setpoints] in its configuration): recommendations from the hub are refused.');
    } else {
      setText(status, `Recommendations are accepted only when signed by the hub's key. Last sequence accepted: ${data.last_seq}.`);
    }
    const pending = data.entries.filter((e) => ['pending', 'approved', 'executing'].includes(e.status.state));
    const done = data.entries.filter((e) => !['pending', 'approved', 'executing'].includes(e.status.state));
    clear(pendingBox);
    if (!pending.length) pendingBox.append(h('p', { class: 'muted', text: 'Nothing is waiting for approval.' }));
    for (const e of pending) pendingBox.append(card(e));
    clear(hBody);
    for (const e of done.sort((a, b) => b.updated_ms - a.updated_ms)) {
      const p = e.proposal;
      const d = e.decision;
      const res = e.status.state === 'ended' ? outcomeText(e.status.outcome) : (d && d.comment) || '';
      const abnormal = e.status.state === 'ended' && e.status.outcome && e.status.outcome.kind !== 'completed';
      hBody.append(h('tr', { 'data-testid': 'history-row', 'data-id': p.id, 'data-state': e.status.state, class: abnormal ? 'abnormal' : null },
        h('td', { class: 'nowrap', text: fmtStamp(e.updated_ms, ctx.now()) }),
        h('td', { text: p.tag }),
        h('td', { class: 'num', text: fmtValueUnit(p.proposed, p.unit) }),
        h('td', { class: 'num', text: e.approved_value === null || e.approved_value === undefined ? '—' : fmtValueUnit(e.approved_value, p.unit) }),
        h('td', { text: STATE_TEXT[e.status.state] || e.status.state }),
        h('td', { text: d ? `${d.by} (${d.role})` : '' }),
        h('td', { class: 'wrap', text: res })));
    }
    if (!done.length) hBody.append(h('tr', null, h('td', { colspan: '7', class: 'muted', text: 'No decisions yet.' })));
    clear(limBody);
    for (const l of data.limits) {
      limBody.append(h('tr', null,
        h('td', { text: l.tag }),
        h('td', { class: 'num', text: fmtValueUnit(l.min, l.unit) }),
        h('td', { class: 'num', text: fmtValueUnit(l.max, l.unit) }),
        h('td', { class: 'num', text: fmtValueUnit(l.max_step, l.unit) }),
        h('td', { class: 'num', text: `${fmtNumber(l.min_interval_s)} s` }),
        h('td', { text: l.interlocks.join(', ') || 'none' })));
    }
    clear(refusedList);
    for (const r of data.refused) refusedList.append(h('li', { text: `${fmtStamp(r.at_ms, ctx.now())} — ${r.id}: ${r.reason}` }));
    if (!data.refused.length) refusedList.append(h('li', { class: 'muted', text: 'None.' }));
    ctx.applyWrites(root);
    tickAges();
  }

  function card(e) {
    const p = e.proposal;
    const cur = currentText(p.tag, p.unit);
    const state = e.status.state;
    const rows = [
      ['Current (plant)', h('span', { class: cur.bad ? 'sp-bad' : null, 'data-testid': 'sp-current' }, cur.text,
        cur.age !== undefined ? h('span', { class: 'muted', text: ` · ${cur.quality} · ${fmtAge(cur.age)} old` }) : null)],
      ['Current (at the hub)', fmtValueUnit(p.hub_value, p.unit)],
      ['Proposed', h('strong', { 'data-testid': 'sp-proposed', text: fmtValueUnit(p.proposed, p.unit) })],
      ['Will write', h('span', { 'data-testid': 'sp-to-write' }, fmtValueUnit(e.to_write, p.unit),
        e.clamped ? h('span', { class: 'sp-clamped', text: ` (clamped from ${fmtNumber(e.clamped.from)}: edge limit)` }) : null)],
      ['Expected benefit (whole recommendation)', h('span', { 'data-testid': 'sp-benefit', text: `${p.benefit >= 0 ? '+' : ''}${fmtNumber(p.benefit, 0)} ${p.benefit_unit}` })],
      ['Model confidence', h('span', { 'data-testid': 'sp-confidence', text: `${Math.round(p.confidence * 100)} % — ${p.confidence_text}` })],
      ['Why', h('span', { class: 'wrap', text: p.rationale })],
    ];
    if (e.move) {
      const m = e.move;
      rows.push(['Progress', h('span', { 'data-testid': 'sp-progress', text: `${fmtNumber(m.last_verified)} of ${fmtNumber(m.start)} → ${fmtNumber(m.target)}, ${m.steps_verified} step(s) verified${m.waiting ? ` — ${m.waiting}` : ''}` })]);
    }
    const dl = h('dl', { class: 'sp-facts' });
    for (const [k, v] of rows) dl.append(h('dt', { text: k }), h('dd', null, v));
    const head = h('h3', null, h('span', { text: p.tag }),
      h('span', { class: 'h-extra', text: STATE_TEXT[state] || state }),
      state === 'pending' ? h('span', { class: 'h-extra', 'data-testid': 'sp-expires', 'data-expires': String(p.expires_ms) }) : null);
    const box = h('article', { class: 'sp-card', 'data-testid': 'approval-card', 'data-id': p.id, 'data-state': state }, head, dl);
    if (state === 'pending' && mayApprove(ctx)) {
      box.append(h('div', { class: 'a-actions' },
        h('button', { type: 'button', class: 'btn btn-primary', 'data-write': '', 'data-testid': 'approve-button', text: engineer ? 'Approve / edit…' : 'Approve…', onclick: () => approveDialog(e) }),
        h('button', { type: 'button', class: 'btn', 'data-write': '', 'data-testid': 'reject-button', text: 'Reject…', onclick: () => rejectDialog(e) })));
    }
    return box;
  }

  function approveDialog(e) {
    const p = e.proposal;
    const lim = data.limits.find((l) => l.tag === p.tag);
    const shown = Number(e.to_write.toFixed(4));
    const value = h('input', { type: 'number', step: 'any', name: 'value', value: String(shown), 'data-testid': 'approve-value', readonly: !engineer });
    const comment = h('textarea', { name: 'comment', maxlength: '500', 'data-testid': 'approve-comment' });
    const errEl = h('p', { class: 'dlg-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-write': '', 'data-testid': 'approve-submit', text: 'Approve and write' });
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    const hint = lim ? `Within ${fmtValueUnit(lim.min, lim.unit)} … ${fmtValueUnit(lim.max, lim.unit)}; moved at most ${fmtValueUnit(lim.max_step, lim.unit)} per step.` : '';
    const d = openDialog({
      title: `Approve ${p.tag}`,
      testid: 'approve-dialog',
      body: [
        h('p', { text: `Current ${currentText(p.tag, p.unit).text}; proposed ${fmtValueUnit(p.proposed, p.unit)}.` }),
        field(engineer ? 'Value to write (engineers may edit)' : 'Value to write', value, hint).wrap,
        field('Comment (optional)', comment).wrap, errEl],
      actions: [cancel, submit],
    });
    ctx.applyWrites(d.dialog);
    cancel.addEventListener('click', () => d.close());
    d.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (submit.disabled) return;
      submit.disabled = true;
      const body = {};
      const v = Number(value.value);
      if (engineer && value.value !== '' && v !== shown) body.value = v;
      if (comment.value.trim()) body.comment = comment.value.trim();
      try {
        await post(`/api/v1/setpoints/${seg(p.id)}/approve`, body);
        d.close();
        poller.now();
      } catch (x) {
        setText(errEl, errorText(x));
        if (ctx.writable()) submit.disabled = false;
      }
    });
  }

  function rejectDialog(e) {
    const p = e.proposal;
    const comment = h('textarea', { name: 'comment', maxlength: '500', required: true, 'data-testid': 'reject-comment' });
    const errEl = h('p', { class: 'dlg-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-write': '', 'data-testid': 'reject-submit', text: 'Reject' });
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    const d = openDialog({
      title: `Reject ${p.tag} → ${fmtValueUnit(p.proposed, p.unit)}`,
      testid: 'reject-dialog',
      body: [field('Why (required, goes to the hub)', comment).wrap, errEl],
      actions: [cancel, submit],
    });
    ctx.applyWrites(d.dialog);
    cancel.addEventListener('click', () => d.close());
    d.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!comment.value.trim()) { setText(errEl, 'Say why: the hub\'s analysts read it.'); return; }
      submit.disabled = true;
      try {
        await post(`/api/v1/setpoints/${seg(p.id)}/reject`, { comment: comment.value.trim() });
        d.close();
        poller.now();
      } catch (x) {
        setText(errEl, errorText(x));
        if (ctx.writable()) submit.disabled = false;
      }
    });
  }
}
