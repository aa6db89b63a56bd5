"""Plant viewers side by side: TwinView (`twinview build --compress` + the viewer) against xeokit (`xeokit-convert`
IFC → XKT + the xeokit SDK), on the same generated IFC plants, in the same headless Chromium.

    bench/peers/setup.sh                                              # npm ci of the pinned peer (once)
    nice -n 10 .venv/bin/python -m bench.plant_viewers --sizes 1000 20000 --runs 3

Per plant (`bench.plant`, cached in `--cache`):

- **build**: each system converts the IFC in a fresh process (ours: `twinview build --compress`, default bounds;
  the peer: `node convert2xkt.js` from `@xeokit/xeokit-convert`, with `--max-old-space-size` of `--peer-heap-mb`
  and killed after `--build-timeout` s): CPU-seconds and peak RSS of the process tree (`wait4`), wall time, the
  output's bytes per element. The outputs are kept in `--out` next to a JSON of these figures, and reused on
  later runs (delete them to measure again);
- **viewer**: a fresh browser per run (so that the GPU process holds one model), the systems interleaved, after
  an unmeasured warm-up of each. Ours is served by the real server; the xeokit page (`bench/peers/xeokit.html`,
  with the SDK's own minified ES build) and the XKT by a static HTTP server on localhost (neither
  compresses on the fly). Per run, from navigation start: the first frame with the model, the tree panel's first
  rows (ours: the tree; xeokit: its TreeViewPlugin, built from the metadata in the XKT, which is then also what
  its properties and search would read); bytes that crossed the wire (every response's body and headers, from
  Playwright's network events: page, workers, API); the median of `--frames` frames, each after a small orbit,
  timed to a 1-pixel readPixels (bench.web's method); the JS heap after a GC; the resident memory of the
  browser's GPU process and renderer after the frames.

Headless Debian Chromium with SwiftShader (the tests' flags), 1280×800. Raw rows go to
bench/results/plant_viewers.json, the table to plant_viewers.md and stdout.
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

from bench import plant, plant_build
from bench.build import run
from bench.instancing import process_rss_mb
from bench.web import FRAME_TIMES, LOAD_TIMEOUT_MS, RESULTS, VIEWPORT, heap_mb
from tests.mosquitto import free_port
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, _predicates_without_eval, build_client, serve_scene

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
CONVERT = PEERS / "node_modules" / "@xeokit" / "xeokit-convert" / "convert2xkt.js"
SDK = PEERS / "node_modules" / "@xeokit" / "xeokit-sdk" / "dist" / "xeokit-sdk.min.es.js"
NO_BINDINGS = "version: 1\ndefault_layer: operations\nbindings: []\nlayers:\n  operations:\n    rules: []\n"
SYSTEMS = ("twinview", "xeokit")

# Marks the tree panel's first row on the page's clock (ours: #tree li[data-id]; xeokit's TreeViewPlugin: an li).
TREE_MARK = """new MutationObserver((_, obs) => {
  if (document.querySelector('#tree li')) { performance.mark('bench:tree'); obs.disconnect(); }
}).observe(document, { childList: true, subtree: true });"""

# Counts WebGL draw calls (xeokit's own frame statistics miss its batched and instanced layers' draws).
DRAW_COUNTER = """(() => {
  const counter = { n: 0 };
  window.__draws = counter;
  for (const proto of [WebGLRenderingContext.prototype, WebGL2RenderingContext.prototype]) {
    const names = ['drawElements', 'drawArrays', 'drawElementsInstanced', 'drawArraysInstanced', 'drawRangeElements'];
    for (const name of names) {
      const draw = proto[name];
      if (draw) proto[name] = function (...args) { counter.n++; return draw.apply(this, args); };
    }
  }
})();"""

# bench.web's frame timing, on xeokit: orbit 0.02 rad about the up axis, wait for the next rendered frame, read a
# pixel back. Draw calls: DRAW_COUNTER's, over the frame.
XEOKIT_FRAMES = """async (n) => {
  const { viewer } = window.xeokit;
  const gl = viewer.scene.canvas.gl;
  const px = new Uint8Array(4);
  const times = [];
  let calls = 0;
  for (let i = 0; i < n; i++) {
    viewer.camera.orbitYaw(0.02 * 180 / Math.PI);
    window.__draws.n = 0;
    const t0 = performance.now();
    await new Promise((res) => viewer.scene.once('rendered', () => {
      gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, px);
      calls = window.__draws.n;
      res();
    }));
    times.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, 10));
  }
  return { times, calls, canvas: [gl.drawingBufferWidth, gl.drawingBufferHeight] };
}"""
MARK = "(n) => performance.getEntriesByName(n)[0]?.startTime ?? null"


# --- builds ---------------------------------------------------------------------------------------


def cached(out: Path, build, *args: object) -> dict:
    """The figures of `out`'s build: measured now by `build(*args)` unless an earlier run left them beside it."""
    figures = out.with_name(out.name + ".json")
    if figures.exists() and out.exists():
        return {**json.loads(figures.read_text()), "cached": True}
    row = build(*args)
    figures.write_text(json.dumps(row))
    return row


def build_ours(source: Path, out: Path) -> dict:
    """bench.plant_build's measured build (the reader host reaped, so its readers count), with --compress."""
    shutil.rmtree(out, ignore_errors=True)
    row = plant_build.ours(source, out, compress=True)
    return {
        **row,
        "rss_mb": max(row["reader_rss_mb"], row["writer_rss_mb"]),
        "load": os.getloadavg()[0],
        # What the viewer's server serves from: the GLB, the manifest (its API's metadata) and the tiles if the
        # build made them (at 10 000 elements and more); the USD and USDZ the build also writes are left out.
        "bytes": row["bytes"]["scene.glb"]
        + row["bytes"]["manifest.json"]
        + sum(f.stat().st_size for f in (out / "tiles").glob("*") if f.is_file()),
        "tiles": len(list((out / "tiles").glob("tile-*.glb"))),
    }


def build_xeokit(source: Path, out: Path, heap_mb_: int, timeout_s: float) -> dict:
    out.unlink(missing_ok=True)
    cmd = ["timeout", str(int(timeout_s)), "node", f"--max-old-space-size={heap_mb_}", str(CONVERT)]
    cmd += ["-s", str(source), "-o", str(out), "-l"]
    try:
        measured = run(cmd, capture=True)
    except RuntimeError as e:
        return {"error": str(e)[-400:]}
    log = dict(
        line.removeprefix("[convert2xkt] ").split(": ", 1)
        for line in measured.stdout.splitlines()
        if line.startswith("[convert2xkt] Converted ")
    )
    return {
        "cpu_s": measured.cpu_s,
        "rss_mb": measured.rss_mb,
        "wall_s": measured.wall_s,
        "load": os.getloadavg()[0],
        "triangles": int(log.get("Converted triangles", 0)),
        "objects": int(log.get("Converted drawable objects", 0)),
        "bytes": out.stat().st_size,
    }


# --- the viewers ----------------------------------------------------------------------------------


def open_page(browser, url: str, first_frame: str, *init_scripts: str) -> tuple:
    """A page on `url`, counting response bytes, until its first frame and the tree's first row."""
    ctx = browser.new_context(viewport=VIEWPORT)
    for script in (TREE_MARK, *init_scripts):
        ctx.add_init_script(script)
    page = ctx.new_page()
    seen: dict = {"data_bytes": 0, "code_bytes": 0, "errors": []}

    def finished(request) -> None:
        sizes = request.sizes()
        # Data: what the page fetched (the model, its metadata, API answers); code: the page, scripts, styles.
        kind = "data_bytes" if request.resource_type in ("fetch", "xhr") else "code_bytes"
        seen[kind] += sizes["responseBodySize"] + sizes["responseHeadersSize"]

    ctx.on("requestfinished", finished)
    page.on("pageerror", lambda e: seen["errors"].append(str(e)[:200]))
    page.goto(url)
    page.wait_for_function(
        f"performance.getEntriesByName('{first_frame}').length > 0"
        " && performance.getEntriesByName('bench:tree').length > 0",
        timeout=LOAD_TIMEOUT_MS,
    )
    return ctx, page, seen


def measure(page, seen: dict, first_frame: str, frames_js: str, frames: int) -> dict:
    page.evaluate(frames_js, 2)  # unmeasured
    ft = page.evaluate(frames_js, frames)
    return {
        "first_frame_s": page.evaluate(MARK, first_frame) / 1000,
        "tree_s": page.evaluate(MARK, "bench:tree") / 1000,
        "frame_ms": statistics.median(ft["times"]),
        "draw_calls": ft["calls"],
        "triangles_drawn": ft.get("triangles"),  # ours (three's count of the frame); xeokit does not count them
        "canvas": ft["canvas"],
        "heap_mb": heap_mb(page),
        "rss_mb": process_rss_mb(),
        "wire_bytes": seen["data_bytes"],
        "code_bytes": seen["code_bytes"],
        "errors": seen["errors"],
    }


# A tiled scene (tiles.js) draws its tiles' boxes first: the model is whole once every tile is in (the default
# budget holds a 100 000-element plant whole). The last tile's arrival on the page's clock, in ms.
TILES_IN = """(() => { const t = window.twinview.app.tiles;
  return !t || t.tiles.every((s) => s.state === 'loaded'); })()"""
LAST_TILE = (
    "(() => { const t = window.twinview.app.tiles; return t ? Math.max(...t.arrivals.map((a) => a.at)) : null; })()"
)


def run_ours(browser, url: str, frames: int) -> dict:
    ctx, page, seen = open_page(browser, url, "twinview:first-frame")
    page.wait_for_function(TILES_IN, timeout=LOAD_TIMEOUT_MS)
    last_tile = page.evaluate(LAST_TILE)
    row = measure(page, seen, "twinview:first-frame", FRAME_TIMES, frames)
    row["whole_s"] = last_tile / 1000 if last_tile is not None else row["first_frame_s"]
    ctx.close()
    return row


def run_xeokit(browser, url: str, frames: int) -> dict:
    ctx, page, seen = open_page(browser, url, "xeokit:first-frame", DRAW_COUNTER)
    row = measure(page, seen, "xeokit:first-frame", XEOKIT_FRAMES, frames)
    row["metaobjects"] = page.evaluate("Object.keys(window.xeokit.viewer.metaScene.metaObjects).length")
    row["whole_s"] = row["first_frame_s"]  # the XKT is loaded whole before its first frame
    ctx.close()
    return row


def bench_viewers(scene_dir: Path, xkt: Path, runs: int, frames: int, aa: bool) -> dict[str, list[dict]]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    with tempfile.TemporaryDirectory(prefix="twinview-peers-") as tmp:
        work = Path(tmp)
        static = work / "static"
        static.mkdir()
        for name in ("xeokit.html", "xeokit.js"):
            shutil.copy(PEERS / name, static / name)
        shutil.copy(SDK, static / SDK.name)
        os.symlink(xkt, static / "model.xkt")
        port = free_port()
        files = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(static)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (work / "b.yaml").write_text(NO_BINDINGS)
        try:
            with serve_scene(scene_dir, work / "b.yaml", work / "data") as live, sync_playwright() as pw:
                _predicates_without_eval()
                ours_url = f"{live.url}/?scene={scene_dir.name}&name=bench"

                def one(system: str, frames: int) -> dict:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    try:
                        if system == "twinview":
                            return run_ours(browser, ours_url, frames)
                        w, h = canvas
                        peer_url = f"http://127.0.0.1:{port}/xeokit.html?xkt=model.xkt&w={w}&h={h}&aa={int(aa)}"
                        return run_xeokit(browser, peer_url, frames)
                    finally:
                        browser.close()

                canvas = one("twinview", 2)["canvas"]  # warm-up; the peer's canvas gets our viewer's size
                one("xeokit", 2)
                for r in range(runs):
                    for system in SYSTEMS[r % 2 :] + SYSTEMS[: r % 2]:
                        res = one(system, frames)
                        results[system].append(res)
                        print(
                            f"  run {r + 1} {system}: first frame {res['first_frame_s']:.1f} s,"
                            f" tree {res['tree_s']:.1f} s, frame {res['frame_ms']:.0f} ms,"
                            f" heap {res['heap_mb']:.0f} MB, rss {res['rss_mb']}",
                            file=sys.stderr,
                        )
        finally:
            files.terminate()
            files.wait()
    return results


# --- report ---------------------------------------------------------------------------------------


def _med(runs: list[dict], key: str, fmt: str = "{:.1f}") -> str:
    xs = [r[key] for r in runs]
    m = statistics.median(xs)
    return fmt.format(m) + (f" [{fmt.format(min(xs))}–{fmt.format(max(xs))}]" if len(xs) > 1 else "")


def table(rows: list[dict]) -> str:
    lines = [
        "| plant | system | triangles | build CPU-s / peak RSS | bytes per element: disk / wire (app code) |"
        " first frame | whole model drawn | tree rows | frame (median) | draw calls | JS heap |"
        " GPU process / renderer RSS | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        n = row["size"]
        for system in SYSTEMS:
            b = row["build"][system]
            runs = row.get("viewer", {}).get(system, [])
            if "error" in b:
                lines.append(f"| {n:,} | {system} | — | **failed**: {b['error'][-120:]} | | | | | | | | |")
                continue
            build = f"{b['cpu_s']:,.0f} s / {b['rss_mb']:,.0f} MB" + (" (cached)" if b.get("cached") else "")
            if not runs:
                lines.append(
                    f"| {n:,} | {system} | {b['triangles']:,} | {build} | {b['bytes'] / n:,.0f} / — |" + " |" * 8
                )
                continue
            gpu = statistics.median(r["rss_mb"]["gpu-process"] for r in runs)
            ren = statistics.median(r["rss_mb"]["renderer"] for r in runs)
            wire = statistics.median(r["wire_bytes"] for r in runs) / n
            code = statistics.median(r["code_bytes"] for r in runs) / 2**20
            lines.append(
                f"| {n:,} | {system} | {b['triangles']:,} | {build} |"
                f" {b['bytes'] / n:,.0f} / {wire:,.0f} ({code:.1f} MB) |"
                f" {_med(runs, 'first_frame_s')} s | {_med(runs, 'whole_s')} s | {_med(runs, 'tree_s')} s |"
                f" {_med(runs, 'frame_ms', '{:.0f}')} ms |"
                f" {runs[0]['draw_calls']} | {_med(runs, 'heap_mb', '{:.0f}')} MB | {gpu:,.0f} / {ren:,.0f} MB |"
                f" {row['load'][0]:.1f} → {row['load'][1]:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "twinview-plants", help="IFC plants")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "twinview-peers", help="builds")
    ap.add_argument("--peer-heap-mb", type=int, default=12288, help="xeokit-convert's V8 heap bound")
    ap.add_argument("--build-timeout", type=float, default=4500.0, help="seconds before a conversion is killed")
    ap.add_argument("--no-viewers", dest="viewers", action="store_false", help="builds only")
    ap.add_argument("--xeokit-aa", action="store_true", help="xeokit with antialias on (its default; ours is off)")
    args = ap.parse_args(argv)
    if not CONVERT.exists():
        ap.error(f"{CONVERT} is missing: run bench/peers/setup.sh (npm ci of the pinned peer) first")
    if args.viewers:
        build_client()
    for d in (args.cache, args.out, RESULTS):
        d.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        source = args.cache / f"plant-{size}.ifc"
        if not source.exists():
            plant.write(size, source)
        row: dict = {"size": size, "load": [os.getloadavg()[0]]}
        ours_dir, xkt = args.out / f"twinview-{size}", args.out / f"plant-{size}.xkt"
        print(f"{size}: building …", file=sys.stderr)
        row["build"] = {
            "twinview": cached(ours_dir, build_ours, source, ours_dir),
            "xeokit": cached(xkt, build_xeokit, source, xkt, args.peer_heap_mb, args.build_timeout),
        }
        if args.viewers and "error" not in row["build"]["xeokit"]:
            print(f"{size}: viewers …", file=sys.stderr)
            row["viewer"] = bench_viewers(ours_dir, xkt, args.runs, args.frames, args.xeokit_aa)
        row["load"].append(os.getloadavg()[0])
        row["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        rows.append(row)
        (RESULTS / "plant_viewers.json").write_text(json.dumps(rows, indent=1))
    text = table(rows)
    print(text)
    (RESULTS / "plant_viewers.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
