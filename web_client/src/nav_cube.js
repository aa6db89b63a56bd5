// The navigation cube (APS's ViewCube, xeokit's NavCube): a CSS 3D cube turned with the camera. Each face is a
// 3 × 3 grid: its middle is the face's standard view, its sides the edge views between two faces, its corners
// the isometric views between three. Below it: Home, perspective/orthographic, walk and fly.
// World axes (the glTF's, Y up; IFC's north is −Z): Front looks from +Z, Right from +X, Top from +Y.
import * as THREE from 'three';
import { h } from './ui/dom.js';

/** @typedef {{name: string, normal: [number, number, number], u: [number, number, number], v: [number, number, number], css: string}} Face */

/** u is the face's right and v its up, seen from outside; css places a face of the cube. */
/** @type {Face[]} */
const FACES = [
  { name: 'Front', normal: [0, 0, 1], u: [1, 0, 0], v: [0, 1, 0], css: '' },
  { name: 'Back', normal: [0, 0, -1], u: [-1, 0, 0], v: [0, 1, 0], css: 'rotateY(180deg)' },
  { name: 'Right', normal: [1, 0, 0], u: [0, 0, -1], v: [0, 1, 0], css: 'rotateY(90deg)' },
  { name: 'Left', normal: [-1, 0, 0], u: [0, 0, 1], v: [0, 1, 0], css: 'rotateY(-90deg)' },
  { name: 'Top', normal: [0, 1, 0], u: [1, 0, 0], v: [0, 0, -1], css: 'rotateX(90deg)' },
  { name: 'Bottom', normal: [0, -1, 0], u: [1, 0, 0], v: [0, 0, 1], css: 'rotateX(-90deg)' },
];
/** The standard views by name: a face's, or the isometric one Home uses (front, right, top). */
export const VIEWS = Object.fromEntries([...FACES.map((f) => [f.name.toLowerCase(), f.normal]), ['isometric', [1, 1, 1]]]);
const NAMES = new Map(FACES.map((f) => [f.normal.join(), f.name]));
// Half the cube's edge in px (styles.css sizes the cube to twice this).
const HALF_PX = 36;
// The cube follows the camera at most this often (ms).
const CUBE_INTERVAL_MS = 150;

/**
 * The name of a view direction: "Front", "Front Top", "Front Right Top", …
 * @param {number[]} dir components in {-1, 0, 1}
 */
function viewName(dir) {
  const parts = [];
  for (let axis = 0; axis < 3; axis++) {
    if (!dir[axis]) continue;
    const n = [0, 0, 0];
    n[axis] = dir[axis];
    parts.push(NAMES.get(n.join()));
  }
  return parts.sort((a, b) => order(a) - order(b)).join(' ');
}
/** @param {string|undefined} name */
const order = (name) => ['Front', 'Back', 'Left', 'Right', 'Top', 'Bottom'].indexOf(name ?? '');

export class NavCube {
  /**
   * @param {HTMLElement} root where the cube and its buttons go
   * @param {import('./viewer.js').Viewer} viewer
   * @param {{box: () => (THREE.Box3|null)}} hooks `box`: what a view frames (the visible model)
   */
  constructor(root, viewer, hooks) {
    this.viewer = viewer;
    this.hooks = hooks;
    this.cube = h('div', { class: 'navcube-cube' });
    for (const f of FACES) {
      const face = h('div', { class: 'navcube-face', style: `transform: ${f.css} translateZ(${HALF_PX}px)` });
      for (const j of [1, 0, -1]) {
        for (const i of [-1, 0, 1]) {
          const dir = f.normal.map((n, k) => n + i * f.u[k] + j * f.v[k]);
          const name = viewName(dir);
          const middle = i === 0 && j === 0;
          face.append(h('button', {
            class: middle ? 'navcube-cell navcube-face-name' : 'navcube-cell',
            title: name, 'aria-label': `${name} view`, tabindex: middle ? 0 : -1,
            dataset: { view: name.toLowerCase().replaceAll(' ', '-') },
            onclick: () => this.show(new THREE.Vector3(...dir)),
          }, middle ? f.name : ''));
        }
      }
      this.cube.append(face);
    }
    this.projection = h('button', { class: 'navcube-btn', title: 'Perspective or orthographic (parallel) projection',
      'aria-pressed': 'false', onclick: () => viewer.setProjection(viewer.projection === 'perspective' ? 'orthographic' : 'perspective') },
    'Ortho');
    /** @type {Record<'walk'|'fly', HTMLElement>} */
    this.modes = {
      walk: h('button', { class: 'navcube-btn', title: 'First-person walk: level, on the floor (WASD, drag to look)', 'aria-pressed': 'false',
        onclick: () => this.#toggleMode('walk') }, 'Walk'),
      fly: h('button', { class: 'navcube-btn', title: 'First-person fly: no gravity, moves where you look (WASD, QE)', 'aria-pressed': 'false',
        onclick: () => this.#toggleMode('fly') }, 'Fly'),
    };
    const home = h('button', { class: 'navcube-btn', title: 'Home: the whole model, isometric (Home key)', onclick: () => this.home() }, 'Home');
    root.append(h('div', { class: 'navcube-view', role: 'group', 'aria-label': 'standard views' }, this.cube),
      h('div', { class: 'navcube-buttons' }, home, this.projection, this.modes.walk, this.modes.fly));
    viewer.addEventListener('projection', () => this.#sync());
    viewer.controls.addEventListener('mode', () => this.#sync());
    viewer.addEventListener('frame', () => this.#schedule());
    this.#turn();
  }

  /** Home: the whole (visible) model from the front-right-top corner. */
  home() {
    this.show(new THREE.Vector3(...VIEWS.isometric));
  }

  /** Fly to the view from `dir` (from the model towards the eye), framing the model; orbit mode. @param {THREE.Vector3} dir */
  show(dir) {
    this.viewer.controls.setMode('orbit');
    this.viewer.viewFrom(dir, this.hooks.box());
  }

  /** @param {'walk'|'fly'} mode */
  #toggleMode(mode) {
    const nav = this.viewer.controls;
    nav.setMode(nav.mode === mode ? 'orbit' : mode);
  }

  #sync() {
    const v = this.viewer;
    this.projection.setAttribute('aria-pressed', String(v.projection === 'orthographic'));
    for (const [mode, btn] of Object.entries(this.modes)) btn.setAttribute('aria-pressed', String(v.controls.mode === mode));
  }

  /**
   * Turn the cube at most every CUBE_INTERVAL_MS (and once the camera rests): each turn makes the browser
   * composite a 3D layer again, which on a software compositor costs as much as a small model's frame.
   */
  #schedule() {
    if (this.pending) return;
    const wait = Math.max(0, this.lastTurn + CUBE_INTERVAL_MS - performance.now());
    this.pending = window.setTimeout(() => {
      this.pending = 0;
      this.lastTurn = performance.now();
      this.#turn();
    }, wait);
  }

  /** @type {number} the scheduled turn's timer */
  pending = 0;
  lastTurn = 0;

  /** Turn the cube as the camera looks: the view rotation, in CSS axes (y down). */
  #turn() {
    const q = this.viewer.camera.quaternion;
    const key = `${q.x.toFixed(4)},${q.y.toFixed(4)},${q.z.toFixed(4)},${q.w.toFixed(4)}`;
    if (key === this.cube.dataset.pose) return;
    this.cube.dataset.pose = key;
    const e = new THREE.Matrix4().makeRotationFromQuaternion(q).invert().elements;
    // S·R·S with S = diag(1, −1, 1): flip y in and out; matrix3d is column-major like three's elements.
    const m = [e[0], -e[1], e[2], 0, -e[4], e[5], -e[6], 0, e[8], -e[9], e[10], 0, 0, 0, 0, 1];
    this.cube.style.transform = `matrix3d(${m.map((x) => x.toFixed(6)).join(',')})`;
  }
}
