// Presenter mode ("spotlight"): the presenter's camera goes to the server, everyone else's follows it.
// A follower who moves the camera breaks away and gets a "Return to presenter" button; a late joiner
// lands on the presenter's current view from the snapshot. Raised hands queue up for the presenter.
import { h, replace } from '../ui/dom.js';

// The presenter's view is sent at most this often while the camera moves (the server throttles to 20 Hz).
const SEND_INTERVAL_MS = 50;
// A follower's camera glides to each new presenter view in this long: smooth, yet close behind.
const FOLLOW_MS = 200;

/** @typedef {import('../protocol.js').PresenterState} PresenterState */

export class PresenterMode extends EventTarget {
  /**
   * @param {HTMLElement} bar the banner over the view
   * @param {{viewer: import('../viewer.js').Viewer, session: import('../session.js').Session,
   *          identity: import('../auth.js').Identity, viewpoints: import('../topics/viewpoint.js').Viewpoints,
   *          names: import('../ui/names.js').Names, visibility: import('../visibility.js').Visibility}} deps
   */
  constructor(bar, deps) {
    super();
    this.bar = bar;
    this.deps = deps;
    /** @type {PresenterState|null} */
    this.state = null;
    /** The user moved their own camera while someone presents. */
    this.brokeAway = false;
    this.lastSent = 0;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.trailing = undefined;
    const { session, viewer } = deps;
    session.addEventListener('snapshot', (e) => this.#set(/** @type {import('../session.js').SessionEvent<'snapshot'>} */ (e).detail.presenter ?? null, true));
    session.state.addEventListener('delta', (e) => {
      const room = session.welcome?.session;
      const next = room === undefined ? undefined : /** @type {import('../state.js').DeltaEvent} */ (e).detail.delta.presenter?.[room];
      if (next) this.#set(next, false);
    });
    // 'start' fires only for the user's own drag or wheel, never for a programmatic fly.
    viewer.controls.addEventListener('start', () => this.breakAway());
    viewer.controls.addEventListener('change', () => this.#sendView());
    /** What the presenter shows (visibility.js), captured again only when it changes; what a follower last took. */
    this.shown = /** @type {Partial<import('../protocol.js').Viewpoint>|null} */ (null);
    this.applied = '';
    deps.visibility.addEventListener('change', (e) => {
      if (!/** @type {CustomEvent<{byUser: boolean}>} */ (e).detail.byUser) return;
      this.shown = null;
      this.#sendView(true);
    });
  }

  /** Whether this viewer presents now. */
  get presenting() {
    return Boolean(this.state?.presenter) && this.state?.session === this.deps.session.welcome?.session_id;
  }

  /** Whether someone else presents (we follow unless we broke away). */
  get following() {
    return Boolean(this.state?.presenter) && !this.presenting;
  }

  /** Whether our hand is up. */
  get handRaised() {
    const own = this.deps.session.welcome?.session_id;
    return Boolean(this.state?.hands?.some((x) => x.session === own));
  }

  take() {
    this.deps.session.send({ type: 'presenter_take' });
  }

  release() {
    this.deps.session.send({ type: 'presenter_release' });
  }

  /** Stop following for now: the user looks elsewhere on their own (drag, wheel, opening a topic). */
  breakAway() {
    if (!this.following || this.brokeAway) return;
    this.brokeAway = true;
    this.render();
  }

  /** Follow the presenter again, from their newest view (or from the next one, without `fly`). */
  rejoin({ fly = true } = {}) {
    if (!this.brokeAway && !fly) return;
    this.brokeAway = false;
    this.applied = ''; // the presenter's visibility again, too
    if (fly) this.#follow(0);
    this.render();
  }

  toggleHand() {
    this.deps.session.send({ type: this.handRaised ? 'hand_lower' : 'hand_raise' });
  }

  /** @param {string} session a raised hand's session id */
  lowerHand(session) {
    this.deps.session.send({ type: 'hand_lower', session });
  }

  /** @param {PresenterState|null} next @param {boolean} fresh from a snapshot (a late joiner, a resync) */
  #set(next, fresh) {
    const before = this.state?.presenter;
    const wasFollowing = this.following;
    this.state = next?.presenter ? next : next && { ...next, presenter: '' };
    if (wasFollowing && !this.following && this.applied) { // presenting ended: back to one's own view
      this.applied = '';
      this.deps.viewpoints.release();
    }
    // A new presenter, or a fresh start, means following from now on.
    if (fresh || this.state?.presenter !== before) this.brokeAway = false;
    this.#follow(fresh ? 0 : FOLLOW_MS);
    if (this.presenting && before !== this.state?.presenter) this.#sendView(true);
    this.render();
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** The presenter's camera, and what they show when that changed. @param {number} ms */
  #follow(ms) {
    const vp = this.state?.viewpoint;
    if (!this.following || this.brokeAway || !vp?.camera) return;
    this.deps.viewpoints.flyToCamera(vp.camera, ms);
    const { hidden, default_visible, xray, xray_default, colored, transparent } = vp;
    const key = JSON.stringify([hidden, default_visible, xray, xray_default, colored, transparent]);
    if (key === this.applied) return;
    this.applied = key;
    this.deps.viewpoints.show(vp);
  }

  /** The presenter's camera, throttled with a trailing send so the last position always arrives. @param {boolean} [now] */
  #sendView(now = false) {
    if (!this.presenting) return;
    clearTimeout(this.trailing);
    const wait = SEND_INTERVAL_MS - (performance.now() - this.lastSent);
    if (!now && wait > 0) {
      this.trailing = setTimeout(() => this.#sendView(true), wait);
      return;
    }
    this.lastSent = performance.now();
    const { camera, clipping_planes, guid } = this.deps.viewpoints.capture(false);
    this.shown ??= this.deps.viewpoints.shown(false);
    this.deps.session.send({ type: 'presenter_view', viewpoint: { guid, camera, clipping_planes, ...this.shown } });
  }

  render() {
    const s = this.state;
    const { identity } = this.deps;
    this.bar.hidden = !s?.presenter;
    const hands = s?.hands ?? [];
    if (!s?.presenter) return replace(this.bar);
    replace(this.bar,
      this.presenting
        ? h('span', { class: 'who' }, 'You are presenting')
        : h('span', { class: 'who' }, `${this.deps.names.person(s.presenter)} is presenting${this.brokeAway ? ' — you moved away' : ' · following'}`),
      this.brokeAway ? h('button', { class: 'return', onclick: () => this.rejoin() }, 'Return to presenter') : null,
      this.presenting ? h('button', { class: 'stop', onclick: () => this.release() }, 'Stop presenting') : null,
      hands.length ? h('span', { class: 'hands' }, `✋ ${hands.length}`) : null,
      ...(this.presenting || identity.may('presenter.take') ? hands.map((x) =>
        h('button', { class: 'hand', title: 'lower this hand', onclick: () => this.lowerHand(x.session) }, `✋ ${x.name || x.user}`)) : []));
  }
}
