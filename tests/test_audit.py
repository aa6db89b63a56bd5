"""The audit trail (viewer_server.audit) cannot be used to fill the disk: permission is checked before
anything is written, a connection's refusals are one summary row and are rate-limited, and rows are kept
only as long as the retention says."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import live_server, mint_token
from viewer_server import protocol as p
from viewer_server.audit import REFUSED, AuditSummaries, Retention
from viewer_server.client import RequestRefused, TwinClient
from viewer_server.session import REFUSAL_BURST
from viewer_server.store import AuditEntry, Store, put_audit

FLOOD = 200


async def test_a_flood_of_refused_commands_writes_one_summary_and_is_slowed_down(
    tmp_path: Path, store_url: str | None
) -> None:
    async with live_server(tmp_path, store=store_url) as srv, aiohttp.ClientSession() as http:
        token = mint_token(srv, "vic", "viewer")
        async with http.ws_connect(srv.ws_url, protocols=["twinview.v1"]) as ws:
            await ws.send_str(p.encode(p.Hello("flood", "0", token=token), "json").decode())
            for i in range(FLOOD):  # without waiting for the answers, as a script would
                await ws.send_str(p.encode(p.Command("P-1", "start", ref=f"c{i}"), "json").decode())
            errors: list[p.Error] = []
            while (frame := await ws.receive(timeout=30)).type == aiohttp.WSMsgType.TEXT:
                message = p.decode_server(frame.data, "json")
                if isinstance(message, p.Error):
                    errors.append(message)
            closed = frame
        assert {e.code for e in errors[:REFUSAL_BURST]} == {p.ERR_FORBIDDEN}
        assert errors[REFUSAL_BURST].code == p.ERR_RATE_LIMITED and errors[REFUSAL_BURST].ref == f"c{REFUSAL_BURST}"
        limited = [e for e in errors if e.code == p.ERR_RATE_LIMITED]
        assert len(limited) == REFUSAL_BURST and "refused requests" in limited[0].message
        assert (closed.data, closed.extra) == (
            p.CLOSE_POLICY,
            "too many refused requests: send only what your role may do",
        )
        srv.store.flush()
        rows = [e for e in srv.store.audit(srv.live.scene.id, 1000) if e.actor == "vic"]
    assert len(rows) == 1 and rows[0].action == REFUSED  # was one row per command
    assert rows[0].target == "WebSocket from 127.0.0.1" and rows[0].detail == "command 1"  # the rest: a minute later


async def test_visitors_reconnecting_to_refuse_again_share_one_row(tmp_path: Path, store_url: str | None) -> None:
    async with live_server(tmp_path, store=store_url) as srv:
        for _ in range(5):
            async with TwinClient(srv.ws_url, name="visitor") as visitor:
                with pytest.raises(RequestRefused):
                    await visitor.command("P-1", "start")
        srv.store.flush()
        rows = [e for e in srv.store.audit(srv.live.scene.id, 1000) if e.action == REFUSED]
        assert [(e.actor, e.detail) for e in rows] == [("guests", "command 1")]
        srv.live.audit.close_all()  # type: ignore[union-attr]  # what the server does as it stops
        srv.store.flush()
        rows = [e for e in srv.store.audit(srv.live.scene.id, 1000) if e.action == REFUSED]
        assert [(e.actor, e.detail) for e in rows] == [("guests", "command 4"), ("guests", "command 1")]


def test_summaries_are_one_row_per_source_and_interval() -> None:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    written: list[AuditEntry] = []

    class FakeStore:
        def submit(self, fn):
            fn(_Recorder(written))

    clock = Clock()
    summaries = AuditSummaries(FakeStore(), interval_s=60, clock=clock)  # type: ignore[arg-type]
    entry = AuditEntry("s", 0, "gw", "publisher", "telemetry.publish", "HTTP from 10.0.0.7")
    for _ in range(1000):
        summaries.note("gw", entry, {"batches": 1, "accepted": 5})
    assert [e.detail for e in written] == ["batches 1, accepted 5"]  # the first at once
    clock.now = 30
    summaries.flush_due()
    assert len(written) == 1
    clock.now = 61
    summaries.flush_due()
    assert [e.detail for e in written][1:] == ["batches 999, accepted 4995"]
    clock.now = 200
    summaries.flush_due()  # nothing new: the quiet source is forgotten
    assert len(written) == 2 and summaries._sources == {}


class _Recorder:
    """Stands for the database: put_audit's INSERT becomes an AuditEntry."""

    def __init__(self, written: list[AuditEntry]) -> None:
        self.written = written

    def execute(self, _sql: str, row: tuple) -> None:
        self.written.append(AuditEntry(*row))


def _fill(store: Store, rows: int, ts: float) -> None:
    for i in range(rows):
        store.submit(lambda db, i=i: put_audit(db, AuditEntry("s", ts + i, f"u{i}", "viewer", "topic.create", "t")))
    store.flush()


def test_retention_keeps_the_newest_rows_within_the_age(tmp_path: Path, store_url: str | None) -> None:
    store = Store(tmp_path, store_url)
    try:
        now = time.time()
        _fill(store, 5, now - 40 * 86400)  # older than 30 days
        _fill(store, 20, now - 100)
        Retention(days=30, max_rows=12).prune(store, now)
        store.flush()
        kept = store.audit("s", 100)
        assert [e.actor for e in kept] == [f"u{i}" for i in range(19, 7, -1)]
        Retention(days=0, max_rows=0).prune(store, now)  # 0: no limit
        store.flush()
        assert len(store.audit("s", 100)) == 12
    finally:
        store.close()


async def test_the_server_applies_the_retention_at_start(tmp_path: Path, store_url: str | None) -> None:
    async with live_server(tmp_path, store=store_url) as srv:
        _fill(srv.store, 30, time.time() - 10)
    async with live_server(tmp_path, store=store_url, audit=Retention(max_rows=4)) as srv:
        deadline = time.monotonic() + 10
        while len(srv.store.audit("s", 100)) > 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            srv.store.flush()
        assert [e.actor for e in srv.store.audit("s", 100)] == ["u29", "u28", "u27", "u26"]
