// What this user has chosen to see: hidden, isolated, x-rayed (ghosted: faint, grey, not pickable) and
// see-through elements, and the colours a viewpoint brought. It sits on top of the live look (rules): TwinView
// draws an element shown only when both say so. A viewpoint (topic, procedure step, presenter) captures and
// restores it in BCF's terms: a default and its exceptions, where a container's id (a storey, a building: an
// element without geometry of its own) stands for every element under it.

// An x-rayed element keeps this much of its opacity: there, but out of the way.
export const GHOST_OPACITY = 0.2;
// The choice of transparencies the menus offer (1: opaque again).
export const OPACITIES = [0.7, 0.4, 0.15, 1];

/**
 * @typedef {Pick<import('./protocol.js').Viewpoint, 'hidden'|'default_visible'|'xray'|'xray_default'|'colored'|'transparent'>} VisibilityFields
 * @typedef {{drawable: (id: string) => boolean, all: () => Iterable<string>,
 *            children: (id: string|null) => readonly string[]}} Scope
 *   drawable: whether an id has geometry of its own; all: every drawable id; children: the tree below an id
 *   (null: the roots), from the catalogue
 */

export class Visibility extends EventTarget {
  constructor() {
    super();
    /** @type {Set<string>} drawable ids the user hid */
    this.hidden = new Set();
    /** @type {Set<string>} drawable ids drawn as x-ray */
    this.ghosted = new Set();
    /** @type {Map<string, number>} drawable id -> opacity below 1 */
    this.opacity = new Map();
    /** @type {Map<string, string>} drawable id -> "#rrggbb" a viewpoint coloured it */
    this.colors = new Map();
    /** @type {Scope} */
    this.scope = { drawable: () => false, all: () => [], children: () => [] };
  }

  /** @param {Scope} scope a new scene's elements: what was chosen for the last one is forgotten */
  use(scope) {
    this.scope = scope;
    this.#reset();
  }

  /**
   * The drawable ids at and under each id (a container stands for its contents).
   * @param {Iterable<string>} ids @returns {Set<string>}
   */
  expand(ids) {
    /** @type {Set<string>} */
    const out = new Set();
    const { drawable, children } = this.scope;
    const stack = [...ids];
    for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
      if (drawable(id)) out.add(id);
      stack.push(...children(id));
    }
    return out;
  }

  /** @param {Iterable<string>} ids */
  hide(ids) {
    for (const id of this.expand(ids)) this.hidden.add(id);
    this.#changed(true);
  }

  /** @param {Iterable<string>} ids */
  show(ids) {
    for (const id of this.expand(ids)) this.hidden.delete(id);
    this.#changed(true);
  }

  /** Show these (and what is under them) and hide everything else. @param {Iterable<string>} ids */
  isolate(ids) {
    const keep = this.expand(ids);
    this.hidden = new Set([...this.scope.all()].filter((id) => !keep.has(id)));
    this.#changed(true);
  }

  /** Draw everything else as x-ray; these are shown solid. @param {Iterable<string>} ids */
  xrayOthers(ids) {
    const keep = this.expand(ids);
    for (const id of keep) this.hidden.delete(id);
    this.ghosted = new Set([...this.scope.all()].filter((id) => !keep.has(id)));
    this.#changed(true);
  }

  /** @param {Iterable<string>} ids @param {number} opacity 1: opaque again */
  setOpacity(ids, opacity) {
    for (const id of this.expand(ids)) {
      if (opacity < 1) this.opacity.set(id, opacity);
      else this.opacity.delete(id);
    }
    this.#changed(true);
  }

  /** Everything shown as loaded: nothing hidden, x-rayed, see-through or coloured by a viewpoint. */
  showAll() {
    this.#reset();
    this.#changed(true);
  }

  /** Whether the user's choices change anything (then "Show all" has work to do). */
  get active() {
    return Boolean(this.hidden.size || this.ghosted.size || this.opacity.size || this.colors.size);
  }

  /**
   * How ids are shown: 'shown', 'hidden', or 'mixed' when some of them (or of a container's contents) are hidden.
   * @param {Iterable<string>} ids @returns {'shown'|'hidden'|'mixed'}
   */
  stateOf(ids) {
    if (!this.hidden.size) return 'shown'; // the usual case, without walking a site's 100 000 elements
    let shown = 0;
    let hidden = 0;
    for (const x of this.expand(ids)) {
      if (this.hidden.has(x)) hidden++;
      else shown++;
      if (shown && hidden) return 'mixed';
    }
    return hidden ? 'hidden' : 'shown';
  }

  /**
   * The state as a viewpoint says it, as short as it can: each set or its complement (the default flips),
   * elements one by one when they fit in `budget` ids (what other BCF tools read best), else whole containers.
   * Null when even that does not fit.
   * @param {number} budget component ids left for these lists
   * @param {Map<string, string>} liveColors colours the live rules give elements now (kept with the view)
   * @param {Set<string>} liveHidden elements the live rules hide now (kept hidden with the view)
   * @returns {VisibilityFields|null}
   */
  capture(budget, liveColors, liveHidden) {
    const all = [...this.scope.all()];
    const pick = (/** @type {Set<string>} */ set) => (set.size > all.length / 2
      ? { flipped: true, set: new Set(all.filter((id) => !set.has(id))) } : { flipped: false, set });
    const hidden = pick(new Set([...this.hidden, ...liveHidden]));
    const ghosted = pick(this.ghosted);
    /** @type {Map<string, Set<string>>} */
    const byColor = new Map();
    for (const [id, color] of [...liveColors, ...this.colors]) {
      for (const set of byColor.values()) set.delete(id); // a viewpoint's colour wins over the live one
      const set = byColor.get(color) ?? new Set();
      byColor.set(color, set.add(id));
    }
    /** @type {Map<number, Set<string>>} */
    const byOpacity = new Map();
    for (const [id, opacity] of this.opacity) byOpacity.set(opacity, (byOpacity.get(opacity) ?? new Set()).add(id));
    const sets = [hidden.set, ghosted.set, ...byColor.values(), ...byOpacity.values()];
    const leaves = sets.reduce((n, s) => n + s.size, 0) <= budget;
    const list = (/** @type {Set<string>} */ set) => (leaves ? [...set] : this.#compact(set));
    const fields = {
      hidden: list(hidden.set),
      default_visible: !hidden.flipped,
      xray: list(ghosted.set),
      xray_default: ghosted.flipped,
      colored: [...byColor].filter(([, s]) => s.size).map(([color, s]) => ({ color, ids: list(s) })),
      transparent: [...byOpacity].map(([opacity, s]) => ({ opacity, ids: list(s) })),
    };
    const count = fields.hidden.length + fields.xray.length + [...fields.colored, ...fields.transparent]
      .reduce((n, g) => n + g.ids.length, 0);
    return count <= budget ? fields : null;
  }

  /**
   * Take a viewpoint's state (what it does not say: shown, solid, opaque, uncoloured).
   * @param {Partial<VisibilityFields>} vp
   */
  restore(vp) {
    const all = () => [...this.scope.all()];
    const hidden = this.expand(vp.hidden ?? []);
    this.hidden = vp.default_visible === false ? new Set(all().filter((id) => !hidden.has(id))) : hidden;
    const xray = this.expand(vp.xray ?? []);
    this.ghosted = vp.xray_default ? new Set(all().filter((id) => !xray.has(id))) : xray;
    this.opacity = new Map();
    for (const g of vp.transparent ?? []) {
      if (Number.isFinite(g.opacity) && g.opacity > 0 && g.opacity < 1) for (const id of this.expand(g.ids)) this.opacity.set(id, g.opacity);
    }
    this.colors = new Map();
    for (const g of vp.colored ?? []) {
      if (/^#[0-9a-f]{6}$/i.test(g.color)) for (const id of this.expand(g.ids)) this.colors.set(id, g.color);
    }
    this.#changed(false);
  }

  /** A copy of the state, to `load` again later. */
  save() {
    return { hidden: new Set(this.hidden), ghosted: new Set(this.ghosted), opacity: new Map(this.opacity),
      colors: new Map(this.colors) };
  }

  /** @param {ReturnType<Visibility['save']>} saved */
  load(saved) {
    Object.assign(this, saved);
    this.#changed(false);
  }

  /**
   * A set of drawable ids as containers where a container's whole contents are in it, else element by element.
   * @param {Set<string>} set @returns {string[]}
   */
  #compact(set) {
    const { drawable, children } = this.scope;
    /**
     * @param {string} id
     * @returns {{total: number, covered: number, listed: string[]}} drawable ids at and under `id`, how many of them
     *   are in `set`, and how to list those
     */
    const visit = (id) => {
      const own = drawable(id);
      let total = own ? 1 : 0;
      let covered = own && set.has(id) ? 1 : 0;
      const listed = covered ? [id] : [];
      for (const child of children(id)) {
        const below = visit(child);
        total += below.total;
        covered += below.covered;
        listed.push(...below.listed);
      }
      return { total, covered, listed: !own && total > 0 && covered === total ? [id] : listed };
    };
    const out = children(null).flatMap((root) => visit(root).listed);
    // Elements the catalogue does not reach (not in the model's tree) are listed as they are.
    const reached = this.expand(children(null));
    for (const id of set) if (!reached.has(id)) out.push(id);
    return out;
  }

  #reset() {
    this.hidden = new Set();
    this.ghosted = new Set();
    this.opacity = new Map();
    this.colors = new Map();
  }

  /** @param {boolean} byUser the user chose it (not a viewpoint restored) */
  #changed(byUser) {
    this.dispatchEvent(new CustomEvent('change', { detail: { byUser } }));
  }
}
