"""Guided procedures over real WebSockets: a presenter leads two trainees through a procedure, a late
joiner lands on the current step and viewpoint, a value step completes from telemetry POSTed to
/api/ingest, the presenter sees everyone's progress, the record exports as JSON and CSV (REST and CLI),
and everything survives a server restart; two presenters on two processes of a deployment move it once."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scene.procedure_file import ProcedureFile, parse_procedure
from tests.live_server import live_server, mint_token, person, session_id, store_rows, write_bindings, write_scene
from tests.redis_server import RedisServer, redis_service  # noqa: F401 - the fixture
from tests.test_restart_durability import TWINVIEW, _free_port, _ready, _server
from viewer_server import protocol as p
from viewer_server.auth import issue, load_secret
from viewer_server.cli import main as cli_main
from viewer_server.client import TwinClient
from viewer_server.procedures import (
    EVERYONE,
    ProcedureSession,
    Refused,
    build_record,
    position,
    position_after,
    record_csv,
)
from viewer_server.scenes import scene_id_for
from viewer_server.store import Store

pytestmark = pytest.mark.deployable

PROCEDURE = """\
version: 1
name: pump-start
title: Start pump P-1
steps:
  - id: walkdown
    title: Walk down P-1
    highlight: [P-1]
    viewpoint: {camera: {position: [5, 2, 1], direction: [0, 0, -1], up: [0, 1, 0]}}
  - id: select-pipe
    title: Select the discharge pipe
    highlight: [PIPE-1]
    viewpoint: {camera: {position: [1, 2, 3], direction: [0, -1, 0], up: [0, 0, -1]}}
    complete_when: {select: PIPE-1}
  - id: pressure
    title: Pressure between 3 and 5 bar
    highlight: [PT-1]
    viewpoint: {camera: {position: [2, 1, 2], direction: [-1, 0, 0], up: [0, 1, 0], fov_deg: 40}}
    watch: [{element: PT-1, prop: pressure}]
    complete_when: {value: {element: PT-1, prop: pressure, min: 3, max: 5}}
"""
TIMEOUT = 10.0


async def wait_error(tc: TwinClient, code: str) -> p.Error:
    await tc.wait_for(lambda c: any(e.code == code for e in c.errors), TIMEOUT)
    return next(e for e in tc.errors if e.code == code)


async def tc_error(a: TwinClient, b: TwinClient, code: str) -> None:
    """One of two clients got error `code`, the other none."""
    waits = [asyncio.ensure_future(wait_error(tc, code)) for tc in (a, b)]
    done_, pending = await asyncio.wait(waits, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    assert done_ and sum(e.code == code for e in [*a.errors, *b.errors]) == 1


def at_step(step: int) -> Callable[[TwinClient], bool]:
    return lambda c: c.procedure is not None and c.procedure.step == step


def done(step: int, user: str) -> Callable[[TwinClient], bool]:
    return lambda c: c.procedure is not None and any(d.step == step and d.user == user for d in c.procedure.completions)


async def ingest(url: str, value: float) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"readings": [{"key": "PT-1.pressure", "value": value, "ts": time.time()}]}
        async with http.post(f"{url}/api/ingest", json=body) as r:
            assert (await r.json())["accepted"] == 1


async def get(url: str, token: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, r.content_type, await r.text()


async def test_presenter_leads_trainees_and_a_late_joiner_lands_on_the_current_step(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path, procedures=PROCEDURE) as srv,
        person(srv, "ann", "presenter") as ann,
        person(srv, "bob", "viewer") as bob,
        person(srv, "eve", "annotator") as eve,
    ):
        assert ann.procedure is None and "procedures" in (ann.welcome.capabilities if ann.welcome else [])
        await ingest(srv.url, 2.0)  # below step 2's range, whatever a shared deployment's twin held before
        await bob.wait_for(lambda c: c.props.get("PT-1/pressure") is not None and c.props["PT-1/pressure"].v == 2.0)
        async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/api/procedures") as r:
            assert await r.json() == [
                {"name": "pump-start", "title": "Start pump P-1", "description": "",
                 "steps": ["Walk down P-1", "Select the discharge pipe", "Pressure between 3 and 5 bar"]},
            ]  # fmt: skip
        await bob.send(p.ProcedureControl("start", name="pump-start"))  # trainees do not lead
        assert "procedure.control" in (await wait_error(bob, p.ERR_FORBIDDEN)).message
        await ann.send(p.ProcedureControl("start", name="no-such"))
        assert "pump-start" in (await wait_error(ann, p.ERR_NOT_FOUND)).message

        await ann.send(p.ProcedureControl("start", name="pump-start"))
        for tc in (ann, bob, eve):
            await tc.wait_for(at_step(0), TIMEOUT)
        started = next(e for e in bob.events if e.kind == "procedure_started")
        assert started.user == "ann" and started.procedure == "pump-start" and started.step == 0
        assert started.viewpoint is not None and started.viewpoint.selected == ["P-1"]

        # Step 0 (acknowledge) completes per trainee; the presenter sees who.
        await bob.send(p.StepComplete(0))
        await bob.send(p.StepComplete(0))  # a double click records nothing new
        await ann.wait_for(done(0, "bob"), TIMEOUT)
        await eve.send(p.StepComplete(1))
        assert "not the current step" in (await wait_error(eve, "not_current_step")).message

        await ann.send(p.ProcedureControl("next"))
        await bob.wait_for(at_step(1), TIMEOUT)
        step_event = next(e for e in bob.events if e.kind == "procedure_step")
        assert step_event.step == 1 and step_event.message == "Select the discharge pipe"
        assert step_event.viewpoint is not None and step_event.viewpoint.camera.position.z == 3

        # Step 1 (select) needs the right element.
        await bob.send(p.StepComplete(1, element="P-1"))
        assert "PIPE-1" in (await wait_error(bob, "wrong_element")).message
        await bob.send(p.StepComplete(1, element="PIPE-1"))
        await ann.wait_for(done(1, "bob"), TIMEOUT)  # before eve's: requests of two people are ordered as they arrive
        await eve.send(p.StepComplete(1, element="PIPE-1"))
        await ann.wait_for(lambda c: done(1, "bob")(c) and done(1, "eve")(c), TIMEOUT)

        # Step 2 (value) completes by itself, for everyone, once the live value is in range.
        await ann.send(p.ProcedureControl("next"))
        await bob.wait_for(at_step(2), TIMEOUT)
        await bob.send(p.StepComplete(2))
        await wait_error(bob, "completed_by_twin")
        await ingest(srv.url, 2.5)  # below the range: nothing
        await bob.wait_for(lambda c: c.props["PT-1/pressure"].v == 2.5, TIMEOUT)

        # A late joiner lands on the current step, its viewpoint and everyone's progress.
        async with person(srv, "carol", "viewer") as carol:
            run = carol.procedure
            assert run is not None and run.step == 2 and run.name == "pump-start" and not run.finished
            assert run.steps[run.step].viewpoint is not None
            assert run.steps[run.step].viewpoint.camera.fov_deg == 40  # type: ignore[union-attr]
            assert {(d.step, d.user) for d in run.completions} == {(0, "bob"), (1, "bob"), (1, "eve")}

            await ingest(srv.url, 4.2)
            for tc in (ann, bob, eve, carol):
                await tc.wait_for(done(2, EVERYONE), TIMEOUT)
            twin_done = next(d for d in carol.procedure.completions if d.step == 2)  # type: ignore[union-attr]
            assert twin_done.value == 4.2 and twin_done.element == "PT-1"
            await ingest(srv.url, 4.5)  # still in range: completed once only
            await ann.send(p.ProcedureControl("back"))
            await carol.wait_for(at_step(1), TIMEOUT)
            await ann.send(p.ProcedureControl("goto", step=7))
            assert "no step 7" in (await wait_error(ann, "bad_step")).message
            await ann.send(p.ProcedureControl("goto", step=2))
            await ann.send(p.ProcedureControl("next"))  # past the last step: finished
            await carol.wait_for(lambda c: c.procedure is not None and c.procedure.finished == "completed", TIMEOUT)
            assert sum(d.step == 2 for d in carol.procedure.completions) == 1  # type: ignore[union-attr]

        # Every client saw every procedure event exactly once, in order.
        kinds = [e.kind for e in bob.events if e.kind in p.PROCEDURE_EVENTS]
        assert kinds == [
            "procedure_started", "step_completed", "procedure_step", "step_completed", "step_completed",
            "procedure_step", "step_completed", "procedure_step", "procedure_step", "procedure_finished",
        ]  # fmt: skip
        assert bob.duplicate_events == 0

        # The record: who completed which step, when — JSON and CSV.
        token = mint_token(srv, "ann", "presenter")
        base = f"{srv.url}/api/sessions/{session_id(srv)}/procedure/record"
        status, ctype, body = await get(base + ".json", token)
        assert status == 200 and ctype == "application/json"
        record = json.loads(body)
        assert record["procedure"] == "pump-start" and record["finished"] == "completed"
        assert [(r["step_id"], r["user"]) for r in record["completions"]] == [
            ("walkdown", "bob"), ("select-pipe", "bob"), ("select-pipe", "eve"), ("pressure", "*"),
        ]  # fmt: skip
        assert record["completions"][3]["detail"] == "pressure=4.2"
        assert record["completions"][0]["completed_at"].endswith("Z")
        status, ctype, body = await get(base + ".csv", token)
        assert status == 200 and ctype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(body)))
        assert [r["user"] for r in rows] == ["bob", "bob", "eve", "*"] and rows[1]["detail"] == "PIPE-1"
        assert rows[0]["step_title"] == "Walk down P-1" and rows[0]["session"] == session_id(srv)
        status, _, _ = await get(base + ".json", "not-a-token")
        assert status == 401


@pytest.mark.in_process_only("restarts the server on its data dir, then reads the record with the CLI")
async def test_the_procedure_survives_a_restart_and_the_cli_prints_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store_url: str | None
) -> None:
    async with live_server(tmp_path, procedures=PROCEDURE, store=store_url) as srv, person(srv, "ann", "admin") as ann:
        await ann.send(p.ProcedureControl("start", name="pump-start"))
        await ann.send(p.StepComplete(0))
        await ann.send(p.ProcedureControl("next"))
        await ann.wait_for(lambda c: at_step(1)(c) and done(0, "ann")(c), TIMEOUT)
        scene_id = srv.live.scene.id
    async with (
        live_server(tmp_path, procedures=PROCEDURE, store=store_url) as srv,
        person(srv, "zoe", "viewer") as zoe,
        person(srv, "pat", "presenter") as pat,
        person(srv, "ann", "admin") as ann,
    ):
        run = zoe.procedure
        assert run is not None and run.step == 1 and [(d.step, d.user) for d in run.completions] == [(0, "ann")]
        assert run.steps[1].viewpoint is not None and run.steps[1].viewpoint.selected == ["PIPE-1"]
        await zoe.send(p.StepComplete(1, element="PIPE-1"))  # and the run goes on where it was
        await zoe.wait_for(done(1, "zoe"), TIMEOUT)
        await pat.send(p.ProcedureControl("back"))
        await ann.send(p.ProcedureControl("back"))  # at the same time: one goes to 0, the other is refused
        await zoe.wait_for(at_step(0), TIMEOUT)
        await tc_error(pat, ann, "bad_step")

    data = ["--data-dir", str(tmp_path / "data"), *(["--store", store_url] if store_url else [])]
    assert cli_main(["procedure", "record", scene_id, *data]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["step"], r["user"]) for r in rows] == [("0", "ann"), ("1", "zoe")]
    assert cli_main(["procedure", "record", scene_id, "--format", "json", *data]) == 0
    assert '"procedure": "pump-start"' in capsys.readouterr().out
    assert cli_main(["procedure", "record", "nope", *data]) == 2
    assert "no procedure run" in capsys.readouterr().err


# --- the state machine without a server ---------------------------------------------------------


def fresh() -> tuple[ProcedureSession, ProcedureFile]:
    return ProcedureSession("room"), parse_procedure(yaml.safe_load(PROCEDURE))


def test_decisions_refuse_what_makes_no_sense() -> None:
    ps, proc = fresh()
    with pytest.raises(Refused, match="no procedure is running"):
        ps.move("next", None, "ann", 1.0)
    for event in ps.start(proc, "ann", 1.0, "run1"):
        ps.apply(event)
    with pytest.raises(Refused, match="stop it first"):
        ps.start(proc, "ann", 2.0, "run2")
    with pytest.raises(Refused, match="no step -1"):
        ps.move("back", None, "ann", 2.0)
    with pytest.raises(Refused, match="goto needs a step"):
        ps.move("goto", None, "ann", 2.0)
    # Two presenters pressed "next" on step 0: the first moves the session, the second is refused, not applied.
    [step] = ps.move("next", None, "ann", 2.0, from_step=0)
    ps.apply(step)
    with pytest.raises(Refused, match="at step 1") as moved:
        ps.move("next", None, "bob", 2.0, from_step=0)
    assert moved.value.code == p.ERR_STEP_MOVED
    assert position(ps.run) == position_after(step) == "run1:1"
    [stop] = ps.move("stop", None, "ann", 3.0, from_step=1)
    assert position_after(stop) == ""
    ps.apply(stop)
    assert position(ps.run) == ""
    assert ps.run is not None and ps.run.finished == "stopped" and ps.active is None
    record = build_record(ps.start(proc, "x", 4.0, "run3"))
    assert record is not None and record.run == "run3" and record_csv(record).count("\n") == 1  # header only


def test_value_steps_observe_the_twin_once() -> None:
    ps, proc = fresh()
    for event in ps.start(proc, "ann", 1.0, "r"):
        ps.apply(event)
    for event in ps.move("goto", 2, "ann", 2.0):
        ps.apply(event)
    values: dict[tuple[str, str], float] = {}
    assert ps.watches("PT-1", "pressure") and not ps.watches("PT-1", "flow")
    assert ps.observe(lambda e, pr: values.get((e, pr)), 3.0) == []  # no value yet
    values[("PT-1", "pressure")] = 5.5
    assert ps.observe(lambda e, pr: values.get((e, pr)), 3.0) == []  # out of range
    values[("PT-1", "pressure")] = 5.0  # bounds are inclusive
    [event] = ps.observe(lambda e, pr: values.get((e, pr)), 4.0)
    ps.apply(event)
    assert event.user == EVERYONE and event.value == 5.0
    assert ps.observe(lambda e, pr: values.get((e, pr)), 5.0) == []  # once


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("start"), st.just(None), st.just("ann")),
        st.tuples(st.sampled_from(["next", "back", "stop"]), st.just(None), st.just("ann")),
        st.tuples(st.just("goto"), st.integers(-1, 3), st.just("ann")),
        st.tuples(st.just("complete"), st.integers(0, 2), st.sampled_from(["bob", "eve"])),
        st.tuples(st.just("select"), st.integers(0, 2), st.sampled_from(["bob", "eve"])),
        st.tuples(st.just("pressure"), st.floats(0, 8), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(ACTIONS)
def test_any_sequence_keeps_the_run_consistent_and_replays_to_the_same_state(actions: list) -> None:
    ps, proc = fresh()
    values: dict[tuple[str, str], float] = {}
    log: list[p.Event] = []
    for i, (kind, arg, user) in enumerate(actions):
        now = float(i)
        try:
            if kind == "start":
                drafts = ps.start(proc, user, now, f"run{i}")
            elif kind in ("next", "back", "stop", "goto"):
                drafts = ps.move(kind, arg, user, now)
            elif kind == "pressure":
                values[("PT-1", "pressure")] = arg
                drafts = ps.observe(lambda e, pr: values.get((e, pr)), now)
            else:
                drafts = ps.complete(arg, user, "PIPE-1" if kind == "select" else None, now)
        except Refused:
            continue
        for event in drafts:
            ps.apply(event)
            log.append(event)
            if event.kind in ("procedure_started", "procedure_step"):
                for auto in ps.observe(lambda e, pr: values.get((e, pr)), now):
                    ps.apply(auto)
                    log.append(auto)
        run = ps.run
        if run is None:
            continue
        assert 0 <= run.step < len(run.steps)
        pairs = [(d.step, d.user) for d in run.completions]
        assert len(pairs) == len(set(pairs))  # each person completes a step once
    replayed = ProcedureSession("room")
    for event in log:  # what a restart does with the persisted events
        replayed.apply(msgspec.json.decode(msgspec.json.encode(event), type=p.Event))
    assert replayed.snapshot() == ps.snapshot()
    record = build_record(log)
    if ps.run is not None:
        assert record is not None and len(record.completions) == len(ps.run.completions)
        assert record.finished == ps.run.finished


@pytest.mark.skipif(not TWINVIEW.exists(), reason="the twinview console script is not installed")
async def test_next_or_start_pressed_at_once_on_two_processes_is_done_once(
    tmp_path: Path,
    redis_service: RedisServer,  # noqa: F811
) -> None:
    scene, bindings, data = write_scene(tmp_path), write_bindings(tmp_path), tmp_path / "data"
    procedure = tmp_path / "pump.procedure.yaml"
    procedure.write_text(PROCEDURE)
    session = scene_id_for(scene)
    ports = _free_port(), _free_port()
    ws_urls = [f"ws://127.0.0.1:{port}/ws/{session}" for port in ports]
    flags = ("--bus", redis_service.url, "--procedures", str(procedure))
    with _server(scene, bindings, data, ports[0], *flags), _server(scene, bindings, data, ports[1], *flags):
        for port in ports:
            await _ready(f"http://127.0.0.1:{port}")
        secret = load_secret(data)
        ann, bob = (
            TwinClient(url, token=issue(secret, session, name, "presenter"), name=name)
            for url, name in zip(ws_urls, ("ann", "bob"), strict=True)
        )
        async with ann, bob:
            await ann.send(p.ProcedureControl("start", name="pump-start"))
            await bob.wait_for(at_step(0), timeout=20)
            # Both pressed "next" on step 0 before either saw the other's: the deployment moves once.
            await asyncio.gather(*(c.send(p.ProcedureControl("next", from_step=0)) for c in (ann, bob)))
            for client in (ann, bob):
                await client.wait_for(lambda c: at_step(1)(c) and c.seq == ann.seq, timeout=20)
            await asyncio.wait_for(_until(lambda: len(ann.errors) + len(bob.errors) == 1), 20)
            [error] = [*ann.errors, *bob.errors]
            assert error.code == p.ERR_STEP_MOVED and error.ref == "procedure_control"
            for client in (ann, bob):
                assert [e.step for e in client.events if e.kind == "procedure_step"] == [1]
            # Two starts at once after a stop: one run.
            await ann.send(p.ProcedureControl("stop", from_step=1))
            await bob.wait_for(lambda c: c.procedure is not None and c.procedure.finished == "stopped", timeout=20)
            await asyncio.gather(*(c.send(p.ProcedureControl("start", name="pump-start")) for c in (ann, bob)))
            await asyncio.wait_for(_until(lambda: len(ann.errors) + len(bob.errors) == 2), 20)
            assert [e.code for e in (*ann.errors, *bob.errors)].count("procedure_active") == 1
            await ann.wait_for(lambda c: c.procedure is not None and not c.procedure.finished, timeout=20)
            await bob.wait_for(lambda c: c.seq == ann.seq, timeout=20)
            for client in (ann, bob):
                assert [e.kind for e in client.events].count("procedure_started") == 2  # the first run's, and one
            # Nothing refused left behind in the store: a restart replays what happened.
            store = Store(data)
            try:
                kinds = store_rows(store, "SELECT kind, count(*) FROM procedure_events GROUP BY kind ORDER BY kind")
            finally:
                store.close()
            assert kinds == [("procedure_finished", 1), ("procedure_started", 2), ("procedure_step", 1)]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.05)
