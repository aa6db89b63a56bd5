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

/**
 * @typedef {{epoch: string, seq: number}} Resume
 * @typedef {{v: (boolean|number|string|null), ts: number, q?: (string|null)}} PropState
 * @typedef {{translate?: number[], rotate?: number[], scale?: number[]}} Transform in the element's frame;
 *   rotate is [axis x, y, z, degrees]
 * @typedef {{color?: (string|null), status?: (string|null), visible?: (boolean|null), transform?: (Transform|null),
 *            label?: (string|null), anomaly?: (boolean|null)}} Visual every field optional: absent = the model's own look
 * @typedef {{position: number[], quaternion: number[], ray_origin?: number[], ray_direction?: number[], device?: 'browser'|'xr'}} Pose
 * @typedef {{client: string, pose: Pose, ts: number}} Presence
 * @typedef {{seq: number, kind: string, id?: string, element: string, ts: number, prop?: string, source?: string,
 *            layer?: string, severity?: string, message?: string, value?: any}} Event
 * @typedef {{id?: string, element: string, since: number, prop?: string, source?: string, layer?: string,
 *            severity?: string, message?: string, value?: any}} Alarm
 */

/**
 * @param {{client: string, layer?: (string|null), resume?: (Resume|null), session?: (string|null), token?: (string|null)}} opts
 */
export function hello({ client, layer = null, resume = null, session = null, token = null }) {
  /** @type {Record<string, any>} */
  const msg = { type: 'hello', client, client_version: CLIENT_VERSION, protocol: PROTOCOL_VERSION, role: 'viewer' };
  if (layer) msg.layer = layer;
  if (resume) msg.resume = resume;
  if (session) msg.session = session;
  if (token) msg.token = token;
  return msg;
}

/** @param {string} layer */
export const subscribe = (layer) => ({ type: 'subscribe', layer });

/** @param {Pose} pose */
export const presence = (pose) => ({ type: 'presence', pose });

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
