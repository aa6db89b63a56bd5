"""Sessions as rooms on one scene: created over REST or the CLI, joined by link, each with its own people."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.live_server import JSON_BODY, live_server, mint_token
from viewer_server import cli
from viewer_server import protocol as p
from viewer_server.auth import load_secret, verify
from viewer_server.client import TwinClient
from viewer_server.permissions import PERSONS
from viewer_server.session_cli import demo_links

pytestmark = pytest.mark.deployable

PRESSURE = p.Reading(3.3, key="PT-1.pressure")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.in_process_only("lists every session of the scene and reads their members inside the server")
async def test_an_admin_creates_a_session_and_issues_links_that_join_it(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        admin = _bearer(mint_token(srv, "root", "admin"))
        body = p.encode({"id": "shift-b", "name": "Night shift"}, "json")
        async with http.post(f"{srv.url}/api/sessions", data=body, headers={**admin, **JSON_BODY}) as r:
            assert r.status == 201 and (await r.json())["anonymous_role"] is None
        async with http.post(f"{srv.url}/api/sessions", data=body, headers={**admin, **JSON_BODY}) as r:
            assert r.status == 409
        request = p.encode({"user": "ana", "role": "annotator", "ttl_s": 600}, "json")
        async with http.post(
            f"{srv.url}/api/sessions/shift-b/tokens", data=request, headers={**admin, **JSON_BODY}
        ) as r:
            issued = await r.json()
        query = parse_qs(urlsplit(issued["link"]).query)
        assert query["session"] == ["shift-b"] and query["token"] == [issued["token"]]
        async with TwinClient(srv.ws_url, session="shift-b", token=issued["token"]) as ana:
            assert (ana.welcome.session, ana.welcome.user, ana.welcome.role) == ("shift-b", "ana", "annotator")
            assert [m.user for m in srv.live.rooms.members("shift-b")] == ["ana"]
        async with http.get(f"{srv.url}/api/sessions") as r:  # anonymous: only sessions open to visitors
            assert [s["id"] for s in await r.json()] == [srv.live.scene.id]
        async with http.get(f"{srv.url}/api/sessions", headers=admin) as r:
            assert sorted(s["id"] for s in await r.json()) == sorted([srv.live.scene.id, "shift-b"])


@pytest.mark.in_process_only("reads the sessions' members inside the server")
async def test_sessions_share_the_twin_but_not_people_or_topics(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        for room in ("review", "training"):
            await srv.live.rooms.create(room, room.title(), None, "test")
        clients = {
            (room, user): TwinClient(srv.ws_url, token=mint_token(srv, user, "annotator", session=room), name=user)
            for room in ("review", "training")
            for user in ("ana", "ben")
        }
        for c in clients.values():
            await c.connect()
        try:
            await clients["review", "ana"].send_presence(p.Pose((1, 2, 3), (0, 0, 0, 1)))
            made = await clients["review", "ana"].create_topic(p.TopicDraft("review finding"))
            async with http.post(
                f"{srv.url}/api/ingest", headers=JSON_BODY, data=p.encode({"readings": [PRESSURE]}, "json")
            ) as r:
                assert r.status == 200
            for c in clients.values():  # the twin is shared by all sessions
                await c.wait_for(lambda c: "PT-1/pressure" in c.props)
            await clients["review", "ben"].wait_for(lambda c: made.guid in c.topics and c.presence)
            assert [pr.client for pr in clients["review", "ben"].presence.values()] == ["ana"]
            for user in ("ana", "ben"):
                await clients["training", user].ping()
                assert clients["training", user].topics == {} and clients["training", user].presence == {}
            assert sorted(m.user for m in srv.live.rooms.members("training")) == ["ana", "ben"]
        finally:
            for c in clients.values():
                await c.close()
        assert srv.live.rooms.members("review") == []


async def test_leaving_removes_presence_for_the_others(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url, name="stay") as stay:
        async with TwinClient(srv.ws_url, name="go") as go:
            await go.send_presence(p.Pose((0, 0, 0), (0, 0, 0, 1)))
            await stay.wait_for(lambda c: len(c.presence) == 1)
        await stay.wait_for(lambda c: not c.presence)  # no ghost after a disconnect


@pytest.mark.in_process_only("the CLI works on the server's data dir, between two runs of it")
def test_the_cli_creates_sessions_prints_links_and_lists_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    async def run_once() -> str:
        async with live_server(tmp_path) as srv:
            return srv.live.scene.id

    scene = asyncio.run(run_once())  # leaves a data dir with a store, a scene and a secret
    data = ["--data-dir", str(tmp_path / "data")]
    assert cli.main(["session", "create", "audit-2026", "--anonymous-role", "viewer", *data]) == 0
    assert "created session audit-2026 on scene " + scene in capsys.readouterr().out
    assert cli.main(["session", "create", "audit-2026", *data]) == 2  # exists
    assert (
        cli.main(["session", "token", "audit-2026", "--user", "ana", "--role", "operator", "--ttl", "2h", *data]) == 0
    )
    link = capsys.readouterr().out.strip()
    assert link.startswith("/?session=audit-2026&token=")
    assert cli.main(["session", "token", "nope", "--user", "ana", "--role", "viewer", *data]) == 2
    assert cli.main(["session", "list", *data]) == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted([scene, "audit-2026"])

    async def join() -> tuple[str, str, str]:
        async with live_server(tmp_path) as srv:
            token = parse_qs(urlsplit(link).query)["token"][0]
            async with TwinClient(srv.ws_url, token=token) as c:
                return c.welcome.session, c.welcome.user, c.welcome.role

    assert asyncio.run(join()) == ("audit-2026", "ana", "operator")  # same secret after a restart

    links = demo_links(tmp_path / "data", scene, "http://127.0.0.1:8800/")
    assert sorted(links) == sorted(PERSONS)
    for role, link in links.items():
        assert link.startswith(f"http://127.0.0.1:8800/?session={scene}&token=")
        claims = verify(load_secret(tmp_path / "data"), parse_qs(urlsplit(link).query)["token"][0], session=scene)
        assert claims.role == role


@pytest.mark.in_process_only("races two creations inside the server")
async def test_creating_the_same_session_twice_at_once_creates_it_once(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        results = await asyncio.gather(
            *(srv.live.rooms.create("race", "Race", None, f"admin{i}") for i in range(2)), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["RoomRow", "ValueError"]
        assert [r.id for r in srv.store.rooms()].count("race") == 1
