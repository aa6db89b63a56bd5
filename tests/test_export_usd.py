"""The canonical USD stage: metadata, provenance, one prim per element with twin attributes, geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scene.export.usd_stage import (
    PART_ELEMENTS,
    StageWriter,
    parts_dir,
    read_properties,
    read_units,
    write_stage,
)
from scene.model import Scene
from scene.validate import validate_usd
from tests.conftest import SHARED_DATA
from tests.scene_factory import synthetic_scene
from tests.usd_dump import composed


@pytest.fixture
def stage_path(tmp_path: Path) -> Path:
    path = tmp_path / "scene.usdc"
    write_stage(synthetic_scene(), path)
    return path


def _element_prims(stage: object) -> dict[str, object]:
    from pxr import Usd

    return {
        p.GetAttribute("twin:id").Get(): p
        for p in stage.Traverse(Usd.TraverseInstanceProxies())
        if p.HasAttribute("twin:id")
    }


def test_stage_metadata_and_provenance(stage_path: Path) -> None:
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(stage_path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert UsdGeom.GetStageUpAxis(stage) == "Y"
    assert stage.GetDefaultPrim().GetPath() == "/World"
    data = stage.GetRootLayer().customLayerData
    assert data["twinview:version"]
    assert data["twinview:inputs"]["0"] == {
        "path": "site.ifc",
        "sha256": "0" * 64,
        "format": "ifc",
        "importer": "synthetic 1.0",
        "source_units": "mm",
        "source_up_axis": "Z",
    }


def test_one_prim_per_element_nested_like_the_scene_with_twin_attributes(stage_path: Path) -> None:
    from pxr import Usd

    scene = synthetic_scene()
    stage = Usd.Stage.Open(str(stage_path))
    prims = _element_prims(stage)
    assert set(prims) == set(scene.elements)
    for el in scene.elements.values():
        prim = prims[el.id]
        assert prim.GetTypeName() == "Xform"
        assert prim.GetAttribute("twin:name").Get() == el.name
        assert prim.GetAttribute("twin:class").Get() == el.cls
        parent = prim.GetParent()
        expected_parent = "/World" if el.parent is None else str(prims[el.parent].GetPath())
        assert str(parent.GetPath()) == expected_parent
    # Sibling names stay unique although two walls share a name; `$` and `/` are sanitised.
    assert prims["wall0"].GetName() != prims["wall0b"].GetName()
    assert "$" not in str(prims["storey$1"].GetPath()) and prims["win$0"].GetName() == "Window_1"


def test_world_transforms_and_geometry_bounds_match_the_scene(stage_path: Path) -> None:
    from pxr import Usd, UsdGeom

    scene = synthetic_scene()
    stage = Usd.Stage.Open(str(stage_path))
    cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_])
    for el_id, prim in _element_prims(stage).items():
        el = scene.elements[el_id]
        world = np.array(UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(Usd.TimeCode.Default())).T
        np.testing.assert_allclose(world, el.matrix, atol=1e-6)
        bounds = scene.world_bounds(el_id)
        geometry = prim.GetChild("Geometry")
        assert geometry.IsValid() == (bounds is not None)
        if bounds is not None:
            box = cache.ComputeWorldBound(geometry).ComputeAlignedRange()
            np.testing.assert_allclose(np.array(box.GetMin()), bounds[0], atol=1e-5)
            np.testing.assert_allclose(np.array(box.GetMax()), bounds[1], atol=1e-5)


def test_properties_round_trip_with_their_types(stage_path: Path) -> None:
    from pxr import Usd

    scene = synthetic_scene()
    stage = Usd.Stage.Open(str(stage_path))
    prims = _element_prims(stage)
    for el in scene.elements.values():
        assert read_properties(prims[el.id]) == el.properties
        assert read_units(prims[el.id]) == el.units  # a property's unit travels as its customData
    assert read_units(prims["win$0"]) == {"Pset_WindowCommon": {"U-Value": "W/(m2·K)"}}
    width = prims["wall0"].GetAttribute("twin:props:Pset_WallCommon:Width")
    assert width.GetTypeName() == "double" and not width.HasAuthoredMetadata("displayGroup")  # a valid name as is
    assert prims["wall0"].GetAttribute("twin:props:Pset_WallCommon:Layers").GetTypeName() == "int64"


def test_shared_mesh_is_written_once_and_instanced(stage_path: Path) -> None:
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(stage_path))
    prims = _element_prims(stage)
    walls = [prims[i].GetChild("Geometry") for i in ("wall0", "wall0b", "wall1", "wall1b")]
    assert all(w.IsInstance() for w in walls)
    assert len({w.GetPrototype().GetPath() for w in walls}) == 1
    assert not prims["ball"].GetChild("Geometry").IsInstance()  # used once: written in place
    meshes = [p for p in stage.Traverse(Usd.TraverseInstanceProxies()) if p.IsA(UsdGeom.Mesh)]
    assert all(UsdGeom.Mesh(m).GetNormalsAttr().HasAuthoredValue() for m in meshes)


def test_points_colours_uvs_and_materials(stage_path: Path) -> None:
    from pxr import Usd, UsdGeom, UsdShade

    stage = Usd.Stage.Open(str(stage_path))
    prims = _element_prims(stage)
    (points,) = prims["scan"].GetChild("Geometry").GetChildren()
    assert points.IsA(UsdGeom.Points) and len(UsdGeom.Points(points).GetPointsAttr().Get()) == 500
    (crate,) = prims["crate"].GetChild("Geometry").GetChildren()
    assert UsdGeom.PrimvarsAPI(crate).GetPrimvar("displayColor").GetInterpolation() == "vertex"
    (poster,) = prims["poster"].GetChild("Geometry").GetChildren()
    st = np.array(UsdGeom.PrimvarsAPI(poster).GetPrimvar("st").Get())
    np.testing.assert_allclose(st[0], [0, 0])  # glTF (0, 1) is USD (0, 0): v flipped
    material, _ = UsdShade.MaterialBindingAPI(poster).ComputeBoundMaterial()
    assert material.GetPrim().GetName().startswith("Poster")
    texture = stage.GetPrimAtPath(material.GetPath().AppendChild("BaseColorTexture"))
    assert texture.GetAttribute("inputs:file").Get().resolvedPath.endswith(".png")
    glass = stage.GetPrimAtPath("/World/Looks/Glass_1/PreviewSurface")
    assert glass.GetAttribute("inputs:opacity").Get() == pytest.approx(0.4)


def test_stage_passes_usd_validation(stage_path: Path) -> None:
    assert validate_usd(stage_path) == []


def test_validate_usd_reports_real_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.usda"
    bad.write_text('#usda 1.0\ndef BasisCurves "Curve" {}\n')
    assert validate_usd(bad)  # no metersPerUnit / upAxis / defaultPrim
    assert any("BasisCurves" in e for e in validate_usd(bad, arkit=True))


def test_rewriting_the_same_path_in_one_process_replaces_the_stage(tmp_path: Path) -> None:
    from pxr import Usd

    path = tmp_path / "scene.usdc"
    write_stage(synthetic_scene(), path)
    opened = Usd.Stage.Open(str(path))  # keeps the old layer alive in USD's registry
    renamed = synthetic_scene()
    renamed.elements["site"].name = "Renamed Site"
    write_stage(renamed, path)
    opened.Reload()
    assert opened.GetPrimAtPath("/World/Renamed_Site").IsValid()


def _usda(path: Path) -> str:
    from pxr import Sdf

    return Sdf.Layer.OpenAsAnonymous(str(path)).ExportToString()


def test_stage_begun_with_its_elements_is_the_same_stage(tmp_path: Path) -> None:
    scene = synthetic_scene()
    write_stage(scene, tmp_path / "whole.usdc")
    early = StageWriter(tmp_path / "early.usdc")
    early.add_elements(list(scene.elements.values()))
    early.write(scene)
    assert _usda(tmp_path / "early.usdc") == _usda(tmp_path / "whole.usdc")


def test_stage_begun_with_other_elements_starts_over(tmp_path: Path) -> None:
    scene = synthetic_scene()
    write_stage(scene, tmp_path / "whole.usdc")
    stale = StageWriter(tmp_path / "stale.usdc")
    first, *rest = scene.elements.values()
    stale.add_elements([first, *reversed(rest[:2])])  # not the scene's elements: a wrong head start
    stale.write(scene)
    assert _usda(tmp_path / "stale.usdc") == _usda(tmp_path / "whole.usdc")


def test_json_valued_properties_and_units_write_and_read_back(tmp_path: Path) -> None:
    """A one-sided bounded value ([None, 40.0]) or a nested one is stored as flagged JSON text; with a unit too."""
    from pxr import Usd

    scene = synthetic_scene()
    pump = scene.elements["crate"]
    pump.properties = {"Pset_PumpTypeCommon": {"FlowRateRange": [None, 40.0], "Curve": {"a": [1, "x"]}}}
    pump.units = {"Pset_PumpTypeCommon": {"FlowRateRange": "kg/s"}}
    write_stage(scene, tmp_path / "scene.usdc")
    stage = Usd.Stage.Open(str(tmp_path / "scene.usdc"))
    prims = _element_prims(stage)
    assert read_properties(prims["crate"]) == pump.properties
    assert read_units(prims["crate"]) == pump.units


def _written(scene: Scene, path: Path, part_elements: int = PART_ELEMENTS, *, early: bool = False) -> Path:
    writer = StageWriter(path, part_elements)
    if early:  # as a build does: the element tree first, while the importer still makes the geometry
        writer.add_elements(list(scene.elements.values()))
    writer.write(scene)
    return path


@pytest.mark.parametrize("early", [False, True], ids=["whole", "tree first"])
def test_stage_in_parts_composes_to_the_same_prims_and_attributes(tmp_path: Path, early: bool) -> None:
    """A stage of more elements than a part holds is a root layer and its part layers: composed, the same
    prims in the same order, attributes, instanceable prototypes and material bindings as the stage in one
    layer; valid."""
    from pxr import Sdf

    scene = synthetic_scene()
    whole = _written(scene, tmp_path / "whole" / "scene.usdc")
    parts = _written(scene, tmp_path / "parts" / "scene.usdc", part_elements=2, early=early)
    names = sorted(p.name for p in parts_dir(parts).iterdir())
    count = -(-len(scene.elements) // 2)
    assert names == [f"{kind}-{i:04d}.usdc" for kind in ("elements", "geometry") for i in range(count)]
    assert list(Sdf.Layer.FindOrOpen(str(parts)).subLayerPaths) == [f"./scene.parts/{n}" for n in reversed(names)]
    assert not parts_dir(whole).exists()  # a stage that fits in one part is one layer, as before
    expected = composed(whole)
    assert any(prim[3] for prim in expected[1:])  # instanceable prims to keep
    assert composed(parts) == expected
    assert validate_usd(parts) == []


def test_a_stage_started_in_parts_and_rewritten_whole_keeps_no_stale_parts(tmp_path: Path) -> None:
    scene = synthetic_scene()
    writer = StageWriter(tmp_path / "scene.usdc", part_elements=2)
    writer.add_elements(list(scene.elements.values())[:3])  # in parts, and not the scene's elements
    writer.part_elements = PART_ELEMENTS
    writer.write(scene)
    assert not parts_dir(tmp_path / "scene.usdc").exists()
    assert composed(tmp_path / "scene.usdc") == composed(_written(scene, tmp_path / "whole" / "scene.usdc"))


@pytest.mark.parametrize("source", ["plant", "corpus"])
def test_imported_stage_in_parts_composes_to_the_same_stage(
    tmp_path: Path, source: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same on imported files: a small generated plant (mapped equipment shared as prototypes, swept pipes,
    two property sets per element) and a real building from the corpus."""
    from bench import plant
    from scene.importers import ImportOptions, loader_for

    if source == "plant":
        path = plant.write(40, tmp_path / "plant.ifc")
    else:
        path = SHARED_DATA / "ifc" / "IfcOpenHouse_IFC4.ifc"
        if not path.is_file():
            pytest.skip(f"corpus not found at {SHARED_DATA}")
    scene = loader_for(path)(path, ImportOptions())
    whole = _written(scene, tmp_path / "whole" / "scene.usdc")
    parts = _written(scene, tmp_path / "parts" / "scene.usdc", part_elements=7, early=True)
    assert len(list(parts_dir(parts).iterdir())) > 2
    assert composed(parts) == composed(whole)
    assert validate_usd(parts) == []
