"""Fan-out benchmark: a process holding many raw WebSocket clients of one system.

Run by bench/fanout.py, not by hand. Talks to the orchestrator in JSON lines: it prints
`{"synced": ...}` once every client holds the seed state of all K elements, then waits for
`{"stop_at": t}` on stdin, closes its clients at monotonic time t, writes their logs (.npz) and prints
`{"done": ...}`. It also stops by itself after --max-seconds.

Decoding is deliberately thin (msgspec Structs that skip every field we do not need), so the client
side costs as little CPU as it can; what it does cost is measured by the orchestrator.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from array import array
from typing import Any

import msgspec
import numpy as np
import websockets

try:  # optional: a faster event loop for the many-client side
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


def say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


# --- viser: zstd-compressed msgpack windows of messages ------------------------------------------


class _VMsg(msgspec.Struct):
    type: str
    name: Any = None
    position: Any = None


class _VWindow(msgspec.Struct):
    messages: list[_VMsg]


# --- TwinView: msgpack frames, one message each ---------------------------------------------------


class _TProp(msgspec.Struct):
    v: Any


class _TMsg(msgspec.Struct):
    type: str
    props: dict[str, _TProp] | None = None
    code: str | None = None
    message: str | None = None


class Recorder:
    """What one client saw. Until the client holds the seed state it decodes every frame at once
    (to know when it is synced); after that it keeps the raw frames with their receive times and
    decodes them only after the run, so that decoding never delays the next read."""

    __slots__ = ("counters", "elems", "frame_times", "held_seed", "raw", "raw_times", "record", "seeded_at", "times")

    def __init__(self, k: int, record: bool) -> None:
        self.elems = array("i")
        self.counters = array("q")
        self.times = array("d")
        self.frame_times = array("d")
        self.raw: list[bytes] = []  # frames received after sync, decoded later
        self.raw_times = array("d")
        self.record = record
        self.held_seed = bytearray(k)  # 1 once the element has any value
        self.seeded_at: float | None = None


class Client:
    def __init__(self, system: str, url: str, k: int, record: bool, names: dict[str, int]) -> None:
        self.system = system
        self.url = url
        self.k = k
        self.rec = Recorder(k, record)
        self.names = names
        self.missing = k
        self.synced = asyncio.Event()
        self.opened_at: float | None = None
        self.errors: list[str] = []

    def _seed(self, idx: int, now: float) -> None:
        if not self.rec.held_seed[idx]:
            self.rec.held_seed[idx] = 1
            self.missing -= 1
            if self.missing == 0:
                self.rec.seeded_at = now
                self.synced.set()

    async def run(self, stop: asyncio.Event) -> None:
        if self.system == "viser":
            import viser  # only for its version string, which is its subprotocol

            sub = [f"viser-v{viser.__version__}"]
        else:
            sub = ["twinview.v1.msgpack"]
        async with websockets.connect(
            self.url,
            subprotocols=sub,
            max_size=None,
            compression=None,
            open_timeout=120,
            close_timeout=1,
            ping_interval=None,
        ) as ws:
            self.opened_at = time.monotonic()
            if self.system == "twin":
                await ws.send(
                    msgspec.msgpack.encode(
                        {
                            "type": "hello",
                            "client": "bench-fanout",
                            "client_version": "0.1.0",
                            "protocol": 1,
                            "role": "viewer",
                            "layer": None,
                            "resume": None,
                        }
                    )
                )
            recv = self._recv_viser if self.system == "viser" else self._recv_twin
            reader = asyncio.ensure_future(recv(ws))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([reader, stopper], return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            stopper.cancel()
            if reader.done() and not reader.cancelled() and reader.exception():
                self.errors.append(repr(reader.exception()))

    async def _recv_viser(self, ws) -> None:
        import zstandard

        dz = zstandard.ZstdDecompressor()
        dec = msgspec.msgpack.Decoder(_VWindow)
        rec = self.rec
        names = self.names
        mono = time.monotonic
        async for raw in ws:
            now = mono()
            rec.frame_times.append(now)
            if not self.missing:
                if rec.record:
                    rec.raw.append(raw)
                    rec.raw_times.append(now)
                continue
            n = int.from_bytes(raw[:8], "little")
            c = int.from_bytes(raw[8:16], "little")
            win = dec.decode(dz.decompress(raw[16 : 16 + c], max_output_size=n))
            for m in win.messages:
                if m.type == "SetPositionMessage":
                    idx = names.get(m.name)
                    if idx is None:
                        continue
                    if self.missing:
                        self._seed(idx, now)
                    if rec.record:
                        rec.elems.append(idx)
                        rec.counters.append(int(m.position[0]))
                        rec.times.append(now)

    async def _recv_twin(self, ws) -> None:
        dec = msgspec.msgpack.Decoder(_TMsg)
        rec = self.rec
        names = self.names
        mono = time.monotonic
        async for raw in ws:
            now = mono()
            rec.frame_times.append(now)
            if not self.missing:
                if rec.record:
                    rec.raw.append(raw)
                    rec.raw_times.append(now)
                continue
            msg = dec.decode(raw)
            if msg.props:
                for key, p in msg.props.items():
                    idx = names.get(key)
                    if idx is None:
                        continue
                    if self.missing:
                        self._seed(idx, now)
                    if rec.record:
                        rec.elems.append(idx)
                        rec.counters.append(int(p.v))
                        rec.times.append(now)
            elif msg.type == "error":
                self.errors.append(f"{msg.code}: {msg.message}")


def decode_later(clients: list[Client], system: str) -> None:
    """Decode the frames kept raw during the run into (element, counter, time) entries. TwinView sends
    the same bytes to every client that keeps up, so decoded frames are cached by content."""
    cache: dict[bytes, tuple[list[int], list[int]]] = {}
    vdec = msgspec.msgpack.Decoder(_VWindow)
    tdec = msgspec.msgpack.Decoder(_TMsg)
    if system == "viser":
        import zstandard

        dz = zstandard.ZstdDecompressor()
    for c in clients:
        rec, names = c.rec, c.names
        for raw, now in zip(rec.raw, rec.raw_times, strict=True):
            hit = cache.get(raw)
            if hit is None:
                idxs: list[int] = []
                vals: list[int] = []
                if system == "viser":
                    n = int.from_bytes(raw[:8], "little")
                    m = int.from_bytes(raw[8:16], "little")
                    for msg in vdec.decode(dz.decompress(raw[16 : 16 + m], max_output_size=n)).messages:
                        if msg.type == "SetPositionMessage":
                            idx = names.get(msg.name)
                            if idx is not None:
                                idxs.append(idx)
                                vals.append(int(msg.position[0]))
                else:
                    msg = tdec.decode(raw)
                    if msg.props:
                        for key, p in msg.props.items():
                            idx = names.get(key)
                            if idx is not None:
                                idxs.append(idx)
                                vals.append(int(p.v))
                    elif msg.type == "error":
                        c.errors.append(f"{msg.code}: {msg.message}")
                hit = (idxs, vals)
                if system == "twin":
                    cache[raw] = hit
            rec.elems.extend(hit[0])
            rec.counters.extend(hit[1])
            rec.times.extend([now] * len(hit[0]))
        rec.raw.clear()


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
            c = Client(args.system, args.url, args.k, False, names)
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

    clients = [Client(args.system, args.url, args.k, not args.idle, names) for _ in range(args.n)]
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

    decode_later(clients, args.system)
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
