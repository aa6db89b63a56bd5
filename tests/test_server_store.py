"""The SQLite store: WAL mode, versioned schema, batched log writes off the loop, pruning, restore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import live_server
from viewer_server import protocol as p
from viewer_server import store as store_mod
from viewer_server.client import TwinClient


async def test_store_logs_batches_prunes_and_keeps_last_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "STORE_LOG_MAX_ROWS", 10)
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url, role="publisher") as pub:
        for value in range(30):
            await pub.publish([p.Reading(float(value), key="LT-1.level")])
        srv.live.hub.flush()  # close the open window now rather than in 16 ms
        srv.store.flush()
        db = sqlite3.connect(srv.store.path)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        expected = {"meta", "scenes", "bindings", "log", "props", "rooms", "revocations", "topics", "comments", "audit"}
        assert expected | {"alarms", "alarm_events"} <= tables
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "4"
        assert db.execute("SELECT count(*) FROM log").fetchone()[0] <= 10  # pruned, newest kept
        (value,) = db.execute("SELECT value FROM props WHERE element = 'LT-1' AND prop = 'level'").fetchone()
        assert value == b"29.0"
        (sha,) = db.execute("SELECT sha256 FROM bindings").fetchone()
        assert len(sha) == 64
        db.close()


async def test_a_lagging_disk_drops_batches_instead_of_growing_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_mod, "STORE_QUEUE_MAX", 0)  # as if the writer were stuck
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url, role="publisher") as pub:
        await pub.publish([p.Reading(1.0, key="LT-1.level")])
        srv.live.hub.flush()
        async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/api/health") as r:
            health = await r.json()
        assert health["store"]["dropped_batches"] >= 1 and health["store"]["write_errors"] == 0
        assert srv.live.hub.props["LT-1/level"].v == 1.0  # live state is unaffected
