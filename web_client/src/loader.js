// Fetch a GLB with progress and cancellation, then parse it with meshopt/quantization support.
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { MeshoptDecoder } from 'three/addons/libs/meshopt_decoder.module.js';

export class LoadError extends Error {
  /** @param {string} message @param {string} hint */
  constructor(message, hint = '') {
    super(message);
    this.name = 'LoadError';
    this.hint = hint;
  }
}

/**
 * Download `url`, reporting progress (0..1, or NaN when the size is unknown), and parse it.
 * Rejects with an AbortError when `signal` fires, and with a LoadError the page can show otherwise.
 * @param {string} url
 * `response`: a fetch of `url` already under way (index.html starts one before the app has loaded).
 * @param {{signal?: AbortSignal, onProgress?: (fraction: number, bytes: number) => void, response?: Promise<Response>}} [opts]
 * @returns {Promise<import('three/addons/loaders/GLTFLoader.js').GLTF>}
 */
export async function loadGLB(url, { signal, onProgress = () => {}, response } = {}) {
  const res = await (response ?? fetch(url, { signal }));
  if (!res.ok) throw new LoadError(`Could not download the model (${res.status} ${res.statusText})`, url);
  const total = Number(res.headers.get('content-length')) || 0;
  const body = await readWithProgress(res, total, onProgress, signal);
  if (signal?.aborted) throw new DOMException('The download was cancelled', 'AbortError');
  performance.mark('twinview:fetched');
  const loader = new GLTFLoader();
  loader.setMeshoptDecoder(MeshoptDecoder);
  try {
    return await loader.parseAsync(body, url.replace(/[^/]*$/, ''));
  } catch (e) {
    throw new LoadError(`The model could not be read: ${/** @type {Error} */ (e).message}`, url);
  }
}

/**
 * @param {Response} res @param {number} total @param {(fraction: number, bytes: number) => void} onProgress
 * @param {AbortSignal} [signal] cancels the read (also of a response fetched without this signal)
 */
async function readWithProgress(res, total, onProgress, signal) {
  if (!res.body) return res.arrayBuffer();
  const reader = res.body.getReader();
  signal?.addEventListener('abort', () => reader.cancel().catch(() => {}));
  /** @type {Uint8Array[]} */
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    onProgress(total ? received / total : NaN, received);
  }
  const out = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out.buffer;
}
