"""A real Mosquitto broker for tests: its own config, a free port, started and stopped per test.

Use the `mosquitto_url` fixture (import it into the test module); it skips with the reason when
/usr/sbin/mosquitto is not installed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it still runs after `timeout` seconds (the tests' engines: brokers, proxies)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def broker(workdir: Path, port: int | None = None) -> Iterator[str]:
    """Run mosquitto on 127.0.0.1:port (a free one by default); yields mqtt://127.0.0.1:port."""
    if not Path(MOSQUITTO).is_file():
        pytest.skip(f"mosquitto not installed at {MOSQUITTO} (apt-get install mosquitto)")
    port = port or free_port()
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    log = (workdir / f"mosquitto-{port}.log").open("w")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def mosquitto_url(tmp_path: Path) -> Iterator[str]:
    with broker(tmp_path) as url:
        yield url
