"""Panels and tools of the browser client: layers, alarms, section box, measuring, cancelling a load."""

from __future__ import annotations

import pytest

from tests.test_web_viewer import look_down_at
from tests.web_helpers import WAIT_MS, element_id, live_twin, open_viewer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def live(tmp_path):
    with live_twin(tmp_path, count=24) as lt:
        yield lt


def test_switching_layer_shows_that_layers_colours(browser, live):
    page = open_viewer(browser, live.url)
    el2 = element_id(2)
    base = page.evaluate("id => window.twinview.colorOf(id)", el2)
    live.ingest([{"element": el2, "prop": "flow", "value": 500}])
    page.wait_for_function("id => window.twinview.state.props.get(id)?.get('flow')?.v === 500", arg=el2)
    assert page.evaluate("id => window.twinview.colorOf(id)", el2) == base  # operations: a label only
    page.select_option("#layer-select", "energy")
    page.wait_for_function("id => window.twinview.colorOf(id) === '#ff00ff'", arg=el2, timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('#legend').textContent.startsWith('Layer: energy')")
    page.select_option("#layer-select", "operations")
    page.wait_for_function("([id, c]) => window.twinview.colorOf(id) === c", arg=[el2, base], timeout=WAIT_MS)


def test_an_alarm_appears_and_flies_to_its_element(browser, live):
    page = open_viewer(browser, live.url)
    el1 = element_id(1)
    live.ingest([{"element": el1, "prop": "temperature", "value": 95.0}])
    alarm = page.locator("#alarms li.alarm")
    alarm.wait_for(timeout=WAIT_MS)
    assert live.twin.names[el1] in alarm.inner_text()
    assert page.locator("#alarm-count").inner_text() == "1"
    alarm.click()
    page.wait_for_timeout(900)  # the fly-to animation
    assert page.evaluate("window.twinview.app.twin.selected") == el1
    dist = page.evaluate(
        """id => { const tv = window.twinview; const b = tv.app.batches.boxOf(id);
      return tv.viewer.controls.target.distanceTo(b.getCenter(b.min.clone())); }""",
        el1,
    )
    assert dist < 0.01
    screenshot(page, "viewer-alarm")
    live.ingest([{"element": el1, "prop": "temperature", "value": 20.0}])
    page.locator("#alarms li.alarm.state-returned").wait_for(timeout=WAIT_MS)  # listed until acknowledged


def test_section_box_cuts_away_everything_else(browser, live):
    page = open_viewer(browser, live.url)
    page.evaluate("id => window.twinview.select(id)", element_id(5))
    page.click("#btn-section")
    page.click("#section-box")
    assert page.evaluate("window.twinview.viewer.clippingPlanes.length") == 6
    # Another element is clipped away: picking where it is drawn finds nothing of it.
    other = element_id(20)
    at = page.evaluate("id => window.twinview.screenOf(id)", other)
    assert page.evaluate("([x, y]) => window.twinview.pick(x, y)", [at["x"], at["y"]]) != other
    screenshot(page, "viewer-section")
    # The cut height slider lowers the box's top: half way, the top plane is half way up the box.
    box = page.evaluate(
        "id => { const b = window.twinview.app.batches.boxOf(id); return [b.min.y, b.max.y]; }", element_id(5)
    )
    page.fill("#section-range", "500")
    top = page.evaluate("window.twinview.viewer.clippingPlanes[3].constant")
    assert top == pytest.approx((box[0] + box[1]) / 2, abs=0.02)
    page.click("#section-box")
    assert page.evaluate("window.twinview.viewer.clippingPlanes.length") == 0


def test_measure_the_distance_between_two_picks(browser, live):
    page = open_viewer(browser, live.url)
    a, b = element_id(7), element_id(8)  # neighbours 1.5 m apart along x on the grid
    look_down_at(page, a)
    page.click("#btn-measure")
    for el in (a, b):
        at = page.evaluate("id => window.twinview.screenOf(id)", el)
        page.mouse.click(at["x"], at["y"])
    pts = page.evaluate("window.twinview.measure.items[0].points.map(p => p.toArray())")
    assert len(pts) == 2
    assert abs(abs(pts[1][0] - pts[0][0]) - 1.5) < 0.2
    assert page.locator("#measure-readout").inner_text().startswith("Distance:")
    assert page.evaluate("window.twinview.app.twin.selected") is None  # measuring does not select


def test_a_slow_download_can_be_cancelled_and_retried(browser, live):
    page = browser.new_page()
    stalled = []
    page.route("**/scene.glb", lambda route: stalled.append(route))  # never answered: a stuck download
    page.goto(live.url)
    progress = page.locator("#progress")
    progress.wait_for(timeout=WAIT_MS)
    assert "Loading model" in progress.inner_text()
    progress.locator("button", has_text="Cancel").click()
    notice = page.locator("#notice")
    notice.wait_for()
    assert "cancelled" in notice.inner_text()
    assert page.locator("#status").inner_text().startswith("live")  # the session stays up
    page.unroute("**/scene.glb")
    notice.locator("button", has_text="Load again").click()
    page.evaluate("window.twinview.ready")
    assert page.evaluate("window.twinview.app.batches.elements.size") == 24


def test_rules_move_and_hide_elements(browser, live):
    page = open_viewer(browser, live.url)
    moving, hiding = element_id(3), element_id(4)
    y0 = page.evaluate("id => window.twinview.app.batches.boxOf(id).min.y", moving)
    live.ingest(
        [{"element": moving, "prop": "position", "value": 100}, {"element": hiding, "prop": "level", "value": 80}]
    )
    page.wait_for_function(
        "([id, y0]) => Math.abs(window.twinview.app.batches.boxOf(id).min.y - y0 - 1) < 1e-3", arg=[moving, y0]
    )
    page.wait_for_function("id => !window.twinview.app.batches.isVisible(id)", arg=hiding)
    at = page.evaluate("id => window.twinview.screenOf(id)", hiding)
    assert page.evaluate("([x, y]) => window.twinview.pick(x, y)", [at["x"], at["y"]]) != hiding
    live.ingest([{"element": hiding, "prop": "level", "value": 20}])
    page.wait_for_function("id => window.twinview.app.batches.isVisible(id)", arg=hiding)


SCAN_BINDINGS = """\
version: 1
default_layer: operations
bindings:
  - {element: scan-0, prop: deviation, unit: mm, range: [0, 100], key: scan-0.deviation}
layers:
  operations:
    rules:
      - {kind: ramp, element: scan-0, prop: deviation, min: 0, max: 10, colors: ["#00ff00", "#ff0000"]}
"""


def test_a_point_cloud_element_is_coloured_and_picked(browser, tmp_path):
    with live_twin(tmp_path, count=24, bindings=SCAN_BINDINGS, scan_points=3000) as live:
        page = open_viewer(browser, live.url)
        assert page.evaluate("window.twinview.app.batches.elements.has('scan-0')")
        assert page.evaluate("window.twinview.drawCalls()") <= 3  # the boxes' batch + the cloud
        live.ingest([{"element": "scan-0", "prop": "deviation", "value": 10}])
        page.wait_for_function("window.twinview.colorOf('scan-0') === '#ff0000'", timeout=WAIT_MS)
        page.evaluate("window.twinview.viewer.invalidate()")
        look_down_at(page, "scan-0")
        at = page.evaluate("window.twinview.screenOf('scan-0')")
        assert page.evaluate("([x, y]) => window.twinview.pick(x, y)", [at["x"], at["y"]]) == "scan-0"
        assert page.locator("#properties .el-name").inner_text() == "Laser scan"
        screenshot(page, "viewer-point-cloud")
