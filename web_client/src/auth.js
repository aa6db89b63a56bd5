// Who this viewer is in a collaboration session: the token from the invitation link
// (`/?session=<id>&token=<token>`), the role the server granted in `welcome`, and a UI that shows only what
// that role may do. The server checks every operation anyway (docs/PERMISSIONS.md); hiding is courtesy.
import { CLOSE_AUTH, CLOSE_NAME } from './protocol.js';

const PERSONS = ['viewer', 'annotator', 'presenter', 'operator', 'admin'];
const AUTHORS = ['annotator', 'presenter', 'operator', 'admin'];
const LEADS = ['presenter', 'admin'];
// The part of the server's role × action matrix that the UI needs; tests/test_web_collab.py keeps it
// equal to viewer_server/permissions.py.
export const UI_PERMISSIONS = /** @type {Record<string, string[]>} */ ({
  'hand.raise': PERSONS,
  'procedure.progress': PERSONS,
  'topic.create': AUTHORS,
  'comment.create': AUTHORS,
  'markup.create': AUTHORS,
  'topic.update': AUTHORS,
  'topic.edit_own': AUTHORS,
  'topic.moderate': ['admin'],
  'comment.edit_own': AUTHORS,
  'comment.delete_own': AUTHORS,
  'procedure.control': LEADS,
  'presenter.take': LEADS,
  'command.send': ['operator'],
  'alarm.acknowledge': ['operator', 'admin'],
  'alarm.shelve': ['operator', 'admin'],
  'alarm.service': ['admin'],
  'bcf.export': AUTHORS,
  'bcf.import': LEADS,
});

/**
 * The session and token of the link this page was opened with (both null for an open, tokenless server).
 * @param {Location} loc
 * @returns {{session: string|null, token: string|null}}
 */
export function linkCredentials(loc) {
  const q = new URLSearchParams(loc.search);
  return { session: q.get('session'), token: q.get('token') };
}

/**
 * What the link's token says about itself (its payload, read without checking the signature: only for the
 * words shown to its holder; the server verifies it). Null for no token or one that cannot be read.
 * @param {string|null} token
 * @returns {{user?: string, role?: string, exp?: number, name?: string}|null}
 */
export function linkClaims(token) {
  try {
    const body = (token ?? '').split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(body));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** @param {string} role @param {string} action */
export function can(role, action) {
  return (UI_PERMISSIONS[action] ?? []).includes(role);
}

/**
 * The role this viewer holds, and the `[data-requires=action]` controls it may use: the others are hidden.
 * A server without sessions sends no role; then everything is shown and the server stays the judge.
 */
export class Identity extends EventTarget {
  /** @param {import('./session.js').Session} session */
  constructor(session) {
    super();
    /** @type {string|null} */
    this.role = null;
    /** The server refused this page (an expired or revoked link, …): it may do nothing, so no control shows. */
    this.refused = false;
    /** @type {string} the user name the server knows us by (authors of topics and comments) */
    this.user = session.client;
    session.addEventListener('status', (e) => {
      const refused = /** @type {import('./session.js').SessionEvent<'status'>} */ (e).detail.status === 'refused';
      if (refused === this.refused) return;
      this.refused = refused;
      this.apply(document);
      this.dispatchEvent(new CustomEvent('change'));
    });
    session.addEventListener('welcome', (e) => {
      const w = /** @type {import('./session.js').SessionEvent<'welcome'>} */ (e).detail;
      // The welcome omits fields at their default: a server with sessions that names no role means `viewer`.
      this.role = w.role ?? (w.capabilities?.includes('sessions') ? 'viewer' : null);
      this.user = w.user || session.client;
      this.apply(document);
      this.dispatchEvent(new CustomEvent('change'));
    });
  }

  /** @param {string} action */
  may(action) {
    return !this.refused && (this.role === null || can(this.role, action));
  }

  /** Show or hide every control under `root` that names the action it needs. @param {ParentNode} root */
  apply(root) {
    document.body.dataset.role = this.role ?? '';
    for (const el of root.querySelectorAll('[data-requires]')) {
      /** @type {HTMLElement} */ (el).hidden = !this.may(/** @type {HTMLElement} */ (el).dataset.requires ?? '');
    }
  }
}

/**
 * The words for a refused connection: an expired invitation reads differently from a version mismatch.
 * @param {number} code @param {string} reason @param {string|null} [token] the link's token (its expiry is named)
 * @returns {{title: string, detail: string}}
 */
export function refusalText(code, reason, token = null) {
  const exp = linkClaims(token)?.exp;
  if (code === CLOSE_AUTH && reason === 'token expired' && typeof exp === 'number') {
    const when = new Date(exp * 1000).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    return { title: `This link expired on ${when}`, detail: 'Ask the session owner for a new one. Until then this page can change nothing.' };
  }
  if (code === CLOSE_AUTH && reason === 'token revoked') {
    return { title: 'This link was revoked', detail: 'Ask the session owner for a new one. Until then this page can change nothing.' };
  }
  if (code === CLOSE_AUTH) {
    return { title: 'This session link is not valid any more', detail: `${reason || 'The token was refused'}. Ask the session owner for a new link.` };
  }
  if (code === CLOSE_NAME) return { title: 'Choose another name', detail: reason };
  return { title: 'The server refused this viewer', detail: reason || 'Reload the page to get a matching client.' };
}
