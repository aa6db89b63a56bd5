// Streaming a tiled scene (scene/export/tiles.py writes the tiles; docs/CLIENT.md *Tiles*): the index's coarse
// level (boxes of each tile's largest elements) is drawn at once, then tiles are loaded nearest-and-largest on
// screen first (screen-space size of their box, those in view before the rest), a few at a time, each read
// straight into batches that join the model's (ElementBatches.absorb); when the loaded tiles exceed the memory
// budget, those that matter least for the view are let go (ElementBatches.release) and their boxes come back.
// This module decides what is loaded; the batches decide what of it is drawn (culling, levels of detail).
import * as THREE from 'three';
import { INSTANCE_MAX_BATCHES_PER_TILE } from './batcher.js';
import { readModel } from './loader.js';

// Tiles downloaded and read at once: two keep the network and the reader busy without starving the frames.
const CONCURRENT_LOADS = 2;
// Default memory budget: the sum of the loaded tiles' `bytes` (file sizes; the batches hold a small multiple of
// it). 256 MB holds a 100 000-element plant whole; `?tile_budget_mb=N` sets it for a page.
const DEFAULT_BUDGET_MB = 256;
// What a client accepts of an index (the server checks it too: scene/export/tiles.py).
const MAX_TILES = 4096;
const MAX_IMPOSTORS = 64;
const TILE_FILE = /^tile-[0-9]{1,5}\.glb$/;
const IMPOSTOR_OPACITY = 0.85;

const _box = new THREE.Box3();
const _sphere = new THREE.Sphere();
const _frustum = new THREE.Frustum();
const _m = new THREE.Matrix4();
const _eye = new THREE.Vector3();

/**
 * @typedef {{lo: number[], hi: number[], rgb: number}} Impostor
 * @typedef {{file: string, lo: number[], hi: number[], elements: number, triangles: number, bytes: number,
 *            impostors: [number[], number[], number][]}} TileRecord
 * @typedef {{format: string, version: number, elements: number, lo: number[], hi: number[], tiles: TileRecord[],
 *            catalog: string}} TileIndex
 * @typedef {{record: TileRecord, box: THREE.Box3, state: 'idle'|'loading'|'loaded', batches: import('./batcher.js').ElementBatches|null,
 *            priority: number, abort: AbortController|null, wanted: boolean}} TileSlot
 *   wanted: asked for (request) — loaded before any other, and kept, until it is loaded and in view
 */

/**
 * The index's text, checked (counts, names, finite numbers); throws an Error saying what is wrong.
 * @param {string} text @returns {TileIndex}
 */
export function parseIndex(text) {
  const index = JSON.parse(text);
  const finite = (/** @type {any} */ p) => Array.isArray(p) && p.length === 3 && p.every(Number.isFinite);
  if (index?.format !== 'twinview-tiles' || index.version !== 1) throw new Error('not a TwinView tile index');
  if (!Array.isArray(index.tiles) || index.tiles.length > MAX_TILES) throw new Error('bad tile list');
  if (!finite(index.lo) || !finite(index.hi)) throw new Error('bad bounds');
  for (const t of index.tiles) {
    if (!TILE_FILE.test(t?.file) || !finite(t.lo) || !finite(t.hi) || !Number.isInteger(t.elements) || t.elements < 0
      || !Number.isFinite(t.bytes) || t.bytes < 0 || !Array.isArray(t.impostors) || t.impostors.length > MAX_IMPOSTORS
      || !t.impostors.every((/** @type {any} */ b) => Array.isArray(b) && finite(b[0]) && finite(b[1]) && Number.isInteger(b[2]))) {
      throw new Error(`bad tile ${String(t?.file).slice(0, 40)}`);
    }
  }
  return index;
}

/** The memory budget for a page, in bytes of tiles: `?tile_budget_mb=N`, else DEFAULT_BUDGET_MB. */
export function tileBudget(search = location.search) {
  const mb = Number(new URLSearchParams(search).get('tile_budget_mb'));
  return (Number.isFinite(mb) && mb > 0 ? mb : DEFAULT_BUDGET_MB) * 1024 * 1024;
}

export class TileStreamer extends EventTarget {
  /**
   * @param {{index: TileIndex, base: string, batches: import('./batcher.js').ElementBatches,
   *          viewer: import('./viewer.js').Viewer, budget?: number, signal: AbortSignal,
   *          arrived: (ids: string[]) => void, leaving: (ids: string[]) => void}} opts
   *   base: the URL of the tiles' folder (ends with '/'); arrived / leaving: a tile's element ids once it is in the
   *   batches / before it leaves them; a 'change' event follows either
   */
  constructor({ index, base, batches, viewer, budget = tileBudget(), signal, arrived, leaving }) {
    super();
    this.index = index;
    this.base = base;
    this.batches = batches;
    this.viewer = viewer;
    this.budget = budget;
    this.signal = signal;
    this.hooks = { arrived, leaving };
    /** @type {TileSlot[]} */
    this.tiles = index.tiles.map((record) => ({ record, box: new THREE.Box3(new THREE.Vector3(...record.lo), new THREE.Vector3(...record.hi)),
      state: 'idle', batches: null, priority: 0, abort: null, wanted: false }));
    /** bytes of the loaded tiles (their `bytes` in the index) */
    this.loadedBytes = 0;
    /** tiles loaded so far, counting reloads (for tests and benchmarks) */
    this.loads = 0;
    this.unloads = 0;
    /** @type {{file: string, at: number}[]} when each tile joined the batches (performance.now()) */
    this.arrivals = [];
    this.impostors = impostorMesh(index);
    this.impostors.name = 'tile-impostors';
    batches.group.add(this.impostors);
    this.hook = (/** @type {THREE.Camera} */ camera) => this.#schedule(camera);
    viewer.prerender.push(this.hook);
    signal.addEventListener('abort', () => {
      viewer.prerender.splice(viewer.prerender.indexOf(this.hook), 1);
      for (const t of this.tiles) t.abort?.abort();
      this.impostors.removeFromParent();
      this.impostors.geometry.dispose();
      /** @type {THREE.Material} */ (this.impostors.material).dispose();
    });
  }

  /**
   * Load tile `n` before any other (an element of it was selected); resolves once it is in the batches, or when
   * the scene goes. @param {number} n @returns {Promise<void>}
   */
  request(n) {
    const t = this.tiles[n];
    if (!t || t.state === 'loaded') return Promise.resolve();
    for (const u of this.tiles) u.wanted = u === t; // the last asked for: it stays until the view holds it
    this.viewer.invalidate(); // the next frame schedules it
    return new Promise((resolve) => {
      const done = () => {
        if (t.state !== 'loaded' && !this.signal.aborted) return;
        this.removeEventListener('change', done);
        resolve();
      };
      this.addEventListener('change', done);
      this.signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * The box of the tiles not in the batches (those `keep` accepts: by index), as the index bounds them — what Fit
   * and Home frame of elements not loaded; empty when there is none. @param {(n: number) => boolean} [keep]
   */
  pendingBox(keep = () => true) {
    const box = new THREE.Box3();
    this.tiles.forEach((t, n) => { if (t.state !== 'loaded' && keep(n)) box.union(t.box); });
    return box;
  }

  /** How many tiles are in the batches now. */
  get loaded() {
    return this.tiles.filter((t) => t.state === 'loaded').length;
  }

  /** Whether every tile is in (false once one had to go for the budget). */
  get complete() {
    return this.tiles.every((t) => t.state === 'loaded');
  }

  /**
   * Before each render: rank the tiles for this view, load the best ones not yet in, let the least ones go when
   * over budget. @param {THREE.Camera} camera
   */
  #schedule(camera) {
    if (this.signal.aborted) return;
    const world = this.batches.group.matrixWorld;
    _m.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse).multiply(world);
    _frustum.setFromProjectionMatrix(_m, camera.coordinateSystem);
    _eye.setFromMatrixPosition(camera.matrixWorld).applyMatrix4(_m.copy(world).invert());
    const ortho = /** @type {any} */ (camera).isOrthographicCamera;
    for (const t of this.tiles) {
      t.box.getBoundingSphere(_sphere);
      const d = ortho ? 1 : Math.max(_sphere.center.distanceTo(_eye) - _sphere.radius, 1e-3);
      // Screen-space size (the box's angular radius, below 1e3 but for the eye inside), tiles in view far ahead
      // of those out of it, and a tile asked for (request) ahead of all.
      const inView = _frustum.intersectsBox(t.box);
      if (t.wanted && inView && t.state === 'loaded') t.wanted = false; // the view holds it now (after the flight)
      t.priority = Math.min(_sphere.radius / d, 1e3) + (inView ? 1e4 : 0) + (t.wanted ? 1e8 : 0);
    }
    const ranked = [...this.tiles].sort((a, b) => b.priority - a.priority);
    let loading = this.tiles.filter((t) => t.state === 'loading').length;
    let planned = this.loadedBytes + this.tiles.reduce((n, t) => n + (t.state === 'loading' ? t.record.bytes : 0), 0);
    for (const t of ranked) {
      if (loading >= CONCURRENT_LOADS) break;
      if (t.state !== 'idle') continue;
      // Over budget: only for a tile that matters more than the least loaded one, which then goes.
      while (planned + t.record.bytes > this.budget) {
        const least = leastLoaded(ranked);
        if (!least || least.priority >= t.priority) break;
        planned -= least.record.bytes;
        this.#unload(least);
      }
      if (planned + t.record.bytes > this.budget && planned > 0) break; // one tile is always allowed
      planned += t.record.bytes;
      loading++;
      this.#load(t);
    }
  }

  /** @param {TileSlot} t */
  async #load(t) {
    t.state = 'loading';
    t.abort = new AbortController();
    const signal = AbortSignal.any([this.signal, t.abort.signal]);
    try {
      const url = this.base + t.record.file;
      const res = await fetch(url, { signal });
      if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
      const model = await readModel(await res.arrayBuffer(), url);
      if (signal.aborted) return;
      const tile = model.batch(INSTANCE_MAX_BATCHES_PER_TILE);
      this.batches.absorb(tile);
      this.viewer.clipModel(tile.group);
      Object.assign(t, { state: 'loaded', batches: tile, abort: null });
      this.loadedBytes += t.record.bytes;
      this.loads++;
      this.arrivals.push({ file: t.record.file, at: performance.now() });
      this.#showImpostors();
      this.hooks.arrived([...tile.elements.keys()]);
      this.dispatchEvent(new Event('change'));
      tile.addLods(model.meshSource, signal).then(() => this.viewer.invalidate(), () => {});
    } catch (e) {
      if (signal.aborted) return;
      console.warn(`tile ${t.record.file} not loaded:`, e);
      t.state = 'idle'; // tried again at a later frame
    } finally {
      if (t.state === 'loading') t.state = 'idle';
      t.abort = null;
      this.viewer.invalidate();
      // The next tiles now, for the last view, not at the next frame: on a software GL a frame of a large model
      // takes long, and tiles would come one frame apart.
      if (!this.signal.aborted) this.#schedule(this.viewer.camera);
    }
  }

  /** @param {TileSlot} t */
  #unload(t) {
    const tile = /** @type {import('./batcher.js').ElementBatches} */ (t.batches);
    this.hooks.leaving([...tile.elements.keys()]);
    this.batches.release(tile);
    Object.assign(t, { state: 'idle', batches: null });
    this.loadedBytes -= t.record.bytes;
    this.unloads++;
    this.#showImpostors();
    this.dispatchEvent(new Event('change'));
  }

  /** The coarse level draws the boxes of the tiles not loaded. */
  #showImpostors() {
    const geometry = this.impostors.geometry;
    const { all, ranges } = /** @type {{all: Uint32Array, ranges: {start: number, count: number}[]}} */ (geometry.userData);
    const shown = this.tiles.flatMap((t, i) => (t.state === 'loaded' ? [] : [ranges[i]]));
    const index = new Uint32Array(shown.reduce((n, r) => n + r.count, 0));
    let at = 0;
    for (const r of shown) {
      index.set(all.subarray(r.start, r.start + r.count), at);
      at += r.count;
    }
    geometry.setIndex(new THREE.BufferAttribute(index, 1)); // a few thousand boxes at most: a copy is cheap
    this.impostors.visible = index.length > 0;
  }
}

/** The loaded tile of lowest priority, or null. @param {TileSlot[]} ranked best first */
function leastLoaded(ranked) {
  for (let i = ranked.length - 1; i >= 0; i--) if (ranked[i].state === 'loaded') return ranked[i];
  return null;
}

/**
 * One mesh of every tile's impostor boxes (12 triangles each, flat, vertex colours), with the index range of each
 * tile in `geometry.userData.ranges` (of `all`; the index drawn holds the boxes of the tiles not loaded); not
 * pickable (raycast does nothing), as it stands for elements not loaded.
 * @param {TileIndex} index
 */
function impostorMesh(index) {
  const boxes = index.tiles.flatMap((t) => t.impostors);
  const position = new Float32Array(boxes.length * 24 * 3);
  const normal = new Float32Array(boxes.length * 24 * 3);
  const color = new Float32Array(boxes.length * 24 * 3);
  const indices = new Uint32Array(boxes.length * 36);
  const cube = new THREE.BoxGeometry(1, 1, 1);
  const cp = cube.attributes.position.array; // 24 corners (4 per face, for flat normals), 36 indices
  const cn = cube.attributes.normal.array;
  const ci = /** @type {THREE.BufferAttribute} */ (cube.index).array;
  const c = new THREE.Color();
  boxes.forEach(([lo, hi, rgb], b) => {
    c.setHex(rgb);
    for (let v = 0; v < 24; v++) {
      for (let k = 0; k < 3; k++) {
        const o = (b * 24 + v) * 3 + k;
        position[o] = lo[k] + (cp[v * 3 + k] + 0.5) * (hi[k] - lo[k]);
        normal[o] = cn[v * 3 + k];
      }
      color.set([c.r, c.g, c.b], (b * 24 + v) * 3);
    }
    for (let i = 0; i < 36; i++) indices[b * 36 + i] = b * 24 + ci[i];
  });
  cube.dispose();
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute('position', new THREE.BufferAttribute(position, 3));
  geometry.setAttribute('normal', new THREE.BufferAttribute(normal, 3));
  geometry.setAttribute('color', new THREE.BufferAttribute(color, 3));
  geometry.setIndex(new THREE.BufferAttribute(indices, 1));
  let start = 0;
  geometry.userData.ranges = index.tiles.map((t) => {
    const range = { start, count: t.impostors.length * 36 };
    start += range.count;
    return range;
  });
  geometry.userData.all = indices;
  const material = new THREE.MeshLambertMaterial({ vertexColors: true, transparent: true, opacity: IMPOSTOR_OPACITY });
  const mesh = new THREE.Mesh(geometry, material);
  mesh.raycast = () => {};
  return mesh;
}
