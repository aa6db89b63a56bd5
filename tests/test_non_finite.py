"""Non-finite numbers never enter: every message carrying NaN or ±infinity is refused with a typed error and
changes nothing; rows an older version stored with them are skipped at load; the Python client survives
any frame a server sends."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.live_server import JSON_BODY, get_json, live_server, mint_token, person, session_id
from viewer_server import cli
from viewer_server import protocol as p
from viewer_server.client import TwinClient, TwinClientError
from viewer_server.store import STORE_FILE
from viewer_server.topics import Camera, ClippingPlane

pytestmark = pytest.mark.deployable

NAN, INF = math.nan, math.inf
CAMERA = Camera(p.Vec3(5, 2, 1), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0))
PIN = p.Pin("P-1", p.Vec3(1, 2, 3), p.Vec3(0, 1, 0))
TIMEOUT = 10.0


def nan_messages() -> list[tuple[object, str]]:
    """Every kind of client message that carries a coordinate or a number, each with one NaN or ±inf, and
    the path msgspec names in its error."""
    bad_camera = Camera(p.Vec3(5, NAN, 1), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0))
    bad_plane = ClippingPlane(p.Vec3(0, 0, 0), p.Vec3(0, INF, 0))
    bad_fov = Camera(CAMERA.position, CAMERA.direction, CAMERA.up, fov_deg=NAN)
    return [
        (p.PresenceUpdate(p.Pose((NAN, 1.6, 3.0), (0, 0, 0, 1))), "$.pose.position[0]"),
        (p.PresenceUpdate(p.Pose((0, 1.6, 3.0), (0, 0, -INF, 1))), "$.pose.quaternion[2]"),
        (p.TopicCreate(p.TopicDraft("pin", pin=p.Pin("P-1", p.Vec3(1, NAN, 3), p.Vec3(0, 1, 0)))), "$.topic.pin"),
        (p.TopicCreate(p.TopicDraft("view", viewpoints=[p.Viewpoint("v1", bad_camera)])), "$.topic.viewpoints[0]"),
        (p.TopicCreate(p.TopicDraft("cut", viewpoints=[p.Viewpoint("v2", CAMERA, [bad_plane])])), "clipping_planes"),
        (p.TopicCreate(p.TopicDraft("fov", viewpoints=[p.Viewpoint("v3", bad_fov)])), "fov_deg"),
        (p.Markup("P-1", (1.0, -INF, 2.0), "here"), "$.point[1]"),
        (p.Command("P-1", "speed", NAN), "$.value"),
        (p.PresenterView(p.Viewpoint("v4", bad_camera)), "$.viewpoint.camera"),
        (p.Ping(INF), "$.t"),
    ]  # fmt: skip


async def test_every_message_with_a_non_finite_number_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        aiohttp.ClientSession() as http,
        TwinClient(srv.ws_url, token=mint_token(srv, "olga", "operator"), name="olga", encoding="msgpack") as olga,
        person(srv, "vic", "viewer") as vic,  # JSON: a NaN fanned out would reach it as null
    ):
        for count, (message, where) in enumerate(nan_messages(), 1):
            await olga.send(message)
            await olga.wait_for(lambda c, n=count: len(c.errors) >= n, TIMEOUT)
            error = olga.errors[-1]
            assert error.code == p.ERR_BAD_MESSAGE and where in error.message, (message, error)
        assert await vic.ping() and await olga.ping()  # both connections are alive and well
        assert vic.presence == {} and vic.topics == {} and vic.bad_frames == 0
        assert await get_json(srv, f"/api/sessions/{session_id(srv)}/topics") == []
        # REST: JSON has no NaN, and a number that overflows to infinity is refused whole.
        body = b'{"title": "far", "pin": {"element": "P-1", "point": [1, 1e999, 3], "normal": [0, 1, 0]}}'
        headers = {"Authorization": f"Bearer {mint_token(srv, 'olga', 'operator')}"}
        async with http.post(
            f"{srv.url}/api/sessions/{session_id(srv)}/topics", data=body, headers={**headers, **JSON_BODY}
        ) as r:
            assert r.status == 400 and (await r.json())["error"] == p.ERR_BAD_MESSAGE


def _poison(db_path: Path, session: str) -> None:
    """What an older version left behind: NaN written by msgspec's JSON encoder as null, a damaged row."""
    db = sqlite3.connect(db_path)
    pin = {"element": "P-1", "point": [1.0, None, 3.0], "normal": [0.0, 1.0, 0.0]}
    topic = {"guid": "old-nan", "title": "old", "author": "ana", "created": 1.0, "pin": pin}
    db.execute("INSERT INTO topics VALUES (?, ?, 1, ?)", (session, "old-nan", msgspec.json.encode(topic)))
    db.execute("INSERT INTO topics VALUES (?, 'broken', 1, ?)", (session, b"{not json"))
    comment = {"guid": "c-nan", "topic": "old-nan", "author": "ana", "text": "x", "created": None}
    db.execute("INSERT INTO comments VALUES (?, 'c-nan', 'old-nan', 1, ?)", (session, msgspec.json.encode(comment)))
    viewpoint = {"guid": "v", "camera": {"position": [None, 0, 0], "direction": [0, 0, -1], "up": [0, 1, 0]}}
    event = {"seq": 1, "kind": "procedure_step", "id": "run", "element": "", "ts": 1.0, "viewpoint": viewpoint}
    db.execute(
        "INSERT INTO procedure_events (session, run, ts, kind, data) VALUES (?, 'run', 1, 'procedure_step', ?)",
        (session, msgspec.json.encode(event)),
    )
    db.execute("INSERT OR REPLACE INTO props VALUES (?, 'LT-1', 'level', 'null', '%', 1, 1, 'good')", (session,))
    db.commit()
    db.close()


@pytest.mark.in_process_only("writes rows of an older version into the server's SQLite file")
async def test_rows_an_older_version_stored_with_nan_are_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "annotator") as ana:
        kept = await ana.create_topic(p.TopicDraft("kept", pin=PIN))
        session = srv.live.scene.id
    _poison(tmp_path / "data" / STORE_FILE, session)
    caplog.set_level(logging.WARNING, "viewer_server.store")
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http, person(srv, "ben", "viewer") as ben:
        assert list(ben.topics) == [kept.guid] and ben.comments == {}  # the join works and shows the good rows
        assert "LT-1/level" not in ben.props
        async with http.get(f"{srv.url}/api/sessions/{session}/topics") as r:
            assert r.status == 200 and [t["guid"] for t in await r.json()] == [kept.guid]
    skipped = " ".join(r.getMessage() for r in caplog.records)
    for what in ("topics row old-nan", "topics row broken", "comments row c-nan", "procedure_events row", "LT-1/level"):
        assert what in skipped
    out = tmp_path / "out.bcf"
    assert cli.main(["bcf", "export", session, "-o", str(out), "--data-dir", str(tmp_path / "data")]) == 0
    assert out.stat().st_size > 0


# --- the Python client survives whatever a server sends --------------------------------------------


async def _hostile_server(ws: ServerConnection) -> None:
    """Says welcome and a snapshot, then garbage of every kind, then one good delta."""
    await ws.recv()  # hello
    welcome = p.Welcome("s1", "e1", 0, "0", 1, "msgpack", "scene", "ops", ["ops"], [], {})
    snapshot = p.Snapshot(0, "e1", "scene", "ops", "/g", "/m", {}, {}, [])
    for message in (welcome, snapshot):
        await ws.send(p.encode(message, "msgpack"))
    presence = {"type": "delta", "first": 1, "last": 1, "presence": {"x": {"client": "x", "ts": 1.0,
                "pose": {"position": [NAN, 0, 0], "quaternion": [0, 0, 0, 1]}}}}  # fmt: skip
    for frame in (
        b"\xc1 not msgpack",
        msgspec.msgpack.encode(presence),
        msgspec.msgpack.encode({"type": "teleport", "to": "mars"}),
        msgspec.msgpack.encode([[[[[[[[[[]]]]]]]]]] * 3),
        b"\x91" * 5000 + b"\x90",  # nested deeper than any decoder recursion
        "a text frame on a msgpack connection",
        msgspec.msgpack.encode({"type": "delta", "first": "one"}),
    ):
        await ws.send(frame)
    good = p.Delta(1, 2, props={"PT-1/pressure": p.PropState(4.2, 1.0)})
    await ws.send(p.encode(good, "msgpack"))
    await ws.wait_closed()


@pytest.fixture
async def hostile_url() -> AsyncIterator[str]:
    async with serve(_hostile_server, "127.0.0.1", 0, subprotocols=[p.SUBPROTOCOL_MSGPACK]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


async def test_the_client_skips_frames_it_cannot_read_and_keeps_mirroring(
    hostile_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with TwinClient(hostile_url, encoding="msgpack", reconnect=False) as tc:
        await tc.wait_for(lambda c: "PT-1/pressure" in c.props, TIMEOUT)
        assert tc.bad_frames == 7 and tc.seq == 2 and tc.closed_with is None
        assert not tc._reader.done()  # type: ignore[union-attr]
    assert sum("server frame skipped" in r.getMessage() for r in caplog.records) == 7


async def test_a_server_that_answers_hello_with_garbage_is_a_connection_error() -> None:
    async def garbage(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(b"\xc1")
        await ws.wait_closed()

    async with serve(garbage, "127.0.0.1", 0, subprotocols=[p.SUBPROTOCOL_MSGPACK]) as server:  # type: ignore[list-item]
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(TwinClientError, match="undecodable server frame"):
            await asyncio.wait_for(TwinClient(f"ws://127.0.0.1:{port}", encoding="msgpack").connect(), TIMEOUT)
