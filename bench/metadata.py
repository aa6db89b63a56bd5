"""Element metadata and late joiners at plant size: what a client fetches before its tree, search and properties
work, and what a late joiner's snapshot and deltas weigh, whole scene against an interest (PROTOCOL.md §15).

    .venv/bin/python -m bench.metadata                         # 1 000, 20 000 and 100 000 elements
    .venv/bin/python -m bench.metadata --elements 1000 --no-browser

Per size, a canonical `Scene` is generated in Python (a plant: site > 10 areas > units of 100 elements, 12
shared meshes, 2 property sets per element, names like "Pump P-00123") and exported as `twinview build
--compress` does (`scene.glb` with meshopt, `manifest.json`); every 10th element has a bound `temperature` with a
ramp rule colouring it on the layer `operations`, and every binding holds a value. The real server serves it.

- bytes: `manifest.json` (what the web client downloaded and parsed whole before its panels worked), the GLB's
  JSON chunk and its share per element, and the answers the client now asks for instead (a tree page, a search,
  one element's record);
- the server's answer times for those (median of 20 over HTTP on localhost);
- a late joiner (raw WebSocket, JSON): snapshot bytes seeing everything, one unit (a box around 100 elements),
  one area's elements listed (capped at MAX_INTEREST_ELEMENTS); then the delta bytes each receives while every
  binding gets a new value;
- in headless Chromium (software GL), unless --no-browser: from navigation start, the first frame and the tree's
  first rows, and where the start-up goes (HTML, the app's scripts, WebGL context, app evaluated, the model's
  bytes or tile index on the main thread, read, batched, first frame: the page's own performance marks); the
  time a search and a properties panel take to answer; and, for the client before this change,
  what downloading and parsing `manifest.json` in the page costs after the first frame.

Results: stdout, bench/results/metadata.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import websockets

from bench.web import RESULTS, VIEWPORT
from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from scene.export.tiles import TILES_DIR, write_tiles
from scene.model import Element, InputRecord, Material, Mesh, Scene
from tests.scene_factory import box_primitive, sphere_primitive, translation
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, _predicates_without_eval, build_client, serve_scene
from viewer_server import protocol as p

AREAS = 10
UNIT = 100  # elements per unit
BOUND_EVERY = 10
CLASSES = ["IfcPump", "IfcValve", "IfcPipeSegment", "IfcTank", "IfcFlowMeter", "IfcSensor"]
PITCH = 2.0
LOAD_TIMEOUT_MS = 900_000
HTTP_RUNS = 20


def plant_scene(count: int) -> Scene:
    """`count` elements (plus site, areas and units) on a grid, area by area, unit by unit."""
    scene = Scene()
    scene.inputs.append(InputRecord("plant.ifc", "0" * 64, "ifc", "bench.metadata"))
    mats = [scene.add_material(Material(c, (0.3 + 0.1 * i, 0.5, 0.7 - 0.08 * i, 1.0))) for i, c in enumerate(CLASSES)]
    for k in range(12):
        prim = (
            box_primitive((0.6 + 0.05 * k, 0.8, 0.6), mats[k % 6]) if k % 3 else sphere_primitive(0.4, 16, mats[k % 6])
        )
        scene.meshes[f"kind{k}"] = Mesh(f"kind{k}", [prim])
    scene.add(Element("site", "Plant", "IfcSite"))
    per_area = area_size(count)
    side = int(np.ceil(np.sqrt(UNIT)))
    for i in range(count):
        area, unit = i // per_area, i // UNIT
        if i % per_area == 0:
            scene.add(Element(f"area-{area}", f"Area {area + 1}", "IfcSpatialZone", "site"))
        if i % UNIT == 0:
            scene.add(Element(f"unit-{unit}", f"Unit {unit + 1}", "IfcSpatialZone", f"area-{area}"))
        cls = CLASSES[i % len(CLASSES)]
        x, z = unit_origin(unit)
        j = i % UNIT
        m = translation(x + (j % side) * PITCH, 0.4, z + (j // side) * PITCH)
        props = {
            "Pset_Identity": {"Tag": f"{cls[3]}-{i:05d}", "Manufacturer": "ACME", "Model": f"M{i % 37}"},
            "Pset_Design": {"NominalFlow": 12.5 + i % 7, "RatedPower": 15.0, "Material": "Steel"},
        }
        units = {"Pset_Design": {"NominalFlow": "m3/h", "RatedPower": "kW"}}
        scene.add(Element(element(i), name_of(i), cls, f"unit-{unit}", m, f"kind{i % 12}", props, units=units))
    return scene


def area_size(count: int) -> int:
    """Elements per area: whole units, so that a unit never spans two areas."""
    return -(-count // (AREAS * UNIT)) * UNIT


def element(i: int) -> str:
    return f"E{i:06d}"


def name_of(i: int) -> str:
    """ "Pump P-00123": the class without "Ifc", and a tag."""
    cls = CLASSES[i % len(CLASSES)]
    return f"{cls[3:]} {cls[3]}-{i:05d}"


def unit_origin(unit: int) -> tuple[float, float]:
    """Units on a grid of their own, each a square of UNIT elements with a gap around it."""
    per_row = 32
    size = (int(np.ceil(np.sqrt(UNIT))) + 2) * PITCH
    return (unit % per_row) * size, (unit // per_row) * size


def bindings(count: int) -> str:
    bound = range(0, count, BOUND_EVERY)
    lines = ["version: 1", "default_layer: operations", "bindings:"]
    lines += [f"  - {{element: {element(i)}, prop: temperature, unit: degC, key: t{i}}}" for i in bound]
    lines += ["layers:", "  operations:", "    rules:"]
    lines += [
        f"      - {{kind: ramp, element: {element(i)}, prop: temperature, min: 0, max: 100,"
        " colors: ['#0000ff', '#ff0000']}"
        for i in bound
    ]
    return "\n".join(lines) + "\n"


def glb_json(path: Path) -> dict:
    with open(path, "rb") as f:
        head = f.read(20)
        length = struct.unpack("<I", head[12:16])[0]
        return orjson.loads(f.read(length))


def sizes(directory: Path, scene: Scene) -> dict:
    """What the metadata costs in the files: per node in the GLB's JSON, against a feature-id layout's estimate."""
    doc = glb_json(directory / "scene.glb")
    nodes = doc["nodes"]
    node_bytes = len(orjson.dumps(nodes))
    extras_bytes = sum(len(orjson.dumps(n.get("extras", {}))) + len('"extras":,') for n in nodes)
    return {
        "manifest_bytes": (directory / "manifest.json").stat().st_size,
        "glb_bytes": (directory / "scene.glb").stat().st_size,
        "glb_json_bytes": len(orjson.dumps(doc)),
        "node_json_per_element": node_bytes / len(nodes),
        "extras_json_per_element": extras_bytes / len(nodes),
        **feature_table_estimate(scene),
        "elements": len(scene.elements),
    }


def feature_table_estimate(scene: Scene) -> dict:
    """The same id, name and class as EXT_structural_metadata would hold them: a binary property table (strings
    with 4-byte offsets, the class as an 8-bit enum), and the EXT_mesh_features id each vertex then carries (2
    bytes up to 65 535 features, else 4) once elements are merged into shared vertex buffers."""
    elements = list(scene.elements.values())
    table = sum(len(e.id.encode()) + len(e.name.encode()) + 2 * 4 + 1 for e in elements)
    id_bytes = 2 if len(elements) <= 0xFFFF else 4
    vertices = sum(
        sum(len(prim.positions) for prim in scene.meshes[e.mesh].primitives) for e in elements if e.mesh is not None
    )
    return {
        "feature_table_per_element": table / len(elements),
        "feature_ids_per_element": vertices * id_bytes / len(elements),
    }


async def publish_all(http: aiohttp.ClientSession, url: str, count: int, value: float) -> None:
    readings = [{"key": f"t{i}", "value": value + i % 50} for i in range(0, count, BOUND_EVERY)]
    for k in range(0, len(readings), p.MAX_BATCH_READINGS):
        body = orjson.dumps({"readings": readings[k : k + p.MAX_BATCH_READINGS]})
        async with http.post(f"{url}/api/ingest", data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200, await r.text()


async def api_costs(http: aiohttp.ClientSession, url: str, scene: str, count: int) -> dict:
    """Median answer time (ms) and bytes of what the client asks for instead of the manifest."""
    api = f"{url}/api/scenes/{scene}"
    probes = {
        f"tree page (a unit: {UNIT} children)": f"{api}/tree?parent=unit-0",
        "tree roots": f"{api}/tree",
        "search, 1 hit (brief)": f"{api}/elements?brief=1&q={name_of(count - 1).replace(' ', '%20')}",
        "search, 200 hits (brief)": f"{api}/elements?brief=1&q=valve",
        "one element's record": f"{api}/elements/{element(count // 2)}",
    }
    out = {}
    for name, probe in probes.items():
        times, size = [], 0
        for _ in range(HTTP_RUNS):
            t0 = time.perf_counter()
            async with http.get(probe) as r:
                body = await r.read()
                assert r.status == 200, body
            times.append((time.perf_counter() - t0) * 1000)
            size = len(body)
        out[name] = {"ms": statistics.median(times), "bytes": size}
    return out


async def late_joiners(url: str, scene: str, count: int, live) -> dict:
    """Snapshot and delta bytes of three late joiners: everything, one unit's box, one area's elements listed."""
    x, z = unit_origin(0)
    side = int(np.ceil(np.sqrt(UNIT)))
    box = ((x - 0.5, -1.0, z - 0.5), (x + side * PITCH, 2.0, z + side * PITCH))
    per_area = area_size(count)
    listed = [element(i) for i in range(min(per_area, p.MAX_INTEREST_ELEMENTS))]
    kinds = {
        "whole scene": None,
        "one unit (box)": p.Interest(box=box),
        "one area's ids listed": p.Interest(elements=listed),
    }
    sockets = {}
    out: dict[str, dict] = {}
    for name, interest in kinds.items():
        ws = await websockets.connect(
            f"{url.replace('http', 'ws')}/ws/{scene}", subprotocols=[p.SUBPROTOCOL_JSON], max_size=1 << 30
        )
        hello = p.Hello("bench", "0", interest=interest)
        await ws.send(p.encode(hello, "json").decode())
        await ws.recv()  # welcome
        snapshot = await ws.recv()
        snap = orjson.loads(snapshot)
        out[name] = {
            "snapshot_bytes": len(snapshot),
            "props": len(snap["props"]),
            "visuals": len(snap["visuals"]),
            "hello_bytes": len(p.encode(hello, "json")),
            "ids": len(interest.elements or ()) if interest is not None else 0,
        }
        sockets[name] = (ws, snap["seq"])
    async with aiohttp.ClientSession() as http:
        await publish_all(http, url, count, 40.0)
    target = live.server.live.hub.seq
    for name, (ws, seq) in sockets.items():
        received = 0
        while seq < target:
            frame = await asyncio.wait_for(ws.recv(), 60)
            msg = orjson.loads(frame)
            if msg["type"] == "delta":
                received += len(frame)
                seq = msg["last"]
        out[name]["delta_bytes"] = received
        await ws.close()
    return out


# Runs in the page once the model is in: how long search and properties take to answer, and what the client
# before this change did after its first frame (download the manifest, parse it whole).
IN_PAGE = r"""async ([id, query, manifestUrl]) => {
  const tw = window.twinview;
  const t0 = performance.now();
  tw.select(id);
  const until = (sel) => new Promise((r) => {
    const poll = () => (document.querySelector(sel) ? r() : setTimeout(poll, 5));
    poll();
  });
  await until('#properties details.pset');
  const properties = performance.now() - t0;
  const input = document.querySelector('#search');
  const t1 = performance.now();
  input.value = query;
  input.dispatchEvent(new Event('input'));
  await until('#tree .results li[data-id]');
  const search = performance.now() - t1;
  // What the client fetched for its panels (the API's answers), before the old client's download below.
  const apiBytes = performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/scenes/'))
    .reduce((sum, e) => sum + e.encodedBodySize, 0);
  const t2 = performance.now();
  const res = await fetch(manifestUrl);
  const text = await res.text();
  const fetched = performance.now() - t2;
  const t3 = performance.now();
  JSON.parse(text);
  const parsed = performance.now() - t3;
  const mark = (n) => performance.getEntriesByName(n)[0]?.startTime ?? null;
  // A tiled scene: when its first and last tile joined the batches (all of them fit the default budget here).
  const tiles = tw.app.tiles;
  if (tiles) await new Promise((r) => { const poll = () => (tiles.complete ? r() : setTimeout(poll, 20)); poll(); });
  const arrivals = tiles ? tiles.arrivals.map((a) => a.at) : [];
  // The frame with the whole model in, seen whole (tiled: the draw calls of every tile).
  const frame = await tw.frameTime(5);
  // Where the start-up goes, ms from navigation: the page's HTML in, the app's scripts in (app.js and the chunks
  // index.html preloads; not those imported later), the WebGL context made, the app evaluated, the model's bytes
  // (a tiled scene: its index) on the main thread, read, batched, the first frame.
  const nav = performance.getEntriesByType('navigation')[0];
  const scripts = performance.getEntriesByType('resource')
    .filter((e) => /\/(app|main)\.js$/.test(e.name) || (e.initiatorType === 'link' && e.name.endsWith('.js')));
  const startup = { html: nav.responseEnd,
    scripts: scripts.length ? Math.max(...scripts.map((e) => e.responseEnd)) : null,
    gl: mark('twinview:gl'), app: mark('twinview:app'), fetched: mark('twinview:fetched'), read: mark('twinview:read'),
    batched: mark('twinview:batched'), firstFrame: mark('twinview:first-frame') };
  return { startup,
           properties, search, manifestFetch: fetched, manifestParse: parsed, firstFrame: mark('twinview:first-frame'),
           treeRows: mark('bench:tree'), api_bytes: apiBytes, ready: (await tw.ready).loadMs, loader: tw.app.loader,
           firstTile: arrivals.length ? Math.min(...arrivals) : null,
           lastTile: arrivals.length ? Math.max(...arrivals) : null,
           jsHeap: performance.memory?.usedJSHeapSize ?? null, frameMs: frame.meanMs, drawCalls: frame.drawCalls };
}"""


def browser_run(url: str, scene: str, count: int) -> dict:
    from playwright.sync_api import sync_playwright

    _predicates_without_eval()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        # The tree's first rows, as a mark on the page's own clock.
        page.add_init_script("""new MutationObserver((_, obs) => {
          if (document.querySelector('#tree li[data-id]')) { performance.mark('bench:tree'); obs.disconnect(); }
        }).observe(document, { childList: true, subtree: true });""")
        page.goto(f"{url}/?scene={scene}", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function("() => window.twinview && window.twinview.app.tree", timeout=LOAD_TIMEOUT_MS)
        got = page.evaluate(IN_PAGE, [element(count - 1), name_of(count - 1), f"/scenes/{scene}/manifest.json"])
    return got


def bench_size(count: int, browser: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="twinview-metadata-") as tmp:
        directory = Path(tmp) / f"plant-{count}"
        directory.mkdir()
        t0 = time.perf_counter()
        scene = plant_scene(count)
        stats = write_glb(scene, directory / "scene.glb", compress=True)
        write_manifest(scene, directory / "manifest.json", {"glb": stats})
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = write_tiles(scene, directory, compress=True)
        tiles_s = time.perf_counter() - t0
        (Path(tmp) / "b.yaml").write_text(bindings(count))
        result = {"export_s": export_s, "tiles_s": tiles_s, "tiles": len(index.tiles), **sizes(directory, scene)}
        result["tile_bytes"] = sum(t.bytes for t in index.tiles)
        result["tile_index_bytes"] = (directory / TILES_DIR / "tiles.json").stat().st_size
        result["tile_catalog_bytes"] = (directory / TILES_DIR / "elements.json").stat().st_size
        # The same scene as one file (its tiles put aside: the server then answers 204 for the index), then tiled.
        tiles_dir, aside = directory / TILES_DIR, Path(tmp) / "tiles-aside"
        tiles_dir.rename(aside)
        with serve_scene(directory, Path(tmp) / "b.yaml", Path(tmp) / "data") as live:
            print(f"  exported in {export_s:.1f} s, tiles in {tiles_s:.1f} s, served", file=sys.stderr)
            if browser:  # first: Playwright's sync API hangs in this thread once asyncio.run has run in it
                result["browser"] = browser_run(live.url, directory.name, count)
                print("  browser measured (single file)", file=sys.stderr)
            result.update(asyncio.run(_server_side(live, directory.name, count)))
        aside.rename(tiles_dir)
        if browser:
            with serve_scene(directory, Path(tmp) / "b.yaml", Path(tmp) / "data-tiled") as live:
                result["browser_tiled"] = browser_run(live.url, directory.name, count)
                print("  browser measured (tiled)", file=sys.stderr)
        return result


async def _server_side(live, scene_id: str, count: int) -> dict:
    async with aiohttp.ClientSession() as http:
        await publish_all(http, live.url, count, 20.0)
        api = await api_costs(http, live.url, scene_id, count)
    return {"api": api, "joiners": await late_joiners(live.url, scene_id, count, live)}


def kb(n: float) -> str:
    return f"{n / 1024:,.1f} kB" if n < 1 << 20 else f"{n / (1 << 20):,.2f} MB"


def table(results: dict[int, dict]) -> str:
    sizes_ = list(results)
    head = "| | " + " | ".join(f"{n:,}" for n in sizes_) + " |\n|---|" + "---:|" * len(sizes_) + "\n"
    rows = [
        ("manifest.json (the old client's download)", lambda r: kb(r["manifest_bytes"])),
        ("GLB, whole (meshopt)", lambda r: kb(r["glb_bytes"])),
        ("GLB JSON chunk", lambda r: kb(r["glb_json_bytes"])),
        ("… per element: node JSON", lambda r: f"{r['node_json_per_element']:.0f} B"),
        ("… of which extras {id, name, class}", lambda r: f"{r['extras_json_per_element']:.0f} B"),
        ("feature ids instead: property table per element", lambda r: f"{r['feature_table_per_element']:.0f} B"),
        ("… + feature id per vertex, per element", lambda r: f"{r['feature_ids_per_element']:.0f} B"),
    ]
    for probe in next(iter(results.values()))["api"]:
        rows.append((f"API: {probe}", lambda r, k=probe: f"{kb(r['api'][k]['bytes'])}, {r['api'][k]['ms']:.1f} ms"))
    for joiner in next(iter(results.values()))["joiners"]:
        key = joiner
        rows.append(
            (
                f"late joiner, {joiner}: snapshot",
                lambda r, k=key: _joiner(r, k, "snapshot_bytes"),
            )
        )
        rows.append(("… deltas while every binding changes once", lambda r, k=key: _joiner(r, k, "delta_bytes")))
    if all("browser" in r for r in results.values()):
        b = functools.partial(_seconds, "browser")
        rows += [
            ("browser: first frame (from navigation)", b("firstFrame", 1000)),
            (f"browser: start-up ({' · '.join(STARTUP)})", _startup("browser")),
            ("browser: tree rows shown (from navigation)", b("treeRows", 1000)),
            ("browser: properties answer (select → psets)", b("properties", 1000)),
            ("browser: search answer (typed → hits)", b("search", 1000)),
            ("browser: metadata fetched by the client (API answers)", lambda r: kb(r["browser"]["api_bytes"])),
            ("old client, after its first frame: manifest download", b("manifestFetch", 1000)),
            ("old client: manifest JSON.parse", b("manifestParse", 1000)),
            ("browser: panels ready (`twinview.ready`, from navigation)", b("ready", 1000)),
            ("browser: frame, whole model in view (draw calls)", _frame("browser")),
        ]
    if all("browser_tiled" in r for r in results.values()):
        t = functools.partial(_seconds, "browser_tiled")
        rows += [
            ("tiles: count · all tiles' bytes", lambda r: f"{r['tiles']} · {kb(r['tile_bytes'])}"),
            (
                "tiles: index · catalogue (elements.json)",
                lambda r: f"{kb(r['tile_index_bytes'])} · {kb(r['tile_catalog_bytes'])}",
            ),
            ("tiles: written in (after the GLB)", lambda r: f"{r['tiles_s']:.1f} s"),
            ("tiled browser: first frame (impostors)", t("firstFrame", 1000)),
            (f"tiled browser: start-up ({' · '.join(STARTUP)})", _startup("browser_tiled")),
            ("tiled browser: first tile in", t("firstTile", 1000)),
            ("tiled browser: panels ready (`twinview.ready`)", t("ready", 1000)),
            ("tiled browser: tree rows shown", t("treeRows", 1000)),
            ("tiled browser: properties answer", t("properties", 1000)),
            ("tiled browser: search answer", t("search", 1000)),
            ("tiled browser: last tile in (whole model)", t("lastTile", 1000)),
            ("tiled browser: frame, whole model in view (draw calls)", _frame("browser_tiled")),
        ]
    return head + "".join(f"| {name} | " + " | ".join(f(results[n]) for n in sizes_) + " |\n" for name, f in rows)


def _seconds(run: str, key: str, per: float = 1.0) -> Callable[[dict], str]:
    """A table cell: the browser run's `key` (ms) in seconds, or a dash when it has none."""
    return lambda r: f"{r[run][key] / per:,.2f} s" if r[run][key] is not None else "—"


# The start-up split's steps (IN_PAGE `startup`), in order.
STARTUP = ("html", "scripts", "gl", "app", "fetched", "read", "batched", "firstFrame")


def _startup(run: str) -> Callable[[dict], str]:
    """A table cell: when each start-up step was done, s from navigation (a dash for a step not marked)."""
    return lambda r: " · ".join(
        "—" if r[run]["startup"][k] is None else f"{r[run]['startup'][k] / 1000:.2f}" for k in STARTUP
    )


def _frame(run: str) -> Callable[[dict], str]:
    return lambda r: f"{r[run]['frameMs']:,.0f} ms ({r[run]['drawCalls']})"


def _joiner(r: dict, key: str, field: str) -> str:
    entry = r["joiners"][key]
    if field != "snapshot_bytes":
        return kb(entry[field])
    return kb(entry[field]) + f" ({entry['props']} props" + (f", {entry['ids']} ids)" if entry["ids"] else ")")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, nargs="+", default=[1000, 20000, 100000])
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    if not args.no_browser:
        build_client()
    results = {}
    for n in args.elements:
        print(f"{n} elements…", file=sys.stderr)
        results[n] = bench_size(n, not args.no_browser)
    text = table(results)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "metadata.md").write_text(text)
    (RESULTS / "metadata.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
