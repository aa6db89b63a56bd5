"""The sample twin: a small pump station, written as IFC4 with ifcopenshell.api.

    python -m scene.samples.pump_station [OUT]      (default assets/pump_station.ifc)

writes OUT and, beside it, `<stem>.tags.json` (plant tag -> GlobalId). The output is
byte-for-byte reproducible: GlobalIds derive from plant tags (or, for relationships, from
their creation order) and the header timestamp is pinned.

The process loop: tank T-100 -> suction pipes PIPE-001/002 (isolation valves V-101/102) ->
pumps P-101/102 (driven by motors M-101/102) -> discharge pipes PIPE-003/004 -> header
PIPE-005 -> control valve V-201 -> return PIPE-006 -> back into T-100. The loop is modelled
with IfcDistributionPorts connected by IfcRelConnectsPorts and grouped in one
IfcDistributionSystem. Sensors are nested (IfcRelNests) under the equipment they measure, so a
viewer shows them under their host; each also names its host in TwinView_Asset.HostElement.
Everything else is contained in the pump room (IfcSpace), which sits in the ground floor.

Coordinates are IFC's: Z up, metres. The room's inside spans x 0..10 m, y 0..7 m.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.nest
import ifcopenshell.api.project
import ifcopenshell.api.pset
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.style
import ifcopenshell.api.system
import ifcopenshell.api.type
import ifcopenshell.api.unit
import ifcopenshell.guid

Vec = tuple[float, float, float]  # x, y, z in metres, IFC axes (Z up)

DEFAULT_OUT = Path("assets/pump_station.ifc")
GUID_PREFIX = "twinview:pump-station:"  # shared with the telemetry bindings: never change it
TIMESTAMP = "2026-01-01T00:00:00"  # pinned so regeneration gives identical bytes
AUTHORING_TOOL = "TwinView scene.samples.pump_station"

ROOM_X, ROOM_Y = 10.0, 7.0  # inside dimensions of the pump room, metres
WALL_THICKNESS, WALL_HEIGHT = 0.25, 3.5
SLAB_THICKNESS = 0.3
# Project units: SI, with kilograms (not the API's default gram) for masses.
SI_UNITS = (("LENGTHUNIT", None), ("AREAUNIT", None), ("VOLUMEUNIT", None), ("PLANEANGLEUNIT", None),
            ("MASSUNIT", "KILO"), ("TIMEUNIT", None))  # fmt: skip
AXIS_Z = 0.6  # height of the pump shafts and suction lines
HEADER_Z = 2.0  # height of the discharge header
PUMP_RADIUS, PUMP_LENGTH = 0.3, 0.6
SUCTION_RADIUS, DISCHARGE_RADIUS = 0.08, 0.1
COORDINATE_DIGITS = 9  # local coordinates are rounded so equal bodies compare equal despite float noise


def guid(tag: str) -> str:
    """The element's GlobalId, derived from its plant tag (the bindings rely on this formula)."""
    return ifcopenshell.guid.compress(uuid.uuid5(uuid.NAMESPACE_URL, GUID_PREFIX + tag).hex)


# name -> (sRGB-ish colour as IFC stores it, reflectance method)
STYLES: dict[str, tuple[Vec, str]] = {
    "Pump blue": ((0.08, 0.32, 0.78), "PLASTIC"),
    "Motor grey": ((0.42, 0.44, 0.47), "PLASTIC"),
    "Pipe steel": ((0.62, 0.65, 0.69), "METAL"),
    "Valve red": ((0.80, 0.08, 0.08), "PLASTIC"),
    "Tank light grey": ((0.86, 0.87, 0.88), "PLASTIC"),
    "Sensor yellow": ((0.98, 0.80, 0.06), "PLASTIC"),
    "Concrete": ((0.66, 0.66, 0.63), "MATT"),
}


@dataclass(frozen=True)
class Item:
    """A solid, in world coordinates until `_Builder.shape` moves it into its element's frame."""

    kind: str  # "box" (corner + size), "cylinder" (base centre, axis, radius, length), "pipe" (points, radius)
    origin: Vec = (0.0, 0.0, 0.0)
    size: Vec = (0.0, 0.0, 0.0)
    axis: Vec = (0.0, 0.0, 1.0)
    radius: float = 0.0
    length: float = 0.0
    points: tuple[Vec, ...] = ()


def box(x: float, y: float, z: float, dx: float, dy: float, dz: float) -> Item:
    return Item("box", (x, y, z), (dx, dy, dz))


def cylinder(base: Vec, axis: Vec, radius: float, length: float) -> Item:
    return Item("cylinder", base, axis=axis, radius=radius, length=length)


def pipe(radius: float, *points: Vec) -> Item:
    return Item("pipe", points=points, radius=radius)


X: Vec = (1.0, 0.0, 0.0)
Y: Vec = (0.0, 1.0, 0.0)
Z: Vec = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Equipment:
    tag: str
    ifc_class: str
    description: str
    type_key: str  # key into TYPES
    style: str
    items: tuple[Item, ...]  # world coordinates; the element is placed at the first one
    host: str | None = None  # sensors: the tag of the element they measure
    measures: tuple[str, str] | None = None  # sensors: (quantity, unit)
    criticality: str = "medium"
    maintenance_days: int = 365


def _vec(a: Vec, b: Vec, scale: float = 1.0) -> Vec:
    """a + scale * b."""
    return (a[0] + scale * b[0], a[1] + scale * b[1], a[2] + scale * b[2])


def _moved(item: Item, anchor: Vec) -> Item:
    """`item` in the frame of a placement at `anchor` (placements here only translate)."""

    def local(point: Vec) -> Vec:
        x, y, z = _vec(point, anchor, -1.0)
        return (round(x, COORDINATE_DIGITS), round(y, COORDINATE_DIGITS), round(z, COORDINATE_DIGITS))

    return dataclasses.replace(item, origin=local(item.origin), points=tuple(local(p) for p in item.points))


def _pipe_runs(item: Item) -> list[Item]:
    """A pipe as one cylinder per straight run. Runs are extruded circles rather than one swept
    disk because IfcOpenShell's fast manifold kernel has no sweeps; each run reaches one radius
    past an inner bend so the corners close."""
    runs = []
    last = len(item.points) - 2
    for i, (a, b) in enumerate(itertools.pairwise(item.points)):
        length = math.dist(a, b)
        axis = _vec((0.0, 0.0, 0.0), _vec(b, a, -1.0), 1.0 / length)
        before = item.radius if i > 0 else 0.0
        after = item.radius if i < last else 0.0
        runs.append(cylinder(_vec(a, axis, -before), axis, item.radius, length + before + after))
    return runs


def _pump(y: float) -> tuple[Item, ...]:
    casing = cylinder((5.4, y, AXIS_Z), X, PUMP_RADIUS, PUMP_LENGTH)
    outlet = cylinder((5.7, y, AXIS_Z), Z, DISCHARGE_RADIUS + 0.02, 0.35)
    foot = box(5.35, y - 0.25, 0.0, 0.7, 0.5, AXIS_Z - PUMP_RADIUS)
    return (casing, outlet, foot)


def _motor(y: float) -> tuple[Item, ...]:
    return (box(6.0, y - 0.25, AXIS_Z - 0.25, 0.8, 0.5, 0.5), cylinder((6.0, y, AXIS_Z), X, 0.05, 0.05))


def _valve(base: Vec, axis: Vec, stem: float) -> tuple[Item, ...]:
    x, y, z = base
    body = cylinder(base, axis, 0.14, 0.4)
    mid = (x + 0.2 * axis[0], y + 0.2 * axis[1], z)
    return (body, cylinder(mid, Z, 0.03, stem), cylinder((mid[0], mid[1], z + stem), Z, 0.12, 0.03))


def _sensor_box(x: float, y: float, z: float) -> tuple[Item, ...]:
    return (box(x - 0.05, y - 0.05, z, 0.1, 0.1, 0.14), cylinder((x, y, z + 0.14), Z, 0.035, 0.05))


EQUIPMENT: tuple[Equipment, ...] = (
    Equipment("T-100", "IfcTank", "Wet well / storage tank", "tank", "Tank light grey",
              (cylinder((2.0, 4.0, 0.0), Z, 1.2, 3.0),), criticality="high", maintenance_days=730),
    Equipment("P-101", "IfcPump", "Duty pump 1", "pump", "Pump blue", _pump(5.5), criticality="high",
              maintenance_days=180),
    Equipment("P-102", "IfcPump", "Duty pump 2", "pump", "Pump blue", _pump(2.5), criticality="high",
              maintenance_days=180),
    Equipment("M-101", "IfcElectricMotor", "Drive motor of P-101", "motor", "Motor grey", _motor(5.5),
              criticality="high", maintenance_days=180),
    Equipment("M-102", "IfcElectricMotor", "Drive motor of P-102", "motor", "Motor grey", _motor(2.5),
              criticality="high", maintenance_days=180),
    Equipment("V-101", "IfcValve", "P-101 suction isolation valve", "isolation_valve", "Valve red",
              _valve((4.95, 5.5, AXIS_Z), X, 0.35)),
    Equipment("V-102", "IfcValve", "P-102 suction isolation valve", "isolation_valve", "Valve red",
              _valve((4.95, 2.5, AXIS_Z), X, 0.35)),
    Equipment("V-201", "IfcValve", "Discharge header control valve", "control_valve", "Valve red",
              _valve((5.0, 1.0, HEADER_Z), (-1.0, 0.0, 0.0), 0.4), criticality="high", maintenance_days=180),
    Equipment("PIPE-001", "IfcPipeSegment", "Suction line T-100 to P-101", "suction_pipe", "Pipe steel",
              (pipe(SUCTION_RADIUS, (3.0, 4.6, AXIS_Z), (4.2, 4.6, AXIS_Z), (4.2, 5.5, AXIS_Z), (4.95, 5.5, AXIS_Z)),)),
    Equipment("PIPE-002", "IfcPipeSegment", "Suction line T-100 to P-102", "suction_pipe", "Pipe steel",
              (pipe(SUCTION_RADIUS, (3.0, 3.4, AXIS_Z), (4.2, 3.4, AXIS_Z), (4.2, 2.5, AXIS_Z), (4.95, 2.5, AXIS_Z)),)),
    Equipment("PIPE-003", "IfcPipeSegment", "Discharge line P-101 to header", "discharge_pipe", "Pipe steel",
              (pipe(DISCHARGE_RADIUS, (5.7, 5.5, 0.95), (5.7, 5.5, HEADER_Z), (8.5, 5.5, HEADER_Z)),)),
    Equipment("PIPE-004", "IfcPipeSegment", "Discharge line P-102 to header", "discharge_pipe", "Pipe steel",
              (pipe(DISCHARGE_RADIUS, (5.7, 2.5, 0.95), (5.7, 2.5, HEADER_Z), (8.5, 2.5, HEADER_Z)),)),
    Equipment("PIPE-005", "IfcPipeSegment", "Discharge header to V-201", "discharge_pipe", "Pipe steel",
              (pipe(DISCHARGE_RADIUS, (8.5, 5.6, HEADER_Z), (8.5, 1.0, HEADER_Z), (5.0, 1.0, HEADER_Z)),)),
    Equipment("PIPE-006", "IfcPipeSegment", "Return line V-201 to T-100", "discharge_pipe", "Pipe steel",
              (pipe(DISCHARGE_RADIUS, (4.6, 1.0, HEADER_Z), (2.0, 1.0, HEADER_Z), (2.0, 3.2, HEADER_Z)),)),
    Equipment("PT-101", "IfcSensor", "Discharge pressure P-101", "pressure_sensor", "Sensor yellow",
              _sensor_box(5.85, 5.5, 1.5), host="PIPE-003", measures=("pressure", "bar")),
    Equipment("PT-102", "IfcSensor", "Discharge pressure P-102", "pressure_sensor", "Sensor yellow",
              _sensor_box(5.85, 2.5, 1.5), host="PIPE-004", measures=("pressure", "bar")),
    Equipment("TT-101", "IfcSensor", "Winding temperature M-101", "temperature_sensor", "Sensor yellow",
              _sensor_box(6.6, 5.5, AXIS_Z + 0.25), host="M-101", measures=("temperature", "degC")),
    Equipment("TT-102", "IfcSensor", "Winding temperature M-102", "temperature_sensor", "Sensor yellow",
              _sensor_box(6.6, 2.5, AXIS_Z + 0.25), host="M-102", measures=("temperature", "degC")),
    Equipment("VT-101", "IfcSensor", "Vibration P-101", "vibration_sensor", "Sensor yellow",
              _sensor_box(5.55, 5.5, AXIS_Z + PUMP_RADIUS), host="P-101", measures=("vibration", "mm/s")),
    Equipment("VT-102", "IfcSensor", "Vibration P-102", "vibration_sensor", "Sensor yellow",
              _sensor_box(5.55, 2.5, AXIS_Z + PUMP_RADIUS), host="P-102", measures=("vibration", "mm/s")),
    Equipment("FT-201", "IfcSensor", "Header flow", "flow_sensor", "Sensor yellow",
              (cylinder((8.5, 3.6, HEADER_Z), Y, 0.16, 0.3), *_sensor_box(8.5, 3.75, HEADER_Z + 0.16)),
              host="PIPE-005", measures=("flow", "m3/h")),
    Equipment("LT-100", "IfcSensor", "Tank level", "level_sensor", "Sensor yellow",
              (cylinder((2.6, 4.0, 3.0), Z, 0.08, 0.25),), host="T-100", measures=("level", "%")),
    Equipment("ZT-201", "IfcSensor", "V-201 position", "position_sensor", "Sensor yellow",
              _sensor_box(4.8, 1.0, HEADER_Z + 0.43), host="V-201", measures=("position", "%")),
)  # fmt: skip

# The process loop, as (upstream tag, downstream tag) port connections.
FLOW: tuple[tuple[str, str], ...] = (
    ("T-100", "PIPE-001"), ("PIPE-001", "V-101"), ("V-101", "P-101"), ("P-101", "PIPE-003"),
    ("T-100", "PIPE-002"), ("PIPE-002", "V-102"), ("V-102", "P-102"), ("P-102", "PIPE-004"),
    ("PIPE-003", "PIPE-005"), ("PIPE-004", "PIPE-005"), ("PIPE-005", "V-201"), ("V-201", "PIPE-006"),
    ("PIPE-006", "T-100"),
)  # fmt: skip


@dataclass(frozen=True)
class Bounded:
    """An IfcPropertyBoundedValue (ifcopenshell.api's edit_pset writes single values only)."""

    low: float
    high: float
    measure: str  # IFC measure type of both bounds


# type key -> (IFC type class, name, predefined type, {pset name: properties})
MANUFACTURER = "TwinView Demo Equipment"
TYPES: dict[str, tuple[str, str, str, dict[str, dict[str, Any]]]] = {
    "tank": ("IfcTankType", "Wet well 12 m3", "STORAGE", {
        "Pset_TankTypeCommon": {"StorageType": "WATER", "PatternType": "VERTICALCYLINDER",
                                "NominalLengthOrDiameter": 2.4, "NominalDepth": 3.0, "EffectiveCapacity": 12.0},
        "Pset_ManufacturerTypeInformation": {"Manufacturer": MANUFACTURER, "ModelLabel": "WW-12"}}),
    "pump": ("IfcPumpType", "End-suction centrifugal pump 120 m3/h", "ENDSUCTION", {
        "Pset_PumpTypeCommon": {"FlowRateRange": Bounded(8.0, 40.0, "IfcMassFlowRateMeasure"),  # kg/s
                                "NominalRotationSpeed": 24.5,  # Hz (1470 rpm)
                                "NetPositiveSuctionHead": 31_000.0,  # Pa (about 3.2 m of water)
                                "ConnectionSize": 0.15,
                                "TemperatureRange": Bounded(275.15, 333.15, "IfcThermodynamicTemperatureMeasure")},
        "Pset_ManufacturerTypeInformation": {"Manufacturer": MANUFACTURER, "ModelLabel": "ES-150-120"}}),
    "motor": ("IfcElectricMotorType", "Induction motor 37 kW", "INDUCTION", {
        "Pset_ElectricMotorTypeCommon": {"MaximumPowerOutput": 37000.0,  # W
                                         "MotorEnclosureType": "TOTALLYENCLOSEDFANCOOLED",
                                         "IsGuarded": True, "HasPartWinding": False},
        "Pset_ManufacturerTypeInformation": {"Manufacturer": MANUFACTURER, "ModelLabel": "IM-37-4P"}}),
    "isolation_valve": ("IfcValveType", "Butterfly isolation valve DN150", "ISOLATING", {
        "Pset_ValveTypeCommon": {"ValvePattern": "STRAIGHT_2_PORT", "ValveOperation": "LEVER",
                                 "ValveMechanism": "BUTTERFLY", "Size": 0.15, "WorkingPressure": 1.0e6},
        "Pset_ManufacturerTypeInformation": {"Manufacturer": MANUFACTURER, "ModelLabel": "BV-150"}}),
    "control_valve": ("IfcValveType", "Globe control valve DN200", "REGULATING", {
        "Pset_ValveTypeCommon": {"ValvePattern": "STRAIGHT_2_PORT", "ValveOperation": "PNEUMATIC",
                                 "ValveMechanism": "GLOBE", "Size": 0.2, "WorkingPressure": 1.6e6},
        "Pset_ManufacturerTypeInformation": {"Manufacturer": MANUFACTURER, "ModelLabel": "CV-200"}}),
    "suction_pipe": ("IfcPipeSegmentType", "Steel pipe DN150", "RIGIDSEGMENT", {
        "Pset_PipeSegmentTypeCommon": {"NominalDiameter": 0.15, "WorkingPressure": 1.0e6}}),
    "discharge_pipe": ("IfcPipeSegmentType", "Steel pipe DN200", "RIGIDSEGMENT", {
        "Pset_PipeSegmentTypeCommon": {"NominalDiameter": 0.2, "WorkingPressure": 1.6e6}}),
    **{
        key: ("IfcSensorType", name, predefined, {
            "Pset_SensorTypeCommon": {"Reference": name},
            "Pset_ManufacturerTypeInformation": {"Manufacturer": MANUFACTURER, "ModelLabel": model}})
        for key, name, predefined, model in (
            ("pressure_sensor", "Pressure transmitter 0-16 bar", "PRESSURESENSOR", "PTX-16"),
            ("temperature_sensor", "PT100 winding temperature sensor", "TEMPERATURESENSOR", "PT100-W"),
            ("vibration_sensor", "Vibration transmitter 0-50 mm/s", "USERDEFINED", "VTX-50"),
            ("flow_sensor", "Electromagnetic flow meter DN200", "FLOWSENSOR", "MAG-200"),
            ("level_sensor", "Radar level transmitter", "LEVELSENSOR", "RLT-10"),
            ("position_sensor", "Valve position transmitter", "USERDEFINED", "VPT-1"),
        )
    },
}  # fmt: skip
# Sensor kinds IFC4 has no enumeration value for: PredefinedType USERDEFINED + this ObjectType.
USER_DEFINED_TYPES = {"vibration_sensor": "VIBRATIONSENSOR", "position_sensor": "POSITIONSENSOR"}

SPATIAL = ("PROJECT", "SITE", "BUILDING", "STOREY-GF", "SPACE-PUMPROOM")
WALLS: dict[str, tuple[float, float, float, float]] = {  # tag -> (x, y, length along x, length along y)
    "WALL-S": (-WALL_THICKNESS, -WALL_THICKNESS, ROOM_X + 2 * WALL_THICKNESS, WALL_THICKNESS),
    "WALL-N": (-WALL_THICKNESS, ROOM_Y, ROOM_X + 2 * WALL_THICKNESS, WALL_THICKNESS),
    "WALL-W": (-WALL_THICKNESS, 0.0, WALL_THICKNESS, ROOM_Y),
    "WALL-E": (ROOM_X, 0.0, WALL_THICKNESS, ROOM_Y),
}
ALL_TAGS: tuple[str, ...] = (*SPATIAL, "SLAB-GF", *WALLS, *(e.tag for e in EQUIPMENT))


class _Builder:
    """Thin helpers over ifcopenshell for one file: geometry, styles, products."""

    def __init__(self) -> None:
        self.model = ifcopenshell.api.project.create_file(version="IFC4")
        self.tagged: set[str] = set()  # GlobalIds derived from tags; the API's random ones get replaced
        self.project = self._root("IfcProject", "PROJECT", "TwinView Pump Station", "Sample digital twin")
        units = [
            ifcopenshell.api.unit.add_si_unit(self.model, unit_type=unit_type, prefix=prefix)
            for unit_type, prefix in SI_UNITS
        ]
        ifcopenshell.api.unit.assign_unit(self.model, units=units)
        model3d = ifcopenshell.api.context.add_context(self.model, context_type="Model")
        self.body = ifcopenshell.api.context.add_context(
            self.model, context_type="Model", context_identifier="Body", target_view="MODEL_VIEW", parent=model3d
        )
        self.styles = {name: self._style(name, rgb, method) for name, (rgb, method) in STYLES.items()}
        self.maps: dict[tuple[tuple[Item, ...], str], Any] = {}  # shared bodies, by local items and style

    def _root(self, ifc_class: str, tag: str, name: str, description: str, **attributes: Any) -> Any:
        entity = ifcopenshell.api.root.create_entity(self.model, ifc_class=ifc_class, name=name)
        self.identify(entity, tag)
        entity.Description = description
        for attribute, value in attributes.items():
            setattr(entity, attribute, value)
        return entity

    def identify(self, entity: Any, tag: str) -> None:
        entity.GlobalId = guid(tag)
        self.tagged.add(entity.GlobalId)

    def _style(self, name: str, rgb: Vec, method: str) -> Any:
        style = ifcopenshell.api.style.add_style(self.model, name=name)
        colour = dict(zip(("Red", "Green", "Blue"), rgb, strict=True))
        ifcopenshell.api.style.add_surface_style(
            self.model,
            style=style,
            ifc_class="IfcSurfaceStyleRendering",
            attributes={"SurfaceColour": colour, "Transparency": 0.0, "ReflectanceMethod": method},
        )
        return style

    def _axis(self, origin: Vec, axis: Vec = Z) -> Any:
        ref = X if abs(axis[0]) < 0.9 else Y
        return self.model.createIfcAxis2Placement3D(
            self.model.createIfcCartesianPoint(origin),
            self.model.createIfcDirection(axis),
            self.model.createIfcDirection(ref),
        )

    def _solids(self, item: Item) -> list[Any]:
        m = self.model
        if item.kind == "box":
            dx, dy, dz = item.size
            centre = m.createIfcAxis2Placement2D(m.createIfcCartesianPoint((dx / 2, dy / 2)), None)
            profile = m.createIfcRectangleProfileDef("AREA", None, centre, dx, dy)
            return [m.createIfcExtrudedAreaSolid(profile, self._axis(item.origin), m.createIfcDirection(Z), dz)]
        if item.kind == "cylinder":
            profile = m.createIfcCircleProfileDef("AREA", None, None, item.radius)
            placement = self._axis(item.origin, item.axis)
            return [m.createIfcExtrudedAreaSolid(profile, placement, m.createIfcDirection(Z), item.length)]
        return [self._solids(run)[0] for run in _pipe_runs(item)]

    def shape(self, product: Any, items: tuple[Item, ...], style: str) -> None:
        """Give `product` a styled body from world-coordinate items, placing the product at its
        first item so each element has its own origin (a pivot for the viewer and animations).
        Bodies that are equal in that frame (the two pumps, motors, …) share one
        IfcRepresentationMap, as a real model's type geometry would."""
        anchor = items[0].points[0] if items[0].kind == "pipe" else items[0].origin
        product.ObjectPlacement.RelativePlacement.Location.Coordinates = anchor
        local = tuple(_moved(item, anchor) for item in items)
        key = (local, style)
        if key not in self.maps:
            solids = [solid for item in local for solid in self._solids(item)]
            body = self.model.createIfcShapeRepresentation(self.body, "Body", "SweptSolid", solids)
            ifcopenshell.api.style.assign_representation_styles(
                self.model, shape_representation=body, styles=[self.styles[style]]
            )
            self.maps[key] = self.model.createIfcRepresentationMap(self._axis((0.0, 0.0, 0.0)), body)
        origin = self.model.createIfcCartesianTransformationOperator3D(
            None, None, self.model.createIfcCartesianPoint((0.0, 0.0, 0.0)), None, None
        )
        mapped = self.model.createIfcMappedItem(self.maps[key], origin)
        rep = self.model.createIfcShapeRepresentation(self.body, "Body", "MappedRepresentation", [mapped])
        ifcopenshell.api.geometry.assign_representation(self.model, product=product, representation=rep)

    def product(self, ifc_class: str, tag: str, name: str, description: str, **attributes: Any) -> Any:
        entity = self._root(ifc_class, tag, name, description, **attributes)
        # A placement of its own, at the origin until `shape` moves it (the API re-links
        # placements to containers, so products must not share one).
        entity.ObjectPlacement = self.model.createIfcLocalPlacement(None, self._axis((0.0, 0.0, 0.0)))
        if hasattr(entity, "Tag"):
            entity.Tag = tag
        return entity

    def pset(self, product: Any, name: str, properties: dict[str, Any]) -> None:
        pset = ifcopenshell.api.pset.add_pset(self.model, product=product, name=name)
        single = {k: v for k, v in properties.items() if not isinstance(v, Bounded)}
        ifcopenshell.api.pset.edit_pset(self.model, pset=pset, properties=single)
        bounded = [
            self.model.createIfcPropertyBoundedValue(
                k, None, self.model.create_entity(v.measure, v.high), self.model.create_entity(v.measure, v.low)
            )
            for k, v in properties.items()
            if isinstance(v, Bounded)
        ]
        if bounded:
            pset.HasProperties = (*pset.HasProperties, *bounded)


def build() -> ifcopenshell.file:
    """The pump station as an in-memory IFC4 model."""
    b = _Builder()
    model = b.model
    site = b.product("IfcSite", "SITE", "Site", "Pump station plot")
    building = b.product("IfcBuilding", "BUILDING", "Pump Station", "Pump station building")
    storey = b.product("IfcBuildingStorey", "STOREY-GF", "Ground Floor", "Ground floor", Elevation=0.0)
    room = b.product("IfcSpace", "SPACE-PUMPROOM", "Pump Room", "Pump room", LongName="Pump Room")
    b.shape(room, (box(0.0, 0.0, 0.0, ROOM_X, ROOM_Y, WALL_HEIGHT),), "Concrete")
    ifcopenshell.api.aggregate.assign_object(model, products=[site], relating_object=b.project)
    ifcopenshell.api.aggregate.assign_object(model, products=[building], relating_object=site)
    ifcopenshell.api.aggregate.assign_object(model, products=[storey], relating_object=building)
    ifcopenshell.api.aggregate.assign_object(model, products=[room], relating_object=storey)

    slab = b.product("IfcSlab", "SLAB-GF", "SLAB-GF", "Ground floor slab", PredefinedType="FLOOR")
    b.shape(slab, (box(-WALL_THICKNESS, -WALL_THICKNESS, -SLAB_THICKNESS, ROOM_X + 2 * WALL_THICKNESS,
                       ROOM_Y + 2 * WALL_THICKNESS, SLAB_THICKNESS),), "Concrete")  # fmt: skip
    walls = []
    for tag, (x, y, dx, dy) in WALLS.items():
        wall = b.product("IfcWall", tag, tag, f"{tag[-1]} wall of the pump room", PredefinedType="SOLIDWALL")
        b.shape(wall, (box(x, y, 0.0, dx, dy, WALL_HEIGHT),), "Concrete")
        walls.append(wall)
    _contain(model, [slab, *walls], storey)

    types = {}
    for key, (ifc_class, name, predefined, psets) in TYPES.items():
        element_type = b._root(ifc_class, f"TYPE:{key}", name, name, PredefinedType=predefined)
        if key in USER_DEFINED_TYPES:
            element_type.ElementType = USER_DEFINED_TYPES[key]
        for pset_name, properties in psets.items():
            b.pset(element_type, pset_name, properties)
        types[key] = element_type

    products: dict[str, Any] = {}
    for eq in EQUIPMENT:
        predefined = TYPES[eq.type_key][2]
        product = b.product(eq.ifc_class, eq.tag, eq.tag, eq.description, PredefinedType=predefined)
        if eq.type_key in USER_DEFINED_TYPES:
            product.ObjectType = USER_DEFINED_TYPES[eq.type_key]
        b.shape(product, eq.items, eq.style)
        ifcopenshell.api.type.assign_type(model, related_objects=[product], relating_type=types[eq.type_key])
        asset: dict[str, Any] = {
            "AssetTag": eq.tag,
            "Criticality": eq.criticality,
            "MaintenanceIntervalDays": eq.maintenance_days,
        }
        if eq.host:
            asset |= {"HostElement": eq.host, "MeasuredQuantity": eq.measures[0], "Unit": eq.measures[1]}
        b.pset(product, "TwinView_Asset", asset)
        products[eq.tag] = product
    _contain(model, [products[eq.tag] for eq in EQUIPMENT if not eq.host], room)
    for eq in (eq for eq in EQUIPMENT if eq.host):
        host = products[eq.host]
        ifcopenshell.api.nest.assign_object(model, related_objects=[products[eq.tag]], relating_object=host)

    _connect(b, products)
    _pin_identity(model, b.tagged)
    return model


def _contain(model: ifcopenshell.file, products: list[Any], structure: Any) -> None:
    # One call per product: with several, the API re-links their placements in set order,
    # which changes entity numbering from run to run.
    for product in products:
        ifcopenshell.api.spatial.assign_container(model, products=[product], relating_structure=structure)


def _connect(b: _Builder, products: dict[str, Any]) -> None:
    """Ports and port connections for the process loop, grouped in one distribution system."""
    model = b.model
    ports: dict[str, Any] = {}

    def port(tag: str, direction: str, peer: str) -> Any:
        key = f"{tag}:{direction}:{peer}"
        p = b._root("IfcDistributionPort", key, key, f"{direction.lower()} of {tag} ({peer})")
        p.FlowDirection = "SOURCE" if direction == "OUT" else "SINK"
        p.PredefinedType = "PIPE"
        p.SystemType = "DRAINAGE"
        ifcopenshell.api.system.assign_port(model, element=products[tag], port=p)
        ports[key] = p
        return p

    for upstream, downstream in FLOW:
        ifcopenshell.api.system.connect_port(
            model, port1=port(upstream, "OUT", downstream), port2=port(downstream, "IN", upstream), direction="SOURCE"
        )
    system = ifcopenshell.api.system.add_system(model, ifc_class="IfcDistributionSystem")
    b.identify(system, "SYSTEM:LOOP")
    system.Name = "Pump loop"
    system.PredefinedType = "DRAINAGE"
    loop = {t for pair in FLOW for t in pair}
    for tag in sorted(loop):  # one at a time, for the same reason as in _contain
        ifcopenshell.api.system.assign_system(model, products=[products[tag]], system=system)


def _pin_identity(model: ifcopenshell.file, tagged: set[str]) -> None:
    """Make every regeneration write the same bytes: the API's random GlobalIds (relationships,
    property sets) become ids derived from creation order, the entity lists it fills from sets
    (related objects, assigned units) are sorted by entity number, and the header is pinned."""
    for n, entity in enumerate(sorted(model.by_type("IfcRoot"), key=lambda e: e.id())):
        if entity.GlobalId not in tagged:
            entity.GlobalId = guid(f"auto:{n}")
    for rel in [*model.by_type("IfcRelationship"), *model.by_type("IfcUnitAssignment")]:
        for index, value in enumerate(rel):
            if isinstance(value, tuple) and value and isinstance(value[0], ifcopenshell.entity_instance):
                rel[index] = sorted(value, key=lambda e: e.id())
    name = model.header.file_name
    name.name = "pump_station.ifc"
    name.time_stamp = TIMESTAMP
    name.author = ("TwinView",)
    name.organization = ("TwinView contributors",)
    name.originating_system = AUTHORING_TOOL
    name.authorization = "Apache-2.0"


def tag_ids() -> dict[str, str]:
    return {tag: guid(tag) for tag in ALL_TAGS}


def write(out: Path) -> Path:
    """Write the model and `<stem>.tags.json` beside it; returns the tags file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    build().write(str(out))
    tags = out.with_name(f"{out.stem}.tags.json")
    tags.write_text(json.dumps(tag_ids(), indent=2) + "\n")
    return tags


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    tags = write(out)
    print(f"wrote {out} and {tags}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
