"""What our own hard cases (tests/fixtures/hard, also run through every corpus check by test_corpus.py) must
come out as: the kinds of real files that crashed builds or lost information (issue 11, defect 9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scene.importers import ImportOptions, loader_for
from scene.model import Scene
from tests.conftest import REPO

HARD = REPO / "tests" / "fixtures" / "hard"


def load(name: str) -> Scene:
    path = HARD / name
    return loader_for(path)(path, ImportOptions(threads=1))


def by_class(scene: Scene, cls: str):
    (element,) = [e for e in scene.elements.values() if e.cls == cls]
    return element


def test_property_sets_without_a_name_get_a_stable_name_and_keep_their_properties(tmp_path: Path) -> None:
    from scene.pipeline import build

    # ArchiCAD writes a door type's lining and panel property sets, and some of its own sets, without a Name.
    result = build([HARD / "ifc4_unnamed_psets_door.ifc"], tmp_path / "out")
    door = by_class(result.scene, "IfcDoor")
    assert door.properties["IfcDoorLiningProperties"] == {"LiningDepth": 120.0, "LiningThickness": 50.0}
    assert door.properties["IfcDoorPanelProperties"]["PanelOperation"] == "SWINGING"
    assert door.properties["IfcPropertySet 0AXOxy$IX5QhJz$OSmlGhz"] == {"FireRating": "EI30"}
    assert door.properties["IfcPropertySet 2pM$ON9kn3gAX7ILNE0jC1"] == {"AcousticRating": "32 dB"}
    assert door.properties["Pset_DoorCommon"] == {"IsExternal": False}
    # The same names in every output: the manifest and the USD stage (where the crash was).
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (record,) = [e for e in manifest["elements"] if e["class"] == "IfcDoor"]
    assert record["properties"] == door.properties
    usd = load_usd_properties(tmp_path / "out" / "scene.usdc", door.id)
    assert usd == door.properties
    assert load("ifc4_unnamed_psets_door.ifc").elements[door.id].properties == door.properties  # stable


def load_usd_properties(stage_path: Path, twin_id: str) -> dict:
    from pxr import Usd

    from scene.export.usd_stage import read_properties

    stage = Usd.Stage.Open(str(stage_path))
    (prim,) = [p for p in stage.Traverse() if p.GetAttribute("twin:id").Get() == twin_id]
    return read_properties(prim)


@pytest.mark.parametrize("name", ["ifc4x3_add2_wall.ifc", "ifc4x3_rc4_wall.ifc"])
def test_ifc_4_3_builds(name: str) -> None:
    scene = load(name)
    wall = scene.elements["3EJfl7q1P5$xaRjR_c4GB$"]
    assert (wall.name, wall.cls, wall.properties["Pset_WallCommon"]) == (
        "Retaining wall",
        "IfcWall",
        {"LoadBearing": True},
    )
    assert wall.mesh is not None and scene.meshes[wall.mesh].triangle_count == 12
    read_as = [w for w in scene.warnings if "read as IFC4X3_ADD2" in w]
    assert read_as == (
        [] if name == "ifc4x3_add2_wall.ifc" else ["FILE_SCHEMA IFC4X3_RC4 read as IFC4X3_ADD2 (IFC 4.3)"]
    )


def test_japanese_and_latin_1_names_in_ifc_strings_are_decoded() -> None:
    scene = load("壁_日本語.ifc")
    names = {e.cls: e.name for e in scene.elements.values()}
    assert names == {"IfcProject": "プロジェクト", "IfcSite": "Baustelle Grün", "IfcWall": "外壁 W-1"}
    wall = by_class(scene, "IfcWall")
    assert wall.properties["性能"] == {"耐火": "2時間"}
    assert wall.properties["Attributes"]["Description"] == "鉄筋コンクリート"
    assert scene.inputs[0].path.endswith("壁_日本語.ifc")


def test_japanese_names_in_usd_gltf_and_shift_jis_obj() -> None:
    usd = load("配管_日本語.usda")
    assert [e.name for e in usd.elements.values()] == ["プラント", "配管_001"]
    gltf = load("ポンプ室.gltf")
    assert [e.name for e in gltf.elements.values()] == ["ポンプ室", "ポンプ P-101 🔧"]
    obj = load("配管_sjis.obj")  # Shift-JIS text; its material library is Shift-JIS too
    assert [(m.name, m.base_color[:3]) for m in obj.materials] == [("鋼管", pytest.approx((0.6, 0.6, 0.65), abs=0.005))]
    assert obj.warnings == []


def test_usd_points_whose_per_point_arrays_do_not_match_still_build() -> None:
    scene = load("usd_points_bad_widths.usda")
    scan = next(e for e in scene.elements.values() if e.cls == "UsdPoints")
    (points,) = scene.meshes[scan.mesh].primitives
    assert points.is_points and len(points.positions) == 4


def test_sheared_usd_transforms_are_baked_into_the_glb_meshes(tmp_path: Path) -> None:
    import pygltflib

    from scene.export.glb import write_glb
    from scene.validate import validate_glb

    scene = load("usd_sheared.usda")
    write_glb(scene, tmp_path / "scene.glb")
    assert validate_glb(tmp_path / "scene.glb") == []  # no NODE_MATRIX_NON_TRS
    # Every vertex is drawn where the scene has it: node world matrix x written positions = element world x mesh.
    gltf = pygltflib.GLTF2().load(str(tmp_path / "scene.glb"))
    parents = {child: i for i, node in enumerate(gltf.nodes) for child in node.children or []}
    blob = gltf.binary_blob()

    def node_world(i: int) -> np.ndarray:
        node, local = gltf.nodes[i], np.eye(4)
        if node.matrix:
            local = np.array(node.matrix, dtype=np.float64).reshape(4, 4).T
        else:
            local[:3, 3] = node.translation or [0, 0, 0]
            x, y, z, w = node.rotation or [0, 0, 0, 1]
            local[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                             [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                             [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]  # fmt: skip
            local[:3, :3] *= np.array(node.scale or [1, 1, 1])[None, :]
        return local if i not in parents else node_world(parents[i]) @ local

    checked = 0
    for i, element in enumerate(scene.elements.values()):
        if element.mesh is None:
            continue
        accessor = gltf.accessors[gltf.meshes[gltf.nodes[i].mesh].primitives[0].attributes.POSITION]
        view = gltf.bufferViews[accessor.bufferView]
        start = view.byteOffset + (accessor.byteOffset or 0)
        written = np.frombuffer(blob, np.float32, accessor.count * 3, start).reshape(-1, 3).astype(np.float64)
        source = scene.meshes[element.mesh].primitives[0].positions.astype(np.float64)
        drawn = (node_world(i)[:3, :3] @ written.T).T + node_world(i)[:3, 3]
        expected = (element.matrix[:3, :3] @ source.T).T + element.matrix[:3, 3]
        np.testing.assert_allclose(drawn, expected, atol=1e-5)
        checked += 1
    assert checked == 3


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("bad_ifc4x1_schema.ifc", "IFC schema IFC4X1 is not supported (TwinView reads IFC2X3, IFC4, IFC4X3_ADD2)"),
        ("bad_ifc4x3_rc1_alignment.ifc", "IFC schema IFC4X3_RC1 uses entities that IFC4X3_ADD2 (IFC 4.3 as published)"
         " does not have (IFCALIGNMENT2DHORIZONTAL, IFCALIGNMENT2DHORIZONTALSEGMENT, IFCLINESEGMENT2D)"),
        ("bad_usd_nan_points.usda", "2 NaN/infinite coordinate value(s)"),
        ("bad_gltf_nan.gltf", "1 NaN/infinite coordinate value(s)"),
        ("bad_gltf_huge_count.gltf", "count 1000000000 is not an integer in 0.."),
        ("bad_ply_huge_count.ply", "cannot parse PLY"),
        ("bad_obj_huge_index.obj", "cannot parse OBJ"),
    ],
)  # fmt: skip
def test_hard_files_that_are_refused_say_why(name: str, reason: str) -> None:
    from scene.errors import ImportFailed

    with pytest.raises(ImportFailed) as info:
        load(name)
    assert info.value.reason.startswith(reason)
