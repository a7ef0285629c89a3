// Admin: users (managed with `apos-hub user …`), API tokens (created here,
// the secret shown once with a copy button; revoked here), and the audit
// log with its hash-chain check.
import { h, clear, setText } from '/common/js/dom.js';
import { api, post, del, seg } from '/common/js/api.js';
import { fmtStamp, fmtDateTime, fmtInt } from '/common/js/format.js';
import { panel, errorBox, showError, scrollWrap, grid, emptyRow, errorText } from '../ui.js';

const PAGE = 100;
const ROLES = ['viewer', 'analyst', 'engineer', 'admin'];

export function mount(root, ctx) {
  const users = grid(['User', 'Role', 'Created', 'Last login'], { testid: 'users-table' });
  const uErr = errorBox();
  const tokens = grid(['Name', 'Role', 'Owner', 'Created', 'Expires', 'Last used', 'Action'], { testid: 'tokens-table' });
  const tErr = errorBox();
  const audit = grid([['Seq', 'num'], 'Time', 'Actor', 'Action', 'Target', 'Detail', 'Address'], { testid: 'audit-table' });
  const aErr = errorBox();
  const more = h('button', { type: 'button', class: 'btn', text: 'Load older entries', 'data-testid': 'audit-more' });
  const verifyBtn = h('button', { type: 'button', class: 'btn btn-small', text: 'Verify chain', 'data-testid': 'audit-verify' });
  const verifyOut = h('span', { class: 'verify-result', role: 'status', 'data-testid': 'audit-verify-result' });

  /* ---- new token form ---- */
  const tName = h('input', { type: 'text', id: 'tok-name', required: true, maxlength: '64', placeholder: 'e.g. grafana', 'data-testid': 'token-name' });
  const tRole = h('select', { id: 'tok-role', 'data-testid': 'token-role' }, ROLES.map((r) => h('option', { value: r, text: r })));
  tRole.value = 'viewer';
  const tDays = h('input', { type: 'number', id: 'tok-days', min: '1', max: '3650', value: '90', 'data-testid': 'token-days' });
  const tCreate = h('button', { type: 'submit', class: 'btn btn-primary', text: 'Create token', 'data-testid': 'token-create' });
  const tOnce = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'form-row', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'tok-name', text: 'Name' }), tName),
    h('div', { class: 'field' }, h('label', { for: 'tok-role', text: 'Role' }), tRole),
    h('div', { class: 'field' }, h('label', { for: 'tok-days', text: 'Valid for (days)' }), tDays),
    tCreate);

  root.append(
    h('h1', { class: 'sr-only', text: 'Admin' }),
    panel('Users', uErr, scrollWrap(users.table, 'Users'),
      h('p', { class: 'chart-note' }, 'Users are managed on the hub with ', h('code', { text: 'apos-hub user add | passwd | role | remove' }), '.')),
    panel('API tokens', tErr, form, tOnce, scrollWrap(tokens.table, 'API tokens'),
      h('p', { class: 'chart-note', text: 'Programs send a token as "Authorization: Bearer …". The hub keeps only its hash: the token is shown once, when it is created.' })),
    panel([h('span', { text: 'Audit log' }), h('span', { class: 'h-extra row' }, verifyBtn, verifyOut)],
      aErr, scrollWrap(audit.table, 'Audit log'), h('div', { class: 'more-row' }, more)));

  async function loadUsers() {
    try {
      const list = await api('/api/v1/users');
      const now = ctx.now();
      clear(users.tbody);
      for (const u of Array.isArray(list) ? list : list.items || []) {
        users.tbody.append(h('tr', { 'data-testid': 'user-row' },
          h('td', { class: 'c-name', text: u.name }),
          h('td', { text: u.role }),
          h('td', { text: fmtStamp(u.created_ms, now) }),
          h('td', { text: u.last_login_ms ? fmtStamp(u.last_login_ms, now) : 'never' })));
      }
      showError(uErr, null);
    } catch (e) { showError(uErr, e, 'Users not available: '); }
  }

  async function loadTokens() {
    try {
      const res = await api('/api/v1/tokens');
      const list = Array.isArray(res) ? res : res.items || [];
      const now = ctx.now();
      clear(tokens.tbody);
      for (const t of list) {
        const expired = t.expires_ms && t.expires_ms < now;
        const revoke = h('button', { type: 'button', class: 'btn btn-small', text: 'Revoke', 'aria-label': `Revoke token ${t.name}`, 'data-testid': 'token-revoke' });
        revoke.addEventListener('click', async () => {
          if (!window.confirm(`Revoke the token "${t.name}"? Programs using it stop working at once.`)) return;
          revoke.disabled = true;
          try { await del(`/api/v1/tokens/${seg(String(t.id))}`); loadTokens(); loadAudit(true); } catch (e) { showError(tErr, e, 'Revoking failed: '); revoke.disabled = false; }
        });
        tokens.tbody.append(h('tr', { 'data-testid': 'token-row', 'data-name': t.name },
          h('td', { class: 'c-name', text: t.name }),
          h('td', { text: t.role }),
          h('td', { text: t.owner || t.created_by || '' }),
          h('td', { text: fmtStamp(t.created_ms, now) }),
          h('td', null, expired ? h('span', { class: 'state-bad', text: `EXPIRED ${fmtStamp(t.expires_ms, now)}` }) : h('span', { text: t.expires_ms ? fmtStamp(t.expires_ms, now) : 'never' })),
          h('td', { text: t.last_used_ms ? fmtStamp(t.last_used_ms, now) : 'never' }),
          h('td', null, revoke)));
      }
      if (!list.length) emptyRow(tokens.tbody, 7, 'No API token.');
      showError(tErr, null);
    } catch (e) { showError(tErr, e, 'Tokens not available: '); }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = tName.value.trim();
    const days = Number(tDays.value);
    if (!name) { showError(tErr, { message: 'Give the token a name.' }); tName.focus(); return; }
    if (!Number.isFinite(days) || days < 1) { showError(tErr, { message: 'Give a validity of at least one day.' }); tDays.focus(); return; }
    tCreate.disabled = true;
    try {
      const res = await post('/api/v1/tokens', { name, role: tRole.value, expires_days: Math.round(days) });
      showOnce(res);
      tName.value = '';
      showError(tErr, null);
      loadTokens();
      loadAudit(true);
    } catch (e) { showError(tErr, e, 'Creating the token failed: '); }
    tCreate.disabled = false;
  });

  function showOnce(res) {
    clear(tOnce);
    const secret = res.token || res.secret || '';
    const input = h('input', { type: 'text', readonly: true, value: secret, id: 'tok-secret', 'aria-label': 'The new token', 'data-testid': 'token-secret' });
    const copied = h('span', { role: 'status' });
    const copy = h('button', { type: 'button', class: 'btn', text: 'Copy', 'data-testid': 'token-copy' });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(secret);
        setText(copied, 'copied');
      } catch {
        input.select();
        setText(copied, 'selected: press Ctrl+C');
      }
    });
    const dismiss = h('button', { type: 'button', class: 'btn', text: 'Done', onclick: () => clear(tOnce) });
    tOnce.append(h('div', { class: 'token-once' },
      h('strong', { text: `Token "${res.name || ''}": copy it now, it is not shown again.` }), input, copy, dismiss, copied));
    input.select();
  }

  let oldest = null;
  async function loadAudit(reset) {
    more.disabled = true;
    if (reset) { oldest = null; clear(audit.tbody); }
    try {
      const q = new URLSearchParams({ limit: String(PAGE) });
      if (oldest !== null) q.set('before', String(oldest));
      const res = await api(`/api/v1/audit?${q}`);
      const entries = res.entries || res.items || [];
      const now = ctx.now();
      for (const e of entries) {
        audit.tbody.append(h('tr', { 'data-testid': 'audit-row', 'data-seq': String(e.seq) },
          h('td', { class: 'num', text: String(e.seq) }),
          h('td', { class: 'nowrap', text: fmtStamp(e.ts_ms, now), title: fmtDateTime(e.ts_ms) }),
          h('td', { text: e.actor || '—' }),
          h('td', { text: e.action }),
          h('td', { text: e.target || '' }),
          h('td', { class: 'wrap', text: e.detail || '' }),
          h('td', { class: 'mono', text: e.addr || '' })));
        oldest = oldest === null ? e.seq : Math.min(oldest, e.seq);
      }
      if (!audit.tbody.firstChild) emptyRow(audit.tbody, 7, 'The audit log is empty.');
      more.hidden = entries.length < PAGE;
      showError(aErr, null);
    } catch (e) { showError(aErr, e, 'Audit log not available: '); }
    more.disabled = false;
  }
  more.addEventListener('click', () => loadAudit(false));

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
      }
    } catch (e) {
      clear(verifyOut);
      verifyOut.append(`check failed: ${errorText(e)}`);
    }
    verifyBtn.disabled = false;
  });

  loadUsers();
  loadTokens();
  loadAudit(true);
  return {};
}
