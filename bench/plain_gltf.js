// The baseline of bench/web.py: what a plain three.js page does with the same GLB: GLTFLoader, then
// scene.add(gltf.scene) — one mesh (and draw call) per node, the glTF's own (PBR) materials, the same
// lights, background, canvas size and camera framing as the TwinView viewer. It renders on request only
// (like the viewer), so both are timed the same way: window.plain.request() -> the next 'frame' event.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

const q = new URLSearchParams(location.search);
const w = Number(q.get('w')) || innerWidth;
const h = Number(q.get('h')) || innerHeight;
const renderer = new THREE.WebGLRenderer({ antialias: true });
renderer.setPixelRatio(window.devicePixelRatio);
renderer.setSize(w, h);
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x1d2127);
scene.add(new THREE.HemisphereLight(0xffffff, 0x445566, 1.4));
const sun = new THREE.DirectionalLight(0xffffff, 1.4);
sun.position.set(5, 10, 7);
scene.add(sun);
const camera = new THREE.PerspectiveCamera(50, w / h, 0.05, 5000);
const events = new EventTarget();
const target = new THREE.Vector3();
let wanted = false;
let frames = 0;
const plain = { renderer, scene, camera, target, events, request: () => { wanted = true; } };
window.plain = plain;

renderer.setAnimationLoop(() => {
  if (!wanted) return;
  wanted = false;
  renderer.render(scene, camera);
  if (frames++ === 0) performance.mark('plain:first-frame');
  events.dispatchEvent(new Event('frame'));
});

performance.mark('plain:app'); // bench/web.py's start-up phases
const gltf = await new GLTFLoader().loadAsync(q.get('glb'));
performance.mark('plain:parsed');
scene.add(gltf.scene);
// The viewer's framing (Viewer.fitBox): the bounding sphere, 1.4x margin, looking down at least ~35°.
const sphere = new THREE.Box3().setFromObject(gltf.scene).getBoundingSphere(new THREE.Sphere());
const fov = THREE.MathUtils.degToRad(camera.fov);
const dist = (1.4 * Math.max(sphere.radius, 0.1)) / Math.sin(Math.min(fov, fov * camera.aspect) / 2);
const dir = new THREE.Vector3(10, 8, 10).normalize();
dir.y = Math.max(dir.y, 0.7);
dir.normalize();
camera.position.copy(sphere.center).addScaledVector(dir, dist);
camera.near = Math.max(dist / 1000, 0.01);
camera.far = dist * 100 + sphere.radius * 10;
camera.updateProjectionMatrix();
target.copy(sphere.center);
camera.lookAt(target);
plain.request();
