"""REST reads of the historian for charts and timeline markers (PROTOCOL.md §14): every parameter bounded,
the caller's role checked for `history.read` like the other reads (a join token, else the anonymous role)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from aiohttp import web

from viewer_server import history_export as hex_
from viewer_server import protocol as p
from viewer_server import sessions_api as sx
from viewer_server.historian import DAY, HOUR, Historian
from viewer_server.live import LIVE
from viewer_server.permissions import Action, allowed

# Properties per chart request: a chart with more lines than this is unreadable anyway.
MAX_KEYS: Final = 32
# Points per series: a wide screen is ~4000 px; more than that only costs bandwidth.
DEFAULT_POINTS: Final = 600
MAX_POINTS: Final = 5000
# Longest range of one request: a year and a month of minute aggregates.
MAX_RANGE_S: Final = 400 * DAY
# Timeline markers per request; `truncated` says when there were more.
MAX_EVENTS: Final = 5000
# The marker of a new version of the bindings file taking effect (not a protocol event: the historian keeps them).
RULES_CHANGED: Final = "rules_changed"
MAX_KINDS: Final = 64
# Longest `keys` / `kinds` query value: 32 keys of a 256-character element id and a 64-character property.
MAX_LIST_CHARS: Final = 12_000
# An export over REST: elements listed at most, and the longest range (longer ones: several requests, or the command
# `twinview history export`, which has no bound).
MAX_EXPORT_ELEMENTS: Final = 256
MAX_EXPORT_RANGE_S: Final = 31 * DAY
EXPORT_MEDIA: Final[dict[hex_.Format, str]] = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


class SeriesOut(msgspec.Struct):
    key: str
    element: str
    element_name: str
    prop: str
    unit: str
    t: list[float]
    min: list[float | None]
    max: list[float | None]
    mean: list[float | None]
    last: list[bool | int | float | str | None]
    resolution: float  # seconds per point; 0 = raw samples


class HistoryOut(msgspec.Struct):
    series: list[SeriesOut]
    resolution: float  # the coarsest of the series
    start: float = msgspec.field(name="from")
    to: float = 0.0


class Marker(msgspec.Struct, omit_defaults=True):
    t: float
    kind: str
    text: str
    element: str | None = None
    element_name: str | None = None


class EventsOut(msgspec.Struct):
    events: list[Marker]
    truncated: bool


class BadQuery(ValueError):
    """A query parameter out of its bounds: 400 with the reason."""


def _historian(request: web.Request) -> Historian:
    """The historian, after checking the caller may read it (401 / 403 / 404 as web exceptions)."""
    live = request.app[LIVE]
    role = sx.caller_role(request)
    if role is None or not allowed(role, Action.HISTORY_READ):
        raise sx.Refused(403, p.ERR_FORBIDDEN, f"role {role!r} may not {Action.HISTORY_READ.value}; join with a link")
    if live.historian is None:
        raise sx.Refused(404, p.ERR_NO_HISTORY, "no history: start the server with a data dir (--data-dir)")
    return live.historian


def _time(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name}={raw[:40]!r} is not a number (Unix seconds)") from None
    if not math.isfinite(value):
        raise BadQuery(f"{name} must be finite")
    return value


def _span(request: web.Request, default_back: float) -> tuple[float, float]:
    now = time.time()
    to = _time(request, "to", now)
    start = _time(request, "from", to - default_back)
    if start >= to:
        raise BadQuery(f"from ({start}) must be before to ({to})")
    if to - start > MAX_RANGE_S:
        raise BadQuery(f"at most {MAX_RANGE_S / DAY:.0f} days per request; ask for a shorter range")
    return start, to


def _list(request: web.Request, name: str, limit: int) -> list[str] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if len(raw) > MAX_LIST_CHARS:
        raise BadQuery(f"{name} is longer than {MAX_LIST_CHARS} characters")
    items = [x for x in raw.split(",") if x]
    if len(items) > limit:
        raise BadQuery(f"{len(items)} {name}; at most {limit} per request")
    return items


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refusing(handler: Handler) -> Handler:
    """A BadQuery becomes 400 `bad_query`; sessions_api's refusals (401 / 403 / 404) their own answers."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (BadQuery, hex_.ExportError) as exc:
            return web.json_response({"error": "bad_query", "detail": str(exc)}, status=400)

    return sx.handles_refusals(wrapped)


@_refusing
async def history_series(request: web.Request) -> web.Response:
    """GET /api/history?keys=<eid>.<prop>,…&from=&to=&points=N"""
    historian = _historian(request)
    live = request.app[LIVE]
    keys = _list(request, "keys", MAX_KEYS)
    if not keys:
        raise BadQuery("keys: give one or more <element>.<prop>, comma-separated")
    start, to = _span(request, HOUR)
    try:
        points = int(request.query.get("points", DEFAULT_POINTS))
    except ValueError:
        raise BadQuery("points must be an integer") from None
    if not 1 <= points <= MAX_POINTS:
        raise BadQuery(f"points must be 1 … {MAX_POINTS}")
    wanted = []
    for key in keys:
        element, dot, prop = key.rpartition(".")
        if not dot or not element or not prop:
            raise BadQuery(f"key {key[:80]!r} is not <element>.<prop>")
        if element not in live.ingest.known:
            raise BadQuery(f"no element {element[:80]!r} in the scene")
        wanted.append((key, element, prop))
    series = []
    for key, element, prop in wanted:
        s, resolution = await asyncio.to_thread(historian.series, element, prop, start, to, points)
        name = _element_name(request, element) or element
        series.append(SeriesOut(key, element, name, prop, s.unit, s.t, s.min, s.max, s.mean, s.last, resolution))
    out = HistoryOut(series, max((s.resolution for s in series), default=0.0), start, to)
    return web.Response(body=msgspec.json.encode(out), content_type="application/json")


@_refusing
async def history_events(request: web.Request) -> web.Response:
    """GET /api/history/events?from=&to=&kinds=: timeline markers."""
    historian = _historian(request)
    start, to = _span(request, DAY)
    kinds = _list(request, "kinds", MAX_KINDS)
    events = await asyncio.to_thread(historian.events, start, to, kinds=kinds, limit=MAX_EVENTS + 1, include_start=True)
    rooms = _visible_rooms(request)
    markers = [
        Marker(e.ts, e.kind, _text(e), e.element or None, _element_name(request, e.element))
        for e in events[:MAX_EVENTS]
        if not e.session or e.session in rooms
    ]
    if kinds is None or RULES_CHANGED in kinds:  # from here on, replay colours by the new rules
        changes = await asyncio.to_thread(historian.bindings_changes, start, to)
        markers += [Marker(t, RULES_CHANGED, f"rules changed: {file}") for t, file, _ in changes]
        markers.sort(key=lambda m: m.t)
    out = EventsOut(markers[:MAX_EVENTS], len(events) > MAX_EVENTS or len(markers) > MAX_EVENTS)
    return web.Response(body=msgspec.json.encode(out), content_type="application/json")


def _visible_rooms(request: web.Request) -> set[str]:
    """The collaboration sessions whose events the caller may see: its token's, else the default one."""
    if request.headers.get("Authorization"):
        return {sx.caller(request, None).room}
    return {request.app[LIVE].scene.id}  # the default session has the scene's id (viewer_server/rooms.py)


def _element_name(request: web.Request, element: str) -> str | None:
    record = request.app[LIVE].scene.elements.get(element) if element else None
    name = record.get("name") if record is not None else None
    return name if isinstance(name, str) and name else None


def _text(e: p.Event) -> str:
    """One line for a timeline marker."""
    if e.alarm is not None:
        return f"{e.kind.removeprefix('alarm_')}: {e.alarm.message or e.alarm.id}"
    if e.topic is not None:
        return f"{e.kind.replace('_', ' ')}: {e.topic.title}"
    if e.comment is not None:
        return f"{e.kind.replace('_', ' ')}: {e.comment.text[:120]}"
    return e.message or f"{e.kind.replace('_', ' ')} {e.procedure or e.command or e.id}".strip()


@_refusing
async def history_range(request: web.Request) -> web.Response:
    """GET /api/history/range: {earliest, latest}."""
    historian = _historian(request)
    rng = await asyncio.to_thread(historian.range)
    return web.Response(body=msgspec.json.encode(rng), content_type="application/json")


@_refusing
async def history_export(request: web.Request) -> web.StreamResponse:
    """GET /api/scenes/{scene_id}/history/export?from=&to=&elements=&props=&format=csv|parquet: the raw readings,
    streamed a batch at a time (viewer_server/history_export.py)."""
    historian = _historian(request)
    live = request.app[LIVE]
    if request.match_info["scene_id"] != live.scene.id:
        raise sx.Refused(404, "unknown_scene", request.match_info["scene_id"][:80])
    fmt = request.query.get("format", "csv")
    if fmt not in hex_.FORMATS:
        raise BadQuery(f"format={fmt[:20]!r}: csv or parquet")
    if "from" not in request.query or "to" not in request.query:
        raise BadQuery("from and to: give both (ISO 8601 or Unix seconds)")
    t0, t1 = hex_.parse_time("from", request.query["from"]), hex_.parse_time("to", request.query["to"])
    if t1 - t0 > MAX_EXPORT_RANGE_S:
        days = MAX_EXPORT_RANGE_S / DAY
        detail = f"at most {days:.0f} days per request: split the range, or run `twinview history export`"
        return web.json_response({"error": "too_large", "detail": detail}, status=413)
    elements = _list(request, "elements", MAX_EXPORT_ELEMENTS) or None  # empty: all, as absent
    props = _list(request, "props", MAX_KEYS) or None
    t0, t1 = await asyncio.to_thread(hex_.checked_range, historian, t0, t1, elements, props)
    names = {eid: _element_name(request, eid) or "" for eid in elements or live.scene.elements}
    batches = hex_.export_batches(historian, t0, t1, names=names, elements=elements, props=props)
    chunks = hex_.encoded(batches, fmt)  # type: ignore[arg-type]
    response = web.StreamResponse(
        headers={
            "Content-Type": EXPORT_MEDIA[fmt],  # type: ignore[index]
            "Content-Disposition": f'attachment; filename="{live.scene.id}-history.{fmt}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            if chunk:
                await response.write(chunk)
    finally:  # a client gone: the writer closed now, or (still reading in its thread) when collected
        with contextlib.suppress(ValueError):
            chunks.close()
    await response.write_eof()
    return response
