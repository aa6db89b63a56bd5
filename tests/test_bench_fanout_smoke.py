"""The fan-out benchmark harness measures what it claims: a tiny run of both systems end to end.

K = 10 elements, N = 2 clients, R = 100 updates/s for T = 1 s. Real processes and sockets (a TwinView
server, a publisher, a viser server, client processes that decode every frame), so this also guards
the harness against protocol changes on either side, and checks that every row states its conditions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import fanout
from bench._fanout_clients import TwinState
from bench._fanout_stats import ClientLog, compute_metrics, make_schedule

pytestmark = pytest.mark.slow

K, N, R, T = 10, 2, 100, 1.0


def assert_conditions_stated(row: dict) -> None:
    # One process per client here, each with its CPU stated. That each decoded every frame is what the callers'
    # 100 % convergence shows: a small run on a quiet machine can take less than one clock tick of CPU.
    assert row["client_procs"] == N == len(row["client_cpu_s_per_proc"])
    assert all(math.isfinite(cpu) and cpu >= 0 for cpu in row["client_cpu_s_per_proc"])
    assert isinstance(row["nice_server"], int) and row["nice_clients"]
    assert row["load_before"] >= 0 and row["load_during_max"] >= 0
    assert all(math.isfinite(row[f"{q}_queue_peak_mb"]) for q in ("client_recv", "server_send", "server_recv"))
    assert row["server_wait_share"] >= 0 and row["client_wait_share_max"] >= 0
    assert row["bottleneck"]
    table = fanout.conditions_table([row])
    assert row["bottleneck"] in table and f"{row['nice_server']} / " in table


@pytest.mark.parametrize("encoding", ["msgpack", "json"])
def test_twinview_clients_hold_every_final_value(encoding: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "ENCODING", encoding)
    row = fanout.run_config("twin", K, N, R, T)
    assert row["status"] == "ok", row.get("error")
    assert row["encoding"] == encoding
    assert row["updates_issued"] == R * T
    assert row["convergence_pct"] == 100.0
    assert row["reached_pct"] == 100.0
    assert row["clients_fully_converged"] == N
    assert row["delivered_updates"] == N * R * T
    assert 0 <= row["staleness_p50_ms"] <= row["staleness_p99_ms"] <= row["staleness_max_ms"] < 1000
    assert row["server_cpu_s"] > 0 and row["server_peak_rss_mb"] > 0
    assert row["server_backlog_keys_peak"] >= 0  # the server's gauge was read during the run
    assert_conditions_stated(row)


def test_viser_is_measured_the_same_way() -> None:
    row = fanout.run_config("viser", K, N, R, T)
    assert row["status"] == "ok", row.get("error")
    assert row["updates_issued"] == R * T
    assert row["convergence_pct"] == 100.0
    assert math.isfinite(row["staleness_p99_ms"])
    assert_conditions_stated(row)


def test_the_client_decodes_and_applies_whole_frames() -> None:
    state = TwinState("json")
    snapshot = '{"type": "snapshot", "seq": 4, "props": {"e0/v": {"v": 1.0, "ts": 1.0}}, "visuals": {}}'
    assert state.apply(snapshot) == [("e0/v", 1.0)]
    delta = (
        '{"type": "delta", "first": 5, "last": 6, "props": {"e0/v": {"v": 2.0, "ts": 2.0, "q": "bad"}}, '
        '"visuals": {"e0@ops": {"color": "#ff0000"}}, "presence": {}, "events": [{"seq": 6, "kind": "x"}]}'
    )
    assert state.apply(delta) == [("e0/v", 2.0)]
    assert state.props["e0/v"] == {"v": 2.0, "ts": 2.0, "q": "bad"}  # the whole value, not just v
    assert state.visuals == {"e0@ops": {"color": "#ff0000"}} and state.seq == 6 and len(state.events) == 1


def test_the_verdict_names_the_clients_when_they_fall_behind() -> None:
    row = {
        "client_core_share_max": 0.97,
        "client_recv_queue_socket_peak_kb": 2048.0,
        "client_recv_queue_peak_mb": 120.0,
        "server_core_share": 0.3,
        "server_wait_share": 0.05,
        "client_wait_share_max": 0.1,
        "load_before": 1.0,
        "load_during_max": 1.5,
    }
    verdict = fanout.bottleneck(row)
    assert verdict.startswith("clients:") and "97% of a core" in verdict and "120.0 MB" in verdict
    quiet = {**row, "client_core_share_max": 0.1, "client_recv_queue_socket_peak_kb": 1.0}
    assert fanout.bottleneck(quiet).startswith("neither")
    assert fanout.bottleneck({**quiet, "server_core_share": 0.95}).startswith("server:")
    assert "the host starved the benchmark" in fanout.bottleneck({**quiet, "client_wait_share_max": 0.6})


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
