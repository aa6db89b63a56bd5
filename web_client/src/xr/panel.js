// The XR panel: a canvas on a plane in front of the user, since an immersive session shows no HTML. A header with
// buttons (world scale, close), the picked element's or topic's lines, and the active alarms, each a button that
// takes the user to its element. A controller's ray and trigger press what is under the ray.
import * as THREE from 'three';

const PANEL_PX = [640, 560];
const PANEL_M = [0.48, 0.42];
// Opened this far in front of the eyes and this far below them: read with a slight look down, like a tablet.
const AHEAD_M = 0.7;
const BELOW_M = 0.15;
const HEADER_PX = 64;
const LINE_PX = 38;
const ROW_PX = 48;
// Alarms listed at most; the header says how many there are.
const MAX_ALARM_ROWS = 3;
const PAD_PX = 24;

/**
 * @typedef {{action: string, x: number, y: number, w: number, h: number}} Button a pressable rectangle (canvas px)
 * @typedef {{id: string, text: string, color: string}} AlarmRow
 * @typedef {{lines: string[], scale: string, alarms: AlarmRow[]}} PanelContent the body's lines (the first is the
 *   title), the scale button's text, the active alarms (worst first)
 */

export class XRPanel {
  /** @param {THREE.Scene} scene */
  constructor(scene) {
    this.canvas = document.createElement('canvas');
    [this.canvas.width, this.canvas.height] = PANEL_PX;
    this.texture = new THREE.CanvasTexture(this.canvas);
    this.texture.colorSpace = THREE.SRGBColorSpace;
    this.mesh = new THREE.Mesh(new THREE.PlaneGeometry(...PANEL_M), new THREE.MeshBasicMaterial({ map: this.texture, transparent: true }));
    this.mesh.visible = false;
    this.mesh.name = 'xr-panel';
    scene.add(this.mesh);
    /** @type {Button[]} what can be pressed, as last drawn */
    this.buttons = [];
    /** @type {PanelContent} as last drawn (tests read it) */
    this.content = { lines: [], scale: '', alarms: [] };
  }

  get visible() {
    return this.mesh.visible;
  }

  /** Show the panel in front of the head, facing it. @param {THREE.Camera} head */
  open(head) {
    const { mesh } = this;
    const fwd = new THREE.Vector3(0, 0, -1).applyQuaternion(head.quaternion).setY(0).normalize();
    mesh.position.copy(head.position).addScaledVector(fwd, AHEAD_M).add(new THREE.Vector3(0, -BELOW_M, 0));
    mesh.lookAt(head.position);
    mesh.visible = true;
  }

  close() {
    this.mesh.visible = false;
  }

  /** Carry the panel along when the user moves (teleport, turn, stick). @param {THREE.Matrix4} delta */
  move(delta) {
    this.mesh.applyMatrix4(delta);
  }

  /** @param {PanelContent} content */
  draw(content) {
    this.content = content;
    const g = /** @type {CanvasRenderingContext2D} */ (this.canvas.getContext('2d'));
    const [w, h] = PANEL_PX;
    g.fillStyle = 'rgba(29, 33, 39, 0.92)';
    g.fillRect(0, 0, w, h);
    g.fillStyle = '#4da3ff';
    g.fillRect(0, 0, 8, h);
    this.buttons = [];
    const close = this.#button(g, 'close', '✕', w - 76, 10, 60);
    this.#button(g, 'scale', content.scale, PAD_PX, 10, close.x - PAD_PX - 16);
    let y = HEADER_PX + LINE_PX;
    const bodyEnd = h - PAD_PX - (content.alarms.length ? LINE_PX + ROW_PX * Math.min(MAX_ALARM_ROWS, content.alarms.length) : 0);
    content.lines.forEach((text, i) => {
      if (y > bodyEnd) return;
      g.fillStyle = i === 0 ? '#ffffff' : '#c9d1db';
      g.font = i === 0 ? 'bold 34px sans-serif' : '26px sans-serif';
      g.fillText(text, PAD_PX, y, w - 2 * PAD_PX); // fillText draws text, never markup
      y += LINE_PX;
    });
    if (content.alarms.length) {
      let top = bodyEnd + 8;
      g.fillStyle = '#f85149';
      g.font = 'bold 26px sans-serif';
      g.fillText(`⚠ Alarms (${content.alarms.length})`, PAD_PX, top + 26, w - 2 * PAD_PX);
      top += LINE_PX;
      for (const a of content.alarms.slice(0, MAX_ALARM_ROWS)) {
        g.fillStyle = 'rgba(255, 255, 255, 0.07)';
        g.fillRect(PAD_PX, top, w - 2 * PAD_PX, ROW_PX - 6);
        g.fillStyle = a.color;
        g.fillRect(PAD_PX, top, 6, ROW_PX - 6);
        g.fillStyle = '#ffffff';
        g.font = '24px sans-serif';
        g.fillText(a.text, PAD_PX + 18, top + 29, w - 2 * PAD_PX - 24);
        this.buttons.push({ action: `alarm:${a.id}`, x: PAD_PX, y: top, w: w - 2 * PAD_PX, h: ROW_PX - 6 });
        top += ROW_PX;
      }
    }
    this.texture.needsUpdate = true;
  }

  /**
   * @param {CanvasRenderingContext2D} g @param {string} action @param {string} text
   * @param {number} x @param {number} y @param {number} w
   */
  #button(g, action, text, x, y, w) {
    const b = { action, x, y, w, h: HEADER_PX - 20 };
    g.fillStyle = '#2d333b';
    g.fillRect(b.x, b.y, b.w, b.h);
    g.strokeStyle = '#4da3ff';
    g.lineWidth = 2;
    g.strokeRect(b.x, b.y, b.w, b.h);
    g.fillStyle = '#ffffff';
    g.font = '26px sans-serif';
    g.fillText(text, x + 14, y + 31, w - 28);
    this.buttons.push(b);
    return b;
  }

  /**
   * What the ray presses: a button's action, '' for the panel elsewhere, null when it misses the panel.
   * @param {THREE.Raycaster} raycaster @returns {string|null}
   */
  hit(raycaster) {
    if (!this.mesh.visible) return null;
    const uv = raycaster.intersectObject(this.mesh, false)[0]?.uv;
    if (!uv) return null;
    const x = uv.x * PANEL_PX[0];
    const y = (1 - uv.y) * PANEL_PX[1];
    return this.buttons.find((b) => x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h)?.action ?? '';
  }

  /** Where a button's centre is in the scene (tests aim at it), or null. @param {string} action */
  pointOf(action) {
    const b = this.buttons.find((x) => x.action === action);
    if (!b) return null;
    this.mesh.updateMatrixWorld();
    const u = (b.x + b.w / 2) / PANEL_PX[0] - 0.5;
    const v = 0.5 - (b.y + b.h / 2) / PANEL_PX[1];
    return new THREE.Vector3(u * PANEL_M[0], v * PANEL_M[1], 0).applyMatrix4(this.mesh.matrixWorld);
  }
}
