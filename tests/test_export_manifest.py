"""manifest.json: consistent with the scene, versioned, and readable back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scene.export.glb import GlbStats
from scene.export.manifest import (
    MANIFEST_VERSION,
    ManifestError,
    _jsonable,
    build_manifest,
    load_manifest,
    write_manifest,
)
from tests.scene_factory import synthetic_scene


def test_manifest_matches_the_scene(tmp_path: Path) -> None:
    scene = synthetic_scene()
    glb = GlbStats(nodes=1, meshes=2, primitives=3, triangles=4, points=5, bytes=6, draw_calls_estimate=7)
    write_manifest(scene, tmp_path / "manifest.json", {"stage_seconds": 0.5, "glb": glb})
    m = load_manifest(tmp_path / "manifest.json")
    assert (m["format"], m["version"], m["units"], m["up_axis"]) == ("twinview-manifest", 1, "m", "Y")
    assert m["inputs"] == [
        {
            "path": "site.ifc",
            "sha256": "0" * 64,
            "format": "ifc",
            "importer": "synthetic 1.0",
            "source_units": "mm",
            "source_up_axis": "Z",
        }
    ]
    stats = m["stats"]
    assert stats["elements"] == len(scene.elements) and stats["triangles"] == scene.triangle_count
    assert stats["points"] == 500 and stats["meshes"] == len(scene.meshes) and stats["materials"] == 5
    assert stats["by_class"]["IfcWall"] == 4 and sum(stats["by_class"].values()) == len(scene.elements)
    assert stats["stage_seconds"] == 0.5 and stats["glb"]["draw_calls_estimate"] == 7
    assert m["warnings"] == ["synthetic warning"]
    assert [e["id"] for e in m["elements"]] == list(scene.elements)
    for entry in m["elements"]:
        el = scene.elements[entry["id"]]
        assert (entry["name"], entry["class"], entry["parent"]) == (el.name, el.cls, el.parent)
        assert entry["properties"] == el.properties
        bounds = scene.world_bounds(el.id)
        if bounds is None:
            assert entry["bbox"] is None and entry["triangles"] == 0
        else:
            np.testing.assert_allclose(entry["bbox"], [bounds[0], bounds[1]], atol=1e-6)
            assert entry["triangles"] == scene.meshes[el.mesh].triangle_count


def test_load_manifest_refuses_other_formats_and_newer_versions(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": "twinview-manifest", "version": MANIFEST_VERSION + 1}))
    with pytest.raises(ManifestError, match="version 2"):
        load_manifest(path)
    path.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ManifestError, match="not a twinview-manifest"):
        load_manifest(path)
    path.write_text("{")
    with pytest.raises(ManifestError, match="not readable"):
        load_manifest(path)


def test_the_streamed_file_is_the_manifest_as_one_document(tmp_path: Path) -> None:
    # Records are written one at a time (a plant's manifest is never held whole); the bytes are those of the
    # whole document encoded at once, non-ASCII names included.
    scene = synthetic_scene()
    next(iter(scene.elements.values())).name = "Tür 1 – Süd"
    stats = {"glb": GlbStats(1, 2, 3, 4, 5, 6, 7), "seconds": np.float64(0.25)}
    write_manifest(scene, tmp_path / "manifest.json", stats)
    whole = json.dumps(build_manifest(scene, stats), separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    assert (tmp_path / "manifest.json").read_text(encoding="utf-8") == whole
