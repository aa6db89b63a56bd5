"""Historian benchmarks: kill -9 while publishing, seek latency at 10 000 keys, chart range queries, bytes/sample,
ingest, playback, the alarm list as of t.

    python -m bench.history                       # everything below (~8 min on a quiet host)
    python -m bench.history --only kill9 --runs 3 # one part

1. kill9: a real `twinview serve` (own process, data dir in a temp folder); a `publisher` WebSocket session
   sends 100 readings every 100 ms (1 000 readings/s, each with its own source time) and waits for each ack;
   after a random 2…5 s the server is killed with SIGKILL; it is started again on the same data dir and the
   history of the key is read back (`GET /api/history`, raw). Lost = acknowledged readings missing after the
   restart. `--runs` repetitions.
2. seek: a Historian (no server) holding --keys properties × --hours hours at one sample per --step seconds per
   key (written through `append`, so minute aggregates are real), the older hours sealed into Parquet.
   p50 / p95 of `state_at(t)` (the twin's values at t for every key) at random t, against the naive query on a
   plain SQLite table `(key, ts, value)` with an index on (key, ts) holding the same samples.
   seek (`--only seek`): the same history (--keys × --hours, one sample per --step) in the data dir of a real
   `twinview serve`, each property with a colour ramp; a viewer in the benchmark process seeks to random times:
   from sending `seek` to holding the decoded `replay` (every value and visual), p50 / p95 / max, and the server's
   CPU per seek; at the same times the naive per-key query on a plain SQLite table of the same samples, and the
   seek's parts timed in the benchmark process (values, the whole twin, encoding).
3. chart: `series(one key, t - 1 h, t, 600 points)` (raw samples bucketed) and a whole-range query (minute
   aggregates), p50 / p95.
4. storage (`--only storage`): bytes per sample of the same samples as the historian's sealed chunks, as chunks
   were written before (sorted by time, zstd level 1), in a plain SQLite table `(key, ts, value)` with an index,
   and as Parquet+zstd written by pandas (when pandas is installed), for two signals: the simulator's analog
   channels at 1 Hz (slowly changing, each with its sensor's noise and resolution) and the seek benchmark's
   noisy one (a sine plus noise at 0.01, every key at a random moment).
5. ingest (`--only ingest`): --rate readings/s (10 000 properties at 1 Hz) into a Historian for --seconds, in
   batches of 100 sent on schedule, each awaited as a publisher's ack is; the process's CPU time over the wall
   time is the historian's share of a core (the readings are built beforehand), with the ack latency
   (append to group commit) p50 / p99 and the bytes the history then holds per sample (`Historian.stored_bytes`:
   nothing sealed yet). `--engine postgresql`: into a PostgreSQL started as the tests start it
   (tests/postgres_server.py), as `serve --store postgresql://…` keeps it.
6. playback (`--only playback`): 1 000 properties at 1 Hz for --minutes (sealed), each with a colour ramp, in the
   data dir of a real `twinview serve` (own process); a viewer in the benchmark process seeks to the start and
   plays at 60× for --seconds: the gaps between `replay_delta` frames as they arrive, decoded (p50 / p99 / max,
   how many over 100 ms), frames per second, and the server's CPU (per second and per frame) and the viewer's.
7. live (`--only live`): bench/fanout.py's TwinView configuration (a server process, a publisher process sending
   --rate readings/s over --live-keys properties, --clients viewers in 4 client processes, staleness measured at
   the clients) run --rounds times without the historian and with it, alternately, in one run: the live fan-out
   p50 / p99 of each, the server's CPU, and the CPU time of the historian's writer thread.
8. alarms (`--only alarms`): 100 000 alarm events (1 000 alarms raised and cleared in turn, one event per 6 s:
   a week) recorded, then `alarms_at(t)` (the alarm list a seek shows) early, in the middle and at the end,
   before and after the upkeep's checkpoints of the alarm list (`checkpoint_alarms` for every hour of the week).

Results: a markdown table on stdout and in bench/results/history.md (+ .json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pyarrow.parquet as pq

from bench._fanout_twin import free_port
from bench._server import server, wait_ready
from scene.simulator import CHANNELS, SignalSpec, Simulator
from scene.state import Reading
from tests.live_server import write_bindings, write_scene
from tests.postgres_server import postgres_server
from viewer_server import protocol as p
from viewer_server.auth import issue, load_secret
from viewer_server.client import TwinClient
from viewer_server.historian import HOUR, MINUTE, SEAL_GRACE_S, Historian
from viewer_server.live import HISTORY_DIR
from viewer_server.scenes import scene_id_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RATE = 1000  # readings per second while killing
BATCH = 100
KEYS = 10_000
HOURS = 2
STEP_S = 30.0  # one sample per key every 30 s: 2.4 M samples over two hours at 10 000 keys
SEEKS = 40


async def kill9_run(root: Path, rng: random.Random) -> dict[str, float]:
    scene, bindings, data = write_scene(root), write_bindings(root), root / "data"
    port = free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/{scene_id_for(scene)}"
    start = time.time() - 3000  # source times in the past, 1 ms apart: all distinct, none "future"
    acked: list[float] = []
    sent = 0
    with server(scene, bindings, data, port, stop=signal.SIGKILL) as proc:
        await wait_ready(url)
        token = issue(load_secret(data), scene_id_for(scene), "gw", "publisher")
        gw = TwinClient(ws_url, token=token, name="gw", reconnect=False)
        await gw.connect()
        kill_at = time.monotonic() + rng.uniform(2.0, 5.0)
        tick = time.monotonic()
        while time.monotonic() < kill_at:
            times = [start + (sent + i) * 0.001 for i in range(BATCH)]
            sent += BATCH
            ack = await gw.publish([p.Reading(float(i % 10), key="PT-1.pressure", ts=t) for i, t in enumerate(times)])
            assert ack.accepted == BATCH and ack.durable
            acked.extend(times)
            tick += BATCH / RATE
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        in_flight = asyncio.ensure_future(gw.publish([p.Reading(1.0, key="PT-1.pressure", ts=start + sent * 0.001)], 2))
        await asyncio.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        with contextlib.suppress(Exception):
            await in_flight
        with contextlib.suppress(Exception):
            await gw.close()
    with server(scene, bindings, data, port, stop=signal.SIGKILL):
        await wait_ready(url)
        stored: set[float] = set()
        async with aiohttp.ClientSession() as http:
            lo = start - 1
            while lo < start + sent * 0.001:  # 5 000 raw points per request at most
                hi = lo + 4.5
                query = {"keys": "PT-1.pressure", "from": str(lo), "to": str(hi), "points": "5000"}
                async with http.get(f"{url}/api/history", params=query) as r:
                    stored.update((await r.json())["series"][0]["t"])
                lo = hi
    lost = len(set(acked) - stored)
    return {"acked": len(acked), "lost": lost, "seconds": len(acked) / RATE}


def build_history(folder: Path, keys: int, hours: int, step_s: float) -> tuple[Historian, Path, float, float]:
    """`keys` keys × `hours` hours at one sample per `step_s` (sine plus noise); also a plain SQLite table of the
    same samples."""
    t0 = (time.time() // HOUR - hours - 1) * HOUR
    t1 = t0 + hours * HOUR
    now = [t1 + SEAL_GRACE_S + 1]
    h = Historian(folder / "historian", clock=lambda: now[0])
    plain = folder / "plain.sqlite"
    db = sqlite3.connect(plain)
    db.execute("CREATE TABLE samples (key INTEGER, ts REAL, value REAL)")
    rng = np.random.default_rng(7)
    steps = np.arange(t0, t1, step_s)
    phase = rng.uniform(0, 2 * np.pi, keys)
    for j, ts in enumerate(steps):
        jitter = rng.uniform(0, step_s, keys)  # keys report at their own moments
        values = np.round(50 + 10 * np.sin(phase + j / 20) + rng.normal(0, 0.2, keys), 2)
        readings = [Reading(f"e{k}", "v", float(values[k]), "", float(ts + jitter[k])) for k in range(keys)]
        h.append(readings, ts + step_s, "bench")
        db.executemany("INSERT INTO samples VALUES (?, ?, ?)", [(k, r.ts, r.value) for k, r in enumerate(readings)])
    h.flush()
    db.execute("CREATE INDEX samples_key_ts ON samples (key, ts)")
    db.commit()
    db.execute("VACUUM")
    db.close()
    h.seal()
    return h, plain, t0, t1


def timed(fn, runs: list[float], cpu: list[float]) -> object:  # type: ignore[no-untyped-def]
    """Run fn; note its wall time and the process's CPU time (ms): on a loaded host the CPU time is the
    figure that does not depend on how much of a core the scheduler gave us (the process: pyarrow decodes in
    threads of its own; the historian's writer is idle meanwhile)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    runs.append((time.perf_counter() - start) * 1000)
    cpu.append((time.process_time() - start_cpu) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def queries(folder: Path, keys: int = KEYS, hours: int = HOURS, step_s: float = STEP_S) -> dict[str, float]:
    build_start = time.perf_counter()
    h, plain, t0, t1 = build_history(folder, keys, hours, step_s)
    build_s = time.perf_counter() - build_start
    rng = random.Random(3)
    seek_ms: list[float] = []
    naive_ms: list[float] = []
    seek_cpu: list[float] = []
    naive_cpu: list[float] = []
    db = sqlite3.connect(plain)
    per_key_sql = "SELECT value FROM samples WHERE key = ? AND ts <= ? ORDER BY ts DESC LIMIT 1"
    for _ in range(SEEKS):
        t = rng.uniform(t0 + step_s, t1)
        state = timed(lambda t=t: h.state_at(t), seek_ms, seek_cpu)
        assert len(state) == keys  # type: ignore[arg-type]
        naive = timed(
            lambda t=t: [db.execute(per_key_sql, (k, t)).fetchone() for k in range(keys)], naive_ms, naive_cpu
        )
        assert len(naive) == keys  # type: ignore[arg-type]
    chart_ms: list[float] = []
    whole_ms: list[float] = []
    chart_cpu: list[float] = []
    whole_cpu: list[float] = []
    for _ in range(SEEKS):
        key = f"e{rng.randrange(keys)}"
        t = rng.uniform(t0 + HOUR, t1)
        timed(lambda key=key, t=t: h.series(key, "v", t - HOUR, t, 600), chart_ms, chart_cpu)
        timed(lambda key=key: h.series(key, "v", t0, t1, 600), whole_ms, whole_cpu)
    chunk_bytes = sum(f.stat().st_size for f in (folder / "historian" / "chunks").glob("*/*.parquet"))
    chunk_rows = sum(
        r for (r,) in sqlite3.connect(folder / "historian" / "history.sqlite").execute("SELECT rows FROM chunks")
    )
    samples = keys * len(np.arange(t0, t1, step_s))
    h.close()
    return {
        "keys": keys,
        "samples": samples,
        "build_s": build_s,
        "seek_cpu_p50_ms": pct(seek_cpu, 50),
        "naive_cpu_p50_ms": pct(naive_cpu, 50),
        "chart_1h_cpu_p50_ms": pct(chart_cpu, 50),
        "chart_all_cpu_p50_ms": pct(whole_cpu, 50),
        "seek_p50_ms": pct(seek_ms, 50),
        "seek_p95_ms": pct(seek_ms, 95),
        "naive_p50_ms": pct(naive_ms, 50),
        "naive_p95_ms": pct(naive_ms, 95),
        "chart_1h_p50_ms": pct(chart_ms, 50),
        "chart_1h_p95_ms": pct(chart_ms, 95),
        "chart_all_p50_ms": pct(whole_ms, 50),
        "chart_all_p95_ms": pct(whole_ms, 95),
        "parquet_bytes_per_sample": chunk_bytes / max(chunk_rows, 1),
        "plain_sqlite_bytes_per_sample": plain.stat().st_size / samples,
        "minutes_and_tail_bytes": (folder / "historian" / "history.sqlite").stat().st_size,
    }


def simulator_readings(hours: int, start: float) -> list[Reading]:
    """The simulator's analog channels at 1 Hz for `hours` (no pump running flags: those are bools)."""
    specs = [SignalSpec(key, *key.split("."), "") for key in CHANNELS if not key.endswith(".running")]
    sim = Simulator(specs, seed=5)
    return [r for ts in np.arange(start, start + hours * HOUR, 1.0) for r in sim.step(float(ts))]


def noisy_readings(keys: int, hours: int, step_s: float, start: float) -> list[Reading]:
    """The seek benchmark's signal: a sine plus noise rounded to 0.01, every key at its own moment."""
    rng = np.random.default_rng(7)
    phase = rng.uniform(0, 2 * np.pi, keys)
    out = []
    for j, ts in enumerate(np.arange(start, start + hours * HOUR, step_s)):
        values = np.round(50 + 10 * np.sin(phase + j / 20) + rng.normal(0, 0.2, keys), 2)
        jitter = rng.uniform(0, step_s, keys)
        out += [Reading(f"e{k}", "v", float(values[k]), "", float(ts + jitter[k])) for k in range(keys)]
    return out


def storage_of(folder: Path, readings: list[Reading], start: float, hours: int) -> dict[str, float]:
    """Bytes per sample of `readings` in each layout (the historian's through `append` + `seal`, one batch a
    second as a gateway sends them), and the CPU time of sealing them."""
    now = [start + hours * HOUR + SEAL_GRACE_S + 1]
    h = Historian(folder / "historian", clock=lambda: now[0])
    for second in range(hours * HOUR):
        batch = readings[second * len(readings) // (hours * HOUR) : (second + 1) * len(readings) // (hours * HOUR)]
        h.append(batch, start + second + 1, "gw")
    h.flush()
    cpu = time.process_time()
    chunks = h.seal()
    seal_cpu = time.process_time() - cpu
    h.close()
    n = len(readings)
    out = {"samples": float(n), "seal_cpu_us_per_sample": seal_cpu * 1e6 / n}
    out["historian"] = sum(c.stat().st_size for c in chunks) / n
    # What stays in the SQLite tail once the raw samples are sealed: the minute aggregates kept for a year, their
    # indexes (the seek's covering one too), keyframes, events. Pages in use, not the file's free ones.
    out["tail_in_use"] = sum(_sqlite_bytes_in_use(f) for f in (folder / "historian").rglob("*.sqlite")) / n
    before = folder / "before"
    before.mkdir()
    for i, chunk in enumerate(chunks):  # as chunks were written until now: sorted by time, zstd level 1
        pq.write_table(pq.read_table(chunk).sort_by("ts"), before / f"{i}.parquet", compression="zstd")
    out["time_sorted_zstd1"] = sum(f.stat().st_size for f in before.iterdir()) / n
    plain = folder / "plain.sqlite"
    db = sqlite3.connect(plain)
    db.execute("CREATE TABLE samples (key INTEGER, ts REAL, value REAL)")
    ids: dict[tuple[str, str], int] = {}
    db.executemany(
        "INSERT INTO samples VALUES (?, ?, ?)",
        [(ids.setdefault((r.element, r.prop), len(ids)), r.ts, r.value) for r in readings],
    )
    db.execute("CREATE INDEX samples_key_ts ON samples (key, ts)")
    db.commit()
    db.execute("VACUUM")
    db.close()
    out["plain_sqlite"] = plain.stat().st_size / n
    try:
        import pandas as pd  # optional: not a TwinView dependency
    except ImportError:
        out["pandas_parquet_zstd"] = float("nan")
    else:
        frame = pd.DataFrame(
            {
                "element": [r.element for r in readings],
                "prop": [r.prop for r in readings],
                "ts": [r.ts for r in readings],
                "value": [r.value for r in readings],
            }
        )
        frame.to_parquet(folder / "pandas.parquet", compression="zstd")
        out["pandas_parquet_zstd"] = (folder / "pandas.parquet").stat().st_size / n
    return out


def _sqlite_bytes_in_use(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (
            db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
        return (pages - free) * size
    finally:
        db.close()


def storage(folder: Path) -> dict[str, dict[str, float]]:
    start = (time.time() // HOUR - 4) * HOUR
    return {
        "simulator, 16 analog channels at 1 Hz, 2 h": storage_of(
            folder / "slow", simulator_readings(2, start), start, 2
        ),
        "noisy, 1 000 keys every 30 s at random moments, 2 h": storage_of(
            folder / "noisy", noisy_readings(1000, 2, 30.0, start), start, 2
        ),
    }


def ingest(folder: Path, rate: int, seconds: float, database: str | None = None) -> dict[str, float]:
    keys = 10_000
    start = time.time()
    batches = [
        [Reading(f"e{(i + j) % keys}", "v", float(j % 7), "", start + (i + j) / rate) for j in range(BATCH)]
        for i in range(0, int(rate * seconds), BATCH)
    ]
    h = Historian(folder / "ingest", database=database)
    acks: list[float] = []
    pending = []
    wall, cpu = time.perf_counter(), time.process_time()
    for i, batch in enumerate(batches):
        time.sleep(max(0.0, wall + i * BATCH / rate - time.perf_counter()))
        sent = time.perf_counter()
        future = h.append(batch, time.time(), "bench")
        future.add_done_callback(lambda _f, sent=sent: acks.append((time.perf_counter() - sent) * 1000))
        pending.append(future)
    for future in pending:
        future.result()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = h.stored_bytes()
    h.close()
    return {
        "readings": float(len(batches) * BATCH),
        "bytes_per_sample": stored / (len(batches) * BATCH),
        "wall_s": wall,
        "cpu_s": cpu,
        "core_share": cpu / wall,
        "ack_p50_ms": pct(acks, 50),
        "ack_p99_ms": pct(acks, 99),
    }


class _TimedClient(TwinClient):
    """A viewer noting when each `replay_delta` arrives, decoded (monotonic time, properties, visuals)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[tuple[float, int, int]] = []

    def _apply_replay(self, msg: p.Replay | p.ReplayDelta) -> None:
        if isinstance(msg, p.ReplayDelta):
            self.arrivals.append((time.monotonic(), len(msg.props), len(msg.visuals)))
        super()._apply_replay(msg)


def served_twin(root: Path, props: int, seconds: int, step: float) -> tuple[Path, Path, Path, float]:
    """A scene of `props` elements, each with one property (noise around 20, one sample per `step` seconds, the
    properties spread evenly over the step) and a colour ramp on it, and a data dir holding `seconds` of that
    history in hours that are sealed by the time the server starts: (scene, bindings, data dir, t0). The same
    samples also go into a plain SQLite table `(key, ts, value)` with an index on (key, ts), root/plain.sqlite (the
    naive store a seek is compared with)."""
    from bench._fanout_twin import write_scene as write_fanout_scene

    scene, bindings, data = root / "scene", root / "bindings.json", root / "data"
    write_fanout_scene(scene, bindings, props)
    spec = json.loads(bindings.read_text())
    spec["layers"]["ops"]["rules"] = [
        {"kind": "ramp", "element": f"e{k}", "prop": "v", "min": 18, "max": 22, "colors": ["#2f6fde", "#e5533d"]}
        for k in range(props)
    ]
    bindings.write_text(json.dumps(spec))
    t0 = (time.time() // HOUR - math.ceil(seconds / HOUR) - 1) * HOUR
    h = Historian(data / HISTORY_DIR / scene_id_for(scene))
    plain = sqlite3.connect(root / "plain.sqlite")
    plain.execute("CREATE TABLE samples (key INTEGER, ts REAL, value REAL)")
    rng = np.random.default_rng(3)
    offsets = np.arange(props) * step / props
    for ts in np.arange(t0, t0 + seconds, step):
        values = np.round(20 + rng.normal(0, 0.5, props), 2)
        readings = [Reading(f"e{k}", "v", float(values[k]), "", float(ts + offsets[k])) for k in range(props)]
        h.append(readings, float(ts + step), "b")
        plain.executemany("INSERT INTO samples VALUES (?, ?, ?)", [(k, r.ts, r.value) for k, r in enumerate(readings)])
    h.flush()
    h.seal()
    h.close()
    plain.execute("CREATE INDEX samples_key_ts ON samples (key, ts)")
    plain.commit()
    plain.close()
    return scene, bindings, data, t0


@contextlib.asynccontextmanager
async def viewer(
    scene: Path, bindings: Path, data: Path, client: type[TwinClient] = TwinClient
) -> AsyncIterator[tuple[TwinClient, subprocess.Popen[bytes]]]:
    """A real `twinview serve` on `data` (own process) and a viewer connected to it: (viewer, server process)."""
    port = free_port()
    with server(scene, bindings, data, port) as proc:
        await wait_ready(f"http://127.0.0.1:{port}")
        token = issue(load_secret(data), scene_id_for(scene), "bench", "viewer")
        joined = client(f"ws://127.0.0.1:{port}/ws/{scene_id_for(scene)}", token=token, name="bench")
        await joined.connect()
        try:
            yield joined, proc
        finally:
            await joined.close()


async def seek_served(folder: Path, keys: int, hours: int, step: float) -> dict[str, float]:
    """`seek` over the protocol: from sending it to the viewer holding the decoded `replay` (every property's
    value, every element's visual), at random times of the history, against a real server; at the same times, in
    the same run, the naive query (one indexed query per key on a plain SQLite table of the same samples) and the
    seek's parts in this process (`ReplayTwin.seek` and encoding the answer)."""
    build = time.perf_counter()
    scene, bindings, data, t0 = served_twin(folder / "seek", keys, hours * HOUR, step)
    build_s = time.perf_counter() - build
    rng = random.Random(5)
    moments = [rng.uniform(t0 + step, t0 + hours * HOUR) for _ in range(SEEKS)]
    wall: list[float] = []
    server_cpu: list[float] = []
    async with viewer(scene, bindings, data) as (client, proc):
        for t in moments:
            cpu, start = _process_cpu(proc.pid), time.perf_counter()
            replay = await client.seek(t, timeout=60)
            wall.append((time.perf_counter() - start) * 1000)
            server_cpu.append((_process_cpu(proc.pid) - cpu) * 1000)
            assert len(replay.props) == keys and len(replay.visuals) == keys
    naive_wall: list[float] = []
    naive_cpu: list[float] = []
    db = sqlite3.connect(folder / "seek" / "plain.sqlite")
    per_key_sql = "SELECT ts, value FROM samples WHERE key = ? AND ts <= ? ORDER BY ts DESC LIMIT 1"
    for t in moments:
        timed(lambda t=t: [db.execute(per_key_sql, (k, t)).fetchone() for k in range(keys)], naive_wall, naive_cpu)
    db.close()
    return {
        "keys": float(keys),
        "samples": float(keys * len(np.arange(t0, t0 + hours * HOUR, step))),
        "build_s": build_s,
        "p50_ms": pct(wall, 50),
        "p95_ms": pct(wall, 95),
        "max_ms": max(wall),
        "server_cpu_p50_ms": pct(server_cpu, 50),
        "server_cpu_p95_ms": pct(server_cpu, 95),
        "naive_p50_ms": pct(naive_wall, 50),
        "naive_p95_ms": pct(naive_wall, 95),
        "naive_cpu_p50_ms": pct(naive_cpu, 50),
        **seek_parts(scene, bindings, data, moments),
    }


def seek_parts(scene: Path, bindings: Path, data: Path, moments: list[float]) -> dict[str, float]:
    """The CPU of a seek's parts in this process, median over `moments` (ms): the values at t (`state_at`), the whole
    `ReplayTwin.seek` (values, the twin's state, visuals, alarms) and encoding the `replay` (msgpack)."""
    from scene.bindings import load_bindings
    from viewer_server.replay import ReplayTwin, RuleVersions

    h = Historian(data / HISTORY_DIR / scene_id_for(scene), reader=True)
    twin = ReplayTwin(h, RuleVersions(h, load_bindings(bindings), None), "ops")
    values: list[float] = []
    seeks: list[float] = []
    encodes: list[float] = []
    ignored: list[float] = []
    for t in moments:
        timed(lambda t=t: h.state_at(t), ignored, values)
        props, visuals, alarms = timed(lambda t=t: twin.seek(t), ignored, seeks)  # type: ignore[misc]
        answer = p.Replay(t, 1.0, False, "ops", h.range(), props, visuals, alarms)
        timed(lambda answer=answer: p.encode(answer, "msgpack"), ignored, encodes)
    h.close()
    return {"values_cpu_ms": pct(values, 50), "twin_cpu_ms": pct(seeks, 50), "encode_cpu_ms": pct(encodes, 50)}


async def playback(folder: Path, minutes: int, seconds: float) -> dict[str, float]:
    """60× over 1 000 properties through a real server (its own process) to a viewer in this one, timed as the
    frames arrive, decoded."""
    props, speed = 1000, 60.0
    scene, bindings, data, t0 = served_twin(folder / "playback", props, minutes * MINUTE, 1.0)
    async with viewer(scene, bindings, data, _TimedClient) as (client, proc):
        assert isinstance(client, _TimedClient)
        watcher = client
        await client.seek(t0)
        server_cpu = _process_cpu(proc.pid)
        cpu, wall = time.process_time(), time.monotonic()
        await client.play(speed)
        await asyncio.sleep(seconds)
        await client.wait_for(lambda _: len(watcher.arrivals) >= 2, timeout=120)  # a host short of CPU: wait for two
        await client.pause()
        cpu, server_cpu = time.process_time() - cpu, _process_cpu(proc.pid) - server_cpu
        seconds = time.monotonic() - wall
    times = [a for a, _, _ in watcher.arrivals]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "frames": float(len(times)),
        "frames_per_s": (len(times) - 1) / span,
        "props_per_frame": float(np.mean([n for _, n, _ in watcher.arrivals])) if times else 0.0,
        "visuals_per_frame": float(np.mean([v for _, _, v in watcher.arrivals])) if times else 0.0,
        "gap_p50_ms": pct(gaps, 50),
        "gap_p99_ms": pct(gaps, 99),
        "gap_max_ms": max(gaps, default=float("nan")),
        "gaps_over_100ms": float(sum(g > 100 for g in gaps)),
        "server_cpu_per_s": server_cpu / seconds,
        "server_cpu_per_frame_ms": server_cpu * 1000 / max(len(times), 1),
        "client_cpu_per_s": cpu / seconds,
    }


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live(keys: int, clients: int, rate: int, seconds: float, rounds: int) -> list[dict[str, object]]:
    """Fan-out with and without the historian, alternately (bench/fanout.py's machinery, its rows as they are)."""
    from bench import fanout

    rows = []
    for i in range(rounds):
        for history in (False, True):
            row = fanout.run_config("twin", keys, clients, rate, seconds, seed=i + 1, history=history)
            row["history"] = history
            rows.append(row)
            print(f"live fan-out, historian {'on' if history else 'off'}: {_live_line(row)}", flush=True)
    return rows


def _live_line(row: dict[str, object]) -> str:
    if row["status"] != "ok":
        return f"failed: {row.get('error')}"
    historian, accepted = row.get("historian_thread_cpu_s"), row.get("accepted")
    writer = ""
    if isinstance(historian, float) and isinstance(accepted, int) and accepted:
        per = historian / accepted
        writer = f", historian thread {historian:.2f} s for {accepted} readings ({per * 1e6:.1f} µs each: "
        writer += f"{per * 10_000:.2f} of a core at 10 000/s)"
    return (
        f"staleness p50 {row['staleness_p50_ms']:.1f} / p99 {row['staleness_p99_ms']:.1f} ms, reached "
        f"{row['reached_pct']:.1f} %, server CPU {row['server_cpu_s']:.2f} s ({row['server_core_share']:.0%}){writer}, "
        f"load {row['load_before']} → {row['load_avg_1m']}, nice {row['nice_server']}, {row['client_procs']} client "
        f"processes (max {row['client_core_share_max']:.0%} of a core); {row['bottleneck']}"
    )


def alarms(folder: Path, events: int = 100_000) -> dict[str, float]:
    t0 = 1_800_000_000.0
    end = t0 + events * 6
    h = Historian(folder / "alarms", clock=lambda: end)
    for i in range(events):
        state: p.AlarmState = "unacknowledged" if i % 2 == 0 else "normal"
        alarm = p.Alarm(f"rules[{i % 1000}]", f"e{i % 1000}", since=t0 + i * 6, severity="alarm", state=state)
        kind = "alarm_raised" if state != "normal" else "alarm_cleared"
        h.record(p.Event(i, kind, alarm.id, alarm.element, t0 + i * 6, alarm=alarm))
    h.flush()
    out: dict[str, float] = {"events": float(events)}

    def measure(label: str) -> None:
        for share in (0.01, 0.5, 0.99):
            wall, cpu = [], []
            for _ in range(5):
                timed(lambda share=share: h.alarms_at(t0 + share * events * 6), wall, cpu)
            out[f"{label}_{share:g}_ms"], out[f"{label}_{share:g}_cpu_ms"] = pct(wall, 50), pct(cpu, 50)

    measure("scan")  # no checkpoint yet: every transition before t grouped by alarm
    for hour in range(int(t0 // HOUR), int(end // HOUR) + 1):  # the server's upkeep, every hour of the week
        h.checkpoint_alarms(hour * HOUR + SEAL_GRACE_S + 1)
    out["checkpoints"] = float(
        len(list(sqlite3.connect(folder / "alarms" / "history.sqlite").execute("SELECT t FROM alarm_books")))
    )
    measure("at")
    h.close()
    return out


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="twinview-history-") as tmp:
        if args.only in (None, "kill9"):
            runs = []
            rng = random.Random(11)
            for i in range(args.runs):
                runs.append(await kill9_run(Path(tmp) / f"kill{i}", rng))
                print(f"kill -9 run {i + 1}: {runs[-1]}", flush=True)
            out["kill9"] = runs
        if args.only in (None, "query"):
            out["query"] = queries(Path(tmp) / "query", args.keys, args.hours, args.step)
        if args.only in (None, "seek"):
            out["seek"] = await seek_served(Path(tmp), args.keys, args.hours, args.step)
        if args.only in (None, "ingest") and args.engine == "postgresql":
            with postgres_server() as pg:
                out["ingest"] = ingest(Path(tmp), args.rate, args.seconds, pg.url(pg.create_database()))
        elif args.only in (None, "ingest"):
            out["ingest"] = ingest(Path(tmp), args.rate, args.seconds)
        if args.only in (None, "playback"):
            out["playback"] = await playback(Path(tmp), args.minutes, args.seconds)
        if args.only in (None, "live"):
            out["live"] = live(args.live_keys, args.clients, args.rate, args.seconds, args.rounds)
        if args.only in (None, "alarms"):
            out["alarms"] = alarms(Path(tmp))
        if args.only in (None, "storage"):
            out["storage"] = storage(Path(tmp) / "storage")
    out["load_after"] = os.getloadavg()
    return out


def _part(result: dict[str, object], name: str) -> dict | None:
    """The results of the benchmark's part `name`, if it ran."""
    part = result.get(name)
    assert part is None or isinstance(part, dict)
    return part


def table(result: dict[str, object]) -> str:
    lines = [f"load {result['load_before']} → {result['load_after']}, {result['cpus']} CPUs", ""]
    if "kill9" in result:
        runs = result["kill9"]
        assert isinstance(runs, list)
        lines += ["| run | acknowledged | lost after kill -9 |", "|---|---|---|"]
        lines += [f"| {i + 1} | {r['acked']} | {r['lost']} |" for i, r in enumerate(runs)]
        lines.append("")
    if (q := _part(result, "query")) is not None:
        lines += [
            f"{q['keys']} keys, {q['samples']} samples (built in {q['build_s']:.0f} s)",
            "",
            "| query | wall p50 ms | wall p95 ms | CPU p50 ms |",
            "|---|---|---|---|",
            f"| seek: every key's value at t (historian) | {q['seek_p50_ms']:.1f} | {q['seek_p95_ms']:.1f} "
            f"| {q['seek_cpu_p50_ms']:.1f} |",
            f"| seek: naive, an indexed query per key on (key, ts, value) | {q['naive_p50_ms']:.1f} "
            f"| {q['naive_p95_ms']:.1f} | {q['naive_cpu_p50_ms']:.1f} |",
            f"| chart: one key, one hour, 600 points | {q['chart_1h_p50_ms']:.1f} | {q['chart_1h_p95_ms']:.1f} "
            f"| {q['chart_1h_cpu_p50_ms']:.1f} |",
            f"| chart: one key, whole range, 600 points | {q['chart_all_p50_ms']:.1f} | {q['chart_all_p95_ms']:.1f} "
            f"| {q['chart_all_cpu_p50_ms']:.1f} |",
            "",
            f"Parquet chunks: {q['parquet_bytes_per_sample']:.2f} bytes/sample; plain SQLite table with index: "
            f"{q['plain_sqlite_bytes_per_sample']:.2f} bytes/sample; history.sqlite (minute aggregates + tail): "
            f"{q['minutes_and_tail_bytes'] / 1e6:.1f} MB",
        ]
    if (sk := _part(result, "seek")) is not None:
        lines += [
            "",
            f"seek over the protocol, {sk['keys']:.0f} elements with a colour ramp each, {sk['samples']:.0f} samples "
            f"(built in {sk['build_s']:.0f} s): p50 {sk['p50_ms']:.0f} ms, p95 {sk['p95_ms']:.0f} ms, max "
            f"{sk['max_ms']:.0f} ms; server CPU p50 {sk['server_cpu_p50_ms']:.0f} ms, p95 "
            f"{sk['server_cpu_p95_ms']:.0f} ms per seek (in process: values {sk['values_cpu_ms']:.0f} ms, the whole "
            f"twin {sk['twin_cpu_ms']:.0f} ms, encoding {sk['encode_cpu_ms']:.1f} ms); naive per-key query on a "
            f"plain SQLite table, values only: p50 {sk['naive_p50_ms']:.0f} ms, p95 {sk['naive_p95_ms']:.0f} ms, "
            f"CPU p50 {sk['naive_cpu_p50_ms']:.0f} ms",
        ]
    if (g := _part(result, "ingest")) is not None:
        lines += [
            "",
            f"ingest: {g['readings']:.0f} readings in {g['wall_s']:.1f} s, {g['cpu_s']:.1f} s CPU: "
            f"{g['core_share']:.2f} of a core; ack (group commit) p50 {g['ack_p50_ms']:.1f} ms, "
            f"p99 {g['ack_p99_ms']:.1f} ms; {g['bytes_per_sample']:.0f} bytes per sample stored",
        ]
    if (pb := _part(result, "playback")) is not None:
        lines += [
            "",
            f"playback at 60× over 1 000 properties, at the viewer: {pb['frames']:.0f} frames "
            f"({pb['frames_per_s']:.1f}/s), {pb['props_per_frame']:.0f} properties and {pb['visuals_per_frame']:.0f} "
            f"visuals per frame; gaps p50 {pb['gap_p50_ms']:.1f} ms, p99 {pb['gap_p99_ms']:.1f} ms, max "
            f"{pb['gap_max_ms']:.1f} ms, {pb['gaps_over_100ms']:.0f} over 100 ms; server CPU "
            f"{pb['server_cpu_per_s']:.2f} s/s ({pb['server_cpu_per_frame_ms']:.1f} ms per frame), viewer "
            f"{pb['client_cpu_per_s']:.2f} s/s",
        ]
    if "live" in result:
        rows = result["live"]
        assert isinstance(rows, list)
        lines += [""] + [f"- historian {'on' if r['history'] else 'off'}: {_live_line(r)}" for r in rows]
    if (al := _part(result, "alarms")) is not None:
        lines += [
            "",
            f"alarms_at over {al['events']:.0f} alarm events, median wall / CPU ms (without checkpoints → with "
            f"{al['checkpoints']:.0f}): 1 % in {al['scan_0.01_ms']:.1f} / {al['scan_0.01_cpu_ms']:.1f} → "
            f"{al['at_0.01_ms']:.1f} / {al['at_0.01_cpu_ms']:.1f}, half-way {al['scan_0.5_ms']:.1f} / "
            f"{al['scan_0.5_cpu_ms']:.1f} → {al['at_0.5_ms']:.1f} / {al['at_0.5_cpu_ms']:.1f}, 99 % in "
            f"{al['scan_0.99_ms']:.1f} / {al['scan_0.99_cpu_ms']:.1f} → {al['at_0.99_ms']:.1f} / "
            f"{al['at_0.99_cpu_ms']:.1f}",
        ]
    if (stores := _part(result, "storage")) is not None:
        lines += [
            "",
            "| signal | samples | historian chunks | + SQLite tail after sealing (minute aggregates, indexes) "
            "| chunks as before (by time, zstd 1) | plain SQLite + index | pandas Parquet+zstd "
            "| sealing CPU µs/sample |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {s['samples']:.0f} | {s['historian']:.2f} | {s['tail_in_use']:.2f} "
            f"| {s['time_sorted_zstd1']:.2f} "
            f"| {s['plain_sqlite']:.2f} | {s['pandas_parquet_zstd']:.2f} | {s['seal_cpu_us_per_sample']:.2f} |"
            for name, s in stores.items()
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["kill9", "query", "seek", "storage", "ingest", "playback", "live", "alarms"])
    parser.add_argument("--runs", type=int, default=5, help="kill -9 repetitions")
    parser.add_argument("--keys", type=int, default=KEYS, help="properties in the query history")
    parser.add_argument("--hours", type=int, default=HOURS, help="hours of history (the older ones sealed)")
    parser.add_argument("--step", type=float, default=STEP_S, help="seconds between two samples of a key")
    parser.add_argument("--rate", type=int, default=10_000, help="readings per second for ingest")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite", help="the history of ingest")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long ingest and playback run")
    parser.add_argument("--live-keys", type=int, default=10_000, help="properties in the live fan-out run")
    parser.add_argument("--clients", type=int, default=100, help="viewers in the live fan-out run")
    parser.add_argument("--rounds", type=int, default=2, help="live fan-out runs without / with the historian")
    parser.add_argument("--minutes", type=int, default=20, help="minutes of 1 Hz history for playback")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    text = table(result)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "history.md").write_text(text)
    (RESULTS / "history.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
