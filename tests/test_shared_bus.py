"""Several server processes on one Redis (`serve --bus redis://…`): one twin, one numbering, one log.

Servers here run in the test's process (each with its own hub, store connection and Redis connections, on the
same data dir, as processes on one host would); tests/test_shared_failover.py kills real processes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.live_server import JSON_BODY, live_server, mint_token, person
from tests.mosquitto import mosquitto_url  # noqa: F401 - the fixture
from tests.redis_server import RedisServer, redis_service  # noqa: F401 - the fixture
from tests.test_ingest_mqtt import publish as mqtt_publish
from tests.test_ingest_mqtt import wait_connected
from tests.test_procedures import PROCEDURE, at_step, done
from tests.test_server_ws import assert_resumed, ingest, pressure
from viewer_server import annotations as annotations_mod
from viewer_server import name_claims
from viewer_server import protocol as p
from viewer_server.alarms import load_alarms
from viewer_server.annotations import ANNOTATION_BURST
from viewer_server.client import RequestRefused, TwinClient, TwinClientError
from viewer_server.hub import Guard, GuardFailed
from viewer_server.procedures import EVERYONE
from viewer_server.redis_bus import RedisBus
from viewer_server.serve import RunningServer
from viewer_server.topics import Camera

TIMEOUT = 20.0

PT = "PT-1/pressure"
POSE = p.Pose((1.0, 1.7, 4.0), (0.0, 0.0, 0.0, 1.0))
PRIORITIES = ("low", "high", "critical")


@contextlib.asynccontextmanager
async def servers(root: Path, url: str, count: int = 2) -> AsyncIterator[list[RunningServer]]:
    """`count` servers of the same scene and data dir on one Redis; the first one founds the deployment and
    leads it."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(live_server(root, bus_url=url)) for _ in range(count)]


async def test_telemetry_presence_and_events_reach_every_process_in_one_order(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with servers(tmp_path, redis_service.url, 3) as (a, b, c), aiohttp.ClientSession() as http:
        assert a.live.hub.leading and not b.live.hub.leading and not c.live.hub.leading
        assert a.live.hub.epoch == b.live.hub.epoch == c.live.hub.epoch
        async with TwinClient(a.ws_url) as on_a, TwinClient(b.ws_url) as on_b, person(c, "ana", "annotator") as ana:
            await ingest(http, b.url, pressure(5.7))  # telemetry at a follower: an alarm, decided once
            await ana.send_presence(POSE)  # presence and events made at another follower
            topic = await ana.create_topic(p.TopicDraft("leak at the pump"))
            comment = await ana.add_comment(topic.guid, "seen from the walkway")
            await ingest(http, c.url, pressure(1.0))  # the alarm returns
            for client in (on_a, on_b):
                await client.wait_for(lambda cl: comment.guid in cl.comments and cl.props[PT].v == 1.0, timeout=20)
                await client.wait_for(lambda cl: any(pr.pose == POSE for pr in cl.presence.values()), timeout=20)
            kinds = [e.kind for e in on_a.events]
            assert kinds == ["alarm_raised", "topic_created", "comment_added", "alarm_returned"]
            assert topic.seq < comment.seq and [topic.seq, comment.seq] == [on_a.events[1].seq, on_a.events[2].seq]
            await on_b.wait_for(lambda cl: cl.seq == on_a.seq, timeout=10)
            assert_resumed(on_b, on_a)  # the same changes, seqs and state on both processes
            assert on_a.seq_gaps == 0 and on_a.duplicate_events == 0
            # A client leaving one process leaves everyone's view.
            await ana.close()
            for client in (on_a, on_b):
                await client.wait_for(lambda cl: not cl.presence, timeout=20)
            # Every process serves the same state over REST, and the new topic to its sessions' snapshots.
            for srv in (a, b, c):
                async with http.get(f"{srv.url}/api/state") as r:
                    state = await r.json()
                assert state["props"]["PT-1/pressure"]["v"] == 1.0 and state["epoch"] == a.live.hub.epoch
                assert srv.live.annotations is not None and topic.guid in {
                    t.guid for t in srv.live.annotations.topics(srv.live.scene.id)
                }


async def test_a_procedure_led_on_one_process_is_followed_and_completed_on_another(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(live_server(tmp_path, bus_url=redis_service.url, procedures=PROCEDURE))
            for _ in range(2)
        ]
        ann = await stack.enter_async_context(person(a, "ann", "presenter"))
        bob = await stack.enter_async_context(person(b, "bob", "viewer"))
        await ann.send(p.ProcedureControl("start", name="pump-start"))
        await bob.wait_for(at_step(0), timeout=20)
        await bob.send(p.StepComplete(0))
        await ann.wait_for(done(0, "bob"), timeout=20)
        for step in (1, 2):
            await ann.send(p.ProcedureControl("next"))
            await bob.wait_for(at_step(step), timeout=20)
        async with aiohttp.ClientSession() as http:
            await ingest(http, b.url, pressure(4.2))  # in range: the twin completes the step, once, on the leader
            await ingest(http, b.url, pressure(4.5))
        for client in (ann, bob):
            await client.wait_for(lambda cl: done(2, EVERYONE)(cl) and cl.props[PT].v == 4.5, timeout=20)
            assert client.procedure is not None and sum(d.step == 2 for d in client.procedure.completions) == 1
        assert [e.seq for e in ann.events] == [e.seq for e in bob.events]
        assert [e.kind for e in bob.events if e.kind in p.PROCEDURE_EVENTS] == [
            "procedure_started", "step_completed", "procedure_step", "procedure_step", "step_completed",
        ]  # fmt: skip
        for srv in (a, b):  # both processes hold the run as it is
            assert srv.live.procedures is not None
            assert srv.live.procedures.snapshot(srv.live.scene.id) == ann.procedure


async def test_telemetry_at_two_processes_raises_one_alarm(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with (
        servers(tmp_path, redis_service.url) as (a, b),
        aiohttp.ClientSession() as http,
        TwinClient(a.ws_url) as on_a,
        TwinClient(b.ws_url) as on_b,
    ):
        await asyncio.gather(ingest(http, a.url, pressure(5.7)), ingest(http, b.url, pressure(5.9)))
        await ingest(http, b.url, p.Reading(50.0, key="LT-1.level"))  # a fence: after both
        for client in (on_a, on_b):
            await client.wait_for(lambda cl: "LT-1/level" in cl.props, timeout=20)
            assert [e.kind for e in client.events] == ["alarm_raised"]
        assert on_a.events == on_b.events and on_a.alarms == on_b.alarms
        assert a.live.hub.alarms.listed() == b.live.hub.alarms.listed() != []
        [(alarm_id, state)] = [(x.id, x.state) for x in b.live.hub.alarms.listed()]
        # Operators on both processes acknowledge it at once: one transition, seen everywhere, stored once; the
        # other operator is told the alarm changed meanwhile.
        async with person(a, "omar", "operator") as omar, person(b, "olga", "operator") as olga:
            answers = await asyncio.gather(
                omar.acknowledge_alarm(alarm_id), olga.acknowledge_alarm(alarm_id), return_exceptions=True
            )
        [saved] = [answer for answer in answers if isinstance(answer, p.Saved)]
        [refused] = [answer for answer in answers if isinstance(answer, RequestRefused)]
        assert refused.error.code == p.ERR_ALARM_STATE
        for client in (on_a, on_b):
            await client.wait_for(lambda cl: cl.alarms[alarm_id].state == "acknowledged", timeout=20)
        assert saved.seq == on_a.events[-1].seq and state == "unacknowledged"
        assert [e.kind for e in on_a.events] == ["alarm_raised", "alarm_acknowledged"]
        a.store.flush()
        b.store.flush()
        _, stored = a.store.submit(lambda db: load_alarms(db, a.live.scene.id)).result()
        assert [e.seq for e in stored] == [e.seq for e in on_a.events]  # each transition stored once


async def test_a_revocation_on_one_process_closes_connections_on_another_within_a_second(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with servers(tmp_path, redis_service.url) as (a, b), aiohttp.ClientSession() as http:
        bob = person(b, "bob", "annotator")
        bob.reconnect = False
        await bob.connect()
        admin = mint_token(a, "root", "admin")
        url = f"{a.url}/api/sessions/{a.live.scene.id}/revoke"
        headers = {"Authorization": f"Bearer {admin}", **JSON_BODY}
        async with http.post(url, data=b'{"user": "bob"}', headers=headers) as r:
            assert r.status == 200  # revoked (committed) by now: bob's connection to b is closed within a second
        await bob.wait_for(lambda cl: cl.closed_with is not None, timeout=1.0)
        assert bob.closed_with is not None and bob.closed_with.code == p.CLOSE_AUTH


async def test_redis_restart_refuses_writes_clearly_then_recovers_losing_nothing_acknowledged(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with servers(tmp_path, redis_service.url) as (a, b):
        watcher = TwinClient(a.ws_url)
        gw = TwinClient(b.ws_url, role="publisher")
        ana = person(b, "ana", "annotator")
        for client in (watcher, gw, ana):
            await client.connect()
        acked: list[float] = []

        async def publish(value: float) -> None:
            ack = await gw.publish([pressure(value)])  # RequestRefused: not acknowledged
            assert ack.accepted == 1
            acked.append(value)

        await publish(1.0)
        await watcher.wait_for(lambda cl: PT in cl.props, timeout=20)
        for value in (1.5, 2.0):  # acknowledged; perhaps not applied yet when Redis stops
            await publish(value)
        redis_service.stop()
        with pytest.raises(RequestRefused) as refused:  # the ack is refused with a reason, never a silent drop
            await publish(2.5)
        assert refused.value.error.code == p.ERR_NOT_SAVED and "shared bus" in refused.value.error.message
        error = await ana._request(p.TopicCreate(p.TopicDraft("while down"), "t1"), "t1", 10)
        assert isinstance(error, p.Error) and error.code == p.ERR_NOT_SAVED and "shared bus" in error.message
        for client in (watcher, gw, ana):  # every client hears it, and keeps what it shows
            await client.wait_for(lambda cl: "degraded" in cl.statuses, timeout=10)
        assert PT in watcher.props and (await watcher.ping()).server_time > 0
        async with aiohttp.ClientSession() as http:
            body = p.encode({"readings": [pressure(2.5)]}, "json")
            async with http.post(f"{b.url}/api/ingest", headers=JSON_BODY, data=body) as r:
                assert r.status == 503 and "shared bus" in (await r.json())["detail"]
            async with http.get(f"{a.url}/api/state") as r:  # reads go on
                assert r.status == 200 and (await r.json())["epoch"] == a.live.hub.epoch
            async with http.get(f"{a.url}/api/health") as r:
                health = await r.json()
        assert health["status"] == "degraded" and health["bus"]["ok"] is False and "Redis" in health["bus"]["detail"]
        redis_service.start()
        for client in (watcher, gw, ana):
            await client.wait_for(lambda cl: cl.statuses[-1:] == ["ok"], timeout=20)
        # Acknowledged before Redis stopped (in its append-only file), perhaps not yet numbered: not lost.
        await watcher.wait_for(lambda cl: cl.props[PT].v == 2.0, timeout=20)
        await publish_once_back(gw, 3.0)
        acked.append(3.0)
        topic = await ana.create_topic(p.TopicDraft("after the restart"))
        await watcher.wait_for(lambda cl: cl.props[PT].v == 3.0 and topic.guid in cl.topics, timeout=20)
        assert watcher.seq_gaps == 0 and watcher.duplicate_events == 0
        assert acked == [1.0, 1.5, 2.0, 3.0]
        # The leader forgets the inbox messages the log has taken in (at its next checkpoint).
        inbox = b.live.hub.redis.key(b.live.scene.id, "inbox")
        async with aioredis.Redis.from_url(redis_service.url) as plain:
            deadline = time.monotonic() + 10
            while await plain.xlen(inbox) > 1:
                assert time.monotonic() < deadline, "the inbox was not trimmed"
                await asyncio.sleep(0.1)
        await watcher.wait_for(lambda cl: cl.seq == a.live.hub.seq == b.live.hub.seq, timeout=10)
        for client in (watcher, gw, ana):
            await client.close()


async def test_concurrent_edits_of_one_topic_on_three_processes_keep_revisions(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        servers_ = [await stack.enter_async_context(live_server(tmp_path, bus_url=redis_service.url)) for _ in range(3)]
        editors = [await stack.enter_async_context(person(srv, f"admin{i}", "admin")) for i, srv in enumerate(servers_)]
        topic = await editors[0].create_topic(p.TopicDraft("valve stuck"))
        for editor in editors:
            await editor.wait_for(lambda cl: topic.guid in cl.topics, timeout=20)
        for revision in (1, 2, 3):  # all three edit the same revision at once: one wins, the others are told
            results = await asyncio.gather(
                *(e.update_topic(topic.guid, revision, priority=pr) for pr, e in zip(PRIORITIES, editors, strict=True)),
                return_exceptions=True,
            )
            saved = [r for r in results if isinstance(r, p.Saved)]
            refused = [r for r in results if isinstance(r, RequestRefused)]
            assert len(saved) == 1 and len(refused) == 2 and saved[0].revision == revision + 1
            assert {r.error.code for r in refused} == {p.ERR_STALE_REVISION}
            for editor in editors:
                await editor.wait_for(lambda cl, r=revision: cl.topics[topic.guid].revision == r + 1, timeout=20)
        assert len({e.topics[topic.guid].priority for e in editors}) == 1


async def test_a_users_rate_limit_holds_across_processes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    monkeypatch.setattr(annotations_mod, "ANNOTATION_RATE_PER_S", 1e-6)  # no refill while the test runs
    async with (
        servers(tmp_path, redis_service.url) as (a, b),
        person(a, "ana", "annotator") as on_a,
        person(b, "ana", "annotator") as on_b,
    ):
        for i in range(ANNOTATION_BURST):  # the burst, spent half on each process
            await (on_a if i % 2 else on_b).create_topic(p.TopicDraft(f"pin {i}"))
        for client in (on_a, on_b):
            await client.wait_for(lambda cl: len(cl.topics) == ANNOTATION_BURST, timeout=20)
        for client in (on_a, on_b):
            with pytest.raises(RequestRefused) as refused:
                await client.create_topic(p.TopicDraft("one too many"))
            assert refused.value.error.code == p.ERR_RATE_LIMITED


async def test_presenter_changes_made_at_once_on_two_processes_all_hold(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with (
        servers(tmp_path, redis_service.url) as (a, b),
        person(a, "ann", "presenter") as ann,
        person(a, "eve", "viewer") as eve,
        person(b, "bob", "viewer") as bob,
    ):
        # Each decided on its process's copy before the others' came back through the log.
        await asyncio.gather(ann.send(p.PresenterTake()), bob.send(p.HandRaise()), eve.send(p.HandRaise()))
        shot = p.Viewpoint("v1", Camera(p.Vec3(1, 1.6, 4), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0)))
        await ann.send(p.PresenterView(shot))
        for client in (ann, bob, eve):
            await client.wait_for(
                lambda c: (
                    c.presenter is not None
                    and c.presenter.presenter == "ann"
                    and c.presenter.viewpoint == shot
                    and sorted(h.user for h in c.presenter.hands) == ["bob", "eve"]
                ),
                TIMEOUT,
            )
        assert not ann.errors and not bob.errors and not eve.errors


async def test_a_process_started_later_knows_who_presents(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with live_server(tmp_path, bus_url=redis_service.url) as a, person(a, "ann", "presenter") as ann:
        await ann.send(p.PresenterTake())
        await ann.wait_for(lambda c: c.presenter is not None and c.presenter.presenter == "ann", TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while (cp := await a.live.hub._checkpoint()) is None or cp.seq < a.live.hub.seq:  # b starts from it
            assert time.monotonic() < deadline, "no checkpoint written"
            await asyncio.sleep(0.1)
        async with live_server(tmp_path, bus_url=redis_service.url) as b, person(b, "bob", "viewer") as bob:
            assert bob.presenter is not None and bob.presenter.presenter == "ann"


async def test_a_guarded_event_is_numbered_once_and_a_process_started_later_knows_the_register(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    """The leader's compare-and-set under procedure moves (hub.Guard), on any kind of event."""

    def note(seq: int) -> p.Event:
        return p.Event(seq, "annotation_note", "n-1", "", time.time(), session="s", message="decided at r:0")

    async with servers(tmp_path, redis_service.url) as (a, b):
        guard = Guard("procedure:s", "r:0", "r:1")
        results = await asyncio.gather(
            a.live.hub.number(note, guard), b.live.hub.number(note, guard), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["Event", "GuardFailed"], results
        later = await b.live.hub.number(note, Guard("procedure:s", "r:1", "r:2"))  # decided on what the log holds
        await a.live.hub.number(note, Guard("procedure:t", "anything", "t:0"))  # never set: any expectation holds
        deadline = time.monotonic() + TIMEOUT
        while (cp := await a.live.hub._checkpoint()) is None or cp.seq < later.seq + 1:
            assert time.monotonic() < deadline, "no checkpoint written"
            await asyncio.sleep(0.1)
        async with live_server(tmp_path, bus_url=redis_service.url) as c:
            registers = {"procedure:s": "r:2", "procedure:t": "t:0"}
            assert a.live.hub.guards == b.live.hub.guards == c.live.hub.guards == registers
            with pytest.raises(GuardFailed):
                await c.live.hub.number(note, Guard("procedure:s", "r:1", "r:2"))


async def join_when_free(server: RunningServer, user: str, name: str, within_s: float) -> TwinClient:
    """`user` joining `server` as `name`, refused (4009) until the name is free: at most `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        client = TwinClient(server.ws_url, name=name, token=mint_token(server, user, "viewer"), reconnect=False)
        try:
            await client.connect()
            return client
        except TwinClientError as exc:
            assert exc.code == p.CLOSE_NAME and time.monotonic() < deadline, exc
        await asyncio.sleep(0.05)


async def test_display_names_are_unique_across_processes_and_a_reconnect_keeps_its_own(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with (
        servers(tmp_path, redis_service.url) as (a, b),
        TwinClient(a.ws_url) as visitor_a,
        TwinClient(b.ws_url) as visitor_b,
    ):
        scene = a.live.scene.id
        assert visitor_a.welcome is not None and visitor_b.welcome is not None
        assert (visitor_a.welcome.name, visitor_b.welcome.name) == ("Visitor (guest)", "Visitor (guest) (2)")
        visitor_b.url = a.ws_url  # b's visitor comes back through a (its process died, or the proxy chose so)
        await visitor_b.drop()
        await visitor_b.wait_for(lambda c: c.connects == 2 or c.closed_with is not None, TIMEOUT)
        assert visitor_b.closed_with is None and visitor_b.welcome.name == "Visitor (guest) (2)"
        # A name chosen on one process is someone's on every process: refused as on one.
        ana = TwinClient(a.ws_url, name="Ana", token=mint_token(a, "ana", "viewer"))
        await ana.connect()
        with pytest.raises(TwinClientError) as refused:
            await TwinClient(b.ws_url, name="ANA", token=mint_token(b, "bea", "viewer"), reconnect=False).connect()
        assert refused.value.code == p.CLOSE_NAME and "'ANA' is the name of someone" in refused.value.reason
        async with TwinClient(b.ws_url, token=mint_token(b, "Ana", "viewer")) as by_id:  # not chosen: numbered
            assert by_id.welcome is not None and by_id.welcome.name == "Ana (2)"
        # The same identity keeps its name on another process, while its old connection may still hold it.
        ana.url = b.ws_url
        await ana.drop()
        await ana.wait_for(lambda c: c.connects == 2 or c.closed_with is not None, TIMEOUT)
        assert ana.closed_with is None and ana.welcome is not None and ana.welcome.name == "Ana"
        # Closed: the name is free at once (well before a claim runs out).
        await ana.close()
        bea = await join_when_free(b, "bea", "Ana", within_s=name_claims.TTL_MS / 2000)
        assert bea.welcome is not None and bea.welcome.name == "Ana"
        await bea.close()
        # A process that died holding a name stops renewing it: the name is free once its claim runs out.
        assert await b.live.bus.claim_name(scene, scene, "Ghost", "gus", "dead-process/c1", 300, "Ghost", True) == []  # type: ignore[attr-defined]
        with pytest.raises(TwinClientError):
            await TwinClient(a.ws_url, name="Ghost", token=mint_token(a, "bea", "viewer"), reconnect=False).connect()
        ghost = await join_when_free(a, "bea", "Ghost", within_s=TIMEOUT)
        assert ghost.welcome is not None and ghost.welcome.name == "Ghost"
        await ghost.close()


async def test_a_name_stays_claimed_while_connected_and_is_claimed_again_if_redis_lost_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    monkeypatch.setattr(name_claims, "TTL_MS", 1000)
    monkeypatch.setattr(name_claims, "RENEW_S", 0.1)
    async with (
        servers(tmp_path, redis_service.url) as (a, b),
        TwinClient(a.ws_url, name="Ana", token=mint_token(a, "ana", "viewer")),
        aioredis.Redis.from_url(redis_service.url) as plain,
    ):
        names = a.live.hub.redis.key(a.live.scene.id, f"names:{a.live.scene.id}")
        [(_, first)] = await plain.zrange(names, 0, -1, withscores=True)

        async def renewed_past(expiry: float) -> None:
            deadline = time.monotonic() + TIMEOUT
            while not (claims := await plain.zrange(names, 0, -1, withscores=True)) or claims[0][1] <= expiry:
                assert time.monotonic() < deadline, f"the claim was not renewed: {claims}"
                await asyncio.sleep(0.05)

        await renewed_past(first + 1000)  # the first claim has run out by now: it lives on renewed
        with pytest.raises(TwinClientError):
            await TwinClient(b.ws_url, name="Ana", token=mint_token(b, "bea", "viewer"), reconnect=False).connect()
        await plain.delete(names)  # Redis lost it (restarted without its file)
        await renewed_past(0)  # claimed again by the renewal
        with pytest.raises(TwinClientError):
            await TwinClient(b.ws_url, name="Ana", token=mint_token(b, "bea", "viewer"), reconnect=False).connect()


async def test_a_name_claim_conflicts_as_names_do_on_one_process(redis_service: RedisServer) -> None:  # noqa: F811
    bus = RedisBus(redis_service.url)
    try:

        async def claim(name: str, user: str, connection: str, chosen: str = "", per_connection: bool = True) -> bool:
            return not await bus.claim_name("S", "R", name, user, connection, 5000, chosen, per_connection)

        assert await claim("Ana", "link", "c1", chosen="Ana")  # one person on a shared link
        assert not await claim("ANA", "link", "c2", chosen="ANA")  # another person on it: numbered (refused here)
        assert await claim("ana", "link", "c3", per_connection=False)  # the same person's other tab, or a reconnect
        assert not await claim("link", "bob", "c4")  # another user's id
        assert await claim("Bob Stone", "bob", "c6", chosen="Bob Stone")
        assert not await claim("BOB (guest)", "guest-2", "c7", chosen="BOB")  # a visitor's base: bob's id
        assert not await claim("bob stone (guest)", "guest-2", "c7", chosen="bob stone")  # its base: bob's name
        assert await claim("Visitor (guest)", "guest-2", "c7")  # nobody's
    finally:
        await bus.close()


async def test_a_redis_that_lost_its_data_is_refounded_in_a_new_epoch(tmp_path: Path) -> None:
    forgetful = RedisServer(tmp_path, persistent=False)  # restarted, it has forgotten everything
    forgetful.start()
    try:
        async with (
            servers(tmp_path, forgetful.url) as (a, b),
            TwinClient(a.ws_url) as on_a,
            TwinClient(b.ws_url) as on_b,
        ):
            gw = TwinClient(b.ws_url, role="publisher")
            await gw.connect()
            await gw.publish([pressure(2.0)])
            await on_a.wait_for(lambda cl: cl.props.get(PT) is not None and cl.props[PT].v == 2.0, timeout=20)
            epoch = a.live.hub.epoch
            forgetful.stop()
            forgetful.start()
            for client in (on_a, on_b):  # one process carries on from its copy in a new epoch; all resync
                await client.wait_for(lambda cl: cl.epoch != epoch and cl.statuses[-1:] == ["ok"], timeout=30)
                assert pressure_shown(client) == 2.0
            await publish_once_back(gw, 3.0)
            for client in (on_a, on_b):
                await client.wait_for(lambda cl: pressure_shown(cl) == 3.0, timeout=20)
            assert a.live.hub.epoch == b.live.hub.epoch == on_a.epoch == on_b.epoch != epoch
            await gw.close()
    finally:
        forgetful.stop()


def pressure_shown(client: TwinClient) -> object:
    return client.props[PT].v if PT in client.props else None


async def publish_once_back(gw: TwinClient, value: float) -> None:
    """Publish as soon as the deployment takes writes again (a leader holds the lease), within 20 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            ack = await gw.publish([pressure(value)])
            assert ack.accepted == 1
            return
        except RequestRefused as refused:
            assert refused.error.code == p.ERR_NOT_SAVED
            assert time.monotonic() < deadline, "writes did not come back after Redis did"
            await asyncio.sleep(0.2)


async def test_mqtt_messages_are_ingested_once_by_a_deployment(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
    mosquitto_url: str,  # noqa: F811
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(live_server(tmp_path, bus_url=redis_service.url, mqtt_url=mosquitto_url))
            for _ in range(2)
        ]
        watcher = await stack.enter_async_context(TwinClient(a.ws_url))
        for srv in (a, b):
            await wait_connected(srv.url)
        messages = [("plant/LT-1/telemetry", {"value": float(i)}) for i in range(10)]
        await mqtt_publish(mosquitto_url, *messages)
        await watcher.wait_for(lambda cl: cl.props.get("LT-1/level", p.PropState(0, 0)).v == 9.0, timeout=20)
        deadline = time.monotonic() + 5
        while a.live.ingest.accepted + b.live.ingest.accepted < len(messages) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert a.live.ingest.accepted + b.live.ingest.accepted == len(messages)  # each once, not once per process
        assert a.live.mqtt.messages + b.live.mqtt.messages == len(messages)
