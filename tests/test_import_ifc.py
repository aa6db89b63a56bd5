"""The IFC importer, specified against the real corpus in ../shared/data.

Every IfcProduct (and the IfcProject) becomes an element keyed by its GlobalId, in a parent-first
spatial tree, with psets and a Y-up, metre-scaled world placement; geometry is shared by
representation and split per surface style. Unreadable files fail with one clear ImportFailed.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from scene.errors import ImportFailed
from scene.export.manifest import build_manifest
from scene.importers import ImportOptions, ifc
from scene.importers.ifc import load
from scene.model import Scene
from tests.conftest import SHARED_DATA

SAMPLE_TWIN = Path(__file__).resolve().parents[1] / "assets" / "pump_station.ifc"

IFC_DIR = SHARED_DATA / "ifc"
CORPUS = sorted([*IFC_DIR.glob("*.ifc*"), *(SHARED_DATA / "bcf" / "ifc").glob("*.ifc")])
MALFORMED_DIR = SHARED_DATA / "malformed" / "ifc"


@cache
def _load(path: Path, kernel: str = "auto") -> Scene:
    return load(path, ImportOptions(ifc_kernel=kernel))


@cache
def _model(path: Path):
    import ifcopenshell

    return ifcopenshell.open(str(path))


def _represented(path: Path) -> set[str]:
    return {p.GlobalId for p in _model(path).by_type("IfcProduct") if p.Representation}


def _fzk(shared_data: Path) -> Path:
    return shared_data / "ifc" / "AC20-FZK-Haus.ifc"


@pytest.mark.corpus
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_count_rule_elements_with_representation_match_ifcopenshell(path: Path, shared_data: Path):
    scene = _load(path)
    model = _model(path)
    by_id = {p.GlobalId: p for p in model.by_type("IfcProduct")}
    ours = {e.id for e in scene.elements.values() if e.id in by_id and by_id[e.id].Representation}
    expected = _represented(path)
    assert len(ours) == len([p for p in model.by_type("IfcProduct") if p.Representation])
    assert ours == expected


@pytest.mark.corpus
@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_every_product_under_one_project_parents_first(path: Path, shared_data: Path):
    scene = _load(path)
    model = _model(path)
    assert len(scene.elements) == len(model.by_type("IfcProduct")) + 1
    (root,) = scene.roots()
    assert scene.elements[root].cls == "IfcProject"
    seen: set[str] = set()
    for element in scene.elements.values():
        assert element.parent is None or element.parent in seen
        seen.add(element.id)
    record = scene.inputs[0]
    assert (record.format, record.source_up_axis) == ("ifc", "Z")
    assert record.importer.startswith("ifcopenshell ")
    json.dumps([e.properties for e in scene.elements.values()], allow_nan=False)


def test_spatial_tree_of_the_fzk_house(shared_data: Path):
    scene = _load(_fzk(shared_data))
    by_name = {e.name: e for e in scene.elements.values()}
    chain = [by_name["Erdgeschoss"]]
    while chain[-1].parent:
        chain.append(scene.elements[chain[-1].parent])
    assert [e.cls for e in chain] == ["IfcBuildingStorey", "IfcBuilding", "IfcSite", "IfcProject"]
    model = _model(_fzk(shared_data))
    opening = model.by_type("IfcOpeningElement")[0]
    host = opening.VoidsElements[0].RelatingBuildingElement
    assert scene.elements[opening.GlobalId].parent == host.GlobalId
    assert scene.elements[opening.GlobalId].mesh is None
    assert all(scene.elements[s.GlobalId].mesh is None for s in model.by_type("IfcSpace"))
    window = model.by_type("IfcWindow")[0]
    assert scene.elements[window.GlobalId].parent in {s.GlobalId for s in model.by_type("IfcBuildingStorey")}


def test_geometry_is_y_up_in_metres_and_matches_ifcopenshell_world_coordinates(shared_data: Path):
    import ifcopenshell.geom

    path = shared_data / "ifc" / "4walls1floorSite.ifc"  # authored in millimetres
    scene = _load(path)
    assert scene.inputs[0].source_units == "mm"
    model = _model(path)
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    for wall in model.by_type("IfcWall"):
        shape = ifcopenshell.geom.create_shape(settings, wall)
        world_z_up = np.frombuffer(shape.geometry.verts_buffer).reshape(-1, 3)
        lo, hi = scene.world_bounds(wall.GlobalId)
        expected = world_z_up[:, [0, 2, 1]] * [1, 1, -1]  # (x, y, z) Z-up -> (x, z, -y) Y-up
        np.testing.assert_allclose(lo, expected.min(axis=0), atol=1e-4)
        np.testing.assert_allclose(hi, expected.max(axis=0), atol=1e-4)
        assert 0.1 < float(np.max(hi - lo)) < 100  # metres, not millimetres


def test_units_are_converted_when_ifcopenshell_cannot_detect_them(shared_data: Path):
    # The file has an IfcProjectLibrary beside its IfcProject, so the iterator keeps inches.
    scene = _load(shared_data / "ifc" / "air-terminal-element.ifc")
    assert scene.inputs[0].source_units == "in"
    (duct,) = [e for e in scene.elements.values() if e.cls == "IfcDuctSegment"]
    lo, hi = scene.world_bounds(duct.id)
    assert np.isclose(hi[1] - lo[1], 24 * 0.0254, atol=1e-3)  # a 24-inch vertical duct


def test_shared_representations_share_one_mesh(shared_data: Path):
    scene = _load(_fzk(shared_data))
    with_mesh = [e for e in scene.elements.values() if e.mesh]
    assert len(scene.meshes) < len(with_mesh)
    assert {e.mesh for e in with_mesh} == set(scene.meshes)


def test_one_primitive_per_style_with_ifc_colours(shared_data: Path):
    scene = _load(_fzk(shared_data))
    model = _model(_fzk(shared_data))
    window = scene.elements[model.by_type("IfcWindow")[0].GlobalId]
    primitives = scene.meshes[window.mesh].primitives
    assert len(primitives) >= 2
    assert len({p.material for p in primitives}) == len(primitives)
    grass = next(m for m in scene.materials if m.name == "Gras")  # the site's IfcSurfaceStyle
    assert grass.base_color[1] > grass.base_color[0] and grass.base_color[3] == 1.0
    assert any(m.base_color[3] < 1.0 for m in scene.materials)  # glazing is transparent


def test_primitives_are_valid_with_unit_normals(shared_data: Path):
    scene = _load(_fzk(shared_data))
    for mesh in scene.meshes.values():
        for p in mesh.primitives:
            assert p.positions.dtype == np.float32 and p.indices.dtype == np.uint32
            assert p.normals is not None and p.normals.shape == p.positions.shape
            assert int(p.indices.max()) < len(p.positions)
            np.testing.assert_allclose(np.linalg.norm(p.normals, axis=1), 1.0, atol=1e-4)


def test_properties_hold_psets_quantities_type_psets_and_attributes(shared_data: Path):
    scene = _load(_fzk(shared_data))
    model = _model(_fzk(shared_data))
    wall = model.by_type("IfcWall")[0]
    props = scene.elements[wall.GlobalId].properties
    assert "Pset_WallCommon" in props and "BaseQuantities" in props
    assert props["Attributes"]["GlobalId"] == wall.GlobalId
    air = _load(shared_data / "ifc" / "air-terminal-element.ifc")
    (terminal,) = [e for e in air.elements.values() if e.cls == "IfcAirTerminal"]
    assert "Pset_AirTerminalTypeCommon" in terminal.properties  # inherited from its IfcAirTerminalType
    assert terminal.properties["Attributes"]["TypeName"]


def test_measured_properties_keep_their_units_into_the_manifest():
    """A property's own unit, else the project's for its measure, else the SI unit of a measure the project
    left unassigned (the sample's power and pressure); text has none."""
    scene = _load(SAMPLE_TWIN)
    by_name = {e.name: e for e in scene.elements.values()}
    assert by_name["M-101"].units["Pset_ElectricMotorTypeCommon"] == {"MaximumPowerOutput": "W"}
    assert by_name["V-101"].units["Pset_ValveTypeCommon"] == {"Size": "m", "WorkingPressure": "Pa"}
    pump = by_name["P-101"].units["Pset_PumpTypeCommon"]
    assert (pump["ConnectionSize"], pump["FlowRateRange"]) == ("m", "kg/s")  # a bounded value too
    assert "Pset_ManufacturerTypeInformation" not in by_name["P-101"].units
    records = {r["name"]: r for r in build_manifest(scene, {})["elements"]}
    assert records["M-101"]["units"] == by_name["M-101"].units
    assert "units" not in records[scene.elements[next(iter(scene.elements))].name]  # the project: no units


def test_body_exported_without_identifier_is_still_tessellated(shared_data: Path, tmp_path: Path):
    model = _model(shared_data / "ifc" / "4walls1floorSite.ifc")
    copy = model.from_string(model.to_string())
    wall = copy.by_type("IfcWall")[0]
    (body,) = [r for r in wall.Representation.Representations if r.RepresentationIdentifier == "Body"]
    body.RepresentationIdentifier = None
    path = tmp_path / "unnamed_body.ifc"
    copy.write(str(path))
    assert load(path, ImportOptions()).elements[wall.GlobalId].mesh is not None


def test_file_without_any_geometry_still_imports_its_elements(shared_data: Path):
    path = shared_data / "ifc" / "RioleringTestArkey.ifc"
    scene = _load(path)
    assert len(scene.elements) == len(_model(path).by_type("IfcProduct")) + 1 == 31
    assert scene.meshes == {}


def test_ifczip_is_read(shared_data: Path):
    scene = _load(shared_data / "ifc" / "SmallModelIfc4.ifczip")
    assert [e.cls for e in scene.elements.values()] == ["IfcProject"]


def test_kernels_agree_on_which_elements_have_geometry(shared_data: Path):
    path = shared_data / "ifc" / "IfcOpenHouse_IFC4.ifc"
    meshed = {k: {e.id for e in _load(path, k).elements.values() if e.mesh} for k in ("manifold", "opencascade")}
    assert meshed["manifold"] == meshed["opencascade"] == {e.id for e in _load(path).elements.values() if e.mesh}
    assert _load(path, "opencascade").inputs[0].importer.endswith("(opencascade)")
    assert _load(path, "manifold").inputs[0].importer.endswith("(manifold)")


@pytest.mark.slow
def test_surface_models_with_openings_bypass_manifold(shared_data: Path):
    # Manifold segfaults cutting openings into duplex.ifc's surface-model cabinets: auto sends
    # those to opencascade up front, manifold-only skips them instead of crashing.
    path = shared_data / "ifc" / "duplex.ifc"
    auto = _load(path)
    occ = _load(path, "opencascade")
    assert {e.id for e in auto.elements.values() if e.mesh} == {e.id for e in occ.elements.values() if e.mesh}
    assert auto.inputs[0].importer.endswith("(manifold+opencascade)")
    assert auto.warnings == []
    manifold = _load(path, "manifold")
    skipped = [e for e in occ.elements.values() if e.mesh and not manifold.elements[e.id].mesh]
    assert len(skipped) == 8 and {e.cls for e in skipped} == {"IfcFurnishingElement"}
    assert any("8 element(s) skipped: manifold cannot cut openings" in w for w in manifold.warnings)


def test_kernel_crash_falls_back_to_opencascade(shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    import os
    import signal

    iterate = ifc._iterate

    def crashing(model, kernel, *args, **kwargs):
        for n, shape in enumerate(iterate(model, kernel, *args, **kwargs)):
            if kernel == "manifold" and n == 3:
                os.kill(os.getpid(), signal.SIGSEGV)  # what a native kernel bug looks like
            yield shape

    monkeypatch.setattr(ifc, "_iterate", crashing)
    path = shared_data / "ifc" / "IfcOpenHouse_IFC4.ifc"
    scene = load(path, ImportOptions())
    assert {e.id for e in scene.elements.values() if e.mesh} == {e.id for e in _load(path).elements.values() if e.mesh}
    assert scene.inputs[0].importer.endswith("(manifold+opencascade)")
    assert any(f"manifold kernel crashed (exit code -{signal.SIGSEGV})" in w for w in scene.warnings)
    assert len(scene.warnings) == 2  # the crash and the retry, each one line


def _geometry(scene: Scene) -> dict[str, tuple]:
    """Each element's placement and drawn triangles, comparable across imports."""
    out = {}
    for element in scene.elements.values():
        prims = scene.meshes[element.mesh].primitives if element.mesh else []
        out[element.id] = (
            None if element.matrix is None else element.matrix.round(9).tobytes(),
            tuple((p.material, p.positions[p.indices].round(6).tobytes(), p.normals.round(4).tobytes()) for p in prims),
        )
    return out


@pytest.mark.parametrize("kernel", ["manifold", "opencascade"])
def test_kernel_workers_make_what_one_process_makes(
    shared_data: Path, kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Products are shared out among forked workers in runs; every product must be made once, by
    # the workers, and end up where a single in-process iterator puts it.
    import os

    path = shared_data / "ifc" / "IfcOpenHouse_IFC4.ifc"
    one = load(path, ImportOptions(ifc_kernel=kernel, threads=1))
    iterate, calls = ifc._iterate, tmp_path / "calls"

    def noted(model, kernel, threads, include, *args, **kwargs):
        with calls.open("a") as f:
            f.write(f"{os.getpid()} {len(include)}\n")
        yield from iterate(model, kernel, threads, include, *args, **kwargs)

    monkeypatch.setattr(ifc, "_iterate", noted)
    three = load(path, ImportOptions(ifc_kernel=kernel, threads=3))
    runs = [line.split() for line in calls.read_text().splitlines()]
    pids = {pid for pid, _ in runs}
    assert len(pids) >= 2 and str(os.getpid()) not in pids  # a worker may take every run before the third starts
    assert len(runs) == 3 * ifc.CHUNKS_PER_WORKER
    assert sum(int(n) for _, n in runs) == len([e for e in one.elements.values() if e.mesh])
    assert sum(1 for e in one.elements.values() if e.mesh) > 3 * ifc.MIN_PRODUCTS_PER_WORKER // 2
    assert _geometry(three) == _geometry(one)
    assert [m.name for m in three.materials] == [m.name for m in one.materials]
    assert three.warnings == one.warnings == []


def test_last_kernel_worker_crash_is_made_good_in_process(shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    # Without a fallback kernel, what a crashed worker held is tessellated again by the importer
    # itself: the scene is complete and the crash is one warning.
    import os
    import signal

    importer = os.getpid()
    iterate = ifc._iterate

    def crashing_in_workers(model, kernel, *args, **kwargs):
        for n, shape in enumerate(iterate(model, kernel, *args, **kwargs)):
            if os.getpid() != importer and n == 2:
                os.kill(os.getpid(), signal.SIGSEGV)
            yield shape

    monkeypatch.setattr(ifc, "_iterate", crashing_in_workers)
    path = shared_data / "ifc" / "IfcOpenHouse_IFC4.ifc"
    scene = load(path, ImportOptions(ifc_kernel="opencascade", threads=2))
    monkeypatch.undo()
    assert _geometry(scene) == _geometry(load(path, ImportOptions(ifc_kernel="opencascade", threads=1)))
    (warning,) = scene.warnings
    assert f"opencascade kernel crashed (exit code -{signal.SIGSEGV}) in 2 of 2 worker(s)" in warning


@pytest.mark.slow
def test_crash_on_what_bypasses_manifold_is_made_good(shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    # duplex.ifc's cabinets go to opencascade in the same workers as manifold's share; when that
    # worker crashes, the cabinets are made again afterwards and nothing is lost.
    import os
    import signal

    path = shared_data / "ifc" / "duplex.ifc"
    expected = _geometry(_load(path))
    importer = os.getpid()
    iterate = ifc._iterate

    def crashing_in_workers(model, kernel, *args, **kwargs):
        if kernel == "opencascade" and os.getpid() != importer:
            os.kill(os.getpid(), signal.SIGSEGV)
        yield from iterate(model, kernel, *args, **kwargs)

    monkeypatch.setattr(ifc, "_iterate", crashing_in_workers)
    scene = load(path, ImportOptions())
    assert _geometry(scene) == expected
    assert scene.warnings == [f"opencascade kernel crashed (exit code -{signal.SIGSEGV}) in 1 of 2 worker(s)"]


def test_kernel_fallback_per_element(shared_data: Path):
    # Manifold has no tapered extrusions: the duct falls back to opencascade, the rest stays put.
    scene = _load(shared_data / "ifc" / "air-terminal-element.ifc")
    assert any("retried with opencascade" in w for w in scene.warnings)
    assert any(e.cls == "IfcDuctSegment" and e.mesh for e in scene.elements.values())


def test_dangling_references_in_a_valid_export_are_warnings(shared_data: Path):
    scene = _load(shared_data / "ifc" / "example.ifc")
    (warning,) = [w for w in scene.warnings if "parse error" in w]
    assert "#14315" in warning and "line 6517" in warning


# Every malformed corpus file, with the reason and location the user is shown.
MALFORMED = {
    "Badly formed Ifc file.ifc": ("no IfcProject", "DATA section"),
    "FormallyIllegalFile.ifc": ("token -1.#INF", "line 21"),
    "InvalidHeaderFileName.ifc": ("Expected FILE_DESCRIPTION", "HEADER section"),
    "Large_entity_label.ifc": ("token 92147483647 invalid instance name", "line 9"),
    # Element-level damage is normally a warning; when it leaves no element with geometry the
    # import fails, naming the kernel's reason and the element.
    "invalid-index.ifc": ("index out of bounds for index 99", "#20 IfcBuildingElementProxy"),
    "missing-placement.ifc": ("#999999 used by instance #22", "#23 IfcBuildingElementProxy"),
    "unterminated-string.ifc": ("Expected ISO-10303-21", "HEADER section"),
}


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_corpus_file_fails_clearly(name: str, shared_data: Path):
    # None of these crashes IfcOpenShell natively (checked), so they run in-process.
    path = shared_data / "malformed" / "ifc" / name
    reason, where = MALFORMED[name]
    with pytest.raises(ImportFailed) as failure:
        load(path, ImportOptions())
    assert failure.value.path == str(path)
    assert reason in failure.value.reason
    assert where in failure.value.where


def test_every_malformed_file_is_covered(shared_data: Path):
    assert sorted(p.name for p in MALFORMED_DIR.iterdir()) == sorted(MALFORMED)


def test_truncated_file_is_refused_not_half_imported(shared_data: Path, tmp_path: Path):
    cut = tmp_path / "cut.ifc"
    cut.write_bytes(_fzk(shared_data).read_bytes()[:1_200_000])
    with pytest.raises(ImportFailed, match="truncated") as failure:
        load(cut, ImportOptions())
    assert failure.value.where.startswith("line ")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.ifc", b"", "empty file"),
        ("blank.ifc", b"  \n", "empty file"),
        ("model.ifc", b'{"asset": {"version": "2.0"}}', "not a readable IFC file"),
        ("model.ifczip", b"PK\x03\x04 not really a zip", "not a readable IFC file"),
    ],
)
def test_unreadable_content_fails_clearly(tmp_path: Path, name: str, content: bytes, reason: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFailed, match=reason):
        load(path, ImportOptions())


def test_cad_step_file_named_ifc_is_told_apart(shared_data: Path, tmp_path: Path):
    path = tmp_path / "part.ifc"
    path.write_bytes((shared_data / "step" / "red_cube_blue_cylinder.step").read_bytes())
    with pytest.raises(ImportFailed, match=r"a STEP file in schema .*, not IFC") as failure:
        load(path, ImportOptions())
    assert failure.value.where == "FILE_SCHEMA"


def test_unknown_kernel_is_refused(shared_data: Path):
    with pytest.raises(ImportFailed, match="unknown ifc_kernel"):
        load(shared_data / "ifc" / "4walls1floorSite.ifc", ImportOptions(ifc_kernel="cgal"))


def test_decomposition_cycle_is_cut_not_fatal(tmp_path: Path):
    import ifcopenshell
    import ifcopenshell.api

    model = ifcopenshell.api.run("project.create_file", version="IFC4")
    project = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcProject", name="P")
    a = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcElementAssembly", name="A")
    b = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcElementAssembly", name="B")
    c = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcBeam", name="C")
    guid = ifcopenshell.guid.new
    model.createIfcRelAggregates(guid(), None, None, None, a, [b])
    model.createIfcRelAggregates(guid(), None, None, None, b, [a])
    model.createIfcRelAggregates(guid(), None, None, None, b, [c])
    path = tmp_path / "cycle.ifc"
    model.write(str(path))
    scene = load(path, ImportOptions())
    parents = {e.name: scene.elements[e.parent].name if e.parent else None for e in scene.elements.values()}
    assert parents["C"] == "B" and project.GlobalId in scene.elements
    assert {parents["A"], parents["B"]} == {"P", "A"} or {parents["A"], parents["B"]} == {"B", "P"}
    assert len([w for w in scene.warnings if "cycle" in w]) == 1


def test_duplicate_global_ids_are_kept_apart(tmp_path: Path):
    import ifcopenshell.api

    model = ifcopenshell.api.run("project.create_file", version="IFC4")
    ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcProject", name="P")
    first = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcWall", name="first")
    second = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcWall", name="second")
    second.GlobalId = first.GlobalId
    path = tmp_path / "duplicates.ifc"
    model.write(str(path))
    scene = load(path, ImportOptions())
    assert scene.elements[first.GlobalId].name == "first"
    assert scene.elements[f"{first.GlobalId}~2"].name == "second"
    assert any("1 duplicate GlobalId" in w for w in scene.warnings)


def test_placements_are_read_and_an_unreadable_one_is_a_warning(tmp_path: Path):
    import ifcopenshell.api

    model = ifcopenshell.api.run("project.create_file", version="IFC4")
    ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcProject", name="P")
    placed = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcWall", name="placed")
    matrix = np.eye(4)
    matrix[:3, 3] = (1.0, 2.0, 3.0)  # IFC is Z-up: y = 2 is depth, z = 3 is height
    ifcopenshell.api.run("geometry.edit_object_placement", model, product=placed, matrix=matrix)
    broken = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcWall", name="broken")
    ifcopenshell.api.run("geometry.edit_object_placement", model, product=broken, matrix=matrix)
    broken.ObjectPlacement.RelativePlacement = None  # required, so unreadable
    path = tmp_path / "placements.ifc"
    model.write(str(path))
    scene = load(path, ImportOptions())
    np.testing.assert_allclose(scene.elements[placed.GlobalId].matrix[:3, 3], (1.0, 3.0, -2.0))
    np.testing.assert_allclose(scene.elements[broken.GlobalId].matrix, np.eye(4))
    assert any("1 element(s) with an unreadable placement" in w and "broken" in w for w in scene.warnings)


def _pump_plant(path: Path, uses: int) -> list[str]:
    """An IFC4 file with one IfcPumpType whose body (a RepresentationMap) `uses` IfcPumps map, each placed and
    turned on its own; the last maps it through a non-uniform operator with turned axes (scale x rotation: a
    shear, which a glTF node cannot hold). Returns the pumps' GlobalIds."""
    import ifcopenshell.api

    model = ifcopenshell.api.run("project.create_file", version="IFC4")
    project = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcProject", name="P")
    ifcopenshell.api.run("unit.assign_unit", model)
    context = ifcopenshell.api.run("context.add_context", model, context_type="Model")
    body = ifcopenshell.api.run(
        "context.add_context",
        model,
        context_type="Model",
        context_identifier="Body",
        target_view="MODEL_VIEW",
        parent=context,
    )
    site = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcSite", name="Site")
    ifcopenshell.api.run("aggregate.assign_object", model, relating_object=project, products=[site])
    pump_type = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcPumpType", name="Pump type")
    shape = ifcopenshell.api.run(
        "geometry.add_wall_representation", model, context=body, length=0.8, height=0.5, thickness=0.4
    )
    ifcopenshell.api.run("geometry.assign_representation", model, product=pump_type, representation=shape)
    pumps = []
    for i in range(uses):
        pump = ifcopenshell.api.run("root.create_entity", model, ifc_class="IfcPump", name=f"Pump {i}")
        ifcopenshell.api.run("spatial.assign_container", model, relating_structure=site, products=[pump])
        matrix = np.eye(4)
        matrix[:3, 3] = (i % 10 * 2.0, i // 10 * 2.0, 0.0)
        c, s = np.cos(np.radians(20 * i)), np.sin(np.radians(20 * i))
        matrix[:2, :2] = [[c, -s], [s, c]]
        ifcopenshell.api.run("geometry.edit_object_placement", model, product=pump, matrix=matrix)
        ifcopenshell.api.run("type.assign_type", model, related_objects=[pump], relating_type=pump_type)
        pumps.append(pump)
    (mapped,) = pumps[-1].Representation.Representations[0].Items
    a = np.radians(30)
    sheared = model.create_entity(
        "IfcCartesianTransformationOperator3DnonUniform",
        Axis1=model.createIfcDirection((float(np.cos(a)), float(np.sin(a)), 0.0)),
        Axis2=model.createIfcDirection((float(-np.sin(a)), float(np.cos(a)), 0.0)),
        Axis3=model.createIfcDirection((0.0, 0.0, 1.0)),
        LocalOrigin=model.createIfcCartesianPoint((0.0, 0.0, 0.0)),
        Scale=2.0,
        Scale2=1.0,
        Scale3=1.0,
    )
    pumps[-1].Representation.Representations[0].Items = [
        model.create_entity("IfcMappedItem", MappingSource=mapped.MappingSource, MappingTarget=sheared)
    ]
    model.write(str(path))
    return [p.GlobalId for p in pumps]


def _world_vertices(scene: Scene, element_id: str) -> set[tuple[float, ...]]:
    """An element's vertices in IFC world coordinates (Z-up), rounded to the millimetre."""
    el = scene.elements[element_id]
    local = np.concatenate([p.positions for p in scene.meshes[el.mesh].primitives]).astype(np.float64)
    world = (np.c_[local, np.ones(len(local))] @ el.matrix.T)[:, :3]
    return set(map(tuple, np.c_[world[:, 0], -world[:, 2], world[:, 1]].round(3) + 0.0))


def test_a_type_mapped_fifty_times_is_one_mesh_placed_fifty_times(tmp_path: Path):
    """...in the Scene, in the GLB (one glTF mesh), in the USD stage (instanceable prims under element prims that
    keep their twin:id and property sets) and in an ARKit-valid USDZ; each placement, the sheared one too, is
    where IfcOpenShell puts it."""
    import ifcopenshell.geom
    from pxr import Usd

    from scene.export.glb import write_glb
    from scene.export.usd_stage import write_stage
    from scene.export.usdz import write_usdz
    from scene.importers import mesh
    from scene.validate import validate_usd

    pumps = _pump_plant(tmp_path / "pumps.ifc", 50)
    scene = load(tmp_path / "pumps.ifc", ImportOptions())
    meshes = [scene.elements[p].mesh for p in pumps]
    assert len(set(meshes[:-1])) == 1  # the 49 plain mappings share one mesh
    assert meshes[-1] != meshes[0]  # the sheared one is its own (the kernel bakes the operator)
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    write_glb(scene, tmp_path / "pumps.glb", compress=True)
    written = mesh.load(tmp_path / "pumps.glb", ImportOptions())
    assert len(written.meshes) == 2  # still shared in the GLB: one glTF mesh, 49 nodes
    model = _model(tmp_path / "pumps.ifc")
    for pump in (pumps[0], pumps[7], pumps[-1]):
        shape = ifcopenshell.geom.create_shape(settings, model.by_guid(pump))
        expected = set(map(tuple, np.asarray(shape.geometry.verts).reshape(-1, 3).round(3) + 0.0))
        assert _world_vertices(scene, pump) == expected
        # through the GLB (quantised positions: within a millimetre)
        got = np.array(sorted(_world_vertices(written, pump)))
        assert np.abs(got - np.array(sorted(expected))).max() <= 1.5e-3
    write_stage(scene, tmp_path / "scene.usdc")
    write_usdz(tmp_path / "scene.usdc", tmp_path / "scene.usdz")
    assert validate_usd(tmp_path / "scene.usdz", arkit=True) == []
    stage = Usd.Stage.Open(str(tmp_path / "scene.usdz"))
    by_id = {p.GetAttribute("twin:id").Get(): p for p in stage.Traverse() if p.HasAttribute("twin:id")}
    geometry = [by_id[p].GetChild("Geometry") for p in pumps]
    assert all(g.IsInstance() for g in geometry[:-1]) and not geometry[-1].IsInstance()
    assert len({g.GetPrototype().GetPath() for g in geometry[:-1]}) == 1
    assert by_id[pumps[3]].GetAttribute("twin:name").Get() == "Pump 3"
