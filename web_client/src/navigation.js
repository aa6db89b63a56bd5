// Mouse, touch and keyboard navigation, following the conventions Autodesk's viewer (APS) and xeokit share
// (the table in docs/CLIENT.md): orbit about the point under the pointer at drag start, pan that grabs the
// point under the pointer, wheel and pinch zoom towards the pointer, keys to move, and a first-person walk
// (level, with gravity) or fly (gravity-free, for plants) mode with mouse look. The camera's orientation is
// a quaternion turned by yaw about the world's up and pitch about the camera's right, so a top view (looking
// straight down) is a view like any other. The target is the orbit pivot; the viewer frames it.
import * as THREE from 'three';

// Radians turned per pixel dragged (a drag across a 900 px-high view turns ~1.1 turns, like OrbitControls).
const TURN_PER_PX = (2 * Math.PI) / 800;
// Mouse look in walk/fly turns slower: the eye, not the model, is turning.
const LOOK_PER_PX = Math.PI / 900;
// One wheel notch (deltaY 100) scales the distance to the point under the pointer by this.
const WHEEL_SCALE_PER_100 = 0.85;
// A + or − key press scales the distance to the target by this.
const KEY_ZOOM = 0.8;
// The view may look at most this close to straight up or down (radians from the vertical), pole excluded.
const MAX_PITCH = Math.PI / 2;
// Walk mode keeps the eye this high (m) above the floor under it, found within FLOOR_SEARCH_M below.
export const EYE_HEIGHT_M = 1.7;
const FLOOR_SEARCH_M = 4;
// Shift moves this many times faster.
const RUN_FACTOR = 3;

/** @typedef {'orbit'|'walk'|'fly'} NavMode */

const _v = new THREE.Vector3();
const _w = new THREE.Vector3();
const _q = new THREE.Quaternion();
const UP = new THREE.Vector3(0, 1, 0);
/** @type {Record<string, [number, number, number]>} key code -> (right, up, forward) */
const MOVE_KEYS = {
  KeyW: [0, 0, 1], ArrowUp: [0, 0, 1], KeyS: [0, 0, -1], ArrowDown: [0, 0, -1],
  KeyA: [-1, 0, 0], ArrowLeft: [-1, 0, 0], KeyD: [1, 0, 0], ArrowRight: [1, 0, 0],
  KeyQ: [0, -1, 0], KeyE: [0, 1, 0],
};

/**
 * The orientation looking along `dir` with the world's up as up; looking straight up or down, `right` (the
 * camera's current right, say) keeps the heading.
 * @param {THREE.Vector3} dir @param {THREE.Vector3} right @param {THREE.Quaternion} out
 */
export function orientationFor(dir, right, out) {
  const z = _v.copy(dir).normalize().negate();
  const x = _w.crossVectors(UP, z);
  if (x.lengthSq() < 1e-10) x.copy(right).setY(0);
  if (x.lengthSq() < 1e-10) x.set(1, 0, 0);
  x.normalize();
  const y = new THREE.Vector3().crossVectors(z, x).normalize();
  return out.setFromRotationMatrix(new THREE.Matrix4().makeBasis(x, y, z));
}

/** Keys typed into a field are the field's, not navigation. @param {EventTarget|null} t */
const typing = (t) => t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));

export class Navigation extends THREE.EventDispatcher {
  /**
   * @param {{camera: () => THREE.Camera, canvas: HTMLElement, pointAt: (x: number, y: number) => THREE.Vector3|null,
   *          floorBelow: (p: THREE.Vector3) => number|null, invalidate: () => void}} deps
   *   `camera()`: the active camera; `pointAt`: the model point under client pixel (x, y); `floorBelow`:
   *   the height of the first surface below a point, or null
   */
  constructor(deps) {
    super();
    this.deps = deps;
    /** the orbit pivot and what the view is centred on, world coordinates */
    this.target = new THREE.Vector3();
    this.enabled = true;
    /** @type {NavMode} */
    this.mode = 'orbit';
    /** keyboard movement in m/s (the viewer scales it to the model) */
    this.speed = 2;
    /** @type {Map<number, {x: number, y: number}>} pointers down, by id */
    this.pointers = new Map();
    /** @type {'turn'|'pan'|null} */
    this.drag = null;
    /** @type {Set<string>} movement keys held */
    this.keys = new Set();
    this.run = false;
    const c = deps.canvas;
    c.style.touchAction = 'none';
    c.addEventListener('pointerdown', (e) => this.#down(e));
    c.addEventListener('pointermove', (e) => this.#move(e));
    c.addEventListener('pointerup', (e) => this.#up(e));
    c.addEventListener('pointercancel', (e) => this.#up(e));
    c.addEventListener('wheel', (e) => this.#wheel(e), { passive: false });
    // Right-drag pans, so the browser's own menu stays closed; a context menu of the page's own still gets the event.
    c.addEventListener('contextmenu', (e) => e.preventDefault());
    window.addEventListener('keydown', (e) => this.#key(e, true));
    window.addEventListener('keyup', (e) => this.#key(e, false));
    window.addEventListener('blur', () => this.keys.clear());
  }

  get camera() {
    return this.deps.camera();
  }

  /** Distance from the eye to the target. */
  get distance() {
    return Math.max(this.camera.position.distanceTo(this.target), 1e-3);
  }

  /** @param {NavMode} mode */
  setMode(mode) {
    this.mode = mode;
    this.dispatchEvent({ type: 'mode', mode });
  }

  /**
   * Move keys held since the last frame; returns whether the camera moved (keep animating).
   * @param {number} [dt] seconds
   */
  update(dt = 0) {
    if (!this.keys.size || !this.enabled || !dt) return false;
    const cam = this.camera;
    const move = new THREE.Vector3();
    for (const k of this.keys) move.add(_v.fromArray(MOVE_KEYS[k]));
    if (move.lengthSq() === 0) return false;
    const forward = cam.getWorldDirection(new THREE.Vector3());
    if (this.mode !== 'fly') {
      forward.setY(0); // level: walking, or moving an orbit view
      // Looking straight down (a plan): forward is the screen's up.
      if (forward.lengthSq() < 1e-8) forward.set(0, 1, 0).applyQuaternion(cam.quaternion).setY(0);
      forward.normalize();
    }
    const right = new THREE.Vector3(1, 0, 0).applyQuaternion(cam.quaternion).setY(0).normalize();
    const step = this.speed * (this.run ? RUN_FACTOR : 1) * Math.min(dt, 0.1);
    const d = new THREE.Vector3().addScaledVector(forward, move.z).addScaledVector(right, move.x).addScaledVector(UP, move.y);
    d.multiplyScalar(step);
    cam.position.add(d);
    this.target.add(d);
    if (this.mode === 'walk' && move.y === 0) this.#gravity();
    this.#changed();
    return true;
  }

  /** Walk: settle the eye at EYE_HEIGHT_M over the floor under it (none found: stay). */
  #gravity() {
    const cam = this.camera;
    const floor = this.deps.floorBelow(_v.copy(cam.position).setY(cam.position.y - EYE_HEIGHT_M + 0.5));
    if (floor === null || cam.position.y - floor > EYE_HEIGHT_M + FLOOR_SEARCH_M) return;
    const dy = floor + EYE_HEIGHT_M - cam.position.y;
    cam.position.y += dy;
    this.target.y += dy;
  }

  /** @param {KeyboardEvent} e @param {boolean} down */
  #key(e, down) {
    this.run = e.shiftKey;
    // A field's keys are the field's; a widget that used the key (the timeline, the alarm list) said so.
    if (down && (typing(e.target) || e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey)) return;
    if (e.code in MOVE_KEYS) {
      if (down) this.keys.add(e.code);
      else this.keys.delete(e.code);
      if (down) {
        if (this.keys.size === 1) this.dispatchEvent({ type: 'start' });
        e.preventDefault(); // arrows would scroll a panel
        this.deps.invalidate();
      }
    } else if (down && (e.key === '+' || e.key === '=' || e.key === '-' || e.key === '_')) {
      this.dispatchEvent({ type: 'start' });
      this.zoomAbout(this.target, e.key === '+' || e.key === '=' ? KEY_ZOOM : 1 / KEY_ZOOM);
    }
  }

  /** @param {PointerEvent} e */
  #down(e) {
    if (!this.enabled) return;
    this.deps.canvas.setPointerCapture?.(e.pointerId);
    this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (this.pointers.size === 1) {
      const pan = e.button === 2 || e.button === 1 || e.shiftKey;
      this.drag = pan ? 'pan' : 'turn';
      // Orbit (and pan) about the point under the pointer, else about the target as it is.
      if (this.mode === 'orbit') this.#grab(e.clientX, e.clientY);
      else if (pan) this.#grab(e.clientX, e.clientY);
      this.dispatchEvent({ type: 'start' });
    } else {
      this.drag = 'pan'; // two fingers: pinch and pan about their middle
      const m = this.#middle();
      this.#grab(m.x, m.y);
    }
  }

  /** Make the point under (x, y) the target without moving the camera (or keep the target when nothing is there). */
  #grab(/** @type {number} */ x, /** @type {number} */ y) {
    const p = this.deps.pointAt(x, y);
    if (p) this.target.copy(p);
  }

  #middle() {
    const ps = [...this.pointers.values()];
    return { x: (ps[0].x + ps[1].x) / 2, y: (ps[0].y + ps[1].y) / 2, d: Math.hypot(ps[0].x - ps[1].x, ps[0].y - ps[1].y) };
  }

  /** @param {PointerEvent} e */
  #move(e) {
    const prev = this.pointers.get(e.pointerId);
    if (!prev || !this.drag) return;
    if (this.pointers.size >= 2) {
      const before = this.#middle();
      prev.x = e.clientX;
      prev.y = e.clientY;
      const after = this.#middle();
      this.pan(after.x - before.x, after.y - before.y);
      if (after.d > 0 && before.d > 0) this.zoomAbout(this.target, before.d / after.d);
      return;
    }
    const dx = e.clientX - prev.x;
    const dy = e.clientY - prev.y;
    prev.x = e.clientX;
    prev.y = e.clientY;
    if (this.drag === 'pan') this.pan(dx, dy);
    else if (this.mode === 'orbit') this.orbit(-dx * TURN_PER_PX, -dy * TURN_PER_PX);
    else this.look(-dx * LOOK_PER_PX, -dy * LOOK_PER_PX);
  }

  /** @param {PointerEvent} e */
  #up(e) {
    this.pointers.delete(e.pointerId);
    if (this.pointers.size === 0 && this.drag) {
      this.drag = null;
      this.dispatchEvent({ type: 'end' });
    } else if (this.pointers.size === 1) {
      this.drag = 'turn';
    }
  }

  /** @param {WheelEvent} e */
  #wheel(e) {
    if (!this.enabled) return;
    e.preventDefault();
    this.dispatchEvent({ type: 'start' });
    const notches = e.deltaY * (e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 800 : 1);
    const scale = WHEEL_SCALE_PER_100 ** (-Math.max(-500, Math.min(500, notches)) / 100);
    this.zoomAbout(this.#pointUnder(e.clientX, e.clientY), scale);
    this.dispatchEvent({ type: 'end' });
  }

  /** The model point under client (x, y), or the point at the target's depth on that ray. */
  #pointUnder(/** @type {number} */ x, /** @type {number} */ y) {
    const hit = this.deps.pointAt(x, y);
    if (hit) return hit;
    const cam = this.camera;
    const r = this.deps.canvas.getBoundingClientRect();
    const ndc = new THREE.Vector2(((x - r.left) / r.width) * 2 - 1, -((y - r.top) / r.height) * 2 + 1);
    const depth = _w.copy(this.target).sub(cam.position).dot(cam.getWorldDirection(_v));
    const ray = new THREE.Raycaster();
    ray.setFromCamera(ndc, cam);
    const along = ray.ray.direction.dot(cam.getWorldDirection(_v));
    return ray.ray.at(depth / Math.max(along, 1e-3), new THREE.Vector3());
  }

  /**
   * Turn the camera about the target: yaw about the world's up, pitch about the camera's right.
   * @param {number} yaw @param {number} pitch radians
   */
  orbit(yaw, pitch) {
    this.#turn(yaw, pitch, this.target);
  }

  /** Turn the eye in place (walk and fly): the target stays ahead at the same distance. @param {number} yaw @param {number} pitch */
  look(yaw, pitch) {
    this.#turn(yaw, pitch, this.camera.position);
  }

  /** @param {number} yaw @param {number} pitch @param {THREE.Vector3} about */
  #turn(yaw, pitch, about) {
    const cam = this.camera;
    const pivot = about.clone();
    const fwd = cam.getWorldDirection(new THREE.Vector3());
    const elevation = Math.asin(Math.max(-1, Math.min(1, fwd.y)));
    const p = Math.max(-MAX_PITCH, Math.min(MAX_PITCH, elevation + pitch)) - elevation;
    const right = new THREE.Vector3(1, 0, 0).applyQuaternion(cam.quaternion);
    const q = new THREE.Quaternion().setFromAxisAngle(UP, yaw).multiply(_q.setFromAxisAngle(right, p));
    cam.position.sub(pivot).applyQuaternion(q).add(pivot);
    this.target.sub(pivot).applyQuaternion(q).add(pivot);
    cam.quaternion.premultiply(q).normalize();
    this.#changed();
  }

  /** Move camera and target across the view by a drag of (dx, dy) px, keeping the target's depth under the pointer. */
  pan(/** @type {number} */ dx, /** @type {number} */ dy) {
    const cam = this.camera;
    const h = this.deps.canvas.clientHeight || 1;
    const perPx = viewHeightAt(cam, this.target) / h;
    const d = new THREE.Vector3(-dx * perPx, dy * perPx, 0).applyQuaternion(cam.quaternion);
    cam.position.add(d);
    this.target.add(d);
    this.#changed();
  }

  /**
   * Scale the view about `point` by `scale` (< 1 zooms in): the point stays where it is on screen and the
   * target moves towards it. Perspective: the eye comes closer to the point; orthographic: the view narrows
   * (its zoom) and slides across, the eye keeping its depth.
   * @param {THREE.Vector3} point @param {number} scale
   */
  zoomAbout(point, scale) {
    const cam = this.camera;
    const p = point.clone();
    if (/** @type {any} */ (cam).isOrthographicCamera) {
      const o = /** @type {THREE.OrthographicCamera} */ (cam);
      const dir = o.getWorldDirection(new THREE.Vector3());
      const across = p.clone().sub(o.position);
      across.addScaledVector(dir, -across.dot(dir)).multiplyScalar(1 - scale);
      o.position.add(across);
      this.target.add(across);
      o.zoom /= scale;
      o.updateProjectionMatrix();
    } else {
      cam.position.sub(p).multiplyScalar(scale).add(p);
      this.target.sub(p).multiplyScalar(scale).add(p);
    }
    this.#changed();
  }

  #changed() {
    this.camera.updateMatrixWorld();
    this.dispatchEvent({ type: 'change' });
  }
}

/**
 * The height of the view (world units) at the depth of `point`: what a perspective camera sees there, or an
 * orthographic camera's frustum.
 * @param {THREE.Camera} camera @param {THREE.Vector3} point
 */
export function viewHeightAt(camera, point) {
  if (/** @type {any} */ (camera).isOrthographicCamera) {
    const o = /** @type {THREE.OrthographicCamera} */ (camera);
    return (o.top - o.bottom) / o.zoom;
  }
  const p = /** @type {THREE.PerspectiveCamera} */ (camera);
  const depth = Math.max(_w.copy(point).sub(p.position).dot(p.getWorldDirection(_v)), 1e-3);
  return 2 * depth * Math.tan(THREE.MathUtils.degToRad(p.fov) / 2);
}
