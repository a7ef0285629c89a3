// Placeholder until this page is built (issue 19).
import { h } from '/common/js/dom.js';

export function mount(root) {
  root.append(h('p', { class: 'panel', text: 'Not available yet.' }));
}
