"""The history chart in a browser (issue 13: "a 7-day chart of one property at 1 Hz appears in ≤ 200 ms
(aggregated), and zooming to one hour shows raw points").

    python -m bench.timeline_chart                 # 7 days at 1 Hz, 7 runs
    python -m bench.timeline_chart --days 1 --runs 3

The synthetic twin of the browser tests (tests/web_helpers.py) with DAYS days of one sample per second for one
property (a slow sine plus noise, written through `Historian.append` into the server's data dir before it starts,
so the minute aggregates and the sealed Parquet hours are real), served by the real server; Debian's headless
Chromium (SwiftShader) opens the viewer and charts the property (what its Chart button does):

- whole span: the timeline's span set to 7 d; from the click to uPlot having drawn the answer (the
  `GET /api/history` request, checking, joining and drawing), with the points and resolution it got;
- one hour: the chart zoomed to the last hour; the same, which must be raw samples (resolution 0, 3 600 points).

Milliseconds, median and max over the runs. Results: a markdown table on stdout and in
bench/results/timeline_chart.md (+ .json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from scene.state import Reading
from tests.web_helpers import BINDINGS, build_client, chromium_browser, make_twin, open_viewer, serve_scene
from viewer_server.historian import HOUR, Historian
from viewer_server.live import HISTORY_DIR
from viewer_server.scenes import scene_id_for

RESULTS = Path(__file__).resolve().parent / "results"
ELEMENT, PROP = "el-00000", "pressure"
DAY = 24 * HOUR

# Chart the property (as its Chart button does) and resolve with how long until uPlot drew it, and what it drew.
# The last history request's time, from sending it to its last byte (the server's share, and the wire's).
REQUEST_MS = """window.requestMs = () => { const e = performance.getEntriesByType('resource')
  .filter((r) => r.name.includes('/api/history?')).pop(); return e ? e.responseEnd - e.startTime : NaN; }"""
CHART = """async ([id, prop]) => { const chart = window.twinview.timeline.chart; chart.clear();
  const start = performance.now();
  chart.toggle(id, prop);
  while (!(chart.plot && chart.series.length)) await new Promise((r) => requestAnimationFrame(r));
  return { ms: performance.now() - start, points: chart.series[0].t.length, resolution: chart.resolution,
           request_ms: requestMs() }; }"""
ZOOM = """async ([from, to]) => { const chart = window.twinview.timeline.chart;
  const start = performance.now();
  chart.zoom = { from, to };
  await chart.load();
  await new Promise((r) => requestAnimationFrame(r));
  return { ms: performance.now() - start, points: chart.series[0].t.length, resolution: chart.resolution,
           request_ms: requestMs() }; }"""


def fill(folder: Path, days: float, end: float) -> int:
    """`days` of 1 Hz samples of the property, ending at `end`, as the server would have written them."""
    h = Historian(folder)
    start = end - days * DAY
    rng = np.random.default_rng(11)
    n = 0
    for hour in np.arange(start, end, HOUR):
        ts = np.arange(hour, min(hour + HOUR, end), 1.0)
        values = np.round(3 + 1.5 * np.sin(ts / 5400) + rng.normal(0, 0.05, len(ts)), 3)
        h.append(
            [Reading(ELEMENT, PROP, float(v), "bar", float(t)) for t, v in zip(ts, values, strict=True)],
            float(ts[-1]),
            "bench",
        )
        n += len(ts)
    h.flush()
    h.seal(end + HOUR)
    h.close()
    return n


def run(days: float, runs: int) -> dict:
    build_client()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        twin = make_twin(root / "synthetic", 24)
        (root / "twin.bindings.yaml").write_text(BINDINGS)
        end = time.time() - 5
        began = time.perf_counter()
        samples = fill(root / "data" / HISTORY_DIR / scene_id_for(twin.directory), days, end)
        fill_s = time.perf_counter() - began
        whole, hour = [], []
        with (
            serve_scene(twin.directory, root / "twin.bindings.yaml", root / "data") as srv,
            chromium_browser() as browser,
        ):
            page = open_viewer(browser, srv.url)
            page.wait_for_function("window.twinview.timeline.replay.available", timeout=30000)
            page.evaluate(REQUEST_MS)
            page.locator(".tl-span").select_option(str(int(7 * DAY)))
            for _ in range(runs):
                whole.append(page.evaluate(CHART, [ELEMENT, PROP]))
                hour.append(page.evaluate(ZOOM, [end - HOUR, end]))
    return {
        "days": days,
        "samples": samples,
        "fill_s": round(fill_s, 1),
        "runs": runs,
        "whole": whole,
        "hour": hour,
    }


def table(r: dict) -> str:
    def row(name: str, rs: list[dict]) -> str:
        ms = [x["ms"] for x in rs]
        res = {x["resolution"] for x in rs}
        pts = {x["points"] for x in rs}
        what = "raw" if res == {0} else f"{', '.join(f'{x:g} s' for x in sorted(res))} buckets (min/max/mean)"
        req = statistics.median(x["request_ms"] for x in rs)
        pts_text = ", ".join(map(str, sorted(pts)))
        return f"| {name} | {statistics.median(ms):.0f} | {max(ms):.0f} | {req:.0f} | {pts_text} | {what} |"

    return "\n".join(
        [
            f"{r['samples']:,} samples ({r['days']:g} days at 1 Hz, written in {r['fill_s']} s), {r['runs']} runs:",
            "",
            "| chart | median ms | max ms | of which the request (median ms) | points | resolution |",
            "|---|---:|---:|---:|---:|---|",
            row(f"whole span ({r['days']:g} d)", r["whole"]),
            row("zoomed to 1 h", r["hour"]),
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    result = run(args.days, args.runs)
    md = table(result)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "timeline_chart.md").write_text(md + "\n")
    (RESULTS / "timeline_chart.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
