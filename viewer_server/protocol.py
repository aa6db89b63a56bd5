"""TwinView protocol v1: every WebSocket message, and its limits. The single source of truth.

`docs/PROTOCOL.md` describes these types one to one; `docs/protocol.schema.json` is generated from
them (`schema()`), and so are the web client's TypeScript declarations (`typescript_text()`, written to
`web_client/src/protocol_types.d.ts`); tests keep both files current. Messages are msgspec Structs tagged
by their `type` field; unknown fields are ignored so that minor additions stay compatible within v1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from scene import json_schema
from scene.finite import Finite
from scene.json_schema import tidy
from scene.procedure_file import CompleteWhen, Watch

# The visual of an element on a layer is defined by the rules engine; re-exported as part of v1.
from scene.rules import Transform as Transform
from scene.rules import Visual as Visual
from viewer_server.permissions import Role as Role
from viewer_server.topics import Comment, Pin, Priority, Topic, TopicStatus, Viewpoint
from viewer_server.topics import Vec3 as Vec3  # re-exported: pins and viewpoints are built from it

PROTOCOL_VERSION: Final = 1
SUBPROTOCOL_JSON: Final = "twinview.v1"
SUBPROTOCOL_MSGPACK: Final = "twinview.v1.msgpack"
# Subprotocol -> encoding name; the order is the server's preference when a client offers several.
SUBPROTOCOLS: Final = {SUBPROTOCOL_JSON: "json", SUBPROTOCOL_MSGPACK: "msgpack"}
Encoding = Literal["json", "msgpack"]
T = TypeVar("T")

# A client frame larger than this is refused with close 1009; deltas are small, batches are bounded.
MAX_MESSAGE_BYTES: Final = 1 << 20
# One publish/ingest batch; bigger ones are refused whole (reason "batch_too_large"): an answer
# with per-reading rejections stays small, and one producer's burst stays under ~100 ms of work.
MAX_BATCH_READINGS: Final = 5000
# A client must say hello within this time, or the connection is closed (1008).
HELLO_TIMEOUT_S: Final = 10.0

# Close codes (see docs/PROTOCOL.md "Errors and close codes").
CLOSE_GOING_AWAY: Final = 1001  # server shutting down; reconnect and resume
CLOSE_POLICY: Final = 1008  # protocol violation: no hello first, wrong frame kind, refusals in a loop
CLOSE_TOO_BIG: Final = 1009  # frame larger than MAX_MESSAGE_BYTES
CLOSE_VERSION: Final = 4001  # no common protocol version; the reason names both sides
CLOSE_AUTH: Final = 4003  # no, a bad, an expired or another session's token; unknown session (reason says which)
CLOSE_NAME: Final = 4009  # hello.name cannot be used (a role, someone else's, the guest mark): choose another

# Error codes sent in `error` frames; the connection stays open after them.
ERR_BAD_MESSAGE: Final = "bad_message"  # undecodable, unknown type or bad fields
ERR_UNKNOWN_LAYER: Final = "unknown_layer"
ERR_BATCH_TOO_LARGE: Final = "batch_too_large"
ERR_DUPLICATE_HELLO: Final = "duplicate_hello"
ERR_FORBIDDEN: Final = "forbidden"  # the role may not do this (docs/PERMISSIONS.md); nothing changed
ERR_STALE_REVISION: Final = "stale_revision"  # edited at an old revision; `revision` is the current one
ERR_RATE_LIMITED: Final = "rate_limited"  # too many annotations per minute from this user, or refusals
ERR_TOO_LONG: Final = "too_long"  # a text or list over its limit; `field` names it
ERR_NOT_FOUND: Final = "not_found"  # no such topic / comment / attachment in this session
ERR_NOT_SAVED: Final = "not_saved"  # the store failed to commit: nothing changed, retry later
ERR_ALARM_STATE: Final = "alarm_state"  # the alarm's state does not allow this (e.g. acknowledged already)
ERR_STEP_MOVED: Final = "step_moved"  # procedure_control made at `from_step`, but the session moved meanwhile
ERR_OUT_OF_RANGE: Final = "out_of_range"  # seek / play before the oldest or after the newest history; `range` says it
ERR_BAD_SPEED: Final = "bad_speed"  # play speed outside [MIN_REPLAY_SPEED, MAX_REPLAY_SPEED]
ERR_NO_HISTORY: Final = "no_history"  # replay needs a server with a data dir (the historian)

# Longest display name a hello may ask for; the server keeps at most 64 characters of it (rooms.MAX_USER_NAME)
# after normalising, this leaves room for combining marks and spaces that normalisation removes.
MAX_HELLO_NAME: Final = 256
# Longest alarm id a request may name: ids are "<layer>.rules[<i>]", a layer name is at most 64 characters.
MAX_ALARM_ID: Final = 128
# Longest shelving: ISA-18.2 wants shelving time-limited; a day covers the longest shift and its handover.
MAX_SHELVE_MINUTES: Final = 24 * 60
# Longest reason for shelving or taking an alarm out of service: a sentence for the log, not a report.
MAX_ALARM_REASON: Final = 500

# Replay speeds (history time per wall-clock second): real time up to ~17 minutes of history per second.
MIN_REPLAY_SPEED: Final = 1.0
MAX_REPLAY_SPEED: Final = 1000.0
# `play` from live without `from` starts this far back: the ten minutes before now, an incident's usual run-up.
PLAY_DEFAULT_BACK_S: Final = 600.0

# The error code of each kind of broken annotation limit (`topics.TopicError.kind`).
TOPIC_ERROR_CODES: Final = {"invalid": ERR_BAD_MESSAGE, "too_long": ERR_TOO_LONG, "unknown": ERR_NOT_FOUND}


# Every float a client sends is finite (`scene.finite`): a NaN or ±inf fails decoding like a wrong type.
Point = tuple[Finite, Finite, Finite]

# Element ids one `interest` may list: what a client has loaded of a plant (a few tiles), not the plant; 20 000
# ids of ~25 bytes fit well within MAX_MESSAGE_BYTES. Longer ids than MAX_INTEREST_ID are no twin ids.
MAX_INTEREST_ELEMENTS: Final = 20_000
MAX_INTEREST_ID: Final = 512
InterestId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_INTEREST_ID)]


class Base(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Common base: the `type` tag names the message."""


# --- shared payloads ---------------------------------------------------------------------------


class Resume(msgspec.Struct):
    """Where a reconnecting client left off: the server epoch and the last seq it applied."""

    epoch: str
    seq: int


class Reading(msgspec.Struct, omit_defaults=True):
    """One measurement from a producer: by binding `key`, or directly by `element` + `prop`.

    `ts` is seconds since the Unix epoch (server receive time if omitted). `value` and `ts` are plain floats
    on purpose: a NaN or ±inf reading is refused alone (reason `not_finite` / `future_timestamp`), not its batch.
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
    """The current value of one element property: value, source time of its last change, unit, quality;
    `silent_since` is present while the source is stale (no sample for longer than its binding's
    `stale_after`): the server receive time of its last sample."""

    v: bool | int | float | str
    ts: float
    u: str = ""
    q: Literal["good", "uncertain", "bad"] = "good"
    silent_since: float | None = None


class Pose(msgspec.Struct, omit_defaults=True):
    """A user's viewpoint: camera position (m) and orientation (x, y, z, w), optional pointer ray, and
    the device: "xr" while in an immersive session (the position is then the head), else a browser."""

    position: Point
    quaternion: tuple[Finite, Finite, Finite, Finite]
    ray_origin: Point | None = None
    ray_direction: Point | None = None
    device: Literal["browser", "xr"] = "browser"


class Presence(msgspec.Struct, omit_defaults=True):
    """Another connection's presence as seen by everyone in its session: `client` is the display name (unique
    in the session; a visitor's ends in " (guest)"), `user` the verified identity (as in `Topic.author`),
    `role` what the server granted it (the People list and a trainer's progress table show it)."""

    client: str
    pose: Pose
    ts: float
    user: str = ""
    role: Role = "viewer"


AlarmState = Literal["normal", "unacknowledged", "acknowledged", "returned", "shelved", "out_of_service"]


class Alarm(msgspec.Struct, omit_defaults=True):
    """An alarm in the list (the snapshot's `alarms`; every alarm event carries it at its new state), with
    its ISA-18.2 state: `unacknowledged` (active), `acknowledged` (active), `returned` (to normal, not yet
    acknowledged), `shelved` or `out_of_service` (suppressed, `active` says whether the condition holds);
    `normal` (only in events) = it left the list. `element` shows it, `source`.`prop` triggered it."""

    id: str
    element: str
    since: float  # source time the condition became active
    prop: str = ""
    source: str = ""
    layer: str = ""
    severity: str = ""
    message: str = ""
    value: bool | int | float | str | None = None  # at the latest change of the condition
    unit: str = ""
    state: AlarmState = "unacknowledged"
    active: bool = True  # the condition holds now
    changed: float = 0.0  # time of the latest transition
    revision: int = 0  # transitions since it was raised
    returned: float | None = None  # source time the condition went back to normal (while it is not active)
    acknowledged_by: str = ""
    acknowledged_at: float | None = None
    suppressed_by: str = ""  # who shelved it or took it out of service
    suppressed_at: float | None = None
    shelved_until: float | None = None  # shelved: when it comes back by itself
    reason: str = ""  # why it was shelved or taken out of service


class Event(msgspec.Struct, omit_defaults=True):
    """Something that happened; delivered exactly once, in seq order, never coalesced.

    Alarm kinds (ALARM_EVENTS) carry the whole `alarm` at its new state, `user` who changed it ("" = the
    process, or the end of a shelving); `element` shows the alarm, `source` is the element whose property
    triggered it.
    Annotation kinds (ANNOTATION_EVENTS) carry the whole `topic` or `comment` at its new revision, `id`
    being its guid, `user` who changed it. An event with a `session` reaches only that session's clients.
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
    session: str = ""  # "" = the whole scene (alarms); else only the clients of this session
    user: str = ""
    topic: Topic | None = None
    comment: Comment | None = None
    # Procedure, presenter and command kinds (PROCEDURE_EVENTS, docs/PROTOCOL.md §11):
    procedure: str = ""  # procedure name; `id` is the run id
    step: int | None = None
    viewpoint: Viewpoint | None = None  # procedure_started / procedure_step: where followers fly to
    run: ProcedureRun | None = None  # procedure_started: the whole run, steps included
    command: str = ""  # command_sent
    point: Point | None = None  # markup_created
    alarm: Alarm | None = None  # alarm kinds: the alarm at its new state


# Event kinds of the alarm life cycle (viewer_server/alarms.py); each carries the whole alarm.
ALARM_EVENTS: Final = (
    "alarm_raised",  # the condition became active (or changed severity)
    "alarm_acknowledged",
    "alarm_returned",  # the condition went back to normal; the alarm stays listed (unacknowledged, or suppressed)
    "alarm_cleared",  # the condition went back to normal after it was acknowledged: the alarm leaves the list
    "alarm_shelved",
    "alarm_unshelved",  # by someone, or when the shelving time is up (user "")
    "alarm_out_of_service",
    "alarm_in_service",
)

# Event kinds of guided procedures and operator commands.
PROCEDURE_EVENTS: Final = ("procedure_started", "procedure_step", "step_completed", "procedure_finished")
COMMAND_EVENTS: Final = ("command_sent", "command_failed", "markup_created")

# Event kinds of the annotation service; each carries the full topic or comment.
ANNOTATION_EVENTS: Final = (
    "topic_created",
    "topic_updated",
    "topic_deleted",
    "comment_added",
    "comment_edited",
    "comment_deleted",
)


# --- multi-user sessions: procedures, presenter mode, operator commands (docs/PROTOCOL.md §11) ---


class StepInfo(msgspec.Struct, omit_defaults=True):
    """One step of the active procedure, as clients show it; `viewpoint.selected` = `highlight`."""

    id: str
    title: str
    instructions: str = ""
    highlight: list[str] = []
    viewpoint: Viewpoint | None = None
    watch: list[Watch] = []
    complete_when: CompleteWhen = "acknowledge"


class StepDone(msgspec.Struct, omit_defaults=True):
    """`user` completed `step` at `ts`; user "*" = for everyone, by the live twin (a value condition)."""

    step: int
    user: str
    ts: float
    element: str = ""  # the selected element (select condition)
    value: bool | int | float | str | None = None  # the live value that completed it (value condition)


class ProcedureRun(msgspec.Struct, omit_defaults=True):
    """A procedure run of the session: its steps, the current one, and every trainee's completions."""

    run: str
    name: str
    title: str
    step: int
    started: float
    by: str
    steps: list[StepInfo]
    completions: list[StepDone] = []
    finished: Literal["", "completed", "stopped"] = ""


class Hand(msgspec.Struct, omit_defaults=True):
    """A raised hand in the queue (oldest first): the identity `user`, its display `name`, its connection."""

    user: str
    session: str
    ts: float
    name: str = ""


class PresenterState(msgspec.Struct, omit_defaults=True):
    """Who presents (user "" = nobody), their current view, and the raise-hand queue."""

    presenter: str = ""
    session: str = ""
    viewpoint: Viewpoint | None = None
    ts: float = 0.0
    hands: list[Hand] = []


class ProcedureControl(Base, tag="procedure_control"):
    """Presenter/admin: start a procedure by name, move the session to another step, or stop."""

    action: Literal["start", "next", "back", "goto", "stop"]
    name: str | None = None  # for start
    step: int | None = None  # for goto
    # next / back / goto / stop: the step the client is on; refused `step_moved` if the session has moved since
    # (two presenters pressing "next" at once move it once)
    from_step: int | None = None


class StepComplete(Base, tag="step_complete"):
    """A trainee completed `step` (acknowledge; or select with the selected `element`)."""

    step: int
    element: str | None = None


class PresenterTake(Base, tag="presenter_take"):
    """Become the presenter (presenter/admin)."""


class PresenterRelease(Base, tag="presenter_release"):
    """End presenter mode (the presenter, or an admin)."""


class PresenterView(Base, tag="presenter_view"):
    """The presenter's current camera; throttled and coalesced by the server."""

    viewpoint: Viewpoint


class HandRaise(Base, tag="hand_raise"):
    """Join the raise-hand queue."""


class HandLower(Base, tag="hand_lower"):
    """Leave the queue; the presenter/admin may lower `session`'s hand, or all hands."""

    session: str | None = None
    all: bool = False


class Markup(Base, tag="markup"):
    """A quick pin with a short note; answered with `saved` carrying the same `ref`."""

    element: str
    point: Point
    note: str
    ref: str | None = None


class Command(Base, tag="command"):
    """Operator only: a command on an element from the bindings file's `commands` section."""

    element: str
    command: str
    value: Finite | None = None
    ref: str | None = None


class CommandAck(Base, tag="command_ack"):
    """Answer to `command`: `sent` once the broker acknowledged it (QoS 1), else `failed` with why."""

    status: Literal["sent", "failed"]
    detail: str
    element: str
    command: str
    ref: str | None = None


# --- client -> server --------------------------------------------------------------------------


class Interest(msgspec.Struct, omit_defaults=True):
    """What a client sees of the scene (capability `interest`): the elements whose own box meets `box`
    ([min, max] corners in metres, the manifest's world frame), and the elements listed in `elements`. Its
    snapshot and deltas then carry the props and visuals of those elements only; alarms, events, presence,
    topics and the presenter are not filtered. An element without geometry of its own (a storey, a bindings
    tag) is in the area only when listed. Both absent: the whole scene, as without an interest."""

    box: tuple[Point, Point] | None = None
    elements: Annotated[list[InterestId], msgspec.Meta(max_length=MAX_INTEREST_ELEMENTS)] | None = None

    def __post_init__(self) -> None:
        if self.box is not None and any(lo > hi for lo, hi in zip(*self.box, strict=True)):
            raise ValueError("interest.box is [min, max]: every coordinate of min must be <= that of max")


class Hello(Base, tag="hello"):
    """First message of every connection."""

    client: str
    client_version: str
    protocol: int = PROTOCOL_VERSION
    role: Role = "viewer"  # without a token: the role asked for (granted only as the session allows)
    layer: str | None = None  # None: the scene's default layer
    resume: Resume | None = None
    session: str | None = None  # None: the token's session, else the scene's default session
    token: str | None = None  # from the join link (?session=…&token=…); see viewer_server/auth.py
    # The display name asked for ("" = the token's name, else its user; a visitor: "Visitor"); a resuming
    # client sends the `welcome.name` it had, to keep it. Refused with close 4009 when it cannot be used (§12).
    name: Annotated[str, msgspec.Meta(max_length=MAX_HELLO_NAME)] = ""
    interest: Interest | None = None  # None: the whole scene (and for servers without capability `interest`)


class Subscribe(Base, tag="subscribe"):
    """Switch this session to another layer; answered with a snapshot of that layer."""

    layer: str


class ChangeInterest(Base, tag="interest"):
    """Change what this session sees (capability `interest`): answered with a snapshot of the new interest;
    `interest` null = the whole scene again."""

    interest: Interest | None = None


class Publish(Base, tag="publish"):
    """Readings from a publisher session; answered with `ack` carrying the same `ref`. With a data dir the ack
    is sent after the accepted readings are committed to the historian (`ack.durable`): an acknowledged
    reading survives kill -9 of the server (docs/PROTOCOL.md §8)."""

    readings: list[Reading]
    ref: str | None = None


class PresenceUpdate(Base, tag="presence"):
    """This session's current pose (heartbeat); fanned out as presence state, coalesced per session."""

    pose: Pose


class Ping(Base, tag="ping"):
    t: Finite | None = None


class TopicDraft(msgspec.Struct, omit_defaults=True):
    """A new topic as the client writes it; the server sets author, times and the pinned element's live
    values. `guid` may be chosen by the client (idempotent retries, BCF); `attachments` are ids from
    `POST /api/sessions/{id}/attachments`."""

    title: str
    description: str = ""
    pin: Pin | None = None
    topic_type: str = "Issue"
    status: TopicStatus = "open"
    priority: Priority = "normal"
    assignee: str | None = None
    labels: list[str] = []
    due_date: str | None = None
    viewpoints: list[Viewpoint] = []
    attachments: list[str] = []
    guid: str | None = None


class TopicCreate(Base, tag="topic_create"):
    """Create a topic (`topic.create`); answered with `saved`, and a `topic_created` event to everyone."""

    topic: TopicDraft
    ref: str | None = None


class TopicUpdate(Base, tag="topic_update"):
    """Change a topic known at `revision`; null fields stay as they are, "" clears assignee / due_date.
    title / description: own topics (`topic.edit_own`) or anyone's (`topic.moderate`); the rest:
    `topic.update`."""

    guid: str
    revision: int
    title: str | None = None
    description: str | None = None
    status: TopicStatus | None = None
    priority: Priority | None = None
    topic_type: str | None = None
    assignee: str | None = None
    labels: list[str] | None = None
    due_date: str | None = None
    ref: str | None = None


class TopicDelete(Base, tag="topic_delete"):
    """Withdraw a topic (own: `topic.delete_own`, anyone's: `topic.moderate`); kept, flagged deleted."""

    guid: str
    revision: int
    ref: str | None = None


class CommentAdd(Base, tag="comment_add"):
    """Comment on a topic (`comment.create`); `reply_to` threads it under another comment."""

    topic: str
    text: str
    reply_to: str | None = None
    viewpoint: str | None = None
    guid: str | None = None
    ref: str | None = None


class CommentEdit(Base, tag="comment_edit"):
    guid: str
    revision: int
    text: str
    ref: str | None = None


class CommentDelete(Base, tag="comment_delete"):
    guid: str
    revision: int
    ref: str | None = None


AlarmId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ALARM_ID)]
AlarmReason = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ALARM_REASON)]


class AlarmAck(Base, tag="alarm_ack"):
    """Acknowledge an unacknowledged or returned alarm (`alarm.acknowledge`); answered with `saved`."""

    id: AlarmId
    ref: str | None = None


class AlarmShelve(Base, tag="alarm_shelve"):
    """Shelve a listed alarm for `minutes` (`alarm.shelve`): it stays listed but does not ask for attention
    until someone unshelves it or the time is up; answered with `saved`."""

    id: AlarmId
    minutes: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHELVE_MINUTES)]
    reason: AlarmReason
    ref: str | None = None


class AlarmUnshelve(Base, tag="alarm_unshelve"):
    """End a shelving early (`alarm.shelve`); answered with `saved`."""

    id: AlarmId
    ref: str | None = None


class AlarmOutOfService(Base, tag="alarm_out_of_service"):
    """Take a listed alarm out of service until it is put back (`alarm.service`), e.g. while its instrument
    is repaired; answered with `saved`."""

    id: AlarmId
    reason: AlarmReason
    ref: str | None = None


class AlarmInService(Base, tag="alarm_in_service"):
    """Put an alarm that is out of service back (`alarm.service`); answered with `saved`."""

    id: AlarmId
    ref: str | None = None


AlarmRequest = AlarmAck | AlarmShelve | AlarmUnshelve | AlarmOutOfService | AlarmInService


# --- time machine: replay of the history (docs/PROTOCOL.md §14) ---------------------------------


class Seek(Base, tag="seek"):
    """Show the twin as of `t` (Unix seconds): answered with `replay` (paused at `t`), or `out_of_range`.
    A follower's own seek breaks away from the presenter's replay until it sends `live`."""

    t: Finite
    ref: str | None = None


class Play(Base, tag="play"):
    """Play the history from `from` (default: where the replay stands; from live, PLAY_DEFAULT_BACK_S ago) at
    `speed` × real time (MIN_REPLAY_SPEED…MAX_REPLAY_SPEED): `replay`, then `replay_delta`s in time order."""

    speed: Finite
    start: Finite | None = msgspec.field(default=None, name="from")
    ref: str | None = None


class Pause(Base, tag="pause"):
    """Stop playing; the twin stays as of the current `as_of` (answered with `replay`, `playing` false)."""

    ref: str | None = None


class Live(Base, tag="live"):
    """Back to the live stream: answered with a resync `snapshot` (reason "live"). A follower returns to
    following the presenter's replay, if one is running."""

    ref: str | None = None


ReplayRequest = Seek | Play | Pause | Live

# Procedures, presenter mode, raised hands, quick markup and operator commands (§11).
CollabRequest = (
    ProcedureControl | StepComplete | PresenterTake | PresenterRelease | PresenterView | HandRaise | HandLower
    | Markup | Command
)  # fmt: skip

AnnotationRequest = TopicCreate | TopicUpdate | TopicDelete | CommentAdd | CommentEdit | CommentDelete

ClientMessage = (
    Hello | Subscribe | ChangeInterest | Publish | PresenceUpdate | Ping | AnnotationRequest | CollabRequest
    | AlarmRequest | ReplayRequest
)  # fmt: skip


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
    session: str = ""  # the collaboration session (room) joined
    user: str = ""  # the verified identity: the token's user, else a new guest id ("guest-<12 hex>")
    role: Role = "viewer"  # what the server will allow (docs/PERMISSIONS.md)
    name: str = ""  # the display name others see (the token's `name`, else hello.name, else its user; §12)
    token: str = ""  # visitors only: send it as hello.token when reconnecting to keep this identity


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
    alarms: list[Alarm]  # every listed alarm (not normal), shelved and out-of-service ones included
    presence: dict[str, Presence] = {}
    alarm_history: list[Event] = []  # the latest alarm events (at most ALARM_HISTORY_MAX), oldest first
    resync: bool = False
    reason: str | None = None
    session: str = ""
    topics: list[Topic] = []  # every topic of the session (deleted ones flagged), oldest first
    comments: list[Comment] = []
    procedure: ProcedureRun | None = None  # the session's latest procedure run (late joiners land on its step)
    presenter: PresenterState | None = None  # the session's presenter, view and raised hands
    interest: Interest | None = None  # what props and visuals are limited to (hello.interest, watch); absent: all


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
    presenter: dict[str, PresenterState] = {}  # keyed by session (room) id: its newest presenter state


class HistoryRange(msgspec.Struct):
    """The times the history holds (Unix seconds); `earliest` is None while it is empty."""

    earliest: float | None
    latest: float


class Replay(Base, tag="replay"):
    """The twin as it was at `as_of` on the connection's layer; replaces everything the client held (like a
    snapshot) until `live`. props keyed "element/prop" (the last value at or before `as_of`), visuals keyed
    by element (the layer's rules applied to those values), `alarms` those listed at `as_of`, `topics` and
    `comments` of the session as they were. `driven_by`: the presenter's display name when the presenter's
    seek / play / pause put the client here. `ref` echoes the request's."""

    as_of: float
    speed: float
    playing: bool
    layer: str
    range: HistoryRange
    props: dict[str, PropState]
    visuals: dict[str, Visual]
    alarms: list[Alarm]
    topics: list[Topic] = []
    comments: list[Comment] = []
    driven_by: str | None = None
    ref: str | None = None


class ReplayDelta(Base, tag="replay_delta"):
    """While playing: what changed in the history up to `as_of` (one per ~33 ms of wall time, in time order).
    props keyed "element/prop", visuals keyed by element; `alarms`, when present, is the whole list at `as_of`;
    `events` are the recorded events since the previous frame, oldest first."""

    as_of: float
    props: dict[str, PropState] = {}
    visuals: dict[str, Visual] = {}
    alarms: list[Alarm] | None = None
    events: list[Event] = []
    playing: bool = True  # false on the last frame: the replay reached the newest history and paused
    driven_by: str | None = None
    # Live, not history: the session's presenter state when it changed (the view to follow while replaying).
    presenter: PresenterState | None = None


class Ack(Base, tag="ack"):
    """Answer to `publish`: how many readings were accepted, and why the others were not."""

    accepted: int
    rejected: list[Rejection]
    ref: str | None = None
    durable: bool = False  # the accepted readings are committed to disk (a server with a data dir)


class Error(Base, tag="error"):
    """A message could not be handled; the connection stays open. `ref` echoes the request's `ref`
    when it had one, else the offending message's type."""

    code: str
    message: str
    ref: str | None = None
    revision: int | None = None  # stale_revision: the current revision
    field: str | None = None  # too_long: the field over its limit
    range: HistoryRange | None = None  # out_of_range: the times the history holds


class Saved(Base, tag="saved"):
    """Answer to an annotation or alarm request, sent after the change is committed to disk: `seq` is its
    event; for an alarm, `guid` is its id and `revision` the alarm's."""

    ref: str | None
    kind: str
    guid: str
    revision: int
    seq: int


class Pong(Base, tag="pong"):
    t: Finite | None
    server_time: float


class Status(Base, tag="status"):
    """The server's health as it concerns the client (PROTOCOL.md §16): `degraded` while the shared bus of a
    deployment of several processes is unreachable — what is shown stays readable, changes are refused
    (`not_saved`) and no live update arrives; `ok` again once it is back. Sent when it changes, and after
    `welcome` while degraded."""

    state: Literal["ok", "degraded"]
    message: str = ""


ServerMessage = Welcome | Snapshot | Delta | Ack | Error | Pong | Saved | CommandAck | Replay | ReplayDelta | Status

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
    "too_old",  # ts older than the binding's raw retention: the historian would drop it at once
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


def bounded(decode: Callable[[Any], T], data: bytes | str) -> T:
    """`decode(data)` with nesting depth bounded: msgspec recurses once per level and stops at the interpreter's
    recursion limit (1000 by default) with a RecursionError; a real message nests a few levels, so anything
    that deep is refused as msgspec.DecodeError, like any other undecodable input."""
    try:
        return decode(data)
    except RecursionError:
        raise msgspec.DecodeError("nested too deeply (a message nests a few levels)") from None


def decode_json(data: bytes | str, type: type[T]) -> T:
    """A JSON body of the REST API as `type`, depth bounded; msgspec.DecodeError / ValidationError otherwise."""
    return bounded(lambda d: msgspec.json.decode(d, type=type), data)


def decode_client(data: bytes | str, encoding: Encoding) -> ClientMessage:
    """Decode a client message; raises msgspec.DecodeError / ValidationError with a readable text."""
    return bounded(_json_dec.decode if encoding == "json" else _msgpack_dec.decode, data)


def decode_server(data: bytes | str, encoding: Encoding) -> ServerMessage:
    return bounded(_json_srv_dec.decode if encoding == "json" else _msgpack_srv_dec.decode, data)


def encoding_for(subprotocol: str | None) -> Encoding | None:
    return SUBPROTOCOLS.get(subprotocol or "")  # type: ignore[return-value]


def schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every message: `ClientMessage` and `ServerMessage` are the roots."""
    (client_ref, server_ref), components = msgspec.json.schema_components(
        [ClientMessage, ServerMessage], ref_template="#/$defs/{name}"
    )
    return tidy(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://twinview.dev/protocol/v1/schema.json",
            "title": f"TwinView protocol v{PROTOCOL_VERSION}",
            "description": "Messages of the TwinView WebSocket protocol; see docs/PROTOCOL.md.",
            "$defs": {**components, "ClientMessage": client_ref, "ServerMessage": server_ref},
            "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        }
    )


def schema_text() -> str:
    """docs/protocol.schema.json as written: stable key order, so a diff shows real changes."""
    return json_schema.schema_text(schema())


TYPESCRIPT_HEADER: Final = f"""\
TypeScript declarations of TwinView protocol v{PROTOCOL_VERSION}, generated from viewer_server/protocol.py: do not edit.
Regenerate: python -m viewer_server.protocol --typescript > web_client/src/protocol_types.d.ts
The web client's JSDoc imports these (docs/CLIENT.md); `npm run typecheck` checks it against them."""


def typescript_text() -> str:
    """web_client/src/protocol_types.d.ts: every message and payload of `schema()` as a TypeScript type."""
    return json_schema.typescript(schema(), TYPESCRIPT_HEADER)


def main(argv: list[str]) -> int:
    """`python -m viewer_server.protocol` prints the JSON Schema, `--typescript` the TypeScript declarations."""
    if argv not in ([], ["--typescript"]):
        print("usage: python -m viewer_server.protocol [--typescript]", file=sys.stderr)
        return 2
    sys.stdout.write(typescript_text() if argv else schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
