"""The fan-out benchmark harness measures what it claims: a tiny run of both systems end to end.

K = 10 elements, N = 2 clients, R = 100 updates/s for T = 1 s. Real processes and sockets (a TwinView
server, a publisher, a viser server, client processes), so this also guards the harness against
protocol changes on either side.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import fanout
from bench._fanout_stats import ClientLog, compute_metrics, make_schedule

pytestmark = pytest.mark.slow

K, N, R, T = 10, 2, 100, 1.0


def test_twinview_clients_hold_every_final_value() -> None:
    row = fanout.run_config("twin", K, N, R, T)
    assert row["status"] == "ok", row.get("error")
    assert row["updates_issued"] == R * T
    assert row["convergence_pct"] == 100.0
    assert row["reached_pct"] == 100.0
    assert row["clients_fully_converged"] == N
    assert row["delivered_updates"] == N * R * T
    assert 0 <= row["staleness_p50_ms"] <= row["staleness_p99_ms"] <= row["staleness_max_ms"] < 1000
    assert row["server_cpu_s"] > 0 and row["server_peak_rss_mb"] > 0


def test_viser_is_measured_the_same_way() -> None:
    row = fanout.run_config("viser", K, N, R, T)
    assert row["status"] == "ok", row.get("error")
    assert row["updates_issued"] == R * T
    assert row["convergence_pct"] == 100.0
    assert math.isfinite(row["staleness_p99_ms"])


def test_staleness_counts_a_superseding_value_and_never_reached_as_infinite() -> None:
    sched = make_schedule(3, 1000, 0.01, seed=2)  # 10 updates to 3 elements
    assert set(sched.elems.tolist()) == {0, 1, 2}
    issue = 100.0 + 0.001 * np.arange(sched.n)
    final = np.zeros(3, dtype=np.int64)
    np.maximum.at(final, sched.elems, sched.counters)
    # The client only ever receives the final value of elements 0 and 1, at t = 101.
    keep = np.array([0, 1], dtype=np.int32)
    log = ClientLog(keep, final[keep], np.full(2, 101.0), np.array([101.0]))
    m = compute_metrics(3, sched, issue, [log], (100.0, float(issue.max())))
    to_e2 = sched.elems == 2
    assert m.delivered_updates == int((~to_e2).sum())  # superseded updates count as delivered
    assert m.reached_pct == pytest.approx(100.0 * (~to_e2).mean())
    assert m.convergence_pct == pytest.approx(100.0 * 2 / 3)
    assert m.staleness_max_ms == math.inf
