"""Visibility, the element menu and BCF in the UI, in real browsers on a real server: a design review where one
person hides a storey and x-rays the rest, saves a topic, and the others see the same when they open it or follow
her as presenter; the context menu by mouse and by keyboard; BCF exported and imported from the topic panel with
the server's permissions and errors; and a phone (touch, 390×844) with eye toggles and a long-press menu."""

from __future__ import annotations

import zipfile

import pytest
from lxml import etree

from tests.web_helpers import (
    element_id,
    live_twin,
    open_viewer,
    publish,
    screenshot,
    session_joiner,
)
from viewer_server.auth import load_secret
from viewer_server.bcf import validate_archive

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"  # the scene's default session
WAIT_MS = 30_000
FOCUS = element_id(5)  # on storey 0, in the front rows
UPSTAIRS = element_id(12)  # the first element of storey 1
PHONE = {"width": 390, "height": 844}
TAP_PX = 44

VISIBLE = "id => window.twinview.app.batches.isVisible(id)"
HIDDEN = "id => !window.twinview.app.batches.isVisible(id)"
GHOSTED = "id => window.twinview.visibility.ghosted.has(id)"


@pytest.fixture(scope="module")
def world(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("visibility")
    with live_twin(root, count=24) as live:
        join = session_joiner(browser, live.url, load_secret(root / "data"), SESSION)
        yield live, browser, join


def _wait(page, script: str, arg=None) -> None:
    page.wait_for_function(script, arg=arg, timeout=WAIT_MS)


def _look_at_the_plant(page) -> None:
    page.evaluate("""() => { const v = window.twinview.viewer;
        v.flyTo(v.camera.position.clone().set(4, 9, 14), v.controls.target.clone().set(4, 0, 3), 0); }""")
    page.wait_for_function("window.twinview.viewer.frames > 0 && !window.twinview.viewer.dirty", timeout=WAIT_MS)


def _menu_item(page, label: str):
    return page.locator("#context-menu [role=menuitem]", has_text=label)


def _right_click(page, element: str) -> None:
    at = page.evaluate("id => window.twinview.screenOf(id)", element)
    page.mouse.click(at["x"], at["y"], button="right")
    page.locator("#context-menu").wait_for(state="visible", timeout=WAIT_MS)


def _same_visibility(page, element_hidden: str, ghosted: str, solid: str) -> None:
    _wait(page, HIDDEN, element_hidden)
    _wait(page, GHOSTED, ghosted)
    assert not page.evaluate(GHOSTED, solid) and page.evaluate(VISIBLE, solid)


def test_a_design_review_shares_what_is_hidden_and_x_rayed(world):
    """Ana hides the upper storey with its eye and x-rays everything but one pump from the view's menu, then saves a
    topic; Ben opens it and sees the same; Cleo follows Ana as presenter and sees it too, and "Show all" with her."""
    _, _, join = world
    ana, ben, cleo = join("ana", "presenter"), join("ben", "annotator"), join("cleo", "viewer")
    _look_at_the_plant(ana)
    eye = ana.locator('#tree li[data-id="storey-1"] > .eye')
    eye.click()
    _wait(ana, HIDDEN, UPSTAIRS)
    assert eye.get_attribute("aria-pressed") == "true" and "Show" in eye.get_attribute("aria-label")
    assert ana.locator(f'#tree li[data-id="{UPSTAIRS}"] > .eye').get_attribute("data-state") == "hidden"
    _right_click(ana, FOCUS)
    _wait(ana, "id => window.twinview.app.twin.selected === id", FOCUS)  # the menu acts on what it was opened on
    _menu_item(ana, "X-ray others").click()
    assert ana.locator("#context-menu").is_hidden()
    _wait(ana, GHOSTED, element_id(0))
    # X-rayed elements are drawn see-through, and a click goes through them.
    _wait(ana, "() => window.twinview.app.batches.batches.some((b) => b.see?.visible)")
    at = ana.evaluate("id => window.twinview.screenOf(id)", element_id(0))
    assert ana.evaluate("([x, y]) => window.twinview.pick(x, y)", [at["x"], at["y"]]) != element_id(0)
    screenshot(ana, "visibility-xray")

    before = ana.evaluate("window.twinview.collab.store.topics.size")
    ana.click("#btn-new-topic")
    at = ana.evaluate("id => window.twinview.screenOf(id)", FOCUS)
    ana.mouse.click(at["x"], at["y"])
    ana.locator(".topic-form input[name=title]").fill("Check the pump behind the wall")
    ana.click("#topic-form button.create")
    _wait(ana, f"window.twinview.collab.store.topics.size === {before + 1}")
    guid = ana.evaluate("[...window.twinview.collab.store.topics.values()].at(-1).guid")
    vp = ana.evaluate("g => window.twinview.collab.store.topics.get(g).viewpoints[0]", guid)
    assert vp["selected"][0] == FOCUS  # the pinned element is selected in the topic's view
    assert vp["xray_default"] is True and FOCUS in vp["xray"]

    ben.wait_for_selector(f'ul.topics li[data-guid="{guid}"]', timeout=WAIT_MS)
    assert ben.evaluate(VISIBLE, UPSTAIRS) and not ben.evaluate(GHOSTED, element_id(0))
    ben.click(f'ul.topics li[data-guid="{guid}"]')
    _same_visibility(ben, UPSTAIRS, element_id(0), FOCUS)
    ben.click("#topic-panel button:has-text('Back to live')")  # his own view again
    _wait(ben, VISIBLE, UPSTAIRS)
    assert not ben.evaluate(GHOSTED, element_id(0))

    ana.click("#btn-present")
    _same_visibility(cleo, UPSTAIRS, element_id(0), FOCUS)  # a follower sees what the presenter shows
    publish(screenshot(cleo, "visibility-follower"), "visibility")
    _right_click(ana, FOCUS)
    ana.keyboard.press("End")  # keyboard: to the last item, then up to "Show all"
    for _ in range(4):
        if ana.evaluate("document.activeElement.textContent") == "Show all":
            break
        ana.keyboard.press("ArrowUp")
    ana.keyboard.press("Enter")
    _wait(cleo, VISIBLE, UPSTAIRS)
    _wait(cleo, "id => !window.twinview.visibility.ghosted.has(id)", element_id(0))
    ana.click("#btn-present")
    for page in (ana, ben, cleo):
        assert not page.errors, page.errors
        page.context.close()


def test_the_context_menu_works_by_mouse_and_by_keyboard(world):
    live, browser, _ = world
    page = open_viewer(browser, live.url)
    _look_at_the_plant(page)
    _right_click(page, FOCUS)
    first = page.evaluate("document.activeElement.textContent")
    assert first == "Hide"  # the first item takes the focus
    labels = page.locator("#context-menu [role=menuitem]").all_inner_texts()
    assert labels[:7] == ["Hide", "Isolate", "X-ray others", "Transparency ▸", "Show all", "Zoom to", "Properties"]
    page.keyboard.press("ArrowUp")  # wraps to the last
    assert page.evaluate("document.activeElement.textContent") == labels[-1]
    page.keyboard.press("Escape")
    assert page.locator("#context-menu").is_hidden()
    assert page.evaluate("window.twinview.app.twin.selected") == FOCUS  # Escape closed the menu, not the selection
    _right_click(page, FOCUS)
    _menu_item(page, "Hide").click()
    _wait(page, HIDDEN, FOCUS)

    # The tree: Shift+F10 on a row, arrows to "Isolate", Enter.
    label = page.locator(f'#tree li[data-id="{element_id(2)}"] > .label')
    label.focus()
    page.keyboard.press("Shift+F10")
    page.locator("#context-menu").wait_for(state="visible", timeout=WAIT_MS)
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.textContent") == "Isolate"
    page.keyboard.press("Enter")
    _wait(page, HIDDEN, element_id(3))
    assert page.evaluate(VISIBLE, element_id(2)) and page.evaluate(HIDDEN, FOCUS)
    assert page.evaluate("document.activeElement.closest('li')?.dataset.id") == element_id(2)  # focus back on the row
    # Transparency is a submenu: ArrowRight opens it, Enter picks the first choice.
    page.keyboard.press("Shift+F10")
    page.locator("#context-menu").wait_for(state="visible", timeout=WAIT_MS)
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.textContent") == "‹ Back"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    _wait(page, "id => window.twinview.visibility.opacity.get(id) === 0.7", element_id(2))
    _wait(page, "() => window.twinview.app.batches.batches.some((b) => b.see?.visible)")
    # A storey's row acts on everything on it; its eye shows the mixed state.
    page.locator('#tree li[data-id="storey-0"] > .label').click(button="right")
    _menu_item(page, "Show all").click()
    _wait(page, VISIBLE, element_id(3))
    assert page.evaluate("window.twinview.visibility.active") is False
    page.locator('#tree details[data-groups="classes"] summary').click()
    page.locator('#tree li[data-group="IfcPump"] > .eye').click()
    _wait(page, HIDDEN, element_id(0))  # element 0 is a pump
    assert page.evaluate(VISIBLE, element_id(1))
    assert page.locator('#tree li[data-id="storey-0"] > .eye').get_attribute("data-state") == "mixed"
    assert not page.errors, page.errors
    page.close()


def test_a_viewpoint_says_what_is_shown_as_briefly_as_it_can(world):
    """Each set or its complement; element by element while that fits the budget, else a storey stands for its
    contents; restoring expands a storey again."""
    live, browser, _ = world
    page = open_viewer(browser, live.url)
    capture = "budget => window.twinview.visibility.capture(budget, new Map(), new Set())"
    page.evaluate("window.twinview.visibility.hide(['storey-1'])")
    upstairs = [element_id(i) for i in range(12, 24)]
    fields = page.evaluate(capture, 100)
    assert fields["default_visible"] is True and sorted(fields["hidden"]) == upstairs
    fields = page.evaluate(capture, 5)  # twelve ids do not fit: the storey does
    assert fields["hidden"] == ["storey-1"] and fields["xray"] == [] and fields["xray_default"] is False
    assert page.evaluate(capture, 0) is None  # nothing fits: the caller keeps the view without it
    page.evaluate("id => window.twinview.visibility.isolate([id])", FOCUS)
    fields = page.evaluate(capture, 100)  # 23 hidden: the complement is shorter
    assert fields["default_visible"] is False and fields["hidden"] == [FOCUS]
    page.evaluate("window.twinview.visibility.xrayOthers(['storey-0'])")
    fields = page.evaluate(capture, 100)
    assert fields["xray_default"] is False and sorted(fields["xray"]) == upstairs
    restore = "vp => window.twinview.visibility.restore(vp)"
    page.evaluate(restore, {"hidden": ["storey-0"], "transparent": [{"opacity": 0.4, "ids": ["storey-1"]}]})
    _wait(page, HIDDEN, FOCUS)
    assert page.evaluate(VISIBLE, UPSTAIRS) and not page.evaluate(GHOSTED, UPSTAIRS)
    assert page.evaluate("id => window.twinview.visibility.opacity.get(id)", UPSTAIRS) == 0.4
    assert not page.errors, page.errors
    page.close()


def test_bcf_exports_and_imports_from_the_topic_panel(world, tmp_path):
    _, _, join = world
    ana, dora, ben, cleo = (
        join("ana", "presenter"),
        join("dora", "admin"),
        join("ben", "annotator"),
        join("cleo", "viewer"),
    )
    # Who sees which control: the server's matrix (bcf.export: authors; bcf.import: presenter, admin).
    assert cleo.locator(".bcf-export").is_hidden() and cleo.locator(".bcf-import").is_hidden()
    assert ben.locator(".bcf-export").is_visible() and ben.locator(".bcf-import").is_hidden()
    assert ana.locator(".bcf-import").is_visible()
    _look_at_the_plant(ana)
    ana.evaluate(
        """id => { const c = window.twinview.collab;
        window.twinview.visibility.isolate([id]);
        c.creator.send({ title: 'Valve seat leaks' }, { element: id, point: [0, 1, 0], normal: [0, 1, 0] }); }""",
        FOCUS,
    )
    _wait(ana, "[...window.twinview.collab.store.topics.values()].some((t) => t.title === 'Valve seat leaks')")
    count = ana.evaluate("window.twinview.collab.store.topics.size")

    with ana.expect_download(timeout=WAIT_MS) as download:
        ana.click(".bcf-export")
    archive = tmp_path / download.value.suggested_filename
    download.value.save_as(archive)
    assert archive.name == f"{SESSION}.bcf"
    assert validate_archive(archive) == {}
    with zipfile.ZipFile(archive) as zf:
        markups = [etree.fromstring(zf.read(n)) for n in zf.namelist() if n.endswith("markup.bcf")]
        (topic,) = [m for m in markups if m.findtext("Topic/Title") == "Valve seat leaks"]
        folder = topic.find("Topic").get("Guid")
        (info,) = [etree.fromstring(zf.read(n)) for n in zf.namelist() if n.startswith(folder) and n.endswith(".bcfv")]
    assert [c.findtext("AuthoringToolId") for c in info.iterfind("Components/Selection/Component")] == [FOCUS]
    assert info.find("Components/Visibility").get("DefaultVisibility") == "false"
    assert FOCUS in [c.findtext("AuthoringToolId") for c in info.iterfind("Components/Visibility/Exceptions/Component")]
    ana.evaluate("window.twinview.visibility.showAll()")

    # The same archive back: replacing the session's topics needs topic.moderate, which a presenter lacks.
    ana.set_input_files(".topic-bcf input[type=file]", str(archive))
    error = ana.locator(".bcf-status[data-kind=error]")
    error.wait_for(timeout=WAIT_MS)
    assert error.inner_text().startswith(f"{archive.name}: ") and "topic.moderate" in error.inner_text()
    assert ana.locator("#notice").is_hidden()  # said once, in the panel
    # An admin may: the topics come back in place, with their visibility.
    dora.set_input_files(".topic-bcf input[type=file]", str(archive))
    done = dora.locator(".bcf-status[data-kind=done]")
    done.wait_for(timeout=WAIT_MS)
    assert f"Imported {count} topics" in done.inner_text() and "replaced" in done.inner_text()
    guid = dora.evaluate(
        "[...window.twinview.collab.store.topics.values()].find((t) => t.title === 'Valve seat leaks').guid"
    )
    dora.click(f'ul.topics li[data-guid="{guid}"]')
    _wait(dora, HIDDEN, element_id(0))
    assert dora.evaluate(VISIBLE, FOCUS)
    # Not an archive: one readable line, nothing imported.
    bad = tmp_path / "notes.bcf"
    bad.write_bytes(b"not a zip")
    dora.set_input_files(".topic-bcf input[type=file]", str(bad))
    error = dora.locator(".bcf-status[data-kind=error]")
    error.wait_for(timeout=WAIT_MS)
    assert error.inner_text().startswith("notes.bcf: ") and "\n" not in error.inner_text().strip()
    assert dora.evaluate("window.twinview.collab.store.topics.size") == count
    for page in (ana, dora, ben, cleo):
        assert not page.errors, page.errors
        page.context.close()


def test_a_phone_hides_with_eyes_and_long_presses_for_the_menu(world):
    live, browser, _ = world
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = open_viewer(context, live.url)
    page.locator("#sheet-tabs [role=tab]", has_text="Model").tap()
    eye = page.locator('#tree li[data-id="storey-1"] > .eye')
    box = eye.bounding_box()
    assert box["width"] >= TAP_PX - 0.5 and box["height"] >= TAP_PX - 0.5
    eye.tap()
    _wait(page, HIDDEN, UPSTAIRS)
    page.locator("#sheet-tabs [role=tab]", has_text="Model").tap()  # closes the sheet: the view is whole again
    target = element_id(2)
    at = page.evaluate("id => window.twinview.screenOf(id)", target)
    cdp = page.context.new_cdp_session(page)
    point = [{"x": at["x"], "y": at["y"], "id": 0}]
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": point})
    page.locator("#context-menu").wait_for(state="visible", timeout=WAIT_MS)  # held still: the menu
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    items = page.locator("#context-menu [role=menuitem]")
    assert all(b["height"] >= TAP_PX - 0.5 for b in (items.nth(i).bounding_box() for i in range(items.count())))
    screenshot(page, "visibility-phone-menu")
    _menu_item(page, "Isolate").tap()
    _wait(page, HIDDEN, element_id(3))
    assert page.evaluate(VISIBLE, target)
    assert page.locator("#context-menu").is_hidden()
    assert not page.errors, page.errors
    context.close()
