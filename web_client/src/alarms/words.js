// How alarms read: their states and transitions in words, and the order the list shows them in.
import { formatValue } from '../ui/properties.js';

/** @typedef {import('../protocol.js').Alarm} Alarm */

/** @type {Record<string, string>} */
export const STATE_WORDS = {
  unacknowledged: 'Unacknowledged',
  acknowledged: 'Acknowledged',
  returned: 'Returned, unacknowledged',
  shelved: 'Shelved',
  out_of_service: 'Out of service',
  normal: 'Normal',
};

/** @type {Record<string, string>} what each alarm event says happened */
export const EVENT_WORDS = {
  alarm_raised: 'Raised',
  alarm_acknowledged: 'Acknowledged',
  alarm_returned: 'Returned to normal',
  alarm_cleared: 'Cleared',
  alarm_shelved: 'Shelved',
  alarm_unshelved: 'Unshelved',
  alarm_out_of_service: 'Out of service',
  alarm_in_service: 'Back in service',
};

// The list's order: what asks for an answer first (ISA-18.2), then what stands, then what is suppressed.
/** @type {Record<string, number>} */
const STATE_ORDER = { unacknowledged: 0, returned: 1, acknowledged: 2, shelved: 3, out_of_service: 4 };
/** @type {Record<string, number>} */
const SEVERITY_ORDER = { alarm: 0, warning: 1 };

/** @param {Alarm} a @param {Alarm} b */
export function byUrgency(a, b) {
  return (STATE_ORDER[a.state ?? 'unacknowledged'] ?? 5) - (STATE_ORDER[b.state ?? 'unacknowledged'] ?? 5)
    || (SEVERITY_ORDER[a.severity ?? ''] ?? 2) - (SEVERITY_ORDER[b.severity ?? ''] ?? 2)
    || b.since - a.since;
}

/** Whether the alarm asks someone to acknowledge it. @param {Alarm} a */
export function needsAck(a) {
  const state = a.state ?? 'unacknowledged';
  return state === 'unacknowledged' || state === 'returned';
}

/** A value with its unit. @param {unknown} v @param {string} [unit] */
export function valueText(v, unit = '') {
  return unit ? `${formatValue(v)} ${unit}` : formatValue(v);
}

/** A clock time; the date too when it is not today. @param {number} ts seconds */
export function timeText(ts) {
  const d = new Date(ts * 1000);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}
