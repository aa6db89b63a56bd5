"""kill -9 of a real `twinview serve --bus redis://…` process while clients are connected: the survivor takes
the lead, and every client of the dead process resumes on it with no loss, no duplicate, in order."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import store_rows, write_bindings, write_scene
from tests.redis_server import RedisServer, redis_service  # noqa: F401 - the fixture
from tests.test_procedures import PROCEDURE, at_step
from tests.test_restart_durability import TWINVIEW, _free_port, _ready, _server
from tests.test_server_ws import assert_resumed, pressure
from viewer_server import protocol as p
from viewer_server.auth import issue, load_secret
from viewer_server.client import TwinClient
from viewer_server.scenes import scene_id_for
from viewer_server.store import Store

CLIENTS = 6
POSE = p.Pose((1.0, 1.7, 4.0), (0.0, 0.0, 0.0, 1.0))


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_kill_9_of_the_leader_every_client_resumes_on_another_process(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    scene, bindings, data = write_scene(tmp_path), write_bindings(tmp_path), tmp_path / "data"
    session = scene_id_for(scene)
    ports = _free_port(), _free_port()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    ws_urls = [f"ws://127.0.0.1:{port}/ws/{session}" for port in ports]
    bus = ("--bus", redis_service.url)
    with _server(scene, bindings, data, ports[0], *bus) as doomed:
        await _ready(urls[0])  # the first process founds the deployment and leads it
        with _server(scene, bindings, data, ports[1], *bus):
            await _ready(urls[1])
            secret = load_secret(data)
            clients = [
                TwinClient(ws_urls[0], token=issue(secret, session, f"user{i}", "annotator"), name=f"user{i}")
                for i in range(CLIENTS)
            ]
            watcher = TwinClient(ws_urls[1])  # on the survivor throughout: the reference
            gw = TwinClient(ws_urls[1], role="publisher", reconnect=False)
            for client in (*clients, watcher, gw):
                await client.connect()
            # Before: telemetry through the survivor, presence and topics from the doomed process's clients.
            await gw.publish([pressure(5.7)])
            await clients[0].send_presence(POSE)
            topic = await clients[1].create_topic(p.TopicDraft("before the crash"))
            await watcher.wait_for(lambda c: topic.guid in c.topics and c.presence, timeout=20)
            for client in clients:  # what a load balancer does: the next connection goes to a live process
                client.url = ws_urls[1]
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=10)
            # During and after the failover: readings acknowledged by the survivor (numbered once it leads).
            for i in range(20):
                ack = await gw.publish([pressure(1.0 + i / 10), p.Reading(float(i), key="LT-1.level")])
                assert ack.accepted == 2
                await asyncio.sleep(0.05)
            await watcher.wait_for(lambda c: c.props.get("LT-1/level", p.PropState(0, 0)).v == 19.0, timeout=30)
            await watcher.wait_for(lambda c: not c.presence, timeout=30)  # the dead process's people are gone
            for client in clients:
                await client.wait_for(lambda c: c.connects == 2 and c.seq == watcher.seq, timeout=30)
                assert_resumed(client, watcher)
            kinds = [e.kind for e in watcher.events]
            assert kinds == ["alarm_raised", "topic_created", "alarm_returned"]
            async with aiohttp.ClientSession() as http, http.get(f"{urls[1]}/api/health") as r:
                health = await r.json()
            assert health["status"] == "ok" and health["bus"]["ok"] is True and health["peers"] == []
            for client in (*clients, watcher, gw):
                await client.close()


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_next_or_start_pressed_at_once_on_two_processes_is_done_once(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    scene, bindings, data = write_scene(tmp_path), write_bindings(tmp_path), tmp_path / "data"
    procedure = tmp_path / "pump.procedure.yaml"
    procedure.write_text(PROCEDURE)
    session = scene_id_for(scene)
    ports = _free_port(), _free_port()
    ws_urls = [f"ws://127.0.0.1:{port}/ws/{session}" for port in ports]
    flags = ("--bus", redis_service.url, "--procedures", str(procedure))
    with _server(scene, bindings, data, ports[0], *flags), _server(scene, bindings, data, ports[1], *flags):
        for port in ports:
            await _ready(f"http://127.0.0.1:{port}")
        secret = load_secret(data)
        ann, bob = (
            TwinClient(url, token=issue(secret, session, name, "presenter"), name=name)
            for url, name in zip(ws_urls, ("ann", "bob"), strict=True)
        )
        async with ann, bob:
            await ann.send(p.ProcedureControl("start", name="pump-start"))
            await bob.wait_for(at_step(0), timeout=20)
            # Both pressed "next" on step 0 before either saw the other's: the deployment moves once.
            await asyncio.gather(*(c.send(p.ProcedureControl("next", from_step=0)) for c in (ann, bob)))
            for client in (ann, bob):
                await client.wait_for(lambda c: at_step(1)(c) and c.seq == ann.seq, timeout=20)
            await asyncio.wait_for(_until(lambda: len(ann.errors) + len(bob.errors) == 1), 20)
            [error] = [*ann.errors, *bob.errors]
            assert error.code == p.ERR_STEP_MOVED and error.ref == "procedure_control"
            for client in (ann, bob):
                assert [e.step for e in client.events if e.kind == "procedure_step"] == [1]
            # Two starts at once after a stop: one run.
            await ann.send(p.ProcedureControl("stop", from_step=1))
            await bob.wait_for(lambda c: c.procedure is not None and c.procedure.finished == "stopped", timeout=20)
            await asyncio.gather(*(c.send(p.ProcedureControl("start", name="pump-start")) for c in (ann, bob)))
            await asyncio.wait_for(_until(lambda: len(ann.errors) + len(bob.errors) == 2), 20)
            assert [e.code for e in (*ann.errors, *bob.errors)].count("procedure_active") == 1
            await ann.wait_for(lambda c: c.procedure is not None and not c.procedure.finished, timeout=20)
            await bob.wait_for(lambda c: c.seq == ann.seq, timeout=20)
            for client in (ann, bob):
                assert [e.kind for e in client.events].count("procedure_started") == 2  # the first run's, and one
            # Nothing refused left behind in the store: a restart replays what happened.
            store = Store(data)
            try:
                kinds = store_rows(store, "SELECT kind, count(*) FROM procedure_events GROUP BY kind ORDER BY kind")
            finally:
                store.close()
            assert kinds == [("procedure_finished", 1), ("procedure_started", 2), ("procedure_step", 1)]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.05)
