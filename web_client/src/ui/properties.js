// Properties of the picked element: identity, live values (unit, age, staleness and quality: freshness.js;
// a Chart button per numeric value puts its history on the chart, timeline/chart.js) and IFC psets (asked of the
// server when the element is shown: catalog.js).
import { h, replace } from './dom.js';
import { markLive } from './freshness.js';
import { copyIdButton } from './names.js';

export class PropertiesPanel {
  /**
   * @param {HTMLElement} root
   * @param {import('../catalog.js').Catalog} catalog
   * @param {import('../state.js').TwinState} state
   * @param {{chart: {has: (id: string, prop: string) => boolean, toggle: (id: string, prop: string) => void} & EventTarget,
   *          signal: AbortSignal}} opts `chart`: the history chart (its `change` event: what it shows changed)
   */
  constructor(root, catalog, state, { chart, signal }) {
    this.root = root;
    this.catalog = catalog;
    this.state = state;
    this.chart = chart;
    /** @type {string|null} */
    this.id = null;
    this.live = h('tbody');
    /** "Live values", or "Values then" while a replay shows the past (timeline/replay.js) */
    this.heading = h('h4');
    this.show(null);
    state.addEventListener('delta', (e) => {
      if (this.id && /** @type {import('../state.js').DeltaEvent} */ (e).detail.props.has(this.id)) this.#updateLive();
    }, { signal });
    state.addEventListener('reset', () => this.id && this.#renderLive(), { signal });
    chart.addEventListener('change', () => this.id && this.#renderLive(), { signal });
  }

  /** @param {string|null} id */
  show(id) {
    this.id = id;
    if (!id) {
      replace(this.root, h('p', { class: 'hint' }, 'Click an element to see its properties.'));
      return;
    }
    const rec = this.catalog.get(id);
    const visual = this.state.visuals.get(id);
    this.live = h('tbody');
    const psets = h('div', { class: 'psets', 'aria-busy': 'true' }, h('p', { class: 'hint' }, 'Loading properties…'));
    replace(this.root,
      h('h3', { class: 'el-name' }, rec?.name || id),
      h('p', { class: 'el-meta', title: `id: ${id}` }, rec?.class ?? '', copyIdButton(id)),
      visual?.status ? h('p', { class: 'el-status' }, h('span', { class: 'swatch', style: `background:${safeColor(visual.color)}` }),
        `${visual.status}${visual.label ? ` — ${visual.label}` : ''}`) : null,
      this.heading,
      h('table', { class: 'props live' }, this.live),
      psets);
    this.#renderLive();
    this.catalog.detail(id).then((detail) => {
      if (this.id !== id || !psets.isConnected) return; // another element is shown meanwhile
      const record = detail?.element;
      psets.removeAttribute('aria-busy');
      replace(psets, ...(record ? psetTables(record.properties ?? {}, record.units ?? {}) : []));
    });
  }

  #renderLive() {
    this.heading.textContent = this.state.replaying ? 'Values then (replay)' : 'Live values';
    const props = this.state.props.get(/** @type {string} */ (this.id));
    if (!props?.size) {
      replace(this.live, h('tr', null, h('td', { class: 'hint', colspan: 3 }, 'No live data bound.')));
      return;
    }
    const id = /** @type {string} */ (this.id);
    const name = this.catalog.label(id);
    replace(this.live, ...[...props].map(([prop, st]) => {
      const value = h('td', { class: 'value' }, ...valueParts(st));
      markLive(value, [`${id}/${prop}`]);
      const charted = this.chart.has(id, prop);
      return h('tr', { dataset: { prop } }, h('th', null, prop), value,
        h('td', null, typeof st.v === 'number' ? h('button', { class: 'chart-toggle', 'aria-pressed': String(charted),
          'aria-label': `${charted ? 'Take off the chart' : 'Chart the history of'} ${name} ${prop}`, title: 'History chart',
          onclick: () => this.chart.toggle(id, prop) }, 'Chart') : null));
    }));
  }

  /** New values in the rows shown (a new property re-renders them all). */
  #updateLive() {
    const props = this.state.props.get(/** @type {string} */ (this.id)) ?? new Map();
    const rows = /** @type {NodeListOf<HTMLElement>} */ (this.live.querySelectorAll('tr[data-prop]'));
    if (rows.length !== props.size) return this.#renderLive();
    for (const row of rows) {
      const st = props.get(row.dataset.prop ?? '');
      if (!st) return this.#renderLive();
      replace(/** @type {HTMLElement} */ (row.querySelector('td.value')), ...valueParts(st));
    }
  }
}

/** A live value's text and unit. @param {import('../protocol.js').PropState} st */
function valueParts(st) {
  return [formatValue(st.v), st.u ? h('span', { class: 'unit' }, ` ${st.u}`) : null];
}

/** A value as the panels show it: numbers to a sensible precision, "—" for none. @param {any} v */
export function formatValue(v) {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1);
  return v === null || v === undefined ? '—' : String(v);
}

/** Only "#rrggbb" reaches a style attribute. @param {string|null|undefined} c */
export function safeColor(c) {
  return typeof c === 'string' && /^#[0-9a-fA-F]{6}$/.test(c) ? c : 'transparent';
}

/**
 * The element's property sets, each value with its unit where the model gives one (`units`, from the
 * manifest: IFC measures), a bounded value as "8 – 40 kg/s".
 * @param {Record<string, any>} psets @param {Record<string, Record<string, string>>} units
 */
function psetTables(psets, units) {
  return Object.entries(psets).map(([pset, props]) => h('details', { class: 'pset', open: true },
    h('summary', null, pset),
    h('table', { class: 'props' }, h('tbody', null, ...Object.entries(props ?? {}).map(([k, v]) => h('tr', null,
      h('th', null, k),
      h('td', { class: 'value' }, propertyText(v, units[pset]?.[k] ?? ''))))))));
}

/** A property value with its unit. @param {any} v @param {string} unit */
function propertyText(v, unit) {
  if (v && typeof v === 'object' && 'value' in v) return withUnit(formatValue(v.value), v.unit ?? unit);
  if (Array.isArray(v) && v.length === 2 && v.every((x) => x === null || typeof x === 'number')) {
    return withUnit(v.map((x) => (x === null ? '…' : formatValue(x))).join(' – '), unit);
  }
  if (typeof v === 'number') return withUnit(formatValue(v), unit);
  return formatValue(typeof v === 'object' && v !== null ? JSON.stringify(v) : v);
}

/** @param {string} text @param {string} unit */
const withUnit = (text, unit) => (unit ? `${text} ${unit}` : text);
