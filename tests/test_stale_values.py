"""Stale values on the real server: a property whose source has been silent for longer than its binding's
`stale_after` is flagged (`silent_since`) for every client, a sample makes it fresh again, values restored
after a restart are stale at once if their source has been silent too long, and labels name their values."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import BINDINGS, JSON_BODY, live_server
from viewer_server import protocol as p
from viewer_server import serve as serve_mod
from viewer_server.client import TwinClient

pytestmark = pytest.mark.deployable

PT, RUNNING = "PT-1/pressure", "P-1/running"
# PT-1 reports every few hundred ms at most; P-1's running state only when it changes (never stale).
STALE_BINDINGS = BINDINGS.replace("key: PT-1.pressure}", "key: PT-1.pressure, stale_after: 0.3}").replace(
    "key: P-1.running}", "key: P-1.running, stale_after: null}"
)


async def ingest(srv: object, *readings: p.Reading) -> None:
    async with aiohttp.ClientSession() as http:
        body = p.encode({"readings": list(readings)}, "json")
        async with http.post(f"{srv.url}/api/ingest", headers=JSON_BODY, data=body) as r:  # type: ignore[attr-defined]
            assert r.status == 200


@pytest.fixture
def fast_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_mod, "RULES_TICK_S", 0.05)


@pytest.mark.in_process_only("shortens the rules tick by patching the server's module")
async def test_a_silent_source_goes_stale_for_everyone_and_its_next_sample_makes_it_fresh(
    tmp_path: Path, fast_tick: None
) -> None:
    async with live_server(tmp_path, bindings=STALE_BINDINGS) as srv, TwinClient(srv.ws_url) as tc:
        await ingest(srv, p.Reading(3.0, key="PT-1.pressure"), p.Reading(True, key="P-1.running"))
        await tc.wait_for(lambda c: PT in c.props and RUNNING in c.props)
        assert tc.props[PT].silent_since is None
        await tc.wait_for(lambda c: c.props[PT].silent_since is not None, timeout=5)
        last_sample = srv.live.hub.state.get("PT-1", "pressure").rx  # type: ignore[union-attr]
        assert tc.props[PT].silent_since == last_sample and tc.props[PT].v == 3.0  # the value is kept, flagged
        assert tc.props[RUNNING].silent_since is None  # stale_after: null
        async with TwinClient(srv.ws_url) as late:  # a late joiner sees it stale too
            assert late.props[PT].silent_since == last_sample
        await ingest(srv, p.Reading(3.0, key="PT-1.pressure"))  # the same value: fresh again all the same
        await tc.wait_for(lambda c: c.props[PT].silent_since is None)
        assert tc.props[PT].ts > last_sample - 1


@pytest.mark.in_process_only("restarts the server on a store it aged by hand")
async def test_values_restored_after_a_long_outage_are_stale_at_once(tmp_path: Path) -> None:
    async with live_server(tmp_path, bindings=STALE_BINDINGS) as srv:
        port, scene, path = srv.port, srv.live.scene.id, srv.store.path
        await ingest(srv, p.Reading(3.0, key="PT-1.pressure"), p.Reading(True, key="P-1.running"))
        srv.live.hub.flush()
        srv.store.flush()
    with sqlite3.connect(path) as db:  # as if the server had been down for a day
        db.execute("UPDATE props SET rx = rx - 86400 WHERE scene = ?", (scene,))
    async with live_server(tmp_path, bindings=STALE_BINDINGS, port=port) as srv2, TwinClient(srv2.ws_url) as tc:
        assert tc.props[PT].silent_since is not None and tc.props[PT].v == 3.0
        assert tc.props[RUNNING].silent_since is None


async def test_a_label_names_the_values_it_shows(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url) as tc:
        assert tc.visuals["PT-1"].label_props == [PT]  # "{value:.2f} {unit}" of PT-1.pressure
        assert tc.visuals["P-1"].label_props is None
