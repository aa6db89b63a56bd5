// Tiny DOM builder. Strings always become text nodes: names and values from files or other users are
// rendered as text, never parsed as HTML.

/**
 * @param {string} tag
 * @param {Record<string, any>|null} [props] attributes; `on*` functions become listeners, `class` the className,
 *   `style` the inline style (through CSSOM, which the CSP allows)
 * @param {...(Node|string|number|null|undefined|false)} children
 * @returns {HTMLElement}
 */
export function h(tag, props = null, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    // Through CSSOM: the server's Content-Security-Policy refuses style attributes (docs/SECURITY.md).
    else if (k === 'style') el.style.cssText = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** @param {Element} el @param {(Node|string|number|null|undefined|false)[]} children */
export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
  }
}

/** Replace all children of `el`. @param {Element} el @param {...(Node|string|null|undefined|false)} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** @param {string} sel @returns {HTMLElement} */
export function $(sel) {
  const el = document.querySelector(sel);
  if (!el) throw new Error(`missing element ${sel}`);
  return /** @type {HTMLElement} */ (el);
}
