// Distance measurement: two picks on the model, a line between them and the distance in metres.
import * as THREE from 'three';

export class MeasureTool {
  /** @param {import('../viewer.js').Viewer} viewer @param {HTMLElement} readout */
  constructor(viewer, readout) {
    this.viewer = viewer;
    this.readout = readout;
    this.active = false;
    /** @type {THREE.Vector3[]} picked points, in model coordinates */
    this.points = [];
    this.line = new THREE.Line(new THREE.BufferGeometry(), new THREE.LineBasicMaterial({ color: 0xf0c86a, depthTest: false }));
    this.line.renderOrder = 10;
    this.line.visible = false; // while empty: drawn, it would have its shader compiled at start-up for nothing
    this.markers = [0, 1].map(() => {
      const m = new THREE.Mesh(new THREE.SphereGeometry(1, 12, 8), new THREE.MeshBasicMaterial({ color: 0xf0c86a, depthTest: false }));
      m.renderOrder = 10;
      m.visible = false;
      return m;
    });
    viewer.world.add(this.line, ...this.markers);
  }

  /** @param {boolean} on */
  setActive(on) {
    this.active = on;
    this.points = [];
    this.#draw();
  }

  /**
   * Add a picked point (world coordinates); the third pick starts a new measurement.
   * @param {THREE.Vector3} worldPoint
   * @returns {number|null} the distance once two points are set
   */
  add(worldPoint) {
    if (this.points.length === 2) this.points = [];
    this.points.push(this.viewer.world.worldToLocal(worldPoint.clone()));
    this.#draw();
    return this.distance();
  }

  distance() {
    return this.points.length === 2 ? this.points[0].distanceTo(this.points[1]) : null;
  }

  #draw() {
    this.line.geometry.setFromPoints(this.points.length === 2 ? this.points : []);
    this.line.visible = this.points.length === 2;
    const size = this.viewer.camera.position.distanceTo(this.viewer.controls.target) * 0.006;
    this.markers.forEach((m, i) => {
      m.visible = this.active && i < this.points.length;
      if (m.visible) m.position.copy(this.points[i]);
      m.scale.setScalar(size);
    });
    const d = this.distance();
    this.readout.hidden = !this.active;
    this.readout.textContent = d === null ? `Measure: pick ${this.points.length ? 'the second' : 'a first'} point`
      : `Distance: ${d.toFixed(3)} m  (Δx ${(this.points[1].x - this.points[0].x).toFixed(2)}, Δy ${(this.points[1].y - this.points[0].y).toFixed(2)}, Δz ${(this.points[1].z - this.points[0].z).toFixed(2)})`;
    this.viewer.invalidate();
  }
}
