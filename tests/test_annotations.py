"""Annotations against a real server: live fan-out, late joiners, resume, revisions, ownership, audit, limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgspec
import pytest

from tests.live_server import (
    JSON_BODY,
    Served,
    eventually,
    get_json,
    live_server,
    mint_token,
    new_session,
    numbered,
    session_id,
    store_rows,
)
from viewer_server import annotations as annotations_mod
from viewer_server import protocol as p
from viewer_server.audit import REFUSED
from viewer_server.client import RequestRefused, TwinClient
from viewer_server.store_db import Db, StoreError
from viewer_server.topics import (
    MAX_ATTACHMENT_BYTES,
    MAX_CLIPPING_PLANES,
    MAX_TEXT,
    MAX_TITLE,
    MAX_VIEWPOINT_IDS,
    Camera,
    ClippingPlane,
    ColoredComponents,
    Measurement,
    Topic,
)

pytestmark = pytest.mark.deployable

PIN = p.Pin("PT-1", p.Vec3(1.0, 2.0, 3.0), p.Vec3(0.0, 1.0, 0.0))


def client(srv: Served, user: str, role: p.Role, **kw: object) -> TwinClient:
    return TwinClient(srv.ws_url, token=mint_token(srv, user, role), name=user, **kw)  # type: ignore[arg-type]


async def topics(srv: Served) -> list[Topic]:
    """The test session's topics as REST reads them (anonymous visitors of the session may)."""
    return msgspec.convert(await get_json(srv, f"/api/sessions/{session_id(srv)}/topics"), list[Topic])


async def refused(request: object) -> p.Error:
    with pytest.raises(RequestRefused) as info:
        await request  # type: ignore[misc]
    return info.value.error


async def test_create_comment_resolve_are_seen_live_by_every_client(tmp_path: Path, store_url: str | None) -> None:
    async with live_server(tmp_path, store=store_url) as srv, aiohttp.ClientSession() as http:
        body = p.encode({"readings": [p.Reading(4.2, key="PT-1.pressure")]}, "json")
        async with http.post(f"{srv.url}/api/ingest", headers=JSON_BODY, data=body) as r:
            assert r.status == 200
        async with (
            client(srv, "ana", "annotator") as ana,
            client(srv, "ben", "presenter") as ben,
            client(srv, "carl", "viewer") as carl,
        ):
            assert (ana.welcome.user, ana.welcome.role, ana.welcome.session) == ("ana", "annotator", session_id(srv))
            await ana.wait_for(lambda c: c.props["PT-1/pressure"].v == 4.2)  # ana's process has applied the reading
            saved = await ana.create_topic(p.TopicDraft("Leak <b>at</b> flange", "drips", pin=PIN, labels=["leak"]))
            assert (saved.kind, saved.revision) == ("topic_created", 1)
            for c in (ana, ben, carl):
                await c.wait_for(lambda c: saved.guid in c.topics)
            topic = carl.topics[saved.guid]
            assert topic.title == "Leak <b>at</b> flange"  # stored as given
            assert topic.author == "ana" and topic.pin == PIN
            assert [(v.prop, v.value, v.unit) for v in topic.live_values] == [("pressure", 4.2, "bar")]

            said = await ben.add_comment(saved.guid, "On it")
            done = await ben.update_topic(saved.guid, 1, status="resolved", assignee="ben")
            for c in (ana, ben, carl):
                await c.wait_for(lambda c: c.topics[saved.guid].revision == 2 and said.guid in c.comments)
            assert carl.topics[saved.guid].status == "resolved" and carl.topics[saved.guid].assignee == "ben"
            assert carl.comments[said.guid].text == "On it" and carl.comments[said.guid].author == "ben"
            kinds = [e.kind for e in carl.events if e.session]
            assert kinds == ["topic_created", "comment_added", "topic_updated"]
            assert done.seq > said.seq > saved.seq
            assert carl.duplicate_events == 0


async def test_a_late_joiner_gets_every_topic_and_comment_in_the_snapshot(
    tmp_path: Path, store_url: str | None
) -> None:
    async with live_server(tmp_path, store=store_url) as srv, client(srv, "ana", "annotator") as ana:
        guids = [(await ana.create_topic(p.TopicDraft(f"T{i}"))).guid for i in range(5)]
        await ana.add_comment(guids[0], "first")
        async with client(srv, "late", "viewer") as late:
            assert late.snapshots == 1
            assert sorted(late.topics) == sorted(guids) and len(late.comments) == 1


async def test_sessions_do_not_see_each_others_topics_or_presence(tmp_path: Path, store_url: str | None) -> None:
    async with live_server(tmp_path, store=store_url) as srv:
        review = await new_session(srv, "review")
        token = mint_token(srv, "ana", "annotator", session=review)
        async with (
            TwinClient(srv.ws_url, token=token) as in_review,
            client(srv, "bob", "annotator") as in_default,
        ):
            assert in_review.welcome.session == review
            await in_default.create_topic(p.TopicDraft("default only"))
            mine = await in_review.create_topic(p.TopicDraft("review only"))
            await in_review.send_presence(p.Pose((0, 1, 2), (0, 0, 0, 1)))
            await in_review.wait_for(lambda c: mine.guid in c.topics)
            # Both have applied everything the scene numbered so far: what they hold now is all they get.
            done = await numbered(srv)
            await in_default.wait_for(lambda c: c.seq >= done)
            await in_review.wait_for(lambda c: c.seq >= done)
            assert list(in_review.topics) == [mine.guid]
            assert [t.title for t in in_default.topics.values()] == ["default only"]
            assert in_default.presence == {}


async def test_resume_after_a_drop_gets_exactly_the_missed_annotation_events(
    tmp_path: Path, store_url: str | None
) -> None:
    async with (
        live_server(tmp_path, store=store_url) as srv,
        client(srv, "ana", "annotator") as ana,
        client(srv, "carl", "viewer") as carl,
    ):
        first = await ana.create_topic(p.TopicDraft("before"))
        await carl.wait_for(lambda c: first.guid in c.topics)
        await carl.drop()
        missed = [await ana.add_comment(first.guid, f"c{i}") for i in range(3)]
        await carl.wait_for(lambda c: c.connects == 2 and all(m.guid in c.comments for m in missed), timeout=10)
        assert carl.snapshots == 1 and carl.resyncs == []  # resumed, not resynced
        assert [e.kind for e in carl.events if e.session] == ["topic_created"] + ["comment_added"] * 3
        assert carl.duplicate_events == 0


async def test_two_edits_on_the_same_revision_one_wins_the_other_is_stale(
    tmp_path: Path, store_url: str | None
) -> None:
    async with (
        live_server(tmp_path, store=store_url) as srv,
        client(srv, "ana", "annotator") as ana,
        client(srv, "ben", "admin") as ben,
    ):
        saved = await ana.create_topic(p.TopicDraft("race"))
        results = await asyncio.gather(
            ana.update_topic(saved.guid, 1, status="in_progress"),
            ben.update_topic(saved.guid, 1, status="closed"),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, p.Saved)]
        losses = [r.error for r in results if isinstance(r, RequestRefused)]
        assert len(wins) == 1 and len(losses) == 1
        assert losses[0].code == p.ERR_STALE_REVISION and losses[0].revision == 2
        await eventually(lambda: topics(srv), lambda ts: [t.revision for t in ts] == [2])


async def test_an_edit_claiming_a_future_revision_is_refused_like_a_stale_one(
    tmp_path: Path, store_url: str | None
) -> None:
    async with live_server(tmp_path, store=store_url) as srv, client(srv, "ana", "annotator") as ana:
        topic = await ana.create_topic(p.TopicDraft("now at revision 1"))
        comment = await ana.add_comment(topic.guid, "also at 1")
        for attempt in (
            ana.update_topic(topic.guid, 2, title="from the future"),
            ana.delete_topic(topic.guid, 99),
            ana.edit_comment(comment.guid, 2, "from the future"),
            ana.delete_comment(comment.guid, 2),
        ):
            error = await refused(attempt)
            assert (error.code, error.revision) == (p.ERR_STALE_REVISION, 1)
        [stored] = await topics(srv)
        assert (stored.title, stored.revision, stored.deleted) == ("now at revision 1", 1, False)
        [said] = await get_json(srv, f"/api/sessions/{session_id(srv)}/topics/{topic.guid}/comments")
        assert said["text"] == "also at 1"


async def test_own_items_only_and_admin_moderation_is_audited(tmp_path: Path, store_url: str | None) -> None:
    async with (
        live_server(tmp_path, store=store_url) as srv,
        client(srv, "ana", "annotator") as ana,
        client(srv, "bob", "annotator") as bob,
        client(srv, "root", "admin") as admin,
    ):
        topic = await ana.create_topic(p.TopicDraft("ana's"))
        comment = await ana.add_comment(topic.guid, "ana says")
        assert (await refused(bob.edit_comment(comment.guid, 1, "hijack"))).code == p.ERR_FORBIDDEN
        assert (await refused(bob.delete_comment(comment.guid, 1))).code == p.ERR_FORBIDDEN
        assert (await refused(bob.update_topic(topic.guid, 1, title="mine now"))).code == p.ERR_FORBIDDEN
        assert (await refused(bob.delete_topic(topic.guid, 1))).code == p.ERR_FORBIDDEN
        await bob.update_topic(topic.guid, 1, status="in_progress")  # topic.update: any topic's status
        await ana.edit_comment(comment.guid, 1, "ana says, edited")
        await admin.edit_comment(comment.guid, 2, "[removed by moderator]")
        await admin.delete_topic(topic.guid, 2)
        await ana.wait_for(lambda c: c.topics[topic.guid].deleted)
        assert ana.comments[comment.guid].text == "[removed by moderator]"
        assert (await refused(ana.add_comment(topic.guid, "too late"))).code == p.ERR_NOT_FOUND

        admin_token = mint_token(srv, "root", "admin")

        async def changes() -> list[dict]:  # refusals are summarised per connection, when it closes
            trail = await get_json(srv, f"/api/sessions/{session_id(srv)}/audit", admin_token)
            return [e for e in reversed(trail) if e["action"] != REFUSED]

        rows = await eventually(changes, lambda rows: len(rows) == 6)
        assert [(e["actor"], e["action"]) for e in rows] == [
            ("ana", "topic.create"),
            ("ana", "comment.create"),
            ("bob", "topic.update"),
            ("ana", "comment.edit_own"),
            ("root", "comment.moderate"),
            ("root", "topic.moderate"),
        ]
        assert "author 'ana'" in rows[4]["detail"] and "status: 'open' -> 'in_progress'" in rows[2]["detail"]


async def test_text_limits_are_enforced_and_named(tmp_path: Path, store_url: str | None) -> None:
    async with live_server(tmp_path, store=store_url) as srv, client(srv, "ana", "annotator") as ana:
        error = await refused(ana.create_topic(p.TopicDraft("x" * (MAX_TITLE + 1))))
        assert (error.code, error.field) == (p.ERR_TOO_LONG, "title")
        topic = await ana.create_topic(p.TopicDraft("x" * MAX_TITLE, "d" * MAX_TEXT))
        error = await refused(ana.add_comment(topic.guid, "y" * (MAX_TEXT + 1)))
        assert (error.code, error.field) == (p.ERR_TOO_LONG, "text")
        error = await refused(ana.create_topic(p.TopicDraft("  ")))
        assert (error.code, error.field) == (p.ERR_BAD_MESSAGE, "title")
        error = await refused(ana.create_topic(p.TopicDraft("pin", pin=p.Pin("NOPE", PIN.point, PIN.normal))))
        assert error.code == p.ERR_NOT_FOUND


async def test_viewpoint_lists_name_scene_elements_and_are_bounded(tmp_path: Path, store_url: str | None) -> None:
    camera = Camera(p.Vec3(5, 2, 1), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0))

    def draft(*viewpoints: p.Viewpoint) -> p.TopicDraft:
        return p.TopicDraft("seen", viewpoints=list(viewpoints))

    async with live_server(tmp_path, store=store_url) as srv, client(srv, "ana", "annotator") as ana:
        error = await refused(ana.create_topic(draft(p.Viewpoint("v1", camera, selected=["P-1", "NOPE"]))))
        assert (error.code, error.field) == (p.ERR_NOT_FOUND, "viewpoints[0].selected") and "NOPE" in error.message
        half = MAX_VIEWPOINT_IDS // 2
        fits = [
            p.Viewpoint("v1", camera, selected=["P-1"], hidden=["T-1"] * (half - 1)),
            p.Viewpoint("v2", camera, colored=[ColoredComponents("#ff0000", ["PT-1", "LT-1"] * (half // 2))]),
        ]
        over = [fits[0], p.Viewpoint("v2", camera, colored=[ColoredComponents("#ff0000", ["PT-1"] * (half + 1))])]
        error = await refused(ana.create_topic(draft(*over)))
        assert (error.code, error.field) == (p.ERR_TOO_LONG, "viewpoints[1].colored[0].ids")
        planes = [ClippingPlane(p.Vec3(0, 0, 0), p.Vec3(0, 1, 0))] * (MAX_CLIPPING_PLANES + 1)
        error = await refused(ana.create_topic(draft(p.Viewpoint("v1", camera, planes))))
        assert (error.code, error.field) == (p.ERR_TOO_LONG, "viewpoints[0].clipping_planes")
        o, x = p.Vec3(0, 0, 0), p.Vec3(1, 0, 0)
        lame_angle = [Measurement("distance", [o, x]), Measurement("angle", [o, x])]
        error = await refused(ana.create_topic(draft(p.Viewpoint("v1", camera, measurements=lame_angle))))
        assert (error.code, error.field) == (p.ERR_BAD_MESSAGE, "viewpoints[0].measurements[1].points")
        assert "angle takes 3 points, not 2" in error.message
        bad_colour = [ColoredComponents("red; background: url(x)", ["P-1"])]
        error = await refused(ana.create_topic(draft(p.Viewpoint("v1", camera, colored=bad_colour))))
        assert (error.code, error.field) == (p.ERR_BAD_MESSAGE, "viewpoints[0].colored[0]")
        error = await refused(ana.create_topic(draft(p.Viewpoint("v" * 65, camera))))
        assert (error.code, error.field) == (p.ERR_TOO_LONG, "viewpoints[0].guid")
        saved = await ana.create_topic(draft(*fits))  # exactly MAX_VIEWPOINT_IDS ids
        [stored] = await topics(srv)
        assert stored.viewpoints == fits and saved.revision == 1
        assert ana.welcome is not None and ana.welcome.limits["max_viewpoint_ids"] == MAX_VIEWPOINT_IDS


@pytest.mark.in_process_only("counts the presence updates the server's session object dropped")
async def test_annotation_and_presence_rates_are_limited_per_user(tmp_path: Path, store_url: str | None) -> None:
    async with (
        live_server(tmp_path, store=store_url) as srv,
        client(srv, "spam", "annotator") as spam,
        client(srv, "v", "viewer") as v,
    ):
        for i in range(annotations_mod.ANNOTATION_BURST):  # a quick series of pins is fine
            await spam.create_topic(p.TopicDraft(f"t{i}"))
        error = await refused(spam.create_topic(p.TopicDraft("one too many")))
        assert error.code == p.ERR_RATE_LIMITED
        [session] = [s for s in srv.live.sessions if s.member and s.member.user == "v"]
        for i in range(annotations_mod.PRESENCE_BURST * 3):
            await v.send_presence(p.Pose((float(i), 0, 0), (0, 0, 0, 1)))
        await v.ping()
        assert session.presence_dropped >= annotations_mod.PRESENCE_BURST


async def test_attachments_round_trip_over_rest_with_bearer_tokens(tmp_path: Path, store_url: str | None) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    async with (
        live_server(tmp_path, store=store_url) as srv,
        aiohttp.ClientSession() as http,
        client(srv, "ana", "annotator") as ana,
    ):
        sid = session_id(srv)
        auth = {"Authorization": f"Bearer {mint_token(srv, 'ana', 'annotator')}"}
        async with http.post(f"{srv.url}/api/sessions/{sid}/attachments", data=png, headers=auth) as r:
            assert r.status == 201
            meta = await r.json()
        assert meta["size"] == len(png) and meta["mime"] == "image/png" and len(meta["sha256"]) == 64
        async with http.post(f"{srv.url}/api/sessions/{sid}/attachments", data=b"GIF89a", headers=auth) as r:
            assert r.status == 400
        too_big = png + b"\x00" * MAX_ATTACHMENT_BYTES
        async with http.post(f"{srv.url}/api/sessions/{sid}/attachments", data=too_big, headers=auth) as r:
            assert r.status == 413
        viewer = {"Authorization": f"Bearer {mint_token(srv, 'vic', 'viewer')}"}
        async with http.post(f"{srv.url}/api/sessions/{sid}/attachments", data=png, headers=viewer) as r:
            assert r.status == 403
        saved = await ana.create_topic(p.TopicDraft("with picture", attachments=[meta["id"]]))
        async with http.get(f"{srv.url}/api/sessions/{sid}/attachments/{meta['id']}", headers=auth) as r:
            assert r.status == 200 and r.content_type == "image/png" and await r.read() == png
        async with http.get(f"{srv.url}/api/sessions/{sid}/topics/{saved.guid}", headers=auth) as r:
            assert (await r.json())["topic"]["attachments"][0]["id"] == meta["id"]


def test_rate_buckets_refill_and_quiet_users_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    limiter = annotations_mod.RateLimiter(1.0, 2, clock=lambda: now[0])
    assert limiter.allow("ana") and limiter.allow("ana") and not limiter.allow("ana")
    now[0] = 1.0
    assert limiter.allow("ana") and not limiter.allow("ana")  # one token per second
    monkeypatch.setattr(annotations_mod, "RATE_LIMITER_MAX_KEYS", 3)
    for user in range(10):
        now[0] += 5  # each earlier user's bucket has refilled by now
        limiter.allow(user)
    assert len(limiter._buckets) <= 3  # memory stays bounded however many users come and go


@pytest.mark.in_process_only("makes the server's store fail by patching its module")
async def test_a_failing_disk_answers_not_saved_changes_nothing_and_keeps_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None
) -> None:
    async with (
        live_server(tmp_path, store=store_url) as srv,
        client(srv, "ana", "annotator") as ana,
        client(srv, "v", "viewer") as v,
    ):

        def disk_full(db: Db, session: str, topic: object, **kw: object) -> None:
            raise StoreError("OperationalError: database or disk is full")

        with monkeypatch.context() as m:
            m.setattr(annotations_mod, "put_topic", disk_full)
            error = await refused(ana.create_topic(p.TopicDraft("lost")))
        assert error.code == p.ERR_NOT_SAVED
        assert srv.live.annotations.topics(srv.live.scene.id) == []
        saved = await ana.create_topic(p.TopicDraft("kept"))  # same connection, disk back
        await v.wait_for(lambda c: list(c.topics) == [saved.guid])
        assert store_rows(srv.store, "SELECT count(*) FROM topics") == [(1,)]
        assert store_rows(srv.store, "SELECT count(*) FROM audit") == [(1,)]  # no trail of what never happened


async def test_rest_creates_and_reads_topics_and_comments_and_pages_the_audit(
    tmp_path: Path, store_url: str | None
) -> None:
    async with (
        live_server(tmp_path, store=store_url) as srv,
        aiohttp.ClientSession() as http,
        client(srv, "v", "viewer") as v,
    ):
        base = f"{srv.url}/api/sessions/{session_id(srv)}"
        ana = {"Authorization": f"Bearer {mint_token(srv, 'ana', 'annotator')}"}
        draft = p.encode(p.TopicDraft("from a script", pin=PIN), "json")
        async with http.post(f"{base}/topics", data=draft, headers={**ana, **JSON_BODY}) as r:
            assert r.status == 201
            saved = await r.json()
        async with http.post(
            f"{base}/topics/{saved['guid']}/comments", data=b'{"text": "via REST"}', headers={**ana, **JSON_BODY}
        ) as r:
            assert r.status == 201
        await v.wait_for(lambda c: saved["guid"] in c.topics and len(c.comments) == 1)  # live, like any change
        read = await eventually(lambda: topics(srv), lambda ts: len(ts) == 1)  # visitors of the session may read
        assert [t.title for t in read] == ["from a script"]
        path = f"/api/sessions/{session_id(srv)}/topics/{saved['guid']}/comments"
        said = await eventually(lambda: get_json(srv, path, mint_token(srv, "ana", "annotator")), bool)
        assert [c["text"] for c in said] == ["via REST"]
        async with http.post(f"{base}/topics", data=b'{"title": ""}', headers={**ana, **JSON_BODY}) as r:
            assert r.status == 400 and (await r.json())["field"] == "title"
        admin = {"Authorization": f"Bearer {mint_token(srv, 'root', 'admin')}"}
        path = f"/api/sessions/{session_id(srv)}/audit?limit=1"
        [newest] = await eventually(lambda: get_json(srv, path, mint_token(srv, "root", "admin")), bool)
        async with http.get(f"{base}/audit?before={newest['id']}", headers=admin) as r:
            older = await r.json()
        assert [newest["action"], *(e["action"] for e in older)] == ["comment.create", "topic.create"]


async def test_bcf_over_rest_exports_one_session_and_imports_into_another_live(
    tmp_path: Path, store_url: str | None
) -> None:
    async with live_server(tmp_path, store=store_url) as srv, aiohttp.ClientSession() as http:
        next_week = await new_session(srv, "next-week")
        async with client(srv, "ana", "annotator") as ana:
            made = await ana.create_topic(p.TopicDraft("Valve leaks", "see photo", pin=PIN, labels=["leak"]))
            await ana.add_comment(made.guid, "confirmed")
        lead = {"Authorization": f"Bearer {mint_token(srv, 'lead', 'presenter')}"}
        async with http.get(f"{srv.url}/api/sessions/{session_id(srv)}/bcf", headers=lead) as r:
            assert r.status == 200 and r.content_type == "application/octet-stream"
            archive = await r.read()
        assert archive[:2] == b"PK"
        into = {"Authorization": f"Bearer {mint_token(srv, 'lead', 'presenter', session=next_week)}"}
        watcher = TwinClient(srv.ws_url, token=mint_token(srv, "w", "viewer", session=next_week))
        async with watcher:
            async with http.post(f"{srv.url}/api/sessions/{next_week}/bcf", data=archive, headers=into) as r:
                assert r.status == 201
                result = await r.json()
            assert (result["topics"], result["comments"]) == (1, 1)
            await watcher.wait_for(lambda c: made.guid in c.topics and len(c.comments) == 1)
            topic = watcher.topics[made.guid]
            assert (topic.title, topic.labels, topic.pin.element) == ("Valve leaks", ["leak"], "PT-1")
        admin_token = mint_token(srv, "root", "admin", session=next_week)
        trail = await eventually(lambda: get_json(srv, f"/api/sessions/{next_week}/audit", admin_token), bool)
        assert [(e["actor"], e["action"]) for e in trail] == [("lead", "bcf.import")]
