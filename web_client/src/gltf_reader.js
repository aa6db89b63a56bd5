// Reads what the batches need straight from a GLB's JSON and binary chunk: node placements, and per
// mesh primitive its positions, normals and indices as typed arrays over the file's own bytes. For a
// model of many elements this is most of the time to first frame: GLTFLoader would build a Mesh, a
// BufferGeometry and material clones per element, and batching would throw them all away again.
// Only triangle meshes with untextured materials (what IFC/CAD exports are; metallic ones too) are read
// this way, including EXT_meshopt_compression and KHR_mesh_quantization; `unsupported()` names anything else
// (textures, material extensions, points, lines, vertex colours, skins, morph targets, other
// extensions), and such a model goes through GLTFLoader.
import * as THREE from 'three';

/**
 * One primitive as the batches take it (MergedBatch bakes it as is). Positions are `scale` × the stored
 * values (the factor of a normalized integer accessor, folded into the placement instead of converting
 * every vertex); normals of any type, as they are normalised when used. `box` and `sphere` are in the
 * element's own frame. `uv` and `color` only come from GLTFLoader geometries.
 * @typedef {Int8Array|Uint8Array|Int16Array|Uint16Array|Uint32Array|Float32Array} Components
 * @typedef {{position: Components, normal: Components|null, index: Uint8Array|Uint16Array|Uint32Array,
 *            uv?: Float32Array, color?: Float32Array, scale: number, box: THREE.Box3, sphere: THREE.Sphere}} MeshData
 */

const GLB_MAGIC = 0x46546c67; // "glTF"
const CHUNK_JSON = 0x4e4f534a;
const CHUNK_BIN = 0x004e4942;
const TRIANGLES = 4;
const MESHOPT = 'EXT_meshopt_compression';
const READABLE_EXTENSIONS = new Set([MESHOPT, 'KHR_mesh_quantization']);
/** @type {Record<number, any>} */
const COMPONENT_TYPES = { 5120: Int8Array, 5121: Uint8Array, 5122: Int16Array, 5123: Uint16Array, 5125: Uint32Array,
  5126: Float32Array };
/** @type {Record<string, number>} */
const ITEM_SIZE = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 };
// Decoded value of a normalized integer = stored × this (glTF clamps signed ones at -1, which the
// largest negative value alone exceeds, by < 1 %; encoders do not write it).
/** @type {Record<number, number>} */
const NORMALIZED_SCALE = { 5120: 1 / 127, 5121: 1 / 255, 5122: 1 / 32767, 5123: 1 / 65535 };
const TEXTURES = ['normalTexture', 'occlusionTexture', 'emissiveTexture'];
const PBR_TEXTURES = ['baseColorTexture', 'metallicRoughnessTexture'];

/**
 * The JSON and binary chunk of a GLB, or null when `buffer` is not one (GLTFLoader then reads it, or
 * says what is wrong with it).
 * @param {ArrayBuffer} buffer
 */
export function readGLB(buffer) {
  if (buffer.byteLength < 20) return null;
  const view = new DataView(buffer);
  if (view.getUint32(0, true) !== GLB_MAGIC || view.getUint32(4, true) !== 2) return null;
  let json = null;
  /** @type {Uint8Array|null} */
  let bin = null;
  for (let at = 12; at + 8 <= buffer.byteLength;) {
    const length = view.getUint32(at, true);
    const type = view.getUint32(at + 4, true);
    if (at + 8 + length > buffer.byteLength) return null;
    if (type === CHUNK_JSON) json = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, at + 8, length)));
    else if (type === CHUNK_BIN) bin = new Uint8Array(buffer, at + 8, length);
    at += 8 + length;
  }
  return json ? new GltfDocument(json, bin) : null;
}

export class GltfDocument {
  /** @param {any} json @param {Uint8Array|null} bin */
  constructor(json, bin) {
    this.json = json;
    this.bin = bin;
    /** @type {Map<number, Uint8Array>} buffer views' bytes (meshopt-decoded) */
    this.views = new Map();
    /** @type {Map<number, Components>} */
    this.accessors = new Map();
    /** @type {Map<number, MeshData[]>} */
    this.meshes = new Map();
    /** @type {Map<string, MeshData>} primitives by their accessors: meshes that repeat a primitive share it, as in GLTFLoader */
    this.primitives = new Map();
    /** @type {Map<number, THREE.MeshStandardMaterial>} */
    this.materials = new Map();
    /** @type {any} the meshopt decoder, once prepare() has loaded it */
    this.meshopt = null;
  }

  /** Why this model has to go through GLTFLoader; '' when it can be read directly. */
  unsupported() {
    const j = this.json;
    if (!String(j.asset?.version).startsWith('2.')) return 'not glTF 2';
    const other = (j.extensionsUsed ?? []).find((/** @type {string} */ e) => !READABLE_EXTENSIONS.has(e));
    if (other) return other;
    if (!j.scenes?.[j.scene ?? 0]) return 'no scene';
    if (j.skins?.length) return 'skins';
    if ((j.buffers ?? []).some((/** @type {any} */ b, /** @type {number} */ i) => b.uri !== undefined
      || (i > 0 && !b.extensions?.[MESHOPT]?.fallback))) return 'external buffers';
    const plain = (j.materials ?? []).map(plainMaterial);
    for (let m = 0; m < (j.meshes?.length ?? 0); m++) {
      for (const p of j.meshes[m].primitives) {
        if ((p.mode ?? TRIANGLES) !== TRIANGLES) return 'points or lines';
        if (p.targets) return 'morph targets';
        if (!plain[p.material]) return 'textures, material extensions or the default material';
        const { POSITION, NORMAL, COLOR_0 } = p.attributes;
        if (NORMAL === undefined) return 'no normals';
        if (COLOR_0 !== undefined) return 'vertex colours';
        for (const a of [POSITION, NORMAL, p.indices]) if (a !== undefined && !this.#readable(a)) return 'an accessor it cannot read';
      }
    }
    return '';
  }

  /** Resolves when what reading needs is ready: the meshopt decoder (its own chunk) and its WebAssembly. */
  async prepare() {
    if (this.json.extensionsUsed?.includes(MESHOPT)) this.meshopt = await meshoptDecoder();
  }

  /**
   * The primitives of a glTF mesh, read on first use.
   * @param {number} index @returns {MeshData[]}
   */
  mesh(index) {
    let out = this.meshes.get(index);
    if (!out) {
      out = this.json.meshes[index].primitives.map((/** @type {any} */ p) => {
        const key = `${p.attributes.POSITION}:${p.attributes.NORMAL}:${p.indices}`;
        let data = this.primitives.get(key);
        if (!data) this.primitives.set(key, (data = this.#primitive(p)));
        return data;
      });
      this.meshes.set(index, /** @type {MeshData[]} */ (out));
    }
    return /** @type {MeshData[]} */ (out);
  }

  /**
   * The material as GLTFLoader makes it, for a plain one (see plainMaterial).
   * @param {number} index
   */
  material(index) {
    let m = this.materials.get(index);
    if (m) return m;
    const def = this.json.materials?.[index] ?? {};
    const pbr = def.pbrMetallicRoughness ?? {};
    const [r, g, b, a] = pbr.baseColorFactor ?? [1, 1, 1, 1];
    const blend = def.alphaMode === 'BLEND';
    m = new THREE.MeshStandardMaterial({
      name: def.name ?? '',
      color: new THREE.Color().setRGB(r, g, b, THREE.LinearSRGBColorSpace),
      opacity: a,
      transparent: blend,
      depthWrite: !blend,
      alphaTest: def.alphaMode === 'MASK' ? def.alphaCutoff ?? 0.5 : 0,
      side: def.doubleSided ? THREE.DoubleSide : THREE.FrontSide,
      metalness: pbr.metallicFactor ?? 1,
      roughness: pbr.roughnessFactor ?? 1,
      emissive: new THREE.Color().setRGB(...(/** @type {[number, number, number]} */ (def.emissiveFactor ?? [0, 0, 0])),
        THREE.LinearSRGBColorSpace),
    });
    this.materials.set(index, m);
    return m;
  }

  /** @param {any} p a primitive's JSON @returns {MeshData} */
  #primitive(p) {
    const acc = this.json.accessors[p.attributes.POSITION];
    const scale = acc.normalized ? NORMALIZED_SCALE[acc.componentType] : 1;
    const position = this.#accessor(p.attributes.POSITION);
    const box = new THREE.Box3();
    if (acc.min && acc.max) box.set(new THREE.Vector3().fromArray(acc.min), new THREE.Vector3().fromArray(acc.max));
    else for (let i = 0; i < position.length; i += 3) box.expandByPoint(_v.fromArray(position, i));
    box.min.multiplyScalar(scale);
    box.max.multiplyScalar(scale);
    // The sphere GLTFLoader derives from the box, so both loading paths cull and pick alike.
    const sphere = new THREE.Sphere(box.getCenter(new THREE.Vector3()), box.min.distanceTo(box.max) / 2);
    let index = p.indices === undefined ? null : this.#accessor(p.indices);
    if (!index) index = Uint32Array.from({ length: position.length / 3 }, (_, i) => i);
    return { position, normal: this.#accessor(p.attributes.NORMAL), index: /** @type {Uint32Array} */ (index), scale, box, sphere };
  }

  /** @param {number} i */
  #readable(i) {
    const a = this.json.accessors?.[i];
    const view = a && this.json.bufferViews?.[a.bufferView];
    return Boolean(view && !a.sparse && COMPONENT_TYPES[a.componentType] && ITEM_SIZE[a.type] && this.bin
      && (view.extensions?.[MESHOPT]?.buffer ?? view.buffer) === 0);
  }

  /**
   * An accessor's components as a tight typed array: a view of the file's bytes when they are tight and
   * aligned, else a copy. @param {number} i @returns {Components}
   */
  #accessor(i) {
    let out = this.accessors.get(i);
    if (out) return out;
    const a = this.json.accessors[i];
    const Type = COMPONENT_TYPES[a.componentType];
    const size = ITEM_SIZE[a.type];
    const def = this.json.bufferViews[a.bufferView];
    const bytes = this.#view(a.bufferView);
    const row = size * Type.BYTES_PER_ELEMENT;
    const stride = def.byteStride ?? row;
    const start = a.byteOffset ?? 0;
    if (stride === row && (bytes.byteOffset + start) % Type.BYTES_PER_ELEMENT === 0) {
      out = /** @type {Components} */ (new Type(bytes.buffer, bytes.byteOffset + start, a.count * size));
    } else { // interleaved or unaligned: copy row by row
      const tight = new Uint8Array(a.count * row);
      for (let k = 0; k < a.count; k++) tight.set(bytes.subarray(start + k * stride, start + k * stride + row), k * row);
      out = /** @type {Components} */ (new Type(tight.buffer));
    }
    this.accessors.set(i, out);
    return out;
  }

  /** A buffer view's bytes (meshopt-decoded once when compressed). @param {number} i @returns {Uint8Array} */
  #view(i) {
    let out = this.views.get(i);
    if (out) return out;
    const def = this.json.bufferViews[i];
    const ext = def.extensions?.[MESHOPT];
    const bin = /** @type {Uint8Array} */ (this.bin);
    if (ext) {
      out = new Uint8Array(ext.count * ext.byteStride);
      const source = bin.subarray(ext.byteOffset ?? 0, (ext.byteOffset ?? 0) + ext.byteLength);
      this.meshopt.decodeGltfBuffer(out, ext.count, ext.byteStride, source, ext.mode, ext.filter ?? 'NONE');
    } else {
      out = bin.subarray(def.byteOffset ?? 0, (def.byteOffset ?? 0) + def.byteLength);
    }
    this.views.set(i, out);
    return out;
  }
}

/**
 * three's meshopt decoder, ready to decode. Loaded on demand, in a chunk of its own: evaluating it
 * instantiates its WebAssembly, which a model without EXT_meshopt_compression does not need.
 */
export async function meshoptDecoder() {
  const { MeshoptDecoder } = await import('three/addons/libs/meshopt_decoder.module.js');
  await MeshoptDecoder.ready;
  return MeshoptDecoder;
}

/** Whether GLTFLoader would make this material without textures or extensions. @param {any} def */
function plainMaterial(def) {
  const pbr = def.pbrMetallicRoughness ?? {};
  return !def.extensions && !TEXTURES.some((k) => def[k]) && !PBR_TEXTURES.some((k) => pbr[k]);
}

const _v = new THREE.Vector3();
