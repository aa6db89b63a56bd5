// Turn a glTF model with one node per element into a few batches (one per material kind), keeping
// per-element colour, visibility, transform and picking through a map twin id -> (batch, instance).
// The element's own material colour becomes its per-instance base colour, so elements whose materials
// differ only in colour share one draw call. Untextured materials take the cheap per-vertex Lambert
// path (shading.js). Levels of detail (`mesh.extras.lods`, written by `twinview build --lod`) are added
// to the batches after the first frame (addLods) and chosen per instance by screen size (updateLod), within
// the frame's triangle budget while the camera moves (frame_budget.js).
// Two ways in: fromDocument reads the glTF's JSON and accessors directly (gltf_reader.js; the usual
// case, merged batches only), fromScene takes the three.js scene GLTFLoader made (any glTF: textures,
// points and lines too).
import * as THREE from 'three';
import { cutFor, NO_CUT } from './frame_budget.js';
import { InstancedBatch, InstancedLooks } from './instanced_batch.js';
import { MergedBatch } from './merged_batch.js';
import { canShadeCheaply } from './shading.js';

/**
 * @typedef {{geometryId: number, triangles: number}} Level
 * @typedef {{target: THREE.Object3D, instanceId: number, base: THREE.Matrix4, geometryId?: number,
 *            levels?: Level[], level?: number, sphere?: THREE.Sphere, lods?: {mesh: number, triangles: number}[],
 *            primitive?: number}} Part
 *   instanceId is -1 for a standalone object (points, lines), which keeps its own cloned material.
 *   geometryId is the full-detail geometry; levels (finest first, [0] = full) once LODs are loaded;
 *   sphere is the world bounding sphere of the full geometry as placed, for the LOD choice;
 *   primitive is the part's index among its glTF mesh's primitives (its LOD meshes have the same).
 * @typedef {{id: string, name: string, cls: string, parent: (string|null)}} NodeInfo
 * @typedef {NodeInfo & {parts: Part[], baseColor: THREE.Color, box: THREE.Box3}} ElementEntry
 * @typedef {import('./gltf_reader.js').MeshData} MeshData
 * @typedef {{entry: ElementEntry, part: Part, color: THREE.Color}} Slot an element's part in a batch
 * @typedef {{material: THREE.Material, slots: (Slot & {mesh: THREE.BufferGeometry|MeshData})[]}} Group
 *   parts whose materials differ at most in colour, with their meshes (GLTFLoader's or read directly)
 * @typedef {(mesh: number) => Promise<(THREE.BufferGeometry|MeshData)[]>} MeshSource
 *   the primitives of a glTF mesh, for the levels of detail
 */

const _m = new THREE.Matrix4();
const _c = new THREE.Color();
const _rgba = new THREE.Vector4();
const _v = new THREE.Vector3();
const _q = new THREE.Quaternion();
const _s = new THREE.Vector3();
const _box = new THREE.Box3();
const IDENTITY = new THREE.Matrix4();
// LOD choice: an element gets at least this many triangles per pixel of its projected diameter (a
// 26-segment pipe 50 px across keeps its 100 triangles; at 8 px across 16 are indistinguishable).
const LOD_TRIANGLES_PER_PIXEL = 2;
// LOD meshes are read from the glTF in slices of this many, yielding to the page in between.
const LOD_LOAD_SLICE = 500;
// A mesh (glTF primitive) that at least this many elements share is drawn instanced (InstancedBatch: one copy of
// its vertices, one draw call) instead of being baked into the merged batch once per element; of those, the
// INSTANCE_MAX_BATCHES that save the most vertices, as each costs a draw call (on a software GL about a
// millisecond a frame). Measured in BENCHMARKS.md §12; `?instancing=N` sets the uses for a page, 0 turns it off.
const INSTANCE_MIN_USES_DEFAULT = 8;
const INSTANCE_MAX_BATCHES = 32;
// A tile of a tiled scene (tiles.js) gets at most this many: its draw calls add up over every tile loaded (64 tiles
// with 10 instanced batches each were 640 draw calls, seconds a frame on a software GL; BENCHMARKS.md §16).
export const INSTANCE_MAX_BATCHES_PER_TILE = 4;
const INSTANCE_MIN_USES = instanceThreshold(typeof location === 'undefined' ? '' : location.search);

export class ElementBatches {
  constructor() {
    this.group = new THREE.Group();
    this.group.name = 'twin-elements';
    /** @type {Map<string, ElementEntry>} */
    this.elements = new Map();
    /** @type {NodeInfo[]} every node carrying an id, in document order (the tree when no manifest) */
    this.nodes = [];
    /** @type {(THREE.BatchedMesh|MergedBatch|InstancedBatch)[]} */
    this.batches = [];
    /** whether some BatchedMesh (textured materials) has levels of detail to choose from */
    this.hasBatchedLods = false;
    /** @type {import('./frame_budget.js').Cut} the frame budget's cut made by the last updateLod */
    this.cut = NO_CUT;
    /** @type {InstancedLooks|null} what the instanced batches share (made once every group is known) */
    this.looks = null;
    /** @type {Set<ElementBatches>} the tiles' batches this one holds (absorb), each in a group of its own */
    this.tiles = new Set();
    /** @type {THREE.Box3|null} the whole model's box when not every element is loaded (a tiled scene's index) */
    this.bounds = null;
    /** at most this many InstancedBatches (a tile's are fewer) */
    this.maxInstanced = INSTANCE_MAX_BATCHES;
  }

  /**
   * Take in a tile's batches (tiles.js): its elements become this one's, its batches are drawn, picked, coloured
   * and culled with the others', under a group of its own. @param {ElementBatches} tile
   */
  absorb(tile) {
    this.tiles.add(tile);
    for (const [id, e] of tile.elements) this.elements.set(id, e);
    this.batches.push(...tile.batches);
    this.hasBatchedLods ||= tile.hasBatchedLods;
    this.group.add(tile.group);
  }

  /** Let a tile go: its elements leave, its GPU buffers are freed. @param {ElementBatches} tile */
  release(tile) {
    if (!this.tiles.delete(tile)) return;
    for (const id of tile.elements.keys()) if (this.elements.get(id) === tile.elements.get(id)) this.elements.delete(id);
    const gone = new Set(tile.batches);
    this.batches = this.batches.filter((b) => !gone.has(b));
    tile.dispose();
  }

  /**
   * Batches from the glTF's JSON and accessors, without a three.js scene (GltfDocument.unsupported()
   * must be ''). @param {import('./gltf_reader.js').GltfDocument} doc
   * @param {number} [maxInstanced] at most this many InstancedBatches
   */
  static fromDocument(doc, maxInstanced = INSTANCE_MAX_BATCHES) {
    const batches = new ElementBatches();
    batches.maxInstanced = maxInstanced;
    batches.#fromDocument(doc);
    return batches;
  }

  /**
   * Batches from the scene GLTFLoader made (it is consumed: geometries move into batches).
   * @param {THREE.Object3D} root @param {number} [maxInstanced] at most this many InstancedBatches
   */
  static fromScene(root, maxInstanced = INSTANCE_MAX_BATCHES) {
    const batches = new ElementBatches();
    batches.maxInstanced = maxInstanced;
    batches.#fromScene(root);
    return batches;
  }

  /** @param {import('./gltf_reader.js').GltfDocument} doc */
  #fromDocument(doc) {
    const { json } = doc;
    /** @type {Map<string, Group>} */
    const groups = new Map();
    const keys = (json.materials ?? []).map((/** @type {any} */ _, /** @type {number} */ i) => materialKey(doc.material(i), true));
    // Depth first, children in order: the order three.js traverses a scene in, so that both ways in give
    // the same nodes, slots and batches. `owner` is the nearest element node at or above.
    /** @type {{node: number, parent: THREE.Matrix4, owner: NodeInfo|null, parentId: string|null}[]} */
    const stack = [...json.scenes[json.scene ?? 0].nodes].reverse()
      .map((node) => ({ node, parent: IDENTITY, owner: null, parentId: null }));
    for (let top = stack.pop(); top; top = stack.pop()) {
      const def = json.nodes[top.node];
      const world = localMatrix(def).premultiply(top.parent);
      const id = typeof def.extras?.id === 'string' ? def.extras.id : null;
      let owner = top.owner;
      if (id !== null) {
        owner = { id, name: String(def.extras.name ?? id), cls: String(def.extras.class ?? ''), parent: top.owner?.id ?? null };
        if (id !== top.parentId) this.nodes.push(owner);
      }
      if (def.mesh !== undefined) {
        const entry = this.#entry(owner ?? { id: `#${top.node}`, name: def.name ?? `#${top.node}`, cls: '', parent: null });
        const { primitives, extras } = json.meshes[def.mesh];
        doc.mesh(def.mesh).forEach((data, primitive) => {
          const material = doc.material(primitives[primitive].material);
          const key = keys[primitives[primitive].material];
          let g = groups.get(key);
          if (!g) groups.set(key, (g = { material, slots: [] }));
          /** @type {Part} */
          const part = { target: this.group, instanceId: -1, base: world }; // batch set later
          if (Array.isArray(extras?.lods) && extras.lods.length) Object.assign(part, { lods: extras.lods, primitive });
          g.slots.push({ entry, part, mesh: data, color: material.color });
          if (entry.parts.length === 0) entry.baseColor.copy(material.color);
          entry.parts.push(part);
          entry.box.union(_box.copy(data.box).applyMatrix4(world));
        });
      }
      const children = def.children ?? [];
      for (let k = children.length - 1; k >= 0; k--) stack.push({ node: children[k], parent: world, owner, parentId: id });
    }
    this.#addGroups(groups.values());
  }

  /** @param {THREE.Object3D} root */
  #fromScene(root) {
    root.updateMatrixWorld(true);
    /** @type {Map<string, Group>} */
    const groups = new Map();
    /** @type {[ElementEntry, THREE.Object3D][]} */
    const standalone = [];
    root.traverse((obj) => {
      const id = obj.userData?.id;
      if (typeof id === 'string' && obj.userData.id !== obj.parent?.userData?.id) this.nodes.push(nodeInfo(obj));
      const isMesh = /** @type {any} */ (obj).isMesh;
      if (!isMesh && !(/** @type {any} */ (obj).isPoints) && !(/** @type {any} */ (obj).isLine)) return;
      const owner = ownerOf(obj);
      const entry = this.#entry(owner ? nodeInfo(owner) : { id: obj.name || obj.uuid, name: obj.name || obj.uuid, cls: '', parent: null });
      const material = /** @type {any} */ (obj).material;
      if (isMesh && !Array.isArray(material)) {
        const geometry = /** @type {THREE.Mesh} */ (obj).geometry;
        const key = materialKey(material, Boolean(geometry.attributes.normal));
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { material, slots: [] }));
        /** @type {Part} */
        const part = { target: this.group, instanceId: -1, base: obj.matrixWorld.clone() }; // batch set later
        const lods = obj.userData.lods;
        if (Array.isArray(lods) && lods.length) {
          part.lods = lods;
          // A node's own mesh is primitive 0; the primitives of a multi-primitive mesh are children of its
          // node (without ids of their own): the rank among the siblings from the same glTF mesh.
          const same = typeof obj.userData.id === 'string' ? [obj]
            : (obj.parent?.children ?? [obj]).filter((c) => c.userData.lods?.[0]?.mesh === lods[0].mesh);
          part.primitive = Math.max(0, same.indexOf(obj));
        }
        g.slots.push({ entry, part, mesh: geometry, color: material.color ?? entry.baseColor });
        if (entry.parts.length === 0) entry.baseColor.copy(material.color ?? _c.set(0xffffff));
        entry.parts.push(part);
        entry.box.union(worldBox(geometry, obj.matrixWorld));
      } else {
        standalone.push([entry, obj]); // moved after the traversal, which must not see its tree change
      }
    });
    this.#addGroups(groups.values());
    for (const [entry, obj] of standalone) this.#addStandalone(entry, obj);
  }

  /** The element of this id, made on first sight. @param {NodeInfo} node */
  #entry(node) {
    let entry = this.elements.get(node.id);
    if (!entry) {
      const { id, name, cls, parent } = node;
      entry = { id, name, cls, parent, parts: [], baseColor: new THREE.Color(1, 1, 1), box: new THREE.Box3() };
      this.elements.set(node.id, entry);
    }
    return entry;
  }

  /**
   * Batches for every group; the instanced ones last, sharing one element texture sized for all of them.
   * @param {Iterable<Group>} groups
   */
  #addGroups(groups) {
    const all = [...groups];
    const chosen = instancedMeshes(all, INSTANCE_MIN_USES, this.maxInstanced);
    /** @type {{material: THREE.Material, slots: (Slot & {mesh: MeshData})[], needColor: boolean}[]} */
    const instanced = [];
    for (const g of all) instanced.push(...this.#addGroup(g, chosen.get(g)));
    if (!instanced.length) return;
    const looks = new InstancedLooks(instanced.reduce((n, g) => n + g.slots.length, 0));
    this.looks = looks;
    let first = 0;
    for (const { material, slots, needColor } of instanced) {
      this.#addInstanced(looks, first, material, slots, needColor);
      first += slots.length;
    }
  }

  /**
   * Batches for a group: for what the cheap shading path can draw, a MergedBatch for the elements whose mesh is
   * not in `instanced`, and the others' slots per mesh, returned for an InstancedBatch each; else a BatchedMesh
   * with the glTF material (which holds each geometry once already). Each takes meshes in its own form: the
   * slots' meshes are converted in place, once per shared mesh.
   * @param {Group} g @param {Set<unknown>} [instanced] the meshes of this group to draw instanced
   */
  #addGroup({ material, slots }, instanced = new Set()) {
    const cheap = canShadeCheaply(material);
    const needColor = Boolean(/** @type {any} */ (material).vertexColors);
    /** @type {Map<unknown, Slot[]>} */
    const sharing = new Map([...instanced].map((mesh) => [mesh, []]));
    /** @type {Slot[]} */
    const merged = [];
    for (const s of slots) (sharing.get(s.mesh) ?? merged).push(s);
    /** @type {Map<THREE.BufferGeometry|MeshData, any>} */
    const converted = new Map();
    for (const slot of slots) {
      let mesh = converted.get(slot.mesh);
      if (!mesh) {
        mesh = cheap ? asMeshData(slot.mesh, needColor) : asGeometry(slot.mesh, Boolean(/** @type {any} */ (material).map), needColor);
        converted.set(slot.mesh, mesh);
      }
      slot.mesh = mesh;
    }
    if (!cheap) {
      this.#addBatched(material, /** @type {any} */ (slots));
      return [];
    }
    if (merged.length) this.#addMerged(material, /** @type {any} */ (merged), { uv: false, color: needColor });
    return [...sharing.values()].map((same) => ({ material, slots: /** @type {(Slot & {mesh: MeshData})[]} */ (same), needColor }));
  }

  /**
   * One InstancedBatch (one draw call per level of detail drawn, the mesh once) for slots that share one mesh, from
   * slot `first` of the shared element texture.
   * @param {InstancedLooks} looks @param {number} first @param {THREE.Material} source
   * @param {(Slot & {mesh: MeshData})[]} slots @param {boolean} needColor
   */
  #addInstanced(looks, first, source, slots, needColor) {
    const items = slots.map(({ part, color }) => ({ matrix: part.base, color }));
    const batch = new InstancedBatch(looks, first, source, slots[0].mesh, items, { color: needColor });
    batch.name = `instanced:${source.name || source.type}`;
    batch.userData.layout = [false, needColor];
    this.#adopt(batch, slots);
  }

  /**
   * A BatchedMesh (glTF shading, per-instance colour) for the slots.
   * @param {THREE.Material} source @param {(Slot & {mesh: THREE.BufferGeometry})[]} slots
   */
  #addBatched(source, slots) {
    const material = /** @type {THREE.MeshStandardMaterial} */ (source.clone());
    if ('color' in material) material.color.set(0xffffff); // colour lives per instance
    const geometries = new Set(slots.map((s) => s.mesh));
    let vertices = 0;
    let indices = 0;
    for (const g of geometries) {
      vertices += g.attributes.position.count;
      indices += /** @type {THREE.BufferAttribute} */ (g.index).count;
    }
    const batch = new THREE.BatchedMesh(slots.length, vertices, indices, material);
    batch.userData.layout = [Boolean(/** @type {any} */ (material).map), material.vertexColors];
    batch.userData.transparentMaterial = material.transparent; // see-through as loaded: stays so (setOpacity)
    batch.name = `batch:${source.name || source.type}`;
    /** @type {Map<THREE.BufferGeometry, number>} */
    const geometryIds = new Map();
    for (const g of geometries) geometryIds.set(g, batch.addGeometry(g));
    /** @type {string[]} instance id -> twin id */
    const ids = [];
    for (const { entry, part, mesh, color } of slots) {
      const instanceId = batch.addInstance(/** @type {number} */ (geometryIds.get(mesh)));
      batch.setMatrixAt(instanceId, part.base);
      batch.setColorAt(instanceId, color);
      ids[instanceId] = entry.id;
      part.target = batch;
      part.instanceId = instanceId;
      part.geometryId = batch.getGeometryIdAt(instanceId);
      // null only for a geometry id the batch does not hold; this one it just gave.
      if (part.lods) part.sphere = /** @type {THREE.Sphere} */ (batch.getBoundingSphereAt(part.geometryId, new THREE.Sphere())).applyMatrix4(part.base);
    }
    batch.userData.ids = ids;
    this.batches.push(batch);
    this.group.add(batch);
  }

  /**
   * The cheap path: one MergedBatch (one real draw call, per-vertex Lambert) for the slots.
   * @param {THREE.Material} source @param {(Slot & {mesh: MeshData})[]} slots @param {{uv: boolean, color: boolean}} layout
   */
  #addMerged(source, slots, layout) {
    const batch = new MergedBatch(source, slots.map(({ part, mesh, color }) => ({ data: mesh, matrix: part.base, color })), layout);
    batch.name = `merged:${source.name || source.type}`;
    batch.userData.layout = [layout.uv, layout.color];
    this.#adopt(batch, slots);
  }

  /**
   * Hand the slots' elements to `batch`, slot `i` being instance `i` of it, and add it to the model.
   * @param {InstancedBatch | MergedBatch} batch @param {Slot[]} slots
   */
  #adopt(batch, slots) {
    /** @type {string[]} slot -> twin id */
    const ids = [];
    slots.forEach(({ entry, part }, slot) => {
      ids[slot] = entry.id;
      part.target = batch;
      part.instanceId = slot;
    });
    batch.userData.ids = ids;
    this.batches.push(batch);
    this.group.add(batch);
  }

  /** @param {ElementEntry} entry @param {THREE.Object3D} obj */
  #addStandalone(entry, obj) {
    const o = /** @type {THREE.Points} */ (obj);
    o.material = /** @type {THREE.Material} */ (o.material).clone();
    obj.userData.transparentMaterial = o.material.transparent; // see-through as loaded: stays so (setOpacity)
    if (entry.parts.length === 0) entry.baseColor.copy(/** @type {any} */ (o.material).color ?? _c.set(0xffffff));
    const base = obj.matrixWorld.clone();
    obj.removeFromParent();
    base.decompose(obj.position, obj.quaternion, obj.scale);
    obj.userData.id = entry.id;
    this.group.add(obj);
    entry.parts.push({ target: obj, instanceId: -1, base });
    entry.box.union(worldBox(o.geometry, base));
  }

  /**
   * Add the levels of detail the glTF lists in `mesh.extras.lods` to the batches (after the first frame:
   * the model shows at full detail first). Resolves when every level is in place.
   * @param {MeshSource} loadMesh @param {AbortSignal} [signal]
   */
  async addLods(loadMesh, signal) {
    /** @type {Map<THREE.BatchedMesh, Part[]>} */
    const byBatch = new Map();
    for (const e of this.elements.values()) {
      for (const p of e.parts) {
        if (!p.lods || p.instanceId < 0) continue;
        const b = /** @type {THREE.BatchedMesh} */ (p.target);
        if (!byBatch.has(b)) byBatch.set(b, []);
        /** @type {Part[]} */ (byBatch.get(b)).push(p);
      }
    }
    /** @type {Map<number, (THREE.BufferGeometry|MeshData)[]>} */
    const meshes = new Map();
    const wanted = [...new Set([...byBatch.values()].flat().flatMap((p) => (p.lods ?? []).map((l) => l.mesh)))];
    for (let i = 0; i < wanted.length; i += LOD_LOAD_SLICE) {
      const slice = wanted.slice(i, i + LOD_LOAD_SLICE);
      const loaded = await Promise.all(slice.map(loadMesh));
      slice.forEach((m, k) => meshes.set(m, loaded[k]));
      if (signal?.aborted) return;
      await new Promise((r) => setTimeout(r, 0));
    }
    /** The primitive of part `p` in LOD mesh `mesh`. @param {Part} p @param {number} mesh */
    const levelOf = (p, mesh) => meshes.get(mesh)?.[p.primitive ?? 0];
    for (const [batch, parts] of byBatch) {
      const [needUv, needColor] = batch.userData.layout;
      if (batch instanceof InstancedBatch) { // one mesh: the first part's levels are every part's
        /** @type {MeshData[]} */
        const levels = [];
        for (const l of parts[0].lods ?? []) {
          const level = levelOf(parts[0], l.mesh);
          if (!level) break;
          levels.push(asMeshData(level, needColor));
        }
        batch.addLevels(levels);
        continue;
      }
      if (/** @type {any} */ (batch).isMergedBatch) {
        /** @type {Map<number, MeshData[]>} */
        const bySlot = new Map();
        /** @type {Map<THREE.BufferGeometry|MeshData, MeshData>} */
        const seen = new Map();
        for (const p of parts) {
          const levels = [];
          for (const l of p.lods ?? []) {
            const level = levelOf(p, l.mesh);
            if (!level) break;
            let data = seen.get(level);
            if (!data) seen.set(level, (data = asMeshData(level, needColor)));
            levels.push(data);
          }
          if (levels.length) bySlot.set(p.instanceId, levels);
        }
        /** @type {MergedBatch} */ (/** @type {any} */ (batch)).addLevels(bySlot);
        continue;
      }
      /** @type {Map<THREE.BufferGeometry|MeshData, THREE.BufferGeometry>} */
      const unique = new Map();
      /** @type {Map<Part, THREE.BufferGeometry[]>} */
      const partGeometries = new Map();
      let vertices = 0;
      let indices = 0;
      for (const p of parts) {
        const geoms = [];
        for (const l of p.lods ?? []) {
          const level = levelOf(p, l.mesh);
          if (!level) break;
          let g = unique.get(level);
          if (!g) {
            unique.set(level, (g = asGeometry(level, needUv, needColor)));
            vertices += g.attributes.position.count;
            indices += /** @type {THREE.BufferAttribute} */ (g.index).count;
          }
          geoms.push(g);
        }
        partGeometries.set(p, geoms);
      }
      if (!unique.size) continue;
      const b = /** @type {any} */ (batch);
      batch.setGeometrySize(b._maxVertexCount + vertices, b._maxIndexCount + indices);
      /** @type {Map<THREE.BufferGeometry, number>} */
      const ids = new Map();
      for (const g of unique.values()) ids.set(g, batch.addGeometry(g));
      for (const [p, geoms] of partGeometries) {
        const full = /** @type {number} */ (p.geometryId);
        const fullTriangles = /** @type {number} */ (b._geometryInfo[full].indexCount) / 3;
        this.hasBatchedLods = true;
        p.levels = [{ geometryId: full, triangles: fullTriangles },
          ...geoms.map((g) => ({ geometryId: /** @type {number} */ (ids.get(g)), triangles: /** @type {THREE.BufferAttribute} */ (g.index).count / 3 }))];
        p.level = 0;
      }
    }
  }

  /**
   * Give each instance with levels the coarsest one that still has LOD_TRIANGLES_PER_PIXEL triangles per
   * pixel of its projected diameter. Cheap (a distance per instance); call it before each render.
   * @param {THREE.Camera} camera @param {number} heightPx drawing-buffer height
   * @param {THREE.Matrix4} world the batches' parent transform (XR placement)
   * Merged and instanced batches draw within `budget` triangles (frame_budget.js: the elements smallest on screen
   * go to their coarsest level, then are left out); `this.cut` is the cut last made.
   * @param {boolean} [cull] cull merged batches per element against the camera's frustum
   * @param {number} [budget] triangles at most (Infinity: what the view wants, at full detail)
   * @returns {number} BatchedMesh instances whose level changed
   */
  updateLod(camera, heightPx, world, cull = true, budget = Infinity) {
    const eye = _v.setFromMatrixPosition(camera.matrixWorld);
    // Pixels per unit of size at unit distance: focal length in pixels (perspective), else a constant.
    const proj = /** @type {THREE.PerspectiveCamera} */ (camera).projectionMatrix.elements;
    const focalPx = (proj[5] || 1) * heightPx * 0.5;
    _m.copy(world).invert();
    eye.applyMatrix4(_m); // into the batches' frame
    let changed = 0;
    const drawn = /** @type {(MergedBatch|InstancedBatch)[]} */ (/** @type {any[]} */ (this.batches)
      .filter((b) => b.isMergedBatch || b.isInstancedBatch));
    for (const b of drawn) b.chooseView(camera, heightPx, LOD_TRIANGLES_PER_PIXEL, cull);
    this.cut = budget === Infinity ? NO_CUT : cutFor(drawn, budget);
    for (const b of drawn) b.draw(this.cut);
    if (!this.hasBatchedLods) return changed;
    for (const e of this.elements.values()) {
      for (const p of e.parts) {
        const levels = p.levels;
        if (!levels || !p.sphere) continue;
        const d = /** @type {any} */ (camera).isOrthographicCamera ? 1 : Math.max(p.sphere.center.distanceTo(eye) - p.sphere.radius, 1e-3);
        const px = (2 * p.sphere.radius * focalPx) / d;
        const want = px * LOD_TRIANGLES_PER_PIXEL;
        let level = 0;
        for (let i = levels.length - 1; i > 0; i--) {
          if (levels[i].triangles >= want) { level = i; break; }
        }
        if (level !== p.level) {
          p.level = level;
          /** @type {THREE.BatchedMesh} */ (p.target).setGeometryIdAt(p.instanceId, levels[level].geometryId);
          changed++;
        }
      }
    }
    return changed;
  }

  /** Draw calls this group costs per frame (one per batch or standalone object). */
  get drawCalls() {
    let n = this.group.children.length - this.tiles.size;
    for (const t of this.tiles) n += t.drawCalls;
    return n;
  }

  /**
   * The twin id under a raycast hit.
   * @param {THREE.Intersection} hit
   * @returns {string|null}
   */
  idOf(hit) {
    const obj = /** @type {any} */ (hit.object);
    if (obj.isBatchedMesh || obj.isMergedBatch || obj.isInstancedBatch) return obj.userData.ids[/** @type {number} */ (hit.batchId)] ?? null;
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

  /**
   * Draw an element see-through: `opacity` 1 is opaque (as loaded). A merged batch draws it in its see-through
   * pass; a BatchedMesh keeps it in the instance colour's alpha and blends while any instance is see-through.
   * @param {string} id @param {number} opacity
   */
  setOpacity(id, opacity) {
    for (const p of this.elements.get(id)?.parts ?? []) {
      const t = /** @type {any} */ (p.target);
      if (t.isMergedBatch || t.isInstancedBatch) t.setOpacityAt(p.instanceId, opacity);
      else if (p.instanceId >= 0) {
        const b = /** @type {THREE.BatchedMesh} */ (t);
        const before = b.getColorAt(p.instanceId, _rgba).w;
        if (before === opacity) continue;
        b.setColorAt(p.instanceId, _rgba.setW(opacity));
        const count = (b.userData.translucent ?? 0) + (opacity < 1 ? 1 : 0) - (before < 1 ? 1 : 0);
        b.userData.translucent = count;
        const material = /** @type {THREE.Material} */ (b.material);
        if (material.transparent !== count > 0 && !b.userData.transparentMaterial) {
          material.transparent = count > 0;
          material.needsUpdate = true;
        }
      } else {
        const material = t.material;
        material.transparent = opacity < 1 || Boolean(t.userData.transparentMaterial);
        material.opacity = opacity;
        material.needsUpdate = true;
      }
    }
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
      if (p.instanceId >= 0) {
        const b = /** @type {THREE.BatchedMesh} */ (p.target);
        b.setMatrixAt(p.instanceId, _m);
        if (p.sphere) /** @type {THREE.Sphere} the part's own geometry id */ (b.getBoundingSphereAt(/** @type {number} */ (p.geometryId), p.sphere)).applyMatrix4(_m);
      } else _m.decompose(p.target.position, p.target.quaternion, p.target.scale);
    }
  }

  /** @param {string} id @returns {THREE.Box3|null} world box of the element as currently placed */
  boxOf(id) {
    const e = this.elements.get(id);
    if (!e) return null;
    const box = new THREE.Box3();
    for (const p of e.parts) {
      const t = /** @type {any} */ (p.target);
      if (p.instanceId >= 0 && (t.isMergedBatch || t.isInstancedBatch)) {
        box.union(/** @type {MergedBatch} */ (t).boxAt(p.instanceId, new THREE.Box3()));
      } else if (p.instanceId >= 0) {
        const b = /** @type {THREE.BatchedMesh} */ (p.target);
        const local = new THREE.Box3();
        b.getBoundingBoxAt(/** @type {number} */ (p.geometryId ?? b.getGeometryIdAt(p.instanceId)), local);
        box.union(local.applyMatrix4(b.getMatrixAt(p.instanceId, _m)));
      } else {
        const o = /** @type {THREE.Points} */ (p.target);
        o.updateMatrix();
        box.union(worldBox(o.geometry, o.matrix));
      }
    }
    return box;
  }

  /** Free the GPU buffers of every batch and standalone object. */
  dispose() {
    for (const tile of [...this.tiles]) this.release(tile);
    for (const obj of this.group.children) {
      const o = /** @type {THREE.Mesh} */ (obj);
      const batch = /** @type {any} */ (o);
      if (batch.isBatchedMesh || batch.isMergedBatch || batch.isInstancedBatch) batch.dispose();
      else o.geometry.dispose();
      if (!batch.isInstancedBatch) /** @type {THREE.Material} */ (o.material).dispose();
    }
    this.looks?.dispose();
    this.group.removeFromParent();
  }
}

/**
 * The meshes to draw instanced, per group: of the meshes of cheaply shaded groups that at least `min` slots share
 * (none when `min` is 0), the `max` whose instancing saves the most vertices ((uses - 1) x vertices).
 * @param {Group[]} groups @param {number} min @param {number} max @returns {Map<Group, Set<unknown>>}
 */
function instancedMeshes(groups, min, max) {
  /** @type {{group: Group, mesh: THREE.BufferGeometry|MeshData, saved: number}[]} */
  const candidates = [];
  for (const group of min > 0 ? groups : []) {
    if (!canShadeCheaply(group.material)) continue;
    /** @type {Map<THREE.BufferGeometry|MeshData, number>} */
    const uses = new Map();
    for (const s of group.slots) uses.set(s.mesh, (uses.get(s.mesh) ?? 0) + 1);
    for (const [mesh, n] of uses) if (n >= min) candidates.push({ group, mesh, saved: (n - 1) * vertexCount(mesh) });
  }
  candidates.sort((a, b) => b.saved - a.saved);
  /** @type {Map<Group, Set<unknown>>} */
  const out = new Map();
  for (const { group, mesh } of candidates.slice(0, max)) {
    if (!out.has(group)) out.set(group, new Set());
    /** @type {Set<unknown>} */ (out.get(group)).add(mesh);
  }
  return out;
}

/** @param {THREE.BufferGeometry|MeshData} mesh */
function vertexCount(mesh) {
  return 'isBufferGeometry' in mesh ? mesh.attributes.position.count : mesh.position.length / 3;
}

/**
 * The instancing threshold for a page: `?instancing=N` (0: off), else INSTANCE_MIN_USES_DEFAULT.
 * @param {string} search the page's query string
 */
export function instanceThreshold(search) {
  const asked = new URLSearchParams(search).get('instancing');
  const n = asked === null ? NaN : Number(asked);
  return Number.isInteger(n) && n >= 0 ? n : INSTANCE_MIN_USES_DEFAULT;
}

/** @param {THREE.Object3D|null} obj the nearest ancestor-or-self that is an element node */
function ownerOf(obj) {
  for (let o = obj; o; o = o.parent) if (typeof o.userData?.id === 'string') return o;
  return null;
}

/** @param {THREE.Object3D} obj an element node @returns {NodeInfo} */
function nodeInfo(obj) {
  const { id, name, class: cls } = obj.userData;
  return { id, name: String(name ?? id), cls: String(cls ?? ''), parent: ownerOf(obj.parent)?.userData.id ?? null };
}

/** A glTF node's own transform. @param {any} def */
function localMatrix(def) {
  const m = new THREE.Matrix4();
  if (def.matrix) return m.fromArray(def.matrix);
  if (!def.translation && !def.rotation && !def.scale) return m;
  return m.compose(_v.fromArray(def.translation ?? [0, 0, 0]), _q.fromArray(def.rotation ?? [0, 0, 0, 1]),
    _s.fromArray(def.scale ?? [1, 1, 1]));
}

/**
 * The box of a geometry placed by `matrix` (an element's own, without its child elements').
 * @param {THREE.BufferGeometry} geometry @param {THREE.Matrix4} matrix
 */
function worldBox(geometry, matrix) {
  if (!geometry.boundingBox) geometry.computeBoundingBox();
  return /** @type {THREE.Box3} */ (geometry.boundingBox).clone().applyMatrix4(matrix);
}

/**
 * Materials that differ only in colour batch together; the attributes the shader reads must match too.
 * @param {any} m @param {boolean} hasNormal
 */
function materialKey(m, hasNormal) {
  const maps = ['map', 'normalMap', 'emissiveMap', 'roughnessMap', 'metalnessMap', 'aoMap']
    .map((k) => m[k]?.uuid ?? '').join(',');
  return [m.type, m.transparent, m.opacity, m.side, m.metalness, m.roughness, m.vertexColors, m.alphaTest,
    m.emissive?.getHexString(), m.flatShading, maps, hasNormal].join('|');
}

/**
 * A mesh as MergedBatch takes it; a GLTFLoader geometry gets float attributes, and normals when missing.
 * @param {THREE.BufferGeometry|MeshData} mesh @param {boolean} needColor @returns {MeshData}
 */
function asMeshData(mesh, needColor) {
  if (!('isBufferGeometry' in mesh)) return mesh;
  const g = normalizeGeometry(mesh, false, needColor, true);
  if (!g.attributes.normal) g.computeVertexNormals();
  if (!mesh.boundingBox) mesh.computeBoundingBox();
  if (!mesh.boundingSphere) mesh.computeBoundingSphere();
  const array = (/** @type {string} */ name) => /** @type {Float32Array} */ (g.attributes[name].array);
  return { position: array('position'), normal: array('normal'), index: /** @type {Uint32Array} */ (g.index?.array),
    color: needColor ? array('color') : undefined, scale: 1, box: /** @type {THREE.Box3} */ (mesh.boundingBox),
    sphere: /** @type {THREE.Sphere} */ (mesh.boundingSphere) };
}

/**
 * A mesh as a BatchedMesh takes it: float attributes (every geometry of a batch must have the same
 * layout) and a 32-bit index. Directly read mesh data only comes without uv and vertex colours.
 * @param {THREE.BufferGeometry|MeshData} mesh @param {boolean} needUv @param {boolean} needColor
 */
function asGeometry(mesh, needUv, needColor) {
  if ('isBufferGeometry' in mesh) return normalizeGeometry(mesh, needUv, needColor);
  const g = new THREE.BufferGeometry();
  const position = new Float32Array(mesh.position.length);
  for (let i = 0; i < position.length; i++) position[i] = mesh.position[i] * mesh.scale;
  g.setAttribute('position', new THREE.BufferAttribute(position, 3));
  if (mesh.normal) {
    const normal = Float32Array.from(mesh.normal); // unit length below: a normalized integer's scale drops out
    for (let i = 0; i < normal.length; i += 3) {
      const l = Math.sqrt(normal[i] ** 2 + normal[i + 1] ** 2 + normal[i + 2] ** 2) || 1;
      normal[i] /= l;
      normal[i + 1] /= l;
      normal[i + 2] /= l;
    }
    g.setAttribute('normal', new THREE.BufferAttribute(normal, 3));
  }
  g.setIndex(new THREE.BufferAttribute(Uint32Array.from(mesh.index), 1));
  return g;
}

/**
 * Rebuild a geometry with float attributes and a 32-bit index, so that every geometry of a batch
 * has the same layout (quantized glTF attributes come as normalised integers of varying width).
 * Float attributes are shared, not copied; `anyIndex` keeps a tight index of any width as it is.
 * @param {THREE.BufferGeometry} src @param {boolean} needUv @param {boolean} needColor @param {boolean} [anyIndex]
 */
function normalizeGeometry(src, needUv, needColor, anyIndex = false) {
  const g = new THREE.BufferGeometry();
  const pos = src.attributes.position;
  g.setAttribute('position', toFloat(pos, 3));
  if (src.attributes.normal) g.setAttribute('normal', toFloat(src.attributes.normal, 3));
  if (needUv) g.setAttribute('uv', src.attributes.uv ? toFloat(src.attributes.uv, 2)
    : new THREE.Float32BufferAttribute(new Float32Array(pos.count * 2), 2));
  if (needColor) g.setAttribute('color', src.attributes.color ? toFloat(src.attributes.color, 4)
    : new THREE.Float32BufferAttribute(new Float32Array(pos.count * 4).fill(1), 4));
  const si = /** @type {any} */ (src.index);
  if (si && !si.isInterleavedBufferAttribute && (anyIndex || si.array instanceof Uint32Array)) {
    g.setIndex(si.array.length === si.count ? si : new THREE.BufferAttribute(si.array.subarray(0, si.count), 1));
    return g;
  }
  const index = new Uint32Array(src.index ? src.index.count : pos.count);
  if (src.index && !(/** @type {any} */ (src.index).isInterleavedBufferAttribute)) index.set(src.index.array.subarray(0, index.length));
  else if (src.index) for (let i = 0; i < index.length; i++) index[i] = src.index.getX(i);
  else for (let i = 0; i < index.length; i++) index[i] = i;
  g.setIndex(new THREE.BufferAttribute(index, 1));
  return g;
}

/**
 * @param {THREE.BufferAttribute|THREE.InterleavedBufferAttribute} a @param {number} size
 */
function toFloat(a, size) {
  const src = /** @type {any} */ (a);
  if (!src.isInterleavedBufferAttribute && src.array instanceof Float32Array && a.itemSize === size && !a.normalized) {
    return src.array.length === a.count * size ? a : new THREE.BufferAttribute(src.array.subarray(0, a.count * size), size);
  }
  const out = new Float32Array(a.count * size);
  for (let i = 0; i < a.count; i++) {
    for (let k = 0; k < size; k++) out[i * size + k] = k < a.itemSize ? a.getComponent(i, k) : 1;
  }
  return new THREE.Float32BufferAttribute(out, size);
}
