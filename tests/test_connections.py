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
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import live_server, write_scene
from tests.mosquitto import free_port
from viewer_server.client import TwinClient

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


@pytest.mark.skipif(sys.platform != "linux", reason="descriptor limits and 127.0.0.2 as on Linux")
async def test_out_of_descriptors_the_server_still_answers_and_logs_one_line_per_interval(tmp_path: Path) -> None:
    """The server may open only 96 descriptors, the attacker opens 150 half-open connections (no per-address
    bound here): accepts fail until the header timeout frees descriptors; health and a join get through."""
    port = free_port()
    scene = write_scene(tmp_path)
    args = [scene, "--port", port, "--data-dir", tmp_path / "data", "--header-timeout", "3",
            "--max-connections-per-ip", "0"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(fds=96), "serve", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and "serving" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        with half_open(port, 150):
            start = time.monotonic()
            async with aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT), http.get(f"{url}/api/health") as r:
                assert r.status == 200
            async with asyncio.timeout(TIMEOUT), TwinClient(f"ws://127.0.0.1:{port}/ws", name="joiner") as joiner:
                assert joiner.welcome is not None
            took = time.monotonic() - start
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    assert took < TIMEOUT
    lines = [line for line in log.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(lines) <= 1 + took / 10 and "open-file limit 96" in lines[0], log[-2000:]
    assert "Traceback" not in log, log[-2000:]
