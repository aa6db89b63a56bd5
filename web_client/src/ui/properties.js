// Properties of the picked element: identity, live values (unit, age, staleness and quality: freshness.js;
// sparkline) and IFC psets.
import { h, replace, sparkline } from './dom.js';
import { markLive } from './freshness.js';
import { copyIdButton } from './names.js';

// Points kept per sparkline: about a minute at 1 Hz, small enough to redraw on every delta.
const SPARK_POINTS = 60;

export class PropertiesPanel {
  /**
   * @param {HTMLElement} root
   * @param {import('../catalog.js').Catalog} catalog
   * @param {import('../state.js').TwinState} state
   * @param {{historyUrl: (id: string, prop: string) => string, signal: AbortSignal}} opts
   */
  constructor(root, catalog, state, { historyUrl, signal }) {
    this.root = root;
    this.catalog = catalog;
    this.state = state;
    this.historyUrl = historyUrl;
    /** @type {string|null} */
    this.id = null;
    /** @type {Map<string, number[]>} prop -> recent numeric values of the shown element */
    this.series = new Map();
    this.live = h('tbody');
    this.show(null);
    state.addEventListener('delta', (e) => {
      if (this.id && /** @type {import('../state.js').DeltaEvent} */ (e).detail.props.has(this.id)) this.#appendLive();
    }, { signal });
    state.addEventListener('reset', () => this.id && this.#renderLive(), { signal });
  }

  /** @param {string|null} id */
  show(id) {
    this.id = id;
    this.series = new Map();
    if (!id) {
      replace(this.root, h('p', { class: 'hint' }, 'Click an element to see its properties.'));
      return;
    }
    const rec = this.catalog.get(id);
    const visual = this.state.visuals.get(id);
    this.live = h('tbody');
    replace(this.root,
      h('h3', { class: 'el-name' }, rec?.name || id),
      h('p', { class: 'el-meta', title: `id: ${id}` }, rec?.class ?? '', copyIdButton(id)),
      visual?.status ? h('p', { class: 'el-status' }, h('span', { class: 'swatch', style: `background:${safeColor(visual.color)}` }),
        `${visual.status}${visual.label ? ` — ${visual.label}` : ''}`) : null,
      h('h4', null, 'Live values'),
      h('table', { class: 'props live' }, this.live),
      ...psetTables(rec?.properties ?? {}, rec?.units ?? {}));
    this.#renderLive();
    this.#loadHistory(id);
  }

  #renderLive() {
    const props = this.state.props.get(/** @type {string} */ (this.id));
    if (!props?.size) {
      replace(this.live, h('tr', null, h('td', { class: 'hint', colspan: 3 }, 'No live data bound.')));
      return;
    }
    const id = /** @type {string} */ (this.id);
    replace(this.live, ...[...props].map(([name, st]) => {
      const value = h('td', { class: 'value' }, formatValue(st.v), st.u ? h('span', { class: 'unit' }, ` ${st.u}`) : null);
      markLive(value, [`${id}/${name}`]);
      return h('tr', { dataset: { prop: name } }, h('th', null, name), value,
        h('td', null, sparkline(this.series.get(name) ?? [], 72, 20)));
    }));
  }

  #appendLive() {
    for (const [name, st] of this.state.props.get(/** @type {string} */ (this.id)) ?? []) {
      if (typeof st.v !== 'number') continue;
      const s = this.series.get(name) ?? [];
      s.push(st.v);
      if (s.length > SPARK_POINTS) s.shift();
      this.series.set(name, s);
    }
    this.#renderLive();
  }

  /** @param {string} id */
  async #loadHistory(id) {
    const props = [...(this.state.props.get(id)?.keys() ?? [])];
    await Promise.all(props.map(async (prop) => {
      try {
        const res = await fetch(this.historyUrl(id, prop));
        if (!res.ok) return;
        const values = historyValues(await res.json());
        if (this.id === id && values.length) this.series.set(prop, values.slice(-SPARK_POINTS));
      } catch {
        // history is a nicety; the live value is already shown
      }
    }));
    if (this.id === id) this.#renderLive();
  }
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

/**
 * Numeric values, oldest first, from `GET /api/history/{eid}/{prop}` (`{samples: [[ts, value], …]}`).
 * @param {{samples?: [number, any][]}} body
 * @returns {number[]}
 */
export function historyValues(body) {
  return (body?.samples ?? []).map((s) => s[1]).filter((v) => typeof v === 'number');
}
