"""The shared bus's cost in staleness: a reading's trip through Redis between processes, against one process.

    python -m bench.shared_bus                     # 600 readings at 50/s per setup
    python -m bench.shared_bus --readings 200      # quick

Three setups, each with real `twinview serve` processes on 127.0.0.1 and a redis-server (append-only,
fsync every second) on a free port:
  1. one process, the in-process bus: published and watched on it;
  2. two processes on one Redis (`--bus`), published at the follower, watched at the leader;
  3. the same, published at the leader, watched at the follower.
A publisher client sends one reading at a time with its source time `ts` = now; a viewer client records when
the delta carrying it arrives. Staleness = arrival − ts, p50 / p99 / max in ms. Both clients run in this process
(one event loop). The difference between 1 and 2/3 is what the bus adds: the inbox append, the leader's read,
its flush window, the fenced append, and the mirror's read. Results: a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.live_server import write_bindings, write_scene
from tests.mosquitto import free_port, wait_for_port
from tests.test_restart_durability import _ready
from viewer_server import protocol as p
from viewer_server.client import TwinClient
from viewer_server.scenes import scene_id_for

TWINVIEW = Path(sys.executable).with_name("twinview")
KEY, PROP = "LT-1.level", "LT-1/level"


@contextlib.contextmanager
def process(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def staleness(publish_at: str, watch_at: str, readings: int, rate: float) -> list[float]:
    """ms from each reading's `ts` to the delta carrying it at the viewer (coalesced ones are not counted)."""
    arrived: dict[float, float] = {}
    async with TwinClient(watch_at) as viewer, TwinClient(publish_at, role="publisher") as gw:

        async def watch() -> None:
            async for msg in viewer:
                if isinstance(msg, p.Delta) and PROP in msg.props:
                    arrived[float(msg.props[PROP].v)] = time.time()

        watching = asyncio.create_task(watch())
        sent: dict[float, float] = {}
        for i in range(readings):
            sent[float(i)] = time.time()
            await gw.publish([p.Reading(float(i), key=KEY, ts=sent[float(i)])])
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(1.0)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    return sorted((arrived[v] - t) * 1000 for v, t in sent.items() if v in arrived)


def row(name: str, ms: list[float], sent: int) -> str:
    p50, p99 = ms[len(ms) // 2], ms[max(0, int(len(ms) * 0.99) - 1)]
    return f"| {name} | {len(ms)} / {sent} | {p50:.1f} | {p99:.1f} | {ms[-1]:.1f} |"


async def main(readings: int, rate: float) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        scene, bindings = write_scene(root), write_bindings(root)
        sid = scene_id_for(scene)
        redis_port = free_port()
        stack.enter_context(
            process([redis_server, "--port", str(redis_port), "--save", "", "--appendonly", "yes", "--dir", tmp])
        )
        wait_for_port(redis_port)

        async def serve(data: str, *extra: str) -> str:
            port = free_port()
            args = [str(TWINVIEW), "serve", str(scene), "--bindings", str(bindings), "--port", str(port)]
            stack.enter_context(process([*args, "--data-dir", str(root / data), *extra]))
            await _ready(f"http://127.0.0.1:{port}")
            return f"ws://127.0.0.1:{port}/ws/{sid}"

        alone = await serve("alone")
        leader = await serve("shared", "--bus", f"redis://127.0.0.1:{redis_port}")  # the first one leads
        follower = await serve("shared", "--bus", f"redis://127.0.0.1:{redis_port}")
        print(f"{readings} readings at {rate:g}/s per setup; load average {os.getloadavg()[0]:.1f} at the start\n")
        print("| setup | deltas seen / readings | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
        for name, pub, watch in [
            ("one process, in-process bus", alone, alone),
            ("two processes on Redis: published at the follower, seen at the leader", follower, leader),
            ("two processes on Redis: published at the leader, seen at the follower", leader, follower),
        ]:
            print(row(name, await staleness(pub, watch, readings, rate), readings), flush=True)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=600)
    ap.add_argument("--rate", type=float, default=50.0, help="readings per second")
    args = ap.parse_args()
    asyncio.run(main(args.readings, args.rate))
