"""The HTTP edge (viewer_server.http_edge): a page on another site cannot use the server through a visitor's
browser (WebSocket, no-cors POST, DNS rebinding); every ingest is audited; every response carries the
security headers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import JSON_BODY, live_server, mint_token, write_scene
from viewer_server import cli
from viewer_server import protocol as p
from viewer_server.client import TwinClient
from viewer_server.http_edge import (
    MAX_FORWARDED_HOPS,
    EdgePolicy,
    content_security_policy,
    host_name,
    inline_script_hashes,
    origin_of,
    trusted_network,
)
from viewer_server.serve import RunningServer

FOREIGN = "http://evil.example:9999"
READING = {"key": "PT-1.pressure", "value": 4.2}  # stamped by the server
REPO = Path(__file__).resolve().parents[1]
HELLO = p.encode(p.Hello(client="probe", client_version="0"), "json")


@contextlib.asynccontextmanager
async def served(tmp_path: Path, **options: object) -> AsyncIterator[tuple[RunningServer, aiohttp.ClientSession]]:
    async with live_server(tmp_path, **options) as srv, aiohttp.ClientSession() as http:  # type: ignore[arg-type]
        yield srv, http


async def history(http: aiohttp.ClientSession, srv: RunningServer) -> list:
    async with http.get(f"{srv.url}/api/history/PT-1/pressure") as r:
        assert r.status == 200
        return (await r.json())["samples"]


async def test_a_page_on_another_origin_cannot_open_the_websocket(tmp_path: Path) -> None:
    async with served(tmp_path) as (srv, http):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(srv.ws_url, headers={"Origin": FOREIGN}, protocols=p.SUBPROTOCOLS)
        assert refused.value.status == 403  # before the upgrade: no welcome, no snapshot, no topics
        async with http.get(srv.ws_url.replace("ws://", "http://"), headers={"Origin": FOREIGN}) as r:
            body = await r.json()
            assert body["error"] == "forbidden_origin" and f"--allow-origin {FOREIGN}" in body["detail"]
        # The server's own page, and clients that are not browsers (no Origin), are let in.
        for headers in ({"Origin": srv.url}, {}):
            async with http.ws_connect(srv.ws_url, headers=headers, protocols=["twinview.v1"]) as ws:
                await ws.send_str(HELLO.decode())
                assert p.decode_server((await ws.receive()).data, "json").__struct_config__.tag == "welcome"
        async with TwinClient(srv.ws_url, name="gateway") as client:
            assert client.welcome is not None


async def test_an_allowed_origin_may_connect(tmp_path: Path) -> None:
    options = {"allow_origins": ("https://portal.example.com",)}
    async with served(tmp_path, **options) as (srv, http):
        headers = {"Origin": "https://portal.example.com"}
        async with http.ws_connect(srv.ws_url, headers=headers, protocols=["twinview.v1"]) as ws:
            await ws.send_str(HELLO.decode())
            assert (await ws.receive()).type == aiohttp.WSMsgType.TEXT
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(srv.ws_url, headers={"Origin": "https://portal.example.com.evil.example"})


async def test_a_no_cors_text_plain_ingest_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """What `fetch(url, {mode: "no-cors", method: "POST", body})` on another site sends."""
    body = p.encode({"readings": [READING]}, "json")
    async with served(tmp_path) as (srv, http):
        simple = {"Content-Type": "text/plain;charset=UTF-8", "Origin": FOREIGN}
        async with http.post(f"{srv.url}/api/ingest", data=body, headers=simple) as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden_origin"
        # Without Origin (a script, not a browser) a text/plain body is still not JSON to this server.
        async with http.post(f"{srv.url}/api/ingest", data=body, headers={"Content-Type": "text/plain"}) as r:
            refusal = await r.json()
            assert r.status == 415 and "Content-Type: application/json" in refusal["detail"]
        # Forms are what a cross-site <form> posts.
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        async with http.post(f"{srv.url}/api/sessions/{srv.live.scene.id}/topics", data=body, headers=form) as r:
            assert r.status == 415
        assert await history(http, srv) == []
        assert srv.live.ingest.accepted == 0
        async with http.post(f"{srv.url}/api/ingest", data=body, headers={**JSON_BODY, "Origin": srv.url}) as r:
            assert r.status == 200 and (await r.json())["accepted"] == 1
        assert [v for _, v in await history(http, srv)] == [4.2]


async def test_a_host_name_the_server_does_not_have_is_refused(tmp_path: Path) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, and the browser sends it in Host."""
    async with served(tmp_path, allow_hosts=("twin.plant.example",)) as (srv, http):
        async with http.get(f"{srv.url}/api/state", headers={"Host": f"rebind.evil.example:{srv.port}"}) as r:
            refusal = await r.json()
            assert r.status == 403 and refusal["error"] == "forbidden_host"
            assert "--allow-host rebind.evil.example" in refusal["detail"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(srv.ws_url, headers={"Host": "rebind.evil.example"})
        assert refused.value.status == 403
        for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", "[::1]", "twin.plant.example:443"):
            async with http.get(f"{srv.url}/api/state", headers={"Host": host}) as r:
                assert r.status == 200, host


async def test_every_ingest_is_audited_with_its_source_and_user(tmp_path: Path) -> None:
    body = p.encode({"readings": [READING, {**READING, "key": "nope"}]}, "json")
    async with served(tmp_path) as (srv, http):
        async with http.post(f"{srv.url}/api/ingest", data=body, headers=JSON_BODY) as r:
            assert r.status == 200
        gateway = {**JSON_BODY, "Authorization": f"Bearer {mint_token(srv, 'gw-north', 'publisher')}"}
        async with http.post(f"{srv.url}/api/ingest", data=body, headers=gateway) as r:
            assert r.status == 200
        viewer = {**JSON_BODY, "Authorization": f"Bearer {mint_token(srv, 'vera', 'viewer')}"}
        async with http.post(f"{srv.url}/api/ingest", data=body, headers=viewer) as r:
            assert r.status == 403  # a token says who: it must be allowed to publish
        async with TwinClient(srv.ws_url, name="gw-ws", token=mint_token(srv, "gw-south", "publisher")) as pub:
            await pub.publish([p.Reading(**READING)])
        srv.store.flush()
        rows = srv.store.audit(srv.live.scene.id, 50)
        ingests = sorted((e.actor, e.role, e.target, e.detail) for e in rows if e.action == "telemetry.publish")
        assert ingests == [
            ("anonymous", "anonymous", "HTTP from 127.0.0.1", "batches 1, accepted 1, rejected 1"),
            ("gw-north", "publisher", "HTTP from 127.0.0.1", "batches 1, accepted 1, rejected 1"),
            ("gw-south", "publisher", "WebSocket from 127.0.0.1", "batches 1, accepted 1, rejected 0"),
        ]


def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() -> None:
    policy = EdgePolicy.for_server(proxies=["127.0.0.1", "10.0.2.0/24"])
    client = "198.51.100.7"
    # From anyone else the header is ignored: no address can be claimed by sending it.
    assert policy.client_address("203.0.113.9", [client]) == "203.0.113.9"
    assert EdgePolicy.for_server().client_address("127.0.0.1", [client]) == "127.0.0.1"  # no proxy trusted
    # From a trusted proxy: the right-most entry that is not a trusted proxy; what the client wrote left of it
    # (a second header, or earlier entries) proves nothing.
    assert policy.client_address("127.0.0.1", [client]) == client
    assert policy.client_address("127.0.0.1", [f"192.0.2.1, {client}"]) == client
    assert policy.client_address("127.0.0.1", ["192.0.2.1", client]) == client
    assert policy.client_address("127.0.0.1", [f"junk, {client}"]) == client
    assert policy.client_address("10.0.2.5", [f"{client}, 127.0.0.1"]) == client  # two proxies
    assert policy.client_address("127.0.0.1", ["10.0.2.9"]) == "10.0.2.9"  # every hop trusted: the first
    assert policy.client_address("::ffff:127.0.0.1", ["2001:db8::7"]) == "2001:db8::7"  # dual-stack socket
    # Malformed: the header is ignored, the proxy's address stands.
    for header in ("unknown", "", f"{client}:4711", f"{client},", "twin.example.com", "1.2.3.4.5", "\x00" * 100):
        assert policy.client_address("127.0.0.1", [header]) == "127.0.0.1", header
    assert policy.client_address("127.0.0.1", []) == "127.0.0.1"
    hops = ", ".join([client] + ["10.0.2.1"] * MAX_FORWARDED_HOPS)
    assert policy.client_address("127.0.0.1", [hops]) == "127.0.0.1"  # past the hops looked at
    with pytest.raises(ValueError, match=r"bad trusted proxy '10\.0\.2\.5/24'.*e\.g\. 127\.0\.0\.1 or 10\.0\.2\.0/24"):
        trusted_network("10.0.2.5/24")


def test_trusted_proxies_come_from_the_flag_and_the_environment_and_a_bad_one_says_what_to_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(cli.TRUSTED_PROXIES_ENV, "127.0.0.1, ::1")
    args = cli.parser().parse_args(["serve", "scene", "--trusted-proxy", "10.0.2.0/24"])
    assert cli._edge_options(args)["trusted_proxies"] == ("127.0.0.1", "::1", "10.0.2.0/24")
    args = cli.parser().parse_args(["serve", "scene", "--trusted-proxy", "proxy.example.com"])
    with pytest.raises(cli.UserError, match=r"bad trusted proxy 'proxy\.example\.com'"):
        cli._edge_options(args)


async def test_audit_names_the_client_behind_a_trusted_proxy_and_never_a_spoofed_address(tmp_path: Path) -> None:
    body = p.encode({"readings": [READING]}, "json")
    async with (
        served(tmp_path, trusted_proxies=("127.0.0.1",)) as (srv, proxy),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as stranger,
    ):
        for http, header in ((proxy, "198.51.100.7"), (proxy, "unknown"), (stranger, "198.51.100.66")):
            async with http.post(
                f"{srv.url}/api/ingest", data=body, headers={**JSON_BODY, "X-Forwarded-For": header}
            ) as r:
                assert r.status == 200
        async with TwinClient(srv.ws_url, role="publisher", local_address="127.0.0.3") as pub:
            await pub.publish([p.Reading(**READING)])  # no header: its own address
        srv.store.flush()
        rows = srv.store.audit(srv.live.scene.id, 50)
    assert sorted(e.target for e in rows if e.action == "telemetry.publish") == [
        "HTTP from 127.0.0.1",  # the proxy's own, as its header was malformed
        "HTTP from 127.0.0.2",  # not a trusted proxy: its header is ignored
        "HTTP from 198.51.100.7",  # behind the trusted proxy
        "WebSocket from 127.0.0.3",
    ]


async def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    async with served(tmp_path) as (srv, http):
        for path in ("/", "/api/health", "/api/nothing-here", "/scenes/pump-test/scene.glb"):
            async with http.get(f"{srv.url}{path}") as r:
                csp = r.headers.get("Content-Security-Policy", "")
                assert "frame-ancestors 'none'" in csp and "'wasm-unsafe-eval'" in csp, path
                assert f"ws://127.0.0.1:{srv.port}" in csp, path
                assert r.headers["Referrer-Policy"] == "no-referrer"
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["X-Frame-Options"] == "DENY"
        async with http.get(f"{srv.url}/api/health", headers={"Host": "[::1]; script-src *"}) as r:
            assert r.status == 403 and "script-src *" not in r.headers["Content-Security-Policy"]


def test_inline_scripts_of_the_web_client_are_allowed_by_hash(tmp_path: Path) -> None:
    index = tmp_path / "index.html"
    index.write_text('<script>boot()</script><script type="module" src="./app.js"></script>')
    hashes = inline_script_hashes(index)
    assert hashes == ["'sha256-MeZS89WlF0u+o0hCvHTBt4q1WHU+U+sJKgbdRUc36mY='"]  # of "boot()"
    assert hashes[0] in content_security_policy(hashes)


def test_names_and_origins_are_compared_as_browsers_send_them() -> None:
    assert host_name("Twin.Example.COM.:8443") == "twin.example.com"
    assert host_name("[::1]:8800") == "::1"
    policy = EdgePolicy.for_server("0.0.0.0", hosts=["twin.example.com"], origins=["https://portal.example.com/"])
    assert policy.host_allowed("192.168.1.20:8800") and policy.host_allowed("localhost")
    assert policy.host_allowed("twin.example.com") and not policy.host_allowed("example.com")
    assert policy.origin_allowed("https://portal.example.com", "twin.example.com")
    assert policy.origin_allowed("http://twin.example.com:8800", "twin.example.com:8800")
    assert not policy.origin_allowed("null", "twin.example.com:8800")
    assert not policy.origin_allowed("http://twin.example.com:8801", "twin.example.com:8800")
    with pytest.raises(ValueError, match="scheme, host and port only"):
        origin_of("https://portal.example.com/app")


def test_serve_refuses_a_malformed_allow_origin_with_exit_2(tmp_path: Path) -> None:
    scene = write_scene(tmp_path)
    args = ["serve", str(scene), "--allow-origin", "https://portal.example.com/app", "--data-dir", str(tmp_path / "d")]
    proc = subprocess.run([sys.executable, "-m", "viewer_server.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "twinview: bad origin 'https://portal.example.com/app': give scheme, host and port only, "
        "e.g. https://twin.example.com:8443"
    )
