"""Topics between people, in real browsers on a real server: a pin made by one user appears for the
others live, comments thread, a status change recolours the pin everywhere, opening a topic restores
its author's viewpoint, markup in user text stays text, and roles decide who may write."""

from __future__ import annotations

import time

import pytest

from tests.web_helpers import (
    WAIT_MS,
    build_client,
    chromium_browser,
    live_twin,
    publish,
    screenshot,
    session_joiner,
)
from viewer_server.auth import Claims, load_secret, mint

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"  # the scene's default session: its id is the scene's
# Hostile text: if any of it were parsed as HTML, window.__pwned would be set.
EVIL_TITLE = '<img src=x onerror="window.__pwned=1">Leak at valve 23'
EVIL_COMMENT = "<script>window.__pwned=2</script>Flange drips"
VIEW_POS = (9.0, 5.0, 12.0)
PINNED = "el-00023"  # front row seen from VIEW_POS: nothing stands before it
RESOLVED = "#3fb950"
OPEN = "#f85149"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One server and one browser for the whole story; each user gets their own browser context."""
    build_client()
    root = tmp_path_factory.mktemp("topics")
    with live_twin(root, count=24) as live, chromium_browser() as browser:
        secret = load_secret(root / "data")
        joiner = session_joiner(browser, live.url, secret, SESSION)

        def join(user: str, role: str):
            page = joiner(user, role)
            page.on("dialog", lambda d: d.accept())
            return page

        yield live, browser, join, secret


def _topic_count(page) -> int:
    return page.evaluate("window.twinview.collab.store.topics.size")


def _create_topic(page, title: str, comment: str) -> str:
    """Look from VIEW_POS, pin a topic on PINNED through the UI, comment on it; return its guid."""
    page.evaluate(
        """([x, y, z]) => { const v = window.twinview.viewer;
        v.flyTo(v.camera.position.clone().set(x, y, z), v.controls.target.clone().set(3, 0, 3), 0); }""",
        list(VIEW_POS),
    )
    before = _topic_count(page)
    page.click("#btn-new-topic")
    at = page.evaluate(f"window.twinview.screenOf('{PINNED}')")
    page.mouse.click(at["x"], at["y"])
    form = page.locator(".topic-form")
    form.locator("input[name=title]").fill(title)
    form.locator("textarea[name=description]").fill("Seen during the morning walk-down")
    form.locator("select[name=priority]").select_option("high")
    form.locator("input[name=labels]").fill("leak, mechanical")
    form.locator("input[name=assignee]").fill("Ben")
    page.click("#topic-form button.create")
    page.wait_for_function(f"window.twinview.collab.store.topics.size === {before + 1}", timeout=WAIT_MS)
    guid = page.evaluate(
        "(t) => [...window.twinview.collab.store.topics.values()].find(x => x.title === t).guid", title
    )
    page.click(f'ul.topics li[data-guid="{guid}"]')
    page.fill("#topic-panel textarea.comment-text", comment)
    page.click("#topic-panel button.send")
    page.wait_for_function("(g) => window.twinview.collab.store.thread(g).length === 1", arg=guid, timeout=WAIT_MS)
    return guid


def test_two_annotators_share_a_topic_live(world):
    _, _, join, _ = world
    ana = join("Ana", "annotator")
    ben = join("Ben", "annotator")
    guid = _create_topic(ana, EVIL_TITLE, EVIL_COMMENT)
    topic = ana.evaluate("(g) => window.twinview.collab.store.topics.get(g)", guid)
    assert topic["author"] == "Ana" and topic["pin"]["element"] == PINNED
    assert topic["labels"] == ["leak", "mechanical"] and topic["priority"] == "high"
    # The pin is on the element's surface, its normal a unit axis of the box face that was hit.
    assert abs(sum(n * n for n in topic["pin"]["normal"]) - 1) < 1e-3
    vp = topic["viewpoints"][0]
    assert all(abs(a - b) < 0.01 for a, b in zip(vp["camera"]["position"], VIEW_POS, strict=True))

    # Ben sees the pin and the topic appear, with Ana's comment, without reloading.
    ben.wait_for_function("(g) => window.twinview.collab.pins.pins.has(g)", arg=guid, timeout=WAIT_MS)
    ben.wait_for_function("(g) => window.twinview.collab.store.thread(g).length === 1", arg=guid, timeout=WAIT_MS)
    assert ben.evaluate("(g) => window.twinview.collab.pins.colorOf(g)", guid) == OPEN

    # Ben opens the topic by clicking its pin: his camera flies to Ana's viewpoint.
    ben.evaluate("""() => { const v = window.twinview.viewer;
      v.flyTo(v.camera.position.clone().set(-6, 9, -4), v.controls.target.clone().set(3, 0, 3), 0); }""")
    at = ben.evaluate("(g) => window.twinview.collab.pins.screenOf(g)", guid)
    ben.mouse.click(at["x"], at["y"])
    ben.wait_for_selector("#topic-panel:not([hidden])")
    ben.wait_for_function(
        "([x, y, z]) => window.twinview.viewer.camera.position.distanceTo({x, y, z}) < 0.05",
        arg=list(VIEW_POS),
        timeout=WAIT_MS,
    )

    # Markup in the title and the comment is shown literally and never runs.
    panel = ben.locator("#topic-panel")
    assert panel.locator(".topic-title").inner_text() == EVIL_TITLE
    assert panel.locator(".comment .text").first.inner_text() == EVIL_COMMENT
    assert EVIL_TITLE in ben.locator("ul.topics").inner_text()
    assert panel.locator("img:not(.snapshot)").count() == 0
    # The snapshot Ana's viewer took is shown as an image.
    ben.wait_for_function(
        "() => [...document.querySelectorAll('#topic-panel img.snapshot')].some(i => i.complete && i.naturalWidth > 0)",
        timeout=WAIT_MS,
    )

    # Ben replies to Ana's comment; Ana sees the reply, threaded under hers.
    panel.locator(".comment button.reply").first.click()
    panel.locator("textarea.comment-text").fill("Tightened the bolts, please check")
    panel.locator("button.send").click()
    ana.wait_for_function("(g) => window.twinview.collab.store.thread(g).length === 2", arg=guid, timeout=WAIT_MS)
    first, reply = ana.evaluate("(g) => window.twinview.collab.store.thread(g)", guid)
    assert reply["author"] == "Ben" and reply["reply_to"] == first["guid"]
    nested = ana.locator("#topic-panel ul.comments ul.comments .comment .text").inner_text()
    assert nested == "Tightened the bolts, please check"

    # Ben edits his own reply; he cannot edit Ana's comment.
    assert panel.locator(f'li[data-guid="{first["guid"]}"] > div button.edit').count() == 0
    panel.locator(f'li[data-guid="{reply["guid"]}"] button.edit').click()
    panel.locator("textarea.edit-text").fill("Tightened the bolts to 40 Nm")
    panel.locator("button", has_text="Save").click()
    ana.wait_for_function(
        "(g) => window.twinview.collab.store.thread(g)[1].text === 'Tightened the bolts to 40 Nm'",
        arg=guid,
        timeout=WAIT_MS,
    )

    # Ben withdraws his reply: Ana sees it removed, the thread keeps its place.
    panel.locator(f'li[data-guid="{reply["guid"]}"] button.delete').click()
    ana.wait_for_selector(f'#topic-panel li[data-guid="{reply["guid"]}"] .removed', timeout=WAIT_MS)

    # Ana resolves the topic: the pin turns green for both.
    ana.select_option("#topic-panel select.topic-status", "resolved")
    for page in (ana, ben):
        page.wait_for_function(
            f"(g) => window.twinview.collab.pins.colorOf(g) === '{RESOLVED}'", arg=guid, timeout=WAIT_MS
        )
    for page in (ana, ben):
        assert page.evaluate("window.__pwned") is None
        assert not page.errors, page.errors
    # Ana leaves, so that her camera frustum (where Ben now stands) does not frame the picture.
    ana.context.close()
    ben.wait_for_function("window.twinview.presence.avatars.size === 0", timeout=WAIT_MS)
    ben.evaluate("document.querySelector('#topic-panel').scrollTop = 0")
    ben.wait_for_timeout(300)
    publish(screenshot(ben, "collab-topic-panel"), "collab")
    ben.context.close()


def test_viewer_role_cannot_write_and_late_joiner_sees_pins(world):
    _, _, join, _ = world
    vera = join("Vera", "viewer")
    # A late joiner: the topics made before she came are there at once, pins included.
    vera.wait_for_function("window.twinview.collab.pins.pins.size >= 1", timeout=WAIT_MS)
    assert vera.locator("ul.topics li.topic").count() >= 1
    # The list filters: nothing open any more, the leak found by its text.
    vera.select_option("select[data-filter=status]", "open")
    assert vera.locator("ul.topics li.topic").count() == 0
    vera.select_option("select[data-filter=status]", "")
    vera.fill(".topic-filters input", "valve 23")
    assert vera.locator("ul.topics li.topic").count() == 1
    vera.select_option("select[data-filter=label]", "leak")
    assert vera.locator("ul.topics li.topic").count() == 1
    assert vera.locator("#btn-new-topic").is_hidden()
    assert vera.locator("#btn-markup").is_hidden()
    vera.locator("ul.topics li.topic").first.click()
    assert vera.locator("#topic-panel textarea.comment-text").count() == 0
    assert vera.locator("#topic-panel select.topic-status").count() == 0
    # Forcing it anyway: the server refuses, and says so.
    vera.evaluate("window.twinview.session.send({type: 'topic_create', topic: {title: 'sneaky'}})")
    vera.wait_for_selector("#notice:not([hidden])", timeout=WAIT_MS)
    assert "forbidden" in vera.locator("#notice").inner_text()
    assert not any(t["title"] == "sneaky" for t in vera.evaluate("[...window.twinview.collab.store.topics.values()]"))
    vera.context.close()


def test_an_imported_topic_shows_its_importer_and_the_author_the_file_claimed(world, tmp_path):
    import urllib.request

    from tests.test_bcf_import_trust import archive, markup
    from viewer_server.auth import issue

    live, _, join, secret = world
    guid = "dddddddd-0000-4000-8000-000000000004"
    data = archive(tmp_path / "claims.bcf", {guid: markup(guid, "admin", [(guid[:-1] + "5", "root", "noted")])})
    token = issue(secret, SESSION, "Lead", "presenter")
    request = urllib.request.Request(f"{live.url}/api/sessions/{SESSION}/bcf", data=data, method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/octet-stream"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201
    vera = join("Vera", "viewer")
    vera.wait_for_function("(g) => window.twinview.collab.store.thread(g).length === 1", arg=guid, timeout=WAIT_MS)
    vera.click(f'ul.topics li[data-guid="{guid}"]')
    panel = vera.locator("#topic-panel")
    assert " by Lead (imported; originally by admin) · " in panel.locator(".meta").inner_text()
    assert "Lead (imported; originally by root) · " in panel.locator(".comment .who").inner_text()
    vera.context.close()


def test_quick_markup_pins_a_note(world):
    _, _, join, _ = world
    ana = join("Ana", "annotator")
    before = ana.evaluate("window.twinview.collab.pins.pins.size")  # topics imported from BCF have no pin
    ana.click("#btn-markup")
    at = ana.evaluate("window.twinview.screenOf('el-00010')")
    ana.mouse.click(at["x"], at["y"])
    ana.fill("#topic-form input[name=title]", "check valve position")
    ana.click("#topic-form button.create")
    ana.wait_for_function(f"window.twinview.collab.pins.pins.size === {before + 1}", timeout=WAIT_MS)
    ana.context.close()


def test_an_expired_link_says_when_and_offers_no_control_that_writes(world):
    live, browser, _, secret = world
    token = mint(secret, Claims(session=SESSION, user="Old", role="admin", exp=time.time() - 3600))
    page = browser.new_context().new_page()
    page.goto(f"{live.url}/?session={SESSION}&token={token}")
    page.wait_for_selector("#notice:not([hidden])", timeout=30_000)
    text = page.locator("#notice").inner_text()
    assert "This link expired on" in text and "Ask the session owner for a new one" in text
    assert page.locator("#status").inner_text() == "refused"
    # Every control that needs a role is hidden: the page can change nothing, and does not pretend it can.
    shown = page.evaluate(
        """[...document.querySelectorAll('[data-requires]')].filter((el) => !el.hidden && el.offsetParent)
             .map((el) => el.id || el.className)"""
    )
    assert shown == [], shown
    for control in ("#btn-new-topic", "#btn-markup", "#btn-present", "#btn-hand"):
        assert not page.locator(control).is_visible(), control
    page.context.close()
