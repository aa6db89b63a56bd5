// The alarm list: every listed alarm with its state, time, the element's name and the live value with its unit
// (age, staleness and quality from freshness.js); Acknowledge, Shelve, Unshelve and out of service for the
// roles that may (the server decides, docs/PROTOCOL.md §13); clicking or Enter/Space on an alarm flies to its
// element, the arrow keys move between alarms.
import { uuid } from '../topics/viewpoint.js';
import { h, replace } from '../ui/dom.js';
import { markLive } from '../ui/freshness.js';
import { STATE_WORDS, byUrgency, needsAck, timeText, valueText } from './words.js';

/** @typedef {import('../protocol.js').Alarm} Alarm */

// The shelving times offered (minutes): a short look, a job, a shift; the server allows up to a day.
export const SHELVE_MINUTES = [15, 30, 60, 120, 480, 1440];
// Longest reason typed (the server's MAX_ALARM_REASON).
const MAX_REASON = 500;

export class AlarmPanel {
  /**
   * @param {HTMLElement} root the list (`ul`) @param {HTMLElement} counter the badge in the heading
   * @param {{session: import('../session.js').Session, state: import('../state.js').TwinState,
   *          names: import('../ui/names.js').Names, identity: import('../auth.js').Identity,
   *          onGo: (element: string) => void, signal: AbortSignal}} deps
   */
  constructor(root, counter, deps) {
    this.root = root;
    this.counter = counter;
    this.deps = deps;
    /** @type {Map<string, string>} request ref -> the alarm it is about, until the server answers */
    this.pending = new Map();
    /** @type {Map<string, string>} alarm id -> the server's refusal, shown in its item until it changes */
    this.errors = new Map();
    this.dialog = /** @type {HTMLDialogElement} */ (h('dialog', { class: 'alarm-dialog' }));
    document.body.appendChild(this.dialog);
    root.setAttribute('aria-label', 'Alarms');
    root.addEventListener('keydown', (e) => this.#onKey(e));
    const { session, state, identity, signal } = deps;
    state.addEventListener('reset', () => this.render(), { signal });
    state.addEventListener('delta', (e) => {
      const { delta, props } = /** @type {import('../state.js').DeltaEvent} */ (e).detail;
      if (delta.events?.some((ev) => ev.alarm)) this.render();
      else if (props.size) this.#refreshValues(props);
    }, { signal });
    identity.addEventListener('change', () => this.render(), { signal });
    session.addEventListener('message', (e) => {
      const msg = /** @type {import('../session.js').SessionEvent<'message'>} */ (e).detail;
      if (msg.type === 'saved' && msg.ref && this.pending.delete(msg.ref)) this.render();
    }, { signal });
    session.addEventListener('servererror', (e) => {
      const err = /** @type {import('../session.js').SessionEvent<'servererror'>} */ (e).detail;
      const id = err.ref ? this.pending.get(err.ref) : undefined;
      if (id === undefined || !err.ref) return;
      e.preventDefault(); // shown in the alarm's item
      this.pending.delete(err.ref);
      this.errors.set(id, `${err.code}: ${err.message}`);
      this.render();
    }, { signal });
    signal.addEventListener('abort', () => this.dialog.remove());
    this.render();
  }

  render() {
    const alarms = [...this.deps.state.alarms.values()].sort(byUrgency);
    const attention = alarms.filter((a) => !['shelved', 'out_of_service'].includes(a.state ?? ''));
    const unacked = alarms.filter(needsAck).length;
    this.counter.textContent = String(attention.length);
    this.counter.hidden = attention.length === 0;
    this.counter.setAttribute('aria-label', `${attention.length} alarms, ${unacked} unacknowledged`);
    for (const id of this.errors.keys()) if (!this.deps.state.alarms.has(id)) this.errors.delete(id);
    const focus = this.#focused();
    replace(this.root, ...(alarms.length ? alarms.map((a) => this.#item(a)) : [h('li', { class: 'empty' }, 'No alarms')]));
    if (focus) this.#refocus(focus);
  }

  /** @param {Alarm} a */
  #item(a) {
    const { names, state } = this.deps;
    const phase = a.state ?? 'unacknowledged';
    const name = names.element(a.element);
    const source = a.source && a.source !== a.element ? names.element(a.source) : '';
    const value = h('span', { class: 'alarm-value' }, this.#valueText(a));
    if (state.props.get(a.source ?? '')?.has(a.prop ?? '')) markLive(value, [`${a.source}/${a.prop}`]);
    const when = [`since ${timeText(a.since)}`];
    if (a.acknowledged_by) when.push(`acknowledged by ${names.person(a.acknowledged_by)} ${timeText(a.acknowledged_at ?? a.changed ?? a.since)}`);
    if (phase === 'shelved' && a.shelved_until) when.push(`shelved by ${names.person(a.suppressed_by ?? '')} until ${timeText(a.shelved_until)}`);
    if (phase === 'out_of_service') when.push(`out of service (${names.person(a.suppressed_by ?? '')})`);
    const words = STATE_WORDS[phase] ?? phase;
    const label = `${a.severity ?? ''} alarm, ${words.toLowerCase()}: ${name}${source ? ` from ${source}` : ''}. `
      + `${a.message ?? ''}. ${when.join(', ')}. Press Enter to show the element.`;
    const error = this.errors.get(a.id);
    return h('li', { class: `alarm sev-${a.severity || 'none'} state-${phase}`, dataset: { id: a.id, element: a.element } },
      h('button', { class: 'alarm-go', 'aria-label': label, onclick: () => this.deps.onGo(a.element) },
        h('span', { class: 'alarm-state' }, words),
        h('span', { class: 'alarm-sev' }, a.severity ?? ''),
        h('strong', { class: 'alarm-name' }, name),
        source ? h('small', null, ` from ${source}`) : null,
        value,
        h('span', { class: 'alarm-message' }, a.message ?? ''),
        h('time', { datetime: new Date(a.since * 1000).toISOString() }, when.join(' · ')),
        a.reason ? h('span', { class: 'alarm-reason' }, `Reason: ${a.reason}`) : null),
      this.#actions(a, name),
      error ? h('p', { class: 'alarm-error', role: 'alert' }, error) : null);
  }

  /** The property and its live value with unit (the value at the alarm's latest change when there is none). @param {Alarm} a */
  #valueText(a) {
    const live = this.deps.state.props.get(a.source ?? '')?.get(a.prop ?? '');
    return `${a.prop ? `${a.prop} ` : ''}${live ? valueText(live.v, live.u) : valueText(a.value, a.unit)}`;
  }

  /** New values of alarms' sources: their items' values follow. @param {Set<string>} elements whose props changed */
  #refreshValues(elements) {
    for (const li of /** @type {NodeListOf<HTMLElement>} */ (this.root.querySelectorAll('li.alarm'))) {
      const a = this.deps.state.alarms.get(li.dataset.id ?? '');
      const value = li.querySelector('.alarm-value');
      if (a && value && elements.has(a.source ?? '')) value.textContent = this.#valueText(a);
    }
  }

  /** The buttons this role may use on this alarm in its state. @param {Alarm} a @param {string} name */
  #actions(a, name) {
    const may = (/** @type {string} */ action) => this.deps.identity.may(action);
    const busy = [...this.pending.values()].includes(a.id);
    const state = a.state ?? 'unacknowledged';
    // While a request is on its way the buttons stay focusable (the keyboard user keeps their place) but do nothing.
    /** @param {string} cls @param {string} text @param {string} aria @param {() => void} run */
    const button = (cls, text, aria, run) => h('button', { class: cls, 'aria-label': `${aria} ${name}`,
      'aria-disabled': busy ? 'true' : null, onclick: () => busy || run() }, text);
    const buttons = [
      needsAck(a) && may('alarm.acknowledge')
        ? button('alarm-ack', 'Acknowledge', 'Acknowledge the alarm on', () => this.#send({ type: 'alarm_ack', id: a.id })) : null,
      state !== 'out_of_service' && state !== 'shelved' && may('alarm.shelve')
        ? button('alarm-shelve', 'Shelve…', 'Shelve the alarm on', () => this.#ask(a, name, 'shelve')) : null,
      state === 'shelved' && may('alarm.shelve')
        ? button('alarm-unshelve', 'Unshelve', 'Unshelve the alarm on', () => this.#send({ type: 'alarm_unshelve', id: a.id })) : null,
      state !== 'out_of_service' && may('alarm.service')
        ? button('alarm-oos', 'Out of service…', 'Take out of service the alarm on', () => this.#ask(a, name, 'service')) : null,
      state === 'out_of_service' && may('alarm.service')
        ? button('alarm-in-service', 'In service', 'Put back in service the alarm on', () => this.#send({ type: 'alarm_in_service', id: a.id })) : null,
    ].filter(Boolean);
    return buttons.length ? h('div', { class: 'alarm-actions' }, ...buttons) : null;
  }

  /**
   * Shelving and taking out of service ask why (and for how long): the reason goes to the alarm and the audit trail.
   * @param {Alarm} a @param {string} name @param {'shelve'|'service'} what
   */
  #ask(a, name, what) {
    const reason = /** @type {HTMLInputElement} */ (h('input', { class: 'alarm-reason-input', required: true,
      maxlength: MAX_REASON, 'aria-label': 'Reason', placeholder: 'Why? (written to the audit trail)' }));
    const minutes = /** @type {HTMLSelectElement} */ (h('select', { class: 'alarm-minutes', 'aria-label': 'For how long' },
      ...SHELVE_MINUTES.map((m) => h('option', { value: m }, m < 60 ? `${m} min` : `${m / 60} h`))));
    minutes.value = '60';
    const hint = h('p', { class: 'hint' });
    const ok = () => {
      const why = reason.value.trim();
      if (!why) {
        hint.textContent = 'Say why first.';
        reason.focus();
        return;
      }
      this.dialog.close();
      this.#send(what === 'shelve'
        ? { type: 'alarm_shelve', id: a.id, minutes: Number(minutes.value), reason: why }
        : { type: 'alarm_out_of_service', id: a.id, reason: why });
    };
    reason.addEventListener('keydown', (e) => { if (e.key === 'Enter') ok(); });
    replace(this.dialog,
      h('p', null, what === 'shelve' ? 'Shelve the alarm on ' : 'Take out of service the alarm on ', h('strong', null, name), '?'),
      what === 'shelve' ? h('label', null, 'For ', minutes) : null,
      h('label', null, 'Reason ', reason),
      hint,
      h('div', { class: 'actions' },
        h('button', { class: 'cancel', onclick: () => this.dialog.close() }, 'Cancel'),
        h('button', { class: 'alarm-confirm', onclick: ok }, what === 'shelve' ? 'Shelve' : 'Take out of service')));
    this.dialog.showModal();
    reason.focus();
  }

  /** @param {import('../protocol.js').AlarmRequest} msg */
  #send(msg) {
    const ref = uuid();
    this.errors.delete(msg.id);
    if (!this.deps.session.send({ ...msg, ref })) {
      this.errors.set(msg.id, 'Not connected to the server: try again once it is back.');
    } else {
      this.pending.set(ref, msg.id);
    }
    this.render();
  }

  /** Arrow keys move between alarms; Home and End go to the first and last. @param {KeyboardEvent} e */
  #onKey(e) {
    const items = /** @type {HTMLElement[]} */ ([...this.root.querySelectorAll('.alarm-go')]);
    const at = items.findIndex((el) => el.closest('li')?.contains(/** @type {Node} */ (e.target)));
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    items[Math.max(0, Math.min(items.length - 1, to))].focus();
  }

  /** Which alarm control has the focus, to give it back after a render. @returns {{id: string, cls: string}|null} */
  #focused() {
    const el = document.activeElement;
    const li = el instanceof HTMLElement && this.root.contains(el) ? el.closest('li.alarm') : null;
    return li instanceof HTMLElement ? { id: li.dataset.id ?? '', cls: el?.className ?? '' } : null;
  }

  /** @param {{id: string, cls: string}} f */
  #refocus(f) {
    const li = [...this.root.querySelectorAll('li.alarm')].find((el) => /** @type {HTMLElement} */ (el).dataset.id === f.id);
    const target = li?.querySelector(`button.${CSS.escape(f.cls.split(' ')[0] || 'alarm-go')}`) ?? li?.querySelector('.alarm-go')
      ?? this.root.querySelector('.alarm-go');
    /** @type {HTMLElement|null} */ (target)?.focus();
  }
}
