"""Streaming a tiled scene in the browser (web_client/src/tiles.js): a scene of 240 elements along a line, cut
into tiles of 20 (the threshold forced low), served by the real server to Debian's Chromium."""

from __future__ import annotations

import pytest

from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from scene.export.tiles import write_tiles
from scene.model import Element, InputRecord, Material, Mesh, Scene
from tests.scene_factory import box_primitive, translation
from tests.web_helpers import WAIT_MS, build_client, chromium_browser, open_viewer, serve_scene

pytestmark = [pytest.mark.browser]

COUNT = 240
PER_TILE = 20
FAR = f"el-{COUNT - 1:05d}"  # at the far end of the line, in the last tile
BINDINGS = f"""\
version: 1
default_layer: operations
bindings:
  - {{element: {FAR}, prop: pressure, unit: bar, range: [0, 10], key: far.pressure}}
  - {{element: el-00000, prop: pressure, unit: bar, range: [0, 10], key: near.pressure}}
layers:
  operations:
    rules:
      - {{kind: ramp, element: {FAR}, prop: pressure, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}}
      - {{kind: ramp, element: el-00000, prop: pressure, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}}
"""
# Every element hit by a ray straight down through its box's centre: its twin id, or what was hit instead.
PICK_ALL = """() => { const tv = window.twinview, b = tv.app.batches, r = tv.viewer.raycaster, out = {};
  for (const id of b.elements.keys()) {
    const c = b.boxOf(id).getCenter(tv.viewer.camera.position.clone());
    r.ray.origin.set(c.x, 50, c.z); r.ray.direction.set(0, -1, 0);
    const hit = tv.viewer.pickRay(r); out[id] = hit ? b.idOf(hit) : null; }
  return out; }"""


def line_scene() -> Scene:
    """Site > line > COUNT boxes 2 m apart along x."""
    scene = Scene()
    scene.inputs.append(InputRecord("line.ifc", "0" * 64, "ifc", "test"))
    grey = scene.add_material(Material("grey", (0.6, 0.6, 0.6, 1.0)))
    scene.meshes["box"] = Mesh("box", [box_primitive((1.0, 1.0, 1.0), grey)])
    scene.add(Element("site", "Site", "IfcSite"))
    scene.add(Element("line", "Line", "IfcSpatialZone", "site"))
    for i in range(COUNT):
        scene.add(Element(f"el-{i:05d}", f"Box {i}", "IfcPump", "line", translation(2.0 * i, 0.5, 0), "box"))
    return scene


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    build_client()
    root = tmp_path_factory.mktemp("tiles")
    folder = root / "line"
    folder.mkdir()
    scene = line_scene()
    write_glb(scene, folder / "scene.glb", compress=True)
    write_manifest(scene, folder / "manifest.json", {})
    index = write_tiles(scene, folder, compress=True, per_tile=PER_TILE)
    (root / "line.bindings.yaml").write_text(BINDINGS)
    with serve_scene(folder, root / "line.bindings.yaml", root / "data") as srv, chromium_browser() as browser:
        yield srv, browser, len(index.tiles)


def test_first_frame_comes_before_the_tiles_and_every_element_is_picked_by_its_twin_id(tiled):
    srv, browser, tiles = tiled
    page = open_viewer(browser, f"{srv.url}/?scene=line")
    assert page.evaluate("window.twinview.app.loader") == "tiles"
    page.wait_for_function("window.twinview.app.tiles.complete", timeout=WAIT_MS)
    first = page.evaluate("performance.getEntriesByName('twinview:first-frame')[0].startTime")
    arrivals = page.evaluate("window.twinview.app.tiles.arrivals.map((a) => a.at)")
    assert len(arrivals) == tiles >= COUNT // PER_TILE
    assert first < max(arrivals), "the first frame waited for every tile"
    # The catalogue knew every element before its tile came: the tree and names are whole from the start.
    assert page.evaluate("window.twinview.app.catalog.byId.size") == COUNT + 2
    picked = page.evaluate(PICK_ALL)
    assert len(picked) == COUNT
    assert {eid: got for eid, got in picked.items() if got != eid} == {}
    # Leaving the scene (as loading another does) frees every tile and the coarse level, without an error.
    page.evaluate("window.twinview.app.scope.abort()")
    assert (
        page.evaluate("window.twinview.app.batches.group.children.length + window.twinview.app.batches.tiles.size") == 0
    )
    assert page.errors == []
    page.close()


def test_a_late_tile_takes_the_live_colour_and_a_tiny_budget_lets_far_tiles_go(tiled):
    srv, browser, _ = tiled
    page = open_near_with_a_tiny_budget(browser, srv.url)
    page.wait_for_function(
        f"window.twinview.app.batches.elements.has('el-00000') && !window.twinview.app.batches.elements.has('{FAR}')",
        timeout=WAIT_MS,
    )
    # A reading for an element whose tile is not loaded: the state holds it until the tile comes.
    srv.ingest([{"key": "far.pressure", "value": 6}])
    page.wait_for_function(f"window.twinview.state.visuals.get('{FAR}')?.color === '#ff0000'", timeout=WAIT_MS)
    assert page.evaluate(f"window.twinview.colorOf('{FAR}')") == ""
    x = 2.0 * (COUNT - 1)
    page.evaluate(f"""() => {{ const tv = window.twinview, V = tv.viewer.camera.position.constructor;
      tv.viewer.flyTo(new V({x}, 4, 6), new V({x}, 0, 0), 0); }}""")
    page.wait_for_function(f"window.twinview.colorOf('{FAR}') === '#ff0000'", timeout=WAIT_MS)
    # The near tile went to make room: its elements left the batches, its impostors are drawn again.
    page.wait_for_function("!window.twinview.app.batches.elements.has('el-00000')", timeout=WAIT_MS)
    stats = page.evaluate("(() => { const t = window.twinview.app.tiles; return [t.loaded, t.unloads]; })()")
    assert stats[0] == 1 and stats[1] >= 1
    # Picking works on the tile that arrived, with the twin id.
    assert page.evaluate(PICK_ALL)[FAR] == FAR
    # The server is told the area held (the far tile's box), once the tiles have settled.
    page.wait_for_function(
        f"(window.twinview.session.interest?.box?.[0][0] ?? 0) > {x - 2.0 * PER_TILE}", timeout=WAIT_MS
    )
    # Outside that area the server sends nothing: a reading for the near element does not reach this viewer...
    srv.ingest([{"key": "near.pressure", "value": 6}])
    srv.ingest([{"key": "far.pressure", "value": 3}])  # after it: once this one is in, the other would be too
    page.wait_for_function(f"window.twinview.state.visuals.get('{FAR}')?.color !== '#ff0000'", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.state.visuals.get('el-00000')?.color ?? null") is None
    # Selecting an element of a tile that is not loaded (as the tree or a search does) brings its tile and flies there.
    page.evaluate("window.twinview.select('el-00000', true)")
    page.wait_for_function(
        "window.twinview.app.batches.elements.has('el-00000') && !window.twinview.viewer.flying", timeout=WAIT_MS
    )
    # ... until its tile is held: the new interest's snapshot brings its live colour.
    page.wait_for_function("window.twinview.colorOf('el-00000') === '#ff0000'", timeout=WAIT_MS)
    at = page.evaluate("window.twinview.screenOf('el-00000')")
    assert page.evaluate(f"window.twinview.pick({at['x']}, {at['y']})") == "el-00000"
    assert page.evaluate(f"window.twinview.app.batches.elements.has('{FAR}')") is False  # gone for the budget
    # No tile came and went over and over: near, far, near again (and at most a few on the way).
    assert page.evaluate("window.twinview.app.tiles.loads") <= 6
    assert page.errors == []
    page.close()


# Whether the camera frames a box (lo, hi) in model coordinates: every corner inside the view (NDC within ±1).
FRAMES = """([lo, hi]) => { const tv = window.twinview, cam = tv.viewer.camera, m = tv.app.batches.group.matrixWorld;
  cam.updateMatrixWorld();
  for (const x of [lo[0], hi[0]]) for (const y of [lo[1], hi[1]]) for (const z of [lo[2], hi[2]]) {
    const p = new cam.position.constructor(x, y, z).applyMatrix4(m).project(cam);
    if (Math.abs(p.x) > 1.001 || Math.abs(p.y) > 1.001) return false; }
  return true; }"""


def test_home_and_fit_frame_what_is_not_loaded_by_the_index_bounds(tiled):
    srv, browser, tiles = tiled
    page = open_near_with_a_tiny_budget(browser, srv.url)
    page.wait_for_function("window.twinview.app.tiles.loaded === 1", timeout=WAIT_MS)
    whole = page.evaluate("[window.twinview.app.tiles.index.lo, window.twinview.app.tiles.index.hi]")
    assert not page.evaluate(FRAMES, whole)
    # Home frames the whole model, not the one tile loaded.
    page.keyboard.press("Home")
    page.wait_for_function("!window.twinview.viewer.flying", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.app.tiles.complete") is False
    assert page.evaluate(FRAMES, whole)
    # A tile whose elements are all hidden does not count: with the far half hidden, Home frames the near half.
    half = tiles // 2
    page.evaluate(f"""() => {{ const tv = window.twinview;
      tv.visibility.hide([...tv.app.catalog.byId.values()].filter((r) => r.tile >= {half}).map((r) => r.id)); }}""")
    page.keyboard.press("Home")
    page.wait_for_function("!window.twinview.viewer.flying", timeout=WAIT_MS)
    near = page.evaluate(f"""(() => {{ const t = window.twinview.app.tiles.index.tiles.slice(0, {half});
      return [[0, 1, 2].map((k) => Math.min(...t.map((x) => x.lo[k]))),
              [0, 1, 2].map((k) => Math.max(...t.map((x) => x.hi[k])))]; }})()""")
    assert page.evaluate(FRAMES, near)
    assert not page.evaluate(FRAMES, whole)
    page.evaluate("window.twinview.visibility.showAll()")
    # Fit of a selected element whose tile is not loaded frames its tile (the index's box of it).
    last = tiles - 1
    page.evaluate(
        "window.twinview.viewer.flyTo(new window.twinview.viewer.camera.position.constructor(0, 4, 6), "
        "new window.twinview.viewer.camera.position.constructor(0, 0, 0), 0)"
    )
    page.wait_for_function(
        f"window.twinview.app.tiles.tiles[{last}].state !== 'loaded' && window.twinview.app.catalog", timeout=WAIT_MS
    )
    loaded = page.evaluate(f"""() => {{ const tv = window.twinview; tv.app.twin.select('{FAR}');
      document.querySelector('#btn-fit').click(); return tv.app.batches.elements.has('{FAR}'); }}""")
    assert loaded is False
    page.wait_for_function("!window.twinview.viewer.flying", timeout=WAIT_MS)
    box = page.evaluate(f"(t => [t.lo, t.hi])(window.twinview.app.tiles.index.tiles[{last}])")
    assert page.evaluate(FRAMES, box)
    target = page.evaluate("window.twinview.viewer.controls.target.toArray()")
    assert abs(target[0] - (box[0][0] + box[1][0]) / 2) < 1.0
    assert page.errors == []
    page.close()


def open_near_with_a_tiny_budget(browser, url: str):
    """The line of tiles with a budget smaller than one tile (one tile at a time), the camera at its near end."""
    page = open_viewer(browser, f"{url}/?scene=line&tile_budget_mb=0.000001")
    page.evaluate(
        "window.twinview.viewer.flyTo(new window.twinview.viewer.camera.position.constructor(0, 4, 6), "
        "new window.twinview.viewer.camera.position.constructor(0, 0, 0), 0)"
    )
    return page
