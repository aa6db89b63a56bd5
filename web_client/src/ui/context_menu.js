// The context menu of the view and the tree (right-click, long-press on touch, or the Menu key / Shift+F10 on a
// tree item): what to do with an element. A WAI-ARIA menu: the first item takes the focus, arrows move (and wrap),
// Home / End jump, Enter or Space runs an item, Escape (or a click elsewhere) closes it and gives the focus back.
import { h, replace } from './dom.js';

// A touch held this long without moving opens the menu (the platforms' long-press is ~500 ms).
export const LONG_PRESS_MS = 500;
// A touch that moves further than this (px) is a drag (orbit), not a long press.
const LONG_PRESS_SLOP_PX = 10;

/** @typedef {{label: string, run?: () => void, items?: MenuItem[], disabled?: boolean}} MenuItem items: a submenu */

export class ContextMenu {
  /** @param {HTMLElement} parent where the menu floats (positioned against the window) */
  constructor(parent) {
    this.el = h('div', { id: 'context-menu', class: 'context-menu', role: 'menu', hidden: true, tabindex: '-1' });
    parent.appendChild(this.el);
    /** @type {HTMLElement|null} where the focus was before the menu opened */
    this.returnTo = null;
    /** @type {MenuItem[][]} the menus above an open submenu */
    this.stack = [];
    this.el.addEventListener('keydown', (e) => this.#key(e));
    this.el.addEventListener('contextmenu', (e) => e.preventDefault());
    document.addEventListener('pointerdown', (e) => {
      if (!this.el.hidden && !this.el.contains(/** @type {Node} */ (e.target))) this.close(false);
    }, true);
    window.addEventListener('blur', () => this.close(false));
  }

  get isOpen() {
    return !this.el.hidden;
  }

  /**
   * Open at a point of the window with these items.
   * @param {number} x @param {number} y @param {MenuItem[]} items @param {string} title what the menu acts on
   */
  open(x, y, items, title) {
    this.returnTo = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    this.stack = [];
    this.title = title;
    this.#show(items);
    this.el.hidden = false;
    // Inside the window, also near its right and bottom edges.
    const r = this.el.getBoundingClientRect();
    this.el.style.left = `${Math.max(0, Math.min(x, window.innerWidth - r.width))}px`;
    this.el.style.top = `${Math.max(0, Math.min(y, window.innerHeight - r.height))}px`;
    this.#items()[0]?.focus();
  }

  /** @param {boolean} [refocus] give the focus back to where it was (not when the user clicked elsewhere) */
  close(refocus = true) {
    if (this.el.hidden) return;
    this.el.hidden = true;
    replace(this.el);
    if (refocus) this.returnTo?.focus();
    this.returnTo = null;
  }

  /** @param {MenuItem[]} items */
  #show(items) {
    const run = (/** @type {MenuItem} */ item) => {
      if (item.items) {
        this.stack.push(items);
        this.#show(item.items);
        this.#items()[0]?.focus();
      } else {
        this.close();
        item.run?.();
      }
    };
    replace(this.el,
      h('div', { class: 'menu-title', role: 'presentation' }, this.title ?? ''),
      this.stack.length ? h('button', { role: 'menuitem', class: 'menu-back', tabindex: '-1', onclick: () => this.#back() }, '‹ Back') : null,
      ...items.map((item) => h('button', { role: 'menuitem', tabindex: '-1', disabled: item.disabled,
        'aria-haspopup': item.items ? 'menu' : null, onclick: () => run(item) }, item.items ? `${item.label} ▸` : item.label)));
  }

  #back() {
    const up = this.stack.pop();
    if (!up) return this.close();
    this.#show(up);
    this.#items()[0]?.focus();
  }

  /** @returns {HTMLButtonElement[]} */
  #items() {
    return [...this.el.querySelectorAll('button:not([disabled])')].map((b) => /** @type {HTMLButtonElement} */ (b));
  }

  /** @param {KeyboardEvent} e */
  #key(e) {
    const items = this.#items();
    const at = items.indexOf(/** @type {HTMLButtonElement} */ (document.activeElement));
    /** @type {Record<string, () => void>} */
    const keys = {
      ArrowDown: () => items[(at + 1) % items.length]?.focus(),
      ArrowUp: () => items[(at - 1 + items.length) % items.length]?.focus(),
      Home: () => items[0]?.focus(),
      End: () => items[items.length - 1]?.focus(),
      ArrowRight: () => { if (items[at]?.getAttribute('aria-haspopup')) items[at].click(); },
      ArrowLeft: () => { if (this.stack.length) this.#back(); },
      Escape: () => this.close(),
      Tab: () => this.close(),
    };
    const act = keys[e.key];
    if (!act) return;
    e.preventDefault();
    e.stopPropagation(); // Escape closes the menu, not also the selection
    act();
  }
}

/**
 * Call `open(x, y)` on a long press of a touch on `el` (a touch held still for LONG_PRESS_MS); the click that
 * follows the lifted finger is swallowed. Mouse and pen use the contextmenu event.
 * @param {HTMLElement} el @param {(x: number, y: number) => void} open @param {AbortSignal} [signal]
 */
export function onLongPress(el, open, signal) {
  /** @type {{id: number, x: number, y: number, timer: ReturnType<typeof setTimeout>}|null} */
  let press = null;
  let fired = false;
  const cancel = () => {
    if (press) clearTimeout(press.timer);
    press = null;
  };
  el.addEventListener('pointerdown', (e) => {
    cancel();
    fired = false;
    if (e.pointerType !== 'touch' || !e.isPrimary) return;
    const { clientX: x, clientY: y, pointerId: id } = e;
    press = { id, x, y, timer: setTimeout(() => { press = null; fired = true; open(x, y); }, LONG_PRESS_MS) };
  }, { signal });
  el.addEventListener('pointermove', (e) => {
    if (press && e.pointerId === press.id && Math.hypot(e.clientX - press.x, e.clientY - press.y) > LONG_PRESS_SLOP_PX) cancel();
  }, { signal });
  for (const type of ['pointerup', 'pointercancel']) el.addEventListener(type, cancel, { signal });
  // A second finger (pinch) is not a long press either.
  el.addEventListener('pointerdown', (e) => { if (!e.isPrimary) cancel(); }, { signal, capture: true });
  el.addEventListener('click', (e) => {
    if (!fired) return;
    fired = false;
    e.stopImmediatePropagation();
    e.preventDefault();
  }, { signal, capture: true });
  // The browser's own long-press menu (Android Chrome sends contextmenu on a long touch) is ours instead.
  el.addEventListener('contextmenu', (e) => { if (fired || press) e.preventDefault(); }, { signal });
}
