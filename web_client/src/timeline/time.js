// Moments as people read them: the local wall clock, with the date when it is not today's.

/** "10:42:13", or "3 Dec 10:42:13" on another day. @param {number} t Unix s @param {number} [now] Unix s */
export function clockText(t, now = Date.now() / 1000) {
  const d = new Date(t * 1000);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (new Date(now * 1000).toDateString() === d.toDateString()) return time;
  return `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`;
}

/** "45 s", "12 min", "3 h", "2 d": a span. @param {number} s */
export function spanText(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}
