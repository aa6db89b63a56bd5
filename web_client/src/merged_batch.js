// One real draw call for many elements (xeokit's approach): their vertices baked into the batch's frame
// in one buffer with a per-vertex element slot; colour, a move on top of the baked placement and a
// "moved" flag per element live in a float texture the vertex shader reads. A multi-draw BatchedMesh is
// one draw call for three.js but one draw per instance in ANGLE, which on a software rasteriser costs
// more than the triangles. Which elements are drawn, and at which level of detail, is the index buffer:
// it is rebuilt (a few typed-array copies) only when visibility, transparency, frustum culling, a level or the
// frame budget's cut (frame_budget.js) changes. Elements drawn see-through (x-ray, transparency) go to the end of the draw list, which a child mesh
// (`see`) draws after the opaque pass with blending and without depth writes.
import * as THREE from 'three';
import { applyCut } from './frame_budget.js';
import { cheapMaterial, ELEMENT_TEXELS as TEXELS } from './shading.js';

const TEXTURE_WIDTH = 2048;
const _v = new THREE.Vector3();
const _a = new THREE.Vector3();
const _b = new THREE.Vector3();
const _c = new THREE.Vector3();
const _p = new THREE.Vector3();
const _m = new THREE.Matrix4();
const _scaled = new THREE.Matrix4();
const _n = new THREE.Matrix3();
const _ray = new THREE.Ray();
const _frustum = new THREE.Frustum();
const _s = new THREE.Sphere();
const _plane = new THREE.Plane();

/**
 * @typedef {import('./gltf_reader.js').MeshData} MeshData
 * @typedef {{data: MeshData, matrix: THREE.Matrix4, color: THREE.Color}} MergedItem
 *   data in the element's frame; matrix places it. The batch keeps both and never changes them.
 * @typedef {{start: number, count: number, triangles: number}} Range index range of one level
 * @typedef {import('./frame_budget.js').Cut} Cut
 */

/**
 * What merged and instanced batches keep alike per slot: whether it is drawn see-through (counted, so a batch
 * without any skips the see-through pass) and whether it is visible; a change marks the batch for redrawing.
 * @param {{translucent_: Uint8Array, translucentCount: number, dirty: boolean}} batch
 * @param {number} i @param {boolean} seeThrough
 */
export function markSeeThrough(batch, i, seeThrough) {
  const see = seeThrough ? 1 : 0;
  if (batch.translucent_[i] === see) return;
  batch.translucent_[i] = see;
  batch.translucentCount += see ? 1 : -1;
  batch.dirty = true;
}

/** @param {{visible_: Uint8Array, dirty: boolean}} batch @param {number} i @param {boolean} visible */
export function markVisible(batch, i, visible) {
  if (Boolean(batch.visible_[i]) === visible) return;
  batch.visible_[i] = visible ? 1 : 0;
  batch.dirty = true;
}

/** @extends {THREE.Mesh<THREE.BufferGeometry, import('./shading.js').CheapMaterial>} */
export class MergedBatch extends THREE.Mesh {
  /**
   * @param {THREE.Material} source the glTF material (its colour moves per element)
   * @param {MergedItem[]} items one per element slot
   * @param {{uv: boolean, color: boolean}} layout extra attributes the material reads
   */
  constructor(source, items, layout) {
    const n = items.length;
    const rows = Math.ceil((n * TEXELS) / TEXTURE_WIDTH) || 1;
    const data = new Float32Array(TEXTURE_WIDTH * rows * 4);
    const texture = new THREE.DataTexture(data, TEXTURE_WIDTH, rows, THREE.RGBAFormat, THREE.FloatType);
    texture.needsUpdate = true;
    const material = cheapMaterial(source, texture);
    material.color.set(0xffffff); // colour lives per element
    // Edges (edges.js) are drawn on the faces: the faces step back a little in depth, so the lines win.
    if (!material.polygonOffset) {
      material.polygonOffset = true;
      material.polygonOffsetFactor = 1;
      material.polygonOffsetUnits = 1;
    }
    super(new THREE.BufferGeometry(), material);
    this.isMergedBatch = true;
    this.frustumCulled = false; // culled per element in chooseView
    this.slots = n;
    this.layout = layout;
    this.data = data;
    this.texture = texture;
    /** @type {Range[][]} per slot: levels, finest first */
    this.levels = [];
    this.bases = items.map((it) => it.matrix);
    /** @type {(THREE.Matrix4|null)[]} per slot: the move on top of the base (null: none) */
    this.moves = new Array(n).fill(null);
    this.localBoxes = items.map((it) => it.data.box);
    this.localSpheres = items.map((it) => it.data.sphere);
    this.spheres = this.localSpheres.map((s, i) => s.clone().applyMatrix4(this.bases[i]));
    this.visible_ = new Uint8Array(n).fill(1);
    /** per slot: 1 when drawn see-through (opacity below 1), by `see` */
    this.translucent_ = new Uint8Array(n);
    this.translucentCount = 0;
    /** The see-through pass: the batch's vertices (shared) with an index of its own, drawn after the opaque pass. */
    this.see = new THREE.Mesh(new THREE.BufferGeometry(), cheapMaterial(Object.assign(source.clone(),
      { transparent: true, depthWrite: false }), texture));
    this.see.material.color.set(0xffffff);
    this.see.name = 'see-through';
    this.see.frustumCulled = false;
    this.see.visible = false;
    this.see.raycast = () => {}; // picked through the batch (raycast below)
    this.add(this.see);
    /** per slot: level drawn, 255 = not drawn (hidden, outside the view or over the frame's budget) */
    this.drawn = new Uint8Array(n).fill(255);
    /** per slot: the level the view wants (chooseView), 255 = none; and the element's size on screen (px) */
    this.wanted = new Uint8Array(n).fill(255);
    this.px = new Float32Array(n);
    this.dirty = true;

    /** Vertices and indices in the buffers (they are allocated larger, for levels to come). */
    this.vertexCount = 0;
    this.indexCount = 0;
    let vertices = 0;
    let indices = 0;
    for (const it of items) {
      vertices += it.data.position.length / 3;
      indices += it.data.index.length;
    }
    this.#allocate(vertices, indices);
    for (let i = 0; i < n; i++) {
      const range = this.#append(items[i].data, this.bases[i], i);
      this.levels.push([range]);
      this.setColorAt(i, items[i].color);
    }
    this.drawIndex = new Uint32Array(this.indexCount);
    this.geometry.setIndex(new THREE.BufferAttribute(this.drawIndex, 1));
    this.#attach();
  }

  /** @param {number} vertices @param {number} indices */
  #allocate(vertices, indices) {
    /**
     * @template {Float32Array|Uint32Array} T
     * @param {T|undefined} old @param {number} size @param {new (size: number) => T} Type
     */
    const grow = (old, size, Type) => {
      const a = new Type(size);
      if (old) a.set(old.subarray(0, Math.min(old.length, size)));
      return a;
    };
    const vBase = this.vertexCount;
    const iBase = this.indexCount;
    this.vPos = grow(this.vPos, (vBase + vertices) * 3, Float32Array);
    this.vNrm = grow(this.vNrm, (vBase + vertices) * 3, Float32Array);
    this.vSlot = grow(this.vSlot, vBase + vertices, Float32Array);
    if (this.layout.uv) this.vUv = grow(this.vUv, (vBase + vertices) * 2, Float32Array);
    if (this.layout.color) this.vColor = grow(this.vColor, (vBase + vertices) * 4, Float32Array);
    this.allIndex = grow(this.allIndex, iBase + indices, Uint32Array);
    this.vertexCount = vBase;
    this.indexCount = iBase;
  }

  #attach() {
    const g = this.geometry;
    const used = this.vertexCount;
    g.setAttribute('position', new THREE.BufferAttribute(this.vPos.subarray(0, used * 3), 3));
    g.setAttribute('normal', new THREE.BufferAttribute(this.vNrm.subarray(0, used * 3), 3));
    g.setAttribute('slot', new THREE.BufferAttribute(this.vSlot.subarray(0, used), 1));
    if (this.vUv) g.setAttribute('uv', new THREE.BufferAttribute(this.vUv.subarray(0, used * 2), 2));
    if (this.vColor) g.setAttribute('color', new THREE.BufferAttribute(this.vColor.subarray(0, used * 4), 4));
    g.boundingSphere = new THREE.Sphere(new THREE.Vector3(), Infinity);
  }

  /**
   * Bake mesh data placed by `matrix` into the buffers for `slot`; returns its index range.
   * @param {MeshData} data @param {THREE.Matrix4} matrix @param {number} slot
   * @returns {Range}
   */
  #append(data, matrix, slot) {
    const pos = data.position;
    const nrm = data.normal;
    const count = pos.length / 3;
    const v0 = this.vertexCount;
    // A quantized mesh's dequantisation factor is folded into its placement.
    const e = data.scale === 1 ? matrix.elements : _scaled.copy(matrix).scale(_v.setScalar(data.scale)).elements;
    _n.getNormalMatrix(matrix);
    const ne = _n.elements;
    const P = this.vPos;
    const N = this.vNrm;
    for (let k = 0; k < count; k++) {
      const x = pos[k * 3];
      const y = pos[k * 3 + 1];
      const z = pos[k * 3 + 2];
      const o = (v0 + k) * 3;
      P[o] = e[0] * x + e[4] * y + e[8] * z + e[12];
      P[o + 1] = e[1] * x + e[5] * y + e[9] * z + e[13];
      P[o + 2] = e[2] * x + e[6] * y + e[10] * z + e[14];
      if (nrm) {
        const a = nrm[k * 3];
        const b = nrm[k * 3 + 1];
        const c = nrm[k * 3 + 2];
        let nx = ne[0] * a + ne[3] * b + ne[6] * c;
        let ny = ne[1] * a + ne[4] * b + ne[7] * c;
        let nz = ne[2] * a + ne[5] * b + ne[8] * c;
        const l = Math.sqrt(nx * nx + ny * ny + nz * nz) || 1; // not Math.hypot: several times slower
        N[o] = nx / l;
        N[o + 1] = ny / l;
        N[o + 2] = nz / l;
      } else {
        N[o + 1] = 1;
      }
    }
    this.vSlot.fill(slot, v0, v0 + count);
    if (this.vUv && data.uv) this.vUv.set(data.uv, v0 * 2);
    if (this.vColor && data.color) this.vColor.set(data.color, v0 * 4);
    const index = data.index;
    const start = this.indexCount;
    for (let k = 0; k < index.length; k++) this.allIndex[start + k] = index[k] + v0;
    this.vertexCount += count;
    this.indexCount += index.length;
    return { start, count: index.length, triangles: index.length / 3 };
  }

  /**
   * Add coarser levels of detail: per slot, mesh data finest first (in the element's own frame).
   * @param {Map<number, MeshData[]>} bySlot
   */
  addLevels(bySlot) {
    let vertices = 0;
    let indices = 0;
    for (const levels of bySlot.values()) {
      for (const d of levels) {
        vertices += d.position.length / 3;
        indices += d.index.length;
      }
    }
    if (!vertices) return;
    this.#allocate(vertices, indices);
    for (const [slot, levels] of bySlot) {
      for (const d of levels) this.levels[slot].push(this.#append(d, this.bases[slot], slot));
    }
    this.geometry.dispose(); // new GPU buffers for the grown attributes
    this.#attach();
    this.dirty = true;
  }

  /** @param {number} i @param {THREE.Color} color */
  setColorAt(i, color) {
    const o = i * TEXELS * 4;
    this.data[o] = color.r;
    this.data[o + 1] = color.g;
    this.data[o + 2] = color.b;
    if (this.data[o + 3] === 0) this.data[o + 3] = 1;
    this.texture.needsUpdate = true;
  }

  /** @param {number} i @param {THREE.Color} target */
  getColorAt(i, target) {
    const o = i * TEXELS * 4;
    return target.setRGB(this.data[o], this.data[o + 1], this.data[o + 2]);
  }

  /**
   * Draw element `i` at `opacity` (1: opaque, as loaded); below 1 it is drawn in the see-through pass.
   * @param {number} i @param {number} opacity
   */
  setOpacityAt(i, opacity) {
    this.data[(i * TEXELS + 5) * 4] = 1 - opacity;
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

  /**
   * Place element `i` by `matrix` (its full world matrix, as for a BatchedMesh instance).
   * @param {number} i @param {THREE.Matrix4} matrix
   */
  setMatrixAt(i, matrix) {
    const move = _m.copy(this.bases[i]).invert().premultiply(matrix);
    const o = i * TEXELS * 4;
    const still = move.equals(IDENTITY);
    this.moves[i] = still ? null : move.clone();
    this.data[o + 3] = still ? 1 : 2;
    if (!still) this.data.set(move.elements, o + 4);
    this.spheres[i].copy(this.localSpheres[i]).applyMatrix4(matrix);
    this.texture.needsUpdate = true;
  }

  /** @param {number} i @param {THREE.Matrix4} target the element's current placement */
  matrixOf(i, target) {
    target.copy(this.bases[i]);
    const move = this.moves[i];
    return move ? target.premultiply(move) : target;
  }

  /** @param {number} i @param {THREE.Box3} target world box of element i as placed */
  boxAt(i, target) {
    return target.copy(this.localBoxes[i]).applyMatrix4(this.matrixOf(i, _m));
  }

  /**
   * What this view wants (`wanted`, `px`): hidden and out-of-view elements nothing, the others the coarsest
   * level that keeps `trianglesPerPixel` triangles per pixel of their projected diameter. Then `draw` it.
   * @param {THREE.Camera} camera @param {number} heightPx @param {number} trianglesPerPixel
   * @param {boolean} cull whether to cull against the camera's frustum (not in XR: two eyes, wider view)
   */
  chooseView(camera, heightPx, trianglesPerPixel, cull) {
    _m.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse).multiply(this.matrixWorld);
    _frustum.setFromProjectionMatrix(_m, camera.coordinateSystem);
    const eye = _v.setFromMatrixPosition(camera.matrixWorld).applyMatrix4(_m.copy(this.matrixWorld).invert());
    const focalPx = (camera.projectionMatrix.elements[5] || 1) * heightPx * 0.5;
    const ortho = /** @type {any} */ (camera).isOrthographicCamera; // size on screen does not fall with distance
    const { levels, wanted, px, spheres } = this;
    for (let i = 0; i < this.slots; i++) {
      const s = spheres[i];
      if (this.visible_[i] && (!cull || _frustum.intersectsSphere(s))) {
        px[i] = projectedPx(s, eye, focalPx, ortho);
        wanted[i] = levelFor(px[i], trianglesPerPixel, levels[i]);
      } else wanted[i] = 255;
    }
  }

  /** @param {number} i @returns {Range[]} slot i's levels, finest first */
  levelsAt(i) {
    return this.levels[i];
  }

  /** Draw what `chooseView` chose, under the frame budget's `cut` (frame_budget.js). @param {Cut} cut */
  draw(cut) {
    if (applyCut(this, cut) || this.dirty) this.#rebuildIndex();
    this.dirty = false;
  }

  #rebuildIndex() {
    let need = 0;
    for (let i = 0; i < this.slots; i++) if (this.drawn[i] !== 255) need += this.levels[i][this.drawn[i]].count;
    if (need > this.drawIndex.length) {
      this.drawIndex = new Uint32Array(need);
      this.geometry.dispose();
      this.#attach();
      this.geometry.setIndex(new THREE.BufferAttribute(this.drawIndex, 1));
    }
    let at = 0;
    let seeAt = 0;
    const all = this.allIndex;
    const seeIndex = this.translucentCount ? this.#seeIndex() : null;
    for (let i = 0; i < this.slots; i++) {
      const lv = this.drawn[i];
      if (lv === 255) continue;
      const r = this.levels[i][lv];
      const part = all.subarray(r.start, r.start + r.count);
      if (seeIndex && this.translucent_[i]) {
        seeIndex.set(part, seeAt);
        seeAt += r.count;
      } else {
        this.drawIndex.set(part, at);
        at += r.count;
      }
    }
    upload(this.geometry, at);
    if (seeIndex) upload(this.see.geometry, seeAt);
    this.see.visible = seeAt > 0;
    this.triangles = (at + seeAt) / 3;
  }

  /**
   * The see-through pass's index array, its geometry made (again) when the batch's attributes are new: the
   * old one is disposed then, which frees only its own index (the attributes it held were freed with theirs).
   */
  #seeIndex() {
    const g = this.see.geometry;
    if (g.attributes.position === this.geometry.attributes.position) return /** @type {Uint32Array} */ (g.index?.array);
    g.dispose();
    const next = new THREE.BufferGeometry();
    for (const [name, attribute] of Object.entries(this.geometry.attributes)) next.setAttribute(name, attribute);
    next.setIndex(new THREE.BufferAttribute(new Uint32Array(this.drawIndex.length), 1));
    next.boundingSphere = new THREE.Sphere(new THREE.Vector3(), Infinity);
    this.see.geometry = next;
    return /** @type {Uint32Array} */ (next.index?.array);
  }

  /**
   * The drawn triangles of the elements that `plane` (world space) runs through, into `out` (grown when too
   * small): a section's stencil pass (tools/section_caps.js) needs no others — an element wholly on one side
   * adds an even number of faces along any ray, or none. Call after draw (it reads what is drawn).
   * @param {THREE.Plane} plane @param {Uint32Array} out
   * @returns {{index: Uint32Array, count: number}} `out` or a larger array, and how many indices it holds
   */
  crossing(plane, out) {
    const local = _plane.copy(plane).applyMatrix4(_m.copy(this.matrixWorld).invert());
    const { drawn, levels, spheres } = this;
    let need = 0;
    for (let i = 0; i < this.slots; i++) {
      if (drawn[i] !== 255 && Math.abs(local.distanceToPoint(spheres[i].center)) <= spheres[i].radius) need += levels[i][drawn[i]].count;
    }
    const index = need > out.length ? new Uint32Array(Math.max(need, out.length * 2)) : out;
    let at = 0;
    for (let i = 0; i < this.slots; i++) {
      if (drawn[i] === 255 || Math.abs(local.distanceToPoint(spheres[i].center)) > spheres[i].radius) continue;
      const r = levels[i][drawn[i]];
      index.set(this.allIndex.subarray(r.start, r.start + r.count), at);
      at += r.count;
    }
    return { index, count: at };
  }

  /**
   * Ray against each shown element's full-detail triangles (boxes first); hits carry batchId = slot.
   * @param {THREE.Raycaster} raycaster @param {THREE.Intersection[]} intersects
   */
  raycast(raycaster, intersects) {
    const toLocal = _m.copy(this.matrixWorld).invert();
    const local = _ray.copy(raycaster.ray).applyMatrix4(toLocal);
    const P = this.vPos;
    const all = this.allIndex;
    const backfaces = this.material.side === THREE.FrontSide;
    for (let i = 0; i < this.slots; i++) {
      if (!this.visible_[i] || !local.intersectsSphere(this.spheres[i])) continue;
      const move = this.moves[i];
      const r = move ? new THREE.Ray().copy(local).applyMatrix4(move.clone().invert()) : local;
      if (!r.intersectsSphere(_s.copy(this.localSpheres[i]).applyMatrix4(this.bases[i]))) continue;
      const { start, count } = this.levels[i][0];
      let best = Infinity;
      /** @type {any} */
      let hit = null;
      for (let k = start; k < start + count; k += 3) {
        const a = all[k];
        const b = all[k + 1];
        const c = all[k + 2];
        _a.fromArray(P, a * 3);
        _b.fromArray(P, b * 3);
        _c.fromArray(P, c * 3);
        if (!r.intersectTriangle(_a, _b, _c, backfaces, _p)) continue;
        const d = _p.distanceToSquared(r.origin);
        if (d < best) {
          best = d;
          const normal = new THREE.Vector3().subVectors(_c, _b).cross(_v.subVectors(_a, _b)).normalize();
          hit = { point: _p.clone(), face: { a, b, c, normal, materialIndex: 0 } };
        }
      }
      if (!hit) continue;
      if (move) {
        hit.point.applyMatrix4(move);
        hit.face.normal.applyMatrix3(_n.getNormalMatrix(move)).normalize();
      }
      hit.point.applyMatrix4(this.matrixWorld);
      const distance = raycaster.ray.origin.distanceTo(hit.point);
      if (distance < raycaster.near || distance > raycaster.far) continue;
      intersects.push({ distance, point: hit.point, face: hit.face, faceIndex: null, object: this, batchId: i });
    }
  }

  dispose() {
    this.geometry.dispose();
    this.see.geometry.dispose();
    this.see.material.dispose();
    this.texture.dispose();
    this.material.dispose();
    return this;
  }
}

/**
 * The diameter on screen (px) of an element's bounding sphere (batch frame) seen from `eye`.
 * @param {THREE.Sphere} s @param {THREE.Vector3} eye @param {number} focalPx pixels per unit of size at unit
 * distance @param {boolean} ortho an orthographic camera: size on screen does not fall with distance
 */
export function projectedPx(s, eye, focalPx, ortho) {
  const d = ortho ? 1 : Math.max(s.center.distanceTo(eye) - s.radius, 1e-3);
  return (2 * s.radius * focalPx) / d;
}

/**
 * The coarsest level (finest first) that keeps `trianglesPerPixel` triangles per pixel of a projected diameter.
 * @param {number} px @param {number} trianglesPerPixel @param {{triangles: number}[]} levels
 */
export function levelFor(px, trianglesPerPixel, levels) {
  if (levels.length < 2) return 0;
  const want = px * trianglesPerPixel;
  for (let k = levels.length - 1; k > 0; k--) if (levels[k].triangles >= want) return k;
  return 0;
}

/** Upload the first `count` entries of a geometry's index and draw those. @param {THREE.BufferGeometry} g @param {number} count */
function upload(g, count) {
  const index = /** @type {THREE.BufferAttribute} */ (g.index);
  index.clearUpdateRanges();
  index.addUpdateRange(0, Math.max(count, 1));
  index.needsUpdate = true;
  g.setDrawRange(0, count);
}

const IDENTITY = new THREE.Matrix4();

/**
 * Compile the batch shader while the model downloads: two batches (opaque and transparent: one program,
 * but the GPU's pipeline differs by blending) of one degenerate triangle, so nothing shows when they are
 * drawn. The compile and link are sent (flushed) to the GPU process at once; drawing the batches in the
 * viewer's first frame then pays what a program's first use costs — three's synchronous query of its
 * uniforms and attributes, the GPU's pipeline, the first texture upload — before the model is there when
 * it arrives later, rather than in the model's first frame. Keep the batches until the model has been
 * drawn with the same program: disposing them before would delete it (three counts its users).
 * @param {THREE.WebGLRenderer} renderer @param {THREE.Camera} camera @param {THREE.Scene} scene
 * @returns {THREE.Group}
 */
export function warmUpShaders(renderer, camera, scene) {
  const box = new THREE.Box3(new THREE.Vector3(), new THREE.Vector3(1, 1, 0));
  /** @type {MeshData} */
  const triangle = { position: new Float32Array([0, 0, 0, 1, 0, 0, 0, 1, 0]), normal: new Float32Array([0, 0, 1, 0, 0, 1, 0, 0, 1]),
    index: new Uint16Array([0, 1, 2]), scale: 1, box, sphere: box.getBoundingSphere(new THREE.Sphere()) };
  // Drawn before any draw, a batch draws its index buffer as allocated: zeros, i.e. vertex 0 thrice.
  const group = new THREE.Group();
  for (const transparent of [false, true]) {
    const source = new THREE.MeshStandardMaterial({ transparent, opacity: transparent ? 0.5 : 1 });
    group.add(new MergedBatch(source, [{ data: triangle, matrix: new THREE.Matrix4(), color: source.color }], { uv: false, color: false }));
  }
  renderer.compile(group, camera, scene);
  renderer.getContext().flush(); // a WebGL command buffer is otherwise sent only when full or at a synchronous call
  return group;
}
