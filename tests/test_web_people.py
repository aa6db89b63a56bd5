"""People and names, in real browsers on a real server: who is here reads as names with roles (also on one
shared link), a name that is a role or someone else's is refused and asked for again, every element reads
as its name (its id only on demand), and a trainer follows every trainee through a procedure — a late
joiner and one who has done nothing yet included — whose select step only the trainee's own selection
completes, and whose value step shows its target range and the live value."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from tests.web_helpers import (
    BINDINGS,
    build_client,
    chromium_browser,
    live_twin,
    open_viewer,
    publish,
    screenshot,
    session_joiner,
)
from viewer_server.auth import issue, load_secret

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"  # the synthetic scene's default session: visitors without a link come in as viewers
WAIT_MS = 30_000
VIEW = "{camera: {position: [2, 4, 9], direction: [0, -0.5, -0.866], up: [0, 1, 0]}}"
PROCEDURE = f"""\
version: 1
name: pump-start
title: Start pump 0
steps:
  - id: look
    title: Look at pump 0
    highlight: [el-00000]
    viewpoint: {VIEW}
  - id: find-valve
    title: Find valve 3
    highlight: [el-00003]
    viewpoint: {VIEW}
    complete_when: {{select: el-00003}}
  - id: pressure
    title: Bring the pressure up
    viewpoint: {VIEW}
    watch: [{{element: el-00000, prop: pressure}}]
    complete_when: {{value: {{element: el-00000, prop: pressure, min: 3, max: 5}}}}
"""
COMMANDS = """\
commands:
  - {element: el-00001, command: stop, topic: plant/el-00001/cmd}
"""
# Element ids of the synthetic twin ("el-00003"): none may be read where the element has a name.
ELEMENT_ID = re.compile(r"el-\d{5}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    build_client()
    root = tmp_path_factory.mktemp("people")
    with (
        live_twin(root, count=24, bindings=BINDINGS + COMMANDS, procedure=PROCEDURE) as live,
        chromium_browser() as browser,
    ):
        secret = load_secret(root / "data")
        yield live, browser, secret, session_joiner(browser, live.url, secret, SESSION)


def _open(browser, url: str):
    page = open_viewer(browser.new_context(), url)
    page.wait_for_function("window.twinview.session.welcome !== null", timeout=WAIT_MS)
    return page


def _people(page) -> list[list[str]]:
    """The People list as read: [name, role] of everyone else here, sorted."""
    rows = page.evaluate(
        """[...document.querySelectorAll('#people li[data-sid]')].map((li) =>
             [li.querySelector('.person').textContent, li.querySelector('.role').textContent])"""
    )
    return sorted(rows)


def _wait_people(page, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('#people li[data-sid]').length === {count}", timeout=WAIT_MS)


def _close(*pages) -> None:
    for page in pages:
        assert not page.errors, page.errors
        page.context.close()


def test_people_on_one_shared_link_read_as_their_names_with_roles(world):
    live, browser, secret, join = world
    demo = f"{live.url}/?session={SESSION}&token={issue(secret, SESSION, 'annotator', 'annotator')}"
    ana, ben = _open(browser, f"{demo}&name=Ana"), _open(browser, f"{demo}&name=Ben")
    first, second = _open(browser, demo), _open(browser, demo)
    assert [p.evaluate("window.twinview.session.welcome.name") for p in (ana, ben, first, second)] == [
        "Ana",
        "Ben",
        "annotator",
        "annotator (2)",
    ]
    watcher = join("Wim", "viewer")
    _wait_people(watcher, 4)
    assert _people(watcher) == [
        ["Ana", "annotator"],
        ["Ben", "annotator"],
        ["annotator", "annotator"],
        ["annotator (2)", "annotator"],
    ]
    assert (ben.locator("#you .you-name").inner_text(), ben.locator("#you .role").inner_text()) == ("Ben", "annotator")
    # A dropped link comes back under the same name.
    second.evaluate("window.twinview.session.drop()")
    second.wait_for_function("window.twinview.session.resumes === 1", timeout=WAIT_MS)
    assert second.evaluate("window.twinview.session.welcome.name") == "annotator (2)"
    screenshot(watcher, "people-names")
    _close(ana, ben, first, second, watcher)


def test_a_visitor_is_asked_for_a_name_and_a_taken_or_role_name_is_refused(world):
    live, browser, _, join = world
    otto = join("Otto", "operator")
    # A visitor who gave no name joins, and is asked for one beside the People list.
    visitor = _open(browser, f"{live.url}/?session={SESSION}")
    assert visitor.evaluate("window.twinview.session.welcome.name") == "Visitor (guest)"
    visitor.locator("#you input.name-input").fill("Carla")
    visitor.locator("#you button.join").click()
    visitor.wait_for_function("window.twinview.session.welcome.name === 'Carla (guest)'", timeout=WAIT_MS)
    assert visitor.locator("#you .you-name").inner_text() == "Carla (guest)"

    # A role, or the name of someone here, is refused with the reason; the page asks again, and joins.
    for name, why in [("admin", "'admin' is a role, not a name"), ("otto", "'otto' is the name of someone")]:
        page = browser.new_context().new_page()  # refused before any snapshot: no model to wait for
        page.errors = []
        page.on("pageerror", lambda e, page=page: page.errors.append(str(e)))
        page.goto(f"{live.url}/?session={SESSION}&name={name}")
        page.wait_for_selector("#notice:not([hidden]) form.name-form", timeout=WAIT_MS)
        text = page.locator("#notice").inner_text()
        assert "Choose another name" in text and why in text, text
        assert page.locator("#status").inner_text() == "refused"
        screenshot(page, f"name-refused-{name}")
        page.locator("#notice input.name-input").fill(f"{name} junior")
        page.locator("#notice button.join").click()
        page.wait_for_function(
            "([name]) => window.twinview.session.welcome?.name === name && window.twinview.session.status === 'live'",
            arg=[f"{name} junior (guest)"],
            timeout=WAIT_MS,
        )
        assert page.locator("#notice").is_hidden()
        _close(page)
    _close(visitor, otto)


def test_elements_read_as_names_everywhere_with_the_id_on_demand(world):
    live, _, _, join = world
    otto = join("Otto", "operator")
    names = live.twin.names
    # An alarm, a selected element with its live values and commands, a command's answer, a topic being pinned.
    live.ingest([{"key": "el-00001.temperature", "value": 91.5}, {"key": "el-00000.pressure", "value": 2.5}])
    otto.wait_for_selector("#alarms li.alarm", timeout=WAIT_MS)
    otto.evaluate("window.twinview.select('el-00001')")
    otto.locator('#commands button.command[data-command="stop"]').click()
    otto.locator("dialog.confirm button.send-command").click()
    otto.wait_for_function(
        "document.querySelector('#commands .command-status')?.classList.contains('failed')", timeout=WAIT_MS
    )
    assert f"stop to {names['el-00001']}" in otto.locator("#commands .command-status").inner_text()
    assert otto.locator("#properties .el-name").inner_text() == names["el-00001"]
    assert "91.5 degC" in otto.locator("#properties table.live").inner_text(), "a live value shows its unit"
    otto.locator("#properties details.pset").first.wait_for(timeout=WAIT_MS)
    psets = otto.locator("#properties details.pset").all_inner_texts()
    assert any("RatedPower\t15 kW" in t for t in psets) and any("NominalFlow\t12.5 m3/h" in t for t in psets), psets
    copy = otto.locator("#properties button.copy-id")
    assert copy.get_attribute("title") == "Copy the id el-00001"
    ana = join("Ana", "annotator")
    ana.click("#btn-new-topic")
    at = ana.evaluate("window.twinview.screenOf('el-00003')")
    ana.mouse.click(at["x"], at["y"])
    pinned = ana.locator("#topic-form .pinned-on")
    pinned.wait_for(timeout=WAIT_MS)
    assert pinned.inner_text().startswith(f"Pinned on {names['el-00003']} (IfcValve)")
    assert pinned.locator(".el-ref").get_attribute("title") == "id: el-00003"
    otto.fill("#search", "Valve")  # search results too
    otto.wait_for_selector("#tree .results li", timeout=WAIT_MS)
    for page in (otto, ana):
        shown = ELEMENT_ID.findall(page.evaluate("document.body.innerText"))
        assert not [i for i in shown if names.get(i)], f"ids shown where names exist: {sorted(set(shown))}"
    _close(otto, ana)


def test_a_trainer_follows_every_trainee_and_a_select_step_needs_the_trainees_own_pick(world):
    live, _, _, join = world
    live.ingest([{"key": "el-00000.pressure", "value": 1.0}])
    pia = join("Pia", "presenter")
    tom = join("Tom", "viewer")
    pia.wait_for_function("document.querySelectorAll('#procedure-panel select.procedure-name option').length > 0")
    pia.click("#procedure-panel button.start")
    tom.wait_for_selector("#procedure-panel:not([hidden]) .step-title", timeout=WAIT_MS)

    def row(user: str):
        return pia.locator(f'#procedure-panel tr[data-user="{user}"]')

    # Tom has done nothing yet, and is listed all the same, by name, on step 1.
    row("Tom").wait_for(timeout=WAIT_MS)
    assert row("Tom").locator("td").nth(0).inner_text() == "Tom"
    assert row("Tom").locator("td.on").inner_text() == "step 1"
    assert pia.locator('#procedure-panel tr[data-user="Pia"]').count() == 0, "the trainer is not a trainee"
    tom.click("#procedure-panel button.step-done")
    pia.wait_for_function(
        "document.querySelector('#procedure-panel tr[data-user=\"Tom\"] td.on')?.textContent === 'step 2'",
        timeout=WAIT_MS,
    )

    # The select step tints valve 3 but selects nothing: Tom has to find it himself.
    pia.click("#procedure-panel button.next")
    tom.wait_for_function(
        "document.querySelector('#procedure-panel .step-no')?.textContent === 'Step 2 of 3'", timeout=WAIT_MS
    )
    assert tom.evaluate("window.twinview.app.twin.selected") is None
    assert tom.locator("#procedure-panel .step-state.step-select").inner_text().startswith("Select Valve 3 (IfcValve)")
    assert tom.locator("#procedure-panel button.step-done").count() == 0, "no button to claim it done"
    tom.evaluate("window.twinview.select('el-00002')")  # the wrong one: the server refuses, nothing is recorded
    tom.wait_for_function(
        "document.querySelector('#procedure-panel .step-state .why')?.textContent.includes('not Valve 3')",
        timeout=WAIT_MS,
    )
    pia.wait_for_timeout(300)  # a refusal is not an event: nothing may arrive at the trainer
    assert row("Tom").locator("td.on").inner_text() == "step 2"

    # A late trainee lands on the current step and is listed at once, on the step she missed.
    lea = join("Lea", "viewer")
    assert lea.locator("#procedure-panel .step-no").inner_text() == "Step 2 of 3"
    assert lea.evaluate("window.twinview.app.twin.selected") is None
    row("Lea").wait_for(timeout=WAIT_MS)
    assert row("Lea").locator("td.on").inner_text() == "step 1"

    tom.evaluate("window.twinview.select('el-00003')")
    tom.wait_for_selector("#procedure-panel .step-state.done", timeout=WAIT_MS)
    pia.wait_for_function(
        "document.querySelector('#procedure-panel tr[data-user=\"Tom\"] td.on')?.textContent === 'step 3'",
        timeout=WAIT_MS,
    )
    assert row("Tom").locator("td").nth(3).inner_text() == "✓"
    assert row("Lea").locator("td").nth(3).inner_text() == "·"

    # The value step shows its target range and the live value, which completes it for everyone.
    pia.click("#procedure-panel button.next")
    target = lea.locator("#procedure-panel .step-state.step-value .target")
    target.wait_for(timeout=WAIT_MS)
    assert target.inner_text() == "Target: Pump 0 pressure between 3 and 5 bar"
    assert lea.locator("#procedure-panel .step-state.step-value .now").inner_text() == "Now: 1 bar"
    live.ingest([{"key": "el-00000.pressure", "value": 4.2}])
    lea.wait_for_function(
        "document.querySelector('#procedure-panel .step-state.step-value .now')?.textContent === 'Now: 4.20 bar'",
        timeout=WAIT_MS,
    )
    lea.wait_for_selector("#procedure-panel .step-state.step-value.done", timeout=WAIT_MS)
    publish(screenshot(pia, "procedure-trainer"), "procedure")
    _close(pia, tom, lea)


def test_a_revoked_link_says_so_and_offers_no_control_that_writes(world):
    live, _, secret, join = world
    rita = join("Rita", "admin")
    assert rita.locator("#btn-new-topic").is_visible()
    request = urllib.request.Request(
        f"{live.url}/api/sessions/{SESSION}/revoke",
        data=json.dumps({"user": "Rita"}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {issue(secret, SESSION, 'root', 'admin')}",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as res:
        assert json.loads(res.read())["disconnected"] == 1
    rita.wait_for_selector("#notice:not([hidden])", timeout=WAIT_MS)
    text = rita.locator("#notice").inner_text()
    assert "This link was revoked" in text and "Ask the session owner for a new one" in text, text
    shown = rita.evaluate(
        "[...document.querySelectorAll('[data-requires]')].filter((el) => !el.hidden && el.offsetParent).length"
    )
    assert shown == 0 and not rita.locator("#btn-new-topic").is_visible()
    _close(rita)
