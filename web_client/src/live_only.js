// What is drawn live but left out of snapshots: a topic's picture shows the model as its author saw it, not the
// other people who were looking at it (a co-located user's frustum would fill it). Such objects — other users'
// avatars and lasers — are on a layer of their own, which the viewer's camera shows and snapshots leave out.
import * as THREE from 'three';

// Layers 1 and 2 are three.js's XR eyes (WebXRManager); 0 is everything else.
export const LIVE_ONLY_LAYER = 3;

/** Put an object and all it holds on the live-only layer. @param {THREE.Object3D} obj */
export function markLiveOnly(obj) {
  obj.traverse((o) => o.layers.set(LIVE_ONLY_LAYER));
}

/** Let a camera (and the XR cameras, which take its layers) draw the live-only layer. @param {THREE.Camera} camera */
export function showLiveOnly(camera) {
  camera.layers.enable(LIVE_ONLY_LAYER);
}

/**
 * Render the scene once without the live-only layer (into the preserved drawing buffer, for a snapshot).
 * @param {THREE.WebGLRenderer} renderer @param {THREE.Scene} scene @param {THREE.Camera} camera
 */
export function renderWithoutLive(renderer, scene, camera) {
  const shown = camera.layers.isEnabled(LIVE_ONLY_LAYER);
  camera.layers.disable(LIVE_ONLY_LAYER);
  try {
    renderer.render(scene, camera);
  } finally {
    if (shown) camera.layers.enable(LIVE_ONLY_LAYER);
  }
}
