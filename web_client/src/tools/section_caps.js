// Filled, hatched caps where section planes cut solids open (three.js's stencil capping, once per plane).
// For each plane, every opaque merged batch is drawn once more into the stencil buffer only, cut by that
// plane alone, each face inverting the stencil: along a view ray, a closed solid cut open leaves an odd number
// of faces behind the plane. Then a quad on the plane, cut by the other planes, is drawn where the stencil is
// set, and the stencil is cleared for the next plane. The cost is one extra pass of the batch's drawn
// triangles per plane, with no colour written (hidden and culled elements stay out: the batch's index buffer).
// Only closed meshes get correct caps: an open one (a single face, a shell with holes) gives odd counts where
// there is nothing to fill, or none where there is.
import * as THREE from 'three';
import { sectionStencilMaterial } from '../shading.js';

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
    section.addEventListener('change', () => this.#rebuild());
    viewer.prerender.push(() => this.#place());
  }

  /** The model to cap (a new scene's batches). @param {import('../batcher.js').ElementBatches|null} batches */
  use(batches) {
    this.batches = batches;
    this.box.makeEmpty();
    for (const e of batches?.elements.values() ?? []) this.box.union(e.box);
    this.#rebuild();
  }

  /** Caps on or off. @param {boolean} on */
  setEnabled(on) {
    this.enabled = on;
    this.#rebuild();
  }

  /** Whether caps are drawn now. */
  get drawn() {
    return this.caps.children.length > 0;
  }

  #rebuild() {
    for (const m of this.stencils) {
      m.removeFromParent();
      /** @type {THREE.Material} */ (m.material).dispose();
    }
    for (const c of [...this.caps.children]) {
      c.removeFromParent();
      /** @type {THREE.Material} */ (/** @type {THREE.Mesh} */ (c).material).dispose();
    }
    this.stencils = [];
    const planes = this.viewer.clippingPlanes;
    const solids = (this.batches?.batches ?? []).filter((b) => /** @type {any} */ (b).isMergedBatch && !b.material.transparent);
    if (!this.enabled || !solids.length) return this.viewer.invalidate();
    planes.forEach((plane, i) => {
      for (const b of /** @type {import('../merged_batch.js').MergedBatch[]} */ (solids)) {
        const m = new THREE.Mesh(b.geometry, sectionStencilMaterial(b.material, plane));
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

  /** Each cap: a quad on its plane, over the whole model (world coordinates, as the planes are). */
  #place() {
    if (!this.caps.children.length) return;
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
}
