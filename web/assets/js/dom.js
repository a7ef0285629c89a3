// Small DOM helpers. Data from the server only ever goes in through
// textContent or attributes, never as markup (no innerHTML anywhere).

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * h('td', {class: 'num', dataset: {tag: 'x'}, text: '12', onclick: fn}, child, ...)
 * Attribute keys: class, text, dataset, hidden, disabled, on<event> (function),
 * anything else is set with setAttribute (never 'style').
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style') throw new Error('no style attributes (CSP)');
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') el.textContent = String(v);
    else if (k === 'class') el.setAttribute('class', v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Set text only when it changed (cheap repeated updates). */
export function setText(el, text) {
  const s = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== s) el.textContent = s;
}

/** Toggle a class only when needed. */
export function setClass(el, cls, on) {
  if (el.classList.contains(cls) !== !!on) el.classList.toggle(cls, !!on);
}

/** A table with <th scope="col"> headers. cols: [{label, class}] */
export function table(cols, { caption, className } = {}) {
  const thead = h('thead', null, h('tr', null, cols.map((c) =>
    h('th', { scope: 'col', class: c.class || null, text: c.label }))));
  const tbody = h('tbody');
  const t = h('table', { class: className || 'grid' }, caption ? h('caption', { text: caption }) : null, thead, tbody);
  return { table: t, tbody };
}

let uid = 0;
export function nextId(prefix = 'id') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/**
 * A modal dialog (native <dialog>, role="dialog", aria-modal, labelled by its title).
 * Returns {dialog, body, close}. onClose runs once when it closes.
 */
export function openDialog({ title, body, actions, onClose, testid, className }) {
  const titleId = nextId('dlg-title');
  const dlg = h('dialog', {
    class: `dlg ${className || ''}`, role: 'dialog', 'aria-modal': 'true',
    'aria-labelledby': titleId, 'data-testid': testid || null,
  });
  const form = h('form', { method: 'dialog', class: 'dlg-form', novalidate: true });
  form.append(h('h2', { id: titleId, class: 'dlg-title', text: title }));
  append(form, [body]);
  if (actions) form.append(h('div', { class: 'dlg-actions' }, actions));
  dlg.append(form);
  document.body.append(dlg);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    if (dlg.open) dlg.close();
    dlg.remove();
    if (onClose) onClose();
  };
  dlg.addEventListener('close', close);
  dlg.addEventListener('cancel', () => close());
  dlg.showModal();
  return { dialog: dlg, form, close };
}

/** A labelled form field: returns {wrap, input}. */
export function field(label, input, hint) {
  const id = input.id || nextId('f');
  input.id = id;
  const wrap = h('div', { class: 'field' }, h('label', { for: id, text: label }), input);
  if (hint) wrap.append(h('div', { class: 'hint', text: hint }));
  return { wrap, input };
}
