// Where to look first. The area of interest of a scene is what the session is about: the presenter's view, the
// current procedure step, or else the elements with live data, rules or alarms (docs/CLIENT.md, "Start pose").
// From it come the first desktop view (an orbit view of the area from the side where walls hide least of it) and
// the VR start pose (a standing spot on a floor, facing the area, with most of it in sight). Everything here is in
// model coordinates; `modelCaster` does the raycasts through the world group.
import * as THREE from 'three';

// At most this many elements stand for the area in the visibility tests (each one is a raycast per candidate).
const MAX_SAMPLES = 24;
// Desktop: headings tried around the area, and the camera's elevations above the horizon. fitBox looks down at
// least ~44°, so lower elevations would not be what is shown.
const ORBIT_HEADINGS = 8;
const ORBIT_ELEVATIONS_DEG = [45, 60, 75];
// VR: headings tried around the area, and distances from its centre as fractions of the one at which it fits the view.
const STAND_HEADINGS = 16;
const STAND_FRACTIONS = [1, 0.75, 0.5, 0.3];
// Eye height of someone standing (m): where a standing spot's view is tested.
export const EYE_HEIGHT_M = 1.6;
// The area should fit within this half-angle of the gaze (a headset shows ~100° across; a margin is left) ...
const VIEW_HALF_ANGLE_DEG = 35;
// ... and within this half-angle up and down.
const VIEW_HALF_ANGLE_UP_DEG = 40;
// A standing spot is at least this far (m) from the area's centre.
const MIN_STAND_M = 1.2;
// The floor of a standing spot is the surface under it at most this far above the area's base (m): a step or plinth.
const STEP_UP_M = 0.5;
// What counts as a floor: a surface whose normal is within ~30° of straight up.
export const FLOOR_MIN_NORMAL_Y = 0.85;
// Someone standing needs the space from this height over the floor (m) up to this far above the eye free of
// other elements (no pipe through the head).
const KNEE_M = 0.3;
const HEAD_ROOM_M = 0.3;

/**
 * @typedef {{id: string, at: THREE.Vector3}} Sample an element of the area and its centre
 * @typedef {{ids: string[], box: THREE.Box3, samples: Sample[], heading: THREE.Vector3|null}} Area what to look
 *   at (model coordinates): its elements,
 *   their box and the few of them the visibility tests look at; `heading`, when known, is the horizontal
 *   direction it was looked at from (the presenter's, the step's camera)
 * @typedef {{id: string|null, point: THREE.Vector3, normal: THREE.Vector3}} ModelHit
 * @typedef {(origin: THREE.Vector3, direction: THREE.Vector3, far?: number) => ModelHit|null} ModelCaster
 *   the first element a ray hits, in model coordinates (`direction` unit length)
 * @typedef {{floor: THREE.Vector3, heading: THREE.Vector3}} StandingPose where to stand (a point on the floor) and
 *   which way to face (unit, horizontal)
 */

/**
 * The raycasts of this module: the viewer's picking (hidden and cut-away elements are not hit), in model coordinates.
 * @param {import('./viewer.js').Viewer} viewer @param {import('./batcher.js').ElementBatches} batches
 * @returns {ModelCaster}
 */
export function modelCaster(viewer, batches) {
  const rc = new THREE.Raycaster();
  viewer.world.updateMatrixWorld(true); // batches made since the last frame have no world matrix yet
  return (origin, direction, far = Infinity) => {
    const toWorld = viewer.world.matrixWorld;
    const toModel = toWorld.clone().invert();
    const scale = viewer.world.scale.x;
    rc.ray.origin.copy(origin).applyMatrix4(toWorld);
    rc.ray.direction.copy(direction).transformDirection(toWorld);
    rc.far = far * scale;
    const hit = viewer.pickRay(rc);
    if (!hit) return null;
    const normal = (hit.face?.normal.clone() ?? new THREE.Vector3(0, 1, 0)).transformDirection(hit.object.matrixWorld)
      .transformDirection(toModel);
    return { id: batches.idOf(hit), point: hit.point.clone().applyMatrix4(toModel), normal };
  };
}

/**
 * The area of interest: the presenter's view (the element it looks at), else the current procedure step's
 * highlighted elements, else the elements with live values, visual rules or alarms; null when none has geometry.
 * @param {{batches: import('./batcher.js').ElementBatches, state: import('./state.js').TwinState, cast: ModelCaster,
 *          presenter?: (import('./protocol.js').Viewpoint['camera']|null), step?: (import('./protocol.js').StepInfo|null)}} scene
 * @returns {Area|null}
 */
export function areaOfInterest({ batches, state, cast, presenter = null, step = null }) {
  if (presenter) {
    const dir = vec3(presenter.direction).normalize();
    const id = cast(vec3(presenter.position), dir)?.id;
    const area = id ? areaOf([id], batches, dir) : null;
    if (area) return area;
  }
  if (step?.highlight?.length) {
    const cam = step.viewpoint?.camera;
    const area = areaOf(step.highlight, batches, cam ? vec3(cam.direction) : null);
    if (area) return area;
  }
  const live = new Set([...state.props.keys(), ...state.visuals.keys(), ...[...state.alarms.values()].map((a) => a.element)]);
  return areaOf([...live], batches, null);
}

/**
 * The area of these elements (those shown), looked at along `looking` if known; null when none is shown.
 * @param {string[]} ids @param {import('./batcher.js').ElementBatches} batches @param {THREE.Vector3|null} looking
 * @returns {Area|null}
 */
export function areaOf(ids, batches, looking) {
  const box = new THREE.Box3();
  const shown = ids.filter((id) => batches.isVisible(id)); // so each is in `elements`
  const boxOf = (/** @type {string} */ id) => /** @type {import('./batcher.js').ElementEntry} */ (batches.elements.get(id)).box;
  for (const id of shown) box.union(boxOf(id));
  if (box.isEmpty()) return null;
  /** @type {Sample[]} spread over the list */
  const samples = [];
  const step = Math.max(1, shown.length / MAX_SAMPLES);
  for (let i = 0; i < shown.length && samples.length < MAX_SAMPLES; i += step) {
    const id = shown[Math.floor(i)];
    samples.push({ id, at: boxOf(id).getCenter(new THREE.Vector3()) });
  }
  return { ids: shown, box, samples, heading: looking ? horizontal(looking) : null };
}

/**
 * Turn the desktop camera to an orbit view of the area: centred on it, fitted (Viewer.fitBox), from the heading
 * and elevation that see most of its elements; the current heading, then the lower elevation, wins ties.
 * @param {import('./viewer.js').Viewer} viewer @param {Area} area @param {ModelCaster} cast
 */
export function orbitToArea(viewer, area, cast) {
  const { camera, controls, world } = viewer;
  const center = area.box.getCenter(new THREE.Vector3()).applyMatrix4(world.matrixWorld);
  const current = horizontal(camera.position.clone().sub(controls.target)) ?? new THREE.Vector3(1, 0, 1).normalize();
  const toModel = world.matrixWorld.clone().invert();
  let best = { seen: -1, dir: new THREE.Vector3() };
  const candidates = headings(current, ORBIT_HEADINGS).flatMap((heading) => ORBIT_ELEVATIONS_DEG.map((deg) => {
    const el = THREE.MathUtils.degToRad(deg);
    return heading.clone().multiplyScalar(Math.cos(el)).setY(Math.sin(el));
  }));
  for (const dir of candidates) {
    // fitBox keeps the direction from its target to the camera: try the view it would give.
    controls.target.copy(center);
    camera.position.copy(center).add(dir);
    viewer.fitBox(area.box.clone().applyMatrix4(world.matrixWorld), { animate: false });
    const seen = countSeen(camera.position.clone().applyMatrix4(toModel), area, cast, null);
    if (seen > best.seen) best = { seen, dir };
    if (seen === area.samples.length) break; // nothing can do better than the first that sees it all
  }
  controls.target.copy(center);
  camera.position.copy(center).add(best.dir);
  viewer.fitBox(area.box.clone().applyMatrix4(world.matrixWorld), { animate: false });
}

/**
 * Where to stand to see the area at 1:1: a spot on a floor, outside every element, facing the area, from which
 * most of its elements are in sight and within the view; the preferred heading (the area's own, else `prefer`)
 * is tried first and wins ties, then the farther spots (which show more of the area at once).
 * @param {Area} area @param {import('./batcher.js').ElementBatches} batches @param {ModelCaster} cast
 * @param {THREE.Vector3|null} prefer horizontal direction to face when the area does not say
 * @returns {StandingPose}
 */
export function standingPose(area, batches, cast, prefer) {
  const center = area.box.getCenter(new THREE.Vector3());
  const size = area.box.getSize(new THREE.Vector3());
  const fit = Math.max(MIN_STAND_M, Math.hypot(size.x, size.z) / 2 / Math.tan(THREE.MathUtils.degToRad(VIEW_HALF_ANGLE_DEG)));
  const ground = modelGround(batches);
  const first = area.heading ?? prefer ?? new THREE.Vector3(0, 0, -1);
  /** @type {{floor: THREE.Vector3, heading: THREE.Vector3, seen: number}|null} */
  let best = null;
  for (const heading of headings(first, STAND_HEADINGS)) {
    for (const k of STAND_FRACTIONS) {
      const d = Math.max(MIN_STAND_M, fit * k);
      const spot = center.clone().addScaledVector(heading, -d);
      const floor = floorUnder(spot.setY(area.box.min.y + STEP_UP_M), cast, ground);
      if (!bodyFree(floor, area, batches)) continue;
      const eye = floor.clone().setY(floor.y + EYE_HEIGHT_M);
      const seen = countSeen(eye, area, cast, heading);
      if (seen === area.samples.length) return { floor, heading }; // nothing can do better than the first that sees it all
      if (!best || seen > best.seen) best = { floor, heading, seen };
    }
  }
  if (best) return { floor: best.floor, heading: best.heading };
  // Every spot inside something (a model made of one solid): stand back from the area, facing it.
  return { floor: center.clone().addScaledVector(first, -fit).setY(ground), heading: first };
}

/**
 * How many samples an eye sees: the first element on the way to a sample's centre is one of the area's (what
 * stands in front of a pump is often its motor), and, with a gaze, the sample is within the view around it.
 * @param {THREE.Vector3} eye @param {Area} area @param {ModelCaster} cast
 * @param {THREE.Vector3|null} gaze horizontal gaze, or null for any direction
 */
function countSeen(eye, area, cast, gaze) {
  const inArea = new Set(area.ids);
  const cosSide = Math.cos(THREE.MathUtils.degToRad(VIEW_HALF_ANGLE_DEG));
  const maxUp = Math.tan(THREE.MathUtils.degToRad(VIEW_HALF_ANGLE_UP_DEG));
  let seen = 0;
  const dir = new THREE.Vector3();
  for (const s of area.samples) {
    dir.subVectors(s.at, eye);
    const dist = dir.length();
    if (dist < 1e-6) continue;
    if (gaze) {
      const flat = Math.hypot(dir.x, dir.z);
      if (flat < 1e-6 || (dir.x * gaze.x + dir.z * gaze.z) / flat < cosSide || Math.abs(dir.y) / flat > maxUp) continue;
    }
    const hit = cast(eye, dir.divideScalar(dist), dist);
    if (!hit || (hit.id !== null && inArea.has(hit.id))) seen++;
  }
  return seen;
}

/**
 * The floor under a spot: the first upward-facing surface below it, else the model's ground.
 * @param {THREE.Vector3} from @param {ModelCaster} cast @param {number} ground
 */
function floorUnder(from, cast, ground) {
  const down = new THREE.Vector3(0, -1, 0);
  const origin = from.clone();
  for (let tries = 0; tries < 4; tries++) { // look past what is not a floor (a sloped pipe's side)
    const hit = cast(origin, down, origin.y - ground);
    if (!hit) break;
    if (hit.normal.y >= FLOOR_MIN_NORMAL_Y) return hit.point.clone();
    origin.y = hit.point.y - 1e-3;
  }
  return from.clone().setY(ground);
}

/**
 * Whether someone can stand there: the space from knee to above the eye is in no element's box, except boxes that hold the
 * area's centre too (a room, a storey's space, a site).
 * @param {THREE.Vector3} floor @param {Area} area @param {import('./batcher.js').ElementBatches} batches
 */
function bodyFree(floor, area, batches) {
  const body = new THREE.Box3(floor.clone().setY(floor.y + KNEE_M), floor.clone().setY(floor.y + EYE_HEIGHT_M + HEAD_ROOM_M));
  const center = area.box.getCenter(new THREE.Vector3());
  for (const [id, e] of batches.elements) {
    if (e.box.intersectsBox(body) && !e.box.containsPoint(center) && batches.isVisible(id)) return false;
  }
  return true;
}

/** The lowest point of the shown model (the ground outside its buildings). @param {import('./batcher.js').ElementBatches} batches */
function modelGround(batches) {
  let y = Infinity;
  for (const [id, e] of batches.elements) if (e.box.min.y < y && batches.isVisible(id)) y = e.box.min.y;
  return Number.isFinite(y) ? y : 0;
}

/**
 * `n` horizontal unit directions around the circle, starting with `first` and alternating either side of it.
 * @param {THREE.Vector3} first @param {number} n
 */
function headings(first, n) {
  const out = [];
  const axis = new THREE.Vector3(0, 1, 0);
  for (let i = 0; i < n; i++) {
    const k = Math.ceil(i / 2) * (i % 2 ? 1 : -1);
    out.push(first.clone().applyAxisAngle(axis, (k * 2 * Math.PI) / n));
  }
  return out;
}

/** A direction's horizontal part, unit length, or null when it points straight up or down. @param {THREE.Vector3} v */
export function horizontal(v) {
  const h = new THREE.Vector3(v.x, 0, v.z);
  return h.lengthSq() > 1e-8 ? h.normalize() : null;
}

/** @param {import('./protocol.js').Vec3} v */
const vec3 = ([x, y, z]) => new THREE.Vector3(x, y, z);
