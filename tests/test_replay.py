"""The time machine over the protocol (PROTOCOL.md §14): seek / play / pause / live on a real server, the twin at
t equal to what the live twin showed at t, playing in order without live deltas, the presenter driving followers,
late readings placed in the past without alarms, annotations carrying the replayed time, and the REST reads."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from concurrent.futures import Future
from pathlib import Path

import aiohttp
import msgspec
import pytest

from scene.bindings import bindings_from_text
from scene.rules import RuleEngine
from scene.state import PropertyValue, Reading, TwinState
from tests.live_server import BINDINGS, live_server, mint_token, person
from viewer_server import protocol as p
from viewer_server.client import RequestRefused, TwinClient
from viewer_server.historian import DAY, HOUR, SEAL_GRACE_S, Historian
from viewer_server.replay import ReplayTwin, RuleVersions
from viewer_server.serve import RunningServer
from viewer_server.topics import Camera

PRESSURES = [1.0, 2.5, 4.0, 5.2, 5.8, 6.2, 4.5, 3.0, 5.6, 2.0]  # crosses the warning (5.0) and alarm (5.5) limits


async def _feed(srv: RunningServer, watcher: TwinClient, base: float) -> list[tuple[float, dict, dict, dict]]:
    """Publish one pressure (and level) per second of source time from `base`; after each, what the live twin
    showed: (t, values, visuals, alarm states)."""
    shown = []
    async with person(srv, "gw", "publisher") as gw:
        for i, pressure in enumerate(PRESSURES):
            t = base + i
            readings = [p.Reading(pressure, key="PT-1.pressure", ts=t), p.Reading(10.0 * i, key="LT-1.level", ts=t)]
            ack = await gw.publish(readings)
            assert ack.accepted == 2 and ack.durable
            await watcher.wait_for(lambda c, v=pressure: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == v)
            await watcher.ping()  # the alarm events of this reading came in the same or an earlier delta
            values = {k: v.v for k, v in watcher.props.items()}
            states = {a.id: (a.state, a.active) for a in watcher.alarms.values()}
            shown.append((t, values, dict(watcher.visuals), states))
    return shown


async def test_the_twin_at_t_is_what_the_live_twin_showed_at_t(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana:
        assert "replay" in ana.welcome.capabilities  # type: ignore[union-attr]
        base = time.time() - 30
        shown = await _feed(srv, ana, base)
        async with person(srv, "rex", "viewer") as rex:
            for t, values, visuals, alarms in shown:
                replay = await rex.seek(t)
                assert replay.as_of == t and not replay.playing and replay.layer == "operations"
                assert {k: v.v for k, v in replay.props.items()} == values
                assert replay.visuals == visuals
                assert {a.id: (a.state, a.active) for a in replay.alarms} == alarms
            with pytest.raises(RequestRefused) as before:  # before the first reading: nothing to show
                await rex.seek(base - 0.5)
            assert before.value.error.code == p.ERR_OUT_OF_RANGE


async def test_play_sends_frames_in_time_order_and_never_a_live_delta(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana:
        base = time.time() - 30
        await _feed(srv, ana, base)
        async with person(srv, "rex", "viewer") as rex, person(srv, "gw", "publisher") as gw:
            wall = time.monotonic()
            start = await rex.play(5.0, start=base)
            assert start.playing and start.speed == 5.0 and start.as_of == base
            assert start.props["PT-1/pressure"].v == PRESSURES[0]
            deltas = rex.deltas
            await gw.publish([p.Reading(3.3, key="PT-1.pressure")])  # live, now: must not reach rex
            await rex.wait_for(lambda c: c.replay is not None and c.replay.as_of >= base + len(PRESSURES), timeout=30)
            # Paced: 5 s of history per second of wall time, never faster (a loaded host may make it slower).
            assert time.monotonic() - wall >= len(PRESSURES) / 5.0 * 0.9
            assert rex.deltas == deltas  # nothing live while replaying
            frames = [f for f in rex.replay_frames if isinstance(f, p.ReplayDelta)]
            times = [f.as_of for f in frames]
            assert len(frames) >= 5
            # In time order, each once (a frame that covers two readings of a key carries the newer), to the last.
            changes = [f.props["PT-1/pressure"] for f in frames if "PT-1/pressure" in f.props]
            assert [c.ts for c in changes] == sorted({c.ts for c in changes})
            assert all(c.v == PRESSURES[round(c.ts - base)] for c in changes) and changes[-1].v == PRESSURES[-1]
            events = [e for f in frames for e in f.events]
            assert [e.ts for e in events] == sorted(e.ts for e in events)
            assert any(e.kind == "alarm_raised" for e in events)
            assert all(b > a for a, b in itertools.pairwise(times))
            paused = await rex.pause()
            assert not paused.playing
            snap = await rex.go_live()
            assert snap.resync and snap.reason == "live" and rex.replay is None
            assert rex.props["PT-1/pressure"].v == 3.3
            await gw.publish([p.Reading(3.4, key="PT-1.pressure")])
            await rex.wait_for(lambda c: c.props["PT-1/pressure"].v == 3.4)  # live deltas again


async def test_requests_out_of_range_bad_speed_and_roles_are_refused_with_reasons(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana:
        base = time.time() - 30
        await _feed(srv, ana, base)
        with pytest.raises(RequestRefused) as early:
            await ana.seek(base - 3600)
        assert early.value.error.code == p.ERR_OUT_OF_RANGE
        rng = early.value.error.range
        assert rng is not None and rng.earliest is not None and rng.earliest <= base <= rng.latest
        with pytest.raises(RequestRefused) as future:
            await ana.seek(time.time() + 3600)
        assert future.value.error.code == p.ERR_OUT_OF_RANGE
        for speed in (0.5, 1001.0):
            with pytest.raises(RequestRefused) as bad:
                await ana.play(speed, start=base)
            assert bad.value.error.code == p.ERR_BAD_SPEED
        await ana.send_raw('{"type":"seek","t":1e999}')  # not finite: refused by decoding
        assert (await ana.next_error()).code == p.ERR_BAD_MESSAGE
        async with person(srv, "gw", "publisher") as gw:
            with pytest.raises(RequestRefused) as forbidden:
                await gw.seek(base)
            assert forbidden.value.error.code == p.ERR_FORBIDDEN


async def test_late_readings_land_in_the_past_without_raising_alarms(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana:
        now = time.time()
        async with person(srv, "gw", "publisher") as gw:
            await gw.publish([p.Reading(2.0, key="PT-1.pressure", ts=now - 1)])
            # A gateway back from an outage uploads its buffer: an alarm-level pressure, ten minutes ago.
            ack = await gw.publish([p.Reading(7.5, key="PT-1.pressure", ts=now - 600)])
            assert ack.accepted == 1
        await ana.ping()
        assert ana.props["PT-1/pressure"].v == 2.0  # the live value stays the newest
        assert not ana.alarms and not [e for e in ana.events if e.kind.startswith("alarm_")]
        replay = await ana.seek(now - 300)
        assert replay.props["PT-1/pressure"].v == 7.5 and replay.props["PT-1/pressure"].ts == now - 600
        assert replay.alarms == []  # no alarm was raised for the past, so none is shown there either
        async with person(srv, "gw2", "publisher") as gw:  # beyond the raw retention (30 days): refused, with why
            ack = await gw.publish([p.Reading(1.0, key="PT-1.pressure", ts=now - 31 * 86400)])
        assert ack.accepted == 0 and ack.rejected[0].reason == "too_old"


async def test_the_presenter_drives_followers_but_not_those_who_broke_away(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana:
        base = time.time() - 30
        await _feed(srv, ana, base)
        async with (
            person(srv, "pia", "presenter") as pia,
            person(srv, "bob", "viewer") as bob,
            person(srv, "cat", "viewer") as cat,
            person(srv, "gw", "publisher") as gw,
        ):
            await pia.send(p.PresenterTake())
            await bob.wait_for(lambda c: c.presenter is not None and c.presenter.presenter == "pia")
            await cat.seek(base + 2)  # cat looks at something of her own: she broke away
            await pia.seek(base + 5)
            await bob.wait_for(lambda c: c.replay is not None and c.replay.as_of == base + 5)
            assert bob.replay is not None and bob.replay.driven_by == "pia"
            assert bob.replay.props["PT-1/pressure"].v == PRESSURES[5]
            camera = Camera(p.Vec3(3, 1.6, 4), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0))
            await pia.send(p.PresenterView(p.Viewpoint("v1", camera, selected=["P-1"])))  # "look at the pump"
            await bob.wait_for(lambda c: c.presenter is not None and c.presenter.viewpoint is not None)
            assert bob.replay.as_of == base + 5  # the view is live, the moment stays
            assert cat.replay is not None and cat.replay.as_of == base + 2 and cat.replay.driven_by is None
            await gw.ping()
            assert gw.replay is None  # a device is no follower: it keeps its live stream
            await pia.play(10.0)
            await bob.wait_for(
                lambda c: any(isinstance(f, p.ReplayDelta) and f.driven_by == "pia" for f in c.replay_frames)
            )
            async with person(srv, "dan", "viewer") as dan:  # a late joiner lands in the presenter's replay
                await dan.wait_for(lambda c: c.replay is not None and c.replay.driven_by == "pia")
            await cat.go_live()  # back to following: into the presenter's replay at once
            await cat.wait_for(lambda c: c.replay is not None and c.replay.driven_by == "pia")
            await pia.go_live()
            await bob.wait_for(lambda c: c.replay is None and "live" in c.resyncs)


async def test_a_topic_written_while_replaying_records_the_replayed_time(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "annotator") as ana:
        base = time.time() - 30
        await _feed(srv, ana, base)
        await ana.seek(base + 4)
        saved = await ana.create_topic(p.TopicDraft("pressure peak"))
        snap = await ana.go_live()  # the topic arrives with the live snapshot (no live events while replaying)
        assert {t.guid: t.replay_time for t in snap.topics}[saved.guid] == base + 4
        live_topic = await ana.create_topic(p.TopicDraft("now"))
        await ana.wait_for(lambda c: live_topic.guid in c.topics)
        assert ana.topics[live_topic.guid].replay_time is None
        replay = await ana.seek(time.time())  # the topic shows in the replay once it existed
        assert saved.guid in {t.guid for t in replay.topics}


async def test_rest_series_events_and_range_are_bounded(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana, aiohttp.ClientSession() as http:
        base = time.time() - 30
        await _feed(srv, ana, base)
        url = f"{srv.url}/api/history"
        query = {"keys": "PT-1.pressure,LT-1.level", "from": str(base - 1), "to": str(base + 20)}
        async with http.get(url, params=query) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        pressure = body["series"][0]
        assert pressure["element_name"] == "Pressure transmitter 1" and pressure["unit"] == "bar"
        assert pressure["last"] == PRESSURES and pressure["resolution"] == 0  # few points: raw samples
        async with http.get(url, params={**query, "points": "3"}) as r:
            bucketed = (await r.json())["series"][0]
        assert len(bucketed["t"]) <= 3 and bucketed["resolution"] > 0
        assert min(bucketed["min"]) == min(PRESSURES) and max(bucketed["max"]) == max(PRESSURES)
        bad = [
            {"keys": ",".join(["PT-1.pressure"] * 33)},
            {"keys": "PT-1.pressure", "points": "0"},
            {"keys": "PT-1.pressure", "points": "5001"},
            {"keys": "PT-1.pressure", "from": "10", "to": "5"},
            {"keys": "PT-1.pressure", "from": "0", "to": str(500 * 86400)},
            {"keys": "PT-1.pressure", "from": "nan"},
            {"keys": "NOPE.pressure"},
            {"keys": "no-dot"},
        ]
        for params in bad:
            async with http.get(url, params=params) as r:
                assert r.status == 400, params
                assert (await r.json())["error"] == "bad_query"
        async with http.get(f"{url}/events", params={"from": str(base - 1), "kinds": "alarm_raised"}) as r:
            markers = (await r.json())["events"]
        assert markers and all(m["kind"] == "alarm_raised" for m in markers)
        assert markers[0]["element"] == "P-1" and markers[0]["element_name"] == "Pump 1"
        async with http.get(f"{url}/range") as r:
            rng = await r.json()
        assert rng["earliest"] <= base and rng["latest"] >= base + len(PRESSURES) - 1
        token = mint_token(srv, "gw", "publisher")
        async with http.get(f"{url}/range", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 403


async def test_seek_while_a_layer_is_switched_shows_the_same_moment_on_the_new_layer(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana:
        base = time.time() - 30
        await _feed(srv, ana, base)
        await ana.seek(base + 9)
        await ana.send(p.Subscribe("energy"))
        await ana.wait_for(lambda c: c.replay is not None and c.replay.layer == "energy")
        assert ana.replay is not None and ana.replay.as_of == base + 9
        assert "T-1" in ana.replay.visuals
        await asyncio.sleep(0)


async def test_readings_the_historian_cannot_commit_are_not_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_server(tmp_path) as srv, person(srv, "gw", "publisher") as gw, aiohttp.ClientSession() as http:
        historian = srv.live.historian
        assert historian is not None

        def disk_full(*args: object) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(historian, "_write_readings", disk_full)
        with pytest.raises(RequestRefused) as refused:
            await gw.publish([p.Reading(1.0, key="PT-1.pressure")])
        assert refused.value.error.code == p.ERR_NOT_SAVED and "send them again" in refused.value.error.message
        async with http.post(f"{srv.url}/api/ingest", json={"readings": [{"key": "PT-1.pressure", "value": 1}]}) as r:
            assert r.status == 503 and (await r.json())["error"] == p.ERR_NOT_SAVED
        assert historian.write_errors == 2


async def test_a_moment_shows_with_the_rules_in_force_then_across_a_change_of_the_bindings(tmp_path: Path) -> None:
    """The threshold of P-1 is lowered between two runs of the server: a seek or a play before the change shows the
    old colours, after it the new ones, though the pressure stayed 4.5 throughout."""
    base = time.time() - 60
    async with live_server(tmp_path) as srv, person(srv, "gw", "publisher") as gw:
        assert (await gw.publish([p.Reading(4.5, key="PT-1.pressure", ts=base)])).accepted == 1
    lowered = BINDINGS.replace("warning: {high: 5.0}, alarm: {high: 5.5}", "warning: {high: 4.0}, alarm: {high: 4.2}")
    assert lowered != BINDINGS
    async with live_server(tmp_path, bindings=lowered) as srv, person(srv, "rex", "viewer") as rex:
        historian = srv.live.historian
        assert historian is not None
        historian.flush()
        change = historian.bindings_at(time.time())
        assert change is not None and change.content == lowered.encode() and change.t > base
        before = await rex.seek(base + 1)
        assert before.props["PT-1/pressure"].v == 4.5 and before.visuals["P-1"].status == "ok"
        after = await rex.seek(change.t + 0.001)
        assert after.props["PT-1/pressure"].v == 4.5 and after.visuals["P-1"].status == "alarm"
        await rex.seek(base + 1)
        await rex.play(1000.0)
        await rex.wait_for(lambda c: c.replay is not None and c.replay.as_of > change.t, timeout=30)
        frames = [f for f in rex.replay_frames if isinstance(f, p.ReplayDelta) and "P-1" in f.visuals]
        assert frames and frames[0].as_of >= change.t and frames[0].visuals["P-1"].status == "alarm"
        assert all(f.as_of >= change.t for f in frames)  # no other colour change: the value never moved
        async with aiohttp.ClientSession() as http:  # the timeline marks the moment
            query = {"from": str(base), "kinds": "rules_changed"}
            async with http.get(f"{srv.url}/api/history/events", params=query) as r:
                markers = (await r.json())["events"]
        assert markers[-1] == {"t": change.t, "kind": "rules_changed", "text": "rules changed: test.bindings.yaml"}


async def test_a_replay_shows_values_stale_as_of_t_and_fresh_again_with_their_next_sample(tmp_path: Path) -> None:
    stale_after = BINDINGS.replace("key: PT-1.pressure}", "key: PT-1.pressure, stale_after: 5}")
    async with live_server(tmp_path, bindings=stale_after) as srv, person(srv, "gw", "publisher") as gw:
        base = time.time() - 60
        await gw.publish([p.Reading(2.0, key="PT-1.pressure", ts=base), p.Reading(1.0, key="LT-1.level", ts=base)])
        await gw.publish([p.Reading(3.0, key="PT-1.pressure", ts=base + 20)])
        async with person(srv, "rex", "viewer") as rex:
            fresh = await rex.seek(base + 4)
            assert fresh.props["PT-1/pressure"].silent_since is None
            silent = await rex.seek(base + 10)  # nothing for 10 s, stale after 5
            assert silent.props["PT-1/pressure"].v == 2.0 and silent.props["PT-1/pressure"].silent_since == base
            assert silent.props["LT-1/level"].silent_since is None  # the default stale_after: 300 s
            await rex.play(10.0)
            await rex.wait_for(lambda c: c.replay is not None and c.replay.as_of > base + 20, timeout=30)
            await rex.wait_for(lambda c: c.replay is not None and c.replay.as_of > base + 26, timeout=30)
            frames = [f for f in rex.replay_frames if isinstance(f, p.ReplayDelta) and "PT-1/pressure" in f.props]
            states = [(f.props["PT-1/pressure"].v, f.props["PT-1/pressure"].silent_since) for f in frames]
            assert states[:2] == [(3.0, None), (3.0, base + 20)]  # fresh with its next sample, stale 5 s later


def test_playing_from_blocks_read_ahead_ends_each_frame_at_the_twin_a_seek_there_shows(tmp_path: Path) -> None:
    """Frames cut from blocks read ahead (several blocks, frames across their edges, the samples of a frame reduced to
    each property's last), and frames too far apart for the blocks, move the twin exactly to where a seek to the
    frame's time puts it."""
    t0 = 1_800_000_000.0
    h = Historian(tmp_path / "history", clock=lambda: t0 + HOUR)
    for second in range(120):
        readings = [Reading(f"E-{k}", "v", float((second * 7 + k) % 11), "", t0 + second + k / 10) for k in range(5)]
        h.append(readings, t0 + second, "test")
    h.flush()
    playing, seeking = ReplayTwin(h, None, "ops"), ReplayTwin(h, None, "ops")
    props, _, _ = playing.seek(t0 + 0.5)
    playing.read_ahead(3.0)  # blocks of 1.5 s of history: frames of 0.7 s cross their edges
    t = t0 + 0.5
    while t < t0 + 60:
        t += 0.7
        frame = playing.advance(t)
        props.update(frame.props)
        assert props == seeking.seek(t)[0], t
    while t < t0 + 119:  # frames far apart (a host short of CPU): more than a block each, caught up like a seek
        t += 7.3
        frame = playing.advance(t)
        props.update(frame.props)
        assert props == seeking.seek(t)[0], t
    h.close()


async def test_a_publisher_s_next_batch_is_applied_while_the_previous_one_waits_for_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana", "viewer") as ana, person(srv, "gw", "publisher") as gw:
        historian = srv.live.historian
        assert historian is not None
        gate: Future[None] = Future()
        append = historian.append

        def slow_disk(readings: list[Reading], rx: float, source: str) -> Future[None]:
            committed = append(readings, rx, source)
            return gate if readings[0].value == 1.5 else committed  # the first batch's commit is slow

        monkeypatch.setattr(historian, "append", slow_disk)
        first = asyncio.create_task(gw.publish([p.Reading(1.5, key="PT-1.pressure")]))
        await ana.wait_for(lambda c: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == 1.5)
        second = asyncio.create_task(gw.publish([p.Reading(2.5, key="PT-1.pressure")]))
        await ana.wait_for(lambda c: c.props.get("PT-1/pressure", p.PropState(0, 0)).v == 2.5)  # live at once
        await gw.ping()
        assert not first.done() and not second.done()  # the second's ack waits for the first's: acks in order
        gate.set_result(None)
        assert (await first).accepted == 1 and (await second).accepted == 1


def _mixed_bindings(warning: float, colors: str, template: str) -> str:
    """30 elements with a number each (a ramp on 20, thresholds on 10, stale after 30 s), a pump with a bool and a
    string (a label, a visibility rule), a pressure with an anomaly rule, and a level nobody ever sends."""
    lines = ["version: 1", "default_layer: ops", "bindings:"]
    lines += [f"  - {{element: E-{i}, prop: v, key: E-{i}.v, stale_after: 30}}" for i in range(30)]
    lines += [
        "  - {element: P-1, prop: running, kind: bool, key: P-1.running}",
        "  - {element: P-1, prop: mode, kind: string, key: P-1.mode}",
        "  - {element: PT-1, prop: pressure, unit: bar, key: PT-1.pressure}",
        "  - {element: P-1, prop: level, key: P-1.level}",
        "layers:",
        "  ops:",
        "    rules:",
        "      - {kind: anomaly, element: PT-1, prop: pressure, target: P-1, detector: {kind: ewma}}",
        f"      - {{kind: label, element: P-1, prop: mode, template: '{template}'}}",
        "      - {kind: visibility, element: P-1, prop: running, target: V-1, when: {op: '==', value: true}}",
    ]
    lines += [
        f"      - {{kind: ramp, element: E-{i}, prop: v, min: -2, max: 9, colors: [{colors}]}}" for i in range(20)
    ]
    lines += [
        f"      - {{kind: thresholds, element: E-{i}, prop: v, warning: {{high: {warning}}}, alarm: {{high: 8}}}}"
        for i in range(20, 30)
    ]
    return "\n".join(lines) + "\n"


def _per_element(h: Historian, rules: RuleVersions, t: float) -> tuple[dict, dict, list]:
    """The twin at t made property by property and element by element (`evaluate`), as a seek made it before."""
    _, bindings = rules.at(t)
    assert bindings is not None
    values: dict[str, dict[str, PropertyValue]] = {}
    props = {}
    for (element, prop), s in h.state_at(t).items():
        after = bindings.stale_after(element, prop)
        silent = s.ts if after is not None and t - s.ts >= after else None
        values.setdefault(element, {})[prop] = PropertyValue(s.value, s.unit, s.ts, s.ts, s.quality, silent)
        props[f"{element}/{prop}"] = p.PropState(s.value, s.ts, s.unit, s.quality, silent)
    state = TwinState(history_len=1)
    state.restore(values)
    engine = RuleEngine(bindings)
    alarms = h.alarms_at(t)
    engine.show_anomalies({a.id for a in alarms if a.active})
    return props, {el: engine.evaluate(el, "ops", state) for el in engine.targets("ops")}, alarms


def test_the_twin_made_in_bulk_is_the_twin_made_element_by_element_on_a_mixed_scene(tmp_path: Path) -> None:
    """Ints, floats, bools, strings, bad quality, a property never sent, values going stale, an anomaly alarm raised
    and cleared, and the rules changed half-way: every seek, and every frame of a play, equals the per-element twin."""
    t0 = 1_800_000_000.0
    old = _mixed_bindings(5.0, "'#0000ff', '#ff0000'", "{value} {running}")
    new = _mixed_bindings(3.5, "'#000000', '#808080', '#FFFFFF'", "{value} / {level:.1f}")
    h = Historian(tmp_path / "history", clock=lambda: t0 + HOUR)
    h.record_bindings("mixed.bindings.yaml", old.encode(), t0)
    h.record_bindings("mixed.bindings.yaml", new.encode(), t0 + 60)
    for second in range(120):
        ts = t0 + second
        readings = [
            Reading(
                f"E-{i}", "v", (second * 7 + i) % 11 if i % 3 == 0 else ((second * 13 + i) % 110) / 10 - 1.5, "", ts
            )
            for i in range(30)
            if i < 25 or second < 40  # E-25… fall silent: stale 30 s later
        ]
        readings += [
            Reading("P-1", "running", second % 20 < 10, "", ts),
            Reading("P-1", "mode", ["auto", "manual", "off"][second // 15 % 3], "", ts),
            Reading("PT-1", "pressure", 4.0 + second % 5 / 2, "bar", ts, "bad" if second % 9 == 4 else "good"),
        ]
        h.append(readings, ts, "test")
    anomaly = p.Alarm("ops.rules[0]", "P-1", t0 + 50, prop="pressure", source="PT-1", layer="ops", severity="warning")
    h.record(p.Event(1, "alarm_raised", anomaly.id, "P-1", t0 + 50, alarm=anomaly))
    cleared = msgspec.structs.replace(anomaly, state="normal", active=False)
    h.record(p.Event(2, "alarm_cleared", anomaly.id, "P-1", t0 + 90, alarm=cleared))
    h.flush()
    rules = RuleVersions(h, bindings_from_text(new.encode(), "mixed.bindings.yaml"), None)
    seeking = ReplayTwin(h, rules, "ops")
    for t in [t0 + 0.5, t0 + 30.2, t0 + 55, t0 + 59.99, t0 + 60, t0 + 75.5, t0 + 95, t0 + 119]:
        props, visuals, alarms = seeking.seek(t)
        assert (props, visuals, alarms) == _per_element(h, rules, t), t
    playing = ReplayTwin(h, rules, "ops")
    props, visuals, _ = playing.seek(t0 + 0.5)
    playing.read_ahead(20.0)
    t = t0 + 0.5
    while t < t0 + 119:
        t += 1.3
        frame = playing.advance(t)
        props.update(frame.props)
        visuals.update(frame.visuals)
        want_props, want_visuals, _ = _per_element(h, rules, t)
        # A frame carries a property when it changed (its `ts`: of that change), a seek its last sample's time.
        assert {k: (s.v, s.u, s.q, s.silent_since) for k, s in props.items()} == {
            k: (s.v, s.u, s.q, s.silent_since) for k, s in want_props.items()
        }, t
        assert {el: v for el, v in visuals.items() if el in want_visuals or v != p.Visual()} == want_visuals, t
    h.close()


def _last_samples(h: Historian, t: float) -> dict[tuple[str, str], tuple[float, object, str]]:
    """Every property's last raw sample at or before t, read from the samples themselves (no aggregate, no keyframe)."""
    return {(s.element, s.prop): (s.ts, s.value, s.quality) for s in h.samples(t - 5 * DAY, t, include_start=True)}


def test_seeks_from_hourly_keyframes_equal_the_samples_and_a_late_reading_is_never_hidden(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three sealed hours with a keyframe at each hour start: seeks just after a boundary, at a property silent
    for days, one first sent after the keyframe, and one whose late reading lands in a sealed hour after its
    keyframe was written, all equal the last raw sample (and the bulk twin the per-element one); a keyframe made
    unreadable or missing is done without."""
    t0 = 1_800_000_000.0  # an hour boundary
    h = Historian(tmp_path / "history", clock=lambda: t0 + 3 * HOUR + SEAL_GRACE_S + 1)
    bindings = _mixed_bindings(5.0, "'#0000ff', '#ff0000'", "{value} {running}")
    h.record_bindings("mixed.bindings.yaml", bindings.encode(), t0 - 4 * DAY)
    h.append([Reading("E-0", "v", 7, "", t0 - 3 * DAY)], t0 - 3 * DAY, "test")  # silent for days after
    for second in range(0, 3 * HOUR, 30):
        ts = t0 + second
        readings = [Reading(f"E-{i}", "v", (second // 30 * 7 + i) % 11 - 1.5, "", ts + i) for i in range(3, 12)]
        readings.append(Reading("E-2", "v", 1.25, "", ts) if second < 600 else None)  # silent after 10 min
        if second >= 2 * HOUR + 600:  # first sent 10 min after the keyframe at t0 + 2 h
            readings.append(Reading("E-1", "v", second % 4, "", ts + 1))
        h.append([r for r in readings if r is not None], ts, "test")
    h.flush()
    assert h.seal()  # the three hours, and a keyframe at every hour start since the first sample
    db = sqlite3.connect(tmp_path / "history" / "history.sqlite")
    keyframes = {t for (t,) in db.execute("SELECT t FROM keyframes")}
    assert {t0 + HOUR, t0 + 2 * HOUR, t0 + 3 * HOUR, t0 - 3 * DAY + HOUR} <= keyframes
    rules = RuleVersions(h, bindings_from_text(bindings.encode(), "mixed.bindings.yaml"), None)
    moments = [t0 + HOUR + 0.5, t0 + 2 * HOUR + 0.01, t0 + 2 * HOUR + 300, t0 + 2 * HOUR + 1234.5, t0 + 3 * HOUR - 1]

    def check(*extra: float) -> None:
        for t in [*moments, *extra]:
            state = {key: (s.ts, s.value, s.quality) for key, s in h.state_at(t).items()}
            assert state == _last_samples(h, t), t
            assert ReplayTwin(h, rules, "ops").seek(t) == _per_element(h, rules, t), t

    check()
    assert h.state_at(t0 + 2 * HOUR + 300)[("E-0", "v")].ts == t0 - 3 * DAY
    assert ("E-1", "v") not in h.state_at(t0 + 2 * HOUR + 300)
    assert h.state_at(t0 + 2 * HOUR + 1234.5)[("E-1", "v")].ts == t0 + 2 * HOUR + 1231
    # A gateway's buffer after an outage: E-2's newest value is now in the sealed first hour, after its keyframe.
    h.append([Reading("E-2", "v", 9.5, "", t0 + HOUR - 5)], t0 + 3 * HOUR, "test")
    h.flush()
    check(t0 + HOUR - 1)
    assert h.state_at(t0 + 2 * HOUR + 300)[("E-2", "v")].value == 9.5
    assert {t for (t,) in db.execute("SELECT t FROM keyframes")} == {t for t in keyframes if t <= t0 + HOUR - 5}
    h.seal()  # the keyframes again, with the late reading
    assert {t for (t,) in db.execute("SELECT t FROM keyframes")} == keyframes
    check()
    db.execute("UPDATE keyframes SET body = x'c1ff' WHERE t = ?", (t0 + 2 * HOUR,))
    db.execute("DELETE FROM keyframes WHERE t = ?", (t0 + HOUR,))
    db.commit()
    check()
    assert "unreadable" in caplog.text
    db.close()
    h.close()
