"""The peer-viewer benchmark measures what it claims, on a 40-element plant: both systems convert it, both viewers
draw it in Chromium with their tree panels, and the table states every figure. Skips where the bench-only peer
(bench/peers/setup.sh) is not installed, which is the test suite's usual case."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import plant, plant_viewers
from tests.web_helpers import build_client

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not plant_viewers.CONVERT.exists(), reason="the peer is not installed: run bench/peers/setup.sh to measure it"
    ),
]


def test_a_tiny_plant_side_by_side(tmp_path: Path) -> None:
    build_client()
    source = plant.write(40, tmp_path / "plant-40.ifc")
    ours, xkt = tmp_path / "twinview-40", tmp_path / "plant-40.xkt"
    built = {
        "twinview": plant_viewers.build_ours(source, ours),
        "xeokit": plant_viewers.build_xeokit(source, xkt, 2048, 300),
    }
    for b in built.values():
        assert b["cpu_s"] > 0 and b["rss_mb"] > 0 and b["triangles"] > 0 and b["bytes"] > 0
    assert built["xeokit"]["objects"] == 40
    runs = plant_viewers.bench_viewers(ours, xkt, runs=1, frames=2, aa=False)
    for system in plant_viewers.SYSTEMS:
        (r,) = runs[system]
        assert 0 < r["first_frame_s"] <= r["whole_s"] and r["tree_s"] > 0, r
        assert r["frame_ms"] > 0 and r["draw_calls"] > 0 and r["heap_mb"] > 0 and not r["errors"], r
        assert r["rss_mb"]["gpu-process"] > 0 and r["rss_mb"]["renderer"] > 0
        assert r["wire_bytes"] > 0 and r["code_bytes"] > 0
    assert runs["xeokit"][0]["metaobjects"] >= 40  # the XKT carries the metadata its tree is built from
    text = plant_viewers.table([{"size": 40, "build": built, "viewer": runs, "load": [0.0, 0.0]}])
    assert text.count("| 40 |") == 2 and "**failed**" not in text
