// Other people in the scene: a camera-frustum avatar for browser users, head and hands for XR users
// (the pose says which: `device: "xr"` while in an immersive session), a laser for their pointer,
// names, and "follow".
// Our own pose is sent as a heartbeat, in model coordinates so that a scaled AR placement still agrees.
import * as THREE from 'three';
import { markLiveOnly, showLiveOnly } from './live_only.js';
import { h, replace } from './ui/dom.js';

// Send our pose at most this often while it changes (the server coalesces per session anyway) ...
const SEND_INTERVAL_MS = 100;
// ... and at least this often while it does not, so that others can tell a quiet user from a gone one.
const HEARTBEAT_MS = 2000;
// A laser that hits nothing is drawn this long (m, model units).
const LASER_LENGTH_M = 30;
// Turns the cone (apex +Y) so its apex is at the eye and its square base opens forward (-Z).
const FRUSTUM_TURN = new THREE.Euler(Math.PI / 2, Math.PI / 4, 0);
// Another user this close to our eye (m) would be inside our head (co-located: the same link, the same start
// view): their avatar is not drawn ...
const NEAR_HIDE_M = 0.3;
// ... and a browser user's frustum fades in from there to this distance ...
const NEAR_FADE_M = 1.5;
// ... and shrinks when nearer than this, keeping about the size on screen it has here (else it fills the view).
const FRUSTUM_FULL_SIZE_M = 3;
const FRUSTUM_MIN_SCALE = 0.2;
// An XR user's head and hands stand for a body: full size, faded only this close.
const XR_NEAR_FADE_M = 0.6;
const _eye = new THREE.Vector3();
const _at = new THREE.Vector3();

/** @param {string} sid */
export function colorFor(sid) {
  let hash = 0;
  for (const ch of sid) hash = (hash * 31 + ch.charCodeAt(0)) | 0;
  return new THREE.Color().setHSL(((hash >>> 0) % 360) / 360, 0.7, 0.6);
}

export class PresenceLayer {
  /**
   * @param {import('./viewer.js').Viewer} viewer
   * @param {import('./session.js').Session} session
   * @param {import('./labels.js').Labels} labels
   * @param {HTMLElement} list the people list
   */
  constructor(viewer, session, labels, list) {
    this.viewer = viewer;
    this.session = session;
    this.labels = labels;
    this.list = list;
    /** @type {Map<string, THREE.Group>} */
    this.avatars = new Map();
    /** @type {string|null} session id we follow */
    this.following = null;
    /** @type {THREE.Ray|null} our pointer in world coordinates, while over the model */
    this.pointer = null;
    this.lastSent = 0;
    this.lastPose = '';
    session.state.addEventListener('reset', () => this.sync());
    session.state.addEventListener('delta', (e) => {
      if (Object.keys(/** @type {import('./state.js').DeltaEvent} */ (e).detail.delta.presence ?? {}).length) this.sync();
    });
    viewer.controls.addEventListener('start', () => this.follow(null));
    viewer.tickers.push(() => this.#heartbeat());
    viewer.prerender.push(() => this.#fadeNear());
    showLiveOnly(viewer.camera); // avatars are live-only: left out of snapshots
  }

  /** Fade (and, for frustums, shrink) the avatars that are near our eye, before each render. */
  #fadeNear() {
    const { renderer, camera } = this.viewer;
    (renderer.xr.isPresenting ? renderer.xr.getCamera() : camera).getWorldPosition(_eye);
    for (const g of this.avatars.values()) {
      const { parts, xr } = g.userData;
      const d = parts.head.getWorldPosition(_at).distanceTo(_eye);
      const opacity = THREE.MathUtils.clamp((d - NEAR_HIDE_M) / ((xr ? XR_NEAR_FADE_M : NEAR_FADE_M) - NEAR_HIDE_M), 0, 1);
      g.userData.opacity = opacity;
      g.visible = opacity > 0;
      for (const m of g.userData.fading) m.opacity = opacity;
      parts.frustum.scale.setScalar(xr ? 1 : THREE.MathUtils.clamp(d / FRUSTUM_FULL_SIZE_M, FRUSTUM_MIN_SCALE, 1));
    }
  }

  /** Our pose (head + pointer) in model coordinates. @returns {import('./protocol.js').Pose} */
  ownPose() {
    const { camera, world, renderer } = this.viewer;
    const head = renderer.xr.isPresenting ? renderer.xr.getCamera() : camera;
    const toModel = world.matrixWorld.clone().invert();
    const m = head.matrixWorld.clone().premultiply(toModel);
    const pos = new THREE.Vector3();
    const quat = new THREE.Quaternion();
    m.decompose(pos, quat, new THREE.Vector3());
    /** @type {import('./protocol.js').Pose} */
    const pose = { position: round(pos.toArray()), quaternion: round(quat.toArray(), 4) };
    if (renderer.xr.isPresenting) pose.device = 'xr';
    if (this.pointer) {
      const o = this.pointer.origin.clone().applyMatrix4(toModel);
      const d = this.pointer.direction.clone().transformDirection(toModel);
      pose.ray_origin = round(o.toArray());
      pose.ray_direction = round(d.toArray(), 4);
    }
    return pose;
  }

  #heartbeat() {
    const now = performance.now();
    if (now - this.lastSent < SEND_INTERVAL_MS) return false;
    const pose = this.ownPose();
    const key = JSON.stringify(pose);
    if (key === this.lastPose && now - this.lastSent < HEARTBEAT_MS) return false;
    this.session.sendPresence(pose);
    this.lastSent = now;
    this.lastPose = key;
    return false;
  }

  /** Bring avatars in line with the state's presence map. */
  sync() {
    const own = this.session.welcome?.session_id;
    const present = this.session.state.presence;
    for (const [sid, avatar] of this.avatars) {
      if (present.has(sid) && sid !== own) continue;
      avatar.removeFromParent();
      this.labels.set(`user:${sid}`, null, () => null);
      this.avatars.delete(sid);
    }
    for (const [sid, p] of present) {
      if (sid === own) continue;
      const avatar = this.avatars.get(sid) ?? this.#create(sid, p.client);
      place(avatar, p.pose, this.#laserLength(p.pose));
      if (sid === this.following) this.#lookFrom(p.pose);
    }
    this.#renderList();
    this.viewer.invalidate();
  }

  /** How far a user's pointer ray goes before it meets the model. @param {import('./protocol.js').Pose} pose */
  #laserLength(pose) {
    if (!pose.ray_origin || !pose.ray_direction) return LASER_LENGTH_M;
    const toWorld = this.viewer.world.matrixWorld;
    const rc = new THREE.Raycaster(new THREE.Vector3(...pose.ray_origin).applyMatrix4(toWorld),
      new THREE.Vector3(...pose.ray_direction).transformDirection(toWorld));
    const hit = this.viewer.pickRay(rc);
    return hit ? hit.distance / this.viewer.world.scale.x : LASER_LENGTH_M;
  }

  /** @param {string|null} sid */
  follow(sid) {
    if (this.following === sid) return;
    this.following = sid;
    const p = sid ? this.session.state.presence.get(sid) : null;
    if (p) this.#lookFrom(p.pose);
    this.#renderList();
  }

  /** @param {import('./protocol.js').Pose} pose */
  #lookFrom(pose) {
    const pos = new THREE.Vector3(...pose.position).applyMatrix4(this.viewer.world.matrixWorld);
    const fwd = new THREE.Vector3(0, 0, -1).applyQuaternion(new THREE.Quaternion(...pose.quaternion));
    const dist = Math.max(this.viewer.camera.position.distanceTo(this.viewer.controls.target), 1);
    this.viewer.flyTo(pos, pos.clone().addScaledVector(fwd, dist), 250);
  }

  /** @param {string} sid @param {string} name */
  #create(sid, name) {
    const color = colorFor(sid);
    // Transparent from the start, so that fading near our eye (#fadeNear) changes an opacity, not the shader.
    const mat = new THREE.MeshBasicMaterial({ color, transparent: true });
    const frustumMat = new THREE.LineBasicMaterial({ color, transparent: true });
    const visorMat = new THREE.MeshBasicMaterial({ color: 0x111111, transparent: true });
    const g = new THREE.Group();
    g.name = `avatar:${sid}`;
    // Browser user: a camera frustum (a pyramid opening along the view direction).
    const frustum = new THREE.LineSegments(new THREE.EdgesGeometry(new THREE.ConeGeometry(0.25, 0.4, 4, 1, true)), frustumMat);
    frustum.name = 'frustum';
    // XR user: head with a visor, and a hand at the start of the pointer ray.
    const head = new THREE.Mesh(new THREE.SphereGeometry(0.12, 16, 12), mat);
    head.add(new THREE.Mesh(new THREE.BoxGeometry(0.16, 0.05, 0.04).translate(0, 0.02, -0.11), visorMat));
    head.name = 'head';
    const hand = new THREE.Mesh(new THREE.SphereGeometry(0.04, 12, 8), mat);
    hand.name = 'hand';
    const laser = new THREE.Line(new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(), new THREE.Vector3(0, 0, -1)]),
      new THREE.LineBasicMaterial({ color }));
    laser.name = 'laser';
    g.add(frustum, head, hand, laser);
    g.userData = { name, color: `#${color.getHexString()}`, parts: { head, frustum }, fading: [mat, frustumMat, visorMat],
      xr: false, opacity: 1 };
    markLiveOnly(g);
    this.viewer.world.add(g);
    this.avatars.set(sid, g);
    // The avatar lives in model coordinates (a child of the world group), as the labels expect; no name while
    // the avatar is too near to be drawn.
    this.labels.set(`user:${sid}`, name, () => (g.visible ? head.position : null), 'user', g.userData.color);
    return g;
  }

  /** Read-only view of the avatars (for tests): who, which kind, where (model coordinates). */
  describe() {
    return [...this.avatars].map(([sid, g]) => {
      const part = (/** @type {string} */ n) => /** @type {THREE.Object3D} */ (g.getObjectByName(n));
      const xr = part('head').visible;
      return { sid, name: g.userData.name, kind: xr ? 'xr' : 'browser', head: part('head').position.toArray(),
        hand: xr && part('hand').visible ? part('hand').position.toArray() : null, laser: part('laser').visible,
        opacity: g.visible ? g.userData.opacity : 0, frustumScale: part('frustum').scale.x };
    });
  }

  /** The People list: each other person's name and role (the state's presence, as the avatars). */
  #renderList() {
    const own = this.session.welcome?.session_id;
    const present = this.session.state.presence;
    replace(this.list, ...[...this.avatars].map(([sid, g]) => h('li', { dataset: { sid } },
      h('span', { class: 'dot', style: `background:${g.userData.color}` }), h('span', { class: 'person' }, g.userData.name),
      h('span', { class: 'role' }, present.get(sid)?.role ?? 'viewer'),
      h('button', { onclick: () => this.follow(this.following === sid ? null : sid), 'aria-pressed': String(this.following === sid) },
        this.following === sid ? 'Following' : 'Follow'))),
    this.avatars.size ? null : h('li', { class: 'empty' }, own ? 'Only you are here' : 'Not connected'));
  }
}

/**
 * @param {THREE.Group} g @param {import('./protocol.js').Pose} pose
 * @param {number} laserLength where the pointer ray meets the model (model units)
 */
function place(g, pose, laserLength) {
  const head = /** @type {THREE.Object3D} */ (g.getObjectByName('head'));
  const frustum = /** @type {THREE.Object3D} */ (g.getObjectByName('frustum'));
  const hand = /** @type {THREE.Object3D} */ (g.getObjectByName('hand'));
  const laser = /** @type {THREE.Line} */ (g.getObjectByName('laser'));
  head.position.fromArray(pose.position);
  head.quaternion.fromArray(pose.quaternion);
  frustum.position.copy(head.position).add(new THREE.Vector3(0, 0, -0.2).applyQuaternion(head.quaternion));
  frustum.quaternion.copy(head.quaternion).multiply(new THREE.Quaternion().setFromEuler(FRUSTUM_TURN));
  const origin = pose.ray_origin ? new THREE.Vector3(...pose.ray_origin) : null;
  const xr = pose.device === 'xr';
  g.userData.xr = xr;
  frustum.visible = !xr;
  head.visible = xr;
  hand.visible = xr && Boolean(origin); // the controller holding the pointer
  if (origin) hand.position.copy(origin);
  laser.visible = Boolean(origin && pose.ray_direction);
  if (origin && pose.ray_direction) {
    const end = origin.clone().addScaledVector(new THREE.Vector3(...pose.ray_direction).normalize(), laserLength);
    laser.geometry.setFromPoints([origin, end]);
  }
}

/** A tuple rounded element-wise (same length). @template {number[]} T @param {T} a @param {number} [digits] @returns {T} */
function round(a, digits = 3) {
  const k = 10 ** digits;
  return /** @type {T} */ (a.map((x) => Math.round(x * k) / k));
}
