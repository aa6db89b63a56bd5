"""The historian in PostgreSQL (`serve --bus redis://… --store postgresql://…`): one history for the deployment.
Each process has its own data dir, so what one process took in can only reach another's seek, chart and
timeline through the database: the process that acknowledged a reading wrote it there first, the leader that
numbered an event wrote that. The historian's own tests run on both backends (test_historian, `store_url`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest

from scene.state import Reading
from tests.live_server import JSON_BODY, live_server, write_bindings, write_scene
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer, redis_service  # noqa: F401 - the fixture
from tests.test_restart_durability import TWINVIEW, _free_port, _ready, _server
from tests.test_server_ws import ingest, pressure
from viewer_server import protocol as p
from viewer_server.client import RequestRefused, TwinClient
from viewer_server.historian import Historian
from viewer_server.serve import RunningServer


@contextlib.asynccontextmanager
async def processes(root: Path, bus: str, store: str, count: int) -> AsyncIterator[list[RunningServer]]:
    """`count` servers of one scene on one Redis and one PostgreSQL, each with a data dir of its own."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(live_server(root / f"p{i}", bus_url=bus, store=store)) for i in range(count)
        ]


async def _series(http: aiohttp.ClientSession, srv: RunningServer, start: float, key: str) -> list[object]:
    query = {"keys": key, "from": str(start), "to": str(time.time() + 1)}
    async with http.get(f"{srv.url}/api/history", params=query) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["series"][0]["last"]


async def test_readings_taken_in_by_one_process_are_in_another_s_seek_chart_and_timeline(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
    postgres_url: str,
) -> None:
    async with processes(tmp_path, redis_service.url, postgres_url, 2) as (a, b), aiohttp.ClientSession() as http:
        assert a.live.hub.leading and not b.live.hub.leading
        start = time.time()  # after both started (each one's start records the bindings in force: a marker)
        values = [1.0, 5.7, 2.5, 1.0]  # 5.7 raises the alarm, 1.0 returns it: events numbered by the leader (a)
        for value in values:
            ack = await ingest(http, a.url, pressure(value))
            assert ack["accepted"] == 1 and ack["durable"] is True
        await ingest(http, b.url, p.Reading(42, key="LT-1.level"))  # and one through b: an integer, kept one
        # b's chart: a's readings, each once, though b's data dir holds no history of its own.
        assert await _series(http, b, start, "PT-1.pressure") == values
        [level] = await _series(http, a, start, "LT-1.level")
        assert (type(level), level) == (int, 42)
        assert not list((tmp_path / "p1" / "data").rglob("history.sqlite"))
        # b's timeline: the alarm the leader raised and returned, once each.
        async with http.get(f"{b.url}/api/history/events", params={"from": str(start)}) as r:
            kinds = [m["kind"] for m in (await r.json())["events"]]
        assert kinds == ["alarm_raised", "alarm_returned"]
        # b's range, then a gateway's late reading through a: older, so b's range reaches back to it at once.
        async with http.get(f"{b.url}/api/history/range") as r:
            assert (await r.json())["earliest"] >= start
        await ingest(http, a.url, p.Reading(0.5, key="PT-1.pressure", ts=start - 600))
        async with http.get(f"{b.url}/api/history/range") as r:
            assert (await r.json())["earliest"] == start - 600
        # b's seek: the readings, and the alarm (returned, not acknowledged: still listed) from a's events.
        async with TwinClient(b.ws_url) as viewer:
            now = await viewer.seek(time.time())
            assert now.props["PT-1/pressure"].v == 1.0 and (
                type(now.props["LT-1/level"].v),
                now.props["LT-1/level"].v,
            ) == (int, 42)
            assert [a.id for a in now.alarms] == ["operations.rules[1]"]


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_kill_9_of_the_process_that_acknowledged_readings_loses_none_of_them(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
    postgres_url: str,
) -> None:
    start = time.time() - 1
    async with live_server(tmp_path / "b", bus_url=redis_service.url, store=postgres_url) as b:
        scene, bindings = write_scene(tmp_path / "a"), write_bindings(tmp_path / "a")
        port = _free_port()
        flags = ("--bus", redis_service.url, "--store", postgres_url)
        acked: list[float] = []
        with _server(scene, bindings, tmp_path / "a" / "data", port, *flags) as doomed:
            await _ready(f"http://127.0.0.1:{port}")
            gw = TwinClient(f"ws://127.0.0.1:{port}/ws/{b.live.scene.id}", role="publisher", reconnect=False)
            await gw.connect()
            for i in range(40):
                value = float(i % 10)  # within range: no alarm, only readings
                ack = await gw.publish([p.Reading(value, key="LT-1.level", ts=start + i * 0.01)])
                assert ack.accepted == 1 and ack.durable
                acked.append(value)
            os.kill(doomed.pid, signal.SIGKILL)
            doomed.wait(timeout=10)
            with contextlib.suppress(Exception):
                await gw.close()
        async with aiohttp.ClientSession() as http:
            assert await _series(http, b, start - 1, "LT-1.level") == acked
        assert b.live.historian is not None
        samples = await asyncio.to_thread(b.live.historian.samples, start - 1, time.time(), keys=[("LT-1", "level")])
        assert [(s.ts, s.value) for s in samples] == [(start + i * 0.01, v) for i, v in enumerate(acked)]


async def test_readings_are_refused_while_postgresql_is_down_then_taken_again_none_acknowledged_lost(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    start = time.time() - 1
    async with (
        live_server(tmp_path, store=postgres_url) as srv,
        TwinClient(srv.ws_url, role="publisher", reconnect=False) as gw,
        TwinClient(srv.ws_url) as viewer,
        aiohttp.ClientSession() as http,
    ):
        assert (await gw.publish([pressure(1.0)])).durable
        postgres.stop(crash=True)
        with pytest.raises(RequestRefused) as refused:  # never acknowledged, whatever is retried meanwhile
            await gw.publish([pressure(2.0)], timeout=30)
        assert refused.value.error.code == p.ERR_NOT_SAVED and "PostgreSQL" in refused.value.error.message
        body = p.encode({"readings": [pressure(3.0)]}, "json")
        async with http.post(f"{srv.url}/api/ingest", headers=JSON_BODY, data=body) as r:
            assert r.status == 503 and "PostgreSQL" in await r.text()
        with pytest.raises(RequestRefused) as refused:  # a seek reads the history there: refused, connection open
            await viewer.seek(time.time())
        assert refused.value.error.code == p.ERR_NOT_SAVED
        async with http.get(f"{srv.url}/api/history", params={"keys": "PT-1.pressure"}) as r:
            assert r.status == 503 and (await r.json())["error"] == "store_unavailable"

        async with http.get(f"{srv.url}/api/health") as r:
            health = await r.json()
        assert health["status"] == "degraded" and health["historian"]["ok"] is False
        assert "PostgreSQL" in health["historian"]["detail"] and health["historian"]["write_errors"] >= 1

        postgres.start()  # the historian's writer reconnects by itself
        deadline = time.monotonic() + 30
        while not health["historian"]["ok"]:  # nothing written yet: /api/health sees the database back all the same
            assert time.monotonic() < deadline, health["historian"]
            await asyncio.sleep(0.2)
            async with http.get(f"{srv.url}/api/health") as r:
                health = await r.json()
        while True:
            try:
                assert (await gw.publish([pressure(4.0)])).durable
                break
            except RequestRefused:
                assert time.monotonic() < deadline, "the historian did not reconnect"
                await asyncio.sleep(0.2)
        assert await _series(http, srv, start, "PT-1.pressure") == [1.0, 4.0]
        assert (await viewer.seek(time.time())).props["PT-1/pressure"].v == 4.0


def test_two_processes_adding_the_same_properties_at_once_keep_every_sample_under_one_numbering(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two historians on one database (what two processes are to it) writing overlapping new properties in
    opposite orders at once: no deadlock, no sample lost, one key id per property that both read back."""
    t0 = 1_800_000_000.0
    sides = [Historian(tmp_path / name / "pump-test", database=postgres_url, clock=lambda: t0 + 3600) for name in "ab"]
    futures = []
    for i in range(20):
        for side, props in zip(sides, (range(200), reversed(range(100, 300))), strict=True):
            readings = [Reading(f"E-{k}", "v", float(i), "", t0 + i + (k % 7) / 10) for k in props]
            futures.append(side.append(readings, t0 + i + 1, "gw"))
    for future in futures:
        future.result(timeout=60)
    for side in sides:
        assert len(side.samples(t0 - 1, t0 + 60)) == 2 * 20 * 200
        state = side.state_at(t0 + 60)
        assert len(state) == 300 and {s.value for s in state.values()} == {19.0}
    assert sides[0]._names() == sides[1]._names()
    for side in sides:
        side.close()


def test_an_event_numbered_again_after_a_failover_is_recorded_once(tmp_path: Path, store_url: str | None) -> None:
    """The dead leader recorded an event it had not appended to the log; the next leader numbers it again (same
    content, a new seq) and records it again: the history keeps it once, under the first number."""
    t0 = 1_800_000_000.0
    if store_url is not None:  # each process with its own data dir
        dead, next_leader = (Historian(tmp_path / n / "pump-test", database=store_url, clock=lambda: t0) for n in "ab")
    else:  # processes on one host share the data dir
        dead = next_leader = Historian(tmp_path / "pump-test", clock=lambda: t0)
    topic = p.Event(7, "topic_created", "T-1", "", t0 + 1, session="pump-test", user="ana", message="leak")
    other = p.Event(8, "topic_created", "T-2", "", t0 + 1, session="pump-test", user="ana", message="leak")
    dead.record(topic).result(timeout=30)
    for event in (msgspec.structs.replace(topic, seq=9), msgspec.structs.replace(other, seq=10)):
        next_leader.record(event).result(timeout=30)
    for side in {dead, next_leader}:
        assert [(e.id, e.seq) for e in side.events(t0, t0 + 60)] == [("T-1", 7), ("T-2", 10)]
    for side in {dead, next_leader}:
        side.close()


def test_a_history_recorded_before_event_keys_is_opened_and_keeps_its_events(tmp_path: Path) -> None:
    t0 = 1_800_000_000.0
    folder = tmp_path / "pump-test"
    old = p.Event(1, "topic_created", "T-1", "", t0 + 1, session="pump-test", user="ana")
    historian = Historian(folder, clock=lambda: t0 + 60)
    historian.record(old).result(timeout=30)
    historian.close()
    with contextlib.closing(sqlite3.connect(folder / "history.sqlite")) as db:  # as twinview before keys left it
        db.executescript("DROP INDEX events_key; ALTER TABLE events DROP COLUMN key;")
    historian = Historian(folder, clock=lambda: t0 + 60)
    again = msgspec.structs.replace(old, seq=2, id="T-2")
    for event in (again, msgspec.structs.replace(again, seq=3)):
        historian.record(event).result(timeout=30)
    assert [e.seq for e in historian.events(t0, t0 + 60)] == [1, 2]
    historian.close()
