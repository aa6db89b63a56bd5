"""Slowloris (viewer_server.connections): half-open connections neither take every descriptor nor keep
the server from answering `/api/health` and new joins, and running out of descriptors is one log line per
interval, not a traceback per accept.

Loopback has a whole /8: the attacker's connections come from 127.0.0.2, the checks from 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import live_server, write_scene
from tests.mosquitto import free_port
from viewer_server import http_edge
from viewer_server.client import TwinClient
from viewer_server.connections import ConnectionGuard, GuardedConnection

ATTACKER = "127.0.0.2"
PARTIAL_HEAD = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "  # never finished
TIMEOUT = 30.0
REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def half_open(port: int, count: int, settle_s: float = 2.0) -> Iterator[list[socket.socket]]:
    """`count` connections from ATTACKER that send an unfinished request head (those the server accepts
    within `settle_s`); closed at the end. Blocks: run it off the loop of an in-process server."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.setblocking(False)
            s.bind((ATTACKER, 0))
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        pending, deadline = list(socks), time.monotonic() + settle_s
        while pending and time.monotonic() < deadline:
            _, writable, _ = select.select([], pending, [], 0.1)
            for s in writable:
                with contextlib.suppress(OSError):
                    s.send(PARTIAL_HEAD)
                pending.remove(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def answers(s: socket.socket) -> bytes | None:
    """What the server has sent on `s` so far (b"" once it closed); None while it says nothing."""
    try:
        return s.recv(4096)
    except BlockingIOError:
        return None
    except OSError:
        return b""


async def test_one_address_cannot_hold_more_than_its_share_and_unfinished_heads_time_out(tmp_path: Path) -> None:
    async with live_server(tmp_path, max_connections_per_ip=20, header_timeout_s=2.0) as srv:
        with contextlib.ExitStack() as stack:
            opened = time.monotonic()
            socks = await asyncio.to_thread(stack.enter_context, half_open(srv.port, 300))
            start = time.monotonic()
            async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/api/health") as r:
                assert r.status == 200
            async with TwinClient(srv.ws_url, name="late joiner") as joiner:
                assert joiner.welcome is not None
            assert time.monotonic() - start < 10
            replies: list[bytes | None] = [None] * len(socks)
            deadline = time.monotonic() + TIMEOUT
            while sum(r is not None for r in replies) < 280 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                replies = [r if r is not None else answers(s) for r, s in zip(replies, socks, strict=True)]
            refused = [a for a in replies if a and a.startswith(b"HTTP/1.1 429")]
            assert len(refused) == 280 and b"--max-connections-per-ip" in refused[0]
            assert srv.connections.open[ATTACKER] == 20 and srv.connections.refused == 280
            # The 20 admitted never finish their heads: closed once the header timeout has passed.
            deadline = time.monotonic() + TIMEOUT
            while srv.connections.open.get(ATTACKER) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert ATTACKER not in srv.connections.open
            assert time.monotonic() - opened >= 2.0


SERVER = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({fds}, {fds}))
from viewer_server.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Limited:
    """A `twinview serve` process that may open only `fds` files; `log` is its stderr once stopped."""

    port: int
    log: str = ""


@contextlib.contextmanager
def limited_server(tmp_path: Path, fds: int, *flags: str) -> Iterator[Limited]:
    server = Limited(free_port())
    args = [str(write_scene(tmp_path)), "--port", str(server.port), "--data-dir", str(tmp_path / "data"), *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(fds=fds), "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        yield server
    finally:
        proc.terminate()
        _, server.log = proc.communicate(timeout=30)


async def health_and_join(port: int) -> float:
    """Seconds until `/api/health` answered and a WebSocket join was welcomed, both from 127.0.0.1."""
    start = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        asyncio.timeout(TIMEOUT),
        http.get(f"http://127.0.0.1:{port}/api/health") as r,
    ):
        assert r.status == 200
    async with asyncio.timeout(TIMEOUT), TwinClient(f"ws://127.0.0.1:{port}/ws", name="joiner") as joiner:
        assert joiner.welcome is not None
    return time.monotonic() - start


LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="descriptor limits and 127.0.0.2 as on Linux")


@LINUX_ONLY
async def test_a_full_server_makes_room_by_closing_the_oldest_unfinished_connection(tmp_path: Path) -> None:
    """256 descriptors, so at most 128 connections; 300 half-open ones (no per-address bound here, and a header
    timeout longer than the test): health and a join get in at once, in place of the oldest attackers."""
    flags = ("--header-timeout", "120", "--max-connections-per-ip", "0")
    with limited_server(tmp_path, 256, *flags) as server, half_open(server.port, 300) as socks:
        took = await health_and_join(server.port)
        closed: set[socket.socket] = set()
        deadline = time.monotonic() + TIMEOUT
        while len(closed) < 300 - 128 and time.monotonic() < deadline:
            closed |= {s for s in socks if s not in closed and answers(s) == b""}
            await asyncio.sleep(0.1)
    assert took < 10 and len(closed) >= 300 - 128
    assert "Traceback" not in server.log, server.log[-2000:]


@LINUX_ONLY
async def test_out_of_descriptors_the_server_still_answers_and_logs_one_line_per_interval(tmp_path: Path) -> None:
    """96 descriptors and no bound on connections: the attacker's 150 half-open connections take them all, and
    accepts fail until the header timeout frees descriptors; health and a join get through."""
    flags = ("--header-timeout", "3", "--max-connections-per-ip", "0", "--max-connections", "0")
    with limited_server(tmp_path, 96, *flags) as server, half_open(server.port, 150):
        took = await health_and_join(server.port)
    assert took < TIMEOUT
    lines = [line for line in server.log.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(lines) <= 1 + took / 10 and "open-file limit 96" in lines[0], server.log[-2000:]
    assert "Traceback" not in server.log, server.log[-2000:]


class _Transport:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


def _connection(guard: ConnectionGuard, ip: str) -> GuardedConnection:
    conn = GuardedConnection(guard, asyncio.Protocol)
    conn.ip, conn.transport = ip, _Transport()  # type: ignore[assignment]
    return conn


def test_the_guard_bounds_each_address_and_makes_room_from_the_oldest_unfinished_head() -> None:
    guard = ConnectionGuard(max_per_ip=2, capacity=3)
    a1, a2, a3 = (_connection(guard, "10.0.0.1") for _ in range(3))
    assert guard.admit(a1) is None and guard.admit(a2) is None
    refusal = guard.admit(a3)
    assert refusal is not None and refusal.startswith(b"HTTP/1.1 429") and guard.refused == 1
    b1, b2 = _connection(guard, "10.0.0.2"), _connection(guard, "10.0.0.3")
    assert guard.admit(b1) is None
    del guard.waiting[a1]  # a1 sent its request head: it is never closed to make room
    assert guard.admit(b2) is None  # full: a2, the oldest still without a head, goes
    assert (a1.transport.aborted, a2.transport.aborted, guard.evicted) == (False, True, 1)  # type: ignore[union-attr]
    guard.release(a2)
    for conn in (b1, b2):
        del guard.waiting[conn]
    refusal = guard.admit(_connection(guard, "10.0.0.4"))  # full, and every connection has sent its head
    assert refusal is not None and refusal.startswith(b"HTTP/1.1 503") and b"--max-connections" in refusal
    assert guard.open == {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1} and guard.total == 3


async def test_a_body_that_trickles_in_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_edge, "BODY_TIMEOUT_S", 1.0)
    async with live_server(tmp_path) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        head = (
            "POST /api/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
        )
        writer.write(f"{head}\r\n{{".encode())  # then nothing: 999 bytes never come
        async with asyncio.timeout(TIMEOUT):
            status = await reader.readline()
        writer.close()
        assert status.startswith(b"HTTP/1.1 408") and srv.live.ingest.accepted == 0
