// Topic pins in 3D: a small round marker at each pinned point, coloured by the topic's status. A sprite
// always faces the viewer and keeps its size on screen; it is part of the scene, so XR shows it too.
import * as THREE from 'three';

export const STATUS_COLORS = /** @type {Record<string, string>} */ ({
  open: '#f85149', in_progress: '#d29922', resolved: '#3fb950', closed: '#9aa4b2',
});
// Pin size as a fraction of the view's height (sizeAttenuation off: the same on screen at any distance).
const PIN_SCALE = 0.035;
// Pins are drawn over the model: a pin on a far face must not hide behind its own element.
const PIN_RENDER_ORDER = 10;
const DOT_PX = 64;

/** A white dot with a dark rim, tinted per pin by the sprite material's colour. */
function dotTexture() {
  const c = document.createElement('canvas');
  c.width = c.height = DOT_PX;
  const g = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d'));
  g.beginPath();
  g.arc(DOT_PX / 2, DOT_PX / 2, DOT_PX / 2 - 4, 0, Math.PI * 2);
  g.fillStyle = '#ffffff';
  g.fill();
  g.lineWidth = 6;
  g.strokeStyle = '#14181e';
  g.stroke();
  return new THREE.CanvasTexture(c);
}

export class PinLayer {
  /**
   * @param {import('../viewer.js').Viewer} viewer
   * @param {import('./store.js').TopicStore} store
   */
  constructor(viewer, store) {
    this.viewer = viewer;
    this.store = store;
    /** @type {THREE.Texture|null} made with the first pin: a 2D canvas costs ~25 ms at boot on software GL */
    this.texture = null;
    this.group = new THREE.Group();
    this.group.name = 'topic-pins';
    viewer.world.add(this.group);
    /** @type {Map<string, THREE.Sprite>} topic guid -> pin */
    this.pins = new Map();
    store.addEventListener('change', () => this.sync());
  }

  sync() {
    for (const [guid, pin] of this.pins) {
      if (this.store.topics.get(guid)?.pin) continue;
      pin.material.dispose();
      pin.removeFromParent();
      this.pins.delete(guid);
    }
    for (const t of this.store.topics.values()) {
      if (!t.pin) continue;
      let pin = this.pins.get(t.guid);
      if (!pin) {
        this.texture ??= dotTexture();
        pin = new THREE.Sprite(new THREE.SpriteMaterial({ map: this.texture, sizeAttenuation: false, depthTest: false }));
        pin.scale.setScalar(PIN_SCALE);
        pin.renderOrder = PIN_RENDER_ORDER;
        pin.userData.topic = t.guid;
        this.group.add(pin);
        this.pins.set(t.guid, pin);
      }
      const [x, y, z] = t.pin.point;
      pin.position.set(x, y, z);
      pin.material.color.set(STATUS_COLORS[t.status] ?? STATUS_COLORS.open);
    }
    this.viewer.invalidate();
  }

  /**
   * The topic whose pin is under client pixel (x, y), if any.
   * @param {number} x @param {number} y @returns {string|null}
   */
  topicAt(x, y) {
    const r = this.viewer.renderer.domElement.getBoundingClientRect();
    const rc = new THREE.Raycaster();
    rc.setFromCamera(new THREE.Vector2(((x - r.left) / r.width) * 2 - 1, -((y - r.top) / r.height) * 2 + 1), this.viewer.camera);
    return this.topicOn(rc, this.viewer.camera);
  }

  /**
   * The topic whose pin `raycaster` hits first (an XR controller's ray), if any. Pins face `camera` and
   * keep their size on its screen, so the hit test needs it (in XR: the headset's camera).
   * @param {THREE.Raycaster} raycaster @param {THREE.Camera} camera @returns {string|null}
   */
  topicOn(raycaster, camera) {
    if (!this.pins.size) return null;
    raycaster.camera = camera;
    const hit = raycaster.intersectObjects([...this.pins.values()], false)[0];
    return hit ? hit.object.userData.topic : null;
  }

  /** The pin's colour as "#rrggbb" (tests, legend). @param {string} guid */
  colorOf(guid) {
    const pin = this.pins.get(guid);
    return pin ? `#${pin.material.color.getHexString()}` : '';
  }

  /** Where a pin is on screen (client px), or null. @param {string} guid */
  screenOf(guid) {
    const pin = this.pins.get(guid);
    if (!pin) return null;
    this.viewer.camera.updateMatrixWorld(); // the camera may have moved since the last frame
    const p = pin.getWorldPosition(new THREE.Vector3()).project(this.viewer.camera);
    const r = this.viewer.renderer.domElement.getBoundingClientRect();
    return { x: r.left + ((p.x + 1) / 2) * r.width, y: r.top + ((1 - p.y) / 2) * r.height };
  }
}
