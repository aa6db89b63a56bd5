"""The sample pump station: a reproducible IFC4 model whose ids the telemetry bindings rely on."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import ifcopenshell
import ifcopenshell.guid
import ifcopenshell.util.element
import pytest

from scene.importers import ImportOptions
from scene.importers.ifc import load
from scene.model import Scene
from scene.samples import pump_station

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / "assets" / "pump_station.ifc"
EQUIPMENT = {
    "IfcPump": {"P-101", "P-102"},
    "IfcElectricMotor": {"M-101", "M-102"},
    "IfcTank": {"T-100"},
    "IfcValve": {"V-101", "V-102", "V-201"},
    "IfcPipeSegment": {f"PIPE-00{i}" for i in range(1, 7)},
    "IfcSensor": {"PT-101", "PT-102", "TT-101", "TT-102", "VT-101", "VT-102", "FT-201", "LT-100", "ZT-201"},
}
HOSTS = {"PT-101": "PIPE-003", "PT-102": "PIPE-004", "TT-101": "M-101", "TT-102": "M-102", "VT-101": "P-101",
         "VT-102": "P-102", "FT-201": "PIPE-005", "LT-100": "T-100", "ZT-201": "V-201"}  # fmt: skip
SPATIAL = {"PROJECT": "IfcProject", "SITE": "IfcSite", "BUILDING": "IfcBuilding", "STOREY-GF": "IfcBuildingStorey",
           "SPACE-PUMPROOM": "IfcSpace", "SLAB-GF": "IfcSlab", "WALL-N": "IfcWall", "WALL-S": "IfcWall",
           "WALL-E": "IfcWall", "WALL-W": "IfcWall"}  # fmt: skip
# Colour family of each class's surface style: (dominant channel test on the linear RGB).
COLOURS = {
    "IfcPump": lambda r, g, b: b > 0.5 and b > 2 * r,  # blue
    "IfcValve": lambda r, g, b: r > 0.6 and g < 0.2,  # red
    "IfcSensor": lambda r, g, b: r > 0.8 and g > 0.6 and b < 0.2,  # yellow
    "IfcElectricMotor": lambda r, g, b: 0.3 < r < 0.6 and abs(r - b) < 0.1,  # grey
    "IfcTank": lambda r, g, b: min(r, g, b) > 0.8,  # light grey
    "IfcPipeSegment": lambda r, g, b: 0.5 < r < 0.8 and b >= r,  # steel
}


def expected_guid(tag: str) -> str:
    return ifcopenshell.guid.compress(uuid.uuid5(uuid.NAMESPACE_URL, "twinview:pump-station:" + tag).hex)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "pump_station.ifc"
    pump_station.write(out)
    return out


@pytest.fixture(scope="module")
def model(generated: Path) -> ifcopenshell.file:
    return ifcopenshell.open(str(generated))


@pytest.fixture(scope="module")
def scene(generated: Path) -> Scene:
    return load(generated, ImportOptions())


def _by_tag(model: ifcopenshell.file) -> dict[str, ifcopenshell.entity_instance]:
    tagged = {expected_guid(t): t for t in pump_station.ALL_TAGS}
    return {tagged[e.GlobalId]: e for e in model.by_type("IfcRoot") if e.GlobalId in tagged}


def test_cli_writes_the_model_and_its_tag_map(tmp_path: Path):
    out = tmp_path / "nested" / "station.ifc"
    proc = subprocess.run([sys.executable, "-m", "scene.samples.pump_station", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert ifcopenshell.open(str(out)).schema == "IFC4"
    tags = json.loads((tmp_path / "nested" / "station.tags.json").read_text())
    assert tags == {tag: expected_guid(tag) for tag in pump_station.ALL_TAGS}


def test_exactly_the_listed_equipment_with_deterministic_ids(model: ifcopenshell.file):
    for ifc_class, tags in EQUIPMENT.items():
        found = {e.Name: e for e in model.by_type(ifc_class)}
        assert set(found) == tags, ifc_class
        for tag, element in found.items():
            assert element.GlobalId == expected_guid(tag)
            assert element.Tag == tag and element.Description
    by_tag = _by_tag(model)
    for tag, ifc_class in SPATIAL.items():
        assert by_tag[tag].is_a() == ifc_class
    names = {by_tag[t].Name for t in ("PROJECT", "BUILDING", "STOREY-GF", "SPACE-PUMPROOM")}
    assert names == {"TwinView Pump Station", "Pump Station", "Ground Floor", "Pump Room"}


def test_products_have_geometry(model: ifcopenshell.file):
    for tag, element in _by_tag(model).items():
        if element.is_a("IfcElement"):
            assert element.Representation, tag


def test_standard_and_custom_psets(model: ifcopenshell.file):
    common = {"IfcPump": "Pset_PumpTypeCommon", "IfcElectricMotor": "Pset_ElectricMotorTypeCommon",
              "IfcTank": "Pset_TankTypeCommon", "IfcValve": "Pset_ValveTypeCommon",
              "IfcPipeSegment": "Pset_PipeSegmentTypeCommon", "IfcSensor": "Pset_SensorTypeCommon"}  # fmt: skip
    for ifc_class, tags in EQUIPMENT.items():
        for element in model.by_type(ifc_class):
            psets = ifcopenshell.util.element.get_psets(element)
            assert common[ifc_class] in psets
            if ifc_class != "IfcPipeSegment":
                assert psets["Pset_ManufacturerTypeInformation"]["Manufacturer"]
            asset = psets["TwinView_Asset"]
            assert asset["AssetTag"] == element.Name in tags
            assert asset["Criticality"] in {"low", "medium", "high"} and asset["MaintenanceIntervalDays"] > 0
            if ifc_class == "IfcSensor":
                assert asset["HostElement"] == HOSTS[element.Name]
    pump = ifcopenshell.util.element.get_psets(model.by_type("IfcPump")[0])["Pset_PumpTypeCommon"]
    assert pump["NominalRotationSpeed"] > 0 and "FlowRateRange" in pump


def test_sensors_nest_under_their_host(model: ifcopenshell.file):
    for sensor in model.by_type("IfcSensor"):
        assert ifcopenshell.util.element.get_nest(sensor).Name == HOSTS[sensor.Name]


def test_process_loop_is_connected_through_ports(model: ifcopenshell.file):
    edges = set()
    for rel in model.by_type("IfcRelConnectsPorts"):
        up, down = (ifcopenshell.util.element.get_nest(port) for port in (rel.RelatingPort, rel.RelatedPort))
        edges.add((up.Name, down.Name))
    assert edges == set(pump_station.FLOW)
    node, seen = "T-100", []
    for _ in range(7):  # T-100 -> PIPE-001 -> V-101 -> P-101 -> PIPE-003 -> PIPE-005 -> V-201 -> PIPE-006
        node = sorted(d for u, d in edges if u == node)[0]
        seen.append(node)
    assert seen[-1] == "PIPE-006" and ("PIPE-006", "T-100") in edges


def test_regeneration_is_byte_identical(generated: Path, tmp_path: Path):
    again = tmp_path / "pump_station.ifc"
    pump_station.write(again)
    assert again.read_bytes() == generated.read_bytes()


def test_committed_asset_is_current(generated: Path):
    assert ASSET.read_bytes() == generated.read_bytes(), "run: python -m scene.samples.pump_station"
    assert json.loads(ASSET.with_name("pump_station.tags.json").read_text()) == pump_station.tag_ids()


def test_imports_with_the_spatial_hierarchy(scene: Scene):
    def chain(element_id: str) -> list[str]:
        out = []
        while element_id:
            out.append(scene.elements[element_id].cls)
            element_id = scene.elements[element_id].parent
        return out

    assert chain(expected_guid("P-101")) == [
        "IfcPump", "IfcSpace", "IfcBuildingStorey", "IfcBuilding", "IfcSite", "IfcProject"]  # fmt: skip
    assert chain(expected_guid("WALL-N"))[1] == "IfcBuildingStorey"
    for sensor, host in HOSTS.items():
        assert scene.elements[expected_guid(sensor)].parent == expected_guid(host)


def test_imports_with_type_psets_and_bounded_values(scene: Scene):
    pump = scene.elements[expected_guid("P-101")].properties
    assert pump["Pset_PumpTypeCommon"]["FlowRateRange"] == [8.0, 40.0]  # IfcPropertyBoundedValue: [lower, upper]
    assert pump["TwinView_Asset"]["AssetTag"] == "P-101"
    assert pump["Attributes"] == {
        "GlobalId": expected_guid("P-101"), "Description": "Duty pump 1", "Tag": "P-101",
        "PredefinedType": "ENDSUCTION", "TypeName": pump_station.TYPES["pump"][1]}  # fmt: skip
    assert scene.elements[expected_guid("LT-100")].properties["TwinView_Asset"]["HostElement"] == "T-100"


def test_imports_with_geometry_and_colours(scene: Scene):
    assert scene.inputs[0].importer.endswith("(manifold)")  # extrusions only: the fast kernel does it all
    assert scene.warnings == []
    for ifc_class, tags in EQUIPMENT.items():
        for tag in tags:
            element = scene.elements[expected_guid(tag)]
            assert element.mesh is not None, tag
            (index,) = {p.material for p in scene.meshes[element.mesh].primitives}
            material = scene.materials[index]
            assert COLOURS[ifc_class](*material.base_color[:3]), (tag, material)
    for a, b in (("P-101", "P-102"), ("M-101", "M-102"), ("V-101", "V-102"), ("PT-101", "TT-102")):
        assert scene.elements[expected_guid(a)].mesh == scene.elements[expected_guid(b)].mesh  # one shared body
    steel = scene.materials[scene.meshes[scene.elements[expected_guid("PIPE-001")].mesh].primitives[0].material]
    assert steel.metallic == 1.0
    lo, hi = scene.world_bounds(expected_guid("T-100"))
    assert abs(hi[1] - lo[1] - 3.0) < 0.01  # the 3 m tall tank stands along +Y after Z-up -> Y-up
