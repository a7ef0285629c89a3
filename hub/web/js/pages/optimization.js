// Optimization: each configured problem with its newest recommendation
// (setpoints now → proposed, expected benefit, binding limits and their
// worth, model confidence), what the edge did with it (proposed to the
// operator, approved, written, rolled back…) and, once it settled, the
// realized benefit against the predicted one with its spread. Analysts can
// run a problem now; nothing reaches a PLC without an operator's approval
// at the edge.
import { h, clear, setText } from '/common/js/dom.js';
import { api, seg } from '/common/js/api.js';
import { fmtDateTime, fmtStamp, fmtNumber } from '/common/js/format.js';
import { can } from '/common/js/session.js';
import { panel, errorBox, showError, scrollWrap, grid, emptyRow } from '../ui.js';

const STATUS_TEXT = {
  not_sent: 'not sent',
  sent: 'sent to the edge',
  proposed: 'waiting for the operator',
  approved: 'approved by the operator',
  executing: 'being written',
  completed: 'applied (verified by read-back)',
  rejected: 'rejected by the operator',
  expired: 'expired unapproved',
  superseded: 'superseded by a newer one',
  rolled_back: 'ROLLED BACK at the edge',
  failed: 'stopped at the edge',
  refused: 'refused by the edge',
};
const ABNORMAL = new Set(['rolled_back', 'failed', 'refused']);

function money(v, unit) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return `${v >= 0 ? '+' : '−'}${fmtNumber(Math.abs(v), 0)} ${unit}`;
}

function num(v, unit) {
  if (v === null || v === undefined) return '—';
  return `${fmtNumber(v, Math.abs(v) >= 100 ? 1 : 3)}${unit ? ` ${unit}` : ''}`;
}

function recommendationView(run) {
  const rec = run.result && run.result.recommendation;
  if (!rec) return h('p', { class: 'muted', text: run.error ? `Failed: ${run.error}` : 'No result.' });
  const sp = grid([['Setpoint'], ['Now', 'num'], ['Proposed', 'num'], ['Move', 'num']], { testid: 'opt-setpoints' });
  for (const s of rec.setpoints) {
    sp.tbody.append(h('tr', null,
      h('td', { text: s.label || s.tag }),
      h('td', { class: 'num', text: num(s.current, s.unit) }),
      h('td', { class: 'num', text: num(s.proposed, s.unit) }),
      h('td', { class: 'num', text: num(s.proposed - s.current, s.unit) })));
  }
  const out = grid([['Output'], ['Measured', 'num'], ['Now (model)', 'num'], ['Predicted', 'num'], ['Spread', 'num']], { testid: 'opt-outputs' });
  for (const o of rec.outputs) {
    out.tbody.append(h('tr', null,
      h('td', { text: o.label || o.tag }),
      h('td', { class: 'num', text: num(o.measured, o.unit) }),
      h('td', { class: 'num', text: num(o.current, o.unit) }),
      h('td', { class: 'num', text: num(o.proposed, o.unit) }),
      h('td', { class: 'num', text: o.low !== null && o.low !== undefined ? `${num(o.low)} … ${num(o.high)}` : 'model given, no spread' })));
  }
  const binding = h('ul', { class: 'plain-list', 'data-testid': 'opt-binding' },
    rec.binding.length ? rec.binding.map((b) => h('li', { text: b.text })) : h('li', { class: 'muted', text: 'No limit is binding.' }));
  const facts = h('dl', { class: 'kv' },
    h('dt', { text: 'Expected benefit' }), h('dd', { 'data-testid': 'opt-benefit', text: `${money(rec.benefit_per_hour, rec.objective_unit)} (${money(rec.benefit_per_year, rec.objective_unit.replace('/h', '/year'))} at ${fmtNumber(rec.hours_per_year, 0)} h/year)` }),
    h('dt', { text: 'Objective' }), h('dd', { text: `${num(rec.objective_current)} → ${num(rec.objective_proposed)} ${rec.objective_unit} (${rec.sense})` }),
    h('dt', { text: 'Confidence' }), h('dd', { text: `${Math.round(rec.confidence.score * 100)} % — ${rec.confidence.text}` }));
  return h('div', null, facts, scrollWrap(sp.table, 'Setpoints'), h('h3', { text: 'What limits the optimum' }), binding,
    h('h3', { text: 'Outputs' }), scrollWrap(out.table, 'Outputs'));
}

function realizedView(run) {
  const r = run.realized;
  if (!r) {
    if (run.applied_ms) return h('p', { class: 'muted', 'data-testid': 'opt-realized', text: 'Applied; the realized benefit is measured once the process has settled.' });
    return null;
  }
  if (!r.measured) return h('p', { class: 'muted', 'data-testid': 'opt-realized', text: `Realized benefit not measured: ${r.why}` });
  const ok = r.within_spread;
  return h('p', { 'data-testid': 'opt-realized', class: ok === false ? 'state-bad' : null },
    `Realized ${money(r.realized_per_hour, r.unit)} ± ${fmtNumber(r.spread_per_hour, 0)} (predicted ${money(r.predicted_per_hour, r.unit)}): `
    + `objective ${fmtNumber(r.before.mean, 0)} over ${r.before.windows} windows before, ${fmtNumber(r.after.mean, 0)} over ${r.after.windows} after settling`
    + `${ok === false ? ' — outside the stated spread: check the model' : ''}.`);
}

export function mount(root) {
  const err = errorBox();
  const problemsBox = h('div', { 'data-testid': 'opt-problems' });
  const runs = grid([['Run'], ['Started'], ['Trigger'], ['Benefit', 'num'], ['Status'], ['Realized', 'num']], { testid: 'opt-runs' });
  const keyNote = h('p', { class: 'chart-note', 'data-testid': 'opt-key' });
  // Engineers define problems here too, as [[optimization]] TOML validated
  // like the hub's file (docs/optimization.md); errors come back located.
  const defText = h('textarea', { id: 'opt-def', rows: '10', class: 'mono', spellcheck: 'false', 'data-testid': 'opt-define-text',
    placeholder: '[[optimization]]\nname = "…"\nsite = "…"\nnode = "…"\n[[optimization.decision]]\n…' });
  const defOut = h('pre', { class: 'muted wrap', 'data-testid': 'opt-define-result', 'aria-live': 'polite' });
  const defBtn = h('button', { type: 'submit', class: 'btn', 'data-testid': 'opt-define', text: 'Define' });
  const defForm = h('form', { 'data-testid': 'opt-define-form' },
    h('div', { class: 'field' }, h('label', { for: 'opt-def', text: '[[optimization]] tables (TOML)' }), defText), defBtn, defOut);
  defForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    defBtn.disabled = true;
    try {
      const r = await api('/api/v1/optimization', { method: 'POST', body: { toml: defText.value } });
      setText(defOut, `Defined: ${r.defined.join(', ')}.`);
      await load();
    } catch (e) {
      setText(defOut, e.detail || e.message || String(e));
    } finally {
      defBtn.disabled = false;
    }
  });
  root.append(h('h1', { class: 'sr-only', text: 'Optimization' }), err, problemsBox,
    panel('Runs (newest first)', scrollWrap(runs.table, 'Optimization runs')),
    can('engineer') ? panel('Define a problem', defForm) : '', keyNote);

  // What "Run now" answered, per problem: load() rebuilds the panels (right
  // after the run and every 10 s), which would otherwise wipe it at once.
  // Shown while the run is the newest and no operator has decided on it yet
  // (the status line below then tells what is current).
  const said = new Map();

  async function runNow(name, btn, status) {
    btn.disabled = true;
    setText(status, 'Running…');
    try {
      const r = await api(`/api/v1/optimization/${seg(name)}/run`, { method: 'POST', body: {} });
      const text = r.outcome === 'ok' ? `${r.id}: ${STATUS_TEXT[r.status] || r.status}. ${r.status_note}` : `${r.id} failed: ${r.error}`;
      said.set(name, { id: r.id, text });
      setText(status, text);
      await load();
    } catch (e) {
      said.delete(name);
      setText(status, '');
      showError(err, e, 'Not run: ');
    } finally {
      btn.disabled = false;
    }
  }

  async function load() {
    let d; let list;
    try {
      [d, list] = await Promise.all([api('/api/v1/optimization'), api('/api/v1/optimization/runs?limit=50')]);
      showError(err, null);
    } catch (e) { showError(err, e); return; }
    clear(problemsBox);
    if (!d.items.length) problemsBox.append(panel('Optimization', h('p', { class: 'muted', text: 'No optimization problems are configured ([[optimization]] in hub.toml; docs/optimization.md).' })));
    for (const p of d.items) {
      const s = said.get(p.name);
      if (s && (!p.last || p.last.id !== s.id || !['not_sent', 'sent', 'proposed'].includes(p.last.status))) said.delete(p.name);
      const status = h('span', { class: 'muted', 'aria-live': 'polite', 'data-testid': 'opt-run-status', text: said.has(p.name) ? said.get(p.name).text : '' });
      const btn = h('button', { type: 'button', class: 'btn', 'data-testid': 'opt-run', 'data-problem': p.name, text: 'Run now' });
      btn.addEventListener('click', () => runNow(p.name, btn, status));
      const last = p.last;
      const origin = p.source && p.source.kind === 'api' ? `defined by ${p.source.by} on ${fmtDateTime(p.source.at_ms)}` : 'hub configuration';
      const head = [h('span', { text: `${p.name} — ${p.sense} ${p.unit} at ${p.site}/${p.node}` }), h('span', { class: 'h-extra', text: origin })];
      const lastBox = h('div', { 'data-testid': 'opt-last' });
      if (last) {
        const abnormal = ABNORMAL.has(last.status);
        lastBox.append(
          h('p', { class: abnormal ? 'state-bad' : null, 'data-testid': 'opt-status', 'data-run': last.id, 'data-status': last.status },
            `${last.id}, ${fmtDateTime(last.started_ms)} (${last.trigger}): ${STATUS_TEXT[last.status] || last.status}${last.status_note ? ` — ${last.status_note}` : ''}`),
          recommendationView(last), realizedView(last) || '');
      } else {
        lastBox.append(h('p', { class: 'muted', text: 'Not run yet.' }));
      }
      const cfg = h('details', null, h('summary', { text: 'Problem definition' }),
        h('ul', { class: 'plain-list' },
          h('li', { text: `Decisions: ${p.decisions.join('; ')}` }),
          h('li', { text: `Models: ${p.outputs.join('; ')}` }),
          h('li', { text: `Objective: ${p.terms.join(' + ')}` }),
          h('li', { text: `Constraints: ${p.constraints.join('; ') || 'none'} (safety margin ${p.margin_sigmas} σ of fitted models)` }),
          h('li', { text: `Runs: ${p.every_s ? `every ${p.every_s < 120 ? `${p.every_s} s` : `${Math.round(p.every_s / 60)} min`}` : 'on demand'}${p.triggers.length ? `, and when ${p.triggers.join(' or ')}` : ''}; ${p.send ? 'sent to the edge for approval' : 'not sent'}` })));
      const tools = h('div', { class: 'toolbar' });
      if (can('analyst')) tools.append(btn, status);
      if (can('engineer') && p.source && p.source.kind === 'api') {
        tools.append(h('button', { type: 'button', class: 'btn', 'data-testid': 'opt-remove', text: 'Remove', onclick: async () => {
          try { await api(`/api/v1/optimization/${seg(p.name)}`, { method: 'DELETE' }); await load(); } catch (e) { showError(err, e, 'Not removed: '); }
        } }));
      }
      problemsBox.append(panel(head, tools, lastBox, cfg));
    }
    clear(runs.tbody);
    for (const r of list) {
      const rec = r.result && r.result.recommendation;
      runs.tbody.append(h('tr', { 'data-testid': 'opt-run-row', 'data-id': r.id, 'data-status': r.status, class: ABNORMAL.has(r.status) ? 'state-bad' : null },
        h('td', { text: r.id }),
        h('td', { text: fmtStamp(r.started_ms, Date.now()) }),
        h('td', { text: r.trigger }),
        h('td', { class: 'num', text: rec ? money(rec.benefit_per_hour, rec.objective_unit) : (r.error ? 'failed' : '—') }),
        h('td', { text: `${STATUS_TEXT[r.status] || r.status}` }),
        h('td', { class: 'num', text: r.realized && r.realized.measured ? `${money(r.realized.realized_per_hour, r.realized.unit)} ± ${fmtNumber(r.realized.spread_per_hour, 0)}` : '—' })));
    }
    if (!list.length) emptyRow(runs.tbody, 6, 'No runs yet.');
    setText(keyNote, d.public_key ? `Recommendations are signed with the hub key ${d.public_key}; edges accept only this key ([setpoints] hub_public_key).` : '');
  }
  load();
  const timer = setInterval(load, 10000);
  return { unmount: () => clearInterval(timer) };
}
