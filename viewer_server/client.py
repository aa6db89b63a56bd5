"""A Python TwinView client on `websockets`: mirrors the state of one layer, resumes after drops.

    async with TwinClient("ws://localhost:8080/ws/pump-station", layer="operations") as tc:
        await tc.publish([Reading(4.2, key="PT-101.pressure")])      # role="publisher"
        async for msg in tc:                                         # Snapshot or Delta
            print(msg.last if isinstance(msg, Delta) else msg.seq, tc.props)

A client without a token may name the session to join in the URL, as a join link does
(`…/ws/pump-station?session=night-shift`; the `session=` argument wins), else it joins the scene's default
session; with a token, the token names it.

Used by the tests, the benchmarks and gateways. After a dropped connection it reconnects with
backoff and sends `resume {epoch, seq}`, so the mirrored state converges and events are neither
lost nor repeated (see docs/PROTOCOL.md §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from viewer_server import __version__
from viewer_server import protocol as p
from viewer_server.procedures import apply_event

# Updates queued for `async for` before the oldest are dropped: the mirrored state stays exact,
# only the notifications of a consumer that stopped iterating are lost.
CLIENT_QUEUE_MAX: Final = 10_000
# Events remembered in `TwinClient.events` (newest kept), for inspection.
CLIENT_EVENTS_MAX: Final = 10_000
# Largest frame accepted from the server: a snapshot of a 10 000-element twin is a few MB.
CLIENT_MAX_FRAME: Final = 64 << 20
RECONNECT_FIRST_S: Final = 0.2
RECONNECT_MAX_S: Final = 5.0
# Close codes after which reconnecting cannot help.
FATAL_CLOSE_CODES: Final = (p.CLOSE_POLICY, p.CLOSE_TOO_BIG, p.CLOSE_VERSION, p.CLOSE_AUTH, p.CLOSE_NAME)
CLIENT_NAME: Final = "twinview-py"  # hello.client: this software, not the person (that is `name`)

log = logging.getLogger(__name__)


class BadFrame(Exception):
    """A server frame this client cannot read (undecodable, an unknown type, a wrong frame kind)."""


class TwinClientError(Exception):
    """The server refused or closed the connection; `code` is the WebSocket close code."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class RequestRefused(Exception):
    """The server answered a request with an `error` frame (e.g. forbidden, stale_revision)."""

    def __init__(self, error: p.Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.error = error


def _url_session(url: str) -> str | None:
    """The session a WebSocket URL names in its query (`?session=ID`), if it names one."""
    names = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("session")
    return names[-1] if names else None


class TwinClient:
    def __init__(
        self,
        url: str,
        *,
        layer: str | None = None,
        encoding: p.Encoding = "json",
        role: p.Role = "viewer",
        name: str = "",
        reconnect: bool = True,
        subprotocols: list[str] | None = None,
        token: str | None = None,
        session: str | None = None,
        interest: p.Interest | None = None,
        local_address: str | None = None,
    ) -> None:
        self.url = url
        self.local_address = local_address  # the address to connect from, on a host with several (None: any)
        self.interest = interest  # what it sees (PROTOCOL.md §15); sent again with every reconnect
        self.token = token
        self._guest_token = ""  # without a token: the server's token for our guest identity (welcome.token)
        self.session = session or (None if token else _url_session(url))
        self.layer = layer
        self.encoding = encoding
        self.role = role
        self.name = name
        self.reconnect = reconnect
        self._subprotocols = subprotocols or [p.SUBPROTOCOL_JSON if encoding == "json" else p.SUBPROTOCOL_MSGPACK]
        # The mirrored state.
        self.props: dict[str, p.PropState] = {}
        self.visuals: dict[str, p.Visual] = {}  # by element, for self.layer
        self.alarms: dict[str, p.Alarm] = {}  # the listed alarms (every state but normal) by id
        self.alarm_history: deque[p.Event] = deque(maxlen=CLIENT_EVENTS_MAX)  # alarm events, oldest first
        self.presence: dict[str, p.Presence] = {}
        self.events: deque[p.Event] = deque(maxlen=CLIENT_EVENTS_MAX)
        self.topics: dict[str, p.Topic] = {}  # of the session, by guid (deleted ones flagged)
        self.comments: dict[str, p.Comment] = {}
        self.procedure: p.ProcedureRun | None = None  # the session's latest procedure run
        self.presenter: p.PresenterState | None = None  # the session's presenter, view and raised hands
        # While replaying (PROTOCOL.md §14): the twin as of `replay.as_of`, kept up by each replay_delta; None live.
        self.replay: p.Replay | None = None
        self.replay_frames: deque[p.Replay | p.ReplayDelta] = deque(maxlen=CLIENT_EVENTS_MAX)  # oldest first
        self.epoch: str | None = None
        self.seq = 0
        self.welcome: p.Welcome | None = None
        # Counters for tests and benchmarks.
        self.snapshots = 0
        self.resyncs: list[str] = []
        self.deltas = 0
        self.duplicate_events = 0
        self.statuses: list[str] = []  # `status` notices, oldest first ("degraded", "ok": PROTOCOL.md §16)
        self.seq_gaps = 0  # deltas whose `first` was not the previous `last` + 1 (never, unless changes were lost)
        self.connects = 0
        self.errors: deque[p.Error] = deque(maxlen=100)
        self.bad_frames = 0  # server frames skipped because they could not be read or applied (logged)
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._last_event_seq = 0
        self._updates: asyncio.Queue[p.Snapshot | p.Delta] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._refs = itertools.count(1)
        self.closed_with: TwinClientError | None = None

    # --- connection ------------------------------------------------------------------------------

    async def __aenter__(self) -> TwinClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect, say hello (resuming if we have an epoch), and wait for the first state."""
        self._closing = False
        await self._open()
        self._reader = asyncio.create_task(self._read_loop(), name="twinclient-reader")

    async def _open(self) -> None:
        source = {"local_addr": (self.local_address, 0)} if self.local_address else {}
        ws = await connect(self.url, subprotocols=self._subprotocols, max_size=CLIENT_MAX_FRAME, **source)  # type: ignore[arg-type]
        resume = p.Resume(self.epoch, self.seq) if self.epoch is not None else None
        hello = p.Hello(CLIENT_NAME, __version__, role=self.role, layer=self.layer, resume=resume)
        hello.session, hello.token, hello.interest = self.session, self.token or self._guest_token, self.interest
        hello.name = self.welcome.name if self.welcome is not None else self.name  # a reconnect keeps its name
        try:
            await ws.send(self._encode(hello))
            welcome = await self._recv(ws)
            if isinstance(welcome, p.Error):
                self.errors.append(welcome)
                welcome = await self._recv(ws)
            if not isinstance(welcome, p.Welcome):
                raise TwinClientError(None, f"expected welcome, got {type(welcome).__name__}")
            first = await self._recv(ws)  # a snapshot, or the resume delta
        except websockets.ConnectionClosed as exc:
            raise _closed_error(exc) from None
        except (BadFrame, TwinClientError) as exc:  # not a TwinView server, or a broken one: try again later
            await ws.close()
            raise TwinClientError(None, str(exc)) from None
        self.welcome = welcome
        self._guest_token = self._guest_token or welcome.token  # a visitor keeps its identity on reconnect
        self.layer = welcome.layer
        self.connects += 1
        self._ws = ws
        await self._apply(first)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def drop(self) -> None:
        """Cut the connection without a close handshake, as a flaky network would (tests)."""
        if self._ws is not None:
            self._ws.transport.abort()

    # --- requests --------------------------------------------------------------------------------

    async def publish(self, readings: list[p.Reading], timeout: float = 10.0) -> p.Ack:
        """Send readings (role "publisher") and wait for the server's ack."""
        ref = f"r{next(self._refs)}"
        answer = await self._request(p.Publish(readings, ref), ref, timeout)
        if isinstance(answer, p.Error):  # e.g. forbidden: this connection's role may not publish
            raise RequestRefused(answer)
        return answer

    async def ping(self, timeout: float = 10.0) -> p.Pong:
        return await self._request(p.Ping(time.time()), "pong", timeout)

    async def subscribe(self, layer: str, timeout: float = 10.0) -> p.Snapshot:
        """Switch layer; returns the snapshot of the new layer."""
        return await self._request(p.Subscribe(layer), "snapshot", timeout)

    async def watch(self, interest: p.Interest | None, timeout: float = 10.0) -> p.Snapshot:
        """See only what `interest` covers (None: the whole scene); returns the snapshot of it."""
        self.interest = interest
        return await self._request(p.ChangeInterest(interest), "snapshot", timeout)

    async def create_topic(self, draft: p.TopicDraft, timeout: float = 10.0) -> p.Saved:
        """Create a topic; returns `saved` once it is on the server's disk. RequestRefused if refused."""
        return await self._request_saved(lambda ref: p.TopicCreate(draft, ref), timeout)

    async def update_topic(self, guid: str, revision: int, timeout: float = 10.0, **fields: Any) -> p.Saved:
        """Change fields (status=…, title=…, assignee="" to clear …) of a topic known at `revision`."""
        return await self._request_saved(lambda ref: p.TopicUpdate(guid, revision, **fields, ref=ref), timeout)

    async def delete_topic(self, guid: str, revision: int, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.TopicDelete(guid, revision, ref), timeout)

    async def add_comment(
        self, topic: str, text: str, *, reply_to: str | None = None, timeout: float = 10.0
    ) -> p.Saved:
        return await self._request_saved(lambda ref: p.CommentAdd(topic, text, reply_to=reply_to, ref=ref), timeout)

    async def edit_comment(self, guid: str, revision: int, text: str, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.CommentEdit(guid, revision, text, ref), timeout)

    async def delete_comment(self, guid: str, revision: int, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.CommentDelete(guid, revision, ref), timeout)

    async def _request_saved(self, make: Callable[[str], Any], timeout: float) -> p.Saved:
        ref = f"r{next(self._refs)}"
        answer = await self._request(make(ref), ref, timeout)
        if isinstance(answer, p.Error):
            raise RequestRefused(answer)
        return answer

    async def command(
        self, element: str, command: str, value: float | None = None, timeout: float = 10.0
    ) -> p.CommandAck:
        """An operator command; returns the server's `command_ack`. RequestRefused (forbidden) for other roles."""
        ref = f"r{next(self._refs)}"
        answer = await self._request(p.Command(element, command, value, ref), ref, timeout)
        if isinstance(answer, p.Error):
            raise RequestRefused(answer)
        return answer

    async def acknowledge_alarm(self, alarm_id: str, timeout: float = 10.0) -> p.Saved:
        """Acknowledge an alarm; returns `saved` once committed. RequestRefused (forbidden, alarm_state, …)."""
        return await self._request_saved(lambda ref: p.AlarmAck(alarm_id, ref), timeout)

    async def shelve_alarm(self, alarm_id: str, minutes: int, reason: str, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.AlarmShelve(alarm_id, minutes, reason, ref), timeout)

    async def unshelve_alarm(self, alarm_id: str, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.AlarmUnshelve(alarm_id, ref), timeout)

    async def alarm_out_of_service(self, alarm_id: str, reason: str, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.AlarmOutOfService(alarm_id, reason, ref), timeout)

    async def alarm_in_service(self, alarm_id: str, timeout: float = 10.0) -> p.Saved:
        return await self._request_saved(lambda ref: p.AlarmInService(alarm_id, ref), timeout)

    async def seek(self, t: float, timeout: float = 10.0) -> p.Replay:
        """Show the twin as of `t`; RequestRefused (out_of_range, forbidden, no_history) if refused."""
        return await self._request_replay(lambda ref: p.Seek(t, ref), timeout)

    async def play(self, speed: float, start: float | None = None, timeout: float = 10.0) -> p.Replay:
        """Play the history from `start` (default: where the replay stands) at `speed` × real time."""
        return await self._request_replay(lambda ref: p.Play(speed, start, ref), timeout)

    async def pause(self, timeout: float = 10.0) -> p.Replay:
        return await self._request_replay(lambda ref: p.Pause(ref), timeout)

    async def go_live(self, timeout: float = 10.0) -> p.Snapshot:
        """Leave the replay: the live snapshot that follows."""
        return await self._request(p.Live(), "snapshot", timeout)

    async def _request_replay(self, make: Callable[[str], Any], timeout: float) -> p.Replay:
        ref = f"r{next(self._refs)}"
        answer = await self._request(make(ref), ref, timeout)
        if isinstance(answer, p.Error):
            raise RequestRefused(answer)
        return answer

    async def send_presence(self, pose: p.Pose) -> None:
        await self.send(p.PresenceUpdate(pose))

    async def send(self, message: Any) -> None:
        assert self._ws is not None, "not connected"
        await self._ws.send(self._encode(message))

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (tests of bad input)."""
        assert self._ws is not None, "not connected"
        await self._ws.send(data)

    async def _request(self, message: Any, key: str, timeout: float) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        try:
            await self.send(message)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.pop(key, None)

    async def next_error(self, timeout: float = 5.0) -> p.Error:
        return await self._request_wait("error", timeout)

    async def _request_wait(self, key: str, timeout: float) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.pop(key, None)

    # --- waiting and iteration -------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[TwinClient], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate(self)` holds (checked after every applied message)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    def __aiter__(self) -> TwinClient:
        return self

    async def __anext__(self) -> p.Snapshot | p.Delta:
        while self._updates.empty():
            if self._reader is None or self._reader.done():
                raise StopAsyncIteration
            getter = asyncio.ensure_future(self._updates.get())
            done, _ = await asyncio.wait({getter, self._reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                return getter.result()
            getter.cancel()
        return self._updates.get_nowait()

    # --- receiving -------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            ws = self._ws
            assert ws is not None
            try:
                while True:
                    await self._read_one(ws)
            except websockets.ConnectionClosed as exc:
                error = _closed_error(exc)
                if self._closing or not self.reconnect or error.code in FATAL_CLOSE_CODES:
                    self.closed_with = error
                    await self._notify()
                    return
            while not self._closing:  # reconnect with backoff, resuming where we left off
                await asyncio.sleep(delay)
                try:
                    await self._open()
                    delay = RECONNECT_FIRST_S
                    break
                except TwinClientError as exc:
                    if exc.code in FATAL_CLOSE_CODES:
                        self.closed_with = exc
                        await self._notify()
                        return
                except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed):
                    pass  # server down or restarting: try again
                delay = min(delay * 2, RECONNECT_MAX_S)

    async def _read_one(self, ws: ClientConnection) -> None:
        """Receive and apply one frame. A frame that cannot be read or applied is logged and skipped: one odd
        frame (a newer server's message type, a broken proxy) must not end the mirror and every request."""
        try:
            await self._apply(await self._recv(ws))
        except websockets.ConnectionClosed:
            raise
        except Exception as exc:
            self.bad_frames += 1
            log.warning("TwinClient %s: server frame skipped: %s: %s", self.url, type(exc).__name__, exc)

    async def _recv(self, ws: ClientConnection) -> p.ServerMessage:
        """The next server message; BadFrame if it cannot be decoded."""
        frame = await ws.recv()
        if self.encoding == "msgpack" and isinstance(frame, str):
            raise BadFrame("a text frame on a msgpack connection")
        try:
            return p.decode_server(frame, self.encoding)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise BadFrame(f"undecodable server frame: {exc}") from None

    async def _apply(self, msg: p.ServerMessage) -> None:
        if isinstance(msg, p.Snapshot):
            self._apply_snapshot(msg)
            self._push(msg)
            self._resolve("snapshot", msg)
        elif isinstance(msg, p.Delta):
            self._apply_delta(msg)
            self._push(msg)
        elif isinstance(msg, p.Ack):
            self._resolve(msg.ref or "", msg)
        elif isinstance(msg, p.Pong):
            self._resolve("pong", msg)
        elif isinstance(msg, p.Saved | p.CommandAck):
            self._resolve(msg.ref or "", msg)
        elif isinstance(msg, p.Replay | p.ReplayDelta):
            self._apply_replay(msg)
            if isinstance(msg, p.Replay):
                self._resolve(msg.ref or "", msg)
        elif isinstance(msg, p.Status):
            self.statuses.append(msg.state)
        elif isinstance(msg, p.Error):
            self.errors.append(msg)
            self._resolve("error", msg)
            self._resolve(msg.ref or "", msg)
        await self._notify()

    def _apply_replay(self, msg: p.Replay | p.ReplayDelta) -> None:
        self.replay_frames.append(msg)
        if isinstance(msg, p.Replay):
            self.replay = msg
            return
        if msg.presenter is not None:
            self.presenter = msg.presenter
        if self.replay is None:  # a frame after `live`: the replay is over for us
            return
        self.replay.as_of = msg.as_of
        self.replay.playing = msg.playing
        self.replay.props.update(msg.props)
        self.replay.visuals.update(msg.visuals)
        if msg.alarms is not None:
            self.replay.alarms = msg.alarms

    def _apply_snapshot(self, snap: p.Snapshot) -> None:
        self.snapshots += 1
        self.replay = None
        if snap.resync:
            self.resyncs.append(snap.reason or "")
        self.epoch, self.seq, self.layer = snap.epoch, snap.seq, snap.layer
        self.props = dict(snap.props)
        self.visuals = dict(snap.visuals)
        self.alarms = {a.id: a for a in snap.alarms}
        self.alarm_history = deque(snap.alarm_history, maxlen=CLIENT_EVENTS_MAX)
        self.presence = dict(snap.presence)
        self.topics = {t.guid: t for t in snap.topics}
        self.comments = {c.guid: c for c in snap.comments}
        self.procedure, self.presenter = snap.procedure, snap.presenter
        # A new epoch restarts seq numbering; within an epoch, a snapshot covers events up to seq.
        self._last_event_seq = snap.seq

    def _apply_delta(self, delta: p.Delta) -> None:
        self.deltas += 1
        if delta.first != self.seq + 1:  # deltas are contiguous (PROTOCOL.md §3): a gap is a loss
            self.seq_gaps += 1
        self.props.update(delta.props)
        suffix = f"@{self.layer}"
        for key, visual in delta.visuals.items():
            if key.endswith(suffix):
                self.visuals[key[: -len(suffix)]] = visual
        for sid, presence in delta.presence.items():
            if presence is None:
                self.presence.pop(sid, None)
            else:
                self.presence[sid] = presence
        for event in delta.events:
            if event.seq <= self._last_event_seq:
                self.duplicate_events += 1
                continue
            self._last_event_seq = event.seq
            self.events.append(event)
            if event.alarm is not None:  # an alarm transition: the alarm at its new state (normal: unlisted)
                if event.alarm.state == "normal":
                    self.alarms.pop(event.id, None)
                else:
                    self.alarms[event.id] = event.alarm
                self.alarm_history.append(event)
            elif event.topic is not None:  # topic_created / _updated / _deleted: the topic at its revision
                self.topics[event.topic.guid] = event.topic
            elif event.comment is not None:
                self.comments[event.comment.guid] = event.comment
            elif event.kind in p.PROCEDURE_EVENTS:
                self.procedure = apply_event(self.procedure, event)
        room = self.welcome.session if self.welcome else ""
        self.presenter = delta.presenter.get(room, self.presenter)
        self.seq = delta.last

    def _push(self, msg: p.Snapshot | p.Delta) -> None:
        if self._updates.qsize() >= CLIENT_QUEUE_MAX:
            self._updates.get_nowait()
        self._updates.put_nowait(msg)

    def _resolve(self, key: str, value: Any) -> None:
        future = self._waiters.get(key)
        if future is not None and not future.done():
            future.set_result(value)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _encode(self, message: Any) -> str | bytes:
        data = p.encode(message, self.encoding)
        return data.decode() if self.encoding == "json" else data


def _closed_error(exc: websockets.ConnectionClosed) -> TwinClientError:
    frame = exc.rcvd
    return TwinClientError(frame.code if frame else None, frame.reason if frame else str(exc))
