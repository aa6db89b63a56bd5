// Turn a glTF scene with one node per element into a few BatchedMeshes (one per material kind), keeping
// per-element colour, visibility, transform and picking through a map twin id -> (batch, instance).
// The element's own material colour becomes its per-instance base colour, so elements whose materials
// differ only in colour share one draw call.
import * as THREE from 'three';

/**
 * @typedef {{target: THREE.Object3D, instanceId: number, base: THREE.Matrix4}} Part
 *   instanceId is -1 for a standalone object (points, lines), which keeps its own cloned material.
 * @typedef {{id: string, name: string, cls: string, parent: (string|null), parts: Part[],
 *            baseColor: THREE.Color, box: THREE.Box3}} ElementEntry
 * @typedef {{id: string, name: string, cls: string, parent: (string|null)}} NodeInfo
 * @typedef {{entry: ElementEntry, mesh: THREE.Mesh, part: Part}} BatchItem
 */

const _m = new THREE.Matrix4();
const _c = new THREE.Color();

export class ElementBatches {
  /** @param {THREE.Object3D} root the parsed glTF scene (it is consumed: geometries move into batches) */
  constructor(root) {
    this.group = new THREE.Group();
    this.group.name = 'twin-elements';
    /** @type {Map<string, ElementEntry>} */
    this.elements = new Map();
    /** @type {NodeInfo[]} every node carrying an id, in document order (the tree when no manifest) */
    this.nodes = [];
    /** @type {THREE.BatchedMesh[]} */
    this.batches = [];
    this.#build(root);
  }

  /** @param {THREE.Object3D} root */
  #build(root) {
    root.updateMatrixWorld(true);
    /** @type {Map<string, {material: THREE.Material, items: BatchItem[]}>} */
    const groups = new Map();
    /** @type {[ElementEntry, THREE.Object3D][]} */
    const standalone = [];
    root.traverse((obj) => {
      const id = obj.userData?.id;
      if (typeof id === 'string' && obj.userData.id !== obj.parent?.userData?.id) {
        this.nodes.push({ id, name: String(obj.userData.name ?? id), cls: String(obj.userData.class ?? ''),
          parent: ownerOf(obj.parent)?.userData.id ?? null });
      }
      const isMesh = /** @type {any} */ (obj).isMesh;
      if (!isMesh && !(/** @type {any} */ (obj).isPoints) && !(/** @type {any} */ (obj).isLine)) return;
      const entry = this.#entryFor(obj);
      const material = /** @type {any} */ (obj).material;
      if (isMesh && !Array.isArray(material)) {
        const key = materialKey(material, /** @type {THREE.Mesh} */ (obj).geometry);
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { material, items: [] }));
        /** @type {Part} */
        const part = { target: this.group, instanceId: -1, base: obj.matrixWorld.clone() }; // batch set later
        g.items.push({ entry, mesh: /** @type {THREE.Mesh} */ (obj), part });
        if (entry.parts.length === 0) entry.baseColor.copy(material.color ?? _c.set(0xffffff));
        entry.parts.push(part);
        entry.box.union(worldBox(obj));
      } else {
        standalone.push([entry, obj]); // moved after the traversal, which must not see its tree change
      }
    });
    for (const g of groups.values()) this.#addBatch(g.material, g.items);
    for (const [entry, obj] of standalone) this.#addStandalone(entry, obj);
  }

  /** @param {THREE.Object3D} obj */
  #entryFor(obj) {
    const owner = ownerOf(obj);
    const id = owner ? owner.userData.id : obj.name || obj.uuid;
    let entry = this.elements.get(id);
    if (!entry) {
      entry = { id, name: String(owner?.userData.name ?? id), cls: String(owner?.userData.class ?? ''),
        parent: ownerOf(owner?.parent ?? null)?.userData.id ?? null, parts: [], baseColor: new THREE.Color(1, 1, 1),
        box: new THREE.Box3() };
      this.elements.set(id, entry);
    }
    return entry;
  }

  /**
   * @param {THREE.Material} source
   * @param {BatchItem[]} items
   */
  #addBatch(source, items) {
    const material = /** @type {THREE.MeshStandardMaterial} */ (source.clone());
    if ('color' in material) material.color.set(0xffffff); // colour lives per instance
    const needUv = Boolean(/** @type {any} */ (material).map);
    const needColor = material.vertexColors;
    /** @type {Map<string, THREE.BufferGeometry>} */
    const unique = new Map();
    let vertices = 0;
    let indices = 0;
    for (const { mesh } of items) {
      if (unique.has(mesh.geometry.uuid)) continue;
      const g = normalizeGeometry(mesh.geometry, needUv, needColor);
      unique.set(mesh.geometry.uuid, g);
      vertices += g.attributes.position.count;
      indices += /** @type {THREE.BufferAttribute} */ (g.index).count;
    }
    const batch = new THREE.BatchedMesh(items.length, vertices, indices, material);
    batch.name = `batch:${source.name || source.type}`;
    /** @type {Map<string, number>} */
    const geometryIds = new Map();
    for (const [uuid, g] of unique) {
      geometryIds.set(uuid, batch.addGeometry(g));
      g.dispose();
    }
    /** @type {string[]} instance id -> twin id */
    const ids = [];
    for (const { entry, mesh, part } of items) {
      const instanceId = batch.addInstance(/** @type {number} */ (geometryIds.get(mesh.geometry.uuid)));
      batch.setMatrixAt(instanceId, mesh.matrixWorld);
      batch.setColorAt(instanceId, /** @type {any} */ (mesh.material).color ?? entry.baseColor);
      ids[instanceId] = entry.id;
      part.target = batch;
      part.instanceId = instanceId;
      mesh.geometry.dispose();
    }
    batch.userData.ids = ids;
    this.batches.push(batch);
    this.group.add(batch);
  }

  /** @param {ElementEntry} entry @param {THREE.Object3D} obj */
  #addStandalone(entry, obj) {
    const o = /** @type {THREE.Points} */ (obj);
    o.material = /** @type {THREE.Material} */ (o.material).clone();
    if (entry.parts.length === 0) entry.baseColor.copy(/** @type {any} */ (o.material).color ?? _c.set(0xffffff));
    const base = obj.matrixWorld.clone();
    obj.removeFromParent();
    base.decompose(obj.position, obj.quaternion, obj.scale);
    obj.userData.id = entry.id;
    this.group.add(obj);
    entry.parts.push({ target: obj, instanceId: -1, base });
    entry.box.union(worldBox(obj));
  }

  /** Draw calls this group costs per frame (one per batch or standalone object). */
  get drawCalls() {
    return this.group.children.length;
  }

  /**
   * The twin id under a raycast hit.
   * @param {THREE.Intersection} hit
   * @returns {string|null}
   */
  idOf(hit) {
    const obj = /** @type {any} */ (hit.object);
    if (obj.isBatchedMesh) return obj.userData.ids[/** @type {number} */ (hit.batchId)] ?? null;
    return obj.userData.id ?? null;
  }

  /**
   * Set an element's colour; null restores the colour from the model.
   * @param {string} id @param {THREE.Color|null} color
   */
  setColor(id, color) {
    const e = this.elements.get(id);
    if (!e) return;
    const c = color ?? e.baseColor;
    for (const p of e.parts) {
      if (p.instanceId >= 0) /** @type {THREE.BatchedMesh} */ (p.target).setColorAt(p.instanceId, c);
      else /** @type {any} */ (p.target).material.color?.copy(c);
    }
  }

  /** @param {string} id @returns {string} "#rrggbb" as drawn (before lighting) */
  colorOf(id) {
    const e = this.elements.get(id);
    const p = e?.parts[0];
    if (!p) return '';
    if (p.instanceId >= 0) /** @type {THREE.BatchedMesh} */ (p.target).getColorAt(p.instanceId, _c);
    else _c.copy(/** @type {any} */ (p.target).material.color);
    return `#${_c.getHexString()}`;
  }

  /** @param {string} id @param {boolean} visible */
  setVisible(id, visible) {
    for (const p of this.elements.get(id)?.parts ?? []) {
      if (p.instanceId >= 0) /** @type {THREE.BatchedMesh} */ (p.target).setVisibleAt(p.instanceId, visible);
      else p.target.visible = visible;
    }
  }

  /** @param {string} id */
  isVisible(id) {
    const p = this.elements.get(id)?.parts[0];
    if (!p) return false;
    return p.instanceId >= 0 ? /** @type {THREE.BatchedMesh} */ (p.target).getVisibleAt(p.instanceId) : p.target.visible;
  }

  /**
   * Apply a transform on top of the element's own, in the element's frame (as the rules define it).
   * @param {string} id @param {THREE.Matrix4|null} transform null restores the model's placement
   */
  setTransform(id, transform) {
    for (const p of this.elements.get(id)?.parts ?? []) {
      _m.copy(p.base);
      if (transform) _m.multiply(transform);
      if (p.instanceId >= 0) /** @type {THREE.BatchedMesh} */ (p.target).setMatrixAt(p.instanceId, _m);
      else _m.decompose(p.target.position, p.target.quaternion, p.target.scale);
    }
  }

  /** @param {string} id @returns {THREE.Box3|null} world box of the element as currently placed */
  boxOf(id) {
    const e = this.elements.get(id);
    if (!e) return null;
    const box = new THREE.Box3();
    for (const p of e.parts) {
      if (p.instanceId >= 0) {
        const b = /** @type {THREE.BatchedMesh} */ (p.target);
        const local = new THREE.Box3();
        b.getBoundingBoxAt(/** @type {number} */ (b.getGeometryIdAt(p.instanceId)), local);
        box.union(local.applyMatrix4(b.getMatrixAt(p.instanceId, _m)));
      } else {
        box.union(worldBox(p.target));
      }
    }
    return box;
  }

  /** Free the GPU buffers of every batch and standalone object. */
  dispose() {
    for (const obj of this.group.children) {
      const o = /** @type {THREE.Mesh} */ (obj);
      if (/** @type {any} */ (o).isBatchedMesh) /** @type {THREE.BatchedMesh} */ (obj).dispose();
      else o.geometry.dispose();
      /** @type {THREE.Material} */ (o.material).dispose();
    }
    this.group.removeFromParent();
  }
}

/** @param {THREE.Object3D|null} obj the nearest ancestor-or-self that is an element node */
function ownerOf(obj) {
  for (let o = obj; o; o = o.parent) if (typeof o.userData?.id === 'string') return o;
  return null;
}

/** @param {THREE.Object3D} obj */
function worldBox(obj) {
  obj.updateMatrixWorld(true);
  return new THREE.Box3().setFromObject(obj, false);
}

/**
 * Materials that differ only in colour batch together; the attributes the shader reads must match too.
 * @param {any} m @param {THREE.BufferGeometry} g
 */
function materialKey(m, g) {
  const maps = ['map', 'normalMap', 'emissiveMap', 'roughnessMap', 'metalnessMap', 'aoMap']
    .map((k) => m[k]?.uuid ?? '').join(',');
  return [m.type, m.transparent, m.opacity, m.side, m.metalness, m.roughness, m.vertexColors, m.alphaTest,
    m.emissive?.getHexString(), m.flatShading, maps, Boolean(g.attributes.normal)].join('|');
}

/**
 * Rebuild a geometry with float attributes and a 32-bit index, so that every geometry of a batch
 * has the same layout (quantized glTF attributes come as normalised integers of varying width).
 * @param {THREE.BufferGeometry} src @param {boolean} needUv @param {boolean} needColor
 */
function normalizeGeometry(src, needUv, needColor) {
  const g = new THREE.BufferGeometry();
  const pos = src.attributes.position;
  g.setAttribute('position', toFloat(pos, 3));
  if (src.attributes.normal) g.setAttribute('normal', toFloat(src.attributes.normal, 3));
  if (needUv) g.setAttribute('uv', src.attributes.uv ? toFloat(src.attributes.uv, 2)
    : new THREE.Float32BufferAttribute(new Float32Array(pos.count * 2), 2));
  if (needColor) g.setAttribute('color', src.attributes.color ? toFloat(src.attributes.color, 4)
    : new THREE.Float32BufferAttribute(new Float32Array(pos.count * 4).fill(1), 4));
  const index = new Uint32Array(src.index ? src.index.count : pos.count);
  if (src.index) for (let i = 0; i < index.length; i++) index[i] = src.index.getX(i);
  else for (let i = 0; i < index.length; i++) index[i] = i;
  g.setIndex(new THREE.BufferAttribute(index, 1));
  return g;
}

/**
 * @param {THREE.BufferAttribute|THREE.InterleavedBufferAttribute} a @param {number} size
 */
function toFloat(a, size) {
  const out = new Float32Array(a.count * size);
  for (let i = 0; i < a.count; i++) {
    for (let k = 0; k < size; k++) out[i * size + k] = k < a.itemSize ? a.getComponent(i, k) : 1;
  }
  return new THREE.Float32BufferAttribute(out, size);
}
