// The 3D view: renderer, camera, orbit navigation, lights, render-on-demand, picking and fly-to.
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { createContext, pixelRatio, withKnownParameters } from './gl_context.js';
import { warmUpShaders } from './merged_batch.js';
import { LIGHTS } from './shading.js';

export const BACKGROUND = 0x1d2127;
// A fly-to lasts this long: long enough to follow, short enough not to annoy.
const FLY_MS = 600;
// Fitting leaves this much room around the box, so the element is seen in its surroundings.
const FIT_MARGIN = 1.4;
// The least upward component of the view direction after a fit (0.7 ≈ 35° above the horizon).
const MIN_FIT_ELEVATION = 0.7;
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
    /** the perspective camera (the usual one) */
    this.perspective = new THREE.PerspectiveCamera(50, 1, 0.05, 5000);
    this.perspective.position.set(10, 8, 10);
    /** an orthographic camera for plan views; `orthoHalfHeight` is half the height it shows at zoom 1 */
    this.orthographic = new THREE.OrthographicCamera(-1, 1, 1, -1, 0.05, 5000);
    this.orthoHalfHeight = 10;
    /**
     * The camera in use (setProjection).
     * @type {THREE.PerspectiveCamera|THREE.OrthographicCamera}
     */
    this.camera = this.perspective;
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

    /** @type {OrbitControls<THREE.PerspectiveCamera|THREE.OrthographicCamera>} */
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.controls.addEventListener('change', () => this.invalidate());

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

  #resize() {
    const w = this.container.clientWidth || 1;
    const h = this.container.clientHeight || 1;
    if (this.renderer.xr.isPresenting) return;
    // The pixel ratio with the size: setPixelRatio would resize the drawing buffer once more.
    this.renderer.setDrawingBufferSize(w, h, pixelRatio());
    this.perspective.aspect = w / h;
    this.perspective.updateProjectionMatrix();
    this.#frameOrthographic();
    this.invalidate();
  }

  #frameOrthographic() {
    const o = this.orthographic;
    const half = this.orthoHalfHeight;
    const aspect = this.perspective.aspect;
    Object.assign(o, { left: -half * aspect, right: half * aspect, top: half, bottom: -half });
    o.updateProjectionMatrix();
  }

  /**
   * Switch between the perspective and the orthographic camera, keeping the pose; the orthographic one shows
   * what the perspective one showed at the orbit target's distance (or `halfHeight`, when given).
   * @param {'perspective'|'orthographic'} kind @param {number} [halfHeight]
   */
  setProjection(kind, halfHeight) {
    const next = kind === 'orthographic' ? this.orthographic : this.perspective;
    const from = this.camera;
    if (next === this.orthographic) {
      const dist = from.position.distanceTo(this.controls.target);
      this.orthoHalfHeight = halfHeight ?? dist * Math.tan(THREE.MathUtils.degToRad(this.perspective.fov) / 2);
      next.zoom = 1;
      next.near = this.perspective.near;
      next.far = this.perspective.far;
      this.#frameOrthographic();
    }
    if (next !== from) {
      next.position.copy(from.position);
      next.quaternion.copy(from.quaternion);
      next.up.copy(from.up);
      this.camera = next;
      this.controls.object = next;
      this.dispatchEvent(new CustomEvent('projection', { detail: kind }));
    }
    this.invalidate();
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
   * Move the camera so the box fills the view, animated.
   * @param {THREE.Box3} box @param {{animate?: boolean}} [opts]
   */
  fitBox(box, { animate = true } = {}) {
    if (box.isEmpty()) return;
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const fov = THREE.MathUtils.degToRad(this.perspective.fov);
    const dist = (FIT_MARGIN * Math.max(sphere.radius, 0.1)) / Math.sin(Math.min(fov, fov * this.perspective.aspect) / 2);
    const dir = this.camera.position.clone().sub(this.controls.target).normalize();
    if (dir.lengthSq() === 0) dir.set(1, 0.8, 1);
    // Look down at least this steeply: in a plant, neighbours stand between a level eye and the target.
    dir.y = Math.max(dir.y, MIN_FIT_ELEVATION);
    dir.normalize();
    const toPos = sphere.center.clone().addScaledVector(dir, dist);
    for (const camera of [this.perspective, this.orthographic]) {
      camera.near = Math.max(dist / 1000, 0.01);
      camera.far = dist * 100 + sphere.radius * 10;
    }
    this.perspective.updateProjectionMatrix();
    this.orthographic.zoom = 1;
    this.orthoHalfHeight = FIT_MARGIN * Math.max(sphere.radius, 0.1);
    this.#frameOrthographic();
    this.flyTo(toPos, sphere.center, animate ? FLY_MS : 0);
  }

  /**
   * @param {THREE.Vector3} position @param {THREE.Vector3} target @param {number} ms
   */
  flyTo(position, target, ms = FLY_MS) {
    const p0 = this.camera.position.clone();
    const t0 = this.controls.target.clone();
    let t = ms > 0 ? 0 : 1;
    const step = (/** @type {number} */ dt) => {
      t = Math.min(1, t + (dt * 1000) / Math.max(ms, 1));
      const k = t * t * (3 - 2 * t);
      this.camera.position.lerpVectors(p0, position, k);
      this.controls.target.lerpVectors(t0, target, k);
      this.camera.lookAt(this.controls.target);
      if (t >= 1) this.tickers.splice(this.tickers.indexOf(step), 1);
      return true;
    };
    if (t >= 1) {
      this.camera.position.copy(position);
      this.controls.target.copy(target);
      this.camera.lookAt(target);
      this.invalidate();
    } else {
      this.tickers.push(step);
    }
  }
}
