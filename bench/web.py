"""Browser client benchmark: the TwinView viewer against a plain three.js GLTFLoader page, same GLB.

    .venv/bin/python -m bench.web                      # 10 000 synthetic elements (~1 M triangles) + duplex.ifc
    .venv/bin/python -m bench.web --elements 1000 --ifc PATH --runs 3 --frames 15
    .venv/bin/python -m bench.web --elements 0 --runs 9 --contenders viewer,plain   # duplex.ifc start-up only
    .venv/bin/python -m bench.web --baseline /tmp/old/web_client/dist   # also an older client, built apart

Two scenes: (a) a generated plant of ``--elements`` cylinders (tanks, pumps, pipes, valves) of 100
triangles each with two coarser levels in ``mesh.extras.lods`` (as ``twinview build --lod`` writes
them), and (b) the IFC file built by our pipeline (``twinview build --lod``). Both are served by the
real server (``viewer_server.serve.running_server``); the plain page (``bench/plain_gltf.html``, its
JS bundled from web_client/node_modules by esbuild like the viewer's) loads the same GLB from it with
``GLTFLoader`` and ``scene.add(gltf.scene)``, default (glTF PBR) materials, the same lights, canvas size
and camera framing. Both render on request; headless Debian Chromium, SwiftShader (software GL).

Each run is a fresh browser context; the two contenders alternate (viewer first on odd runs, plain
first on even ones), after one unmeasured warm-up of each. Per run:

- draw calls: ``renderer.info.render.calls`` of a frame;
- TTFF: navigation start to the first rendered frame with the model (a ``performance`` mark);
- frame time: ``--frames`` frames, each requested after a small camera orbit and timed from the request
  to the end of the frame, synchronised with a 1-pixel ``readPixels`` (so rasterisation is included);
  the run's median;
- JS heap: CDP ``Runtime.getHeapUsage`` after ``HeapProfiler.collectGarbage``: the used V8 heap (typed
  array backing stores, i.e. geometry buffers, live outside it);
- recolour latency (viewer): a ramp rule colours one element from a reading; each ``POST /api/ingest``
  flips it between blue and red. Latency = from the WebSocket message carrying the delta (timestamp in
  a wrapper around ``WebSocket``, ahead of the client's own handler) to the end of the first rendered
  frame whose colour data shows the new colour, in frames (1 = the next frame) and ms;
- start-up phases: the page's ``performance`` marks (see PHASES), reported in a second table.

The table (medians over runs; ranges in brackets) goes to stdout and bench/results/web.md, raw numbers
to bench/results/web.json, screenshots of the first run to bench/results/web-*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, _predicates_without_eval, _write_glb, build_client, serve_scene

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WEB = ROOT / "web_client"
DEFAULT_IFC = ROOT.parent / "shared" / "data" / "ifc" / "duplex.ifc"
VIEWPORT = {"width": 1280, "height": 800}
LOAD_TIMEOUT_MS = 300_000
RECOLOURS = 8  # ingests per viewer run for the recolour latency
SEGMENTS = (26, 10, 5)  # cylinder segments of the full mesh and its two LODs: 100, 36 and 16 triangles

# Classes of the synthetic plant: material colour, upright or lying, radius and length ranges (m).
PLANT = {
    "IfcTank": ((0.62, 0.66, 0.58), "y", (0.35, 0.55), (1.0, 2.2)),
    "IfcPump": ((0.55, 0.60, 0.68), "y", (0.25, 0.40), (0.5, 0.9)),
    "IfcPipeSegment": ((0.70, 0.70, 0.72), "x", (0.10, 0.20), (1.2, 1.45)),
    "IfcValve": ((0.68, 0.58, 0.52), "z", (0.15, 0.30), (0.5, 0.9)),
}
TARGET_PROP = "pressure"
# What is compared: key -> (label, viewer URL suffix). The viewer picks MSAA by itself (off on software
# GL); "msaa" forces it on, like the plain page has it; "pbr" is the viewer before the cheap shading path
# (glTF PBR materials on multi-draw BatchedMeshes, MSAA on).
CONTENDERS = {
    "viewer": ("**TwinView viewer**", ""),
    "viewer-msaa": ("viewer, MSAA forced on", "&msaa=1"),
    # The look of issue 12: feature edges on, and the environment map as shipped: made for models with glTF PBR
    # materials (which alone read it), and not on a software GL (where prefiltering stalls its GPU process).
    "viewer-look": ("viewer, edges on + environment as shipped", "&edges=1"),
    "viewer-pbr": ("viewer, PBR BatchedMesh path (before)", "&shading=pbr&msaa=1"),
    # The frame's triangle budget (web_client/src/frame_budget.js) off: every frame at full detail, moving or not.
    "viewer-nobudget": ("viewer, no triangle budget", "&budget=0"),
    "plain": ("plain GLTFLoader", None),
    # --baseline DIR: another built client (an older commit's web_client/dist), served next to this one.
    "baseline": ("viewer from --baseline", ""),
}
# Where --baseline's client is served from (inside web_client/dist, for the duration of the run).
BASELINE_DIR = "baseline"


# --- the synthetic scene --------------------------------------------------------------------------


def _cylinder(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit cylinder along Y (radius 1, height 1, centred): smooth sides, flat caps; 4n-4 triangles."""
    a = np.arange(n) * (2 * np.pi / n)
    ring = np.stack([np.cos(a), np.zeros(n), np.sin(a)], 1)
    down, up = np.array([0.0, -0.5, 0.0]), np.array([0.0, 0.5, 0.0])
    pos = np.concatenate([ring + down, ring + up, ring + up, ring + down])
    nrm = np.concatenate([ring, ring, np.tile([0, 1, 0], (n, 1)), np.tile([0, -1, 0], (n, 1))])
    tris = []
    for k in range(n):
        k1 = (k + 1) % n
        tris += [(k, n + k, k1), (k1, n + k, n + k1)]
    tris += [(2 * n, 2 * n + k, 2 * n + k + 1) for k in range(1, n - 1)]
    tris += [(3 * n, 3 * n + k, 3 * n + k + 1) for k in range(1, n - 1)]
    idx = np.array(tris)
    # Wind every triangle counter-clockwise seen from outside (its normal along the vertex normals).
    p0, p1, p2 = pos[idx[:, 0]], pos[idx[:, 1]], pos[idx[:, 2]]
    flip = (np.cross(p1 - p0, p2 - p0) * nrm[idx].sum(1)).sum(1) < 0
    idx[flip] = idx[flip][:, [0, 2, 1]]
    return pos.astype(np.float32), nrm.astype(np.float32), idx.astype(np.uint16)


def make_plant(directory: Path, count: int) -> dict:
    """Write scene.glb (one node per element, ids in extras, LODs in mesh.extras.lods) and manifest.json."""
    directory.mkdir(parents=True, exist_ok=True)
    templates = [_cylinder(n) for n in SEGMENTS]
    classes = list(PLANT)
    rng = np.random.default_rng(11)
    side = int(np.ceil(np.sqrt(count)))
    pitch = 1.5
    site = {"id": "site", "name": "Plant", "class": "IfcSite"}
    nodes: list[dict] = [{"name": "site", "extras": site, "children": []}]
    materials = [
        {
            "name": c,
            "pbrMetallicRoughness": {
                "baseColorFactor": [*PLANT[c][0], 1.0],
                "metallicFactor": 0.0,
                "roughnessFactor": 0.8,
            },
        }
        for c in classes
    ]
    pos_blob, nrm_blob, idx_blob = bytearray(), bytearray(), bytearray()
    accessors: list[dict] = []
    meshes: list[dict] = []
    lod_meshes: list[dict] = []
    elements = [
        {
            "id": "site",
            "name": "Plant",
            "class": "IfcSite",
            "parent": None,
            "bbox": None,
            "triangles": 0,
            "properties": {},
        }
    ]
    for i in range(count):
        cls = classes[i % len(classes)]
        _, axis, rr, ll = PLANT[cls]
        r = rr[0] + (rr[1] - rr[0]) * rng.random()
        length = ll[0] + (ll[1] - ll[0]) * rng.random()
        order = {"y": [0, 1, 2], "x": [1, 0, 2], "z": [0, 2, 1]}[axis]
        scale = np.array([r, length, r], np.float32)
        up = length if axis == "y" else 2 * r
        center = [float((i % side) * pitch), float(up / 2), float((i // side) * pitch)]
        levels = []
        for pos, nrm, idx in templates:
            p = (pos * scale)[:, order]
            nv = nrm[:, order]
            a = len(accessors)
            accessors += [
                {
                    "bufferView": 0,
                    "byteOffset": len(pos_blob),
                    "componentType": 5126,
                    "count": len(p),
                    "type": "VEC3",
                    "min": p.min(0).tolist(),
                    "max": p.max(0).tolist(),
                },
                {"bufferView": 1, "byteOffset": len(nrm_blob), "componentType": 5126, "count": len(nv), "type": "VEC3"},
                {
                    "bufferView": 2,
                    "byteOffset": len(idx_blob),
                    "componentType": 5123,
                    "count": idx.size,
                    "type": "SCALAR",
                },
            ]
            pos_blob += p.tobytes()
            nrm_blob += nv.tobytes()
            idx_blob += idx.tobytes()
            idx_blob += b"\0" * (-len(idx_blob) % 4)
            levels.append(
                (
                    {
                        "primitives": [
                            {
                                "attributes": {"POSITION": a, "NORMAL": a + 1},
                                "indices": a + 2,
                                "material": i % len(classes),
                            }
                        ]
                    },
                    len(idx),
                )
            )
        meshes.append(levels[0][0])
        lod_meshes.append([lvl for lvl in levels[1:]])
        eid = f"el-{i:05d}"
        nodes[0]["children"].append(len(nodes))
        nodes.append(
            {
                "name": eid,
                "mesh": len(meshes) - 1,
                "translation": center,
                "extras": {"id": eid, "name": f"{cls[3:]} {i}", "class": cls},
            }
        )
        ext = (templates[0][0] * scale)[:, order]
        elements.append(
            {
                "id": eid,
                "name": f"{cls[3:]} {i}",
                "class": cls,
                "parent": "site",
                "bbox": [(ext.min(0) + center).tolist(), (ext.max(0) + center).tolist()],
                "triangles": int(levels[0][1]),
                "properties": {"Pset_Identity": {"Tag": f"P-{i:05d}"}},
            }
        )
    # LOD meshes come after the element meshes; each element mesh lists them finest first.
    for m, lods in zip(meshes[:count], lod_meshes, strict=True):
        m["extras"] = {"lods": []}
        for mesh, tris in lods:
            meshes.append(mesh)
            m["extras"]["lods"].append({"mesh": len(meshes) - 1, "triangles": tris})
    blob = bytes(pos_blob) + bytes(nrm_blob) + bytes(idx_blob)
    views = [
        {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_blob), "byteStride": 12, "target": 34962},
        {"buffer": 0, "byteOffset": len(pos_blob), "byteLength": len(nrm_blob), "byteStride": 12, "target": 34962},
        {"buffer": 0, "byteOffset": len(pos_blob) + len(nrm_blob), "byteLength": len(idx_blob), "target": 34963},
    ]
    gltf = {
        "asset": {"version": "2.0", "generator": "twinview bench/web.py"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": materials,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    _write_glb(directory / "scene.glb", gltf, blob)
    manifest = {
        "format": "twinview-manifest",
        "version": 1,
        "elements": elements,
        "stats": {"elements": len(elements)},
        "inputs": [],
        "warnings": [],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return {"elements": count, "triangles": count * (4 * SEGMENTS[0] - 4), "target": "el-00000"}


def build_ifc(ifc: Path, directory: Path) -> dict:
    """Our pipeline: twinview build --lod; the ramp target is the first wall with geometry."""
    cli = Path(sys.executable).with_name("twinview")
    subprocess.run([str(cli), "build", str(ifc), "-o", str(directory), "--lod"], check=True, capture_output=True)
    return built_scene(directory)


def built_scene(directory: Path) -> dict:
    """A scene directory `twinview build` wrote: its elements with geometry, their triangles, the ramp target."""
    manifest = json.loads((directory / "manifest.json").read_text())
    meshed = [e for e in manifest["elements"] if e.get("triangles")]
    walls = [e for e in meshed if e["class"].startswith("IfcWall")] or meshed
    return {"elements": len(meshed), "triangles": sum(e["triangles"] for e in meshed), "target": walls[0]["id"]}


def bindings_for(target: str) -> str:
    return (
        "version: 1\ndefault_layer: operations\nbindings:\n"
        f"  - {{element: '{target}', prop: {TARGET_PROP}, unit: bar, range: [-1, 16], key: bench.pressure}}\n"
        "layers:\n  operations:\n    rules:\n"
        f"      - {{kind: ramp, element: '{target}', prop: {TARGET_PROP}, min: 0, max: 6,"
        " colors: ['#0000ff', '#ff0000']}\n"
    )


def bundle_plain(out: Path) -> None:
    """Bundle bench/plain_gltf.js with three from web_client/node_modules, as build.mjs does the viewer."""
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    env = {**os.environ, "NODE_PATH": str(WEB / "node_modules")}
    subprocess.run(
        [
            str(esbuild),
            str(ROOT / "bench" / "plain_gltf.js"),
            "--bundle",
            "--minify",
            "--format=esm",
            "--target=es2022",
            f"--outfile={out}",
            "--log-level=warning",
        ],
        check=True,
        env=env,
    )


# --- in-page measurement --------------------------------------------------------------------------

# Logs the arrival of every WebSocket message that mentions the target element, before the client's
# own onmessage handler runs (listeners added in the constructor fire first).
WS_PROBE = """
window.__bench = { arrivals: [], frames: [] };
const NativeWS = window.WebSocket;
window.WebSocket = class extends NativeWS {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (e) => {
      const t = window.__bench.target;
      if (t && typeof e.data === 'string' && e.data.includes('"delta"') && e.data.includes(`"${t}@`))
        window.__bench.arrivals.push(performance.now());
    });
  }
};
"""

# The adapter both pages are measured through: renderer, camera, orbit target, frame events, request().
ADAPTER = """(() => {
  if (window.plain) return window.plain;
  const v = window.twinview.viewer;
  return { renderer: v.renderer, camera: v.camera, target: v.controls.target, events: v,
           request: () => v.invalidate() };
})()"""

FRAME_TIMES = (
    """async (n) => {
  const a = """
    + ADAPTER
    + """;
  const gl = a.renderer.getContext();
  const px = new Uint8Array(4);
  const times = [];
  const drawn = [];
  let calls = 0, triangles = 0;
  for (let i = 0; i < n; i++) {
    a.camera.position.sub(a.target).applyAxisAngle(a.camera.up, 0.02).add(a.target);
    a.camera.lookAt(a.target);
    const t0 = performance.now();
    await new Promise((res) => {
      a.events.addEventListener('frame', () => {
        gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
        calls = a.renderer.info.render.calls; triangles = a.renderer.info.render.triangles;
        drawn.push(triangles);
        res();
      }, { once: true });
      a.request();
    });
    times.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 10));
  }
  const c = a.renderer.domElement;
  return { times, calls, triangles, trianglesMax: Math.max(...drawn), canvas: [c.width, c.height] };
}"""
)
# The whole model in view (the viewer's start view is the area of interest: the live elements).
FIT_ALL = """(() => { const b = window.twinview.app.batches; let box = null;
  for (const id of b.elements.keys()) { const e = b.boxOf(id); if (e) box = box ? box.union(e) : e.clone(); }
  window.twinview.viewer.fitBox(box, { animate: false }); })()"""
# Once the camera rests (the viewer's rest timer ran out: frame_budget.js), one frame requested and timed as
# FRAME_TIMES times one: what a frame at full detail costs, and its triangles (null: a client without it).
REST_FRAME = """async () => {
  const v = window.twinview.viewer; const motion = window.twinview.app.twin.motion;
  if (!motion) return null; // a client without the budget (--baseline)
  while (motion.timer !== 0 || v.dirty) await new Promise((r) => setTimeout(r, 20));
  const gl = v.renderer.getContext();
  const px = new Uint8Array(4);
  const t0 = performance.now();
  await new Promise((res) => {
    v.addEventListener('frame', () => {
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
      res();
    }, { once: true });
    v.invalidate();
  });
  return { ms: performance.now() - t0, triangles: v.renderer.info.render.triangles };
}"""

# Start-up phases: the first of each performance mark the page sets (ms after navigation start). The
# viewer: twinview:gl (WebGL context made, by index.html), twinview:app (app evaluated), twinview:fetched
# (GLB bytes on the main thread), twinview:read, twinview:batched, twinview:first-frame; the plain page:
# plain:app (its module evaluated, renderer made), plain:parsed (GLTFLoader done), plain:first-frame, and
# plain:fetched from the GLB's resource timing (responseEnd).
PHASES = """() => {
  const out = {};
  for (const m of performance.getEntriesByType('mark')) if (!(m.name in out)) out[m.name] = m.startTime;
  const glb = performance.getEntriesByType('resource').find((r) => r.name.includes('.glb'));
  if (glb && window.plain) out['plain:fetched'] = glb.responseEnd;
  return out;
}"""
# The look is in place: edges found for the view (clients without edges: at once), the environment made if
# the URL asks for it.
LOOK_READY = """(() => { const t = window.twinview.app.twin; const e = t.edges;
  return (!e || !e.enabled || (e.pending.size === 0 && e.timer === 0))
    && (!location.search.includes('env=1') || window.twinview.viewer.scene.environment !== null); })()"""
# Columns of the start-up table: label -> (viewer mark, plain mark).
PHASE_COLUMNS = {
    "WebGL context made": ("twinview:gl", "plain:app"),
    "app evaluated": ("twinview:app", "plain:app"),
    "GLB on the main thread": ("twinview:fetched", "plain:fetched"),
    "glTF read / parsed": ("twinview:read", "plain:parsed"),
    "batched": ("twinview:batched", None),
    "first frame": ("twinview:first-frame", "plain:first-frame"),
}

RECOLOUR_START = """(target) => {
  const b = window.__bench;
  b.target = target;
  const v = window.twinview.viewer;
  const gl = v.renderer.getContext();
  const px = new Uint8Array(4);
  let n = 0;
  v.addEventListener('frame', () => {
    gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
    b.frames.push({ n: ++n, t: performance.now(), color: window.twinview.colorOf(target) });
  });
}"""


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def heap_mb(page) -> float:
    cdp = page.context.new_cdp_session(page)
    cdp.send("HeapProfiler.collectGarbage")
    used = cdp.send("Runtime.getHeapUsage")["usedSize"]
    cdp.detach()
    return used / 2**20


def open_viewer_page(browser, url: str, init_script: str | None = None):
    """A fresh context on `url` once the viewer drew its first frame: (context, page, page errors, ms to it)."""
    ctx = browser.new_context(viewport=VIEWPORT)
    if init_script is not None:
        ctx.add_init_script(init_script)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("performance.getEntriesByName('twinview:first-frame').length > 0", timeout=LOAD_TIMEOUT_MS)
    ttff = page.evaluate("performance.getEntriesByName('twinview:first-frame')[0].startTime")
    return ctx, page, errors, ttff


def run_viewer(browser, url: str, scene: dict, frames: int, shot: Path | None, live, fit_all: bool = False) -> dict:
    """One viewer run: load, wait for the levels of detail, frames (of the start view, or of the whole model
    with `fit_all`), heap, recolour latency."""
    ctx, page, errors, ttff = open_viewer_page(browser, url, WS_PROBE)
    ready = page.evaluate("window.twinview.ready")
    phases = page.evaluate(PHASES)
    # Steady state: the levels of detail load in the background after the first frame.
    page.wait_for_function("window.twinview.app.twin?.lodsLoaded === true", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(LOOK_READY, timeout=LOAD_TIMEOUT_MS)
    if fit_all:
        page.evaluate(FIT_ALL)
    page.wait_for_timeout(500)
    page.evaluate(FRAME_TIMES, 2)  # unmeasured: what the GPU still does (an environment's prefiltering) ends here
    gl = page.evaluate(
        "(() => { const v = window.twinview.viewer; return { msaa: v.renderer.getContext()"
        ".getContextAttributes().antialias, software: v.softwareGL }; })()"
    )
    ft = page.evaluate(FRAME_TIMES, frames)
    if shot:
        page.screenshot(path=str(shot))
    rest = page.evaluate(REST_FRAME)
    heap = heap_mb(page)
    # Recolour latency: flip the target between the ramp's ends; wait for each colour on screen.
    page.evaluate(RECOLOUR_START, scene["target"])
    lat_frames, lat_ms = [], []
    for k in range(RECOLOURS):
        value, colour = (6.0, "#ff0000") if k % 2 == 0 else (0.0, "#0000ff")
        before = page.evaluate("window.__bench.arrivals.length")
        live.ingest([{"element": scene["target"], "prop": TARGET_PROP, "value": value}])
        page.wait_for_function(
            "([n, c, id]) => window.__bench.arrivals.length > n && window.twinview.colorOf(id) === c"
            " && window.__bench.frames.some((f) => f.t > window.__bench.arrivals[n] && f.color === c)",
            arg=[before, colour, scene["target"]],
            timeout=30_000,
        )
        b = page.evaluate("window.__bench")
        arrival = b["arrivals"][before]
        prior = [f for f in b["frames"] if f["t"] <= arrival]
        shown = next(f for f in b["frames"] if f["t"] > arrival and f["color"] == colour)
        lat_frames.append(shown["n"] - (prior[-1]["n"] if prior else 0))
        lat_ms.append(shown["t"] - arrival)
        page.wait_for_timeout(150)
    ctx.close()
    return {
        "ttff_ms": ttff,
        "phases": phases,
        "ready": ready,
        "gl": gl,
        "frame_ms": median(ft["times"]),
        "frame_times": ft["times"],
        "draw_calls": ft["calls"],
        "triangles": ft["triangles"],
        "triangles_max": ft["trianglesMax"],
        **({"rest_frame_ms": rest["ms"], "rest_triangles": rest["triangles"]} if rest else {}),
        "canvas": ft["canvas"],
        "heap_mb": heap,
        "recolour_frames": lat_frames,
        "recolour_ms": lat_ms,
        "errors": errors,
    }


def run_plain(
    browser, base: str, glb_url: str, canvas: list[int], bundle: Path, frames: int, shot: Path | None
) -> dict:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def serve(route):
        name = route.request.url.split("/bench/", 1)[1].split("?", 1)[0]
        if name == "plain_gltf.html":
            return route.fulfill(path=str(ROOT / "bench" / "plain_gltf.html"), content_type="text/html")
        if name == "plain_gltf.bundle.js":
            return route.fulfill(path=str(bundle), content_type="text/javascript")
        return route.fulfill(status=404)

    page.route(f"{base}/bench/**", serve)
    page.goto(f"{base}/bench/plain_gltf.html?glb={glb_url}&w={canvas[0]}&h={canvas[1]}")
    page.wait_for_function("performance.getEntriesByName('plain:first-frame').length > 0", timeout=LOAD_TIMEOUT_MS)
    ttff = page.evaluate("performance.getEntriesByName('plain:first-frame')[0].startTime")
    phases = page.evaluate(PHASES)
    page.wait_for_timeout(500)
    ft = page.evaluate(FRAME_TIMES, frames)
    if shot:
        page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": canvas[0], "height": canvas[1]})
    heap = heap_mb(page)
    ctx.close()
    return {
        "ttff_ms": ttff,
        "phases": phases,
        "frame_ms": median(ft["times"]),
        "frame_times": ft["times"],
        "draw_calls": ft["calls"],
        "triangles": ft["triangles"],
        "triangles_max": ft["trianglesMax"],
        "canvas": ft["canvas"],
        "heap_mb": heap,
        "errors": errors,
    }


def bench_scene(
    browser,
    name: str,
    scene_dir: Path,
    scene: dict,
    work: Path,
    bundle: Path,
    runs: int,
    frames: int,
    keys: list[str],
    fit_all: bool = False,
) -> dict:
    (work / f"{name}.bindings.yaml").write_text(bindings_for(scene["target"]))
    with serve_scene(scene_dir, work / f"{name}.bindings.yaml", work / f"{name}-data") as live:
        sid = scene_dir.name
        url = f"{live.url}/?scene={sid}&name=bench"
        glb = f"/scenes/{sid}/scene.glb"
        # Warm-up (not counted): OS caches, the server's first responses, and the viewer's canvas size.
        canvas = run_viewer(browser, url, scene, 2, None, live, fit_all)["canvas"]
        if "plain" in keys:
            run_plain(browser, live.url, glb, canvas, bundle, 2, None)
        runs_of: dict[str, list[dict]] = {key: [] for key in keys}
        for r in range(runs):
            shots = r == 0
            order = keys[r % len(keys) :] + keys[: r % len(keys)]  # rotate who goes first
            for key in order:
                t = time.monotonic()
                shot = RESULTS / f"web-{name}-{key}.png" if shots else None
                if key == "plain":
                    res = run_plain(browser, live.url, glb, canvas, bundle, frames, shot)
                elif key == "baseline":
                    there = url.replace("/?", f"/{BASELINE_DIR}/index.html?")
                    res = run_viewer(browser, there, scene, frames, shot, live, fit_all)
                else:
                    res = run_viewer(browser, url + CONTENDERS[key][1], scene, frames, shot, live, fit_all)
                runs_of[key].append(res)
                print(
                    f"  {name} run {r + 1} {key}: ttff {res['ttff_ms']:.0f} ms, frame {res['frame_ms']:.0f} ms,"
                    f" triangles {res['triangles_max']:,} (at rest {res.get('rest_triangles', '—')}),"
                    f" calls {res['draw_calls']}, heap {res['heap_mb']:.1f} MB ({time.monotonic() - t:.0f} s)",
                    file=sys.stderr,
                )
    return {"scene": scene, **runs_of}


# --- report ---------------------------------------------------------------------------------------


def _fmt(xs: list[float], unit: str = "", digits: int = 0) -> str:
    m = median(xs)
    s = f"{m:.{digits}f}{unit}"
    if len(xs) > 1:
        s += f" [{min(xs):.{digits}f}–{max(xs):.{digits}f}]"
    return s


def table(results: dict, meta: dict) -> str:
    lines = [
        "# Web client benchmark: TwinView viewer vs plain three.js GLTFLoader",
        "",
        f"{meta['when']} · headless Chromium (SwiftShader) · viewport {VIEWPORT['width']}×{VIEWPORT['height']} ·"
        f" {meta['runs']} interleaved runs × {meta['frames']} frames · medians over runs [min–max]",
        f"`{meta['command']}`",
        "",
        "| scene | contender | draw calls | triangles drawn (moving, max) | TTFF | frame (median) | frame ratio"
        " plain/this | frame at rest · its triangles | JS heap | recolour latency (median / max) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        sc = r["scene"]
        label = f"{name}: {sc['elements']:,} elements, {sc['triangles']:,} triangles"
        pf = [x["frame_ms"] for x in r.get("plain", [])]
        for key, (who, _) in CONTENDERS.items():
            runs = r.get(key) or []
            if not runs:
                continue
            frames = [x["frame_ms"] for x in runs]
            ratio = f"{median(pf) / median(frames):.1f}×" if frames and pf else "—"
            lf = [f for x in runs for f in x.get("recolour_frames", [])]
            lm = [m for x in runs for m in x.get("recolour_ms", [])]
            lat = (
                f"{median(lf):.0f} / {max(lf)} frames · {median(lm):.0f} / {max(lm):.0f} ms" if lf else "(no live data)"
            )
            bold = "**" if key == "viewer" else ""
            tris = f"{median([x['triangles_max'] for x in runs]):,.0f}"
            calls = _fmt([x["draw_calls"] for x in runs])
            rest = [x for x in runs if "rest_frame_ms" in x]
            rest_triangles = median([x["rest_triangles"] for x in rest])
            at_rest = f"{_fmt([x['rest_frame_ms'] for x in rest], ' ms')} · {rest_triangles:,.0f}" if rest else "—"
            lines.append(
                f"| {label if key == 'viewer' else ''} | {who} | {calls} | {tris} |"
                f" {_fmt([x['ttff_ms'] for x in runs], ' ms')} | {_fmt(frames, ' ms')} |"
                f" {bold}{ratio}{bold} | {at_rest} | {_fmt([x['heap_mb'] for x in runs], ' MB', 1)} | {lat} |"
            )
    lines += [
        "",
        "TTFF: navigation start to the first rendered frame with the model. Frame: request → frame rendered"
        " and read back (1-pixel readPixels), each after a small camera orbit, so with the viewer's triangle budget"
        " (frame_budget.js) in force; triangles drawn: the most of those frames. Frame at rest: one frame once the"
        " camera rested (full detail). Recolour: WebSocket delta arrival → first rendered frame"
        " showing the new colour (1 frame = the next one). JS heap: V8 used heap after a forced GC (CDP),"
        " viewer after its levels of detail are loaded. The viewer renders without MSAA on software GL"
        " (SwiftShader here) and with it on a GPU; the 'MSAA forced on' row is the like-for-like comparison.",
        "",
        "Start-up phases (ms after navigation start, medians over runs; see PHASES in bench/web.py):",
        "",
        "| scene | contender | " + " | ".join(PHASE_COLUMNS) + " |",
        "|---|---|" + "---:|" * len(PHASE_COLUMNS),
    ]
    for name, r in results.items():
        for key, (who, _) in CONTENDERS.items():
            runs = r.get(key) or []
            if not runs:
                continue
            cells = []
            for viewer_mark, plain_mark in PHASE_COLUMNS.values():
                mark = plain_mark if key == "plain" else viewer_mark
                xs = [x["phases"][mark] for x in runs if mark and mark in x.get("phases", {})]
                cells.append(f"{median(xs):.0f}" if xs else "—")
            lines.append(f"| {name} | {who} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elements", type=int, default=10_000, help="synthetic elements (0: skip)")
    ap.add_argument("--ifc", type=Path, default=DEFAULT_IFC, help="IFC file to build and compare ('' to skip)")
    ap.add_argument(
        "--built",
        type=Path,
        action="append",
        default=[],
        help="a scene directory already built by `twinview build` (e.g. a plant with --lod); repeatable",
    )
    ap.add_argument(
        "--view",
        choices=("start", "all"),
        default="start",
        help="the viewer's frames: of its start view (the live elements) or of the whole model fitted",
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument(
        "--contenders",
        help=f"comma-separated, from {', '.join(CONTENDERS)} (default: all; baseline only with --baseline)",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a built client to compare with (e.g. an older commit's web_client/dist): contender 'baseline'",
    )
    args = ap.parse_args(argv)
    keys = [k for k in (args.contenders or ",".join(CONTENDERS)).split(",") if k]
    if not args.baseline and args.contenders is None:
        keys.remove("baseline")
    if not keys or set(keys) - set(CONTENDERS) or ("baseline" in keys and not args.baseline):
        ap.error(f"--contenders: choose from {', '.join(CONTENDERS)} (baseline needs --baseline)")
    if args.baseline and not (args.baseline / "index.html").is_file():
        ap.error(f"--baseline {args.baseline}: no index.html there")
    RESULTS.mkdir(parents=True, exist_ok=True)
    build_client()
    baseline = WEB / "dist" / BASELINE_DIR
    if args.baseline:
        shutil.copytree(args.baseline, baseline, dirs_exist_ok=True)
    try:
        results = bench_all(args, keys)
    finally:
        shutil.rmtree(baseline, ignore_errors=True)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": args.runs,
        "frames": args.frames,
        "command": ".venv/bin/python -m bench.web " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    md = table(results, meta)
    print(md)
    (RESULTS / "web.md").write_text(md)
    (RESULTS / "web.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


def bench_all(args: argparse.Namespace, keys: list[str]) -> dict:
    from playwright.sync_api import sync_playwright

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="twinview-webbench-") as tmp:
        work = Path(tmp)
        bundle = work / "plain_gltf.bundle.js"
        bundle_plain(bundle)
        scenes = []
        if args.elements:
            d = work / "plant"
            scenes.append((f"synthetic-{args.elements}", d, make_plant(d, args.elements)))
        if str(args.ifc) not in ("", "."):
            d = work / args.ifc.stem.lower().replace("_", "-")
            scenes.append((args.ifc.name, d, build_ifc(args.ifc, d)))
        for built in args.built:  # served where it is (read only), as the scene named after its directory
            scenes.append((built.name, built.resolve(), built_scene(built)))
        with sync_playwright() as pw:
            _predicates_without_eval()  # the server's CSP forbids eval, which string predicates need
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                for name, d, scene in scenes:
                    print(f"{name}: {scene['elements']} elements, {scene['triangles']} triangles", file=sys.stderr)
                    results[name] = bench_scene(
                        browser,
                        name.replace(".", "-"),
                        d,
                        scene,
                        work,
                        bundle,
                        args.runs,
                        args.frames,
                        keys,
                        args.view == "all",
                    )
            finally:
                browser.close()
    return results


if __name__ == "__main__":
    raise SystemExit(main())
