// Compare: colour every element by how much one property changed between two moments A and B (picked on the
// timeline: go to a moment, "A here", go to another, "B here"). Blue went down, red went up, grey stayed, and
// elements without that property, or without a value at both moments, are dimmed. The legend gives the scale
// with its unit and the elements that changed most, by name (click one to select it). "Clear" gives the view
// its own colours back. While a comparison shows, the view's colours are its, whatever deltas or replays bring.
import { Color } from 'three';
import { h, replace } from '../ui/dom.js';
import { formatValue as fmt } from '../ui/properties.js';
import { KEYS_PER_REQUEST, historyKey } from './history_api.js';
import { clockText } from './time.js';

// Elements compared at most (a plant's instruments of one kind).
export const MAX_COMPARED = 1000;
// A value at a moment is the last sample at or before it, looked for in widening spans before it (only for the
// elements not found yet), each read in buckets shorter than a minute so that the server answers from its raw
// samples, whose last is then exactly the one at or before the moment, at its own time.
// The widest: the server's 5 000 buckets of 58 s. An element silent for longer has no value then.
const LOOK_BACK_S = [120, 3600, 86400, 5000 * 58];
const BUCKET_S = 58;
// The elements that changed most, listed in the legend.
const TOP_CHANGES = 5;
export const DOWN = '#2f6fde';
export const SAME = '#8a8f98';
export const UP = '#e5533d';
export const NO_DATA = '#3a3f47';

/**
 * @typedef {{element: string, a: number, b: number}} Change one element's value at A and at B
 */

export class Compare extends EventTarget {
  /**
   * @param {HTMLElement} root the panel (a float over the view)
   * @param {{state: import('../state.js').TwinState, app: {twin: import('../twin_view.js').TwinView|null,
   *          batches: import('../batcher.js').ElementBatches|null}, bar: import('./bar.js').TimelineBar,
   *          api: import('./history_api.js').HistoryApi,
   *          nameOf: (id: string) => string, select: (id: string) => void}} deps
   */
  constructor(root, deps) {
    super();
    this.root = root;
    this.deps = deps;
    this.a = NaN;
    this.b = NaN;
    this.prop = '';
    /** @type {Change[]|null} the comparison shown (null: none) */
    this.changes = null;
    this.unit = '';
    this.propSel = /** @type {HTMLSelectElement} */ (h('select', { class: 'compare-prop', 'aria-label': 'Property to compare',
      onchange: () => { this.prop = this.propSel.value; this.run(); } }));
    this.aBtn = h('button', { class: 'compare-a', onclick: () => this.setMoment('a', deps.bar.current) }, 'A here');
    this.bBtn = h('button', { class: 'compare-b', onclick: () => this.setMoment('b', deps.bar.current) }, 'B here');
    this.legend = h('div', { class: 'compare-legend', 'aria-live': 'polite' });
    replace(root,
      h('header', null, h('strong', null, 'Compare two moments'),
        h('button', { class: 'close', 'aria-label': 'Clear the comparison', onclick: () => this.clear() }, '×')),
      h('p', { class: 'hint' }, 'Go to a moment on the timeline and press A here, then to another and press B here.'),
      h('div', { class: 'compare-pick' }, this.propSel, this.aBtn, this.bBtn),
      this.legend,
      h('div', { class: 'actions' }, h('button', { class: 'compare-clear', onclick: () => this.clear() }, 'Clear')));
    root.hidden = true;
    // Our colours stay on top: after the view applied a delta's or a replay's own (its listener runs first).
    const keep = () => this.changes && queueMicrotask(() => this.#paint());
    deps.state.addEventListener('delta', keep);
    deps.state.addEventListener('reset', keep);
  }

  open() {
    this.root.hidden = false;
    this.#fillProps();
    this.#renderLegend();
    this.propSel.focus();
  }

  /** @param {'a'|'b'} which @param {number} t */
  setMoment(which, t) {
    this[which] = t;
    this.#renderLegend();
    this.run();
  }

  /** Compare `prop` between A and B (any argument left out keeps its value). @param {{prop?: string, a?: number, b?: number}} [what] */
  async run({ prop = this.prop, a = this.a, b = this.b } = {}) {
    Object.assign(this, { prop, a, b });
    this.root.hidden = false;
    this.#fillProps();
    this.deps.bar.markCompared(Number.isFinite(a) && Number.isFinite(b) ? { a, b } : null);
    if (!prop || !Number.isFinite(a) || !Number.isFinite(b)) return this.#renderLegend();
    const elements = [...this.deps.state.props].filter(([, m]) => m.has(prop)).map(([id]) => id).slice(0, MAX_COMPARED);
    this.unit = this.deps.state.props.get(elements[0] ?? '')?.get(prop)?.u ?? '';
    replace(this.legend, h('p', { class: 'hint' }, 'Reading the history…'));
    try {
      const [at, bt] = await Promise.all([this.#valuesAt(elements, prop, a), this.#valuesAt(elements, prop, b)]);
      if (this.prop !== prop || this.a !== a || this.b !== b) return; // asked for another meanwhile
      this.changes = elements.filter((id) => at.has(id) && bt.has(id))
        .map((id) => ({ element: id, a: /** @type {number} */ (at.get(id)), b: /** @type {number} */ (bt.get(id)) }));
      this.#paint();
      this.#renderLegend();
      this.dispatchEvent(new CustomEvent('change'));
    } catch (e) {
      replace(this.legend, h('p', { class: 'error' }, /** @type {Error} */ (e).message));
    }
  }

  /** The view's own colours again. */
  clear() {
    this.changes = null;
    this.a = NaN;
    this.b = NaN;
    this.root.hidden = true;
    this.deps.bar.markCompared(null);
    this.deps.app.twin?.applyAll();
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** The colour of a change, on a scale whose ends are ±`most`. @param {number} delta @param {number} most */
  static colorOf(delta, most) {
    if (!most || delta === 0) return SAME;
    const f = Math.min(1, Math.abs(delta) / most);
    return `#${new Color(SAME).lerp(new Color(delta < 0 ? DOWN : UP), f).getHexString()}`;
  }

  /** Each element's last numeric value at or before `t`. @param {string[]} ids @param {string} prop @param {number} t
   * @returns {Promise<Map<string, number>>} */
  async #valuesAt(ids, prop, t) {
    /** @type {Map<string, number>} */
    const values = new Map();
    for (const back of LOOK_BACK_S) {
      const missing = ids.filter((id) => !values.has(id));
      for (let i = 0; i < missing.length; i += KEYS_PER_REQUEST) {
        const chunk = missing.slice(i, i + KEYS_PER_REQUEST);
        const { series } = await this.deps.api.series(chunk.map((id) => historyKey(id, prop)), t - back, t,
          Math.ceil(back / BUCKET_S));
        for (const s of series) {
          const last = s.last.filter((v) => v !== null).pop();
          if (typeof last === 'number' && chunk.includes(s.element)) values.set(s.element, last);
        }
      }
    }
    return values;
  }

  #most() {
    return Math.max(0, ...(this.changes ?? []).map((c) => Math.abs(c.b - c.a)));
  }

  #paint() {
    const batches = this.deps.app.batches;
    if (!batches || !this.changes) return;
    const most = this.#most();
    const byId = new Map(this.changes.map((c) => [c.element, c]));
    const color = new Color();
    for (const id of batches.elements.keys()) {
      const c = byId.get(id);
      batches.setColor(id, color.set(c ? Compare.colorOf(c.b - c.a, most) : NO_DATA));
    }
    this.deps.app.twin?.viewer.invalidate();
  }

  #fillProps() {
    /** @type {Map<string, string>} prop -> unit */
    const props = new Map();
    for (const m of this.deps.state.props.values()) {
      for (const [p, st] of m) if (typeof st.v === 'number' && !props.has(p)) props.set(p, st.u ?? '');
    }
    if (!this.prop) this.prop = props.keys().next().value ?? '';
    replace(this.propSel, ...[...props].sort().map(([p, u]) => h('option', { value: p }, `${p}${u ? ` (${u})` : ''}`)));
    this.propSel.value = this.prop;
  }

  #renderLegend() {
    const moments = h('p', { class: 'compare-moments' },
      `A: ${Number.isFinite(this.a) ? clockText(this.a) : '—'} → B: ${Number.isFinite(this.b) ? clockText(this.b) : '—'}`);
    if (!this.changes) return replace(this.legend, moments);
    const most = this.#most();
    const unit = this.unit ? ` ${this.unit}` : '';
    const top = [...this.changes].filter((c) => c.b !== c.a).sort((x, y) => Math.abs(y.b - y.a) - Math.abs(x.b - x.a)).slice(0, TOP_CHANGES);
    replace(this.legend, moments,
      h('div', { class: 'compare-ramp', style: `background:linear-gradient(90deg, ${DOWN}, ${SAME}, ${UP})` }),
      h('div', { class: 'compare-scale' }, h('span', null, `−${fmt(most)}${unit}`), h('span', null, 'no change'),
        h('span', null, `+${fmt(most)}${unit}`)),
      h('p', { class: 'hint' }, `Change of ${this.prop}: ${this.changes.length} elements; dimmed ones have no value at both moments.`),
      top.length ? h('ol', { class: 'compare-top' }, ...top.map((c) => h('li', null,
        h('button', { class: 'compare-element', onclick: () => this.deps.select(c.element) },
          h('span', { class: 'swatch', style: `background:${Compare.colorOf(c.b - c.a, most)}` }),
          `${this.deps.nameOf(c.element)}: ${fmt(c.a)} → ${fmt(c.b)}${unit}`)))) : h('p', { class: 'hint' }, 'Nothing changed.'));
  }
}
