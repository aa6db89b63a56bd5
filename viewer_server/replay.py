"""Replay: the twin as of a past time, and playing the history forward (PROTOCOL.md §14).

`ReplayTwin` rebuilds one layer's twin at a time `t` from the historian: the last sample of every property at
or before `t` in a `TwinState`, stale where its source had been silent for longer than its `stale_after` then,
the alarms listed then, and the visuals that the rules in force at `t` (`RuleVersions`: the bindings file the
server ran with then) make of them; the anomaly flags follow the anomaly alarms active then, since no detector
runs on the past. `advance` feeds it the history of an interval in time order, as the live hub feeds the live
twin, and returns what changed; where the bindings changed within the interval, the visuals are made again with
the new rules from that moment on. `Player` paces that for one connection: one `replay_delta` per
REPLAY_FRAME_S of wall time (a display rate), covering `speed` times as much history, until it reaches the
present (replay never runs into live). While it plays, the history is read ahead in blocks (`_ReadAhead`) in a
thread of its own, so making a frame never waits for the disk.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from scene.bindings import Bindings, BindingsError, bindings_from_text
from scene.freshness import SilenceWatch
from scene.rules import RuleEngine
from scene.state import PropertyValue, Reading, TwinState
from viewer_server import protocol as p
from viewer_server.historian import BindingsVersion, Historian, Sample
from viewer_server.hub import prop_state

log = logging.getLogger(__name__)

# Wall time per replay_delta: 30 frames a second, a display rate (video's) at which colours and labels move
# smoothly. A frame's cost grows with the properties that changed in it, not with the history it covers (each
# property's last sample only): at 60× over 1 000 properties that change every second, ~12 ms of CPU a frame
# (reading included), 0.36 of a core at 30 Hz (BENCHMARKS.md §8). A frame that takes longer to make than
# this only makes the next one cover more history.
REPLAY_FRAME_S: Final = 1 / 30
# While playing, the history is read this much wall time ahead (speed × this of history per block), in a thread
# of its own; the next block is asked for once less than half of one is left. Short: a block's reading shares
# the interpreter with the frames (half a second at 60× is 30 000 samples at 1 000 properties, ~50 ms).
READ_AHEAD_S: Final = 0.5
# ...but a block holds at most this much history (at 1000× over many properties a block stays a few seconds of
# reading, not minutes of them in memory), and at least this much (a few frames' worth at 1×).
MAX_BLOCK_S: Final = 120.0
MIN_BLOCK_S: Final = 1.0
# Versions of the bindings kept parsed (parsing a plant's file takes a while; replays mostly look at one or two).
PARSED_VERSIONS: Final = 4

# Block reads of every replaying connection: two at a time, so many replays queue rather than crowd the cores.
_READER: Final = ThreadPoolExecutor(max_workers=2, thread_name_prefix="twinview-replay-read")


class RuleVersions:
    """The bindings in force at any time of the history (the versions the historian kept, `record_bindings`),
    parsed once per version and shared by every replaying connection; thread-safe. A version that no longer
    parses (a file from an older release) is replaced by the current bindings, with a warning."""

    def __init__(self, historian: Historian, current: Bindings | None, current_sha: str | None) -> None:
        self.historian = historian
        self.current = current
        self._parsed: OrderedDict[str, Bindings | None] = OrderedDict()
        if current_sha is not None:
            self._parsed[current_sha] = current
        self._lock = threading.Lock()

    def at(self, t: float) -> tuple[str, Bindings | None]:
        """(version id, its bindings) in force at `t`; ("", the current bindings) when no version was kept."""
        version = self.historian.bindings_at(t)
        if version is None:
            return "", self.current
        return version.sha256, self._bindings(version)

    def changes(self, t0: float, t1: float) -> list[float]:
        """The times in (t0, t1] at which another version took effect."""
        return [t for t, _, _ in self.historian.bindings_changes(t0, t1)]

    def _bindings(self, version: BindingsVersion) -> Bindings | None:
        with self._lock:
            if version.sha256 in self._parsed:
                self._parsed.move_to_end(version.sha256)
                return self._parsed[version.sha256]
            try:  # elements unchecked: one since removed from the scene only makes a visual nobody shows
                parsed: Bindings | None = bindings_from_text(version.content, version.file)
            except BindingsError as exc:
                log.warning("replay: the bindings of %s no longer load (%s); using the current ones", version.t, exc)
                parsed = self.current
            self._parsed[version.sha256] = parsed
            while len(self._parsed) > PARSED_VERSIONS:
                self._parsed.popitem(last=False)
            return parsed


class _ReadAhead:
    """The samples and events of a playing replay's history, read in blocks of `span` seconds from `start` on, the
    next block in the background while frames are cut from the current one (`take`, in time order)."""

    def __init__(self, historian: Historian, start: float, span: float) -> None:
        self.historian = historian
        self.span = min(max(span, MIN_BLOCK_S), MAX_BLOCK_S)
        self.read_to = start  # everything in (start, read_to] is in the blocks
        self.samples: list[Sample] = []
        self.events: list[p.Event] = []
        self._next: Future[tuple[float, list[Sample], list[p.Event]]] | None = None

    def _read(self, t0: float, t1: float) -> tuple[float, list[Sample], list[p.Event]]:
        t1 = max(t0, min(t1, self.historian.clock()))  # not past the present: what arrives later is read then
        return t1, self.historian.samples(t0, t1), self.historian.events(t0, t1)

    def _ask(self) -> None:
        if self._next is None:
            self._next = _READER.submit(self._read, self.read_to, self.read_to + self.span)

    def take(self, t: float) -> tuple[list[Sample], list[p.Event]]:
        """The samples and events up to `t` not taken yet, oldest first."""
        while self.read_to < t:
            self._ask()
            assert self._next is not None
            read_to, samples, events = self._next.result()
            self._next = None
            if read_to <= self.read_to:  # t is the present: everything there is has been read
                break
            self.read_to = read_to
            self.samples += samples
            self.events += events
        cut = bisect.bisect_right(self.samples, t, key=lambda s: s.ts)
        taken, self.samples = self.samples[:cut], self.samples[cut:]
        cut = bisect.bisect_right(self.events, t, key=lambda e: e.ts)
        events, self.events = self.events[:cut], self.events[cut:]
        if self.read_to - t < self.span / 2:
            self._ask()
        return taken, events

    def cancel(self) -> None:
        if self._next is not None:
            self._next.cancel()


class ReplayTwin:
    """One layer's twin rebuilt from the history at `as_of`. Not thread-safe: one per connection."""

    def __init__(self, historian: Historian, rules: RuleVersions | None, layer: str) -> None:
        self.historian = historian
        self.rules = rules
        self.layer = layer
        self.as_of = 0.0
        self.version: str | None = None  # the bindings version whose rules make the visuals
        self.bindings: Bindings | None = None
        self.engine: RuleEngine | None = None
        self.targets: set[str] = set()  # the layer's elements with a rule in those bindings
        self._affects: dict[tuple[str, str], list[str]] = {}  # (element, prop) -> the layer's elements it colours
        self.state = TwinState(history_len=1)
        self.silence: SilenceWatch | None = None
        self.alarms: dict[str, p.Alarm] = {}
        self.visuals: dict[str, p.Visual] = {}
        self._ahead: _ReadAhead | None = None
        self._lock = threading.Lock()

    def _stale_after(self, element: str, prop: str) -> float | None:
        return self.bindings.stale_after(element, prop) if self.bindings is not None else None

    def _use_rules_at(self, t: float) -> bool:
        """Take the bindings in force at `t`; True when they are another version than those used so far."""
        version, bindings = self.rules.at(t) if self.rules is not None else ("", None)
        if version == self.version:
            return False
        self.version, self.bindings = version, bindings
        self.engine = RuleEngine(bindings) if bindings is not None else None
        self.targets = set(self.engine.targets(self.layer)) if self.engine is not None else set()
        self._affects = {}
        return True

    def _affected(self, element: str, prop: str) -> list[str]:
        """The layer's elements whose visual element.prop feeds (remembered per property: asked every frame)."""
        key = (element, prop)
        found = self._affects.get(key)
        if found is None:
            pairs = self.engine.affected(element, prop) if self.engine is not None else []
            found = self._affects[key] = [el for layer, el in pairs if layer == self.layer]
        return found

    def _watch_silence(self) -> None:
        """Watch every property of the state for silence, by the stale_after of the bindings in use."""
        self.silence = SilenceWatch(self._stale_after)
        snapshot = self.state.snapshot()
        self.silence.seen_all((el, prop, pv.ts) for el, props in snapshot.items() for prop, pv in props.items())

    def seek(self, t: float) -> tuple[dict[str, p.PropState], dict[str, p.Visual], list[p.Alarm]]:
        """The twin at `t`: props keyed "element/prop", visuals keyed by element, the alarm list."""
        with self._lock:
            return self._seek(t)

    def _seek(self, t: float) -> tuple[dict[str, p.PropState], dict[str, p.Visual], list[p.Alarm]]:
        if self._ahead is not None:
            self._ahead.cancel()
            self._ahead = None
        samples = self.historian.state_at(t)
        self.as_of = t
        self._use_rules_at(t)
        values: dict[str, dict[str, PropertyValue]] = {}
        props: dict[str, p.PropState] = {}
        stale_after = self.bindings.stale_after if self.bindings is not None else lambda element, prop: None
        for (element, prop), s in samples.items():
            after = stale_after(element, prop)
            silent = s.ts if after is not None and t - s.ts >= after else None  # as the silence watch decides
            pv = PropertyValue(s.value, s.unit, s.ts, s.ts, s.quality, silent)
            if element in values:
                values[element][prop] = pv
            else:
                values[element] = {prop: pv}
            props[f"{element}/{prop}"] = p.PropState(s.value, s.ts, s.unit, s.quality, silent)
        self.state = TwinState(history_len=1)
        self.state.load(values)
        self.silence = None  # watched from the first `advance` on (a seek alone needs no watch)
        self.alarms = {a.id: a for a in self.historian.alarms_at(t)}
        self.visuals = self._all_visuals()
        return props, dict(self.visuals), self.listed()

    def _all_visuals(self) -> dict[str, p.Visual]:
        if self.engine is None:
            return {}
        self.engine.show_anomalies(self._active())
        return self.engine.evaluate_many(self.targets, self.layer, self.state)

    def _mark_stale(self, t: float) -> dict[str, p.PropState]:
        """Flag the properties silent for longer than their stale_after at `t` (source time of their last sample:
        what the live twin flagged by receive time); their new states."""
        out = {}
        assert self.silence is not None
        for element, prop, last in self.silence.expired(t):
            change = self.state.mark_stale(element, prop, last)
            if change is not None:
                out[f"{element}/{prop}"] = prop_state(change.current)
        return out

    def listed(self) -> list[p.Alarm]:
        return sorted(self.alarms.values(), key=lambda a: (a.since, a.id))

    def _active(self) -> set[str]:
        return {a.id for a in self.alarms.values() if a.active}

    def read_ahead(self, speed: float) -> None:
        """From now on `advance` goes forward at about `speed` × real time: read the history ahead for it."""
        with self._lock:
            if self._ahead is not None:
                self._ahead.cancel()
            self._ahead = _ReadAhead(self.historian, self.as_of, speed * READ_AHEAD_S)

    def advance(self, t: float) -> p.ReplayDelta:
        """Feed the history of (as_of, t] in time order; the frame of what changed, as of `t`."""
        with self._lock:  # a cancelled player's last advance may still run in its thread
            return self._advance(t)

    def _advance(self, t: float) -> p.ReplayDelta:
        if self._ahead is None:
            samples, events = self.historian.samples(self.as_of, t), self.historian.events(self.as_of, t)
        elif t - self.as_of > self._ahead.span:  # more than a block behind (a host short of CPU): catch up as a
            # seek does, from each property's last sample, rather than by reading every sample in between
            self._ahead.cancel()
            self._ahead = _ReadAhead(self.historian, t, self._ahead.span)
            changed = (s for s in self.historian.state_at(t).values() if s.ts > self.as_of)
            samples, events = sorted(changed, key=lambda s: s.ts), self.historian.events(self.as_of, t)
        else:
            samples, events = self._ahead.take(t)
        if self.silence is None:
            self._watch_silence()
        frame = p.ReplayDelta(t, {}, {}, None, events)
        alarms_changed = False
        changed_at = self.rules.changes(self.as_of, t) if self.rules is not None else []
        changes = [c for c in changed_at if c < t]
        for end in [*changes, t]:  # up to each change of the bindings with the rules before it, then the new ones
            cut = bisect.bisect_left(samples, end, key=lambda s: s.ts) if end < t else len(samples)
            touched = self._apply(samples[:cut], frame.props)
            samples = samples[cut:]
            cut = bisect.bisect_left(events, end, key=lambda e: e.ts) if end < t else len(events)
            alarms_changed |= self._apply_alarms(events[:cut], touched)
            events = events[cut:]
            if changed_at and self._use_rules_at(end):  # none in (as_of, t]: the rules of as_of still hold
                self._watch_silence()  # another file may give another stale_after
                if self.engine is not None:
                    self.engine.show_anomalies(self._active())
                touched |= set(self.visuals) | self.targets
            if end == t:
                frame.props.update(self._mark_stale(t))
            self._refresh(touched, frame.visuals)
        self.as_of = t
        if alarms_changed:
            frame.alarms = self.listed()
        return frame

    def _apply(self, samples: list[Sample], props: dict[str, p.PropState]) -> set[str]:
        """Apply each property's last sample of `samples` (oldest first); the layer's elements whose visual may
        have changed. Samples in between change nothing a frame shows (it carries one state per property)."""
        last = {(s.element, s.prop): s for s in samples}
        touched: set[str] = set()
        assert self.silence is not None
        seen, apply, affected = self.silence.seen, self.state.apply, self._affected
        for (element, prop), s in last.items():
            seen(element, prop, s.ts)
            if apply(Reading(element, prop, s.value, s.unit, s.ts, s.quality), s.ts) is not None:
                props[f"{element}/{prop}"] = p.PropState(s.value, s.ts, s.unit, s.quality)
                touched.update(affected(element, prop))
        return touched

    def _apply_alarms(self, events: list[p.Event], touched: set[str]) -> bool:
        """Alarm transitions among `events` into the list; True if there were any."""
        changed = False
        for e in events:
            if e.alarm is None:
                continue
            changed = True
            if e.alarm.state == "normal":
                self.alarms.pop(e.alarm.id, None)
            else:
                self.alarms[e.alarm.id] = e.alarm
        if changed and self.engine is not None:
            touched.update(el for layer, el in self.engine.show_anomalies(self._active()) if layer == self.layer)
        return changed

    def _refresh(self, elements: set[str], visuals: dict[str, p.Visual]) -> None:
        """Evaluate the visuals of `elements`; those that changed into `visuals`."""
        ruled = elements & self.targets if self.engine is not None else set()
        made = self.engine.evaluate_many(ruled, self.layer, self.state) if self.engine is not None else {}
        for element in elements - ruled:
            made[element] = p.Visual()  # no rule for it in these bindings: as an element without rules shows
        for element, visual in made.items():
            if self.visuals.get(element) != visual:
                self.visuals[element] = visuals[element] = visual


class Player:
    """Plays one connection's replay: `send` gets each frame (it waits while the connection's queue is full,
    so a slow client gets bigger frames, never a backlog)."""

    def __init__(self, twin: ReplayTwin, send: Callable[[p.ReplayDelta], Awaitable[None]]) -> None:
        self.twin = twin
        self.send = send
        self.speed = 1.0
        self.driven_by: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def playing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, speed: float, driven_by: str | None) -> None:
        self.stop()
        self.speed, self.driven_by = speed, driven_by
        self.twin.read_ahead(speed)
        self._task = asyncio.create_task(self._run(), name="twinview-replay")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start_wall, start_t = loop.time(), self.twin.as_of
        tick = start_wall
        while True:  # on a fixed beat: a frame that took long to make shortens the wait for the next one
            tick = max(tick + REPLAY_FRAME_S, loop.time())
            await asyncio.sleep(tick - loop.time())
            latest = self.twin.historian.clock()
            t = min(start_t + (loop.time() - start_wall) * self.speed, latest)
            frame = await asyncio.to_thread(self.twin.advance, t)
            frame.driven_by = self.driven_by
            frame.playing = t < latest
            await self.send(frame)
            if not frame.playing:
                return
