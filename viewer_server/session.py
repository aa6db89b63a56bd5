"""One WebSocket connection: handshake, hello, then a reader loop and its own sender task.

The sender is the only task that writes to the socket. It sends control replies (welcome, snapshot,
ack, error, pong) first, in order, then whatever the outbox holds. The reader never waits for the
socket; fan-out never waits for the reader. A client that stops reading only slows its own sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import secrets
import socket
import struct
import termios
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec
from aiohttp import WSMsgType, web

from viewer_server import __version__
from viewer_server import protocol as p
from viewer_server.annotations import PRESENCE_BURST, PRESENCE_RATE_PER_S, AnnotationError, RateLimiter
from viewer_server.audit import GUESTS, REFUSED, note_ingest
from viewer_server.auth import AuthError
from viewer_server.bus import BusUnavailable
from viewer_server.hub import FLUSH_INTERVAL_S
from viewer_server.ingest import Applied, NotSaved
from viewer_server.live import LIVE, LiveScene
from viewer_server.outbox import OUTBOX_MAX_EVENTS, RESYNC, Outbox
from viewer_server.permissions import Action, allowed
from viewer_server.presenter import markup_topic
from viewer_server.procedures import Refused, require
from viewer_server.replay import Player, ReplayTwin
from viewer_server.resume_log import RESUME_LOG_MAX_CHANGES
from viewer_server.rooms import Member, NameRefused, admitted
from viewer_server.store import AuditEntry
from viewer_server.store_db import StoreError
from viewer_server.topics import MAX_VIEWPOINT_IDS

log = logging.getLogger(__name__)

# Control replies queued for one client before its reader stops reading (TCP then pushes back on
# the client): a client that sends requests without reading the answers cannot grow server memory.
CONTROL_QUEUE_MAX: Final = 64
# aiohttp pings every so often; a peer that does not answer within half of it is dropped.
HEARTBEAT_S: Final = 30.0
CAPABILITIES: Final = [
    "resume", "coalesce", "msgpack", "publish", "presence", "alarms", "sessions", "annotations",
    "procedures", "presenter", "commands", "alarm_lifecycle", "stale", "replay", "interest", "status",
]  # fmt: skip
# Bytes aiohttp writes before it checks whether the socket drains (its default is 256 kB): small, so
# that a slow client's sender blocks early and its outbox coalesces instead of the socket buffering.
WS_WRITER_LIMIT: Final = 16 * 1024
# Requests refused for the role (`forbidden`) per connection: a person clicking a button they may not use
# stays far below the burst; past it every further refusal answers `rate_limited`, and after another
# burst of those the connection is closed (1008), so a script looping on a refused request stops.
REFUSALS_PER_S: Final = 2.0
REFUSAL_BURST: Final = 20
# Unsent bytes one socket may hold below the outbox, in user space (the transport's write high-water
# mark, asyncio's default is 64 kB) and again in the kernel (TCP_NOTSENT_LOWAT; without it the kernel
# autotunes its send buffer up to net.ipv4.tcp_wmem's maximum, 4 MB on Linux, all of it stale deltas
# in front of a slow reader). Bytes in flight (sent, not yet acknowledged) are bounded by the peer's
# receive window, not by this.
SEND_QUEUE_BYTES: Final = 16 * 1024
# Publish batches of one connection applied and waiting for their commit (the historian's group commit) before
# their acks: the next batch is read and applied meanwhile, so a publisher's throughput is not one batch per
# commit; past this many the reader waits, and TCP pushes back on the publisher.
PUBLISHES_IN_FLIGHT: Final = 32
# Close reasons are limited to 123 bytes by RFC 6455.
MAX_CLOSE_REASON: Final = 123
# How long closing connections from outside (shutdown, a revocation) waits for the peers' close frames:
# a stalled client must not hold the caller; its close goes on in the background.
CLOSE_WAIT_S: Final = 2.0


def offered_subprotocols(request: web.Request) -> list[str]:
    header = request.headers.get("Sec-WebSocket-Protocol", "")
    return [proto.strip() for proto in header.split(",") if proto.strip()]


def version_mismatch_reason(offered: list[str]) -> str:
    reason = f"TwinView server speaks {', '.join(p.SUBPROTOCOLS)}; this client offered {', '.join(offered)}"
    return reason[:MAX_CLOSE_REASON]


class Session:
    def __init__(
        self,
        live: LiveScene,
        ws: web.WebSocketResponse,
        encoding: p.Encoding,
        transport: asyncio.BaseTransport | None,
        peer: str = "",
    ) -> None:
        self.live = live
        self.peer = peer  # the client's address, for the audit trail
        self.ws = ws
        self.transport = transport  # the TCP connection under `ws`, for `send_queue_bytes`
        self.encoding = encoding
        self.id = secrets.token_hex(6)
        self.client = "?"
        self.role: p.Role = "viewer"
        self.member: Member | None = None  # set once admitted
        self._presence_limit = RateLimiter(PRESENCE_RATE_PER_S, PRESENCE_BURST)
        self.presence_dropped = 0  # heartbeats over PRESENCE_RATE_PER_S, not fanned out
        self._refusals = RateLimiter(REFUSALS_PER_S, REFUSAL_BURST)
        self._rate_limited = 0  # refusals answered `rate_limited`
        self._handling = "hello"  # the type of the message being handled, for the summary of refusals
        self.outbox = Outbox(live.rules.default_layer, encoding)
        self._control: deque[bytes] = deque()  # replies, sent before outbox frames
        self._drained = asyncio.Event()
        self._unsubscribe: Any = None
        self._opcode = WSMsgType.TEXT if encoding == "json" else WSMsgType.BINARY
        self.frames_sent = 0
        self.resyncs = 0
        # While replaying the history (PROTOCOL.md §14): the twin as of the replayed time and its player.
        self.twin: ReplayTwin | None = None
        self.player: Player | None = None
        self.follows = True  # driven by the presenter's replay, until its own seek / play / pause
        self._acks: deque[asyncio.Task[None]] = deque()  # publish batches awaiting their commit, oldest first
        self.interest: p.Interest | None = None  # what it sees (PROTOCOL.md §15); None: the whole scene

    @property
    def layer(self) -> str:
        return self.outbox.layer

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        hello = await self._await_hello()
        if hello is None:
            return
        self.client = hello.client
        try:
            member = await admitted(self.live.rooms, self.live.secret, hello, self.id)
            if self.live.annotations is not None:  # loaded now: the snapshot must not meet an unreachable store
                self.live.annotations.topics(member.room)
        except AuthError as exc:
            await self.close(p.CLOSE_NAME if isinstance(exc, NameRefused) else p.CLOSE_AUTH, exc.reason)
            return
        except StoreError as exc:  # a session this process has not loaded yet, while the store is down
            self.live.rooms.release_name(self.id)  # admitted, never joined
            log.warning("connection %s refused for now: %s", self.id, exc)
            await self.close(p.CLOSE_GOING_AWAY, "the store cannot be read now: reconnect in a moment")
            return
        self.member, self.role = member, member.role
        self.outbox.room = member.room
        layer = hello.layer or self.live.rules.default_layer
        if layer not in self.live.rules.layers:
            await self._reply(p.Error(p.ERR_UNKNOWN_LAYER, f"no layer {layer!r}; using the default", "hello"))
            layer = self.live.rules.default_layer
        self.outbox.reset(layer)
        self._look_at(hello.interest)
        sender = asyncio.create_task(self._send_loop(), name=f"twinview-send-{self.id}")
        self.live.rooms.join(member)
        try:
            await self._reply(self._welcome())
            if (status := bus_status(self.live)).state == "degraded":
                self.tell(status)
            self._start_stream(hello.resume)
            await self._follow_presenter_replay()
            await self._read_loop()
        finally:
            for ack in self._acks:
                ack.cancel()
            if self.player is not None:
                self.player.stop()
            self.live.rooms.leave(member)
            if self.live.presenters is not None:
                self.live.presenters.leave(member)
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.live.hub.set_presence(self.id, None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _await_hello(self) -> p.Hello | None:
        try:
            msg = await self.ws.receive(timeout=p.HELLO_TIMEOUT_S)
        except TimeoutError:
            await self.close(p.CLOSE_POLICY, f"no hello within {p.HELLO_TIMEOUT_S:g} s")
            return None
        data = await self._frame_data(msg)
        if data is None:
            return None
        try:
            hello = p.decode_client(data, self.encoding)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self.close(p.CLOSE_POLICY, f"first message must be a valid hello: {exc}")
            return None
        if not isinstance(hello, p.Hello):
            await self.close(p.CLOSE_POLICY, f"first message must be hello, not {type(hello).__struct_config__.tag}")
            return None
        if hello.protocol != p.PROTOCOL_VERSION:
            await self.close(
                p.CLOSE_VERSION,
                f"TwinView server speaks protocol {p.PROTOCOL_VERSION}; this client speaks {hello.protocol}",
            )
            return None
        return hello

    def _welcome(self) -> p.Welcome:
        return p.Welcome(
            session_id=self.id,
            server_epoch=self.live.hub.epoch,
            seq=self.live.hub.seq,
            server_version=__version__,
            protocol=p.PROTOCOL_VERSION,
            encoding=self.encoding,
            scene=self.live.scene.id,
            layer=self.layer,
            layers=self.live.rules.layers,
            capabilities=CAPABILITIES,
            limits={
                "max_message_bytes": p.MAX_MESSAGE_BYTES,
                "max_batch_readings": p.MAX_BATCH_READINGS,
                "resume_log": RESUME_LOG_MAX_CHANGES,
                "outbox_max_events": OUTBOX_MAX_EVENTS,
                "flush_interval_ms": round(FLUSH_INTERVAL_S * 1000, 3),
                "max_viewpoint_ids": MAX_VIEWPOINT_IDS,
                "max_interest_elements": p.MAX_INTEREST_ELEMENTS,
            },
            session=self.outbox.room,
            user=self.member.user if self.member else "",
            role=self.role,
            name=self.member.name if self.member else "",
            token=self.member.guest_token if self.member else "",
        )

    def _start_stream(self, resume: p.Resume | None) -> None:
        """Snapshot or resume, then subscribe: one synchronous step, so no batch falls in between."""
        hub = self.live.hub
        if resume is not None:
            missed = hub.resume(resume)
            if not isinstance(missed, str):
                # Always answered, even when nothing was missed, so the client knows it resumed.
                delta = missed.delta(self.layer, self.outbox.room, self.outbox.seen)
                self._control.append(p.encode(delta, self.encoding))
                self.outbox.notify()
            else:
                self._queue_snapshot(resync=True, reason=missed)
        else:
            self._queue_snapshot()
        self._unsubscribe = self.live.bus.subscribe(hub.scene_id, self.outbox.offer)

    def _look_at(self, interest: p.Interest | None) -> None:
        """See what `interest` covers from the next snapshot on (None, or one naming nothing: the whole scene)."""
        if interest is None or (interest.box is None and interest.elements is None):
            self.interest, self.outbox.seen = None, None
            return
        seen = set(interest.elements or ())
        if interest.box is not None:
            seen.update(self.live.scene.areas.overlapping(*interest.box))
        self.interest, self.outbox.seen = interest, frozenset(seen)

    def _queue_snapshot(self, *, resync: bool = False, reason: str | None = None) -> None:
        room, urls = self.outbox.room, self.live.scene.urls
        snap = self.live.hub.snapshot(self.layer, urls, resync=resync, reason=reason, room=room, seen=self.outbox.seen)
        snap.interest = self.interest
        if self.live.annotations is not None:  # committed topics: each one's event is at or before snap.seq
            snap.topics = self.live.annotations.topics(room)
            snap.comments = self.live.annotations.comments(room)
        if self.live.procedures is not None:
            snap.procedure = self.live.procedures.snapshot(room)
        if self.live.presenters is not None:
            snap.presenter = self.live.presenters.snapshot(room)
        self.outbox.reset(self.layer)
        if resync:
            self.resyncs += 1
        # Snapshots bypass CONTROL_QUEUE_MAX: at most one per request or resync, replacing a backlog.
        self._control.append(p.encode(snap, self.encoding))
        self.outbox.notify()

    # --- reading ---------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        async for msg in self.ws:
            if self.ws.closed:  # closed by the server meanwhile (shutdown, revoked): ignore what is in flight
                return
            data = await self._frame_data(msg)
            if data is None:
                return
            try:
                message = p.decode_client(data, self.encoding)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await self._reply(p.Error(p.ERR_BAD_MESSAGE, str(exc)))
                continue
            try:
                await self._handle(message)
            # Several processes, and Redis does not answer; or PostgreSQL, for a seek of its history: nothing changed.
            except (BusUnavailable, StoreError) as exc:
                tag = type(message).__struct_config__.tag
                await self._reply(p.Error(p.ERR_NOT_SAVED, str(exc), getattr(message, "ref", None) or tag))

    async def _handle(self, message: p.ClientMessage) -> None:
        self._handling = type(message).__struct_config__.tag
        if isinstance(message, p.Ping):
            await self._reply(p.Pong(message.t, time.time()))
        elif isinstance(message, p.Publish):
            await self._publish(message)
        elif isinstance(message, p.Subscribe):
            if message.layer not in self.live.rules.layers:
                await self._reply(p.Error(p.ERR_UNKNOWN_LAYER, f"no layer {message.layer!r}", "subscribe"))
                return
            self.outbox.layer = message.layer
            if self.twin is None:
                self._queue_snapshot()
            elif self.player is not None:  # the same moment on the other layer
                await self._show(self.twin.as_of, self.player.playing, self.player.driven_by, None, self.player.speed)
        elif isinstance(message, p.ChangeInterest):
            self._look_at(message.interest)
            if self.twin is None:
                self._queue_snapshot()
        elif isinstance(message, p.PresenceUpdate):
            if not allowed(self.role, Action.PRESENCE_SEND):
                await self._reply(p.Error(p.ERR_FORBIDDEN, f"role {self.role!r} sends no presence", "presence"))
            elif self._presence_limit.allow(None) and self.member is not None:
                presence = p.Presence(self.member.name, message.pose, time.time(), self.member.user, self.member.role)
                self.live.hub.set_presence(self.id, presence, self.outbox.room)
            else:
                self.presence_dropped += 1  # the next heartbeat carries the newer pose anyway
        elif isinstance(message, p.AnnotationRequest):
            await self._annotate(message)
        elif isinstance(message, p.CollabRequest):
            await self._collaborate(message)
        elif isinstance(message, p.AlarmRequest):
            await self._answer_alarm(message)
        elif isinstance(message, p.ReplayRequest):
            await self._replay_request(message)
        else:
            await self._reply(p.Error(p.ERR_DUPLICATE_HELLO, "hello was already received", "hello"))

    async def _annotate(self, message: p.AnnotationRequest, tag: str | None = None) -> None:
        """Carry out an annotation request; a refusal's `ref` is the request's, else `tag` (its type)."""
        tag = tag or type(message).__struct_config__.tag
        if self.live.annotations is None or self.member is None:
            await self._reply(p.Error(p.ERR_BAD_MESSAGE, "annotations need a server with a data dir", tag))
            return
        try:
            replay_time = self.twin.as_of if self.twin is not None else None
            saved = await self.live.annotations.handle(self.member, message, replay_time)
        except AnnotationError as exc:
            await self._reply(exc.frame(message.ref or tag))
            return
        await self._reply(saved)

    async def _collaborate(self, message: p.CollabRequest) -> None:
        """Procedures, presenter mode, raised hands, quick markup and operator commands (PROTOCOL.md §11)."""
        live, member = self.live, self.member
        tag = type(message).__struct_config__.tag
        try:
            if member is None or live.procedures is None or live.presenters is None or live.commands is None:
                raise Refused(p.ERR_BAD_MESSAGE, f"{tag} needs a server with a data dir")
            if isinstance(message, p.Command):
                await self._reply(await live.commands.send(member, message))
            elif isinstance(message, p.Markup):
                require(member, Action.MARKUP_CREATE)
                await self._annotate(markup_topic(message), tag)
            elif isinstance(message, p.ProcedureControl):
                await live.procedures.control(member, message)
            elif isinstance(message, p.StepComplete):
                await live.procedures.complete(member, message)
            elif isinstance(message, p.PresenterView):
                live.presenters.view(member, message.viewpoint)
            else:
                live.presenters.handle(member, message)
        except Refused as exc:
            await self._reply(exc.frame(getattr(message, "ref", None) or tag))

    async def _answer_alarm(self, message: p.AlarmRequest) -> None:
        """Acknowledge, shelve, unshelve, out of / back in service (PROTOCOL.md §13): `saved` or an error."""
        tag = type(message).__struct_config__.tag
        try:
            if self.live.alarm_desk is None or self.member is None:
                raise Refused(p.ERR_BAD_MESSAGE, f"{tag} needs a server with a data dir")
            await self._reply(await self.live.alarm_desk.handle(self.member, message))
        except Refused as exc:
            await self._reply(exc.frame(message.ref or tag))

    # --- replay (PROTOCOL.md §14) ------------------------------------------------------------------

    async def _replay_request(self, message: p.ReplayRequest) -> None:
        """seek / play / pause / live: for this connection, and while it presents, for every follower."""
        ref = message.ref or type(message).__struct_config__.tag
        historian = self.live.historian
        if not allowed(self.role, Action.HISTORY_READ):
            await self._reply(p.Error(p.ERR_FORBIDDEN, f"role {self.role!r} may not replay the history", ref))
            return
        if historian is None:
            await self._reply(p.Error(p.ERR_NO_HISTORY, "replay needs a server with a data dir (--data-dir)", ref))
            return
        speed = self.player.speed if self.player is not None else p.MIN_REPLAY_SPEED
        if isinstance(message, p.Play):
            if not p.MIN_REPLAY_SPEED <= message.speed <= p.MAX_REPLAY_SPEED:
                bounds = f"{p.MIN_REPLAY_SPEED:g} … {p.MAX_REPLAY_SPEED:g}"
                await self._reply(p.Error(p.ERR_BAD_SPEED, f"speed {message.speed:g} is outside {bounds}", ref))
                return
            speed = message.speed
        rng = await asyncio.to_thread(historian.range)
        t = self._replay_time(message, rng)
        if t is not None and (rng.earliest is None or not rng.earliest <= t <= rng.latest):
            held = "nothing yet" if rng.earliest is None else f"{rng.earliest:.3f} … {rng.latest:.3f}"
            await self._reply(p.Error(p.ERR_OUT_OF_RANGE, f"{t:.3f} is outside the history ({held})", ref, range=rng))
            return
        presenting = self._presenting()
        if not presenting:
            self.follows = isinstance(message, p.Live)
        driver = self.member.name if presenting and self.member is not None else None
        followers = self._followers() if presenting else []
        await asyncio.gather(  # each connection's twin is its own; their queries run side by side in threads
            self._drive(message, t, speed, None, message.ref, rng.latest),
            *(s._drive(message, t, speed, driver, None, rng.latest) for s in followers),
        )
        if isinstance(message, p.Live) and not presenting:
            await self._follow_presenter_replay()

    def _replay_time(self, message: p.ReplayRequest, rng: p.HistoryRange) -> float | None:
        """The time a request shows: seek's t, play's from (else where the replay stands, else
        PLAY_DEFAULT_BACK_S ago, not before the oldest history); None for pause and live."""
        if isinstance(message, p.Seek):
            return message.t
        if not isinstance(message, p.Play):
            return None
        if message.start is not None:
            return message.start
        if self.twin is not None:
            return self.twin.as_of
        return max(rng.latest - p.PLAY_DEFAULT_BACK_S, rng.earliest if rng.earliest is not None else rng.latest)

    async def _drive(
        self,
        message: p.ReplayRequest,
        t: float | None,
        speed: float,
        driven_by: str | None,
        ref: str | None,
        rng_latest: float,
    ) -> None:
        """Carry out one replay request on this connection (its own, or its presenter's)."""
        if isinstance(message, p.Live):
            self._leave_replay()
            return
        if self.player is not None:
            self.player.stop()
        if t is None:  # pause: stay where the replay stands (from live: the newest history, i.e. now)
            t = self.twin.as_of if self.twin is not None else rng_latest
        await self._show(t, isinstance(message, p.Play), driven_by, ref, speed)

    async def _show(self, t: float, playing: bool, driven_by: str | None, ref: str | None, speed: float) -> None:
        """Enter (or move within) the replay: send the twin at `t`, then play from there if `playing`."""
        historian = self.live.historian
        assert historian is not None
        if self.twin is None and self._unsubscribe is not None:  # no live delta from here on
            self._unsubscribe()
            self._unsubscribe = None
            self.outbox.reset(self.layer)
        if self.player is not None:
            self.player.stop()
        if self.twin is None or self.twin.layer != self.layer:
            self.twin = ReplayTwin(historian, self.live.rule_versions, self.layer)
            self.player = Player(self.twin, self._reply)
        assert self.player is not None
        props, visuals, alarms = await asyncio.to_thread(self.twin.seek, t)
        rng = await asyncio.to_thread(historian.range)
        topics, comments = await asyncio.to_thread(historian.annotations_at, t, self.outbox.room)
        if self.live.annotations is not None:  # topics from before the historian kept them
            for topic in self.live.annotations.topics(self.outbox.room):
                if topic.created <= t:
                    topics.setdefault(topic.guid, topic)
        replay = p.Replay(
            t, speed, playing, self.layer, rng, props, visuals, alarms,
            topics=sorted(topics.values(), key=lambda x: x.created),
            comments=sorted(comments.values(), key=lambda x: x.created),
            driven_by=driven_by, ref=ref,
        )  # fmt: skip
        await self._reply(replay)
        if playing:
            self.player.start(speed, driven_by)

    def tell(self, message: p.Status) -> None:
        """A notice from the server (not an answer): queued with the replies, past CONTROL_QUEUE_MAX (rare)."""
        self._control.append(p.encode(message, self.encoding))
        self.outbox.notify()

    def show_presenter(self, state: p.PresenterState) -> None:
        """While replaying: the session's new presenter state, in a `replay_delta` of its own (PROTOCOL.md §14)."""
        if self.twin is None or len(self._control) >= CONTROL_QUEUE_MAX:
            return  # the next view is newer anyway
        playing = self.player is not None and self.player.playing
        frame = p.ReplayDelta(self.twin.as_of, playing=playing, presenter=state)
        self._control.append(p.encode(frame, self.encoding))
        self.outbox.notify()

    def _leave_replay(self) -> None:
        """Back to live: a resync snapshot and the live stream, in one step (PROTOCOL.md §3 from there)."""
        if self.player is not None:
            self.player.stop()
        self.twin = self.player = None
        if self._unsubscribe is None:
            self._queue_snapshot(resync=True, reason="live")
            self._unsubscribe = self.live.bus.subscribe(self.live.hub.scene_id, self.outbox.offer)

    def _presenter_connection(self) -> str:
        presenters = self.live.presenters
        pr = presenters.rooms.get(self.outbox.room) if presenters is not None else None
        return pr.state.session if pr is not None else ""

    def _presenting(self) -> bool:
        return self._presenter_connection() == self.id

    def _followers(self) -> list[Session]:
        """The connections of this session that follow the presenter's time (people who may replay)."""
        return [
            s
            for s in self.live.sessions
            if s is not self
            and s.outbox.room == self.outbox.room
            and s.follows
            and allowed(s.role, Action.HISTORY_READ)
        ]

    async def _follow_presenter_replay(self) -> None:
        """Join the presenter's replay, if the presenter replays (a late joiner, a follower back from its own)."""
        presenter = self._presenter_connection()
        leader = next((s for s in self.live.sessions if s.id == presenter and s is not self), None)
        if (
            leader is None
            or leader.twin is None
            or leader.player is None
            or not allowed(self.role, Action.HISTORY_READ)
        ):
            return
        name = leader.member.name if leader.member is not None else None
        await self._show(leader.twin.as_of, leader.player.playing, name, None, leader.player.speed)

    async def _publish(self, message: p.Publish) -> None:
        """Apply a batch at once, in order, and acknowledge it once committed, in a task of its own: the reader
        goes on to the publisher's next batch meanwhile (at most PUBLISHES_IN_FLIGHT awaiting their commit)."""
        if not allowed(self.role, Action.TELEMETRY_PUBLISH):
            refusal = f"role {self.role!r} may not publish telemetry"
            await self._reply(p.Error(p.ERR_FORBIDDEN, refusal, message.ref or "publish"))
            return
        while len(self._acks) >= PUBLISHES_IN_FLIGHT:  # the oldest first: TCP pushes back on the publisher
            await asyncio.wait({self._acks[0]})
            self._acks.popleft()
        source = f"publisher:{self.member.user}" if self.member is not None else "publisher"
        applied = await self.live.ingest.apply(message.readings, source)
        previous = self._acks[-1] if self._acks else None
        self._acks.append(asyncio.create_task(self._acknowledge(message, applied, previous)))
        while self._acks and self._acks[0].done():
            self._acks.popleft()

    async def _acknowledge(self, message: p.Publish, applied: Applied, previous: asyncio.Task[None] | None) -> None:
        """The ack (or error) of an applied batch once it is committed, after the previous batch's: in order."""
        outcome: tuple[int, list[p.Rejection]] | NotSaved
        try:
            outcome = await self.live.ingest.settled(applied)
        except NotSaved as exc:
            outcome = exc
        if previous is not None:
            await asyncio.wait({previous})
        if isinstance(outcome, NotSaved):
            await self._reply(p.Error(p.ERR_NOT_SAVED, str(outcome), message.ref or "publish"))
            return
        accepted, rejected = outcome
        if self.member is not None:
            m = self.member
            note_ingest(self.live.audit, m.room, "WebSocket", self.peer, m.user, m.role, accepted, len(rejected))
        if rejected and rejected[0].reason == "batch_too_large":
            await self._reply(p.Error(p.ERR_BATCH_TOO_LARGE, rejected[0].detail, message.ref or "publish"))
            return
        await self._reply(p.Ack(accepted, rejected, message.ref, durable=self.live.ingest.durable))

    async def _frame_data(self, msg: Any) -> bytes | str | None:
        """The payload of a data frame, or None after closing for a wrong or failed frame."""
        if msg.type == WSMsgType.TEXT and self.encoding == "json":
            return msg.data
        if msg.type == WSMsgType.BINARY and self.encoding == "msgpack":
            return msg.data
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            kind = "text" if msg.type == WSMsgType.TEXT else "binary"
            await self.close(p.CLOSE_POLICY, f"{kind} frame on a {self.encoding} session")
        return None  # close, error (aiohttp has closed with 1009 for an oversize frame)

    # --- writing ---------------------------------------------------------------------------------

    async def _reply(self, message: Any) -> None:
        if isinstance(message, p.Error) and message.code == p.ERR_FORBIDDEN and not self._refusal_allowed():
            self._rate_limited += 1
            if self._rate_limited > REFUSAL_BURST:
                with contextlib.suppress(TimeoutError):  # the answers so far go first, if the client reads them
                    await asyncio.wait_for(self._control_at_most(0), CLOSE_WAIT_S)
                await self.close(p.CLOSE_POLICY, "too many refused requests: send only what your role may do")
                return
            message = p.Error(
                p.ERR_RATE_LIMITED,
                f"more than {REFUSAL_BURST} refused requests, over {REFUSALS_PER_S:g} a second: stop sending what"
                " your role may not do, or the connection is closed",
                message.ref,
            )
        await self._control_at_most(CONTROL_QUEUE_MAX - 1)
        self._control.append(p.encode(message, self.encoding))
        self.outbox.notify()

    async def _control_at_most(self, count: int) -> None:
        """Returns once the sender has sent the queued control replies down to `count`."""
        while len(self._control) > count:
            self._drained.clear()
            await self._drained.wait()

    def _refusal_allowed(self) -> bool:
        """Count a refused request in the audit summary of the client's address and user (a row a minute, not
        a row a refusal); False once the connection refuses faster than REFUSALS_PER_S after REFUSAL_BURST."""
        if self.live.audit is not None and self.member is not None:
            m = self.member
            user = GUESTS if m.guest else m.user  # each visitor connection is a new guest: one row for all
            entry = AuditEntry(m.room, time.time(), user, m.role, REFUSED, f"WebSocket from {self.peer}")
            self.live.audit.note((REFUSED, m.room, self.peer, user), entry, {self._handling: 1})
        return self._refusals.allow(None)

    async def _send_loop(self) -> None:
        try:
            while True:
                await self.outbox.wait()
                while self._control:
                    await self._send(self._control.popleft())
                self._drained.set()
                frame = self.outbox.take_nowait()
                if frame is RESYNC:
                    self._queue_snapshot(resync=True, reason="backlog")
                elif frame is not None:
                    await self._send(frame)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError) as exc:  # peer gone mid-write
            log.debug("session %s: send failed: %s", self.id, exc)

    async def _send(self, frame: bytes) -> None:
        # Shared encoded bytes go out as they are: no per-client decode or re-encode.
        await self.ws.send_frame(frame, self._opcode)
        self.frames_sent += 1

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, message=reason[:MAX_CLOSE_REASON].encode())

    def send_queue_bytes(self) -> int:
        """Bytes written to this client and not yet acknowledged by its kernel: the transport's write
        buffer plus the socket's send queue (SIOCOUTQ, in flight and unsent; 0 where unavailable)."""
        transport = self.transport
        if not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            return 0
        queued = transport.get_write_buffer_size()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                queued += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
        return queued


def bound_send_queue(transport: asyncio.WriteTransport) -> None:
    """Keep at most SEND_QUEUE_BYTES unsent in the transport and again in the kernel, so that a slow
    reader's sender blocks early and its outbox coalesces to fresh state (docs/PROTOCOL.md §5)."""
    transport.set_write_buffer_limits(high=SEND_QUEUE_BYTES)
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, SEND_QUEUE_BYTES)
        else:  # a fixed send buffer instead: no autotuning, at the cost of throughput on long links
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * SEND_QUEUE_BYTES)


def forward_presenter(live: LiveScene, room: str, state: p.PresenterState) -> None:
    """A session's new presenter state to its replaying connections, which get no live deltas: a `replay_delta`
    at the moment they show, carrying only it (a full control queue skips it: the next view is newer)."""
    for session in live.sessions:
        if session.twin is not None and session.outbox.room == room:
            session.show_presenter(state)


def bus_status(live: LiveScene) -> p.Status:
    """The bus's state as clients see it (PROTOCOL.md §16): only several processes' shared bus can be degraded."""
    health = live.bus.health()
    if health.ok:
        return p.Status("ok")
    return p.Status("degraded", f"you see the twin as it was, changes are refused until it is back: {health.detail}")


def tell_status(live: LiveScene, connected: bool) -> None:
    """The shared bus went down or came back: every connection is told."""
    status = bus_status(live)
    for session in live.sessions:
        session.tell(status)


def revoked(sessions: Iterable[Session], revocations: Mapping[tuple[str, str], float]) -> list[Session]:
    """The connections that joined with a token a revocation voided ((session, user) -> revoked until;
    see `auth.verify`); a visitor's guest identity is revocable the same way."""
    return [
        s
        for s in sessions
        if s.member is not None
        and s.member.token_id
        and s.member.issued_at <= revocations.get((s.member.room, s.member.user), -1.0)
        and not s.ws.closed
    ]


async def close_sessions(sessions: Iterable[Session], code: int, reason: str) -> None:
    """Close these connections all at once, waiting at most CLOSE_WAIT_S for their peers."""
    closes = [asyncio.ensure_future(session.close(code, reason)) for session in sessions]
    if closes:
        await asyncio.wait(closes, timeout=CLOSE_WAIT_S)


async def websocket(request: web.Request) -> web.StreamResponse:
    """GET /ws/{scene_id} (or /ws): upgrade, negotiate the subprotocol, run one session."""
    live = request.app[LIVE]
    scene_id = request.match_info.get("scene_id", live.scene.id)
    if scene_id != live.scene.id:
        raise web.HTTPNotFound(text=f"no scene {scene_id!r}")
    offered = offered_subprotocols(request)
    # The server's order decides when a client offers several (aiohttp would take the client's first).
    chosen = next((proto for proto in p.SUBPROTOCOLS if proto in offered), None)
    mismatch = bool(offered) and chosen is None
    ws = web.WebSocketResponse(
        # On a mismatch, echo the client's own offer so a browser completes the handshake and can
        # read the 4001 close reason (otherwise it fails the upgrade without telling the page why).
        protocols=(offered[0],) if mismatch else (chosen,) if chosen else tuple(p.SUBPROTOCOLS),
        max_msg_size=p.MAX_MESSAGE_BYTES + 1,  # aiohttp refuses a frame of exactly max_msg_size
        heartbeat=HEARTBEAT_S,
        compress=False,
        writer_limit=WS_WRITER_LIMIT,
    )
    await ws.prepare(request)
    transport = request.transport
    if isinstance(transport, asyncio.WriteTransport):
        bound_send_queue(transport)
    encoding = p.encoding_for(ws.ws_protocol)
    if mismatch:
        await ws.close(code=p.CLOSE_VERSION, message=version_mismatch_reason(offered).encode())
        return ws
    session = Session(live, ws, encoding or "json", transport, request.remote or "")
    live.sessions.add(session)
    try:
        await session.run()
    finally:
        live.sessions.discard(session)
        if not ws.closed:
            await ws.close()
    return ws
