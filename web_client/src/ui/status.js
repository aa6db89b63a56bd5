// The connection chip: live / reconnecting / resynced / refused, with the round-trip lag.
import { $ } from './dom.js';

const LABELS = { connecting: 'connecting', live: 'live', reconnecting: 'reconnecting', resynced: 'resynced',
  degraded: 'degraded', refused: 'refused', closed: 'offline' };

/** @param {import('../session.js').Session} session */
export function bindStatusChip(session) {
  const chip = $('#status');
  let detail = '';
  const render = () => {
    const lag = Number.isFinite(session.rttMs) ? ` · ${Math.round(session.rttMs)} ms` : '';
    const live = session.status === 'live' || session.status === 'resynced';
    chip.textContent = `${LABELS[session.status]}${live ? lag : ''}`;
    chip.className = `chip ${session.status}`;
    chip.title = detail || `seq ${session.state.seq}`;
  };
  session.addEventListener('status', (e) => {
    detail = /** @type {import('../session.js').SessionEvent<'status'>} */ (e).detail.detail;
    render();
  });
  session.addEventListener('rtt', render);
  render();
}
