"""Instanced elements in the viewer: a plant of equipment that shares three meshes (as mapped IFC types do),
built by our GLB writer (meshopt, quantized positions), is drawn with one instanced draw per shared mesh
(web_client/src/instanced_batch.js) holding each mesh once, and looks the same as when every copy is baked into
the merged batch (`?instancing=0`). Live rules (colour, transform, visibility), picking, section planes and their
caps, hiding, x-ray and see-through, outlines, edges and snapping work on instanced elements as on merged ones."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from scene.model import Mesh, Scene
from tests.scene_factory import repeated_scene, sphere_primitive
from tests.web_helpers import WAIT_MS, open_viewer, serve_scene

pytestmark = [pytest.mark.browser, pytest.mark.slow]

COPIES = 60
KINDS = 3
BINDINGS = """\
version: 1
default_layer: operations
bindings:
  - {element: eq-00001, prop: pressure, unit: bar, range: [-1, 16], key: eq-00001.pressure}
  - {element: eq-00002, prop: position, unit: "%", range: [0, 100], key: eq-00002.position}
  - {element: eq-00004, prop: level, unit: "%", range: [0, 100], key: eq-00004.level}
layers:
  operations:
    rules:
      - {kind: ramp, element: eq-00001, prop: pressure, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}
      - {kind: transform, element: eq-00002, prop: position, mode: translate, axis: [0, 1, 0], scale: 0.01,
         min: 0, max: 1}
      - {kind: visibility, element: eq-00004, prop: level, when: {op: "<", value: 50}}
"""
# What the batches hold: per batch its kind, slots and vertices on the GPU; per element its box.
SUMMARY = """() => {
  const b = window.twinview.app.batches;
  const xyz = (v) => [v.x, v.y, v.z];
  return {
    batches: b.batches.map((x) => ({ name: x.name, slots: x.slots, vertices: x.geometry.attributes.position.count })),
    boxes: [...b.elements.keys()].map((id) => [id, [...xyz(b.boxOf(id).min), ...xyz(b.boxOf(id).max)]]),
    colors: [...b.elements.keys()].map((id) => window.twinview.colorOf(id)),
  };
}"""
# Straight down on the plant, so that every element's centre is its own on screen.
TOP_VIEW = """() => { const v = window.twinview.viewer;
  v.flyTo(v.camera.position.clone().set(5.25, 22, 5.3), v.controls.target.clone().set(5.25, 0, 5.25), 0); }"""
SETTLED = "window.twinview.viewer.frames > 0 && !window.twinview.viewer.dirty"
# The first snapshot is in (and with it the start view taken, main.js startView).
STARTED = "() => window.twinview.state.seq >= 0"
NO_RULES = "version: 1\ndefault_layer: operations\nbindings: []\nlayers:\n  operations:\n    rules: []\n"
# Every edge the view wants is found and drawn: none pending nor about to be looked for, the view not moving.
EDGES_FOUND = """() => { const e = window.twinview.app.twin.edges; const v = window.twinview.viewer;
  return e.pending.size === 0 && e.timer === 0 && e.segments > 0 && !v.dirty && !v.flying; }"""
# What decides which elements get edges (MIN_EDGE_PX): the camera and the drawing buffer's height.
VIEW = """() => { const v = window.twinview.viewer; const c = v.camera.position;
  return [...c.toArray(), ...v.controls.target.toArray(), v.renderer.getDrawingBufferSize(c.clone()).y]; }"""
CAP = (0xC8, 0xB6, 0x8E)  # tools/section_caps.js CAP_COLOR
HATCH = (0x5C, 0x53, 0x46)


@contextmanager
def served(root: Path, scene: Scene, bindings: str, *, lod: bool = False):
    """`scene` written by our GLB writer (meshopt + quantization; levels of detail with `lod`) and served: the
    server and the viewer's URL."""
    scene_dir = root / "plant"
    scene_dir.mkdir()
    write_glb(scene, scene_dir / "scene.glb", compress=True, lod=lod)
    write_manifest(scene, scene_dir / "manifest.json", {})
    (root / "b.yaml").write_text(bindings)
    with serve_scene(scene_dir, root / "b.yaml", root / "data") as live:
        yield live, f"{live.url}/?scene={scene_dir.name}"


@pytest.fixture(scope="module")
def plant(browser, tmp_path_factory):
    with served(tmp_path_factory.mktemp("instancing"), repeated_scene(COPIES, kinds=KINDS), BINDINGS) as (live, url):
        yield live, browser, url


def _top_view(page) -> np.ndarray:
    page.evaluate(TOP_VIEW)
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    return np.asarray(Image.open(io.BytesIO(page.locator("#view canvas").screenshot())).convert("RGB"))


def _at(page, element: str) -> dict:
    return page.evaluate("id => window.twinview.screenOf(id)", element)


def _pixel(page, element: str) -> tuple[int, int]:
    """Row and column of an element's centre in a screenshot of the canvas."""
    canvas = page.locator("#view canvas").bounding_box()
    at = _at(page, element)
    return int(at["y"] - canvas["y"]), int(at["x"] - canvas["x"])


def _near(rgb: np.ndarray, want: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(rgb, want, strict=True))


def _pick(page, element: str) -> str | None:
    at = _at(page, element)
    return page.evaluate("([x, y]) => window.twinview.pick(x, y)", [at["x"], at["y"]])


def test_shared_meshes_are_drawn_instanced_and_look_as_merged(plant):
    _, browser, url = plant
    seen, shots = [], []
    for query in ("", "&instancing=0"):
        page = open_viewer(browser, url + query)
        shots.append(_top_view(page))
        seen.append(page.evaluate(SUMMARY) | {"calls": page.evaluate("window.twinview.drawCalls()")})
        # Feature edges: the same segments, found once per mesh when instanced.
        page.evaluate("window.twinview.app.twin.edges.setEnabled(true)")
        page.wait_for_function(EDGES_FOUND, timeout=WAIT_MS)
        seen[-1]["segments"] = page.evaluate("window.twinview.app.twin.edges.segments")
        seen[-1]["view"] = page.evaluate(VIEW)
        shots.append(_top_view(page))
        assert page.errors == []
        page.close()
    instanced, merged = seen
    kinds = [b for b in instanced["batches"] if b["name"].startswith("instanced:")]
    # One instanced batch per shared mesh, its vertices once; the unique parts stay merged.
    assert sorted(b["slots"] for b in kinds) == [COPIES // KINDS] * KINDS
    assert sum(b["slots"] for b in instanced["batches"]) == COPIES + 4
    assert [b["name"].split(":")[0] for b in merged["batches"]] == ["merged"] * len(merged["batches"])
    merged_vertices = sum(b["vertices"] for b in merged["batches"])
    assert sum(b["vertices"] for b in instanced["batches"]) * 5 < merged_vertices
    assert instanced["calls"] <= KINDS + len(merged["batches"])
    # The same elements in the same places and colours, and the same picture.
    assert [i for i, _ in instanced["boxes"]] == [i for i, _ in merged["boxes"]]
    assert np.allclose([b for _, b in instanced["boxes"]], [b for _, b in merged["boxes"]], atol=1e-4)
    assert instanced["colors"] == merged["colors"]
    # Edges counted from the same view, so the same elements are big enough on screen to have them.
    assert instanced["view"] == pytest.approx(merged["view"], abs=1e-6)
    assert instanced["segments"] == merged["segments"] > 0
    for with_instancing, without in ((shots[0], shots[2]), (shots[1], shots[3])):  # edges off, then on
        differ = (np.abs(with_instancing.astype(int) - without).max(axis=2) > 24).mean()
        assert differ < 0.002, differ


def test_live_rules_picking_hiding_and_x_ray_work_on_instanced_elements(plant):
    live, browser, url = plant
    page = open_viewer(browser, url)
    shot = _top_view(page)
    assert page.evaluate("window.twinview.app.batches.elements.get('eq-00001').parts[0].target.isInstancedBatch")
    # Picking: each instance is its own element.
    for element in ("eq-00001", "eq-00007", "eq-00030"):
        assert _pick(page, element) == element
    # A ray that is not the camera's, as an XR controller casts it: straight down onto an instance.
    down = """(id) => { const tv = window.twinview;
      const c = tv.app.batches.boxOf(id).getCenter(tv.viewer.camera.position.clone());
      const r = tv.viewer.raycaster; r.ray.origin.set(c.x, 50, c.z); r.ray.direction.set(0, -1, 0);
      const hit = tv.viewer.pickRay(r); return hit ? tv.app.batches.idOf(hit) : null; }"""
    assert page.evaluate(down, "eq-00030") == "eq-00030"
    # A section plane through the middle (keeping x below it) cuts the far instances away, from picking too.
    page.evaluate("window.twinview.section.addAxis('x')")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00007") != "eq-00007"  # at x = 10.5 m
    assert _pick(page, "eq-00001") == "eq-00001"  # at x = 1.5 m
    # A level plane through every instance's middle, seen from above: their insides are filled with the caps.
    page.evaluate("window.twinview.section.clear(); window.twinview.section.addAxis('y')")
    capped = _top_view(page)
    for element in ("eq-00001", "eq-00030"):
        y, x = _pixel(page, element)
        block = [capped[y + dy, x + dx] for dx in (-3, 0, 3) for dy in (-3, 0, 3)]
        assert all(_near(p, CAP) or _near(p, HATCH) for p in block), (element, block)
    page.evaluate("window.twinview.section.clear()")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    # Selected and hovered instances are outlined (their edges and a tint), not boxed.
    page.evaluate("window.twinview.select('eq-00030'); window.twinview.app.twin.hover('eq-00007')")
    outlined = """() => { const t = window.twinview.app.twin;
      const shown = (o) => [...o.lines.values()].flat().filter((l) => l.visible).length;
      return [t.highlight.visible, shown(t.outline), shown(t.hoverOutline)]; }"""
    assert page.evaluate(outlined) == [False, 3, 2]  # selection: fill, edges, edges on top; hover: fill, edges
    page.evaluate("window.twinview.select(null); window.twinview.app.twin.hover(null)")
    # A live colour: only that instance turns red, on screen too.
    live.ingest([{"element": "eq-00001", "prop": "pressure", "value": 6.0}])
    page.wait_for_function("window.twinview.colorOf('eq-00001') === '#ff0000'", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.colorOf('eq-00007')") != "#ff0000"
    y, x = _pixel(page, "eq-00001")
    r, g, b = _top_view(page)[y, x].astype(int)
    assert r > 2 * g and r > 2 * b, (r, g, b, shot[y, x])
    # A transform rule moves the instance up by 1 m; a visibility rule hides one.
    low = page.evaluate("window.twinview.app.batches.boxOf('eq-00002').min.y")
    live.ingest([{"element": "eq-00002", "prop": "position", "value": 100.0}])
    page.wait_for_function(
        "y => Math.abs(window.twinview.app.batches.boxOf('eq-00002').min.y - y - 1) < 1e-4", arg=low, timeout=WAIT_MS
    )
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00002") == "eq-00002"  # picked where it is now
    live.ingest([{"element": "eq-00004", "prop": "level", "value": 80.0}])
    page.wait_for_function("!window.twinview.app.batches.isVisible('eq-00004')", timeout=WAIT_MS)
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00004") != "eq-00004"
    # The user hides one and x-rays all but one: neither is picked, the x-rayed are drawn see-through.
    page.evaluate("window.twinview.visibility.hide(['eq-00010'])")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00010") != "eq-00010"
    page.evaluate("window.twinview.visibility.xrayOthers(['eq-00030'])")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00007") != "eq-00007"
    assert _pick(page, "eq-00030") == "eq-00030"
    assert page.evaluate(
        "window.twinview.app.batches.batches.filter((b) => b.isInstancedBatch).every((b) => b.see.visible)"
    )
    page.evaluate("window.twinview.visibility.showAll()")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00010") == "eq-00010"
    assert page.errors == []
    page.close()


def test_only_the_meshes_that_save_most_are_instanced_within_the_draw_call_budget(browser, tmp_path):
    """40 shared meshes of 8 uses each: the 32 (INSTANCE_MAX_BATCHES) that save the most vertices are instanced
    (the 26 spheres and 6 of the 14 boxes), the other 8 boxes' 64 elements stay in the merged batch."""
    with served(tmp_path, repeated_scene(40 * 8, kinds=40), NO_RULES) as (_, url):
        page = open_viewer(browser, url)
        batches = page.evaluate(
            """() => window.twinview.app.batches.batches.map((b) => ({ name: b.name, slots: b.slots,
              triangles: b.isInstancedBatch ? b.meshTriangles : 0 }))"""
        )
        assert page.errors == []
        page.close()
    instanced = [b for b in batches if b["name"].startswith("instanced:")]
    assert len(instanced) == 32 and all(b["slots"] == 8 for b in instanced)
    assert sorted(b["triangles"] for b in instanced).count(12) == 6  # boxes: the fewest vertices saved
    assert sum(b["slots"] for b in batches if b["name"].startswith("merged:")) == 8 * 8 + 4


def test_measuring_snaps_to_the_corners_of_an_instance(plant):
    _, browser, url = plant
    page = open_viewer(browser, url)
    _top_view(page)
    page.click("#btn-measure")
    # eq-00000: an unturned box (0.6 x 0.8 x 0.4 m) at the origin; its top's two corners on the -Z side.
    corners = page.evaluate(
        """() => { const b = window.twinview.app.batches.boxOf('eq-00000');
        return [[b.min.x, b.max.y, b.min.z], [b.max.x, b.max.y, b.min.z]]; }"""
    )
    mid = _at(page, "eq-00000")
    for corner in corners:
        at = _screen(page, corner)
        dx, dy = mid["x"] - at["x"], mid["y"] - at["y"]
        norm = max((dx * dx + dy * dy) ** 0.5, 1e-9)
        x, y = at["x"] + 3 * dx / norm, at["y"] + 3 * dy / norm  # on the top face, 3 px off the corner
        page.mouse.move(x, y)
        page.wait_for_function(
            "() => document.querySelector('#snap-indicator').dataset.kind === 'vertex'", timeout=WAIT_MS
        )
        page.mouse.click(x, y)
    points = page.evaluate("window.twinview.measure.items.map(m => m.points.map(p => p.toArray()))")
    assert len(points) == 1
    for got, want in zip(points[0], corners, strict=True):
        assert got == pytest.approx(want, abs=1e-3)  # snapped onto the corners (quantised positions)
    assert page.errors == []
    page.close()


def _screen(page, point: list[float]) -> dict:
    """Client pixel of a model point."""
    return page.evaluate(
        """([x, y, z]) => { const v = window.twinview.viewer;
        const p = v.world.localToWorld(v.camera.position.clone().set(x, y, z)); p.project(v.camera);
        const r = v.renderer.domElement.getBoundingClientRect();
        return { x: r.left + (p.x + 1) / 2 * r.width, y: r.top + (1 - p.y) / 2 * r.height }; }""",
        point,
    )


def test_instances_take_the_levels_of_detail_of_their_mesh(browser, tmp_path):
    """A 2 200-triangle mesh shared by 24 elements, built with --lod: the instanced batch gets its coarser levels
    (sharing its vertices) and draws each instance at the level its size on screen needs."""
    scene = repeated_scene(24, kinds=1, unique=0)
    scene.meshes["type0"] = Mesh("type0", [sphere_primitive(0.35, 48, 0)])
    with served(tmp_path, scene, NO_RULES, lod=True) as (_, url):
        page = open_viewer(browser, url)
        page.wait_for_function("window.twinview.app.twin.lodsLoaded === true", timeout=WAIT_MS)
        batch = "window.twinview.app.batches.batches.find((b) => b.isInstancedBatch)"
        levels = page.evaluate(f"{batch}.levels.map((l) => l.triangles)")
        assert len(levels) >= 2 and levels == sorted(levels, reverse=True), levels
        look = """([eye, at]) => { const v = window.twinview.viewer;
            v.flyTo(v.camera.position.clone().set(...eye), v.controls.target.clone().set(...at), 0); }"""
        page.evaluate(look, [[0, 1.6, 0.01], [0, 0.5, 0]])  # right over eq-00000, 0.75 m above its top
        page.wait_for_function(SETTLED, timeout=WAIT_MS)
        assert page.evaluate(f"{batch}.drawn[0]") == 0  # filling the view: full detail
        assert _pick(page, "eq-00000") == "eq-00000"
        page.evaluate(look, [[5, 400, 5], [5, 0, 5]])
        page.wait_for_function(SETTLED, timeout=WAIT_MS)
        drawn = page.evaluate(f"[...{batch}.drawn]")
        assert drawn == [len(levels) - 1] * 24  # a few pixels each: the coarsest level
        assert page.evaluate(f"{batch}.triangles") == levels[-1] * 24
        assert page.evaluate(f"{batch}.levels.at(-1).mesh.visible")
        assert page.errors == []
        page.close()


def test_a_late_first_snapshot_leaves_a_view_flown_to_alone(plant):
    """The start view (main.js startView) waits for the first snapshot; under load the model can be in before it.
    A camera flown somewhere meanwhile stays there (before, the snapshot jumped it to the live elements)."""
    _, browser, url = plant
    held: list[str | bytes] = []  # what the server sent before the release
    sockets = []
    released = False

    def hold_server_messages(ws) -> None:
        sockets.append(ws)
        ws.connect_to_server().on_message(lambda m: ws.send(m) if released else held.append(m))

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.route_web_socket("**/*", hold_server_messages)
    page = open_viewer(context, url)
    assert page.evaluate("window.twinview.state.seq") == -1
    page.evaluate(TOP_VIEW)
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    released = True
    for m in held:
        sockets[0].send(m)
    page.wait_for_function(STARTED, timeout=WAIT_MS)
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert page.evaluate("window.twinview.viewer.camera.position.toArray()") == pytest.approx([5.25, 22, 5.3])
    assert page.errors == []
    context.close()
