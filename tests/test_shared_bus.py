"""Several server processes on one Redis (`serve --bus redis://…`): one twin, one numbering, one log."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from tests.live_server import live_server
from tests.redis_server import RedisServer, redis_service  # noqa: F401 - the fixture
from tests.test_server_ws import ingest, pressure
from viewer_server.client import TwinClient
from viewer_server.serve import RunningServer

PT = "PT-1/pressure"


@contextlib.asynccontextmanager
async def servers(root: Path, url: str, count: int = 2) -> AsyncIterator[list[RunningServer]]:
    """`count` servers of the same scene and data dir on one Redis (the first one founds the deployment)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(live_server(root, bus_url=url)) for _ in range(count)]


async def test_telemetry_ingested_at_one_process_reaches_clients_of_another(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    async with servers(tmp_path, redis_service.url) as (a, b), aiohttp.ClientSession() as http:
        assert a.live.hub.epoch == b.live.hub.epoch
        async with TwinClient(a.ws_url) as on_a, TwinClient(b.ws_url) as on_b:
            await ingest(http, b.url, pressure(5.7))
            for c in (on_a, on_b):
                await c.wait_for(lambda c: PT in c.props and c.alarms, timeout=10)
            assert on_a.props == on_b.props and on_a.visuals == on_b.visuals
            assert [e.seq for e in on_a.events] == [e.seq for e in on_b.events]
            assert on_a.seq == on_b.seq == a.live.hub.seq == b.live.hub.seq
