"""Streaming anomaly detectors: O(1) time and bounded memory per sample.

Each detector learns a baseline from a warm-up, then flags samples far from it. Flagged samples do
not update the baseline, so a persistent fault (a bearing starting to fail) stays flagged instead of
being learnt as the new normal; `reset()` (e.g. when the machine stops) starts a fresh warm-up.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from scene.bindings import Detector, EwmaParams, FlatlineParams, ZScoreParams

# Floor on the baseline's standard deviation, as a fraction of its mean: real sensors are rarely
# better than 1 % of reading, and without a floor a near-constant signal flags its own quantisation.
MIN_REL_STD = 0.01
# Absolute floor for signals whose mean is ~0 (same reason).
MIN_ABS_STD = 1e-6


def _std_floor(mean: float) -> float:
    return max(MIN_REL_STD * abs(mean), MIN_ABS_STD)


class StreamDetector(Protocol):
    """What the rule engine needs from a detector: feed a sample, or start over."""

    def update(self, x: float, ts: float) -> bool: ...
    def reset(self) -> None: ...


class EwmaDetector:
    """Exponentially weighted mean; flags |x - mean| > threshold * noise std.

    The noise level comes from successive differences (the von Neumann estimator,
    E[(x[t] - x[t-1])^2] = 2 var for white noise), also exponentially weighted. Unlike the spread
    around the mean, it does not grow when the signal drifts, so a slow drift (a bearing wearing)
    pulls away from the lagging mean and gets flagged instead of widening its own tolerance.
    The warm-up averages both exactly, so the baseline is sound from the first possible flag.
    """

    def __init__(self, alpha: float = 0.05, threshold: float = 5.0, warmup: int = 30) -> None:
        if not 0 < alpha <= 1 or threshold <= 0 or warmup < 2:
            raise ValueError("need 0 < alpha <= 1, threshold > 0, warmup >= 2")
        self.alpha, self.threshold, self.warmup = alpha, threshold, warmup
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.var = 0.0  # noise variance estimate
        self._prev = 0.0

    def update(self, x: float, ts: float) -> bool:
        step_var = (x - self._prev) ** 2 / 2.0
        if self.n < self.warmup:
            self.n += 1
            self.mean += (x - self.mean) / self.n
            if self.n > 1:
                self.var += (step_var - self.var) / (self.n - 1)
            self._prev = x
            return False
        std = max(math.sqrt(self.var), _std_floor(self.mean))
        d = x - self.mean
        if abs(d) > self.threshold * std:
            return True
        self.mean += self.alpha * d
        self.var += self.alpha * (step_var - self.var)
        self._prev = x
        return False


class RollingZScore:
    """Mean and standard deviation over the last `window` normal samples (running sums, O(1))."""

    def __init__(self, window: int = 60, threshold: float = 5.0, warmup: int = 30) -> None:
        if window < 3 or threshold <= 0 or warmup < 2:
            raise ValueError("need window >= 3, threshold > 0, warmup >= 2")
        self.window, self.threshold, self.warmup = window, threshold, min(warmup, window)
        self.reset()

    def reset(self) -> None:
        self._buf: deque[float] = deque()
        self._ref = 0.0  # values are summed relative to the first one, for numerical stability
        self._sum = 0.0
        self._sumsq = 0.0

    def update(self, x: float, ts: float) -> bool:
        if not self._buf:
            self._ref = x
        n = len(self._buf)
        if n >= self.warmup:
            mean = self._sum / n
            var = max(self._sumsq / n - mean * mean, 0.0) * n / (n - 1)
            std = max(math.sqrt(var), _std_floor(mean + self._ref))
            if abs(x - self._ref - mean) > self.threshold * std:
                return True
        y = x - self._ref
        self._buf.append(y)
        self._sum += y
        self._sumsq += y * y
        if len(self._buf) > self.window:
            old = self._buf.popleft()
            self._sum -= old
            self._sumsq -= old * old
        return False


class FlatlineDetector:
    """Flags a signal that has not changed for `still_s` seconds: a stuck sensor or a dead source.

    `update` sees samples; `stale(now)` lets a periodic tick catch a source that stopped sending.
    """

    def __init__(self, still_s: float = 30.0) -> None:
        if still_s <= 0:
            raise ValueError("still_s must be positive")
        self.still_s = still_s
        self.reset()

    def reset(self) -> None:
        self._last: float | None = None
        self._since = 0.0

    def update(self, x: float, ts: float) -> bool:
        if x != self._last:
            self._last, self._since = x, ts
        return self.stale(ts)

    def stale(self, now: float) -> bool:
        return self._last is not None and now - self._since >= self.still_s


def make_detector(params: Detector) -> StreamDetector:
    if isinstance(params, EwmaParams):
        return EwmaDetector(params.alpha, params.threshold, params.warmup)
    if isinstance(params, ZScoreParams):
        return RollingZScore(params.window, params.threshold, params.warmup)
    if isinstance(params, FlatlineParams):
        return FlatlineDetector(params.still_s)
    raise TypeError(f"unknown detector {params!r}")
