// Drag handles of the section planes: a disc on each plane with an arrow towards the side it keeps, drawn
// over the model at a constant size on screen. Dragging one moves its plane along its normal: the plane goes
// through the point of the normal's line nearest to the pointer's ray.
import * as THREE from 'three';

// A handle's disc is this many CSS pixels across.
const HANDLE_PX = 36;
// Over the model and the caps.
const ORDER = 3000;
const COLORS = [0x4fa3ff, 0xff7a59, 0x58d68d, 0xf4d03f, 0xc39bd3, 0x76d7c4];

const _a = new THREE.Vector3();
const _n = new THREE.Vector3();
const _w = new THREE.Vector3();
const _z = new THREE.Vector3(0, 0, 1);
const _ndc = new THREE.Vector2();

export class SectionHandles {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {import('./section.js').SectionTool} section
   */
  constructor(viewer, section) {
    this.viewer = viewer;
    this.section = section;
    this.group = new THREE.Group();
    this.group.name = 'section-handles';
    viewer.world.add(this.group);
    this.disc = new THREE.CircleGeometry(0.5, 32);
    this.arrow = new THREE.ConeGeometry(0.14, 0.45, 16).rotateX(Math.PI / 2).translate(0, 0, 0.45);
    this.raycaster = new THREE.Raycaster();
    /** @type {{index: number, from: THREE.Vector3, grab: number, pointer: number}|null} the drag under way */
    this.drag = null;
    section.addEventListener('change', () => this.#sync());
    viewer.prerender.push((camera) => this.#place(camera));
    const canvas = viewer.renderer.domElement;
    // Capture phase: before the navigation (and the click picking), which a drag on a handle must not reach.
    canvas.addEventListener('pointerdown', (e) => this.#down(e), { capture: true });
    canvas.addEventListener('pointermove', (e) => this.#move(e), { capture: true });
    canvas.addEventListener('pointerup', (e) => this.#up(e), { capture: true });
    canvas.addEventListener('pointercancel', (e) => this.#up(e), { capture: true });
  }

  /**
   * The index of the plane whose handle is at client pixel (x, y), or -1.
   * @param {number} x @param {number} y
   */
  handleAt(x, y) {
    if (!this.group.children.length) return -1;
    this.#ray(x, y);
    this.group.updateMatrixWorld(true);
    const hit = this.raycaster.intersectObjects(this.group.children, true)[0];
    let o = /** @type {THREE.Object3D|null} */ (hit?.object ?? null);
    while (o && o.parent !== this.group) o = o.parent;
    return o ? this.group.children.indexOf(o) : -1;
  }

  /** Where handle i is on screen (client px), for tests and automation. @param {number} i */
  screenOf(i) {
    const h = this.group.children[i];
    if (!h) return null;
    const p = h.getWorldPosition(new THREE.Vector3()).project(this.viewer.camera);
    const r = this.viewer.renderer.domElement.getBoundingClientRect();
    return { x: r.left + ((p.x + 1) / 2) * r.width, y: r.top + ((1 - p.y) / 2) * r.height };
  }

  #sync() {
    const planes = this.section.planes;
    while (this.group.children.length > planes.length) this.group.children[this.group.children.length - 1].removeFromParent();
    while (this.group.children.length < planes.length) {
      const color = COLORS[this.group.children.length % COLORS.length];
      const material = new THREE.MeshBasicMaterial({ color, depthTest: false, transparent: true, opacity: 0.85, side: THREE.DoubleSide });
      const handle = new THREE.Group();
      for (const g of [this.disc, this.arrow]) {
        const m = new THREE.Mesh(g, material);
        m.renderOrder = ORDER;
        handle.add(m);
      }
      this.group.add(handle);
    }
    this.viewer.invalidate();
  }

  /** Each handle at its plane's anchor, facing along the normal, HANDLE_PX across. @param {THREE.Camera} camera */
  #place(camera) {
    const planes = this.section.planes;
    const height = this.viewer.renderer.domElement.clientHeight || 1;
    this.group.children.forEach((h, i) => {
      const { plane, anchor } = planes[i];
      h.position.copy(anchor);
      h.quaternion.setFromUnitVectors(_z, plane.normal);
      const at = _w.copy(anchor).applyMatrix4(this.viewer.world.matrixWorld);
      const scale = this.viewer.world.matrixWorld.getMaxScaleOnAxis() || 1;
      h.scale.setScalar((worldPerPixel(camera, at, height) * HANDLE_PX) / scale);
    });
  }

  /** @param {number} x @param {number} y */
  #ray(x, y) {
    const r = this.viewer.renderer.domElement.getBoundingClientRect();
    _ndc.set(((x - r.left) / r.width) * 2 - 1, -((y - r.top) / r.height) * 2 + 1);
    this.raycaster.setFromCamera(_ndc, this.viewer.camera);
    return this.raycaster.ray;
  }

  /** @param {PointerEvent} e */
  #down(e) {
    const index = e.button === 0 ? this.handleAt(e.clientX, e.clientY) : -1;
    if (index < 0) return;
    e.stopImmediatePropagation();
    const { anchor } = this.section.planes[index];
    const from = anchor.clone();
    this.drag = { index, from, grab: this.#along(from, index, this.#ray(e.clientX, e.clientY)), pointer: e.pointerId };
    this.viewer.controls.enabled = false;
    this.viewer.renderer.domElement.setPointerCapture(e.pointerId);
  }

  /** @param {PointerEvent} e */
  #move(e) {
    const d = this.drag;
    if (!d || e.pointerId !== d.pointer) return;
    e.stopImmediatePropagation();
    const s = this.#along(d.from, d.index, this.#ray(e.clientX, e.clientY));
    if (!Number.isFinite(s) || !Number.isFinite(d.grab)) return;
    const world = this.viewer.world.matrixWorld;
    const at = _w.copy(d.from).applyMatrix4(world).addScaledVector(_n, s - d.grab);
    this.section.moveTo(d.index, this.viewer.world.worldToLocal(at.clone()));
  }

  /** @param {PointerEvent} e */
  #up(e) {
    if (!this.drag || e.pointerId !== this.drag.pointer) return;
    e.stopImmediatePropagation(); // the end of a drag is not a click that picks
    this.drag = null;
    this.viewer.controls.enabled = true;
    this.viewer.renderer.domElement.releasePointerCapture(e.pointerId);
  }

  /**
   * Where along plane `index`'s normal line through `from` (model coordinates) the ray passes nearest, as a
   * world-space distance from `from`; NaN when the ray runs along the line (then it cannot say). Leaves the
   * world-space normal in _n.
   * @param {THREE.Vector3} from @param {number} index @param {THREE.Ray} ray
   */
  #along(from, index, ray) {
    const world = this.viewer.world.matrixWorld;
    const a = _a.copy(from).applyMatrix4(world);
    const n = _n.copy(this.section.planes[index].plane.normal).transformDirection(world);
    const w0 = a.sub(ray.origin);
    const b = n.dot(ray.direction);
    const denom = 1 - b * b;
    if (denom < 1e-6) return NaN;
    return (b * w0.dot(ray.direction) - w0.dot(n)) / denom;
  }
}

/**
 * World units per CSS pixel at a point, for either camera.
 * @param {THREE.Camera} camera @param {THREE.Vector3} point world @param {number} heightPx
 */
export function worldPerPixel(camera, point, heightPx) {
  const c = /** @type {THREE.PerspectiveCamera & THREE.OrthographicCamera} */ (camera);
  if (c.isOrthographicCamera) return (c.top - c.bottom) / c.zoom / heightPx;
  const dist = point.distanceTo(_a.setFromMatrixPosition(camera.matrixWorld));
  return (2 * dist * Math.tan(THREE.MathUtils.degToRad(c.fov ?? 50) / 2)) / heightPx;
}
