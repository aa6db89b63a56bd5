"""What section planes and their caps cost per frame, in the viewer, on bench.web's two scenes.

    .venv/bin/python -m bench.section                       # 10 000 synthetic elements + duplex.ifc, 3 runs
    .venv/bin/python -m bench.section --elements 1000 --ifc '' --runs 5 --frames 15

The scenes are bench.web's (the generated plant of ``--elements`` cylinders with levels of detail, and the IFC
file built by ``twinview build --lod``), served by the real server. Per run (a fresh browser context, the
levels of detail loaded) the same page measures, in turn, ``--frames`` frames (bench.web's FRAME_TIMES: a small
orbit, request to end of frame with a 1-pixel read-back) with: no cut; one horizontal plane through the model's
centre, caps off; the same with caps; three planes (X, Y, Z) with caps. The conditions rotate from run to run.
Medians over all frames of all runs; headless Debian Chromium, SwiftShader (software GL). The table goes to
stdout and bench/results/section.md, the raw frame times to bench/results/section.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.web import (
    DEFAULT_IFC,
    FRAME_TIMES,
    LOAD_TIMEOUT_MS,
    RESULTS,
    VIEWPORT,
    bindings_for,
    build_ifc,
    make_plant,
)
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, build_client, serve_scene

# Each condition: the cut it sets up (in the page), by name.
CONDITIONS = {
    "no cut": "s.clear(); c.setEnabled(true);",
    "1 plane, no caps": "s.clear(); c.setEnabled(false); s.addAxis('y');",
    "1 plane + caps": "s.clear(); c.setEnabled(true); s.addAxis('y');",
    "3 planes + caps": "s.clear(); c.setEnabled(true); s.addAxis('x'); s.addAxis('y'); s.addAxis('z');",
}


def run(browser, url: str, frames: int, order: list[str]) -> dict[str, list[float]]:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.goto(url)
    page.evaluate("window.twinview.ready")
    page.wait_for_function("() => window.twinview.app.twin?.lodsLoaded === true", timeout=LOAD_TIMEOUT_MS)
    out: dict[str, list[float]] = {}
    for name in order:
        page.evaluate(
            f"(() => {{ const s = window.twinview.section; const c = window.twinview.caps; {CONDITIONS[name]} }})()"
        )
        page.evaluate(FRAME_TIMES, 2)  # the new programs' first use, not measured
        out[name] = page.evaluate(FRAME_TIMES, frames)["times"]
    ctx.close()
    return out


def bench(browser, name: str, scene_dir: Path, target: str, work: Path, runs: int, frames: int) -> dict:
    (work / f"{name}.bindings.yaml").write_text(bindings_for(target))
    keys = list(CONDITIONS)
    times: dict[str, list[float]] = {k: [] for k in keys}
    with serve_scene(scene_dir, work / f"{name}.bindings.yaml", work / f"{name}-data") as live:
        url = f"{live.url}/?scene={scene_dir.name}&name=bench"
        for r in range(runs):
            got = run(browser, url, frames, keys[r % len(keys) :] + keys[: r % len(keys)])
            for k, ts in got.items():
                times[k] += ts
            print(f"  {name} run {r + 1}: " + ", ".join(f"{k} {statistics.median(v):.0f} ms" for k, v in got.items()),
                  file=sys.stderr)  # fmt: skip
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elements", type=int, default=10_000, help="synthetic elements (0: skip)")
    ap.add_argument("--ifc", type=Path, default=DEFAULT_IFC, help="IFC file to build ('' to skip)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=15)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    build_client()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        work = Path(tmp)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        if args.elements:
            plant = make_plant(work / "plant", args.elements)
            label = f"{args.elements} elements, {plant['triangles'] // 1000} k triangles (synthetic)"
            results[label] = bench(browser, "plant", work / "plant", plant["target"], work, args.runs, args.frames)
        if str(args.ifc) and args.ifc.is_file():
            ifc = build_ifc(args.ifc, work / args.ifc.stem)
            label = f"{args.ifc.name} ({ifc['elements']} elements, {ifc['triangles'] // 1000} k triangles)"
            results[label] = bench(browser, "ifc", work / args.ifc.stem, ifc["target"], work, args.runs, args.frames)
        browser.close()
    lines = ["| scene | " + " | ".join(CONDITIONS) + " |", "|---|" + "---:|" * len(CONDITIONS)]
    for label, times in results.items():
        base = statistics.median(times["no cut"])
        cells = [f"{statistics.median(ts):.0f} ms ({statistics.median(ts) / base:.2f}×)" for ts in times.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / "section.md").write_text(text)
    (RESULTS / "section.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
