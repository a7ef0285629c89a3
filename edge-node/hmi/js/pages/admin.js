// Admin: users (read only: managed with apos-edge user ...) and the audit log
// with its hash-chain check.
import { h, clear, setText } from '/common/js/dom.js';
import { api } from '/common/js/api.js';
import { fmtStamp, fmtDateTime, fmtInt } from '/common/js/format.js';
import { panel, errorText, scrollWrap } from '../ui.js';

const PAGE = 100;

export function mount(root, ctx) {
  const uBody = h('tbody');
  const uErr = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const aBody = h('tbody');
  const aErr = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const more = h('button', { type: 'button', class: 'btn', text: 'Load older entries', 'data-testid': 'audit-more' });
  const verifyBtn = h('button', { type: 'button', class: 'btn', text: 'Verify chain', 'data-testid': 'audit-verify' });
  const verifyOut = h('span', { class: 'verify-result', role: 'status', 'data-testid': 'audit-verify-result' });

  root.append(
    h('h1', { class: 'sr-only', text: 'Admin' }),
    panel('Users',
      uErr,
      h('table', { class: 'grid' },
        h('thead', null, h('tr', null, ['User', 'Role', 'Created', 'Last login'].map((c) => h('th', { scope: 'col', text: c })))),
        uBody),
      h('p', { class: 'muted' }, 'Users are managed on the node with ', h('code', { text: 'apos-edge user add | passwd | remove' }), '.')),
    panel([h('span', { text: 'Audit log' }), h('span', { class: 'h-extra row' }, verifyBtn, verifyOut)],
      aErr,
      scrollWrap(h('table', { class: 'grid' },
        h('thead', null, h('tr', null, ['Seq', 'Time', 'Actor', 'Action', 'Target', 'Detail', 'Address'].map((c) =>
          h('th', { scope: 'col', class: c === 'Seq' ? 'num' : null, text: c })))),
        aBody), 'Audit log table'),
      h('div', { class: 'more-row' }, more)));

  api('/api/v1/users').then((users) => {
    const now = ctx.now();
    for (const u of users) {
      uBody.append(h('tr', { 'data-testid': 'user-row' },
        h('td', { class: 'c-name', text: u.name }),
        h('td', { text: u.role }),
        h('td', { text: fmtStamp(u.created_ms, now) }),
        h('td', { text: u.last_login_ms ? fmtStamp(u.last_login_ms, now) : 'never' })));
    }
  }).catch((e) => { uErr.hidden = false; setText(uErr, `Users not available: ${errorText(e)}`); });

  let oldest = null;
  async function loadAudit() {
    more.disabled = true;
    try {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (oldest !== null) q.set('before', String(oldest));
      const res = await api(`/api/v1/audit?${q}`);
      const entries = res.entries || [];
      const now = ctx.now();
      for (const e of entries) {
        aBody.append(h('tr', { 'data-testid': 'audit-row', 'data-seq': String(e.seq) },
          h('td', { class: 'num', text: String(e.seq) }),
          h('td', { class: 'nowrap', text: fmtStamp(e.ts_ms, now), title: fmtDateTime(e.ts_ms) }),
          h('td', { text: e.actor || '—' }),
          h('td', { text: e.action }),
          h('td', { text: e.target || '' }),
          h('td', { class: 'wrap', text: e.detail || '' }),
          h('td', { class: 'mono', text: e.addr || '' })));
        oldest = oldest === null ? e.seq : Math.min(oldest, e.seq);
      }
      if (!aBody.firstChild) aBody.append(h('tr', null, h('td', { colspan: '7', class: 'muted', text: 'The audit log is empty.' })));
      more.hidden = entries.length < PAGE;
      aErr.hidden = true;
    } catch (e) {
      aErr.hidden = false;
      setText(aErr, `Audit log not available: ${errorText(e)}`);
    }
    more.disabled = false;
  }
  more.addEventListener('click', loadAudit);
  loadAudit();

  verifyBtn.addEventListener('click', async () => {
    verifyBtn.disabled = true;
    clear(verifyOut);
    verifyOut.append('checking…');
    try {
      const r = await api('/api/v1/audit/verify');
      clear(verifyOut);
      if (r.ok) verifyOut.append(h('span', { text: `chain ok (${fmtInt(r.entries)} entries)` }));
      else {
        const p = r.problem || {};
        verifyOut.append(h('span', { class: 'state-bad', text: `CHAIN BROKEN at seq ${p.seq ?? '?'}` }), ` ${p.reason || ''} (${fmtInt(r.entries)} entries checked)`);
        verifyOut.dataset.broken = String(p.seq ?? '');
      }
    } catch (e) {
      clear(verifyOut);
      verifyOut.append(`check failed: ${errorText(e)}`);
    }
    verifyBtn.disabled = false;
  });
  return {};
}
