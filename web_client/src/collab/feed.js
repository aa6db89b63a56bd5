// The collaboration events of a session: they arrive as `events[]` of deltas (seq-numbered, exactly once,
// resumed after a reconnect; docs/PROTOCOL.md §11). Each module listens to the kinds it speaks.

/**
 * @param {import('../session.js').Session} session
 * @param {string[]} kinds event kinds, e.g. ["topic_created", "comment_added"]
 * @param {(kind: string, event: import('../protocol.js').TwinEvent) => void} handler
 */
export function onCollab(session, kinds, handler) {
  const wanted = new Set(kinds);
  session.state.addEventListener('delta', (e) => {
    for (const ev of /** @type {import('../state.js').DeltaEvent} */ (e).detail.delta.events ?? []) {
      if (wanted.has(ev.kind)) handler(ev.kind, ev);
    }
  });
}

/**
 * Errors the server answered to one of our collaboration messages (`ref` names the message type).
 * `handler` returns true when it showed the error where it happened: the page then adds no notice.
 * @param {import('../session.js').Session} session
 * @param {string[]} refs @param {(err: import('../protocol.js').ServerError) => boolean} handler
 */
export function onCollabError(session, refs, handler) {
  const wanted = new Set(refs);
  session.addEventListener('servererror', (e) => {
    const err = /** @type {import('../session.js').SessionEvent<'servererror'>} */ (e).detail;
    if (wanted.has(err.ref ?? '') && handler(err)) e.preventDefault();
  });
}
