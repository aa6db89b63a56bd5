"""A real HAProxy for tests, running the reference configuration of docs/DEPLOY.md (`deploy/haproxy.cfg`).

`render` changes only what must differ on a test machine: the three listening addresses (free loopback
ports), the certificate (a throwaway self-signed one), the backend's `server` lines (the test's
processes, each with the template's own options) and the global `maxconn` (the reference's needs more
descriptors than a test machine allows). Everything else — timeouts, balancing, health checks,
WebSocket tunnelling, the per-address bound — is the file a user copies, so the tests exercise it.
HAProxy dies with the test process (PR_SET_PDEATHSIG) and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.mosquitto import free_port, stop, wait_for_port

REPO: Final = Path(__file__).resolve().parents[1]
TEMPLATE: Final = REPO / "deploy" / "haproxy.cfg"
HAPROXY: Final = shutil.which("haproxy") or "/usr/sbin/haproxy"
# die with the test process however it dies (util-linux; HAProxy itself cannot ask)
PDEATHSIG: Final = ("setpriv", "--pdeathsig", "KILL", "--")

_TLS_BIND = re.compile(r"^(\s*bind )\S+( ssl crt )\S+(.*)$")
_BIND = re.compile(r"^(\s*bind )(\S+)(\s.*)?$")
_SERVER = re.compile(r"^(\s*server )\S+ \S+(.*)$")
_MAXCONN = re.compile(r"^(\s*maxconn )\d+(.*)$")
# Connections the test's HAProxy takes (the template's needs twice as many descriptors as a test machine has)
TEST_MAXCONN: Final = 2000


@dataclass(frozen=True)
class Ports:
    tls: int  # the template's `bind :443 ssl`
    local: int  # its plain loopback bind (tools on the host; the suite talks to this one)
    redirect: int  # its `bind :80`, which redirects to https


def per_address_bound() -> int:
    """The connections one client address may hold at the proxy (the template's `sc0_conn_cur gt N`)."""
    bound = re.search(r"sc0_conn_cur gt (\d+)", TEMPLATE.read_text())
    if bound is None:
        raise ValueError(f"{TEMPLATE}: no per-address bound (`reject if {{ sc0_conn_cur gt N }}`)")
    return int(bound[1])


def render(template: str, ports: Ports, cert: Path, servers: Sequence[int]) -> str:
    """The template with its binds on `ports`, `cert` as the certificate and one `server` line per port of
    `servers`. ValueError when the template no longer has the lines this expects (update both together)."""
    out: list[str] = []
    binds = iter((ports.local, ports.redirect))
    server_lines = 0
    for line in template.splitlines():
        if m := _TLS_BIND.match(line):
            line = f"{m[1]}127.0.0.1:{ports.tls}{m[2]}{cert}{m[3]}"
        elif m := _BIND.match(line):
            port = next(binds, None)
            if port is None:
                raise ValueError(f"{TEMPLATE}: more plain `bind` lines than the test knows: {line.strip()}")
            line = f"{m[1]}127.0.0.1:{port}{m[3] or ''}"
        elif m := _MAXCONN.match(line):
            line = f"{m[1]}{TEST_MAXCONN}{m[2]}"
        elif m := _SERVER.match(line):
            server_lines += 1
            if server_lines == 1:
                out += [f"{m[1]}twin{i} 127.0.0.1:{port}{m[2]}" for i, port in enumerate(servers, 1)]
            continue
        out.append(line)
    if next(binds, None) is not None or server_lines == 0 or not any(_TLS_BIND.match(x) for x in template.splitlines()):
        raise ValueError(f"{TEMPLATE}: expected a `bind … ssl crt …`, two plain binds and `server` lines")
    return "\n".join(out) + "\n"


def self_signed(workdir: Path) -> Path:
    """A certificate and key for localhost and 127.0.0.1 in one PEM file, as HAProxy takes them."""
    key, crt, pem = workdir / "key.pem", workdir / "crt.pem", workdir / "twinview.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    pem.write_bytes(crt.read_bytes() + key.read_bytes())
    return pem


@dataclass(frozen=True)
class Proxy:
    ports: Ports
    cert: Path  # the self-signed certificate clients of the TLS port must trust
    config: str  # the rendered configuration HAProxy runs
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.local}"


@contextlib.contextmanager
def haproxy(servers: Sequence[int]) -> Iterator[Proxy]:
    """HAProxy in front of the processes listening on `servers` (loopback ports), until the block ends."""
    if not Path(HAPROXY).is_file():
        pytest.skip(f"haproxy not installed at {HAPROXY} (apt-get install haproxy)")
    with tempfile.TemporaryDirectory(prefix="twinview-haproxy-") as tmp:
        workdir = Path(tmp)
        ports = Ports(free_port(), free_port(), free_port())
        cert = self_signed(workdir)
        config = render(TEMPLATE.read_text(), ports, cert, servers)
        path = workdir / "haproxy.cfg"
        path.write_text(config)
        # -db: stay in the foreground, log to stderr; the state is all in memory, nothing is written
        proc = subprocess.Popen([*PDEATHSIG, HAPROXY, "-db", "-f", str(path)], stdout=subprocess.DEVNULL)
        try:
            for port in (ports.tls, ports.local, ports.redirect):
                if proc.poll() is not None:
                    raise RuntimeError(f"haproxy exited ({proc.returncode}) on {path}: see its alert above")
                wait_for_port(port)
            yield Proxy(ports, cert, config, proc.pid)
        finally:
            stop(proc)
