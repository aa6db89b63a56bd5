// The element tree (spatial hierarchy from the manifest) and the search box above it.
// Children are built when a node is first expanded, so 100 000 elements cost nothing until opened.
import { h, replace } from './dom.js';

// At load the tree opens this many levels, and only nodes with at most this many children.
const AUTO_EXPAND_DEPTH = 4;
const AUTO_EXPAND_MAX_CHILDREN = 30;

export class TreePanel {
  /**
   * @param {HTMLElement} root @param {HTMLInputElement} searchInput
   * @param {import('../catalog.js').Catalog} catalog
   * @param {(id: string) => void} onSelect
   * @param {AbortSignal} signal ends this panel (a new scene replaces it)
   */
  constructor(root, searchInput, catalog, onSelect, signal) {
    this.root = root;
    this.catalog = catalog;
    this.onSelect = onSelect;
    /** @type {Map<string, HTMLElement>} id -> its <li>, for nodes built so far */
    this.items = new Map();
    /** @type {string|null} */
    this.selected = null;
    this.list = h('ul', { class: 'tree', role: 'tree' });
    this.results = h('ul', { class: 'results', hidden: true });
    replace(root, this.results, this.list);
    this.#fill(this.list, null);
    this.#expandTop(null, 0);
    searchInput.addEventListener('input', () => this.search(searchInput.value), { signal });
  }

  /** @param {HTMLElement} ul @param {string|null} parent */
  #fill(ul, parent) {
    for (const id of this.catalog.children.get(parent) ?? []) ul.appendChild(this.#item(id));
  }

  /** @param {string} id */
  #item(id) {
    const rec = this.catalog.get(id);
    const kids = this.catalog.children.get(id);
    const twisty = h('button', { class: 'twisty', 'aria-label': 'expand', hidden: !kids }, '▸');
    const label = h('span', { class: 'label', title: `id: ${id}`, tabindex: 0 }, rec?.name || id, h('small', null, ` ${rec?.class ?? ''}`));
    const li = h('li', { role: 'treeitem', dataset: { id } }, twisty, label);
    twisty.addEventListener('click', () => this.#toggle(li, id));
    label.addEventListener('click', () => this.onSelect(id));
    label.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') this.onSelect(id);
    });
    this.items.set(id, li);
    return li;
  }

  /**
   * Open the spatial levels (project, site, building, storeys) but not long lists of elements.
   * @param {string|null} parent @param {number} depth
   */
  #expandTop(parent, depth) {
    for (const id of this.catalog.children.get(parent) ?? []) {
      const kids = this.catalog.children.get(id);
      const li = this.items.get(id);
      if (!kids || !li || depth >= AUTO_EXPAND_DEPTH || kids.length > AUTO_EXPAND_MAX_CHILDREN) continue;
      this.#toggle(li, id, true);
      this.#expandTop(id, depth + 1);
    }
  }

  /** @param {HTMLElement} li @param {string} id @param {boolean} [open] */
  #toggle(li, id, open) {
    let ul = /** @type {HTMLElement|null} */ (li.querySelector(':scope > ul'));
    if (!ul) {
      ul = h('ul', { role: 'group' });
      this.#fill(ul, id);
      li.appendChild(ul);
      ul.hidden = true;
    }
    ul.hidden = open === undefined ? !ul.hidden : !open;
    /** @type {HTMLElement} */ (li.firstChild).textContent = ul.hidden ? '▸' : '▾';
  }

  /** Show `id` as selected, expanding its ancestors and scrolling it into view. @param {string|null} id */
  select(id) {
    if (this.selected) this.items.get(this.selected)?.classList.remove('selected');
    this.selected = id;
    if (!id) return;
    for (const a of this.catalog.ancestors(id)) {
      const li = this.items.get(a);
      if (li) this.#toggle(li, a, true);
    }
    const li = this.items.get(id);
    li?.classList.add('selected');
    li?.scrollIntoView({ block: 'nearest' });
  }

  /** @param {string} query */
  search(query) {
    const hits = this.catalog.search(query);
    this.results.hidden = !query.trim();
    this.list.hidden = !this.results.hidden;
    // By name and class, the id on demand (tooltip; the search matches it too).
    replace(this.results, ...(hits.length ? hits.map((r) => h('li', { dataset: { id: r.id }, title: `id: ${r.id}`, onclick: () => this.onSelect(r.id) },
      r.name || r.id, h('small', null, ` ${r.class}`))) : [h('li', { class: 'empty' }, 'No match')]));
  }
}
