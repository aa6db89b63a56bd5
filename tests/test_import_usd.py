"""USD importer: composed stages, units and up axis, meshes and implicit prims, safety of composition."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.importers.usd import load
from scene.model import Scene

USD = "usd/usd-wg"
TESTS = f"{USD}/test_assets"


def read(path: Path) -> Scene:
    return load(path, ImportOptions())


def by_name(scene: Scene) -> dict[str, str]:
    return {e.name: e.id for e in scene.elements.values()}


def size(scene: Scene, element_id: str) -> np.ndarray:
    lo, hi = scene.world_bounds(element_id)
    return hi - lo


@pytest.mark.parametrize(
    ("relative", "triangles"),
    [
        (f"{TESTS}/schemaTests/usdGeom/meshes/5_face/5_face.usda", 13),
        (f"{TESTS}/schemaTests/usdGeom/meshes/mixed_faceVertexCounts/mixed.usda", 12),
        (f"{TESTS}/schemaTests/usdGeom/meshes/quad_mesh/quads.usda", 12),
        (f"{TESTS}/schemaTests/usdGeom/meshes/triangled_mesh/triangles.usda", 12),
        (f"{TESTS}/schemaTests/usdGeom/meshes/normals_types/normalsTypes.usda", 204),
        (f"{TESTS}/schemaTests/usdGeom/meshes/doubleSided/doubleSided_quad.usda", 4),
        (f"{TESTS}/USDZ/AnimatedTriangle/AnimatedTriangle.usdz", 1),
        (f"{TESTS}/USDZ/BoxAnimated/BoxAnimated.usdz", 254),
        (f"{TESTS}/USDZ/CesiumMan/CesiumMan.usdz", 4672),
        (f"{USD}/full_assets/Teapot/Teapot.usd", 2472),
    ],
)
def test_mesh_triangle_counts_match_the_corpus(shared_data: Path, relative: str, triangles: int) -> None:
    scene = read(shared_data / relative)
    assert sum(m.triangle_count for m in scene.meshes.values()) == triangles
    assert scene.inputs[0].format == "usd"


def test_prims_become_elements_with_path_ids_and_world_transforms(shared_data: Path) -> None:
    path = shared_data / f"{TESTS}/schemaTests/usdGeom/transforms/xforms_nested.usda"
    scene = read(path)
    ids = by_name(scene)
    assert ids["Cube"] == "xforms_nested:/World/A/B/C/Cube"
    assert [scene.elements[ids[n]].cls for n in ("World", "A", "Cube")] == ["UsdScope", "UsdXform", "UsdCube"]
    assert scene.elements[ids["Cube"]].parent == ids["C"] and scene.elements[ids["C"]].parent == ids["B"]
    lo, hi = scene.world_bounds(ids["Cube"])
    # translate (1.11, 2.22, 3.33) cm-units and a 2-unit cube, metersPerUnit 0.01
    np.testing.assert_allclose((lo + hi) / 2, [0.0111, 0.0222, 0.0333], atol=1e-6)
    np.testing.assert_allclose(hi - lo, [0.02, 0.02, 0.02], atol=1e-6)
    assert list(read(path).elements) == list(scene.elements)


def test_sheared_transform_is_baked_so_matrices_stay_trs(shared_data: Path) -> None:
    from pxr import Gf, Usd, UsdGeom

    path = shared_data / f"{TESTS}/schemaTests/usdGeom/transforms/complex_transform.usda"
    scene = read(path)
    element = scene.elements[by_name(scene)["mesh"]]
    linear = element.matrix[:3, :3]
    np.testing.assert_allclose(linear.T @ linear, np.eye(3), atol=1e-9)  # rigid: shear and scale went into vertices
    stage = Usd.Stage.Open(str(path))
    usd_world = UsdGeom.Xformable(stage.GetPrimAtPath("/World/mesh")).ComputeLocalToWorldTransform(0)
    expected = np.array([usd_world.Transform(Gf.Vec3d(*p)) for p in [(-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)]]) * 0.01
    prim = scene.meshes[element.mesh].primitives[0]
    world = prim.positions.astype(np.float64) @ linear.T + element.matrix[:3, 3]
    for corner in expected:  # the sheared cube's corners land where USD puts them
        assert np.linalg.norm(world - corner, axis=1).min() < 1e-6


def test_meters_per_unit_scales_geometry(shared_data: Path) -> None:
    folder = shared_data / f"{TESTS}/foundation/stage_configuration/metersPerUnit"
    one, ten = read(folder / "metersPerUnit_1.usda"), read(folder / "metersPerUnit_10.usda")
    small = size(one, by_name(one)["cube_1"])
    big = size(ten, by_name(ten)["cube_10"])
    np.testing.assert_allclose(small, [2.0, 2.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(big, 10 * small, atol=1e-5)
    assert ten.inputs[0].source_units == "10 m" and one.inputs[0].source_units == "m"


def test_z_up_stage_is_rotated_to_y_up(tmp_path: Path) -> None:
    path = tmp_path / "zup.usda"
    path.write_text(
        '#usda 1.0\n(\n    upAxis = "Z"\n    metersPerUnit = 1\n)\n'
        'def Xform "Site" {\n    double3 xformOp:translate = (0, 0, 5)\n'
        '    uniform token[] xformOpOrder = ["xformOp:translate"]\n'
        '    def Cylinder "Mast" {\n        double height = 4\n        double radius = 0.5\n'
        '        uniform token axis = "Z"\n    }\n}\n'
    )
    scene = read(path)
    mast = by_name(scene)["Mast"]
    lo, hi = scene.world_bounds(mast)
    np.testing.assert_allclose((lo + hi) / 2, [0.0, 5.0, 0.0], atol=1e-6)  # Z-up height is Y now
    np.testing.assert_allclose(hi - lo, [1.0, 4.0, 1.0], atol=0.01)
    assert scene.inputs[0].source_up_axis == "Z"


def test_implicit_prims_fill_their_authored_extents(shared_data: Path) -> None:
    scene = read(shared_data / f"{TESTS}/schemaTests/usdGeom/primitives/all_primitives.usda")
    ids = by_name(scene)
    expected = {"Capsule": [1, 1, 2], "Cone": [2, 2, 2], "Cube": [2, 2, 2], "Cylinder": [2, 2, 2], "Sphere": [2, 2, 2]}
    for name, extent in expected.items():
        assert scene.elements[ids[name]].cls == f"Usd{name}"
        np.testing.assert_allclose(size(scene, ids[name]), np.array(extent) * 0.01, atol=2e-4, err_msg=name)


def test_display_colours_become_materials(shared_data: Path) -> None:
    scene = read(shared_data / f"{TESTS}/schemaTests/usdGeom/meshes/doubleSided/doubleSided_quad.usda")
    colours = sorted(tuple(round(c, 2) for c in m.base_color) for m in scene.materials)
    assert colours == [(0.0, 0.0, 0.8, 1.0), (0.8, 0.0, 0.0, 1.0)]


def test_preview_surface_diffuse_colour_is_used(shared_data: Path) -> None:
    scene = read(shared_data / f"{TESTS}/USDZ/BoxAnimated/BoxAnimated.usdz")
    outer = next(m for m in scene.materials if m.name == "outer")
    np.testing.assert_allclose(outer.base_color, (0.302, 0.534, 0.8, 1.0), atol=1e-3)


def test_usdz_texture_and_uvs_are_read_from_the_package(shared_data: Path) -> None:
    scene = read(shared_data / f"{TESTS}/USDZ/CesiumMan/CesiumMan.usdz")
    (material,) = scene.materials
    assert material.texture_mime == "image/jpeg" and material.texture[:3] == b"\xff\xd8\xff"
    (prim,) = next(iter(scene.meshes.values())).primitives
    assert prim.uvs is not None and prim.uvs.shape == (len(prim.positions), 2)
    assert prim.uvs.min() >= 0.0 and prim.uvs.max() <= 1.0


def test_face_varying_normals_keep_hard_edges(shared_data: Path) -> None:
    scene = read(shared_data / f"{TESTS}/schemaTests/usdGeom/meshes/normals_types/normalsTypes.usda")
    prim = scene.meshes["normalsTypes:mesh:/World/normal3fArray"].primitives[0]
    assert len(prim.positions) == 24  # the cube's 8 points split into 4 corners per face
    a, b, c = (prim.positions[prim.indices[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)
    face_normals /= np.linalg.norm(face_normals, axis=1, keepdims=True)
    np.testing.assert_allclose(prim.normals[prim.indices[:, 0]], face_normals, atol=1e-5)


def test_geom_subsets_split_a_mesh_by_material(tmp_path: Path) -> None:
    path = tmp_path / "subsets.usda"
    path.write_text(
        """#usda 1.0
(
    metersPerUnit = 1
    upAxis = "Y"
)
def Mesh "Strip" (prepend apiSchemas = ["MaterialBindingAPI"])
{
    int[] faceVertexCounts = [4, 4]
    int[] faceVertexIndices = [0, 1, 4, 3, 1, 2, 5, 4]
    point3f[] points = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (1, 1, 0), (2, 1, 0)]
    def GeomSubset "Left" (prepend apiSchemas = ["MaterialBindingAPI"])
    {
        uniform token elementType = "face"
        uniform token familyName = "materialBind"
        int[] indices = [0]
        rel material:binding = </Looks/Red>
    }
}
def Scope "Looks"
{
    def Material "Red"
    {
        token outputs:surface.connect = </Looks/Red/Surface.outputs:surface>
        def Shader "Surface"
        {
            uniform token info:id = "UsdPreviewSurface"
            color3f inputs:diffuseColor = (1, 0, 0)
            float inputs:roughness = 0.25
            token outputs:surface
        }
    }
}
"""
    )
    scene = read(path)
    assert sorted(by_name(scene)) == ["Looks", "Strip"]  # Material and Shader prims are not elements
    prims = next(iter(scene.meshes.values())).primitives
    assert sorted(p.triangle_count for p in prims) == [2, 2]
    materials = {scene.materials[p.material].name: scene.materials[p.material] for p in prims}
    assert materials["Red"].base_color == (1.0, 0.0, 0.0, 1.0) and materials["Red"].roughness == 0.25
    assert len(materials) == 2


def test_instanced_prims_are_elements_sharing_one_mesh(tmp_path: Path) -> None:
    path = tmp_path / "bolts.usda"
    path.write_text(
        """#usda 1.0
(
    metersPerUnit = 1
)
class Xform "_Bolt"
{
    def Cube "Head"
    {
        double size = 0.1
    }
}
def Xform "Rack"
{
    def "A" (
        instanceable = true
        references = </_Bolt>
    )
    {
        double3 xformOp:translate = (1, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def "B" (
        instanceable = true
        references = </_Bolt>
    )
    {
        double3 xformOp:translate = (2, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
}
"""
    )
    scene = read(path)
    heads = [e for e in scene.elements.values() if e.name == "Head"]
    assert [h.id for h in heads] == ["bolts:/Rack/A/Head", "bolts:/Rack/B/Head"]
    assert heads[0].mesh == heads[1].mesh and len(scene.meshes) == 1
    assert [scene.world_bounds(h.id)[0][0] for h in heads] == pytest.approx([0.95, 1.95])
    assert not any(e.name == "_Bolt" for e in scene.elements.values())  # class prims are abstract


def test_pawn_builds_without_materialx_support(shared_data: Path) -> None:
    scene = read(shared_data / f"{USD}/full_assets/OpenChessSet/assets/Pawn/Pawn.usd")
    assert scene.triangle_count == 45100
    assert any("Pawn_mat.mtlx" in w for w in scene.warnings)


def test_reference_to_a_missing_file_is_an_error(shared_data: Path) -> None:
    with pytest.raises(ImportFailed) as info:
        read(shared_data / f"{TESTS}/foundation/stage_composition/references/reference_invalid.usda")
    assert "cannot be opened" in info.value.reason and info.value.where == "file_does_not_exist.usda"


def test_missing_default_prim_is_an_error(shared_data: Path) -> None:
    with pytest.raises(ImportFailed) as info:
        read(shared_data / f"{TESTS}/foundation/stage_configuration/invalid_defaultPrim/invalid_defaultPrim.usda")
    assert info.value.reason == "defaultPrim 'invalidDefaultPrim' names no prim in the stage"


def test_a_layer_with_a_broken_default_prim_composes_when_referenced_by_path(shared_data: Path) -> None:
    teapot = read(shared_data / f"{USD}/full_assets/Teapot/Teapot.usd")
    assert teapot.triangle_count == 2472


def test_reference_into_the_parent_folder_is_skipped_with_a_warning(shared_data: Path) -> None:
    path = shared_data / f"{TESTS}/foundation/stage_composition/references/reference_parent_folder.usda"
    scene = read(path)
    assert list(by_name(scene)) == ["World"]
    assert any("../_parent_stage.usda" in w and "outside the model's folder" in w for w in scene.warnings)
    same = read(path.with_name("reference_same_folder.usda"))
    child = read(path.with_name("reference_child_folder.usda"))
    assert same.triangle_count == child.triangle_count == 12


def test_outside_layers_are_never_read(tmp_path: Path) -> None:
    (tmp_path / "secret.usda").write_text('#usda 1.0\ndef Cube "Secret" {}\n')
    model = tmp_path / "model"
    model.mkdir()
    root = model / "root.usda"
    root.write_text(
        "#usda 1.0\n(\n    subLayers = [@../secret.usda@]\n)\n"
        'def Xform "World" (references = @../secret.usda@</Secret>) {}\ndef Cube "Mine" {}\n'
    )
    scene = read(root)
    assert "Secret" not in by_name(scene) and "Mine" in by_name(scene)
    assert sum("outside the model's folder" in w for w in scene.warnings) == 1  # one layer, one warning


def _outside_arcs(tmp_path: Path, content: bytes) -> Path:
    """A model whose sublayer, reference and payload all lie beside its folder and hold `content`."""
    for name in ("sub", "ref", "payload"):
        (tmp_path / f"{name}.usda").write_bytes(content)
    model = tmp_path / "model"
    model.mkdir()
    root = model / "root.usda"
    root.write_text(
        "#usda 1.0\n(\n    subLayers = [@../sub.usda@]\n)\n"
        'def Xform "World" (references = @../ref.usda@</Secret>) {}\n'
        'def Xform "Loaded" (payload = @../payload.usda@</Secret>) {}\ndef Cube "Mine" {}\n'
    )
    return root


def test_outside_layers_that_would_not_parse_are_skipped_not_fatal(tmp_path: Path) -> None:
    root = _outside_arcs(tmp_path, b"this is not USD \x00\x01")  # reading any of them fails
    scene = read(root)
    assert sorted(by_name(scene)) == ["Loaded", "Mine", "World"]
    assert sum("outside the model's folder" in w for w in scene.warnings) == 3


def test_a_failed_import_unmutes_its_outside_layers_without_reading_them(tmp_path: Path) -> None:
    from pxr import Sdf

    root = _outside_arcs(tmp_path, b"this is not USD \x00\x01")
    root.write_text(root.read_text().replace("#usda 1.0\n(\n", '#usda 1.0\n(\n    upAxis = "X"\n'))
    with pytest.raises(ImportFailed) as info:  # fails after the stage has composed
        read(root)
    assert info.value.reason == 'invalid upAxis \'X\': must be "Y" or "Z"'  # not USD choking on an outside layer
    assert not any(str(tmp_path) in muted for muted in Sdf.Layer.GetMutedLayers())  # nothing left muted


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to watch the opens")
def test_outside_layers_are_not_even_opened(tmp_path: Path) -> None:
    root = _outside_arcs(tmp_path, b'#usda 1.0\ndef Cube "Secret" {}\n')
    trace = tmp_path / "strace.txt"
    code = "import sys; from pathlib import Path; from scene.importers.usd import load; from scene.importers import"
    code += " ImportOptions; load(Path(sys.argv[1]), ImportOptions())"
    cmd = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace), sys.executable, "-c", code]
    subprocess.run([*cmd, str(root)], check=True, capture_output=True, timeout=120)
    opened = trace.read_text()
    assert str(root) in opened  # the trace does see the files USD reads
    assert [name for name in ("sub", "ref", "payload") if f"{tmp_path}/{name}.usda" in opened] == []


def test_value_clips_outside_the_folder_are_never_read(tmp_path: Path) -> None:
    (tmp_path / "clip.usda").write_text(
        '#usda 1.0\ndef Cube "Secret" {\n    double size.timeSamples = {\n        0: 5,\n    }\n}\n'
    )
    model = tmp_path / "model"
    model.mkdir()
    root = model / "root.usda"
    clips = 'dictionary default = {\n asset[] assetPaths = [@../clip.usda@]\n string primPath = "/Secret"\n'
    clips += " double2[] active = [(0, 0)]\n }"
    root.write_text(
        f'#usda 1.0\n(\n    metersPerUnit = 1\n)\ndef Cube "Mine" (\n    clips = {{\n {clips}\n    }}\n)\n{{\n}}\n'
    )
    scene = read(root)
    lo, hi = scene.world_bounds(by_name(scene)["Mine"])
    np.testing.assert_allclose(hi - lo, [2.0, 2.0, 2.0])  # the clip's size 5 was not read
    assert any("../clip.usda" in w for w in scene.warnings)


@pytest.mark.parametrize(
    "source", ["gltf/CesiumMilkTruck.glb", "step/red_cube_blue_cylinder.step", "mesh/ply/test_pos_color.ply"]
)
def test_ids_survive_a_round_trip_through_twinview_usd(shared_data: Path, tmp_path: Path, source: str) -> None:
    from scene.export.usd_stage import write_stage
    from scene.importers import loader_for

    path = shared_data / source
    original = loader_for(path)(path, ImportOptions())
    next(iter(original.elements.values())).properties = {"Pset_Pump": {"FlowRate": 4.5}}
    write_stage(original, tmp_path / "scene.usda")
    again = read(tmp_path / "scene.usda")
    assert [(e.id, e.name, e.cls, e.parent) for e in again.elements.values()] == [
        (e.id, e.name, e.cls, e.parent) for e in original.elements.values()
    ]
    assert next(iter(again.elements.values())).properties == {"Pset_Pump": {"FlowRate": 4.5}}
    for element in original.elements.values():
        copy = again.elements[element.id]
        np.testing.assert_allclose(copy.matrix, element.matrix, atol=1e-6)
        assert (copy.mesh is None) == (element.mesh is None)
        if element.mesh:
            assert again.meshes[copy.mesh].triangle_count == original.meshes[element.mesh].triangle_count
            np.testing.assert_allclose(again.world_bounds(copy.id), original.world_bounds(element.id), atol=1e-5)
            before, after = original.meshes[element.mesh].primitives[0], again.meshes[copy.mesh].primitives[0]
            assert (after.colors is None) == (before.colors is None) and (after.uvs is None) == (before.uvs is None)
            colour = again.materials[after.material].base_color
            np.testing.assert_allclose(colour, original.materials[before.material].base_color, atol=1e-6)
    assert len(again.meshes) == len(original.meshes)  # instanced meshes stay shared


def test_url_asset_paths_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "remote.usda"
    path.write_text('#usda 1.0\ndef Xform "World" (references = @https://example.com/a.usda@) {}\n')
    with pytest.raises(ImportFailed) as info:
        read(path)
    assert "URL" in info.value.reason and info.value.where == "https://example.com/a.usda"


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        (f"{TESTS}/foundation/stage_configuration/upAxis/upAxis_invalid.usda", "invalid upAxis 'invalid'"),
        (f"{TESTS}/schemaTests/usdGeom/meshes/empty_mesh/empty.usda", "contains no geometry"),
    ],
)
def test_unusable_stages_fail_clearly(shared_data: Path, relative: str, reason: str) -> None:
    with pytest.raises(ImportFailed) as info:
        read(shared_data / relative)
    assert reason in info.value.reason


@pytest.mark.parametrize("name", ["upAxis_Y.usda", "upAxis_Z.usda"])
def test_stage_whose_content_was_all_skipped_builds_empty_with_warnings(shared_data: Path, name: str) -> None:
    scene = read(shared_data / f"{TESTS}/foundation/stage_configuration/upAxis" / name)
    assert not scene.meshes
    assert any("_common/axis.usda" in w and "outside the model's folder" in w for w in scene.warnings)


def test_materials_only_layer_with_unreadable_materialx_builds(shared_data: Path) -> None:
    scene = read(shared_data / f"{USD}/full_assets/OpenChessSet/assets/Pawn/Pawn_look.usd")
    assert not scene.meshes and any("Pawn_mat.mtlx" in w for w in scene.warnings)


def test_unparsable_layer_fails(tmp_path: Path) -> None:
    path = tmp_path / "broken.usda"
    path.write_text("#usda 1.0\ndef Xform {{{ nonsense\n")
    with pytest.raises(ImportFailed, match="cannot read USD layer") as info:
        read(path)
    assert info.value.where == "line 2"


def test_a_twinview_stage_in_parts_reads_back_as_the_one_layer_stage(tmp_path: Path) -> None:
    """A large stage's part layers (`scene.parts/`, inside the stage's folder) are read, not muted."""
    from scene.export.usd_stage import StageWriter, write_stage
    from tests.scene_factory import synthetic_scene

    scene = synthetic_scene()
    write_stage(scene, tmp_path / "whole" / "scene.usdc")
    StageWriter(tmp_path / "parts" / "scene.usdc", part_elements=2).write(scene)
    whole, parts = read(tmp_path / "whole" / "scene.usdc"), read(tmp_path / "parts" / "scene.usdc")
    assert len(parts.elements) == len(whole.elements) == len(scene.elements)
    for a, b in zip(whole.elements.values(), parts.elements.values(), strict=True):
        assert (a.id, a.name, a.cls, a.parent, a.properties, a.units) == (
            b.id,
            b.name,
            b.cls,
            b.parent,
            b.properties,
            b.units,
        )
        np.testing.assert_array_equal(a.matrix, b.matrix)
        assert (a.mesh and whole.meshes[a.mesh].triangle_count) == (b.mesh and parts.meshes[b.mesh].triangle_count)
    assert len(parts.meshes) == len(whole.meshes) and not parts.warnings
