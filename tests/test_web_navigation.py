"""A remote engineer navigating and picking in an office-sized IFC (duplex.ifc, 215 elements, built by the real
pipeline): the orbit pivot follows the pick, the wheel zooms towards the cursor, the navigation cube's faces and
corners give the standard views, the orthographic toggle keeps the framed extent (and zoom and pick work in it),
F fits the selection, Esc clears it, double-click focuses, walk and fly move the eye; the look: edges toggle (cut by
section planes, none on hidden or x-rayed elements), the outline (none on a hidden element),
the environment map, the selection and hover highlight. Numbers are read from the page (`window.twinview`)."""

from __future__ import annotations

import math
import shutil

import pytest

from tests.conftest import SHARED_DATA
from tests.web_helpers import build_client, chromium_browser, open_viewer, screenshot, serve_scene

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IFC = SHARED_DATA / "ifc" / "duplex.ifc"
BINDINGS = "version: 1\ndefault_layer: operations\nbindings: []\nlayers:\n  operations:\n    rules: []\n"
FLIGHT_MS = 30_000  # generous: two shared cores

# Camera numbers from the page.
CAMERA = """(() => { const v = window.twinview.viewer; const c = v.camera;
  const d = c.getWorldDirection(c.position.clone());
  return { pos: c.position.toArray(), target: v.controls.target.toArray(), dir: d.toArray(), projection: v.projection,
           height: v.viewHeight(), mode: v.controls.mode }; })()"""
# Whether no flight is under way (the camera has come to rest).
AT_REST = "!window.twinview.viewer.flying"


@pytest.fixture(scope="module")
def office(tmp_path_factory, corpus_build):
    if not IFC.is_file():
        pytest.skip(f"{IFC} is absent (the shared IFC corpus is not on this machine)")
    root = tmp_path_factory.mktemp("office")
    shutil.copytree(corpus_build(IFC).outdir, root / "duplex")  # the session's build, served from a copy
    (root / "b.yaml").write_text(BINDINGS)
    build_client()
    with serve_scene(root / "duplex", root / "b.yaml", root / "data") as srv, chromium_browser() as browser:
        yield srv, browser


@pytest.fixture
def page(office):
    srv, browser = office
    p = open_viewer(browser, srv.url, width=1280, height=800)
    p.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    yield p
    assert p.errors == []
    p.close()


def dist(a: list[float], b: list[float]) -> float:
    return math.dist(a, b)


def walls_on_screen(page) -> list[dict]:
    """Elements of the model whose box centre is on screen and which a pick there hits, with their screen points."""
    return page.evaluate(
        """() => { const tv = window.twinview; const out = [];
      for (const id of tv.app.batches.elements.keys()) {
        const s = tv.screenOf(id); if (!s) continue;
        const r = tv.viewer.renderer.domElement.getBoundingClientRect();
        if (s.x < r.left + 40 || s.x > r.right - 160 || s.y < r.top + 40 || s.y > r.bottom - 40) continue;
        const hit = tv.viewer.pickAt(s.x, s.y);
        if (hit && tv.app.batches.idOf(hit) === id) out.push({ id, x: s.x, y: s.y, point: hit.point.toArray() });
        if (out.length >= 12) break;
      } return out; }"""
    )


def test_orbit_pivot_follows_the_pick(page):
    el = walls_on_screen(page)[0]
    page.mouse.click(el["x"], el["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=el["id"])
    cam = page.evaluate(CAMERA)
    assert dist(cam["target"], el["point"]) < 0.05  # the target is the picked point
    # A drag orbits about it: the target stays, the eye keeps its distance and turns.
    page.mouse.move(el["x"], el["y"])
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(el["x"] + 20 * k, el["y"] + 4 * k)
    page.mouse.up()
    after = page.evaluate(CAMERA)
    assert dist(after["target"], el["point"]) < 0.05
    assert abs(dist(after["pos"], after["target"]) - dist(cam["pos"], cam["target"])) < 1e-3
    assert dist(after["pos"], cam["pos"]) > 0.5
    # The picked point stays where it was on screen: the view turned about it, it did not jump to the centre.
    s = page.evaluate(
        "p => { const v = window.twinview.viewer; const q = new v.camera.position.constructor(...p)"
        ".project(v.camera); const r = v.renderer.domElement.getBoundingClientRect();"
        " return [r.left + (q.x + 1) / 2 * r.width, r.top + (1 - q.y) / 2 * r.height]; }",
        el["point"],
    )
    assert math.dist(s, [el["x"], el["y"]]) < 2


def test_wheel_zooms_towards_the_cursor(page):
    els = walls_on_screen(page)
    # The element farthest from the view's centre: zooming towards it must move the target towards it.
    centre = page.evaluate(
        "(() => { const r = window.twinview.viewer.renderer.domElement.getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    el = max(els, key=lambda e: math.dist([e["x"], e["y"]], centre))
    before = page.evaluate(CAMERA)
    page.mouse.move(el["x"], el["y"])
    page.mouse.wheel(0, -300)  # three notches in
    page.wait_for_function(f"window.twinview.viewer.controls.distance < {dist(before['pos'], before['target'])} * 0.9")
    after = page.evaluate(CAMERA)
    p = el["point"]
    assert dist(after["target"], p) < dist(before["target"], p) * 0.75  # 0.85³ ≈ 0.61
    assert dist(after["pos"], p) < dist(before["pos"], p) * 0.75
    # The point under the cursor stays under it.
    hit = page.evaluate("([x, y]) => window.twinview.viewer.pickAt(x, y)?.point.toArray()", [el["x"], el["y"]])
    assert hit and dist(hit, p) < 0.05
    page.mouse.wheel(0, 300)  # and back out
    page.wait_for_function(f"window.twinview.viewer.controls.distance > {dist(after['pos'], after['target'])} * 1.3")


@pytest.mark.parametrize(
    "view, direction",
    [
        ("front", [0, 0, -1]),
        ("top", [0, -1, 0]),
        ("right", [-1, 0, 0]),
        ("front-right-top", [-1 / math.sqrt(3)] * 3),
    ],
)
def test_nav_cube_gives_the_standard_views(page, view, direction):
    # Some faces are turned away: click the cell through the page (as a keyboard user's Enter would).
    page.locator(f'.navcube [data-view="{view}"]').first.dispatch_event("click")
    page.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    cam = page.evaluate(CAMERA)
    assert math.dist(cam["dir"], direction) < 1e-3, cam["dir"]
    # The whole model is framed: its box's centre at the target.
    centre = page.evaluate(
        "(() => { const tv = window.twinview;"
        " const b = tv.navCube.hooks.box(); return b.getCenter(b.min.clone()).toArray(); })()"
    )
    assert dist(cam["target"], centre) < 1e-3
    screenshot(page, f"nav-{view}")


def test_a_visible_cube_face_is_clicked_with_the_mouse(page):
    page.locator('.navcube [data-view="front-right-top"]').first.dispatch_event("click")
    page.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    # From the front-right-top corner the Top face's middle faces the user: click it as a user would.
    page.locator('.navcube [data-view="top"]').click()
    page.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    assert math.dist(page.evaluate(CAMERA)["dir"], [0, -1, 0]) < 1e-3
    # The cube turned with the camera (within its 150 ms): the Top face now faces the user, square on.
    page.wait_for_function(
        "(() => { const r = document.querySelector('.navcube [data-view=\"top\"]')"
        ".getBoundingClientRect(); return r.width > 22 && r.height > 22; })()"  # square on: 24 × 24 px
    )


def test_orthographic_keeps_the_extent_and_zooms_and_picks(page):
    before = page.evaluate(CAMERA)
    page.get_by_role("button", name="Ortho").click()
    page.wait_for_function("window.twinview.viewer.projection === 'orthographic'")
    after = page.evaluate(CAMERA)
    assert after["height"] == pytest.approx(before["height"], rel=1e-6)
    assert after["pos"] == pytest.approx(before["pos"]) and after["target"] == pytest.approx(before["target"])
    assert page.evaluate("window.twinview.viewer.camera.isOrthographicCamera") is True
    # Pick works in it (screen points of the orthographic view).
    el = walls_on_screen(page)[0]
    page.mouse.click(el["x"], el["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=el["id"])
    # Zoom towards the cursor narrows the view, keeping the point under the cursor.
    page.mouse.move(el["x"], el["y"])
    page.mouse.wheel(0, -200)
    page.wait_for_function(f"window.twinview.viewer.viewHeight() < {after['height']} * 0.8")
    hit = page.evaluate("([x, y]) => window.twinview.viewer.pickAt(x, y)?.point.toArray()", [el["x"], el["y"]])
    assert hit and dist(hit, el["point"]) < 0.05
    # Back to perspective: the same extent again.
    h = page.evaluate("window.twinview.viewer.viewHeight()")
    page.get_by_role("button", name="Ortho").click()
    assert page.evaluate("window.twinview.viewer.projection") == "perspective"
    assert page.evaluate("window.twinview.viewer.viewHeight()") == pytest.approx(h, rel=1e-6)
    screenshot(page, "nav-ortho")


def test_keyboard_f_fits_the_selection_and_esc_clears_it(page):
    el = walls_on_screen(page)[0]
    page.mouse.click(el["x"], el["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=el["id"])
    page.keyboard.press("f")
    page.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    fit = page.evaluate(
        """id => { const tv = window.twinview; const b = tv.app.batches.boxOf(id);
      const c = b.getCenter(b.min.clone());
      return { centre: c.toArray(), target: tv.viewer.controls.target.toArray(), size: b.getSize(c.clone()).length(),
               height: tv.viewer.viewHeight() }; }""",
        el["id"],
    )
    assert dist(fit["target"], fit["centre"]) < 1e-3
    assert fit["size"] * 0.5 < fit["height"] < fit["size"] * 5  # framed: neither lost nor cropped
    page.keyboard.press("Escape")
    page.wait_for_function("window.twinview.app.twin.selected === null")
    page.keyboard.press("Home")
    page.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    assert math.dist(page.evaluate(CAMERA)["dir"], [-1 / math.sqrt(3)] * 3) < 1e-3


def test_double_click_focuses_an_element(page):
    el = walls_on_screen(page)[1]
    page.mouse.dblclick(el["x"], el["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=el["id"])
    page.wait_for_function(AT_REST, timeout=FLIGHT_MS)
    centre = page.evaluate(
        "id => { const b = window.twinview.app.batches.boxOf(id); return b.getCenter(b.min.clone()).toArray(); }",
        el["id"],
    )
    assert dist(page.evaluate(CAMERA)["target"], centre) < 1e-3


def test_keys_move_and_zoom_and_walk_moves_the_eye(page):
    before = page.evaluate(CAMERA)
    page.keyboard.press("+")
    after = page.evaluate(CAMERA)
    assert dist(after["pos"], after["target"]) == pytest.approx(dist(before["pos"], before["target"]) * 0.8, rel=1e-3)
    page.get_by_role("button", name="Walk").click()
    assert page.evaluate(CAMERA)["mode"] == "walk"
    start = page.evaluate(CAMERA)
    page.keyboard.down("w")
    page.wait_for_function(
        "p => { const c = window.twinview.viewer.camera;"
        " return c.position.distanceTo(c.position.clone().fromArray(p)) > 1; }",
        arg=start["pos"],
        timeout=FLIGHT_MS,
    )
    page.keyboard.up("w")
    moved = page.evaluate(CAMERA)
    step = [b - a for a, b in zip(start["pos"], moved["pos"], strict=True)]
    heading = [start["dir"][0], 0, start["dir"][2]]
    # Walking is level (above the roof here, no floor within reach: no gravity step) and goes where one looks.
    assert abs(step[1]) < 1e-6
    assert sum(s * h for s, h in zip(step, heading, strict=True)) > 0.9 * math.hypot(*step) * math.hypot(*heading)
    # Fly goes along the gaze, up or down too; E rises.
    page.get_by_role("button", name="Fly").click()
    y = moved["pos"][1]
    page.keyboard.down("e")
    page.wait_for_function(f"window.twinview.viewer.camera.position.y > {y} + 0.5", timeout=FLIGHT_MS)
    page.keyboard.up("e")
    page.keyboard.press("Escape")
    assert page.evaluate(CAMERA)["mode"] == "orbit"


# Edge segments drawn now, and the edges lines' GPU-side vertex buffer compared with their batch's.
EDGES = """(() => { const t = window.twinview.app.twin; return { segments: t.edges.segments, enabled: t.edges.enabled,
  shared: t.edges.lines.every((l) => l.geometry.attributes.position === l.batch.geometry.attributes.position) }; })()"""


def test_edges_toggle_adds_and_removes_edge_geometry(page):
    assert page.evaluate(EDGES)["segments"] == 0  # off by default
    page.get_by_role("button", name="Edges").click()
    page.wait_for_function("window.twinview.app.twin.edges.segments > 100", timeout=FLIGHT_MS)
    on = page.evaluate(EDGES)
    assert on["enabled"] and on["shared"]  # the lines draw from the batches' own vertex buffers
    assert page.get_by_role("button", name="Edges").get_attribute("aria-pressed") == "true"
    screenshot(page, "nav-edges")
    page.get_by_role("button", name="Edges").click()
    page.wait_for_function("window.twinview.app.twin.edges.segments === 0")


def test_selection_and_hover_are_outlined(page):
    els = walls_on_screen(page)
    page.mouse.move(els[0]["x"], els[0]["y"])
    page.wait_for_function("id => window.twinview.app.twin.hovered === id", arg=els[0]["id"])
    outlined = """kind => { const o = window.twinview.app.twin[kind]; let n = 0;
      for (const ls of o.lines.values()) for (const l of ls) if (l.visible) n += l.geometry.drawRange.count;
      return n; }"""
    assert page.evaluate(outlined, "hoverOutline") > 0
    page.mouse.click(els[0]["x"], els[0]["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=els[0]["id"])
    # The selection is outlined (no bounding box), and the hover outline gives way to it.
    assert page.evaluate(outlined, "outline") > 0
    assert page.evaluate("window.twinview.app.twin.highlight.visible") is False
    assert page.evaluate(outlined, "hoverOutline") == 0
    screenshot(page, "nav-selected")
    page.keyboard.press("Escape")
    page.wait_for_function("window.twinview.app.twin.selected === null")
    assert page.evaluate(outlined, "outline") == 0


def test_edges_and_outlines_follow_section_planes_and_visibility(page):
    """Edges and outlines are cut by the section planes (the viewer's shared array), and hidden or x-rayed
    elements have none."""
    els = walls_on_screen(page)
    page.mouse.click(els[0]["x"], els[0]["y"])
    page.wait_for_function("id => window.twinview.app.twin.selected === id", arg=els[0]["id"])
    page.get_by_role("button", name="Edges").click()
    page.wait_for_function("window.twinview.app.twin.edges.segments > 100", timeout=FLIGHT_MS)
    # A horizontal cut: every edge and outline material clips with the viewer's planes (the same array).
    page.evaluate(
        """() => { const tv = window.twinview; const c = tv.viewer.controls.target;
      tv.section.add(c.clone().set(0, -1, 0), tv.viewer.world.worldToLocal(c.clone()), 'cut');
      tv.viewer.invalidate(); }"""
    )
    page.wait_for_function("window.twinview.viewer.clippingPlanes.length === 1", timeout=FLIGHT_MS)
    shared = """() => { const tv = window.twinview; const t = tv.app.twin; const planes = tv.viewer.clippingPlanes;
      const lines = [...t.edges.lines, ...[...t.outline.lines.values()].flat()];
      return lines.length > 0 && lines.every((l) => l.material.clippingPlanes === planes); }"""
    assert page.evaluate(shared)
    page.evaluate("window.twinview.section.clear()")
    outlined = """() => { let n = 0; for (const ls of window.twinview.app.twin.outline.lines.values())
      for (const l of ls) if (l.visible) n += l.geometry.drawRange.count; return n; }"""
    assert page.evaluate(outlined) > 0
    # Hiding the selected element takes its outline (and box) away; showing it again gives the outline back.
    page.evaluate("id => window.twinview.visibility.hide([id])", els[0]["id"])
    page.wait_for_function(f"({outlined})() === 0", timeout=FLIGHT_MS)
    assert page.evaluate("window.twinview.app.twin.highlight.visible") is False
    page.evaluate("window.twinview.visibility.showAll()")
    page.wait_for_function(f"({outlined})() > 0", timeout=FLIGHT_MS)
    # X-raying everything but one element leaves edges on that one only; hiding everything leaves none.
    all_segments = page.evaluate(EDGES)["segments"]
    page.evaluate("id => window.twinview.visibility.xrayOthers([id])", els[0]["id"])
    page.wait_for_function("s => window.twinview.app.twin.edges.segments < s / 4", arg=all_segments, timeout=FLIGHT_MS)
    page.evaluate("window.twinview.visibility.hide([...window.twinview.app.batches.elements.keys()])")
    page.wait_for_function("window.twinview.app.twin.edges.segments === 0", timeout=FLIGHT_MS)


def test_the_environment_map_lights_pbr_materials(office):
    srv, browser = office
    # Off for this model by default: every material takes the per-vertex path, which does not read it (and a
    # software GL would pay seconds for it); ?env=1 asks for it.
    p = open_viewer(browser, srv.url)
    assert p.evaluate("window.twinview.viewer.scene.environment") is None
    p.close()
    p = open_viewer(browser, f"{srv.url}/?env=1")
    p.wait_for_function("window.twinview.viewer.scene.environment?.isTexture === true", timeout=FLIGHT_MS)
    assert p.errors == []
    p.close()


def test_flights_are_jumps_with_reduced_motion(office):
    srv, browser = office
    context = browser.new_context(viewport={"width": 1280, "height": 800}, reduced_motion="reduce")
    p = open_viewer(context, srv.url)
    p.locator('.navcube [data-view="top"]').dispatch_event("click")
    # No flight under way: the camera is already there, in the same task as the click.
    assert p.evaluate("window.twinview.viewer.flying") is False
    assert math.dist(p.evaluate(CAMERA)["dir"], [0, -1, 0]) < 1e-3
    assert p.errors == []
    context.close()


def test_keys_a_focused_widget_uses_stay_its_own(page):
    # A widget that handles a key itself (the timeline's track, the alarm list) prevents its default: the view
    # must not move as well.
    page.evaluate(
        """() => { const w = document.createElement('div'); w.id = 'widget'; w.tabIndex = 0;
      w.addEventListener('keydown', (e) => { if (e.key === 'ArrowUp' || e.key === 'Home') e.preventDefault(); });
      document.body.append(w); w.focus(); }"""
    )
    before = page.evaluate(CAMERA)
    page.keyboard.down("ArrowUp")
    assert page.evaluate("window.twinview.viewer.controls.keys.size") == 0  # not held as a movement key
    page.keyboard.up("ArrowUp")
    page.keyboard.press("Home")
    assert page.evaluate("window.twinview.viewer.flying") is False
    assert page.evaluate(CAMERA)["pos"] == pytest.approx(before["pos"])
