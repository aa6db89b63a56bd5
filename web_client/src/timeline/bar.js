// The timeline bar under the view: where the twin is in time (LIVE, or "REPLAY — 10:42:13, ×10"), a track over
// the shown span to drag (seek), markers for the alarms and topics of that span (click one to go there), play /
// pause with a speed, steps, previous / next event, and one click back to live. A follower of a presenter's
// replay sees who drives it, and its controls are disabled but for "Break away" (its own replay from there on;
// its "Back to live" then follows the presenter again while the presenter replays: docs/PROTOCOL.md §14).
// Keyboard: every control is a button; on the track ←/→ step, PageUp/PageDown move a tenth of the span, Home
// goes to its start, End back to live, Space plays or pauses.
import { h, replace } from '../ui/dom.js';
import { SPEEDS } from './replay.js';
import { clockText, spanText } from './time.js';

// Spans the track can show (s): a quarter hour to a week; "all" is the whole stored range.
const SPANS = [900, 3600, 6 * 3600, 86400, 7 * 86400];
const DEFAULT_SPAN = 3600;
// While the track is dragged, a seek goes at most this often (the last position always goes).
const DRAG_SEEK_MS = 150;
// The span's end follows the clock; its markers and the stored range are read again this often while live.
const TICK_MS = 1000;
const EVENTS_REFRESH_MS = 15000;
// Live events (an alarm, a topic) show as markers this soon: after the historian has them.
const REFRESH_SOON_MS = 500;
// An event within this of the moment shown is "here": previous / next look past it.
const SAME_MOMENT_S = 0.5;

/** @typedef {import('./history_api.js').HistoryEvent} HistoryEvent */

/** What a marker's kind reads as, and its class. @param {string} kind */
export function markerKind(kind) {
  if (kind.startsWith('alarm')) return 'alarm';
  if (kind.startsWith('topic') || kind.startsWith('comment')) return 'topic';
  return 'event';
}

const KIND_WORDS = /** @type {Record<string, string>} */ ({
  alarm_raised: 'Alarm raised', alarm_acknowledged: 'Alarm acknowledged', alarm_cleared: 'Alarm cleared',
  alarm_returned: 'Alarm returned', alarm_shelved: 'Alarm shelved', alarm_unshelved: 'Alarm unshelved',
  topic_created: 'Topic', topic_updated: 'Topic changed', comment_added: 'Comment', command: 'Command',
  rules_changed: 'Rules changed',
});

export class TimelineBar extends EventTarget {
  /**
   * @param {HTMLElement} root
   * @param {{replay: import('./replay.js').ReplayController, api: import('./history_api.js').HistoryApi, now: () => number,
   *          nameOf: (id: string) => string, signal?: AbortSignal}} deps `now`: the server's clock (Unix s)
   */
  constructor(root, deps) {
    super();
    this.root = root;
    this.deps = deps;
    this.span = DEFAULT_SPAN;
    /** @type {import('./history_api.js').HistoryRange|null} */
    this.range = null;
    /** @type {HistoryEvent[]} */
    this.events = [];
    /** The moment under the pointer (the track's, or a chart's), NaN when none. */
    this.hoverT = NaN;
    /** Where a drag holds the thumb (NaN when not dragging). */
    this.dragT = NaN;
    this.lastDragSeek = 0;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.dragTimer = undefined;
    /** @type {ReturnType<typeof setTimeout>|undefined} */
    this.refreshTimer = undefined;
    /** @type {{a: number, b: number}|null} the compared moments, marked on the track */
    this.compared = null;

    const button = (/** @type {string} */ cls, /** @type {string} */ text, /** @type {string} */ label, /** @type {() => void} */ run) =>
      /** @type {HTMLButtonElement} */ (h('button', { class: cls, 'aria-label': label, title: label, onclick: run }, text));
    const { replay } = deps;
    this.banner = h('span', { class: 'tl-banner', role: 'status', 'aria-live': 'polite' });
    this.prevBtn = button('tl-prev', '◀◀', 'Previous alarm or event', () => this.jump(-1));
    this.backBtn = button('tl-back', '‹', 'Step back', () => this.step(-1));
    this.playBtn = button('tl-play', '▶', 'Play', () => this.togglePlay());
    this.fwdBtn = button('tl-fwd', '›', 'Step forward', () => this.step(1));
    this.nextBtn = button('tl-next', '▶▶', 'Next alarm or event', () => this.jump(1));
    this.speedSel = /** @type {HTMLSelectElement} */ (h('select', { class: 'tl-speed', 'aria-label': 'Playback speed',
      onchange: () => replay.playing && replay.play(Number(this.speedSel.value)) },
    ...SPEEDS.map((s) => h('option', { value: s }, `×${s}`))));
    this.spanSel = /** @type {HTMLSelectElement} */ (h('select', { class: 'tl-span', 'aria-label': 'Span of the timeline',
      onchange: () => { this.span = Number(this.spanSel.value); this.refresh(); } },
    ...SPANS.map((s) => h('option', { value: s }, spanText(s))), h('option', { value: 0 }, 'all')));
    this.spanSel.value = String(DEFAULT_SPAN);
    this.liveBtn = button('tl-live', 'Back to live', 'Back to live', () => replay.live());
    this.breakBtn = button('tl-break', 'Break away', 'Break away from the presenter\'s replay: your own, from this moment',
      () => replay.breakAway());
    this.error = h('span', { class: 'tl-error', role: 'alert' });
    /** Where other modules add their buttons (Chart, Compare). */
    this.tools = h('span', { class: 'tl-tools' });
    this.markers = h('div', { class: 'tl-markers' });
    this.thumb = h('div', { class: 'tl-thumb' });
    this.hoverLine = h('div', { class: 'tl-hover', hidden: true });
    this.compareMarks = h('div', { class: 'tl-compare' });
    this.startLabel = h('span', { class: 'tl-edge start' });
    this.endLabel = h('span', { class: 'tl-edge end' });
    this.track = h('div', { class: 'tl-track', role: 'slider', tabindex: '0', 'aria-label': 'Time (drag to replay the past)' },
      this.compareMarks, this.markers, this.hoverLine, this.thumb, this.startLabel, this.endLabel);
    // Where the twin is in time and the way back (one row of its own on a phone), then the controls.
    const where = h('span', { class: 'tl-where' }, this.banner, this.liveBtn, this.breakBtn, this.error);
    this.controls = h('div', { class: 'tl-controls' }, where, this.prevBtn, this.backBtn, this.playBtn, this.fwdBtn,
      this.nextBtn, this.speedSel, this.spanSel, this.tools);
    replace(root, this.controls, this.track);
    root.classList.add('timeline');
    root.setAttribute('role', 'region');
    root.setAttribute('aria-label', 'Timeline');

    // What floats at the bottom of the view stands on the bar (timeline.css reads --tl-h), however its controls wrap.
    new ResizeObserver(() => root.parentElement?.style.setProperty('--tl-h', `${root.offsetHeight}px`)).observe(root);
    this.#bindTrack();
    replay.addEventListener('change', () => { this.error.textContent = ''; this.render(); });
    replay.addEventListener('error', (e) => { this.error.textContent = /** @type {CustomEvent<string>} */ (e).detail; });
    const tick = setInterval(() => this.render(), TICK_MS);
    const reread = setInterval(() => this.replay.mode === 'live' && this.refresh(), EVENTS_REFRESH_MS);
    deps.signal?.addEventListener('abort', () => { clearInterval(tick); clearInterval(reread); });
    this.refresh();
  }

  get replay() {
    return this.deps.replay;
  }

  /** The moment shown: the replay's, or now. */
  get current() {
    return this.replay.mode === 'replay' && Number.isFinite(this.replay.asOf) ? this.replay.asOf : this.deps.now();
  }

  /** The span the track shows [from, to] (Unix s): it ends now, and reaches back to the moment shown. */
  window() {
    const to = Math.max(this.deps.now(), this.range?.latest ?? 0);
    const earliest = this.range?.earliest ?? to - DEFAULT_SPAN;
    let from = this.span ? to - this.span : earliest;
    const t = this.replay.mode === 'replay' ? this.replay.asOf : NaN;
    if (t < from) from = t - (to - t) * 0.05; // the moment shown is always on the track
    return { from: Math.min(from, to - 1), to };
  }

  /** Read them again shortly (new events came live: a burst of them is one read). */
  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), REFRESH_SOON_MS);
  }

  /** Read the stored range and the events of the span again. */
  async refresh() {
    try {
      this.range = await this.deps.api.range();
      const { from, to } = this.window();
      this.events = await this.deps.api.events(from, to);
      this.#renderMarkers();
      this.dispatchEvent(new CustomEvent('events'));
    } catch (e) {
      this.banner.title = /** @type {Error} */ (e).message;
    }
    this.render();
  }

  /** Show the twin as of `t`, within the stored history (beyond it the server has nothing to show). @param {number} t */
  seek(t) {
    const r = this.replay.range ?? this.range;
    this.replay.seek(r && r.earliest !== null ? Math.min(r.latest, Math.max(r.earliest, t)) : t);
  }

  /** Step by one second of replay at the chosen speed. @param {number} dir -1 or 1 */
  step(dir) {
    this.seek(this.current + dir * Math.max(1, Number(this.speedSel.value)));
  }

  /** Go to the previous (-1) or next (1) alarm or event. @param {number} dir */
  jump(dir) {
    const t = this.current;
    const ev = dir < 0 ? this.events.filter((e) => e.t < t - SAME_MOMENT_S).pop() : this.events.find((e) => e.t > t + SAME_MOMENT_S);
    if (ev) this.replay.seek(ev.t);
  }

  togglePlay() {
    const { replay } = this;
    if (replay.playing) replay.pause();
    else replay.play(Number(this.speedSel.value), replay.mode === 'live' ? this.window().from : undefined);
  }

  /** Show a moment under a pointer elsewhere (a chart's cursor) on the track; NaN hides it. @param {number} t */
  showHover(t) {
    this.hoverT = t;
    this.#placeHover();
  }

  /** Mark the two compared moments (null clears them). @param {{a: number, b: number}|null} ab */
  markCompared(ab) {
    this.compared = ab;
    this.render();
  }

  render() {
    const { replay } = this;
    const live = replay.mode === 'live';
    const followed = replay.followed;
    this.root.dataset.mode = replay.mode;
    this.root.toggleAttribute('data-followed', followed);
    document.body.dataset.replay = live ? '' : followed ? 'followed' : 'own';
    const at = `${clockText(replay.asOf)}, ×${replay.speed}${replay.playing ? '' : ' (paused)'}`;
    this.banner.textContent = live ? 'LIVE'
      : followed ? `REPLAY — driven by ${replay.drivenBy} · ${at}` : `REPLAY — ${at}`;
    this.playBtn.textContent = replay.playing ? '❚❚' : '▶';
    this.playBtn.setAttribute('aria-label', replay.playing ? 'Pause' : 'Play');
    this.playBtn.title = this.playBtn.getAttribute('aria-label') ?? '';
    // While playing (ours or a presenter's) the select shows the speed in effect; paused, the one chosen for next.
    if (replay.playing && SPEEDS.includes(replay.speed)) this.speedSel.value = String(replay.speed);
    for (const el of [this.prevBtn, this.backBtn, this.playBtn, this.fwdBtn, this.nextBtn, this.speedSel, this.spanSel]) {
      el.disabled = followed || !replay.available;
    }
    this.track.setAttribute('aria-disabled', String(followed || !replay.available));
    this.liveBtn.hidden = live || followed;
    this.breakBtn.hidden = !followed;
    const { from, to } = this.window();
    const t = Number.isFinite(this.dragT) ? this.dragT : this.current;
    this.thumb.style.left = `${this.#percent(t, from, to)}%`;
    this.track.setAttribute('aria-valuemin', String(Math.round(from)));
    this.track.setAttribute('aria-valuemax', String(Math.round(to)));
    this.track.setAttribute('aria-valuenow', String(Math.round(t)));
    this.track.setAttribute('aria-valuetext', live ? 'live' : clockText(t));
    this.startLabel.textContent = clockText(from);
    this.endLabel.textContent = live ? 'now' : clockText(to);
    // The span slides with the clock: the markers move once that is a pixel or so (a thousandth of it).
    if (Math.abs(from - this.#markersAt.from) + Math.abs(to - this.#markersAt.to) > (to - from) / 1000) this.#placeMarkers();
    replace(this.compareMarks, ...(this.compared ? (/** @type {const} */ (['a', 'b'])).map((k) => {
      const v = /** @type {{a: number, b: number}} */ (this.compared)[k];
      return h('span', { class: `tl-ab ${k}`, style: `left:${this.#percent(v, from, to)}%`, title: `${k.toUpperCase()}: ${clockText(v)}` },
        k.toUpperCase());
    }) : []));
    this.#placeHover();
  }

  /** The span the markers were placed for. */
  #markersAt = { from: 0, to: 0 };

  #renderMarkers() {
    replace(this.markers, ...this.events.map((e) => {
      const label = `${KIND_WORDS[e.kind] ?? e.kind.replace(/_/g, ' ')}: ${e.name || (e.element ? this.deps.nameOf(e.element) : '')}`
        + `${e.text ? ` — ${e.text}` : ''} · ${clockText(e.t)}`;
      return h('button', { class: `tl-marker ${markerKind(e.kind)}`, tabindex: '-1', 'aria-label': label, title: label,
        dataset: { t: e.t, kind: e.kind },
        onpointerdown: (/** @type {Event} */ ev) => ev.stopPropagation(),
        onclick: () => this.replay.seek(e.t) });
    }));
    this.#placeMarkers();
  }

  #placeMarkers() {
    const { from, to } = this.window();
    this.#markersAt = { from, to };
    for (const el of /** @type {NodeListOf<HTMLElement>} */ (this.markers.childNodes)) {
      const t = Number(el.dataset.t);
      el.hidden = t < from || t > to;
      el.style.left = `${this.#percent(t, from, to)}%`;
    }
  }

  #placeHover() {
    const { from, to } = this.window();
    const on = Number.isFinite(this.hoverT) && this.hoverT >= from && this.hoverT <= to;
    this.hoverLine.hidden = !on;
    if (!on) return;
    this.hoverLine.style.left = `${this.#percent(this.hoverT, from, to)}%`;
    this.hoverLine.textContent = clockText(this.hoverT);
  }

  /** @param {number} t @param {number} from @param {number} to */
  #percent(t, from, to) {
    return Math.min(100, Math.max(0, ((t - from) / (to - from)) * 100));
  }

  /** @param {number} clientX */
  #timeAt(clientX) {
    const r = this.track.getBoundingClientRect();
    const { from, to } = this.window();
    return from + Math.min(1, Math.max(0, (clientX - r.left) / r.width)) * (to - from);
  }

  #bindTrack() {
    const { track, replay } = this;
    const usable = () => replay.available && !replay.followed;
    /** Seek while dragging, at most every DRAG_SEEK_MS, the last position always. @param {boolean} final */
    const seekDrag = (final) => {
      clearTimeout(this.dragTimer);
      const wait = DRAG_SEEK_MS - (performance.now() - this.lastDragSeek);
      if (!final && wait > 0) {
        this.dragTimer = setTimeout(() => seekDrag(false), wait);
        return;
      }
      this.lastDragSeek = performance.now();
      this.seek(this.dragT);
    };
    track.addEventListener('pointerdown', (e) => {
      if (!usable()) return;
      track.setPointerCapture(e.pointerId);
      this.dragT = this.#timeAt(e.clientX);
      this.render();
      seekDrag(false);
    });
    track.addEventListener('pointermove', (e) => {
      if (Number.isFinite(this.dragT)) {
        this.dragT = this.#timeAt(e.clientX);
        this.render();
        seekDrag(false);
      } else {
        this.showHover(this.#timeAt(e.clientX));
      }
    });
    const end = () => {
      if (!Number.isFinite(this.dragT)) return;
      seekDrag(true);
      this.dragT = NaN;
    };
    track.addEventListener('pointerup', end);
    track.addEventListener('pointercancel', end);
    track.addEventListener('pointerleave', () => this.showHover(NaN));
    track.addEventListener('keydown', (e) => {
      if (!usable()) return;
      const { from, to } = this.window();
      const page = (to - from) / 10;
      /** @type {Record<string, () => void>} */
      const keys = {
        ArrowLeft: () => this.step(-1), ArrowRight: () => this.step(1),
        PageUp: () => this.seek(this.current - page), PageDown: () => this.seek(this.current + page),
        Home: () => this.seek(from), End: () => replay.live(), ' ': () => this.togglePlay(),
      };
      const run = keys[e.key];
      if (!run) return;
      e.preventDefault();
      run();
    });
  }
}
