"""Fan-out benchmark: the update schedule and the statistics, shared by both systems.

Everything here is plain numpy on arrays, so it can be tested without a server.

Conventions (used by every process of the benchmark):
- elements are numbered 0..K-1; every element starts at counter 1 (the *seed* state, set before any
  client connects) and each update sets it to its previous counter + 1. A value therefore names the
  update that produced it, and "holds that value or a newer one" is "holds a counter >= c".
- times are `time.monotonic()` seconds. CLOCK_MONOTONIC is system-wide on Linux, so the driver, the
  server and the client processes read the same clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SEED_COUNTER = 1  # the value every element holds before the run starts
TICK_S = 0.005  # the driver issues updates in ticks of 5 ms (200 batches per second)


@dataclass(frozen=True)
class Schedule:
    """Which element each update sets, and to which counter, in issue order."""

    elems: np.ndarray  # int32, element index of update j
    counters: np.ndarray  # int64, the counter update j sets
    per_tick: int  # updates issued per tick
    n_ticks: int
    tick: float  # seconds between ticks

    @property
    def n(self) -> int:
        return len(self.elems)


def make_schedule(k: int, rate: float, duration: float, seed: int = 1) -> Schedule:
    """Uniformly random elements at `rate` updates/s for `duration` s, in ticks of TICK_S.

    The same (k, rate, duration, seed) gives the same schedule, so both systems see identical work."""
    per_tick = max(1, round(rate * TICK_S))
    tick = per_tick / rate  # TICK_S, or longer when the rate is below one update per TICK_S
    n_ticks = max(1, round(duration / tick))
    n = per_tick * n_ticks
    rng = np.random.default_rng(seed)
    elems = rng.integers(0, k, size=n, dtype=np.int32)
    # counter of update j = SEED + (number of updates to the same element up to and including j)
    order = np.argsort(elems, kind="stable")
    sorted_elems = elems[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_elems)) + 1]
    run_index = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    counters = np.empty(n, dtype=np.int64)
    counters[order] = SEED_COUNTER + 1 + run_index
    return Schedule(elems=elems, counters=counters, per_tick=per_tick, n_ticks=n_ticks, tick=tick)


def final_counters(k: int, sched: Schedule) -> np.ndarray:
    """The counter each element holds after the whole schedule (SEED_COUNTER if never updated)."""
    final = np.full(k, SEED_COUNTER, dtype=np.int64)
    np.maximum.at(final, sched.elems, sched.counters)
    return final


@dataclass
class ClientLog:
    """What one client saw: every value it received (element, counter, receive time), and the
    receive time of every frame."""

    elems: np.ndarray  # int32
    counters: np.ndarray  # int64
    times: np.ndarray  # float64, monotonic receive time of the frame that carried the value
    frame_times: np.ndarray  # float64


_KEY_SHIFT = 32


def reach_times(log: ClientLog, elems: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """For each (element, counter), the first time the client held that counter or a newer one for
    that element; +inf if it never did."""
    if len(log.elems) == 0:
        return np.full(len(elems), np.inf)
    rkey = (log.elems.astype(np.int64) << _KEY_SHIFT) | log.counters.astype(np.int64)
    order = np.argsort(rkey, kind="stable")
    rkey = rkey[order]
    rtimes = log.times[order]
    relem = log.elems[order].astype(np.int64)
    # Suffix minimum of the receive time within each element's group: the first moment any value
    # >= c arrived. Offsetting each group by elem * BIG keeps later groups out of the minimum.
    t0 = rtimes.min()
    big = float(rtimes.max() - t0 + 1.0) * 2.0
    shifted = (rtimes - t0) + relem * big
    suffix = np.minimum.accumulate(shifted[::-1])[::-1] - relem * big + t0
    qkey = (elems.astype(np.int64) << _KEY_SHIFT) | counters.astype(np.int64)
    idx = np.searchsorted(rkey, qkey, side="left")
    out = np.full(len(elems), np.inf)
    ok = idx < len(rkey)
    idx_ok = idx[ok]
    same = relem[idx_ok] == elems[ok]
    sel = np.flatnonzero(ok)[same]
    out[sel] = suffix[idx_ok[same]]
    return out


def held_at_end(log: ClientLog, k: int) -> np.ndarray:
    """The newest counter the client held per element at the end (0 = never received one)."""
    held = np.zeros(k, dtype=np.int64)
    if len(log.elems):
        np.maximum.at(held, log.elems, log.counters)
    return held


def max_gap(frame_times: np.ndarray, start: float, end: float) -> float:
    """Longest interval in [start, end] without a frame (the window edges count as boundaries)."""
    inside = frame_times[(frame_times > start) & (frame_times < end)]
    edges = np.concatenate(([start], np.sort(inside), [end]))
    return float(np.diff(edges).max())


def percentile(values: np.ndarray, q: float) -> float:
    """Percentile that treats +inf (never reached) as larger than everything; nan when empty."""
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(values, q, method="higher"))


@dataclass
class Metrics:
    updates_issued: int = 0
    issue_seconds: float = 0.0  # how long the driver took to issue them (vs. the nominal T)
    staleness_p50_ms: float = float("nan")
    staleness_p99_ms: float = float("nan")
    staleness_max_ms: float = float("nan")
    reached_pct: float = float("nan")  # share of (client, update) pairs the client ever reached
    convergence_pct: float = float("nan")  # share of (client, element) final values held at the end
    clients_fully_converged: int = 0
    max_gap_ms: float = float("nan")
    delivered_updates: int = 0  # (client, update) pairs reached
    values_received: int = 0  # (element, value) entries decoded by all clients

    def as_dict(self) -> dict:
        return asdict(self)


def compute_metrics(
    k: int,
    sched: Schedule,
    issue_times: np.ndarray,
    logs: list[ClientLog],
    window: tuple[float, float],
) -> Metrics:
    """Staleness, convergence and starvation over all clients.

    issue_times[j] is when update j entered the server (see the README for what that means per
    system); `window` is the interval in which updates flowed, for the starvation gap."""
    m = Metrics(updates_issued=int(sched.n), issue_seconds=float(issue_times.max() - issue_times.min()))
    final = final_counters(k, sched)
    stale_all = []
    converged = 0
    full = 0
    gaps = []
    for log in logs:
        reach = reach_times(log, sched.elems, sched.counters)
        # A value that reached the client before the server took it in can only be a measurement
        # artefact (clock granularity); clamp at zero.
        stale_all.append(np.maximum(reach - issue_times, 0.0))
        held = held_at_end(log, k)
        ok = held >= final
        converged += int(ok.sum())
        full += int(ok.all())
        gaps.append(max_gap(log.frame_times, *window))
        m.values_received += len(log.elems)
    if logs:
        stale = np.concatenate(stale_all)
        reached = np.isfinite(stale)
        m.delivered_updates = int(reached.sum())
        m.reached_pct = 100.0 * float(reached.mean()) if len(stale) else float("nan")
        m.staleness_p50_ms = percentile(stale, 50) * 1e3
        m.staleness_p99_ms = percentile(stale, 99) * 1e3
        m.staleness_max_ms = float(stale.max()) * 1e3 if len(stale) else float("nan")
        m.convergence_pct = 100.0 * converged / (k * len(logs))
        m.clients_fully_converged = full
        m.max_gap_ms = max(gaps) * 1e3
    return m
