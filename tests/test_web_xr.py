"""WebXR on an emulated Meta Quest 3 (iwer, forced into headless Chromium): "Enter VR" starts an
immersive-vr session that renders frames from the head pose, controller-ray picking selects an element
and shows the XR properties panel, live colours keep updating, and the head pose goes out as presence."""

from __future__ import annotations

import pytest

from tests.web_helpers import REPO, build_client, chromium_browser, element_id, live_twin, open_viewer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IWER = REPO / "web_client" / "node_modules" / "iwer" / "build" / "iwer.min.js"
INSTALL = """window.__xr = new IWER.XRDevice(IWER.metaQuest3);
window.__xr.installRuntime({ forceInstall: true });
window.__xr.stereoEnabled = false;"""


@pytest.fixture
def vr_page(tmp_path):
    build_client()
    with live_twin(tmp_path, count=24) as live, chromium_browser() as browser:
        context = browser.new_context(viewport={"width": 1024, "height": 640})
        context.add_init_script(path=str(IWER))
        context.add_init_script(INSTALL)
        page = open_viewer(context, live.url)
        yield live, page


def test_enter_vr_renders_frames_from_the_head_pose(vr_page):
    live, page = vr_page
    vr = page.locator("#btn-vr")
    vr.wait_for(state="visible", timeout=5000)
    vr.click()
    page.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=10_000)
    page.evaluate("window.__xr.position.set(0.3, 1.6, 0.2)")
    frames = page.evaluate("window.twinview.viewer.frames")
    page.wait_for_function(f"window.twinview.viewer.frames > {frames} + 10", timeout=10_000)
    head = page.evaluate("window.twinview.viewer.renderer.xr.getCamera().position.toArray()")
    assert head[1] == pytest.approx(1.6, abs=0.05) and head[0] == pytest.approx(0.3, abs=0.05)
    # The model stands in front of the user at 1:1 scale, on the floor.
    world = page.evaluate("window.twinview.viewer.world.position.toArray()")
    assert world[2] < 0 and page.evaluate("window.twinview.viewer.world.scale.x") == 1

    # Live colours keep updating inside the session.
    live.ingest([{"element": element_id(0), "prop": "pressure", "value": 6.0}])
    page.wait_for_function("window.twinview.colorOf('el-00000') === '#ff0000'", timeout=5000)

    # Our head goes out as presence, in model coordinates (the world offset taken out).
    pose = page.evaluate("window.twinview.presence.ownPose()")
    assert pose["position"][1] == pytest.approx(1.6 - world[1], abs=0.05)

    # Point the right controller at an element and pull the trigger: it is selected, the panel shows it.
    page.evaluate("""() => { const tv = window.twinview; const b = tv.app.batches.boxOf('el-00004');
      const c = b.getCenter(b.min.clone()).applyMatrix4(tv.viewer.world.matrixWorld);
      const ctl = window.__xr.controllers.right; ctl.position.set(c.x, c.y + 1.0, c.z);
      const s = Math.SQRT1_2; ctl.quaternion.set(-s, 0, 0, s); }""")  # aim straight down: -Z turned to -Y
    page.wait_for_timeout(300)
    page.evaluate("window.__xr.controllers.right.updateButtonValue('trigger', 1)")
    page.wait_for_timeout(300)
    page.evaluate("window.__xr.controllers.right.updateButtonValue('trigger', 0)")
    page.wait_for_function("window.twinview.app.twin.selected === 'el-00004'", timeout=5000)
    assert page.evaluate("window.twinview.xr.panel.mesh.visible")
    screenshot(page, "xr-vr-session")

    page.evaluate("window.twinview.viewer.renderer.xr.getSession().end()")
    page.wait_for_function("!window.twinview.viewer.renderer.xr.isPresenting", timeout=5000)
    assert page.evaluate("window.twinview.viewer.world.position.toArray()") == [0, 0, 0]
    assert page.errors == []


def test_enter_ar_places_the_model_on_a_table_and_switches_to_full_scale(vr_page):
    _, page = vr_page
    ar = page.locator("#btn-ar")
    ar.wait_for(state="visible", timeout=5000)
    ar.click()
    page.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=10_000)
    # The emulator has no surface detection (that needs iwer's SEM), so the model goes on a virtual
    # table 1 m ahead, tabletop size; with hit-test it would wait for a tap on a surface instead.
    page.wait_for_function("window.twinview.viewer.world.visible")
    assert page.evaluate("window.twinview.viewer.scene.background") is None  # camera passthrough shows
    size = page.evaluate("""() => { const tv = window.twinview; const s = tv.viewer.world.scale.x;
      let box = null; for (const e of tv.app.batches.elements.values()) box = box ? box.union(e.box) : e.box.clone();
      const d = box.getSize(box.min.clone()); return Math.max(d.x, d.z) * s; }""")
    assert size == pytest.approx(0.6, abs=0.01)
    assert page.evaluate("document.querySelector('#xr-overlay').hidden") is False
    # iwer lays its own canvas over the page (it does not emulate dom-overlay): click the buttons directly.
    page.locator("#xr-scale").dispatch_event("click")
    assert page.evaluate("window.twinview.viewer.world.scale.x") == 1
    assert page.locator("#xr-scale").inner_text() == "1:1"
    page.locator("#xr-exit").dispatch_event("click")
    page.wait_for_function("!window.twinview.viewer.renderer.xr.isPresenting", timeout=5000)
    assert page.evaluate("window.twinview.viewer.scene.background !== null")
    assert page.locator("#xr-overlay").is_hidden()
    assert page.errors == []
