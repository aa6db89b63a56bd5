// Collaboration in one call: role-aware UI, topics (pins, list, panel, creation), presenter mode, the
// procedure panel and operator commands, wired to the session. main.js routes clicks and selection here.
import { Identity } from '../auth.js';
import { Attachments } from '../topics/attachments.js';
import { TopicCreator } from '../topics/create.js';
import { TopicList } from '../topics/list.js';
import { TopicPanel } from '../topics/panel.js';
import { PinLayer } from '../topics/pins.js';
import { TopicStore } from '../topics/store.js';
import { BcfTransfer } from '../topics/bcf.js';
import { Viewpoints } from '../topics/viewpoint.js';
import { $, h } from '../ui/dom.js';
import { CommandPanel } from './commands.js';
import { PresenterMode } from './presenter.js';
import { ProcedurePanel } from './procedure.js';

/**
 * @param {{viewer: import('../viewer.js').Viewer, session: import('../session.js').Session,
 *          section: import('../tools/section.js').SectionTool, measure: import('../tools/measure.js').MeasureTool,
 *          select: (id: string|null) => void,
 *          app: {twin: import('../twin_view.js').TwinView|null, batches: import('../batcher.js').ElementBatches|null,
 *                catalog: import('../catalog.js').Catalog|null},
 *          credentials: {session: string|null, token: string|null}, ready: Promise<any>,
 *          names: import('../ui/names.js').Names, visibility: import('../visibility.js').Visibility}} deps
 */
export function startCollaboration({ viewer, session, section, measure, select, app, credentials, ready, names, visibility }) {
  const view = $('#view');
  /** A floating panel over the view. @param {string} id */
  const float = (id) => {
    const el = h('div', { id, class: `float ${id}`, hidden: true });
    view.appendChild(el);
    return el;
  };
  const identity = new Identity(session);
  const store = new TopicStore(session);
  const pins = new PinLayer(viewer, store);
  const viewpoints = new Viewpoints(viewer, { twin: () => app.twin, state: session.state, section, measure, select, visibility,
    maxIds: () => session.welcome?.limits?.max_viewpoint_ids });
  const sessionCredentials = () => ({ session: session.welcome?.session || credentials.session, token: credentials.token });
  const attachments = new Attachments(sessionCredentials);
  const presenter = new PresenterMode(float('presenter-bar'), { viewer, session, identity, viewpoints, names, visibility });
  const topic = new TopicPanel(float('topic-panel'), { store, session, identity, viewpoints, attachments, names });
  const list = new TopicList($('#topics'), store, (guid) => topic.open(guid));
  const bcf = new BcfTransfer($('#topic-bcf'), { credentials: sessionCredentials, identity, session });
  topic.addEventListener('open', (e) => {
    const guid = /** @type {CustomEvent} */ (e).detail;
    list.highlight(guid);
    if (guid) presenter.breakAway(); // a follower who opens a topic wants to look at it, not at the presenter
  });
  const hint = float('pick-hint');
  const creator = new TopicCreator(float('topic-form'), {
    viewer, session, viewpoints, attachments, names,
    canUpload: () => Boolean(credentials.token),
    idOf: (hit) => app.batches?.idOf(hit) ?? null,
    hint: (text) => { hint.hidden = !text; hint.textContent = text ?? ''; },
  });
  const procedure = new ProcedurePanel(float('procedure-panel'), {
    session, identity, viewpoints, presenter, names,
  });
  const commands = new CommandPanel($('#commands'), {
    session, identity, names,
    commandsOf: async (id) => (await app.catalog?.detail(id))?.commands ?? [],
  });

  const hand = h('button', { id: 'btn-hand', dataset: { requires: 'hand.raise' }, onclick: () => presenter.toggleHand() }, 'Raise hand');
  $('#collab-tools').append(
    h('button', { id: 'btn-new-topic', dataset: { requires: 'topic.create' }, onclick: () => creator.start('topic') }, 'New topic'),
    h('button', { id: 'btn-markup', dataset: { requires: 'markup.create' }, title: 'A pin with a short note', onclick: () => creator.start('markup') }, 'Markup'),
    h('button', { id: 'btn-present', dataset: { requires: 'presenter.take' },
      onclick: () => (presenter.presenting ? presenter.release() : presenter.take()) }, 'Present'),
    hand);
  presenter.addEventListener('change', () => {
    hand.textContent = presenter.handRaised ? 'Lower hand' : 'Raise hand';
    hand.setAttribute('aria-pressed', String(presenter.handRaised));
    $('#btn-present').textContent = presenter.presenting ? 'Stop presenting' : 'Present';
  });
  // Loading fits the model into view, over where a late joiner should be: land again once it is shown.
  ready.then(() => (presenter.following ? presenter.rejoin() : procedure.showStep()));
  identity.addEventListener('change', () => { topic.render(); procedure.render(); commands.show(app.twin?.selected ?? null); });
  window.addEventListener('keydown', (e) => { if (e.key === 'Escape' && creator.picking) creator.start(null); });

  return {
    identity, store, pins, topic, creator, presenter, procedure, commands, viewpoints, bcf,
    /** A click on the view: pin a new topic, or open the topic whose pin is there. Whether it was ours. @param {number} x @param {number} y */
    click(x, y) {
      if (creator.click(x, y)) return true;
      const guid = pins.topicAt(x, y);
      if (guid) topic.open(guid);
      return Boolean(guid);
    },
    /** @param {string|null} id the element selected everywhere */
    selected: (id) => {
      commands.show(id);
      procedure.selected(id);
    },
  };
}
