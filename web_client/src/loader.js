// Download a GLB in a worker with progress and cancellation, then read it: directly into batches when the
// reader takes it (gltf_reader.js), else with GLTFLoader (+ MeshoptDecoder, quantization), which is loaded
// only then (a chunk of its own: most models never need it).
import { ElementBatches } from './batcher.js';
import { meshoptDecoder, readGLB } from './gltf_reader.js';

// `?loader=three` reads every model with GLTFLoader, to compare the two ways in.
const ALWAYS_GLTF_LOADER = new URLSearchParams(location.search).get('loader') === 'three';

export class LoadError extends Error {
  /** @param {string} message @param {string} hint */
  constructor(message, hint = '') {
    super(message);
    this.name = 'LoadError';
    this.hint = hint;
  }
}

/**
 * A read model: `batch()` makes its batches, `meshSource` gives the primitives of its glTF meshes (the
 * levels of detail); `via` says which reader read it ("direct", or "GLTFLoader: <why>").
 * @typedef {{nodes: number, via: string, batch: (maxInstanced?: number) => ElementBatches, meshSource: import('./batcher.js').MeshSource}} Model
 * A tiled scene instead: its index (tiles.js reads it and streams the tiles).
 * @typedef {{tiles: string, url: string}} TiledModel
 */

/**
 * A download index.html started before the app loaded: its worker and the messages it has sent so far.
 * @typedef {{url: string, worker: Worker, messages: MessageEvent[]}} EarlyDownload
 */

/**
 * Download `url` (in a worker, see download_worker.js), reporting progress (0..1, or NaN when the size
 * is unknown), and read it. Rejects with an AbortError when `signal` fires, and with a LoadError the
 * page can show otherwise.
 * @param {string} url
 * @param {{signal?: AbortSignal, onProgress?: (fraction: number, bytes: number) => void, early?: EarlyDownload}} [opts]
 * @returns {Promise<Model|TiledModel>}
 */
export async function loadModel(url, { signal, onProgress = () => {}, early } = {}) {
  const body = await download(url, { signal, onProgress, early });
  performance.mark('twinview:fetched');
  if (typeof body === 'string') return { tiles: body, url };
  return readModel(body, url);
}

/**
 * Read a GLB's bytes: directly when the reader takes it, else with GLTFLoader. Rejects with a LoadError.
 * @param {ArrayBuffer} body @param {string} url where it came from (GLTFLoader resolves relative URIs against it)
 * @returns {Promise<Model>}
 */
export async function readModel(body, url) {
  try {
    const doc = ALWAYS_GLTF_LOADER ? null : readGLB(body);
    const why = doc ? doc.unsupported() : 'not read directly';
    if (doc && !why) {
      await doc.prepare();
      return { nodes: doc.json.nodes?.length ?? 0, via: 'direct', batch: (max) => ElementBatches.fromDocument(doc, max),
        meshSource: async (m) => doc.mesh(m) };
    }
    const meshopt = !doc || doc.json.extensionsUsed?.includes('EXT_meshopt_compression');
    const [{ GLTFLoader }, decoder] = await Promise.all([import('three/addons/loaders/GLTFLoader.js'),
      meshopt ? meshoptDecoder() : null]);
    const loader = new GLTFLoader();
    if (decoder) loader.setMeshoptDecoder(decoder);
    const gltf = await loader.parseAsync(body, url.replace(/[^/]*$/, ''));
    const { parser } = gltf;
    return { nodes: parser.json.nodes?.length ?? 0, via: `GLTFLoader: ${why}`, batch: (max) => ElementBatches.fromScene(gltf.scene, max),
      meshSource: async (m) => {
        const o = await parser.getDependency('mesh', m); // a Group of Meshes when it has several primitives
        return (o.isGroup ? o.children : [o]).map((/** @type {any} */ c) => c.geometry);
      } };
  } catch (e) {
    throw new LoadError(`The model could not be read: ${/** @type {Error} */ (e).message}`, url);
  }
}

/**
 * The bytes of `url`, from the early download when given, else from a new worker.
 * @param {string} url
 * @param {{signal?: AbortSignal, onProgress: (fraction: number, bytes: number) => void, early?: EarlyDownload}} opts
 * @returns {Promise<ArrayBuffer|string>} the bytes, or a tiled scene's index (download_worker.js)
 */
function download(url, { signal, onProgress, early }) {
  const worker = early?.worker
    ?? new Worker(new URL(`./download_worker.js#${encodeURIComponent(new URL(url, location.href).href)}`, import.meta.url));
  return new Promise((resolve, reject) => {
    const stop = () => {
      worker.terminate(); // also cancels its fetch
      worker.onmessage = worker.onerror = null; // they would keep the bytes alive as long as the worker object
      signal?.removeEventListener('abort', cancel);
    };
    const fail = (/** @type {Error} */ error) => {
      stop();
      reject(error);
    };
    const cancel = () => fail(new DOMException('The download was cancelled', 'AbortError'));
    const take = (/** @type {MessageEvent} */ { data }) => {
      if (data.started) return;
      if (data.progress) {
        const [received, total] = data.progress;
        onProgress(total ? received / total : NaN, received);
      } else if (data.buffer || data.tiles) {
        stop();
        resolve(data.buffer ?? data.tiles);
      } else {
        fail(new LoadError(`Could not download the model (${data.error})`, url));
      }
    };
    if (signal?.aborted) return cancel();
    signal?.addEventListener('abort', cancel);
    worker.onerror = () => fail(new LoadError('Could not start the download', url));
    worker.onmessage = take;
    if (early) early.messages.forEach(take);
  });
}
