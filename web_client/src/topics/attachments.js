// Snapshot images of topics: taken from the canvas, uploaded to the session (`POST
// /api/sessions/{id}/attachments`, Bearer token) and shown back as images. Fetched with the token too,
// then shown from a blob: URL, since an <img src> cannot carry an Authorization header.
import { renderWithoutLive } from '../live_only.js';

/** Longest side of an uploaded snapshot (px): enough to recognise the view, small enough to upload quickly. */
const SNAPSHOT_MAX_PX = 1280;

/**
 * A PNG of what the viewer shows now, without other people's avatars (live_only.js): render once more, copy the
 * drawing buffer at once (in the same task, before the browser clears it) and encode. The next frame draws them again.
 * @param {import('../viewer.js').Viewer} viewer @returns {Promise<Blob>}
 */
export function snapshotPng(viewer) {
  renderWithoutLive(viewer.renderer, viewer.scene, viewer.camera);
  viewer.invalidate();
  const src = viewer.renderer.domElement;
  const k = Math.min(1, SNAPSHOT_MAX_PX / Math.max(src.width, src.height));
  const out = document.createElement('canvas');
  out.width = Math.round(src.width * k);
  out.height = Math.round(src.height * k);
  /** @type {CanvasRenderingContext2D} */ (out.getContext('2d')).drawImage(src, 0, 0, out.width, out.height);
  return new Promise((resolve, reject) => out.toBlob((b) => (b ? resolve(b) : reject(new Error('no snapshot'))), 'image/png'));
}

export class Attachments {
  /** @param {() => ({session: string|null, token: string|null})} credentials */
  constructor(credentials) {
    this.credentials = credentials;
    /** @type {Map<string, Promise<string>>} attachment id -> blob: URL */
    this.urls = new Map();
  }

  /** @param {string} id */
  #url(id) {
    return `/api/sessions/${encodeURIComponent(this.credentials().session ?? '')}/attachments/${encodeURIComponent(id)}`;
  }

  /** @returns {Record<string, string>} */
  #headers() {
    const { token } = this.credentials();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /** Upload a PNG; resolves with the attachment id. @param {Blob} png @returns {Promise<string>} */
  async upload(png) {
    const res = await fetch(this.#url('').replace(/\/$/, ''), { method: 'POST', body: png,
      headers: { ...this.#headers(), 'Content-Type': 'image/png' } });
    if (!res.ok) throw new Error(`upload refused (${res.status})`);
    return (await res.json()).id;
  }

  /** An <img> showing the attachment once loaded. @param {string} id @param {string} alt */
  image(id, alt) {
    const img = document.createElement('img');
    img.alt = alt;
    img.className = 'snapshot';
    let url = this.urls.get(id);
    if (!url) {
      url = fetch(this.#url(id), { headers: this.#headers() })
        .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
        .then((b) => URL.createObjectURL(b));
      url.catch(() => this.urls.delete(id));
      this.urls.set(id, url);
    }
    url.then((u) => { img.src = u; }, () => { img.alt = `${alt} (not available)`; });
    return img;
  }
}
