// The time machine's connection side (docs/PROTOCOL.md §14): `seek`, `play`, `pause` and `live` go to the
// server; its `replay` frame (the whole twin as of a moment) replaces what the state holds, its `replay_delta`
// frames move it on in time order, and the `snapshot` that answers `live` brings the present back. While a
// replay runs the server sends no live deltas, and any that arrive anyway are not applied: the view shows the
// past and nothing else. Every panel bound to the TwinState (colours, labels, alarms, properties, legend) thus
// follows the replay without knowing about it.

// Playback speeds offered (× real time): the protocol takes 1…1000.
export const SPEEDS = [1, 2, 5, 10, 30, 60, 100, 300, 1000];
export const MAX_SPEED = 1000;
// What the server names in an error's `ref` when it refuses one of our requests.
const REQUESTS = ['seek', 'play', 'pause', 'live'];

/**
 * @typedef {import('../protocol.js').Topic} Topic
 * @typedef {import('../protocol.js').Comment} Comment
 * @typedef {import('../protocol.js').Replay} ReplayFrame the whole twin as of `as_of`
 * @typedef {import('../protocol.js').ReplayDelta} ReplayDelta what changed up to `as_of` while playing
 * @typedef {'live'|'replay'} Mode
 */

export class ReplayController extends EventTarget {
  /**
   * @param {import('../session.js').Session} session
   * @param {{resetTopics: (topics: Topic[], comments: Comment[]) => void, isSelf: (who: string) => boolean}} deps how to
   *   show the topics as they were, and whether a replay's driver is this viewer (else a presenter drives it)
   */
  constructor(session, deps) {
    super();
    this.session = session;
    this.state = session.state;
    this.deps = deps;
    /** @type {Mode} */
    this.mode = 'live';
    /** The moment shown (Unix s) while replaying. */
    this.asOf = NaN;
    this.speed = 1;
    this.playing = false;
    /** Who drives this replay when it is not us (a presenter), else "". */
    this.drivenBy = '';
    /** Asked for `live`, waiting for the snapshot that brings the present back. */
    this.leaving = false;
    session.addEventListener('welcome', (e) => {
      const caps = /** @type {import('../session.js').SessionEvent<'welcome'>} */ (e).detail.capabilities;
      this.available = caps.includes('replay');
      this.dispatchEvent(new CustomEvent('change'));
    });
    /** Whether the server offers replay (welcome.capabilities). */
    this.available = false;
    /** @type {import('../protocol.js').HistoryRange|null} the history's range, as the last replay frame gave it */
    this.range = null;
    session.addEventListener('message', (e) => {
      const msg = /** @type {import('../session.js').SessionEvent<'message'>} */ (e).detail;
      if (msg.type === 'replay') this.#onReplay(msg);
      else if (msg.type === 'replay_delta') this.#onReplayDelta(msg);
    });
    // A refused request (a seek outside the stored range, replay not allowed) is said on the timeline.
    session.addEventListener('servererror', (e) => {
      const err = /** @type {import('../session.js').SessionEvent<'servererror'>} */ (e).detail;
      if (!REQUESTS.includes(err.ref ?? '')) return;
      e.preventDefault();
      this.dispatchEvent(new CustomEvent('error', { detail: err.message }));
    });
    session.addEventListener('snapshot', () => {
      if (this.mode === 'live' && !this.leaving) return;
      // Not the answer to our `live`: a new connection (the server's replay belongs to the old one). Our own
      // replay asks for its moment again once the session is up; a presenter's puts a joiner back by itself.
      const again = this.leaving || this.drivenBy ? NaN : this.asOf;
      if (Number.isFinite(again)) queueMicrotask(() => this.seek(again));
      this.leaving = false;
      this.mode = 'live';
      this.playing = false;
      this.drivenBy = '';
      this.asOf = NaN;
      this.dispatchEvent(new CustomEvent('change'));
    });
  }

  /** Whether this viewer follows a replay someone else drives (its controls are then disabled). */
  get followed() {
    return this.mode === 'replay' && Boolean(this.drivenBy);
  }

  /** Show the twin as of `t` (Unix s), paused. @param {number} t */
  seek(t) {
    if (!Number.isFinite(t) || this.followed) return;
    this.asOf = t;
    this.#send({ type: 'seek', t });
  }

  /** Play from the moment shown (or `from`) at `speed` × real time. @param {number} speed @param {number} [from] */
  play(speed = this.speed, from = undefined) {
    if (this.followed) return;
    this.speed = Math.min(MAX_SPEED, Math.max(1, Math.round(speed)));
    this.#send(from === undefined ? { type: 'play', speed: this.speed } : { type: 'play', speed: this.speed, from });
  }

  pause() {
    if (!this.followed) this.#send({ type: 'pause' });
  }

  /** A follower stops following the presenter's replay: its own, paused at the moment shown (§14). */
  breakAway() {
    if (this.followed) this.#send({ type: 'pause' });
  }

  /** Back to the present (while a presenter replays, a follower's `live` follows the presenter again: §14). */
  live() {
    if (this.mode === 'live') return;
    this.leaving = true;
    this.#send({ type: 'live' });
  }

  /** @param {import('../protocol.js').ReplayRequest} msg */
  #send(msg) {
    if (!this.session.send(msg)) {
      this.dispatchEvent(new CustomEvent('error', { detail: 'Not connected to the server: try again once it is back.' }));
    }
  }

  /** The whole twin at a moment: it replaces the state (people stay: they are here now). @param {ReplayFrame} f */
  #onReplay(f) {
    if (!Number.isFinite(f.as_of)) return;
    const state = this.state;
    this.mode = 'replay';
    this.leaving = false;
    this.asOf = f.as_of;
    this.speed = f.speed;
    this.playing = f.playing;
    this.range = f.range;
    this.#driver(f.driven_by);
    state.applySnapshot({
      type: 'snapshot', epoch: state.epoch, seq: state.seq, scene: '', layer: state.layer, glb_url: '', manifest_url: '',
      props: f.props ?? {}, visuals: f.visuals ?? {}, alarms: f.alarms ?? [],
      presence: Object.fromEntries(state.presence),
      // The alarm history as it stood: what the live one held up to that moment.
      alarm_history: state.alarmHistory.filter((ev) => ev.ts <= f.as_of),
    }, { replaying: true });
    state.asOf = f.as_of;
    if (f.topics) this.deps.resetTopics(f.topics, f.comments ?? []);
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** @param {ReplayDelta} d */
  #onReplayDelta(d) {
    if (this.mode !== 'replay' || !Number.isFinite(d.as_of)) return;
    this.asOf = d.as_of;
    this.state.asOf = d.as_of;
    if (d.playing !== undefined) this.playing = d.playing;
    if (d.driven_by !== undefined) this.#driver(d.driven_by);
    // `alarms`, when there, is the whole list: the events' alarm transitions then only add to the history.
    if (d.alarms) this.state.alarms = new Map(d.alarms.map((a) => [a.id, a]));
    // A frame's visuals are keyed by element (its layer is the replay's), a delta's by "element@layer".
    /** @type {Record<string, import('../protocol.js').Visual>} */
    const visuals = {};
    for (const [id, v] of Object.entries(d.visuals ?? {})) visuals[`${id}@${this.state.layer}`] = v;
    this.state.applyChanges({ type: 'delta', first: 0, last: 0, props: d.props, visuals, events: d.events });
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** @param {string|null|undefined} who the replay's `driven_by` */
  #driver(who) {
    this.drivenBy = who && !this.deps.isSelf(who) ? who : '';
  }
}
