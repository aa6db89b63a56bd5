// The frame's triangle budget. Each merged and instanced batch first chooses, per element, what the view wants
// (nothing when hidden or out of the frustum, else the level of detail its size on screen needs) and its
// projected size in pixels. While the camera moves, a frame draws at most `budget` triangles: when what the
// view wants is more, the elements smallest on screen are swapped to their coarsest level first (a plant's
// pipes and valves have one: `twinview build --lod`), and if that is still too much the smallest are left out,
// until the rest fits. When the camera has rested for REST_MS, the next frame draws everything the view wants
// (full detail by the LOD rule). Levels share their element's slot, so colour, visibility, x-ray, selection and
// picking (always against full detail) are the same on every level; a left-out element is only not drawn.
//
// The cut is found with a histogram of projected sizes (BUCKETS_PER_OCTAVE buckets per doubling), not a sort:
// two passes over the elements whatever their number, and every element of a bucket is treated alike, so what
// is drawn stays within the budget (a bucket's worth under it at most).

/**
 * What a batch offers the budget: per slot, the level the view wants (NOT_DRAWN: nothing), its projected size in
 * pixels, and its levels (finest first, each with its triangles).
 * @typedef {{slots: number, wanted: Uint8Array, px: Float32Array, levelsAt: (i: number) => {triangles: number}[]}} Budgeted
 */
/** @typedef {{coarsenBelow: number, dropBelow: number}} Cut elements under these sizes (px) go coarsest / are left out */

export const NOT_DRAWN = 255;
/** Triangles per frame while the camera moves, on a software GL (~30 ms a frame on SwiftShader here: BENCHMARKS.md §3). */
export const BUDGET_SOFTWARE_GL = 500_000;
/** On a GPU: a mid-range one draws this in a few ms. */
export const BUDGET_GPU = 8_000_000;
/** The camera rests when it has not moved for this long (ms); then a frame draws at full detail. */
export const REST_MS = 250;
/** `?rest=` at most an hour (a timer of more than 2^31 ms would fire at once). */
const MAX_REST_MS = 3_600_000;
/** No cut: everything the view wants. */
export const NO_CUT = Object.freeze({ coarsenBelow: 0, dropBelow: 0 });
const BUCKETS_PER_OCTAVE = 4;
const MIN_OCTAVE = -8; // 1/256 px
const OCTAVES = 24; // up to 65 536 px
const BUCKETS = OCTAVES * BUCKETS_PER_OCTAVE;
const _full = new Float64Array(BUCKETS);
const _coarse = new Float64Array(BUCKETS);

/**
 * The budget a page asks for: `?budget=N` triangles (0: none), else by the kind of GL; and how long the camera
 * must rest before a frame at full detail, `?rest=MS` (else REST_MS).
 * @param {string} search the page's query string @param {boolean} softwareGL
 * @returns {{budget: number, restMs: number}}
 */
export function budgetSettings(search, softwareGL) {
  const q = new URLSearchParams(search);
  /** @param {string} name @param {number} otherwise @param {number} most */
  const count = (name, otherwise, most) => {
    const asked = Number(q.get(name) ?? NaN);
    return Number.isFinite(asked) && asked >= 0 ? Math.min(Math.floor(asked), most) : otherwise;
  };
  return {
    budget: count('budget', softwareGL ? BUDGET_SOFTWARE_GL : BUDGET_GPU, Number.MAX_SAFE_INTEGER),
    restMs: count('rest', REST_MS, MAX_REST_MS),
  };
}

/** @param {number} px @returns {number} the histogram bucket of a projected size */
function bucketOf(px) {
  const b = Math.floor((Math.log2(Math.max(px, 1e-9)) - MIN_OCTAVE) * BUCKETS_PER_OCTAVE);
  return Math.min(Math.max(b, 0), BUCKETS - 1);
}

/** @param {number} b @returns {number} the smallest size (px) above bucket b */
function upperEdge(b) {
  return b === BUCKETS - 1 ? Infinity : 2 ** ((b + 1) / BUCKETS_PER_OCTAVE + MIN_OCTAVE);
}

/**
 * Where to cut so that what the batches draw fits `budget` triangles (NO_CUT when it already does).
 * @param {Budgeted[]} batches @param {number} budget @returns {Cut}
 */
export function cutFor(batches, budget) {
  _full.fill(0);
  _coarse.fill(0);
  let total = 0;
  for (const b of batches) {
    const { wanted, px } = b;
    for (let i = 0; i < b.slots; i++) {
      const level = wanted[i];
      if (level === NOT_DRAWN) continue;
      const levels = b.levelsAt(i);
      const k = bucketOf(px[i]);
      const t = levels[level].triangles;
      _full[k] += t;
      _coarse[k] += Math.min(t, levels[levels.length - 1].triangles);
      total += t;
    }
  }
  if (total <= budget) return NO_CUT;
  for (let k = 0; k < BUCKETS; k++) { // smallest first: to their coarsest level
    total -= _full[k] - _coarse[k];
    if (total <= budget) return { coarsenBelow: upperEdge(k), dropBelow: 0 };
  }
  for (let k = 0; k < BUCKETS; k++) { // still too much: leave the smallest out
    total -= _coarse[k];
    if (total <= budget) return { coarsenBelow: Infinity, dropBelow: upperEdge(k) };
  }
  return { coarsenBelow: Infinity, dropBelow: Infinity };
}

/**
 * Per slot, what to draw under `cut`, into `drawn`; whether anything changed.
 * @param {Budgeted & {drawn: Uint8Array}} b @param {Cut} cut
 */
export function applyCut(b, cut) {
  const { wanted, px, drawn } = b;
  let changed = false;
  for (let i = 0; i < b.slots; i++) {
    let level = wanted[i];
    if (level !== NOT_DRAWN && px[i] < cut.coarsenBelow) {
      level = px[i] < cut.dropBelow ? NOT_DRAWN : b.levelsAt(i).length - 1;
    }
    if (drawn[i] !== level) {
      drawn[i] = level;
      changed = true;
    }
  }
  return changed;
}

/**
 * Whether the camera moves: it did within the last `restMs` (its first frame is no move). Once it rests,
 * `onRest` is called (to draw a frame at full detail).
 */
export class CameraMotion {
  /** @param {() => void} onRest @param {number} [restMs] */
  constructor(onRest, restMs = REST_MS) {
    this.onRest = onRest;
    this.restMs = restMs;
    /** the view and projection matrices last seen */
    this.last = new Float64Array(32);
    this.seen = false;
    /** the rest timer: pending while the camera moves */
    this.timer = 0;
  }

  /** Note the camera of this frame. @param {import('three').Camera} camera @returns {boolean} whether it moves */
  update(camera) {
    const view = camera.matrixWorld.elements;
    const proj = camera.projectionMatrix.elements;
    let same = true;
    for (let i = 0; i < 16; i++) {
      if (this.last[i] !== view[i] || this.last[16 + i] !== proj[i]) same = false;
      this.last[i] = view[i];
      this.last[16 + i] = proj[i];
    }
    if (!same && this.seen) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => { this.timer = 0; this.onRest(); }, this.restMs);
    }
    this.seen = true;
    return this.timer !== 0;
  }

  dispose() {
    clearTimeout(this.timer);
    this.timer = 0;
  }
}
