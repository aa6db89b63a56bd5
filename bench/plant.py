"""Generated IFC4 process plants of any size, for build and viewer benchmarks at plant scale.

    .venv/bin/python -m bench.plant 20000 -o /tmp/plant-20k.ifc

A plant of N elements is laid out in areas (`IfcBuildingStorey`, AREA_ELEMENTS each) of one building on one
site. Per 100 elements (`MIX`): straight pipes (extruded hollow circles, each its own length), swept pipes
(`IfcSweptDiskSolid` along an L-shaped polyline, which the manifold kernel leaves to opencascade), rack
members (I-section beams and columns), gratings (thin plates), and mapped equipment: valves, pumps, tanks
and instruments whose geometry is a type's `RepresentationMap`, drawn by each occurrence through an
`IfcMappedItem` (a few sizes per kind, so a few hundred occurrences share each map). Every element has two
property sets with four properties between them, and a name that is its plant tag.

The file is byte-for-byte reproducible: GlobalIds derive from the plant's size and each entity's role, the
header timestamp is pinned. Entities are made with `ifcopenshell.file.create_entity` (the `api` module is
much slower per element): ~0.8 CPU-ms per element, 100 000 elements in ~1 GB of memory.
"""

from __future__ import annotations

import argparse
import math
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ifcopenshell
import ifcopenshell.guid

TIMESTAMP = "2026-01-01T00:00:00"  # pinned so regeneration gives identical bytes
AUTHORING_TOOL = "TwinView bench.plant"
# Elements per area (one IfcBuildingStorey each), laid out on a grid of GRID_STEP_M.
AREA_ELEMENTS = 2000
GRID_STEP_M = 3.0
AREA_SPACING_M = 200.0
# The share of each kind per 100 elements; the mapped equipment is 30 %.
MIX: tuple[tuple[str, int], ...] = (
    ("pipe", 35),
    ("swept_pipe", 10),
    ("rack", 15),
    ("grating", 10),
    ("valve", 15),
    ("instrument", 8),
    ("pump", 4),
    ("tank", 3),
)
KINDS = [kind for kind, share in MIX for _ in range(share)]
# Mapped equipment: IFC occurrence and type classes, and sizes (one type each) scaling a unit shape.
EQUIPMENT = {
    "valve": ("IfcValve", "IfcValveType", "ISOLATING", (0.1, 0.15, 0.2, 0.3)),
    "instrument": ("IfcFlowInstrument", "IfcFlowInstrumentType", "PRESSUREGAUGE", (0.08, 0.12)),
    "pump": ("IfcPump", "IfcPumpType", "ENDSUCTION", (0.6, 0.9, 1.2)),
    "tank": ("IfcTank", "IfcTankType", "VESSEL", (1.5, 2.5)),
}
PIPE_RADII_M = (0.05, 0.08, 0.1, 0.15)
SERVICES = ("cooling water", "steam", "condensate", "instrument air", "process", "firewater")


def guid(size: int, role: str) -> str:
    return ifcopenshell.guid.compress(uuid.uuid5(uuid.NAMESPACE_URL, f"twinview:plant:{size}:{role}").hex)


@dataclass
class _Plant:
    """The shared entities every element refers to, and the factory that makes the rest."""

    f: Any
    size: int
    body: Any
    origin: Any
    z: Any
    x: Any
    identity2d: Any
    identity3d: Any

    def new(self, cls: str, *args: Any, **kwargs: Any) -> Any:
        return self.f.create_entity(cls, *args, **kwargs)

    def point(self, x: float, y: float, z: float) -> Any:
        return self.new("IfcCartesianPoint", (float(x), float(y), float(z)))

    def placement(self, relative_to: Any, x: float, y: float, z: float, axis: Any = None, ref: Any = None) -> Any:
        position = self.new("IfcAxis2Placement3D", self.point(x, y, z), axis, ref)
        return self.new("IfcLocalPlacement", relative_to, position)

    def direction(self, x: float, y: float, z: float) -> Any:
        return self.new("IfcDirection", (float(x), float(y), float(z)))

    def extrusion(self, profile: Any, depth: float, position: Any = None, direction: Any = None) -> Any:
        return self.new("IfcExtrudedAreaSolid", profile, position or self.identity3d, direction or self.z, depth)

    def shape(self, kind: str, items: list[Any]) -> Any:
        return self.new("IfcShapeRepresentation", self.body, "Body", kind, items)


def _header(f: Any, size: int) -> None:
    name = f.header.file_name
    name.name = f"plant-{size}.ifc"
    name.time_stamp = TIMESTAMP
    name.originating_system = AUTHORING_TOOL
    name.preprocessor_version = AUTHORING_TOOL


def _base(f: Any, size: int) -> tuple[_Plant, Any, Any]:
    """Project, units, contexts, site and building; returns the plant and the building with its placement."""
    new = f.create_entity
    origin = new("IfcCartesianPoint", (0.0, 0.0, 0.0))
    z = new("IfcDirection", (0.0, 0.0, 1.0))
    x = new("IfcDirection", (1.0, 0.0, 0.0))
    identity3d = new("IfcAxis2Placement3D", origin, None, None)
    identity2d = new("IfcAxis2Placement2D", new("IfcCartesianPoint", (0.0, 0.0)), None)
    model = new("IfcGeometricRepresentationContext", None, "Model", 3, 1e-5, identity3d, None)
    body = new(
        "IfcGeometricRepresentationSubContext", "Body", "Model", None, None, None, None, model, None, "MODEL_VIEW"
    )
    units = new(
        "IfcUnitAssignment",
        [
            new("IfcSIUnit", None, "LENGTHUNIT", None, "METRE"),
            new("IfcSIUnit", None, "AREAUNIT", None, "SQUARE_METRE"),
            new("IfcSIUnit", None, "VOLUMEUNIT", None, "CUBIC_METRE"),
            new("IfcSIUnit", None, "PLANEANGLEUNIT", None, "RADIAN"),
            new("IfcSIUnit", None, "PRESSUREUNIT", None, "PASCAL"),
        ],
    )
    project = new("IfcProject", guid(size, "project"), None, f"Plant {size}", None, None, None, None, [model], units)
    plant = _Plant(f, size, body, origin, z, x, identity2d, identity3d)
    site_placement = new("IfcLocalPlacement", None, identity3d)
    site = new("IfcSite", guid(size, "site"), None, "Plant site", None, None, site_placement)
    building_placement = new("IfcLocalPlacement", site_placement, identity3d)
    building = new("IfcBuilding", guid(size, "building"), None, "Process unit", None, None, building_placement)
    new("IfcRelAggregates", guid(size, "project-site"), None, None, None, project, [site])
    new("IfcRelAggregates", guid(size, "site-building"), None, None, None, site, [building])
    return plant, building, building_placement


def _equipment_types(plant: _Plant) -> dict[str, list[tuple[Any, Any]]]:
    """Per equipment kind, its types (one per size), each with the representation map occurrences draw."""
    out: dict[str, list[tuple[Any, Any]]] = {}
    for kind, (_, type_cls, predefined, sizes) in EQUIPMENT.items():
        out[kind] = []
        for scale in sizes:
            items = _EQUIPMENT_SHAPES[kind](plant, scale)
            shape_map = plant.new("IfcRepresentationMap", plant.identity3d, plant.shape("SweptSolid", items))
            name = f"{kind.title()} {scale * 1000:g}"
            type_guid = guid(plant.size, f"type:{kind}:{scale}")
            element_type = plant.new(
                type_cls, type_guid, None, name, None, None, None, [shape_map], None, None, predefined
            )
            out[kind].append((element_type, shape_map))
    return out


def _cylinder(
    plant: _Plant, radius: float, height: float, x: float = 0, y: float = 0, z: float = 0, axis: Any = None
) -> Any:
    profile = plant.new("IfcCircleProfileDef", "AREA", None, plant.identity2d, radius)
    position = plant.new("IfcAxis2Placement3D", plant.point(x, y, z), axis, None)
    return plant.extrusion(profile, height, position)


def _box(plant: _Plant, dx: float, dy: float, dz: float, x: float = 0, y: float = 0) -> Any:
    profile = plant.new("IfcRectangleProfileDef", "AREA", None, plant.identity2d, dx, dy)
    return plant.extrusion(profile, dz, plant.new("IfcAxis2Placement3D", plant.point(x, y, 0), None, None))


def _valve(plant: _Plant, s: float) -> list[Any]:
    along = plant.x
    return [
        _cylinder(plant, s * 0.5, s * 2, -s, 0, 0, along),
        _cylinder(plant, s * 0.8, s * 0.15, -s, 0, 0, along),
        _cylinder(plant, s * 0.8, s * 0.15, s * 0.85, 0, 0, along),
        _cylinder(plant, s * 0.12, s * 1.2),
        _cylinder(plant, s * 0.6, s * 0.08, 0, 0, s * 1.2),
    ]


def _instrument(plant: _Plant, s: float) -> list[Any]:
    face = plant.direction(0, 1, 0)
    return [_cylinder(plant, s * 0.15, s * 2), _cylinder(plant, s * 0.6, s * 0.4, 0, -s * 0.2, s * 2, face)]


def _pump(plant: _Plant, s: float) -> list[Any]:
    return [
        _box(plant, s * 2.2, s, s * 0.2),
        _cylinder(plant, s * 0.35, s * 1.1, -s * 0.9, 0, s * 0.55, plant.x),
        _cylinder(plant, s * 0.45, s * 0.35, s * 0.3, 0, s * 0.55, plant.x),
        _cylinder(plant, s * 0.12, s * 0.6, s * 0.5, 0, s * 0.55),
    ]


def _tank(plant: _Plant, s: float) -> list[Any]:
    legs = [_box(plant, 0.2, 0.2, s * 0.3, s * dx, s * dy) for dx in (0.7, -0.7) for dy in (0.7, -0.7)]
    return [_cylinder(plant, s, s * 3, 0, 0, s * 0.3), *legs]


_EQUIPMENT_SHAPES: dict[str, Callable[[_Plant, float], list[Any]]] = {
    "valve": _valve,
    "instrument": _instrument,
    "pump": _pump,
    "tank": _tank,
}
TAG_PREFIXES = {"pipe": "L", "swept_pipe": "LS", "rack": "ST", "grating": "GR", "valve": "V", "instrument": "PI",
                "pump": "P", "tank": "T"}  # fmt: skip
AREAS_PER_ROW = 10


def _unit_random(i: int) -> float:
    """A reproducible value in [0, 1) for element `i` (Knuth's multiplicative hash)."""
    return ((i * 2654435761) % 2**32) / 2**32


class _Elements:
    """Makes the elements one by one; `finish` relates them to their areas and types."""

    def __init__(self, plant: _Plant, building: Any, building_placement: Any) -> None:
        self.plant = plant
        self.building, self.building_placement = building, building_placement
        new = plant.new
        self.types = _equipment_types(plant)
        self.occurrences: dict[int, list[Any]] = {}  # id of a type -> its occurrences
        self.pipe_profiles = [
            new("IfcCircleHollowProfileDef", "AREA", None, plant.identity2d, r, r * 0.1) for r in PIPE_RADII_M
        ]
        self.beam = new("IfcIShapeProfileDef", "AREA", None, plant.identity2d, 0.2, 0.3, 0.01, 0.015, None)
        self.grating_profiles = [
            new("IfcRectangleProfileDef", "AREA", None, plant.identity2d, w, d) for w, d in ((1, 3), (2, 3), (1.5, 6))
        ]
        self.mapping = new("IfcCartesianTransformationOperator3D", None, None, plant.origin, None, None)
        self.y = plant.direction(0, 1, 0)
        self.areas: list[tuple[Any, Any, list[Any]]] = []  # storey, its placement, what it contains

    def area(self, index: int) -> tuple[Any, Any, list[Any]]:
        while len(self.areas) <= index:
            k = len(self.areas)
            x, y = (k % AREAS_PER_ROW) * AREA_SPACING_M, (k // AREAS_PER_ROW) * AREA_SPACING_M
            placement = self.plant.placement(self.building_placement, x, y, 0.0)
            storey = self.plant.new(
                "IfcBuildingStorey", guid(self.plant.size, f"area:{k}"), None, f"Area {k + 1:02d}", None, None,
                placement, None, None, "ELEMENT", 0.0,
            )  # fmt: skip
            self.areas.append((storey, placement, []))
        return self.areas[index]

    def add(self, i: int) -> None:
        plant, new = self.plant, self.plant.new
        kind = KINDS[(i * 37) % len(KINDS)]  # 37 is prime to 100: the kinds interleave
        r = _unit_random(i)
        _, area_placement, contained = self.area(i // AREA_ELEMENTS)
        cols = math.ceil(math.sqrt(AREA_ELEMENTS))
        j = i % AREA_ELEMENTS
        x, y = (j % cols) * GRID_STEP_M, (j // cols) * GRID_STEP_M
        tag = f"{TAG_PREFIXES[kind]}-{i:06d}"
        uid = guid(plant.size, f"element:{i}")
        if kind == "pipe":
            profile = self.pipe_profiles[i % len(self.pipe_profiles)]
            along = plant.x if i % 2 else self.y
            placement = plant.placement(area_placement, x, y, 3.0 + (i % 4) * 1.5, along, plant.z)
            shape = plant.shape("SweptSolid", [plant.extrusion(profile, round(2.0 + 4.0 * r, 3))])
            element = new(
                "IfcPipeSegment", uid, None, tag, None, None, placement, self._product(shape), tag, "RIGIDSEGMENT"
            )
        elif kind == "swept_pipe":
            radius = PIPE_RADII_M[i % len(PIPE_RADII_M)]
            run, rise = round(1.5 + 3 * r, 3), round(1.0 + 2 * _unit_random(i + 1), 3)
            path = new("IfcPolyline", [plant.origin, plant.point(run, 0, 0), plant.point(run, 0, rise)])
            solid = new("IfcSweptDiskSolid", path, radius, radius * 0.9, None, None)
            placement = plant.placement(area_placement, x, y, 2.0)
            shape = plant.shape("AdvancedSweptSolid", [solid])
            element = new("IfcPipeSegment", uid, None, tag, None, None, placement, self._product(shape), tag, "SPOOL")
        elif kind == "rack":
            column = i % 3 == 0
            placement = plant.placement(
                area_placement, x, y, 0.0 if column else 6.0, None if column else plant.x, None if column else plant.z
            )
            shape = plant.shape("SweptSolid", [plant.extrusion(self.beam, 6.0 if column else GRID_STEP_M)])
            element = new(
                "IfcMember",
                uid,
                None,
                tag,
                None,
                None,
                placement,
                self._product(shape),
                tag,
                "POST" if column else "STRINGER",
            )
        elif kind == "grating":
            placement = plant.placement(area_placement, x, y, 4.5)
            shape = plant.shape("SweptSolid", [plant.extrusion(self.grating_profiles[i % 3], 0.03)])
            element = new("IfcPlate", uid, None, tag, None, None, placement, self._product(shape), tag, "SHEET")
        else:
            cls, _, predefined, _ = EQUIPMENT[kind]
            element_type, shape_map = self.types[kind][i % len(self.types[kind])]
            placement = plant.placement(area_placement, x, y, 0.5 if kind in ("valve", "instrument") else 0.0)
            shape = plant.shape("MappedRepresentation", [new("IfcMappedItem", shape_map, self.mapping)])
            element = new(cls, uid, None, tag, None, None, placement, self._product(shape), tag, predefined)
            self.occurrences.setdefault(element_type.id(), []).append(element)
        contained.append(element)
        self._properties(i, element, tag, kind, r)

    def _product(self, shape: Any) -> Any:
        return self.plant.new("IfcProductDefinitionShape", None, None, [shape])

    def _properties(self, i: int, element: Any, tag: str, kind: str, r: float) -> None:
        plant, new = self.plant, self.plant.new
        size = PIPE_RADII_M[i % len(PIPE_RADII_M)] * 2
        values = (
            ("TwinView_Plant", (("Tag", "IfcIdentifier", tag), ("Service", "IfcLabel", SERVICES[i % len(SERVICES)]))),
            (
                "TwinView_Design",
                (
                    ("NominalSize", "IfcPositiveLengthMeasure", size),
                    ("DesignPressure", "IfcPressureMeasure", round(6e5 + 1e6 * r, 1)),
                    ("Kind", "IfcLabel", kind),
                ),
            ),
        )
        for n, (name, props) in enumerate(values):
            singles = [new("IfcPropertySingleValue", key, None, new(t, v), None) for key, t, v in props]
            pset = new("IfcPropertySet", guid(plant.size, f"pset:{i}:{n}"), None, name, None, singles)
            new("IfcRelDefinesByProperties", guid(plant.size, f"props:{i}:{n}"), None, None, None, [element], pset)

    def finish(self) -> None:
        plant, new = self.plant, self.plant.new
        storeys = [storey for storey, _, _ in self.areas]
        new("IfcRelAggregates", guid(plant.size, "building-areas"), None, None, None, self.building, storeys)
        for k, (storey, _, contained) in enumerate(self.areas):
            new(
                "IfcRelContainedInSpatialStructure",
                guid(plant.size, f"contains:{k}"),
                None,
                None,
                None,
                contained,
                storey,
            )
        for kind_types in self.types.values():
            for element_type, _ in kind_types:
                related = self.occurrences.get(element_type.id())
                if related:
                    uid = guid(plant.size, f"typed:{element_type.GlobalId}")
                    new("IfcRelDefinesByType", uid, None, None, None, related, element_type)


def build(size: int) -> Any:
    """An IFC4 plant of `size` elements (products with geometry; the spatial structure comes on top)."""
    if size < 1:
        raise ValueError(f"a plant needs at least one element, not {size}")
    f = ifcopenshell.file(schema="IFC4")
    _header(f, size)
    plant, building, building_placement = _base(f, size)
    elements = _Elements(plant, building, building_placement)
    for i in range(size):
        elements.add(i)
    elements.finish()
    return f


def expected_counts(size: int) -> dict[str, int]:
    """How many elements of each kind a plant of `size` holds."""
    counts: dict[str, int] = {}
    for i in range(size):
        kind = KINDS[(i * 37) % len(KINDS)]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def write(size: int, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    build(size).write(str(out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("elements", type=int, help="how many elements (products with geometry)")
    ap.add_argument("-o", "--out", type=Path, help="output file (default plant-<elements>.ifc)")
    args = ap.parse_args(argv)
    out = write(args.elements, args.out or Path(f"plant-{args.elements}.ifc"))
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
