"""The store on both backends (SQLite, PostgreSQL): versioned schema, batched log writes off the loop,
pruning, last values, and a lagging database dropping batches rather than growing memory."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import live_server, store_rows
from viewer_server import protocol as p
from viewer_server import store as store_mod
from viewer_server.client import TwinClient
from viewer_server.store import RoomRow, Store, put_room
from viewer_server.store_db import Db
from viewer_server.store_schema import SCHEMA_VERSION


async def test_store_logs_batches_prunes_and_keeps_last_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None
) -> None:
    monkeypatch.setattr(store_mod, "STORE_LOG_MAX_ROWS", 10)
    async with live_server(tmp_path, store=store_url) as srv, TwinClient(srv.ws_url, role="publisher") as pub:
        for value in range(30):
            await pub.publish([p.Reading(float(value), key="LT-1.level")])
        srv.live.hub.flush()  # close the open window now rather than in 16 ms
        srv.store.flush()
        assert srv.store.backend == ("sqlite" if store_url is None else "postgresql")
        if store_url is None:
            assert store_rows(srv.store, "PRAGMA journal_mode") == [("wal",)]
        tables = srv.store.submit(lambda db: db.tables()).result()  # type: ignore[attr-defined]
        expected = {"schema_version", "scenes", "bindings", "log", "props", "rooms", "revocations", "topics"}
        assert expected | {"comments", "audit", "alarms", "alarm_events", "procedure_events"} <= tables
        assert store_rows(srv.store, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
        assert store_rows(srv.store, "SELECT count(*) FROM log")[0][0] <= 10  # pruned, newest kept
        [(value,)] = store_rows(srv.store, "SELECT value FROM props WHERE element = 'LT-1' AND prop = 'level'")
        assert value == b"29.0"
        [(sha,)] = store_rows(srv.store, "SELECT sha256 FROM bindings")
        assert len(sha) == 64
    store = Store(tmp_path / "data", store_url)  # a restart restores the last values
    try:
        assert store.load_props("pump-test")["LT-1"]["level"].value == 29.0
    finally:
        store.close()


async def test_a_lagging_disk_drops_batches_instead_of_growing_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None
) -> None:
    monkeypatch.setattr(store_mod, "STORE_QUEUE_MAX", 0)  # as if the writer were stuck
    async with live_server(tmp_path, store=store_url) as srv, TwinClient(srv.ws_url, role="publisher") as pub:
        await pub.publish([p.Reading(1.0, key="LT-1.level")])
        srv.live.hub.flush()
        async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/api/health") as r:
            health = await r.json()
        assert health["store"]["dropped_batches"] >= 1 and health["store"]["write_errors"] == 0
        assert health["store"]["reachable"] is True
        assert srv.live.hub.props["LT-1/level"].v == 1.0  # live state is unaffected


def test_a_failing_call_undoes_only_its_own_writes_alone_or_among_others(tmp_path: Path, store_url: str | None) -> None:
    store = Store(tmp_path, store_url)
    try:

        def room(name: str, fail: bool = False) -> Callable[[Db], str]:
            def write(db: Db) -> str:
                put_room(db, RoomRow(name, "scene", name, 1.0, "test"))
                if fail:
                    raise ValueError(f"{name} refused")
                return name

            return write

        with pytest.raises(ValueError, match="alone refused"):  # alone in its transaction: rolled back whole
            store.submit(room("alone", fail=True)).result()
        held = threading.Event()
        store.submit(lambda db: held.wait(10))  # the writer waits: the next three share one transaction
        grouped = [store.submit(room("first")), store.submit(room("middle", fail=True)), store.submit(room("last"))]
        held.set()
        assert [grouped[0].result(), grouped[2].result()] == ["first", "last"]
        with pytest.raises(ValueError, match="middle refused"):
            grouped[1].result()
        assert [r.id for r in store.rooms()] == ["first", "last"]
    finally:
        store.close()
