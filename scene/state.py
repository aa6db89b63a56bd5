"""The twin state: the current value of every bound property, plus a bounded history per property.

Like trame's shared state, a write that changes nothing (same value, unit and quality) produces no
`Change`, so nothing downstream (rules, deltas, clients) wakes up for it. The sample still goes into
the history: a flat line is data too (a chart must show it, and a stuck-sensor check needs it), and
the history is bounded, so keeping it costs nothing that grows.

`PropertyValue.ts` and `.rx` are the source and receive times of the last *change*; the time of the
last *sample* is the newest history entry. A property whose source fell silent is marked stale
(`mark_stale`, `silent_since` = receive time of its last sample); the next sample, even with the same
value, is a change back to fresh. A sample older than one already seen (a late batch, a
reconnecting gateway) goes into the history in time order but never replaces the current value.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

import msgspec

Quality = Literal["good", "uncertain", "bad"]
Scalar = float | int | bool | str

# Samples kept per property: one hour at 1 Hz, ~100 kB per property at most; older samples are
# evicted first (ring buffer), so memory stays flat over a day-long session.
HISTORY_LEN = 3600


class Reading(msgspec.Struct, frozen=True):
    """One telemetry value for one element property, as it arrives from a source."""

    element: str
    prop: str
    value: Scalar
    unit: str = ""
    ts: float = 0.0  # source timestamp, unix seconds; 0 means "use the receive time"
    quality: Quality = "good"


class PropertyValue(msgspec.Struct, frozen=True):
    """The current state of one property."""

    value: Scalar
    unit: str
    ts: float  # source time of the last change (receive time when the source gave none)
    rx: float  # receive time of the last change
    quality: Quality = "good"
    silent_since: float | None = None  # set while stale: receive time of the last sample (see mark_stale)


class Change(msgspec.Struct, frozen=True):
    """What `TwinState.apply` returns when a reading changed the state."""

    element: str
    prop: str
    current: PropertyValue


def _same(a: Scalar, b: Scalar) -> bool:
    # `True == 1` in Python, but a bool turning into a number is a change of meaning.
    if type(a) is not type(b) and (isinstance(a, bool) or isinstance(b, bool)):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _insert_late(hist: deque[tuple[float, Scalar]], ts: float, value: Scalar) -> None:
    """Insert a late sample in time order (rare, O(bound)); one older than a full buffer is dropped."""
    if len(hist) == hist.maxlen and ts <= hist[0][0]:
        return
    idx = next((i for i in range(len(hist) - 1, -1, -1) if hist[i][0] <= ts), -1) + 1
    if len(hist) == hist.maxlen:
        hist.popleft()
        idx -= 1
    hist.insert(idx, (ts, value))


class TwinState:
    """Current values and bounded, time-ordered history for every (element, prop)."""

    def __init__(self, history_len: int = HISTORY_LEN) -> None:
        if history_len < 1:
            raise ValueError("history_len must be at least 1")
        self.history_len = history_len
        self._current: dict[str, dict[str, PropertyValue]] = {}
        self._history: dict[tuple[str, str], deque[tuple[float, Scalar]]] = {}

    def apply(self, reading: Reading, rx: float) -> Change | None:
        """Record `reading` received at `rx`; return the change, or None when nothing changed."""
        ts = reading.ts if reading.ts > 0 else rx
        key = (reading.element, reading.prop)
        hist = self._history.get(key)
        if hist is None:
            hist = self._history[key] = deque(maxlen=self.history_len)
            loaded = self._current.get(reading.element, {}).get(reading.prop)
            if loaded is not None:  # a value given by `load`: its history starts from it
                hist.append((loaded.ts, loaded.value))
        if hist and ts < hist[-1][0]:
            _insert_late(hist, ts, reading.value)
            return None  # older than a sample already seen: history only, the current value stays newest
        hist.append((ts, reading.value))
        props = self._current.setdefault(reading.element, {})
        old = props.get(reading.prop)
        if (
            old is not None
            and _same(old.value, reading.value)
            and old.unit == reading.unit
            and old.quality == reading.quality
            and old.silent_since is None
        ):
            return None
        current = PropertyValue(reading.value, reading.unit, ts, rx, reading.quality)
        props[reading.prop] = current
        return Change(reading.element, reading.prop, current)

    def mark_stale(self, element: str, prop: str, last_rx: float) -> Change | None:
        """The source of element.prop has sent nothing since `last_rx` for too long: keep its value, flag it
        stale. None when there is no value, or it is stale already."""
        props = self._current.get(element)
        old = None if props is None else props.get(prop)
        if props is None or old is None or old.silent_since is not None:
            return None
        current = msgspec.structs.replace(old, silent_since=last_rx)
        props[prop] = current
        return Change(element, prop, current)

    def put(self, element: str, prop: str, pv: PropertyValue) -> None:
        """Set the current value as another process's state decided it (a mirror of a shared twin): history
        gets the sample when it is newer than the last one."""
        self._current.setdefault(element, {})[prop] = pv
        hist = self._history.get((element, prop))
        if hist is None:
            hist = self._history[(element, prop)] = deque(maxlen=self.history_len)
        if not hist or pv.ts > hist[-1][0]:
            hist.append((pv.ts, pv.value))

    def get(self, element: str, prop: str) -> PropertyValue | None:
        return self._current.get(element, {}).get(prop)

    def values(self) -> dict[str, dict[str, PropertyValue]]:
        """Every current value, element -> prop -> value: the state's own (read only; `snapshot` copies)."""
        return self._current

    def element(self, element: str) -> dict[str, PropertyValue]:
        return dict(self._current.get(element, {}))

    def history(
        self, element: str, prop: str, since: float | None = None, limit: int | None = None
    ) -> list[tuple[float, Scalar]]:
        """Samples (source ts, value), oldest first; `since` is exclusive, `limit` keeps the newest."""
        samples = list(self._history.get((element, prop), ()))
        if since is not None:
            samples = [s for s in samples if s[0] > since]
        if limit is not None:
            samples = samples[-limit:] if limit > 0 else []
        return samples

    def snapshot(self) -> dict[str, dict[str, PropertyValue]]:
        return {el: dict(props) for el, props in self._current.items()}

    def load(self, current: dict[str, dict[str, PropertyValue]]) -> None:
        """Take `current` (element -> prop -> value, kept as given) as every current value, in place of all before:
        a replay's moment, 10 000 values at once. A property's history starts from its value when it is next applied
        (as `restore` would have started it), not before."""
        self._current = current
        self._history = {}

    def restore(self, snapshot: dict[str, dict[str, PropertyValue]]) -> None:
        """Load persisted current values (e.g. after a restart); history starts from these values."""
        for element, props in snapshot.items():
            current = self._current.setdefault(element, {})
            for prop, pv in props.items():
                current[prop] = pv
                hist = self._history.get((element, prop))
                if hist is None:
                    hist = self._history[(element, prop)] = deque(maxlen=self.history_len)
                hist.clear()
                hist.append((pv.ts, pv.value))
