// HTML tags pinned to 3D points (element labels, anomaly flags, user names), repositioned each frame.
// Text goes in with textContent: labels come from rules and other users.
import * as THREE from 'three';

// Tags shown at once; beyond this the overlay costs more than it tells.
const MAX_TAGS = 150;
const _v = new THREE.Vector3();

export class Labels {
  /** @param {import('./viewer.js').Viewer} viewer @param {HTMLElement} root */
  constructor(viewer, root) {
    this.viewer = viewer;
    this.root = root;
    /** @type {Map<string, {el: HTMLElement, at: () => THREE.Vector3|null}>} */
    this.tags = new Map();
    viewer.addEventListener('frame', () => this.update());
  }

  /**
   * Create or update a tag; `text` null removes it.
   * @param {string} key @param {string|null} text @param {() => THREE.Vector3|null} at model-space anchor
   * @param {string} [cls] @param {string} [color]
   */
  set(key, text, at, cls = '', color = '') {
    let tag = this.tags.get(key);
    if (text === null) {
      tag?.el.remove();
      this.tags.delete(key);
      return;
    }
    if (!tag) {
      if (this.tags.size >= MAX_TAGS) return;
      tag = { el: document.createElement('div'), at };
      this.root.appendChild(tag.el);
      this.tags.set(key, tag);
    }
    tag.at = at;
    const className = `tag ${cls}`;
    if (tag.el.className === className && tag.el.textContent === text && tag.el.style.color === color) return;
    tag.el.className = className; // only what changed touches the page: a replay's frame sets every label again
    tag.el.textContent = text;
    tag.el.style.color = color;
    this.viewer.invalidate();
  }

  update() {
    const { camera, renderer, world } = this.viewer;
    if (renderer.xr.isPresenting) return;
    const w = this.root.clientWidth;
    const hgt = this.root.clientHeight;
    for (const { el, at } of this.tags.values()) {
      const p = at();
      if (p) _v.copy(p).applyMatrix4(world.matrixWorld).project(camera);
      const visible = Boolean(p) && _v.z < 1 && Math.abs(_v.x) <= 1 && Math.abs(_v.y) <= 1;
      el.hidden = !visible;
      if (visible) el.style.transform = `translate(${((_v.x + 1) / 2) * w}px, ${((1 - _v.y) / 2) * hgt}px) translate(-50%, -100%)`;
    }
  }
}
