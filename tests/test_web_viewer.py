"""The browser client against the real server: it renders, stays live, picks, and never renders markup.

Each test drives Debian's headless Chromium (SwiftShader WebGL) on a synthetic twin served by
`viewer_server.serve.running_server`; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import pytest

from tests.web_helpers import (
    ARTIFACTS,
    BINDINGS,
    WAIT_MS,
    element_id,
    live_twin,
    make_twin,
    non_background_pixels,
    open_viewer,
    screenshot,
    serve_scene,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BACKGROUND = (0x1D, 0x21, 0x27)
XSS_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>Pump'


@pytest.fixture
def live(tmp_path):
    with live_twin(tmp_path, count=24, names={3: XSS_NAME}) as lt:
        yield lt


def pixel_at(page, x: float, y: float) -> tuple[int, int, int]:
    """The rendered colour at client pixel (x, y), read back from the WebGL canvas right after rendering a
    frame (the viewer does not preserve its drawing buffer between frames)."""
    return tuple(
        page.evaluate(
            """([x, y]) => { const v = window.twinview.viewer; v.renderer.render(v.scene, v.camera);
           const c = v.renderer.domElement; const r = c.getBoundingClientRect();
           const gl = c.getContext('webgl2'); const px = new Uint8Array(4);
           const sx = Math.round((x - r.left) * c.width / r.width);
           const sy = Math.round(c.height - (y - r.top) * c.height / r.height);
           gl.readPixels(sx, sy, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px); return [px[0], px[1], px[2]]; }""",
            [x, y],
        )
    )[:3]


def look_down_at(page, element: str) -> None:
    """Put the camera above an element, looking down, so that nothing stands in front of it. The jump is made
    by the next frame, which a loaded machine may draw late: wait until the camera is there, or a pixel read
    at a point worked out before it moved shows something else."""
    page.evaluate(
        """id => { const tv = window.twinview; const b = tv.app.batches.boxOf(id);
        const c = b.getCenter(b.min.clone()); const above = c.clone(); above.y += 8; above.z += 0.01;
        tv.viewer.flyTo(above, c, 0); window.__lookingFrom = above; }""",
        element,
    )
    page.wait_for_function(
        "() => window.twinview.viewer.camera.position.distanceTo(window.__lookingFrom) < 1e-6", timeout=WAIT_MS
    )


def test_sample_renders_in_few_draw_calls(browser, live):
    page = open_viewer(browser, live.url)
    info = page.evaluate("window.twinview.ready")
    assert info["elements"] == 24
    page.wait_for_timeout(300)
    png = page.locator("#view canvas").screenshot()
    (ARTIFACTS / "viewer-synthetic.png").parent.mkdir(exist_ok=True)
    (ARTIFACTS / "viewer-synthetic.png").write_bytes(png)
    assert non_background_pixels(png, BACKGROUND) > 20_000, "the canvas is (nearly) blank"
    assert page.evaluate("window.twinview.drawCalls()") <= 3
    assert page.locator("#status").inner_text().startswith("live")
    assert page.errors == []


def test_posted_telemetry_recolours_the_element_on_screen(browser, live):
    page = open_viewer(browser, live.url)
    target = element_id(0)
    before = page.evaluate("id => window.twinview.colorOf(id)", target)
    result = live.ingest([{"element": target, "prop": "pressure", "value": 6.0}])
    assert result["accepted"] == 1
    page.wait_for_function("id => window.twinview.colorOf(id) === '#ff0000'", arg=target, timeout=WAIT_MS)
    assert before != "#ff0000"
    look_down_at(page, target)
    assert (
        page.evaluate(
            "([x, y]) => window.twinview.pick(x, y)",
            list(page.evaluate("id => Object.values(window.twinview.screenOf(id))", target)),
        )
        == target
    )
    at = page.evaluate("id => window.twinview.screenOf(id)", target)
    r, g, b = pixel_at(page, at["x"], at["y"])
    assert r > 100 and r > 2 * g and r > 2 * b, f"element 0 is not drawn red: {(r, g, b)}"
    screenshot(page, "viewer-live-red")
    live.ingest([{"element": target, "prop": "pressure", "value": 0.0}])
    page.wait_for_function("id => window.twinview.colorOf(id) === '#0000ff'", arg=target, timeout=WAIT_MS)
    r, g, b = pixel_at(page, at["x"], at["y"])  # renders the frame it reads: the new colour is in it
    assert b > 100 and b > 2 * r, f"element 0 is not drawn blue: {(r, g, b)}"


def test_picking_shows_the_elements_properties(browser, live):
    page = open_viewer(browser, live.url)
    live.ingest([{"element": element_id(0), "prop": "pressure", "value": 2.5}])
    live.ingest([{"element": element_id(0), "prop": "pressure", "value": 3.25}])
    page.wait_for_function("window.twinview.state.props.get('el-00000')?.get('pressure')?.v === 3.25")
    look_down_at(page, element_id(0))
    at = page.evaluate("id => window.twinview.screenOf(id)", element_id(0))
    page.mouse.click(at["x"], at["y"])
    panel = page.locator("#properties")
    assert panel.locator(".el-name").inner_text() == live.twin.names[element_id(0)]
    assert element_id(0) not in panel.inner_text()  # a name for people; the id on demand:
    assert panel.locator("button.copy-id").get_attribute("title") == f"Copy the id {element_id(0)}"
    panel.locator("details.pset").first.wait_for(timeout=WAIT_MS)  # asked of the server when shown
    assert "P-000" in panel.inner_text()  # the IFC pset
    live_row = panel.locator("tr[data-prop=pressure]")
    assert "3.25" in live_row.inner_text() and "bar" in live_row.inner_text()
    chart = live_row.locator("button.chart-toggle")  # the history chart (timeline/chart.js) replaces the sparkline
    assert chart.get_attribute("aria-pressed") == "false"
    assert page.locator("#tree li.selected").count() == 1
    screenshot(page, "viewer-picked")


def test_names_with_markup_render_as_text(browser, live):
    page = open_viewer(browser, live.url)
    xss_id = element_id(3)
    page.fill("#search", "Pump")
    hits = page.locator("#tree .results li")
    hits.first.wait_for(timeout=WAIT_MS)  # the server's answer
    assert any(XSS_NAME in t for t in hits.all_inner_texts())
    page.evaluate("id => window.twinview.select(id)", xss_id)
    assert page.locator("#properties .el-name").inner_text() == XSS_NAME
    assert page.locator("#properties img, #tree img, #properties script").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_dropped_connection_resumes_with_no_lost_update(browser, live):
    page = open_viewer(browser, live.url)
    el0, el1 = element_id(0), element_id(1)
    # Drop the link and stay away while two updates happen on the server.
    page.evaluate("window.twinview.session.drop(1500)")
    page.wait_for_function("window.twinview.session.status === 'reconnecting'")
    live.ingest([{"element": el0, "prop": "pressure", "value": 6.0}])
    live.ingest([{"element": el1, "prop": "temperature", "value": 90.0}])
    assert page.locator("#notice").inner_text().startswith("Connection lost")
    page.wait_for_function(
        "window.twinview.session.status === 'live' && window.twinview.session.resumes === 1", timeout=WAIT_MS
    )
    page.wait_for_function("id => window.twinview.colorOf(id) === '#ff0000'", arg=el0, timeout=WAIT_MS)
    page.wait_for_function("id => window.twinview.state.visuals.get(id)?.status === 'alarm'", arg=el1, timeout=WAIT_MS)
    page.wait_for_function("window.twinview.state.alarms.size === 1", timeout=WAIT_MS)
    assert page.locator("#alarms li.alarm").count() == 1
    assert page.locator("#notice").is_hidden()
    screenshot(page, "viewer-resumed")


def test_refused_version_is_explained_in_the_page(browser, live):
    page = browser.new_page()
    # A client from the future: its hello asks for protocol 2. (A browser cannot see the reason when the
    # *subprotocol* does not match: it fails the handshake itself, so the hello check is what reaches it.)
    page.add_init_script("""{ const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (data) {
        const msg = JSON.parse(data); if (msg.type === 'hello') msg.protocol = 2;
        send.call(this, JSON.stringify(msg)); }; }""")
    page.goto(live.url)
    page.wait_for_function("window.twinview.session.status === 'refused'", timeout=WAIT_MS)
    notice = page.locator("#notice")
    assert "refused" in notice.inner_text()
    assert "2" in notice.locator("p").inner_text()  # the server's own reason names both sides
    assert page.locator("#status").inner_text() == "refused"


def test_a_model_that_fails_to_load_is_explained(browser, live):
    (live.twin.glb).write_bytes(b"not a glb at all")
    page = browser.new_page()
    page.goto(live.url)
    notice = page.locator("#notice.error")
    notice.wait_for(timeout=WAIT_MS)
    assert "failed to load" in notice.inner_text()
    assert notice.locator("button", has_text="Load again").count() == 1


def test_a_server_restart_is_survived_and_resynchronised(browser, tmp_path):
    twin = make_twin(tmp_path / "synthetic", 24)
    bindings = tmp_path / "twin.bindings.yaml"
    bindings.write_text(BINDINGS)
    with serve_scene(twin.directory, bindings, tmp_path / "data") as first:
        page = open_viewer(browser, first.url)
        port = int(first.url.rsplit(":", 1)[1])
        first.ingest([{"element": element_id(0), "prop": "pressure", "value": 6.0}])
        page.wait_for_function("window.twinview.colorOf('el-00000') === '#ff0000'")
    # The server is gone (it said 1001 "going away"): the page says so and keeps the last state.
    page.wait_for_function("window.twinview.session.status === 'reconnecting'")
    assert page.locator("#notice").inner_text().startswith("Connection lost")
    assert page.evaluate("window.twinview.colorOf('el-00000')") == "#ff0000"
    with serve_scene(twin.directory, bindings, tmp_path / "data", port=port) as second:
        # A new server run has a new epoch: the client cannot resume and gets a fresh snapshot.
        page.wait_for_function("window.twinview.session.status === 'resynced'", timeout=WAIT_MS)
        assert "resynchronised" in page.locator("#notice").inner_text()
        second.ingest([{"element": element_id(0), "prop": "pressure", "value": 0.0}])
        page.wait_for_function("window.twinview.colorOf('el-00000') === '#0000ff'", timeout=WAIT_MS)
        assert page.evaluate("window.twinview.app.batches.elements.size") == 24  # the model was not reloaded
