"""A `twinview serve` child process for the benchmarks: started on a scene, waited for until /api/health
answers, stopped when the benchmark is done with it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# The server's own command line, as a user starts it (`python -m viewer_server.cli serve …`).
CLI = (sys.executable, "-m", "viewer_server.cli")


@contextlib.contextmanager
def server(
    scene: Path,
    bindings: Path,
    data_dir: Path,
    port: int,
    *,
    command: tuple[str, ...] = CLI,
    repo: Path = ROOT,
    output: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """`command serve SCENE --bindings … --port … --data-dir …` in `repo` (a checkout), its output to `output`
    (none by default); at the end it gets `stop` if it still runs (SIGKILL: as a crash would end it)."""
    args = [*command, "serve", str(scene), "--bindings", str(bindings)]
    args += ["--port", str(port), "--data-dir", str(data_dir)]
    out = output if output is not None else subprocess.DEVNULL
    proc = subprocess.Popen(args, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
        proc.wait(timeout=STOP_TIMEOUT_S)


async def wait_ready(url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Return once `url`/api/health answers 200; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/api/health") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"the server at {url} did not answer /api/health within {timeout_s:g} s")
