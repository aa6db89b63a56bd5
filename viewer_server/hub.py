"""The live side of one scene: twin state, visuals per layer, alarms and presence, numbered by seq.

Readings come in through `apply` (from `Ingest`); each resulting change gets the next seq, goes into
the resume log, and into the pending window. At most every FLUSH_INTERVAL_S the window becomes one
`Batch`, published on the bus (fan-out to every session's outbox) and queued for the store. The
periodic `tick` finds what no reading announces: flat lines, sources gone silent (stale values) and
shelvings whose time is up. Alarm transitions are decided by the alarm book (viewer_server/alarms.py).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import msgspec

from scene.freshness import SilenceWatch
from scene.rules import AlarmEvent
from scene.state import Change, PropertyValue, Reading, TwinState
from viewer_server import protocol as p
from viewer_server.bus import Bus
from viewer_server.historian import Historian
from viewer_server.outbox import PRESENCE, PRESENTER, PROP, VISUAL, Batch, Seen, StateKey, StateValue, element_of
from viewer_server.resume_log import ResumeLog
from viewer_server.rules_adapter import LiveRules
from viewer_server.store import Store

if TYPE_CHECKING:
    from viewer_server.alarms import AlarmBook
    from viewer_server.presenter import PresenterChange

# One flush window: one frame at 60 Hz, as viser does; a change after a quiet period goes at once.
FLUSH_INTERVAL_S: Final = 1 / 60


def prop_key(element: str, prop: str) -> str:
    return f"{element}/{prop}"


def visual_key(element: str, layer: str) -> str:
    return f"{element}@{layer}"


def prop_state(pv: PropertyValue) -> p.PropState:
    return p.PropState(pv.value, pv.ts, pv.unit, pv.quality, pv.silent_since)


class Guard(msgspec.Struct, frozen=True, array_like=True):
    """What a person's event is numbered under: the deployment's register `key` still holds `expect` (what the
    request was decided on), and holds `then` once the event is numbered, so that of two requests decided on
    the same state, on two processes, only the first is numbered (a procedure's step: procedures.py). One process
    decides alone, under its caller's lock, on its own copy: that check is the deployment's. Several processes:
    the leader checks and sets the register (shared_hub.py)."""

    key: str
    expect: str
    then: str


class GuardFailed(Exception):
    """The guard's register moved on since the request was decided (another process's request came first):
    nothing was numbered."""


class SceneHub:
    """Owner of one scene's live state. Not thread-safe: runs on the event loop."""

    def __init__(
        self,
        scene_id: str,
        *,
        rules: LiveRules,
        alarms: AlarmBook,
        bus: Bus,
        store: Store | None,
        epoch: str | None = None,
        clock: Callable[[], float] = time.time,
        historian: Historian | None = None,
    ) -> None:
        self.scene_id = scene_id
        self.rules = rules
        self.bus = bus
        self.store = store
        self.historian = historian  # every numbered event is recorded there (PROTOCOL.md §14)
        self.epoch = epoch or secrets.token_hex(8)
        self.clock = clock
        self.state = TwinState()
        self.seq = 0
        self.log = ResumeLog()
        self.props: dict[str, p.PropState] = {}
        self.visuals: dict[str, dict[str, p.Visual]] = {layer: {} for layer in rules.layers}
        self.alarms = alarms  # the alarm list and its recent history
        self.silence = SilenceWatch(rules.stale_after)
        self.presence: dict[str, p.Presence] = {}
        self.presence_room: dict[str, str] = {}  # connection id -> its collaboration session
        self._window_state: dict[StateKey, StateValue] = {}
        self._window_events: list[p.Event] = []
        self._window_props: dict[tuple[str, str], PropertyValue] = {}
        self._window_first = 1
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = 0.0
        # Called with (element, prop) after each change, e.g. procedures checking value conditions.
        self.on_change: list[Callable[[str, str], None]] = []
        # Called with each alarm transition of the process (not people's: their desk writes those), numbered.
        self.on_alarm: list[Callable[[p.Event], None]] = []
        # Called with every numbered event, in seq order, when it is numbered (here) or arrives from the shared
        # log (shared_hub.py), and whether a request of this process made it: the services keep their sessions'
        # topics, comments, procedures and rate limits with it.
        self.on_event: list[Callable[[p.Event, bool], None]] = []
        # Called with (session, state) for each presenter state another process published (shared_hub.py).
        self.on_presenter: list[Callable[[str, p.PresenterState], None]] = []
        # Called with each connection of another process that died, on the process that leads (shared_hub.py).
        self.on_departed: list[Callable[[str], None]] = []

    @property
    def leading(self) -> bool:
        """Whether this process decides the scene's changes: always, unless several share it (shared_hub.py)."""
        return True

    # --- start-up --------------------------------------------------------------------------------

    def restore(self, saved: dict[str, dict[str, PropertyValue]]) -> None:
        """Load persisted values (stale at once if their source has been silent for too long) and compute
        every visual, before serving (no deltas). The alarm book holds what was listed before the restart:
        the rules start from these values and alarms, and what changed meanwhile (a value back within its
        limits, or outside them) becomes alarm events, the first of this run."""
        self.state.restore(saved)
        self.silence.seen_all((el, prop, pv.rx) for el, props in saved.items() for prop, pv in props.items())
        for element, prop, last in self.silence.expired(self.clock()):
            self.state.mark_stale(element, prop, last)
        for element, props in self.state.snapshot().items():
            for prop, pv in props.items():
                self.props[prop_key(element, prop)] = prop_state(pv)
        primed = self._prime()
        for layer, element in self.rules.all_targets():
            self.visuals[layer][element] = self.rules.visual(element, layer, self.state)
        self._emit(primed)

    def _prime(self) -> list[AlarmEvent]:
        """Start the rules from the live values and the alarms listed active (a start, or a reload)."""
        return self.rules.prime(self.state, {a.id: a.severity for a in self.alarms.listed() if a.active})

    def swap_rules(self, rules: LiveRules) -> None:
        """Serve from now on by `rules` (a reloaded bindings file, viewer_server/bindings_reload.py), as a restart
        with them would: alarms whose rule is gone clear, detectors of new or changed anomaly rules start afresh
        (unchanged ones keep learning), the rules are primed with the live values and alarms, and every visual
        that differs is sent as an ordinary delta, in seq order. Layers may be added, not removed (sessions may be
        on them: the caller checks)."""
        rules.adopt_detectors(self.rules)
        self.rules = rules
        self.silence = SilenceWatch(rules.stale_after)
        self.silence.seen_all(
            (el, prop, pv.rx) for el, props in self.state.snapshot().items() for prop, pv in props.items()
        )
        for draft in self.alarms.retired(rules.alarm_ids(), self.clock()):
            self._persisted(self.record_alarm(draft))
        primed = self._prime()
        targets = set(rules.all_targets())
        for layer in rules.layers:
            shown = self.visuals.setdefault(layer, {})
            for element in [el for el in shown if (layer, el) not in targets]:  # no rule shows it any more
                del shown[element]
                self._record((VISUAL, visual_key(element, layer), layer), p.Visual())
        for layer, element in targets:
            self._refresh_visual(layer, element)
        self._emit(primed)
        self._schedule_flush()

    # --- changes ---------------------------------------------------------------------------------

    def apply(self, readings: list[Reading], rx: float) -> int:
        """Apply validated readings; returns how many changed the state."""
        changed = 0
        for reading in readings:
            self.silence.seen(reading.element, reading.prop, rx)
            change = self.state.apply(reading, rx)
            if change is not None:
                changed += 1
                self._on_change(change)
        if changed:
            self._schedule_flush()
        return changed

    def _on_change(self, change: Change) -> None:
        key = prop_key(change.element, change.prop)
        value = prop_state(change.current)
        self.props[key] = value
        self._window_props[(change.element, change.prop)] = change.current
        self._record((PROP, key, ""), value)
        alarms = self.rules.observe(change)  # first: detectors update the anomaly flags visuals show
        for layer, element in self.rules.affected(change.element, change.prop):
            self._refresh_visual(layer, element)
        self._emit(alarms)
        for observer in self.on_change:
            observer(change.element, change.prop)

    def tick(self) -> None:
        """Periodic check for what produces no changes: flat lines (stuck or silent sensors), sources silent
        for longer than their stale_after, and shelvings whose time is up."""
        now = self.clock()
        alarms = self.rules.tick(now)
        for alarm in alarms:
            self._refresh_visual(alarm.layer, alarm.element)
        self._emit(alarms)
        for element, prop, last in self.silence.expired(now):
            change = self.state.mark_stale(element, prop, last)
            if change is not None:
                key = prop_key(element, prop)
                self.props[key] = prop_state(change.current)
                self._record((PROP, key, ""), self.props[key])
        for draft in self.alarms.expired(now):
            self._persisted(self.record_alarm(draft))
        if self.seq >= self._window_first:
            self._schedule_flush()

    def _refresh_visual(self, layer: str, element: str) -> None:
        visual = self.rules.visual(element, layer, self.state)
        if self.visuals[layer].get(element) != visual:
            self.visuals[layer][element] = visual
            self._record((VISUAL, visual_key(element, layer), layer), visual)

    def _emit(self, alarms: list[AlarmEvent]) -> None:
        """Changes of alarm conditions -> the transitions they make in the alarm book."""
        for alarm in alarms:
            draft = self.alarms.condition(alarm)
            if draft is not None:
                self._persisted(self.record_alarm(draft))

    def record_alarm(self, draft: p.Event) -> p.Event:
        """Number an alarm transition, apply it to the book at once (the next decision sees it) and send it."""
        event = self.emit_event(lambda seq: msgspec.structs.replace(draft, seq=seq))
        self.alarms.apply(event)
        return event

    def _persisted(self, event: p.Event) -> None:
        for observer in self.on_alarm:
            observer(event)

    def set_presence(self, session_id: str, presence: p.Presence | None, room: str = "") -> None:
        """A connection's pose (or None when it leaves): state, coalesced per connection, seen only by
        the clients of its collaboration session `room`."""
        if presence is None:
            if self.presence.pop(session_id, None) is None:
                return
            room = self.presence_room.pop(session_id, room)
        else:
            self.presence[session_id] = presence
            self.presence_room[session_id] = room
        self._record((PRESENCE, session_id, room), presence)
        self._schedule_flush()

    def set_presenter(self, room: str, state: p.PresenterState) -> None:
        """A collaboration session's presenter state: coalesced per session, seen only by its clients."""
        self._record((PRESENTER, room, room), state)
        self._schedule_flush()

    def change_presenter(self, room: str, change: PresenterChange, state: p.PresenterState) -> None:
        """A change a session's `Presenters` made, and the state it led to there: one process decides alone,
        so the state is the session's (a `SharedHub` sends the change to its leader instead)."""
        self.set_presenter(room, state)

    def emit_event(self, make: Callable[[int], p.Event]) -> p.Event:
        """Number an event (`make(seq)` builds it), log it for resume, and send it with the next window:
        exactly once and in order to every client that may see it (`event.session`)."""
        event = make(self._next_seq())
        if self.historian is not None:
            self.historian.record(event)
        self.log.append_event(event)
        self._window_events.append(event)
        self._schedule_flush()
        for observer in self.on_event:
            observer(event, True)
        return event

    async def number(self, make: Callable[[int], p.Event], guard: Guard | None = None) -> p.Event:
        """A person's event (a topic, a step, a command), numbered as `emit_event` does. Awaited because a hub
        shared by several processes hands it to the scene's leader (viewer_server/shared_hub.py); raises
        BusUnavailable there when it cannot, GuardFailed when the leader found `guard`'s register moved on. Here
        the caller's check on this process's copy decided it (`Guard`)."""
        return self.emit_event(make)

    async def number_alarm(self, draft: p.Event) -> p.Event:
        """A person's alarm transition (acknowledge, shelve…), numbered and applied as `record_alarm` does."""
        return self.record_alarm(draft)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _record(self, key: StateKey, value: StateValue) -> None:
        seq = self._next_seq()
        self.log.append_state(seq, key, value)
        self._window_state.pop(key, None)  # re-insert so the dict keeps change order
        self._window_state[key] = value

    # --- flush windows ---------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self._last_flush + FLUSH_INTERVAL_S - loop.time()
        self._flush_handle = loop.call_later(delay, self.flush) if delay > 0 else loop.call_soon(self.flush)

    def flush(self) -> Batch | None:
        """Close the current window: publish it as one batch and queue it for the store."""
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        if self.seq < self._window_first:
            return None
        batch = Batch(self._window_first, self.seq, self._window_state, self._window_events)
        props = [(el, prop, pv) for (el, prop), pv in self._window_props.items()]
        self._window_state, self._window_events, self._window_props = {}, [], {}
        self._window_first = self.seq + 1
        self.bus.publish(self.scene_id, batch)
        if self.store is not None:
            self.store.save_batch(self.scene_id, self.epoch, batch, props)
        return batch

    def close(self) -> None:
        """Publish and persist the open window (its values must survive a restart)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()

    # --- what sessions ask for -------------------------------------------------------------------

    def snapshot(
        self,
        layer: str,
        urls: dict[str, str],
        *,
        resync: bool = False,
        reason: str | None = None,
        room: str = "",
        seen: Seen = None,
    ) -> p.Snapshot:
        """The full state of `layer` as of now (its props and visuals those of the elements `seen`). Call it
        in the same loop step as subscribing, so no change falls between the snapshot and the first delta."""
        if self.seq >= self._window_first:
            self.flush()  # the snapshot must not include changes of a window not yet published
        props, visuals = self.props, self.visuals[layer]
        if seen is not None:
            props = {key: v for key, v in props.items() if element_of(PROP, key) in seen}
            visuals = {el: v for el, v in visuals.items() if el in seen}
        return p.Snapshot(
            seq=self.seq,
            epoch=self.epoch,
            scene=self.scene_id,
            layer=layer,
            glb_url=urls["glb"],
            manifest_url=urls["manifest"],
            props=dict(props),
            visuals=dict(visuals),
            alarms=self.alarms.listed(),
            alarm_history=list(self.alarms.history),
            presence={sid: pr for sid, pr in self.presence.items() if self.presence_room.get(sid, "") in ("", room)},
            resync=resync,
            reason=reason,
            session=room,
        )

    def resume(self, resume: p.Resume) -> Batch | str:
        """What a client that left at `resume` missed (one batch), or why a snapshot is needed."""
        if resume.epoch != self.epoch:
            return "epoch_changed"
        if self.seq >= self._window_first:
            self.flush()  # published first, so the outbox only gets seqs after the replay
        if not self.log.covers(resume.seq):
            return "too_old" if resume.seq <= self.seq else "unknown_seq"
        return self.log.since(resume.seq)
