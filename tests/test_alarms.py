"""The alarm life cycle (ISA-18.2): the alarm book's transitions, and the real server — acknowledge and shelve
by role, audited; every transition an attributed event; the list kept across a restart and given to late joiners."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import msgspec
import pytest

from scene.rules import AlarmEvent
from tests.live_server import (
    JSON_BODY,
    Served,
    live_server,
    mint_token,
    person,
    session_id,
    write_bindings,
    write_scene,
)
from tests.test_restart_durability import STARTUP_TIMEOUT_S, TWINVIEW, _free_port, _ready, _server
from viewer_server import protocol as p
from viewer_server.alarms import ALARM_HISTORY_MAX, AlarmBook
from viewer_server.auth import issue, load_secret
from viewer_server.client import RequestRefused, TwinClient
from viewer_server.procedures import Refused
from viewer_server.scenes import scene_id_for

pytestmark = pytest.mark.deployable

PRESSURE = "operations.rules[1]"  # tests/live_server.py: PT-1.pressure thresholds (warning 5, alarm 5.5) on P-1
LEVEL = "energy.rules[0]"  # LT-1.level above 95 % on T-1


# --- the book alone --------------------------------------------------------------------------------


def condition(kind: str, severity: str = "alarm", ts: float = 10.0, value: float = 6.0) -> AlarmEvent:
    return AlarmEvent(PRESSURE, kind, "P-1", "pressure", "PT-1", "operations", severity, f"{kind}", ts, value, "bar")  # type: ignore[arg-type]


class Book:
    """An alarm book that numbers and applies what it decides, as the hub does."""

    def __init__(self) -> None:
        self.book = AlarmBook()
        self.seq = 0
        self.events: list[p.Event] = []

    def do(self, draft: p.Event | None) -> p.Event | None:
        if draft is None:
            return None
        self.seq += 1
        event = msgspec.structs.replace(draft, seq=self.seq)
        self.book.apply(event)
        self.events.append(event)
        return event

    def state(self) -> str:
        alarm = self.book.alarms.get(PRESSURE)
        return "normal" if alarm is None else alarm.state

    def trail(self) -> list[tuple[str, str, str]]:
        return [(e.kind, e.user, e.alarm.state if e.alarm else "") for e in self.events]


def test_acknowledged_then_returned_is_normal_and_returned_then_acknowledged_too() -> None:
    b = Book()
    b.do(b.book.condition(condition("raised")))
    b.do(b.book.acknowledge(PRESSURE, "olga", 20.0))
    b.do(b.book.condition(condition("cleared", ts=30.0)))
    b.do(b.book.condition(condition("raised", ts=40.0)))
    b.do(b.book.condition(condition("cleared", ts=50.0)))
    assert b.state() == "returned"  # unacknowledged, so it stays listed
    b.do(b.book.acknowledge(PRESSURE, "olga", 60.0))
    assert b.trail() == [
        ("alarm_raised", "", "unacknowledged"),
        ("alarm_acknowledged", "olga", "acknowledged"),
        ("alarm_cleared", "", "normal"),
        ("alarm_raised", "", "unacknowledged"),
        ("alarm_returned", "", "returned"),
        ("alarm_acknowledged", "olga", "normal"),
    ]
    assert [e.ts for e in b.events] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert [e.alarm.revision for e in b.events if e.alarm] == [1, 2, 3, 1, 2, 3]  # a new raise starts over
    assert PRESSURE not in b.book.alarms and len(b.book.history) == 6


def test_only_an_escalation_asks_for_a_new_acknowledgement() -> None:
    b = Book()
    b.do(b.book.condition(condition("raised", "warning")))
    b.do(b.book.acknowledge(PRESSURE, "olga", 11.0))
    b.do(b.book.condition(condition("raised", "alarm", ts=12.0)))
    assert b.state() == "unacknowledged"
    b.do(b.book.acknowledge(PRESSURE, "olga", 13.0))
    b.do(b.book.condition(condition("raised", "warning", ts=14.0)))
    alarm = b.book.alarms[PRESSURE]
    assert (alarm.state, alarm.severity, alarm.acknowledged_by, alarm.since) == (
        "acknowledged",
        "warning",
        "olga",
        10.0,
    )
    assert b.do(b.book.condition(condition("raised", "warning", ts=15.0))) is None  # nothing new


def test_returned_then_active_again_is_unacknowledged_with_a_new_since() -> None:
    b = Book()
    b.do(b.book.condition(condition("raised")))
    b.do(b.book.condition(condition("cleared", ts=20.0)))
    assert b.book.alarms[PRESSURE].returned == 20.0
    b.do(b.book.condition(condition("raised", ts=30.0)))
    alarm = b.book.alarms[PRESSURE]
    assert (alarm.state, alarm.active, alarm.since, alarm.returned) == ("unacknowledged", True, 30.0, None)


def test_a_shelved_alarm_follows_its_condition_quietly_and_comes_back_as_it_stands() -> None:
    b = Book()
    b.do(b.book.condition(condition("raised")))
    b.do(b.book.shelve(PRESSURE, "olga", 100.0, 30, "valve serviced"))
    alarm = b.book.alarms[PRESSURE]
    assert (alarm.state, alarm.suppressed_by, alarm.shelved_until, alarm.reason) == (
        "shelved", "olga", 100.0 + 1800, "valve serviced",
    )  # fmt: skip
    b.do(b.book.condition(condition("cleared", ts=110.0)))
    assert (b.state(), b.book.alarms[PRESSURE].active) == ("shelved", False)
    assert b.book.expired(1899.0) == []
    [back] = b.book.expired(1900.0)
    b.do(back)
    assert (back.kind, back.user, b.state()) == ("alarm_unshelved", "", "normal")  # gone: its condition is too
    b.do(b.book.condition(condition("raised", ts=2000.0)))
    b.do(b.book.shelve(PRESSURE, "olga", 2001.0, 5, "again"))
    b.do(b.book.unshelve(PRESSURE, "olga", 2002.0))
    assert b.state() == "unacknowledged" and b.book.alarms[PRESSURE].reason == ""  # active: asks again


def test_out_of_service_until_put_back_and_refusals_name_the_state() -> None:
    b = Book()
    with pytest.raises(Refused) as missing:
        b.book.acknowledge(PRESSURE, "olga", 1.0)
    assert missing.value.code == p.ERR_NOT_FOUND
    b.do(b.book.condition(condition("raised")))
    b.do(b.book.acknowledge(PRESSURE, "olga", 11.0))
    with pytest.raises(Refused, match="acknowledged: there is nothing to acknowledge") as twice:
        b.book.acknowledge(PRESSURE, "olga", 12.0)
    assert twice.value.code == p.ERR_ALARM_STATE
    b.do(b.book.out_of_service(PRESSURE, "root", 13.0, "transmitter replaced"))
    for attempt in (
        lambda: b.book.shelve(PRESSURE, "olga", 14.0, 5, "x"),
        lambda: b.book.unshelve(PRESSURE, "olga", 14.0),
        lambda: b.book.out_of_service(PRESSURE, "root", 14.0, "x"),
        lambda: b.book.acknowledge(PRESSURE, "olga", 14.0),
    ):
        with pytest.raises(Refused) as refused:
            attempt()
        assert refused.value.code == p.ERR_ALARM_STATE
    assert b.book.expired(1e12) == []  # out of service has no time limit
    b.do(b.book.in_service(PRESSURE, "root", 15.0))
    assert b.state() == "unacknowledged"  # still active: the acknowledgement before does not carry over


# --- the server ------------------------------------------------------------------------------------


async def ingest(srv: Served, *readings: p.Reading) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{srv.url}/api/ingest", headers=JSON_BODY, data=p.encode({"readings": list(readings)}, "json")) as r,
    ):
        assert r.status == 200 and (await r.json())["accepted"] == len(readings)


def pressure(value: float) -> p.Reading:
    return p.Reading(value, key="PT-1.pressure")


async def audit(srv: Served) -> list[dict]:
    headers = {"Authorization": f"Bearer {mint_token(srv, 'root', 'admin')}"}
    url = f"{srv.url}/api/sessions/{session_id(srv)}/audit"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        assert r.status == 200
        return [e for e in await r.json() if e["action"].startswith("alarm.")]


async def refusal(request: object) -> p.Error:
    with pytest.raises(RequestRefused) as refused:
        await request  # type: ignore[misc]
    return refused.value.error


@pytest.mark.fresh_twin
async def test_acknowledged_by_an_operator_and_cleared_by_the_process_every_step_attributed(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "olga", "operator") as olga,
        person(srv, "vic", "viewer") as vic,
    ):
        t0 = time.time()
        await ingest(srv, pressure(5.7))
        await vic.wait_for(lambda c: PRESSURE in c.alarms)
        alarm = vic.alarms[PRESSURE]
        assert (alarm.state, alarm.active, alarm.severity, alarm.element, alarm.source, alarm.prop) == (
            "unacknowledged", True, "alarm", "P-1", "PT-1", "pressure",
        )  # fmt: skip
        assert (alarm.value, alarm.unit, alarm.message) == (5.7, "bar", "pressure = 5.7 bar: above alarm limit 5.5 bar")
        assert (await refusal(vic.acknowledge_alarm(PRESSURE))).code == p.ERR_FORBIDDEN
        saved = await olga.acknowledge_alarm(PRESSURE)
        await vic.wait_for(lambda c: c.alarms[PRESSURE].state == "acknowledged")
        alarm = vic.alarms[PRESSURE]
        assert alarm.acknowledged_by == "olga" and alarm.acknowledged_at is not None and alarm.acknowledged_at >= t0
        assert (saved.kind, saved.guid, saved.revision) == ("alarm_acknowledged", PRESSURE, 2)
        assert (await refusal(olga.acknowledge_alarm(PRESSURE))).code == p.ERR_ALARM_STATE
        await ingest(srv, pressure(2.0))
        await vic.wait_for(lambda c: PRESSURE not in c.alarms)
        trail = [(e.kind, e.user, e.alarm.state if e.alarm else "", e.seq) for e in vic.alarm_history]
        assert [t[:3] for t in trail] == [
            ("alarm_raised", "", "unacknowledged"),
            ("alarm_acknowledged", "olga", "acknowledged"),
            ("alarm_cleared", "", "normal"),
        ]
        assert trail[1][3] == saved.seq
        assert all(e.ts >= t0 - 1 and e.alarm is not None and e.alarm.changed == e.ts for e in vic.alarm_history)
        [row] = await audit(srv)
        assert (row["actor"], row["role"], row["action"], row["target"]) == (
            "olga",
            "operator",
            "alarm.acknowledge",
            PRESSURE,
        )


@pytest.mark.fresh_twin
async def test_an_alarm_whose_value_returns_stays_listed_until_acknowledged(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "olga", "operator") as olga:
        await ingest(srv, pressure(5.7))
        await ingest(srv, pressure(2.0))
        await olga.wait_for(lambda c: c.alarms.get(PRESSURE) is not None and c.alarms[PRESSURE].state == "returned")
        await ingest(srv, p.Reading(40.0, key="LT-1.level"))  # later changes go by: it stays
        await olga.wait_for(lambda c: c.props.get("LT-1/level") is not None and c.props["LT-1/level"].v == 40.0)
        alarm = olga.alarms[PRESSURE]
        assert (alarm.state, alarm.active, alarm.value) == ("returned", False, 2.0) and alarm.returned is not None
        await olga.acknowledge_alarm(PRESSURE)
        await olga.wait_for(lambda c: PRESSURE not in c.alarms)
        assert olga.alarm_history[-1].kind == "alarm_acknowledged" and olga.alarm_history[-1].alarm.state == "normal"  # type: ignore[union-attr]


@pytest.mark.in_process_only("moves the hub's clock on to end a shelving")
async def test_shelving_by_role_with_a_reason_until_unshelved_or_the_time_is_up(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "olga", "operator") as olga,
        person(srv, "ann", "annotator") as ann,
        person(srv, "root", "admin") as root,
    ):
        await ingest(srv, pressure(5.7))
        await olga.wait_for(lambda c: PRESSURE in c.alarms)
        assert (await refusal(ann.shelve_alarm(PRESSURE, 30, "nuisance"))).code == p.ERR_FORBIDDEN
        assert (await refusal(olga.alarm_out_of_service(PRESSURE, "repair"))).code == p.ERR_FORBIDDEN
        assert (await refusal(olga.shelve_alarm(PRESSURE, 30, "   "))).code == p.ERR_BAD_MESSAGE
        t0 = time.time()
        await olga.shelve_alarm(PRESSURE, 30, "PT-1 chatters while the valve is serviced")
        await ann.wait_for(lambda c: c.alarms[PRESSURE].state == "shelved")
        alarm = ann.alarms[PRESSURE]
        assert alarm.suppressed_by == "olga" and alarm.reason == "PT-1 chatters while the valve is serviced"
        assert alarm.shelved_until is not None and t0 + 1800 <= alarm.shelved_until <= time.time() + 1800
        await olga.unshelve_alarm(PRESSURE)
        await ann.wait_for(lambda c: c.alarms[PRESSURE].state == "unacknowledged")
        await olga.shelve_alarm(PRESSURE, 1, "one minute")
        await ann.wait_for(lambda c: c.alarms[PRESSURE].state == "shelved")
        hub = srv.live.hub
        hub.clock = lambda: time.time() + 61  # a minute on: the next tick ends the shelving
        hub.tick()
        await ann.wait_for(lambda c: c.alarms[PRESSURE].state == "unacknowledged")
        assert (ann.alarm_history[-1].kind, ann.alarm_history[-1].user) == ("alarm_unshelved", "")
        await root.alarm_out_of_service(PRESSURE, "PT-1 sent for calibration")
        await ann.wait_for(lambda c: c.alarms[PRESSURE].state == "out_of_service")
        await ingest(srv, pressure(2.0))  # the condition goes while out of service: nobody is asked
        await ann.wait_for(lambda c: not c.alarms[PRESSURE].active)
        assert ann.alarms[PRESSURE].state == "out_of_service"
        await root.alarm_in_service(PRESSURE)
        await ann.wait_for(lambda c: PRESSURE not in c.alarms)
        rows = await audit(srv)
        assert [(r["actor"], r["action"]) for r in reversed(rows)] == [
            ("olga", "alarm.shelve"), ("olga", "alarm.shelve"), ("olga", "alarm.shelve"),
            ("root", "alarm.service"), ("root", "alarm.service"),
        ]  # fmt: skip
        assert "for 30 min: PT-1 chatters" in rows[-1]["detail"]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (p.AlarmShelve(PRESSURE, 0, "x"), "minutes"),
        (p.AlarmShelve(PRESSURE, p.MAX_SHELVE_MINUTES + 1, "x"), "minutes"),
        (p.AlarmShelve(PRESSURE, 5, "x" * (p.MAX_ALARM_REASON + 1)), "reason"),
        (p.AlarmAck("x" * (p.MAX_ALARM_ID + 1)), "id"),
        (p.AlarmOutOfService(PRESSURE, ""), "reason"),
    ],
)
async def test_out_of_bounds_requests_are_refused_with_one_error(tmp_path: Path, message: object, field: str) -> None:
    async with live_server(tmp_path) as srv, person(srv, "root", "admin") as root:
        listed = dict(root.alarms)  # none in process; a shared deployment's twin may list earlier tests' alarms
        await root.send(message)
        error = await root.next_error()
        assert error.code == p.ERR_BAD_MESSAGE and f"$.{field}" in error.message
        assert (await refusal(root.acknowledge_alarm("no.such.alarm"))).code == p.ERR_NOT_FOUND
        await root.ping()
        assert root.alarms == listed and root.seq_gaps == 0


@pytest.mark.in_process_only("restarts the server in place on its port")
async def test_the_list_survives_a_restart_and_a_late_joiner_gets_it_with_its_history(
    tmp_path: Path, store_url: str | None
) -> None:
    async with live_server(tmp_path, store=store_url) as srv, person(srv, "olga", "operator") as olga:
        port = srv.port
        await ingest(srv, pressure(5.7), p.Reading(97.0, key="LT-1.level"))
        await olga.wait_for(lambda c: {PRESSURE, LEVEL} <= set(c.alarms))
        await olga.acknowledge_alarm(PRESSURE)
        srv.store.flush()
    async with live_server(tmp_path, port=port, store=store_url) as srv2, TwinClient(srv2.ws_url) as late:
        assert {a.id: (a.state, a.acknowledged_by) for a in late.alarms.values()} == {
            PRESSURE: ("acknowledged", "olga"),
            LEVEL: ("unacknowledged", ""),
        }
        kinds = [(e.kind, e.id) for e in late.alarm_history]
        assert kinds == [("alarm_raised", PRESSURE), ("alarm_raised", LEVEL), ("alarm_acknowledged", PRESSURE)]
        await ingest(srv2, pressure(2.0))  # the rules start from the restored value: this clears it
        await late.wait_for(lambda c: PRESSURE not in c.alarms)
        assert late.alarm_history[-1].kind == "alarm_cleared"


@pytest.mark.in_process_only("restarts the server in place on its port")
async def test_what_changed_while_the_server_was_down_becomes_the_first_events_of_the_next_run(
    tmp_path: Path,
) -> None:
    async with live_server(tmp_path) as srv, person(srv, "olga", "operator") as olga:
        port, scene = srv.port, srv.live.scene.id
        await ingest(srv, pressure(5.7), p.Reading(97.0, key="LT-1.level"))
        await olga.wait_for(lambda c: {PRESSURE, LEVEL} <= set(c.alarms))
        await olga.acknowledge_alarm(PRESSURE)
        srv.store.flush()
        path = srv.store.path
    with sqlite3.connect(path) as db:  # the values as a gateway's last words before the restart would leave them
        db.execute("UPDATE props SET value = '2.0' WHERE scene = ? AND element = 'PT-1'", (scene,))
        db.execute("DELETE FROM alarms WHERE scene = ? AND id = ?", (scene, LEVEL))  # and an alarm row lost
    async with live_server(tmp_path, port=port) as srv2, TwinClient(srv2.ws_url) as late:
        assert {a.id: a.state for a in late.alarms.values()} == {LEVEL: "unacknowledged"}
        assert [(e.kind, e.id) for e in late.alarm_history][-2:] == [
            ("alarm_cleared", PRESSURE),
            ("alarm_raised", LEVEL),
        ]


async def test_history_in_the_snapshot_is_bounded(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        for i in range(ALARM_HISTORY_MAX + 10):
            await ingest(srv, pressure(5.7 + i * 0.001 if i % 2 == 0 else 1.0))
        async with TwinClient(srv.ws_url) as late:
            assert len(late.alarm_history) == ALARM_HISTORY_MAX
            assert late.alarm_history[-1].seq <= late.seq


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_an_acknowledgement_the_server_confirmed_survives_kill_9(tmp_path: Path) -> None:
    scene, bindings, data = write_scene(tmp_path), write_bindings(tmp_path), tmp_path / "data"
    port = _free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/{scene_id_for(scene)}"
    session = scene_id_for(scene)
    with _server(scene, bindings, data, port) as first:
        await _ready(url)
        olga = TwinClient(ws_url, token=issue(load_secret(data), session, "olga", "operator"), name="olga")
        await olga.connect()
        async with aiohttp.ClientSession() as http:
            body = p.encode({"readings": [pressure(5.7)]}, "json")
            async with http.post(f"{url}/api/ingest", headers=JSON_BODY, data=body) as r:
                assert r.status == 200
        await olga.wait_for(lambda c: PRESSURE in c.alarms)
        await olga.acknowledge_alarm(PRESSURE)  # answered once committed
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    with _server(scene, bindings, data, port):
        await _ready(url)
        await olga.wait_for(lambda c: c.resyncs == ["epoch_changed"], timeout=STARTUP_TIMEOUT_S)
        alarm = olga.alarms[PRESSURE]
        assert (alarm.state, alarm.acknowledged_by) == ("acknowledged", "olga")
        await olga.close()
