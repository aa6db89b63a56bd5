// The history chart (uPlot): the properties picked in the properties panel (up to MAX_KEYS) on one time axis,
// one value axis per unit (labelled with it), a tooltip with each value and unit at the cursor, and, when the
// span holds more samples than the chart has pixels, the server's min/max per bucket as a band around the
// mean. Drag across to zoom in (the server then sends finer buckets, down to the raw samples), Shift+drag or
// the ◀ ▶ buttons to pan, double-click or "Reset" to see the timeline's span again. The cursor shows its time
// on the timeline; a click (without drag) seeks the replay there; the moment the replay shows is a line.
import uPlot from 'uplot';
import { h, replace } from '../ui/dom.js';
import { formatValue as fmt } from '../ui/properties.js';
import { MAX_KEYS, MAX_POINTS, historyKey } from './history_api.js';
import { clockText } from './time.js';

// Line colours, one per property in order (readable on the dark panel, told apart by colour-blind eyes).
const COLORS = ['#4da3ff', '#f0a020', '#3fb950', '#ff7eb6', '#a98bff', '#56d4dd', '#e3b341', '#ff8f6b'];
const CHART_HEIGHT = 170;
// A press that moves less than this (px) is a click: it seeks; more is a zoom drag.
const CLICK_SLOP_PX = 4;
// Pan buttons move the shown span by this fraction of it.
const PAN_FRACTION = 0.25;
// While the chart shows up to now, it is read again this often.
const LIVE_REFRESH_MS = 5000;

/** @typedef {import('./history_api.js').Series} Series */

export class ChartPanel extends EventTarget {
  /**
   * @param {HTMLElement} root the panel (a float over the view)
   * @param {{bar: import('./bar.js').TimelineBar, replay: import('./replay.js').ReplayController, api: import('./history_api.js').HistoryApi,
   *          nameOf: (id: string) => string, signal?: AbortSignal}} deps
   */
  constructor(root, deps) {
    super();
    this.root = root;
    this.deps = deps;
    /** @type {{element: string, prop: string}[]} the charted properties, in order */
    this.keys = [];
    /** @type {{from: number, to: number}|null} a zoomed or panned span; null = the timeline's */
    this.zoom = null;
    /** @type {Series[]} what is drawn */
    this.series = [];
    this.resolution = 0;
    /** @type {uPlot|null} */
    this.plot = null;
    /** What the chart was made for (properties, units, bands): another shape makes a new chart. */
    this.shape = '';
    /** @type {AbortController|null} the request under way */
    this.loading = null;
    /** Shift was held when the pointer went down: the drag pans. */
    this.panning = false;
    this.status = h('span', { class: 'chart-status', role: 'status' });
    this.chips = h('span', { class: 'chart-chips' });
    this.tooltip = h('div', { class: 'chart-tooltip', hidden: true });
    this.area = h('div', { class: 'chart-area' }, this.tooltip);
    replace(root,
      h('header', null, h('strong', null, 'History'), this.chips,
        h('span', { class: 'chart-actions' },
          h('button', { class: 'chart-pan-left', 'aria-label': 'Earlier', title: 'Earlier', onclick: () => this.pan(-1) }, '◀'),
          h('button', { class: 'chart-pan-right', 'aria-label': 'Later', title: 'Later', onclick: () => this.pan(1) }, '▶'),
          h('button', { class: 'chart-reset', title: 'Show the timeline span again', onclick: () => this.resetZoom() }, 'Reset'),
          h('button', { class: 'close', 'aria-label': 'Close the chart', onclick: () => this.clear() }, '×'))),
      this.area, this.status);
    root.hidden = true;
    deps.replay.addEventListener('change', () => this.plot?.redraw(false, false));
    const timer = setInterval(() => !root.hidden && !this.zoom && deps.replay.mode === 'live' && this.load(), LIVE_REFRESH_MS);
    deps.signal?.addEventListener('abort', () => clearInterval(timer));
    new ResizeObserver(() => this.plot?.setSize(this.#size())).observe(this.area);
  }

  /** @param {string} element @param {string} prop */
  has(element, prop) {
    return this.keys.some((k) => k.element === element && k.prop === prop);
  }

  /** Chart a property, or take it off the chart. @param {string} element @param {string} prop */
  toggle(element, prop) {
    if (this.has(element, prop)) this.keys = this.keys.filter((k) => k.element !== element || k.prop !== prop);
    else if (this.keys.length < MAX_KEYS) this.keys = [...this.keys, { element, prop }];
    else return this.#say(`At most ${MAX_KEYS} properties on one chart: take one off first.`);
    this.#changed();
  }

  clear() {
    this.keys = [];
    this.zoom = null;
    this.#changed();
  }

  /** @param {number} dir -1 earlier, 1 later */
  pan(dir) {
    const { from, to } = this.span();
    const d = (to - from) * PAN_FRACTION * dir;
    this.zoom = { from: from + d, to: to + d };
    this.load();
  }

  resetZoom() {
    this.zoom = null;
    this.load();
  }

  /** The span shown: the zoomed one, else the timeline's. */
  span() {
    return this.zoom ?? this.deps.bar.window();
  }

  #changed() {
    this.root.hidden = this.keys.length === 0;
    this.dispatchEvent(new CustomEvent('change'));
    if (!this.keys.length) {
      this.plot?.destroy();
      this.plot = null;
      this.shape = '';
      this.series = [];
      return;
    }
    this.load();
  }

  /** Read the charted properties over the span shown (as many buckets as the chart has pixels) and draw them. */
  async load() {
    if (!this.keys.length) return;
    this.loading?.abort();
    const abort = new AbortController();
    this.loading = abort;
    const { from, to } = this.span();
    // As many buckets as pixels; a span of at most MAX_POINTS seconds asks for that many, so that samples up to
    // 1 Hz come raw (an hour of a 1 Hz signal: its 3 600 samples, not 5 s buckets).
    const points = to - from <= MAX_POINTS ? MAX_POINTS : Math.max(50, Math.round(this.area.clientWidth || 600));
    try {
      const answer = await this.deps.api.series(this.keys.map((k) => historyKey(k.element, k.prop)), from, to, points, abort.signal);
      if (abort.signal.aborted) return;
      this.series = this.keys.map((k) => answer.series.find((s) => s.key === historyKey(k.element, k.prop)))
        .filter((s) => s !== undefined);
      this.resolution = answer.resolution;
      this.#draw(from, to);
      const n = this.series.reduce((sum, s) => sum + s.t.length, 0);
      this.#say(`${n} points · ${this.resolution > 0 ? `min/max/mean per ${this.resolution} s` : 'raw samples'}`);
    } catch (e) {
      if (!abort.signal.aborted) this.#say(/** @type {Error} */ (e).message);
    }
  }

  /** @param {string} text */
  #say(text) {
    this.status.textContent = text;
  }

  #size() {
    return { width: Math.max(200, this.area.clientWidth), height: CHART_HEIGHT };
  }

  /** @param {number} from @param {number} to */
  #draw(from, to) {
    const { series } = this;
    const banded = this.resolution > 0;
    // One table per property [t, mean, min, max], joined on one time axis (nulls where a property has no sample).
    const data = uPlot.join(series.map((s) => /** @type {uPlot.AlignedData} */ ([s.t, banded ? s.mean : s.last, s.min, s.max])));
    // The same properties, units and kind of points (a refresh, a pan): new data on the same chart.
    const shape = JSON.stringify([series.map((s) => [s.key, s.unit]), banded]);
    if (this.plot && shape === this.shape) {
      const plot = this.plot;
      plot.batch(() => {
        plot.setData(data);
        plot.setScale('x', { min: from, max: to });
      });
      return;
    }
    this.shape = shape;
    replace(this.chips, ...series.map((s, i) => h('button', { class: 'chart-chip', style: `border-color:${COLORS[i]}`,
      title: 'Take off the chart', onclick: () => this.toggle(s.element, s.prop) },
    `${s.name || this.deps.nameOf(s.element)} · ${s.prop}${s.unit ? ` (${s.unit})` : ''} ×`)));
    const units = [...new Set(series.map((s) => s.unit))];
    /** @type {uPlot.Series[]} */
    const lines = [{}];
    /** @type {uPlot.Band[]} */
    const bands = [];
    series.forEach((s, i) => {
      const scale = `u:${s.unit}`;
      const base = lines.length;
      lines.push({ label: `${s.name} ${s.prop}`, scale, stroke: COLORS[i], width: 1.5, spanGaps: true, points: { show: !banded } });
      lines.push({ label: `${s.name} ${s.prop} min`, scale, stroke: 'transparent', spanGaps: true, points: { show: false } });
      lines.push({ label: `${s.name} ${s.prop} max`, scale, stroke: 'transparent', spanGaps: true, points: { show: false } });
      if (banded) bands.push({ series: [base + 2, base + 1], fill: `${COLORS[i]}33` });
    });
    /** @type {uPlot.Axis[]} */
    const axes = [{ stroke: '#9aa4b2', grid: { stroke: '#3a414c' }, ticks: { stroke: '#3a414c' }, values: tickTimes },
      ...units.map((u, i) => /** @type {uPlot.Axis} */ ({ scale: `u:${u}`, label: u || 'value', side: i % 2 ? 1 : 3,
        stroke: '#9aa4b2', grid: { show: i === 0, stroke: '#3a414c' }, ticks: { stroke: '#3a414c' }, size: 50, labelSize: 16 }))];
    this.plot?.destroy();
    this.plot = new uPlot({
      ...this.#size(), series: lines, bands, axes,
      scales: { x: { time: true, min: from, max: to, auto: false } },
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 6 } },
      hooks: {
        setSelect: [(u) => this.#zoomTo(u)],
        setCursor: [(u) => this.#hover(u)],
        draw: [(u) => this.#drawAsOf(u)],
      },
    }, data, this.area);
    this.#bindPointer(this.plot);
  }

  /** A drag across the chart zooms into it. @param {uPlot} u */
  #zoomTo(u) {
    if (u.select.width < CLICK_SLOP_PX) return;
    if (this.panning) return u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    const from = u.posToVal(u.select.left, 'x');
    const to = u.posToVal(u.select.left + u.select.width, 'x');
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (to - from < 1) return;
    this.zoom = { from, to };
    this.load();
  }

  /** The cursor's time on the timeline, and the values there in the tooltip. @param {uPlot} u */
  #hover(u) {
    const idx = u.cursor.idx;
    const left = u.cursor.left ?? -1;
    if (idx === null || idx === undefined || left < 0) {
      this.tooltip.hidden = true;
      this.deps.bar.showHover(NaN);
      return;
    }
    const t = u.posToVal(left, 'x');
    this.deps.bar.showHover(t);
    const at = /** @type {number} */ (u.data[0][idx]);
    replace(this.tooltip, h('time', null, clockText(at)), ...this.series.map((s, i) => {
      const v = u.data[1 + i * 3][idx];
      const lo = u.data[2 + i * 3][idx];
      const hi = u.data[3 + i * 3][idx];
      const unit = s.unit ? ` ${s.unit}` : '';
      const range = this.resolution > 0 && typeof lo === 'number' && typeof hi === 'number' && lo !== hi ? ` (${fmt(lo)}…${fmt(hi)})` : '';
      return h('div', null, h('span', { class: 'swatch', style: `background:${COLORS[i]}` }),
        `${s.name} · ${s.prop}: ${v === null || v === undefined ? '—' : `${fmt(v)}${unit}`}${range}`);
    }));
    this.tooltip.hidden = false;
    const flip = left > u.over.clientWidth / 2;
    this.tooltip.style.left = `${u.over.offsetLeft + left + (flip ? -8 : 8)}px`;
    this.tooltip.style.transform = flip ? 'translateX(-100%)' : '';
  }

  /** The moment the replay shows, as a line. @param {uPlot} u */
  #drawAsOf(u) {
    const { replay } = this.deps;
    if (replay.mode !== 'replay' || !Number.isFinite(replay.asOf)) return;
    const x = Math.round(u.valToPos(replay.asOf, 'x', true));
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = '#f0a020';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }

  /** A click seeks; Shift+drag pans; a double-click shows the timeline's span again. @param {uPlot} u */
  #bindPointer(u) {
    let down = { x: 0, from: 0, to: 0 };
    u.over.addEventListener('pointerdown', (e) => {
      const { from, to } = this.span();
      down = { x: e.clientX, from, to };
      this.panning = e.shiftKey; // then the selection uPlot draws is not a zoom
    });
    u.over.addEventListener('pointerup', (e) => {
      const dx = e.clientX - down.x;
      if (this.panning && Math.abs(dx) >= CLICK_SLOP_PX) {
        const d = (-dx / u.over.clientWidth) * (down.to - down.from);
        this.zoom = { from: down.from + d, to: down.to + d };
        this.load();
      } else if (Math.abs(dx) < CLICK_SLOP_PX) {
        this.deps.bar.seek(u.posToVal(e.clientX - u.over.getBoundingClientRect().left, 'x'));
      }
    });
    u.over.addEventListener('dblclick', () => this.resetZoom());
  }
}

/** The time axis' labels on the 24-hour clock the timeline uses (seconds when the ticks are that close).
 * @param {uPlot} _u @param {number[]} splits */
function tickTimes(_u, splits) {
  const fine = splits.length > 1 && splits[1] - splits[0] < 60;
  return splits.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: fine ? '2-digit' : undefined,
    hour12: false }));
}
