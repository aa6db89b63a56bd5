// BCF from the topic panel: "Export BCF" downloads the session's topics as a BCF 3.0 archive, "Import BCF" sends a
// .bcf / .bcfzip the user picks to the same REST import the CLI uses (`POST /api/sessions/{id}/bcf`), so the
// permissions (bcf.export, bcf.import; replacing topics also needs topic.moderate), the limits and the error
// messages are the server's. Imported topics reach everyone connected as events, this viewer included.
import { h, replace } from '../ui/dom.js';

// Shown from the import's answer: warnings and components not in the scene (the CLI lists 50; a panel, fewer).
const MAX_LISTED = 5;

/**
 * @typedef {{topics: number, comments: number, replaced: number, seq: number, unmapped_components: string[],
 *            warnings: string[]}} BcfImported the REST import's answer (viewer_server.sessions_api.BcfImported)
 */

export class BcfTransfer {
  /**
   * @param {HTMLElement} root where the two controls and their messages go
   * @param {{credentials: () => ({session: string|null, token: string|null}),
   *          identity: import('../auth.js').Identity, session: import('../session.js').Session}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    this.file = /** @type {HTMLInputElement} */ (h('input', { type: 'file', accept: '.bcf,.bcfzip', hidden: true,
      'aria-label': 'BCF archive to import' }));
    this.file.addEventListener('change', () => {
      const picked = this.file.files?.[0];
      this.file.value = ''; // the same file again is a new import
      if (picked) this.upload(picked);
    });
    this.exportButton = /** @type {HTMLButtonElement} */ (h('button', { class: 'bcf-export', dataset: { requires: 'bcf.export' },
      title: "Download this session's topics as a BCF 3.0 archive", onclick: () => this.download() }, 'Export BCF'));
    this.importButton = /** @type {HTMLButtonElement} */ (h('button', { class: 'bcf-import', dataset: { requires: 'bcf.import' },
      title: 'Add the topics of a BCF 3.0 or 2.1 archive (.bcf, .bcfzip) to this session', onclick: () => this.file.click() },
    'Import BCF'));
    this.status = h('div', { class: 'bcf-status', role: 'status', hidden: true });
    replace(root, this.exportButton, this.importButton, this.file, this.status);
    deps.identity.apply(root);
  }

  #url() {
    return `/api/sessions/${encodeURIComponent(this.deps.credentials().session ?? this.deps.session.welcome?.session ?? '')}/bcf`;
  }

  /** @returns {Record<string, string>} */
  #auth() {
    const { token } = this.deps.credentials();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /** Fetch the archive and save it under the name the server gives it. */
  async download() {
    this.#say('busy', 'Exporting…');
    this.exportButton.disabled = true;
    try {
      const res = await fetch(this.#url(), { headers: this.#auth() });
      if (!res.ok) return this.#say('error', `Export refused: ${await refusal(res)}`);
      const name = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') ?? '')?.[1] ?? 'topics.bcf';
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: name, hidden: true });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 0);
      this.#say('done', `Exported ${name}`);
    } catch (e) {
      this.#say('error', `Export failed: ${/** @type {Error} */ (e).message}. Is the server running?`);
    } finally {
      this.exportButton.disabled = false;
    }
  }

  /** Import an archive; says what was stored, or the one reason it was not. @param {File} file */
  async upload(file) {
    this.#say('busy', `Importing ${file.name}…`);
    this.importButton.disabled = true;
    try {
      const res = await fetch(this.#url(), { method: 'POST', body: file,
        headers: { ...this.#auth(), 'Content-Type': 'application/octet-stream' } });
      if (!res.ok) return this.#say('error', `${file.name}: ${(await refusal(res)).replace(/^upload: /, '')}`);
      this.#report(file.name, /** @type {BcfImported} */ (await res.json()));
    } catch (e) {
      this.#say('error', `${file.name}: not sent (${/** @type {Error} */ (e).message}). Is the server running?`);
    } finally {
      this.importButton.disabled = false;
    }
  }

  /** @param {string} name @param {BcfImported} r */
  #report(name, r) {
    const lines = [
      ...r.warnings.slice(0, MAX_LISTED).map((w) => `warning: ${w}`),
      r.warnings.length > MAX_LISTED ? `… and ${r.warnings.length - MAX_LISTED} more warnings` : '',
      r.unmapped_components.length ? `${r.unmapped_components.length} components are not in this scene: `
        + `${r.unmapped_components.slice(0, MAX_LISTED).join(', ')}${r.unmapped_components.length > MAX_LISTED ? ', …' : ''}` : '',
    ].filter(Boolean);
    const head = `Imported ${r.topics} topics and ${r.comments} comments from ${name}`
      + (r.replaced ? ` (${r.replaced} replaced topics the session had)` : '');
    this.#say('done', head, lines);
  }

  /** @param {'busy'|'done'|'error'} kind @param {string} text @param {string[]} [lines] */
  #say(kind, text, lines = []) {
    this.status.hidden = false;
    this.status.dataset.kind = kind;
    this.status.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    replace(this.status, h('p', null, text), lines.length ? h('ul', null, ...lines.map((l) => h('li', null, l))) : null);
  }
}

/** The server's reason for a refusal, as one line. @param {Response} res */
async function refusal(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    return String(body.detail || body.error || res.statusText);
  } catch {
    return res.status === 413 ? 'the archive is larger than the server takes (4 MiB)' : text.trim() || `HTTP ${res.status}`;
  }
}
