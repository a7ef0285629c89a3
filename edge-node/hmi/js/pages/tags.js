// Live tags: a virtualised table of every tag, updated from the live map
// (visible rows only, at most 4 times a second).
import { h, setText, setClass } from '/common/js/dom.js';
import { VTable } from '/common/js/vlist.js';
import { fmtValue, fmtAge, fmtStamp, valueState, fmtInt } from '/common/js/format.js';
import { getTags, errorText } from '../ui.js';

export function mount(root, ctx) {
  const { live } = ctx;
  let all = [];
  let filtered = [];
  let dirty = false;

  const search = h('input', { type: 'search', id: 'tag-filter', placeholder: 'name, description or device', autocomplete: 'off', 'data-testid': 'tag-filter' });
  const qsel = h('select', { id: 'tag-quality', 'data-testid': 'tag-quality' },
    h('option', { value: 'all', text: 'all' }),
    h('option', { value: 'notgood', text: 'not good or stale' }));
  const count = h('span', { class: 'tags-count', 'aria-live': 'polite' });
  const err = h('p', { class: 'dlg-error', role: 'alert', hidden: true });
  const tableHost = h('div', { class: 'tags-table' });
  search.value = ctx.params.get('q') || '';
  if (ctx.params.get('quality') === 'notgood') qsel.value = 'notgood';

  root.append(
    h('h1', { class: 'sr-only', text: 'Live tags' }),
    h('div', { class: 'tags-tools' },
      h('div', { class: 'field' }, h('label', { for: 'tag-filter', text: 'Filter' }), search),
      h('div', { class: 'field' }, h('label', { for: 'tag-quality', text: 'Quality' }), qsel),
      count),
    err, tableHost);

  const vt = new VTable(tableHost, {
    label: 'Live tags',
    empty: 'No tag matches.',
    columns: [
      { label: 'Tag', class: 'c-name', width: '17%' },
      { label: 'Description', class: 'c-desc', width: '23%' },
      { label: 'Value', class: 'c-value num', width: '11%' },
      { label: 'Unit', class: 'c-unit', width: '6%' },
      { label: 'Quality', class: 'c-q', width: '12%' },
      { label: 'Time', class: 'c-time num', width: '10%' },
      { label: 'Age', class: 'c-age num', width: '7%' },
      { label: 'Device', class: 'c-dev', width: '14%' },
    ],
    createRow(tr) {
      const val = h('span', { class: 'val', 'data-testid': 'live-value' });
      tr._c = {
        name: h('td', { class: 'c-name' }),
        desc: h('td', { class: 'c-desc' }),
        val,
        value: h('td', { class: 'c-value' }, val),
        unit: h('td', { class: 'c-unit' }),
        q: h('td', { class: 'c-q' }),
        time: h('td', { class: 'c-time num' }),
        age: h('td', { class: 'c-age' }),
        dev: h('td', { class: 'c-dev' }),
      };
      const c = tr._c;
      tr.append(c.name, c.desc, c.value, c.unit, c.q, c.time, c.age, c.dev);
    },
    updateRow(tr, t, idx, changed) {
      const c = tr._c;
      if (changed) {
        setText(c.name, t.name);
        c.name.title = t.name;
        setText(c.desc, t.description || '');
        c.desc.title = t.description || '';
        setText(c.unit, t.unit || '');
        setText(c.dev, t.device);
        c.val.dataset.tag = t.name;
      }
      const lv = live.values.get(t.name);
      const now = ctx.now();
      const st = valueState(lv, t, now);
      setText(c.val, lv ? fmtValue(lv.v, t) : '—');
      setClass(c.val, 'bad', !st.ok);
      c.val.dataset.quality = st.ok ? 'good' : 'bad';
      if (st.ok) {
        if (c.q.firstChild && c.q.firstChild.nodeType === 1) c.q.textContent = '';
        setText(c.q, 'good');
      } else {
        let code = c.q.firstChild;
        if (!code || code.nodeType !== 1) {
          c.q.textContent = '';
          code = h('span', { class: 'qcode' });
          c.q.append(code);
        }
        setText(code, st.code);
      }
      setText(c.time, lv && lv.ts ? fmtStamp(lv.ts, now) : '—');
      setText(c.age, st.age !== null ? fmtAge(st.age) : '—');
    },
  });

  function applyFilter() {
    const q = search.value.trim().toLowerCase();
    const onlyBad = qsel.value === 'notgood';
    const now = ctx.now();
    filtered = all.filter((t) => {
      if (q && !t._s.includes(q)) return false;
      if (onlyBad && valueState(live.values.get(t.name), t, now).ok) return false;
      return true;
    });
    vt.setItems(filtered);
    setText(count, `${fmtInt(filtered.length)} of ${fmtInt(all.length)} tags`);
  }

  let debounce = 0;
  search.addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      applyFilter();
      ctx.setParams({ q: search.value.trim(), quality: qsel.value === 'notgood' ? 'notgood' : '' });
    }, 150);
  });
  qsel.addEventListener('change', () => {
    applyFilter();
    ctx.setParams({ q: search.value.trim(), quality: qsel.value === 'notgood' ? 'notgood' : '' });
  });

  getTags().then((tags) => {
    all = tags.map((t) => ({ ...t, _s: `${t.name}\n${t.description || ''}\n${t.device || ''}`.toLowerCase() }));
    applyFilter();
  }).catch((e) => {
    err.hidden = false;
    setText(err, `Tags not available: ${errorText(e)}`);
  });

  ctx.on('delta', () => { dirty = true; });
  ctx.on('snapshot', () => { dirty = true; });
  ctx.every(250, () => {
    if (!dirty) return;
    dirty = false;
    vt.refresh();
  });
  let n = 0;
  ctx.every(1000, () => {
    dirty = true; // ages move on
    n += 1;
    if (qsel.value === 'notgood' && n % 2 === 0) applyFilter();
  });

  return {
    unmount() { clearTimeout(debounce); vt.destroy(); },
  };
}
