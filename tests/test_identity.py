"""Identity comes only from a verified token: anonymous visitors are unforgeable guests whose chosen names
are display names only (marked, unique), so nobody can act, or appear to act, as a token holder."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.live_server import JSON_BODY, live_server, mint_token, new_session, server_secret
from viewer_server import presenter as presenter_mod
from viewer_server import protocol as p
from viewer_server.auth import issue, verify
from viewer_server.client import RequestRefused, TwinClient, TwinClientError
from viewer_server.session_cli import SessionCliError, token

pytestmark = pytest.mark.deployable

TIMEOUT = 10.0


async def refused(request: object) -> p.Error:
    with pytest.raises(RequestRefused) as info:
        await request  # type: ignore[misc]
    return info.value.error


def visitor(url: str, room: str, name: str, **kw: object) -> TwinClient:
    return TwinClient(url, session=room, name=name, **kw)  # type: ignore[arg-type]


async def test_a_visitor_calling_itself_alice_cannot_act_or_pass_as_alice(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        room = await new_session(srv, "review", "annotator")
        alice_token = mint_token(srv, "alice", "annotator", session=room)
        async with (
            visitor(srv.ws_url, room, "alice") as fake,  # before alice is here: else its name is refused (see below)
            TwinClient(srv.ws_url, token=alice_token) as alice,
        ):
            assert (alice.welcome.user, alice.welcome.name, alice.welcome.token) == ("alice", "alice", "")
            assert fake.welcome.user.startswith("guest-") and fake.welcome.name == "alice (guest)"
            topic = await alice.create_topic(p.TopicDraft("alice's finding"))
            comment = await alice.add_comment(topic.guid, "mine")
            for attempt in (
                fake.update_topic(topic.guid, 1, title="hijacked"),
                fake.delete_topic(topic.guid, 1),
                fake.edit_comment(comment.guid, 1, "hijacked"),
                fake.delete_comment(comment.guid, 1),
            ):
                assert (await refused(attempt)).code == p.ERR_FORBIDDEN
            own = await fake.create_topic(p.TopicDraft("a visitor's finding"))
            await fake.update_topic(own.guid, 1, title="edited by its author")  # its own: allowed
            await fake.send_presence(p.Pose((1, 2, 3), (0, 0, 0, 1)))
            await alice.wait_for(lambda c: bool(c.presence) and own.guid in c.topics, TIMEOUT)
            [seen] = alice.presence.values()
            assert (seen.client, seen.user) == ("alice (guest)", fake.welcome.user)
            assert alice.topics[own.guid].author == fake.welcome.user
            assert (alice.topics[topic.guid].title, alice.topics[topic.guid].deleted) == ("alice's finding", False)
        headers = {"Authorization": f"Bearer {mint_token(srv, 'root', 'admin', session=room)}"}
        async with http.get(f"{srv.url}/api/sessions/{room}/audit", headers=headers) as r:
            rows = [(e["actor"], e["action"]) for e in await r.json()]
        assert ("alice", "topic.create") in rows and ("alice", "topic.edit_own") not in rows
        assert sorted(act for a, act in rows if a.startswith("guest-")) == ["topic.create", "topic.edit_own"]
        assert ("guests", "request.refused") in rows  # the refusals of visitors, summed up per address
        assert {a for a, _ in rows if a.startswith("guest-")} == {fake.welcome.user}


async def test_display_names_are_unique_in_the_session(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        room = await new_session(srv, "review", "viewer")
        ana = issue(server_secret(srv), room, "ana", "viewer", name="Ana Lopez")
        other_ana = issue(server_secret(srv), room, "ana.l", "viewer", name="ana lopez")
        async with (
            TwinClient(srv.ws_url, token=ana) as a1,
            TwinClient(srv.ws_url, token=ana) as a2,  # the same person in a second tab keeps the name
            TwinClient(srv.ws_url, token=other_ana) as b,
            visitor(srv.ws_url, room, "Bob") as g1,
            visitor(srv.ws_url, room, " \u200b\n") as g2,  # nothing printable: the default
            visitor(srv.ws_url, room, "") as g3,
        ):
            assert [c.welcome.name for c in (a1, a2, b)] == ["Ana Lopez", "Ana Lopez", "ana lopez (2)"]
            assert [c.welcome.name for c in (g1, g2, g3)] == ["Bob (guest)", "Visitor (guest)", "Visitor (guest) (2)"]


async def test_people_on_one_shared_link_get_the_names_they_give_or_numbered_defaults(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        room = await new_session(srv, "review", None)
        demo = issue(server_secret(srv), room, "annotator", "annotator")  # as `twinview demo` prints: no name claim
        async with (
            TwinClient(srv.ws_url, token=demo, name="Ana") as ana,
            TwinClient(srv.ws_url, token=demo, name="Ben") as ben,
            TwinClient(srv.ws_url, token=demo) as first,
            TwinClient(srv.ws_url, token=demo) as second,
        ):
            assert [c.welcome.name for c in (ana, ben, first, second)] == ["Ana", "Ben", "annotator", "annotator (2)"]
            assert {c.welcome.user for c in (ana, ben, first, second)} == {"annotator"}
            await ana.send_presence(p.Pose((0, 0, 0), (0, 0, 0, 1)))
            await ben.send_presence(p.Pose((1, 0, 0), (0, 0, 0, 1)))
            await first.wait_for(lambda c: len(c.presence) == 2, TIMEOUT)
            assert sorted((pr.client, pr.role) for pr in first.presence.values()) == [
                ("Ana", "annotator"),
                ("Ben", "annotator"),
            ]
            # A dropped connection comes back under its name, though the server may still hold the old one.
            await second.drop()
            await second.wait_for(lambda c: c.connects == 2, TIMEOUT)
            assert second.welcome.name == "annotator (2)"


async def test_a_name_that_is_a_role_someone_elses_or_marked_as_a_visitors_is_refused(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        room = await new_session(srv, "review", "annotator")
        shared = issue(server_secret(srv), room, "annotator", "annotator")
        async with (
            TwinClient(srv.ws_url, token=mint_token(srv, "alice", "annotator", session=room)),
            TwinClient(srv.ws_url, token=issue(server_secret(srv), room, "bob", "viewer", name="Bob Stone")),
            visitor(srv.ws_url, room, "Carol"),
        ):
            for name, token, why in [
                ("admin", None, "'admin' is a role, not a name: choose a name of your own"),
                ("Operator", shared, "'Operator' is a role, not a name"),
                ("ALICE", None, "'ALICE' is the name of someone in this session: choose another name"),
                ("bob stone", None, "is the name of someone in this session"),
                ("bob", shared, "is the name of someone in this session"),
                ("carol", None, "is the name of someone in this session"),
                ("Carol (guest)", shared, "'(guest)' marks visitors without a link: choose another name"),
            ]:
                with pytest.raises(TwinClientError) as info:
                    async with TwinClient(srv.ws_url, session=room, token=token, name=name, reconnect=False):
                        pass
                assert info.value.code == p.CLOSE_NAME and why in info.value.reason, (name, info.value.reason)
            async with TwinClient(srv.ws_url, token=shared, name="annotator") as own:  # its own user id: fine
                assert own.welcome.name == "annotator"


async def test_a_visitor_keeps_its_identity_across_a_reconnect_and_cannot_forge_one(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        room = await new_session(srv, "review", "annotator")
        async with visitor(srv.ws_url, room, "Eve") as eve:
            me = eve.welcome.user
            assert verify(server_secret(srv), eve.welcome.token, session=room).user == me
            topic = await eve.create_topic(p.TopicDraft("mine"))
            await eve.drop()
            await eve.wait_for(lambda c: c.connects == 2, TIMEOUT)
            assert (eve.welcome.user, eve.welcome.name) == (me, "Eve (guest)")
            await eve.update_topic(topic.guid, 1, title="still mine")
        forged = issue(b"not the server's secret" * 2, room, me, "annotator")
        with pytest.raises(TwinClientError) as info:
            async with TwinClient(srv.ws_url, token=forged, reconnect=False):
                pass
        assert (info.value.code, info.value.reason) == (p.CLOSE_AUTH, "bad token signature")


@pytest.mark.in_process_only("issues tokens with the CLI on the server's data dir")
async def test_rest_visitors_are_guests_and_tokens_cannot_be_issued_as_guests(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        room = await new_session(srv, "review", "annotator")
        base = f"{srv.url}/api/sessions/{room}"
        authors = []
        for title in ("one", "two"):
            async with http.post(f"{base}/topics", headers=JSON_BODY, data=p.encode(p.TopicDraft(title), "json")) as r:
                assert r.status == 201
        async with http.get(f"{base}/topics") as r:
            authors = [t["author"] for t in await r.json()]
        assert all(a.startswith("guest-") for a in authors) and len(set(authors)) == 2
        admin = {"Authorization": f"Bearer {mint_token(srv, 'root', 'admin', session=room)}"}
        for body, problem in [
            ({"user": "guest-0123456789ab", "role": "admin"}, "names anonymous visitors"),
            ({"user": "eve", "role": "admin", "name": "Eve (guest)"}, "marks anonymous visitors"),
            ({"user": "eve", "role": "admin", "name": "x" * 65}, "at most 64"),
        ]:
            async with http.post(f"{base}/tokens", data=p.encode(body, "json"), headers={**admin, **JSON_BODY}) as r:
                assert r.status == 400 and problem in (await r.json())["detail"]
        body = p.encode({"user": "eve", "role": "viewer", "name": "Eve Adams"}, "json")
        async with http.post(f"{base}/tokens", data=body, headers={**admin, **JSON_BODY}) as r:
            issued = await r.json()
        assert issued["name"] == "Eve Adams" and verify(server_secret(srv), issued["token"]).name == "Eve Adams"
    data_dir = tmp_path / "data"
    with pytest.raises(SessionCliError, match="names anonymous visitors"):
        token(data_dir, room, user="Guest-1", role="admin", ttl="1h")
    link = token(data_dir, room, user="eve", role="viewer", ttl="1h", name="Eve A.")
    claims = verify(server_secret(srv), link.split("token=")[1])
    assert (claims.user, claims.name) == ("eve", "Eve A.")


@pytest.mark.in_process_only("lowers the visitors' hand bound by patching the server's module")
async def test_the_hand_queue_takes_one_hand_per_person_and_few_from_visitors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presenter_mod, "MAX_GUEST_HANDS", 2)
    async with live_server(tmp_path) as srv:
        room = await new_session(srv, "review", "viewer")
        ann = mint_token(srv, "ann", "viewer", session=room)
        clients = [visitor(srv.ws_url, room, f"v{i}") for i in range(3)]
        clients += [TwinClient(srv.ws_url, token=ann), TwinClient(srv.ws_url, token=ann)]
        for c in clients:
            await c.connect()
        try:
            *guests, ann1, ann2 = clients
            for count, g in enumerate(guests[:2], 1):
                await g.send(p.HandRaise())
                await ann1.wait_for(lambda c, n=count: c.presenter is not None and len(c.presenter.hands) == n, TIMEOUT)
            await guests[2].send(p.HandRaise())
            await guests[2].wait_for(lambda c: any(e.code == "too_many_hands" for e in c.errors), TIMEOUT)
            await ann1.send(p.HandRaise())
            await ann2.send(p.HandRaise())  # the same person from another tab: still one hand
            await ann2.wait_for(lambda c: c.presenter is not None and len(c.presenter.hands) == 3, TIMEOUT)
            await ann2.ping()
            hands = ann2.presenter.hands  # type: ignore[union-attr]
            assert [h.name for h in hands] == ["v0 (guest)", "v1 (guest)", "ann"]
            await ann2.send(p.HandLower())  # lowers ann's hand whichever tab raised it
            await ann1.wait_for(lambda c: c.presenter is not None and len(c.presenter.hands) == 2, TIMEOUT)
        finally:
            for c in clients:
                await c.close()


def test_a_resuming_hello_takes_back_its_name_while_the_server_still_holds_the_old_connection() -> None:
    from viewer_server.rooms import Rooms, admit

    secret = b"s" * 32
    rooms = Rooms(None, "scene")
    shared = issue(secret, "scene", "annotator", "annotator")

    def hello(name: str = "", resume: bool = False, token: str | None = shared) -> p.Hello:
        return p.Hello("test", "1", token=token, name=name, resume=p.Resume("e", 1) if resume else None)

    first = admit(rooms, secret, hello(), "c1")
    rooms.join(first)
    ghost = admit(rooms, secret, hello(), "c2")  # a second person on the link, whose socket then drops
    rooms.join(ghost)
    assert (first.name, ghost.name) == ("annotator", "annotator (2)")
    back = admit(rooms, secret, hello(ghost.name, resume=True), "c3")
    assert back.name == "annotator (2)"  # the server has not noticed the drop yet: the name is still its own
    third = admit(rooms, secret, hello(ghost.name), "c4")  # a new person asking for it is somebody else
    assert third.name == "annotator (2) (2)"
    visitor = admit(rooms, secret, hello("Eve", token=None), "c5")
    rooms.join(visitor)
    again = admit(rooms, secret, hello(visitor.name, resume=True, token=visitor.guest_token), "c6")
    assert (visitor.name, again.name, again.user) == ("Eve (guest)", "Eve (guest)", visitor.user)  # mark not doubled
