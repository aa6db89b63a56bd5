"""The frame's triangle budget (web_client/src/frame_budget.js) on a plant of small parts built with `--lod`
(pipes of their own, merged; valves sharing one mesh, instanced): while the camera moves a frame draws at most
the budget, the smallest elements on screen swapped to their coarse level or left out; once it rests the frame
is at full detail again; a live recolour shows on an element drawn at its coarse level."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from tests.scene_factory import small_parts_scene
from tests.web_helpers import WAIT_MS, open_viewer, serve_scene

pytestmark = [pytest.mark.browser]

PARTS = 600  # 400 pipes of 100 triangles, 200 valves of 528: ~150 000 triangles at full detail
BUDGET = 15_000
BINDINGS = """\
version: 1
default_layer: operations
bindings:
  - {element: valve-00299, prop: pressure, unit: bar, range: [0, 10], key: v.pressure}
  - {element: pipe-00300, prop: pressure, unit: bar, range: [0, 10], key: p.pressure}
layers:
  operations:
    rules:
      - {kind: ramp, element: valve-00299, prop: pressure, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}
      - {kind: ramp, element: pipe-00300, prop: pressure, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}
"""
# The first snapshot is in (and with it the start view taken, main.js startView).
STARTED = "() => window.twinview.state.seq >= 0"
# Nothing left to draw and no flight under way.
DRAWN_STILL = "() => { const v = window.twinview.viewer; return !v.dirty && !v.flying; }"
BATCHES = "window.twinview.app.batches.batches.filter((b) => b.isMergedBatch || b.isInstancedBatch)"
# The camera rests (no rest timer pending) and the view is drawn.
AT_REST = "() => { const t = window.twinview.app.twin; return t.motion.timer === 0 && !window.twinview.viewer.dirty; }"
# Orbit the camera a little per frame for n frames: the triangles each frame drew, and the budget's cuts.
ORBIT = """async (n) => {
  const v = window.twinview.viewer; const b = window.twinview.app.batches;
  const out = [];
  for (let i = 0; i < n; i++) {
    v.camera.position.sub(v.controls.target).applyAxisAngle(v.camera.up, 0.03).add(v.controls.target);
    v.camera.lookAt(v.controls.target);
    await new Promise((done) => {
      v.addEventListener('frame', () => {
        out.push([v.renderer.info.render.triangles, b.cut.coarsenBelow, b.cut.dropBelow]);
        done();
      }, { once: true });
      v.invalidate();
    });
  }
  return out;
}"""
# What each batch draws against what the view wants, per slot, and the triangles of the last frame.
DRAWN = f"""() => {{
  const batches = {BATCHES};
  return {{ same: batches.every((b) => b.drawn.every((d, i) => d === b.wanted[i])),
    triangles: window.twinview.viewer.renderer.info.render.triangles }};
}}"""
# Where an element is drawn: its batch's slot and the level drawn there, and its levels.
LEVEL_OF = f"""(id) => {{
  for (const b of {BATCHES}) {{
    const slot = b.userData.ids.indexOf(id);
    if (slot >= 0) return {{ drawn: b.drawn[slot], coarsest: b.levelsAt(slot).length - 1 }};
  }}
  return null;
}}"""


@pytest.fixture(scope="module")
def plant(browser, tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    scene = small_parts_scene(PARTS)
    scene_dir = root / "plant"
    scene_dir.mkdir()
    write_glb(scene, scene_dir / "scene.glb", compress=True, lod=True)
    write_manifest(scene, scene_dir / "manifest.json", {})
    (root / "b.yaml").write_text(BINDINGS)
    with serve_scene(scene_dir, root / "b.yaml", root / "data") as live:
        yield live, browser, f"{live.url}/?scene=plant&budget={BUDGET}"


def _loaded(browser, url: str, settled: str = AT_REST):
    """The viewer on `url` with its levels of detail, the start view taken (after the first snapshot), `settled`."""
    page = open_viewer(browser, url)
    page.wait_for_function("window.twinview.app.twin?.lodsLoaded === true", timeout=WAIT_MS)
    page.wait_for_function(STARTED, timeout=WAIT_MS)
    page.wait_for_function(settled, timeout=WAIT_MS)
    return page


def test_a_moving_camera_draws_within_the_budget_and_full_detail_at_rest(plant):
    _, browser, url = plant
    page = _loaded(browser, url)
    at_rest = page.evaluate(DRAWN)
    assert at_rest["same"] and at_rest["triangles"] > 3 * BUDGET, at_rest  # full detail is well over the budget
    frames = page.evaluate(ORBIT, 12)
    assert all(triangles <= BUDGET for triangles, _, _ in frames), frames
    assert all(coarsen > 0 for _, coarsen, _ in frames), frames  # each frame made a cut: the budget is used
    assert max(t for t, _, _ in frames) > BUDGET / 4, frames  # and not by drawing next to nothing
    page.wait_for_function(AT_REST, timeout=WAIT_MS)
    back = page.evaluate(DRAWN)
    assert back["same"] and back["triangles"] > 3 * BUDGET, back
    assert page.evaluate("window.twinview.app.batches.cut.coarsenBelow") == 0
    assert page.errors == []
    page.close()


def test_a_live_recolour_shows_on_elements_drawn_at_their_coarse_level(plant, tmp_path: Path):
    live, browser, url = plant
    # Once moved, the camera does not rest within the test.
    page = _loaded(browser, url + "&rest=600000", DRAWN_STILL)
    page.evaluate(ORBIT, 1)
    for element in ("valve-00299", "pipe-00300"):  # instanced, merged
        level = page.evaluate(LEVEL_OF, element)
        assert level["coarsest"] > 0 and level["drawn"] == level["coarsest"], (element, level)
    before = {e: _rgb_at(page, e) for e in ("valve-00299", "pipe-00300")}
    live.ingest([{"element": e, "prop": "pressure", "value": 6.0} for e in before])
    for element, rgb in before.items():
        page.wait_for_function("id => window.twinview.colorOf(id) === '#ff0000'", arg=element, timeout=WAIT_MS)
        page.wait_for_function(DRAWN_STILL, timeout=WAIT_MS)
        after = _rgb_at(page, element)
        assert after[1] < rgb[1] - 60 and after[0] > after[1] + 100, (element, rgb, after)  # now red
        level = page.evaluate(LEVEL_OF, element)
        assert level["drawn"] == level["coarsest"], (element, level)  # still budgeted: the coarse level recoloured
    assert page.errors == []
    page.close()


def _rgb_at(page, element: str) -> np.ndarray:
    """The colour drawn at an element's centre on screen (a 3 x 3 pixel mean)."""
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#view canvas").screenshot())).convert("RGB"), np.float64)
    canvas = page.locator("#view canvas").bounding_box()
    at = page.evaluate("id => window.twinview.screenOf(id)", element)
    row, col = int(at["y"] - canvas["y"]), int(at["x"] - canvas["x"])
    return shot[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3).mean(axis=0)
