"""The REST API: response types, handlers, and the route table the OpenAPI document is built from."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import web

from scene.export.tiles import INDEX_NAME
from viewer_server import __version__
from viewer_server import history_api as hx
from viewer_server import protocol as p
from viewer_server import sessions_api as sx
from viewer_server.audit import note_ingest
from viewer_server.health import EngineHealth, Peer, Status, overall, process_name
from viewer_server.historian import HistorianHealth
from viewer_server.http_edge import BODY_TYPES, read_body
from viewer_server.hub import prop_state
from viewer_server.ingest import MqttStatus, NotSaved
from viewer_server.live import LIVE, STARTED, LiveScene
from viewer_server.permissions import Action, allowed
from viewer_server.procedures import ProcedureSummary, Record
from viewer_server.rooms import Room
from viewer_server.scenes import MAX_SEARCH_RESULTS, SCENE_FILES, TREE_PAGE_DEFAULT, TREE_PAGE_MAX, TreeNode
from viewer_server.session import websocket
from viewer_server.store import AuditEntry, StoreHealth, sha256
from viewer_server.topics import Attachment, Comment, Topic

# Samples per history request by default and at most (the state keeps HISTORY_LEN per property).
HISTORY_DEFAULT_LIMIT: Final = 600
HISTORY_MAX_LIMIT: Final = 3600
# Ingest bodies above this are refused before parsing (5000 readings of ~100 bytes fit easily).
MAX_INGEST_BODY_BYTES: Final = 4 << 20

Value = bool | int | float | str


# The fields of an element a search with `brief=1` answers with.
BRIEF_FIELDS: Final = ("id", "name", "class", "parent")

# --- response and request types ---------------------------------------------------------------


class ApiError(msgspec.Struct):
    error: str
    detail: str = ""


class Health(msgspec.Struct):
    status: Status  # "degraded" while the bus, the store or the historian fails: reads go on, writes needing it refused
    process: str  # which process answered (host:pid): behind a load balancer, one of several
    leader: bool  # this process numbers the scene's changes (holds the lease on a shared bus; alone: always)
    version: str
    protocol: int
    uptime_s: float
    epoch: str
    seq: int
    clients: int
    publishers: int
    accepted: int
    rejected: dict[str, int]
    outbox_pending_keys_max: int
    send_queue_bytes_max: int  # the most bytes waiting for one client below its outbox (Session.send_queue_bytes)
    resyncs: int
    mqtt: MqttStatus
    bus: EngineHealth  # fan-out to the other processes
    peers: list[Peer]  # the other processes on the bus (none with the in-process bus)
    store: StoreHealth  # engine "none": a server without a data dir
    historian: HistorianHealth | None  # None: a server without a data dir keeps no history


class SceneSummary(msgspec.Struct):
    id: str
    elements: int
    layers: list[str]
    default_layer: str
    urls: dict[str, str]
    ws_url: str


class SceneDetail(SceneSummary):
    stats: Any = None
    inputs: Any = None
    warnings: Any = None


class ElementList(msgspec.Struct):
    scene: str
    q: str
    count: int
    truncated: bool  # more elements match than MAX_SEARCH_RESULTS: refine q
    elements: list[dict[str, Any]]


class TreePage(msgspec.Struct):
    """Children of one node of the element tree, in file order: `total` of them, `nodes` from `offset` on."""

    scene: str
    parent: str | None  # None: the roots
    total: int
    offset: int
    nodes: list[TreeNode]


class ElementCommand(msgspec.Struct, omit_defaults=True):
    """An operator command the element takes (the bindings' `commands`): a button for operators."""

    command: str
    range: list[float] | None = None  # the command takes a value within it (a setpoint)
    unit: str = ""


class ElementDetail(msgspec.Struct):
    element: dict[str, Any]
    props: dict[str, p.PropState]
    visuals: dict[str, p.Visual]
    alarms: list[p.Alarm]
    commands: list[ElementCommand] = []


class StateResponse(msgspec.Struct):
    scene: str
    epoch: str
    seq: int
    props: dict[str, p.PropState]
    alarms: list[p.Alarm]


class HistoryResponse(msgspec.Struct):
    element: str
    prop: str
    samples: list[tuple[float, Value]]


class BindingsInfo(msgspec.Struct, omit_defaults=True):
    """The loaded bindings; `keys`, `topics` and `content` only for roles with `bindings.read`."""

    loaded: bool
    file: str | None  # the file's name, without the folders it is in
    sha256: str | None
    default_layer: str
    layers: list[str]
    keys: list[str] | None = None  # ingest keys
    topics: list[str] | None = None  # MQTT topic filters
    content: str | None = None  # the file's text
    reload_error: str | None = None  # why the file's last edit was not applied (the served rules are older)


class IngestRequest(msgspec.Struct):
    readings: list[p.Reading]


class IngestResult(msgspec.Struct):
    accepted: int
    rejected: list[p.Rejection]
    durable: bool  # the accepted readings are committed to the historian (PROTOCOL.md §8)


# --- helpers ----------------------------------------------------------------------------------

_enc = msgspec.json.Encoder()


def reply(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_enc.encode(value), status=status, content_type="application/json")


def fail(status: int, error: str, detail: str = "") -> web.Response:
    return reply(ApiError(error, detail), status)


def _live(request: web.Request) -> LiveScene:
    return request.app[LIVE]


def _scene_or_404(request: web.Request) -> LiveScene | None:
    live = _live(request)
    return live if request.match_info["scene_id"] == live.scene.id else None


def _summary(live: LiveScene, cls: type = SceneSummary, **extra: Any) -> Any:
    return cls(
        id=live.scene.id,
        elements=len(live.scene.elements),
        layers=live.rules.layers,
        default_layer=live.rules.default_layer,
        urls=live.scene.urls,
        ws_url=f"/ws/{live.scene.id}",
        **extra,
    )


# --- handlers ---------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    live = _live(request)
    sessions = live.sessions
    store = await _store_status(live)
    bus = live.bus.health()
    historian = live.historian.health() if live.historian is not None else None
    return reply(
        Health(
            status=overall([bus, store] + ([historian] if historian is not None else [])),
            process=process_name(),
            leader=live.hub.leading,
            version=__version__,
            protocol=p.PROTOCOL_VERSION,
            uptime_s=round(time.monotonic() - request.app[STARTED], 3),
            epoch=live.hub.epoch,
            seq=live.hub.seq,
            clients=sum(1 for s in sessions if s.role != "publisher"),
            publishers=sum(1 for s in sessions if s.role == "publisher"),
            accepted=live.ingest.accepted,
            rejected=dict(live.ingest.rejected),
            outbox_pending_keys_max=max((s.outbox.pending_keys for s in sessions), default=0),
            send_queue_bytes_max=max((s.send_queue_bytes() for s in sessions), default=0),
            resyncs=sum(s.resyncs for s in sessions),
            mqtt=live.mqtt,
            bus=bus,
            peers=live.bus.peers(),
            store=store,
            historian=historian,
        )
    )


async def _store_status(live: LiveScene) -> StoreHealth:
    store = live.hub.store
    if store is None:
        return StoreHealth(
            "none", ok=True, path="", reachable=False, latency_ms=None, last_error="", dropped_batches=0, write_errors=0
        )
    await store.probe()
    return store.health()


async def scenes(request: web.Request) -> web.Response:
    return reply([_summary(_live(request))])


async def scene(request: web.Request) -> web.Response:
    live = _scene_or_404(request)
    if live is None:
        return fail(404, "unknown_scene", request.match_info["scene_id"])
    m = live.scene.manifest
    return reply(_summary(live, SceneDetail, stats=m.get("stats"), inputs=m.get("inputs"), warnings=m.get("warnings")))


async def elements(request: web.Request) -> web.Response:
    live = _scene_or_404(request)
    if live is None:
        return fail(404, "unknown_scene", request.match_info["scene_id"])
    q = request.query.get("q", "")
    # Off the event loop: the first query builds the index, and a query over a plant scans megabytes.
    found = await asyncio.to_thread(live.scene.search, q, MAX_SEARCH_RESULTS + 1)
    shown = found[:MAX_SEARCH_RESULTS]
    if request.query.get("brief") == "1":  # what a list of hits shows: a few bytes each, not their property sets
        shown = [{key: el.get(key) for key in BRIEF_FIELDS} for el in shown]
    return reply(ElementList(live.scene.id, q, len(shown), len(found) > len(shown), shown))


async def tree(request: web.Request) -> web.Response:
    live = _scene_or_404(request)
    if live is None:
        return fail(404, "unknown_scene", request.match_info["scene_id"])
    parent = request.query.get("parent") or None
    try:
        offset = int(request.query.get("offset", 0))
        limit = int(request.query.get("limit", TREE_PAGE_DEFAULT))
    except ValueError as exc:
        return fail(400, "bad_query", f"offset and limit are whole numbers: {exc}")
    if offset < 0 or not 1 <= limit <= TREE_PAGE_MAX:
        return fail(400, "bad_query", f"offset must be >= 0 and limit within 1..{TREE_PAGE_MAX}")
    # Off the event loop: the first request builds the child lists of every element.
    index = await asyncio.to_thread(lambda: live.scene.tree)
    if parent is not None and parent not in index:
        return fail(404, "unknown_element", parent)
    total, nodes = index.page(parent, offset, limit)
    return reply(TreePage(live.scene.id, parent, total, offset, nodes))


async def element(request: web.Request) -> web.Response:
    live = _scene_or_404(request)
    eid = request.match_info["eid"]
    if live is None:
        return fail(404, "unknown_scene", request.match_info["scene_id"])
    record = live.scene.elements.get(eid)
    if record is None:
        return fail(404, "unknown_element", eid)
    hub = live.hub
    props = {prop: prop_state(pv) for prop, pv in hub.state.element(eid).items()}
    visuals = {layer: vis[eid] for layer, vis in hub.visuals.items() if eid in vis}
    alarms = [a for a in hub.alarms.listed() if eid in (a.element, a.source)]
    specs = live.bindings.commands if live.bindings else ()
    commands = [ElementCommand(c.command, c.range, c.unit) for c in specs if c.element == eid]
    return reply(ElementDetail(record, props, visuals, alarms, commands))


async def state(request: web.Request) -> web.Response:
    hub = _live(request).hub
    return reply(StateResponse(hub.scene_id, hub.epoch, hub.seq, hub.props, hub.alarms.listed()))


async def history(request: web.Request) -> web.Response:
    live = _live(request)
    eid, prop = request.match_info["eid"], request.match_info["prop"]
    try:
        since = float(request.query["since"]) if "since" in request.query else None
        limit = min(int(request.query.get("limit", HISTORY_DEFAULT_LIMIT)), HISTORY_MAX_LIMIT)
    except ValueError as exc:
        return fail(400, "bad_query", str(exc))
    if eid not in live.ingest.known:
        return fail(404, "unknown_element", eid)
    return reply(HistoryResponse(eid, prop, live.hub.state.history(eid, prop, since, limit)))


@sx.handles_refusals
async def bindings(request: web.Request) -> web.Response:
    live = _live(request)
    b = live.bindings
    text = live.bindings_text
    info = BindingsInfo(
        loaded=b is not None,
        file=live.bindings_path.name if live.bindings_path else None,
        sha256=sha256(text.encode()) if text is not None else None,
        default_layer=live.rules.default_layer,
        layers=live.rules.layers,
    )
    role = sx.caller_role(request)
    if role is not None and allowed(role, Action.BINDINGS_READ):
        info.keys = b.keys() if b else []
        info.topics = sorted({x.topic for x in b.bindings if x.topic}) if b else []
        info.content = text
        info.reload_error = live.bindings_error
    return reply(info)


_ingest_decoder = msgspec.json.Decoder(IngestRequest)


@sx.handles_refusals
async def ingest(request: web.Request) -> web.Response:
    """Readings from anyone who reaches the port, or, with a token, from its user (who needs telemetry.publish);
    every source is in the audit trail (viewer_server.audit)."""
    live = _live(request)
    user, role = "anonymous", "anonymous"
    if sx.bearer(request) is not None:
        member = sx.caller(request, None)
        sx.require(member, Action.TELEMETRY_PUBLISH)
        user, role = member.user, member.role
    if (request.content_length or 0) > MAX_INGEST_BODY_BYTES:
        return fail(413, "batch_too_large", f"body larger than {MAX_INGEST_BODY_BYTES} bytes")
    body = await read_body(request)
    try:
        batch = p.bounded(_ingest_decoder.decode, body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        live.ingest.rejected["malformed"] += 1
        return fail(400, "malformed", str(exc))
    try:
        accepted, rejected = await live.ingest.submit(batch.readings, f"http:{user}")
    except NotSaved as exc:
        return fail(503, p.ERR_NOT_SAVED, str(exc))
    peer = request.remote or ""
    note_ingest(live.audit, live.rooms.default.id, "HTTP", peer, user, role, accepted, len(rejected))
    if rejected and rejected[0].reason == "batch_too_large":
        return fail(413, "batch_too_large", rejected[0].detail)
    return reply(IngestResult(accepted, rejected, live.ingest.durable))


async def scene_file(request: web.Request) -> web.StreamResponse:
    live = _scene_or_404(request)
    name = request.match_info["file"]
    if live is None or name not in SCENE_FILES or not (live.scene.dir / name).is_file():
        return fail(404, "not_found", f"{request.match_info['scene_id']}/{name}")
    return web.FileResponse(live.scene.dir / name, headers={"Content-Type": SCENE_FILES[name]})


# The names of the files a scene's tiles/ folder serves (scene/export/tiles.py).
TILE_FILES_PATTERN: Final = r"^(tiles\.json|elements\.json|tile-[0-9]{1,5}\.glb)$"


async def tile_file(request: web.Request) -> web.StreamResponse:
    """A file of the scene's tiles (docs/CLIENT.md *Tiles*); the index of a scene without tiles is 204 No Content,
    which tells a client to load scene.glb (a 404 would be logged by browsers as an error)."""
    live = _scene_or_404(request)
    name = request.match_info["file"]
    if live is not None and name == INDEX_NAME and live.scene.tiles is None:
        return web.Response(status=204)
    path = live.scene.tile_file(name) if live is not None else None
    if path is None or not path.is_file():
        return fail(404, "not_found", f"{request.match_info['scene_id']}/tiles/{name}")
    media = "model/gltf-binary" if name.endswith(".glb") else "application/json"
    return web.FileResponse(path, headers={"Content-Type": media})


async def openapi(request: web.Request) -> web.Response:
    from viewer_server.openapi import openapi_document

    return reply(openapi_document(ROUTES))


async def protocol_schema(request: web.Request) -> web.Response:
    """Byte for byte docs/protocol.schema.json (tests/test_protocol.py keeps that file current)."""
    return web.Response(body=_schema_bytes(), content_type="application/json")


@functools.cache
def _schema_bytes() -> bytes:
    return p.schema_text().encode()


# --- the route table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" | "query"
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    response: Any  # a msgspec-describable type, or a plain JSON Schema dict
    body: Any = None  # the type of a JSON body
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    ok_status: int = 200
    media_type: str = "application/json"  # of the success response
    raw_body: tuple[str, ...] = ()  # media types of a body that is not JSON (an upload)

    @property
    def body_types(self) -> tuple[str, ...]:
        """The media types the body may have (refused 415 otherwise: see viewer_server.http_edge)."""
        return ("application/json",) if self.body is not None else self.raw_body


_STR = {"type": "string"}
SCENE_ID = Param("scene_id", "path", _STR, "scene id (see GET /api/scenes)")
EID = Param("eid", "path", _STR, "element id (twin id)")
SESSION = Param("session", "path", _STR, "collaboration session id (the default session's id is the scene id)")
GUID = Param("guid", "path", _STR, "topic guid")

ROUTES: Final = (
    Route(
        "GET",
        "/api/health",
        health,
        "Liveness (200 while the process serves, `status` ok or degraded), engines, peers and counters",
        Health,
    ),
    Route("GET", "/api/scenes", scenes, "Scenes served", list[SceneSummary]),
    Route("GET", "/api/scenes/{scene_id}", scene, "One scene", SceneDetail, params=(SCENE_ID,), errors=(404,)),
    Route(
        "GET",
        "/api/scenes/{scene_id}/elements",
        elements,
        "Search elements by id, name or class",
        ElementList,
        params=(
            SCENE_ID,
            Param("q", "query", _STR, "words the id, name or class all contain (case-insensitive)"),
            Param("brief", "query", {"enum": ["1"]}, "1: only " + ", ".join(BRIEF_FIELDS) + " of each element"),
        ),
        errors=(404,),
    ),
    Route(
        "GET",
        "/api/scenes/{scene_id}/tree",
        tree,
        "Children of one element (or the roots), a page at a time, each with its number of children",
        TreePage,
        params=(
            SCENE_ID,
            Param("parent", "query", _STR, "element id (default: the roots)"),
            Param("offset", "query", {"type": "integer", "minimum": 0}, "first child to list (default 0)"),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": TREE_PAGE_MAX},
                f"children listed at most (default {TREE_PAGE_DEFAULT})",
            ),
        ),
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/api/scenes/{scene_id}/elements/{eid}",
        element,
        "Manifest record and live state of one element",
        ElementDetail,
        params=(SCENE_ID, EID),
        errors=(404,),
    ),
    Route("GET", "/api/state", state, "Current property values and active alarms", StateResponse),
    Route(
        "GET",
        "/api/history/{eid}/{prop}",
        history,
        "Recent samples of one property, oldest first",
        HistoryResponse,
        params=(
            EID,
            Param("prop", "path", _STR, "property name"),
            Param("since", "query", {"type": "number"}, "exclusive lower bound on the source timestamp"),
            Param("limit", "query", {"type": "integer", "maximum": HISTORY_MAX_LIMIT}, "newest samples kept"),
        ),
        errors=(400, 404),
    ),
    Route(
        "GET",
        "/api/history",
        hx.history_series,
        "Chart series from the historian: per key min / max / mean / last, bucketed to at most `points`",
        hx.HistoryOut,
        params=(
            Param("keys", "query", _STR, f"<element>.<prop>, comma-separated, at most {hx.MAX_KEYS}"),
            Param("from", "query", {"type": "number"}, "Unix seconds (default: an hour before `to`)"),
            Param("to", "query", {"type": "number"}, "Unix seconds (default: now)"),
            Param("points", "query", {"type": "integer", "maximum": hx.MAX_POINTS}, "at most this many per key"),
        ),
        errors=(400, 401, 403, 404),
    ),
    Route(
        "GET",
        "/api/history/events",
        hx.history_events,
        "Recorded events for timeline markers, oldest first",
        hx.EventsOut,
        params=(
            Param("from", "query", {"type": "number"}, "Unix seconds (default: a day before `to`)"),
            Param("to", "query", {"type": "number"}, "Unix seconds (default: now)"),
            Param("kinds", "query", _STR, "event kinds, comma-separated (default: all)"),
        ),
        errors=(400, 401, 403, 404),
    ),
    Route(
        "GET",
        "/api/scenes/{scene_id}/history/export",
        hx.history_export,
        "The raw readings of a time range (element, name, prop, value or text, unit, quality, source and receive "
        "time), oldest first, streamed as CSV or Parquet",
        {"type": "string", "format": "binary"},
        params=(
            SCENE_ID,
            Param("from", "query", _STR, "ISO 8601 (UTC if no zone) or Unix seconds"),
            Param(
                "to",
                "query",
                _STR,
                f"end (excluded), as `from`; at most {hx.MAX_EXPORT_RANGE_S // 86400} days after it",
            ),
            Param("elements", "query", _STR, f"element ids, comma-separated, at most {hx.MAX_EXPORT_ELEMENTS}"),
            Param("props", "query", _STR, f"property names, comma-separated, at most {hx.MAX_KEYS}"),
            Param("format", "query", {"enum": ["csv", "parquet"]}, "csv (default) or parquet"),
        ),
        errors=(400, 401, 403, 404, 413),
        media_type="text/csv",
    ),
    Route(
        "GET", "/api/history/range", hx.history_range, "The times the history holds", p.HistoryRange, errors=(403, 404)
    ),
    Route(
        "GET",
        "/api/bindings",
        bindings,
        "The loaded bindings: layers for everyone; keys, topics and the file's text with bindings.read",
        BindingsInfo,
        errors=(401,),
    ),
    Route(
        "POST",
        "/api/ingest",
        ingest,
        "Submit a batch of readings (by key, or by element + prop)",
        IngestResult,
        body=IngestRequest,
        errors=(400, 401, 403, 413, 503),
    ),
    *(
        # Collaboration sessions (viewer_server/sessions_api.py); auth: Authorization: Bearer <token>.
        Route("GET", "/api/sessions", sx.sessions_list, "Sessions of the scene you may see", list[Room]),
        Route(
            "POST",
            "/api/sessions",
            sx.session_create,
            "Create a session (admin)",
            Room,
            body=sx.SessionRequest,
            errors=(400, 401, 403, 409),
            ok_status=201,
        ),
        Route(
            "POST",
            "/api/sessions/{session}/tokens",
            sx.session_token,
            "Issue a join token and link (admin)",
            sx.TokenResponse,
            body=sx.TokenRequest,
            params=(SESSION,),
            errors=(400, 401, 403, 404),
            ok_status=201,
        ),
        Route(
            "POST",
            "/api/sessions/{session}/revoke",
            sx.session_revoke,
            "Revoke a user's join tokens issued so far and disconnect them from the session (admin)",
            sx.Revoked,
            body=sx.RevokeRequest,
            params=(SESSION,),
            errors=(400, 401, 403, 404, 503),
        ),
        Route(
            "GET",
            "/api/sessions/{session}/topics",
            sx.topics_list,
            "Topics of a session (deleted ones flagged)",
            list[Topic],
            params=(SESSION,),
            errors=(401, 404),
        ),
        Route(
            "POST",
            "/api/sessions/{session}/topics",
            sx.topic_create,
            "Create a topic",
            p.Saved,
            body=p.TopicDraft,
            params=(SESSION,),
            errors=(400, 401, 403, 404, 413, 429),
            ok_status=201,
        ),
        Route(
            "GET",
            "/api/sessions/{session}/topics/{guid}",
            sx.topic_get,
            "One topic with its comments",
            sx.TopicDetail,
            params=(SESSION, GUID),
            errors=(401, 404),
        ),
        Route(
            "GET",
            "/api/sessions/{session}/topics/{guid}/comments",
            sx.comments_list,
            "Comments of a topic",
            list[Comment],
            params=(SESSION, GUID),
            errors=(401, 404),
        ),
        Route(
            "POST",
            "/api/sessions/{session}/topics/{guid}/comments",
            sx.comment_create,
            "Comment on a topic",
            p.Saved,
            body=sx.CommentRequest,
            params=(SESSION, GUID),
            errors=(400, 401, 403, 404, 413, 429),
            ok_status=201,
        ),
        Route(
            "POST",
            "/api/sessions/{session}/attachments",
            sx.attachment_upload,
            "Upload a PNG or JPEG (raw body, at most 4 MiB); returns its id for topics",
            Attachment,
            params=(SESSION,),
            errors=(400, 401, 403, 413, 429),
            ok_status=201,
            raw_body=("image/png", "image/jpeg", "application/octet-stream"),
        ),
        Route(
            "GET",
            "/api/sessions/{session}/attachments/{attachment}",
            sx.attachment_get,
            "An attachment's bytes",
            {"type": "string", "format": "binary"},
            params=(SESSION, Param("attachment", "path", _STR)),
            errors=(401, 404),
            media_type="image/png",
        ),
        Route(
            "GET",
            "/api/sessions/{session}/audit",
            sx.audit_list,
            "Audit trail, newest first (admin)",
            list[AuditEntry],
            params=(
                SESSION,
                Param("limit", "query", {"type": "integer", "maximum": sx.AUDIT_MAX_LIMIT}, "entries at most"),
                Param("before", "query", {"type": "integer"}, "only entries with a smaller id (paging)"),
            ),
            errors=(400, 401, 403, 404),
        ),
        Route(
            "GET",
            "/api/sessions/{session}/bcf",
            sx.bcf_export,
            "The session's topics as a BCF 3.0 archive",
            {"type": "string", "format": "binary"},
            params=(SESSION,),
            errors=(401, 403, 404),
            media_type="application/octet-stream",
        ),
        Route(
            "POST",
            "/api/sessions/{session}/bcf",
            sx.bcf_import,
            "Import a BCF 3.0 / 2.1 archive (raw body, at most 4 MiB); clients see the topics at once",
            sx.BcfImported,
            params=(SESSION,),
            errors=(400, 401, 403, 404, 413),
            ok_status=201,
            raw_body=("application/octet-stream", "application/zip"),
        ),
        Route(
            "GET",
            "/api/procedures",
            sx.procedures_list,
            "Procedures the server can run (serve --procedures)",
            list[ProcedureSummary],
        ),
        Route(
            "GET",
            "/api/sessions/{session}/procedure/record.json",
            sx.procedure_record,
            "Who completed which step of the session's latest procedure run, when",
            Record,
            params=(SESSION, Param("run", "query", _STR, "a run id (default: the latest)")),
            errors=(401, 403, 404),
        ),
        Route(
            "GET",
            "/api/sessions/{session}/procedure/record.csv",
            sx.procedure_record,
            "The same record as CSV (one row per completion)",
            {"type": "string"},
            params=(SESSION, Param("run", "query", _STR, "a run id (default: the latest)")),
            errors=(401, 403, 404),
            media_type="text/csv",
        ),
    ),
    Route("GET", "/api/openapi.json", openapi, "This document", {"type": "object"}),
    Route(
        "GET", "/api/protocol.schema.json", protocol_schema, "JSON Schema of the WebSocket protocol", {"type": "object"}
    ),
    Route(
        "GET",
        "/ws/{scene_id}",
        websocket,
        "WebSocket (subprotocol twinview.v1 or twinview.v1.msgpack); see docs/PROTOCOL.md",
        None,
        params=(SCENE_ID,),
        errors=(404,),
        ok_status=101,
    ),
    Route("GET", "/ws", websocket, "WebSocket to the default scene", None, ok_status=101),
    Route(
        "GET",
        "/scenes/{scene_id}/tiles/{file}",
        tile_file,
        "Streaming tiles of a large scene: tiles.json (the index; 204 when the scene is served as one file), "
        "elements.json (the catalogue), tile-N.glb",
        {"type": "string", "format": "binary"},
        params=(SCENE_ID, Param("file", "path", {"type": "string", "pattern": TILE_FILES_PATTERN})),
        errors=(404,),
        media_type="application/octet-stream",
    ),
    Route(
        "GET",
        "/scenes/{scene_id}/{file}",
        scene_file,
        "Scene files: " + ", ".join(SCENE_FILES),
        {"type": "string", "format": "binary"},
        params=(SCENE_ID, Param("file", "path", {"enum": list(SCENE_FILES)})),
        errors=(404,),
        media_type="application/octet-stream",
    ),
)


def add_routes(app: web.Application) -> None:
    """The routes, and the media types of their bodies for the edge checks (viewer_server.http_edge)."""
    body_types = app.setdefault(BODY_TYPES, {})
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        if route.body_types:
            body_types[(route.method, route.path)] = route.body_types
