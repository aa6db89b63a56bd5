"""A section/measure session in the browser, on the synthetic twin (boxes of known size on a 1.5 m grid, two
storeys standing at 0 m): measuring snaps to corners, edges and faces and draws the line with its length;
angles and areas on a box's top face; section planes cut away their far side, are dragged by their handle and
fill cut solids with hatched caps; a floor plan looks straight down at a cut 1.2 m above the storey's floor;
a topic keeps the planes and measurements and gives them back in another browser."""

from __future__ import annotations

import urllib.request

import pytest

from tests.test_web_viewer import look_down_at, pixel_at
from tests.web_helpers import (
    element_id,
    live_twin,
    open_viewer,
    publish,
    screenshot,
    session_joiner,
)
from viewer_server.auth import load_secret
from viewer_server.bcf import import_bcf

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CAP = (0xC8, 0xB6, 0x8E)  # tools/section_caps.js CAP_COLOR
HATCH = (0x5C, 0x53, 0x46)
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def world(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("section")
    with live_twin(root, count=24) as live:
        yield live, browser, root


@pytest.fixture
def page(world):
    live, browser, _ = world
    page = open_viewer(browser, live.url)
    page.console = []
    page.on("console", lambda m: page.console.append(m.text))
    yield page
    page.close()


def _bbox(live, element: str) -> tuple[list[float], list[float]]:
    record = next(r for r in live.twin.manifest["elements"] if r["id"] == element)
    return record["bbox"][0], record["bbox"][1]


def _screen(page, point) -> dict:
    return page.evaluate(
        """([x, y, z]) => { const v = window.twinview.viewer;
        const p = v.world.localToWorld(v.camera.position.clone().set(x, y, z)); p.project(v.camera);
        const r = v.renderer.domElement.getBoundingClientRect();
        return { x: r.left + (p.x + 1) / 2 * r.width, y: r.top + (1 - p.y) / 2 * r.height }; }""",
        list(point),
    )


def _click_near(page, point, towards: str, px: float = 3) -> None:
    """Click `px` pixels off a model point, towards the middle of element `towards` (so still on it): snapping
    must bring the point back."""
    at = _screen(page, point)
    mid = page.evaluate("id => window.twinview.screenOf(id)", towards)
    dx, dy = mid["x"] - at["x"], mid["y"] - at["y"]
    norm = max((dx * dx + dy * dy) ** 0.5, 1e-9)
    page.mouse.click(at["x"] + px * dx / norm, at["y"] + px * dy / norm)


def _labels(page) -> list[str]:
    return page.locator("#labels .measure-tag").all_inner_texts()


def _top_corners(live, element: str):
    (x0, _, z0), (x1, y1, z1) = _bbox(live, element)
    return [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)]


def _look_from(page, element: str, offset: tuple[float, float, float]) -> None:
    """Look at an element's centre from that offset to it (model coordinates)."""
    page.evaluate(
        """([id, [dx, dy, dz]]) => { const tv = window.twinview;
        const c = tv.app.batches.boxOf(id).getCenter(tv.viewer.camera.position.clone());
        tv.viewer.flyTo(c.clone().set(c.x + dx, c.y + dy, c.z + dz), c, 0); }""",
        [element, list(offset)],
    )
    _settle(page)


def _settle(page) -> None:
    """Wait for a frame drawn from where the camera is now (screenOf projects with the last frame's camera)."""
    page.evaluate(
        """new Promise(r => { const v = window.twinview.viewer; v.invalidate();
        v.addEventListener('frame', r, { once: true }); })"""
    )


def test_measure_draws_the_snapped_distance_with_its_label(page, world):
    live, _, _ = world
    el = element_id(7)
    look_down_at(page, el)
    page.click("#btn-measure")
    c0, c1, _, _ = _top_corners(live, el)
    # The snap indicator says what the pointer would snap to: a corner, an edge's middle, the face.
    for point, kind in [(c0, "vertex"), (((c0[0] + c1[0]) / 2, c0[1], c0[2]), "edge")]:
        at = _screen(page, point)
        page.mouse.move(at["x"] + 2, at["y"] + 2)
        page.wait_for_function(
            "k => document.querySelector('#snap-indicator').dataset.kind === k", arg=kind, timeout=WAIT_MS
        )
    assert page.evaluate("window.twinview.measure.edgeLine.visible")  # the edge is highlighted
    centre = page.evaluate("id => window.twinview.screenOf(id)", el)
    page.mouse.move(centre["x"], centre["y"])
    page.wait_for_function("() => document.querySelector('#snap-indicator').dataset.kind === 'face'", timeout=WAIT_MS)

    _click_near(page, c0, el)
    _click_near(page, c1, el)
    points = page.evaluate("window.twinview.measure.items.map(m => m.points.map(p => p.toArray()))")
    assert len(points) == 1
    for got, want in zip(points[0], [c0, c1], strict=True):
        assert got == pytest.approx(want, abs=1e-4)  # snapped exactly onto the corners
    length = c1[0] - c0[0]
    assert _labels(page) == [f"{length:.3f} m"]
    assert page.locator("#measure-readout").inner_text().startswith(f"Distance: {length:.3f} m")
    # The line is drawn: its geometry holds both points (it used to be created empty and never grew).
    drawn = page.evaluate(
        "window.twinview.measure.root.children[0].children.find(o => o.isLine).geometry.attributes.position.count"
    )
    assert drawn == 2
    assert not [m for m in page.console if "Buffer size too small" in m]
    assert page.evaluate("window.twinview.app.twin.selected") is None  # measuring does not select
    screenshot(page, "measure-distance")
    page.click("#measure-list li button.remove")
    assert page.evaluate("window.twinview.measure.items.length") == 0 and _labels(page) == []


def test_angle_and_area_on_a_box_top(page, world):
    live, _, _ = world
    el = element_id(12)
    look_down_at(page, el)
    page.click("#btn-measure")
    c0, c1, c2, c3 = _top_corners(live, el)
    page.click("#measure-controls [data-kind=angle]")
    for corner in (c1, c0, c3):  # the vertex in the middle: the top face's corner, a right angle
        _click_near(page, corner, el)
    assert page.evaluate("window.twinview.measure.items[0].kind") == "angle"
    assert _labels(page) == ["90.0°"]
    page.click("#measure-controls [data-kind=area]")
    for corner in (c0, c1, c2, c3, c0):  # the last click on the first corner closes the polygon
        _click_near(page, corner, el)
    area = (c1[0] - c0[0]) * (c2[2] - c1[2])
    assert page.evaluate("window.twinview.measure.items.map(m => m.kind)") == ["angle", "area"]
    assert _labels(page) == ["90.0°", f"{area:.3f} m²"]
    publish(screenshot(page, "measure-area"), "measure")
    page.click("#measure-clear")
    assert _labels(page) == []


def test_a_plane_cuts_away_its_far_side_and_caps_the_cut_solids(page, world):
    live, _, _ = world
    page.click("#btn-section")
    page.click("#section-controls [data-axis=x]")
    plane = page.evaluate(
        "(() => { const p = window.twinview.section.planes[0].plane; return [p.normal.toArray(), p.constant]; })()"
    )
    assert plane[0] == pytest.approx([-1, 0, 0])
    cut_x = plane[1]  # keeps x <= cut_x
    assert page.evaluate("window.twinview.viewer.clippingPlanes.length") == 1
    # From above, an element beyond the plane is not there to pick; one before it is.
    far, near = element_id(4), element_id(0)  # x = 6 and x = 0 on the grid
    for el in (far, near):
        look_down_at(page, el)
        at = page.evaluate("id => window.twinview.screenOf(id)", el)
        got = page.evaluate("([x, y]) => window.twinview.pick(x, y)", [at["x"], at["y"]])
        assert (got == el) == (el == near)
    # An element the plane runs through, seen from the cut side: its inside is filled with the hatched cap.
    cut = element_id(2)  # x = 3: the model's middle column
    (x0, _, _), (x1, _, _) = _bbox(live, cut)
    assert x0 < cut_x < x1
    _look_from(page, cut, (12, 0, 0.01))  # from +X at mid-height, looking along -X
    at = page.evaluate("id => window.twinview.screenOf(id)", cut)
    block = [pixel_at(page, at["x"] + dx, at["y"] + dy) for dx in (-4, 0, 4) for dy in (-4, 0, 4)]
    capped = sum(1 for p in block if _near(p, CAP) or _near(p, HATCH))
    assert capped == len(block), block
    assert sum(1 for p in block if _near(p, CAP)) >= len(block) // 2
    _look_from(page, cut, (7, 5, 6))
    publish(screenshot(page, "section-caps"), "section")
    page.uncheck("#section-caps")
    assert not any(_near(pixel_at(page, at["x"] + dx, at["y"]), CAP) for dx in (-4, 0, 4))
    page.check("#section-caps")
    page.click("#section-planes li button.flip")
    assert page.evaluate("window.twinview.section.planes[0].plane.normal.x") == pytest.approx(1)
    page.click("#section-planes li button.remove")
    assert page.evaluate("window.twinview.viewer.clippingPlanes.length") == 0
    # A plane on a picked face: on a box's top, 1 mm inside it, cutting away what is above.
    look_down_at(page, near)
    page.evaluate("window.twinview.select(null)")  # the pick check above selected
    page.click("#section-face")
    at = page.evaluate("id => window.twinview.screenOf(id)", near)
    page.mouse.click(at["x"], at["y"])
    normal, constant = page.evaluate(
        "(() => { const p = window.twinview.section.planes[0].plane; return [p.normal.toArray(), p.constant]; })()"
    )
    assert normal == pytest.approx([0, -1, 0], abs=1e-6)
    assert constant == pytest.approx(_bbox(live, near)[1][1] - 0.001, abs=1e-5)  # keeps y <= top - 1 mm
    assert page.get_attribute("#section-face", "aria-pressed") == "false"
    assert page.evaluate("window.twinview.app.twin.selected") is None  # that click put a plane, not a selection


def _near(rgb, want, tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, want, strict=True))


def test_dragging_a_handle_moves_its_plane_along_its_normal(page):
    page.click("#btn-section")
    page.click("#section-controls [data-axis=y]")
    page.evaluate(
        """(() => { const v = window.twinview.viewer; const c = window.twinview.section.planes[0].anchor;
        v.flyTo(c.clone().set(c.x + 10, c.y + 2, c.z + 10), c, 0); })()"""
    )
    _settle(page)
    y0 = page.evaluate("window.twinview.section.planes[0].anchor.y")
    camera = page.evaluate("window.twinview.viewer.camera.position.toArray()")
    at = page.evaluate("window.twinview.handles.screenOf(0)")
    assert page.evaluate("([x, y]) => window.twinview.handles.handleAt(x, y)", [at["x"], at["y"]]) == 0
    programs = page.evaluate("window.twinview.viewer.renderer.info.programs.length")
    cap = page.evaluate("window.twinview.caps.caps.children[0].material.uuid")
    page.mouse.move(at["x"], at["y"])
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(at["x"], at["y"] - 12 * step)
    page.mouse.up()
    y1 = page.evaluate("window.twinview.section.planes[0].anchor.y")
    constant = page.evaluate("window.twinview.section.planes[0].plane.constant")
    assert y1 > y0 + 0.3  # dragged up on screen: the horizontal plane rose
    assert constant == pytest.approx(y1, abs=1e-6)  # the plane goes through its handle (normal -Y: constant = y)
    assert page.evaluate("window.twinview.viewer.camera.position.toArray()") == pytest.approx(camera)  # no orbit
    assert page.evaluate("window.twinview.app.twin.selected") is None  # the drag's end picked nothing
    # A drag moves the plane in place: the same cap material, no program compiled again.
    assert page.evaluate("window.twinview.caps.caps.children[0].material.uuid") == cap
    assert page.evaluate("window.twinview.viewer.renderer.info.programs.length") == programs


def test_floor_plan_looks_straight_down_at_a_cut_above_the_storey_floor(page, world):
    live, _, _ = world
    page.click("#btn-section")
    page.wait_for_function("() => document.querySelectorAll('#storey-select option').length === 2", timeout=WAIT_MS)
    assert page.locator("#storey-select option").all_inner_texts() == ["Level 0 (0.00 m)", "Level 1 (0.00 m)"]
    page.select_option("#storey-select", "storey-0")
    page.click("#btn-floor-plan")
    view = page.evaluate(
        """(() => { const v = window.twinview.viewer; const d = v.camera.getWorldDirection(v.camera.position.clone());
        const p = window.twinview.section.planes;
        return { ortho: v.camera.isOrthographicCamera === true, dir: d.toArray(),
        planes: p.map(s => [s.plane.normal.toArray(), s.plane.constant]) }; })()"""
    )
    assert view["ortho"]
    assert view["dir"] == pytest.approx([0, -1, 0], abs=1e-3)
    assert view["planes"] == [[pytest.approx([0, -1, 0]), pytest.approx(1.2)]]  # keeps y <= 0 + 1.2 m
    # A box taller than the cut shows its cap from above; a lower one its own top.
    tall = next(e for e in live.twin.ids[:12] if _bbox(live, e)[1][1] > 1.5)
    at = page.evaluate("id => window.twinview.screenOf(id)", tall)
    assert _near(pixel_at(page, at["x"], at["y"]), CAP) or _near(pixel_at(page, at["x"] + 1, at["y"]), CAP)
    screenshot(page, "floor-plan")
    page.click("#btn-3d")
    assert page.evaluate("window.twinview.viewer.camera.isPerspectiveCamera") is True


def test_a_topic_keeps_planes_and_measurements_for_another_browser_and_bcf(world):
    live, browser, root = world
    joiner = session_joiner(browser, live.url, load_secret(root / "data"), "synthetic")
    ana, ben = joiner("ana", "annotator"), joiner("ben", "viewer")
    el = element_id(7)
    look_down_at(ana, el)
    ana.click("#btn-measure")
    c0, c1, _, _ = _top_corners(live, el)
    _click_near(ana, c0, el)
    _click_near(ana, c1, el)
    ana.click("#btn-section")
    ana.click("#section-controls [data-axis=z]")
    ana.click("#section-controls [data-axis=x]")
    ana.click("#section-planes li:nth-child(2) button.flip")
    planes = ana.evaluate("window.twinview.section.planes.map(p => [p.plane.normal.toArray(), p.plane.constant])")
    ana.click("#btn-measure")  # off: the next click pins the topic
    ana.click("#btn-new-topic")
    at = ana.evaluate("id => window.twinview.screenOf(id)", element_id(8))  # x = 4.5, z = 1.5: kept by both planes
    ana.mouse.click(at["x"], at["y"])
    ana.locator(".topic-form input[name=title]").fill("Clearance too small")
    ana.click("#topic-form button.create")
    ben.wait_for_function("() => window.twinview.collab.store.topics.size === 1", timeout=WAIT_MS)
    guid = ben.evaluate("[...window.twinview.collab.store.topics.keys()][0]")
    assert ben.evaluate("window.twinview.section.planes.length") == 0
    ben.click(f'ul.topics li[data-guid="{guid}"]')
    ben.wait_for_function("() => window.twinview.section.planes.length === 2", timeout=WAIT_MS)
    got = ben.evaluate("window.twinview.section.planes.map(p => [p.plane.normal.toArray(), p.plane.constant])")
    for (n, c), (n0, c0_) in zip(got, planes, strict=True):
        assert n == pytest.approx(n0, abs=1e-4) and c == pytest.approx(c0_, abs=1e-3)
    assert ben.evaluate("window.twinview.viewer.clippingPlanes.length") == 2
    assert ben.evaluate("window.twinview.handles.group.children.length") == 2
    assert _labels(ben) == [f"📌 {c1[0] - c0[0]:.3f} m"]
    screenshot(ben, "section-topic")
    ben.click("#topic-panel button.close")
    ben.wait_for_function("() => window.twinview.section.planes.length === 0", timeout=WAIT_MS)
    assert _labels(ben) == []
    # The BCF export carries the planes (ClippingPlanes) and the measurement, and reads back the same.
    token = ana.evaluate("new URLSearchParams(location.search).get('token')")
    bcf = root / "exported.bcf"
    req = urllib.request.Request(f"{live.url}/api/sessions/synthetic/bcf", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as res:
        bcf.write_bytes(res.read())
    (topic,) = import_bcf(bcf, element_ids=set(live.twin.ids)).topics
    vp = topic.viewpoints[0]
    assert len(vp.clipping_planes) == 2 and [m.kind for m in vp.measurements] == ["distance"]
    # A topic made in a floor plan opens as that plan: orthographic, from above, the one cut at 1.2 m.
    ana.select_option("#storey-select", "storey-1")
    ana.click("#btn-floor-plan")
    _settle(ana)
    ana.click("#btn-section")  # the panel closes, the cut stays
    ana.click("#btn-new-topic")
    # Pinned on a box under the cut (its top is there to pick), the nearest to the plan's middle.
    storey = [e for e in live.twin.ids[12:]]
    mid = [sum(live.twin.centers[e][k] for e in storey) / len(storey) for k in (0, 2)]
    low = min(
        (e for e in storey if _bbox(live, e)[1][1] < 1.1),
        key=lambda e: (live.twin.centers[e][0] - mid[0]) ** 2 + (live.twin.centers[e][2] - mid[1]) ** 2,
    )
    at = ana.evaluate("id => window.twinview.screenOf(id)", low)
    ana.mouse.click(at["x"], at["y"])
    ana.locator(".topic-form input[name=title]").fill("Plan check")
    ana.click("#topic-form button.create")
    ben.wait_for_function("() => window.twinview.collab.store.topics.size === 2", timeout=WAIT_MS)
    plan = ben.evaluate("[...window.twinview.collab.store.topics.values()].find(t => t.title === 'Plan check').guid")
    ben.click(f'ul.topics li[data-guid="{plan}"]')
    ben.wait_for_function("() => window.twinview.viewer.camera.isOrthographicCamera === true", timeout=WAIT_MS)
    view = ben.evaluate(
        """(() => { const v = window.twinview.viewer; const p = window.twinview.section.planes;
        return { dir: v.camera.getWorldDirection(v.camera.position.clone()).toArray(),
                 planes: p.map(s => [s.plane.normal.toArray(), s.plane.constant]) }; })()"""
    )
    assert view["dir"] == pytest.approx([0, -1, 0], abs=5e-3)  # within 0.3° (the viewpoint keeps 0.1 mm)
    assert view["planes"] == [[pytest.approx([0, -1, 0]), pytest.approx(1.2)]]
    for ctx in (ana.context, ben.context):
        ctx.close()
