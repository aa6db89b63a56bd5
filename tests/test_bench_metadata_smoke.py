"""The metadata benchmark measures what it claims, on a 1 000-element plant without the browser: the answers the
client asks for are small, and a late joiner's snapshot and deltas shrink with its interest."""

from __future__ import annotations

from bench import metadata


def test_a_small_plant_end_to_end() -> None:
    r = metadata.bench_size(1000, browser=False)
    assert r["elements"] == 1000 + 1 + metadata.AREAS + 1000 // metadata.UNIT  # site, areas, units
    assert r["manifest_bytes"] > 100 * r["api"]["one element's record"]["bytes"]
    assert r["api"][f"tree page (a unit: {metadata.UNIT} children)"]["bytes"] < 10_000
    whole, box, listed = (r["joiners"][k] for k in ("whole scene", "one unit (box)", "one area's ids listed"))
    assert whole["props"] == 1000 // metadata.BOUND_EVERY and box["props"] == metadata.UNIT // metadata.BOUND_EVERY
    assert listed["ids"] == 1000 // metadata.AREAS and listed["props"] == listed["ids"] // metadata.BOUND_EVERY
    assert box["snapshot_bytes"] < whole["snapshot_bytes"] / 5 and box["delta_bytes"] < whole["delta_bytes"] / 5
    assert "| late joiner, one unit (box): snapshot |" in metadata.table({1000: r})
