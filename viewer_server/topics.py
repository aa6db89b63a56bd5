"""Annotations as BCF-style topics: the data model shared by the session protocol, the SQLite store
and BCF 3.0 import/export. A topic is pinned to an element at a world point, keeps the viewpoint in
which it was made and the live values of its element at that moment, and carries a comment thread.

Positions are world coordinates of the canonical scene: metres, Y-up (BCF uses Z-up; `viewer_server.bcf`
converts); every number is finite (`scene.finite.Finite`: a NaN fails decoding). Timestamps are Unix
seconds. Text fields are stored exactly as given; their length is bounded here and the clients render
them as text, never as HTML. Guids, viewpoint sizes and section planes are bounded here too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Annotated, Final, Literal

import msgspec

from scene.camera import Camera, ClippingPlane, Vec3

# Text limits: long enough for a real description, short enough that one topic stays a small frame.
MAX_TITLE: Final = 200
MAX_TEXT: Final = 10_000
MAX_LABEL: Final = 64
MAX_LABELS: Final = 20
# A snapshot PNG attached to a topic or comment; a 1920x1080 screenshot is ~1-3 MB.
MAX_ATTACHMENT_BYTES: Final = 4 * 1024 * 1024
# Guids of topics, comments and viewpoints (BCF uses 36-character UUIDs; ours are 32 hex digits).
MAX_GUID: Final = 64
# Component ids (selected, hidden, coloured, x-rayed, transparent) in all viewpoints of one topic together, or in
# one presenter view: a viewpoint points at what matters, not at the whole model. ~30 bytes each, so a topic's
# viewpoints stay under ~60 kB, and every joiner's snapshot with them.
MAX_VIEWPOINT_IDS: Final = 2000
# Section planes per viewpoint: the client's six free planes plus a section box's six.
MAX_CLIPPING_PLANES: Final = 12
# Measurements kept with a viewpoint, and corners of one (an area's polygon): what a reviewer pins to make a
# point, not a survey. A full viewpoint's measurements stay under ~40 kB.
MAX_MEASUREMENTS: Final = 50
MAX_MEASUREMENT_POINTS: Final = 32
# Points each kind of measurement needs: a distance two, an angle three (the vertex in the middle), an area
# a polygon of three or more.
MEASUREMENT_POINTS: Final = {"distance": (2, 2), "angle": (3, 3), "area": (3, MAX_MEASUREMENT_POINTS)}
HEX_COLOR: Final = re.compile(r"#[0-9a-fA-F]{6}")
# Opacity of an element made transparent: below this it could not be seen at all (hide it instead).
MIN_OPACITY: Final = 0.05

TopicStatus = Literal["open", "in_progress", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "critical"]
TOPIC_STATUSES: Final = ("open", "in_progress", "resolved", "closed")


MeasurementKind = Literal["distance", "angle", "area"]


class Measurement(msgspec.Struct):
    """A measurement drawn in the view, in world coordinates: a distance (two points), an angle (three, the
    vertex in the middle) or a planar area (the polygon's corners, in order)."""

    kind: MeasurementKind
    points: Annotated[list[Vec3], msgspec.Meta(min_length=2, max_length=MAX_MEASUREMENT_POINTS)]


class ColoredComponents(msgspec.Struct):
    color: str  # "#rrggbb"
    ids: list[str]


class TransparentComponents(msgspec.Struct):
    """Elements drawn see-through at `opacity` (1 = opaque), in their own colour."""

    opacity: Annotated[float, msgspec.Meta(ge=MIN_OPACITY, le=1.0)]
    ids: list[str]


class ViewSetupHints(msgspec.Struct, omit_defaults=True):
    """BCF's hints for showing IFC spaces, space boundaries and openings (all hidden by default)."""

    spaces_visible: bool = False
    space_boundaries_visible: bool = False
    openings_visible: bool = False


class Viewpoint(msgspec.Struct, omit_defaults=True):
    """What the author saw: camera, section planes, and visible / selected / coloured / x-rayed / transparent
    components (twin ids). An id of a container (a storey, an assembly) stands for everything under it.
    X-ray ("ghosted": faint, grey, not pickable) works like visibility: `xray` lists the exceptions to
    `xray_default`, so "x-ray everything but the pump" is `xray_default=True, xray=[pump]`."""

    guid: str
    camera: Camera
    clipping_planes: list[ClippingPlane] = []
    selected: list[str] = []
    hidden: list[str] = []  # exceptions to the default visibility
    default_visible: bool = True
    colored: list[ColoredComponents] = []
    xray: list[str] = []  # exceptions to the default x-ray
    xray_default: bool = False
    transparent: list[TransparentComponents] = []
    snapshot: str | None = None  # attachment id of the PNG taken with this viewpoint
    setup_hints: ViewSetupHints | None = None  # as a BCF file stated them; None: never stated
    # TwinView's own (BCF has only lines): exported as BCF Lines too, kept exactly in the extension
    measurements: Annotated[list[Measurement], msgspec.Meta(max_length=MAX_MEASUREMENTS)] = []


class Pin(msgspec.Struct):
    """Where the topic is pinned: an element and a world point with its surface normal."""

    element: str
    point: Vec3
    normal: Vec3


class LiveValue(msgspec.Struct, omit_defaults=True):
    """A property value of the pinned element at the moment the topic was made."""

    prop: str
    value: bool | int | float | str
    unit: str = ""
    ts: float = 0.0


class Attachment(msgspec.Struct):
    id: str
    mime: str  # image/png or image/jpeg
    size: int
    sha256: str


class BcfFile(msgspec.Struct, omit_defaults=True):
    """A model file a BCF topic refers to (markup `Header/Files/File`), as the other tool wrote it."""

    filename: str | None = None
    date: str | None = None  # xs:dateTime, as written
    reference: str | None = None
    ifc_project: str | None = None
    ifc_spatial_structure_element: str | None = None
    is_external: bool = True


class BcfDocument(msgspec.Struct, omit_defaults=True):
    """A topic's reference to a document outside the archive (`DocumentReference` with a `Url`)."""

    guid: str
    url: str
    description: str | None = None


class BcfFields(msgspec.Struct, omit_defaults=True):
    """What a BCF file from another tool says that TwinView does not use itself, kept so that exporting
    the topic gives it back. `status` and `priority` hold the other tool's spelling while TwinView's own
    value is still the one they were read as; `priority` "" records that the file had none."""

    status: str | None = None
    priority: str | None = None
    server_assigned_id: str | None = None
    due_date: str | None = None  # DueDate as written, while `Topic.due_date` is still its day (BCF has a time)
    stage: str | None = None
    files: list[BcfFile] = []
    reference_links: list[str] = []
    related_topics: list[str] = []  # BCF guids
    documents: list[BcfDocument] = []


class Comment(msgspec.Struct, omit_defaults=True):
    guid: str
    topic: str
    author: str  # who wrote it here, or who imported it (then `original_author` is what the file said)
    text: str  # "" only for a comment imported from BCF without text (a viewpoint-only comment)
    created: float
    revision: int = 1
    modified: float | None = None
    reply_to: str | None = None  # threaded replies
    viewpoint: str | None = None  # guid of a viewpoint of the topic
    deleted: bool = False  # moderated or withdrawn: kept for the audit trail, shown as removed
    original_author: str | None = None  # the author a BCF file named (unverified), when imported
    replay_time: float | None = None  # written while replaying: the history time shown then (None = live)


class Topic(msgspec.Struct, omit_defaults=True):
    guid: str
    title: str
    author: str  # who made it here, or who imported it (then `original_author` is what the file said)
    created: float
    pin: Pin | None = None
    description: str = ""
    status: TopicStatus = "open"
    priority: Priority = "normal"
    topic_type: str = "Issue"
    assignee: str | None = None
    labels: list[str] = []
    due_date: str | None = None  # ISO date, e.g. "2026-12-01"
    viewpoints: list[Viewpoint] = []
    live_values: list[LiveValue] = []
    attachments: list[Attachment] = []
    revision: int = 1
    modified: float | None = None
    modified_by: str | None = None
    deleted: bool = False
    original_author: str | None = None  # the CreationAuthor a BCF file named (unverified), when imported
    bcf: BcfFields | None = None  # what another tool's BCF file said beyond our fields
    replay_time: float | None = None  # made while replaying: the history time shown then (None = live)


class TopicError(ValueError):
    """A topic, comment or viewpoint that breaks a limit; `field` names it. `kind`: "invalid" (empty, badly
    formed), "too_long" (over a limit), "unknown" (an element id the scene does not have)."""

    def __init__(self, field: str, problem: str, kind: Literal["invalid", "too_long", "unknown"] = "too_long") -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.kind = kind


def check_guid(guid: str | None, field: str) -> None:
    if guid is not None and not 0 < len(guid) <= MAX_GUID:
        raise TopicError(field, f"1..{MAX_GUID} characters, not {len(guid)}", "invalid" if not guid else "too_long")


def check_topic(topic: Topic, known: Collection[str] | None = None) -> None:
    """Enforce the text limits, guids and viewpoint limits (with `known`: the viewpoints' component ids are
    among them); raise TopicError naming the field."""
    check_guid(topic.guid, "guid")
    if not topic.title.strip():
        raise TopicError("title", "must not be empty", "invalid")
    if len(topic.title) > MAX_TITLE:
        raise TopicError("title", f"longer than {MAX_TITLE} characters")
    if len(topic.description) > MAX_TEXT:
        raise TopicError("description", f"longer than {MAX_TEXT} characters")
    if len(topic.labels) > MAX_LABELS:
        raise TopicError("labels", f"more than {MAX_LABELS} labels")
    for label in topic.labels:
        if not label or len(label) > MAX_LABEL:
            raise TopicError("labels", f"each label must be 1..{MAX_LABEL} characters")
    for i, attachment in enumerate(topic.attachments):
        check_guid(attachment.id, f"attachments[{i}].id")
    check_viewpoints([(f"viewpoints[{i}]", vp) for i, vp in enumerate(topic.viewpoints)], known)


def check_viewpoints(viewpoints: Sequence[tuple[str, Viewpoint]], known: Collection[str] | None = None) -> None:
    """Viewpoints (each with its field name): guids, section planes, colours, and at most MAX_VIEWPOINT_IDS
    component ids in all of them; with `known`, every component id must be one of those (the scene's elements)."""
    count = 0
    for where, vp in viewpoints:
        check_guid(vp.guid, f"{where}.guid")
        check_guid(vp.snapshot, f"{where}.snapshot")
        if len(vp.clipping_planes) > MAX_CLIPPING_PLANES:
            raise TopicError(f"{where}.clipping_planes", f"more than {MAX_CLIPPING_PLANES}")
        check_measurements(vp.measurements, f"{where}.measurements")
        groups = [("selected", vp.selected), ("hidden", vp.hidden), ("xray", vp.xray)]
        for j, colored in enumerate(vp.colored):
            if not HEX_COLOR.fullmatch(colored.color) or not colored.ids:
                raise TopicError(f"{where}.colored[{j}]", "needs a #rrggbb color and at least one id", "invalid")
            groups.append((f"colored[{j}].ids", colored.ids))
        for j, transparent in enumerate(vp.transparent):
            if not transparent.ids:
                raise TopicError(f"{where}.transparent[{j}]", "needs at least one id", "invalid")
            groups.append((f"transparent[{j}].ids", transparent.ids))
        for name, ids in groups:
            count += len(ids)
            if count > MAX_VIEWPOINT_IDS:
                raise TopicError(f"{where}.{name}", f"more than {MAX_VIEWPOINT_IDS} component ids in all viewpoints")
            missing = next((x for x in ids if x not in known), None) if known is not None else None
            if missing is not None:
                raise TopicError(f"{where}.{name}", f"no element {missing[:MAX_GUID]!r} in the scene", "unknown")


def check_measurements(measurements: Sequence[Measurement], where: str) -> None:
    """At most MAX_MEASUREMENTS, each with as many points as its kind takes (the decoder already bounds them
    where a message is decoded; a viewpoint built otherwise, e.g. from a BCF file, is checked here)."""
    if len(measurements) > MAX_MEASUREMENTS:
        raise TopicError(where, f"more than {MAX_MEASUREMENTS}")
    for i, m in enumerate(measurements):
        if problem := measurement_problem(m):
            raise TopicError(f"{where}[{i}].points", problem, "invalid")


def measurement_problem(m: Measurement) -> str | None:
    """Why a measurement has the wrong number of points for its kind, or None."""
    least, most = MEASUREMENT_POINTS[m.kind]
    if least <= len(m.points) <= most:
        return None
    span = str(least) if least == most else f"{least}..{most}"
    return f"{m.kind} takes {span} points, not {len(m.points)}"


def check_comment(comment: Comment) -> None:
    check_guid(comment.guid, "guid")
    check_guid(comment.reply_to, "reply_to")
    check_guid(comment.viewpoint, "viewpoint")
    if not comment.text.strip():
        raise TopicError("text", "must not be empty", "invalid")
    if len(comment.text) > MAX_TEXT:
        raise TopicError("text", f"longer than {MAX_TEXT} characters")
