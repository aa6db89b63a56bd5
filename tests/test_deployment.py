"""The reference deployment of docs/DEPLOY.md works as the doc says: `deploy/haproxy.cfg` is what HAProxy
runs, TLS ends at the proxy (wss:// to it, plain HTTP redirected), the processes see each client's address
(X-Forwarded-For from the trusted proxy) and the per-address bound holds at the proxy, nothing is left behind, and
the systemd units and the compose file of deploy/ run the processes the proxy expects. A dead process's clients
resuming on the others through the proxy: tests/test_shared_failover.py.

The protocol and collaboration tests marked `deployable` also run through this proxy (their [deployment]
variant, tests/live_server.py); this module tests what only a deployment has.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import websockets
import yaml

from tests.deployment import Deployment, deployed, serve_argv
from tests.haproxy import REPO, TEMPLATE, Ports, per_address_bound, render
from tests.live_server import BINDINGS, JSON_BODY, write_bindings, write_scene
from viewer_server import cli
from viewer_server import protocol as p
from viewer_server.auth import issue
from viewer_server.client import TwinClient

pytestmark = pytest.mark.slow
DEPLOY = REPO / "deploy"
WAIT_S = 30.0  # a loaded machine is slow, not wrong
PER_ADDRESS = per_address_bound()  # deploy/haproxy.cfg: connections one client address may hold


def scene_flags(root: Path) -> tuple[Path, list[str]]:
    return write_scene(root), ["--bindings", str(write_bindings(root, BINDINGS))]


def test_the_test_runs_the_reference_config_with_only_addresses_certificate_and_servers_changed(
    tmp_path: Path,
) -> None:
    template = TEMPLATE.read_text()
    rendered = render(template, Ports(1001, 1002, 1003), tmp_path / "test.pem", [2001, 2002])
    diff = list(difflib.unified_diff(template.splitlines(), rendered.splitlines(), lineterm="", n=0))
    removed = [x[1:].split("#")[0].strip() for x in diff if x.startswith("-") and not x.startswith("---")]
    added = [x[1:].split("#")[0].strip() for x in diff if x.startswith("+") and not x.startswith("+++")]
    assert removed == [
        "maxconn 40000",
        "bind :443 ssl crt /etc/haproxy/certs/twinview.pem alpn http/1.1",
        "bind 127.0.0.1:8100",
        "bind :80",
        "server twin1 127.0.0.1:8101",
        "server twin2 127.0.0.1:8102",
        "server twin3 127.0.0.1:8103",
    ]
    assert added == [
        "maxconn 2000",
        f"bind 127.0.0.1:1001 ssl crt {tmp_path / 'test.pem'} alpn http/1.1",
        "bind 127.0.0.1:1002",
        "bind 127.0.0.1:1003",
        "server twin1 127.0.0.1:2001",
        "server twin2 127.0.0.1:2002",
    ]
    with pytest.raises(ValueError, match="more plain `bind` lines than the test knows"):
        render(template.replace(" ssl crt ", " "), Ports(1, 2, 3), tmp_path / "x.pem", [1])


async def test_tls_ends_at_the_proxy_and_plain_http_is_redirected(tmp_path: Path) -> None:
    scene_dir, flags = scene_flags(tmp_path)
    async with deployed(tmp_path, scene_dir, 1, flags) as d:
        trust = ssl.create_default_context(cafile=str(d.proxy.cert))
        https = f"https://localhost:{d.proxy.ports.tls}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{https}/api/health", ssl=trust) as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
                assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
            async with http.get(f"http://localhost:{d.proxy.ports.redirect}/x?y=1", allow_redirects=False) as r:
                assert r.status == 301  # the same host, path and query, over https
                assert r.headers["Location"] == f"https://localhost:{d.proxy.ports.redirect}/x?y=1"
        # A browser's WebSocket through TLS: same-origin (Origin https://localhost:port) and upgraded at the proxy.
        async with websockets.connect(
            f"wss://localhost:{d.proxy.ports.tls}/ws/{d.scene_id}",
            ssl=trust,
            subprotocols=[p.SUBPROTOCOL_JSON],  # type: ignore[list-item]
            origin=https,  # type: ignore[arg-type]
        ) as ws:
            await ws.send(p.encode(p.Hello("test", "0", role="viewer"), "json").decode())
            welcome = p.decode_server(await asyncio.wait_for(ws.recv(), WAIT_S), "json")
            assert isinstance(welcome, p.Welcome) and welcome.scene == d.scene_id


async def audited_sources(d: Deployment) -> list[str]:
    """The audit trail's sources of telemetry from two clients at other addresses than the test's: one posting
    over HTTP with an X-Forwarded-For of its own making, one publishing over a WebSocket."""
    forged = {**JSON_BODY, "X-Forwarded-For": "198.51.100.66"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.9", 0))) as http:
        body = {"readings": [{"key": "PT-1.pressure", "value": 4.2}]}
        async with http.post(f"{d.url}/api/ingest", json=body, headers=forged) as r:
            assert r.status == 200, await r.text()
        async with TwinClient(d.ws_url, role="publisher", local_address="127.0.0.10") as gateway:
            await gateway.publish([p.Reading(4.3, key="PT-1.pressure")])
        admin = {"Authorization": f"Bearer {issue(d.secret, d.scene_id, 'auditor', 'admin')}"}
        deadline = time.monotonic() + WAIT_S
        while True:  # the first batch of a source is written at once, by the store's writer
            async with http.get(f"{d.url}/api/sessions/{d.scene_id}/audit", headers=admin) as r:
                sources = sorted(row["target"] for row in await r.json() if row["action"] == "telemetry.publish")
            if len(sources) == 2 or time.monotonic() > deadline:
                return sources
            await asyncio.sleep(0.1)


def answered(port: int) -> socket.socket | None:
    """A raw keep-alive connection to `port` on which /api/health was answered 200; None if refused."""
    conn = None
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        conn.sendall(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        if conn.recv(4096).startswith(b"HTTP/1.1 200"):
            return conn
    except ConnectionError:
        pass
    if conn is not None:
        conn.close()
    return None


async def test_the_proxy_bounds_connections_per_address_and_tells_the_processes_whose_they_are(tmp_path: Path) -> None:
    """64 connections from one address are let through, the 65th is refused at the proxy, and a freed slot
    lets the next one in (the processes bound nothing per address: every connection comes from the proxy).
    Other addresses get in meanwhile, and the processes know each client's: HAProxy appends it to
    X-Forwarded-For (`option forwardfor`), the processes trust it (`--trusted-proxy`), so the audit trail names
    the client over HTTP and WebSocket, never an address the client wrote itself, nor the proxy's."""
    scene_dir, flags = scene_flags(tmp_path)
    async with deployed(tmp_path, scene_dir, 1, flags) as d:
        held: list[socket.socket] = []
        try:
            while len(held) <= PER_ADDRESS and (conn := answered(d.proxy.ports.local)) is not None:
                held.append(conn)  # answered: accepted and counted by the proxy
            # the 65th is refused (one or two earlier ones, the readiness probe's, may still be counted)
            assert PER_ADDRESS - 2 <= len(held) <= PER_ADDRESS
            held.pop().close()
            deadline = time.monotonic() + WAIT_S
            while (again := answered(d.proxy.ports.local)) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)  # a freed slot lets the next one in, once the proxy has seen the close
            assert again is not None
            held.append(again)
            assert await audited_sources(d) == ["HTTP from 127.0.0.9", "WebSocket from 127.0.0.10"]
        finally:
            for s in held:
                s.close()


@pytest.mark.parametrize("sigint", ["default", "ignored"])
async def test_everything_stops_with_the_deployment_and_no_file_is_left_outside_its_root(
    tmp_path: Path, sigint: str
) -> None:
    """Stopped by Ctrl+C, also when started as a script's background job (`twinview serve … &`), which inherits
    SIGINT ignored: each process stops by itself (exit 0), not by the harness's kill -9 after its wait."""
    scene_dir, flags = scene_flags(tmp_path)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        async with deployed(tmp_path, scene_dir, 1, flags) as d:
            haproxy_dir = d.proxy.cert.parent
            assert haproxy_dir.is_dir()
            procs = [proc.proc for proc in d.processes]
            proxy_pid = d.proxy.pid
    finally:
        signal.signal(signal.SIGINT, before)
    assert [proc.poll() for proc in procs] == [0] * len(procs)
    assert not alive(proxy_pid)
    assert not haproxy_dir.exists()  # configuration and certificate gone
    assert not any(tmp_path.rglob("server.json"))  # each process said it stopped serving its data dir


def test_a_process_and_the_proxy_die_with_the_test_process_however_it_dies(tmp_path: Path) -> None:
    """kill -9 of the process that started them (a pytest run killed by CI) takes them all along."""
    script = (
        "import asyncio, pathlib, sys\n"
        "from tests.deployment import deployed\n"
        "from tests.test_deployment import scene_flags\n"
        "async def main():\n"
        "    root = pathlib.Path(sys.argv[1])\n"
        "    async with deployed(root, *scene_flags(root)[:1], 1, scene_flags(root)[1]) as d:\n"
        "        print(d.processes[0].proc.pid, d.proxy.pid, flush=True)\n"
        "        await asyncio.sleep(600)\n"
        "asyncio.run(main())\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, cwd=REPO)
    assert parent.stdout is not None
    pids = [int(x) for x in parent.stdout.readline().split()]
    assert len(pids) == 2, "the deployment did not start"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + WAIT_S
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (dead) parent to be reaped by init."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def served_ports(config: str) -> list[int]:
    return [int(m[1]) for m in re.finditer(r"^\s*server \S+ 127\.0\.0\.1:(\d+)", config, re.M)]


def unit_command(port: int) -> list[str]:
    """deploy/twinview@.service's ExecStart for instance `port`, with deploy/twinview.env's values."""
    unit = (DEPLOY / "twinview@.service").read_text().replace("\\\n", " ")
    env = dict(
        line.split("=", 1)
        for line in (DEPLOY / "twinview.env").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    )
    command = re.search(r"^ExecStart=(.*)$", unit, re.M)
    assert command is not None
    text = re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], command[1]).replace("%i", str(port))
    return shlex.split(text)[1:]  # without the program


def test_the_systemd_units_and_the_compose_file_run_what_the_proxy_expects() -> None:
    """Every process of deploy/ is a valid `twinview serve` on one of haproxy.cfg's servers, loopback only,
    on the shared bus and store, without a per-address bound (the proxy holds it), as the harness runs them."""
    ports = served_ports(TEMPLATE.read_text())
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    commands = {f"twin{i}": compose["services"][f"twin{i}"]["command"] for i in range(1, 4)}
    commands |= {f"twinview@{port}": unit_command(port) for port in ports}
    served = []
    for name, argv in commands.items():
        args = cli.parser().parse_args(argv)
        assert args.command == "serve", name
        assert (args.host, args.max_connections_per_ip, args.trusted_proxy) == ("127.0.0.1", 0, ["127.0.0.1"]), name
        assert args.bus.startswith("redis://") and args.store.startswith("postgresql://"), name
        assert ":" not in args.store.split("@")[0].removeprefix("postgresql://"), f"{name}: no password in the URL"
        served.append(args.port)
    assert sorted(served) == sorted(ports * 2)  # the compose file's three and the units' three
    assert compose["services"]["haproxy"]["volumes"][0].startswith("./haproxy.cfg:")
    harness = serve_argv(Path("scene"), 1, Path("data"), [])
    assert cli.parser().parse_args(harness[3:]).trusted_proxy == ["127.0.0.1"]
    assert {"--host", "127.0.0.1", "--max-connections-per-ip", "0"} <= set(harness)
