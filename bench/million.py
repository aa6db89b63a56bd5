"""Where a 1 000 000-element model breaks first: each stage after the IFC import, measured to its limit.

    nice -n 10 .venv/bin/python -m bench.million --elements 100000 300000 1000000     # ~1 h on a shared machine
    .venv/bin/python -m bench.million --elements 1000 --stages export,serve            # a smoke run

A full 1M-element IFC build would take hours here (§1b: ~5 CPU-s per 1 000 elements), so the stages after the
import are measured on bench.metadata's generated plant (site > areas > units of 100 elements, 12 shared meshes,
two property sets per element, every 10th element bound to a reading with a ramp rule), at each `--elements`:

- export: the canonical `Scene` built in Python and written as `twinview build --compress` writes it (GLB with
  meshopt, tiles from 10 000 elements on, manifest), in a child process: CPU-s, peak RSS, bytes (of the GLB, its
  JSON chunk, the tiles with their index and catalogue, the manifest);
- serve: `twinview serve` on it as a user starts it (bench/_server.py): seconds until /api/health answers and
  until the search index is built (the first search answer), the server's RSS, a tree page, a search and one
  element's record over HTTP (bench.metadata's probes);
- browser: this checkout's viewer in headless Debian Chromium (SwiftShader, 1280×800, the flags of the tests),
  one fresh browser: the first frame and the tree's first rows (from navigation), page errors and crashes, JS
  heap, and the peak RSS of the browser's GPU and renderer processes, sampled every 0.5 s while it loads.

Each stage has a deadline (`--deadline`, per stage); a stage that fails or runs out of time is reported with how
(its error text, "timeout", "crashed"), and the size's later stages are skipped. The 1-minute load average is
recorded with each stage. Raw rows go to bench/results/million.json, the table to million.md and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

from bench import metadata
from bench._server import server, wait_ready
from bench.build import run
from bench.instancing import process_rss_mb
from bench.web import RESULTS, VIEWPORT
from tests.mosquitto import free_port
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, _predicates_without_eval, build_client

STAGES = ("export", "serve", "browser")

# The child that builds and writes the scene: prints its figures as JSON.
EXPORT = """
import json, sys, time
from pathlib import Path
from bench import metadata
from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from scene.export.tiles import wants_tiles, write_tiles
count, out = int(sys.argv[1]), Path(sys.argv[2])
t0 = time.perf_counter()
scene = metadata.plant_scene(count)
t1 = time.perf_counter()
stats = write_glb(scene, out / "scene.glb", compress=True)
t2 = time.perf_counter()
if wants_tiles(scene):  # as `twinview build` does from TILE_MIN_ELEMENTS on
    write_tiles(scene, out, compress=True)
t3 = time.perf_counter()
write_manifest(scene, out / "manifest.json", {"glb": stats})
t4 = time.perf_counter()
print(json.dumps({"scene_s": t1 - t0, "glb_s": t2 - t1, "tiles_s": t3 - t2, "manifest_s": t4 - t3}))
"""


def load() -> float:
    return round(os.getloadavg()[0], 1)


def export(count: int, out: Path) -> dict:
    measured = run([sys.executable, "-c", EXPORT, str(count), str(out)], capture=True)
    return {
        **json.loads(measured.stdout),
        "cpu_s": measured.cpu_s,
        "rss_mb": measured.rss_mb,
        "wall_s": measured.wall_s,
        "glb_bytes": (out / "scene.glb").stat().st_size,
        "glb_json_bytes": len(json.dumps(metadata.glb_json(out / "scene.glb"), separators=(",", ":"))),
        "manifest_bytes": (out / "manifest.json").stat().st_size,
        "tiles": len(list((out / "tiles").glob("tile-*.glb"))),
        "tile_bytes": sum(f.stat().st_size for f in (out / "tiles").glob("*")),
    }


def cpu_s(pid: int) -> float:
    """User + system CPU-seconds of a running process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _serve_probes(url: str, scene_id: str, count: int, deadline_s: float) -> dict:
    t0 = time.monotonic()
    await wait_ready(url, deadline_s)
    ready = time.monotonic() - t0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline_s)) as http:
        # The index is built in a thread at start-up; a search waits for it.
        async with http.get(f"{url}/api/scenes/{scene_id}/elements?brief=1&q=nothing-matches") as r:
            assert r.status == 200, await r.text()
        indexed = time.monotonic() - t0
        api = await metadata.api_costs(http, url, scene_id, count)
    return {"health_s": ready, "index_s": indexed, "api": api}


def serve_stage(scene_dir: Path, work: Path, count: int, deadline_s: float, then) -> dict:
    """`twinview serve` on the scene; `then(url)` runs while it serves (the browser stage)."""
    (work / "b.yaml").write_text(metadata.bindings(count))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("wb")
    with server(scene_dir, work / "b.yaml", work / "data", port, output=log) as proc:
        try:
            row = asyncio.run(_serve_probes(url, scene_dir.name, count, deadline_s))
        except Exception as e:  # the failure is the measurement
            log.flush()
            tail = (work / "serve.log").read_text(errors="replace")[-600:]
            return {"error": f"{type(e).__name__}: {e}", "exit": proc.poll(), "log": tail}
        row["rss_mb"] = rss_mb(proc.pid)
        row["cpu_s"] = cpu_s(proc.pid)  # start-up, index and the probes: load-independent, unlike the seconds
        if then is not None:
            row["browser"] = then(url)
            row["rss_after_browser_mb"] = rss_mb(proc.pid)
    return row


class PeakRss:
    """Samples this process's Chromium GPU and renderer RSS every 0.5 s in a thread; keeps the peaks."""

    def __init__(self) -> None:
        self.peak = {"gpu-process": 0.0, "renderer": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for k, v in process_rss_mb().items():
                self.peak[k] = max(self.peak[k], v)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def browser_stage(url: str, scene_id: str, deadline_s: float) -> dict:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    _predicates_without_eval()
    out: dict = {"errors": [], "console": []}
    with sync_playwright() as pw, PeakRss() as peak:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.on("pageerror", lambda e: out["errors"].append(str(e)[:300]))
        page.on("console", lambda m: m.type in ("error", "warning") and out["console"].append(m.text[:300]))
        page.on("crash", lambda _: out.setdefault("crashed", True))
        page.add_init_script("""new MutationObserver((_, obs) => {
          if (document.querySelector('#tree li[data-id]')) { performance.mark('bench:tree'); obs.disconnect(); }
        }).observe(document, { childList: true, subtree: true });""")
        t0 = time.monotonic()
        try:
            page.goto(f"{url}/?scene={scene_id}", timeout=deadline_s * 1000)
            page.wait_for_function(
                "performance.getEntriesByName('twinview:first-frame').length > 0"
                " && performance.getEntriesByName('bench:tree').length > 0",
                timeout=deadline_s * 1000,
            )
            mark = "(n) => performance.getEntriesByName(n)[0]?.startTime ?? null"
            out["first_frame_s"] = page.evaluate(mark, "twinview:first-frame") / 1000
            out["tree_s"] = page.evaluate(mark, "bench:tree") / 1000
            from bench.web import heap_mb

            out["heap_mb"] = heap_mb(page)
        except PlaywrightError as e:
            out["failure"] = "crashed" if out.get("crashed") else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            out["waited_s"] = time.monotonic() - t0
        browser.close()
    out["peak_rss_mb"] = peak.peak
    return out


def bench_size(count: int, stages: list[str], deadline_s: float) -> dict:
    row: dict = {"elements": count}
    with tempfile.TemporaryDirectory(prefix="twinview-million-") as tmp:
        work = Path(tmp)
        scene_dir = work / f"plant-{count}"
        scene_dir.mkdir()
        row["export_load"] = load()
        try:
            row["export"] = export(count, scene_dir)
        except RuntimeError as e:
            row["export"] = {"error": str(e)[-600:]}
            return row
        print(f"  {count}: exported {row['export']}", file=sys.stderr)
        if "serve" not in stages:
            return row
        then = (lambda url: browser_stage(url, scene_dir.name, deadline_s)) if "browser" in stages else None
        row["serve_load"] = load()
        row["serve"] = serve_stage(scene_dir, work, count, deadline_s, then)
        row["end_load"] = load()
        print(f"  {count}: served {row['serve']}", file=sys.stderr)
    return row


def mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB"


def table(rows: list[dict]) -> str:
    head = "| | " + " | ".join(f"{r['elements']:,}" for r in rows) + " |\n|---|" + "---:|" * len(rows) + "\n"

    def cell(r: dict, path: tuple[str, ...], fmt) -> str:
        v: object = r
        for k in path:
            if not isinstance(v, dict) or k not in v:
                return _failure(r, path[0])
            v = v[k]
        return fmt(v)

    specs = [
        ("export: CPU-s / peak RSS", ("export",), lambda e: f"{e['cpu_s']:.0f} s / {e['rss_mb']:,.0f} MB"),
        ("GLB (meshopt) / its JSON chunk", ("export",), lambda e: f"{mb(e['glb_bytes'])} / {mb(e['glb_json_bytes'])}"),
        ("manifest.json", ("export", "manifest_bytes"), mb),
        (
            "tiles: files / bytes (with index and catalogue)",
            ("export",),
            lambda e: f"{e['tiles']} / {mb(e['tile_bytes'])}",
        ),
        ("serve: /api/health answers", ("serve", "health_s"), lambda s: f"{s:.1f} s"),
        ("serve: search index built", ("serve", "index_s"), lambda s: f"{s:.1f} s"),
        ("serve: server RSS", ("serve", "rss_mb"), lambda s: f"{s:,.0f} MB"),
        ("serve: server CPU-s to there (start-up, index, probes)", ("serve", "cpu_s"), lambda s: f"{s:.0f} s"),
        ("API: search, 1 hit", ("serve", "api"), lambda a: _api(a, "search, 1 hit (brief)")),
        ("API: a tree page", ("serve", "api"), lambda a: _api(a, next(k for k in a if k.startswith("tree page")))),
        ("browser: first frame", ("serve", "browser", "first_frame_s"), lambda s: f"{s:.1f} s"),
        ("browser: tree rows", ("serve", "browser", "tree_s"), lambda s: f"{s:.1f} s"),
        ("browser: JS heap", ("serve", "browser", "heap_mb"), lambda s: f"{s:,.0f} MB"),
        ("browser: peak GPU process / renderer RSS", ("serve", "browser", "peak_rss_mb"), _rss),
        ("load average (export → end)", ("export_load",), lambda x: str(x)),
    ]
    lines = [f"| {name} | " + " | ".join(cell(r, path, fmt) for r in rows) + " |\n" for name, path, fmt in specs]
    return head + "".join(lines)


def _api(a: dict, key: str) -> str:
    return f"{a[key]['ms']:.1f} ms"


def _rss(p: dict) -> str:
    return f"{p['gpu-process']:,.0f} / {p['renderer']:,.0f} MB"


def _failure(row: dict, stage: str) -> str:
    for key in ("export", "serve"):
        entry = row.get(key, {})
        if "error" in entry:
            return f"failed at {key}"
    browser = row.get("serve", {}).get("browser", {})
    return f"**{browser['failure'][:80]}**" if "failure" in browser else "—"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elements", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, from {', '.join(STAGES)}")
    ap.add_argument("--deadline", type=float, default=1800.0, help="seconds per stage before it counts as failed")
    args = ap.parse_args(argv)
    stages = args.stages.split(",")
    if set(stages) - set(STAGES):
        ap.error(f"--stages: choose from {', '.join(STAGES)}")
    if "browser" in stages:
        build_client()
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.elements:  # each row is kept as soon as it is measured
        print(f"{n} elements …", file=sys.stderr)
        rows.append(bench_size(n, stages, args.deadline))
        (RESULTS / "million.json").write_text(json.dumps(rows, indent=1, default=str))
    text = table(rows)
    print(text)
    (RESULTS / "million.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
