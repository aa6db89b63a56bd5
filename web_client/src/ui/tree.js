// The element tree (spatial hierarchy, from the model's nodes) and the search box above it (the server's index),
// with an eye per node (a storey's hides everything on it) and, below, the elements by class (and by layer, where
// records name layers), each with its eye. Right-click, long-press or the Menu key on a row opens the element menu.
// Children are built when a node is first expanded, TREE_PAGE rows at a time, so 100 000 elements cost nothing
// until opened, and a storey of 20 000 costs a page.
import { onLongPress } from './context_menu.js';
import { h, replace } from './dom.js';

// At load the tree opens this many levels, and only nodes with at most this many children.
const AUTO_EXPAND_DEPTH = 4;
const AUTO_EXPAND_MAX_CHILDREN = 30;
// Rows built per "Show more": a few screens' worth.
export const TREE_PAGE = 200;

export class TreePanel {
  /**
   * @param {HTMLElement} root @param {HTMLInputElement} searchInput
   * @param {import('../catalog.js').Catalog} catalog
   * @param {(id: string) => void} onSelect
   * @param {{visibility: import('../visibility.js').Visibility,
   *          onMenu: (target: {ids: string[], label: string, id: string|null}, x: number, y: number) => void}} choices
   *   the eyes' state, and the element menu for a row (`id`: the element or container it is, null for a class)
   * @param {AbortSignal} signal ends this panel (a new scene replaces it)
   */
  constructor(root, searchInput, catalog, onSelect, choices, signal) {
    this.root = root;
    this.catalog = catalog;
    this.onSelect = onSelect;
    this.choices = choices;
    this.signal = signal;
    /** @type {Map<string, {ids: string[], eye: HTMLButtonElement}>} class or layer rows: their elements and eye */
    this.groupRows = new Map();
    /** @type {Map<string, HTMLElement>} id -> its <li>, for nodes built so far */
    this.items = new Map();
    /** @type {string|null} */
    this.selected = null;
    /** @type {AbortController|null} the search under way */
    this.searching = null;
    this.list = h('ul', { class: 'tree', role: 'tree' });
    this.results = h('ul', { class: 'results', hidden: true });
    replace(root, this.results, this.list, ...this.#groups());
    this.#fill(this.list, null);
    this.#expandTop(null, 0);
    searchInput.addEventListener('input', () => this.search(searchInput.value), { signal });
    choices.visibility.addEventListener('change', () => this.#showEyes(), { signal });
  }

  /** An eye that hides or shows `ids` (and what is under them). @param {string[]} ids @param {string} name */
  #eye(ids, name) {
    const eye = /** @type {HTMLButtonElement} */ (h('button', { class: 'eye', 'aria-pressed': 'false', 'aria-label': `Hide ${name}`,
      title: `Hide or show ${name}` }));
    eye.addEventListener('click', (e) => {
      e.stopPropagation();
      const v = this.choices.visibility;
      if (eye.getAttribute('aria-pressed') === 'true') v.show(ids);
      else v.hide(ids);
    });
    this.#paintEye(eye, this.choices.visibility.stateOf(ids), name);
    return eye;
  }

  /** @param {HTMLButtonElement} eye @param {'shown'|'hidden'|'mixed'} state @param {string} name */
  #paintEye(eye, state, name) {
    if (eye.dataset.state === state) return; // most rows keep theirs: no DOM work for them
    eye.dataset.state = state;
    eye.setAttribute('aria-pressed', String(state === 'hidden'));
    eye.setAttribute('aria-label', `${state === 'hidden' ? 'Show' : 'Hide'} ${name}`);
    eye.textContent = state === 'hidden' ? '◌' : state === 'mixed' ? '◐' : '●';
  }

  #showEyes() {
    for (const [id, li] of this.items) {
      const eye = /** @type {HTMLButtonElement|null} */ (li.querySelector(':scope > .eye'));
      if (eye) this.#paintEye(eye, this.choices.visibility.stateOf([id]), this.catalog.label(id));
    }
    for (const [name, row] of this.groupRows) this.#paintEye(row.eye, this.choices.visibility.stateOf(row.ids), name);
  }

  /**
   * A row's menu: right-click, long-press, or the Menu key / Shift+F10 while it has the focus.
   * @param {HTMLElement} row @param {() => {ids: string[], label: string, id: string|null}} target
   */
  #menu(row, target) {
    const open = (/** @type {number} */ x, /** @type {number} */ y) => this.choices.onMenu(target(), x, y);
    row.addEventListener('contextmenu', (e) => {
      e.preventDefault();
      open(e.clientX, e.clientY);
    });
    onLongPress(row, open, this.signal);
    row.addEventListener('keydown', (e) => {
      if (e.key !== 'ContextMenu' && !(e.key === 'F10' && e.shiftKey)) return;
      e.preventDefault();
      const r = row.getBoundingClientRect();
      open(r.left + 16, r.bottom);
    });
  }

  /** The elements by class, and by layer where records name one: a foldable list each. */
  #groups() {
    const by = (/** @type {(r: import('../catalog.js').ElementRecord) => string} */ key) => {
      /** @type {Map<string, string[]>} */
      const groups = new Map();
      for (const r of this.catalog.byId.values()) {
        const k = key(r);
        if (!k || !this.choices.visibility.scope.drawable(r.id)) continue;
        const ids = groups.get(k);
        if (ids) ids.push(r.id);
        else groups.set(k, [r.id]);
      }
      return [...groups].sort(([a], [b]) => a.localeCompare(b));
    };
    const section = (/** @type {string} */ title, /** @type {[string, string[]][]} */ groups) => (groups.length
      ? h('details', { class: 'groups', dataset: { groups: title.toLowerCase() } }, h('summary', null, title),
        h('ul', { class: 'group-list' }, ...groups.map(([name, ids]) => this.#groupRow(name, ids)))) : null);
    return [section('Classes', by((r) => r.class)),
      section('Layers', by((r) => (typeof (/** @type {any} */ (r)).layer === 'string' ? /** @type {any} */ (r).layer : '')))];
  }

  /** @param {string} name @param {string[]} ids */
  #groupRow(name, ids) {
    const eye = this.#eye(ids, name);
    this.groupRows.set(name, { ids, eye });
    const label = h('span', { class: 'label', tabindex: 0 }, name, h('small', null, ` ${ids.length}`));
    const li = h('li', { dataset: { group: name } }, eye, label);
    this.#menu(label, () => ({ ids, label: `${name} (${ids.length})`, id: null }));
    return li;
  }

  /**
   * Rows for the children of `parent` from `from` on: a page of them, and a "Show more" row for the rest (or up
   * to and including `upTo`, a child to reveal).
   * @param {HTMLElement} ul @param {string|null} parent @param {number} [from] @param {string} [upTo]
   */
  #fill(ul, parent, from = 0, upTo) {
    const kids = this.catalog.children.get(parent) ?? [];
    const end = Math.max(from + TREE_PAGE, upTo === undefined ? 0 : kids.indexOf(upTo, from) + 1);
    for (const id of kids.slice(from, end)) ul.appendChild(this.#item(id));
    if (end >= kids.length) return;
    const more = h('button', { class: 'more' }, `Show more (${kids.length - end} of ${kids.length})`);
    const row = h('li', { class: 'more' }, more);
    more.addEventListener('click', () => {
      row.remove();
      this.#fill(ul, parent, end);
      this.#showEyes();
    });
    ul.appendChild(row);
  }

  /** Build the row of `id` if its page is not built yet (its parent's list is). @param {string} id */
  #reveal(id) {
    if (this.items.has(id)) return;
    const rec = this.catalog.get(id);
    const parent = rec?.parent && this.catalog.get(rec.parent) ? rec.parent : null;
    const ul = /** @type {HTMLElement|null|undefined} */ (parent === null ? this.list : this.items.get(parent)?.querySelector(':scope > ul'));
    const more = ul?.querySelector(':scope > li.more');
    if (!ul || !more) return;
    more.remove();
    this.#fill(ul, parent, ul.querySelectorAll(':scope > li[role=treeitem]').length, id);
  }

  /** @param {string} id */
  #item(id) {
    const rec = this.catalog.get(id);
    const kids = this.catalog.children.get(id);
    const twisty = h('button', { class: 'twisty', 'aria-label': 'expand', hidden: !kids }, '▸');
    const label = h('span', { class: 'label', title: `id: ${id}`, tabindex: 0 }, rec?.name || id, h('small', null, ` ${rec?.class ?? ''}`));
    const name = this.catalog.label(id);
    const li = h('li', { role: 'treeitem', dataset: { id } }, twisty, this.#eye([id], name), label);
    this.#menu(label, () => ({ ids: [id], label: name, id }));
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
    if (!ul.hidden) this.#showEyes(); // nodes built while closed show the state of now
  }

  /** Show `id` as selected, expanding its ancestors and scrolling it into view. @param {string|null} id */
  select(id) {
    if (this.selected) this.items.get(this.selected)?.classList.remove('selected');
    this.selected = id;
    if (!id) return;
    for (const a of this.catalog.ancestors(id)) {
      this.#reveal(a);
      const li = this.items.get(a);
      if (li) this.#toggle(li, a, true);
    }
    this.#reveal(id);
    const li = this.items.get(id);
    li?.classList.add('selected');
    li?.scrollIntoView({ block: 'nearest' });
  }

  /**
   * Show the elements that match `query` (the server's index; the tree again when it is empty). A newer query
   * cancels an older one still under way.
   * @param {string} query
   */
  async search(query) {
    this.searching?.abort();
    const searching = (this.searching = new AbortController());
    this.results.hidden = !query.trim();
    this.list.hidden = !this.results.hidden;
    if (this.results.hidden) {
      this.results.removeAttribute('aria-busy');
      return;
    }
    this.results.setAttribute('aria-busy', 'true');
    let hits;
    try {
      hits = await this.catalog.find(query, AbortSignal.any([searching.signal, this.signal]));
    } catch {
      return; // cancelled: a newer query, or a new scene
    }
    this.results.removeAttribute('aria-busy');
    // By name and class, the id on demand (tooltip; the search matches it too).
    replace(this.results, ...(hits.length ? hits.map((r) => h('li', { dataset: { id: r.id }, title: `id: ${r.id}`, onclick: () => this.onSelect(r.id) },
      r.name || r.id, h('small', null, ` ${r.class}`))) : [h('li', { class: 'empty' }, 'No match')]));
  }
}
