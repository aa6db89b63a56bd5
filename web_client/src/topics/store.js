// The session's topics and their comment threads, as the server tells them: the snapshot's list, then
// topic_* / comment_* events carrying whole objects. A newer revision replaces an older one; an event
// that arrives late with an older revision is ignored, so the order of delivery cannot roll a topic back.
import { onCollab } from '../collab/feed.js';

/**
 * @typedef {{guid: string, topic: string, author: string, text: string, created: number, revision: number,
 *            modified?: number, reply_to?: string, deleted?: boolean, original_author?: string}} Comment
 * @typedef {{guid: string, title: string, author: string, created: number, status: string, priority: string,
 *            topic_type?: string, description?: string, assignee?: string, labels?: string[], due_date?: string,
 *            pin?: {element: string, point: number[], normal: number[]}, viewpoints?: any[], live_values?: any[],
 *            attachments?: {id: string, mime: string}[], revision: number, deleted?: boolean,
 *            original_author?: string}} Topic
 */

// The server omits fields at their default value (viewer_server/topics.py): put them back.
const TOPIC_DEFAULTS = { status: 'open', priority: 'normal', topic_type: 'Issue', description: '', labels: [], viewpoints: [],
  live_values: [], attachments: [], revision: 1 };
const COMMENT_DEFAULTS = { revision: 1 };

export const TOPIC_EVENTS = ['topic_created', 'topic_updated', 'topic_deleted', 'comment_added', 'comment_edited', 'comment_deleted'];

export class TopicStore extends EventTarget {
  /** @param {import('../session.js').Session} session */
  constructor(session) {
    super();
    /** @type {Map<string, Topic>} */
    this.topics = new Map();
    /** @type {Map<string, Map<string, Comment>>} topic guid -> comment guid -> comment */
    this.comments = new Map();
    session.addEventListener('snapshot', (e) => this.reset(/** @type {CustomEvent} */ (e).detail));
    onCollab(session, TOPIC_EVENTS, (kind, body) => {
      if (kind.startsWith('topic_')) this.#putTopic(body.topic);
      else this.#putComment(body.comment);
    });
  }

  /** Replace everything with a snapshot's topics and comments (absent: none). @param {any} snap */
  reset(snap) {
    this.topics = new Map();
    this.comments = new Map();
    for (const t of snap.topics ?? []) this.#putTopic(t, false);
    for (const c of snap.comments ?? []) this.#putComment(c, false);
    this.dispatchEvent(new CustomEvent('change', { detail: { guid: null } }));
  }

  /** @param {string} guid @returns {Comment[]} oldest first */
  thread(guid) {
    return [...(this.comments.get(guid)?.values() ?? [])].sort((a, b) => a.created - b.created);
  }

  /** @param {Topic} raw @param {boolean} [notify] */
  #putTopic(raw, notify = true) {
    if (!raw?.guid) return;
    const t = /** @type {Topic} */ ({ ...TOPIC_DEFAULTS, ...raw });
    const old = this.topics.get(t.guid);
    if (old && old.revision > t.revision) return;
    if (t.deleted) this.topics.delete(t.guid);
    else this.topics.set(t.guid, t);
    if (notify) this.dispatchEvent(new CustomEvent('change', { detail: { guid: t.guid } }));
  }

  /** @param {Comment} raw @param {boolean} [notify] */
  #putComment(raw, notify = true) {
    if (!raw?.guid) return;
    const c = /** @type {Comment} */ ({ ...COMMENT_DEFAULTS, ...raw });
    let m = this.comments.get(c.topic);
    if (!m) this.comments.set(c.topic, (m = new Map()));
    const old = m.get(c.guid);
    if (old && old.revision > c.revision) return;
    m.set(c.guid, c);
    if (notify) this.dispatchEvent(new CustomEvent('change', { detail: { guid: c.topic, comment: c.guid } }));
  }
}
