"""The AR Quick Look package: valid for UsdValidation incl. the ARKit rules, self-contained, with twin ids."""

from __future__ import annotations

from pathlib import Path

from scene.export.usd_stage import StageWriter, write_stage
from scene.export.usdz import write_usdz
from scene.validate import validate_usd
from tests.scene_factory import synthetic_scene
from tests.usd_dump import composed


def _package(tmp_path: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    write_stage(synthetic_scene(), tmp_path / "scene.usdc")
    write_usdz(tmp_path / "scene.usdc", tmp_path / "scene.usdz")
    return tmp_path / "scene.usdz"


def test_usdz_passes_usd_validation_with_arkit_rules(tmp_path: Path) -> None:
    assert validate_usd(_package(tmp_path), arkit=True) == []


def test_usdz_is_self_contained_y_up_metres_with_textures_inside(tmp_path: Path) -> None:
    from pxr import Sdf, Usd, UsdGeom

    path = _package(tmp_path)
    names = list(Sdf.ZipFile.Open(str(path)).GetFileNames())
    assert names[0].endswith(".usdc") and any(n.endswith(".png") for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.usdc", "scene.usdz", "textures"]
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == "Y" and UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert stage.GetDefaultPrim().GetName() == "World"


def test_usdz_keeps_all_geometry_and_the_twin_ids(tmp_path: Path) -> None:
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(_package(tmp_path)))
    prims = list(stage.Traverse(Usd.TraverseInstanceProxies()))
    ids = {p.GetAttribute("twin:id").Get() for p in prims if p.HasAttribute("twin:id")}
    assert ids == set(synthetic_scene().elements)
    meshes = [p for p in prims if p.IsA(UsdGeom.Mesh)]
    scene = synthetic_scene()
    drawn = sum(len(scene.meshes[e.mesh].primitives) for e in scene.elements.values() if e.mesh not in (None, "scan"))
    assert len(meshes) == drawn
    assert len([p for p in prims if p.IsA(UsdGeom.Points)]) == 1


def test_usdz_of_a_stage_in_parts_holds_every_part_and_composes_to_the_same_stage(tmp_path: Path) -> None:
    """A large stage is a root layer and part layers (`StageWriter`): the package holds them all, root first,
    at the paths the root's sublayers name, and opens as the same stage as the one-layer package."""
    from pxr import Sdf

    scene = synthetic_scene()
    whole = _package(tmp_path / "whole")
    StageWriter(tmp_path / "parts" / "scene.usdc", part_elements=3).write(scene)
    path = tmp_path / "parts" / "scene.usdz"
    write_usdz(tmp_path / "parts" / "scene.usdc", path)
    names = list(Sdf.ZipFile.Open(str(path)).GetFileNames())
    parts = [n for n in names if n.startswith("scene.parts/")]
    assert names[0] == "scene.usdc" and len(parts) == 2 * -(-len(scene.elements) // 3)
    assert validate_usd(path, arkit=True) == []
    assert composed(path) == composed(whole)
