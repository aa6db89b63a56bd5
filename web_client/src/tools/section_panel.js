// The section panel: add planes (X / Y / Z, or on a picked face), flip or remove each, the box and its cut
// height, floor plans per storey, caps on or off, clear all.
import * as THREE from 'three';
import { $, h, replace } from '../ui/dom.js';
import { showFloorPlan, storeys } from './floor_plan.js';
import { MAX_PLANES } from './section.js';

export class SectionPanel {
  /**
   * @param {{viewer: import('../viewer.js').Viewer, section: import('./section.js').SectionTool,
   *          caps: import('./section_caps.js').SectionCaps, focusBox: () => THREE.Box3|null,
   *          model: () => {catalog: import('../catalog.js').Catalog|null, batches: import('../batcher.js').ElementBatches|null}}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.root = $('#section-controls');
    /** whether the next click on the model puts a plane on the face there */
    this.picking = false;
    /** @type {import('./floor_plan.js').Storey[]} */
    this.storeys = [];
    const { section, viewer } = deps;
    for (const b of this.root.querySelectorAll('[data-axis]')) {
      b.addEventListener('click', () => section.addAxis(/** @type {'x'|'y'|'z'} */ (/** @type {HTMLElement} */ (b).dataset.axis)));
    }
    $('#section-face').addEventListener('click', () => this.#pickFace(!this.picking));
    $('#section-box').addEventListener('click', () => section.setBox(section.box ? null : deps.focusBox()));
    const range = /** @type {HTMLInputElement} */ ($('#section-range'));
    range.addEventListener('input', () => section.setBoxTop(Number(range.value) / Number(range.max)));
    $('#btn-floor-plan').addEventListener('click', () => this.floorPlan(/** @type {HTMLSelectElement} */ ($('#storey-select')).value));
    $('#btn-3d').addEventListener('click', () => viewer.setProjection('perspective'));
    const caps = /** @type {HTMLInputElement} */ ($('#section-caps'));
    caps.addEventListener('change', () => deps.caps.setEnabled(caps.checked));
    $('#section-clear').addEventListener('click', () => section.clear());
    section.addEventListener('change', () => this.render());
    viewer.addEventListener('projection', () => { $('#btn-3d').hidden = viewer.camera !== viewer.orthographic; });
    this.render();
  }

  /** Show or hide the panel. @param {boolean} open */
  show(open) {
    this.root.hidden = !open;
    if (open) this.fillStoreys();
    else this.#pickFace(false);
  }

  get open() {
    return !this.root.hidden;
  }

  /** The storeys of the model loaded now, in the floor plan's list. */
  fillStoreys() {
    const { catalog, batches } = this.deps.model();
    this.storeys = catalog && batches ? storeys(catalog, batches) : [];
    const select = /** @type {HTMLSelectElement} */ ($('#storey-select'));
    const chosen = select.value;
    replace(select, ...this.storeys.map((s) => new Option(`${s.name} (${s.floor.toFixed(2)} m)`, s.id, false, s.id === chosen)));
    select.disabled = !this.storeys.length;
    $('#btn-floor-plan').toggleAttribute('disabled', select.disabled);
  }

  /** The plan of a storey (by id). @param {string} id */
  floorPlan(id) {
    const storey = this.storeys.find((s) => s.id === id);
    if (storey) showFloorPlan(this.deps.viewer, this.deps.section, storey);
  }

  /**
   * A click while picking a face: a plane on it. Returns whether the click was ours.
   * @param {number} x @param {number} y
   */
  click(x, y) {
    if (!this.picking) return false;
    const hit = this.deps.viewer.pickAt(x, y);
    if (!hit?.face) return true; // missed the model: keep picking
    const { world } = this.deps.viewer;
    const toModel = world.matrixWorld.clone().invert();
    const point = hit.point.clone().applyMatrix4(toModel);
    // The face's normal as the hit object places it (a merged batch's moved element: its move too).
    const obj = /** @type {any} */ (hit.object);
    const m = obj.matrixWorld.clone();
    const move = hit.batchId !== undefined ? obj.moves?.[hit.batchId] : null;
    if (move) m.multiply(move);
    const normal = hit.face.normal.clone().applyMatrix3(new THREE.Matrix3().getNormalMatrix(m)).transformDirection(toModel);
    // Towards the viewer: a face seen from behind (a double-sided material) still cuts what is in front.
    const eye = this.deps.viewer.camera.getWorldPosition(new THREE.Vector3()).applyMatrix4(toModel);
    if (normal.dot(eye.sub(point)) < 0) normal.negate();
    this.deps.section.addOnFace(point, normal);
    this.#pickFace(false);
    return true;
  }

  /** @param {boolean} on */
  #pickFace(on) {
    this.picking = on && this.deps.section.planes.length < MAX_PLANES;
    $('#section-face').setAttribute('aria-pressed', String(this.picking));
  }

  render() {
    const { section } = this.deps;
    const full = section.planes.length >= MAX_PLANES;
    for (const b of this.root.querySelectorAll('[data-axis], #section-face')) b.toggleAttribute('disabled', full);
    $('#section-box').setAttribute('aria-pressed', String(section.box !== null));
    const range = /** @type {HTMLInputElement} */ ($('#section-range'));
    range.disabled = section.box === null;
    if (section.box === null) range.value = range.max;
    replace($('#section-planes'), ...section.planes.map((p, i) => h('li', { class: 'section-plane' },
      h('span', null, `${i + 1}. ${p.label}`),
      h('button', { class: 'flip', title: 'Keep the other side', onclick: () => section.flip(i) }, 'Flip'),
      h('button', { class: 'remove', 'aria-label': `remove plane ${i + 1}`, onclick: () => section.remove(i) }, '×'))));
  }
}
