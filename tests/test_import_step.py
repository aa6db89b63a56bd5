"""STEP importer: product tree, names, colours, placements, units and Z-up to Y-up conversion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.importers.step import load
from scene.model import Scene


def signed_volume(scene: Scene, mesh_id: str) -> float:
    total = 0.0
    for prim in scene.meshes[mesh_id].primitives:
        a, b, c = (prim.positions[prim.indices[:, i]].astype(np.float64) for i in range(3))
        total += float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
    return total


def test_two_products_keep_names_and_colours(shared_data: Path) -> None:
    path = shared_data / "step/red_cube_blue_cylinder.step"
    scene = load(path, ImportOptions())
    by_name = {e.name: e for e in scene.elements.values()}
    assert set(by_name) == {"red_cube", "blue_cylinder"}
    assert all(e.cls == "StepPart" and e.parent is None for e in by_name.values())
    assert list(load(path, ImportOptions()).elements) == list(scene.elements)  # stable ids

    def colour(name: str) -> tuple[float, ...]:
        prim = scene.meshes[by_name[name].mesh].primitives[0]
        return scene.materials[prim.material].base_color

    # COLOUR_RGB is sRGB (0.867, 0.322, 0.157) and (0.231, 0.380, 0.706); the model stores linear.
    np.testing.assert_allclose(colour("red_cube"), (0.723, 0.084, 0.021, 1.0), atol=0.01)
    np.testing.assert_allclose(colour("blue_cylinder"), (0.044, 0.120, 0.456, 1.0), atol=0.01)
    record = scene.inputs[0]
    assert (record.format, record.source_units, record.source_up_axis) == ("step", "m", "Z")


def test_geometry_is_in_metres_y_up_and_wound_outwards(shared_data: Path) -> None:
    scene = load(shared_data / "step/red_cube_blue_cylinder.step", ImportOptions())
    cube = next(e for e in scene.elements.values() if e.name == "red_cube")
    lo, hi = scene.world_bounds(cube.id)
    # The file's cube spans z 0..0.01 m; Z-up to Y-up maps z onto y (and y onto -z).
    np.testing.assert_allclose(hi - lo, [0.01, 0.01, 0.01], atol=1e-6)
    np.testing.assert_allclose([lo[1], hi[1]], [0.0, 0.01], atol=1e-6)
    assert signed_volume(scene, cube.mesh) == pytest.approx(1e-6, rel=1e-3)  # positive: normals point out
    prim = scene.meshes[cube.mesh].primitives[0]
    assert prim.normals is not None and np.allclose(np.linalg.norm(prim.normals, axis=1), 1.0, atol=1e-4)


def test_inch_part_is_converted_to_metres(shared_data: Path) -> None:
    scene = load(shared_data / "step/featuretype.STEP", ImportOptions())
    (part,) = scene.elements.values()
    assert part.name == "featuretype" and scene.inputs[0].source_units == "in"
    lo, hi = scene.world_bounds(part.id)
    assert hi[0] - lo[0] == pytest.approx(5 * 0.0254, rel=1e-3)  # a 5-inch block
    assert scene.triangle_count > 1000


def test_ap203_single_part(shared_data: Path) -> None:
    scene = load(shared_data / "step/base_interface_AP203.STEP", ImportOptions())
    assert [e.name for e in scene.elements.values()] == ["base_interface_AP203"]
    assert scene.triangle_count > 500


def _write_assembly(path: Path, red_second: bool = False, part_files: str | None = None) -> None:
    """An assembly "frame" with two placed instances of one green part "bolt" (sizes in mm).

    With `part_files` (a name prefix) the part is written as a separate STEP file, referenced by name.
    """
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox
    from OCP.gp import gp_Trsf, gp_Vec
    from OCP.Quantity import Quantity_Color, Quantity_TOC_RGB
    from OCP.STEPCAFControl import STEPCAFControl_Writer
    from OCP.STEPControl import STEPControl_AsIs
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDataStd import TDataStd_Name
    from OCP.TDocStd import TDocStd_Document
    from OCP.TopLoc import TopLoc_Location
    from OCP.XCAFApp import XCAFApp_Application
    from OCP.XCAFDoc import XCAFDoc_ColorType, XCAFDoc_DocumentTool

    doc = TDocStd_Document(TCollection_ExtendedString("XmlOcaf"))
    XCAFApp_Application.GetApplication_s().InitDocument(doc)
    shapes = XCAFDoc_DocumentTool.ShapeTool_s(doc.Main())
    colours = XCAFDoc_DocumentTool.ColorTool_s(doc.Main())
    part = shapes.AddShape(BRepPrimAPI_MakeBox(10.0, 20.0, 30.0).Shape(), False)
    TDataStd_Name.Set_s(part, TCollection_ExtendedString("bolt"))
    colours.SetColor(part, Quantity_Color(0.0, 1.0, 0.0, Quantity_TOC_RGB), XCAFDoc_ColorType.XCAFDoc_ColorSurf)
    frame = shapes.NewShape()
    TDataStd_Name.Set_s(frame, TCollection_ExtendedString("frame"))
    moved = gp_Trsf()
    moved.SetTranslation(gp_Vec(100.0, 0.0, 0.0))
    shapes.AddComponent(frame, part, TopLoc_Location())
    second = shapes.AddComponent(frame, part, TopLoc_Location(moved))
    if red_second:
        colours.SetColor(second, Quantity_Color(1.0, 0.0, 0.0, Quantity_TOC_RGB), XCAFDoc_ColorType.XCAFDoc_ColorSurf)
    shapes.UpdateAssemblies()
    writer = STEPCAFControl_Writer()
    writer.Transfer(doc, STEPControl_AsIs, part_files)
    writer.Write(str(path))


def test_assembly_tree_placements_and_shared_part_mesh(tmp_path: Path) -> None:
    path = tmp_path / "frame.step"
    _write_assembly(path)
    scene = load(path, ImportOptions())
    (root,) = scene.roots()
    assert scene.elements[root].cls == "StepAssembly" and scene.elements[root].name == "frame"
    parts = [scene.elements[c] for c in scene.children()[root]]
    assert [p.cls for p in parts] == ["StepPart", "StepPart"]
    assert all(p.name == "bolt" for p in parts) and parts[0].id != parts[1].id
    assert parts[0].mesh == parts[1].mesh and len(scene.meshes) == 1
    assert scene.meshes[parts[0].mesh].triangle_count == 12
    centres = [np.mean(scene.world_bounds(p.id), axis=0) for p in parts]
    np.testing.assert_allclose(centres[1] - centres[0], [0.1, 0.0, 0.0], atol=1e-6)  # 100 mm along x
    lo, hi = scene.world_bounds(parts[0].id)
    np.testing.assert_allclose(hi - lo, [0.01, 0.03, 0.02], atol=1e-6)  # 30 mm of Z-up height is now Y
    colour = scene.materials[scene.meshes[parts[0].mesh].primitives[0].material].base_color
    np.testing.assert_allclose(colour, (0.0, 1.0, 0.0, 1.0), atol=1e-3)


def test_multi_file_assembly_reads_parts_only_inside_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    monkeypatch.chdir(model)  # OCCT writes the part files into the working directory
    _write_assembly(model / "frame.step", part_files="part_")
    assert (model / "part_bolt.stp").is_file()
    assert load(model / "frame.step", ImportOptions()).triangle_count == 24  # two instances of a 12-triangle box

    (model / "part_bolt.stp").rename(tmp_path / "part_bolt.stp")
    text = (model / "frame.step").read_text().replace("'part_bolt.stp'", "'../part_bolt.stp'")
    (model / "frame.step").write_text(text)
    with pytest.raises(ImportFailed) as info:
        load(model / "frame.step", ImportOptions())
    assert "../part_bolt.stp lies outside the model's folder" in info.value.reason
    assert info.value.where.startswith("line ")


def test_instance_colour_overrides_the_part_colour(tmp_path: Path) -> None:
    path = tmp_path / "frame.step"
    _write_assembly(path, red_second=True)
    scene = load(path, ImportOptions())
    first, second = (scene.elements[c] for c in scene.children()[scene.roots()[0]])
    assert first.mesh != second.mesh

    def colour(element_mesh: str) -> tuple[float, ...]:
        return scene.materials[scene.meshes[element_mesh].primitives[0].material].base_color

    np.testing.assert_allclose(colour(first.mesh), (0.0, 1.0, 0.0, 1.0), atol=1e-3)
    np.testing.assert_allclose(colour(second.mesh), (1.0, 0.0, 0.0, 1.0), atol=1e-3)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "contains no geometry"),
        ("solid cube\nendsolid cube\n", "not a STEP file"),
        (
            "ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('AUTOMOTIVE_DESIGN'));\nENDSEC;\nDATA;\n#1=FOO(;\nENDSEC;\n"
            "END-ISO-10303-21;\n",
            "STEP",
        ),
    ],
)
def test_garbage_step_fails_clearly(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "broken.step"
    path.write_text(text)
    with pytest.raises(ImportFailed) as info:
        load(path, ImportOptions())
    assert reason in info.value.reason


def test_a_sandboxed_import_after_one_in_this_process_does_not_hang(shared_data: Path) -> None:
    # OCP meshes on a thread pool; a child forked after the pool ran would inherit it without its threads and
    # wait forever. Readers are forked by a host that never meshed.
    from scene.sandbox import Limits, import_isolated

    path = shared_data / "step" / "featuretype.STEP"
    here = load(path, ImportOptions())
    there = import_isolated(path, ImportOptions(), Limits(timeout_s=60))
    assert sorted(e.id for e in there.elements.values()) == sorted(e.id for e in here.elements.values())
    assert there.triangle_count == here.triangle_count


def test_a_parse_error_is_reported_once_and_nothing_prints_at_exit(tmp_path: Path) -> None:
    """OpenCascade's console printer buffers "ERR StepFile" banners until the process exits; none may appear."""
    bad = tmp_path / "bad.step"
    bad.write_text("ISO-10303-21;\nHEADER;\nENDSEC;\nDATA;\n#1=GARBAGE(;\nENDSEC;\nEND-ISO-10303-21;\n")
    code = (
        "import sys; from pathlib import Path; from scene.importers import ImportOptions; "
        "from scene.importers.step import load\n"
        "try: load(Path(sys.argv[1]), ImportOptions())\n"
        "except Exception as exc: print(type(exc).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=120)
    assert done.stdout == "ImportFailed\n" and "StepFile" not in done.stderr, (done.stdout, done.stderr)
