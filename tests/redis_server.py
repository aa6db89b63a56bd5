"""A real redis-server for tests: a temporary folder, a free port, append-only persistence (so a restart keeps
what was acknowledged), started and stopped by the test; it dies with the test process.

Use the `redis_service` fixture (import it into the test module); `stop()` and `start()` restart it. It skips
with the reason when redis-server is not installed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from scene.lifeline import die_with_parent
from tests.mosquitto import free_port, stop, wait_for_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """redis-server on 127.0.0.1:port with its files in `workdir`; `stop()` and `start()` restart it on
    the same port and data (the append-only file), as an operator's restart would."""

    def __init__(self, workdir: Path, *, persistent: bool = True) -> None:
        """`persistent` False: no append-only file, so a restart loses everything (a misconfigured Redis)."""
        if not Path(REDIS_SERVER).is_file():
            pytest.skip(f"redis-server not installed at {REDIS_SERVER} (apt-get install redis-server)")
        self.workdir = workdir / "redis"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self.persistent = persistent

    def start(self) -> None:
        args = [
            REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
            "--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
            "--daemonize", "no",
            "--protected-mode", "no", "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        dies_with_us = functools.partial(die_with_parent, os.getpid())
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=dies_with_us
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop(proc, timeout=10)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_service(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server
