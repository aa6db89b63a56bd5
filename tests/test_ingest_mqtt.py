"""MQTT ingest against a real Mosquitto: bound topics reach clients; bad messages are counted;
a broker that goes away and comes back is reconnected to without hurting the server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import aiomqtt
import orjson

from tests.live_server import live_server
from tests.mosquitto import broker, mosquitto_url  # noqa: F401 - the fixture
from viewer_server.client import TwinClient


async def publish(url: str, *messages: tuple[str, object]) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        for topic, payload in messages:
            data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            await client.publish(topic, data, qos=1)


async def health(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/health") as r:
        return await r.json()


async def wait_connected(srv_url: str, connects: int = 1, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = await health(srv_url)
        if h["mqtt"]["connected"] and h["mqtt"]["connects"] >= connects:
            return h
        await asyncio.sleep(0.05)
    raise TimeoutError(f"MQTT ingest not connected: {h['mqtt']}")


async def test_mqtt_messages_reach_clients_and_rejections_are_counted(tmp_path: Path, mosquitto_url: str) -> None:  # noqa: F811
    async with live_server(tmp_path, mqtt_url=mosquitto_url) as srv, TwinClient(srv.ws_url) as tc:
        await wait_connected(srv.url)
        await publish(
            mosquitto_url,
            ("plant/PT-1/telemetry", {"value": 5.1, "ts": time.time(), "quality": "good"}),
            ("plant/P-1/state", {"running": True}),
            ("plant/PT-1/telemetry", {"value": "high"}),  # not numeric
            ("plant/LT-1/telemetry", b"{broken"),  # malformed
            ("plant/unbound/telemetry", {"value": 1}),  # nobody subscribed: never arrives
        )
        await tc.wait_for(lambda c: "PT-1/pressure" in c.props and "P-1/running" in c.props, timeout=10)
        assert tc.props["PT-1/pressure"].v == 5.1 and tc.visuals["P-1"].status == "warning"
        deadline = time.monotonic() + 5
        while (h := await health(srv.url))["rejected"]["malformed"] < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert h["rejected"]["not_numeric"] == 1 and h["rejected"]["malformed"] == 1
        assert h["mqtt"]["messages"] == 4 and h["accepted"] == 2


async def test_broker_restart_is_survived_with_backoff(tmp_path: Path) -> None:
    with contextlib.ExitStack() as first:
        url = first.enter_context(broker(tmp_path))
        port = int(url.rsplit(":", 1)[1])
        async with live_server(tmp_path, mqtt_url=url) as srv, TwinClient(srv.ws_url) as tc:
            await wait_connected(srv.url)
            first.close()  # the broker goes away
            deadline = time.monotonic() + 10
            while (h := await health(srv.url))["mqtt"]["connected"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert h["status"] == "ok" and not h["mqtt"]["connected"] and h["mqtt"]["last_error"]
            with broker(tmp_path, port=port):  # ... and comes back on the same port
                await wait_connected(srv.url, connects=2)
                await publish(url, ("plant/LT-1/telemetry", {"value": 42.0}))
                await tc.wait_for(lambda c: "LT-1/level" in c.props, timeout=10)
