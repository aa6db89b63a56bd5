// Section: up to six planes (along X, Y or Z, or aligned to a picked face; each flips, moves along its normal
// and goes away on its own) and the section box around the selection, whose slider lowers its top. The planes
// are kept in model coordinates (the world group's frame: an AR placement moves the cut with the model) and
// put into the viewer's shared world-space `clippingPlanes` before each render; caps and handles follow them.
import * as THREE from 'three';

/** Planes the user can add (X / Y / Z / on a face). */
export const MAX_PLANES = 6;
// What a viewpoint may bring back: six planes and a box's six (viewer_server/topics.py MAX_CLIPPING_PLANES).
export const MAX_RESTORED_PLANES = 12;
// A plane aligned to a picked face sits this far (m) inside the solid: on the face itself, the face would
// flicker between cut and kept.
const FACE_INSET_M = 0.001;
// The box is a little larger than what it is around, so that its own faces are not cut.
const BOX_MARGIN_M = 0.01;

/**
 * A section plane in model coordinates; its normal points to the side that is kept (three.js's convention;
 * BCF's `direction` points to the side cut away). `anchor` is a point on it (where its handle is).
 * @typedef {{plane: THREE.Plane, anchor: THREE.Vector3, label: string}} SectionPlane
 */

const AXES = /** @type {const} */ ({ x: [1, 0, 0], y: [0, 1, 0], z: [0, 0, 1] });

export class SectionTool extends EventTarget {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {() => THREE.Box3|null} modelBox the whole model's box (model coordinates), where new planes go through
   */
  constructor(viewer, modelBox) {
    super();
    this.viewer = viewer;
    this.modelBox = modelBox;
    /** @type {SectionPlane[]} */
    this.planes = [];
    /** @type {THREE.Box3|null} the section box (model coordinates), or null */
    this.box = null;
    /** how far up the box's top is, 0..1 (the cut height slider) */
    this.boxTop = 1;
    this.outline = new THREE.Box3Helper(new THREE.Box3(), 0xf0c86a);
    this.outline.visible = false;
    viewer.world.add(this.outline);
    viewer.prerender.push(() => this.#toWorld());
  }

  get active() {
    return this.box !== null || this.planes.length > 0;
  }

  /** Every plane that cuts (the box's, then the planes), in model coordinates. @returns {THREE.Plane[]} */
  modelPlanes() {
    return [...this.#boxPlanes(), ...this.planes.map((p) => p.plane)];
  }

  /**
   * Cut to a box (model coordinates) around what it is given, or no box with null.
   * @param {THREE.Box3|null} box
   */
  setBox(box) {
    this.box = box ? box.clone().expandByScalar(BOX_MARGIN_M) : null;
    this.boxTop = 1;
    this.#changed();
  }

  /** Lower the box's top: 0 = its bottom, 1 = its top. @param {number} fraction */
  setBoxTop(fraction) {
    this.boxTop = THREE.MathUtils.clamp(fraction, 0, 1);
    this.#changed();
  }

  /**
   * A plane across the axis through the model's centre, keeping the lower side (along Y: what is below a
   * cut, as a plan shows it).
   * @param {'x'|'y'|'z'} axis
   * @returns {number} its index, or -1 when there are MAX_PLANES already
   */
  addAxis(axis) {
    const centre = this.modelBox()?.getCenter(new THREE.Vector3()) ?? new THREE.Vector3();
    const normal = new THREE.Vector3(...AXES[axis]).negate();
    return this.add(normal, centre, `${axis.toUpperCase()} plane`);
  }

  /**
   * A plane on a picked face (model coordinates), cutting away what is in front of the face.
   * @param {THREE.Vector3} point @param {THREE.Vector3} faceNormal pointing out of the solid
   */
  addOnFace(point, faceNormal) {
    const normal = faceNormal.clone().normalize().negate();
    return this.add(normal, point.clone().addScaledVector(normal, FACE_INSET_M), 'Face plane');
  }

  /**
   * @param {THREE.Vector3} normal towards the side kept @param {THREE.Vector3} point on the plane
   * @param {string} label
   * @returns {number} its index, or -1 when full
   */
  add(normal, point, label) {
    if (this.planes.length >= MAX_PLANES) return -1;
    const plane = new THREE.Plane().setFromNormalAndCoplanarPoint(normal.clone().normalize(), point);
    this.planes.push({ plane, anchor: this.#anchorOn(plane, point), label });
    this.#changed();
    return this.planes.length - 1;
  }

  /** Keep the other side. @param {number} i */
  flip(i) {
    this.planes[i]?.plane.negate();
    this.#changed();
  }

  /** @param {number} i */
  remove(i) {
    this.planes.splice(i, 1);
    this.#changed();
  }

  /**
   * Move plane i along its normal so that it passes through `point` (model coordinates) — a drag.
   * @param {number} i @param {THREE.Vector3} point
   */
  moveTo(i, point) {
    const p = this.planes[i];
    if (!p) return;
    const d = p.plane.distanceToPoint(point);
    p.plane.constant -= d;
    p.anchor.addScaledVector(p.plane.normal, d);
    this.#changed();
  }

  /** No planes and no box. */
  clear() {
    this.planes = [];
    this.box = null;
    this.#changed();
  }

  /**
   * Cut with these planes (model coordinates, as a viewpoint brings them), each with a handle; no box.
   * @param {THREE.Plane[]} planes
   */
  restore(planes) {
    this.box = null;
    const centre = this.modelBox()?.getCenter(new THREE.Vector3()) ?? new THREE.Vector3();
    this.planes = planes.slice(0, MAX_RESTORED_PLANES).map((plane) => ({ plane, anchor: this.#anchorOn(plane, centre), label: 'Viewpoint plane' }));
    this.#changed();
  }

  /** Where a plane's handle goes: the model's centre projected on it, else `fallback`. @param {THREE.Plane} plane @param {THREE.Vector3} fallback */
  #anchorOn(plane, fallback) {
    const centre = this.modelBox()?.getCenter(new THREE.Vector3());
    return centre ? plane.projectPoint(centre, new THREE.Vector3()) : fallback.clone();
  }

  /** @returns {THREE.Plane[]} the box's six, normals inwards, its top lowered by the slider */
  #boxPlanes() {
    const b = this.box;
    if (!b) return [];
    const top = THREE.MathUtils.lerp(b.min.y, b.max.y, this.boxTop);
    return [
      new THREE.Plane(new THREE.Vector3(1, 0, 0), -b.min.x), new THREE.Plane(new THREE.Vector3(-1, 0, 0), b.max.x),
      new THREE.Plane(new THREE.Vector3(0, 1, 0), -b.min.y), new THREE.Plane(new THREE.Vector3(0, -1, 0), top),
      new THREE.Plane(new THREE.Vector3(0, 0, 1), -b.min.z), new THREE.Plane(new THREE.Vector3(0, 0, -1), b.max.z),
    ];
  }

  #changed() {
    this.outline.visible = this.box !== null;
    if (this.box) this.outline.box.copy(this.box);
    this.#toWorld();
    this.viewer.invalidate();
    this.dispatchEvent(new Event('change'));
  }

  /** The viewer's world-space planes from ours (before each render: an XR placement may have moved the model). */
  #toWorld() {
    const out = this.viewer.clippingPlanes;
    const model = this.modelPlanes();
    const toWorld = this.viewer.world.matrixWorld;
    while (out.length > model.length) out.pop();
    while (out.length < model.length) out.push(new THREE.Plane());
    model.forEach((p, i) => out[i].copy(p).applyMatrix4(toWorld));
  }
}
