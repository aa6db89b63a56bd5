"""Leading a session, in real browsers on a real server: the presenter starts and advances a procedure,
followers' cameras follow the presenter, a follower can break away and return, a late joiner lands on
the current step, trainees' progress reaches the trainer, a presenter's move another one beat is said in the
panel, and an operator's command asks for
confirmation and shows the server's answer."""

from __future__ import annotations

import re

import pytest

from tests.web_helpers import (
    BINDINGS,
    REPO,
    WAIT_MS,
    build_client,
    chromium_browser,
    live_twin,
    screenshot,
    session_joiner,
)
from viewer_server.auth import load_secret
from viewer_server.permissions import allowed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"
STEP1_POS = (2.0, 4.0, 9.0)
STEP2_POS = (-3.0, 5.0, 4.0)
PROCEDURE = f"""\
version: 1
name: valve-check
title: Check valve 3
steps:
  - id: look
    title: Look at valve 3
    instructions: "<b onmouseover=alert(1)>Check</b> the gland for leaks"
    highlight: [el-00003]
    viewpoint: {{camera: {{position: {list(STEP1_POS)}, direction: [0, -0.5, -0.866], up: [0, 1, 0], fov_deg: 50}}}}
    watch: [{{element: el-00000, prop: pressure}}]
  - id: pressure
    title: Raise the pressure
    highlight: [el-00000]
    viewpoint: {{camera: {{position: {list(STEP2_POS)}, direction: [0.5, -0.5, -0.707], up: [0, 1, 0]}}}}
    watch: [{{element: el-00000, prop: pressure}}]
    complete_when: {{value: {{element: el-00000, prop: pressure, min: 3}}}}
"""
COMMANDS = """\
commands:
  - {element: el-00001, command: stop, topic: plant/el-00001/cmd}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    build_client()
    root = tmp_path_factory.mktemp("collab")
    with (
        live_twin(root, count=24, bindings=BINDINGS + COMMANDS, procedure=PROCEDURE) as live,
        chromium_browser() as browser,
    ):
        yield live, session_joiner(browser, live.url, load_secret(root / "data"), SESSION)


def _near(page, pos, tol=0.05, timeout=WAIT_MS):
    page.wait_for_function(
        "([p, tol]) => window.twinview.viewer.camera.position.distanceTo({x: p[0], y: p[1], z: p[2]}) < tol",
        arg=[list(pos), tol],
        timeout=timeout,
    )


def _look_from(page, pos):
    page.evaluate(
        """(p) => { const v = window.twinview.viewer;
        v.flyTo(v.camera.position.clone().set(...p), v.controls.target.clone().set(3, 0, 3), 0); }""",
        list(pos),
    )


def test_presenter_leads_a_procedure(world):
    live, join = world
    pia = join("Pia", "presenter")
    tom = join("Tom", "annotator")

    # Pia presents: Tom is told, and follows.
    pia.click("#btn-present")
    tom.wait_for_function("window.twinview.collab.presenter.following", timeout=WAIT_MS)
    assert "Pia is presenting" in tom.locator("#presenter-bar").inner_text()
    assert tom.locator("#btn-present").is_hidden(), "an annotator cannot take the presenter role"

    # Pia starts the procedure: everyone is on step 1, at its viewpoint, with its element tinted, not selected.
    pia.wait_for_function("document.querySelectorAll('#procedure-panel select.procedure-name option').length > 0")
    pia.click("#procedure-panel button.start")
    tom.wait_for_selector("#procedure-panel:not([hidden]) .step-title")
    assert tom.locator("#procedure-panel .step-no").inner_text() == "Step 1 of 2"
    instructions = tom.locator("#procedure-panel .instructions").inner_text()
    assert instructions == "<b onmouseover=alert(1)>Check</b> the gland for leaks"
    _near(tom, STEP1_POS)
    assert tom.evaluate("window.twinview.app.twin.selected") is None
    assert tom.locator("#procedure-panel .trainer").count() == 0, "only the lead moves the session"

    # Tom acknowledges the step: Pia's trainer table shows it.
    tom.click("#procedure-panel button.step-done")
    pia.wait_for_selector('#procedure-panel tr[data-user="Tom"]', timeout=WAIT_MS)
    assert pia.locator('#procedure-panel tr[data-user="Tom"] td').nth(2).inner_text() == "✓"
    tom.wait_for_function("document.querySelector('#procedure-panel button.step-done').disabled")

    # Pia moves her camera: Tom's follows.
    _look_from(pia, (12.0, 6.0, 2.0))
    _near(tom, (12.0, 6.0, 2.0))

    # Tom drags his own view: he breaks away, and Pia's next move leaves him where he is.
    box = tom.locator("#view canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    tom.mouse.move(cx, cy)
    tom.mouse.down()
    tom.mouse.move(cx + 80, cy + 10, steps=4)
    tom.mouse.up()
    tom.wait_for_selector("#presenter-bar button.return")
    _look_from(pia, (10.0, 7.0, -3.0))
    pia.wait_for_timeout(500)
    assert tom.evaluate("window.twinview.viewer.camera.position.distanceTo({x: 10, y: 7, z: -3})") > 1
    # ... until he returns to the presenter.
    tom.click("#presenter-bar button.return")
    _near(tom, (10.0, 7.0, -3.0))

    # Pia moves the session on; the step completes for everyone once the live value is in range.
    pia.click("#procedure-panel button.next")
    tom.wait_for_function("document.querySelector('#procedure-panel .step-no').textContent === 'Step 2 of 2'")
    live.ingest([{"key": "el-00000.pressure", "value": 4.2}])
    tom.wait_for_function(
        "document.querySelector('#procedure-panel .hint')?.textContent === 'Condition met ✓'", timeout=WAIT_MS
    )
    assert "4.20 bar" in tom.locator("#procedure-panel table.watch").inner_text()
    screenshot(tom, "collab-procedure")

    # A late joiner lands on the current step and on the presenter's view.
    lea = join("Lea", "viewer")
    assert lea.locator("#procedure-panel .step-no").inner_text() == "Step 2 of 2"
    presenter_pos = pia.evaluate("window.twinview.viewer.camera.position.toArray()")
    _near(lea, presenter_pos, tol=0.1)
    assert "Pia is presenting" in lea.locator("#presenter-bar").inner_text()

    # Lea raises her hand; Pia sees it and lowers it.
    lea.click("#btn-hand")
    pia.wait_for_selector("#presenter-bar button.hand", timeout=WAIT_MS)
    assert "Lea" in pia.locator("#presenter-bar button.hand").inner_text()
    pia.click("#presenter-bar button.hand")
    lea.wait_for_function("document.querySelector('#btn-hand').textContent === 'Raise hand'", timeout=WAIT_MS)

    for page in (pia, tom, lea):
        assert not page.errors, page.errors
        page.context.close()


def _step_no(page, text):
    page.wait_for_function(
        "(t) => document.querySelector('#procedure-panel .step-no')?.textContent === t", arg=text, timeout=WAIT_MS
    )


def _beaten(page):
    page.wait_for_selector("#procedure-panel .beaten", timeout=WAIT_MS)
    return page.locator("#procedure-panel .beaten").inner_text()


def test_a_move_another_presenter_beat_is_said_in_the_panel_over_the_current_step(world):
    _, join = world
    ana = join("Ana", "presenter")
    ben = join("Ben", "presenter")
    shown = "document.querySelector('#procedure-panel .step-no, #procedure-panel button.start')"
    for page in (ana, ben):
        page.wait_for_function(shown, timeout=WAIT_MS)
    if ana.locator("#procedure-panel button.stop").count():  # the run an earlier test left going
        ana.click("#procedure-panel button.stop")
    loaded = "document.querySelectorAll('#procedure-panel select.procedure-name option').length > 0"
    ben.wait_for_function(loaded, timeout=WAIT_MS)
    # Ben's panel as it was before Ana's moves reached it: his clicks carry where he saw the session.
    ben.evaluate("window.staleStart = document.querySelector('#procedure-panel button.start')")

    ana.wait_for_function(loaded, timeout=WAIT_MS)
    ana.click("#procedure-panel button.start")
    _step_no(ben, "Step 1 of 2")
    ben.evaluate("window.staleNext = document.querySelector('#procedure-panel button.next')")
    ben.evaluate("window.staleStart.click()")
    assert _beaten(ben) == "Ana started “Check valve 3” first; your “Start” was not applied."

    ana.click("#procedure-panel button.next")
    _step_no(ben, "Step 2 of 2")
    ben.evaluate("window.staleNext.click()")  # a "next" from step 1, after Ana's
    ben.wait_for_function(
        "document.querySelector('#procedure-panel .beaten')?.textContent.includes('Next')", timeout=WAIT_MS
    )
    assert _beaten(ben) == (
        "Ana moved the procedure first, to step 2 — Raise the pressure; your “Next” was not applied."
    )
    assert ben.locator("#procedure-panel .step-no").inner_text() == "Step 2 of 2"
    assert ben.locator("#procedure-panel .step-title").inner_text() == "Raise the pressure"
    assert "Server error" not in (ben.locator("#notice").text_content() or ""), "said in the panel, not as a notice"
    _step_no(ana, "Step 2 of 2")  # moved once, not twice (a second "next" would have finished the run)

    ana.click("#procedure-panel button.back")  # a newer move: the note is old news
    _step_no(ben, "Step 1 of 2")
    assert ben.locator("#procedure-panel .beaten").count() == 0

    for page in (ana, ben):
        assert not page.errors, page.errors
        page.context.close()


def test_operator_command_asks_then_shows_the_answer(world):
    _, join = world
    otto = join("Otto", "operator")
    otto.evaluate("window.twinview.select('el-00001')")
    button = otto.locator('#commands button.command[data-command="stop"]')
    button.wait_for()
    button.click()
    dialog = otto.locator("dialog.confirm")
    assert dialog.is_visible() and "stop" in dialog.inner_text()
    dialog.locator("button.send-command").click()
    # No MQTT broker in this test: the server says so, and the operator reads it.
    otto.wait_for_function(
        "document.querySelector('#commands .command-status')?.classList.contains('failed')", timeout=WAIT_MS
    )
    assert "stop to Pipe" in otto.locator("#commands .command-status").inner_text()  # the element by its name
    assert "failed" in otto.locator("#commands .command-status").inner_text()
    otto.context.close()

    # Someone who may not command sees no command buttons at all.
    ana = join("Ana", "annotator")
    ana.evaluate("window.twinview.select('el-00001')")
    assert ana.locator("#commands").is_hidden()
    ana.context.close()


def test_ui_permissions_mirror_the_server():
    """The client hides controls by a copy of part of the role matrix: it must match the server's."""
    source = (REPO / "web_client" / "src" / "auth.js").read_text()
    groups = {
        "PERSONS": ["viewer", "annotator", "presenter", "operator", "admin"],
        "AUTHORS": ["annotator", "presenter", "operator", "admin"],
        "LEADS": ["presenter", "admin"],
    }
    for name, roles in groups.items():
        assert re.search(rf"const {name} = \[{', '.join(repr(r) for r in roles)}\];", source), name
    table = re.search(r"UI_PERMISSIONS = .*?\{(.*?)\}\);", source, re.S).group(1)
    for action, value in re.findall(r"'([a-z_.]+)': (\w+|\[[^\]]*\])", table):
        roles = groups.get(value) or re.findall(r"'(\w+)'", value)
        for role in ["viewer", "annotator", "presenter", "operator", "admin"]:
            assert allowed(role, action) == (role in roles), (action, role)
