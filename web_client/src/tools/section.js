// Section box: six clipping planes around the selection (or the whole model); the slider lowers the
// top plane, which makes it a horizontal section plane through the box.
import * as THREE from 'three';

export class SectionTool {
  /** @param {import('../viewer.js').Viewer} viewer @param {HTMLInputElement} slider */
  constructor(viewer, slider) {
    this.viewer = viewer;
    this.slider = slider;
    this.box = new THREE.Box3();
    this.active = false;
    // Normals point inwards: a point is kept where every plane's distance is >= 0.
    this.planes = [
      new THREE.Plane(new THREE.Vector3(1, 0, 0)), new THREE.Plane(new THREE.Vector3(-1, 0, 0)),
      new THREE.Plane(new THREE.Vector3(0, 1, 0)), new THREE.Plane(new THREE.Vector3(0, -1, 0)),
      new THREE.Plane(new THREE.Vector3(0, 0, 1)), new THREE.Plane(new THREE.Vector3(0, 0, -1)),
    ];
    this.outline = new THREE.Box3Helper(this.box, 0xf0c86a);
    this.outline.visible = false;
    viewer.world.add(this.outline);
    slider.addEventListener('input', () => this.#update());
  }

  /**
   * Cut to `box` (world coordinates of the model), or switch off with null.
   * @param {THREE.Box3|null} box
   */
  set(box) {
    this.active = Boolean(box);
    if (box) this.box.copy(box).expandByScalar(0.01);
    this.slider.value = this.slider.max;
    this.outline.visible = this.active;
    this.viewer.renderer.clippingPlanes = this.active ? this.planes : [];
    this.#update();
  }

  #update() {
    if (!this.active) return this.viewer.invalidate();
    const b = this.box.clone().applyMatrix4(this.viewer.world.matrixWorld);
    const top = THREE.MathUtils.lerp(b.min.y, b.max.y, Number(this.slider.value) / Number(this.slider.max));
    const [px, nx, py, ny, pz, nz] = this.planes;
    px.constant = -b.min.x;
    nx.constant = b.max.x;
    py.constant = -b.min.y;
    ny.constant = top;
    pz.constant = -b.min.z;
    nz.constant = b.max.z;
    this.viewer.invalidate();
  }
}
