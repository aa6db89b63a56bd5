"""The sample pump station (assets/pump_station.ifc, built by the real pipeline with meshopt compression)
in the browser, fed by the simulator: it renders in a few draw calls with live labels, picking a pump
shows its IFC properties and live values, and a second user appears with her frustum and laser.
The screenshots also illustrate the README (docs/img/, refreshed with TWINVIEW_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import pytest

from tests.web_helpers import (
    ARTIFACTS,
    REPO,
    WAIT_MS,
    build_client,
    build_scene,
    closing_contexts,
    non_background_pixels,
    open_viewer,
    publish,
    screenshot,
    serve_scene,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLE = REPO / "assets" / "pump_station.ifc"
BINDINGS = REPO / "assets" / "pump_station.bindings.yaml"
P_101 = "1AiWluxinM89dwW6lBggzg"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    build_scene(str(SAMPLE), "-o", str(root / "pump_station"), "--compress")
    build_client()
    with serve_scene(root / "pump_station", BINDINGS, root / "data", simulate=True) as srv:
        yield srv


def test_the_sample_renders_live_and_picks(sample, browser):
    with closing_contexts(browser):
        page = open_viewer(browser, sample.url)
        page.wait_for_function("document.querySelectorAll('#labels .tag:not([hidden])').length >= 3", timeout=WAIT_MS)
        png = page.locator("#view canvas").screenshot()
        assert non_background_pixels(png, (0x1D, 0x21, 0x27)) > 50_000
        assert page.evaluate("window.twinview.drawCalls()") <= 4
        page.evaluate("id => window.twinview.select(id)", P_101)
        props = page.locator("#properties")
        props.locator("tr[data-prop=running]").wait_for(timeout=WAIT_MS)
        assert "P-101" in props.inner_text()
        props.locator("details.pset").first.wait_for(timeout=WAIT_MS)  # IFC property sets, from the server
        publish(screenshot(page, "sample-pump-station"), "viewer")
        assert page.errors == []


def test_a_second_user_is_seen_with_frustum_and_laser(sample, browser):
    with closing_contexts(browser):
        bob = open_viewer(browser.new_context(viewport={"width": 1280, "height": 800}), f"{sample.url}/?name=Bob")
        alice = open_viewer(browser.new_context(viewport={"width": 1280, "height": 800}), f"{sample.url}/?name=Alice")
        # Alice stands at one corner above the walls and points at pump P-101.
        alice.evaluate(
            """id => { const v = window.twinview.viewer; const b = window.twinview.app.batches;
          let box = null; for (const e of b.elements.values()) box = box ? box.union(e.box) : e.box.clone();
          const c = box.getCenter(box.min.clone()); const p = c.clone();
          p.x = box.min.x - 1; p.y = box.max.y + 2; p.z = box.max.z - 1;
          v.flyTo(p, b.boxOf(id).getCenter(c.clone()), 0); }""",
            P_101,
        )
        # screenOf projects with the camera as last rendered: wait for the frame after the move.
        alice.evaluate("new Promise((r) => window.twinview.viewer.addEventListener('frame', r, { once: true }))")
        at = alice.evaluate("id => window.twinview.screenOf(id)", P_101)
        alice.mouse.move(at["x"], at["y"])
        alice.mouse.move(at["x"] + 2, at["y"] + 1)
        bob.wait_for_function(
            """() => [...window.twinview.state.presence.values()]
          .some(p => p.client === 'Alice (guest)' && p.pose.ray_direction)""",
            timeout=WAIT_MS,
        )
        bob.wait_for_function("window.twinview.presence.avatars.size === 1")
        avatar = bob.evaluate("""() => { const g = [...window.twinview.presence.avatars.values()][0];
          return { frustum: g.getObjectByName('frustum').visible, laser: g.getObjectByName('laser').visible,
                   head: g.getObjectByName('head').visible }; }""")
        assert avatar == {"frustum": True, "laser": True, "head": False}
        assert "Alice" in bob.locator("#people").inner_text()
        bob.wait_for_timeout(300)
        publish(screenshot(bob, "sample-presence"), "presence")
        assert (ARTIFACTS / "sample-presence.png").exists()
