// One instanced draw call for the elements that share one mesh (xeokit's "instancing for reused geometry"):
// the mesh's vertices and index are uploaded once, and each element is an instance whose slot the vertex
// shader reads from an instanced attribute. Per element the batch keeps what a MergedBatch keeps, in the same
// float texture layout (shading.js, ELEMENT_TEXELS): colour, its placement (base x move, as the 4 columns of
// the "move"), transparency; so the same cheap Lambert program draws both. All instanced batches of a model
// share one such texture and one material per glTF material (InstancedLooks): a batch costs its mesh, a draw
// call and a few objects, and memory grows with the unique meshes plus a few texels per element, not with the
// element count x the mesh. Which elements are drawn is the list of slots in the instanced attribute, rebuilt
// only when visibility, transparency, frustum culling, a level of detail or the frame budget changes; coarser levels of the mesh
// (sharing its vertices) are child meshes with slot lists of their own, and see-through elements are drawn by a
// child mesh (`see`) after the opaque pass.
import * as THREE from 'three';
import { applyCut, NOT_DRAWN } from './frame_budget.js';
import { levelFor, markSeeThrough, markVisible, projectedPx } from './merged_batch.js';
import { cheapMaterial, ELEMENT_TEXELS as TEXELS } from './shading.js';

const TEXTURE_WIDTH = 2048;
const MOVED = 2; // colour texel's alpha: the vertex shader applies the placement columns
const _m = new THREE.Matrix4();
const _inv = new THREE.Matrix4();
const _n = new THREE.Matrix3();
const _ray = new THREE.Ray();
const _local = new THREE.Ray();
const _frustum = new THREE.Frustum();
const _plane = new THREE.Plane();
const _a = new THREE.Vector3();
const _b = new THREE.Vector3();
const _c = new THREE.Vector3();
const _p = new THREE.Vector3();
const _v = new THREE.Vector3();

/**
 * @typedef {import('./gltf_reader.js').MeshData} MeshData
 * @typedef {{matrix: THREE.Matrix4, color: THREE.Color}} InstanceItem an element's placement and colour
 */

/**
 * What the instanced batches of one model share: the per-element texture (each batch a range of its slots) and,
 * per glTF material, the opaque and see-through materials that read it.
 */
export class InstancedLooks {
  /** @param {number} slots elements in all the batches */
  constructor(slots) {
    const rows = Math.ceil((slots * TEXELS) / TEXTURE_WIDTH) || 1;
    this.data = new Float32Array(TEXTURE_WIDTH * rows * 4);
    this.texture = new THREE.DataTexture(this.data, TEXTURE_WIDTH, rows, THREE.RGBAFormat, THREE.FloatType);
    /** @type {Map<THREE.Material, [import('./shading.js').CheapMaterial, import('./shading.js').CheapMaterial]>} */
    this.materials = new Map();
  }

  /** The opaque and see-through materials for a glTF material, made on first use. @param {THREE.Material} source */
  materialsFor(source) {
    let out = this.materials.get(source);
    if (!out) {
      const see = Object.assign(source.clone(), { transparent: true, depthWrite: false });
      out = [cheapMaterial(source, this.texture), cheapMaterial(see, this.texture)];
      for (const m of out) m.color.set(0xffffff); // colour lives per element
      // Edges (edges.js) are drawn on the faces: the faces step back a little in depth, as a MergedBatch's do.
      if (!out[0].polygonOffset) Object.assign(out[0], { polygonOffset: true, polygonOffsetFactor: 1, polygonOffsetUnits: 1 });
      this.materials.set(source, out);
    }
    return out;
  }

  dispose() {
    this.texture.dispose();
    for (const pair of this.materials.values()) for (const m of pair) m.dispose();
  }
}

/** @extends {THREE.Mesh<THREE.InstancedBufferGeometry, import('./shading.js').CheapMaterial>} */
export class InstancedBatch extends THREE.Mesh {
  /**
   * @param {InstancedLooks} looks the texture and materials it shares with the model's other instanced batches
   * @param {number} first its first slot in that texture
   * @param {THREE.Material} source the glTF material (its colour moves per element)
   * @param {MeshData} data the shared mesh, in the elements' own frame
   * @param {InstanceItem[]} items one per element slot
   * @param {{color: boolean}} layout whether the material reads vertex colours
   */
  constructor(looks, first, source, data, items, layout) {
    const n = items.length;
    const [material, seeMaterial] = looks.materialsFor(source);
    super(meshGeometry(data, layout, n), material);
    this.isInstancedBatch = true;
    this.frustumCulled = false; // culled per element in chooseView
    this.slots = n;
    this.first = first;
    this.data = looks.data;
    this.texture = looks.texture;
    /** the dequantisation factor of the shared positions, folded into each placement */
    this.positionScale = data.scale;
    this.localBox = data.box;
    this.localSphere = data.sphere;
    /** the mesh's triangles, for picking and counting */
    this.meshTriangles = data.index.length / 3;
    /** @type {{triangles: number, mesh: THREE.Mesh<THREE.InstancedBufferGeometry>}[]} levels of detail, finest (this) first */
    this.levels = [{ triangles: this.meshTriangles, mesh: this }];
    this.meshData = data;
    /** @type {THREE.Matrix4[]} per slot: the element's placement as loaded */
    this.bases = items.map((it) => it.matrix);
    /** @type {THREE.Matrix4[]} per slot: the placement drawn (the base itself until a rule moves it) */
    this.placements = [...this.bases];
    this.spheres = items.map((it) => data.sphere.clone().applyMatrix4(it.matrix));
    this.visible_ = new Uint8Array(n).fill(1);
    this.translucent_ = new Uint8Array(n);
    this.translucentCount = 0;
    /** per slot: the level drawn, as in a MergedBatch (255 = not drawn: hidden, out of view or over the budget) */
    this.drawn = new Uint8Array(n).fill(NOT_DRAWN);
    /** per slot: the level the view wants (chooseView) and the instance's size on screen (px), as in a MergedBatch */
    this.wanted = new Uint8Array(n).fill(NOT_DRAWN);
    this.px = new Float32Array(n);
    this.dirty = true;
    this.triangles = 0;
    this.see = new THREE.Mesh(sharingGeometry(this.geometry, n), seeMaterial);
    this.see.name = 'see-through';
    this.see.frustumCulled = false;
    this.see.visible = false;
    this.see.raycast = () => {}; // picked through the batch (raycast below)
    this.add(this.see);
    for (let i = 0; i < n; i++) {
      this.setColorAt(i, items[i].color);
      this.#writePlacement(i);
    }
  }

  /** @param {number} i @param {THREE.Color} color */
  setColorAt(i, color) {
    const o = (this.first + i) * TEXELS * 4;
    this.data[o] = color.r;
    this.data[o + 1] = color.g;
    this.data[o + 2] = color.b;
    this.data[o + 3] = MOVED;
    this.texture.needsUpdate = true;
  }

  /** @param {number} i @param {THREE.Color} target */
  getColorAt(i, target) {
    const o = (this.first + i) * TEXELS * 4;
    return target.setRGB(this.data[o], this.data[o + 1], this.data[o + 2]);
  }

  /** @param {number} i @param {number} opacity 1: opaque (as loaded); below 1 drawn in the see-through pass */
  setOpacityAt(i, opacity) {
    this.data[((this.first + i) * TEXELS + 5) * 4] = 1 - opacity;
    this.texture.needsUpdate = true;
    markSeeThrough(this, i, opacity < 1);
  }

  /** @param {number} i @param {boolean} visible */
  setVisibleAt(i, visible) {
    markVisible(this, i, visible);
  }

  /** @param {number} i */
  getVisibleAt(i) {
    return Boolean(this.visible_[i]);
  }

  /** Place element `i` by `matrix` (its full placement in the batch's frame). @param {number} i @param {THREE.Matrix4} matrix */
  setMatrixAt(i, matrix) {
    if (this.placements[i] === this.bases[i]) this.placements[i] = matrix.clone();
    else this.placements[i].copy(matrix);
    this.spheres[i].copy(this.localSphere).applyMatrix4(matrix);
    this.#writePlacement(i);
    this.dirty = true; // its sphere moved: culling may change
  }

  /** @param {number} i @param {THREE.Matrix4} target the element's current placement */
  matrixOf(i, target) {
    return target.copy(this.placements[i]);
  }

  /** @param {number} i @param {THREE.Box3} target world box of element i as placed */
  boxAt(i, target) {
    return target.copy(this.localBox).applyMatrix4(this.placements[i]);
  }

  /** The placement with the positions' dequantisation factor, as the shader applies it. @param {number} i */
  #writePlacement(i) {
    _m.copy(this.placements[i]);
    if (this.positionScale !== 1) _m.scale(_v.setScalar(this.positionScale));
    this.data.set(_m.elements, ((this.first + i) * TEXELS + 1) * 4);
    this.texture.needsUpdate = true;
  }

  /**
   * Add coarser levels of the mesh (finest first): each is drawn by a child mesh for the instances that have it.
   * A level that does not share the mesh's vertices, or their quantisation, ends the list.
   * @param {MeshData[]} levels
   */
  addLevels(levels) {
    const base = this.meshData;
    for (const data of levels) {
      if (data.position !== base.position || data.scale !== base.scale) break;
      const g = sharingGeometry(this.geometry, this.slots);
      g.setIndex(new THREE.BufferAttribute(data.index instanceof Uint8Array ? Uint16Array.from(data.index) : data.index, 1));
      const mesh = new THREE.Mesh(g, this.material);
      mesh.name = `level ${this.levels.length}`;
      mesh.frustumCulled = false;
      mesh.visible = false;
      mesh.raycast = () => {}; // picked through the batch, at full detail
      this.add(mesh);
      this.levels.push({ triangles: data.index.length / 3, mesh });
    }
    this.dirty = true;
  }

  /**
   * What this view wants (`wanted`, `px`), as MergedBatch.chooseView: shown instances whose bounding sphere is in
   * the frustum (all shown ones when `cull` is false, as in XR), each at the coarsest level that keeps
   * `trianglesPerPixel` triangles per pixel of its size on screen. Then `draw` it.
   * @param {THREE.Camera} camera @param {number} heightPx @param {number} trianglesPerPixel @param {boolean} cull
   */
  chooseView(camera, heightPx, trianglesPerPixel, cull) {
    if (cull) {
      _m.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse).multiply(this.matrixWorld);
      _frustum.setFromProjectionMatrix(_m, camera.coordinateSystem);
    }
    const eye = _v.setFromMatrixPosition(camera.matrixWorld).applyMatrix4(_inv.copy(this.matrixWorld).invert());
    const focalPx = (camera.projectionMatrix.elements[5] || 1) * heightPx * 0.5;
    const ortho = Boolean(/** @type {any} */ (camera).isOrthographicCamera);
    const { wanted, px } = this;
    for (let i = 0; i < this.slots; i++) {
      const s = this.spheres[i];
      if (this.visible_[i] && (!cull || _frustum.intersectsSphere(s))) {
        px[i] = projectedPx(s, eye, focalPx, ortho);
        wanted[i] = levelFor(px[i], trianglesPerPixel, this.levels);
      } else wanted[i] = NOT_DRAWN;
    }
  }

  /** @returns {{triangles: number}[]} the levels of every slot (one mesh), finest first */
  levelsAt() {
    return this.levels;
  }

  /** Draw what `chooseView` chose, under the frame budget's `cut` (frame_budget.js). @param {import('./frame_budget.js').Cut} cut */
  draw(cut) {
    if (applyCut(this, cut) || this.dirty) this.#rebuildSlots();
    this.dirty = false;
  }

  #rebuildSlots() {
    const lists = this.levels.map((l) => slotAttribute(l.mesh.geometry).array);
    const counts = this.levels.map(() => 0);
    const see = slotAttribute(this.see.geometry).array;
    let seeAt = 0;
    for (let i = 0; i < this.slots; i++) {
      const level = this.drawn[i];
      if (level === NOT_DRAWN) continue;
      if (this.translucent_[i]) see[seeAt++] = this.first + i; // see-through: at full detail
      else lists[level][counts[level]++] = this.first + i;
    }
    this.triangles = seeAt * this.meshTriangles;
    this.levels.forEach(({ mesh, triangles }, k) => {
      use(mesh.geometry, counts[k]);
      if (k) mesh.visible = counts[k] > 0; // the batch itself stays visible: it carries the other passes
      this.triangles += counts[k] * triangles;
    });
    use(this.see.geometry, seeAt);
    this.see.visible = seeAt > 0;
  }

  /**
   * Ray against each shown instance: its bounding sphere, then the shared mesh's triangles in its own frame;
   * hits carry batchId = slot, and the face normal in the batch's frame (as a MergedBatch gives it).
   * @param {THREE.Raycaster} raycaster @param {THREE.Intersection[]} intersects
   */
  raycast(raycaster, intersects) {
    const ray = _ray.copy(raycaster.ray).applyMatrix4(_inv.copy(this.matrixWorld).invert());
    const position = /** @type {THREE.BufferAttribute} */ (this.geometry.attributes.position);
    const index = /** @type {THREE.BufferAttribute} */ (this.geometry.index).array;
    const backfaces = this.material.side === THREE.FrontSide;
    for (let i = 0; i < this.slots; i++) {
      if (!this.visible_[i] || !ray.intersectsSphere(this.spheres[i])) continue;
      const placed = _m.copy(this.placements[i]);
      if (this.positionScale !== 1) placed.scale(_v.setScalar(this.positionScale));
      const local = _local.copy(ray).applyMatrix4(_inv.copy(placed).invert());
      let best = Infinity;
      /** @type {{point: THREE.Vector3, face: any}|null} */
      let hit = null;
      for (let k = 0; k < index.length; k += 3) {
        _a.fromBufferAttribute(position, index[k]);
        _b.fromBufferAttribute(position, index[k + 1]);
        _c.fromBufferAttribute(position, index[k + 2]);
        if (!local.intersectTriangle(_a, _b, _c, backfaces, _p)) continue;
        const d = _p.distanceToSquared(local.origin);
        if (d >= best) continue;
        best = d;
        const normal = new THREE.Vector3().subVectors(_c, _b).cross(_v.subVectors(_a, _b));
        hit = { point: _p.clone(), face: { a: index[k], b: index[k + 1], c: index[k + 2], normal, materialIndex: 0 } };
      }
      if (!hit) continue;
      hit.point.applyMatrix4(placed).applyMatrix4(this.matrixWorld);
      hit.face.normal.applyMatrix3(_n.getNormalMatrix(placed)).normalize();
      const distance = raycaster.ray.origin.distanceTo(hit.point);
      if (distance < raycaster.near || distance > raycaster.far) continue;
      intersects.push({ distance, point: hit.point, face: hit.face, faceIndex: null, object: this, batchId: i });
    }
  }

  /**
   * Geometry for a section's stencil pass (tools/section_caps.js): the batch's vertices and index, shared, with
   * a slot list of its own (`crossing` fills it). Free it with releaseStencil.
   */
  stencilGeometry() {
    return sharingGeometry(this.geometry, this.slots);
  }

  /**
   * Draw in a stencil geometry the drawn instances that `plane` (world space) runs through (an instance wholly on
   * one side adds an even number of faces along any ray, or none). Call after draw. Returns how many.
   * @param {THREE.Plane} plane @param {THREE.InstancedBufferGeometry} stencil
   */
  crossing(plane, stencil) {
    const local = _plane.copy(plane).applyMatrix4(_inv.copy(this.matrixWorld).invert());
    const slots = slotAttribute(stencil).array;
    let at = 0;
    for (let i = 0; i < this.slots; i++) {
      const s = this.spheres[i];
      if (this.drawn[i] !== NOT_DRAWN && Math.abs(local.distanceToPoint(s.center)) <= s.radius) slots[at++] = this.first + i;
    }
    use(stencil, at);
    return at;
  }

  /** Free a stencil geometry's own slot list, not the vertices and index it shares. @param {THREE.BufferGeometry} stencil */
  static releaseStencil(stencil) {
    for (const name of Object.keys(stencil.attributes)) if (name !== 'slot') stencil.deleteAttribute(name);
    stencil.setIndex(null);
    stencil.dispose();
  }

  /** Free its geometries (the texture and materials are the InstancedLooks', freed with it). */
  dispose() {
    this.geometry.dispose();
    this.see.geometry.dispose();
    for (const { mesh } of this.levels.slice(1)) mesh.geometry.dispose();
    return this;
  }
}

/**
 * The shared mesh as instanced geometry with a slot list of `slots` instances. Its components stay as stored:
 * a quantized mesh's factor is in each placement and normals are normalised in the shader, so integer attributes
 * need no conversion (and stay as small on the GPU as in the file).
 * @param {MeshData} data @param {{color: boolean}} layout @param {number} slots
 */
function meshGeometry(data, layout, slots) {
  const g = instancedGeometry(slots);
  g.setAttribute('position', new THREE.BufferAttribute(data.position, 3));
  g.setAttribute('normal', data.normal ? new THREE.BufferAttribute(data.normal, 3, !(data.normal instanceof Float32Array))
    : new THREE.BufferAttribute(upNormals(data.position.length / 3), 3));
  if (layout.color) g.setAttribute('color', new THREE.BufferAttribute(/** @type {Float32Array} */ (data.color), 4));
  g.setIndex(new THREE.BufferAttribute(data.index instanceof Uint8Array ? Uint16Array.from(data.index) : data.index, 1));
  return g;
}

/**
 * Instanced geometry drawing the vertices and index of `of` (shared) with a slot list of its own, for the
 * see-through and stencil passes. @param {THREE.BufferGeometry} of @param {number} slots
 */
function sharingGeometry(of, slots) {
  const g = instancedGeometry(slots);
  for (const [name, attribute] of Object.entries(of.attributes)) if (name !== 'slot') g.setAttribute(name, attribute);
  g.setIndex(of.index);
  return g;
}

/** An instanced geometry with room for `slots` instances in its slot list, never frustum-culled as a whole. @param {number} slots */
function instancedGeometry(slots) {
  const g = new THREE.InstancedBufferGeometry();
  g.setAttribute('slot', new THREE.InstancedBufferAttribute(new Float32Array(slots), 1));
  g.boundingSphere = new THREE.Sphere(new THREE.Vector3(), Infinity);
  return g;
}

/** Normals pointing up, for a mesh without any (as MergedBatch gives it). @param {number} count */
function upNormals(count) {
  const out = new Float32Array(count * 3);
  for (let k = 1; k < out.length; k += 3) out[k] = 1;
  return out;
}

/** @param {THREE.BufferGeometry} g */
const slotAttribute = (g) => /** @type {THREE.InstancedBufferAttribute} */ (g.attributes.slot);

/** Draw the first `count` slots of an instanced geometry. @param {THREE.InstancedBufferGeometry} g @param {number} count */
function use(g, count) {
  const slots = slotAttribute(g);
  slots.clearUpdateRanges();
  slots.addUpdateRange(0, Math.max(count, 1));
  slots.needsUpdate = true;
  g.instanceCount = count;
  g.setDrawRange(0, count ? Infinity : 0);
}
