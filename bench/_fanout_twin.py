"""Fan-out benchmark, TwinView side: a generated K-element scene, the server, and a publisher.

Run by bench/fanout.py, not by hand. Element i is "e{i}" with one numeric property "v", bound to the
ingest key "k{i}". Telemetry arrives the way a real gateway sends it: a WebSocket session with role
`publisher` sending `publish` batches (docs/PROTOCOL.md), each reading stamped with its source time
`ts`. The issue time of an update is taken at that same moment, just before the batch that carries it
is encoded and written to the socket, so its staleness includes the hop into the server, its decoding
and validation.

Subcommands (JSON lines on stdout, commands on stdin):
- `serve`: `viewer_server.serve.serve(...)` in this process (`--no-history`: without the historian; `--bus`:
  one of several processes on a Redis, bench/scaleout.py); prints
  `{"ready": port, "historian_tid": id}` once it listens (the historian's writer thread, for its CPU time; null
  without one); stops on `{"quit": true}` or EOF.
- `drive`: connects as a publisher, seeds every element with counter 1 (and waits for the acks), prints
  `{"ready": true}`; `{"go": t0, "rate", "duration", "seed", "log"}` publishes the schedule from
  monotonic t0 (one batch per tick, its readings prebuilt, stamped with `ts` and encoded at issue),
  writes the issue times to `log` (.npz) and prints `{"done": ..., "rejected": n}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import socket
import sys
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import websockets

from bench._fanout_stats import SEED_COUNTER, make_schedule

PUBLISH_CHUNK = 2000  # readings per publish frame when seeding (the protocol allows 5000)


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_scene(scene_dir: Path, bindings_path: Path, k: int) -> None:
    """A manifest with K elements (no geometry needed for state fan-out) and a bindings file binding
    key "k{i}" to e{i}.v, with one layer and no rules (so the only change per update is the prop)."""
    scene_dir.mkdir(parents=True, exist_ok=True)
    elements = [
        {
            "id": f"e{i}",
            "name": f"Element {i}",
            "class": "Sensor",
            "parent": None,
            "bbox": None,
            "triangles": 0,
            "properties": {},
        }
        for i in range(k)
    ]
    manifest = {
        "format": "twinview-manifest",
        "version": 1,
        "units": "m",
        "up_axis": "Y",
        "inputs": [],
        "stats": {},
        "warnings": [],
        "elements": elements,
    }
    (scene_dir / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    (scene_dir / "scene.glb").write_bytes(_empty_glb())
    bindings = {
        "version": 1,
        "default_layer": "ops",
        "bindings": [{"element": f"e{i}", "prop": "v", "key": f"k{i}"} for i in range(k)],
        "layers": {"ops": {"title": "Operations", "rules": []}},
    }
    bindings_path.write_bytes(msgspec.json.encode(bindings))


def _empty_glb() -> bytes:
    body = b'{"asset":{"version":"2.0"},"scenes":[{"nodes":[]}],"scene":0}'
    body += b" " * (-len(body) % 4)
    total = 12 + 8 + len(body)
    return (
        b"glTF"
        + (2).to_bytes(4, "little")
        + total.to_bytes(4, "little")
        + len(body).to_bytes(4, "little")
        + b"JSON"
        + body
    )


# --- serve -------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    from viewer_server.serve import ServeOptions, serve

    ready = asyncio.Event()
    task = asyncio.create_task(
        serve(
            ServeOptions(
                scene_dir=Path(args.scene_dir),
                bindings=Path(args.bindings),
                mqtt_url=None,
                host="127.0.0.1",
                port=args.port,
                data_dir=Path(args.data_dir),
                simulate=False,
                history=not args.no_history,
                bus_url=args.bus,
            ),
            ready=ready,
        )
    )
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises the start-up error
    writer = next((t for t in threading.enumerate() if t.name == "twinview-historian"), None)
    say(ready=args.port, historian_tid=writer.native_id if writer is not None else None)
    loop = asyncio.get_running_loop()
    stalls: list[tuple[float, float]] = []

    async def loop_lag() -> None:
        """Record every moment the server's event loop was blocked for more than 20 ms."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.005)
            late = time.monotonic() - t - 0.005
            if late > 0.020:
                stalls.append((t, late))

    probe = asyncio.create_task(loop_lag())
    # Full (generation 2) garbage collections, timed: a candidate cause of loop stalls.
    gc_runs: list[tuple[float, float]] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if info.get("generation") == 2:
            if phase == "start":
                gc_start[0] = time.monotonic()
            else:
                gc_runs.append((gc_start[0], time.monotonic() - gc_start[0]))

    gc.callbacks.append(on_gc)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd = json.loads(line) if line.strip() else {}
        if not line or cmd.get("quit"):
            break
        if cmd.get("gc_freeze"):  # experiment (--gc-freeze): what a freeze after load would buy
            gc.collect()
            gc.freeze()
    probe.cancel()
    say(loop_stalls=stalls[-2000:], gc_full=gc_runs[-2000:])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --- drive -------------------------------------------------------------------------------------------


def _publish(readings: list[dict], ref: str) -> bytes:
    return msgspec.msgpack.encode({"type": "publish", "readings": readings, "ref": ref})


async def _drive(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    async with websockets.connect(
        args.url,
        subprotocols=["twinview.v1.msgpack"],
        max_size=None,
        compression=None,
        ping_interval=None,
        close_timeout=1,
    ) as ws:
        await ws.send(
            msgspec.msgpack.encode(
                {
                    "type": "hello",
                    "client": "bench-fanout-publisher",
                    "client_version": "0.1.0",
                    "protocol": 1,
                    "role": "publisher",
                    "layer": None,
                    "resume": None,
                }
            )
        )
        stats = {"accepted": 0, "rejected": 0, "acks": 0, "errors": []}
        acked = asyncio.Condition()

        async def read() -> None:
            async for raw in ws:
                msg = msgspec.msgpack.decode(raw)
                if msg.get("type") == "ack":
                    stats["accepted"] += msg.get("accepted", 0)
                    stats["rejected"] += len(msg.get("rejected", []))
                    if msg.get("rejected") and len(stats["errors"]) < 5:
                        stats["errors"].append(msg["rejected"][0])
                    async with acked:
                        stats["acks"] += 1
                        acked.notify_all()
                elif msg.get("type") == "error" and len(stats["errors"]) < 5:
                    stats["errors"].append(msg)

        reader = asyncio.create_task(read())

        # Seed: every element at SEED_COUNTER, before any viewer connects.
        frames = [
            _publish(
                [{"key": f"k{i}", "value": float(SEED_COUNTER)} for i in range(lo, min(lo + PUBLISH_CHUNK, args.k))],
                "seed",
            )
            for lo in range(0, args.k, PUBLISH_CHUNK)
        ]
        for f in frames:
            await ws.send(f)
        async with acked:
            await asyncio.wait_for(acked.wait_for(lambda: stats["acks"] >= len(frames)), 60)
        if stats["accepted"] < args.k:
            say(error=f"seeding: only {stats['accepted']}/{args.k} readings accepted: {stats['errors']}")
            return
        say(ready=True)

        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            if cmd.get("quit"):
                break
            if "go" not in cmd:
                continue
            sched = make_schedule(args.k, cmd["rate"], cmd["duration"], cmd.get("seed", 1))
            per = sched.per_tick
            elems = sched.elems.tolist()
            counters = sched.counters.astype(float).tolist()
            batches = [
                [{"key": f"k{elems[j]}", "value": counters[j], "ts": 0.0} for j in range(t * per, (t + 1) * per)]
                for t in range(sched.n_ticks)
            ]
            base_acks, base_acc, base_rej = stats["acks"], stats["accepted"], stats["rejected"]
            issue = np.empty(sched.n)
            t0 = cmd["go"]
            mono = time.monotonic
            for t, readings in enumerate(batches):
                delay = t0 + t * sched.tick - mono()
                if delay > 0:
                    await asyncio.sleep(delay)
                # The source timestamp, as a gateway stamps its readings; staleness is measured from it.
                issue[t * per : (t + 1) * per] = mono()
                source_ts = time.time()
                for reading in readings:
                    reading["ts"] = source_ts
                await ws.send(_publish(readings, str(t)))
            want = base_acks + len(batches)
            async with acked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(acked.wait_for(lambda want=want: stats["acks"] >= want), 30)
            np.savez(cmd["log"], issue=issue)
            say(
                done=True,
                n=int(sched.n),
                seconds=float(issue[-1] - issue[0]),
                accepted=stats["accepted"] - base_acc,
                rejected=stats["rejected"] - base_rej,
                acks=stats["acks"] - base_acks,
                errors=stats["errors"][:3],
            )
        reader.cancel()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--scene-dir", required=True)
    s.add_argument("--bindings", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--bus", default=None, help="redis://HOST:PORT: one of several processes (bench/scaleout.py)")
    s.add_argument("--no-history", action="store_true", help="serve without the historian")
    d = sub.add_parser("drive")
    d.add_argument("--url", required=True)
    d.add_argument("--k", type=int, required=True)
    args = ap.parse_args(argv)
    asyncio.run(_serve(args) if args.cmd == "serve" else _drive(args))


if __name__ == "__main__":
    main()
