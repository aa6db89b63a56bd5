"""Phones and tablets: a 390×844 touch screen (Playwright's is_mobile / has_touch) gets a top bar that fits, the
panels as a bottom sheet with a tab each — every one reachable, with real height, none covering another —, tap
targets of at least 44 px and no horizontal scrolling; tap-to-pick and pinch still work. A 1440×900 desktop
keeps its three columns."""

from __future__ import annotations

import pytest

from tests.web_helpers import (
    BINDINGS,
    WAIT_MS,
    element_id,
    live_twin,
    open_viewer,
    publish,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE = {"width": 390, "height": 844}
TAP_PX = 44  # the smallest tap target (WCAG 2.5.5, Apple's and Material's guidelines)
# Every panel a phone user needs, by its tab.
PANELS = ["Model", "Properties", "Alarms", "Topics", "People"]

# What a finger can hit and is too small (visible controls under `root`, in the viewport): their descriptions.
SMALL_TARGETS = """([root, min]) => [...document.querySelectorAll(root)].flatMap((r) => [...r.querySelectorAll(
    'button, select, input, summary, a[href], [role=tab], [tabindex="0"]')]).filter((el) => {
      const b = el.getBoundingClientRect();
      const shown = b.width > 0 && b.height > 0 && getComputedStyle(el).visibility !== 'hidden'
        && b.bottom > 0 && b.top < innerHeight;
      return shown && (b.height < min - 0.5 || (el.tagName === 'BUTTON' && b.width < min - 0.5));
    }).map((el) => `${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 20)}" ${Math.round(
      el.getBoundingClientRect().width)}x${Math.round(el.getBoundingClientRect().height)}`)"""
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= innerWidth"


@pytest.fixture(scope="module")
def world(tmp_path_factory, browser):
    with live_twin(tmp_path_factory.mktemp("mobile"), count=24, bindings=BINDINGS) as live:
        yield live, browser


@pytest.fixture
def phone(world):
    live, browser = world
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = open_viewer(context, live.url)
    yield page
    assert not page.errors, page.errors
    context.close()


def _tab(page, name: str):
    return page.locator("#sheet-tabs [role=tab]", has_text=name)


def _box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def test_every_panel_is_a_tap_away_and_fits_the_phone(world, phone):
    live, _ = world
    page = phone
    assert page.evaluate("matchMedia('(pointer: coarse)').matches")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    top = _box(page, ".topbar")
    assert top["width"] <= PHONE["width"] and top["height"] <= 2 * TAP_PX  # one row that fits the screen
    tabs = _box(page, "#sheet-tabs")
    assert tabs["y"] + tabs["height"] <= PHONE["height"] and tabs["width"] == PHONE["width"]
    assert page.evaluate(SMALL_TARGETS, [".topbar, #sheet-tabs", TAP_PX]) == []
    live.ingest([{"element": element_id(1), "prop": "temperature", "value": 95.0}])
    page.wait_for_function(
        "() => document.querySelector('#sheet-tabs [aria-controls=sheet-alarms]')?.dataset.count === '1'"
    )
    page.evaluate("id => window.twinview.select(id)", element_id(1))
    for name in PANELS:
        _tab(page, name).tap()
        panel_id = _tab(page, name).get_attribute("aria-controls")
        panel = _box(page, f"#{panel_id}")
        assert panel is not None, name
        assert panel["height"] >= 0.25 * PHONE["height"], (name, panel)  # real height
        assert panel["y"] > top["y"] + top["height"] and panel["y"] + panel["height"] <= tabs["y"] + 1, (name, panel)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), name
        assert page.evaluate(SMALL_TARGETS, [f"#{panel_id}", TAP_PX]) == [], name
        others = page.evaluate(
            """id => [...document.querySelectorAll('.sheet-page')].filter((p) => p.id !== id
              && p.getBoundingClientRect().height > 0 && getComputedStyle(p).display !== 'none'
              && (p.closest('aside') === null || p.closest('aside').id !== id)).map((p) => p.id)""",
            panel_id,
        )
        assert others == [], (name, others)  # one panel at a time: People never covers the topic list
        shot = screenshot(page, f"mobile-{name.lower()}")
        if name == "Alarms":
            publish(shot, "phone")
    _tab(page, "Properties").tap()
    assert live.twin.names[element_id(1)] in page.locator("#properties .el-name").inner_text()
    _tab(page, "Properties").tap()  # the open tab again: the sheet closes
    assert page.locator("#properties").is_hidden()


def test_the_menu_holds_the_tools(phone):
    page = phone
    fit = page.locator("#btn-fit")
    assert fit.is_hidden()
    page.locator("#btn-menu").tap()
    fit.wait_for()
    box = fit.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.evaluate(SMALL_TARGETS, [".topbar", TAP_PX]) == []
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    screenshot(page, "mobile-menu")
    page.locator("#btn-menu").tap()
    assert fit.is_hidden()


def test_tap_picks_and_pinch_zooms(phone):
    page = phone
    target = element_id(12)
    at = page.evaluate("id => window.twinview.screenOf(id)", target)
    assert at["y"] < _box(page, "#sheet-tabs")["y"]
    page.touchscreen.tap(at["x"], at["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=target)

    distance = "(() => { const v = window.twinview.viewer; return v.camera.position.distanceTo(v.controls.target); })()"
    before = page.evaluate(distance)
    view = _box(page, "#view")
    cx, cy = view["x"] + view["width"] / 2, view["y"] + view["height"] / 2
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, spread: float) -> None:
        points = (
            [] if kind == "touchEnd" else [{"x": cx - spread, "y": cy, "id": 0}, {"x": cx + spread, "y": cy, "id": 1}]
        )
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 30)
    for spread in range(40, 160, 10):  # fingers apart: zoom in
        touch("touchMove", spread)
    touch("touchEnd", 0)
    page.wait_for_function(f"{distance} < {before} * 0.8", timeout=WAIT_MS)
    screenshot(page, "mobile-pinched")


def test_a_desktop_keeps_its_three_columns(world):
    live, browser = world
    page = open_viewer(browser, live.url, width=1440, height=900)
    assert page.locator("#sheet-tabs").is_hidden() and page.locator("#btn-menu").is_hidden()
    left, right, view = _box(page, "aside.left"), _box(page, "aside.right"), _box(page, "#view")
    assert (left["x"], left["width"], right["width"]) == (0, 260, 300)
    assert view["x"] == 260 and view["width"] == 1440 - 260 - 300
    assert _box(page, ".topbar")["height"] == 44
    for section in ("#properties", "#alarms", "#topics", "#people"):
        assert page.locator(section).is_visible(), section
    assert page.locator("#btn-fit").is_visible()
    page.close()
