"""Replay: the twin as of a past time, and playing the history forward (PROTOCOL.md §14).

`ReplayTwin` rebuilds one layer's twin at a time `t` from the historian: the last sample of every property at
or before `t` in a `TwinState`, the alarms listed then, and the visuals the layer's rules make of them (the
anomaly flags follow the anomaly alarms active then, since no detector runs on the past). `advance` feeds it
the history of an interval in time order, exactly as the live hub feeds the live twin, and returns what
changed. `Player` paces that for one connection: one `replay_delta` per REPLAY_FRAME_S of wall time, covering
`speed` times as much history, until it reaches the present (replay never runs into live).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Final

from scene.bindings import Bindings
from scene.rules import RuleEngine
from scene.state import PropertyValue, Reading, TwinState
from viewer_server import protocol as p
from viewer_server.historian import Historian, Sample

# Wall time per replay_delta: ten frames a second are smooth for colours and labels, and at 1000× one frame
# covers 100 s of history, which one query returns in tens of milliseconds.
REPLAY_FRAME_S: Final = 0.1


def _prop(s: Sample) -> p.PropState:
    return p.PropState(s.value, s.ts, s.unit, s.quality)


class ReplayTwin:
    """One layer's twin rebuilt from the history at `as_of`. Not thread-safe: one per connection."""

    def __init__(self, historian: Historian, bindings: Bindings | None, layer: str) -> None:
        self.historian = historian
        self.engine = RuleEngine(bindings) if bindings is not None else None
        self.layer = layer
        self.as_of = 0.0
        self.state = TwinState(history_len=1)
        self.alarms: dict[str, p.Alarm] = {}
        self.visuals: dict[str, p.Visual] = {}
        self._lock = threading.Lock()

    def seek(self, t: float) -> tuple[dict[str, p.PropState], dict[str, p.Visual], list[p.Alarm]]:
        """The twin at `t`: props keyed "element/prop", visuals keyed by element, the alarm list."""
        with self._lock:
            return self._seek(t)

    def _seek(self, t: float) -> tuple[dict[str, p.PropState], dict[str, p.Visual], list[p.Alarm]]:
        samples = self.historian.state_at(t)
        self.as_of = t
        values: dict[str, dict[str, PropertyValue]] = {}
        for (element, prop), s in samples.items():
            values.setdefault(element, {})[prop] = PropertyValue(s.value, s.unit, s.ts, s.ts, s.quality)
        self.state = TwinState(history_len=1)
        self.state.restore(values)
        self.alarms = {a.id: a for a in self.historian.alarms_at(t)}
        self.visuals = {}
        if self.engine is not None:
            self.engine.show_anomalies(self._active())
            for element in self.engine.targets(self.layer):
                self.visuals[element] = self.engine.evaluate(element, self.layer, self.state)
        props = {f"{el}/{prop}": _prop(s) for (el, prop), s in samples.items()}
        return props, dict(self.visuals), self.listed()

    def listed(self) -> list[p.Alarm]:
        return sorted(self.alarms.values(), key=lambda a: (a.since, a.id))

    def _active(self) -> set[str]:
        return {a.id for a in self.alarms.values() if a.active}

    def advance(self, t: float) -> p.ReplayDelta:
        """Feed the history of (as_of, t] in time order; the frame of what changed, as of `t`."""
        with self._lock:  # a cancelled player's last advance may still run in its thread
            return self._advance(t)

    def _advance(self, t: float) -> p.ReplayDelta:
        samples = self.historian.samples(self.as_of, t)
        events = self.historian.events(self.as_of, t)
        self.as_of = t
        props: dict[str, p.PropState] = {}
        touched: set[str] = set()
        for s in samples:
            change = self.state.apply(Reading(s.element, s.prop, s.value, s.unit, s.ts, s.quality), s.ts)
            if change is not None:
                props[f"{s.element}/{s.prop}"] = _prop(s)
                if self.engine is not None:
                    touched.update(el for layer, el in self.engine.affected(s.element, s.prop) if layer == self.layer)
        alarms_changed = False
        for e in events:
            if e.alarm is None:
                continue
            alarms_changed = True
            if e.alarm.state == "normal":
                self.alarms.pop(e.alarm.id, None)
            else:
                self.alarms[e.alarm.id] = e.alarm
        visuals: dict[str, p.Visual] = {}
        if self.engine is not None:
            if alarms_changed:
                touched.update(el for layer, el in self.engine.show_anomalies(self._active()) if layer == self.layer)
            for element in touched:
                visual = self.engine.evaluate(element, self.layer, self.state)
                if self.visuals.get(element) != visual:
                    self.visuals[element] = visuals[element] = visual
        return p.ReplayDelta(t, props, visuals, self.listed() if alarms_changed else None, events)


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
