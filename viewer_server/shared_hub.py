"""One scene's hub shared by several server processes over the bus (`twinview serve --bus redis://…`).

    readings, presence, presenter changes and people's events, from any process
        │  inbox (a Redis stream): appended by the process that received them, in arrival order
        ▼
    the leader's engine: a SceneHub (dedup, rules, anomaly detectors, alarms, numbering), run by the one
        │  process holding the scene's lease (redis_bus.LEASE_MS, renewed every RENEW_S)
        ▼  log (a Redis stream): each flushed batch with its seqs, appended only by the lease holder and only
        │  right after the previous seq (a fenced Lua script), so the log is one gap-free sequence
        ▼
    every process's mirror (this SharedHub): state, visuals, alarms, presence and resume log from the log, and
    its own fan-out to its own sessions (RedisBus.publish): snapshots, resumes and welcome seqs are the
    deployment's.

So seq numbers and the epoch are the deployment's, not a process's: a client resumes on whichever process it
lands. When the leader dies its lease runs out and another process takes it: it first catches its mirror up to
the end of the log, starts an engine from the mirror, and takes the inbox from the last message the log has
taken in (`LogRecord.cursor`), so what the dead leader had numbered but not appended is numbered again, once.
A process that starts later (or fell too far behind) begins at the `Checkpoint` the leader writes every
CHECKPOINT_S. Presence of a process whose heartbeat runs out is removed by the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import msgspec

from scene.state import PropertyValue, Reading
from viewer_server import protocol as p
from viewer_server.bus import BusUnavailable
from viewer_server.historian import Historian
from viewer_server.hub import Guard, GuardFailed, SceneHub, prop_key, prop_state, visual_key
from viewer_server.outbox import PRESENCE, PRESENTER, PROP, VISUAL, Batch, StateKey, StateValue
from viewer_server.presenter import PresenterChange, applied
from viewer_server.procedures import Refused
from viewer_server.redis_bus import RENEW_S, Fenced, RedisBus
from viewer_server.resume_log import ResumeLog
from viewer_server.rules_adapter import LiveRules
from viewer_server.store import Store

if TYPE_CHECKING:
    from viewer_server.alarms import AlarmBook

log = logging.getLogger(__name__)

# How often the leader writes the checkpoint (when something changed): where a starting process begins.
CHECKPOINT_S: Final = 1.0
# How long a person's event waits to be numbered by the leader before the request is answered `not_saved`
# (a failover takes about LEASE_MS; the message stays in the inbox and is numbered once a leader takes it).
NUMBER_TIMEOUT_S: Final = 10.0
# The reply to a request the leader refused (`LogRecord.replies`): no event has seq 0.
REFUSED: Final = 0
# How long a starting process waits for the first leader to write the checkpoint of a new deployment.
BOOTSTRAP_TIMEOUT_S: Final = 30.0


# --- what travels through Redis ----------------------------------------------------------------------


class ReadingsMessage(msgspec.Struct, tag="r", array_like=True):
    rx: float
    readings: list[Reading]


class PresenceMessage(msgspec.Struct, tag="s", array_like=True):
    connection: str
    room: str
    process: str  # where the connection is: its presence goes when that process's heartbeat runs out
    presence: p.Presence | None


class PresenterMessage(msgspec.Struct, tag="m", array_like=True):
    """A change to a session's presenter state, checked on the deciding process's copy; the leader applies it
    to the deployment's state, in inbox order (presenter.applied)."""

    room: str
    change: PresenterChange


class DraftMessage(msgspec.Struct, tag="e", array_like=True):
    request: str  # answered in `LogRecord.replies` with the seq the event got
    event: p.Event
    alarm: bool  # an alarm transition: the engine's alarm book applies it too
    guard: Guard | None = None  # numbered only if the register holds what the request was decided on


InboxMessage = ReadingsMessage | PresenceMessage | PresenterMessage | DraftMessage


class LogRecord(msgspec.Struct, array_like=True):
    """One flushed batch of the leader's engine, as the log holds it."""

    epoch: str
    first: int
    last: int
    props: list[tuple[str, p.PropState]]  # "element/prop" -> value
    visuals: list[tuple[str, str, p.Visual]]  # element, layer, visual
    presence: list[tuple[str, str, str, p.Presence | None]]  # connection, room, process, pose (None: left)
    presenter: list[tuple[str, p.PresenterState]]  # room, state
    events: list[p.Event]
    cursor: str  # every inbox message up to this entry is in this record or an earlier one
    replies: dict[str, int]  # DraftMessage.request -> the seq of its event
    guards: dict[str, str] = {}  # registers its events set (`Guard.then`)


class Checkpoint(msgspec.Struct, array_like=True):
    """The scene's whole state at log entry `log_id` (seq `seq`)."""

    epoch: str
    seq: int
    log_id: str
    cursor: str
    props: list[tuple[str, str, PropertyValue]]  # element, prop, value
    visuals: dict[str, dict[str, p.Visual]]
    presence: list[tuple[str, str, str, p.Presence]]  # connection, room, process, pose
    alarms: list[p.Alarm]
    alarm_history: list[p.Event]
    presenter: dict[str, p.PresenterState] = {}  # session -> its presenter state
    guards: dict[str, str] = {}  # the registers of `Guard`s


_encoder = msgspec.msgpack.Encoder()
_inbox_decoder = msgspec.msgpack.Decoder(InboxMessage)
_record_decoder = msgspec.msgpack.Decoder(LogRecord)
_checkpoint_decoder = msgspec.msgpack.Decoder(Checkpoint)


# --- the mirror, on every process --------------------------------------------------------------------


class SharedHub(SceneHub):
    """A scene's hub on one of several processes: what sessions read (snapshot, resume, seq, epoch, state)
    is this process's mirror of the shared log; what they change goes to the leader through the inbox.
    `start()` before serving, `stop()` after."""

    def __init__(
        self,
        scene_id: str,
        *,
        rules: LiveRules,
        alarms: AlarmBook,
        bus: RedisBus,
        store: Store | None,
        historian: Historian | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(scene_id, rules=rules, alarms=alarms, bus=bus, store=store, historian=historian, clock=clock)
        self.redis = bus  # the shared log; its `publish` is this process's own fan-out
        self.last_id = "0-0"  # the log entry the mirror stands at
        self.cursor = "0-0"  # the inbox entry the log has taken in up to
        self.presence_owner: dict[str, str] = {}  # connection -> its process
        self.presenter: dict[str, p.PresenterState] = {}  # session -> its presenter state, as the log has it
        self.guards: dict[str, str] = {}  # the registers of `Guard`s, as the log has them
        self._posed: set[str] = set()  # this process's connections that sent a pose
        self._saved: dict[str, dict[str, PropertyValue]] = {}  # values from the store: a new deployment's start
        self._waiting: dict[str, tuple[asyncio.Future[p.Event], Exception | None]] = {}  # request -> its refusal
        self._requests = itertools.count(1)
        self._leader: _Leader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outgoing: asyncio.Queue[tuple[bytes, asyncio.Future[None]]] = asyncio.Queue()  # to the inbox
        self._token = secrets.token_hex(8)
        # Called when the mirror had to start over from the checkpoint: every session needs a resync snapshot.
        self.on_reset: list[Callable[[], None]] = []

    @property
    def leading(self) -> bool:
        return self._leader is not None

    # --- start and stop ------------------------------------------------------------------------------

    def restore(self, saved: dict[str, dict[str, PropertyValue]]) -> None:
        """Values from the store: only the first leader of a new deployment starts from them (the checkpoint
        in Redis is newer otherwise)."""
        self._saved = saved

    async def start(self) -> None:
        """Join the deployment: the epoch, then the checkpoint (writing the first one when this process is the
        first), then follow the log and compete for the lease. Raises BusUnavailable."""
        await self.redis.ping()
        self.epoch = await self.redis.epoch(self.scene_id, self.epoch)
        await self.redis.heartbeat(self.scene_id)
        deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
        while (checkpoint := await self._checkpoint()) is None:
            if await self.redis.acquire(self.scene_id, self._token):
                await self._found()
                break
            if time.monotonic() > deadline:
                raise BusUnavailable(f"no checkpoint of scene {self.scene_id!r} appeared in the shared bus")
            await asyncio.sleep(RENEW_S / 5)
        else:
            self._load(checkpoint)
        # Serve from where the log is now: what it held when we came (or what founding it numbered first).
        target = self._leader.engine.seq if self._leader is not None else await self.redis.last_seq(self.scene_id)
        self._tasks = [
            asyncio.create_task(self._follow(), name="twinview-follow"),
            asyncio.create_task(self._lease(), name="twinview-lease"),
            asyncio.create_task(self._forward(), name="twinview-forward"),
        ]
        while self.seq < target:
            if time.monotonic() > deadline:
                await self.stop()
                raise BusUnavailable(f"scene {self.scene_id!r}: the log did not reach seq {target} in time")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Leave: append what the engine still holds, hand the lease over, say goodbye to the peers."""
        await _cancelled(self._tasks)
        leader, self._leader = self._leader, None
        with contextlib.suppress(BusUnavailable):
            if leader is not None:
                await leader.finish()
                await self.redis.release(self.scene_id, self._token)
            await self.redis.heartbeat(self.scene_id, alive=False)

    async def _checkpoint(self) -> Checkpoint | None:
        data = await self.redis.load_checkpoint(self.scene_id)
        return _checkpoint_decoder.decode(data) if data is not None else None

    async def _found(self) -> None:
        """The first process of a new deployment: start the engine from the store's values and alarms, and
        write the checkpoint at seq 0 every later process begins at."""
        alarms, history = self.alarms.listed(), list(self.alarms.history)
        leader = self._promote(self._saved)
        engine = leader.engine
        props = [(el, prop, pv) for el, props in engine.state.snapshot().items() for prop, pv in props.items()]
        checkpoint = Checkpoint(self.epoch, 0, "0-0", "0-0", props, engine.visuals, [], alarms, history)
        await self.redis.save_checkpoint(self.scene_id, _encoder.encode(checkpoint))
        self._load(checkpoint)

    def _load(self, cp: Checkpoint) -> None:
        """Start the mirror over at a checkpoint."""
        self.epoch, self.seq, self.last_id, self.cursor = cp.epoch, cp.seq, cp.log_id, cp.cursor
        self._window_first = self.seq + 1
        self.state = type(self.state)()
        self.state.restore(_nested(cp.props))
        self.props = {prop_key(el, prop): prop_state(pv) for el, prop, pv in cp.props}
        self.visuals = {layer: dict(cp.visuals.get(layer, {})) for layer in self.rules.layers}
        self.presence = {sid: pr for sid, _, _, pr in cp.presence}
        self.presence_room = {sid: room for sid, room, _, _ in cp.presence}
        self.presence_owner = {sid: owner for sid, _, owner, _ in cp.presence}
        self.presenter, self.guards = dict(cp.presenter), dict(cp.guards)
        for room, state in cp.presenter.items():
            _tell(self.on_presenter, room, state)
        self.alarms.alarms = {a.id: a for a in cp.alarms}
        self.alarms.history.clear()
        self.alarms.history.extend(cp.alarm_history)
        self.log = ResumeLog(self.log.max_changes, start=cp.seq)

    # --- what sessions change: to the leader -----------------------------------------------------------

    def _send(self, message: InboxMessage) -> asyncio.Future[None]:
        """Queue a message for the leader; it resolves once Redis has it (BusUnavailable if it cannot). Messages
        reach the inbox in the order they were queued: a pose, then its leave; a take, then a view."""
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing.put_nowait((_encoder.encode(message), sent))
        return sent

    async def _forward(self) -> None:
        """Hand queued messages to Redis in order, all those waiting in one round trip."""
        while True:
            batch = [await self._outgoing.get()]
            while not self._outgoing.empty():
                batch.append(self._outgoing.get_nowait())
            try:
                await self.redis.send(self.scene_id, [message for message, _ in batch])
            except BusUnavailable as exc:
                for _, sent in batch:
                    if not sent.done():
                        sent.set_exception(exc)
                continue
            for _, sent in batch:
                if not sent.done():
                    sent.set_result(None)

    def apply(self, readings: list[Reading], rx: float) -> asyncio.Future[None]:  # type: ignore[override]
        """Hand validated readings to the leader; the future resolves once Redis has them (BusUnavailable if
        it cannot: the readings must not be acknowledged)."""
        return self._send(ReadingsMessage(rx, readings))

    def set_presence(self, session_id: str, presence: p.Presence | None, room: str = "") -> None:
        if presence is not None:
            self._posed.add(session_id)
        elif session_id in self._posed:  # its last pose may not be in the log yet: the leave goes all the same
            self._posed.discard(session_id)
        else:
            return
        self._fire(PresenceMessage(session_id, room, self.redis.process, presence))

    def change_presenter(self, room: str, change: PresenterChange, state: p.PresenterState) -> None:
        self._fire(PresenterMessage(room, change))

    def _fire(self, message: InboxMessage) -> None:
        """Send without an answer to wait for (a pose, a presenter's view): the next one replaces it anyway."""
        self._send(message).add_done_callback(_log_failure)

    async def number(self, make: Callable[[int], p.Event], guard: Guard | None = None) -> p.Event:
        refusal = GuardFailed(f"{guard.key} moved on from {guard.expect!r}") if guard is not None else None
        return await self._numbered(make(0), alarm=False, guard=guard, refusal=refusal)

    async def number_alarm(self, draft: p.Event) -> p.Event:
        why = "the alarm changed meanwhile (another operator, or its condition): look at it again"
        return await self._numbered(draft, alarm=True, guard=None, refusal=Refused(p.ERR_ALARM_STATE, why))

    async def _numbered(
        self, draft: p.Event, *, alarm: bool, guard: Guard | None, refusal: Exception | None
    ) -> p.Event:
        """The event as the leader numbered it, once this process's mirror has it (so the client's delta is
        queued by then); `refusal` is raised when the leader refused it (an alarm's revision, a guard).
        BusUnavailable when Redis refuses it, or no leader numbered it in NUMBER_TIMEOUT_S."""
        request = f"{self.redis.process}:{next(self._requests)}"
        waiter: asyncio.Future[p.Event] = asyncio.get_running_loop().create_future()
        self._waiting[request] = (waiter, refusal)
        try:
            await self._send(DraftMessage(request, draft, alarm, guard))  # BusUnavailable: not sent
            return await asyncio.wait_for(waiter, NUMBER_TIMEOUT_S)
        except TimeoutError:
            raise BusUnavailable(
                f"no process led scene {self.scene_id!r} for {NUMBER_TIMEOUT_S:g} s: the change is queued and will"
                " be shown once one does"
            ) from None
        finally:
            self._waiting.pop(request, None)

    def emit_event(self, make: Callable[[int], p.Event]) -> p.Event:
        raise TypeError("a shared hub numbers events through the leader: await number(make)")

    def tick(self) -> None:
        if self._leader is not None:
            self._leader.engine.tick()

    def swap_rules(self, rules: LiveRules) -> None:
        """Every process watches the same bindings file (viewer_server/bindings_reload.py): the mirror takes the new
        rules for their layers (what its sessions offer) and bindings (what an engine it starts later runs); the
        leader's engine applies them, its visuals and alarm transitions reaching every mirror through the log."""
        self.rules = rules
        if self._leader is not None:
            self._leader.engine.swap_rules(LiveRules(rules.bindings))  # the engine's own: its detectors learn

    def close(self) -> None:
        """Nothing to flush here: the engine's window is appended by `stop()`."""

    # --- the log: into the mirror ---------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                entries = await self.redis.read_log(self.scene_id, self.last_id)
            except BusUnavailable:
                await asyncio.sleep(RENEW_S)
                continue
            for entry_id, data in entries:
                try:
                    record = _record_decoder.decode(data)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    await self._start_over(f"log entry {entry_id} cannot be read: {exc}")
                    break
                if record.epoch != self.epoch or record.first != self.seq + 1:
                    await self._start_over(f"log entry {entry_id} has seqs {record.first}..{record.last}")
                    break
                self._apply_record(entry_id, record)

    async def _start_over(self, why: str) -> None:
        """The mirror missed part of the log (it was trimmed past it): start over at the checkpoint, and
        resync every session."""
        log.warning("scene %s: mirror at seq %d starts over from the checkpoint (%s)", self.scene_id, self.seq, why)
        checkpoint = await self._checkpoint()
        if checkpoint is None:
            return
        self._load(checkpoint)
        _tell(self.on_reset)

    def _apply_record(self, entry_id: str, record: LogRecord) -> None:
        now = self.clock()
        state: dict[StateKey, StateValue] = {}
        changed: list[tuple[str, str]] = []
        for key, value in record.props:
            state[(PROP, key, "")] = value
            self.props[key] = value
            element, _, prop = key.rpartition("/")  # keys split at their last "/" (PROTOCOL.md §2)
            before = self.state.get(element, prop)
            rx = before.rx if before is not None and value.silent_since is not None else now
            self.state.put(element, prop, PropertyValue(value.v, value.u, value.ts, rx, value.q, value.silent_since))
            changed.append((element, prop))
        for element, layer, visual in record.visuals:
            state[(VISUAL, visual_key(element, layer), layer)] = visual
            self.visuals.setdefault(layer, {})[element] = visual
        for sid, room, owner, presence in record.presence:
            state[(PRESENCE, sid, room)] = presence
            if presence is None:
                self.presence.pop(sid, None)
                self.presence_room.pop(sid, None)
                self.presence_owner.pop(sid, None)
            else:
                self.presence[sid], self.presence_room[sid], self.presence_owner[sid] = presence, room, owner
        for room, presenter in record.presenter:
            state[(PRESENTER, room, room)] = presenter
            self.presenter[room] = presenter
            _tell(self.on_presenter, room, presenter)
        self.guards.update(record.guards)
        mine = {seq for request, seq in record.replies.items() if request in self._waiting}
        for event in record.events:
            self.alarms.apply(event)
            self.log.append_event(event)
            _tell(self.on_event, event, event.seq in mine)
        for skey, value in state.items():
            self.log.append_state(record.last, skey, value)
        self.seq, self._window_first = record.last, record.last + 1
        self.last_id, self.cursor = entry_id, record.cursor
        if record.last >= record.first:  # a record of no seq only answers requests
            self.bus.publish(self.scene_id, Batch(record.first, record.last, state, list(record.events)))
        if self._leader is not None:  # value checks (procedures) run once, on the leader's process
            for element, prop in changed:
                _tell(self.on_change, element, prop)
        by_seq = {event.seq: event for event in record.events}
        for request, seq in record.replies.items():
            waiting = self._waiting.get(request)
            if waiting is None or waiting[0].done():
                continue
            waiter, refusal = waiting
            if seq == REFUSED and refusal is not None:
                waiter.set_exception(refusal)
            elif seq in by_seq:
                waiter.set_result(by_seq[seq])

    def checkpoint(self) -> Checkpoint:
        """The mirror's state now (at a record boundary)."""
        props = [(el, prop, pv) for el, props in self.state.snapshot().items() for prop, pv in props.items()]
        rooms, owners = self.presence_room, self.presence_owner
        presence = [(sid, rooms.get(sid, ""), owners.get(sid, ""), pr) for sid, pr in self.presence.items()]
        return Checkpoint(
            self.epoch, self.seq, self.last_id, self.cursor, props, self.visuals, presence,
            self.alarms.listed(), list(self.alarms.history), dict(self.presenter), dict(self.guards),
        )  # fmt: skip

    # --- the lease -----------------------------------------------------------------------------------

    async def _lease(self) -> None:
        """Heartbeat, and hold or compete for the lease, every RENEW_S."""
        renewed = time.monotonic()
        checkpointed, checkpoint_due = self.seq, 0.0
        while True:
            try:
                peers, epoch = await self.redis.heartbeat(self.scene_id)
                if epoch and epoch != self.epoch and self._leader is None:  # another process refounded the log
                    await self._start_over(f"the deployment carries on in epoch {epoch}")
                if self._leader is None:
                    if await self.redis.acquire(self.scene_id, self._token):
                        await self._take_over()
                        renewed = time.monotonic()
                elif not await self.redis.renew(self.scene_id, self._token):
                    self._step_down("another process holds the lease")
                else:
                    renewed = time.monotonic()
                    self._leader.forget_departed(peers)
                    if self.seq != checkpointed and time.monotonic() >= checkpoint_due:
                        await self.redis.save_checkpoint(self.scene_id, _encoder.encode(self.checkpoint()))
                        await self.redis.trim_inbox(self.scene_id, self.cursor)
                        checkpointed, checkpoint_due = self.seq, time.monotonic() + CHECKPOINT_S
            except BusUnavailable:
                if self._leader is not None and time.monotonic() - renewed > RENEW_S * 4:
                    self._step_down("the shared bus is unreachable: the lease may run out meanwhile")
            except Fenced as exc:
                self._step_down(str(exc))
            await asyncio.sleep(RENEW_S)

    async def _take_over(self) -> None:
        """Just got the lease: catch the mirror up with the end of the log, then start the engine from it."""
        end = await self.redis.last_seq(self.scene_id)
        if end < self.seq:
            await self._refound()
            return
        deadline = time.monotonic() + BOOTSTRAP_TIMEOUT_S
        while self.seq < end:
            if time.monotonic() > deadline:
                await self.redis.release(self.scene_id, self._token)
                return
            await asyncio.sleep(0.01)
        log.warning("scene %s: this process (%s) leads from seq %d", self.scene_id, self.redis.process, self.seq)
        self._promote(self.state.snapshot())

    async def _refound(self) -> None:
        """Redis lost the log this mirror has seen (restarted without its append-only file): carry on from this
        mirror in a new epoch, so that every client resyncs (`epoch_changed`) and every other process starts
        over from the checkpoint written here. What was in the lost inbox is lost."""
        epoch = secrets.token_hex(8)
        log.error(
            "scene %s: Redis lost the log (it ends before seq %d): new epoch %s from this process's copy;"
            " keep Redis's data (appendonly yes) to avoid this",
            self.scene_id, self.seq, epoch,
        )  # fmt: skip
        checkpoint = msgspec.structs.replace(self.checkpoint(), epoch=epoch, log_id="0-0", cursor="0-0")
        await self.redis.refound(self.scene_id, self._token, epoch, self.seq, _encoder.encode(checkpoint))
        self._load(checkpoint)
        _tell(self.on_reset)
        self._promote(self.state.snapshot())

    def _promote(self, saved: dict[str, dict[str, PropertyValue]]) -> _Leader:
        leader = self._leader = _Leader(self, saved)
        return leader

    def _step_down(self, why: str) -> None:
        leader, self._leader = self._leader, None
        if leader is not None:
            log.warning("scene %s: this process no longer leads (%s)", self.scene_id, why)
            leader.abandon()


class _Leader:
    """The lease holder's part: the engine, fed from the inbox, its batches appended to the log in order."""

    def __init__(self, mirror: SharedHub, saved: dict[str, dict[str, PropertyValue]]) -> None:
        self.mirror = mirror
        self.cursor = mirror.cursor
        self.replies: dict[str, int] = {}
        self.guards = dict(mirror.guards)  # the registers, as the log will have them
        self.guards_set: dict[str, str] = {}  # those set since the last record
        self.owners = dict(mirror.presence_owner)
        self.presenter = dict(mirror.presenter)  # session -> its presenter state, as the log will have it
        self.stopping: asyncio.Future[None] | None = None  # once abandoned: its tasks ending
        self._queue: asyncio.Queue[LogRecord] = asyncio.Queue()
        book = type(mirror.alarms)()
        book.alarms = dict(mirror.alarms.alarms)
        book.history.extend(mirror.alarms.history)
        engine = SceneHub(
            mirror.scene_id, rules=LiveRules(mirror.rules.bindings), alarms=book, bus=self, store=mirror.store,
            epoch=mirror.epoch, clock=lambda: mirror.clock(), historian=mirror.historian,  # the hub's clock
        )  # fmt: skip
        engine.log = ResumeLog(1)  # the mirrors keep the resume log
        engine.seq, engine._window_first = mirror.seq, mirror.seq + 1
        engine.presence, engine.presence_room = dict(mirror.presence), dict(mirror.presence_room)
        engine.on_alarm = mirror.on_alarm  # alarm transitions are stored once, by the leader
        engine.restore(saved)
        for layer, visuals in engine.visuals.items():  # detectors start afresh: say where that changes a visual
            for element, visual in visuals.items():
                if mirror.visuals.get(layer, {}).get(element, visual) != visual:
                    engine._record((VISUAL, visual_key(element, layer), layer), visual)
        self.engine = engine
        self._tasks = [
            asyncio.create_task(self._take_inbox(), name="twinview-inbox"),
            asyncio.create_task(self._append(), name="twinview-append"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._ended)
        engine._schedule_flush()

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A leader's task failed (a bug): another process had better lead, from the log."""
        if not task.cancelled() and task.exception() is not None:
            log.error("scene %s: %s failed", self.mirror.scene_id, task.get_name(), exc_info=task.exception())
            self.mirror._step_down(f"{task.get_name()} failed")

    # Bus, for the engine's flush
    def publish(self, scene: str, batch: Batch) -> None:
        props, visuals, presence, presenter = [], [], [], []
        for (kind, key, scope), value in batch.state.items():
            if kind == PROP:
                props.append((key, value))
            elif kind == VISUAL:
                visuals.append((key[: -len(scope) - 1], scope, value))
            elif kind == PRESENCE:
                presence.append((key, scope, self.owners.get(key, ""), value))
                if value is None:
                    self.owners.pop(key, None)
            else:
                presenter.append((key, value))
        record = LogRecord(
            self.engine.epoch, batch.first, batch.last, props, visuals, presence, presenter,  # type: ignore[arg-type]
            batch.events, self.cursor, self.replies, self.guards_set,
        )  # fmt: skip
        self.replies, self.guards_set = {}, {}
        self._queue.put_nowait(record)

    def subscribe(self, scene: str, callback: Callable[[Batch], None]) -> Callable[[], None]:
        raise TypeError("the engine's batches go to the log; sessions subscribe to their process's bus")

    async def _append(self) -> None:
        """Append the engine's batches in order; an unreachable Redis is retried (the lease decides whether
        this process may still append once it is back), a refusal (Fenced) ends the leadership."""
        mirror = self.mirror
        while True:
            record = await self._queue.get()
            data = _encoder.encode(record)
            while True:
                try:
                    await mirror.redis.append(mirror.scene_id, mirror._token, record.first, record.last, data)
                    break
                except BusUnavailable:
                    await asyncio.sleep(RENEW_S / 5)
                except Fenced as exc:
                    mirror._step_down(str(exc))
                    return
            self._queue.task_done()

    async def _take_inbox(self) -> None:
        mirror, engine = self.mirror, self.engine
        while True:
            try:
                entries = await mirror.redis.read_inbox(mirror.scene_id, self.cursor)
            except BusUnavailable:
                await asyncio.sleep(RENEW_S)
                continue
            for entry_id, data in entries:
                self.cursor = entry_id
                try:
                    message = _inbox_decoder.decode(data)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # not ours (another version?)
                    log.error("scene %s: inbox entry %s skipped: %s", mirror.scene_id, entry_id, exc)
                    continue
                if isinstance(message, ReadingsMessage):
                    engine.apply(message.readings, message.rx)
                elif isinstance(message, PresenceMessage):
                    if message.presence is not None:
                        self.owners[message.connection] = message.process
                    engine.set_presence(message.connection, message.presence, message.room)
                elif isinstance(message, PresenterMessage):
                    before = self.presenter.get(message.room, p.PresenterState())
                    after = self.presenter[message.room] = applied(before, message.change)
                    if after != before:
                        engine.set_presenter(message.room, after)
                elif message.alarm:
                    self.replies[message.request] = self._record_alarm(message.event)
                elif message.guard is not None and not self._holds(message.guard):
                    self.replies[message.request] = REFUSED
                else:
                    event = engine.emit_event(lambda seq, e=message.event: msgspec.structs.replace(e, seq=seq))
                    self.replies[message.request] = event.seq
                    if message.guard is not None:
                        self.guards[message.guard.key] = self.guards_set[message.guard.key] = message.guard.then
            self._answer_now()

    def _record_alarm(self, draft: p.Event) -> int:
        """A person's alarm transition, decided on a process's copy of the alarm: recorded if it follows the
        alarm's revision here, else refused (someone else, or the rules, changed the alarm meanwhile)."""
        current = self.engine.alarms.alarms.get(draft.id)
        if draft.alarm is None or draft.alarm.revision != (current.revision if current is not None else 0) + 1:
            return REFUSED
        return self.engine.record_alarm(draft).seq

    def _holds(self, guard: Guard) -> bool:
        """Whether the register holds what the request was decided on. One the deployment never set (a deployment
        founded while a procedure ran: its first move sets it) takes any expectation."""
        return self.guards.get(guard.key, guard.expect) == guard.expect

    def _answer_now(self) -> None:
        """Replies with nothing numbered (refusals) go at once, in a record of no seq, if no window is open."""
        engine = self.engine
        if self.replies and engine.seq < engine._window_first:
            self.publish(engine.scene_id, Batch(engine.seq + 1, engine.seq, {}, []))

    def forget_departed(self, peers: set[str]) -> None:
        """Remove the presence of connections whose process is gone (its heartbeat ran out), their raised hands
        and presenter mode."""
        for sid, owner in list(self.owners.items()):
            if owner not in peers:
                self.engine.set_presence(sid, None)
                _tell(self.mirror.on_departed, sid)

    async def finish(self) -> None:
        """Stopping: append the open window and wait for the appends."""
        self.engine.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), RENEW_S * 4)
        self.abandon()

    def abandon(self) -> None:
        """No longer the leader: stop; what was not appended is numbered again by the next leader."""
        self.stopping = asyncio.ensure_future(_cancelled(self._tasks))
        if self.engine._flush_handle is not None:
            self.engine._flush_handle.cancel()


def _nested(props: list[tuple[str, str, PropertyValue]]) -> dict[str, dict[str, PropertyValue]]:
    out: dict[str, dict[str, PropertyValue]] = {}
    for element, prop, pv in props:
        out.setdefault(element, {})[prop] = pv
    return out


def _log_failure(task: asyncio.Future[None]) -> None:
    """A pose or presenter state that did not reach Redis: the clients were told the bus is down (status)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("not sent to the leader: %s", task.exception())


async def _cancelled(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until they have ended, cancelling again any that swallowed the cancellation
    (a Redis client interrupted in a call may)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RENEW_S)


def _tell(observers: list[Callable[..., None]], *args: object) -> None:
    """Call each observer; one that fails is logged and does not stop the others, nor the mirror."""
    for observer in observers:
        try:
            observer(*args)
        except Exception:
            log.exception("observer %r failed on %r", observer, args)
