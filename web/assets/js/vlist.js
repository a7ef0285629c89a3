// A virtualised table: only the rows in view (plus a few) exist in the DOM,
// so 10,000 rows scroll smoothly. Rows have a fixed height (CSS var --row-h).
import { h } from './dom.js';

const OVERSCAN = 6;

export class VTable {
  /**
   * host: element to fill (the table scrolls inside it; give it a height in CSS).
   * opts: {
   *   columns: [{label, class, width}]   header cells (<th scope="col">) and col widths
   *   rowHeight: px (default 32)
   *   createRow(tr): build the row's cells once (tr is reused for other items)
   *   updateRow(tr, item, index, changed): fill the cells; changed is false on a
   *     live refresh of the same item (update values only)
   *   label: accessible name of the scroll region
   *   empty: text shown when there are no rows
   * }
   */
  constructor(host, opts) {
    this.opts = opts;
    this.rowH = opts.rowHeight || 32;
    this.items = [];
    this.pool = [];
    this.first = 0;
    this.count = 0;
    this.scroller = h('div', { class: 'vlist', tabindex: '0', role: 'region', 'aria-label': opts.label || 'table' });
    const cols = h('colgroup', null, opts.columns.map((c) => {
      const col = h('col', { class: c.class || null });
      if (c.width) col.style.width = c.width;
      return col;
    }));
    this.thead = h('thead', null, h('tr', null, opts.columns.map((c) =>
      h('th', { scope: 'col', class: c.class || null, text: c.label }))));
    this.padTop = h('tr', { class: 'vpad', 'aria-hidden': 'true' }, h('td', { colspan: String(opts.columns.length) }));
    this.padBottom = h('tr', { class: 'vpad', 'aria-hidden': 'true' }, h('td', { colspan: String(opts.columns.length) }));
    this.tbody = h('tbody', null, this.padTop, this.padBottom);
    this.table = h('table', { class: 'grid vtable' }, cols, this.thead, this.tbody);
    this.emptyEl = h('p', { class: 'vlist-empty', text: opts.empty || 'Nothing to show.', hidden: true });
    this.scroller.append(this.table, this.emptyEl);
    host.append(this.scroller);
    this.raf = 0;
    this.onScroll = () => this.schedule();
    this.scroller.addEventListener('scroll', this.onScroll, { passive: true });
    this.headH = 0;
    this.viewH = 0;
    this.ro = new ResizeObserver(() => { this.measure(); this.schedule(); });
    this.ro.observe(this.scroller);
  }

  /** Sizes read only on resize (no forced layout while scrolling). */
  measure() {
    this.headH = this.thead.offsetHeight || this.rowH;
    this.viewH = this.scroller.clientHeight || 600;
  }

  setItems(items) {
    this.items = items;
    this.table.setAttribute('aria-rowcount', String(items.length + 1));
    this.emptyEl.hidden = items.length > 0;
    this.measure();
    const maxTop = Math.max(0, items.length * this.rowH - this.viewH + this.headH);
    if (this.scroller.scrollTop > maxTop) this.scroller.scrollTop = maxTop;
    this.render(true);
  }

  schedule() {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => {
      this.raf = 0;
      this.render(false);
    });
  }

  /** Range of item indexes in the DOM: [first, last). */
  visibleRange() { return [this.first, this.first + this.count]; }

  /** The items whose rows are in the DOM now. */
  visibleItems() { return this.items.slice(this.first, this.first + this.count); }

  render(force) {
    const n = this.items.length;
    if (!this.viewH) this.measure();
    const headH = this.headH;
    const viewH = this.viewH;
    const top = Math.max(0, this.scroller.scrollTop - headH);
    let first = Math.max(0, Math.floor(top / this.rowH) - OVERSCAN);
    const count = Math.min(n - first, Math.ceil(viewH / this.rowH) + 2 * OVERSCAN);
    if (count <= 0) first = 0;
    const want = Math.max(0, count);
    while (this.pool.length < want) {
      const tr = h('tr', { class: 'vrow' });
      this.opts.createRow(tr);
      this.pool.push(tr);
    }
    // attach / detach pooled rows
    const attached = this.tbody.childNodes.length - 2;
    if (attached < want) {
      for (let i = attached; i < want; i += 1) this.tbody.insertBefore(this.pool[i], this.padBottom);
    } else if (attached > want) {
      for (let i = want; i < attached; i += 1) this.pool[i].remove();
    }
    this.padTop.style.height = `${first * this.rowH}px`;
    this.padBottom.style.height = `${Math.max(0, (n - first - want) * this.rowH)}px`;
    this.padTop.hidden = first === 0;
    this.padBottom.hidden = n - first - want <= 0;
    for (let i = 0; i < want; i += 1) {
      const tr = this.pool[i];
      const idx = first + i;
      const item = this.items[idx];
      const changed = force || tr._item !== item;
      tr._item = item;
      if (changed) tr.setAttribute('aria-rowindex', String(idx + 2));
      this.opts.updateRow(tr, item, idx, changed);
    }
    this.first = first;
    this.count = want;
  }

  /** Update the rows in view from their (changed) items; nothing else is touched. */
  refresh() {
    for (let i = 0; i < this.count; i += 1) {
      const tr = this.pool[i];
      this.opts.updateRow(tr, tr._item, this.first + i, false);
    }
  }

  destroy() {
    cancelAnimationFrame(this.raf);
    this.ro.disconnect();
    this.scroller.removeEventListener('scroll', this.onScroll);
    this.scroller.remove();
  }
}
