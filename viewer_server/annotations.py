"""The annotation service: topics and comments of each collaboration session, checked, persisted, fanned out.

Every change goes the same way, under the session's lock:
  permission (docs/PERMISSIONS.md) → rate limit → text limits → revision check (optimistic concurrency:
  a stale `revision` is refused with `stale_revision` and the current one) → one transaction with the new
  object, written only if the stored one is still at the revision checked (another server process sharing
  the store may have changed it: then `stale_revision` too, and memory takes the stored one), and its audit
  row → only after the COMMIT: memory, the seq-numbered event (delivered
  exactly once, in order, replayed on resume) and the `saved` answer. What was acknowledged survives
  a `kill -9`; what was not acknowledged was never seen by anyone.

    service = Annotations(store, hub, known_elements)
    saved = await service.handle(member, request)     # AnnotationError -> an `error` frame
    service.topics(room), service.comments(room)      # for snapshots and REST

Actors are `rooms.Member`s (user, role, room). BCF import goes through `import_topics`, so that connected
clients see the imported topics at once.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec

from viewer_server import protocol as p
from viewer_server.bcf.admission import Admitted, SessionContent, admit
from viewer_server.permissions import Action, allowed
from viewer_server.store import (
    AuditEntry,
    StaleRevision,
    Store,
    put_attachment,
    put_audit,
    put_comment,
    put_topic,
)
from viewer_server.store_db import Conflict, Db, StoreError
from viewer_server.topics import (
    MAX_ATTACHMENT_BYTES,
    MAX_LABEL,
    MAX_TITLE,
    Attachment,
    Comment,
    LiveValue,
    Topic,
    TopicError,
    check_comment,
    check_topic,
)

T = TypeVar("T", Topic, Comment)

if TYPE_CHECKING:
    from viewer_server.hub import SceneHub
    from viewer_server.rooms import Member

# Annotation writes per user and session: a sustained 30 a minute is far above what a person types,
# the burst of 10 allows a quick series of pins; a runaway script is stopped within seconds.
ANNOTATION_RATE_PER_S: Final = 30 / 60
ANNOTATION_BURST: Final = 10
# Presence / pointer heartbeats per connection: 30 Hz is smooth for a pointer; beyond it poses are dropped.
PRESENCE_RATE_PER_S: Final = 30.0
PRESENCE_BURST: Final = 30
# Users remembered by a rate limiter before refilled buckets are forgotten (a few hundred kB).
RATE_LIMITER_MAX_KEYS: Final = 10_000
# Per session, so that one session's memory (and its snapshot) stays bounded: a large review has ~1 000.
MAX_TOPICS_PER_SESSION: Final = 10_000
MAX_COMMENTS_PER_SESSION: Final = 100_000
# Viewpoints and attachments per topic: a BCF topic rarely has more than a handful.
MAX_VIEWPOINTS: Final = 20
MAX_TOPIC_ATTACHMENTS: Final = 20
IMAGE_MAGIC: Final = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


class AnnotationError(Exception):
    """A refused request: `code` is one of the protocol's ERR_* values."""

    def __init__(self, code: str, message: str, *, revision: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.revision = revision
        self.field = field

    def frame(self, ref: str | None) -> p.Error:
        return p.Error(self.code, self.message, ref, self.revision, self.field)


class RateLimiter:
    """Token buckets by key: `rate` per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}  # key -> (tokens, at)

    def allow(self, key: object) -> bool:
        now = self.clock()
        if len(self._buckets) >= RATE_LIMITER_MAX_KEYS:
            self._prune(now)
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled: they are the same as no bucket."""
        full = self.burst / self.rate
        self._buckets = {k: (t, at) for k, (t, at) in self._buckets.items() if now - at < full}


@dataclass
class RoomAnnotations:
    topics: dict[str, Topic]
    comments: dict[str, Comment]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _check(role: str, action: Action) -> None:
    if not allowed(role, action):
        raise AnnotationError(p.ERR_FORBIDDEN, f"role {role!r} may not {action.value}")


def _limits(check: Callable[[], None]) -> None:
    try:
        check()
    except TopicError as exc:
        raise AnnotationError(p.TOPIC_ERROR_CODES[exc.kind], str(exc), field=exc.field) from None


def _check_fields(topic: Topic, known: set[str] | None = None) -> None:
    """The limits of a topic; with `known`, its viewpoints may name only those elements."""
    _limits(lambda: check_topic(topic, known))
    if len(topic.viewpoints) > MAX_VIEWPOINTS:
        raise AnnotationError(p.ERR_TOO_LONG, f"viewpoints: more than {MAX_VIEWPOINTS}", field="viewpoints")
    if len(topic.attachments) > MAX_TOPIC_ATTACHMENTS:
        raise AnnotationError(p.ERR_TOO_LONG, f"attachments: more than {MAX_TOPIC_ATTACHMENTS}", field="attachments")
    if len(topic.topic_type) > MAX_LABEL:
        raise AnnotationError(p.ERR_TOO_LONG, f"topic_type: longer than {MAX_LABEL}", field="topic_type")
    if topic.assignee is not None and len(topic.assignee) > MAX_TITLE:
        raise AnnotationError(p.ERR_TOO_LONG, f"assignee: longer than {MAX_TITLE}", field="assignee")
    if topic.due_date is not None:
        try:
            datetime.date.fromisoformat(topic.due_date)
        except ValueError:
            raise AnnotationError(p.ERR_BAD_MESSAGE, "due_date: not an ISO date", field="due_date") from None


def image_mime(data: bytes) -> str | None:
    """image/png or image/jpeg by the file's magic bytes, else None."""
    return next((mime for magic, mime in IMAGE_MAGIC.items() if data.startswith(magic)), None)


class Annotations:
    """Topics and comments of every session of one scene. Runs on the event loop."""

    def __init__(self, store: Store, hub: SceneHub, known_elements: set[str]) -> None:
        self.store = store
        self.hub = hub
        self.known = known_elements
        self.limiter = RateLimiter(ANNOTATION_RATE_PER_S, ANNOTATION_BURST)
        self._rooms: dict[str, RoomAnnotations] = {}
        hub.on_event.append(self._apply)

    def _apply(self, event: p.Event, mine: bool) -> None:
        """Every numbered event: a topic or comment changed by anyone (on any process sharing the scene) is
        what this one's sessions read and edit from now on (a session not loaded yet reads the store), and a
        change its author made on another process counts against their rate here too."""
        if not mine and event.user and (event.topic is not None or event.comment is not None):
            self.limiter.allow((event.session, event.user))
        room = self._rooms.get(event.session)
        if room is None:
            return
        if event.topic is not None:
            room.topics[event.topic.guid] = event.topic
        elif event.comment is not None:
            room.comments[event.comment.guid] = event.comment

    def _room(self, room: str) -> RoomAnnotations:
        state = self._rooms.get(room)
        if state is None:  # first use since start: load from the store
            topics = {t.guid: t for t in self.store.topics(room)}
            comments = {c.guid: c for c in self.store.comments(room)}
            state = self._rooms[room] = RoomAnnotations(topics, comments)
        return state

    def topics(self, room: str) -> list[Topic]:
        return list(self._room(room).topics.values())

    def comments(self, room: str, topic: str | None = None) -> list[Comment]:
        comments = self._room(room).comments.values()
        return [c for c in comments if topic is None or c.topic == topic]

    # --- requests --------------------------------------------------------------------------------

    async def handle(self, actor: Member, request: p.AnnotationRequest, replay_time: float | None = None) -> p.Saved:
        """Carry out one request of the protocol; AnnotationError when refused (`not_saved` when the store
        cannot be read or written). `replay_time`: the history time the actor's connection shows (PROTOCOL.md
        §14), recorded on a new topic or comment."""
        try:
            return await self._handle(actor, request, replay_time)
        except StoreError as exc:  # a read the change needed (a session not loaded yet, an attachment)
            raise AnnotationError(p.ERR_NOT_SAVED, f"not saved, try again: {exc}") from None

    async def _handle(self, actor: Member, request: p.AnnotationRequest, replay_time: float | None) -> p.Saved:
        if isinstance(request, p.TopicCreate):
            topic, seq = await self.create_topic(actor, request.topic, replay_time)
            return p.Saved(request.ref, "topic_created", topic.guid, topic.revision, seq)
        if isinstance(request, p.TopicUpdate):
            topic, seq = await self.update_topic(actor, request)
            return p.Saved(request.ref, "topic_updated", topic.guid, topic.revision, seq)
        if isinstance(request, p.TopicDelete):
            topic, seq = await self.delete_topic(actor, request.guid, request.revision)
            return p.Saved(request.ref, "topic_deleted", topic.guid, topic.revision, seq)
        if isinstance(request, p.CommentAdd):
            comment, seq = await self.add_comment(actor, request, replay_time)
            return p.Saved(request.ref, "comment_added", comment.guid, comment.revision, seq)
        if isinstance(request, p.CommentEdit):
            comment, seq = await self.edit_comment(actor, request.guid, request.revision, request.text)
            return p.Saved(request.ref, "comment_edited", comment.guid, comment.revision, seq)
        comment, seq = await self.delete_comment(actor, request.guid, request.revision)
        return p.Saved(request.ref, "comment_deleted", comment.guid, comment.revision, seq)

    def _rate(self, actor: Member) -> None:
        if not self.limiter.allow((actor.room, actor.user)):
            raise AnnotationError(
                p.ERR_RATE_LIMITED, f"more than {ANNOTATION_BURST} changes in a row; wait a few seconds"
            )

    async def create_topic(
        self, actor: Member, draft: p.TopicDraft, replay_time: float | None = None
    ) -> tuple[Topic, int]:
        _check(actor.role, Action.TOPIC_CREATE)
        now = time.time()
        topic = Topic(
            guid=draft.guid or secrets.token_hex(16),
            title=draft.title,
            author=actor.user,
            created=now,
            pin=draft.pin,
            description=draft.description,
            status=draft.status,
            priority=draft.priority,
            topic_type=draft.topic_type,
            assignee=draft.assignee or None,
            labels=draft.labels,
            due_date=draft.due_date or None,
            viewpoints=draft.viewpoints,
            attachments=self._attachments(actor.room, draft.attachments),
            live_values=self._live_values(draft.pin.element) if draft.pin else [],
            replay_time=replay_time,
        )
        _check_fields(topic, self.known)
        if draft.pin is not None and draft.pin.element not in self.known:
            raise AnnotationError(p.ERR_NOT_FOUND, f"no element {draft.pin.element!r}", field="pin.element")
        self._rate(actor)
        room = self._room(actor.room)
        async with room.lock:
            if topic.guid in room.topics:
                raise AnnotationError(p.ERR_BAD_MESSAGE, f"topic {topic.guid!r} exists", field="guid")
            if len(room.topics) >= MAX_TOPICS_PER_SESSION:
                raise AnnotationError(p.ERR_TOO_LONG, f"more than {MAX_TOPICS_PER_SESSION} topics", field="topics")
            return topic, await self._commit_topic(actor, room, topic, "topic_created", Action.TOPIC_CREATE, "", None)

    async def update_topic(self, actor: Member, msg: p.TopicUpdate) -> tuple[Topic, int]:
        fields = {
            name: getattr(msg, name)
            for name in ("title", "description", "status", "priority", "topic_type", "assignee", "labels", "due_date")
            if getattr(msg, name) is not None
        }
        for cleared in ("assignee", "due_date"):
            if fields.get(cleared) == "":
                fields[cleared] = None
        room = self._room(actor.room)
        async with room.lock:
            current = self._current_topic(actor.room, room, msg.guid, msg.revision)
            text_edit = "title" in fields or "description" in fields
            action = Action.TOPIC_UPDATE
            if text_edit:
                action = self._own_or_moderate(actor, current.author, Action.TOPIC_EDIT_OWN, Action.TOPIC_MODERATE)
            if not text_edit or set(fields) - {"title", "description"}:
                _check(actor.role, Action.TOPIC_UPDATE)
            if not fields:
                raise AnnotationError(p.ERR_BAD_MESSAGE, "nothing to change")
            self._rate(actor)
            self._check_revision(current.revision, msg.revision)
            topic = self._revise(current, actor, **fields)
            _check_fields(topic)
            detail = ", ".join(
                f"{k}: {getattr(current, k)!r} -> {v!r}" for k, v in fields.items() if k != "description"
            )
            if "description" in fields:
                detail = ", ".join(filter(None, (detail, "description edited")))
            if action == Action.TOPIC_MODERATE:
                detail = f"author {current.author!r}; {detail}"
            return topic, await self._commit_topic(actor, room, topic, "topic_updated", action, detail, current)

    async def delete_topic(self, actor: Member, guid: str, revision: int) -> tuple[Topic, int]:
        room = self._room(actor.room)
        async with room.lock:
            current = self._current_topic(actor.room, room, guid, revision)
            action = self._own_or_moderate(actor, current.author, Action.TOPIC_DELETE_OWN, Action.TOPIC_MODERATE)
            self._rate(actor)
            self._check_revision(current.revision, revision)
            topic = self._revise(current, actor, deleted=True)
            detail = f"deleted; author {current.author!r}, title {current.title!r}"
            return topic, await self._commit_topic(actor, room, topic, "topic_deleted", action, detail, current)

    async def add_comment(
        self, actor: Member, msg: p.CommentAdd, replay_time: float | None = None
    ) -> tuple[Comment, int]:
        _check(actor.role, Action.COMMENT_CREATE)
        comment = Comment(
            guid=msg.guid or secrets.token_hex(16),
            topic=msg.topic,
            author=actor.user,
            text=msg.text,
            created=time.time(),
            reply_to=msg.reply_to,
            viewpoint=msg.viewpoint,
            replay_time=replay_time,
        )
        _limits(lambda: check_comment(comment))
        self._rate(actor)
        room = self._room(actor.room)
        async with room.lock:
            self._current_topic(actor.room, room, msg.topic)
            if comment.guid in room.comments:
                raise AnnotationError(p.ERR_BAD_MESSAGE, f"comment {comment.guid!r} exists", field="guid")
            if msg.reply_to is not None and self._comment(actor.room, room, msg.reply_to) is None:
                raise AnnotationError(p.ERR_NOT_FOUND, f"no comment {msg.reply_to!r} to reply to", field="reply_to")
            if len(room.comments) >= MAX_COMMENTS_PER_SESSION:
                raise AnnotationError(p.ERR_TOO_LONG, f"more than {MAX_COMMENTS_PER_SESSION} comments")
            seq = await self._commit_comment(actor, room, comment, "comment_added", Action.COMMENT_CREATE, "", None)
            return comment, seq

    async def edit_comment(self, actor: Member, guid: str, revision: int, text: str) -> tuple[Comment, int]:
        room = self._room(actor.room)
        async with room.lock:
            current = self._current_comment(actor.room, room, guid, revision)
            action = self._own_or_moderate(actor, current.author, Action.COMMENT_EDIT_OWN, Action.COMMENT_MODERATE)
            self._rate(actor)
            self._check_revision(current.revision, revision)
            comment = msgspec.structs.replace(current, text=text, revision=current.revision + 1, modified=time.time())
            _limits(lambda: check_comment(comment))
            detail = f"author {current.author!r}" if action == Action.COMMENT_MODERATE else ""
            return comment, await self._commit_comment(actor, room, comment, "comment_edited", action, detail, current)

    async def delete_comment(self, actor: Member, guid: str, revision: int) -> tuple[Comment, int]:
        room = self._room(actor.room)
        async with room.lock:
            current = self._current_comment(actor.room, room, guid, revision)
            action = self._own_or_moderate(actor, current.author, Action.COMMENT_DELETE_OWN, Action.COMMENT_MODERATE)
            self._rate(actor)
            self._check_revision(current.revision, revision)
            comment = msgspec.structs.replace(
                current, deleted=True, revision=current.revision + 1, modified=time.time()
            )
            detail = f"deleted; author {current.author!r}, text {current.text[:200]!r}"
            return comment, await self._commit_comment(actor, room, comment, "comment_deleted", action, detail, current)

    async def save_attachment(self, actor: Member, data: bytes) -> Attachment:
        """Store a PNG or JPEG for the actor's session; returns its id for topics and viewpoints."""
        _check(actor.role, Action.COMMENT_CREATE)
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise AnnotationError(p.ERR_TOO_LONG, f"larger than {MAX_ATTACHMENT_BYTES} bytes", field="attachment")
        mime = image_mime(data)
        if mime is None:
            raise AnnotationError(p.ERR_BAD_MESSAGE, "not a PNG or JPEG image", field="attachment")
        self._rate(actor)
        attachment = Attachment(secrets.token_hex(16), mime, len(data), hashlib.sha256(data).hexdigest())
        now = time.time()
        await self._write_audited(
            self._audit(actor, "attachment.create", attachment.id, f"{mime}, {len(data)} bytes", now),
            lambda db: put_attachment(db, actor.room, attachment, data, actor.user, now),
        )
        return attachment

    async def import_topics(
        self,
        actor: Member,
        topics: list[Topic],
        comments: list[Comment],
        attachments: Iterable[tuple[Attachment, bytes]],
        detail: str = "",
    ) -> tuple[int, Admitted]:
        """Add topics, comments and attachments to the actor's session (BCF import) in one transaction, as
        `bcf.admission.admit` admits them (the actor is their author of record; colliding ids are remapped);
        replacing topics the session has needs `topic.moderate`. Connected clients get topic_created /
        topic_updated / comment_added events. A replaced item's revision goes on from the current one, so
        edits made on the old revision are refused as stale. Returns the last seq and what was admitted.
        `attachments` may be lazy: the store's writer thread reads it, one attachment at a time. The session is
        read from the store first (another process sharing it may have changed it), and each replaced item is
        written only if the store still has the revision it replaces, else `stale_revision`: import again."""
        _check(actor.role, Action.BCF_IMPORT)
        room = self._room(actor.room)
        async with room.lock:
            room.topics = {t.guid: t for t in self.store.topics(actor.room)}
            room.comments = {c.guid: c for c in self.store.comments(actor.room)}
            owners = self.store.attachment_sessions({a.id for t in topics for a in t.attachments})
            foreign = {att for att, session in owners.items() if session != actor.room}
            content = SessionContent(actor.room, room.topics, room.comments, foreign)
            admitted = admit(topics, comments, attachments, actor.user, content)
            if admitted.replaced and not allowed(actor.role, Action.TOPIC_MODERATE):
                shown = ", ".join(admitted.replaced[:3]) + (" …" if len(admitted.replaced) > 3 else "")
                raise AnnotationError(
                    p.ERR_FORBIDDEN,
                    f"the archive replaces {len(admitted.replaced)} topic(s) of this session ({shown}); replacing"
                    f" topics needs {Action.TOPIC_MODERATE.value}, which role {actor.role!r} has not: import it"
                    " into another session, or ask an admin",
                )
            admitted.topics = [self._next_revision(t, room.topics.get(t.guid)) for t in admitted.topics]
            admitted.comments = [self._next_revision(c, room.comments.get(c.guid)) for c in admitted.comments]
            if admitted.replaced:
                detail = f"{detail}; replaced {len(admitted.replaced)} topic(s)"
            entry = self._audit(actor, Action.BCF_IMPORT, f"{len(admitted.topics)} topics", detail, time.time())
            based_on = {("topics", g): t.revision for g, t in room.topics.items()}
            based_on |= {("comments", g): c.revision for g, c in room.comments.items()}
            write = self.store.import_topics(
                actor.room, admitted.topics, admitted.comments, admitted.attachments, entry, based_on
            )
            try:
                await self._saved(write)
            except StaleRevision:
                raise AnnotationError(
                    p.ERR_STALE_REVISION, "a topic or comment was changed meanwhile by someone else: import again"
                ) from None
            seq = self.hub.seq
            for topic in admitted.topics:
                kind = "topic_updated" if topic.guid in room.topics else "topic_created"
                room.topics[topic.guid] = topic
                seq = await self._emit(actor, kind, topic.guid, topic=topic)
            for comment in admitted.comments:
                kind = "comment_edited" if comment.guid in room.comments else "comment_added"
                room.comments[comment.guid] = comment
                seq = await self._emit(actor, kind, comment.guid, comment=comment)
            return seq, admitted

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _next_revision(item: T, current: T | None) -> T:
        if current is None:
            return item
        return msgspec.structs.replace(item, revision=current.revision + 1)

    @staticmethod
    async def _saved(write: Awaitable[None]) -> None:
        """Await a store write; a failing disk or an unreachable database answers `not_saved` (nothing
        changed, the message names the cause) instead of dropping the connection."""
        try:
            await write
        except Conflict as exc:
            raise AnnotationError(p.ERR_BAD_MESSAGE, f"exists already: {exc}", field="guid") from None
        except StoreError as exc:
            raise AnnotationError(p.ERR_NOT_SAVED, f"not saved, try again: {exc}") from None

    @staticmethod
    def _fresh(items: dict[str, T], guid: str, revision: int | None, read: Callable[[str], T | None]) -> T | None:
        """The item from memory; `read` from the store when memory has none or not at `revision` (None: any),
        since another server process sharing the store may have added or changed it. Memory's when the store
        cannot be read: the write that follows will tell."""
        item = items.get(guid)
        if item is not None and (revision is None or item.revision == revision):
            return item
        try:
            stored = read(guid)
        except StoreError:
            return item
        if stored is not None:
            items[guid] = stored
        return stored or item

    def _topic(self, session: str, room: RoomAnnotations, guid: str, revision: int | None = None) -> Topic | None:
        return self._fresh(room.topics, guid, revision, lambda g: self.store.topic(session, g))

    def _comment(self, session: str, room: RoomAnnotations, guid: str, revision: int | None = None) -> Comment | None:
        return self._fresh(room.comments, guid, revision, lambda g: self.store.comment(session, g))

    def _current_topic(self, session: str, room: RoomAnnotations, guid: str, revision: int | None = None) -> Topic:
        topic = self._topic(session, room, guid, revision)
        if topic is None or topic.deleted:
            raise AnnotationError(p.ERR_NOT_FOUND, f"no topic {guid!r} in this session")
        return topic

    def _current_comment(self, session: str, room: RoomAnnotations, guid: str, revision: int) -> Comment:
        comment = self._comment(session, room, guid, revision)
        if comment is None or comment.deleted:
            raise AnnotationError(p.ERR_NOT_FOUND, f"no comment {guid!r} in this session")
        return comment

    @staticmethod
    def _own_or_moderate(actor: Member, author: str, own: Action, moderate: Action) -> Action:
        """The action that allows this change: `own` on one's own item, else `moderate` (admins)."""
        action = own if author == actor.user else moderate
        _check(actor.role, action)
        return action

    @staticmethod
    def _check_revision(current: int, given: int) -> None:
        if given != current:
            raise AnnotationError(
                p.ERR_STALE_REVISION, f"changed meanwhile: revision {current}, not {given}", revision=current
            )

    @staticmethod
    def _revise(topic: Topic, actor: Member, **changes: object) -> Topic:
        return msgspec.structs.replace(
            topic, **changes, revision=topic.revision + 1, modified=time.time(), modified_by=actor.user
        )

    def _live_values(self, element: str) -> list[LiveValue]:
        values = self.hub.state.element(element)
        return [LiveValue(prop, pv.value, pv.unit, pv.ts) for prop, pv in sorted(values.items())]

    def _attachments(self, room: str, ids: list[str]) -> list[Attachment]:
        found = []
        for attachment_id in ids:
            row = self.store.attachment(attachment_id)
            if row is None or row[0] != room:
                raise AnnotationError(p.ERR_NOT_FOUND, f"no attachment {attachment_id!r}", field="attachments")
            found.append(row[1])
        return found

    def _audit(self, actor: Member, action: str, target: str, detail: str, ts: float) -> AuditEntry:
        return AuditEntry(actor.room, ts, actor.user, actor.role, str(action), target, detail)

    async def _write_audited(self, entry: AuditEntry, put: Callable[[Db], None]) -> None:
        """Write `put` and its audit entry in one transaction; returns once committed."""

        def write(db: Db) -> None:
            put(db)
            put_audit(db, entry)

        await self._saved(self.store.run(write))

    async def _commit_topic(
        self,
        actor: Member,
        room: RoomAnnotations,
        topic: Topic,
        kind: str,
        action: Action,
        detail: str,
        replaces: Topic | None,
    ) -> int:
        """Write `topic` (new, or replacing `replaces` if the store still has that revision) with its audit row."""
        entry = self._audit(actor, action, topic.guid, detail, time.time())
        expected = replaces.revision if replaces is not None else 0
        put = lambda db: put_topic(db, actor.room, topic, expected=expected)  # noqa: E731
        await self._revised(entry, put, lambda: self._topic(actor.room, room, topic.guid, -1))
        room.topics[topic.guid] = topic  # after the commit, in the same step as the event
        return await self._emit(actor, kind, topic.guid, topic=topic)

    async def _commit_comment(
        self,
        actor: Member,
        room: RoomAnnotations,
        comment: Comment,
        kind: str,
        action: Action,
        detail: str,
        replaces: Comment | None,
    ) -> int:
        entry = self._audit(actor, action, comment.guid, detail, time.time())
        expected = replaces.revision if replaces is not None else 0
        put = lambda db: put_comment(db, actor.room, comment, expected=expected)  # noqa: E731
        await self._revised(entry, put, lambda: self._comment(actor.room, room, comment.guid, -1))
        room.comments[comment.guid] = comment
        return await self._emit(actor, kind, comment.guid, comment=comment)

    async def _revised(
        self, entry: AuditEntry, put: Callable[[Db], None], stored: Callable[[], Topic | Comment | None]
    ) -> None:
        """Write a conditional `put` with its audit row. Refused as `stale_revision` when another process
        changed the item first: memory then takes the `stored` item, whose revision the error carries."""
        try:
            await self._write_audited(entry, put)
        except StaleRevision:
            current = stored()
            raise AnnotationError(
                p.ERR_STALE_REVISION,
                "changed meanwhile by someone else: reload it",
                revision=current.revision if current is not None else None,
            ) from None

    async def _emit(
        self, actor: Member, kind: str, guid: str, *, topic: Topic | None = None, comment: Comment | None = None
    ) -> int:
        element = topic.pin.element if topic is not None and topic.pin is not None else ""
        event = await self.hub.number(
            lambda seq: p.Event(
                seq, kind, guid, element, time.time(), session=actor.room, user=actor.user, topic=topic, comment=comment
            )
        )
        return event.seq
