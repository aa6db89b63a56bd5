"""Instanced elements in the viewer: a plant of equipment that shares three meshes (as mapped IFC types do),
built by our GLB writer (meshopt, quantized positions), is drawn with one instanced draw per shared mesh
(web_client/src/instanced_batch.js) holding each mesh once, and looks the same as when every copy is baked into
the merged batch (`?instancing=0`). Live rules (colour, transform, visibility), picking, section planes, hiding,
x-ray and see-through work on instanced elements as on merged ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from tests.scene_factory import repeated_scene
from tests.web_helpers import WAIT_MS, build_client, chromium_browser, open_viewer, serve_scene

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


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    build_client()
    root = tmp_path_factory.mktemp("instancing")
    scene_dir = root / "plant"
    scene_dir.mkdir()
    scene = repeated_scene(COPIES, kinds=KINDS)
    write_glb(scene, scene_dir / "scene.glb", compress=True)
    write_manifest(scene, scene_dir / "manifest.json", {})
    (root / "b.yaml").write_text(BINDINGS)
    with serve_scene(scene_dir, root / "b.yaml", root / "data") as live, chromium_browser() as browser:
        yield live, browser, f"{live.url}/?scene={scene_dir.name}"


def _top_view(page) -> np.ndarray:
    page.evaluate(TOP_VIEW)
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    return np.asarray(Image.open(io.BytesIO(page.locator("#view canvas").screenshot())).convert("RGB"))


def _at(page, element: str) -> dict:
    return page.evaluate("id => window.twinview.screenOf(id)", element)


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
    differ = (np.abs(shots[0].astype(int) - shots[1]).max(axis=2) > 24).mean()
    assert differ < 0.002, differ


def test_live_rules_picking_hiding_and_x_ray_work_on_instanced_elements(plant):
    live, browser, url = plant
    page = open_viewer(browser, url)
    shot = _top_view(page)
    assert page.evaluate("window.twinview.app.batches.elements.get('eq-00001').parts[0].target.isInstancedBatch")
    # Picking: each instance is its own element.
    for element in ("eq-00001", "eq-00007", "eq-00030"):
        assert _pick(page, element) == element
    # A section plane through the middle (keeping x below it) cuts the far instances away, from picking too.
    page.evaluate("window.twinview.section.addAxis('x')")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert _pick(page, "eq-00007") != "eq-00007"  # at x = 10.5 m
    assert _pick(page, "eq-00001") == "eq-00001"  # at x = 1.5 m
    page.evaluate("window.twinview.section.clear()")
    page.wait_for_function(SETTLED, timeout=WAIT_MS)
    # A live colour: only that instance turns red, on screen too.
    live.ingest([{"element": "eq-00001", "prop": "pressure", "value": 6.0}])
    page.wait_for_function("window.twinview.colorOf('eq-00001') === '#ff0000'", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.colorOf('eq-00007')") != "#ff0000"
    after = _top_view(page)
    canvas = page.locator("#view canvas").bounding_box()
    at = _at(page, "eq-00001")
    r, g, b = after[int(at["y"] - canvas["y"]), int(at["x"] - canvas["x"])].astype(int)
    assert r > 2 * g and r > 2 * b, (r, g, b, shot[int(at["y"] - canvas["y"]), int(at["x"] - canvas["x"])])
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
