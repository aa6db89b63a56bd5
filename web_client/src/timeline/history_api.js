// The historian over REST (docs/PROTOCOL.md §14): series of properties over a time span (raw samples, or
// min/max/mean/last per bucket when the span holds more than asked for), the events on a span (alarms,
// topics, commands: the timeline's markers) and the stored range. Answers are checked before use: a series
// whose arrays disagree in length, or a time that is not a finite number, is dropped, not drawn.

// Properties on one chart: a chart is read at a glance.
export const MAX_KEYS = 8;
// Keys and points in one request: the server's bounds (viewer_server/history_api.py).
export const KEYS_PER_REQUEST = 32;
export const MAX_POINTS = 5000;
// Events drawn on the timeline at once (the newest win): beyond this the markers are a smear.
export const MAX_EVENTS = 2000;

/**
 * @typedef {{key: string, element: string, name: string, prop: string, unit: string,
 *            t: number[], min: (number|null)[], max: (number|null)[], mean: (number|null)[], last: (number|null)[]}} Series
 *   one property's history: bucket times (Unix s) and per bucket its min, max, mean and last value (the same
 *   number four times for raw samples); null where a bucket holds no number
 * @typedef {{series: Series[], resolution: number}} SeriesAnswer `resolution`: seconds per bucket (0 = raw samples)
 * @typedef {{t: number, kind: string, text: string, element: string, name: string}} HistoryEvent
 * @typedef {{earliest: number, latest: number}} HistoryRange
 */

/** The historian's key of an element's property. @param {string} element @param {string} prop */
export const historyKey = (element, prop) => `${element}.${prop}`;

/**
 * The historian's REST reads, with the join link's token when there is one (the server shows a session's
 * events only to its members, and checks `history.read` against the token's role).
 * @param {() => string|null} token
 */
export function historyApi(token) {
  /** @param {string} url @param {AbortSignal} [signal] */
  const getJson = async (url, signal) => {
    const bearer = token();
    const res = await fetch(url, { signal, headers: bearer ? { Authorization: `Bearer ${bearer}` } : {} });
    if (!res.ok) {
      let why = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        why = body?.detail || body?.error || why;
      } catch {
        // not JSON: the status says enough
      }
      throw new Error(`The history could not be read (${why}).`);
    }
    return res.json();
  };
  return {
    /**
     * @param {string[]} keys @param {number} from @param {number} to @param {number} points how many buckets at most
     * @param {AbortSignal} [signal]
     * @returns {Promise<SeriesAnswer>}
     */
    async series(keys, from, to, points, signal) {
      const q = new URLSearchParams({ keys: keys.join(','), from: String(from), to: String(to),
        points: String(Math.min(MAX_POINTS, Math.max(2, Math.round(points)))) });
      const body = await getJson(`/api/history?${q}`, signal);
      const series = Array.isArray(body?.series) ? body.series.map(checkSeries).filter(Boolean) : [];
      return { series: /** @type {Series[]} */ (series), resolution: finite(body?.resolution) ?? 0 };
    },

    /**
     * @param {number} from @param {number} to @param {AbortSignal} [signal]
     * @returns {Promise<HistoryEvent[]>} oldest first
     */
    async events(from, to, signal) {
      const body = await getJson(`/api/history/events?${new URLSearchParams({ from: String(from), to: String(to) })}`, signal);
      /** @type {HistoryEvent[]} */
      const events = [];
      for (const e of Array.isArray(body?.events) ? body.events : []) {
        const t = finite(e?.t);
        if (t === null || typeof e.kind !== 'string') continue;
        events.push({ t, kind: e.kind, text: typeof e.text === 'string' ? e.text : '',
          element: typeof e.element === 'string' ? e.element : '', name: typeof e.element_name === 'string' ? e.element_name : '' });
      }
      events.sort((a, b) => a.t - b.t);
      return events.slice(-MAX_EVENTS);
    },

    /** @param {AbortSignal} [signal] @returns {Promise<HistoryRange|null>} null while nothing is stored */
    async range(signal) {
      const body = await getJson('/api/history/range', signal);
      const earliest = finite(body?.earliest);
      const latest = finite(body?.latest);
      return earliest === null || latest === null ? null : { earliest, latest: Math.max(earliest, latest) };
    },
  };
}

/** @typedef {ReturnType<typeof historyApi>} HistoryApi */

/** @param {unknown} v @returns {number|null} */
function finite(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** @param {any} s @returns {Series|null} */
function checkSeries(s) {
  if (!s || typeof s.key !== 'string' || !Array.isArray(s.t)) return null;
  const n = s.t.length;
  const column = (/** @type {unknown} */ c) => (Array.isArray(c) && c.length === n ? c.map(finite) : null);
  const t = column(s.t);
  const [min, max, mean, last] = [column(s.min), column(s.max), column(s.mean), column(s.last)];
  if (!t || t.includes(null) || !min || !max || !mean || !last) return null;
  return { key: s.key, element: String(s.element ?? ''), name: String(s.element_name || s.element || s.key), prop: String(s.prop ?? ''),
    unit: typeof s.unit === 'string' ? s.unit : '', t: /** @type {number[]} */ (t), min, max, mean, last };
}
