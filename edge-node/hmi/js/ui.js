// Widgets shared by the edge HMI pages.
import { h, setText, setClass } from '/common/js/dom.js';
import { api } from '/common/js/api.js';
import { fmtValue, fmtAge, valueState } from '/common/js/format.js';

let tagsPromise = null;
let tagsAt = 0;

/** [TagInfo] (GET /api/v1/tags), cached for a minute; .byName is a Map. */
export function getTags() {
  if (!tagsPromise || Date.now() - tagsAt > 60000) {
    tagsAt = Date.now();
    tagsPromise = api('/api/v1/tags').then((list) => {
      list.byName = new Map(list.map((t) => [t.name, t]));
      return list;
    }).catch((e) => { tagsPromise = null; throw e; });
  }
  return tagsPromise;
}

export function panel(title, ...children) {
  const sec = h('section', { class: 'panel' });
  const head = h('h2', null);
  if (Array.isArray(title)) head.append(...title); else head.append(title);
  sec.append(head, ...children.flat());
  return sec;
}

export function errorText(e) {
  if (!e) return '';
  if (e.status === 403) return 'Not allowed for your role.';
  return e.detail || e.message || String(e);
}

export function errorBox() {
  return h('p', { class: 'dlg-error', role: 'alert', hidden: true });
}

export function showError(el, e) {
  el.hidden = !e;
  setText(el, e ? errorText(e) : '');
}

/**
 * A live value: number (right-aligned), unit, quality code; outlined when not
 * good or stale. Returns {el, update(live, info, nowMs)}.
 */
export function liveValue() {
  const val = h('span', { class: 'val' });
  const unit = h('span', { class: 'unit' });
  const code = h('span', { class: 'qcode', hidden: true });
  const age = h('span', { class: 'age' });
  const el = h('span', { class: 'live-value' }, val, unit, code, age);
  return {
    el,
    update(lv, info, nowMs) {
      const st = valueState(lv, info, nowMs);
      setText(val, lv ? fmtValue(lv.v, info) : '—');
      setText(unit, info && info.unit ? info.unit : '');
      setClass(val, 'bad', !st.ok);
      code.hidden = st.ok;
      setText(code, st.code);
      setText(age, st.age !== null ? ` ${fmtAge(st.age)}` : '');
    },
  };
}

/** A wide table in a horizontally scrollable, keyboard-focusable region. */
export function scrollWrap(tableEl, label) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, tableEl);
}

/** A plain outlined-when-bad status word: ok → "connected", else "NOT CONNECTED". */
export function statusWord(ok, good, bad) {
  return h('span', { class: ok ? 'state-ok' : 'state-bad', text: ok ? good : bad });
}
