"""The history benchmark measures what it claims: a tiny query history end to end, and one kill -9 run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench import history

pytestmark = pytest.mark.slow


def test_the_query_benchmark_answers_every_key_and_reports_every_figure(tmp_path: Path) -> None:
    result = history.queries(tmp_path, keys=20, hours=2, step_s=600.0)
    assert result["samples"] == 20 * 12
    for name in ("seek_p95_ms", "naive_p95_ms", "chart_1h_p95_ms", "chart_all_p95_ms", "parquet_bytes_per_sample"):
        assert result[name] > 0, name
    assert "| seek: every key's value at t" in history.table(
        {"load_before": 0, "load_after": 0, "cpus": 2, "query": result}
    )


async def test_one_kill_9_run_counts_what_was_acknowledged_and_lost(tmp_path: Path) -> None:
    run = await history.kill9_run(tmp_path, random.Random(1))
    assert run["acked"] >= 100 and run["lost"] == 0


def test_the_storage_benchmark_compares_every_layout_on_the_same_samples(tmp_path: Path) -> None:
    start = 1_800_000_000.0
    readings = history.noisy_readings(keys=4, hours=1, step_s=60.0, start=start)
    result = history.storage_of(tmp_path, readings, start, 1)
    assert result["samples"] == 4 * 60
    for name in ("historian", "tail_in_use", "time_sorted_zstd1", "plain_sqlite", "seal_cpu_us_per_sample"):
        assert result[name] > 0, name
    slow = history.simulator_readings(hours=1, start=start)
    assert len(slow) == 16 * 3600 and {r.prop for r in slow} >= {"temperature", "level"}
    assert "| historian chunks |" in history.table(
        {"load_before": 0, "load_after": 0, "cpus": 2, "storage": {"noisy": result}}
    )


def test_the_ingest_benchmark_commits_every_reading_and_reports_its_share_of_a_core(
    tmp_path: Path, store_url: str | None
) -> None:
    result = history.ingest(tmp_path, rate=2000, seconds=0.5, database=store_url)
    assert result["readings"] == 1000 and result["cpu_s"] > 0 and result["ack_p99_ms"] >= result["ack_p50_ms"] > 0
    assert result["bytes_per_sample"] > 10  # 1 000 samples and their index entries: tens of bytes each
    assert "bytes per sample" in history.table({"load_before": 0, "load_after": 0, "cpus": 2, "ingest": result})


async def test_the_playback_benchmark_times_the_frames_of_a_60x_replay_at_a_viewer(tmp_path: Path) -> None:
    result = await history.playback(tmp_path, minutes=2, seconds=2.0)
    assert result["frames"] >= 2 and result["props_per_frame"] > 0 and result["gap_max_ms"] >= result["gap_p50_ms"] > 0
    assert result["visuals_per_frame"] > 0 and result["server_cpu_per_s"] > 0
    assert "playback at 60×" in history.table({"load_before": 0, "load_after": 0, "cpus": 2, "playback": result})


async def test_the_seek_benchmark_times_whole_replays_over_the_protocol(tmp_path: Path) -> None:
    result = await history.seek_served(tmp_path, keys=20, hours=1, step=600.0)
    assert result["samples"] == 20 * 6 and result["p95_ms"] >= result["p50_ms"] > 0
    assert "seek over the protocol, 20 elements" in history.table(
        {"load_before": 0, "load_after": 0, "cpus": 2, "seek": result}
    )


def test_the_live_benchmark_runs_the_fan_out_without_and_with_the_historian(tmp_path: Path) -> None:
    rows = history.live(keys=20, clients=2, rate=200, seconds=1.0, rounds=1)
    assert [r["history"] for r in rows] == [False, True] and all(r["status"] == "ok" for r in rows), rows
    assert "historian_thread_cpu_s" not in rows[0] and rows[1]["historian_thread_cpu_s"] > 0
    assert "historian on: staleness p50" in history.table({"load_before": 0, "load_after": 0, "cpus": 2, "live": rows})


def test_the_alarms_benchmark_times_the_alarm_list_as_of_three_moments(tmp_path: Path) -> None:
    result = history.alarms(tmp_path, events=400)
    assert result["events"] == 400 and all(result[f"at_{s}_ms"] > 0 for s in ("0.01", "0.5", "0.99"))
    assert "alarms_at over 400" in history.table({"load_before": 0, "load_after": 0, "cpus": 2, "alarms": result})
