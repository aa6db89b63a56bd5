// A guided procedure in the session: the current step, its instructions and watched live values, and
// "Done" for the trainee; the presenter moves the session on and sees each trainee's progress. Everyone
// flies to the step's viewpoint when the step changes, and a late joiner lands on the current step.
import { h, replace } from '../ui/dom.js';
import { onCollab } from './feed.js';

/**
 * @typedef {import('../protocol.js').StepInfo} Step
 * @typedef {Omit<import('../protocol.js').ProcedureRun, 'completions' | 'finished'>
 *   & {completions: import('../protocol.js').StepDone[], finished: string}} Run a run, its defaults put back;
 *   `finished` says how it ended ("" = running)
 */

export const PROCEDURE_EVENTS = ['procedure_started', 'procedure_step', 'step_completed', 'procedure_finished'];
// The user of a completion the live twin made (a value condition): it counts for everyone.
const EVERYONE = '*';

/** A run as the server sends it, with the fields it omits at their default put back.
 * @param {import('../protocol.js').ProcedureRun|null|undefined} raw @returns {Run|null} */
const runOf = (raw) => (raw ? { completions: [], finished: '', ...raw } : null);

export class ProcedurePanel {
  /**
   * @param {HTMLElement} root the floating panel
   * @param {{session: import('../session.js').Session, identity: import('../auth.js').Identity,
   *          viewpoints: import('../topics/viewpoint.js').Viewpoints, selected: () => (string|null),
   *          presenter: import('./presenter.js').PresenterMode, name: (id: string) => string}} deps
   */
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    /** @type {Run|null} */
    this.run = null;
    this.values = h('table', { class: 'props watch' });
    /** @type {Promise<{name: string, title: string}[]>|null} what a lead can start (GET /api/procedures), fetched once */
    this.library = null;
    const { session } = deps;
    session.addEventListener('snapshot', (e) => {
      this.run = runOf(/** @type {import('../session.js').SessionEvent<'snapshot'>} */ (e).detail.procedure);
      // Joining late: a presenter's current view is newer than the step's; without one, land on the step.
      if (!this.deps.presenter.following) this.showStep();
      this.render();
    });
    onCollab(session, PROCEDURE_EVENTS, (kind, ev) => this.#apply(kind, ev));
    session.state.addEventListener('delta', () => this.#renderValues());
  }

  /** @param {string} kind @param {import('../protocol.js').TwinEvent} ev */
  #apply(kind, ev) {
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
    this.render();
  }

  get step() {
    return this.run && !this.run.finished ? this.run.steps[this.run.step] ?? null : null;
  }

  /** The session moved to a step: everyone looks there, also a follower who had broken away. */
  #moveOn() {
    this.deps.presenter.rejoin({ fly: false });
    this.showStep();
  }

  /** Fly to the current step's viewpoint and highlight its elements. */
  showStep() {
    const step = this.step;
    if (!step?.viewpoint?.camera) return;
    this.deps.viewpoints.restore({ ...step.viewpoint, selected: step.highlight ?? step.viewpoint.selected ?? [] });
  }

  /** @param {string} user @param {number} step */
  #done(user, step) {
    return Boolean(this.run?.completions.some((c) => c.step === step && (c.user === user || c.user === EVERYONE)));
  }

  /** @param {Omit<import('../protocol.js').ProcedureControl, 'type'>} msg */
  #control(msg) {
    this.deps.session.send({ type: 'procedure_control', ...msg });
  }

  render() {
    const run = this.run;
    const lead = this.deps.identity.may('procedure.control');
    this.root.hidden = !run && !lead;
    if (!run || run.finished) {
      return replace(this.root, h('header', null, h('h3', null, 'Procedure')),
        run ? h('p', { class: 'finished' }, `${run.title}: ${run.finished}`) : null,
        lead ? this.#starter() : null);
    }
    const step = /** @type {Step} */ (this.step);
    const me = this.deps.identity.user;
    const mine = this.#done(me, run.step);
    const cond = step.complete_when;
    const byValue = cond && typeof cond === 'object' && 'value' in cond;
    replace(this.root,
      h('header', null, h('h3', null, run.title)),
      h('p', { class: 'step-no' }, `Step ${run.step + 1} of ${run.steps.length}`),
      h('h4', { class: 'step-title' }, step.title),
      step.instructions ? h('p', { class: 'instructions' }, step.instructions) : null,
      this.values,
      byValue
        ? h('p', { class: 'hint' }, this.#done(EVERYONE, run.step) ? 'Condition met ✓' : 'Completes when the live value is in range')
        : h('button', { class: 'step-done', disabled: mine, onclick: () => this.#complete(run.step, cond) },
          mine ? 'Done ✓' : cond && typeof cond === 'object' && 'select' in cond ? 'Done (selected)' : 'Acknowledge — step done'),
      lead ? h('div', { class: 'actions trainer' },
        h('button', { class: 'back', disabled: run.step === 0, onclick: () => this.#control({ action: 'back' }) }, '◀ Back'),
        h('button', { class: 'next', disabled: run.step >= run.steps.length - 1, onclick: () => this.#control({ action: 'next' }) }, 'Next ▶'),
        h('button', { class: 'stop', onclick: () => this.#control({ action: 'stop' }) }, 'Stop')) : null,
      lead ? this.#progress(run) : null);
    this.#renderValues();
  }

  /** @param {number} step @param {Step['complete_when']} cond */
  #complete(step, cond) {
    /** @type {import('../protocol.js').StepComplete} */
    const msg = { type: 'step_complete', step };
    const selected = this.deps.selected();
    if (cond && typeof cond === 'object' && 'select' in cond && selected) msg.element = selected;
    this.deps.session.send(msg);
  }

  /** The trainer's table: one row per trainee, a mark per step. @param {Run} run */
  #progress(run) {
    const users = [...new Set(run.completions.map((c) => c.user).filter((u) => u !== EVERYONE))].sort();
    return h('table', { class: 'progress-table' },
      h('tr', null, h('th', null, 'Trainee'), ...run.steps.map((_, i) => h('th', { class: i === run.step ? 'current' : '' }, String(i + 1)))),
      ...users.map((u) => h('tr', { dataset: { user: u } }, h('td', null, u),
        ...run.steps.map((_, i) => h('td', null, this.#done(u, i) ? '✓' : '·')))),
      users.length ? null : h('tr', null, h('td', { class: 'empty', colspan: run.steps.length + 1 }, 'No step done yet')));
  }

  #starter() {
    const pick = /** @type {HTMLSelectElement} */ (h('select', { class: 'procedure-name', 'aria-label': 'procedure' }));
    this.library ??= fetch('/api/procedures').then((r) => (r.ok ? r.json() : []), () => []);
    this.library.then((list) => pick.replaceChildren(...list.map((p) => new Option(p.title, p.name))));
    return h('div', { class: 'actions' }, pick,
      h('button', { class: 'start', onclick: () => pick.value && this.#control({ action: 'start', name: pick.value }) }, 'Start'));
  }

  /** The step's watched live values, kept current as deltas arrive. */
  #renderValues() {
    const watch = this.step?.watch ?? [];
    const props = this.deps.session.state.props;
    replace(this.values, ...watch.map((w) => {
      const st = props.get(w.element)?.get(w.prop);
      const value = st ? `${typeof st.v === 'number' ? st.v.toFixed(2) : String(st.v)}${st.u ? ` ${st.u}` : ''}` : '—';
      return h('tr', { dataset: { element: w.element, prop: w.prop } }, h('th', null, `${this.deps.name(w.element)} ${w.prop}`), h('td', { class: 'value' }, value));
    }));
  }
}
