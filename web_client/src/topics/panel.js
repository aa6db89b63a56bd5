// One topic, opened: its fields, status change, the edit form for its BCF fields (edit.js), the snapshot
// and live values it was made with, and the threaded comments (reply; edit and delete one's own).
// Opening a topic restores its viewpoint.
import { onCollabError } from '../collab/feed.js';
import { h, replace } from '../ui/dom.js';
import { STATUSES, TopicEditForm, editRights } from './edit.js';
import { statusText } from './list.js';

// An edit form's `topic_update` carries a ref of its own, so that its `saved` / `error` answer finds it.
const EDIT_REF = 'topic-edit-';
// What this panel sends: their refusals are shown in it (a new topic's or a markup's go to the page's notice).
const TOPIC_MESSAGES = ['topic_update', 'comment_add', 'comment_edit', 'comment_delete'];

/** @param {number} ts */
const when = (ts) => new Date(ts * 1000).toLocaleString();
// An item imported from BCF is by its importer; the author the file named is only a claim, shown as such.
/** @param {{original_author?: string | null}} item */
const imported = (item) => (item.original_author ? ` (imported; originally by ${item.original_author})` : '');

export class TopicPanel extends EventTarget {
  /**
   * @param {HTMLElement} root the floating panel
   * @param {{store: import('./store.js').TopicStore, session: import('../session.js').Session,
   *          identity: import('../auth.js').Identity, viewpoints: import('./viewpoint.js').Viewpoints,
   *          attachments: import('./attachments.js').Attachments, names: import('../ui/names.js').Names}} deps
   */
  constructor(root, deps) {
    super();
    this.root = root;
    this.deps = deps;
    /** @type {string|null} */
    this.guid = null;
    /** @type {import('./store.js').Comment|null} the comment a reply answers */
    this.replyTo = null;
    /** @type {string|null} the comment being edited */
    this.editing = null;
    // What is being typed lives in elements kept across re-renders (someone else's comment or edit
    // re-renders the panel): a draft comment per topic, and the text of the comment being edited.
    /** @type {Map<string, HTMLTextAreaElement>} */
    this.drafts = new Map();
    /** @type {HTMLTextAreaElement|null} */
    this.editBox = null;
    /** @type {{guid: string, form: TopicEditForm, ref: string|null, revision: number|null}|null} the topic being edited:
     * the ref of the update on its way, then the revision the server saved */
    this.edit = null;
    this.edits = 0;
    this.error = h('p', { class: 'error', role: 'alert', hidden: true });
    this.saved = h('p', { class: 'saved-note', role: 'status', hidden: true });
    this.savedAt = 0; // the revision the note speaks of: a later change hides it
    deps.store.addEventListener('change', (e) => {
      const { guid } = /** @type {CustomEvent} */ (e).detail;
      if (this.guid && (guid === null || guid === this.guid)) this.render();
    });
    onCollabError(deps.session, TOPIC_MESSAGES, (err) => {
      this.render(); // undo what the refused change showed (e.g. a status chosen on a stale revision)
      this.showError(`${err.code}: ${err.message}`);
      return this.guid !== null; // shown in the open panel
    });
    // The answer to the edit form's update: saved (close the form once the store has that revision) or
    // refused (keep what was typed, say why).
    deps.session.addEventListener('message', (e) => {
      const msg = /** @type {import('../session.js').SessionEvent<'message'>} */ (e).detail;
      if (msg.type !== 'saved' || !this.edit?.ref || msg.ref !== this.edit.ref) return;
      this.edit.ref = null;
      this.edit.revision = msg.revision;
      this.saved.textContent = `Saved (revision ${msg.revision})`;
      this.savedAt = msg.revision;
      this.saved.hidden = false;
      this.render();
    });
    deps.session.addEventListener('servererror', (e) => {
      const err = /** @type {import('../session.js').SessionEvent<'servererror'>} */ (e).detail;
      if (!this.edit?.ref || err.ref !== this.edit.ref) return;
      e.preventDefault(); // shown in the form
      this.edit.ref = null;
      this.edit.form.busy(false);
      this.edit.form.fail(`${err.code}: ${err.message}`);
      this.render();
    });
  }

  /** @param {string} text */
  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  /** Open a topic and go to its viewpoint; null closes the panel and returns to the live view. @param {string|null} guid */
  open(guid) {
    this.guid = guid;
    this.replyTo = null;
    this.editing = null;
    this.editBox = null;
    this.edit = null;
    this.error.hidden = true;
    this.saved.hidden = true;
    const vp = guid ? this.deps.store.topics.get(guid)?.viewpoints?.[0] : null;
    if (vp) this.deps.viewpoints.restore(vp);
    else this.deps.viewpoints.release();
    this.render();
    this.dispatchEvent(new CustomEvent('open', { detail: guid }));
  }

  render() {
    const t = this.guid ? this.deps.store.topics.get(this.guid) : null;
    this.root.hidden = !t;
    if (!t) return replace(this.root);
    const { identity, attachments, names } = this.deps;
    if (this.edit && (this.edit.guid !== t.guid || (this.edit.revision !== null && t.revision >= this.edit.revision))) {
      this.edit = null; // saved, and the store holds what was saved
    }
    if (t.revision > this.savedAt) this.saved.hidden = true;
    const rights = editRights(identity, t);
    const form = this.edit?.form ?? null;
    form?.compare(t);
    const typing = typingIn(this.root);
    const snapshots = [...new Set([...(t.viewpoints ?? []).map((v) => v.snapshot), ...(t.attachments ?? []).map((a) => a.id)])]
      .filter(Boolean);
    replace(this.root,
      h('header', null, h('h3', { class: 'topic-title' }, t.title),
        h('button', { class: 'close', 'aria-label': 'close topic', onclick: () => this.open(null) }, '×')),
      h('p', { class: 'meta' }, h('span', { class: 'topic-type' }, t.topic_type ?? 'Issue'), ` by ${names.person(t.author)}${imported(t)} · ${when(t.created)}`,
        t.modified_by ? ` · edited by ${names.person(t.modified_by)}${t.modified ? ` ${when(t.modified)}` : ''}` : ''),
      t.pin ? h('p', { class: 'meta pinned-on' }, 'On ', names.ref(t.pin.element)) : null,
      this.saved,
      form ? form.el : this.#fields(t, rights),
      form ? null : t.description ? h('p', { class: 'description' }, t.description) : null,
      ...snapshots.map((id) => attachments.image(/** @type {string} */ (id), `snapshot of ${t.title}`)),
      (t.live_values ?? []).length ? h('table', { class: 'props' }, ...(t.live_values ?? []).map((v) =>
        h('tr', null, h('th', null, v.prop), h('td', { class: 'value' }, `${v.value}${v.unit ? ` ${v.unit}` : ''}`)))) : null,
      h('div', { class: 'actions' },
        t.viewpoints?.length ? h('button', { onclick: () => this.deps.viewpoints.restore(t.viewpoints[0]) }, 'Go to viewpoint') : null,
        h('button', { onclick: () => this.deps.viewpoints.release() }, 'Back to live')),
      h('h4', null, 'Comments'),
      this.#thread(t.guid),
      this.error,
      identity.may('comment.create') ? this.#form(t.guid) : null);
    typing?.(); // a re-render (someone commented meanwhile) keeps the field being typed in, and its caret
  }

  /** The topic's fields as they are, the quick status choice, and Edit for those who may change any of them.
   * @param {import('./store.js').Topic} t @param {{text: boolean, fields: boolean}} rights */
  #fields(t, rights) {
    const labels = t.labels ?? [];
    return h('div', { class: 'fields' },
      h('label', null, 'Status ', rights.fields
        ? h('select', { class: 'topic-status', 'aria-label': 'status', onchange: (/** @type {Event} */ e) =>
          this.#update({ status: /** @type {import('./edit.js').TopicChanges['status']} the options are STATUSES */ (
            /** @type {HTMLSelectElement} */ (e.target).value) }) },
        ...STATUSES.map((s) => new Option(statusText(s), s, false, s === t.status)))
        : h('span', { class: 'topic-status' }, statusText(t.status))),
      h('span', { class: 'topic-priority' }, `Priority: ${t.priority}`),
      t.assignee ? h('span', { class: 'topic-assignee' }, `Assigned to ${t.assignee}`) : null,
      t.due_date ? h('span', { class: 'topic-due' }, `Due ${t.due_date}`) : null,
      labels.length ? h('span', { class: 'topic-labels' }, ...labels.map((l) => h('span', { class: 'topic-label' }, l))) : null,
      rights.text || rights.fields ? h('button', { class: 'edit-topic', onclick: () => this.#startEdit(t) }, 'Edit') : null);
  }

  /** Open the edit form on the topic as the store holds it now. @param {import('./store.js').Topic} t */
  #startEdit(t) {
    const { store, identity } = this.deps;
    const topics = [...store.topics.values()];
    const people = [identity.user, ...topics.flatMap((x) => [x.author, x.assignee ?? '']),
      ...[...store.comments.values()].flatMap((m) => [...m.values()].map((c) => c.author))].filter(Boolean);
    const form = new TopicEditForm(t, editRights(identity, t), {
      types: topics.map((x) => x.topic_type ?? 'Issue'),
      people,
      onSave: () => this.#saveEdit(),
      onCancel: () => { this.edit = null; this.render(); },
      onRestart: () => { const now = store.topics.get(t.guid); if (now) this.#startEdit(now); },
    });
    this.edit = { guid: t.guid, form, ref: null, revision: null };
    this.error.hidden = true;
    this.saved.hidden = true;
    this.render();
    (form.rights.text ? form.title : form.status).focus();
  }

  /** Send what the form changed, at the revision it was opened on; the answer arrives as `saved` or `error`. */
  #saveEdit() {
    const edit = this.edit;
    if (!edit || edit.ref) return;
    const changes = edit.form.changes();
    if (typeof changes === 'string') return edit.form.fail(changes);
    if (!Object.keys(changes).length) {
      this.edit = null; // nothing changed: nothing to send
      return this.render();
    }
    const ref = `${EDIT_REF}${++this.edits}`;
    /** @type {import('../protocol.js').TopicUpdate} */
    const msg = { type: 'topic_update', guid: edit.guid, revision: edit.form.base.revision, ...changes, ref };
    edit.form.fail(null);
    if (!this.deps.session.send(msg)) return edit.form.fail('Not connected: the change was not sent.');
    edit.ref = ref;
    edit.form.busy(true);
  }

  /** @param {string} topic */
  #thread(topic) {
    const all = this.deps.store.thread(topic);
    /** @param {string|undefined} parent @returns {HTMLElement} */
    const level = (parent) => h('ul', { class: 'comments' }, ...all.filter((c) => (c.reply_to ?? undefined) === parent).map((c) =>
      h('li', { class: 'comment', dataset: { guid: c.guid } }, this.#comment(c), level(c.guid))));
    return all.length ? level(undefined) : h('p', { class: 'empty' }, 'No comments yet');
  }

  /** @param {import('./store.js').Comment} c */
  #comment(c) {
    if (c.deleted) return h('p', { class: 'removed' }, 'comment removed');
    const own = c.author === this.deps.identity.user;
    const may = (/** @type {string} */ a) => this.deps.identity.may(a);
    if (this.editing === c.guid) {
      if (!this.editBox) {
        this.editBox = /** @type {HTMLTextAreaElement} */ (h('textarea', { class: 'edit-text', 'aria-label': 'edit comment' }));
        this.editBox.value = c.text;
      }
      const box = this.editBox;
      return h('div', { class: 'editing' }, box,
        h('button', { onclick: () => this.#send({ type: 'comment_edit', guid: c.guid, revision: c.revision, text: box.value }) && this.#stopEditing() }, 'Save'),
        h('button', { onclick: () => this.#stopEditing() }, 'Cancel'));
    }
    return h('div', null,
      h('p', { class: 'who' }, h('strong', null, this.deps.names.person(c.author)), `${imported(c)} · ${when(c.created)}${c.modified ? ' (edited)' : ''}`),
      h('p', { class: 'text' }, c.text),
      h('div', { class: 'comment-actions' },
        may('comment.create') ? h('button', { class: 'reply', onclick: () => { this.replyTo = c; this.render(); } }, 'Reply') : null,
        own && may('comment.edit_own') ? h('button', { class: 'edit', onclick: () => { this.editing = c.guid; this.render(); } }, 'Edit') : null,
        own && may('comment.delete_own') ? h('button', { class: 'delete', onclick: () =>
          confirm('Delete this comment?') && this.#send({ type: 'comment_delete', guid: c.guid, revision: c.revision }) }, 'Delete') : null));
  }

  #stopEditing() {
    this.editing = null;
    this.editBox = null;
    this.render();
  }

  /** @param {string} topic */
  #form(topic) {
    let text = this.drafts.get(topic);
    if (!text) {
      text = /** @type {HTMLTextAreaElement} */ (h('textarea', { class: 'comment-text', 'aria-label': 'comment', placeholder: 'Write a comment' }));
      this.drafts.set(topic, text);
    }
    const send = () => {
      if (!text.value.trim()) return;
      /** @type {import('../protocol.js').CommentAdd} */
      const msg = { type: 'comment_add', topic, text: text.value };
      if (this.replyTo) msg.reply_to = this.replyTo.guid;
      if (this.#send(msg)) {
        this.replyTo = null;
        text.value = '';
      }
    };
    return h('div', { class: 'comment-form' },
      this.replyTo ? h('p', { class: 'replying' }, `Replying to ${this.deps.names.person(this.replyTo.author)} `,
        h('button', { onclick: () => { this.replyTo = null; this.render(); } }, '×')) : null,
      text, h('button', { class: 'send', onclick: send }, this.replyTo ? 'Send reply' : 'Comment'));
  }

  /** @param {import('./edit.js').TopicChanges} changes */
  #update(changes) {
    const t = this.guid ? this.deps.store.topics.get(this.guid) : null;
    if (t) this.#send({ type: 'topic_update', guid: t.guid, revision: t.revision, ...changes });
  }

  /** @param {import('../protocol.js').ClientMessage} msg */
  #send(msg) {
    this.error.hidden = true;
    const sent = this.deps.session.send(msg);
    if (!sent) this.showError('Not connected: the change was not sent.');
    return sent;
  }
}

/**
 * The field of `root` being typed in, if any: the returned call gives it back its focus and caret once
 * it has been put back in the page (moving an element out of the document drops its focus).
 * @param {HTMLElement} root @returns {(() => void)|null}
 */
function typingIn(root) {
  const field = document.activeElement;
  if (!(field instanceof HTMLElement) || !root.contains(field)) return null;
  const text = field instanceof HTMLTextAreaElement || (field instanceof HTMLInputElement && field.type === 'text') ? field : null;
  const [start, end] = text ? [text.selectionStart, text.selectionEnd] : [null, null];
  return () => {
    if (!root.contains(field)) return; // not kept: a new element took its place
    field.focus();
    if (text && start !== null && end !== null) text.setSelectionRange(start, end);
  };
}
