"""Which bound properties have gone silent: no sample for longer than their binding's `stale_after`.

The hub tells the watch about every sample (`seen`, O(1)) and asks it, on its periodic tick, which
properties have been silent too long (`expired`). Properties are kept in the order of their newest
sample, so a tick looks at the oldest ones only: it stops at the first property heard from within
the shortest `stale_after` of all, however many properties are fresh. An expired property leaves the
watch until its next sample. Receive times come from one server clock, so they arrive in order; after
a clock step backwards a property may go stale a little late, never early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Final

_UNKNOWN: Final = object()  # a property whose stale_after has not been looked up yet


class SilenceWatch:
    def __init__(self, stale_after: Callable[[str, str], float | None]) -> None:
        """`stale_after(element, prop)`: seconds without a sample before it is stale, None = never."""
        self._stale_after = stale_after
        self._period: dict[tuple[str, str], object] = {}  # float, None (never stale) or _UNKNOWN
        self._last: dict[tuple[str, str], float] = {}  # receive time of the newest sample, oldest first
        self._shortest = math.inf

    def seen(self, element: str, prop: str, rx: float) -> None:
        """A sample of element.prop arrived at `rx` (server receive time). On every reading: keep it cheap."""
        key = (element, prop)
        period = self._period.get(key, _UNKNOWN)
        if period is _UNKNOWN:
            period = self._period[key] = self._stale_after(element, prop)
            if period is not None:
                self._shortest = min(self._shortest, period)
        if period is None:
            return
        last = self._last
        last.pop(key, None)  # re-inserted at the end: the dict stays ordered by newest sample
        last[key] = rx

    def seen_all(self, samples: Iterable[tuple[str, str, float]]) -> None:
        """Several (element, prop, rx), in any order (restored values at start-up)."""
        for element, prop, rx in sorted(samples, key=lambda s: s[2]):
            self.seen(element, prop, rx)

    def expired(self, now: float) -> list[tuple[str, str, float]]:
        """(element, prop, rx of its last sample) of every property silent longer than its stale_after."""
        out: list[tuple[str, str, float]] = []
        for key, rx in self._last.items():
            silent = now - rx
            if silent < self._shortest:
                break
            period = self._period[key]
            if isinstance(period, float | int) and silent >= period:
                out.append((*key, rx))
        for element, prop, _ in out:
            del self._last[(element, prop)]
        return out
