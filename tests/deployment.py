"""A scaled-out TwinView for tests: N `twinview serve` processes behind the real HAProxy of docs/DEPLOY.md.

Each process is the CLI a user runs, on a free loopback port, all on one data dir (one machine: one secret,
so a token signed once is valid on every process); with `serve --bus` (and `--store`) options they share
one twin, its sessions and its log. HAProxy runs `deploy/haproxy.cfg`
(tests/haproxy.py). Clients talk to the proxy only. Every process is started with PR_SET_PDEATHSIG and
stopped when the block ends, and dies with the test process however that dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from tests.haproxy import PDEATHSIG, REPO, Proxy, haproxy
from tests.mosquitto import free_port
from viewer_server.auth import load_secret
from viewer_server.scenes import scene_id_for

START_TIMEOUT_S: Final = 60.0  # a process imports the whole server: seconds on a loaded machine
STOP_TIMEOUT_S: Final = 10.0


@dataclass
class ServerProcess:
    """One `twinview serve` process of the deployment."""

    name: str  # twin1, twin2, …: the name of its `server` line in HAProxy's configuration
    port: int
    proc: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr
    interrupted: bool = False  # sent its Ctrl+C

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no goodbye to its clients, no flush."""
        self.proc.kill()
        self.proc.wait()

    def interrupt(self) -> None:
        """Ctrl+C, once (a second one would cut its stop short), without waiting for it to stop."""
        if self.proc.poll() is None and not self.interrupted:
            self.proc.send_signal(signal.SIGINT)
            self.interrupted = True

    def stop(self) -> None:
        """Ctrl+C, as a terminal or `systemctl stop` (KillSignal=SIGINT) does: clients are told to come back."""
        self.interrupt()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-8:])
        return ""


@dataclass
class Deployment:
    """What a test sees: the proxy's address, and the secret and scene to sign join tokens for."""

    proxy: Proxy
    processes: list[ServerProcess]
    secret: bytes
    scene_id: str

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.proxy.ports.local}/ws/{self.scene_id}"


def serve_argv(scene_dir: Path, port: int, data_dir: Path, options: Sequence[str]) -> list[str]:
    """The command line of one process, as in deploy/twinview@.service: loopback only, no per-address bound
    (every connection comes from the proxy's address; HAProxy bounds connections per client), the proxy trusted
    to name the client (X-Forwarded-For)."""
    return [
        sys.executable, "-m", "viewer_server.cli", "serve", str(scene_dir),
        "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        "--max-connections-per-ip", "0", "--trusted-proxy", "127.0.0.1", *options,
    ]  # fmt: skip


async def wait_ready(process: ServerProcess, http: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited ({process.proc.returncode}): {process.tail()}")
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"{process.url}/api/health") as r:
                if r.status == 200:
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{process.name} did not answer /api/health within {START_TIMEOUT_S} s: {process.tail()}"
            )
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def deployed(
    root: Path, scene_dir: Path, processes: int, options: Sequence[str] = ()
) -> AsyncIterator[Deployment]:
    """`processes` servers of `scene_dir` (serve `options` added to each command line) behind HAProxy;
    data dir and logs under `root`. Ready when every process answers /api/health and the proxy listens."""
    data_dir = root / "data"
    secret = load_secret(data_dir)  # before the processes, which all read it
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    started: list[ServerProcess] = []
    try:
        for i in range(1, processes + 1):
            port = free_port()
            log = root / f"twin{i}.log"
            with log.open("wb") as out:  # the child keeps its own descriptor
                proc = subprocess.Popen(
                    [*PDEATHSIG, *serve_argv(scene_dir, port, data_dir, options)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    env=env,
                )
            started.append(ServerProcess(f"twin{i}", port, proc, log))
        async with aiohttp.ClientSession() as http:
            for process in started:
                await wait_ready(process, http)
        with haproxy([p.port for p in started]) as proxy:
            yield Deployment(proxy, started, secret, scene_id_for(scene_dir))
    finally:
        for process in started:  # all at once: each takes seconds to stop on a loaded machine
            process.interrupt()
        for process in started:
            process.stop()
