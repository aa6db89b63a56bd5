"""The WebSocket protocol against a real server: deltas, publishers, resume, resync, errors, closes.

Every test also runs against three processes behind HAProxy (`deployable`), except those marked
`in_process_only` with the reason."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.live_server import BINDINGS, JSON_BODY, live_server, mint_token, numbered, process_healths, session_id
from viewer_server import protocol as p
from viewer_server import serve as serve_mod
from viewer_server.client import TwinClient, TwinClientError
from viewer_server.resume_log import ResumeLog

pytestmark = pytest.mark.deployable
PT = "PT-1/pressure"


async def ingest(http: aiohttp.ClientSession, url: str, *readings: p.Reading) -> dict:
    body = p.encode({"readings": list(readings)}, "json")
    async with http.post(f"{url}/api/ingest", headers=JSON_BODY, data=body) as r:
        assert r.status == 200
        return await r.json()


def pressure(value: float) -> p.Reading:
    return p.Reading(value, key="PT-1.pressure")


def assert_resumed(client: TwinClient, reference: TwinClient) -> None:
    """`client` came back by resuming (no resync snapshot) and holds what `reference`, connected throughout,
    holds: no change lost (contiguous deltas), no event twice, every event in the same order, the same state."""
    assert client.resyncs == [] and client.seq_gaps == 0 and client.duplicate_events == 0
    assert [e.seq for e in client.events] == [e.seq for e in reference.events]
    assert client.seq == reference.seq
    assert (client.props, client.visuals, client.alarms) == (reference.props, reference.visuals, reference.alarms)
    assert (client.presence, client.topics, client.comments) == (
        reference.presence,
        reference.topics,
        reference.comments,
    )


@pytest.mark.fresh_twin
async def test_post_reaches_the_client_as_one_delta_with_visuals_and_alarm(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http, TwinClient(srv.ws_url) as tc:
        assert tc.snapshots == 1 and tc.layer == "operations"
        assert tc.visuals["PT-1"].label == "– "  # a label with no value yet
        await ingest(http, srv.url, pressure(5.7))
        await tc.wait_for(lambda c: PT in c.props and c.alarms)
        assert tc.props[PT].v == 5.7 and tc.props[PT].u == "bar"
        assert tc.visuals["P-1"].status == "alarm" and tc.visuals["PT-1"].label == "5.70 bar"
        assert tc.visuals["PIPE-1"].color is not None
        [event] = tc.events
        assert (event.kind, event.element, event.source, event.severity) == ("alarm_raised", "P-1", "PT-1", "alarm")
        assert tc.seq == await numbered(srv)


@pytest.mark.in_process_only("reads the hub's seq to see that nothing was numbered")
async def test_a_write_that_changes_nothing_sends_nothing(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http, TwinClient(srv.ws_url) as tc:
        await ingest(http, srv.url, pressure(3.0))
        await tc.wait_for(lambda c: PT in c.props)
        seq, deltas, first = srv.live.hub.seq, tc.deltas, tc.props[PT]
        await ingest(http, srv.url, pressure(3.0))  # same value, same quality: no change
        assert srv.live.hub.seq == seq  # no seq, no log entry, no window
        await ingest(http, srv.url, p.Reading(40.0, key="LT-1.level"))  # a fence that does change
        await tc.wait_for(lambda c: "LT-1/level" in c.props)
        assert tc.deltas == deltas + 1 and tc.props[PT] == first


def total(healths: list[dict], count: Callable[[dict], int]) -> int:
    """A count of the whole deployment: each process's /api/health counts its own."""
    return sum(count(h) for h in healths)


def not_finite(health: dict) -> int:
    return health["rejected"].get("not_finite", 0)


async def test_publisher_role_over_msgpack_with_acks_and_reasons(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        TwinClient(srv.ws_url) as viewer,
        TwinClient(srv.ws_url, role="publisher", encoding="msgpack") as pub,
    ):
        refused_before = total(await process_healths(srv), not_finite)  # a shared deployment's earlier tests'
        assert pub.welcome is not None and pub.welcome.encoding == "msgpack"
        ack = await pub.publish(
            [
                pressure(2.5),
                pressure(math.nan),
                p.Reading(1, key="NOPE"),
                p.Reading(True, element="P-1", prop="running"),
            ]
        )
        assert ack.accepted == 2
        assert [(r.index, r.reason) for r in ack.rejected] == [(1, "not_finite"), (2, "unbound_key")]
        await viewer.wait_for(lambda c: c.props.get(PT) is not None and "P-1/running" in c.props)
        assert viewer.props["P-1/running"].v is True
        error = await viewer._request(p.Publish([pressure(1.0)]), "error", 5)  # viewers may not publish
        assert error.code == p.ERR_FORBIDDEN and error.ref == "publish"
        error = await pub._request(p.Publish([pressure(1.0)] * (p.MAX_BATCH_READINGS + 1)), "error", 5)
        assert error.code == p.ERR_BATCH_TOO_LARGE
        healths = await process_healths(srv)
        assert total(healths, not_finite) == refused_before + 1
        assert total(healths, lambda h: h["publishers"]) == 1 and total(healths, lambda h: h["clients"]) == 1


@pytest.mark.fresh_twin
async def test_resume_delivers_exactly_what_was_missed(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        watcher = TwinClient(srv.ws_url)  # stays connected: the reference
        tc = TwinClient(srv.ws_url)
        await watcher.connect()
        await tc.connect()
        await ingest(http, srv.url, pressure(1.0))
        await tc.wait_for(lambda c: PT in c.props)
        await tc.drop()
        # While it is away: alarms raised and cleared (events), values overwritten (state).
        for value in (5.2, 5.8, 1.0, 5.9, 2.0, 3.3):
            await ingest(http, srv.url, pressure(value))
            await asyncio.sleep(0.02)  # separate flush windows
        await ingest(http, srv.url, p.Reading(50.0, key="LT-1.level"))
        await watcher.wait_for(lambda c: c.props.get("LT-1/level") is not None and c.props["LT-1/level"].v == 50.0)
        await tc.wait_for(lambda c: c.connects == 2 and c.seq == watcher.seq, timeout=10)
        assert tc.snapshots == 1  # resumed, not resynced
        assert_resumed(tc, watcher)
        assert [e.kind for e in tc.events] == [
            "alarm_raised",
            "alarm_raised",
            "alarm_returned",
            "alarm_raised",
            "alarm_returned",
        ]
        assert [a.state for a in tc.alarms.values()] == ["returned"]  # listed until someone acknowledges it
        await tc.close()
        await watcher.close()


@pytest.mark.in_process_only("shrinks the hub's resume log in place")
async def test_a_client_too_far_behind_gets_a_resync_snapshot(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        srv.live.hub.log = ResumeLog(max_changes=4)  # a tiny log, so a short absence is "too old"
        async with TwinClient(srv.ws_url) as tc:
            await tc.drop()
            for value in range(10):
                await ingest(http, srv.url, pressure(float(value)))
            await tc.wait_for(lambda c: c.connects == 2 and c.props.get(PT) == srv.live.hub.props[PT], timeout=10)
            assert tc.resyncs == ["too_old"]


@pytest.mark.in_process_only("restarts the server in place on its port")
async def test_server_restart_changes_epoch_and_resyncs_with_restored_state(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        port = srv.port
        tc = TwinClient(srv.ws_url)
        await tc.connect()
        await ingest(http, srv.url, pressure(4.4))
        await tc.wait_for(lambda c: PT in c.props)
        epoch = tc.epoch
        srv.store.flush()
    async with live_server(tmp_path, port=port) as srv2:
        assert srv2.live.hub.props[PT].v == 4.4  # restored from SQLite
        await tc.wait_for(lambda c: c.connects == 2, timeout=10)
        assert tc.epoch == srv2.live.hub.epoch != epoch
        assert tc.resyncs == ["epoch_changed"] and tc.props[PT].v == 4.4
        await tc.close()


async def test_unknown_versions_are_refused_with_a_clear_reason(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        with pytest.raises(TwinClientError) as err:
            await TwinClient(srv.ws_url, subprotocols=["twinview.v2"]).connect()
        assert err.value.code == p.CLOSE_VERSION
        assert (
            err.value.reason
            == "TwinView server speaks twinview.v1, twinview.v1.msgpack; this client offered twinview.v2"
        )
        async with connect(srv.ws_url, subprotocols=["twinview.v1"]) as ws:  # type: ignore[list-item]
            await ws.send(p.encode(p.Hello("old", "0.0.1", protocol=2), "json").decode())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == p.CLOSE_VERSION
        assert "speaks protocol 1; this client speaks 2" in closed.value.rcvd.reason


@pytest.mark.parametrize(
    "offer", [[p.SUBPROTOCOL_JSON, p.SUBPROTOCOL_MSGPACK], [p.SUBPROTOCOL_MSGPACK, p.SUBPROTOCOL_JSON]]
)
async def test_of_several_subprotocols_the_server_picks_by_its_own_order(tmp_path: Path, offer: list[str]) -> None:
    async with live_server(tmp_path) as srv, connect(srv.ws_url, subprotocols=offer) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == p.SUBPROTOCOL_JSON == next(iter(p.SUBPROTOCOLS))  # docs/PROTOCOL.md §1
        await ws.send(p.encode(p.Hello("both", "1"), "json").decode())
        assert isinstance(p.decode_server(await ws.recv(), "json"), p.Welcome)


async def test_a_frame_of_exactly_the_size_limit_is_accepted(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url) as tc:
        ping = p.encode(p.Ping(1.0), "json").decode()
        frame = ping[:-1] + " " * (p.MAX_MESSAGE_BYTES - len(ping)) + "}"  # JSON allows the padding
        assert len(frame.encode()) == p.MAX_MESSAGE_BYTES
        waiter = asyncio.ensure_future(tc._request_wait("pong", 10))
        await asyncio.sleep(0)
        await tc.send_raw(frame)
        assert (await waiter).t == 1.0 and tc.closed_with is None


async def test_bad_messages_get_error_frames_and_the_connection_stays(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url) as tc:
        for raw, needle in [
            ("{not json", "JSON"),
            ('{"type": "teleport"}', "teleport"),
            ('{"type": "subscribe"}', "layer"),
            ('{"type": "ping", "t": "soon"}', "t"),
        ]:
            waiter = asyncio.ensure_future(tc.next_error())
            await asyncio.sleep(0)
            await tc.send_raw(raw)
            error = await waiter
            assert error.code == p.ERR_BAD_MESSAGE and needle in error.message
        error = await tc._request(p.Subscribe("nope"), "error", 5)
        assert error.code == p.ERR_UNKNOWN_LAYER
        error = await tc._request(p.Hello("again", "1"), "error", 5)
        assert error.code == p.ERR_DUPLICATE_HELLO
        pong = await tc.ping()
        assert pong.server_time > 0


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_deeply_nested_frames_are_bad_messages_and_the_connection_stays(
    tmp_path: Path, encoding: p.Encoding
) -> None:
    depth = 100_000  # in an unknown field: ignored, but still decoded past
    raw: str | bytes = (
        '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"
        if encoding == "json"
        else b"\x82\xa4type\xa4ping\xa1x" + b"\x91" * depth + b"\x90"
    )
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url, encoding=encoding) as tc:
        waiter = asyncio.ensure_future(tc.next_error())
        await asyncio.sleep(0)
        await tc.send_raw(raw)
        error = await waiter
        assert error.code == p.ERR_BAD_MESSAGE and "nested too deeply" in error.message
        assert (await tc.ping()).server_time > 0
    async with live_server(tmp_path) as srv, connect(srv.ws_url, subprotocols=[p.SUBPROTOCOL_JSON]) as ws:  # type: ignore[list-item]
        await ws.send('{"type": "hello", "x": ' + "[" * depth + "]" * depth + "}")  # as the first message
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == p.CLOSE_POLICY
        assert "nested too deeply" in closed.value.rcvd.reason


async def test_deeply_nested_rest_bodies_answer_400(tmp_path: Path) -> None:
    nested = b'{"readings": [], "title": "t", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        async with http.post(f"{srv.url}/api/ingest", headers=JSON_BODY, data=nested) as r:
            assert r.status == 400 and "nested too deeply" in (await r.json())["detail"]
        url = f"{srv.url}/api/sessions/{session_id(srv)}/topics"
        headers = {"Authorization": f"Bearer {mint_token(srv, 'ana', 'annotator')}"}
        async with http.post(url, data=nested, headers={**headers, **JSON_BODY}) as r:
            assert r.status == 400 and "nested too deeply" in (await r.json())["detail"]
        async with http.get(f"{srv.url}/api/health") as r:
            assert r.status == 200


async def assert_closes(tmp_path: Path, first: str | bytes, code: int, reason: str) -> None:
    """Sent as the first frame, `first` closes the connection with `code` and a reason containing `reason`."""
    async with live_server(tmp_path) as srv, connect(srv.ws_url, max_size=None) as ws:
        await ws.send(first)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code
        assert reason in closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("first", "code", "reason"),
    [
        (p.encode(p.Ping(), "json").decode(), p.CLOSE_POLICY, "first message must be hello, not ping"),
        (b"\x81\xa4type\xa5hello", p.CLOSE_POLICY, "binary frame on a json session"),
    ],
    ids=["no-hello", "binary-on-json"],
)
async def test_protocol_violations_close_the_connection(
    tmp_path: Path, first: str | bytes, code: int, reason: str
) -> None:
    await assert_closes(tmp_path, first, code, reason)


@pytest.mark.in_process_only(
    "through HAProxy the 1009 close frame can be lost: aiohttp closes the socket with the oversize frame unread, "
    "and the reset can reach the proxy before the frame (docs/DEPLOY.md)"
)
async def test_an_oversize_frame_closes_the_connection_with_1009(tmp_path: Path) -> None:
    await assert_closes(tmp_path, "x" * (p.MAX_MESSAGE_BYTES + 1), p.CLOSE_TOO_BIG, "")


async def test_layer_switch_presence_and_leaving(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        aiohttp.ClientSession() as http,
        TwinClient(srv.ws_url, layer="energy", encoding="msgpack") as a,
        TwinClient(srv.ws_url) as b,
    ):
        assert set(a.visuals) == {"T-1"}
        await ingest(http, srv.url, p.Reading(97.0, key="LT-1.level"))
        await a.wait_for(lambda c: c.visuals["T-1"].status == "alarm")
        snap = await a.subscribe("operations")
        assert snap.layer == a.layer == "operations" and "T-1" not in a.visuals and "P-1" in a.visuals
        pose = p.Pose((1.0, 1.7, 4.0), (0.0, 0.0, 0.0, 1.0))
        await a.send_presence(pose)
        await b.wait_for(lambda c: any(pr.pose == pose for pr in c.presence.values()))
        assert a.welcome is not None and a.welcome.session_id in b.presence
        await a.close()
        await b.wait_for(lambda c: not c.presence)


@pytest.mark.in_process_only("shortens the hello timeout by patching the server's module")
async def test_silence_after_connect_is_closed_after_the_hello_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(p, "HELLO_TIMEOUT_S", 0.2)
    async with live_server(tmp_path) as srv, connect(srv.ws_url, subprotocols=[p.SUBPROTOCOL_MSGPACK]) as ws:  # type: ignore[list-item]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == p.CLOSE_POLICY
        assert "no hello within" in closed.value.rcvd.reason


@pytest.mark.in_process_only("shortens the rules tick by patching the server's module")
async def test_a_silent_source_raises_a_flatline_alarm_from_the_periodic_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve_mod, "RULES_TICK_S", 0.05)
    flatline = (
        "      - {kind: anomaly, element: LT-1, prop: level, target: T-1, detector: {kind: flatline, still_s: 0.3}}\n"
    )
    bindings = BINDINGS.replace("  energy:\n    rules:\n", "  energy:\n    rules:\n" + flatline)
    async with (
        live_server(tmp_path, bindings=bindings) as srv,
        aiohttp.ClientSession() as http,
        TwinClient(srv.ws_url, layer="energy") as tc,
    ):
        await ingest(http, srv.url, p.Reading(40.0, key="LT-1.level"))  # then silence
        await tc.wait_for(lambda c: any(e.kind == "alarm_raised" for e in c.events), timeout=5)
        [event] = tc.events
        assert (event.element, event.severity, "flatline" in event.message) == ("T-1", "warning", True)
        assert event.id in tc.alarms
        await tc.wait_for(lambda c: c.visuals["T-1"].anomaly is True)  # the visual follows the tick
