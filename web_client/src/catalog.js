// The element catalogue. What every element needs at once — id, name, class and place in the tree — comes with the
// model (the GLB's nodes and their extras), so the tree works from the first frame; what only the element shown
// needs — its property sets, their units — comes from the server when it is shown (GET
// /api/scenes/{id}/elements/{eid}), and search asks the server's index. Nothing fetches the whole manifest (at
// 100 000 elements ~60 MB, beyond what a tab should parse on its main thread; docs/CLIENT.md "Element metadata").

/**
 * @typedef {{id: string, name: string, class: string, parent: (string|null), tile?: number, bbox?: any,
 *            triangles?: number, properties?: Record<string, any>, units?: Record<string, Record<string, string>>}} ElementRecord
 *   `units`: set -> property -> unit symbol, for the properties the model gives a unit
 * @typedef {{element: ElementRecord, commands?: {command: string, range?: number[], unit?: string}[]}} ElementDetail
 *   what the server says about one element (the live values in it are the session's business, not the catalogue's)
 */

// A search shows at most this many hits: enough to refine, cheap to render for 100 000 elements.
export const MAX_SEARCH_HITS = 200;
// Element details kept once fetched: the elements someone looked at lately, not the plant.
const DETAILS_KEPT = 256;
// A tiled scene's catalogue (tiles/elements.json) holds at most this many elements (scene/export/tiles.py).
const MAX_CATALOG_ELEMENTS = 10_000_000;

export class Catalog {
  /**
   * @param {ElementRecord[]} records every element, from the model
   * @param {string} [sceneId] the scene the server serves them as ('' = no server: the model's names only)
   */
  constructor(records, sceneId = '') {
    /** @type {Map<string, ElementRecord>} */
    this.byId = new Map(records.map((r) => [r.id, r]));
    /** @type {Map<string|null, string[]>} parent id (null = root) -> child ids, in file order */
    this.children = new Map();
    for (const r of records) {
      const parent = r.parent && this.byId.has(r.parent) ? r.parent : null;
      let list = this.children.get(parent);
      if (!list) this.children.set(parent, (list = []));
      list.push(r.id);
    }
    this.sceneId = sceneId;
    /** @type {Map<string, Promise<ElementDetail|null>>} the latest DETAILS_KEPT, oldest first */
    this.details = new Map();
  }

  /**
   * The records of a tiled scene's catalogue (tiles/elements.json: columns ids, names, classes + class, parent as
   * an index into ids, tile), checked: equal lengths, indices in range. `tile` is -1 for an element without
   * geometry. @param {any} c @returns {ElementRecord[]}
   */
  static columns(c) {
    const n = Array.isArray(c?.ids) ? c.ids.length : -1;
    const ok = n >= 0 && n <= MAX_CATALOG_ELEMENTS && ['names', 'class', 'parent', 'tile'].every((k) => Array.isArray(c[k]) && c[k].length === n)
      && Array.isArray(c.classes);
    if (!ok) throw new Error('the scene\'s element catalogue is not readable');
    return c.ids.map((/** @type {any} */ id, /** @type {number} */ i) => ({
      id: String(id), name: String(c.names[i] ?? ''), class: String(c.classes[c.class[i]] ?? ''),
      parent: Number.isInteger(c.parent[i]) && c.parent[i] >= 0 && c.parent[i] < n ? String(c.ids[c.parent[i]]) : null,
      tile: Number.isInteger(c.tile[i]) ? c.tile[i] : -1,
    }));
  }

  /** @param {string} id */
  get(id) {
    return this.byId.get(id);
  }

  /** @param {string} id @returns {string} a display name */
  label(id) {
    const r = this.byId.get(id);
    return r ? r.name || r.id : id;
  }

  /** @param {string} id @returns {string[]} ancestors from the root down, excluding `id` */
  ancestors(id) {
    const out = [];
    for (let p = this.byId.get(id)?.parent; p && this.byId.has(p); p = this.byId.get(p)?.parent) out.unshift(p);
    return out;
  }

  /**
   * What the server knows of one element (its property sets among it), fetched once and kept for a while; null
   * when it cannot be had (no server, an element the server does not know).
   * @param {string} id @returns {Promise<ElementDetail|null>}
   */
  detail(id) {
    let known = this.details.get(id);
    if (known) {
      this.details.delete(id); // most recently used last
    } else {
      known = this.sceneId ? getJson(`${this.#api()}/elements/${encodeURIComponent(id)}`) : Promise.resolve(null);
      known.then((d) => { if (!d) this.details.delete(id); }); // asked again next time (the server was away)
      if (this.details.size >= DETAILS_KEPT) this.details.delete(/** @type {string} */ (this.details.keys().next().value));
    }
    this.details.set(id, known);
    return known;
  }

  /**
   * Elements whose id, name or class contains every word of `query` (case-insensitive), from the server's index;
   * from the model's names when the server cannot answer.
   * @param {string} query @param {AbortSignal} [signal] @returns {Promise<ElementRecord[]>}
   */
  async find(query, signal) {
    if (!query.trim()) return [];
    const found = this.sceneId ? await getJson(`${this.#api()}/elements?brief=1&q=${encodeURIComponent(query.trim())}`, signal) : null;
    return found ? found.elements.slice(0, MAX_SEARCH_HITS) : this.search(query);
  }

  /**
   * The same search over the model's names, in the page.
   * @param {string} query
   */
  search(query) {
    const words = query.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    const hits = [];
    for (const r of this.byId.values()) {
      const hay = `${r.id} ${r.name} ${r.class}`.toLowerCase();
      if (words.every((w) => hay.includes(w))) {
        hits.push(r);
        if (hits.length >= MAX_SEARCH_HITS) break;
      }
    }
    return hits;
  }

  #api() {
    return `/api/scenes/${encodeURIComponent(this.sceneId)}`;
  }
}

/**
 * A JSON answer, or null when there is none (offline, refused, not found); an abort is thrown.
 * @param {string} url @param {AbortSignal} [signal]
 */
async function getJson(url, signal) {
  try {
    const res = await fetch(url, { signal });
    return res.ok ? await res.json() : null;
  } catch (e) {
    if (/** @type {Error} */ (e).name === 'AbortError') throw e;
    return null;
  }
}
