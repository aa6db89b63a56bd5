"""The scale-out benchmark measures what it claims: a tiny run end to end, one process on the in-process bus and
two on a real Redis (K = 10 elements, N = 4 clients, R = 100 updates/s, T = 1 s): every client of every process
holds every final value, and every row states its CPU per process, the engine's and its conditions."""

from __future__ import annotations

import math
import shutil

import pytest

from bench import scaleout

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(scaleout.REDIS_SERVER) is None, reason="redis-server not installed"),
]

K, N, R, T = 10, 4, 100, 1.0


@pytest.mark.parametrize("setup", [scaleout.Setup(1, scaleout.IN_PROCESS), scaleout.Setup(2, scaleout.REDIS)])
def test_every_client_of_every_process_holds_every_final_value(setup: scaleout.Setup) -> None:
    row = scaleout.run_setup(setup, K, N, R, T, client_procs=2)
    assert row["status"] == "ok", row.get("error")
    assert row["updates_issued"] == R * T and row["rejected"] == 0
    assert row["convergence_pct"] == 100.0 and row["clients_fully_converged"] == N
    assert row["delivered_updates"] == N * R * T  # the clients of the second process got them through Redis
    assert 0 <= row["staleness_p50_ms"] <= row["staleness_p99_ms"] < math.inf  # a loaded machine is slow
    assert len(row["server_cpu_s"]) == setup.processes and all(cpu > 0 for cpu in row["server_cpu_s"])
    assert (row["engine_cpu_s"] is None) == (setup.bus == scaleout.IN_PROCESS)
    assert row["client_procs"] == 2 and row["client_cpu_s"] > 0 and row["nice"] and row["load_before"] >= 0
    table = scaleout.table([row])
    assert f"| {setup.processes} | {setup.bus} |" in table and "FAILED" not in table


def test_the_comparison_names_the_redis_cost_and_the_growth() -> None:
    def row(processes: int, bus: str, p50: float, delivered: float) -> dict:
        return {
            "status": "ok",
            "processes": processes,
            "bus": bus,
            "staleness_p50_ms": p50,
            "delivered_per_s": delivered,
        }

    rows = [row(1, "in-process", 10.0, 1000.0), row(1, "redis", 13.5, 1000.0), row(3, "redis", 20.0, 1800.0)]
    text = scaleout.comparison(rows)
    assert "Redis adds +3.5 ms to p50 staleness" in text and "grow 1.80× from 1 to 3 processes" in text
    rows[0]["staleness_p50_ms"] = math.inf  # some client never got an update
    assert "not measurable in this run" in scaleout.comparison(rows)
