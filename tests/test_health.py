"""`/api/health` names the process, its bus, store and peers, and is `degraded` (still 200, still serving
reads) while an engine fails, and `ok` again once it recovers, without a restart."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.live_server import JSON_BODY, live_server
from viewer_server import store as store_mod
from viewer_server.bus import InProcessBus
from viewer_server.health import EngineHealth, Peer, public_url
from viewer_server.historian import Historian
from viewer_server.store_db import StoreError

WAIT_S = 30.0  # a loaded machine is slow, not wrong


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def ingest(http: aiohttp.ClientSession, base: str, value: float) -> None:
    body = {"readings": [{"key": "PT-1.pressure", "value": value}]}
    async with http.post(f"{base}/api/ingest", json=body, headers=JSON_BODY) as r:
        assert r.status == 200, await r.text()


async def health_when(http: aiohttp.ClientSession, base: str, ready: Callable[[Any], bool]) -> Any:
    """/api/health once `ready(health)` holds (the store writes a batch a flush window after the ingest)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        status, health = await get(http, f"{base}/api/health")
        assert status == 200  # degraded or not, the process answers
        if ready(health) or time.monotonic() > deadline:
            return health
        await asyncio.sleep(0.02)


async def test_a_healthy_process_names_itself_its_engines_and_no_peers(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        status, health = await get(http, f"{srv.url}/api/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["process"] == f"{socket.gethostname()}:{os.getpid()}"
    assert health["bus"] == {"engine": "in-process", "ok": True, "url": "", "detail": ""}
    assert health["peers"] == []
    assert health["store"]["engine"] == "sqlite" and health["store"]["ok"] is True
    assert health["store"]["path"] == str(srv.store.path)


async def test_a_failing_store_degrades_the_process_reads_go_on_and_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        with monkeypatch.context() as m:

            def disk_full(*args: object, **kwargs: object) -> None:
                raise StoreError("OperationalError: database or disk is full")

            m.setattr(store_mod.Store, "_write_batch", disk_full)  # every write fails, as on a full disk
            m.setattr(store_mod.Store, "_call", staticmethod(disk_full))
            await ingest(http, srv.url, 4.2)
            health = await health_when(http, srv.url, lambda h: h["status"] == "degraded")
            assert health["store"]["ok"] is False
            assert "disk is full" in health["store"]["detail"] and str(tmp_path / "data") in health["store"]["detail"]
            status, state = await get(http, f"{srv.url}/api/state")  # a degraded process still serves reads
            assert status == 200 and state["props"]["PT-1/pressure"]["v"] == 4.2
        await ingest(http, srv.url, 4.3)  # the disk takes writes again: once the batch is written, ok
        health = await health_when(http, srv.url, lambda h: h["status"] == "ok")
        assert health["status"] == "ok" and health["store"]["ok"] is True and health["store"]["detail"] == ""


async def test_the_store_probe_waits_briefly_off_the_event_loop_and_runs_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_mod.Store(tmp_path / "data")
    release = threading.Event()
    threads: list[str] = []

    def stuck_ping(_: store_mod.Store) -> None:  # a database that does not answer
        threads.append(threading.current_thread().name)
        release.wait(WAIT_S)

    monkeypatch.setattr(store_mod.Store, "_ping", stuck_ping)
    try:
        started = time.monotonic()
        await store.probe()
        assert time.monotonic() - started < WAIT_S / 2, "a health request waits STORE_PROBE_TIMEOUT_S, not the database"
        monkeypatch.setattr(store_mod, "STORE_PROBE_INTERVAL_S", 0.0)
        await store.probe()  # the stuck probe is still running: no second one piles up behind it
        assert len(threads) == 1 and threads[0] != threading.current_thread().name
        release.set()  # once it has answered, the next request probes again
        deadline = time.monotonic() + WAIT_S
        while len(threads) < 2:
            assert time.monotonic() < deadline, "no probe after the stuck one ended"
            await store.probe()
            await asyncio.sleep(0.01)
    finally:
        release.set()
        store.close()


async def test_a_historian_that_cannot_write_degrades_the_process_refuses_readings_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        _, health = await get(http, f"{srv.url}/api/health")
        assert srv.live.historian is not None
        assert health["historian"] == {
            "engine": "sqlite", "ok": True, "url": f"sqlite:{srv.live.historian.path}", "detail": "",
            "write_errors": 0, "last_error": "",
        }  # fmt: skip
        with monkeypatch.context() as m:

            def disk_full(*args: object) -> None:
                raise sqlite3.OperationalError("database or disk is full")

            m.setattr(Historian, "_write_readings", disk_full)  # the history's disk is full
            body = {"readings": [{"key": "PT-1.pressure", "value": 4.2}]}
            async with http.post(f"{srv.url}/api/ingest", json=body, headers=JSON_BODY) as r:
                assert r.status == 503  # not acknowledged
            _, health = await get(http, f"{srv.url}/api/health")
            assert health["status"] == "degraded" and health["store"]["ok"] is True
            historian = health["historian"]
            assert historian["ok"] is False and historian["write_errors"] == 1
            assert "disk is full" in historian["detail"] and "refused" in historian["detail"]
            assert str(srv.live.historian.folder) in historian["detail"]
        await ingest(http, srv.url, 4.3)  # the disk takes writes again
        _, health = await get(http, f"{srv.url}/api/health")
        assert health["status"] == "ok" and health["historian"]["ok"] is True and health["historian"]["detail"] == ""
        assert health["historian"]["write_errors"] == 1 and "disk is full" in health["historian"]["last_error"]


class LostBus(InProcessBus):
    """A bus that has lost its engine but still hears from one peer (the shape a Redis bus reports)."""

    def health(self) -> EngineHealth:
        return EngineHealth("redis", ok=False, url="redis://cache:6379/0", detail="connection refused: start Redis")

    def peers(self) -> list[Peer]:
        return [Peer("twin-b:4242", seen_s=0.8)]


async def test_a_lost_bus_degrades_the_process_and_its_peers_are_listed(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        srv.live.bus = LostBus()
        _, health = await get(http, f"{srv.url}/api/health")
    assert health["status"] == "degraded"
    assert health["bus"] == {
        "engine": "redis",
        "ok": False,
        "url": "redis://cache:6379/0",
        "detail": "connection refused: start Redis",
    }
    assert health["peers"] == [{"name": "twin-b:4242", "seen_s": 0.8}]
    assert health["store"]["ok"] is True


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://cache:6379/0"),
        ("postgresql://twin:s3cret@db.example/twinview?sslmode=require", "postgresql://db.example/twinview"),
        ("redis://[::1]:6380", "redis://[::1]:6380"),
    ],
)
def test_engine_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown
