// WebXR: "Enter VR" (1:1 walk-through) and "Enter AR" (hit-test placement, tabletop or 1:1, anchored),
// controller-ray picking, a properties panel drawn on a canvas texture, and our XR pointer for presence.
import * as THREE from 'three';

// Tabletop AR shows the whole model this size (m) across: it fits on a desk.
const TABLETOP_SIZE_M = 0.6;
// In VR the model's near edge starts this far (m) in front of the user.
const VR_STANDOFF_M = 1.5;
// Where the model goes in AR when the device cannot hit-test: 1 m ahead, on a table-high plane.
const DEFAULT_AR_PLACE = new THREE.Matrix4().makeTranslation(0, 0.8, -1);
const PANEL_PX = [640, 360];
const PANEL_M = [0.48, 0.27];

export class XRController extends EventTarget {
  /**
   * @param {import('./viewer.js').Viewer} viewer
   * @param {{modelBox: () => THREE.Box3|null, onPick: (id: string|null) => void, idOf: (hit: THREE.Intersection) => string|null,
   *          panelLines: (id: string) => string[], setPointer: (ray: THREE.Ray|null) => void,
   *          topicOn: (ray: THREE.Raycaster, camera: THREE.Camera) => string|null, topicLines: (guid: string) => string[]}} hooks
   */
  constructor(viewer, hooks) {
    super();
    this.viewer = viewer;
    this.hooks = hooks;
    /** @type {'vr'|'ar'|null} */
    this.mode = null;
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
    this.panel = this.#panel();
    viewer.tickers.push((dt, frame) => this.#tick(frame));
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
    const { world, scene, renderer } = this.viewer;
    this.saved = { position: world.position.clone(), scale: world.scale.x, background: scene.background };
    this.mode = mode;
    renderer.xr.setReferenceSpaceType('local-floor');
    await renderer.xr.setSession(session);
    if (mode === 'vr') {
      this.#placeVR();
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

  /** Switch AR placement between tabletop and 1:1; re-placed at the next tap. */
  toggleScale() {
    this.tabletop = !this.tabletop;
    this.placed = false;
    this.#dropAnchor();
    if (this.mode === 'ar' && !this.hitSource) this.#placeAR(DEFAULT_AR_PLACE);
    return this.tabletop;
  }

  #placeVR() {
    const box = this.hooks.modelBox();
    if (!box) return;
    const { world } = this.viewer;
    const c = box.getCenter(new THREE.Vector3());
    world.scale.setScalar(1);
    world.position.set(-c.x, -box.min.y, -(box.max.z - c.z) - VR_STANDOFF_M - c.z);
    world.updateMatrixWorld(true);
  }

  /** @param {THREE.Matrix4} hitMatrix */
  #placeAR(hitMatrix) {
    const box = this.hooks.modelBox();
    if (!box) return;
    const { world } = this.viewer;
    const size = box.getSize(new THREE.Vector3());
    const s = this.tabletop ? TABLETOP_SIZE_M / Math.max(size.x, size.z, 1e-3) : 1;
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

  #panel() {
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = PANEL_PX;
    const texture = new THREE.CanvasTexture(canvas);
    texture.colorSpace = THREE.SRGBColorSpace;
    const mesh = new THREE.Mesh(new THREE.PlaneGeometry(...PANEL_M), new THREE.MeshBasicMaterial({ map: texture, transparent: true }));
    mesh.visible = false;
    mesh.name = 'xr-panel';
    this.viewer.scene.add(mesh);
    return { canvas, texture, mesh };
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
    const { mesh } = this.panel;
    mesh.visible = show && this.viewer.renderer.xr.isPresenting;
    if (!mesh.visible) return;
    const head = this.viewer.renderer.xr.getCamera();
    const fwd = new THREE.Vector3(0, 0, -1).applyQuaternion(head.quaternion).setY(0).normalize();
    mesh.position.copy(head.position).addScaledVector(fwd, 0.7).add(new THREE.Vector3(0, -0.15, 0));
    mesh.lookAt(head.position);
    this.redrawPanel();
  }

  /** Redraw the panel text (live values and topics change while it is open). */
  redrawPanel() {
    if (!this.panel.mesh.visible) return;
    const { canvas, texture } = this.panel;
    const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    g.fillStyle = 'rgba(29, 33, 39, 0.92)';
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = '#4da3ff';
    g.fillRect(0, 0, 8, canvas.height);
    this.panelLines().forEach((text, i) => {
      g.fillStyle = i === 0 ? '#ffffff' : '#c9d1db';
      g.font = i === 0 ? 'bold 34px sans-serif' : '26px sans-serif';
      g.fillText(text, 24, 48 + i * 40, canvas.width - 40); // fillText draws text, never markup
    });
    texture.needsUpdate = true;
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

  /** @param {XRFrame|undefined} frame */
  #tick(frame) {
    if (!frame) return false;
    const { renderer } = this.viewer;
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
    this.panel.mesh.visible = false;
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
