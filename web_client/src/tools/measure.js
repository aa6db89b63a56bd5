// Measuring: distances (two points), angles (three, the vertex in the middle) and planar areas (a polygon,
// closed on its first point, by double-click or Enter), each point snapped to a corner, an edge or a face
// (snap.js), drawn with a label in the model's unit (metres). A new topic keeps the measurements in its
// viewpoint; opening a topic shows its own, apart from the user's (`pinned`), until the live view is back.
import * as THREE from 'three';
import { h, replace } from '../ui/dom.js';
import { SNAP_PX, screenMapper, snapAt } from './snap.js';

/** @typedef {'distance'|'angle'|'area'} MeasureKind */
/** @typedef {{kind: MeasureKind, points: THREE.Vector3[]}} Measurement points in model coordinates */

/** Points each kind takes; an area takes any number from three (closed by the user), up to the protocol's 32. */
export const POINTS = /** @type {const} */ ({ distance: 2, angle: 3, area: 32 });
// Measurements a view keeps (viewer_server/topics.py MAX_MEASUREMENTS).
const MAX_MEASUREMENTS = 50;
// Hover snapping runs at most this often (a pick and a scan of the face).
const HOVER_MS = 30;
const OWN_COLOR = 0xf0c86a;
const PINNED_COLOR = 0x7fd1ff;
const SNAP_EDGE_COLOR = 0xffffff;
// Over the model, the caps and the section handles.
const ORDER = 4000;
const NAMES = { distance: 'Distance', angle: 'Angle', area: 'Area' };
const HINTS = {
  distance: ['Measure: pick the first point', 'pick the second point'],
  angle: ['Angle: pick a point on the first leg', 'pick the vertex', 'pick a point on the second leg'],
  area: ['Area: pick the corners of a polygon on a face', 'pick the next corner', 'next corner; close on the first one, double-click or Enter'],
};

/**
 * A measurement's value as people read it: metres to the millimetre, degrees to a tenth, square metres.
 * @param {Measurement} m @returns {string}
 */
export function valueText(m) {
  const p = m.points;
  if (m.kind === 'distance') return `${p[0].distanceTo(p[1]).toFixed(3)} m`;
  if (m.kind === 'angle') return `${THREE.MathUtils.radToDeg(p[0].clone().sub(p[1]).angleTo(p[2].clone().sub(p[1]))).toFixed(1)}°`;
  return `${planarArea(p).toFixed(3)} m²`;
}

/**
 * The area of a polygon in its plane (Newell's method: half the length of the sum of its edges' cross
 * products, which for a planar polygon is its area however it lies in space).
 * @param {THREE.Vector3[]} points
 */
export function planarArea(points) {
  const sum = new THREE.Vector3();
  const c = new THREE.Vector3();
  points.forEach((p, i) => sum.add(c.crossVectors(p, points[(i + 1) % points.length])));
  return sum.length() / 2;
}

/** Where a measurement's label stands: a distance's middle, an angle's vertex, an area's centroid. @param {Measurement} m */
function anchorOf(m) {
  if (m.kind === 'angle') return m.points[1].clone();
  return m.points.reduce((s, p) => s.add(p), new THREE.Vector3()).divideScalar(m.points.length);
}

export class MeasureTool {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {{readout: HTMLElement, panel: HTMLElement, list: HTMLElement, indicator: HTMLElement,
   *          labels: import('../labels.js').Labels}} ui
   */
  constructor(viewer, ui) {
    this.viewer = viewer;
    this.ui = ui;
    this.active = false;
    /** @type {MeasureKind} */
    this.kind = 'distance';
    /** @type {Measurement[]} the user's measurements */
    this.items = [];
    /** @type {Measurement[]} an opened topic's measurements, shown until the live view is back */
    this.pinned = [];
    /** @type {THREE.Vector3[]} the measurement being picked (model coordinates) */
    this.draft = [];
    /** @type {import('./snap.js').Snap|null} where the pointer snaps now */
    this.snap = null;
    this.lastHover = 0;
    this.root = new THREE.Group();
    this.root.name = 'measurements';
    /** the edge the pointer snaps to, highlighted (world coordinates, as snaps are) */
    this.edgeLine = new THREE.Line(new THREE.BufferGeometry(), lineMaterial(SNAP_EDGE_COLOR));
    this.edgeLine.renderOrder = ORDER;
    this.edgeLine.visible = false;
    viewer.world.add(this.root);
    viewer.scene.add(this.edgeLine);
    this.labelKeys = new Set();
    this.#draw();
  }

  /** @param {boolean} on */
  setActive(on) {
    this.active = on;
    this.draft = [];
    this.#setSnap(null);
    this.#draw();
  }

  /** @param {MeasureKind} kind */
  setKind(kind) {
    this.kind = kind;
    this.draft = [];
    this.#draw();
  }

  /** The pointer moved to client pixel (x, y): show what it snaps to. @param {number} x @param {number} y @param {number} now */
  hover(x, y, now = performance.now()) {
    if (!this.active || now - this.lastHover < HOVER_MS) return;
    this.lastHover = now;
    this.#setSnap(this.#snapAt(x, y));
    if (this.draft.length) this.#draw();
  }

  /**
   * A click at client pixel (x, y): add the snapped point; a measurement with all its points is kept.
   * @param {number} x @param {number} y @returns {Measurement|null} the measurement it completed
   */
  click(x, y) {
    const snap = this.#snapAt(x, y);
    this.#setSnap(snap);
    if (!snap) return null;
    const point = this.viewer.world.worldToLocal(snap.point.clone());
    if (this.kind === 'area' && this.draft.length >= 3 && this.#nearFirst(x, y)) return this.finish();
    this.draft.push(point);
    if (this.draft.length >= POINTS[this.kind]) return this.finish();
    this.#draw();
    return null;
  }

  /** Keep the measurement being picked if it has enough points (an area: three). @returns {Measurement|null} */
  finish() {
    const need = this.kind === 'area' ? 3 : POINTS[this.kind];
    if (this.draft.length < need || this.items.length >= MAX_MEASUREMENTS) return null;
    const m = { kind: this.kind, points: this.draft };
    this.items.push(m);
    this.draft = [];
    this.#draw();
    return m;
  }

  /** Drop the measurement being picked. */
  cancel() {
    this.draft = [];
    this.#draw();
  }

  /** @param {number} i */
  remove(i) {
    this.items.splice(i, 1);
    this.#draw();
  }

  clear() {
    this.items = [];
    this.draft = [];
    this.#draw();
  }

  /** The user's measurements as a viewpoint keeps them. @returns {import('../protocol.js').Measurement[]} */
  toViewpoint() {
    return this.items.map((m) => ({ kind: m.kind, points: m.points.map((p) => /** @type {[number, number, number]} */ ([round(p.x), round(p.y), round(p.z)])) }));
  }

  /** Show a viewpoint's measurements (none: back to the user's alone). @param {import('../protocol.js').Measurement[]} list */
  showPinned(list) {
    this.pinned = list.map((m) => ({ kind: m.kind, points: m.points.map(([x, y, z]) => new THREE.Vector3(x, y, z)) }));
    this.#draw();
  }

  /** @param {number} x @param {number} y */
  #snapAt(x, y) {
    const first = this.kind === 'area' && this.draft.length >= 3 ? this.#nearFirst(x, y) : null;
    if (first) return { kind: /** @type {const} */ ('vertex'), point: first };
    return snapAt(this.viewer, x, y);
  }

  /** The first corner of the area being picked, in world coordinates, when (x, y) is within SNAP_PX of it. @param {number} x @param {number} y */
  #nearFirst(x, y) {
    const first = this.draft[0]?.clone().applyMatrix4(this.viewer.world.matrixWorld);
    return first && screenMapper(this.viewer)(first).distanceTo(new THREE.Vector2(x, y)) <= SNAP_PX ? first : null;
  }

  /** @param {import('./snap.js').Snap|null} snap */
  #setSnap(snap) {
    this.snap = snap;
    const el = this.ui.indicator;
    el.hidden = !snap || !this.active;
    const edge = el.hidden ? undefined : snap?.edge;
    this.edgeLine.visible = Boolean(edge);
    if (edge) { // a new geometry each time: a line's buffer cannot grow once drawn
      this.edgeLine.geometry.dispose();
      this.edgeLine.geometry = new THREE.BufferGeometry().setFromPoints(edge);
    }
    this.viewer.invalidate();
    if (!snap || el.hidden) return;
    const s = screenMapper(this.viewer)(snap.point);
    const r = /** @type {HTMLElement} */ (el.offsetParent ?? el.parentElement).getBoundingClientRect();
    el.className = `snap-indicator snap-${snap.kind}`;
    el.dataset.kind = snap.kind;
    el.title = `snaps to a ${snap.kind}`;
    el.style.transform = `translate(${s.x - r.left}px, ${s.y - r.top}px)`;
  }

  #draw() {
    for (const o of [...this.root.children]) {
      o.removeFromParent();
      o.traverse((c) => /** @type {any} */ (c).geometry?.dispose());
    }
    const used = new Set();
    const all = [...this.items.map((m) => ({ m, own: true })), ...this.pinned.map((m) => ({ m, own: false }))];
    all.forEach(({ m, own }, i) => {
      this.root.add(drawing(m.kind, m.points, own ? OWN_COLOR : PINNED_COLOR, true));
      const key = `measure:${i}`;
      used.add(key);
      const anchor = anchorOf(m);
      this.ui.labels.set(key, `${own ? '' : '📌 '}${valueText(m)}`, () => anchor, `measure-tag${own ? '' : ' pinned'}`);
    });
    if (this.draft.length) {
      const hover = this.snap ? this.viewer.world.worldToLocal(this.snap.point.clone()) : null;
      this.root.add(drawing(this.kind, hover ? [...this.draft, hover] : this.draft, OWN_COLOR, false));
    }
    for (const key of this.labelKeys) if (!used.has(key)) this.ui.labels.set(key, null, () => null);
    this.labelKeys = used;
    this.#panel();
    this.viewer.invalidate();
  }

  #panel() {
    const { readout, panel, list } = this.ui;
    panel.hidden = !this.active;
    readout.hidden = !this.active;
    for (const b of panel.querySelectorAll('[data-kind]')) b.setAttribute('aria-pressed', String(/** @type {HTMLElement} */ (b).dataset.kind === this.kind));
    const last = this.items[this.items.length - 1];
    readout.textContent = this.draft.length || !last
      ? HINTS[this.kind][Math.min(this.draft.length, HINTS[this.kind].length - 1)]
      : `${NAMES[last.kind]}: ${valueText(last)}${last.kind === 'distance' ? deltas(last.points) : ''}`;
    replace(list, ...this.items.map((m, i) => h('li', { class: 'measurement' },
      h('span', null, `${NAMES[m.kind]} ${valueText(m)}`),
      h('button', { class: 'remove', 'aria-label': `delete ${NAMES[m.kind].toLowerCase()} ${i + 1}`, onclick: () => this.remove(i) }, '×'))));
  }
}

/** @param {THREE.Vector3[]} p */
const deltas = (p) => `  (Δx ${(p[1].x - p[0].x).toFixed(3)}, Δy ${(p[1].y - p[0].y).toFixed(3)}, Δz ${(p[1].z - p[0].z).toFixed(3)})`;
/** @param {number} x */
const round = (x) => Math.round(x * 1e4) / 1e4;

/**
 * A measurement's lines, corner dots and (an area's) fill. Each drawing gets geometry of its own, sized to its
 * points: a line's buffer cannot grow once drawn.
 * @param {MeasureKind} kind @param {THREE.Vector3[]} points model coordinates @param {number} color
 * @param {boolean} done whether the measurement is complete (an area is closed and filled)
 */
function drawing(kind, points, color, done) {
  const g = new THREE.Group();
  const closed = kind === 'area' && done;
  const line = new THREE.Line(new THREE.BufferGeometry().setFromPoints(closed ? [...points, points[0]] : points), lineMaterial(color));
  const dots = new THREE.Points(new THREE.BufferGeometry().setFromPoints(points), dotMaterial(color));
  g.add(line, dots);
  if (closed) g.add(new THREE.Mesh(polygonGeometry(points), fillMaterial(color)));
  g.traverse((o) => { o.renderOrder = ORDER; });
  return g;
}

/** A polygon's triangles, made in its own plane. @param {THREE.Vector3[]} points */
function polygonGeometry(points) {
  const n = new THREE.Vector3();
  const c = new THREE.Vector3();
  points.forEach((p, i) => n.add(c.crossVectors(p, points[(i + 1) % points.length])));
  const q = new THREE.Quaternion().setFromUnitVectors(n.normalize(), new THREE.Vector3(0, 0, 1));
  const flat = points.map((p) => {
    const v = p.clone().applyQuaternion(q);
    return new THREE.Vector2(v.x, v.y);
  });
  const triangles = THREE.ShapeUtils.triangulateShape(flat, []);
  return new THREE.BufferGeometry().setFromPoints(points).setIndex(triangles.flat());
}

/** @type {Map<string, THREE.Material>} one of each per colour: they are few and live as long as the page */
const materials = new Map();
/** @template {THREE.Material} M @param {string} key @param {() => M} make @returns {M} */
const shared = (key, make) => /** @type {M} */ (materials.get(key) ?? materials.set(key, make()).get(key));
/** @param {number} color */
const lineMaterial = (color) => shared(`line${color}`, () => new THREE.LineBasicMaterial({ color, depthTest: false, transparent: true }));
/** @param {number} color */
const dotMaterial = (color) => shared(`dot${color}`, () => new THREE.PointsMaterial({ color, size: 7, sizeAttenuation: false, depthTest: false, transparent: true }));
/** @param {number} color */
const fillMaterial = (color) => shared(`fill${color}`, () => new THREE.MeshBasicMaterial({ color, transparent: true, opacity: 0.25, side: THREE.DoubleSide, depthTest: false, depthWrite: false }));
