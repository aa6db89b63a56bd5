"""Store benchmark: collaboration commits on SQLite and on PostgreSQL.

    python -m bench.store                     # 1 000 commits per run, 1 and 16 in flight
    python -m bench.store --commits 200       # quick

What an annotation writes: a topic (a new row, `put_topic(expected=0)`) and its audit row, through
`Store.run`, whose future resolves after the COMMIT. With 1 in flight: the latency of one acknowledged
change (p50 / p99 from submit to the resolved future). With W in flight (W writers, each waiting for its own
commit before the next): commits per second, as the writer thread groups what is queued into one
transaction per wake-up.

SQLite: the data dir's file (WAL, synchronous=NORMAL: no fsync per commit). PostgreSQL: Debian's 15 started
like the tests (tests/postgres_server.py; fsync off, synchronous_commit on: no fsync per commit either), over
TCP on 127.0.0.1 with scram authentication. Results: a markdown table on stdout and in bench/results/store.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.postgres_server import postgres_server
from viewer_server.store import AuditEntry, Store, put_audit, put_topic
from viewer_server.store_db import Db
from viewer_server.topics import Topic

RESULTS = Path(__file__).parent / "results" / "store.md"
GUIDS = itertools.count()


def _write(n: int) -> Callable[[Db], None]:
    topic = Topic(
        guid=f"topic-{n:07d}", title=f"Finding {n}: check the flange bolts", author="ana", created=time.time()
    )
    entry = AuditEntry("bench", time.time(), "ana", "annotator", "topic.create", topic.guid)

    def write(db: Db) -> None:
        put_topic(db, "bench", topic, expected=0)
        put_audit(db, entry)

    return write


async def _run(store: Store, commits: int, in_flight: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, commits/s) of `commits` commits, `in_flight` writers at a time."""
    latencies: list[float] = []
    counter = iter(range(commits))

    async def writer() -> None:
        for _ in counter:
            started = time.perf_counter()
            await store.run(_write(next(GUIDS)))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), commits / elapsed


async def _bench(location: str | None, data_dir: Path, commits: int, in_flights: list[int]) -> list[str]:
    store = Store(data_dir, location)
    rows = []
    try:
        await _run(store, min(100, commits), 1)  # warm up: connections, pages, plans
        for in_flight in in_flights:
            p50, p99, rate = await _run(store, commits, in_flight)
            rows.append(f"| {store.backend} | {in_flight} | {p50:.2f} | {p99:.2f} | {rate:,.0f} |")
    finally:
        store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 16])
    args = ap.parse_args()
    rows = ["| store | in flight | p50 ms | p99 ms | commits/s |", "|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        rows += asyncio.run(_bench(None, Path(tmp) / "sqlite", args.commits, args.in_flight))
        with postgres_server() as pg:
            url = pg.url(pg.create_database())
            rows += asyncio.run(_bench(url, Path(tmp) / "pg", args.commits, args.in_flight))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = "\n".join(rows) + f"\n\n{args.commits} commits per row; load average before the run ended: {load}\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
