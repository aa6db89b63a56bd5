"""REST for collaboration sessions: sessions, join tokens, topics, comments, attachments, audit.

Callers authenticate with `Authorization: Bearer <token>` (viewer_server.auth); without one they act as
the session's `anonymous_role`, if it has one. Every handler checks docs/PERMISSIONS.md through the same
annotation service as the WebSocket, so both paths refuse and audit the same things. `session.manage`
(create sessions, issue tokens) and `session.revoke` are server-wide: an admin token of any session of the
scene grants them.
The route table lives in `viewer_server.api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import msgspec
from aiohttp import web

from scene.errors import ImportFailed
from viewer_server import protocol as p
from viewer_server.annotations import AnnotationError
from viewer_server.auth import DEFAULT_TTL_S, MAX_TTL_S, REVOKED, AuthError, issue, join_link, verify
from viewer_server.bcf.archive import MAX_CONCURRENT_IMPORTS
from viewer_server.bcf.command import scene_index
from viewer_server.bcf.reader import import_bcf
from viewer_server.bcf.writer import export_bcf
from viewer_server.bus import BusUnavailable
from viewer_server.http_edge import read_body
from viewer_server.live import LIVE, LiveScene
from viewer_server.permissions import Action, allowed, is_role
from viewer_server.procedures import record_csv
from viewer_server.redis_bus import RedisBus
from viewer_server.rooms import MAX_USER_NAME, Member, Room, guest_id, user_problem
from viewer_server.session import close_sessions, revoked
from viewer_server.store_db import StoreError
from viewer_server.topics import Comment, Topic

# Seconds a client refused because the server is busy with other BCF imports is told to wait.
BUSY_RETRY_AFTER_S: Final = 5
# Audit entries per request by default and at most: a page of a table, not the whole history.
AUDIT_DEFAULT_LIMIT: Final = 200
AUDIT_MAX_LIMIT: Final = 2000
# The error of a REST read the store could not answer (PostgreSQL unreachable): 503.
STORE_UNAVAILABLE: Final = "store_unavailable"
# HTTP status of each refusal of the annotation service.
STATUS: Final = {
    p.ERR_FORBIDDEN: 403,
    p.ERR_NOT_FOUND: 404,
    p.ERR_STALE_REVISION: 409,
    p.ERR_TOO_LONG: 413,
    p.ERR_RATE_LIMITED: 429,
    p.ERR_BAD_MESSAGE: 400,
    p.ERR_NOT_SAVED: 503,
}


class SessionRequest(msgspec.Struct, omit_defaults=True):
    id: str
    name: str = ""
    anonymous_role: str | None = None  # None: a token is needed to join


class TokenRequest(msgspec.Struct, omit_defaults=True):
    user: str  # the identity: not "guest-…" (anonymous visitors)
    role: str
    ttl_s: float = DEFAULT_TTL_S
    name: str = ""  # display name ("" = the user); not ending in " (guest)"


class TokenResponse(msgspec.Struct, omit_defaults=True):
    session: str
    user: str
    role: str
    expires: float
    token: str
    link: str  # relative: prefix with the server's address
    name: str = ""


class RevokeRequest(msgspec.Struct):
    user: str


class Revoked(msgspec.Struct):
    session: str
    user: str
    revoked_at: float  # unix seconds: the user's tokens issued until then are void; issue a new one to let them in
    disconnected: int  # the user's connections to the session closed now (4003 "token revoked")


class TopicDetail(msgspec.Struct):
    topic: Topic
    comments: list[Comment]


class CommentRequest(msgspec.Struct, omit_defaults=True):
    text: str
    reply_to: str | None = None
    viewpoint: str | None = None


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


class Refused(Exception):
    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(detail)
        self.response = _json({"error": error, "detail": detail}, status)


def _live(request: web.Request) -> LiveScene:
    return request.app[LIVE]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def caller(request: web.Request, session: str | None) -> Member:
    """Who calls, as a member of `session` (or of the token's session when None). Refused: 401 / 404."""
    live = _live(request)
    token = bearer(request)
    connection = f"rest:{request.remote}"
    if token is not None:
        try:
            claims = verify(live.secret, token, session=session, revoked_at=live.rooms.revoked_at)
        except AuthError as exc:
            raise Refused(401, "unauthorized", exc.reason) from None
        if live.rooms.get(claims.session) is None:
            raise Refused(404, "unknown_session", claims.session)
        return Member(connection, claims.session, claims.user, claims.role, claims.jti)
    room = live.rooms.get(session) if session else None
    if session and room is None:
        raise Refused(404, "unknown_session", session)
    if room is None or room.anonymous_role is None:
        raise Refused(401, "unauthorized", "send Authorization: Bearer <token> (from a join link)")
    user = guest_id()  # each anonymous call is a visitor of its own: it can own nothing of anyone else's
    return Member(connection, room.id, user, room.anonymous_role, name=user)  # type: ignore[arg-type]


def caller_role(request: web.Request) -> str | None:
    """The caller's role for a scene-wide read: its token's (401 if bad), else the default session's
    anonymous role (None when that session admits no visitors)."""
    if bearer(request) is not None:
        return caller(request, None).role
    return _live(request).rooms.default.anonymous_role


def require(member: Member, action: Action) -> None:
    if not allowed(member.role, action):
        raise Refused(403, p.ERR_FORBIDDEN, f"role {member.role!r} may not {action.value}")


def _annotations(request: web.Request) -> Any:
    service = _live(request).annotations
    if service is None:
        raise Refused(503, "no_store", "annotations need a server with a data dir")
    return service


async def _body(request: web.Request, cls: type) -> Any:
    try:
        return p.decode_json(await read_body(request), cls)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise Refused(400, p.ERR_BAD_MESSAGE, str(exc)) from None


def handles_refusals(handler: Any) -> Any:
    """Turn Refused and AnnotationError into JSON error responses, and a store that cannot answer a read
    into 503 `store_unavailable` (docs/STORE.md)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as exc:
            return exc.response
        except AnnotationError as exc:
            body = {"error": exc.code, "detail": exc.message}
            if exc.revision is not None:
                body["revision"] = exc.revision
            if exc.field is not None:
                body["field"] = exc.field
            return _json(body, STATUS.get(exc.code, 400))
        except StoreError as exc:
            return _json({"error": STORE_UNAVAILABLE, "detail": f"{exc}; try again"}, 503)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


# --- sessions and tokens ----------------------------------------------------------------------


@handles_refusals
async def sessions_list(request: web.Request) -> web.Response:
    """Admins see every session; others the ones open to anonymous users and their own."""
    live = _live(request)
    member = caller(request, None) if bearer(request) else None
    rooms = live.rooms.list()
    if member is None or not allowed(member.role, Action.SESSION_MANAGE):
        rooms = [r for r in rooms if r.anonymous_role is not None or (member and r.id == member.room)]
    return _json(rooms)


@handles_refusals
async def session_create(request: web.Request) -> web.Response:
    member = caller(request, None)
    require(member, Action.SESSION_MANAGE)
    body: SessionRequest = await _body(request, SessionRequest)
    live = _live(request)
    try:
        room = await live.rooms.create(body.id, body.name, body.anonymous_role, member.user)
    except ValueError as exc:
        raise Refused(409 if "exists" in str(exc) else 400, "bad_session", str(exc)) from None
    return _json(room, 201)


def _room(request: web.Request) -> Room:
    """The session named in the path; 404 if the scene has none of that id."""
    room = _live(request).rooms.get(request.match_info["session"])
    if room is None:
        raise Refused(404, "unknown_session", request.match_info["session"])
    return room


def _check_user(user: str) -> None:
    if not user or len(user) > MAX_USER_NAME:
        raise Refused(400, "bad_user", f"user name: 1..{MAX_USER_NAME} characters")


def _check_token_user(user: str, name: str) -> None:
    problem = user_problem(user, name)
    if problem is not None:
        raise Refused(400, "bad_user", problem)


@handles_refusals
async def session_token(request: web.Request) -> web.Response:
    member = caller(request, None)
    require(member, Action.SESSION_MANAGE)
    room = _room(request)
    body: TokenRequest = await _body(request, TokenRequest)
    if not is_role(body.role):
        raise Refused(400, "bad_role", f"unknown role {body.role!r}")
    _check_token_user(body.user, body.name)
    if not 0 < body.ttl_s <= MAX_TTL_S:
        raise Refused(400, "bad_ttl", f"ttl_s: 0..{MAX_TTL_S}")
    return _json(token_response(_live(request).secret, room, body.user, body.role, body.ttl_s, body.name), 201)


@handles_refusals
async def session_revoke(request: web.Request) -> web.Response:
    """Void every token issued to a user for the session until now, and close their connections to it."""
    member = caller(request, None)
    require(member, Action.SESSION_REVOKE)
    room = _room(request)
    body: RevokeRequest = await _body(request, RevokeRequest)
    _check_user(body.user)
    live = _live(request)
    if live.rooms.store is None:
        raise Refused(503, "no_store", "revocation needs a server with a data dir")
    revoked_at = await live.rooms.revoke(room.id, body.user, member)
    gone = revoked(live.sessions, {(room.id, body.user): revoked_at})
    if isinstance(live.bus, RedisBus):  # the other processes close theirs at once (else within their poll)
        with contextlib.suppress(BusUnavailable):
            await live.bus.announce(live.scene.id, REVOKED.encode())
    await close_sessions(gone, p.CLOSE_AUTH, REVOKED)
    return _json(Revoked(room.id, body.user, revoked_at, len(gone)))


def token_response(secret: bytes, room: Room, user: str, role: str, ttl_s: float, name: str = "") -> TokenResponse:
    token = issue(secret, room.id, user, role, ttl_s, name)  # type: ignore[arg-type]
    return TokenResponse(room.id, user, role, time.time() + ttl_s, token, join_link(room.id, token), name)


# --- topics, comments, attachments ------------------------------------------------------------


@handles_refusals
async def topics_list(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    return _json(_annotations(request).topics(member.room))


@handles_refusals
async def topic_create(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    draft: p.TopicDraft = await _body(request, p.TopicDraft)
    topic, seq = await _annotations(request).create_topic(member, draft)
    return _json(p.Saved(None, "topic_created", topic.guid, topic.revision, seq), 201)


def _topic(request: web.Request, member: Member) -> Topic:
    guid = request.match_info["guid"]
    topic = next((t for t in _annotations(request).topics(member.room) if t.guid == guid), None)
    if topic is None:
        raise Refused(404, p.ERR_NOT_FOUND, f"no topic {guid!r}")
    return topic


@handles_refusals
async def topic_get(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    topic = _topic(request, member)
    return _json(TopicDetail(topic, _annotations(request).comments(member.room, topic.guid)))


@handles_refusals
async def comments_list(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    return _json(_annotations(request).comments(member.room, _topic(request, member).guid))


@handles_refusals
async def comment_create(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    body: CommentRequest = await _body(request, CommentRequest)
    message = p.CommentAdd(request.match_info["guid"], body.text, body.reply_to, body.viewpoint)
    comment, seq = await _annotations(request).add_comment(member, message)
    return _json(p.Saved(None, "comment_added", comment.guid, comment.revision, seq), 201)


@handles_refusals
async def attachment_upload(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    attachment = await _annotations(request).save_attachment(member, await read_body(request))
    return _json(attachment, 201)


@handles_refusals
async def attachment_get(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    store = _live(request).hub.store
    found = store.attachment(request.match_info["attachment"]) if store is not None else None
    if found is None or found[0] != member.room:
        raise Refused(404, p.ERR_NOT_FOUND, request.match_info["attachment"])
    _, meta, data = found
    # Immutable by id; nosniff so a browser never treats the bytes as anything but the image type.
    headers = {"Cache-Control": "private, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
    return web.Response(body=data, content_type=meta.mime, headers=headers)


@handles_refusals
async def audit_list(request: web.Request) -> web.Response:
    member = caller(request, request.match_info["session"])
    require(member, Action.AUDIT_READ)
    store = _live(request).hub.store
    try:
        limit = min(int(request.query.get("limit", AUDIT_DEFAULT_LIMIT)), AUDIT_MAX_LIMIT)
        before = int(request.query["before"]) if "before" in request.query else None
    except ValueError as exc:
        raise Refused(400, "bad_query", str(exc)) from None
    return _json(store.audit(member.room, limit, before) if store else [])


async def procedures_list(request: web.Request) -> web.Response:
    """The procedures the server can run (loaded with `serve --procedures`)."""
    procedures = _live(request).procedures
    return _json(procedures.summaries() if procedures is not None else [])


@handles_refusals
async def procedure_record(request: web.Request) -> web.Response:
    """Who completed which step of the session's latest procedure run (or `?run=`), when; .json or .csv."""
    member = caller(request, request.match_info["session"])
    require(member, Action.PROCEDURE_PROGRESS)
    procedures = _live(request).procedures
    if procedures is None:
        raise Refused(503, "no_store", "procedures need a server with a data dir")
    record = await procedures.record(member.room, request.query.get("run"))
    if record is None:
        raise Refused(404, p.ERR_NOT_FOUND, f"session {member.room!r} has no procedure run")
    if request.path.endswith(".csv"):
        name = f"{record.procedure}-{record.run}.csv"
        return web.Response(
            text=record_csv(record),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return _json(record)


# --- BCF --------------------------------------------------------------------------------------


class BcfImported(msgspec.Struct):
    topics: int  # as stored
    comments: int
    replaced: int  # of those topics, how many the session had (they needed topic.moderate)
    seq: int  # of the last event: connected clients have the topics once they reach it
    unmapped_components: list[str]
    warnings: list[str]


@handles_refusals
async def bcf_export(request: web.Request) -> web.Response:
    """The session's topics as a BCF 3.0 archive (deleted ones left out)."""
    member = caller(request, request.match_info["session"])
    require(member, Action.BCF_EXPORT)
    service, store = _annotations(request), _live(request).hub.store
    topics, comments = service.topics(member.room), service.comments(member.room)
    blobs = {}
    for attachment in {a.id for t in topics for a in t.attachments}:
        found = store.attachment(attachment) if store is not None else None
        if found is not None and found[0] == member.room:
            blobs[attachment] = found[2]
    with tempfile.TemporaryDirectory(prefix="twinview-bcf-") as tmp:
        path = Path(tmp) / "export.bcf"
        await asyncio.to_thread(export_bcf, topics, comments, blobs, member.room, path)
        data = path.read_bytes()
    disposition = f'attachment; filename="{member.room}.bcf"'
    return web.Response(
        body=data, content_type="application/octet-stream", headers={"Content-Disposition": disposition}
    )


@handles_refusals
async def bcf_import(request: web.Request) -> web.Response:
    """Add (or, with topic.moderate, replace by guid) the topics of a BCF 3.0 / 2.1 archive; connected clients
    see them at once. At most MAX_CONCURRENT_IMPORTS run at a time: the next one is refused (503), not queued."""
    member = caller(request, request.match_info["session"])
    require(member, Action.BCF_IMPORT)
    live = _live(request)
    if live.bcf_imports.locked():
        busy = Refused(503, "busy", f"the server is importing {MAX_CONCURRENT_IMPORTS} other BCF archive(s), as"
                       " many as it does at once; try again in a few seconds")  # fmt: skip
        busy.response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
        raise busy
    async with live.bcf_imports:
        body = await read_body(request)
        with tempfile.TemporaryDirectory(prefix="twinview-bcf-") as tmp:
            path = Path(tmp) / "import.bcf"
            path.write_bytes(body)
            del body
            try:
                element_ids, by_guid = scene_index(live.scene.dir)
                result = await asyncio.to_thread(import_bcf, path, element_ids, by_guid)
                detail = f"BCF {result.version} upload"
                annotations = _annotations(request)
                seq, admitted = await annotations.import_topics(
                    member, result.topics, result.comments, result.attachments(), detail
                )
            except ImportFailed as exc:
                raise Refused(400, "bad_bcf", str(exc).replace(str(path), "upload")) from None
    counts = (len(admitted.topics), len(admitted.comments), len(admitted.replaced))
    warnings = [*result.warnings, *admitted.warnings]
    return _json(BcfImported(*counts, seq, result.unmapped_components, warnings), 201)
