"""Generated plants (bench/plant.py) build: every element, its mapped type geometry shared, its property sets.

A 300-element plant goes through `twinview build` as a user's file would; the checks read the outputs.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bench import plant
from scene.pipeline import build

SIZE = 300
# Project, site, building and one area above the elements.
SPATIAL = {"IfcProject": 1, "IfcSite": 1, "IfcBuilding": 1, "IfcBuildingStorey": 1}
CLASSES = {
    "pipe": "IfcPipeSegment",
    "swept_pipe": "IfcPipeSegment",
    "rack": "IfcMember",
    "grating": "IfcPlate",
    **{kind: cls for kind, (cls, _, _, _) in plant.EQUIPMENT.items()},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("plant")
    source = plant.write(SIZE, folder / "plant.ifc")
    out = build([source], folder / "out").outdir
    return out, json.loads((out / "manifest.json").read_text())


def test_the_generator_is_reproducible(tmp_path: Path) -> None:
    first = plant.write(40, tmp_path / "a.ifc").read_bytes()
    assert plant.write(40, tmp_path / "b.ifc").read_bytes() == first


def test_the_mix_is_the_documented_one() -> None:
    counts = plant.expected_counts(1000)
    assert counts == {kind: share * 10 for kind, share in plant.MIX}
    assert sum(counts[kind] for kind in plant.EQUIPMENT) == 300  # 30 % mapped equipment


def test_every_element_comes_through_with_geometry(built: tuple[Path, dict]) -> None:
    _, manifest = built
    expected = Counter(SPATIAL)
    for kind, n in plant.expected_counts(SIZE).items():
        expected[CLASSES[kind]] += n
    assert manifest["stats"]["by_class"] == dict(expected)
    products = [e for e in manifest["elements"] if e["class"] not in SPATIAL]
    assert len(products) == SIZE
    assert all(e["triangles"] > 0 and e["bbox"] is not None for e in products)
    assert not [w for w in manifest["warnings"] if "failed" in w]


def test_swept_pipes_go_to_opencascade_in_the_same_pass(built: tuple[Path, dict]) -> None:
    # Manifold makes no IfcSweptDiskSolid: the bent pipes go to opencascade at once, in the same kernel
    # workers, instead of in a second pass once manifold has left them out.
    _, manifest = built
    assert manifest["inputs"][0]["importer"].endswith("(manifold+opencascade)")
    assert not [w for w in manifest["warnings"] if "retried with opencascade" in w]
    bent = [e for e in manifest["elements"] if e["name"].startswith("LS-")]
    assert len(bent) == plant.expected_counts(SIZE)["swept_pipe"] and all(e["triangles"] for e in bent)


def test_mapped_equipment_shares_one_mesh_per_type(built: tuple[Path, dict]) -> None:
    out, manifest = built
    glb = _glb_json(out / "scene.glb")
    meshes_by_class: dict[str, set[int]] = {}
    for node in glb["nodes"]:
        if "mesh" in node:
            meshes_by_class.setdefault(node["extras"]["class"], set()).add(node["mesh"])
    for kind, (cls, _, _, sizes) in plant.EQUIPMENT.items():
        assert len(meshes_by_class[cls]) == len(sizes), kind
    # Everything else is its own shape: one mesh per element, apart from the same racks and gratings.
    unique = (
        len(manifest["elements"])
        - sum(SPATIAL.values())
        - sum(n for kind, n in plant.expected_counts(SIZE).items() if kind in plant.EQUIPMENT)
    )
    assert manifest["stats"]["meshes"] >= unique
    types = {e["properties"]["Attributes"].get("TypeName") for e in manifest["elements"] if e["class"] == "IfcPump"}
    assert types == {"Pump 600", "Pump 900", "Pump 1200"}


def test_two_property_sets_per_element_reach_the_manifest_and_the_stage(built: tuple[Path, dict]) -> None:
    from pxr import Usd

    from scene.export.usd_stage import read_properties

    out, manifest = built
    valve = next(e for e in manifest["elements"] if e["name"] == "V-000002")
    assert valve["properties"]["TwinView_Plant"] == {"Tag": "V-000002", "Service": "condensate"}
    assert set(valve["properties"]["TwinView_Design"]) == {"NominalSize", "DesignPressure", "Kind"}
    assert valve["units"]["TwinView_Design"] == {"NominalSize": "m", "DesignPressure": "Pa"}
    stage = Usd.Stage.Open(str(out / "scene.usdc"))
    prim = next(p for p in stage.Traverse() if p.GetAttribute("twin:id").Get() == valve["id"])
    props = read_properties(prim)
    assert props["TwinView_Plant"] == valve["properties"]["TwinView_Plant"]
    assert props["TwinView_Design"] == valve["properties"]["TwinView_Design"]


def _glb_json(path: Path) -> dict:
    data = path.read_bytes()
    length = int.from_bytes(data[12:16], "little")
    return json.loads(data[20 : 20 + length])
