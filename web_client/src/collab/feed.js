// The collaboration messages of a session, whichever way the server sends them: as messages of their
// own type (answers, and events to the connected) or as `events[]` of a delta (seq-numbered, resumed).
// Each module listens to the kinds it speaks and gets `(kind, body)`.

/**
 * @param {import('../session.js').Session} session
 * @param {string[]} kinds message types / event kinds, e.g. ["topic_created", "comment_added"]
 * @param {(kind: string, body: any) => void} handler
 */
export function onCollab(session, kinds, handler) {
  const wanted = new Set(kinds);
  session.addEventListener('message', (e) => {
    const msg = /** @type {CustomEvent} */ (e).detail;
    if (wanted.has(msg.type)) handler(msg.type, msg);
  });
  session.state.addEventListener('delta', (e) => {
    for (const ev of /** @type {CustomEvent} */ (e).detail.delta.events ?? []) {
      if (wanted.has(ev.kind)) handler(ev.kind, ev);
    }
  });
}

/**
 * Errors the server answered to one of our collaboration messages (`ref` names the message type).
 * @param {import('../session.js').Session} session
 * @param {string[]} refs @param {(err: {code: string, message: string, ref?: string}) => void} handler
 */
export function onCollabError(session, refs, handler) {
  const wanted = new Set(refs);
  session.addEventListener('servererror', (e) => {
    const err = /** @type {CustomEvent} */ (e).detail;
    if (wanted.has(err.ref)) handler(err);
  });
}
