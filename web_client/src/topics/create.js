// Making a topic: pick a point on an element (the hit point and face normal become the pin), fill in the
// fields, and send it with the viewpoint of the moment, a snapshot of the canvas and the element's live
// values. A quick markup is the same with only a short note.
import * as THREE from 'three';
import { h, replace } from '../ui/dom.js';
import { snapshotPng } from './attachments.js';
import { arr } from './viewpoint.js';

const PRIORITIES = ['low', 'normal', 'high', 'critical'];
// Labels are typed as one comma-separated line.
const LABEL_SEPARATOR = /\s*,\s*/;
const NOT_SENT = 'Not connected: nothing was sent.';

/**
 * The pin of a pick: element, hit point and the face's normal, in model coordinates.
 * @param {THREE.Intersection} hit @param {string} element @param {THREE.Object3D} world
 */
export function pinOf(hit, element, world) {
  const toModel = world.matrixWorld.clone().invert();
  const m = hit.object.matrixWorld.clone();
  const obj = /** @type {any} */ (hit.object);
  if (hit.batchId !== undefined && obj.getMatrixAt) m.multiply(obj.getMatrixAt(hit.batchId, new THREE.Matrix4()));
  const normal = (hit.face?.normal.clone() ?? new THREE.Vector3(0, 1, 0)).applyMatrix3(new THREE.Matrix3().getNormalMatrix(m))
    .transformDirection(toModel);
  return { element, point: arr(hit.point.clone().applyMatrix4(toModel)), normal: arr(normal) };
}

export class TopicCreator {
  /**
   * @param {HTMLElement} root the floating panel that holds the form
   * @param {{viewer: import('../viewer.js').Viewer, session: import('../session.js').Session,
   *          viewpoints: import('./viewpoint.js').Viewpoints,
   *          attachments: import('./attachments.js').Attachments, canUpload: () => boolean,
   *          idOf: (hit: THREE.Intersection) => string|null, hint: (text: string|null) => void,
   *          names: import('../ui/names.js').Names}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    /** @type {null|'topic'|'markup'} what the next pick pins */
    this.picking = null;
  }

  /** Start (or cancel) picking the point a new topic or markup is pinned to. @param {'topic'|'markup'|null} kind */
  start(kind) {
    this.picking = kind;
    this.root.hidden = true;
    this.deps.hint(kind ? `Click a point on an element to pin the ${kind === 'markup' ? 'markup' : 'topic'} (Esc cancels)` : null);
  }

  /**
   * A click while picking: pin there and show the form. Returns whether the click was ours.
   * @param {number} x @param {number} y
   */
  click(x, y) {
    if (!this.picking) return false;
    const hit = this.deps.viewer.pickAt(x, y);
    const id = hit ? this.deps.idOf(hit) : null;
    if (!hit || !id) return true; // missed the model: keep picking
    const kind = this.picking;
    this.picking = null;
    this.deps.hint(null);
    this.#form(kind, pinOf(hit, id, this.deps.viewer.world));
    return true;
  }

  /** Show the new-topic form pinned there (the element menu's "Add topic here"). @param {ReturnType<typeof pinOf>} pin */
  startAt(pin) {
    this.start(null);
    this.#form('topic', pin);
  }

  /** @param {'topic'|'markup'} kind @param {ReturnType<typeof pinOf>} pin */
  #form(kind, pin) {
    const field = (/** @type {string} */ name, /** @type {Record<string, any>} */ attrs = {}) =>
      /** @type {HTMLInputElement} */ (h('input', { name, 'aria-label': name, ...attrs }));
    const title = field('title', { placeholder: kind === 'markup' ? 'Short note' : 'Title', required: true, maxlength: 200 });
    const description = /** @type {HTMLTextAreaElement} */ (h('textarea', { name: 'description', 'aria-label': 'description', placeholder: 'Description' }));
    const priority = /** @type {HTMLSelectElement} */ (h('select', { name: 'priority', 'aria-label': 'priority' },
      ...PRIORITIES.map((p) => new Option(p, p, false, p === 'normal'))));
    const labels = field('labels', { placeholder: 'labels, comma separated' });
    const assignee = field('assignee', { placeholder: 'Assignee' });
    const due = field('due_date', { type: 'date' });
    const status = h('p', { class: 'error', role: 'alert', hidden: true });
    const submit = async () => {
      if (!title.value.trim()) return title.focus();
      status.hidden = true;
      try {
        if (kind === 'markup') {
          if (!this.deps.session.send({ type: 'markup', element: pin.element, point: pin.point, note: title.value })) throw new Error(NOT_SENT);
        } else {
          await this.send({
            title: title.value, description: description.value,
            priority: /** @type {import('../protocol.js').TopicDraft['priority']} the select offers only these */ (priority.value),
            labels: labels.value.split(LABEL_SEPARATOR).filter(Boolean),
            ...(assignee.value.trim() ? { assignee: assignee.value.trim() } : {}),
            ...(due.value ? { due_date: due.value } : {}),
          }, pin);
        }
        this.root.hidden = true;
      } catch (e) {
        status.textContent = /** @type {Error} */ (e).message;
        status.hidden = false;
      }
    };
    replace(this.root,
      h('header', null, h('h3', null, kind === 'markup' ? 'Quick markup' : 'New topic'),
        h('button', { class: 'close', 'aria-label': 'cancel', onclick: () => { this.root.hidden = true; } }, '×')),
      h('p', { class: 'meta pinned-on' }, 'Pinned on ', this.deps.names.ref(pin.element)),
      h('div', { class: 'topic-form' }, title, ...(kind === 'markup' ? [] : [description, priority, labels, assignee, due])),
      status,
      h('div', { class: 'actions' }, h('button', { class: 'create', onclick: submit }, kind === 'markup' ? 'Add markup' : 'Create topic')));
    this.root.hidden = false;
    title.focus();
  }

  /**
   * Send a new topic with the current viewpoint, a snapshot (when the session takes attachments) and
   * the pinned element's live values.
   * @param {Omit<import('../protocol.js').TopicDraft, 'pin' | 'viewpoints' | 'attachments'>} fields
   * @param {import('../protocol.js').Pin} pin
   */
  async send(fields, pin) {
    const { session, viewpoints, attachments } = this.deps;
    const viewpoint = viewpoints.capture();
    // The element the topic is about is selected in its view, so that another tool (BCF) highlights it too.
    viewpoint.selected = [...new Set([pin.element, ...(viewpoint.selected ?? [])])];
    /** @type {string[]} */
    const files = [];
    if (this.deps.canUpload()) {
      // The topic matters more than its picture: a failed upload leaves the topic without a snapshot.
      try {
        files.push((viewpoint.snapshot = await attachments.upload(await snapshotPng(this.deps.viewer))));
      } catch (e) {
        console.warn('snapshot not attached:', /** @type {Error} */ (e).message);
      }
    }
    // The server adds the author, the times and the pinned element's live values of this moment.
    /** @type {import('../protocol.js').TopicCreate} */
    const msg = { type: 'topic_create', ref: viewpoint.guid, topic: { ...fields, pin, viewpoints: [viewpoint], attachments: files } };
    if (!session.send(msg)) throw new Error(NOT_SENT);
  }
}
