"""Fan-out benchmark: a process holding many raw WebSocket clients of one system.

Run by bench/fanout.py, not by hand. Talks to the orchestrator in JSON lines: it prints
`{"synced": ...}` once every client holds the seed state of all K elements, then waits for
`{"stop_at": t}` on stdin, closes its clients at monotonic time t, writes their logs (.npz) and prints
`{"done": ...}`. It also stops by itself after --max-seconds.

Every frame is decoded in full as it arrives, as a browser does: TwinView's JSON or MessagePack frame
into plain objects, viser's zstd window into its msgpack messages, and every value is applied to a
state map (`TwinState`, `ViserState`); a value counts as held at the moment its frame has been applied.
Nothing is skipped, cached across clients or deferred: what that costs the client processes is part
of the measurement, and the orchestrator reports it (client CPU, kernel receive queues).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import websockets

try:  # optional: a faster event loop for the many-client side
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

SUBPROTOCOL = {"msgpack": "twinview.v1.msgpack", "json": "twinview.v1"}


def say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


class TwinState:
    """What a browser's store holds for one TwinView connection, from fully decoded frames."""

    def __init__(self, encoding: str) -> None:
        self.decode: Callable[[Any], Any] = msgspec.msgpack.decode if encoding == "msgpack" else msgspec.json.decode
        self.props: dict[str, dict[str, Any]] = {}
        self.visuals: dict[str, Any] = {}
        self.presence: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.seq = 0
        self.errors: list[str] = []

    def apply(self, raw: bytes | str) -> list[tuple[str, Any]]:
        """Decode one frame and apply it; returns the (key, value) of every property it set."""
        msg = self.decode(raw)
        kind = msg.get("type")
        if kind == "delta":
            props = msg.get("props") or {}
            self.props.update(props)
            self.visuals.update(msg.get("visuals") or {})
            self.presence.update(msg.get("presence") or {})
            self.events.extend(msg.get("events") or [])
            self.seq = msg["last"]
        elif kind == "snapshot":
            props = msg.get("props") or {}
            self.props = dict(props)
            self.visuals = dict(msg.get("visuals") or {})
            self.presence = dict(msg.get("presence") or {})
            self.seq = msg["seq"]
        else:
            if kind == "error":
                self.errors.append(f"{msg.get('code')}: {msg.get('message')}")
            return []
        return [(key, state["v"]) for key, state in props.items()]


class ViserState:
    """What viser's browser client holds: every scene node's latest message of each kind."""

    def __init__(self) -> None:
        import zstandard

        self.unzip = zstandard.ZstdDecompressor()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    def apply(self, raw: bytes) -> list[tuple[str, Any]]:
        """Decompress and decode one window (8-byte size, 8-byte compressed size, zstd msgpack) and apply
        each message; returns the (node, x) of every position it set."""
        size = int.from_bytes(raw[:8], "little")
        packed = int.from_bytes(raw[8:16], "little")
        window = msgspec.msgpack.decode(self.unzip.decompress(raw[16 : 16 + packed], max_output_size=size))
        out = []
        for message in window["messages"]:
            name = message.get("name")
            if name is None:
                continue
            self.nodes.setdefault(name, {})[message["type"]] = message
            if message["type"] == "SetPositionMessage":
                out.append((name, message["position"][0]))
        return out


class Recorder:
    """What one client saw: (element, counter, time it was held) per value, and each frame's arrival."""

    __slots__ = ("counters", "elems", "frame_times", "held_seed", "record", "seeded_at", "times")

    def __init__(self, k: int, record: bool) -> None:
        self.elems = array("i")
        self.counters = array("q")
        self.times = array("d")
        self.frame_times = array("d")
        self.record = record
        self.held_seed = bytearray(k)  # 1 once the element has any value
        self.seeded_at: float | None = None


class Client:
    def __init__(self, system: str, url: str, k: int, record: bool, names: dict[str, int], encoding: str) -> None:
        self.system = system
        self.url = url
        self.k = k
        self.encoding = encoding
        self.rec = Recorder(k, record)
        self.state: TwinState | ViserState = ViserState() if system == "viser" else TwinState(encoding)
        self.names = names
        self.missing = k
        self.synced = asyncio.Event()
        self.opened_at: float | None = None
        self.errors: list[str] = []

    async def run(self, stop: asyncio.Event) -> None:
        if self.system == "viser":
            import viser  # only for its version string, which is its subprotocol

            sub = [f"viser-v{viser.__version__}"]
        else:
            sub = [SUBPROTOCOL[self.encoding]]
        async with websockets.connect(
            self.url,
            subprotocols=sub,  # type: ignore[arg-type]
            max_size=None,
            compression=None,
            open_timeout=120,
            close_timeout=1,
            ping_interval=None,
        ) as ws:
            self.opened_at = time.monotonic()
            if self.system == "twin":
                hello = {
                    "type": "hello",
                    "client": "bench-fanout",
                    "client_version": "0.1.0",
                    "protocol": 1,
                    "role": "viewer",
                    "layer": None,
                    "resume": None,
                }
                await ws.send(msgspec.msgpack.encode(hello) if self.encoding == "msgpack" else json.dumps(hello))
            reader = asyncio.ensure_future(self._receive(ws))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            stopper.cancel()
            if reader.done() and not reader.cancelled() and reader.exception():
                self.errors.append(repr(reader.exception()))

    async def _receive(self, ws: Any) -> None:
        rec = self.rec
        names = self.names
        apply = self.state.apply
        mono = time.monotonic
        async for raw in ws:
            rec.frame_times.append(mono())
            applied = apply(raw)
            held = mono()  # the values are in the state map from now on
            for key, value in applied:
                idx = names.get(key)
                if idx is None:
                    continue
                if self.missing and not rec.held_seed[idx]:
                    rec.held_seed[idx] = 1
                    self.missing -= 1
                    if not self.missing:
                        rec.seeded_at = held
                        self.synced.set()
                if rec.record:
                    rec.elems.append(idx)
                    rec.counters.append(int(value))
                    rec.times.append(held)
            if self.state.errors:
                self.errors += self.state.errors
                self.state.errors.clear()


def element_names(system: str, k: int) -> dict[str, int]:
    """The wire name of element i: viser scene node path, or TwinView "element/prop" key."""
    if system == "viser":
        return {f"/e{i}": i for i in range(k)}
    return {f"e{i}/v": i for i in range(k)}


async def _read_stdin_line(loop: asyncio.AbstractEventLoop) -> str:
    return await loop.run_in_executor(None, sys.stdin.readline)


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    names = element_names(args.system, args.k)
    deadline = time.monotonic() + args.max_seconds

    if args.late_join:
        # One client at a time on an otherwise quiet server: WebSocket open -> full current state.
        results = []
        for _ in range(args.late_join):
            c = Client(args.system, args.url, args.k, False, names, args.encoding)
            stop = asyncio.Event()
            task = asyncio.ensure_future(c.run(stop))
            try:
                await asyncio.wait_for(c.synced.wait(), timeout=60)
                results.append((c.rec.seeded_at - c.opened_at) * 1e3)
            except TimeoutError:
                results.append(float("inf"))
            stop.set()
            await task
        say(late_join_ms=results)
        return

    clients = [Client(args.system, args.url, args.k, not args.idle, names, args.encoding) for _ in range(args.n)]
    stop = asyncio.Event()
    tasks: list[asyncio.Future] = []
    sync_deadline = min(deadline, time.monotonic() + args.sync_timeout)

    async def synced_or_dead(c: Client, task: asyncio.Future) -> None:
        waiter = asyncio.ensure_future(c.synced.wait())
        await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:
            c.errors.append(f"connection failed: {task.exception()!r}")

    # Connect in waves of --wave clients (each wave waits until the previous one holds the state),
    # so the server is never hit by N handshakes and N full replays at once.
    synced = True
    for lo in range(0, len(clients), args.wave):
        wave = clients[lo : lo + args.wave]
        new = [asyncio.ensure_future(c.run(stop)) for c in wave]
        tasks += new
        try:
            await asyncio.wait_for(
                asyncio.gather(*(synced_or_dead(c, t) for c, t in zip(wave, new, strict=True))),
                timeout=max(0.1, sync_deadline - time.monotonic()),
            )
        except TimeoutError:
            synced = False
            break
    synced = synced and all(c.synced.is_set() for c in clients)
    say(
        synced=synced,
        n=len(clients),
        n_synced=sum(c.synced.is_set() for c in clients),
        sync_ms=[
            round((c.rec.seeded_at - c.opened_at) * 1e3, 2)
            for c in clients
            if c.rec.seeded_at is not None and c.opened_at is not None
        ],
        errors=[e for c in clients for e in c.errors][:5],
    )

    # Wait for {"stop_at": t} (or EOF / our own deadline).
    stop_at = deadline
    line_task = asyncio.ensure_future(_read_stdin_line(loop))
    done, _ = await asyncio.wait([line_task], timeout=max(0.0, deadline - time.monotonic()))
    if line_task in done:
        line = line_task.result().strip()
        if line:
            stop_at = min(deadline, float(json.loads(line).get("stop_at", deadline)))
    await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)

    if args.out:
        lens = [len(c.rec.elems) for c in clients]
        flens = [len(c.rec.frame_times) for c in clients]
        np.savez(
            args.out,
            elems=np.concatenate([np.frombuffer(c.rec.elems, dtype=np.int32) for c in clients])
            if clients
            else np.zeros(0, np.int32),
            counters=np.concatenate([np.frombuffer(c.rec.counters, dtype=np.int64) for c in clients])
            if clients
            else np.zeros(0, np.int64),
            times=np.concatenate([np.frombuffer(c.rec.times, dtype=np.float64) for c in clients])
            if clients
            else np.zeros(0),
            frame_times=np.concatenate([np.frombuffer(c.rec.frame_times, dtype=np.float64) for c in clients])
            if clients
            else np.zeros(0),
            lens=np.array(lens, dtype=np.int64),
            flens=np.array(flens, dtype=np.int64),
        )
    say(done=True, errors=[e for c in clients for e in c.errors][:5])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", choices=["viser", "twin"], required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--encoding", choices=sorted(SUBPROTOCOL), default="msgpack", help="TwinView's subprotocol")
    ap.add_argument("--out", default=None)
    ap.add_argument("--idle", action="store_true", help="do not record values (memory test)")
    ap.add_argument("--wave", type=int, default=10, help="clients connected at a time")
    ap.add_argument("--late-join", type=int, default=0, help="measure N sequential late joins, then exit")
    ap.add_argument("--sync-timeout", type=float, default=120.0)
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args(argv)
    if uvloop is not None:
        uvloop.run(main_async(args))
    else:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
