// One-click floor plans: for a storey, a horizontal cut at its floor + 1.2 m (what architects' plans show:
// above window sills, below lintels) seen from straight above with the orthographic camera.
import * as THREE from 'three';

/** Height of a plan's cut above the storey's floor (m). */
export const PLAN_CUT_M = 1.2;
// Floor levels are compared to the centimetre.
const LEVEL_STEP_M = 0.01;
// The plan shows the storey's extent with this much room around it.
const PLAN_MARGIN = 1.1;

/** @typedef {{id: string, name: string, floor: number, box: THREE.Box3}} Storey floor and box in model coordinates */

/**
 * The storeys of the model (IfcBuildingStorey in the element tree), lowest first. A storey's floor is the
 * level most of its elements stand on — the most common bottom of their boxes, to the centimetre (walls,
 * columns, doors and furniture start at the floor; a slab reaches below it); its box holds them all.
 * @param {import('../catalog.js').Catalog} catalog @param {import('../batcher.js').ElementBatches} batches
 * @returns {Storey[]}
 */
export function storeys(catalog, batches) {
  /** @type {Storey[]} */
  const out = [];
  for (const record of catalog.byId.values()) {
    if (record.class !== 'IfcBuildingStorey') continue;
    const box = new THREE.Box3();
    /** @type {Map<number, number>} */
    const bottoms = new Map();
    const stack = [...(catalog.children.get(record.id) ?? [])];
    for (let id = stack.pop(); id !== undefined; id = stack.pop()) {
      stack.push(...(catalog.children.get(id) ?? []));
      const b = batches.elements.get(id)?.box;
      if (!b || b.isEmpty()) continue;
      box.union(b);
      const level = Math.round(b.min.y / LEVEL_STEP_M);
      bottoms.set(level, (bottoms.get(level) ?? 0) + 1);
    }
    if (box.isEmpty()) continue;
    let floor = 0;
    let most = 0;
    for (const [level, n] of bottoms) {
      if (n > most || (n === most && level < floor)) [floor, most] = [level, n];
    }
    out.push({ id: record.id, name: record.name || record.id, floor: floor * LEVEL_STEP_M, box });
  }
  return out.sort((a, b) => a.floor - b.floor);
}

/**
 * Show a storey's plan: no other cut, one horizontal plane PLAN_CUT_M above its floor keeping what is below,
 * and an orthographic view from straight above (north, the model's -Z, up) fitting the storey.
 * @param {import('../viewer.js').Viewer} viewer @param {import('./section.js').SectionTool} section
 * @param {Storey} storey
 */
export function showFloorPlan(viewer, section, storey) {
  const cut = storey.floor + PLAN_CUT_M;
  section.clear();
  const centre = storey.box.getCenter(new THREE.Vector3());
  section.add(new THREE.Vector3(0, -1, 0), new THREE.Vector3(centre.x, cut, centre.z), `Plan: ${storey.name}`);
  const size = storey.box.getSize(new THREE.Vector3());
  const toWorld = viewer.world.matrixWorld;
  const scale = toWorld.getMaxScaleOnAxis() || 1;
  const aspect = viewer.perspective.aspect || 1;
  const viewHeight = PLAN_MARGIN * Math.max(size.z, size.x / aspect) * scale;
  const target = new THREE.Vector3(centre.x, cut, centre.z).applyMatrix4(toWorld);
  // Straight down, a hair towards +Z so that "up" on screen stays the model's -Z (a view exactly along the
  // camera's up vector has no heading).
  const height = Math.max(size.y, 1) * 2 * scale;
  const eye = target.clone().add(new THREE.Vector3(0, height, height * 1e-4));
  viewer.setProjection('orthographic');
  viewer.flyTo(eye, target, 0, viewHeight);
}
