// Phones and tablets (styles.css, "Narrow screens": below 900 px): the side panels become one bottom sheet
// under the view (which shrinks to what stays visible, so the model is framed there) with a tab per panel (the tree and search, and every section of the right panel: properties, alarms, topics,
// commands, people — whatever the page holds), and the top bar's tools fold into a menu. Tap a tab to open its
// panel, tap it again (or the handle) to close it; drag the handle to make the sheet taller or shorter.
// Desktop widths see none of this: the tab bar and the menu button are hidden there.
import { $, h } from './dom.js';

// Sheet height limits, as fractions of the window: enough to read a panel, and the view always shows above it.
const SHEET_MIN = 0.25;
const SHEET_MAX = 0.85;
const SHEET_DEFAULT = 0.5;
// A drag of the handle shorter than this (px) is a tap: it closes the sheet.
const TAP_SLOP_PX = 6;

/** @typedef {{key: string, page: HTMLElement, tab: HTMLButtonElement, heading: HTMLElement|null}} SheetPage */

/** Build the tab bar and the menu button; returns what tests and other modules may drive. */
export function startLayout() {
  const body = document.body;
  const tabs = h('nav', { id: 'sheet-tabs', class: 'sheet-tabs', role: 'tablist', 'aria-label': 'Panels' });
  const handle = h('div', { id: 'sheet-handle', class: 'sheet-handle', role: 'separator', 'aria-orientation': 'horizontal',
    'aria-label': 'Drag to resize the panel, tap to close it', tabindex: '0' });
  body.append(handle, tabs);
  /** @type {SheetPage[]} */
  const pages = [];
  const left = /** @type {HTMLElement} */ ($('aside.left'));
  pages.push(page('model', left, 'Model'));
  for (const section of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('aside.right > section'))) {
    const heading = section.querySelector('h2');
    const name = (heading?.firstChild?.textContent ?? 'Panel').trim();
    pages.push(page(name.toLowerCase().replace(/\W+/g, '-'), section, name, heading));
  }

  /** @param {string} key @param {HTMLElement} el @param {string} name @param {HTMLElement|null} [heading] */
  function page(key, el, name, heading = null) {
    el.id ||= `sheet-${key}`;
    el.classList.add('sheet-page');
    el.dataset.sheet = key;
    el.setAttribute('role', 'tabpanel');
    const tab = /** @type {HTMLButtonElement} */ (h('button', { class: 'sheet-tab', role: 'tab', 'aria-selected': 'false',
      'aria-controls': el.id, dataset: { sheet: key }, onclick: () => open(body.dataset.sheet === key ? '' : key) }, name));
    tabs.appendChild(tab);
    return { key, page: el, tab, heading };
  }

  /** Open a panel in the sheet ("" closes it). @param {string} key */
  function open(key) {
    body.dataset.sheet = key;
    for (const p of pages) {
      const on = p.key === key;
      p.page.classList.toggle('sheet-open', on);
      p.tab.setAttribute('aria-selected', String(on));
    }
  }

  // A tab follows its panel: hidden with it (a role that may not see it), its count shown (the alarm badge).
  const sync = () => {
    for (const p of pages) {
      p.tab.hidden = p.page.hidden;
      const badge = p.heading?.querySelector('.badge');
      p.tab.dataset.count = badge && !(/** @type {HTMLElement} */ (badge).hidden) ? badge.textContent ?? '' : '';
    }
    if (pages.find((p) => p.key === body.dataset.sheet)?.page.hidden) open('');
  };
  const watch = new MutationObserver(sync);
  for (const p of pages) {
    watch.observe(p.page, { attributes: true, attributeFilter: ['hidden'] });
    if (p.heading) watch.observe(p.heading, { subtree: true, childList: true, characterData: true, attributes: true });
  }
  sync();

  // The top bar's tools behind one button on narrow screens.
  const menu = h('button', { id: 'btn-menu', class: 'menu-button', 'aria-expanded': 'false', 'aria-label': 'Tools',
    onclick: () => {
      const on = body.dataset.menu !== 'open';
      body.dataset.menu = on ? 'open' : '';
      menu.setAttribute('aria-expanded', String(on));
    } }, '☰');
  $('.topbar').appendChild(menu);

  // The handle: drag to resize, tap to close; the height is a fraction of the window, kept on rotation.
  body.style.setProperty('--sheet-frac', String(SHEET_DEFAULT));
  let drag = /** @type {{y: number, frac: number}|null} */ (null);
  handle.addEventListener('pointerdown', (e) => {
    drag = { y: e.clientY, frac: Number(body.style.getPropertyValue('--sheet-frac')) || SHEET_DEFAULT };
    handle.setPointerCapture(e.pointerId);
  });
  handle.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const frac = drag.frac + (drag.y - e.clientY) / window.innerHeight;
    body.style.setProperty('--sheet-frac', String(Math.min(SHEET_MAX, Math.max(SHEET_MIN, frac))));
  });
  handle.addEventListener('pointerup', (e) => {
    if (drag && Math.abs(e.clientY - drag.y) < TAP_SLOP_PX) open('');
    drag = null;
  });
  handle.addEventListener('keydown', (e) => {
    const step = { ArrowUp: 0.1, ArrowDown: -0.1 }[e.key];
    if (e.key === 'Escape' || e.key === 'Enter') open('');
    if (step === undefined) return;
    e.preventDefault();
    const frac = (Number(body.style.getPropertyValue('--sheet-frac')) || SHEET_DEFAULT) + step;
    body.style.setProperty('--sheet-frac', String(Math.min(SHEET_MAX, Math.max(SHEET_MIN, frac))));
  });
  open('');
  return { open, pages };
}
