// Filled, hatched caps where section planes cut solids open (three.js's stencil capping, once per plane).
// For each plane, the elements of every opaque merged or instanced batch that the plane runs through are drawn once more
// into the stencil buffer only, cut by that plane alone, each face inverting the stencil: along a view ray, a closed solid cut open leaves an odd number
// of faces behind the plane. Then a quad on the plane, cut by the other planes, is drawn where the stencil is
// set, and the stencil is cleared for the next plane. The cost is one extra pass per plane of the drawn
// triangles of the elements it cuts, with no colour written (hidden and culled elements stay out).
// Only closed meshes get correct caps: an open one (a single face, a shell with holes) gives odd counts where
// there is nothing to fill, or none where there is.
import * as THREE from 'three';
import { InstancedBatch } from '../instanced_batch.js';
import { sectionPlaneForView, sectionStencilMaterial } from '../shading.js';

/** The caps' colour and their hatching's (sRGB, as read back from the canvas). */
export const CAP_COLOR = 0xc8b68e;
export const HATCH_COLOR = 0x5c5346;
// Hatching: a diagonal line this many device pixels wide every this many, on screen (a plan's poché).
const HATCH_PERIOD_PX = 9;
const HATCH_WIDTH_PX = 2;
// Drawn after the model (render order 0), each plane's stencil pass before its cap.
const FIRST_ORDER = 1000;

const capVertexShader = /* glsl */ `
#include <clipping_planes_pars_vertex>
void main() {
  vec4 mvPosition = modelViewMatrix * vec4( position, 1.0 );
  gl_Position = projectionMatrix * mvPosition;
  #include <clipping_planes_vertex>
}
`;
const capFragmentShader = /* glsl */ `
uniform vec3 capColor;
uniform vec3 hatchColor;
#include <clipping_planes_pars_fragment>
void main() {
  #include <clipping_planes_fragment>
  bool line = mod( gl_FragCoord.x + gl_FragCoord.y, ${HATCH_PERIOD_PX.toFixed(1)} ) < ${HATCH_WIDTH_PX.toFixed(1)};
  gl_FragColor = vec4( line ? hatchColor : capColor, 1.0 );
  #include <colorspace_fragment>
}
`;

const _centre = new THREE.Vector3();
const _size = new THREE.Vector3();
const _z = new THREE.Vector3(0, 0, 1);
const _box = new THREE.Box3();
// The batch's vertex attributes a stencil pass reads (shared, not copied).
const SHARED = ['position', 'normal', 'slot'];
// A stencil pass's first index buffer holds this many indices; it grows (doubling) as planes cut more.
const FIRST_INDEX = 3 * 4096;

export class SectionCaps {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {import('./section.js').SectionTool} section
   */
  constructor(viewer, section) {
    this.viewer = viewer;
    this.enabled = true;
    /** @type {import('../batcher.js').ElementBatches|null} */
    this.batches = null;
    /** the model's box (model coordinates), which the caps cover */
    this.box = new THREE.Box3();
    /** @type {THREE.Mesh[]} the stencil passes, children of the batches they draw */
    this.stencils = [];
    this.caps = new THREE.Group();
    this.caps.name = 'section-caps';
    viewer.scene.add(this.caps);
    this.quad = new THREE.PlaneGeometry(1, 1);
    /** WEBGL_clip_cull_distance, when there: the stencil passes clip as geometry, else per fragment */
    this.clipDistance = viewer.renderer.getContext().getExtension('WEBGL_clip_cull_distance');
    /** what the passes and caps were made for: planes are moved in place, so only their count matters */
    this.built = '';
    /** counts the models capped, so a new one with as many batches is rebuilt too */
    this.batchesId = 0;
    section.addEventListener('change', () => this.#rebuild());
    this.hook = () => this.#update();
  }

  /** The model to cap (a new scene's batches). @param {import('../batcher.js').ElementBatches|null} batches */
  use(batches) {
    this.batches = batches;
    this.batchesId += 1;
    // After the batches' own hook (TwinView's updateView): the stencil passes draw what the batches draw.
    const hooks = this.viewer.prerender;
    if (hooks.includes(this.hook)) hooks.splice(hooks.indexOf(this.hook), 1);
    hooks.push(this.hook);
    this.box.makeEmpty();
    for (const e of batches?.elements.values() ?? []) this.box.union(e.box);
    this.#rebuild();
  }

  /** Caps on or off. @param {boolean} on */
  setEnabled(on) {
    this.enabled = on;
    this.#rebuild();
  }

  /** Passes and caps for the planes there are now. Moving or flipping a plane changes it in place (the materials
   * hold the same Plane objects), so a drag makes nothing new: disposing a material whose program nothing else
   * uses deletes the program, which the next frame would compile again. */
  #rebuild() {
    const key = `${this.enabled}:${this.viewer.clippingPlanes.length}:${this.batches?.batches.length ?? 0}:${this.batchesId}`;
    if (key === this.built) return this.viewer.invalidate();
    this.built = key;
    for (const m of this.stencils) {
      m.removeFromParent();
      /** @type {THREE.Material} */ (m.material).dispose();
      if (/** @type {any} */ (m.geometry).isInstancedBufferGeometry) InstancedBatch.releaseStencil(m.geometry);
      else release(m.geometry);
    }
    for (const c of [...this.caps.children]) {
      c.removeFromParent();
      /** @type {THREE.Material} */ (/** @type {THREE.Mesh} */ (c).material).dispose();
    }
    this.stencils = [];
    const planes = this.viewer.clippingPlanes;
    const solids = (this.batches?.batches ?? []).filter((b) => (/** @type {any} */ (b).isMergedBatch
      || /** @type {any} */ (b).isInstancedBatch) && !b.material.transparent);
    if (!this.enabled || !solids.length) return this.viewer.invalidate();
    planes.forEach((plane, i) => {
      for (const b of /** @type {(import('../merged_batch.js').MergedBatch|InstancedBatch)[]} */ (solids)) {
        const geometry = b instanceof InstancedBatch ? b.stencilGeometry()
          : new THREE.BufferGeometry().setIndex(new THREE.BufferAttribute(new Uint32Array(FIRST_INDEX), 1));
        const material = sectionStencilMaterial(b.material, plane, Boolean(this.clipDistance));
        const m = new THREE.Mesh(geometry, material);
        const clip = this.clipDistance;
        if (clip) { // the extension's clip distance is off until enabled, around this draw only
          m.onBeforeRender = (r, _s, camera) => {
            sectionPlaneForView(material, plane, camera);
            r.getContext().enable(clip.CLIP_DISTANCE0_WEBGL);
          };
          m.onAfterRender = (r) => r.getContext().disable(clip.CLIP_DISTANCE0_WEBGL);
        }
        m.userData.plane = plane;
        m.renderOrder = FIRST_ORDER + 2 * i;
        m.frustumCulled = false;
        m.raycast = () => {}; // picking goes to the batch itself
        b.add(m);
        this.stencils.push(m);
      }
      const cap = new THREE.Mesh(this.quad, new THREE.ShaderMaterial({
        name: 'section-cap',
        uniforms: { capColor: { value: new THREE.Color(CAP_COLOR) }, hatchColor: { value: new THREE.Color(HATCH_COLOR) } },
        vertexShader: capVertexShader,
        fragmentShader: capFragmentShader,
        side: THREE.DoubleSide,
        clipping: true,
        clippingPlanes: planes.filter((_, j) => j !== i),
        stencilWrite: true,
        stencilRef: 0,
        stencilFunc: THREE.NotEqualStencilFunc,
        stencilFail: THREE.ReplaceStencilOp,
        stencilZFail: THREE.ReplaceStencilOp,
        stencilZPass: THREE.ReplaceStencilOp,
      }));
      cap.renderOrder = FIRST_ORDER + 2 * i + 1;
      cap.frustumCulled = false;
      cap.userData.plane = plane;
      // Where the other planes cut the cap away, the stencil is left set: clear it for the next plane.
      cap.onAfterRender = (renderer) => renderer.clearStencil();
      this.caps.add(cap);
    });
    this.viewer.invalidate();
  }

  /** Before each render, after the batches chose what to draw: each stencil pass's triangles, each cap on its plane. */
  #update() {
    if (!this.caps.children.length) return;
    for (const m of this.stencils) this.#cutBy(m);
    const box = _box.copy(this.box).applyMatrix4(this.viewer.world.matrixWorld);
    const size = box.getSize(_size).length() * 2 || 1;
    box.getCenter(_centre);
    for (const cap of this.caps.children) {
      const plane = /** @type {THREE.Plane} */ (cap.userData.plane);
      plane.projectPoint(_centre, cap.position);
      cap.quaternion.setFromUnitVectors(_z, plane.normal);
      cap.scale.set(size, size, 1);
    }
  }

  /**
   * A stencil pass draws its batch's vertices and the drawn triangles of the elements its plane cuts.
   * @param {THREE.Mesh} m
   */
  #cutBy(m) {
    if (m.parent instanceof InstancedBatch) {
      m.visible = m.parent.crossing(m.userData.plane, /** @type {THREE.InstancedBufferGeometry} */ (m.geometry)) > 0;
      return;
    }
    const batch = /** @type {import('../merged_batch.js').MergedBatch} */ (m.parent);
    let g = m.geometry;
    const own = /** @type {THREE.BufferAttribute} */ (g.index);
    const { index, count } = batch.crossing(m.userData.plane, /** @type {Uint32Array} */ (own.array));
    if (index !== own.array) { // grown: a new geometry, and the old one's index buffer freed
      release(g);
      g = m.geometry = new THREE.BufferGeometry().setIndex(new THREE.BufferAttribute(index, 1));
    }
    for (const name of SHARED) {
      const a = batch.geometry.getAttribute(name);
      if (g.getAttribute(name) !== a) g.setAttribute(name, a); // the batch re-made its buffers (levels of detail)
    }
    const at = /** @type {THREE.BufferAttribute} */ (g.index);
    at.clearUpdateRanges();
    at.addUpdateRange(0, Math.max(count, 1));
    at.needsUpdate = true;
    g.setDrawRange(0, count);
    m.visible = count > 0;
  }
}

/**
 * Free a stencil pass's geometry on the GPU without freeing the batch's attributes it shares.
 * @param {THREE.BufferGeometry} g
 */
function release(g) {
  for (const name of SHARED) g.deleteAttribute(name);
  g.dispose();
}
