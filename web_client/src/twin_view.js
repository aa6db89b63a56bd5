// Binds the twin state to the batched elements: applies visuals (colour, visibility, transform) as
// snapshots and deltas arrive, composed with what the user chose to see (visibility.js), and keeps the
// selection highlight.
import * as THREE from 'three';
import { ModelEdges, Outline } from './edges.js';
import { budgetSettings, CameraMotion } from './frame_budget.js';
import { GHOST_OPACITY } from './visibility.js';

const _color = new THREE.Color();
const _matrix = new THREE.Matrix4();
const _size = new THREE.Vector2();
const SELECTION_COLOR = 0x4da3ff;
// An x-rayed element is drawn in its own colour's brightness, tinted towards this cool grey (desaturated).
const GHOST_TINT = new THREE.Color(0.72, 0.78, 0.86);
const GHOST_TINT_WEIGHT = 0.6;

export class TwinView {
  /**
   * @param {import('./viewer.js').Viewer} viewer
   * @param {import('./batcher.js').ElementBatches} batches
   * @param {import('./state.js').TwinState} state
   * @param {import('./labels.js').Labels} labels
   * @param {import('./visibility.js').Visibility} visibility what the user chose to see
   * @param {AbortSignal} signal ends this binding (a new scene replaces it)
   */
  constructor(viewer, batches, state, labels, visibility, signal) {
    this.viewer = viewer;
    this.visibility = visibility;
    this.labels = labels;
    this.batches = batches;
    this.state = state;
    this.signal = signal;
    /** set once the levels of detail are in the batches (read by bench/web.py) */
    this.lodsLoaded = false;
    /** @type {string|null} */
    this.selected = null;
    /** the selection's and the hover's outline (edges.js); a box for what it cannot outline */
    this.outline = new Outline(batches, 'selected');
    this.hoverOutline = new Outline(batches, 'hovered');
    /** @type {string|null} */
    this.hovered = null;
    this.highlight = new THREE.Box3Helper(new THREE.Box3(), SELECTION_COLOR);
    this.highlight.visible = false;
    /** feature edges, off until `edges.setEnabled(true)` */
    this.edges = new ModelEdges(batches, () => viewer.invalidate());
    viewer.world.add(batches.group, this.highlight);
    viewer.pickables.push(batches.group);
    /** @type {Set<string>} ids whose visual was applied, so a reset can restore the model look */
    this.touched = new Set();
    /** @type {Set<string>} ids placed by a visual's transform (the others stand where the model put them) */
    this.moved = new Set();
    /** the user's choices as last applied: a change re-draws only the elements whose choice differs */
    this.applied = visibility.save();
    visibility.addEventListener('change', () => this.#applyChoices(), { signal });
    // X-rayed elements are seen through, not picked.
    viewer.pickFilter = (hit) => !visibility.ghosted.has(batches.idOf(hit) ?? '');
    signal.addEventListener('abort', () => { viewer.pickFilter = null; });
    state.addEventListener('reset', () => this.applyAll(), { signal });
    state.addEventListener('delta', (e) => {
      for (const id of /** @type {import('./state.js').DeltaEvent} */ (e).detail.visuals) this.apply(id);
      viewer.invalidate();
    }, { signal });
    signal.addEventListener('abort', () => this.#dispose());
    const { budget, restMs } = budgetSettings(location.search, viewer.softwareGL);
    /** triangles a frame draws at most while the camera moves (0: no budget); `?budget=N`, frame_budget.js */
    this.budget = budget;
    /** whether the camera moves; once it rests (`?rest=MS`), a frame at full detail */
    this.motion = new CameraMotion(() => viewer.invalidate(), restMs);
    signal.addEventListener('abort', () => this.motion.dispose());
    // Before each render: per-element frustum culling, level of detail and, while the camera moves (not in XR),
    // the frame's triangle budget (see ElementBatches.updateLod).
    const view = (/** @type {THREE.Camera} */ camera) => {
      const heightPx = viewer.renderer.getDrawingBufferSize(_size).y;
      const xr = viewer.renderer.xr.isPresenting;
      const budget = this.motion.update(camera) && !xr && this.budget > 0 ? this.budget : Infinity;
      batches.updateLod(camera, heightPx, viewer.world.matrixWorld, !xr, budget);
      this.edges.update(camera, heightPx);
    };
    viewer.prerender.push(view);
    signal.addEventListener('abort', () => viewer.prerender.splice(viewer.prerender.indexOf(view), 1));
    // Time to first frame with the model (navigation start → this mark), read by bench/web.py.
    viewer.addEventListener('frame', () => performance.mark('twinview:first-frame'), { once: true, signal });
    this.applyAll();
  }

  /**
   * Load the model's levels of detail in the background; from then on each frame draws every element
   * at the level its size on screen needs.
   * @param {import('./batcher.js').MeshSource} meshSource the primitives of the model's glTF meshes
   */
  async useLods(meshSource) {
    const { viewer, batches, signal } = this;
    await new Promise((r) => viewer.addEventListener('frame', r, { once: true, signal })); // first frame first
    try {
      await batches.addLods(meshSource, signal);
    } catch (e) {
      console.warn('levels of detail not used:', e);
      return;
    }
    this.lodsLoaded = true;
    viewer.invalidate();
  }

  #dispose() {
    for (const id of this.touched) this.labels.set(`el:${id}`, null, () => null);
    this.highlight.removeFromParent();
    this.edges.dispose();
    this.outline.dispose();
    this.hoverOutline.dispose();
    this.viewer.pickables.splice(this.viewer.pickables.indexOf(this.batches.group), 1);
    this.batches.dispose();
    this.viewer.invalidate();
  }

  /**
   * Elements arrived with a tile (tiles.js): draw those the state or the user's choices concern as they say (the
   * others are drawn as loaded), outline the selection if it is among them, give the new batches edges.
   * @param {string[]} ids
   */
  arrived(ids) {
    const user = this.visibility;
    for (const id of ids) {
      if (this.state.visuals.has(id) || user.hidden.has(id) || user.ghosted.has(id) || user.opacity.has(id)
        || user.colors.has(id) || id === this.selected) this.apply(id);
    }
    this.edges.sync();
    this.viewer.invalidate();
  }

  /** A tile's elements are about to leave the batches: the outlines drawn on its batches go first. */
  leaving() {
    this.outline.dispose();
    this.hoverOutline.dispose();
    this.hovered = null;
  }

  /** After a tile left: edges for the batches left, the selection outlined again where it still is. */
  left() {
    this.edges.sync();
    this.select(this.selected);
  }

  applyAll() {
    for (const id of this.touched) if (!this.state.visuals.has(id)) this.apply(id);
    for (const id of this.state.visuals.keys()) this.apply(id);
    this.viewer.invalidate();
  }

  /** Apply one element's visual as a whole (omitted fields take their defaults, as the spec says). @param {string} id */
  apply(id) {
    const v = this.state.visuals.get(id) ?? {};
    const b = this.batches;
    if (!b.elements.has(id)) return;
    this.touched.add(id);
    this.#look(id, v);
    if (v.transform || this.moved.has(id)) { // most visuals only colour: a replay's 10 000 place nothing
      b.setTransform(id, transformMatrix(v.transform, _matrix));
      if (v.transform) this.moved.add(id);
      else this.moved.delete(id);
    }
    // A label, or a flag for an anomaly, floats above the element.
    const text = v.anomaly ? `⚠ ${v.label ?? 'anomaly'}` : v.label ?? null;
    this.labels.set(`el:${id}`, text, () => this.topOf(id), v.anomaly ? 'anomaly' : '');
    if (this.selected === id) this.select(id);
  }

  /**
   * Colour, visibility and opacity: the live visual's, unless the user hid, x-rayed, coloured (through a
   * viewpoint) or made the element see-through.
   * @param {string} id @param {import('./protocol.js').Visual} v
   */
  #look(id, v) {
    const b = this.batches;
    const user = this.visibility;
    const hex = user.colors.get(id) ?? (typeof v.color === 'string' ? v.color : null);
    let color = hex ? _color.set(hex) : null;
    const ghost = user.ghosted.has(id);
    if (ghost) {
      const c = color ?? /** @type {import('./batcher.js').ElementEntry} */ (b.elements.get(id)).baseColor;
      const grey = 0.3 * c.r + 0.59 * c.g + 0.11 * c.b;
      color = _color.setRGB(grey, grey, grey).lerp(GHOST_TINT, GHOST_TINT_WEIGHT);
    }
    b.setColor(id, color);
    b.setVisible(id, v.visible !== false && !user.hidden.has(id));
    b.setOpacity(id, ghost ? GHOST_OPACITY : user.opacity.get(id) ?? 1);
  }

  /** The user's choices changed: draw again the elements whose choice differs from what was applied. */
  #applyChoices() {
    const now = this.visibility.save();
    const was = this.applied;
    /** @type {Set<string>} */
    const changed = new Set();
    /** @param {Map<string, any>|Set<string>} a @param {Map<string, any>|Set<string>} b */
    const differ = (a, b) => {
      for (const [id, v] of a.entries()) if (!b.has(id) || (b instanceof Map && b.get(id) !== v)) changed.add(id);
      for (const id of b.keys()) if (!a.has(id)) changed.add(id);
    };
    differ(was.hidden, now.hidden);
    differ(was.ghosted, now.ghosted);
    differ(was.opacity, now.opacity);
    differ(was.colors, now.colors);
    for (const id of changed) if (this.batches.elements.has(id)) this.#look(id, this.state.visuals.get(id) ?? {});
    this.applied = now;
    // A hidden element loses its outline (and one shown again gets it back).
    if (this.selected) this.select(this.selected);
    const hovered = this.hovered;
    this.hovered = null;
    this.hover(hovered);
    this.viewer.invalidate();
  }

  /** The middle of an element's top, where its label floats (model coordinates); null while it is hidden. @param {string} id */
  topOf(id) {
    if (!this.batches.isVisible(id)) return null;
    const box = this.batches.boxOf(id);
    return box ? box.getCenter(new THREE.Vector3()).setY(box.max.y) : null;
  }

  /**
   * World box of elements as placed: of a container (a storey), of everything under it. Null when none is drawn.
   * @param {Iterable<string>} ids @returns {THREE.Box3|null}
   */
  boxOf(ids) {
    const box = new THREE.Box3();
    for (const id of this.visibility.expand(ids)) {
      const b = this.batches.boxOf(id);
      if (b) box.union(b);
    }
    return box.isEmpty() ? null : box;
  }

  /**
   * Outline the selected element; a box around what cannot be outlined (points, textured parts) and around a
   * container's contents; nothing while the element is hidden. @param {string|null} id an element, or a container
   */
  select(id) {
    this.selected = id;
    const element = id !== null && this.batches.elements.has(id);
    const shown = id !== null && (!element || this.batches.isVisible(id));
    const outlined = this.outline.set(shown ? id : null);
    const box = shown && !(outlined && element) ? this.boxOf([id]) : null;
    this.highlight.visible = Boolean(box && !box.isEmpty());
    if (box) this.highlight.box.copy(box).expandByScalar(0.02);
    if (id && id === this.hovered) this.hover(null);
    this.viewer.invalidate();
  }

  /** Outline the element under the pointer (not the selected one, nor a hidden one). @param {string|null} id */
  hover(id) {
    const show = id === this.selected || (id !== null && !this.batches.isVisible(id)) ? null : id;
    if (show === this.hovered) return;
    this.hovered = show;
    this.hoverOutline.set(show);
    this.viewer.invalidate();
  }
}

const _q = new THREE.Quaternion();
const _axis = new THREE.Vector3();

/**
 * The matrix of a visual's transform {translate [x,y,z] m, rotate [x,y,z,degrees], scale [x,y,z]}.
 * @param {import('./protocol.js').Transform|null|undefined} t @param {THREE.Matrix4} out
 * @returns {THREE.Matrix4|null}
 */
function transformMatrix(t, out) {
  if (!t || typeof t !== 'object') return null;
  const [x = 0, y = 0, z = 0, deg = 0] = t.rotate ?? [];
  _q.setFromAxisAngle(_axis.set(x, y, z).normalize(), THREE.MathUtils.degToRad(deg));
  return out.compose(new THREE.Vector3(...(t.translate ?? [0, 0, 0])), _q, new THREE.Vector3(...(t.scale ?? [1, 1, 1])));
}
