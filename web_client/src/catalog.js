// The element catalogue: names, classes, hierarchy and IFC property sets, from the scene manifest
// (falling back to the ids, names and nesting found in the GLB when the manifest is missing).

/**
 * @typedef {{id: string, name: string, class: string, parent: (string|null), bbox?: any,
 *            triangles?: number, properties?: Record<string, any>, units?: Record<string, Record<string, string>>}} ElementRecord
 *   `units`: set -> property -> unit symbol, for the properties the model gives a unit
 */

// A search shows at most this many hits: enough to refine, cheap to render for 100 000 elements.
export const MAX_SEARCH_HITS = 200;

export class Catalog {
  /** @param {ElementRecord[]} records */
  constructor(records) {
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
   * Elements whose id, name or class contains every word of `query` (case-insensitive).
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
}

/**
 * Fetch the manifest; null when it cannot be had (the GLB's own names then do).
 * @param {string} url @param {AbortSignal} [signal]
 * @returns {Promise<ElementRecord[]|null>}
 */
export async function fetchManifest(url, signal) {
  try {
    const res = await fetch(url, { signal });
    if (!res.ok) return null;
    const m = await res.json();
    return Array.isArray(m) ? m : Array.isArray(m.elements) ? m.elements : null;
  } catch (e) {
    if (/** @type {Error} */ (e).name === 'AbortError') throw e;
    return null;
  }
}
