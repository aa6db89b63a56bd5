"""What the look costs a frame, measured in one page: edges off and on, switched every --frames frames.

    .venv/bin/python -m bench.web_look                               # duplex.ifc and 10 000 synthetic elements
    .venv/bin/python -m bench.web_look --elements 0 --rounds 10

On a shared machine the frame time drifts with the load more than two clients differ between page loads;
alternating within one page lets both conditions see the same drift. Each round: switch, one unmeasured
frame pair, wait until the edges for the view are found, then ``--frames`` frames timed as bench/web.py
times them (request → frame rendered and read back). Medians over all rounds' frames, and the most edge
segments drawn, go to stdout and bench/results/web_look.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.web import DEFAULT_IFC, FRAME_TIMES, RESULTS, bindings_for, make_plant
from tests.web_helpers import build_client, chromium_browser, open_viewer, serve_scene

EDGES_READY = "(() => { const e = window.twinview.app.twin.edges; return e.pending.size === 0 && e.timer === 0; })()"
TIMEOUT_MS = 300_000
NO_BINDINGS = "version: 1\ndefault_layer: operations\nbindings: []\nlayers:\n  operations:\n    rules: []\n"


def measure(url: str, rounds: int, frames: int) -> dict:
    """Frame times with edges off and on, alternating in one page."""
    with chromium_browser() as browser:
        page = open_viewer(browser, url)
        page.wait_for_function("window.twinview.app.twin?.lodsLoaded === true", timeout=TIMEOUT_MS)
        times: dict[str, list[float]] = {"off": [], "on": []}
        segments = 0
        for _ in range(rounds):
            for on in (False, True):
                page.evaluate("on => window.twinview.app.twin.edges.setEnabled(on)", on)
                page.evaluate(FRAME_TIMES, 2)
                page.wait_for_function(EDGES_READY, timeout=TIMEOUT_MS)
                times["on" if on else "off"] += page.evaluate(FRAME_TIMES, frames)["times"]
                if on:
                    segments = max(segments, page.evaluate("window.twinview.app.twin.edges.segments"))
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        return {"off_ms": off, "on_ms": on, "ratio": on / off, "segments": segments, "times": times}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elements", type=int, default=10_000, help="synthetic elements (0: skip)")
    ap.add_argument("--ifc", type=Path, default=DEFAULT_IFC, help="IFC file to build and measure ('' to skip)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--frames", type=int, default=10)
    args = ap.parse_args(argv)
    build_client()
    results = {}
    with tempfile.TemporaryDirectory(prefix="twinview-look-") as tmp:
        work = Path(tmp)
        scenes = []
        if str(args.ifc) not in ("", "."):
            cli = Path(sys.executable).with_name("twinview")
            subprocess.run([str(cli), "build", str(args.ifc), "-o", str(work / "ifc"), "--lod"], check=True)
            scenes.append((args.ifc.name, work / "ifc", NO_BINDINGS))
        if args.elements:
            scene = make_plant(work / "plant", args.elements)
            scenes.append((f"synthetic-{args.elements}", work / "plant", bindings_for(scene["target"])))
        for name, directory, bindings in scenes:
            (work / "b.yaml").write_text(bindings)
            with serve_scene(directory, work / "b.yaml", work / f"{name}-data") as live:
                r = measure(f"{live.url}/?scene={directory.name}&name=bench", args.rounds, args.frames)
            results[name] = r
            print(
                f"{name}: edges off {r['off_ms']:.0f} ms, on {r['on_ms']:.0f} ms ({r['ratio']:.2f}×),"
                f" {r['segments']} segments"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "web_look.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
