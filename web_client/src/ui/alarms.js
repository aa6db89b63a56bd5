// The list of raised alarms; clicking one flies the camera to its element.
import { h, replace } from './dom.js';

/** @type {Record<string, number>} */
const SEVERITY_ORDER = { critical: 0, alarm: 0, high: 1, major: 1, warning: 2, medium: 2, low: 3, info: 4 };

/** Sort order of alarms: the worst severity first, then the newest (the list here, the XR panel and badges).
 * @param {import('../protocol.js').Alarm} a @param {import('../protocol.js').Alarm} b */
export const worstFirst = (a, b) =>
  (SEVERITY_ORDER[a.severity ?? ''] ?? 5) - (SEVERITY_ORDER[b.severity ?? ''] ?? 5) || b.since - a.since;

/**
 * @param {HTMLElement} root @param {HTMLElement} counter
 * @param {import('../state.js').TwinState} state @param {import('../catalog.js').Catalog} catalog
 * @param {(id: string) => void} onGo @param {AbortSignal} signal ends the binding (a new scene replaces it)
 */
export function bindAlarmList(root, counter, state, catalog, onGo, signal) {
  const render = () => {
    const alarms = [...state.alarms.values()].sort(worstFirst);
    counter.textContent = String(alarms.length);
    counter.hidden = alarms.length === 0;
    replace(root, ...(alarms.length ? alarms.map((a) => h('li', { class: `alarm sev-${a.severity ?? 'none'}`,
      dataset: { id: a.element }, onclick: () => onGo(a.element) },
    h('strong', null, catalog.label(a.element)),
    h('span', null, ` ${a.severity ?? ''} ${a.prop ?? ''}`),
    a.source && a.source !== a.element ? h('small', null, ` from ${catalog.label(a.source)}`) : null,
    h('p', null, a.message || ''),
    h('time', null, new Date(a.since * 1000).toLocaleTimeString()))) : [h('li', { class: 'empty' }, 'No active alarms')]));
  };
  state.addEventListener('reset', render, { signal });
  state.addEventListener('delta', (e) => {
    if (/** @type {import('../state.js').DeltaEvent} */ (e).detail.delta.events?.length) render();
  }, { signal });
  render();
}
