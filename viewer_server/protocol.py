"""TwinView protocol v1: every WebSocket message, and its limits. The single source of truth.

`docs/PROTOCOL.md` describes these types one to one; `docs/protocol.schema.json` is generated from
them (`schema()`), and a test keeps the file current. Messages are msgspec Structs tagged by their
`type` field; unknown fields are ignored so that minor additions stay compatible within v1.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

# The visual of an element on a layer is defined by the rules engine; re-exported as part of v1.
from scene.rules import Transform as Transform
from scene.rules import Visual as Visual

PROTOCOL_VERSION: Final = 1
SUBPROTOCOL_JSON: Final = "twinview.v1"
SUBPROTOCOL_MSGPACK: Final = "twinview.v1.msgpack"
# Subprotocol -> encoding name; the order is the server's preference when a client offers several.
SUBPROTOCOLS: Final = {SUBPROTOCOL_JSON: "json", SUBPROTOCOL_MSGPACK: "msgpack"}
Encoding = Literal["json", "msgpack"]
Role = Literal["viewer", "publisher"]

# A client frame larger than this is refused with close 1009; deltas are small, batches are bounded.
MAX_MESSAGE_BYTES: Final = 1 << 20
# One publish/ingest batch; bigger ones are refused whole (reason "batch_too_large"): an answer
# with per-reading rejections stays small, and one producer's burst stays under ~100 ms of work.
MAX_BATCH_READINGS: Final = 5000
# A client must say hello within this time, or the connection is closed (1008).
HELLO_TIMEOUT_S: Final = 10.0

# Close codes (see docs/PROTOCOL.md "Errors and close codes").
CLOSE_GOING_AWAY: Final = 1001  # server shutting down; reconnect and resume
CLOSE_POLICY: Final = 1008  # protocol violation: no hello first, wrong frame kind for the encoding
CLOSE_TOO_BIG: Final = 1009  # frame larger than MAX_MESSAGE_BYTES
CLOSE_VERSION: Final = 4001  # no common protocol version; the reason names both sides

# Error codes sent in `error` frames; the connection stays open after them.
ERR_BAD_MESSAGE: Final = "bad_message"  # undecodable, unknown type or bad fields
ERR_UNKNOWN_LAYER: Final = "unknown_layer"
ERR_NOT_PUBLISHER: Final = "not_publisher"  # publish on a session whose hello role was not publisher
ERR_BATCH_TOO_LARGE: Final = "batch_too_large"
ERR_DUPLICATE_HELLO: Final = "duplicate_hello"


class Base(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Common base: the `type` tag names the message."""


# --- shared payloads ---------------------------------------------------------------------------


class Resume(msgspec.Struct):
    """Where a reconnecting client left off: the server epoch and the last seq it applied."""

    epoch: str
    seq: int


class Reading(msgspec.Struct, omit_defaults=True):
    """One measurement from a producer: by binding `key`, or directly by `element` + `prop`.

    `ts` is seconds since the Unix epoch (server receive time if omitted).
    """

    value: bool | int | float | str
    key: str | None = None
    element: str | None = None
    prop: str | None = None
    ts: float | None = None
    unit: str | None = None
    quality: Literal["good", "uncertain", "bad"] | None = None


class Rejection(msgspec.Struct, omit_defaults=True):
    """Why reading number `index` of a batch was refused. `reason` is one of REJECT_REASONS."""

    index: int
    reason: str
    detail: str = ""


class PropState(msgspec.Struct, omit_defaults=True):
    """The current value of one element property: value, source timestamp, unit, quality."""

    v: bool | int | float | str
    ts: float
    u: str = ""
    q: Literal["good", "uncertain", "bad"] = "good"


class Pose(msgspec.Struct, omit_defaults=True):
    """A user's viewpoint: camera position (m) and orientation (x, y, z, w), optional pointer ray."""

    position: tuple[float, float, float]
    quaternion: tuple[float, float, float, float]
    ray_origin: tuple[float, float, float] | None = None
    ray_direction: tuple[float, float, float] | None = None


class Presence(msgspec.Struct, omit_defaults=True):
    """Another session's presence as seen by everyone in the scene."""

    client: str
    pose: Pose
    ts: float


class Event(msgspec.Struct, omit_defaults=True):
    """Something that happened; delivered exactly once, in seq order, never coalesced.

    kind "alarm_raised" (also when an active alarm changes severity: same `id`) or "alarm_cleared".
    `element` shows the alarm; `source` is the element whose property triggered it.
    """

    seq: int
    kind: str
    id: str
    element: str
    ts: float
    prop: str = ""
    source: str = ""
    layer: str = ""
    severity: str = ""
    message: str = ""
    value: bool | int | float | str | None = None


class Alarm(msgspec.Struct, omit_defaults=True):
    """An alarm that is currently raised (part of the snapshot state): its latest raise."""

    id: str
    element: str
    since: float
    prop: str = ""
    source: str = ""
    layer: str = ""
    severity: str = ""
    message: str = ""
    value: bool | int | float | str | None = None


# --- client -> server --------------------------------------------------------------------------


class Hello(Base, tag="hello"):
    """First message of every connection."""

    client: str
    client_version: str
    protocol: int = PROTOCOL_VERSION
    role: Role = "viewer"
    layer: str | None = None  # None: the scene's default layer
    resume: Resume | None = None


class Subscribe(Base, tag="subscribe"):
    """Switch this session to another layer; answered with a snapshot of that layer."""

    layer: str


class Publish(Base, tag="publish"):
    """Readings from a publisher session; answered with `ack` carrying the same `ref`."""

    readings: list[Reading]
    ref: str | None = None


class PresenceUpdate(Base, tag="presence"):
    """This session's current pose (heartbeat); fanned out as presence state, coalesced per session."""

    pose: Pose


class Ping(Base, tag="ping"):
    t: float | None = None


ClientMessage = Hello | Subscribe | Publish | PresenceUpdate | Ping


# --- server -> client --------------------------------------------------------------------------


class Welcome(Base, tag="welcome"):
    session_id: str
    server_epoch: str  # changes on every server start: a different epoch means "resync"
    seq: int  # the scene's latest seq at connect time
    server_version: str
    protocol: int
    encoding: Encoding
    scene: str
    layer: str
    layers: list[str]
    capabilities: list[str]
    limits: dict[str, int | float]


class Snapshot(Base, tag="snapshot"):
    """The full state of the session's layer as of `seq`; replaces everything the client held.

    `resync` is true when this snapshot replaces a resume that was not possible (`reason` says why).
    props are keyed "element/prop"; visuals are keyed by element (for `layer`)."""

    seq: int
    epoch: str
    scene: str
    layer: str
    glb_url: str
    manifest_url: str
    props: dict[str, PropState]
    visuals: dict[str, Visual]
    alarms: list[Alarm]
    presence: dict[str, Presence] = {}
    resync: bool = False
    reason: str | None = None


class Delta(Base, tag="delta"):
    """Changes with seq in [first, last]; after applying it the client holds the state as of `last`.

    props keyed "element/prop"; visuals keyed "element@layer"; presence keyed by session id
    (null = the session left). Keys are split at their last "/" or "@"."""

    first: int
    last: int
    props: dict[str, PropState] = {}
    visuals: dict[str, Visual] = {}
    presence: dict[str, Presence | None] = {}
    events: list[Event] = []


class Ack(Base, tag="ack"):
    """Answer to `publish`: how many readings were accepted, and why the others were not."""

    accepted: int
    rejected: list[Rejection]
    ref: str | None = None


class Error(Base, tag="error"):
    """A message could not be handled; the connection stays open. `ref` echoes the offending type."""

    code: str
    message: str
    ref: str | None = None


class Pong(Base, tag="pong"):
    t: float | None
    server_time: float


ServerMessage = Welcome | Snapshot | Delta | Ack | Error | Pong

# Reasons a reading is refused; counted per reason in /api/health.
REJECT_REASONS: Final = (
    "unknown_element",  # element id not in the scene manifest
    "unbound_key",  # key matches no binding
    "unknown_property",  # neither a bound property nor addressed by element + prop
    "not_numeric",  # a numeric binding got a string
    "not_finite",  # NaN or infinity
    "future_timestamp",  # ts more than FUTURE_TOLERANCE_S ahead of the server clock
    "out_of_range",  # outside the binding's plausible range
    "batch_too_large",  # more than MAX_BATCH_READINGS in one batch
    "malformed",  # neither key nor element + prop, or not decodable
    "unbound_topic",  # (MQTT) no binding matches the topic
)
# A reading stamped this far ahead of the server clock is refused: clocks drift, but not by minutes.
FUTURE_TOLERANCE_S: Final = 60.0


# --- encoding ----------------------------------------------------------------------------------

_json_enc = msgspec.json.Encoder()
_msgpack_enc = msgspec.msgpack.Encoder()
_json_dec = msgspec.json.Decoder(ClientMessage)
_msgpack_dec = msgspec.msgpack.Decoder(ClientMessage)
_json_srv_dec = msgspec.json.Decoder(ServerMessage)
_msgpack_srv_dec = msgspec.msgpack.Decoder(ServerMessage)


def encode(msg: Any, encoding: Encoding) -> bytes:
    """Encode a message (or any msgspec-encodable value) in the session's encoding."""
    return _json_enc.encode(msg) if encoding == "json" else _msgpack_enc.encode(msg)


def decode_client(data: bytes | str, encoding: Encoding) -> ClientMessage:
    """Decode a client message; raises msgspec.DecodeError / ValidationError with a readable text."""
    return _json_dec.decode(data) if encoding == "json" else _msgpack_dec.decode(data)


def decode_server(data: bytes | str, encoding: Encoding) -> ServerMessage:
    return _json_srv_dec.decode(data) if encoding == "json" else _msgpack_srv_dec.decode(data)


def encoding_for(subprotocol: str | None) -> Encoding | None:
    return SUBPROTOCOLS.get(subprotocol or "")  # type: ignore[return-value]


def schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every message: `ClientMessage` and `ServerMessage` are the roots."""
    (client_ref, server_ref), components = msgspec.json.schema_components(
        [ClientMessage, ServerMessage], ref_template="#/$defs/{name}"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://twinview.dev/protocol/v1/schema.json",
        "title": f"TwinView protocol v{PROTOCOL_VERSION}",
        "description": "Messages of the TwinView WebSocket protocol; see docs/PROTOCOL.md.",
        "$defs": {**components, "ClientMessage": client_ref, "ServerMessage": server_ref},
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
    }


def schema_text() -> str:
    """docs/protocol.schema.json as written: stable key order, so a diff shows real changes."""
    import orjson

    return orjson.dumps(schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


if __name__ == "__main__":  # python -m viewer_server.protocol > docs/protocol.schema.json
    print(schema_text(), end="")
