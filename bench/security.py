"""Two attacks of issue 11 against a running `twinview serve`, to compare versions.

    python -m bench.security                              # this checkout's server
    python -m bench.security --server-repo /tmp/sec-before  # another checkout's server, same attacks

- `flood`: an anonymous viewer sends `command` messages (which its role may not send) as fast as it can for
  15 s, reading the answers, and reconnects whenever the server closes it. Reported: messages sent, refusals
  answered, connections, audit rows written, and how much the SQLite files (database + WAL) grew.
- `slowloris`: the server may open 1024 files (soft = hard limit, as systemd's default soft limit), and an
  attacker holds N connections that never finish their request head (one header line every 10 s), from one
  or from several loopback addresses (127.0.0.2, …), reopening each one the server closes (at most 200 a
  second, four times slowhttptest's default rate). Meanwhile
  `GET /api/health` is asked from 127.0.0.1 every 0.2 s on a new connection (timeout 10 s). Reported:
  health latency p50 / p99, failed health checks, server log growth. The attacker is a process of its own;
  N = 0 is the same probing without an attack.

Each scenario starts a fresh server process on a 10-element scene. The server runs `--server-repo`'s code
(its own folder first on sys.path); the attackers and probes run here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import selectors
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._fanout_twin import free_port, write_scene
from bench._server import server as serve
from bench._server import wait_ready

ROOT = Path(__file__).resolve().parent.parent
FLOOD_S = 15.0
SLOWLORIS_S = 30.0
PROBE_EVERY_S = 0.2
PROBE_TIMEOUT_S = 10.0
SERVER_OPEN_FILES = 1024
HEAD = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
TRICKLE_EVERY_S = 10.0
# Connections the attacker reopens per second, at most: slowhttptest's default rate is 50; four times that.
REOPEN_PER_S = 200.0
# The server process: its open-file limit set first, then the `twinview` command line.
LAUNCH = "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({n}, {n}))\n" \
         "from viewer_server.cli import main; sys.exit(main(sys.argv[1:]))"  # fmt: skip


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    data_dir: Path
    log: Path


@contextlib.contextmanager
def server(repo: Path) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="twinview-sec-") as tmp:
        root = Path(tmp)
        scene_dir, bindings = root / "scene", root / "bench.bindings.json"
        write_scene(scene_dir, bindings, 10)
        port, data_dir, log = free_port(), root / "data", root / "server.log"
        launch = (sys.executable, "-c", LAUNCH.format(n=SERVER_OPEN_FILES))
        env = {**os.environ, "PYTHONPATH": str(repo)}
        with (
            log.open("wb") as out,
            serve(scene_dir, bindings, data_dir, port, command=launch, repo=repo, output=out, env=env) as proc,
        ):
            yield Server(proc, f"http://127.0.0.1:{port}", data_dir, log)


def store_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.glob("twinview.sqlite*"))


def audit_rows(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "twinview.sqlite")) as db:
        return db.execute("SELECT count(*) FROM audit").fetchone()[0]


# --- flood ---------------------------------------------------------------------------------------------


async def flood(repo: Path) -> dict:
    with server(repo) as srv:
        await wait_ready(srv.url)
        before_bytes, before_rows = store_bytes(srv.data_dir), audit_rows(srv.data_dir)
        sent = refusals = connections = 0
        hello = '{"type":"hello","client":"flood","client_version":"0","protocol":1}'
        command = '{"type":"command","element":"e1","command":"start"}'
        deadline = time.monotonic() + FLOOD_S
        ws_url = srv.url.replace("http://", "ws://") + "/ws"
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.ws_connect(ws_url, protocols=["twinview.v1"]) as ws:
                    connections += 1
                    await ws.send_str(hello)

                    async def read(ws: aiohttp.ClientWebSocketResponse = ws) -> None:
                        nonlocal refusals
                        async for msg in ws:
                            refusals += msg.type == aiohttp.WSMsgType.TEXT and '"type":"error"' in msg.data

                    reader = asyncio.create_task(read())
                    while not ws.closed and time.monotonic() < deadline:
                        with contextlib.suppress(ConnectionError):
                            await ws.send_str(command)
                            sent += 1
                        if sent % 100 == 0:
                            await asyncio.sleep(0)  # let the reader run
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
        await asyncio.sleep(1.0)  # the server's last writes
        grown = store_bytes(srv.data_dir) - before_bytes
        rows = audit_rows(srv.data_dir) - before_rows
    return {"sent": sent, "refusals": refusals, "connections": connections, "audit_rows": rows,
            "store_growth_mb": round(grown / 1e6, 2)}  # fmt: skip


# --- slowloris -----------------------------------------------------------------------------------------


class Attacker(multiprocessing.Process):
    """Holds `count` unfinished requests from `addresses`, reopening each one the server closes. A process of
    its own, so that the probes' latency is the server's, not this process's."""

    def __init__(self, port: int, count: int, addresses: list[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.addresses = port, count, addresses
        self.stop = multiprocessing.Event()
        self.connects = multiprocessing.Value("q", 0)
        self.opened = 0

    def _open(self, sel: selectors.BaseSelector, i: int) -> None:
        s = socket.socket()
        s.setblocking(False)
        s.bind((self.addresses[i % len(self.addresses)], 0))
        s.connect_ex(("127.0.0.1", self.port))
        sel.register(s, selectors.EVENT_WRITE, i)  # connected: send the head
        self.opened += 1

    def run(self) -> None:
        sel = selectors.DefaultSelector()  # epoll: select() stops at 1024 descriptors
        for i in range(self.count):
            self._open(sel, i)
        trickled = last = time.monotonic()
        closed: list[int] = []  # slots to reopen, at most REOPEN_PER_S
        budget = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            budget = min(budget + (now - last) * REOPEN_PER_S, REOPEN_PER_S)
            last = now
            while closed and budget >= 1:
                self._open(sel, closed.pop())
                budget -= 1
            for key, events in sel.select(0.05):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if events & selectors.EVENT_WRITE:
                    with contextlib.suppress(OSError):
                        s.send(HEAD)
                    sel.modify(s, selectors.EVENT_READ, key.data)
                else:  # an answer (429) or a close: open another in its place
                    sel.unregister(s)
                    s.close()
                    closed.append(key.data)
            if time.monotonic() - trickled > TRICKLE_EVERY_S:
                for key in list(sel.get_map().values()):
                    if key.events == selectors.EVENT_READ:
                        with contextlib.suppress(OSError):
                            key.fileobj.send(b"X-a: b\r\n")  # type: ignore[union-attr]
                trickled = time.monotonic()
        for key in list(sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.connects.value = self.opened


async def slowloris(repo: Path, count: int, addresses: int) -> dict:
    with server(repo) as srv:
        await wait_ready(srv.url)
        log_before = srv.log.stat().st_size
        port = int(srv.url.rsplit(":", 1)[1])
        attacker = Attacker(port, count, [f"127.0.0.{2 + a}" for a in range(addresses)])
        attacker.start()
        await asyncio.sleep(2.0)  # let the connections pile up
        latencies, failures = [], 0
        deadline = time.monotonic() + SLOWLORIS_S
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{srv.url}/api/health") as r:
                    ok = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            took = time.monotonic() - start
            if ok:
                latencies.append(took)
            else:
                failures += 1
            await asyncio.sleep(max(0.0, PROBE_EVERY_S - took))
        attacker.stop.set()
        attacker.join(10)
        log_growth = srv.log.stat().st_size - log_before
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {"connections": count, "addresses": addresses, "probes_ok": len(latencies), "probes_failed": failures,
            "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "attacker_connects": attacker.connects.value, "log_growth_kb": round(log_growth / 1024, 1)}  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-repo", type=Path, default=ROOT, help="checkout whose server is measured")
    ap.add_argument("--only", choices=["flood", "slowloris"], default=None)
    args = ap.parse_args()
    repo = args.server_repo.resolve()
    print(f"server code: {repo}  load average: {os.getloadavg()}")
    if args.only in (None, "flood"):
        print("flood", await flood(repo), flush=True)
    if args.only in (None, "slowloris"):
        for count, addresses in ((0, 1), (2000, 1), (2000, 20)):
            print("slowloris", await slowloris(repo, count, addresses), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
