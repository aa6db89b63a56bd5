// BCF-style viewpoints: what the author saw — camera, section planes, selected, hidden and coloured
// components — captured from the viewer and restored on opening a topic. Coordinates are the model's
// (the world group's frame), so a viewpoint made in AR tabletop still means the same place.
import * as THREE from 'three';

// How far ahead of a restored camera its orbit target is put when the topic does not say.
const TARGET_DISTANCE_M = 5;

/** @typedef {import('../protocol.js').Viewpoint} Viewpoint */

/** @param {number} x */
const round = (x) => Math.round(x * 1e4) / 1e4;
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
   *          section: import('../tools/section.js').SectionTool, select: (id: string|null) => void}} hooks
   */
  constructor(viewer, hooks) {
    this.viewer = viewer;
    this.hooks = hooks;
    /** Whether a restored viewpoint's colours and visibility currently override the live look. */
    this.overriding = false;
  }

  /** The current view as a viewpoint. @returns {Viewpoint} */
  capture() {
    const { camera, world, renderer } = this.viewer;
    const toModel = world.matrixWorld.clone().invert();
    /** @type {Map<string, string[]>} */
    const byColor = new Map();
    const hidden = [];
    for (const [id, v] of this.hooks.state.visuals) {
      if (typeof v.color === 'string') byColor.set(v.color, [...(byColor.get(v.color) ?? []), id]);
      if (v.visible === false) hidden.push(id);
    }
    const selected = this.hooks.twin()?.selected;
    return {
      guid: uuid(),
      camera: {
        position: arr(camera.getWorldPosition(new THREE.Vector3()).applyMatrix4(toModel)),
        direction: arr(camera.getWorldDirection(new THREE.Vector3()).transformDirection(toModel)),
        up: arr(new THREE.Vector3(0, 1, 0).applyQuaternion(camera.quaternion).transformDirection(toModel)),
        fov_deg: this.viewer.perspective.fov,
        // BCF's OrthogonalCamera: its ViewToWorldScale is the view's height.
        ...(this.viewer.projection === 'orthographic' ? { ortho_height: round(this.viewer.viewHeight()) } : {}),
      },
      // three keeps the side a plane's normal points to; BCF's direction points to the side cut away.
      clipping_planes: renderer.clippingPlanes.map((p) => {
        const m = p.clone().applyMatrix4(toModel);
        return { location: arr(m.coplanarPoint(new THREE.Vector3())), direction: arr(m.normal.clone().negate()) };
      }),
      selected: selected ? [selected] : [],
      hidden,
      default_visible: true,
      colored: [...byColor].map(([color, ids]) => ({ color, ids })),
    };
  }

  /**
   * Go to a viewpoint: fly the camera, cut with its planes, select, and show its colours and visibility
   * until `release()` (or the next live change of an element) brings the live look back.
   * @param {Viewpoint} vp @param {{animate?: boolean}} [opts]
   */
  restore(vp, { animate = true } = {}) {
    const { viewer } = this;
    const toWorld = viewer.world.matrixWorld;
    this.flyToCamera(vp.camera, animate ? undefined : 0);
    this.hooks.section.set(null);
    viewer.renderer.clippingPlanes = (vp.clipping_planes ?? []).map((c) => {
      const n = vec3(c.direction).negate();
      return new THREE.Plane().setFromNormalAndCoplanarPoint(n, vec3(c.location)).applyMatrix4(toWorld);
    });
    this.hooks.select(vp.selected?.[0] ?? null);
    this.#override(vp);
    viewer.invalidate();
  }

  /**
   * Move the camera to a viewpoint's camera (model coordinates), keeping the orbit target ahead of it; an
   * orthogonal camera (`ortho_height`) switches to the orthographic projection, that high.
   * @param {Viewpoint['camera']} cam @param {number} [ms] flight time; undefined = the viewer's default
   */
  flyToCamera(cam, ms) {
    const { viewer } = this;
    const toWorld = viewer.world.matrixWorld;
    const pos = vec3(cam.position).applyMatrix4(toWorld);
    const dir = vec3(cam.direction).transformDirection(toWorld);
    const persp = viewer.perspective;
    if (cam.fov_deg && cam.fov_deg !== persp.fov) {
      persp.fov = cam.fov_deg;
      persp.updateProjectionMatrix();
    }
    const height = typeof cam.ortho_height === 'number' && cam.ortho_height > 0 ? cam.ortho_height : undefined;
    viewer.setProjection(height ? 'orthographic' : 'perspective');
    viewer.flyTo(pos, pos.clone().addScaledVector(dir, TARGET_DISTANCE_M), ms, height);
  }

  /** Back to the live look: no viewpoint colours, visibility or planes. */
  release() {
    if (this.overriding) this.hooks.twin()?.applyAll();
    this.overriding = false;
    if (!this.hooks.section.active) this.viewer.renderer.clippingPlanes = [];
    this.viewer.invalidate();
  }

  /** @param {Viewpoint} vp */
  #override(vp) {
    const batches = this.hooks.twin()?.batches;
    if (!batches) return;
    this.hooks.twin()?.applyAll();
    const exceptions = new Set(vp.hidden ?? []);
    const shown = vp.default_visible !== false;
    if (!shown || exceptions.size) {
      for (const id of batches.elements.keys()) batches.setVisible(id, exceptions.has(id) ? !shown : shown);
    }
    const color = new THREE.Color();
    for (const group of vp.colored ?? []) {
      if (!/^#[0-9a-f]{6}$/i.test(group.color)) continue;
      for (const id of group.ids) batches.setColor(id, color.set(group.color));
    }
    this.overriding = true;
  }
}
