// Snapping for the measure tools: a pick on the batched geometry, then the corner or edge of the picked face
// nearest to the pointer when it is within a few pixels on screen, else the point on the face. The face is the
// picked triangle and the element's triangles in its plane (a box's side is two triangles, a wall's many); its
// corners and edges are the ends and the edges of those triangles not shared between two of them, so the
// diagonal of a quad is no edge.
import * as THREE from 'three';

/** Snap to a corner or an edge within this many CSS pixels of the pointer. */
export const SNAP_PX = 8;
// Triangles in one plane: normals within ~1°, distance within 1 mm.
const COPLANAR_COS = 0.9998;
const COPLANAR_M = 0.001;
// An element with more triangles than this snaps to the picked triangle alone (no scan for its face).
const MAX_FACE_SCAN = 60000;
// Vertex positions are the same corner when equal to 0.1 mm (flat-shaded meshes repeat them per face).
const KEY_STEP_M = 1e-4;

/** @typedef {{kind: 'vertex'|'edge'|'face', point: THREE.Vector3, edge?: [THREE.Vector3, THREE.Vector3]}} Snap world coordinates */

const _a = new THREE.Vector3();
const _b = new THREE.Vector3();
const _c = new THREE.Vector3();
const _n = new THREE.Vector3();
const _p = new THREE.Vector3();
const _q = new THREE.Vector3();

/**
 * The snapped point under client pixel (x, y), or null off the model.
 * @param {import('../viewer.js').Viewer} viewer @param {number} x @param {number} y
 * @returns {Snap|null}
 */
export function snapAt(viewer, x, y) {
  const hit = viewer.pickAt(x, y);
  if (!hit) return null;
  const batch = /** @type {any} */ (hit.object);
  if (!(batch.isMergedBatch || batch.isInstancedBatch) || !hit.face || hit.batchId === undefined) {
    return { kind: 'face', point: hit.point.clone() };
  }
  const { corners, edges } = faceOutline(elementTriangles(batch, hit.batchId), hit.face);
  const toScreen = screenMapper(viewer);
  const pointer = new THREE.Vector2(x, y);
  let best = SNAP_PX;
  /** @type {Snap|null} */
  let snap = null;
  for (const c of corners) {
    const d = toScreen(c).distanceTo(pointer);
    if (d <= best) [best, snap] = [d, { kind: 'vertex', point: c }];
  }
  if (snap) return snap;
  const ray = viewer.raycaster.ray; // the pick's
  for (const [a, b] of edges) {
    const on = new THREE.Vector3();
    ray.distanceSqToSegment(a, b, undefined, on);
    const d = toScreen(on).distanceTo(pointer);
    if (d <= best) [best, snap] = [d, { kind: 'edge', point: on, edge: [a, b] }];
  }
  return snap ?? { kind: 'face', point: hit.point.clone() };
}

/**
 * An element's full-detail triangles: positions P (x `scale` in metres), the index range and the matrix to world.
 * @typedef {{P: ArrayLike<number>, scale: number, all: ArrayLike<number>, start: number, count: number,
 *            toWorld: THREE.Matrix4}} Triangles
 */

/**
 * The triangles of slot `slot` of a merged batch (baked in its frame, moved by a rule's move) or an instanced one
 * (its one mesh, placed by the slot's placement; a face's corners index that mesh).
 * @param {any} batch @param {number} slot @returns {Triangles}
 */
function elementTriangles(batch, slot) {
  const toWorld = new THREE.Matrix4().copy(batch.matrixWorld);
  if (batch.isInstancedBatch) {
    const b = /** @type {import('../instanced_batch.js').InstancedBatch} */ (batch);
    const all = /** @type {THREE.BufferAttribute} */ (b.geometry.index).array;
    toWorld.multiply(b.matrixOf(slot, new THREE.Matrix4()));
    return { P: b.geometry.attributes.position.array, scale: b.positionScale, all, start: 0, count: all.length, toWorld };
  }
  const b = /** @type {import('../merged_batch.js').MergedBatch} */ (batch);
  const move = b.moves[slot];
  if (move) toWorld.multiply(move);
  const { start, count } = b.levels[slot][0];
  return { P: /** @type {Float32Array} */ (b.vPos), scale: 1, all: /** @type {Uint32Array} */ (b.allIndex), start, count, toWorld };
}

/**
 * The corners and edges of the picked face, in world coordinates.
 * @param {Triangles} triangles @param {THREE.Face} face
 */
function faceOutline({ P, scale, all, start, count, toWorld }, face) {
  const vertex = (/** @type {THREE.Vector3} */ out, /** @type {number} */ v) => out.fromArray(P, v * 3).multiplyScalar(scale);
  vertex(_a, face.a);
  vertex(_b, face.b);
  vertex(_c, face.c);
  const normal = new THREE.Vector3().subVectors(_c, _b).cross(_q.subVectors(_a, _b)).normalize();
  const offset = normal.dot(_a);
  /** @type {Map<string, {a: number, b: number, n: number}>} edge key -> its vertices and how many triangles have it */
  const edgeCount = new Map();
  const step = KEY_STEP_M / scale;
  const key = (/** @type {number} */ v) => `${Math.round(P[v * 3] / step)},${Math.round(P[v * 3 + 1] / step)},${Math.round(P[v * 3 + 2] / step)}`;
  const addTriangle = (/** @type {number} */ a, /** @type {number} */ b, /** @type {number} */ c) => {
    for (const [u, v] of [[a, b], [b, c], [c, a]]) {
      const ku = key(u);
      const kv = key(v);
      const k = ku < kv ? `${ku}|${kv}` : `${kv}|${ku}`;
      const e = edgeCount.get(k);
      if (e) e.n += 1;
      else edgeCount.set(k, { a: u, b: v, n: 1 });
    }
  };
  if (count > MAX_FACE_SCAN) {
    addTriangle(face.a, face.b, face.c);
  } else {
    for (let k = start; k < start + count; k += 3) {
      vertex(_a, all[k]);
      vertex(_b, all[k + 1]);
      vertex(_c, all[k + 2]);
      _n.subVectors(_c, _b).cross(_q.subVectors(_a, _b));
      const len = _n.length();
      if (len === 0 || _n.dot(normal) / len < COPLANAR_COS || Math.abs(normal.dot(_a) - offset) > COPLANAR_M) continue;
      addTriangle(all[k], all[k + 1], all[k + 2]);
    }
  }
  const at = (/** @type {number} */ v) => vertex(new THREE.Vector3(), v).applyMatrix4(toWorld);
  /** @type {[THREE.Vector3, THREE.Vector3][]} */
  const edges = [];
  /** @type {Map<string, THREE.Vector3>} */
  const corners = new Map();
  for (const e of edgeCount.values()) {
    if (e.n !== 1) continue; // shared by two triangles of the face: inside it
    const a = at(e.a);
    const b = at(e.b);
    edges.push([a, b]);
    corners.set(key(e.a), a);
    corners.set(key(e.b), b);
  }
  return { corners: [...corners.values()], edges };
}

/** World point → client pixel. @param {import('../viewer.js').Viewer} viewer */
export function screenMapper(viewer) {
  const r = viewer.renderer.domElement.getBoundingClientRect();
  const camera = viewer.camera;
  return (/** @type {THREE.Vector3} */ p) => {
    _p.copy(p).project(camera);
    return new THREE.Vector2(r.left + ((_p.x + 1) / 2) * r.width, r.top + ((1 - _p.y) / 2) * r.height);
  };
}
