// Binds the twin state to the batched elements: applies visuals (colour, visibility, transform) as
// snapshots and deltas arrive, and keeps the selection highlight.
import * as THREE from 'three';
import { ModelEdges, Outline } from './edges.js';

const _color = new THREE.Color();
const _matrix = new THREE.Matrix4();
const _size = new THREE.Vector2();
const SELECTION_COLOR = 0x4da3ff;

export class TwinView {
  /**
   * @param {import('./viewer.js').Viewer} viewer
   * @param {import('./batcher.js').ElementBatches} batches
   * @param {import('./state.js').TwinState} state
   * @param {import('./labels.js').Labels} labels
   * @param {AbortSignal} signal ends this binding (a new scene replaces it)
   */
  constructor(viewer, batches, state, labels, signal) {
    this.viewer = viewer;
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
    state.addEventListener('reset', () => this.applyAll(), { signal });
    state.addEventListener('delta', (e) => {
      for (const id of /** @type {import('./state.js').DeltaEvent} */ (e).detail.visuals) this.apply(id);
      viewer.invalidate();
    }, { signal });
    signal.addEventListener('abort', () => this.#dispose());
    // Before each render: per-element frustum culling and level of detail (see ElementBatches.updateLod).
    const view = (/** @type {THREE.Camera} */ camera) => {
      const heightPx = viewer.renderer.getDrawingBufferSize(_size).y;
      batches.updateLod(camera, heightPx, viewer.world.matrixWorld, !viewer.renderer.xr.isPresenting);
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
    b.setColor(id, typeof v.color === 'string' ? _color.set(v.color) : null);
    b.setVisible(id, v.visible !== false);
    b.setTransform(id, transformMatrix(v.transform, _matrix));
    // A label, or a flag for an anomaly, floats above the element.
    const text = v.anomaly ? `⚠ ${v.label ?? 'anomaly'}` : v.label ?? null;
    this.labels.set(`el:${id}`, text, () => this.topOf(id), v.anomaly ? 'anomaly' : '');
    if (this.selected === id) this.select(id);
  }

  /** The middle of an element's top, where its label floats (model coordinates); null while it is hidden. @param {string} id */
  topOf(id) {
    if (!this.batches.isVisible(id)) return null;
    const box = this.batches.boxOf(id);
    return box ? box.getCenter(new THREE.Vector3()).setY(box.max.y) : null;
  }

  /** Outline the selected element (a box around what cannot be outlined: points, textured parts). @param {string|null} id */
  select(id) {
    this.selected = id;
    const outlined = this.outline.set(id);
    const box = id && !outlined ? this.batches.boxOf(id) : null;
    this.highlight.visible = Boolean(box && !box.isEmpty());
    if (box) this.highlight.box.copy(box).expandByScalar(0.02);
    if (id && id === this.hovered) this.hover(null);
    this.viewer.invalidate();
  }

  /** Outline the element under the pointer (not the selected one). @param {string|null} id */
  hover(id) {
    const show = id === this.selected ? null : id;
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
