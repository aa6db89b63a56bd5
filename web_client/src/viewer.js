// The 3D view: renderer, cameras (perspective and orthographic), navigation, lights, render-on-demand,
// picking and camera flights.
//
// Camera API (also what tools such as the section's floor plan use):
// - `camera`: the active camera; `perspective` and `orthographic` are both kept at the same pose.
// - `projection` / `setProjection('perspective'|'orthographic')`: the switch keeps the framed extent
//   (`viewHeight()`, the view's height at the target): an orthographic view is as high as the perspective
//   view was at the target's depth, and back in perspective the eye moves along its view to frame it again.
//   Orthographic zoom is the camera's `zoom`; the eye does not move in or out.
// - `controls.target`: the orbit pivot, centred in the view; `flyTo(position, target, ms)` animates both.
// - `fitBox(box)` frames a box from the current direction; `viewFrom(dir, box)` from a standard direction
//   (the section's floor plan: `setProjection('orthographic')`, then `flyTo(eye, centre, 0, height)`).
// Every flight respects prefers-reduced-motion (it jumps), and starts with a `flight` event.
import * as THREE from 'three';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';
import { createContext, pixelRatio, withKnownParameters } from './gl_context.js';
import { warmUpShaders } from './merged_batch.js';
import { Navigation, orientationFor, viewHeightAt } from './navigation.js';
import { LIGHTS } from './shading.js';

export const BACKGROUND = 0x1d2127;
// A fly-to lasts this long: long enough to follow, short enough not to annoy.
const FLY_MS = 600;
// Fitting leaves this much room around the box, so the element is seen in its surroundings.
const FIT_MARGIN = 1.4;
// The least upward component of the view direction after a fit (0.7 ≈ 35° above the horizon).
const MIN_FIT_ELEVATION = 0.7;
// A flight this short or with reduced motion asked for is a jump.
const reducedMotion = () => typeof matchMedia === 'function' && matchMedia('(prefers-reduced-motion: reduce)').matches;
// The environment map's cube face size (px): reflections of a blurred room need little.
const ENVIRONMENT_PX = 128;
// The orthographic frustum's half height at zoom 1; its zoom sets the view's height.
const ORTHO_HALF_HEIGHT = 1;
const _dir = new THREE.Vector3();
const _right = new THREE.Vector3();

/** @typedef {'perspective'|'orthographic'} Projection */
// Whether three reads each shader's compile and link logs on a program's first use: four synchronous round
// trips to the GPU process, each waiting behind whatever that process is busy with (on a software GL,
// compositing the page), which were most of the first frame's time. Our shaders are fixed, so the bundle
// skips them; the unbundled development client, or `?debug`, checks them.
/* global TWINVIEW_BUNDLE */
const CHECK_SHADER_ERRORS = typeof TWINVIEW_BUNDLE === 'undefined' || new URLSearchParams(location.search).has('debug');

export class Viewer extends EventTarget {
  /**
   * @param {HTMLElement} container
   * @param {import('./gl_context.js').GLContext} [gl] a context made beforehand (index.html makes one)
   */
  constructor(container, gl = createContext()) {
    super();
    this.container = container;
    const { canvas, context, software } = gl;
    this.renderer = context
      ? withKnownParameters(gl, () => new THREE.WebGLRenderer({ canvas, context, stencil: true }))
      : new THREE.WebGLRenderer({ antialias: true, stencil: true }); // let three report the failure
    /** whether the GL is a software rasteriser (then without MSAA) */
    this.softwareGL = software;
    this.renderer.debug.checkShaderErrors = CHECK_SHADER_ERRORS;
    this.renderer.xr.enabled = true;
    this.renderer.localClippingEnabled = true;
    container.appendChild(this.renderer.domElement);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND);
    this.perspective = new THREE.PerspectiveCamera(50, 1, 0.05, 5000);
    this.perspective.position.set(10, 8, 10);
    this.orthographic = new THREE.OrthographicCamera(-1, 1, 1, -1, 0.05, 5000);
    /** @type {THREE.PerspectiveCamera|THREE.OrthographicCamera} the camera drawn with */
    this.camera = this.perspective;
    /** @type {Projection} */
    this.projection = 'perspective';
    /**
     * Section planes in world coordinates (tools/section.js keeps them): one array, shared by reference as the
     * `clippingPlanes` of every model material (clipModel), so that a change reaches them all; picking skips
     * what they cut away.
     * @type {THREE.Plane[]}
     */
    this.clippingPlanes = [];
    // The same lights as the batches' per-vertex shading (shading.js) uses, for everything else.
    this.scene.add(new THREE.HemisphereLight(LIGHTS.sky, LIGHTS.ground, LIGHTS.hemisphere));
    const sun = new THREE.DirectionalLight(LIGHTS.sun, LIGHTS.sunIntensity);
    sun.position.copy(LIGHTS.sunPosition);
    this.scene.add(sun);
    /** Everything that moves with the model (XR placement scales and anchors this). */
    this.world = new THREE.Group();
    this.world.name = 'world';
    this.scene.add(this.world);

    /** mouse, touch and keyboard navigation (navigation.js); `controls.target` is the orbit pivot */
    this.controls = new Navigation({
      camera: () => this.camera,
      canvas: this.renderer.domElement,
      pointAt: (x, y) => this.pickAt(x, y)?.point ?? null,
      floorBelow: (p) => {
        const hit = this.pickRay(new THREE.Raycaster(p, new THREE.Vector3(0, -1, 0)));
        return hit ? hit.point.y : null;
      },
      invalidate: () => this.invalidate(),
    });
    this.controls.addEventListener('change', () => this.invalidate());
    this.controls.addEventListener('start', () => this.stopFlight());
    this.controls.target.set(0, 0, 0);
    this.camera.lookAt(this.controls.target);
    // An immersive session draws from the perspective camera's layers and pose.
    this.renderer.xr.addEventListener('sessionstart', () => this.setProjection('perspective'));

    this.raycaster = new THREE.Raycaster();
    /** @type {THREE.Object3D[]} what picking tests against */
    this.pickables = [];
    /** @type {((hit: THREE.Intersection) => boolean)|null} which hits count (x-rayed elements do not) */
    this.pickFilter = null;
    /** @type {((dt: number, frame?: XRFrame) => boolean)[]} per-frame hooks; return true to keep animating */
    this.tickers = [];
    /** @type {((camera: THREE.Camera) => void)[]} run just before each render (not on idle frames) */
    this.prerender = [];
    this.dirty = true;
    this.lastFrameMs = 0;
    this.frames = 0;
    this.timer = new THREE.Timer();

    new ResizeObserver(() => this.#resize()).observe(container);
    this.#resize();
    this.renderer.setAnimationLoop((t, frame) => this.#frame(t, frame));
    /** @type {THREE.Group|null} the warm-up batches (see warmUpShaders), until the model has been drawn */
    this.warmUp = warmUpShaders(this.renderer, this.camera, this.scene);
    this.scene.add(this.warmUp); // drawn in the first frame only
  }

  invalidate() {
    this.dirty = true;
  }

  /**
   * Image-based lighting for glTF (PBR) materials: a neutral room, prefiltered once (PMREM, ENVIRONMENT_PX a
   * cube face), so metals reflect something instead of rendering black. The cheap per-vertex path does not
   * read it. Call after the model's first frame: prefiltering compiles and runs a few blur passes on the GPU
   * (on SwiftShader, its shaders keep the GPU process busy for ~20 s).
   */
  useEnvironment() {
    if (this.scene.environment) return;
    const pmrem = new THREE.PMREMGenerator(this.renderer);
    const room = new RoomEnvironment();
    this.scene.environment = pmrem.fromScene(room, 0.04, 0.1, 100, { size: ENVIRONMENT_PX }).texture;
    room.dispose();
    pmrem.dispose();
    this.invalidate();
  }

  #resize() {
    const w = this.container.clientWidth || 1;
    const h = this.container.clientHeight || 1;
    if (this.renderer.xr.isPresenting) return;
    // The pixel ratio with the size: setPixelRatio would resize the drawing buffer once more.
    this.renderer.setDrawingBufferSize(w, h, pixelRatio());
    this.perspective.aspect = w / h;
    this.perspective.updateProjectionMatrix();
    this.#aspect();
    this.invalidate();
  }

  /**
   * Switch between perspective and orthographic, keeping the pose and the extent framed at the target: the
   * orthographic view is as high as the perspective one is at the target's depth; back in perspective, the
   * eye moves along its view to where the perspective view is that high there.
   * @param {Projection} kind
   */
  setProjection(kind) {
    if (kind === this.projection) return;
    const from = this.camera;
    const to = kind === 'orthographic' ? this.orthographic : this.perspective;
    const height = this.viewHeight();
    to.position.copy(from.position);
    to.quaternion.copy(from.quaternion);
    to.near = from.near;
    to.far = from.far;
    to.layers.mask = from.layers.mask;
    to.updateMatrixWorld();
    this.camera = to;
    this.projection = kind;
    this.#setHeight(height);
    this.#aspect();
    this.invalidate();
    this.dispatchEvent(new CustomEvent('projection', { detail: kind }));
  }

  /** The height of the view at the target's depth (world units), in either projection. */
  viewHeight() {
    return viewHeightAt(this.camera, this.controls.target);
  }

  /**
   * Make the view `height` high at the target: the orthographic frustum's zoom, or the perspective eye's
   * distance along its view. @param {number} height
   */
  #setHeight(height) {
    const c = this.camera;
    if (c === this.orthographic) {
      c.zoom = (c.top - c.bottom) / Math.max(height, 1e-6);
      c.updateProjectionMatrix();
      return;
    }
    const dir = c.getWorldDirection(_dir);
    const depth = _right.copy(this.controls.target).sub(c.position).dot(dir);
    const want = height / (2 * Math.tan(THREE.MathUtils.degToRad(this.perspective.fov) / 2));
    c.position.addScaledVector(dir, depth - want);
    c.updateMatrixWorld();
  }

  /** The orthographic frustum takes the view's aspect (its height, over zoom, is the view's). */
  #aspect() {
    const o = this.orthographic;
    o.top = ORTHO_HALF_HEIGHT;
    o.bottom = -ORTHO_HALF_HEIGHT;
    o.right = ORTHO_HALF_HEIGHT * this.perspective.aspect;
    o.left = -o.right;
    o.updateProjectionMatrix();
  }

  /**
   * Let the section planes cut every material under `root` (the model's batches and objects).
   * @param {THREE.Object3D} root
   */
  clipModel(root) {
    root.traverse((o) => {
      const material = /** @type {any} */ (o).material;
      for (const m of Array.isArray(material) ? material : material ? [material] : []) m.clippingPlanes = this.clippingPlanes;
    });
  }

  /** @param {number} time @param {XRFrame|undefined} frame */
  #frame(time, frame) {
    this.timer.update(time);
    const dt = this.timer.getDelta();
    let animating = this.controls.update(dt);
    for (const tick of [...this.tickers]) animating = tick(dt, frame) || animating;
    if (!this.dirty && !animating && !this.renderer.xr.isPresenting) return;
    this.dirty = false;
    const t0 = performance.now();
    this.camera.updateMatrixWorld();
    for (const hook of this.prerender) hook(this.camera);
    this.renderer.render(this.scene, this.camera);
    this.lastFrameMs = performance.now() - t0;
    this.frames += 1;
    if (this.warmUp) {
      this.warmUp.removeFromParent();
      if (this.pickables.length) {
        for (const b of this.warmUp.children) /** @type {import('./merged_batch.js').MergedBatch} */ (b).dispose();
        this.warmUp = null;
      }
    }
    this.dispatchEvent(new CustomEvent('frame', { detail: frame }));
  }

  /**
   * Pick at client pixel coordinates.
   * @param {number} clientX @param {number} clientY
   * @returns {THREE.Intersection|null}
   */
  pickAt(clientX, clientY) {
    const r = this.renderer.domElement.getBoundingClientRect();
    const ndc = new THREE.Vector2(((clientX - r.left) / r.width) * 2 - 1, -((clientY - r.top) / r.height) * 2 + 1);
    this.raycaster.setFromCamera(ndc, this.camera);
    return this.pickRay(this.raycaster);
  }

  /** @param {THREE.Raycaster} raycaster @returns {THREE.Intersection|null} nearest hit not clipped away */
  pickRay(raycaster) {
    const planes = this.clippingPlanes;
    for (const hit of raycaster.intersectObjects(this.pickables, true)) {
      if (planes.every((p) => p.distanceToPoint(hit.point) >= 0) && (this.pickFilter?.(hit) ?? true)) return hit;
    }
    return null;
  }

  /**
   * Move the camera so the box fills the view, from the current direction (looking down at least a little),
   * animated.
   * @param {THREE.Box3} box @param {{animate?: boolean}} [opts]
   */
  fitBox(box, { animate = true } = {}) {
    const dir = this.camera.position.clone().sub(this.controls.target).normalize();
    if (dir.lengthSq() === 0) dir.set(1, 0.8, 1);
    // Look down at least this steeply: in a plant, neighbours stand between a level eye and the target.
    dir.y = Math.max(dir.y, MIN_FIT_ELEVATION);
    this.viewFrom(dir.normalize(), box, { animate });
  }

  /**
   * Look at a box from a direction (a standard view: `dir` points from the box to the eye, e.g. (0, 1, 0) is
   * the top view), framing it; without a box, about the target at the current distance.
   * @param {THREE.Vector3} dir @param {THREE.Box3|null} [box] @param {{animate?: boolean}} [opts]
   */
  viewFrom(dir, box = null, { animate = true } = {}) {
    const d = dir.clone().normalize();
    if (box && !box.isEmpty()) {
      const sphere = box.getBoundingSphere(new THREE.Sphere());
      const fov = THREE.MathUtils.degToRad(this.perspective.fov);
      const fovX = 2 * Math.atan(Math.tan(fov / 2) * this.perspective.aspect);
      const dist = (FIT_MARGIN * Math.max(sphere.radius, 0.1)) / Math.sin(Math.min(fov, fovX) / 2);
      this.#clipRange(dist, sphere.radius);
      const height = 2 * dist * Math.tan(fov / 2); // what the perspective view sees there; the orthographic's too
      this.flyTo(sphere.center.clone().addScaledVector(d, dist), sphere.center, animate ? FLY_MS : 0, height);
    } else {
      const t = this.controls.target;
      this.flyTo(t.clone().addScaledVector(d, this.controls.distance), t.clone(), animate ? FLY_MS : 0);
    }
  }

  /** Near and far planes for looking at a sphere of `radius` from `dist`. @param {number} dist @param {number} radius */
  #clipRange(dist, radius) {
    for (const c of [this.perspective, this.orthographic]) {
      c.near = Math.max(dist / 1000, 0.01);
      c.far = dist * 100 + radius * 10;
      c.updateProjectionMatrix();
    }
  }

  /**
   * Fly to a pose: the eye at `position` looking at `target` (which becomes the orbit pivot), turning
   * smoothly; a jump when `ms` is 0 or the user prefers reduced motion. An orthographic view ends `height`
   * high (if given; else it keeps its height).
   * @param {THREE.Vector3} position @param {THREE.Vector3} target @param {number} [ms] @param {number} [height]
   */
  flyTo(position, target, ms = FLY_MS, height) {
    const cam = this.camera;
    const z0 = this.orthographic.zoom;
    const z1 = height ? (this.orthographic.top - this.orthographic.bottom) / height : z0;
    const p0 = cam.position.clone();
    const t0 = this.controls.target.clone();
    const q0 = cam.quaternion.clone();
    const right = _right.set(1, 0, 0).applyQuaternion(q0);
    const q1 = orientationFor(_dir.subVectors(target, position), right, new THREE.Quaternion());
    const to = position.clone();
    const at = target.clone();
    this.stopFlight();
    this.dispatchEvent(new CustomEvent('flight'));
    let t = ms > 0 && !reducedMotion() ? 0 : 1;
    const step = (/** @type {number} */ dt) => {
      t = Math.min(1, t + (dt * 1000) / Math.max(ms, 1));
      const k = t * t * (3 - 2 * t);
      const c = this.camera;
      c.position.lerpVectors(p0, to, k);
      this.controls.target.lerpVectors(t0, at, k);
      c.quaternion.slerpQuaternions(q0, q1, k);
      c.updateMatrixWorld();
      if (c === this.orthographic && z1 !== z0) {
        c.zoom = z0 * (z1 / z0) ** k;
        c.updateProjectionMatrix();
      }
      this.controls.dispatchEvent({ type: 'change' });
      if (t >= 1) this.stopFlight();
      return true;
    };
    this.#flight = step;
    this.tickers.push(step);
    if (t >= 1) {
      step(0);
      this.invalidate();
    }
  }

  /** Whether a camera flight is under way. */
  get flying() {
    return this.#flight !== null;
  }

  /** End the camera flight under way, where it is (the user took the controls). */
  stopFlight() {
    const i = this.#flight ? this.tickers.indexOf(this.#flight) : -1;
    if (i >= 0) this.tickers.splice(i, 1);
    this.#flight = null;
  }

  /** @type {((dt: number) => boolean)|null} the flight's ticker */
  #flight = null;
}
