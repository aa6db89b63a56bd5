// A guided procedure in the session: the current step, its instructions and watched live values, and how
// it completes — "Acknowledge" for the trainee; a select step by selecting the right element yourself (the
// selection is reported, the server checks it); a value step by itself once the live value is within its
// target range, shown with the value. The presenter moves the session on and sees every trainee present
// with their progress; a move another presenter beat is said in the panel, by name, over the current step.
// Everyone flies to the step's viewpoint when the step changes (its elements tinted, not selected), and a late
// joiner lands on the current step.
import { h, replace } from '../ui/dom.js';
import { formatValue } from '../ui/properties.js';
import { can } from '../auth.js';
import { onCollab, onCollabError } from './feed.js';

/**
 * @typedef {import('../protocol.js').StepInfo} Step
 * @typedef {Omit<import('../protocol.js').ProcedureRun, 'completions' | 'finished'>
 *   & {completions: import('../protocol.js').StepDone[], finished: string}} Run a run, its defaults put back;
 *   `finished` says how it ended ("" = running)
 * @typedef {{run: string, step: number, finished: string}} Position where the session was: run id ("" = none)
 * @typedef {{action: string, from: Position, seen: boolean}} Beaten a move of ours the server refused because
 *   another presenter moved first; `seen` once the panel shows where that presenter moved it
 */

export const PROCEDURE_EVENTS = ['procedure_started', 'procedure_step', 'step_completed', 'procedure_finished'];
// The events that move the session (a refused move is said until the one after those it lost to).
const MOVES = new Set(['procedure_started', 'procedure_step', 'procedure_finished']);
// A trainer's words for the moves the panel sends.
/** @type {Record<string, string>} */
const ACTION_LABEL = { start: 'Start', next: 'Next', back: 'Back', goto: 'Go to step', stop: 'Stop' };
// The user of a completion the live twin made (a value condition): it counts for everyone.
const EVERYONE = '*';
// The tint of a step's highlighted elements: a look, not a selection (a select step is the trainee's to do).
const HIGHLIGHT = '#ffb000';

/** A run as the server sends it, with the fields it omits at their default put back.
 * @param {import('../protocol.js').ProcedureRun|null|undefined} raw @returns {Run|null} */
const runOf = (raw) => (raw ? { completions: [], finished: '', ...raw } : null);

export class ProcedurePanel {
  /**
   * @param {HTMLElement} root the floating panel
   * @param {{session: import('../session.js').Session, identity: import('../auth.js').Identity,
   *          viewpoints: import('../topics/viewpoint.js').Viewpoints,
   *          presenter: import('./presenter.js').PresenterMode, names: import('../ui/names.js').Names}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    /** @type {Run|null} */
    this.run = null;
    this.values = h('table', { class: 'props watch' });
    /** @type {Promise<{name: string, title: string}[]>|null} what a lead can start (GET /api/procedures), fetched once */
    this.library = null;
    /** Why the server refused our last selection for a select step ("" = none). */
    this.selectNote = '';
    /** @type {{action: string, from: Position}|null} our last move, as sent */
    this.sent = null;
    /** @type {Beaten|null} */
    this.beaten = null;
    /** Who made the latest move we know of ("" = unknown: joined since). */
    this.mover = '';
    const { session } = deps;
    session.addEventListener('snapshot', (e) => {
      this.run = runOf(/** @type {import('../session.js').SessionEvent<'snapshot'>} */ (e).detail.procedure);
      // Joining late: a presenter's current view is newer than the step's; without one, land on the step.
      if (!this.deps.presenter.following) this.showStep();
      this.render();
    });
    onCollab(session, PROCEDURE_EVENTS, (kind, ev) => this.#apply(kind, ev));
    session.state.addEventListener('delta', (e) => {
      // Someone came or went: the trainer's table lists whoever is here.
      if (Object.keys(/** @type {import('../state.js').DeltaEvent} */ (e).detail.delta.presence ?? {}).length && this.#lead) this.render();
      else this.#renderValues();
    });
    onCollabError(session, ['step_complete'], (err) => {
      if (err.code !== 'wrong_element') return false;
      this.render();
      return true; // the panel says it, with names (#selectStep)
    });
    onCollabError(session, ['procedure_control'], (err) => {
      if ((err.code !== 'step_moved' && err.code !== 'procedure_active') || !this.sent) return false;
      this.beaten = { ...this.sent, seen: false };
      this.#catchUp();
      this.render();
      return true; // the panel says it, over the step the session is on now (#beatenNote)
    });
  }

  /** @param {string} kind @param {import('../protocol.js').TwinEvent} ev */
  #apply(kind, ev) {
    if (MOVES.has(kind)) {
      this.mover = ev.user ?? '';
      if (this.beaten?.seen) this.beaten = null; // a newer move than the one that beat ours: old news
    }
    if (kind === 'procedure_started') {
      this.run = runOf(ev.run);
      this.#moveOn();
    } else if (!this.run || this.run.run !== ev.id) {
      return; // an event of a run we do not hold (a stale one); the next snapshot brings the truth
    } else if (kind === 'procedure_step' && ev.step != null) {
      this.run = { ...this.run, step: ev.step };
      this.#moveOn();
    } else if (kind === 'step_completed' && ev.step != null) {
      this.run = { ...this.run, completions: [...this.run.completions, { step: ev.step, user: ev.user ?? '', ts: ev.ts }] };
    } else if (kind === 'procedure_finished') {
      this.run = { ...this.run, finished: ev.message || 'completed' };
    }
    this.#catchUp();
    this.render();
  }

  /** @returns {Position} */
  get #position() {
    return { run: this.run?.run ?? '', step: this.run?.step ?? 0, finished: this.run?.finished ?? '' };
  }

  /** A refused move is explained once the panel shows the move that beat it (its event may come before or after). */
  #catchUp() {
    const b = this.beaten;
    if (!b || b.seen) return;
    const now = this.#position;
    b.seen = now.run !== b.from.run || now.step !== b.from.step || now.finished !== b.from.finished;
  }

  /** Our refused move in a trainer's words: who moved the session first, and where it is now. */
  #beatenNote() {
    const b = this.beaten;
    if (!b) return null;
    const who = this.mover ? this.deps.names.person(this.mover) : 'Someone else';
    const yours = `your “${ACTION_LABEL[b.action] ?? b.action}” was not applied`;
    const run = this.run;
    let text;
    if (!b.seen || !run) text = `Someone else moved the procedure first; ${yours}. Showing the current step…`;
    else if (run.finished) text = `${who} ended “${run.title}” first (${run.finished}); ${yours}.`;
    else if (b.action === 'start') text = `${who} started “${run.title}” first; ${yours}.`;
    else text = `${who} moved the procedure first, to step ${run.step + 1} — ${run.steps[run.step]?.title ?? ''}; ${yours}.`;
    return h('p', { class: 'beaten', role: 'status' }, text);
  }

  get step() {
    return this.run && !this.run.finished ? this.run.steps[this.run.step] ?? null : null;
  }

  /** The session moved to a step: everyone looks there, also a follower who had broken away. */
  #moveOn() {
    this.deps.presenter.rejoin({ fly: false });
    this.showStep();
  }

  /** Fly to the current step's viewpoint and tint its highlighted elements (selecting them is the trainee's part). */
  showStep() {
    const step = this.step;
    if (!step?.viewpoint?.camera) return;
    const ids = step.highlight ?? step.viewpoint.selected ?? [];
    this.deps.viewpoints.restore({ ...step.viewpoint, selected: [], colored: ids.length ? [{ color: HIGHLIGHT, ids }] : [] });
  }

  /**
   * The trainee selected an element: on a select step not yet done, that is the answer, reported to the
   * server, which completes the step only for the right element.
   * @param {string|null} id
   */
  selected(id) {
    const run = this.run;
    const target = selectTarget(this.step);
    if (!run || !id || target === null || this.#done(this.deps.identity.user, run.step)) return;
    this.selectNote = id === target ? '' : `That is ${this.deps.names.element(id)}, not ${this.deps.names.element(target)}: try again.`;
    this.deps.session.send({ type: 'step_complete', step: run.step, element: id });
    this.render();
  }

  get #lead() {
    return this.deps.identity.may('procedure.control');
  }

  /** @param {string} user @param {number} step */
  #done(user, step) {
    return Boolean(this.run?.completions.some((c) => c.step === step && (c.user === user || c.user === EVERYONE)));
  }

  /**
   * A move carries the step it was made at: if another presenter moved the session first, the server refuses it
   * (`step_moved`; `procedure_active` for a start) instead of moving twice, and the panel says so (#beatenNote).
   * @param {Omit<import('../protocol.js').ProcedureControl, 'type'>} msg
   * @param {Run|null} shown the run as the panel showed it when the button was drawn (it may have moved since)
   */
  #control(msg, shown) {
    const from = { run: shown?.run ?? '', step: shown?.step ?? 0, finished: shown?.finished ?? '' };
    this.sent = { action: msg.action, from };
    this.beaten = null;
    this.deps.session.send({ type: 'procedure_control', ...msg });
  }

  render() {
    const run = this.run;
    const lead = this.#lead;
    this.root.hidden = !run && !lead;
    if (!run || run.finished) {
      return replace(this.root, h('header', null, h('h3', null, 'Procedure')), this.#beatenNote(),
        run ? h('p', { class: 'finished' }, `${run.title}: ${run.finished}`) : null,
        lead ? this.#starter(run) : null);
    }
    const step = /** @type {Step} */ (this.step);
    const me = this.deps.identity.user;
    const mine = this.#done(me, run.step);
    const cond = step.complete_when;
    const range = cond && typeof cond === 'object' ? cond.value ?? null : null;
    const target = selectTarget(step);
    replace(this.root,
      h('header', null, h('h3', null, run.title)),
      this.#beatenNote(),
      h('p', { class: 'step-no' }, `Step ${run.step + 1} of ${run.steps.length}`),
      h('h4', { class: 'step-title' }, step.title),
      step.instructions ? h('p', { class: 'instructions' }, step.instructions) : null,
      this.values,
      range ? this.#valueStep(range, run.step)
        : target !== null ? this.#selectStep(target, mine)
          : h('button', { class: 'step-done', disabled: mine, onclick: () => this.#acknowledge(run.step) },
            mine ? 'Done ✓' : 'Acknowledge — step done'),
      lead ? h('div', { class: 'actions trainer' },
        h('button', { class: 'back', disabled: run.step === 0, onclick: () => this.#control({ action: 'back', from_step: run.step }, run) }, '◀ Back'),
        h('button', { class: 'next', disabled: run.step >= run.steps.length - 1, onclick: () => this.#control({ action: 'next', from_step: run.step }, run) }, 'Next ▶'),
        h('button', { class: 'stop', onclick: () => this.#control({ action: 'stop', from_step: run.step }, run) }, 'Stop')) : null,
      lead ? this.#progress(run) : null);
    this.#renderValues();
  }

  /** @param {number} step */
  #acknowledge(step) {
    this.deps.session.send({ type: 'step_complete', step });
  }

  /** A select step: what to select, by name, and whether it is done. @param {string} target @param {boolean} mine */
  #selectStep(target, mine) {
    if (mine) return h('p', { class: 'step-state done' }, `Done ✓ — you selected ${this.deps.names.element(target)}`);
    return h('div', { class: 'step-state step-select' },
      h('p', { class: 'hint' }, `Select ${this.deps.names.describe(target)} in the view or the tree.`),
      this.selectNote ? h('p', { class: 'why' }, this.selectNote) : null);
  }

  /**
   * A value step: its target range and the live value, kept current (#renderValues).
   * @param {import('../protocol_types').ValueRange} range @param {number} step
   */
  #valueStep(range, step) {
    const met = this.#done(EVERYONE, step);
    return h('div', { class: `step-state step-value${met ? ' done' : ''}`, dataset: { element: range.element, prop: range.prop } },
      h('p', { class: 'target' }, `Target: ${this.deps.names.element(range.element)} ${range.prop} ${rangeText(range, this.#unit(range))}`),
      h('p', { class: 'now' }, 'Now: ', h('span', { class: 'value live-value' }, this.#valueText(range.element, range.prop))),
      h('p', { class: 'hint' }, met ? 'Condition met ✓' : 'Completes by itself when the live value is in range'));
  }

  /** @param {{element: string, prop: string}} key */
  #unit({ element, prop }) {
    return this.deps.session.state.props.get(element)?.get(prop)?.u ?? '';
  }

  /** A live value with its unit ("—" before one arrived). @param {string} element @param {string} prop */
  #valueText(element, prop) {
    const st = this.deps.session.state.props.get(element)?.get(prop);
    return st ? `${formatValue(st.v)}${st.u ? ` ${st.u}` : ''}` : '—';
  }

  /**
   * The trainer's table: every trainee here (whoever may not lead the procedure, a late joiner and one who
   * has done nothing yet included) and anyone who completed a step, by name, with the step they are on and a
   * mark per step.
   * @param {Run} run
   */
  #progress(run) {
    /** @type {Map<string, string>} user -> role, for everyone present (ourselves included) */
    const here = new Map();
    const w = this.deps.session.welcome;
    if (w?.user) here.set(w.user, this.deps.identity.role ?? 'viewer');
    for (const p of this.deps.session.state.presence.values()) if (p.user) here.set(p.user, p.role ?? 'viewer');
    const trainees = new Set([...here].filter(([, role]) => !can(role, 'procedure.control')).map(([user]) => user));
    for (const c of run.completions) if (c.user !== EVERYONE) trainees.add(c.user);
    const rows = [...trainees].map((user) => ({ user, name: this.deps.names.person(user) }))
      .sort((a, b) => a.name.localeCompare(b.name));
    return h('table', { class: 'progress-table' },
      h('tr', null, h('th', null, 'Trainee'), h('th', null, 'On'),
        ...run.steps.map((_, i) => h('th', { class: i === run.step ? 'current' : '' }, String(i + 1)))),
      ...rows.map(({ user, name }) => {
        const at = this.#stepOf(user, run);
        return h('tr', { dataset: { user, step: String(at + 1) } }, h('td', null, name),
          h('td', { class: 'on' }, here.has(user) ? (at < run.steps.length ? `step ${at + 1}` : 'all done') : 'left'),
          ...run.steps.map((_, i) => h('td', null, this.#done(user, i) ? '✓' : '·')));
      }),
      rows.length ? null : h('tr', null, h('td', { class: 'empty', colspan: run.steps.length + 2 }, 'No trainee here yet')));
  }

  /**
   * The step a trainee is on: the first one up to the session's current step that they have not done (a late
   * joiner who missed step 1 is on step 1), else the one after the session's current step.
   * @param {string} user @param {Run} run
   */
  #stepOf(user, run) {
    for (let i = 0; i <= run.step; i++) if (!this.#done(user, i)) return i;
    return run.step + 1;
  }

  /** @param {Run|null} shown the run the panel shows (none, or one that ended) */
  #starter(shown) {
    const pick = /** @type {HTMLSelectElement} */ (h('select', { class: 'procedure-name', 'aria-label': 'procedure' }));
    this.library ??= fetch('/api/procedures').then((r) => (r.ok ? r.json() : []), () => []);
    this.library.then((list) => pick.replaceChildren(...list.map((p) => new Option(p.title, p.name))));
    return h('div', { class: 'actions' }, pick,
      h('button', { class: 'start', onclick: () => pick.value && this.#control({ action: 'start', name: pick.value }, shown) }, 'Start'));
  }

  /** The step's watched live values, kept current as deltas arrive. */
  #renderValues() {
    const watch = this.step?.watch ?? [];
    replace(this.values, ...watch.map((w) => {
      return h('tr', { dataset: { element: w.element, prop: w.prop } }, h('th', null, `${this.deps.names.element(w.element)} ${w.prop}`),
        h('td', { class: 'value' }, this.#valueText(w.element, w.prop)));
    }));
    const now = this.root.querySelector('.step-state.step-value .live-value');
    const range = this.step?.complete_when;
    if (now && range && typeof range === 'object' && range.value) now.textContent = this.#valueText(range.value.element, range.value.prop);
  }
}

/** The element a select step wants selected, or null for another kind of step. @param {Step|null} step */
function selectTarget(step) {
  const cond = step?.complete_when;
  return cond && typeof cond === 'object' && cond.select ? cond.select : null;
}

/**
 * A value condition's range in words: "between 3 and 5 bar", "at least 3 bar", "at most 5 bar".
 * @param {import('../protocol_types').ValueRange} range @param {string} unit
 */
export function rangeText({ min = null, max = null }, unit) {
  const u = unit ? ` ${unit}` : '';
  if (min !== null && max !== null) return `between ${formatValue(min)} and ${formatValue(max)}${u}`;
  if (min !== null) return `at least ${formatValue(min)}${u}`;
  return max !== null ? `at most ${formatValue(max)}${u}` : 'any value';
}
