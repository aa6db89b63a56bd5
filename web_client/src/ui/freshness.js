// Trust in live data. Every element that shows live values names them (`markLive(el, ["element/prop", …])`:
// a property's value cell, an alarm's value, a label on the model), and this module keeps three attributes of
// it current — every second, after every delta and whenever the connection changes — which styles.css draws:
//   data-age    how old the value is ("12 s", "3 min"): since its source time, on the server's clock
//   data-stale  why it cannot be trusted now, when it cannot: "server disconnected" (this viewer lost the
//               server), "no data for 7 min" (the server says the source has been silent for longer than its
//               binding's stale_after); the element is then greyed
//   data-q      "uncertain" or "bad" when the source says so (absent when good): a badge and a style
// With several values (a label made of two), the oldest, the silent one and the worst quality count.
import { splitKey } from '../protocol.js';

// Ages are shown to the second at first: refresh them this often.
export const AGE_TICK_MS = 1000;
const CONNECTED = new Set(['live', 'resynced']);
/** @type {Record<string, number>} */
const QUALITY_RANK = { good: 0, uncertain: 1, bad: 2 };
export const DISCONNECTED = 'server disconnected';

/** @typedef {{ageS: number, reason: string, quality: string, since: number}} Trust the state of some live values:
 *  age (s) of the oldest, why they cannot be trusted ("" = they can), the worst quality, the oldest source time (s) */

/** @type {WeakMap<Element, string[]>} what each marked element shows */
const marked = new WeakMap();
/** @type {Freshness|null} the page's (there is one session) */
let current = null;

/**
 * Say which live values `el` shows ("element/prop" keys); an empty list unmarks it. Its attributes follow at once.
 * @param {HTMLElement} el @param {string[]} keys
 */
export function markLive(el, keys) {
  if (!keys.length) {
    marked.delete(el);
    delete el.dataset.live;
    for (const a of ['age', 'stale', 'q']) delete el.dataset[a];
    return;
  }
  marked.set(el, keys);
  el.dataset.live = '';
  current?.schedule();
}

/** "12 s", "4 min", "2 h", "3 d": coarse enough to read at a glance. @param {number} s */
export function formatAge(s) {
  const t = Math.max(0, s);
  if (t < 60) return `${Math.floor(t)} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min`;
  if (t < 86400) return `${Math.floor(t / 3600)} h`;
  return `${Math.floor(t / 86400)} d`;
}

export class Freshness extends EventTarget {
  /**
   * @param {import('../session.js').Session} session
   * @param {import('../state.js').TwinState} state
   * @param {ParentNode} [root] where marked elements are looked for
   */
  constructor(session, state, root = document) {
    super();
    this.session = session;
    this.state = state;
    this.root = root;
    this.pending = false;
    current = this;
    const soon = () => this.schedule();
    state.addEventListener('delta', soon);
    state.addEventListener('reset', soon);
    session.addEventListener('status', soon);
    setInterval(() => this.refresh(), AGE_TICK_MS);
  }

  /** Whether this viewer has lost the server (its values are the last it knew). */
  get disconnected() {
    return Boolean(this.session.welcome) && !CONNECTED.has(this.session.status);
  }

  /** Now on the server's clock (s), which source times are closest to; while a replay shows the past, its moment
   * (the server marks values stale as of it: "no data for 7 min" then, not since). */
  now() {
    if (this.state.replaying && Number.isFinite(this.state.asOf)) return this.state.asOf;
    return (Date.now() + this.session.clockOffsetMs) / 1000;
  }

  /**
   * How far to trust some live values; null when none of them has a value yet.
   * @param {string[]} keys "element/prop"
   * @returns {Trust|null}
   */
  trust(keys) {
    const now = this.now();
    let since = Infinity;
    let silentSince = Infinity;
    let quality = 'good';
    for (const key of keys) {
      const [id, prop] = splitKey(key, '/');
      const st = this.state.props.get(id)?.get(prop);
      if (!st) continue;
      since = Math.min(since, st.ts);
      if (typeof st.silent_since === 'number') silentSince = Math.min(silentSince, st.silent_since);
      const q = st.q ?? 'good';
      if ((QUALITY_RANK[q] ?? 0) > (QUALITY_RANK[quality] ?? 0)) quality = q;
    }
    if (since === Infinity) return null;
    const reason = this.disconnected ? DISCONNECTED
      : silentSince < Infinity ? `no data for ${formatAge(now - silentSince)}` : '';
    return { ageS: Math.max(0, now - since), reason, quality, since };
  }

  /** Refresh the marked elements once the current task is done (after every listener of a delta has run). */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => this.refresh());
  }

  refresh() {
    this.pending = false;
    for (const el of /** @type {NodeListOf<HTMLElement>} */ (this.root.querySelectorAll('[data-live]'))) {
      const keys = marked.get(el);
      const trust = keys ? this.trust(keys) : null;
      if (!trust) {
        for (const a of ['age', 'stale', 'q']) delete el.dataset[a];
        continue;
      }
      el.dataset.age = formatAge(trust.ageS);
      setData(el, 'stale', trust.reason);
      setData(el, 'q', trust.quality === 'good' ? '' : trust.quality);
      el.title = describe(trust);
    }
    this.dispatchEvent(new CustomEvent('refresh'));
  }

  /**
   * Keep the labels on the model marked with the values they are made of (`Visual.label_props`).
   * @param {import('../labels.js').Labels} labels @param {AbortSignal} [signal]
   */
  bindLabels(labels, signal) {
    const mark = () => {
      for (const [key, tag] of labels.tags) {
        if (!key.startsWith('el:')) continue;
        markLive(tag.el, this.state.visuals.get(key.slice(3))?.label_props ?? []);
      }
    };
    // After TwinView, which creates and removes the tags on the same events.
    const later = () => queueMicrotask(mark);
    this.state.addEventListener('delta', later, { signal });
    this.state.addEventListener('reset', later, { signal });
    later();
  }
}

/** @param {HTMLElement} el @param {string} name @param {string} value "" removes it */
function setData(el, name, value) {
  if (value) el.dataset[name] = value;
  else delete el.dataset[name];
}

/** The tooltip: what the value is worth, in words. @param {Trust} t */
function describe(t) {
  const at = new Date(t.since * 1000).toLocaleTimeString();
  const parts = [t.reason ? `Not current: ${t.reason}` : `Value since ${at} (${formatAge(t.ageS)} ago)`];
  if (t.reason) parts.push(`value since ${at}`);
  if (t.quality !== 'good') parts.push(`quality ${t.quality}`);
  return parts.join(' · ');
}
