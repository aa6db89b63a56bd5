"""Validation of incoming readings, shared by HTTP, WebSocket publishers, MQTT and the simulator.

Every refused reading is counted under one reason (protocol.REJECT_REASONS), so /api/health shows
what producers get wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Final, NamedTuple

import msgspec

from scene.bindings import Bindings, RejectedReading, convert_value
from scene.state import Reading
from viewer_server import protocol as p
from viewer_server.bus import BusUnavailable
from viewer_server.historian import DAY, Historian
from viewer_server.store_db import StoreError

log = logging.getLogger(__name__)

# What an accepted batch waits for before its ack: the historian's commit, a shared hub's hand-over to Redis.
Pending = Awaitable[object] | Future[None]

# Readings applied per event-loop step (~5 ms with rules): a 5000-reading batch is applied in ten
# steps with other clients served in between.
INGEST_CHUNK: Final = 500

# Substrings of scene.bindings rejection messages -> our reason codes (first match wins).
_MESSAGE_REASONS = (
    ("unbound topic", "unbound_topic"),
    ("not finite", "not_finite"),
    ("non-numeric", "not_numeric"),
    ("non-boolean", "not_numeric"),
    ("non-string", "malformed"),
    ("outside plausible range", "out_of_range"),
)


def reason_of(message: str) -> str:
    """Our reason code for a rejection message import msgspec

    from scene.bindings."""
    return next((code for text, code in _MESSAGE_REASONS if text in message), "malformed")


class NotSaved(Exception):
    """Readings were applied to the live twin but the historian could not commit them: not acknowledged."""


class Applied(NamedTuple):
    """A batch applied to the live twin: readings accepted, those refused, and what its ack waits for."""

    accepted: int
    rejections: list[p.Rejection]
    commits: list[Pending]


class MqttStatus(msgspec.Struct):
    """MQTT connection state, shown in /api/health."""

    enabled: bool = False
    connected: bool = False
    connects: int = 0
    messages: int = 0
    last_error: str = ""


class Ingest:
    """Turns producer readings into state readings, or rejections with reasons, and counts both."""

    def __init__(
        self,
        known_elements: set[str],
        bindings: Bindings | None,
        sink: Callable[[list[Reading], float], object],
        clock: Callable[[], float] = time.time,
        historian: Historian | None = None,
    ) -> None:
        self.known = known_elements | ({t.id for t in bindings.tags} if bindings else set())
        self.bindings = bindings
        self.sink = sink  # SceneHub.apply (a shared hub's returns what to await before acknowledging)
        self.clock = clock
        self.historian = historian  # accepted readings are committed there before `submit` returns
        self.accepted = 0
        self.rejected: Counter[str] = Counter(dict.fromkeys(p.REJECT_REASONS, 0))

    @property
    def durable(self) -> bool:
        """Whether `submit` returns only after the accepted readings are committed to disk."""
        return self.historian is not None

    async def submit(self, readings: list[p.Reading], source: str) -> tuple[int, list[p.Rejection]]:
        """Validate a batch and apply the valid readings (`apply`), then wait until they are committed to the
        historian (when there is one: `settled`); returns (accepted, rejections). `source` is recorded with each.
        Raises NotSaved when the commit failed (the readings must not be acknowledged)."""
        return await self.settled(await self.apply(readings, source))

    async def apply(self, readings: list[p.Reading], source: str) -> Applied:
        """Validate a batch and apply the valid readings to the live twin, yielding to the event loop between
        chunks so a big batch never holds up other clients. Its ack waits for `settled`: a publisher's next batch
        can be applied meanwhile (batches are applied in the order they come, their commits overlap)."""
        if len(readings) > p.MAX_BATCH_READINGS:
            self.rejected["batch_too_large"] += len(readings)
            detail = f"{len(readings)} readings; at most {p.MAX_BATCH_READINGS} per batch"
            return Applied(0, [p.Rejection(-1, "batch_too_large", detail)], [])
        accepted = 0
        rejections: list[p.Rejection] = []
        commits: list[Pending] = []
        for start in range(0, len(readings), INGEST_CHUNK):
            if start:
                await asyncio.sleep(0)
            accepted += self._submit_chunk(readings[start : start + INGEST_CHUNK], start, rejections, source, commits)
        return Applied(accepted, rejections, commits)

    async def settled(self, applied: Applied) -> tuple[int, list[p.Rejection]]:
        """(accepted, rejections) of an applied batch once its readings are committed; NotSaved if they were not."""
        try:
            await asyncio.gather(*(asyncio.wrap_future(c) if isinstance(c, Future) else c for c in applied.commits))
        except (sqlite3.Error, StoreError) as exc:
            raise NotSaved(f"the historian could not commit the readings ({exc}); send them again") from exc
        except BusUnavailable as exc:
            raise NotSaved(str(exc)) from exc
        return applied.accepted, applied.rejections

    def _submit_chunk(
        self,
        readings: list[p.Reading],
        offset: int,
        rejections: list[p.Rejection],
        source: str,
        commits: list[Pending],
    ) -> int:
        rx = self.clock()
        valid: list[Reading] = []
        for i, r in enumerate(readings, offset):
            result = self._convert(r, rx)
            if isinstance(result, Reading):
                result = self._retained(result, rx)
            if isinstance(result, Reading):
                valid.append(result)
            else:
                reason, detail = result
                rejections.append(p.Rejection(i, reason, detail))
                self.rejected[reason] += 1
        if valid:
            self._accept(valid, rx, source, commits)
        return len(valid)

    def _accept(self, valid: list[Reading], rx: float, source: str, commits: list[Pending]) -> None:
        sunk = self.sink(valid, rx)
        if inspect.isawaitable(sunk):
            commits.append(sunk)
        if self.historian is not None:
            commits.append(self.historian.append(valid, rx, source))
        self.accepted += len(valid)

    def _retained(self, reading: Reading, rx: float) -> Reading | tuple[str, str]:
        """A reading older than its binding's raw retention would be dropped at once: refused with the reason."""
        if self.bindings is None or reading.ts <= 0:
            return reading
        days = self.bindings.history(reading.element, reading.prop).raw_days
        if reading.ts < rx - days * DAY:
            return "too_old", f"ts {reading.ts!r} is older than the {days} days of raw history kept for it"
        return reading

    def submit_mqtt(self, topic: str, payload: bytes) -> int:
        """Apply one MQTT message through the bindings; returns the number of accepted readings."""
        if self.bindings is None:
            self.rejected["unbound_topic"] += 1
            return 0
        rx = self.clock()
        readings, problems = self.bindings.from_mqtt(topic, payload, rx)
        for problem in problems:
            self.rejected[reason_of(problem)] += 1
        valid = []
        for r in readings:
            result = self._retained(r, rx)
            if r.ts > rx + p.FUTURE_TOLERANCE_S:
                self.rejected["future_timestamp"] += 1
            elif not isinstance(result, Reading):
                self.rejected[result[0]] += 1
            else:
                valid.append(r)
        if valid:
            pending: list[Pending] = []
            self._accept(valid, rx, "mqtt", pending)
            for sent in pending:  # MQTT has no ack to refuse: a reading the shared bus did not take is logged
                if isinstance(sent, asyncio.Future):
                    sent.add_done_callback(_log_unsent)
        return len(valid)

    def _convert(self, r: p.Reading, rx: float) -> Reading | tuple[str, str]:
        value = r.value
        if isinstance(value, float) and not math.isfinite(value):
            return "not_finite", f"value {value!r} is not finite"
        if r.ts is not None and (not math.isfinite(r.ts) or r.ts > rx + p.FUTURE_TOLERANCE_S):
            return "future_timestamp", f"ts {r.ts!r} is more than {p.FUTURE_TOLERANCE_S:.0f} s ahead of the server"
        quality = r.quality or "good"
        try:
            if r.key is not None:
                reading = self.bindings.from_key(r.key, value, r.ts, quality) if self.bindings else None
                if reading is None:
                    return "unbound_key", f"no binding has key {r.key!r}"
                return reading
            if r.element is None or r.prop is None:
                return "malformed", "a reading needs a key, or an element and a prop"
            if r.element not in self.known:
                return "unknown_element", f"element {r.element!r} is not in the scene"
            binding = self.bindings.binding(r.element, r.prop) if self.bindings else None
            if binding is None:
                return "unknown_property", f"no binding provides {r.element}.{r.prop}"
            converted = convert_value(binding, value)
        except RejectedReading as exc:
            return reason_of(str(exc)), str(exc)
        ts = 0.0 if r.ts is None else r.ts
        return Reading(r.element, r.prop, converted, r.unit or binding.unit, ts, quality)


def _log_unsent(sent: asyncio.Future[object]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.error("MQTT readings lost: %s", sent.exception())


def as_protocol(reading: Reading) -> p.Reading:
    """A state reading (simulator, gateway) as a producer would send it, for the same validation."""
    return p.Reading(
        reading.value,
        element=reading.element,
        prop=reading.prop,
        ts=reading.ts or None,
        unit=reading.unit or None,
        quality=reading.quality,
    )
