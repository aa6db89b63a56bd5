// The alarm history: the latest transitions, newest first, each with its time, what happened, the element's
// name and who did it (the server sends the newest ALARM_HISTORY_MAX in the snapshot, then every event).
import { h, replace } from '../ui/dom.js';
import { EVENT_WORDS, STATE_WORDS, timeText, valueText } from './words.js';

/**
 * @param {HTMLElement} root the `<details>` that holds the history
 * @param {{state: import('../state.js').TwinState, names: import('../ui/names.js').Names, signal: AbortSignal}} deps
 */
export function bindAlarmHistory(root, { state, names, signal }) {
  const list = h('ol', { class: 'alarm-history-list', 'aria-label': 'Alarm history, newest first' });
  const summary = h('summary', null, 'History');
  replace(root, summary, list);
  const render = () => {
    const events = state.alarmHistory.slice().reverse();
    summary.textContent = `History (${state.alarmHistory.length})`;
    replace(list, ...(events.length ? events.map((e) => {
      const a = e.alarm;
      const who = e.user ? ` by ${names.person(e.user)}` : e.kind === 'alarm_unshelved' ? ' (time up)' : '';
      const what = a ? `${a.prop ?? ''} ${valueText(a.value, a.unit)}`.trim() : '';
      return h('li', { class: `alarm-event ${e.kind}`, dataset: { kind: e.kind, id: e.id } },
        h('time', { datetime: new Date(e.ts * 1000).toISOString() }, timeText(e.ts)),
        h('span', { class: 'alarm-event-kind' }, `${EVENT_WORDS[e.kind] ?? e.kind}${who}`),
        h('strong', null, names.element(e.element)),
        what ? h('span', null, what) : null,
        a?.state ? h('small', null, `→ ${(STATE_WORDS[a.state] ?? a.state).toLowerCase()}`) : null,
        a?.reason && (e.kind === 'alarm_shelved' || e.kind === 'alarm_out_of_service') ? h('small', null, ` “${a.reason}”`) : null);
    }) : [h('li', { class: 'empty' }, 'No alarm events yet')]));
  };
  state.addEventListener('reset', render, { signal });
  state.addEventListener('delta', (e) => {
    if (/** @type {import('../state.js').DeltaEvent} */ (e).detail.delta.events?.some((ev) => ev.alarm)) render();
  }, { signal });
  render();
}
