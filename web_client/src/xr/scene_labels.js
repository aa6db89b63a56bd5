// Labels inside the XR scene. An immersive session shows no HTML, so while one runs every tag of the Labels
// overlay (live values, anomaly flags, user names) is drawn as a sprite at its anchor — an element's name over its
// value — and every element with an active alarm gets a badge above it. Sprites face the user, keep a readable size
// at any distance, and are redrawn when their text changes (compared every frame: a few string compares).
import * as THREE from 'three';
import { byUrgency } from '../alarms/words.js';

const LABEL_PX = [512, 128];
// A label is at least this tall (m), near to ...
const LABEL_MIN_M = 0.08;
// ... and this tall per metre of distance farther away (≈ 2.9° of view: two lines of ~40 px each on a Quest 3).
const LABEL_PER_M = 0.05;
// A badge stands this many label heights above its anchor, clear of the value label there.
const BADGE_LIFT = 1.15;
// Drawn over the model and the topic pins (10), as the HTML tags are over the canvas.
const LABEL_ORDER = 12;
const TEXT = '#ffffff';
const NAME_TEXT = '#c9d1db';
const ANOMALY = '#d29922';
/** Badge colours by severity (the alarm list's order: critical/alarm worst). @type {Record<string, string>} */
export const SEVERITY_COLORS = { critical: '#f85149', alarm: '#f85149', high: '#f85149', major: '#f85149',
  warning: '#d29922', medium: '#d29922', low: '#4da3ff', info: '#4da3ff' };

/**
 * @typedef {{lines: string[], color: string, at: THREE.Vector3|null, lift: number}} Want what one sprite shows, where
 *   (model coordinates; null hides it), how high above its anchor (in label heights)
 */

export class SceneLabels {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {import('../labels.js').Labels} labels the HTML tags to mirror
   * @param {{nameOf: (id: string) => string, anchorOf: (id: string) => THREE.Vector3|null,
   *          alarms: () => Iterable<import('../protocol.js').Alarm>}} hooks an element's name, the point over it
   *   (model coordinates, null while hidden), the active alarms
   */
  constructor(viewer, labels, hooks) {
    this.viewer = viewer;
    this.labels = labels;
    this.hooks = hooks;
    this.group = new THREE.Group();
    this.group.name = 'xr-labels';
    this.group.visible = false;
    viewer.world.add(this.group);
    /** @type {Map<string, THREE.Sprite>} sprite name ("xr-label:<tag key>", "xr-alarm:<element>") -> sprite */
    this.sprites = new Map();
    viewer.prerender.push(() => this.#sync());
  }

  /** Show the labels in the scene (an immersive session started). */
  start() {
    this.group.visible = true;
  }

  /** Drop every sprite (the session ended: the HTML tags are back). */
  stop() {
    this.group.visible = false;
    for (const s of this.sprites.values()) dispose(s);
    this.sprites.clear();
  }

  /** What the sprites should show now: the tags, then the alarm badges. @returns {Map<string, Want>} */
  #wanted() {
    /** @type {Map<string, Want>} */
    const want = new Map();
    for (const [key, tag] of this.labels.tags) {
      const text = tag.el.textContent ?? '';
      const id = key.startsWith('el:') ? key.slice(3) : null;
      const color = tag.el.classList.contains('anomaly') ? ANOMALY : tag.el.style.color || TEXT;
      want.set(`xr-label:${key}`, { lines: id ? [this.hooks.nameOf(id), text] : [text], color, at: tag.at(), lift: 0 });
    }
    /** @type {Map<string, import('../protocol.js').Alarm[]>} */
    const byElement = new Map();
    for (const a of this.hooks.alarms()) byElement.set(a.element, [...(byElement.get(a.element) ?? []), a]);
    for (const [id, list] of byElement) {
      const worst = list.sort(byUrgency)[0];
      const what = [worst.prop, worst.severity].filter(Boolean).join(' · ') || 'alarm';
      want.set(`xr-alarm:${id}`, { lines: [`⚠ ${this.hooks.nameOf(id)}`, list.length > 1 ? `${what} +${list.length - 1}` : what],
        color: SEVERITY_COLORS[worst.severity ?? ''] ?? SEVERITY_COLORS.alarm, at: this.hooks.anchorOf(id), lift: BADGE_LIFT });
    }
    return want;
  }

  #sync() {
    if (!this.group.visible) return;
    const want = this.#wanted();
    for (const [name, sprite] of this.sprites) {
      if (want.has(name)) continue;
      dispose(sprite);
      this.sprites.delete(name);
    }
    const { world, renderer } = this.viewer;
    const eye = renderer.xr.getCamera().getWorldPosition(new THREE.Vector3());
    const scale = world.scale.x || 1;
    const p = new THREE.Vector3();
    for (const [name, w] of want) {
      let sprite = this.sprites.get(name);
      if (!sprite) {
        sprite = makeSprite(name);
        this.group.add(sprite);
        this.sprites.set(name, sprite);
      }
      const key = `${w.color}\n${w.lines.join('\n')}`;
      if (sprite.userData.key !== key) {
        sprite.userData.key = key;
        sprite.userData.lines = w.lines;
        draw(/** @type {THREE.CanvasTexture} */ (sprite.material.map), w.lines, w.color);
      }
      sprite.visible = Boolean(w.at);
      if (!w.at) continue;
      sprite.position.copy(w.at);
      const h = Math.max(LABEL_MIN_M, p.copy(w.at).applyMatrix4(world.matrixWorld).distanceTo(eye) * LABEL_PER_M) / scale;
      sprite.scale.set((h * LABEL_PX[0]) / LABEL_PX[1], h, 1);
      sprite.center.set(0.5, -w.lift);
    }
  }
}

/** @param {string} name */
function makeSprite(name) {
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = LABEL_PX;
  const texture = new THREE.CanvasTexture(canvas);
  texture.colorSpace = THREE.SRGBColorSpace;
  const sprite = new THREE.Sprite(new THREE.SpriteMaterial({ map: texture, depthTest: false, transparent: true }));
  sprite.name = name;
  sprite.renderOrder = LABEL_ORDER;
  return sprite;
}

/** @param {THREE.Sprite} sprite */
function dispose(sprite) {
  sprite.material.map?.dispose();
  sprite.material.dispose();
  sprite.removeFromParent();
}

/**
 * One or two lines on a dark plate, centred: the name small, the value large (fillText: text, never markup).
 * @param {THREE.CanvasTexture} texture @param {string[]} lines @param {string} color
 */
function draw(texture, lines, color) {
  const canvas = /** @type {HTMLCanvasElement} */ (texture.image);
  const g = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  const [w, h] = LABEL_PX;
  const two = lines.length > 1;
  const fonts = two ? ['36px sans-serif', 'bold 48px sans-serif'] : ['bold 56px sans-serif'];
  const width = Math.min(w, 32 + Math.max(...lines.map((t, i) => { g.font = fonts[i]; return g.measureText(t).width; })));
  g.clearRect(0, 0, w, h);
  g.fillStyle = 'rgba(20, 24, 30, 0.88)';
  g.beginPath();
  g.roundRect((w - width) / 2, 4, width, h - 8, 18);
  g.fill();
  g.fillStyle = color;
  g.fillRect((w - width) / 2, 4, 8, h - 8);
  g.textAlign = 'center';
  g.textBaseline = 'middle';
  lines.forEach((text, i) => {
    g.font = fonts[i];
    g.fillStyle = two && i === 0 ? NAME_TEXT : color;
    g.fillText(text, w / 2 + 4, two ? (i === 0 ? 38 : 88) : h / 2, w - 40);
  });
  texture.needsUpdate = true;
}
