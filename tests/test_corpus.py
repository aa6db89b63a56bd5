"""Every file of the real corpus, and of our own hard cases (tests/fixtures/hard: IFC 4.3, unnamed property
sets, Unicode and Shift-JIS names, sheared USD transforms, NaN, huge counts): valid ones build into outputs
that pass the official validators, malformed ones end with exit code 2 and one clear line, leaving nothing
behind."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO, SHARED_DATA
from tests.corpus import CorpusFile, corpus_files, fixture_files

if TYPE_CHECKING:
    from scene.pipeline import BuildResult

pytestmark = pytest.mark.corpus

HARD = REPO / "tests" / "fixtures" / "hard"
FILES = corpus_files(SHARED_DATA) if (SHARED_DATA / "SOURCES.md").is_file() else []
FILES += fixture_files(HARD)
VALID = [f for f in FILES if not f.malformed]
MALFORMED = [f for f in FILES if f.malformed]
TESSELLATION_FREE = {".gltf", ".glb", ".obj", ".stl", ".ply", ".usd", ".usda", ".usdc", ".usdz"}
ABSENT = pytest.param(None, marks=pytest.mark.skip(reason=f"corpus not found at {SHARED_DATA}"))


def _params(files: list[CorpusFile]) -> list:
    return [pytest.param(f, id=f.rel) for f in files] or [ABSENT]


def _ifc_products_with_representation(path: Path) -> set[str]:
    import ifcopenshell

    try:
        model = ifcopenshell.open(str(path))
    except ifcopenshell.SchemaError:  # IFC 4.3 under another name: what TwinView reads it as is tested apart
        return set()
    return {p.GlobalId for p in model.by_type("IfcProduct") if p.Representation}


def _gltf_node_count(path: Path) -> int:
    import pygltflib

    return len(pygltflib.GLTF2().load(str(path)).nodes)


@pytest.mark.parametrize("corpus_file", _params(VALID))
def test_valid_file_builds_and_validates(corpus_file: CorpusFile, corpus_build: Callable[[Path], BuildResult]):
    from scene.validate import validate_glb, validate_usd

    result = corpus_build(corpus_file.path)
    out = result.outdir
    manifest = json.loads((out / "manifest.json").read_text())

    assert validate_glb(out / "scene.glb") == []
    assert validate_usd(out / "scene.usdz", arkit=True) == []
    assert len(manifest["elements"]) == len(result.scene.elements)
    assert manifest["inputs"][0]["sha256"] and manifest["inputs"][0]["path"].endswith(corpus_file.path.name)

    ids = {e["id"] for e in manifest["elements"]}
    suffix = corpus_file.path.suffix.lower()
    if suffix in (".ifc", ".ifczip"):
        represented = _ifc_products_with_representation(corpus_file.path)
        assert represented <= ids
    elif suffix in (".gltf", ".glb"):
        assert len(ids) >= _gltf_node_count(corpus_file.path)
    # Tessellating B-reps (IFC, STEP) legitimately differs between kernels; stored meshes must not.
    expected = corpus_file.expected_triangles()
    if suffix in TESSELLATION_FREE and expected and "point cloud" not in corpus_file.kind:
        # SOURCES.md counts each stored mesh once, however many nodes instance it.
        assert sum(m.triangle_count for m in result.scene.meshes.values()) == expected


@pytest.mark.parametrize("corpus_file", _params(MALFORMED))
def test_malformed_file_gets_one_clear_line(corpus_file: CorpusFile, tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "viewer_server.cli", "build", str(corpus_file.path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"twinview: {corpus_file.path}: ")
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "no staging folder may be left behind"
