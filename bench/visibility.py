"""Visibility on a big model: how long hide, isolate, x-ray, transparency and "show all" take in the viewer.

    .venv/bin/python -m bench.visibility                   # 20 000 synthetic elements (~2 M triangles), 5 runs
    .venv/bin/python -m bench.visibility --elements 5000 --runs 3

The scene is bench/web.py's generated plant (cylinders of 100 triangles, one node per element, two coarser
levels), served by the real server, in headless Debian Chromium on SwiftShader (software GL), 1280×800. Per run
(a fresh page), each operation is called on `window.twinview.visibility` as the element menu and the eyes call it:

- call: the synchronous part (the state change and TwinView re-applying colour, visibility and opacity to the
  elements whose state changed);
- to frame: from the call to the end of the next rendered frame (the merged batches rebuild their index lists in
  that frame's prerender, then it draws);
- a frame without a change, for scale (a small camera orbit, the same render path), also while all but one
  element are x-rayed (drawn blended, in the see-through pass);
- GPU geometries (`renderer.info.memory.geometries`) before and after all operations: hiding builds no geometry
  (the one extra is a batch's see-through pass, made once when something in it first turns see-through).

Medians over runs go to stdout and bench/results/visibility.md, raw numbers to bench/results/visibility.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.web import RESULTS, VIEWPORT, bindings_for, make_plant
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, build_client, serve_scene

LOAD_TIMEOUT_MS = 900_000  # a 20 000-element model and its levels of detail on a busy software GL
OPERATIONS = [
    "hide one",
    "show it again",
    "isolate one",
    "show all",
    "x-ray others",
    "transparency of one",
    "show all ",
]

# Runs in the page: each operation, timed to its call's end and to the end of the next frame.
MEASURE = """async (ids) => {
  const t = window.twinview, v = t.visibility, viewer = t.viewer;
  const frame = () => new Promise((r) => viewer.addEventListener('frame', r, { once: true }));
  const ops = [() => v.hide([ids[0]]), () => v.show([ids[0]]), () => v.isolate([ids[1]]), () => v.showAll(),
    () => v.xrayOthers([ids[1]]), () => v.setOpacity([ids[2]], 0.4), () => v.showAll()];
  const geometries = [viewer.renderer.info.memory.geometries];
  const orbit = async () => { // a frame after a small camera orbit, nothing else changed
    viewer.camera.position.applyAxisAngle(viewer.camera.up, 0.01);
    viewer.camera.lookAt(viewer.controls.target);
    const t0 = performance.now();
    viewer.invalidate();
    await frame();
    return performance.now() - t0;
  };
  const call = [], toFrame = [];
  let xrayed = 0;
  for (const [k, op] of ops.entries()) {
    viewer.invalidate();
    await frame();
    const t0 = performance.now();
    op();
    call.push(performance.now() - t0);
    await frame();
    toFrame.push(performance.now() - t0);
    if (k === 4) xrayed = await orbit(); // drawing with everything but one x-rayed
  }
  const still = await orbit();
  geometries.push(viewer.renderer.info.memory.geometries);
  return { call, toFrame, still, xrayed, geometries, elements: t.app.batches.elements.size };
}"""


def run(browser, url: str, ids: list[str]) -> dict:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.evaluate("window.twinview.ready")
    # The levels of detail load after the next frame; a page that nothing changes draws none, so ask for frames.
    page.wait_for_function(
        "() => (window.twinview.viewer.invalidate(), window.twinview.app.twin?.lodsLoaded === true)",
        timeout=LOAD_TIMEOUT_MS,
    )
    result = page.evaluate(MEASURE, ids)
    ctx.close()
    return {**result, "errors": errors}


def table(runs: list[dict], meta: dict) -> str:
    med = statistics.median
    lines = [
        f"Visibility on {runs[0]['elements']} elements ({meta['when']}; {meta['command']}; medians of {len(runs)} runs,"
        " headless Chromium, SwiftShader, 1280×800)",
        "",
        "| operation | call (ms) | to the end of the next frame (ms) |",
        "|---|---|---|",
    ]
    for k, name in enumerate(OPERATIONS):
        lines.append(
            f"| {name.strip()} | {med(r['call'][k] for r in runs):.1f} | {med(r['toFrame'][k] for r in runs):.0f} |"
        )
    lines += [
        f"| (a frame without a change) | — | {med(r['still'] for r in runs):.0f} |",
        f"| (a frame without a change, all but one x-rayed) | — | {med(r['xrayed'] for r in runs):.0f} |",
        "",
        "GPU geometries before / after: " + ", ".join(f"{r['geometries'][0]} / {r['geometries'][1]}" for r in runs),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elements", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    build_client()
    runs = []
    with tempfile.TemporaryDirectory(prefix="twinview-visbench-") as tmp:
        work = Path(tmp)
        scene = make_plant(work / "plant", args.elements)
        (work / "plant.bindings.yaml").write_text(bindings_for(scene["target"]))
        ids = [f"el-{i:05d}" for i in (1, args.elements // 2, args.elements - 1)]
        with serve_scene(work / "plant", work / "plant.bindings.yaml", work / "data") as live, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            url = f"{live.url}/?scene=plant&name=bench"
            run(browser, url, ids)  # warm-up, not counted
            for k in range(args.runs):
                runs.append(run(browser, url, ids))
                print(f"  run {k + 1}: {[round(x) for x in runs[-1]['toFrame']]} ms", file=sys.stderr)
            browser.close()
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": ".venv/bin/python -m bench.visibility " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    md = table(runs, meta)
    print(md)
    (RESULTS / "visibility.md").write_text(md)
    (RESULTS / "visibility.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
