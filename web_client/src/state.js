// The client's copy of the twin state for its layer: applied from snapshots and deltas, observed by the
// viewer and the panels. Kept apart from rendering so deltas that arrive while the GLB loads are not lost.
import { splitKey } from './protocol.js';

// Alarm events kept for the history panel: as many as a snapshot brings (the server's ALARM_HISTORY_MAX).
export const ALARM_HISTORY_MAX = 50;

/**
 * @typedef {import('./protocol.js').Visual} Visual
 * @typedef {import('./protocol.js').PropState} PropState
 * @typedef {import('./protocol.js').Alarm} Alarm
 * @typedef {import('./protocol.js').Presence} Presence
 * @typedef {{visuals: Set<string>, props: Set<string>, delta: import('./protocol.js').Delta}} DeltaDetail the `delta`
 *   event's detail: the elements whose visual or props changed, and the delta itself
 * @typedef {CustomEvent<DeltaDetail>} DeltaEvent
 */

export class TwinState extends EventTarget {
  constructor() {
    super();
    this.epoch = '';
    this.seq = -1;
    this.layer = '';
    /** @type {Map<string, Visual>} element id -> visual on the current layer */
    this.visuals = new Map();
    /** @type {Map<string, Map<string, PropState>>} element id -> prop -> state */
    this.props = new Map();
    /** @type {Map<string, Alarm>} listed alarms (every state but normal) by alarm id; one element can carry several */
    this.alarms = new Map();
    /** @type {import('./protocol.js').TwinEvent[]} the latest alarm events, oldest first (the history panel) */
    this.alarmHistory = [];
    /** @type {Map<string, Presence>} session id -> presence */
    this.presence = new Map();
    /** A replay shows the past (timeline/replay.js): live deltas then move only seq, presence and the presenter on. */
    this.replaying = false;
    /** The moment a replay shows (Unix s; timeline/replay.js), NaN while live: ages and staleness are as of it. */
    this.asOf = NaN;
    /** Server time (s) of the newest value seen; with the local clock it gives the lag. */
    this.lastValueTs = 0;
  }

  /**
   * @param {import('./protocol.js').Snapshot} snap
   * @param {{replaying?: boolean}} [opts] `replaying`: it is a replay's moment (timeline/replay.js), not the live state
   */
  applySnapshot(snap, { replaying = false } = {}) {
    this.replaying = replaying;
    if (!replaying) this.asOf = NaN;
    this.epoch = snap.epoch;
    this.seq = snap.seq;
    this.layer = snap.layer;
    this.visuals = new Map(Object.entries(snap.visuals || {}));
    this.props = new Map();
    this.#mergeProps(snap.props || {});
    this.alarms = new Map((snap.alarms || []).map((a) => [a.id, a]));
    this.alarmHistory = (snap.alarm_history || []).slice(-ALARM_HISTORY_MAX);
    this.presence = new Map(Object.entries(snap.presence || {}));
    this.dispatchEvent(new CustomEvent('reset'));
  }

  /**
   * Apply a `delta`. Seq gaps are normal (changes filtered out for this layer or coalesced away); a delta
   * this state already holds is ignored, so a duplicate cannot apply twice.
   * @param {import('./protocol.js').Delta} d
   * @returns {boolean} whether it was applied
   */
  applyDelta(d) {
    if (d.last <= this.seq) return false;
    this.seq = d.last;
    // The past on screen takes no live values, colours or alarms: `live` ends a replay with a fresh snapshot.
    this.applyChanges(this.replaying ? { ...d, props: undefined, visuals: undefined, events: undefined } : d);
    return true;
  }

  /**
   * Apply changes without a seq (a delta's, or a replay's: timeline/replay.js) and tell the listeners.
   * @param {import('./protocol.js').Delta} d
   */
  applyChanges(d) {
    /** @type {Set<string>} */
    const changed = new Set();
    for (const [key, vis] of Object.entries(d.visuals || {})) {
      const [id, layer] = splitKey(key, '@');
      if (layer !== this.layer) continue;
      this.visuals.set(id, vis);
      changed.add(id);
    }
    const props = this.#mergeProps(d.props || {});
    for (const [sid, p] of Object.entries(d.presence || {})) {
      if (p) this.presence.set(sid, p);
      else this.presence.delete(sid);
    }
    for (const ev of d.events || []) {
      // An alarm transition carries the whole alarm at its new state; `normal` takes it off the list.
      if (!ev.alarm) continue;
      if (ev.alarm.state === 'normal') this.alarms.delete(ev.alarm.id);
      else this.alarms.set(ev.alarm.id, ev.alarm);
      this.alarmHistory.push(ev);
    }
    if (this.alarmHistory.length > ALARM_HISTORY_MAX) this.alarmHistory.splice(0, this.alarmHistory.length - ALARM_HISTORY_MAX);
    /** @type {DeltaDetail} */
    const detail = { visuals: changed, props, delta: d };
    this.dispatchEvent(new CustomEvent('delta', { detail }));
  }

  /** @param {Record<string, PropState>} entries @returns {Set<string>} element ids touched */
  #mergeProps(entries) {
    /** @type {Set<string>} */
    const touched = new Set();
    for (const [key, st] of Object.entries(entries)) {
      const [id, prop] = splitKey(key, '/');
      let m = this.props.get(id);
      if (!m) this.props.set(id, (m = new Map()));
      m.set(prop, st);
      touched.add(id);
      if (st.ts > this.lastValueTs) this.lastValueTs = st.ts;
    }
    return touched;
  }
}
