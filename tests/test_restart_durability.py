"""kill -9 of a real `twinview serve`, restart on the same data dir: nothing acknowledged is lost (topics,
comments, audit rows, published readings), and every client comes back on its own (new epoch -> resync
snapshot with every topic and comment)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import websockets

from tests.live_server import write_bindings, write_scene
from viewer_server import protocol as p
from viewer_server.auth import issue, load_secret
from viewer_server.client import RequestRefused, TwinClient
from viewer_server.scenes import scene_id_for

TWINVIEW = Path(sys.executable).with_name("twinview")
STARTUP_TIMEOUT_S = 30.0
AUTHORS = ("ana", "ben", "cleo")
TOPICS_PER_AUTHOR = 8  # under the per-user burst, so the rate limit never interferes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(scene: Path, bindings: Path, data: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`twinview serve` in a process of its own (`extra`: more flags), killed at the end if still running."""
    args = [
        str(TWINVIEW),
        "serve",
        str(scene),
        "--bindings",
        str(bindings),
        "--port",
        str(port),
        "--data-dir",
        str(data),
        *extra,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _ready(url: str) -> str:
    """Wait for /api/health; returns the server's epoch."""
    deadline = asyncio.get_running_loop().time() + STARTUP_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/api/health") as r:
                    if r.status == 200:
                        return (await r.json())["epoch"]
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("server did not start")
            await asyncio.sleep(0.1)


async def _write(client: TwinClient, acked: list[str]) -> None:
    """Create topics and comment each until the server dies; record only what was acknowledged."""
    for i in range(TOPICS_PER_AUTHOR // 2):
        try:
            topic = await client.create_topic(p.TopicDraft(f"{client.name} #{i}"), timeout=2)
            acked.append(topic.guid)
            comment = await client.add_comment(topic.guid, f"note {i}", timeout=2)
            acked.append(comment.guid)
        except (TimeoutError, AssertionError, RequestRefused, OSError, websockets.ConnectionClosed):
            return  # the server is gone: this request was never acknowledged


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_kill_9_loses_nothing_acknowledged_and_every_client_resumes(tmp_path: Path) -> None:
    scene, bindings, data = write_scene(tmp_path), write_bindings(tmp_path), tmp_path / "data"
    port = _free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/{scene_id_for(scene)}"
    with _server(scene, bindings, data, port) as first:
        epoch = await _ready(url)
        secret = load_secret(data)
        session = scene_id_for(scene)
        writers = [TwinClient(ws_url, token=issue(secret, session, name, "annotator"), name=name) for name in AUTHORS]
        watcher = TwinClient(ws_url, token=issue(secret, session, "watch", "viewer"), name="watch")
        for c in (*writers, watcher):
            await c.connect()
        acked: list[str] = []
        work = [asyncio.create_task(_write(c, acked)) for c in writers]
        while len(acked) < len(AUTHORS) * 2 and not all(t.done() for t in work):
            await asyncio.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)  # mid-stream: some requests are in flight
        first.wait(timeout=10)
        await asyncio.gather(*work)
    assert len(acked) >= len(AUTHORS) * 2

    with _server(scene, bindings, data, port):
        new_epoch = await _ready(url)
        assert new_epoch != epoch
        for c in (*writers, watcher):  # each reconnects by itself and is resynced
            await c.wait_for(lambda c: c.epoch == new_epoch, timeout=STARTUP_TIMEOUT_S)
            assert "epoch_changed" in c.resyncs
            assert set(acked) <= set(c.topics) | set(c.comments)
        await watcher.ping()
        # The trail survived too: one audit row per acknowledged change (at least).
        headers = {"Authorization": f"Bearer {issue(secret, session, 'root', 'admin')}"}
        audit_url = f"{url}/api/sessions/{session}/audit?limit=2000"
        async with aiohttp.ClientSession() as http, http.get(audit_url, headers=headers) as r:
            targets = {row["target"] for row in await r.json()}
        assert set(acked) <= targets
        # ... and the writers carry on in the new epoch.
        topic = next(guid for guid in acked if guid in watcher.topics)
        more = await writers[0].add_comment(topic, "back")
        await watcher.wait_for(lambda c: more.guid in c.comments)
        for c in (*writers, watcher):
            await c.close()


async def _publish_until_killed(gw: TwinClient, start: float, acked: list[float]) -> None:
    """Publish batches of ten pressure readings (distinct source times); record the times of acknowledged ones."""
    batch = 0
    while True:
        times = [start + (batch * 10 + i) * 0.01 for i in range(10)]
        try:
            ack = await gw.publish([p.Reading(1.0 + i, key="PT-1.pressure", ts=t) for i, t in enumerate(times)], 2)
        except (TimeoutError, OSError, websockets.ConnectionClosed):
            return  # the server is gone: this batch was never acknowledged
        assert ack.accepted == 10 and ack.durable
        acked.extend(times)
        batch += 1


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_kill_9_loses_no_acknowledged_reading(tmp_path: Path) -> None:
    scene, bindings, data = write_scene(tmp_path), write_bindings(tmp_path), tmp_path / "data"
    port = _free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/{scene_id_for(scene)}"
    start = time.time() - 50
    with _server(scene, bindings, data, port) as first:
        await _ready(url)
        token = issue(load_secret(data), scene_id_for(scene), "gw", "publisher")
        gw = TwinClient(ws_url, token=token, name="gw", reconnect=False)
        await gw.connect()
        acked: list[float] = []
        work = asyncio.create_task(_publish_until_killed(gw, start, acked))
        while len(acked) < 500:
            await asyncio.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)  # mid-stream: a batch is in flight
        first.wait(timeout=10)
        await work
        await gw.close()

    with _server(scene, bindings, data, port):
        await _ready(url)
        query = {"keys": "PT-1.pressure", "from": str(start - 1), "to": str(start + 40), "points": "5000"}
        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/history", params=query) as r:
            stored = set((await r.json())["series"][0]["t"])
    assert len(acked) >= 500 and set(acked) <= stored
