// WebXR: "Enter VR" (a walk-through at 1:1 from a start pose facing the area of interest, with locomotion, or a
// table-top model) and "Enter AR" (hit-test placement, tabletop or 1:1, anchored), controller-ray picking, the XR
// panel (xr/panel.js), labels and alarm badges in the scene (xr/scene_labels.js), and our XR pointer for presence.
import * as THREE from 'three';
import { horizontal } from './start_pose.js';
import { byUrgency } from './alarms/words.js';
import { Pads } from './xr/input.js';
import { Locomotion } from './xr/locomotion.js';
import { XRPanel } from './xr/panel.js';
import { SceneLabels, SEVERITY_COLORS } from './xr/scene_labels.js';

// Tabletop AR shows the whole model this size (m) across: it fits on a desk.
const TABLETOP_SIZE_M = 0.6;
// Table-top VR has a virtual table of its own: the model is this size across, ...
const VR_TABLETOP_SIZE_M = 1;
// ... its base at table height, this far ahead of the user.
const TABLE_HEIGHT_M = 0.8;
const TABLE_AHEAD_M = 1;
// VR shows a floor grid of 1 m cells this far around the model (or the table), so that the ground the teleport
// arc lands on is seen; at most this many cells across.
const GROUND_MARGIN_M = 10;
const GROUND_MAX_CELLS = 200;
const GROUND_COLOR = 0x3a4452;
// Where the model goes in AR when the device cannot hit-test: 1 m ahead, on a table-high plane.
const DEFAULT_AR_PLACE = new THREE.Matrix4().makeTranslation(0, TABLE_HEIGHT_M, -TABLE_AHEAD_M);
// What the panel says when nothing is picked: how to get around.
const HELP_LINES = ['TwinView', 'Trigger: pick an element or a pin', 'Right stick: turn · push forward to teleport',
  'Grip: teleport · left stick: move', 'B / Y: this panel'];

/**
 * @typedef {{modelBox: () => THREE.Box3|null, onPick: (id: string|null) => void, idOf: (hit: THREE.Intersection) => string|null,
 *   panelLines: (id: string) => string[], setPointer: (ray: THREE.Ray|null) => void,
 *   topicOn: (ray: THREE.Raycaster, camera: THREE.Camera) => string|null, topicLines: (guid: string) => string[],
 *   nameOf: (id: string) => string, anchorOf: (id: string) => THREE.Vector3|null,
 *   alarms: () => Iterable<import('./protocol.js').Alarm>,
 *   standing: (ids: string[]|null, prefer: THREE.Vector3|null) => import('./start_pose.js').StandingPose|null}} XRHooks
 *   what the session needs from the app; `standing` is where to stand at 1:1 to see the elements (null: the area
 *   of interest), in model coordinates
 */

export class XRController extends EventTarget {
  /**
   * @param {import('./viewer.js').Viewer} viewer
   * @param {XRHooks} hooks
   * @param {import('./labels.js').Labels} labels the HTML tags, drawn in the scene while a session runs
   */
  constructor(viewer, hooks, labels) {
    super();
    this.viewer = viewer;
    this.hooks = hooks;
    /** @type {'vr'|'ar'|null} */
    this.mode = null;
    /** the model on a table (AR's first placement), or at 1:1 (VR's) */
    this.tabletop = true;
    this.placed = false;
    /** @type {XRHitTestSource|null} */
    this.hitSource = null;
    /** @type {XRAnchor|null} */
    this.anchor = null;
    /** @type {XRHitTestResult|null} the surface under the reticle */
    this.lastHit = null;
    /** @type {THREE.Matrix4|null} where to anchor the model, in the next frame (anchors need an active frame) */
    this.anchorAt = null;
    /** counts placements, so that an anchor that arrives after a newer placement is dropped */
    this.placements = 0;
    /** @type {string|null} the element the panel shows */
    this.selected = null;
    /** @type {string|null} the topic the panel shows instead (its pin was picked) */
    this.topic = null;
    this.saved = { position: new THREE.Vector3(), scale: 1, background: /** @type {any} */ (null) };
    this.reticle = new THREE.Mesh(new THREE.RingGeometry(0.05, 0.07, 32).rotateX(-Math.PI / 2),
      new THREE.MeshBasicMaterial({ color: 0xffffff }));
    this.reticle.matrixAutoUpdate = false;
    this.reticle.visible = false;
    viewer.scene.add(this.reticle);
    this.controllers = [0, 1].map((i) => this.#controller(i));
    /** @type {THREE.GridHelper|null} the floor grid in VR */
    this.ground = null;
    this.panel = new XRPanel(viewer.scene);
    this.pads = new Pads();
    this.locomotion = new Locomotion(viewer, { floorY: () => this.#groundY(), walkOnModel: () => !this.tabletop });
    this.locomotion.addEventListener('move', (e) => this.panel.move(/** @type {CustomEvent<THREE.Matrix4>} */ (e).detail));
    this.labels = new SceneLabels(viewer, labels, { nameOf: hooks.nameOf, anchorOf: hooks.anchorOf, alarms: hooks.alarms });
    viewer.tickers.push((dt, frame) => this.#tick(dt, frame));
    viewer.renderer.xr.addEventListener('sessionend', () => this.#end());
  }

  /** Show the Enter AR / Enter VR buttons the device supports. @param {HTMLElement} vrBtn @param {HTMLElement} arBtn */
  async offer(vrBtn, arBtn) {
    const xr = navigator.xr;
    if (!xr) return;
    const [vr, ar] = await Promise.all(['immersive-vr', 'immersive-ar'].map((m) => xr.isSessionSupported(/** @type {XRSessionMode} */ (m)).catch(() => false)));
    vrBtn.hidden = !vr;
    arBtn.hidden = !ar;
    vrBtn.onclick = () => this.enter('vr').catch((e) => this.#failed('VR', e));
    arBtn.onclick = () => this.enter('ar').catch((e) => this.#failed('AR', e));
  }

  /** @param {string} what @param {Error} e */
  #failed(what, e) {
    this.dispatchEvent(new CustomEvent('error', { detail: `Could not start ${what}: ${e.message}` }));
  }

  /** @param {'vr'|'ar'} mode @param {HTMLElement} [overlay] */
  async enter(mode, overlay = /** @type {HTMLElement} */ (document.getElementById('xr-overlay'))) {
    const xr = /** @type {XRSystem} */ (navigator.xr);
    const session = mode === 'vr'
      ? await xr.requestSession('immersive-vr', { optionalFeatures: ['local-floor', 'bounded-floor', 'hand-tracking'] })
      // hit-test is optional: without it the model goes on a virtual table (see DEFAULT_AR_PLACE).
      : await xr.requestSession('immersive-ar', { optionalFeatures: ['hit-test', 'anchors', 'dom-overlay', 'local-floor'],
        ...(overlay ? { domOverlay: { root: overlay } } : {}) });
    const { world, scene, renderer, camera } = this.viewer;
    this.saved = { position: world.position.clone(), scale: world.scale.x, background: scene.background };
    const looking = horizontal(camera.getWorldDirection(new THREE.Vector3())); // the desktop view's heading
    this.mode = mode;
    this.tabletop = mode === 'ar';
    renderer.xr.setReferenceSpaceType('local-floor');
    await renderer.xr.setSession(session);
    this.labels.start();
    if (mode === 'vr') {
      this.locomotion.start(/** @type {XRReferenceSpace} the session's, before any offset */ (renderer.xr.getReferenceSpace()));
      this.#placeVR(looking);
    } else {
      scene.background = null; // the camera image shows through
      world.visible = false; // until the user taps a surface
      this.placed = false;
      const viewer = await /** @type {any} */ (session).requestReferenceSpace('viewer');
      this.hitSource = await session.requestHitTestSource?.({ space: viewer })?.catch(() => null) ?? null;
      // No surface detection on this device: put the model on a virtual table in front of the user.
      if (!this.hitSource) this.#placeAR(DEFAULT_AR_PLACE);
    }
  }

  /**
   * Switch between table-top and 1:1: in AR the model is placed again at the next tap; in VR it goes on a table
   * in front of the user, or back to 1:1 with the user at the start pose.
   */
  toggleScale() {
    this.tabletop = !this.tabletop;
    if (this.mode === 'vr') {
      this.#placeVR(this.#heading());
    } else {
      this.placed = false;
      this.#dropAnchor();
      if (this.mode === 'ar' && !this.hitSource) this.#placeAR(DEFAULT_AR_PLACE);
    }
    this.redrawPanel();
    this.dispatchEvent(new CustomEvent('scale', { detail: this.tabletop }));
    return this.tabletop;
  }

  /**
   * VR: the model on a table ahead of the user, or the model as it is (1:1) and the user at the start pose.
   * @param {THREE.Vector3|null} prefer the heading to face when the area of interest does not say
   */
  #placeVR(prefer) {
    const { world } = this.viewer;
    const box = this.hooks.modelBox();
    if (this.tabletop) {
      const head = this.locomotion.head;
      const at = new THREE.Vector3().setFromMatrixPosition(head)
        .addScaledVector(prefer ?? new THREE.Vector3(0, 0, -1), TABLE_AHEAD_M).setY(this.locomotion.floorY + TABLE_HEIGHT_M);
      this.#placeAR(new THREE.Matrix4().makeTranslation(at.x, at.y, at.z));
      this.#placeGround(at.setY(this.locomotion.floorY), 0);
      return;
    }
    world.position.set(0, 0, 0);
    world.scale.setScalar(1);
    world.updateMatrixWorld(true);
    this.viewer.invalidate();
    if (box) {
      const size = box.getSize(new THREE.Vector3());
      this.#placeGround(box.getCenter(new THREE.Vector3()).setY(box.min.y), Math.max(size.x, size.z));
    }
    const pose = this.hooks.standing(null, prefer);
    if (pose) this.locomotion.standAt(pose.floor, pose.heading);
  }

  /**
   * The VR floor grid: centred on `at`, `across` metres plus the margin each side.
   * @param {THREE.Vector3} at @param {number} across
   */
  #placeGround(at, across) {
    this.#dropGround();
    const size = Math.min(GROUND_MAX_CELLS, Math.ceil(across + 2 * GROUND_MARGIN_M));
    this.ground = new THREE.GridHelper(size, size, GROUND_COLOR, GROUND_COLOR);
    this.ground.name = 'xr-ground';
    this.ground.position.copy(at);
    this.viewer.scene.add(this.ground);
  }

  #dropGround() {
    this.ground?.geometry.dispose();
    /** @type {THREE.Material} */ (this.ground?.material)?.dispose();
    this.ground?.removeFromParent();
    this.ground = null;
  }

  /** Which way the user looks now (horizontal, scene), or null. */
  #heading() {
    return horizontal(new THREE.Vector3(0, 0, -1).transformDirection(this.locomotion.head));
  }

  /** Where the teleport arc meets the ground when it meets no model (scene y). */
  #groundY() {
    if (this.tabletop) return this.locomotion.floorY;
    const box = this.hooks.modelBox();
    const { world } = this.viewer;
    return (box?.min.y ?? 0) * world.scale.y + world.position.y;
  }

  /** @param {THREE.Matrix4} hitMatrix */
  #placeAR(hitMatrix) {
    const box = this.hooks.modelBox();
    if (!box) return;
    const { world } = this.viewer;
    const size = box.getSize(new THREE.Vector3());
    const across = this.mode === 'vr' ? VR_TABLETOP_SIZE_M : TABLETOP_SIZE_M;
    const s = this.tabletop ? across / Math.max(size.x, size.z, 1e-3) : 1;
    const at = new THREE.Vector3().setFromMatrixPosition(hitMatrix);
    const c = box.getCenter(new THREE.Vector3());
    world.scale.setScalar(s);
    world.position.set(at.x - c.x * s, at.y - box.min.y * s, at.z - c.z * s);
    world.visible = true;
    world.updateMatrixWorld(true);
    this.placed = true;
    this.viewer.invalidate();
  }

  /** @param {number} i */
  #controller(i) {
    const { renderer, scene } = this.viewer;
    const c = renderer.xr.getController(i);
    const ray = new THREE.Line(new THREE.BufferGeometry().setFromPoints([new THREE.Vector3(), new THREE.Vector3(0, 0, -1)]),
      new THREE.LineBasicMaterial({ color: 0x9ccaff }));
    ray.scale.z = 5;
    c.add(ray);
    c.addEventListener('select', () => this.#onSelect(c));
    scene.add(c);
    return c;
  }

  /** @param {THREE.Object3D} controller */
  #onSelect(controller) {
    const press = this.panel.hit(this.#rayFrom(controller));
    if (press !== null) return this.#press(press);
    if (this.locomotion.aimedBy) return; // the trigger while aiming a teleport picks nothing
    if (this.mode === 'ar' && !this.placed) {
      if (!this.reticle.visible) return;
      this.#placeAR(this.reticle.matrix);
      this.#dropAnchor();
      // The select event carries no frame (three.js does not pass it on) and the last hit result's frame
      // is over: the anchor is created from the next frame, at the reticle's pose.
      this.anchorAt = this.reticle.matrix.clone();
      return;
    }
    const ray = this.#rayFrom(controller);
    // Pins are drawn over the model, so they are picked before it: the panel then reads the topic out.
    const topic = this.hooks.topicOn(ray, this.viewer.renderer.xr.getCamera());
    if (topic) return this.showTopic(topic);
    const hit = this.viewer.pickRay(ray);
    const id = hit ? this.hooks.idOf(hit) : null;
    this.hooks.onPick(id);
    this.showPanel(id);
  }

  /** @param {THREE.Object3D} controller */
  #rayFrom(controller) {
    const rc = new THREE.Raycaster();
    rc.ray.origin.setFromMatrixPosition(controller.matrixWorld);
    rc.ray.direction.set(0, 0, -1).transformDirection(controller.matrixWorld);
    return rc;
  }

  /** A panel button: close, switch the scale, or go to an alarm's element. @param {string} action */
  #press(action) {
    if (action === 'close') this.panel.close();
    else if (action === 'scale') this.toggleScale();
    else if (action.startsWith('alarm:')) this.goTo(action.slice('alarm:'.length));
  }

  /** Pick an element and, in VR at 1:1, stand where it is in sight, facing it. @param {string} id */
  goTo(id) {
    this.hooks.onPick(id);
    this.showPanel(id);
    if (this.mode !== 'vr' || this.tabletop) return;
    const pose = this.hooks.standing([id], this.#heading());
    if (pose) this.locomotion.standAt(pose.floor, pose.heading);
  }

  /** Open the panel (with what it showed, or the help), or close it: the menu button. */
  toggleMenu() {
    if (this.panel.visible) this.panel.close();
    else this.#openPanel(true);
  }

  /** Show (or hide, with null) the properties panel in front of the user. @param {string|null} id */
  showPanel(id) {
    this.selected = id;
    this.topic = null;
    this.#openPanel(Boolean(id));
  }

  /** Show a topic (title, status, people, latest comments) in the panel. @param {string} guid */
  showTopic(guid) {
    this.topic = guid;
    this.#openPanel(true);
  }

  /** What the panel says now. @returns {string[]} */
  panelLines() {
    if (this.topic) return this.hooks.topicLines(this.topic);
    return this.selected ? this.hooks.panelLines(this.selected) : [];
  }

  /** @param {boolean} show */
  #openPanel(show) {
    if (!show || !this.viewer.renderer.xr.isPresenting) return this.panel.close();
    this.panel.open(this.viewer.renderer.xr.getCamera());
    this.redrawPanel();
  }

  /** Redraw the panel (live values, alarms and topics change while it is open). */
  redrawPanel() {
    if (!this.panel.visible) return;
    const lines = this.panelLines();
    const alarms = [...this.hooks.alarms()].sort(byUrgency);
    this.panel.draw({
      lines: lines.length ? lines : HELP_LINES,
      scale: `Scale: ${this.tabletop ? 'table-top' : '1:1'}`,
      alarms: alarms.map((a) => ({ id: a.element, color: SEVERITY_COLORS[a.severity ?? ''] ?? SEVERITY_COLORS.alarm,
        text: [this.hooks.nameOf(a.element), a.prop, a.severity].filter(Boolean).join(' · ') })),
    });
  }

  #dropAnchor() {
    this.placements++;
    deleteAnchor(this.anchor);
    this.anchor = null;
    this.anchorAt = null;
  }

  /** Anchor the placement to the real world where the device can. @param {XRFrame} frame @param {XRReferenceSpace} space */
  #createAnchor(frame, space) {
    const m = /** @type {THREE.Matrix4} */ (this.anchorAt);
    this.anchorAt = null;
    const create = /** @type {any} */ (frame).createAnchor;
    if (!create || typeof XRRigidTransform === 'undefined') return;
    const p = new THREE.Vector3();
    const q = new THREE.Quaternion();
    m.decompose(p, q, new THREE.Vector3());
    const placement = this.placements;
    let pending;
    try { // called now, while the frame is active
      pending = create.call(frame, new XRRigidTransform({ x: p.x, y: p.y, z: p.z }, { x: q.x, y: q.y, z: q.z, w: q.w }), space);
    } catch {
      return; // no anchors here: the model stays where it was put
    }
    Promise.resolve(pending).then((/** @type {XRAnchor} */ anchor) => {
      if (placement === this.placements && this.mode === 'ar') this.anchor = anchor;
      else deleteAnchor(anchor);
    }, () => {});
  }

  /** @param {number} dt @param {XRFrame|undefined} frame */
  #tick(dt, frame) {
    if (!frame) return false;
    const { renderer } = this.viewer;
    const pads = this.pads.read(frame.session);
    if (pads.some((p) => p.menuDown)) this.toggleMenu();
    if (this.mode === 'vr') this.locomotion.update(frame, pads, dt);
    const space = renderer.xr.getReferenceSpace();
    if (this.mode === 'ar' && space) {
      if (this.anchorAt) this.#createAnchor(frame, space);
      const hits = this.hitSource && !this.placed ? frame.getHitTestResults(this.hitSource) : [];
      this.lastHit = hits[0] ?? null;
      const pose = this.lastHit?.getPose(space);
      this.reticle.visible = Boolean(pose);
      if (pose) this.reticle.matrix.fromArray(pose.transform.matrix);
      const anchorPose = this.anchor && frame.trackedAnchors?.has(this.anchor) ? frame.getPose(this.anchor.anchorSpace, space) : null;
      if (anchorPose && this.placed) this.#placeAR(new THREE.Matrix4().fromArray(anchorPose.transform.matrix));
    }
    const c = this.controllers.find((ctl) => ctl.visible) ?? null;
    this.hooks.setPointer(c ? this.#rayFrom(c).ray : null);
    return true;
  }

  #end() {
    const { world, scene } = this.viewer;
    world.position.copy(this.saved.position);
    world.scale.setScalar(this.saved.scale);
    world.visible = true;
    world.updateMatrixWorld(true);
    scene.background = this.saved.background;
    this.mode = null;
    this.hitSource?.cancel();
    this.hitSource = null;
    this.#dropAnchor();
    this.reticle.visible = false;
    this.panel.close();
    this.#dropGround();
    this.locomotion.stop();
    this.labels.stop();
    this.hooks.setPointer(null);
    this.viewer.invalidate();
  }
}

/** @param {XRAnchor|null} anchor */
function deleteAnchor(anchor) {
  try {
    /** @type {any} */ (anchor)?.delete?.();
  } catch { /* the session is over: its anchors went with it */ }
}
