// One viewer's live connection to the server: hello/welcome, snapshot and deltas into a TwinState,
// reconnect with backoff and resume from the last applied {epoch, seq}.
import * as P from './protocol.js';

// Reconnect backoff: first retry soon (a Wi-Fi blip), then double up to a ceiling, with jitter so that
// many clients of a restarted server do not reconnect in lockstep.
const BACKOFF_FIRST_MS = 300;
const BACKOFF_MAX_MS = 8000;
// A ping this often measures the round trip shown in the status chip and keeps idle proxies open.
const PING_INTERVAL_MS = 5000;

/**
 * @typedef {'connecting'|'live'|'reconnecting'|'resynced'|'degraded'|'refused'|'closed'} LinkStatus
 * @typedef {Exclude<P.ServerMessage, {type: 'welcome'|'snapshot'|'delta'|'pong'|'error'}>} Answer an answer to a
 *   collaboration request (`saved`, `ack`, `command_ack`), for the module that sent it
 * @typedef {{welcome: P.Welcome, snapshot: P.Snapshot, servererror: P.ServerError, message: Answer,
 *            status: {status: LinkStatus, detail: string}, rtt: number}} SessionEvents what each event's `detail` is
 */

/**
 * A Session event typed by its name: a listener casts its event to `SessionEvent<'snapshot'>`, and its
 * `detail` is then a Snapshot.
 * @template {keyof SessionEvents} K
 * @typedef {CustomEvent<SessionEvents[K]>} SessionEvent
 */

export class Session extends EventTarget {
  /**
   * @param {import('./state.js').TwinState} state
   * @param {{url: string, client: string, name?: string, layer?: (string|null),
   *          join?: {session: (string|null), token: (string|null)}}} opts `name`: the display name asked for
   */
  constructor(state, { url, client, name = '', layer = null, join = { session: null, token: null } }) {
    super();
    this.state = state;
    this.url = url;
    this.client = client;
    /** The display name to ask for in the next hello: first the one given, then the one the server granted
     * (`welcome.name`), so that a reconnect keeps it. */
    this.name = name;
    /** A visitor without a link: the server's token for our guest identity, sent when reconnecting to keep it. */
    this.guestToken = '';
    this.layer = layer;
    /** The collaboration session and token of the invitation link, sent in every hello (a resume included). */
    this.join = join;
    /** The close code that stopped retrying (4001 version, 4003 token, 4009 name, 1008 policy). */
    this.closeCode = 0;
    /** @type {WebSocket|null} */
    this.ws = null;
    /** @type {P.Interest|null} what part of the scene this viewer sees (null: all of it; docs/PROTOCOL.md §15) */
    this.interest = null;
    /** @type {P.Welcome|null} the last welcome */
    this.welcome = null;
    /** @type {LinkStatus} */
    this.status = 'connecting';
    this.rttMs = NaN;
    /** Server clock minus ours (ms), from the last pong: the server's time is `Date.now() + clockOffsetMs`. */
    this.clockOffsetMs = 0;
    this.attempt = 0;
    this.stopped = false;
    /** How many reconnects resumed without a snapshot. */
    this.resumes = 0;
    this.awaitingResume = false;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval>|undefined} */
    this.pingTimer = undefined;
    this.holdUntil = 0;
  }

  connect() {
    this.stopped = false;
    const ws = new WebSocket(this.url, P.SUBPROTOCOL);
    this.ws = ws;
    ws.onopen = () => {
      const resume = this.state.epoch ? { epoch: this.state.epoch, seq: this.state.seq } : null;
      const token = this.join.token || this.guestToken || null;
      this.#send(P.hello({ client: this.client, name: this.name, layer: this.layer || this.state.layer || null, resume,
        session: this.join.session, token, interest: this.#interesting() ? this.interest : null }));
    };
    ws.onmessage = (e) => this.#onMessage(e.data);
    ws.onclose = (e) => this.#onClose(ws, e.code, e.reason);
  }

  /** @param {string} layer */
  subscribe(layer) {
    this.layer = layer;
    this.#send(P.subscribe(layer));
  }

  /**
   * Receive the live values of part of the scene only (a tiled scene's loaded tiles), from the next snapshot on;
   * null: all of it. Kept for every reconnect; nothing is sent to a server without the `interest` capability.
   * @param {P.Interest|null} interest
   */
  setInterest(interest) {
    this.interest = interest;
    if (this.#interesting() && (this.status === 'live' || this.status === 'resynced')) this.#send(P.interest(interest));
  }

  #interesting() {
    return this.welcome?.capabilities.includes('interest') ?? false;
  }

  /** @param {P.Pose} pose */
  sendPresence(pose) {
    if (this.status === 'live' || this.status === 'resynced') this.#send(P.presence(pose));
  }

  /**
   * Send a collaboration message (topics, procedures, commands) while live; false if it could not go.
   * @param {P.ClientMessage} msg
   */
  send(msg) {
    if (this.status !== 'live' && this.status !== 'resynced') return false;
    this.#send(msg);
    return true;
  }

  /** Close for good (page leaving). */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.ws?.close(1000, 'bye');
  }

  /**
   * Simulate a dropped link (tests, "offline" demos): close the socket and stay away for `holdMs`.
   * @param {number} holdMs
   */
  drop(holdMs = 0) {
    this.holdUntil = performance.now() + holdMs;
    this.ws?.close(4000, 'dropped by client');
  }

  /**
   * Ask to be called `name` from now on: the server grants display names at hello, so this reconnects (and
   * resumes). Also the way back in after the server refused a name (close 4009).
   * @param {string} name
   */
  rename(name) {
    this.name = name;
    if (this.stopped) {
      this.closeCode = 0;
      this.connect();
    } else {
      this.ws?.close(4000, 'renaming');
    }
  }

  /** @param {P.ClientMessage} msg */
  #send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** @param {LinkStatus} status @param {string} [detail] */
  #setStatus(status, detail = '') {
    this.status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: { status, detail } }));
  }

  /** @param {string|ArrayBuffer} data */
  #onMessage(data) {
    /** @type {P.ServerMessage} what the server sends (the browser tests validate every frame against the schema) */
    let msg;
    try {
      msg = JSON.parse(/** @type {string} */ (data));
    } catch {
      return; // not ours to interpret: the spec says JSON text frames only on this subprotocol
    }
    switch (msg.type) {
      case 'welcome': {
        if (msg.protocol !== P.PROTOCOL_VERSION) {
          // The server answered in another protocol version: nothing it sends can be trusted to mean the same.
          this.stopped = true;
          this.ws?.close(1000, 'protocol mismatch');
          return this.#setStatus('refused', `The server speaks protocol ${msg.protocol}; this viewer speaks ${P.PROTOCOL_VERSION}.`);
        }
        const resumed = Boolean(this.welcome) && msg.server_epoch === this.state.epoch;
        this.welcome = msg;
        this.name = msg.name ?? this.name;
        this.guestToken = msg.token || this.guestToken;
        this.attempt = 0;
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.#send(P.ping()), PING_INTERVAL_MS);
        this.#send(P.ping());
        this.dispatchEvent(new CustomEvent('welcome', { detail: msg }));
        // A resumable session gets exactly one delta with what it missed; otherwise a snapshot follows.
        this.awaitingResume = resumed;
        break;
      }
      case 'snapshot': {
        this.awaitingResume = false;
        const reconnect = this.state.epoch !== '';
        this.state.applySnapshot(msg);
        this.dispatchEvent(new CustomEvent('snapshot', { detail: msg }));
        const resynced = msg.reason !== P.RESYNC_LIVE && (msg.resync || (reconnect && msg.reason));
        this.#setStatus(resynced ? 'resynced' : 'live', msg.reason || '');
        break;
      }
      case 'delta':
        this.state.applyDelta(msg);
        if (this.awaitingResume) {
          this.awaitingResume = false;
          this.resumes += 1;
          this.#setStatus('live', 'resumed');
        }
        break;
      case 'pong':
        if (typeof msg.t === 'number') {
          this.rttMs = performance.now() - msg.t;
          // The server read its clock about half a round trip ago.
          this.clockOffsetMs = msg.server_time * 1000 - (Date.now() - this.rttMs / 2);
          this.dispatchEvent(new CustomEvent('rtt', { detail: this.rttMs }));
        }
        break;
      case 'status':
        // Several server processes, and their shared bus is down (or back): the view stays, changes are refused.
        this.#setStatus(msg.state === 'degraded' ? 'degraded' : 'live', msg.message || '');
        break;
      case 'error':
        // Cancelable: a listener that shows the error where it happened (a form, a panel) calls
        // preventDefault(), and the page then shows no notice of its own (main.js).
        this.dispatchEvent(new CustomEvent('servererror', { detail: msg, cancelable: true }));
        break;
      default:
        // Collaboration messages (topics, procedures, commands) are for the modules that speak them.
        this.dispatchEvent(new CustomEvent('message', { detail: msg }));
        break;
    }
  }

  /** @param {WebSocket} ws @param {number} code @param {string} reason */
  #onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    if (this.stopped) return this.#setStatus('closed');
    if (code === P.CLOSE_VERSION || code === P.CLOSE_POLICY || code === P.CLOSE_AUTH || code === P.CLOSE_NAME) {
      // Retrying cannot help: the server refused this client; say why, in its own words.
      this.stopped = true;
      this.closeCode = code;
      return this.#setStatus('refused', reason || `closed with code ${code}`);
    }
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
    this.attempt += 1;
    this.#setStatus('reconnecting', reason || (this.welcome ? 'connection lost' : 'server unreachable'));
    const wait = Math.max(delay, this.holdUntil - performance.now());
    this.retryTimer = setTimeout(() => this.connect(), wait);
  }
}
