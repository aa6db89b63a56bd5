"""Editing a topic's BCF fields in the topic panel, in real browsers on a real server: the author changes
title, description, priority, type, assignee, due date and labels and a second user's open panel shows
them live; someone else's topic lets an annotator change everything but its text; an edit on an old
revision is refused and the panel says why; a viewer sees no edit controls and a forged edit is refused
with an error frame; markup typed into the fields stays text; the BCF export carries the edited fields;
every frame matches the protocol schema."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from pathlib import Path

import pytest
from lxml import etree

from tests.web_helpers import WAIT_MS, FrameLog, build_client, chromium_browser, live_twin, session_joiner
from viewer_server.auth import issue, load_secret
from viewer_server.bcf import import_bcf
from viewer_server.bcf.mapping import bcf_guid

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"  # the scene's default session: its id is the scene's
# Hostile text: if any of it were parsed as HTML, window.__pwned would be set or a <b> would appear.
EVIL_TITLE = '<img src=x onerror="window.__pwned=1">Gasket <b>weeps</b> at P-101'
EVIL_DESCRIPTION = "<script>window.__pwned=2</script>Drips onto the motor"
EVIL_LABEL = "<b>urgent</b>"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One server, one browser; each user gets their own browser context. `state` carries the topic's
    guid from test to test (they tell one story, in order)."""
    build_client()
    root = tmp_path_factory.mktemp("topic-edit")
    with live_twin(root, count=24) as live, chromium_browser() as browser:
        secret = load_secret(root / "data")
        frames = FrameLog()
        join = session_joiner(browser, live.url, secret, SESSION, frames)

        def rest(path: str, user: str = "Auditor", role: str = "annotator") -> bytes:
            req = urllib.request.Request(
                f"{live.url}/api/sessions/{SESSION}{path}",
                headers={"Authorization": f"Bearer {issue(secret, SESSION, user, role)}"},
            )
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.read()

        yield live, join, rest, frames, {}


def _open(page, guid: str):
    page.click(f'ul.topics li[data-guid="{guid}"]')
    page.wait_for_selector("#topic-panel:not([hidden])")
    return page.locator("#topic-panel")


def _panel_shows(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(`#topic-panel ${s}`)?.textContent === t",
        arg=[selector, text],
        timeout=WAIT_MS,
    )


def _panel_has_comment(page, text: str) -> None:
    page.wait_for_function(
        "(t) => [...document.querySelectorAll('#topic-panel .comment .text')].some((e) => e.textContent === t)",
        arg=text,
        timeout=WAIT_MS,
    )


def test_the_author_edits_every_field_and_others_see_it_live(world):
    _, join, rest, _, state = world
    ana = join("Ana", "annotator")
    ben = join("Ben", "annotator")
    ana.evaluate("""() => window.twinview.session.send({type: 'topic_create', topic: {
        title: 'Gasket weeps', description: 'Seen at the morning round', labels: ['leak', 'mechanical']}})""")
    ana.wait_for_function("window.twinview.collab.store.topics.size === 1", timeout=WAIT_MS)
    guid = state["guid"] = ana.evaluate("[...window.twinview.collab.store.topics.keys()][0]")
    ben.wait_for_function("window.twinview.collab.store.topics.size === 1", timeout=WAIT_MS)
    _open(ben, guid)  # Ben watches the topic while Ana edits it

    # Ana edits every field of her topic in the form and saves.
    panel = _open(ana, guid)
    panel.locator("button.edit-topic").click()
    form = panel.locator("form.topic-edit")
    assert form.locator("input[name=title]").input_value() == "Gasket weeps"
    form.locator("input[name=title]").fill(EVIL_TITLE)
    form.locator("textarea[name=description]").fill(EVIL_DESCRIPTION)
    form.locator("select[name=priority]").select_option("critical")
    form.locator("select[name=topic_type]").select_option("Request")
    form.locator("input[name=assignee]").fill("Ben")
    form.locator("input[name=due_date]").fill("2026-12-01")
    form.locator('button[aria-label="remove label mechanical"]').click()
    form.locator("input[name=labels]").fill(f"valve, {EVIL_LABEL}")
    form.locator("input[name=labels]").press("Enter")
    form.locator("button.save-topic").click()
    ana.wait_for_selector("#topic-panel form.topic-edit", state="detached", timeout=WAIT_MS)
    assert ana.locator("#topic-panel .saved-note").inner_text() == "Saved (revision 2)"

    # Ben's open panel shows all of it, as text.
    _panel_shows(ben, ".topic-title", EVIL_TITLE)
    ben_panel = ben.locator("#topic-panel")
    assert ben_panel.locator(".description").inner_text() == EVIL_DESCRIPTION
    assert ben_panel.locator(".topic-priority").inner_text() == "Priority: critical"
    assert ben_panel.locator(".topic-type").inner_text() == "Request"
    assert ben_panel.locator(".topic-assignee").inner_text() == "Assigned to Ben"
    assert ben_panel.locator(".topic-due").inner_text() == "Due 2026-12-01"
    assert ben_panel.locator(".topic-labels .topic-label").all_inner_texts() == ["leak", "valve", EVIL_LABEL]
    assert "edited by Ana" in ben_panel.locator(".meta").first.inner_text()
    assert ben_panel.locator("b, img:not(.snapshot), script").count() == 0
    assert EVIL_TITLE in ben.locator("ul.topics").inner_text()

    # Ana starts another edit on revision 2 ...
    panel.locator("button.edit-topic").click()
    # ... while Ben, not the author, edits the same topic: everything but its text is his to change.
    ben_panel.locator("button.edit-topic").click()
    ben_form = ben_panel.locator("form.topic-edit")
    assert ben_form.locator("input[name=title]").is_disabled()
    assert ben_form.locator("textarea[name=description]").is_disabled()
    assert ben_form.locator("input[name=due_date]").input_value() == "2026-12-01"
    ben_form.locator("select[name=status]").select_option("in_progress")
    ben_form.locator("button.clear-due").click()
    ben_form.locator("button.save-topic").click()
    ben.wait_for_selector("#topic-panel form.topic-edit", state="detached", timeout=WAIT_MS)
    _panel_shows(ana, ".stale-note button.restart-edit", "Edit the new version")
    assert ben_panel.locator(".topic-due").count() == 0
    assert ana.evaluate("(g) => window.twinview.collab.store.topics.get(g).due_date", guid) is None

    # Ana saves on the old revision anyway: refused, the form keeps what she typed and says why.
    form.locator("input[name=assignee]").fill("Cleo")
    form.locator("button.save-topic").click()
    ana.wait_for_selector("#topic-panel .edit-error:not([hidden])", timeout=WAIT_MS)
    assert ana.locator("#topic-panel .edit-error").inner_text().startswith("stale_revision: ")
    assert ana.locator("#notice").is_hidden()  # said once, in the form
    assert form.locator("input[name=assignee]").input_value() == "Cleo"
    # She edits the new version: Ben's status is in it; her change goes through.
    form.locator("button.restart-edit").click()
    assert form.locator("select[name=status]").input_value() == "in_progress"
    assert form.locator("input[name=due_date]").input_value() == ""
    form.locator("input[name=assignee]").fill("Cleo")
    form.locator("input[name=due_date]").fill("2027-01-15")
    form.locator("button.save-topic").click()
    _panel_shows(ben, ".topic-assignee", "Assigned to Cleo")
    _panel_shows(ben, ".topic-due", "Due 2027-01-15")
    assert ana.locator("#topic-panel select.topic-status").input_value() == "in_progress"

    # Forcing a text edit of Ana's topic anyway: only the author or an admin may.
    revision = ben.evaluate("(g) => window.twinview.collab.store.topics.get(g).revision", guid)
    ben.evaluate(
        "([g, r]) => window.twinview.session.send({type: 'topic_update', guid: g, revision: r, title: 'mine now'})",
        [guid, revision],
    )
    ben.wait_for_selector("#topic-panel p.error:not([hidden])", timeout=WAIT_MS)
    assert "forbidden" in ben_panel.locator("p.error").inner_text()
    assert ben.locator("#notice").is_hidden()  # said once, in the panel
    assert json.loads(rest(f"/topics/{guid}"))["topic"]["title"] == EVIL_TITLE
    for page in (ana, ben):
        assert page.evaluate("window.__pwned") is None
        assert not page.errors, page.errors
        page.context.close()


def test_what_is_being_typed_survives_someone_elses_change(world):
    # Another user's comment or edit re-renders the open panel: a half-typed comment, the text of a
    # comment being edited, their focus and caret must all stay.
    _, join, _, _, state = world
    guid = state["guid"]
    cleo = join("Cleo", "annotator")
    dan = join("Dan", "annotator")
    for page in (cleo, dan):
        page.wait_for_function("window.twinview.collab.store.topics.size === 1", timeout=WAIT_MS)
    cleo_panel, dan_panel = _open(cleo, guid), _open(dan, guid)
    cleo_panel.locator("textarea.comment-text").fill("First look: the flange")
    cleo_panel.locator("button.send").click()
    cleo.wait_for_selector("#topic-panel .comment button.edit", timeout=WAIT_MS)

    draft = cleo_panel.locator("textarea.comment-text")
    draft.click()
    draft.type("Half a thought about the gas")
    cleo.evaluate("() => document.activeElement.setSelectionRange(5, 10)")
    dan_panel.locator("textarea.comment-text").fill("Torque checked")
    dan_panel.locator("button.send").click()
    _panel_has_comment(cleo, "Torque checked")
    assert draft.input_value() == "Half a thought about the gas"
    focus = cleo.evaluate(
        "() => [document.activeElement.className, document.activeElement.selectionStart,"
        " document.activeElement.selectionEnd]"
    )
    assert focus == ["comment-text", 5, 10]

    # Editing her first comment while Dan comments again.
    cleo_panel.locator(".comment button.edit").first.click()
    cleo_panel.locator("textarea.edit-text").fill("First look: the flange gasket is cracked")
    dan_panel.locator("textarea.comment-text").fill("Replaced it")
    dan_panel.locator("button.send").click()
    _panel_has_comment(cleo, "Replaced it")
    assert cleo_panel.locator("textarea.edit-text").input_value() == "First look: the flange gasket is cracked"
    assert draft.input_value() == "Half a thought about the gas"
    cleo_panel.locator("button", has_text="Save").click()
    _panel_has_comment(dan, "First look: the flange gasket is cracked")
    for page in (cleo, dan):
        assert not page.errors, page.errors
        page.context.close()


def test_a_viewer_sees_no_edit_controls_and_a_forged_edit_is_refused(world):
    _, join, rest, frames, state = world
    guid = state["guid"]
    before = json.loads(rest(f"/topics/{guid}"))["topic"]
    vera = join("Vera", "viewer")
    vera.wait_for_function("window.twinview.collab.store.topics.size === 1", timeout=WAIT_MS)
    panel = _open(vera, guid)
    assert panel.locator(".topic-title").inner_text() == EVIL_TITLE
    assert panel.locator("button.edit-topic").count() == 0
    assert panel.locator("form.topic-edit, select.topic-status, input, textarea").count() == 0
    errors_before = len([m for m in frames.received if m["type"] == "error"])
    vera.evaluate(
        """([g, r]) => window.twinview.session.send({type: 'topic_update', guid: g, revision: r,
        title: 'hijacked', priority: 'low', labels: []})""",
        [guid, before["revision"]],
    )
    vera.wait_for_selector("#topic-panel p.error:not([hidden])", timeout=WAIT_MS)
    assert panel.locator("p.error").inner_text().startswith("forbidden: ")
    refused = [m for m in frames.received if m["type"] == "error"][errors_before:]
    assert [(m["code"], m["ref"]) for m in refused] == [("forbidden", "topic_update")]
    assert json.loads(rest(f"/topics/{guid}"))["topic"] == before
    assert vera.evaluate("window.__pwned") is None
    vera.context.close()


def test_the_bcf_export_carries_the_edited_fields(world, tmp_path: Path):
    _, _, rest, _, state = world
    guid = state["guid"]
    archive = rest("/bcf")
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        markup = etree.fromstring(zf.read(f"{bcf_guid(guid)}/markup.bcf"))
    topic = markup.find("Topic")
    assert topic.get("TopicType") == "Request" and topic.get("TopicStatus") == "InProgress"
    assert topic.findtext("Title") == EVIL_TITLE
    assert topic.findtext("Description") == EVIL_DESCRIPTION
    assert topic.findtext("Priority") == "Critical"
    assert topic.findtext("AssignedTo") == "Cleo"
    assert topic.findtext("DueDate").startswith("2027-01-15")
    assert [label.text for label in topic.iter("Label")] == ["leak", "valve", EVIL_LABEL]
    assert topic.findtext("ModifiedAuthor") == "Ana"
    # Read back, the archive gives the session's topic as it was edited.
    path = tmp_path / "session.bcf"
    path.write_bytes(archive)
    (imported,) = import_bcf(path, None).topics
    served = json.loads(rest(f"/topics/{guid}"))["topic"]
    for name in ("title", "description", "status", "priority", "topic_type", "assignee", "due_date", "labels"):
        assert getattr(imported, name) == served.get(name), name
    assert served["due_date"] == "2027-01-15" and served["status"] == "in_progress"


def test_the_edit_form_sends_only_what_changed(world):
    _, _, _, frames, _ = world
    edits = [m for m in frames.sent if m["type"] == "topic_update"]
    # The form sends only what changed: Ben's edit of Ana's topic carries no title or description.
    assert {"status", "due_date"} == set(edits[1]) - {"type", "guid", "revision", "ref"}
    assert edits[1]["due_date"] == ""
