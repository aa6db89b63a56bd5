// VR locomotion with comfort defaults (docs/CLIENT.md, "XR"): teleport along an arc — push the right thumbstick
// forward, or hold the grip of either hand, aim, let go — onto a floor of the model or the ground; smooth movement
// with the left thumbstick, head-relative, level, at walking pace, behind a vignette; snap turns with the right
// thumbstick. The user is moved by offsetting the session's reference space: `rig` maps the session's own floor
// space into the scene, and `base.getOffsetReferenceSpace(rig⁻¹)` is the space three.js renders and tracks in.
import * as THREE from 'three';
import { FLOOR_MIN_NORMAL_Y, horizontal } from '../start_pose.js';

// A snap turn: the usual comfort step (smooth turning makes many people sick).
export const SNAP_TURN_DEG = 30;
// Smooth movement at full stick: walking pace.
export const MOVE_SPEED_M_S = 1.4;
// Stick travel ignored around the centre (worn sticks drift).
const STICK_DEAD_ZONE = 0.2;
// A stick pushed this far is a command (a snap turn, aiming a teleport) ...
const STICK_PRESS = 0.7;
// ... and must come back within this before it counts again.
const STICK_RELEASE = 0.3;
// The teleport arc: launched from the controller at this speed (≈ 7 m reach on the level from hand height) ...
const ARC_SPEED_M_S = 8;
const GRAVITY_M_S2 = 9.81;
// ... and followed in this many steps of this long (2 s of flight: a shot straight up comes down too).
const ARC_STEPS = 40;
const ARC_STEP_S = 0.05;
// A frame longer than this (a stall) moves no further than one this long.
const MAX_DT_S = 0.1;
// The vignette sits this far in front of the eyes, and is this wide (it covers a headset's field of view).
const VIGNETTE_AT_M = 0.3;
const VIGNETTE_SIZE_M = 1.2;
const VIGNETTE_PX = 256;
const MARKER_RADIUS_M = 0.25;
const ARC_OK = 0x4da3ff;
const ARC_NO = 0xf85149;
// Drawn over the model (the marker may sit on a floor behind a railing).
const OVERLAY_ORDER = 20;

const UP = new THREE.Vector3(0, 1, 0);

/** @typedef {import('./input.js').Pad} Pad */

export class Locomotion extends EventTarget {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {{floorY: () => number, walkOnModel: () => boolean}} hooks where the ground is (scene y) when the arc
   *   meets no model, and whether the model's floors are teleport targets (at 1:1, not on a table top)
   */
  constructor(viewer, hooks) {
    super();
    this.viewer = viewer;
    this.hooks = hooks;
    /** scene ← the session's floor space; the user's floor is at scene y = rig.elements[13] */
    this.rig = new THREE.Matrix4();
    /** @type {XRReferenceSpace|null} the session's own space (local-floor) */
    this.base = null;
    this.enabled = false;
    /** @type {XRInputSource|null} the controller aiming a teleport */
    this.aimedBy = null;
    /** @type {THREE.Vector3|null} where a teleport would land now (scene), while aiming at a floor */
    this.target = null;
    this.turnArmed = true;
    /** whether the left stick moved the user in the last frame */
    this.moving = false;
    /** @type {{floor: THREE.Vector3, heading: THREE.Vector3}|null} a standing pose to take in the next frame */
    this.pending = null;
    /** the head in the scene, this frame */
    this.head = new THREE.Matrix4();
    this.raycaster = new THREE.Raycaster();

    const positions = new THREE.BufferAttribute(new Float32Array((ARC_STEPS + 1) * 3), 3);
    this.arc = new THREE.Line(new THREE.BufferGeometry().setAttribute('position', positions),
      new THREE.LineBasicMaterial({ color: ARC_OK, depthTest: false, transparent: true }));
    this.arc.name = 'teleport-arc';
    this.marker = new THREE.Mesh(new THREE.RingGeometry(MARKER_RADIUS_M * 0.7, MARKER_RADIUS_M, 32).rotateX(-Math.PI / 2),
      new THREE.MeshBasicMaterial({ color: ARC_OK, depthTest: false, transparent: true, side: THREE.DoubleSide }));
    this.marker.name = 'teleport-marker';
    this.vignette = new THREE.Mesh(new THREE.PlaneGeometry(VIGNETTE_SIZE_M, VIGNETTE_SIZE_M),
      new THREE.MeshBasicMaterial({ map: vignetteTexture(), transparent: true, depthTest: false, depthWrite: false }));
    this.vignette.name = 'comfort-vignette';
    this.vignette.matrixAutoUpdate = false;
    for (const o of [this.arc, this.marker, this.vignette]) {
      o.visible = false;
      o.frustumCulled = false;
      o.renderOrder = OVERLAY_ORDER;
      viewer.scene.add(o);
    }
    this.vignette.renderOrder = OVERLAY_ORDER + 1;
  }

  /** Start moving the user in this session's space (the rig starts as the space itself). @param {XRReferenceSpace} base */
  start(base) {
    this.base = base;
    this.enabled = true;
    this.rig.identity();
    this.turnArmed = true;
  }

  stop() {
    this.enabled = false;
    this.base = null;
    this.pending = null;
    this.aimedBy = null;
    this.target = null;
    this.moving = false;
    this.rig.identity();
    for (const o of [this.arc, this.marker, this.vignette]) o.visible = false;
  }

  /**
   * Stand at `floor` (scene) facing `heading` (horizontal), from the next frame on (the head's pose is needed).
   * @param {THREE.Vector3} floor @param {THREE.Vector3} heading
   */
  standAt(floor, heading) {
    this.pending = { floor: floor.clone(), heading: heading.clone() };
  }

  /** The user's floor height in the scene. */
  get floorY() {
    return this.rig.elements[13];
  }

  /**
   * One XR frame: take a pending pose, then the sticks and grips. Returns whether something moves.
   * @param {XRFrame} frame @param {Pad[]} pads @param {number} dt seconds since the last frame
   */
  update(frame, pads, dt) {
    if (!this.enabled || !this.base) return false;
    const pose = frame.getViewerPose(this.base);
    if (!pose) return false;
    const headBase = new THREE.Matrix4().fromArray(pose.transform.matrix);
    this.head.multiplyMatrices(this.rig, headBase);
    if (this.pending) this.#stand(headBase, this.pending);

    const aiming = (/** @type {Pad} */ p, /** @type {number} */ push) => p.grip || (p.hand === 'right' && p.y < -push);
    const aim = this.aimedBy
      ? pads.find((p) => p.source === this.aimedBy && aiming(p, STICK_RELEASE))
      : pads.find((p) => aiming(p, STICK_PRESS));
    if (aim) {
      this.aimedBy = aim.source;
      this.#aim(frame, aim.source);
    } else if (this.aimedBy) {
      const target = this.target;
      this.aimedBy = null;
      this.target = null;
      this.arc.visible = this.marker.visible = false;
      if (target) this.teleport(target);
    }
    const right = pads.find((p) => p.hand === 'right');
    if (right && !this.aimedBy) {
      if (this.turnArmed && Math.abs(right.x) > STICK_PRESS) {
        this.turnArmed = false;
        this.turn(-Math.sign(right.x) * SNAP_TURN_DEG); // stick right turns right: clockwise seen from above
      } else if (Math.abs(right.x) < STICK_RELEASE) {
        this.turnArmed = true;
      }
    }
    const left = pads.find((p) => p.hand === 'left');
    this.moving = Boolean(left && this.#move(left, Math.min(dt, MAX_DT_S)));
    this.vignette.visible = this.moving;
    if (this.moving) {
      this.vignette.matrix.copy(this.head).multiply(new THREE.Matrix4().makeTranslation(0, 0, -VIGNETTE_AT_M));
      this.vignette.matrixWorldNeedsUpdate = true;
    }
    return this.moving || Boolean(this.aimedBy);
  }

  /** Jump so that the user stands on `target` (scene), keeping where they look. @param {THREE.Vector3} target */
  teleport(target) {
    const head = new THREE.Vector3().setFromMatrixPosition(this.head);
    this.#commit(new THREE.Matrix4().makeTranslation(target.x - head.x, target.y - this.floorY, target.z - head.z));
  }

  /** Turn the user about their head; positive is to the left (counter-clockwise seen from above). @param {number} deg */
  turn(deg) {
    const head = new THREE.Vector3().setFromMatrixPosition(this.head);
    this.#commit(new THREE.Matrix4().makeTranslation(head.x, 0, head.z)
      .multiply(new THREE.Matrix4().makeRotationY(THREE.MathUtils.degToRad(deg)))
      .multiply(new THREE.Matrix4().makeTranslation(-head.x, 0, -head.z)));
  }

  /**
   * The rig that puts the head above `floor`, looking along `heading`, with the floor under it.
   * @param {THREE.Matrix4} headBase the head in the session's space @param {{floor: THREE.Vector3, heading: THREE.Vector3}} pose
   */
  #stand(headBase, { floor, heading }) {
    this.pending = null;
    const looking = horizontal(new THREE.Vector3(0, 0, -1).transformDirection(headBase)) ?? new THREE.Vector3(0, 0, -1);
    const yaw = yawOf(heading) - yawOf(looking);
    const at = new THREE.Vector3().setFromMatrixPosition(headBase).setY(0).applyAxisAngle(UP, yaw);
    const rig = new THREE.Matrix4().makeTranslation(floor.x - at.x, floor.y, floor.z - at.z)
      .multiply(new THREE.Matrix4().makeRotationY(yaw));
    this.#commit(rig.multiply(this.rig.clone().invert()));
  }

  /** Move the user by `delta` (scene): the rig, the space three.js tracks in, and whoever follows ('move'). @param {THREE.Matrix4} delta */
  #commit(delta) {
    this.rig.premultiply(delta);
    this.head.premultiply(delta);
    if (this.base) {
      const p = new THREE.Vector3();
      const q = new THREE.Quaternion();
      this.rig.clone().invert().decompose(p, q, new THREE.Vector3());
      this.viewer.renderer.xr.setReferenceSpace(this.base.getOffsetReferenceSpace(
        new XRRigidTransform({ x: p.x, y: p.y, z: p.z }, { x: q.x, y: q.y, z: q.z, w: q.w })));
    }
    this.dispatchEvent(new CustomEvent('move', { detail: delta }));
    this.viewer.invalidate();
  }

  /** Smooth movement along the floor, relative to where the head looks. @param {Pad} pad @param {number} dt */
  #move(pad, dt) {
    const mag = Math.hypot(pad.x, pad.y);
    if (mag < STICK_DEAD_ZONE) return false;
    const speed = (Math.min(1, (mag - STICK_DEAD_ZONE) / (1 - STICK_DEAD_ZONE)) * MOVE_SPEED_M_S * dt) / mag;
    const fwd = horizontal(new THREE.Vector3(0, 0, -1).transformDirection(this.head));
    if (!fwd || speed === 0) return false;
    const right = new THREE.Vector3().crossVectors(fwd, UP);
    const step = right.multiplyScalar(pad.x * speed).addScaledVector(fwd, -pad.y * speed);
    this.#commit(new THREE.Matrix4().makeTranslation(step.x, 0, step.z));
    return true;
  }

  /**
   * Follow the arc from the controller to the first floor or obstacle; a floor (the model's, at 1:1, or the
   * ground) becomes the target, an obstacle shows the arc in red without one.
   * @param {XRFrame} frame @param {XRInputSource} source
   */
  #aim(frame, source) {
    const pose = this.base && frame.getPose(source.targetRaySpace, this.base);
    if (!pose) return;
    const m = new THREE.Matrix4().fromArray(pose.transform.matrix).premultiply(this.rig);
    const origin = new THREE.Vector3().setFromMatrixPosition(m);
    const v = new THREE.Vector3(0, 0, -1).transformDirection(m).multiplyScalar(ARC_SPEED_M_S);
    const floorY = this.hooks.floorY();
    const onModel = this.hooks.walkOnModel();
    const attr = /** @type {THREE.BufferAttribute} */ (this.arc.geometry.getAttribute('position'));
    const a = origin.clone();
    const b = new THREE.Vector3();
    attr.setXYZ(0, a.x, a.y, a.z);
    /** @type {THREE.Vector3|null} */
    let end = null;
    let ok = false;
    let n = 1;
    for (; n <= ARC_STEPS && !end; n++) {
      const t = n * ARC_STEP_S;
      b.copy(origin).addScaledVector(v, t).setY(origin.y + v.y * t - 0.5 * GRAVITY_M_S2 * t * t);
      const seg = b.clone().sub(a);
      const len = seg.length();
      const hit = onModel && len > 0 ? this.#hit(a, seg.divideScalar(len), len) : null;
      if (hit) {
        end = hit.point;
        ok = hit.up;
      } else if (a.y >= floorY && b.y < floorY) {
        end = a.clone().lerp(b, (a.y - floorY) / (a.y - b.y));
        ok = true;
      }
      const p = end ?? b;
      attr.setXYZ(n, p.x, p.y, p.z);
      a.copy(b);
    }
    attr.needsUpdate = true;
    this.arc.geometry.setDrawRange(0, n);
    this.target = end && ok ? end : null;
    const color = this.target ? ARC_OK : ARC_NO;
    /** @type {THREE.LineBasicMaterial} */ (this.arc.material).color.setHex(color);
    this.arc.visible = true;
    this.marker.visible = Boolean(this.target);
    if (this.target) this.marker.position.copy(this.target);
  }

  /**
   * The model along a segment of the arc: where, and whether it is a floor to stand on.
   * @param {THREE.Vector3} from @param {THREE.Vector3} dir unit @param {number} far
   */
  #hit(from, dir, far) {
    this.raycaster.set(from, dir);
    this.raycaster.far = far;
    const hit = this.viewer.pickRay(this.raycaster);
    if (!hit) return null;
    const normal = (hit.face?.normal.clone() ?? UP.clone()).transformDirection(hit.object.matrixWorld);
    return { point: hit.point.clone(), up: normal.y >= FLOOR_MIN_NORMAL_Y };
  }
}

/** The angle of a horizontal direction about +Y, from -Z (the way an unturned head looks). @param {THREE.Vector3} v */
function yawOf(v) {
  return Math.atan2(-v.x, -v.z);
}

/** Clear in the middle, dark towards the edges: what is seen moving at the edge of the view upsets the stomach most. */
function vignetteTexture() {
  const c = document.createElement('canvas');
  c.width = c.height = VIGNETTE_PX;
  const g = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d'));
  const r = VIGNETTE_PX / 2;
  const grad = g.createRadialGradient(r, r, r * 0.35, r, r, r * 0.75);
  grad.addColorStop(0, 'rgba(0, 0, 0, 0)');
  grad.addColorStop(1, 'rgba(0, 0, 0, 0.85)');
  g.fillStyle = grad;
  g.fillRect(0, 0, VIGNETTE_PX, VIGNETTE_PX);
  return new THREE.CanvasTexture(c);
}
