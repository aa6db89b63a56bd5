"""Faults of a deployment (three `twinview serve --bus redis://…` processes behind the reference HAProxy,
tests/deployment.py) while 100 clients are connected and telemetry flows, one after the other on the same
deployment: kill -9 of the leading process (the proxy sends its clients to the others, where each resumes), then
a restart of Redis (readings sent meanwhile are refused, every client is told the bus is degraded, then that it
is back). Every client ends with no loss, no duplicate, events in order (`assert_resumed`, the checker of the
single-process resume tests) against a client that never left, the last reading acknowledged shown, and its
display name kept (unique across the processes however many join at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.deployment import Deployment, ServerProcess, deployed
from tests.haproxy import per_address_bound
from tests.live_server import BINDINGS, write_bindings, write_scene
from tests.redis_server import RedisServer, redis_server
from tests.test_server_ws import assert_resumed, pressure
from viewer_server import protocol as p
from viewer_server.auth import issue
from viewer_server.client import RequestRefused, TwinClient

pytestmark = pytest.mark.slow
CLIENTS = 100
PEOPLE = 4  # of the clients, these join with a token: a pose each, and one creates a topic
WAIT_S = 60.0  # a loaded machine is slow, not wrong
POSE = p.Pose((1.0, 1.7, 4.0), (0.0, 0.0, 0.0, 1.0))
LEVEL = "LT-1/level"


def source_address(i: int) -> str:
    """Client `i`'s loopback address: the proxy admits so many connections per address (127/8 is all loopback
    on Linux) that the clients come from as many addresses as they need, with room for reconnects."""
    return f"127.0.0.{2 + i // (per_address_bound() // 2)}"


async def health(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(f"{url}/api/health") as r:
        assert r.status == 200
        return await r.json()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition()` holds (a state spread over many clients, none of which can wait for it)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.05)


@dataclass
class Feed:
    """Telemetry flowing into one process while the test runs: LT-1's level counts up (so the last value
    acknowledged is the one every client must end with), PT-1's pressure crosses its alarm threshold every
    few readings (numbered events: alarm_raised, alarm_returned)."""

    gateway: TwinClient
    acknowledged: float = 0.0
    refused: int = 0  # readings refused with not_saved (the bus was down): not acknowledged, never shown

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            high = n // 10 % 2 == 1
            try:
                ack = await self.gateway.publish(
                    [p.Reading(float(n), key="LT-1.level"), pressure(5.7 if high else 1.0)]
                )
            except RequestRefused as exc:
                assert exc.error.code == p.ERR_NOT_SAVED, exc
                self.refused += 1
            else:
                assert ack.accepted == 2, ack
                self.acknowledged = float(n)
            await asyncio.sleep(0.02)  # ~50 readings a second: a pace, not a wait for something


@contextlib.asynccontextmanager
async def feeding(gateway: TwinClient) -> AsyncIterator[Feed]:
    feed, stop = Feed(gateway), asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield feed
    finally:
        stop.set()
        await task


def through_the_proxy(d: Deployment, i: int) -> TwinClient:
    """Client `i`: the first PEOPLE join the scene's default session with a token (a person, with a name), the
    others as visitors."""
    user = f"user{i}"
    person = {"name": user, "token": issue(d.secret, d.scene_id, user, "annotator")} if i < PEOPLE else {}
    return TwinClient(d.ws_url, local_address=source_address(i), **person)


def direct(d: Deployment, process: ServerProcess) -> str:
    """The WebSocket URL of one process, bypassing the proxy."""
    return f"ws://127.0.0.1:{process.port}/ws/{d.scene_id}"


async def kill(leader: ServerProcess, clients: list[TwinClient], on_leader: int) -> None:
    """kill -9 of the leading process: every one of its clients comes back through the same proxy address."""
    before = sum(c.connects for c in clients)
    leader.kill()
    await until(lambda: sum(c.connects for c in clients) == before + on_leader, "the dead process's clients resumed")


async def restart(redis: RedisServer, feed: Feed, everyone: list[TwinClient]) -> None:
    """Stop Redis until readings are refused (not_saved) and every client is told the bus is degraded, then start
    it again until every client is told it is back."""
    redis.stop()
    await until(
        lambda: feed.refused > 0 and all("degraded" in c.statuses for c in everyone),
        "readings refused (not_saved) and every client told the bus is degraded",
    )
    redis.start()
    await until(lambda: all(c.statuses[-1] == "ok" for c in everyone), "every client told the bus is back")


async def goes_on(feed: Feed, watcher: TwinClient) -> None:
    """The telemetry acknowledged from now on reaches the reference: the deployment works again."""
    now = feed.acknowledged
    await until(lambda: watcher.props[LEVEL].v >= now + 20, "the feed went on past the fault")


async def test_100_clients_lose_nothing_through_kill_9_of_the_leader_then_a_redis_restart(tmp_path: Path) -> None:
    scene_dir, bindings = write_scene(tmp_path), write_bindings(tmp_path, BINDINGS)
    with redis_server(tmp_path) as redis:
        async with (
            deployed(tmp_path, scene_dir, 3, ["--bindings", str(bindings), "--bus", redis.url]) as d,
            aiohttp.ClientSession() as http,
        ):
            roles = {proc.name: (await health(http, proc.url))["leader"] for proc in d.processes}
            [leader] = [proc for proc in d.processes if roles[proc.name]]
            survivor, other = [proc for proc in d.processes if proc is not leader]
            # The reference never leaves (on a survivor, past the proxy); the gateway feeds the other survivor.
            watcher = TwinClient(direct(d, survivor))
            gateway = TwinClient(direct(d, other), role="publisher", reconnect=False)
            clients = [through_the_proxy(d, i) for i in range(CLIENTS)]
            await asyncio.gather(*(client.connect() for client in (watcher, gateway, *clients)))
            names = [c.welcome.name for c in clients if c.welcome is not None]
            assert len({name.casefold() for name in names}) == CLIENTS  # unique across the processes, none refused
            on_leader = (await health(http, leader.url))["clients"]
            assert on_leader > 0  # leastconn spread them: about a third
            async with feeding(gateway) as feed:
                await asyncio.gather(*(client.send_presence(POSE) for client in clients[:PEOPLE]))
                topic = await clients[0].create_topic(p.TopicDraft("before the crash"))
                await watcher.wait_for(
                    lambda c: topic.guid in c.topics and len(c.presence) == PEOPLE and len(c.events) >= 3, WAIT_S
                )
                await kill(leader, clients, on_leader)
                await goes_on(feed, watcher)
                await restart(redis, feed, [watcher, *clients])
                await goes_on(feed, watcher)
            alive = [await health(http, proc.url) for proc in d.processes if proc.proc.poll() is None]
            assert sum(h["leader"] for h in alive) == 1 and all(h["status"] == "ok" for h in alive)
            answered_by = {(await health(http, d.url))["process"] for _ in range(6)}
            assert answered_by <= {h["process"] for h in alive}  # the proxy took the dead process out
            assert sum(c.connects for c in clients) == CLIENTS + on_leader  # the restart of Redis moved nobody
            # Converged: the last reading acknowledged is everyone's, at the reference's seq.
            await watcher.wait_for(lambda c: c.props[LEVEL].v == feed.acknowledged, WAIT_S)
            await watcher.wait_for(lambda c: len(c.presence) == PEOPLE - moved_people(clients), WAIT_S)
            for client in clients:
                await client.wait_for(lambda c: c.seq == watcher.seq, WAIT_S)
                assert_resumed(client, watcher)
                assert client.bad_frames == 0 and client.snapshots == 1  # every frame decoded, no resync
            assert watcher.connects == 1 and watcher.seq_gaps == watcher.duplicate_events == 0
            assert [c.welcome.name for c in clients if c.welcome is not None] == names  # each kept its name
            # The pump's alarm was decided once per crossing, by one leader at a time: raised and returned in turn,
            # one revision after the other, across both faults.
            pump = [e for e in watcher.events if e.element == "P-1"]
            assert [e.kind for e in pump] == ["alarm_raised", "alarm_returned"] * (len(pump) // 2) + (
                ["alarm_raised"] if len(pump) % 2 else []
            )
            assert [e.alarm.revision for e in pump if e.alarm] == list(range(1, len(pump) + 1)) and len(pump) >= 4
            for client in (watcher, gateway, *clients):
                await client.close()


def moved_people(clients: list[TwinClient]) -> int:
    """The people whose connection was on the dead process: their presence left with it (their reconnect has
    not sent a pose again)."""
    return sum(c.connects == 2 for c in clients[:PEOPLE])
