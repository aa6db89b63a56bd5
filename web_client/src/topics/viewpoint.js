// BCF-style viewpoints: what the author saw — camera (perspective or orthographic), section planes, selected,
// hidden, x-rayed, see-through and coloured components (visibility.js), measurements — captured from the viewer and
// restored on opening a topic, following a presenter or reaching a procedure step. Coordinates are the model's
// (the world group's frame), so a viewpoint made in AR tabletop still means the same place.
import * as THREE from 'three';
import { showNotice } from '../ui/notice.js';

// How far ahead of a restored camera its orbit target is put when the topic does not say.
const TARGET_DISTANCE_M = 5;
// Component ids a viewpoint may list when the server does not say (its welcome's limits.max_viewpoint_ids).
const DEFAULT_MAX_VIEWPOINT_IDS = 2000;

/** @typedef {import('../protocol.js').Viewpoint} Viewpoint */

/** @param {number} x */
export const round = (x) => Math.round(x * 1e4) / 1e4;
/** A vector as the protocol sends it (to 0.1 mm). @param {THREE.Vector3} v @returns {[number, number, number]} */
export const arr = (v) => [round(v.x), round(v.y), round(v.z)];
/** @param {import('../protocol.js').Vec3} v */
const vec3 = ([x, y, z]) => new THREE.Vector3(x, y, z);

/** A random UUID, also where `crypto.randomUUID` is missing (plain http on a LAN is not a secure context). */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class Viewpoints {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {{twin: () => (import('../twin_view.js').TwinView|null), state: import('../state.js').TwinState,
   *          section: import('../tools/section.js').SectionTool, measure: import('../tools/measure.js').MeasureTool,
   *          select: (id: string|null) => void, visibility: import('../visibility.js').Visibility,
   *          maxIds: () => (number|undefined)}} hooks
   *   maxIds: the component ids the server takes in one viewpoint
   */
  constructor(viewer, hooks) {
    this.viewer = viewer;
    this.hooks = hooks;
    /** The user's own visibility while a restored viewpoint's shows instead ("Back to live" gives it back). */
    this.own = /** @type {ReturnType<import('../visibility.js').Visibility['save']>|null} */ (null);
    // What the user changes on top of a viewpoint's is their own view from then on.
    hooks.visibility.addEventListener('change', (e) => {
      if (/** @type {CustomEvent<{byUser: boolean}>} */ (e).detail.byUser) this.own = null;
    });
    /** Whether the section shows a restored viewpoint's planes (then the live view drops them). */
    this.cutting = false;
  }

  /** Whether a restored viewpoint's colours and visibility currently override the user's own. */
  get overriding() {
    return this.own !== null;
  }

  /** The current view as a viewpoint (`withShown` false: camera, planes and measurements only). @returns {Viewpoint} */
  capture(withShown = true) {
    const { camera, world } = this.viewer;
    const toModel = world.matrixWorld.clone().invert();
    const selected = this.hooks.twin()?.selected;
    const shown = withShown ? this.shown(true, selected ? 1 : 0) : {};
    return {
      guid: uuid(),
      camera: {
        position: arr(camera.getWorldPosition(new THREE.Vector3()).applyMatrix4(toModel)),
        direction: arr(camera.getWorldDirection(new THREE.Vector3()).transformDirection(toModel)),
        up: arr(camera.up),
        ...(/** @type {THREE.OrthographicCamera} */ (camera).isOrthographicCamera
          ? { ortho_height: round((2 * this.viewer.orthoHalfHeight) / /** @type {THREE.OrthographicCamera} */ (camera).zoom / world.matrixWorld.getMaxScaleOnAxis()) }
          : { fov_deg: /** @type {THREE.PerspectiveCamera} */ (camera).fov }),
      },
      // three keeps the side a plane's normal points to; BCF's direction points to the side cut away.
      clipping_planes: this.hooks.section.modelPlanes().map((p) => (
        { location: arr(p.coplanarPoint(new THREE.Vector3())), direction: arr(p.normal.clone().negate()) })),
      measurements: this.hooks.measure.toViewpoint(),
      selected: selected ? [selected] : [],
      ...shown,
    };
  }

  /**
   * What is shown, as viewpoint fields; {} (and a notice saying so) when it takes more ids than a viewpoint holds.
   * @param {boolean} withLive also what the live rules colour and hide now (a topic's record of the moment; a
   *   presenter's followers see the live look themselves) @param {number} [used] ids the viewpoint lists already
   * @returns {Partial<Viewpoint>}
   */
  shown(withLive, used = 0) {
    /** @type {Map<string, string>} */
    const liveColors = new Map();
    /** @type {Set<string>} */
    const liveHidden = new Set();
    for (const [id, v] of withLive ? this.hooks.state.visuals : []) {
      if (typeof v.color === 'string') liveColors.set(id, v.color);
      if (v.visible === false) liveHidden.add(id);
    }
    const budget = (this.hooks.maxIds() ?? DEFAULT_MAX_VIEWPOINT_IDS) - used;
    const shown = this.hooks.visibility.capture(budget, liveColors, liveHidden);
    if (shown) return shown;
    showNotice('warning', 'The view is shared without what is hidden',
      `What is hidden, x-rayed or coloured here takes more than ${budget} element ids. Hide or isolate whole storeys or classes instead.`);
    return {};
  }

  /**
   * Go to a viewpoint: fly the camera, cut with its planes, select, and show its colours and visibility
   * until `release()` (or the next live change of an element) brings the live look back.
   * @param {Viewpoint} vp @param {{animate?: boolean}} [opts]
   */
  restore(vp, { animate = true } = {}) {
    const { viewer } = this;
    this.flyToCamera(vp.camera, animate ? undefined : 0);
    this.hooks.section.restore((vp.clipping_planes ?? []).filter((c) => vec3(c.direction).lengthSq() > 0)
      .map((c) => new THREE.Plane().setFromNormalAndCoplanarPoint(vec3(c.direction).negate().normalize(), vec3(c.location))));
    this.hooks.measure.showPinned(vp.measurements ?? []);
    this.cutting = true;
    this.hooks.select(vp.selected?.[0] ?? null);
    this.show(vp);
    viewer.invalidate();
  }

  /**
   * Show a viewpoint's visibility, x-ray, transparency and colours instead of the user's own, until `release()`.
   * @param {Viewpoint} vp
   */
  show(vp) {
    this.own ??= this.hooks.visibility.save();
    this.hooks.visibility.restore(vp);
  }

  /**
   * Move the camera to a viewpoint's camera (model coordinates), keeping the orbit target ahead of it.
   * @param {Viewpoint['camera']} cam @param {number} [ms] flight time; undefined = the viewer's default
   */
  flyToCamera(cam, ms) {
    const { viewer } = this;
    const toWorld = viewer.world.matrixWorld;
    const pos = vec3(cam.position).applyMatrix4(toWorld);
    const dir = vec3(cam.direction).transformDirection(toWorld);
    // Spend what is left of the user's last drag (damping) now, so it cannot turn the camera off the viewpoint.
    const damping = viewer.controls.enableDamping;
    viewer.controls.enableDamping = false;
    viewer.controls.update();
    viewer.controls.enableDamping = damping;
    if (cam.ortho_height) {
      viewer.setProjection('orthographic', (cam.ortho_height * toWorld.getMaxScaleOnAxis()) / 2);
    } else {
      viewer.setProjection('perspective');
      if (cam.fov_deg && cam.fov_deg !== viewer.perspective.fov) {
        viewer.perspective.fov = cam.fov_deg;
        viewer.perspective.updateProjectionMatrix();
      }
    }
    viewer.flyTo(pos, pos.clone().addScaledVector(dir, TARGET_DISTANCE_M), ms);
  }

  /** Back to the live look and the user's own visibility: no viewpoint colours, visibility, planes or measurements. */
  release() {
    if (this.own) this.hooks.visibility.load(this.own);
    this.own = null;
    if (this.cutting) this.hooks.section.clear();
    this.cutting = false;
    this.hooks.measure.showPinned([]);
    this.viewer.invalidate();
  }
}
