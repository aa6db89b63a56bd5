// TwinView protocol v1 (docs/PROTOCOL.md, viewer_server/protocol.py): message builders and key helpers.
// The client speaks JSON over the `twinview.v1` subprotocol; unknown fields are ignored, as the spec asks.

export const PROTOCOL_VERSION = 1;
export const SUBPROTOCOL = 'twinview.v1';
export const CLIENT_NAME = 'twinview-web';
export const CLIENT_VERSION = '0.1.0';

// Close codes the client reacts to (see protocol.py).
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_VERSION = 4001;
export const CLOSE_AUTH = 4003; // missing, bad or expired session token
export const CLOSE_NAME = 4009; // hello.name cannot be used (a role, someone else's name): ask for another
// The `reason` of the snapshot that answers `live`: the end of a replay (§14), not a failed resume.
export const RESYNC_LIVE = 'live';

/**
 * The protocol's types, generated from viewer_server/protocol.py into protocol_types.d.ts (docs/CLIENT.md):
 * the client reads and writes frames through these, and `npm run typecheck` holds it to them.
 * @typedef {import('./protocol_types').ClientMessage} ClientMessage
 * @typedef {import('./protocol_types').ServerMessage} ServerMessage
 * @typedef {import('./protocol_types').Hello} Hello
 * @typedef {import('./protocol_types').Subscribe} Subscribe
 * @typedef {import('./protocol_types').Interest} Interest
 * @typedef {import('./protocol_types').ChangeInterest} ChangeInterest
 * @typedef {import('./protocol_types').PresenceUpdate} PresenceUpdate
 * @typedef {import('./protocol_types').Ping} Ping
 * @typedef {import('./protocol_types').Welcome} Welcome
 * @typedef {import('./protocol_types').Snapshot} Snapshot
 * @typedef {import('./protocol_types').Delta} Delta
 * @typedef {import('./protocol_types').Error} ServerError an `error` frame
 * @typedef {import('./protocol_types').Event} TwinEvent one of a delta's `events`
 * @typedef {import('./protocol_types').Resume} Resume
 * @typedef {import('./protocol_types').PropState} PropState
 * @typedef {import('./protocol_types').Transform} Transform in the element's frame; rotate is [axis x, y, z, degrees]
 * @typedef {import('./protocol_types').Visual} Visual every field optional: absent = the model's own look
 * @typedef {import('./protocol_types').Pose} Pose
 * @typedef {import('./protocol_types').Presence} Presence
 * @typedef {import('./protocol_types').Alarm} Alarm
 * @typedef {import('./protocol_types').AlarmAck | import('./protocol_types').AlarmShelve | import('./protocol_types').AlarmUnshelve
 *   | import('./protocol_types').AlarmOutOfService | import('./protocol_types').AlarmInService} AlarmRequest
 * @typedef {import('./protocol_types').PresenterState} PresenterState
 * @typedef {import('./protocol_types').ProcedureRun} ProcedureRun
 * @typedef {import('./protocol_types').StepInfo} StepInfo
 * @typedef {import('./protocol_types').StepDone} StepDone
 * @typedef {import('./protocol_types').ProcedureControl} ProcedureControl
 * @typedef {import('./protocol_types').StepComplete} StepComplete
 * @typedef {import('./protocol_types').Topic} Topic
 * @typedef {import('./protocol_types').Measurement} Measurement a viewpoint's: distance, angle or area, model coordinates
 * @typedef {import('./protocol_types').TopicDraft} TopicDraft
 * @typedef {import('./protocol_types').TopicCreate} TopicCreate
 * @typedef {import('./protocol_types').CommentAdd} CommentAdd
 * @typedef {import('./protocol_types').TopicUpdate} TopicUpdate
 * @typedef {import('./protocol_types').Comment} Comment
 * @typedef {import('./protocol_types').Pin} Pin
 * @typedef {import('./protocol_types').Viewpoint} Viewpoint
 * @typedef {import('./protocol_types').Vec3} Vec3
 * @typedef {import('./protocol_types').Replay} Replay
 * @typedef {import('./protocol_types').ReplayDelta} ReplayDelta
 * @typedef {import('./protocol_types').HistoryRange} HistoryRange
 * @typedef {import('./protocol_types').Seek | import('./protocol_types').Play | import('./protocol_types').Pause
 *   | import('./protocol_types').Live} ReplayRequest
 */

/**
 * @param {{client: string, name?: string, layer?: (string|null), resume?: (Resume|null), session?: (string|null),
 *          token?: (string|null), interest?: (Interest|null)}} opts
 */
export function hello({ client, name = '', layer = null, resume = null, session = null, token = null, interest = null }) {
  /** @type {Hello} */
  const msg = { type: 'hello', client, client_version: CLIENT_VERSION, protocol: PROTOCOL_VERSION, role: 'viewer' };
  if (name) msg.name = name;
  if (layer) msg.layer = layer;
  if (resume) msg.resume = resume;
  if (session) msg.session = session;
  if (token) msg.token = token;
  if (interest) msg.interest = interest;
  return msg;
}

/** @param {string} layer @returns {Subscribe} */
export const subscribe = (layer) => ({ type: 'subscribe', layer });

/** @param {Interest|null} interest @returns {ChangeInterest} */
export const interest = (interest) => ({ type: 'interest', interest });

/** @param {Pose} pose @returns {PresenceUpdate} */
export const presence = (pose) => ({ type: 'presence', pose });

/** @returns {Ping} */
export const ping = () => ({ type: 'ping', t: performance.now() });

/**
 * Split a composite key ("element/prop", "element@layer") at its last separator, as the spec says.
 * @param {string} key @param {string} sep
 * @returns {[string, string]}
 */
export function splitKey(key, sep) {
  const i = key.lastIndexOf(sep);
  return i < 0 ? [key, ''] : [key.slice(0, i), key.slice(i + 1)];
}

/**
 * The WebSocket URL of the server that served this page.
 * @param {Location} loc
 */
export function wsUrl(loc) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}
