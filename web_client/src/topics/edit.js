// Editing a topic's BCF fields in the topic panel: title and description (the author's own topic:
// `topic.edit_own`, anyone's: `topic.moderate`), status, priority, type, assignee, due date and labels
// (`topic.update`). The form only collects values and says what changed; the panel sends one
// `topic_update` with the changed fields at the revision the form was opened on, and shows the server's
// `saved` or `error` answer. Limits are those of viewer_server/topics.py; the server checks them anyway.
import { h, replace } from '../ui/dom.js';
import { statusText } from './list.js';

/** @typedef {Omit<import('../protocol.js').TopicUpdate, 'type' | 'guid' | 'revision' | 'ref'>} TopicChanges */

/** @type {NonNullable<TopicChanges['status']>[]} */
export const STATUSES = ['open', 'in_progress', 'resolved', 'closed'];
/** @type {NonNullable<TopicChanges['priority']>[]} */
export const PRIORITIES = ['low', 'normal', 'high', 'critical'];
// BCF topic types are free text (the server takes any of ≤ 64 characters; extensions.xml lists those in
// use). These are the usual ones; the types the session already uses and the topic's own are added.
export const TOPIC_TYPES = ['Issue', 'Request', 'Clash', 'Remark', 'Comment', 'Solution', 'Markup'];
const MAX_TITLE = 200;
const MAX_LABEL = 64;
const MAX_LABELS = 20;
// Several labels can be typed at once, comma separated.
const LABEL_SEPARATOR = /\s*,\s*/;
// The due date as an <input type=date> holds it: YYYY-MM-DD, else empty (the server also takes other ISO forms).
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/**
 * What this viewer may change on a topic: its text (title, description) and its other fields.
 * @param {import('../auth.js').Identity} identity @param {import('./store.js').Topic} topic
 */
export function editRights(identity, topic) {
  return {
    text: identity.may(topic.author === identity.user ? 'topic.edit_own' : 'topic.moderate'),
    fields: identity.may('topic.update'),
  };
}

/** A list of labels as removable chips, and a box to add more (Enter, comma or the Add button). */
class LabelEditor {
  /** @param {string[]} labels @param {boolean} enabled */
  constructor(labels, enabled) {
    this.values = [...labels];
    this.enabled = enabled;
    this.chips = h('span', { class: 'label-chips' });
    this.input = /** @type {HTMLInputElement} */ (h('input', {
      name: 'labels', 'aria-label': 'add label', placeholder: 'Add labels (Enter)', maxlength: MAX_LABEL, disabled: !enabled,
      onkeydown: (/** @type {KeyboardEvent} */ e) => {
        if (e.key === 'Enter' || e.key === ',') {
          e.preventDefault();
          this.add();
        }
      },
    }));
    this.button = /** @type {HTMLButtonElement} */ (h('button', { type: 'button', class: 'add-label', disabled: !enabled, onclick: () => this.add() }, 'Add'));
    this.el = h('div', { class: 'label-editor' }, this.chips, h('div', { class: 'label-add' }, this.input, this.button));
    this.draw();
  }

  /** The labels typed in the box, split at commas, without blanks and duplicates. */
  #typed() {
    return this.input.value.split(LABEL_SEPARATOR).map((l) => l.trim()).filter((l) => l && !this.values.includes(l));
  }

  add() {
    this.values.push(...new Set(this.#typed()));
    this.input.value = '';
    this.draw();
    this.input.focus();
  }

  /** @param {string} label */
  remove(label) {
    this.values = this.values.filter((l) => l !== label);
    this.draw();
  }

  draw() {
    replace(this.chips, ...this.values.map((l) => h('span', { class: 'topic-label', dataset: { label: l } }, l,
      this.enabled ? h('button', { type: 'button', class: 'remove-label', 'aria-label': `remove label ${l}`, onclick: () => this.remove(l) }, '×') : null)));
    const full = this.values.length >= MAX_LABELS;
    this.input.disabled = this.button.disabled = !this.enabled || full;
    this.input.placeholder = full ? `At most ${MAX_LABELS} labels` : 'Add labels (Enter)';
  }

  /** The labels, with what is still typed in the box. @returns {string[]} */
  value() {
    return [...this.values, ...new Set(this.#typed())];
  }
}

export class TopicEditForm {
  /**
   * @param {import('./store.js').Topic} topic the topic as it is when editing starts (its revision is sent)
   * @param {{text: boolean, fields: boolean}} rights from editRights
   * @param {{types: string[], people: string[], onSave: () => void, onCancel: () => void, onRestart: () => void}} opts
   */
  constructor(topic, rights, opts) {
    this.base = topic;
    this.rights = rights;
    const text = { disabled: !rights.text };
    const other = { disabled: !rights.fields };
    this.title = /** @type {HTMLInputElement} */ (h('input', { name: 'title', 'aria-label': 'title', maxlength: MAX_TITLE, required: true, ...text }));
    this.title.value = topic.title;
    this.description = /** @type {HTMLTextAreaElement} */ (h('textarea', { name: 'description', 'aria-label': 'description', rows: 3, ...text }));
    this.description.value = topic.description ?? '';
    const choose = (/** @type {string} */ name, /** @type {string[]} */ values, /** @type {string} */ current,
      /** @type {(v: string) => string} */ label = (v) => v) => /** @type {HTMLSelectElement} */ (
      h('select', { name, 'aria-label': name.replace('_', ' '), ...other },
        ...[...new Set([...values, current])].map((v) => new Option(label(v), v, false, v === current))));
    this.status = choose('status', STATUSES, topic.status, statusText);
    this.priority = choose('priority', PRIORITIES, topic.priority);
    this.type = choose('topic_type', [...new Set([...TOPIC_TYPES, ...opts.types])], topic.topic_type ?? 'Issue');
    this.assignee = /** @type {HTMLInputElement} */ (h('input', { name: 'assignee', 'aria-label': 'assignee', placeholder: 'nobody',
      maxlength: MAX_TITLE, list: 'topic-people', ...other }));
    this.assignee.value = topic.assignee ?? '';
    const people = h('datalist', { id: 'topic-people' }, ...[...new Set(opts.people)].sort().map((p) => new Option(p, p)));
    this.due = /** @type {HTMLInputElement} */ (h('input', { type: 'date', name: 'due_date', 'aria-label': 'due date', ...other }));
    this.due.value = DATE.test(topic.due_date ?? '') ? /** @type {string} */ (topic.due_date) : '';
    this.initialDue = this.due.value;
    this.labels = new LabelEditor(topic.labels ?? [], rights.fields);
    this.note = h('p', { class: 'stale-note', role: 'status', hidden: true });
    this.error = h('p', { class: 'error edit-error', role: 'alert', hidden: true });
    this.saveButton = /** @type {HTMLButtonElement} */ (h('button', { type: 'submit', class: 'save-topic' }, 'Save'));
    this.cancelButton = /** @type {HTMLButtonElement} */ (h('button', { type: 'button', class: 'cancel-edit', onclick: opts.onCancel }, 'Cancel'));
    this.restart = opts.onRestart;
    const row = (/** @type {string} */ caption, /** @type {HTMLElement} */ control) => h('label', null, h('span', null, caption), control);
    this.el = h('form', { class: 'topic-edit', 'aria-label': 'edit topic', onsubmit: (/** @type {Event} */ e) => { e.preventDefault(); opts.onSave(); } },
      row('Title', this.title),
      row('Description', this.description),
      rights.text ? null : h('p', { class: 'meta' }, 'Only the author or an admin can change the title and description.'),
      h('div', { class: 'edit-grid' },
        row('Status', this.status), row('Priority', this.priority), row('Type', this.type), row('Assigned to', this.assignee),
        h('div', { class: 'due' }, h('span', null, 'Due'), h('span', null, this.due,
          h('button', { type: 'button', class: 'clear-due', 'aria-label': 'no due date', disabled: !rights.fields,
            onclick: () => { this.due.value = ''; } }, '×')))),
      people,
      h('div', { class: 'labels-row' }, h('span', null, 'Labels'), this.labels.el),
      this.note,
      this.error,
      h('div', { class: 'actions' }, this.saveButton, this.cancelButton));
  }

  /**
   * The fields that differ from the topic as it was when editing started, as `topic_update` spells them
   * ("" clears assignee and due date); a string says why the form cannot be sent.
   * @returns {TopicChanges|string}
   */
  changes() {
    const b = this.base;
    /** @type {TopicChanges} */
    const c = {};
    if (this.rights.text) {
      if (this.title.value !== b.title) c.title = this.title.value;
      if (this.description.value !== (b.description ?? '')) c.description = this.description.value;
      if (!this.title.value.trim()) return 'The title must not be empty.';
    }
    if (this.rights.fields) {
      // The selects offer STATUSES and PRIORITIES (and the topic's own value).
      if (this.status.value !== b.status) c.status = /** @type {TopicChanges['status']} */ (this.status.value);
      if (this.priority.value !== b.priority) c.priority = /** @type {TopicChanges['priority']} */ (this.priority.value);
      if (this.type.value !== (b.topic_type ?? 'Issue')) c.topic_type = this.type.value;
      const assignee = this.assignee.value.trim();
      if (assignee !== (b.assignee ?? '')) c.assignee = assignee;
      if (this.due.value !== this.initialDue) c.due_date = this.due.value;
      const labels = this.labels.value();
      if (labels.length > MAX_LABELS) return `At most ${MAX_LABELS} labels.`;
      if (JSON.stringify(labels) !== JSON.stringify(b.labels ?? [])) c.labels = labels;
    }
    return c;
  }

  /** Show why the form was not sent or was refused (the server's code and message); null hides it. @param {string|null} text */
  fail(text) {
    this.error.textContent = text ?? '';
    this.error.hidden = !text;
  }

  /** While a change is on its way: nothing can be sent twice. @param {boolean} on */
  busy(on) {
    this.saveButton.disabled = this.cancelButton.disabled = on;
    this.saveButton.textContent = on ? 'Saving…' : 'Save';
  }

  get pending() {
    return this.saveButton.disabled;
  }

  /** Say so when someone else changed the topic since editing started. @param {import('./store.js').Topic} now */
  compare(now) {
    const stale = now.revision !== this.base.revision && !this.pending;
    this.note.hidden = !stale;
    if (stale) {
      replace(this.note, `${now.modified_by ?? 'Someone'} changed this topic meanwhile: saving would be refused. `,
        h('button', { type: 'button', class: 'restart-edit', onclick: this.restart }, 'Edit the new version'));
    }
  }
}
