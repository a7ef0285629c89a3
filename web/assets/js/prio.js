// Alarm priority badges: colour AND shape AND number, never colour alone.
//   4 Urgent  red diamond     "4"
//   3 High    orange triangle "3"
//   2 Medium  yellow circle   "2"
//   1 Low     blue square     "1"
import { h, svg } from './dom.js';
import { PRIORITIES } from './format.js';

const SHAPES = {
  diamond: () => svg('polygon', { points: '10,0.8 19.2,10 10,19.2 0.8,10' }),
  triangle: () => svg('polygon', { points: '10,1 19.4,18.6 0.6,18.6' }),
  circle: () => svg('circle', { cx: '10', cy: '10', r: '9' }),
  square: () => svg('rect', { x: '1.5', y: '1.5', width: '17', height: '17' }),
};

/** The shape with its number (an SVG, hidden from screen readers: text goes beside it). */
export function prioShape(priority) {
  const p = PRIORITIES[priority] || PRIORITIES[1];
  const shape = SHAPES[p.shape]();
  shape.setAttribute('class', 'prio-fill');
  return svg('svg', { class: `prio-shape prio-${priority}`, viewBox: '0 0 20 20', width: '20', height: '20', 'aria-hidden': 'true', focusable: 'false' },
    shape,
    svg('text', { x: '10', y: p.shape === 'triangle' ? '15.5' : '14.2', 'text-anchor': 'middle', class: 'prio-num', text: String(priority) }));
}

/** Shape + (optional) text label; the accessible name is always "Priority 4 urgent". */
export function prioBadge(priority, { label = true, short = false } = {}) {
  const p = PRIORITIES[priority] || PRIORITIES[1];
  return h('span', { class: `prio prio-${priority}`, title: `Priority ${priority} ${p.label}` },
    prioShape(priority),
    label ? h('span', { class: 'prio-text', text: short ? p.letter : p.label })
      : h('span', { class: 'sr-only', text: `Priority ${priority} ${p.label}` }));
}

/** The legend of priority shapes. */
export function prioLegend() {
  return h('ul', { class: 'prio-legend', 'aria-label': 'Alarm priority legend' },
    [4, 3, 2, 1].map((n) => {
      const p = PRIORITIES[n];
      return h('li', null, prioShape(n), h('span', { text: `${n} ${p.label}` }));
    }));
}
