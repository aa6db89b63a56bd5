// Feature edges of merged batches (xeokit's and APS's "edges on"): the edges where two faces meet at more than
// CREASE_DEG, and open borders, as line segments over the batch's own vertex buffer (no copy of the vertices:
// the lines share the batch's position and slot attributes, and its per-element texture moves them with the
// element). An element's edges are found once, from its full-detail triangles, the first time they are drawn:
// lazily, in slices of at most SLICE_MS between frames, never before the model's first frame. Edges are drawn
// only for elements at least MIN_EDGE_PX across on screen: on smaller ones they are noise, and skipping them
// keeps an overview of a large plant at the cost it had without edges.
// The same lines, in other colours and also on top, with a tint of the element's triangles (drawn over the
// batch's vertices the same way), outline the selected and the hovered element (Outline).
// An instanced batch (instanced_batch.js) has one mesh: its edges are found once, and drawn as instanced line
// segments for the slots that want them, placed by the same element texture.
import * as THREE from 'three';
import { MERGED_VERTEX_PARS, mergedDefines } from './shading.js';

// Faces meeting at more than this angle make an edge (boxes, walls, flanges; not the facets of a smooth pipe).
const CREASE_DEG = 30;
const CREASE_COS = Math.cos(THREE.MathUtils.degToRad(CREASE_DEG));
// Elements smaller than this on screen (projected diameter, px) are drawn without edges.
const MIN_EDGE_PX = 48;
// Finding edges runs in slices of at most this long, between frames.
const SLICE_MS = 6;
// Positions closer than this (m) are one vertex when faces are joined (flat-shaded meshes split vertices).
const WELD_M = 1e-4;
export const EDGE_COLOR = 0x4a515c;
const EDGE_OPACITY = 1; // opaque: no blending, the cheaper path on a software rasteriser

const _m = new THREE.Matrix4();
const _v = new THREE.Vector3();
const _frustum = new THREE.Frustum();

/**
 * @typedef {import('./merged_batch.js').MergedBatch} MergedBatch
 * @typedef {import('./instanced_batch.js').InstancedBatch} InstancedBatch
 * @typedef {MergedBatch|InstancedBatch} AnyBatch
 */

/** @type {WeakMap<MergedBatch, Map<number, Uint32Array>>} per batch: slot -> vertex pairs */
const found = new WeakMap();
/** @type {WeakMap<InstancedBatch, Uint32Array>} per instanced batch: its mesh's vertex pairs */
const foundShared = new WeakMap();

/**
 * The feature edges of one element of a batch (its full-detail triangles), as pairs of vertex indices; of an
 * instanced batch, of its one mesh (any slot).
 * @param {AnyBatch} batch @param {number} slot
 * @returns {Uint32Array}
 */
export function edgesOf(batch, slot) {
  if (isInstanced(batch)) {
    let known = foundShared.get(batch);
    if (!known) {
      const index = /** @type {THREE.BufferAttribute} */ (batch.geometry.index).array;
      known = featureEdges(batch.geometry.attributes.position.array, batch.positionScale, index, 0, index.length);
      foundShared.set(batch, known);
    }
    return known;
  }
  let bySlot = found.get(batch);
  if (!bySlot) found.set(batch, (bySlot = new Map()));
  const known = bySlot.get(slot);
  if (known) return known;
  const { start, count } = batch.levels[slot][0];
  const edges = featureEdges(/** @type {Float32Array} */ (batch.vPos), 1, /** @type {Uint32Array} */ (batch.allIndex), start, count);
  bySlot.set(slot, edges);
  return edges;
}

/** Whether an element's edges are known already. @param {AnyBatch} batch @param {number} slot */
function edgesKnown(batch, slot) {
  return isInstanced(batch) ? foundShared.has(batch) : Boolean(found.get(batch)?.has(slot));
}

/** @param {any} batch @returns {batch is InstancedBatch} */
const isInstanced = (batch) => Boolean(batch.isInstancedBatch);

/**
 * Feature edges of the triangles index[start, start + count) over positions P (x `scale`: metres): pairs of vertex
 * indices where faces meet at more than CREASE_DEG, and open borders.
 * @param {ArrayLike<number>} P @param {number} scale @param {ArrayLike<number>} all @param {number} start
 * @param {number} count @returns {Uint32Array}
 */
function featureEdges(P, scale, all, start, count) {
  const weldUnit = WELD_M / scale;
  /** @type {Map<string, number>} welded vertex by position */
  const weld = new Map();
  /** @type {Map<number, number>} vertex -> welded vertex */
  const welded = new Map();
  const canon = (/** @type {number} */ v) => {
    let w = welded.get(v);
    if (w === undefined) {
      const key = `${Math.round(P[v * 3] / weldUnit)},${Math.round(P[v * 3 + 1] / weldUnit)},${Math.round(P[v * 3 + 2] / weldUnit)}`;
      w = weld.get(key);
      if (w === undefined) weld.set(key, (w = weld.size));
      welded.set(v, w);
    }
    return w;
  };
  const normals = new Float32Array(count); // per triangle: its unit normal (count / 3 triangles × 3)
  /** @type {Map<number, number>} welded edge -> first triangle × 4 + its side */
  const open = new Map();
  const out = [];
  const a = new THREE.Vector3();
  const b = new THREE.Vector3();
  const c = new THREE.Vector3();
  for (let t = 0; t < count; t += 3) {
    const i = [all[start + t], all[start + t + 1], all[start + t + 2]];
    a.fromArray(P, i[0] * 3);
    b.fromArray(P, i[1] * 3);
    c.fromArray(P, i[2] * 3);
    const n = c.sub(b).cross(a.sub(b)).normalize();
    normals[t] = n.x;
    normals[t + 1] = n.y;
    normals[t + 2] = n.z;
    for (let s = 0; s < 3; s++) {
      const va = i[s];
      const vb = i[(s + 1) % 3];
      const wa = canon(va);
      const wb = canon(vb);
      if (wa === wb) continue;
      const key = wa < wb ? wa * 4194304 + wb : wb * 4194304 + wa;
      const other = open.get(key);
      if (other === undefined) {
        open.set(key, t * 4 + s);
        continue;
      }
      open.delete(key);
      const u = other >> 2; // that triangle's first index: where its normal is
      const dot = normals[u] * n.x + normals[u + 1] * n.y + normals[u + 2] * n.z;
      if (dot < CREASE_COS) out.push(va, vb);
    }
  }
  for (const first of open.values()) { // borders: edges of one face only
    const t = first >> 2;
    const s = first & 3;
    out.push(all[start + t + s], all[start + t + ((s + 1) % 3)]);
  }
  return new Uint32Array(out);
}

/**
 * One colour on a batch's elements (their moves and the section planes applied): edges, outlines, tints. It
 * shares the batch material's clipping planes (the viewer's section planes, by reference: Viewer.clipModel).
 */
class FlatMaterial extends THREE.ShaderMaterial {
  /** @param {AnyBatch} batch @param {number} color @param {number} opacity @param {boolean} onTop */
  constructor(batch, color, opacity, onTop) {
    const elementData = batch.texture;
    super({
      defines: mergedDefines(elementData),
      uniforms: { elementData: { value: elementData }, color: { value: new THREE.Color(color) }, opacity: { value: opacity } },
      vertexShader: /* glsl */ `
        #include <common>
        #include <clipping_planes_pars_vertex>
        ${MERGED_VERTEX_PARS}
        void main() {
          vec3 transformed = position;
          int at = int( slot + 0.5 ) * ELEMENT_TEXELS;
          if ( elementTexel( at ).a > 1.5 ) {
            mat4 move = mat4( elementTexel( at + 1 ), elementTexel( at + 2 ), elementTexel( at + 3 ), elementTexel( at + 4 ) );
            transformed = ( move * vec4( transformed, 1.0 ) ).xyz;
          }
          vec4 mvPosition = modelViewMatrix * vec4( transformed, 1.0 );
          gl_Position = projectionMatrix * mvPosition;
          #include <clipping_planes_vertex>
        }`,
      fragmentShader: /* glsl */ `
        uniform vec3 color;
        uniform float opacity;
        #include <clipping_planes_pars_fragment>
        void main() {
          #include <clipping_planes_fragment>
          gl_FragColor = vec4( color, opacity );
          #include <colorspace_fragment>
        }`,
      transparent: opacity < 1,
      depthWrite: false,
      depthTest: !onTop,
      clipping: true,
    });
    this.clippingPlanes = /** @type {THREE.Material} */ (batch.material).clippingPlanes;
  }
}

/**
 * Draw `parts` (index arrays over the batch's vertices, one after another) with `obj`, over the batch's own
 * position and slot attributes; its index buffer grows when it must (a new geometry: the old one's index is
 * freed, not the attributes it shares with the batch). Returns the indices drawn.
 * @param {THREE.Mesh|THREE.LineSegments} obj @param {MergedBatch} batch
 * @param {ArrayLike<number>[]} parts
 */
function drawIndices(obj, batch, parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  let index = /** @type {THREE.BufferAttribute|null} */ (obj.geometry.index);
  if (!index || index.count < n) {
    release(obj.geometry, batch);
    obj.geometry = new THREE.BufferGeometry();
    index = new THREE.BufferAttribute(new Uint32Array(Math.max(n, 2 * (index?.count ?? 0), 64)), 1);
    obj.geometry.setIndex(index);
  }
  const array = /** @type {Uint32Array} */ (index.array);
  let at = 0;
  for (const p of parts) {
    array.set(p, at);
    at += p.length;
  }
  index.clearUpdateRanges();
  index.addUpdateRange(0, Math.max(at, 1));
  index.needsUpdate = true;
  const g = obj.geometry;
  g.setDrawRange(0, at);
  const src = batch.geometry.attributes;
  if (g.attributes.position !== src.position) {
    g.setAttribute('position', src.position);
    g.setAttribute('slot', src.slot);
  }
  obj.visible = at > 0;
  return at;
}

/**
 * Draw `slots` of an instanced batch with `obj`: the batch's vertices (shared), `index` (the mesh's edges, its
 * own; or the batch's triangles, shared) and a slot list of its own. Returns the indices drawn.
 * @param {THREE.Mesh|THREE.LineSegments} obj @param {InstancedBatch} batch @param {number[]} slots
 * @param {() => THREE.BufferAttribute} index made once, with the geometry
 */
function drawInstances(obj, batch, slots, index) {
  let g = /** @type {THREE.InstancedBufferGeometry} */ (obj.geometry);
  if (!g.isInstancedBufferGeometry) {
    g.dispose();
    g = obj.geometry = new THREE.InstancedBufferGeometry();
    g.setAttribute('position', batch.geometry.attributes.position);
    g.setAttribute('slot', new THREE.InstancedBufferAttribute(new Float32Array(batch.slots), 1));
    g.setIndex(index());
    g.boundingSphere = new THREE.Sphere(new THREE.Vector3(), Infinity);
  }
  const list = /** @type {THREE.InstancedBufferAttribute} */ (g.attributes.slot);
  slots.forEach((s, k) => { list.array[k] = batch.first + s; });
  list.clearUpdateRanges();
  list.addUpdateRange(0, Math.max(slots.length, 1));
  list.needsUpdate = true;
  g.instanceCount = slots.length;
  obj.visible = slots.length > 0;
  return slots.length * /** @type {THREE.BufferAttribute} */ (g.index).count;
}

/**
 * Free what a geometry owns (its index, an instanced one's slot list), leaving the batch's attributes it shares
 * alone. @param {THREE.BufferGeometry} g @param {AnyBatch} batch
 */
function release(g, batch) {
  g.deleteAttribute('position');
  if (!(g instanceof THREE.InstancedBufferGeometry)) g.deleteAttribute('slot'); // a merged batch's: shared
  if (g.index === batch.geometry.index) g.setIndex(null); // an instanced fill draws the batch's own triangles
  g.dispose();
}

/** @typedef {{color: number, opacity: number, onTop?: boolean}} Look `onTop`: drawn over the model */

/** Line segments over a batch's vertices: the edges of the elements (slots) it is given. */
export class EdgeLines extends THREE.LineSegments {
  /** @param {AnyBatch} batch @param {Look} look */
  constructor(batch, { color, opacity, onTop = false }) {
    super(new THREE.BufferGeometry(), new FlatMaterial(batch, color, opacity, onTop));
    this.batch = batch;
    this.frustumCulled = false;
    this.renderOrder = onTop ? 20 : 1;
    this.name = `edges:${batch.name}`;
    /** @type {number[]} the slots drawn */
    this.slots = [];
  }

  /** Never picked: picking is the batch's. */
  raycast() {}

  /** Draw the edges of these slots (their edges found now if need be). @param {number[]} slots */
  show(slots) {
    this.slots = slots;
    const b = this.batch;
    if (isInstanced(b)) drawInstances(this, b, slots, () => new THREE.BufferAttribute(edgesOf(b, 0), 1));
    else drawIndices(this, b, slots.map((s) => edgesOf(b, s)));
  }

  /** The line segments drawn now. */
  get segments() {
    const g = /** @type {THREE.LineSegments} */ (this).geometry;
    if (!this.visible) return 0;
    if (g instanceof THREE.InstancedBufferGeometry) return (/** @type {THREE.BufferAttribute} */ (g.index).count / 2) * g.instanceCount;
    return g.drawRange.count / 2;
  }

  /** Whether the batch's attributes are the ones drawn (it makes new ones when its levels of detail come). */
  get current() {
    return /** @type {THREE.LineSegments} */ (this).geometry.attributes.position === this.batch.geometry.attributes.position;
  }

  dispose() {
    release(/** @type {THREE.LineSegments} */ (this).geometry, this.batch);
    /** @type {THREE.Material} */ (this.material).dispose();
  }
}

/** A tint over elements of a batch: their full-detail triangles again, in a translucent colour. */
export class ElementFill extends THREE.Mesh {
  /** @param {AnyBatch} batch @param {Look} look */
  constructor(batch, { color, opacity }) {
    super(new THREE.BufferGeometry(), new FlatMaterial(batch, color, opacity, false));
    this.batch = batch;
    this.frustumCulled = false;
    this.renderOrder = 1;
    /** @type {THREE.Material} */ (this.material).side = batch.material.side;
  }

  raycast() {}

  /** @param {number[]} slots */
  show(slots) {
    const b = this.batch;
    if (isInstanced(b)) {
      drawInstances(this, b, slots, () => /** @type {THREE.BufferAttribute} */ (b.geometry.index));
      return;
    }
    const all = /** @type {Uint32Array} */ (b.allIndex);
    drawIndices(this, b, slots.map((s) => {
      const { start, count } = b.levels[s][0];
      return all.subarray(start, start + count);
    }));
  }

  dispose() {
    release(/** @type {THREE.Mesh} */ (this).geometry, this.batch);
    /** @type {THREE.Material} */ (this.material).dispose();
  }
}

/**
 * Edges on for the merged batches of a model: before each render, the elements drawn and big enough on screen
 * get their edges; edges not yet found are found between frames, a slice at a time.
 */
export class ModelEdges {
  /**
   * @param {import('./batcher.js').ElementBatches} batches @param {() => void} invalidate redraw when edges are found
   */
  constructor(batches, invalidate) {
    this.invalidate = invalidate;
    this.batches = batches;
    /** @type {EdgeLines[]} */
    this.lines = [];
    this.enabled = false;
    /** @type {Map<EdgeLines, number[]>} slots wanted but not found yet, per lines */
    this.pending = new Map();
    this.timer = 0;
    this.sync();
  }

  /** Lines for every merged or instanced batch, none for a batch gone (a tiled scene's tiles come and go). */
  sync() {
    const batches = new Set(this.batches.batches);
    this.lines = this.lines.filter((l) => batches.has(/** @type {any} */ (l.batch)) || (this.pending.delete(l), false));
    const lined = new Set(this.lines.map((l) => l.batch));
    for (const b of batches) {
      if (!(/** @type {any} */ (b).isMergedBatch || /** @type {any} */ (b).isInstancedBatch)) continue;
      const batch = /** @type {AnyBatch} */ (/** @type {any} */ (b));
      if (lined.has(batch)) continue;
      const lines = new EdgeLines(batch, { color: EDGE_COLOR, opacity: EDGE_OPACITY });
      lines.visible = false;
      batch.add(lines);
      this.lines.push(lines);
    }
  }

  /** @param {boolean} on */
  setEnabled(on) {
    this.enabled = on;
    for (const l of this.lines) if (!on) l.visible = false;
    this.invalidate();
  }

  /** The edge segments drawn now. */
  get segments() {
    let n = 0;
    for (const l of this.lines) n += l.segments;
    return n;
  }

  /**
   * Choose the elements drawn with edges for this view (after the batches chose theirs).
   * @param {THREE.Camera} camera @param {number} heightPx drawing-buffer height
   */
  update(camera, heightPx) {
    if (!this.enabled) return;
    const ortho = /** @type {any} */ (camera).isOrthographicCamera;
    const focalPx = (camera.projectionMatrix.elements[5] || 1) * heightPx * 0.5;
    for (const lines of this.lines) {
      const b = lines.batch;
      _m.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse).multiply(b.matrixWorld);
      _frustum.setFromProjectionMatrix(_m, camera.coordinateSystem);
      const eye = _v.setFromMatrixPosition(camera.matrixWorld).applyMatrix4(_m.copy(b.matrixWorld).invert());
      const want = [];
      const missing = [];
      for (let i = 0; i < b.slots; i++) {
        if (b.drawn[i] === 255 || b.translucent_[i]) continue; // hidden, out of view, x-rayed or see-through
        const s = b.spheres[i];
        const d = ortho ? 1 : Math.max(s.center.distanceTo(eye) - s.radius, 1e-3);
        if ((2 * s.radius * focalPx) / d < MIN_EDGE_PX) continue;
        if (edgesKnown(b, i)) want.push(i);
        else missing.push(i);
      }
      if (missing.length) this.pending.set(lines, missing);
      if (!lines.current || want.length !== lines.slots.length || want.some((s, k) => s !== lines.slots[k])) lines.show(want);
    }
    if (this.pending.size && !this.timer) this.timer = window.setTimeout(() => this.#findSome(), 0);
  }

  /** Find pending edges for at most SLICE_MS, then redraw (and go on next time). */
  #findSome() {
    this.timer = 0;
    const end = performance.now() + SLICE_MS;
    for (const [lines, slots] of this.pending) {
      while (slots.length && performance.now() < end) edgesOf(lines.batch, /** @type {number} */ (slots.pop()));
      if (!slots.length) this.pending.delete(lines);
      if (performance.now() >= end) break;
    }
    this.invalidate(); // the next update draws what was found, and asks for more
  }

  dispose() {
    clearTimeout(this.timer);
    for (const l of this.lines) {
      l.removeFromParent();
      l.dispose();
    }
  }
}

/**
 * Outline looks: the selection's edges (on the model, and fainter where the model hides them) and tint, the
 * hover's lighter ones.
 * @type {Record<'selected'|'hovered', {edges: Look[], fill: Look}>}
 */
const OUTLINE = {
  selected: { edges: [{ color: 0x4da3ff, opacity: 1 }, { color: 0x4da3ff, opacity: 0.35, onTop: true }],
    fill: { color: 0x4da3ff, opacity: 0.3 } },
  hovered: { edges: [{ color: 0xffffff, opacity: 0.8 }], fill: { color: 0xffffff, opacity: 0.12 } },
};

/**
 * The selected or hovered element outlined: its edges in a bright colour (a selection's also where other
 * elements hide it, fainter) over a tint. For elements of merged batches; `set` says whether it could.
 */
export class Outline {
  /** @param {import('./batcher.js').ElementBatches} batches @param {'selected'|'hovered'} kind */
  constructor(batches, kind) {
    this.batches = batches;
    this.kind = kind;
    /** @type {Map<AnyBatch, (EdgeLines|ElementFill)[]>} */
    this.lines = new Map();
  }

  /**
   * Outline an element (null: none). Returns false when it has parts this cannot outline (not merged).
   * @param {string|null} id
   */
  set(id) {
    /** @type {Map<AnyBatch, number[]>} */
    const slots = new Map();
    let all = true;
    for (const p of (id && this.batches.elements.get(id)?.parts) || []) {
      const b = /** @type {any} */ (p.target);
      if (b.isMergedBatch || b.isInstancedBatch) slots.set(b, [...(slots.get(b) ?? []), p.instanceId]);
      else all = false;
    }
    for (const [batch, lines] of this.lines) if (!slots.has(batch)) for (const l of lines) l.show([]);
    for (const [batch, s] of slots) {
      let lines = this.lines.get(batch);
      if (!lines) {
        const look = OUTLINE[this.kind];
        lines = [new ElementFill(batch, look.fill), ...look.edges.map((l) => new EdgeLines(batch, l))];
        batch.add(...lines);
        this.lines.set(batch, lines);
      }
      for (const l of lines) l.show(s);
    }
    return all;
  }

  dispose() {
    for (const lines of this.lines.values()) {
      for (const l of lines) {
        l.removeFromParent();
        l.dispose();
      }
    }
    this.lines.clear();
  }
}
