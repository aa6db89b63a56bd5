"""Hot reload of the bindings file (viewer_server/bindings_reload.py) on a real server with a real file: an edit
on disk reaches live clients as ordinary deltas and the historian as a new version, an invalid edit changes
nothing and says why, and a rule removed takes its alarm with it as a restart would."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_server import BINDINGS, eventually, get_json, live_server, mint_token, person
from tests.redis_server import RedisServer, redis_service  # noqa: F401 - the fixture
from viewer_server import bindings_reload
from viewer_server import protocol as p
from viewer_server.serve import RunningServer

LIMITS = "warning: {high: 5.0}, alarm: {high: 5.5}"
LOWERED = BINDINGS.replace(LIMITS, "warning: {high: 4.0}, alarm: {high: 4.2}")
# The level transmitter's binding and its rule gone; the energy layer now colours the wet well by the pressure.
NO_LEVEL = BINDINGS.replace(
    '  - {element: LT-1, prop: level, unit: "%", topic: plant/LT-1/telemetry, key: LT-1.level}\n', ""
).replace(
    "{kind: thresholds, element: LT-1, prop: level, target: T-1, alarm: {high: 95}}",
    '{kind: ramp, element: PT-1, prop: pressure, target: T-1, min: 0, max: 6, colors: ["#000000", "#ffffff"]}',
)

# A layer added to the lowered limits.
MAINTENANCE = (
    LOWERED
    + """  maintenance:
    rules:
      - {kind: ramp, element: LT-1, prop: level, target: T-1, min: 0, max: 100, colors: ["#000000", "#00ff00"]}
"""
)


@pytest.fixture(autouse=True)
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(bindings_reload, "POLL_S", 0.05)
    yield


def _edit(srv: RunningServer, text: str) -> None:
    assert srv.live.bindings_path is not None
    srv.live.bindings_path.write_text(text)


async def _bindings_info(srv: RunningServer) -> dict:
    return await get_json(srv, "/api/bindings", mint_token(srv, "ada", "admin"))


async def test_an_edited_threshold_reaches_live_clients_and_replay_without_a_restart(tmp_path: Path) -> None:
    assert LOWERED != BINDINGS
    async with live_server(tmp_path) as srv, person(srv, "gw", "publisher") as gw, person(srv, "rex", "viewer") as rex:
        assert (await gw.publish([p.Reading(4.5, key="PT-1.pressure")])).accepted == 1
        await rex.wait_for(lambda c: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == 4.5)
        assert rex.visuals["P-1"].status == "ok" and not rex.alarms
        before = time.time()
        _edit(srv, LOWERED)
        await rex.wait_for(lambda c: c.visuals["P-1"].status == "alarm", timeout=30)
        await rex.wait_for(lambda c: "operations.rules[1]" in c.alarms, timeout=30)
        assert rex.alarms["operations.rules[1]"].severity == "alarm"
        info = await _bindings_info(srv)
        assert info["content"] == LOWERED and "reload_error" not in info
        historian = srv.live.historian
        assert historian is not None
        historian.flush()
        version = historian.bindings_at(time.time())
        assert version is not None and version.content == LOWERED.encode() and version.t >= before
        old = await rex.seek(version.t - 0.001)  # the value has not moved: only the rules differ
        assert old.props["PT-1/pressure"].v == 4.5 and old.visuals["P-1"].status == "ok"
        new = await rex.seek(version.t + 0.001)
        assert new.props["PT-1/pressure"].v == 4.5 and new.visuals["P-1"].status == "alarm"
        markers = await get_json(srv, f"/api/history/events?from={before}&kinds=rules_changed")
        assert markers["events"] == [
            {"t": version.t, "kind": "rules_changed", "text": "rules changed: test.bindings.yaml"}
        ]
    async with live_server(tmp_path, bindings=LOWERED) as srv:  # the store kept it: a restart adds no version
        historian = srv.live.historian
        assert historian is not None
        assert [t for t, _, _ in historian.bindings_changes(before, time.time())] == [version.t]


async def test_an_invalid_edit_keeps_the_served_rules_and_says_what_is_wrong(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "gw", "publisher") as gw, person(srv, "rex", "viewer") as rex:
        assert (await gw.publish([p.Reading(4.5, key="PT-1.pressure")])).accepted == 1
        await rex.wait_for(lambda c: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == 4.5)
        served = srv.live.hub.rules
        _edit(srv, LOWERED.replace('"#ff0000"]', '"red"]'))
        info = await eventually(lambda: _bindings_info(srv), lambda i: "reload_error" in i, timeout=30)
        assert "layers.operations.rules[0].colors[1]: 'red' does not match" in info["reload_error"]
        assert (
            info["reload_error"].startswith("test.bindings.yaml: ")
            and "(line 11)" in info["reload_error"]
            and info["content"] == BINDINGS
        )
        assert srv.live.hub.rules is served and rex.visuals["P-1"].status == "ok"
        _edit(srv, BINDINGS.replace("{kind: ramp", "{kind: ramp, max: 8, min: 0"))  # a key given twice
        info = await eventually(lambda: _bindings_info(srv), lambda i: "duplicate key" in i["reload_error"], timeout=30)
        assert srv.live.hub.rules is served
        _edit(srv, LOWERED)  # fixed: applied, the error gone
        await rex.wait_for(lambda c: c.visuals["P-1"].status == "alarm", timeout=30)
        assert "reload_error" not in await _bindings_info(srv)


async def test_a_removed_binding_drops_its_alarm_and_removing_a_layer_waits_for_a_restart(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "gw", "publisher") as gw, person(srv, "rex", "viewer") as rex:
        assert (await gw.publish([p.Reading(99.0, key="LT-1.level")])).accepted == 1
        await rex.wait_for(lambda c: "energy.rules[0]" in c.alarms)
        _edit(srv, NO_LEVEL)
        await rex.wait_for(lambda c: "energy.rules[0]" not in c.alarms, timeout=30)
        assert srv.live.hub.alarms.listed() == []
        ack = await gw.publish([p.Reading(50.0, key="LT-1.level")])  # its key is no longer bound
        assert ack.accepted == 0
        assert (await gw.publish([p.Reading(3.0, key="PT-1.pressure")])).accepted == 1
        await rex.wait_for(lambda c: c.visuals.get("PT-1", p.Visual()).label == "3.00 bar")
        label = '      - {kind: label, element: PT-1, prop: pressure, template: "{value:.2f} {unit}"}\n'
        assert label in NO_LEVEL
        _edit(srv, NO_LEVEL.replace(label, ""))  # no rule shows PT-1 any more: it looks as the model does
        await rex.wait_for(lambda c: c.visuals.get("PT-1") == p.Visual(), timeout=30)
        served = srv.live.hub.rules
        _edit(srv, NO_LEVEL.split("  energy:")[0])
        info = await eventually(lambda: _bindings_info(srv), lambda i: "reload_error" in i, timeout=30)
        assert "layers removed (energy)" in info["reload_error"] and srv.live.hub.rules is served


async def test_a_client_away_during_a_reload_resumes_with_the_new_visuals(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "gw", "publisher") as gw, person(srv, "rex", "viewer") as rex:
        away = person(srv, "ann", "viewer")
        await away.connect()
        assert (await gw.publish([p.Reading(4.5, key="PT-1.pressure")])).accepted == 1
        await away.wait_for(lambda c: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == 4.5)
        await away.close()
        _edit(srv, LOWERED)
        await rex.wait_for(lambda c: "operations.rules[1]" in c.alarms, timeout=30)
        await away.connect()  # resumes from its epoch and seq: the reload's changes are ordinary deltas
        await away.wait_for(lambda c: c.seq == rex.seq, timeout=30)
        assert away.snapshots == 1 and away.visuals == rex.visuals and away.visuals["P-1"].status == "alarm"
        assert [e.kind for e in away.events] == ["alarm_raised"]
        await away.close()


async def test_with_mqtt_a_change_of_topics_waits_for_a_restart_and_a_new_layer_is_offered(tmp_path: Path) -> None:
    async with live_server(tmp_path, mqtt_url="mqtt://127.0.0.1:9") as srv:  # no broker there: none is needed
        served = srv.live.hub.rules
        _edit(srv, BINDINGS.replace("plant/LT-1/telemetry", "plant/LT-2/telemetry"))
        info = await eventually(lambda: _bindings_info(srv), lambda i: "reload_error" in i, timeout=30)
        assert "the MQTT topics changed: restart the server" in info["reload_error"]
        assert srv.live.hub.rules is served and info["topics"] == sorted(
            ["plant/PT-1/telemetry", "plant/P-1/state", "plant/LT-1/telemetry"]
        )
        _edit(srv, MAINTENANCE)  # same topics, a layer more: applied, and the layer offered to clients
        info = await eventually(lambda: _bindings_info(srv), lambda i: i["content"] == MAINTENANCE)
        assert "reload_error" not in info and info["layers"] == ["operations", "energy", "maintenance"]
        assert srv.live.hub.rules is not served
        async with person(srv, "gw", "publisher") as gw:
            assert (await gw.publish([p.Reading(100.0, key="LT-1.level")])).accepted == 1
        mia = person(srv, "mia", "viewer")
        mia.layer = "maintenance"
        async with mia:
            assert mia.layer == "maintenance"
            await mia.wait_for(lambda c: c.visuals.get("T-1", p.Visual()).color == "#00ff00", timeout=30)


async def test_processes_sharing_a_scene_reload_the_file_once_through_the_leader(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    """Two processes on one Redis watch the same file: a client of the follower sees the leader's engine apply the
    new limits, both offer the new layer, and the historian holds the version once."""
    async with contextlib.AsyncExitStack() as stack:
        a, b = [await stack.enter_async_context(live_server(tmp_path, bus_url=redis_service.url)) for _ in range(2)]
        assert a.live.hub.leading and not b.live.hub.leading
        gw = await stack.enter_async_context(person(b, "gw", "publisher"))
        rex = await stack.enter_async_context(person(b, "rex", "viewer"))
        assert (await gw.publish([p.Reading(4.5, key="PT-1.pressure")])).accepted == 1
        await rex.wait_for(lambda c: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == 4.5, timeout=30)
        before = time.time()
        _edit(a, MAINTENANCE)
        await rex.wait_for(lambda c: c.visuals["P-1"].status == "alarm", timeout=30)
        await rex.wait_for(lambda c: [al.severity for al in c.alarms.values()] == ["alarm"], timeout=30)
        for srv in (a, b):
            info = await eventually(lambda s=srv: _bindings_info(s), lambda i: i["content"] == MAINTENANCE)
            assert info["layers"] == ["operations", "energy", "maintenance"] and "reload_error" not in info
        historian = a.live.historian
        assert historian is not None
        historian.flush()
        assert len(historian.bindings_changes(before, time.time())) == 1
