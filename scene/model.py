"""The canonical scene model: what every importer produces and every exporter consumes.

Conventions (fixed, so exporters never guess):
- right-handed, **Y-up, metres**; importers convert from their source's units and up axis;
- `Element.matrix` is the element's *world* transform (4x4, column vectors, row-major numpy);
  mesh vertices are in the element's local frame;
- meshes live in `Scene.meshes` and are shared by id, so repeated geometry (IFC mapped items,
  instanced glTF meshes) is stored once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# JSON-compatible property value: what property sets may hold.
PropertyValue = str | int | float | bool | None | list[Any]
PropertySets = dict[str, dict[str, PropertyValue]]
# The unit of a property, where the source says ("kW", "m3"): set name -> property name -> unit symbol.
PropertyUnits = dict[str, dict[str, str]]

IDENTITY = np.eye(4, dtype=np.float64)


@dataclass(slots=True)
class Material:
    """A PBR material (glTF metallic-roughness); colours are linear RGBA in 0..1."""

    name: str
    base_color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    metallic: float = 0.0
    roughness: float = 0.8
    double_sided: bool = False
    # PNG/JPEG bytes and mime type of the base colour texture, if any (uses Primitive.uvs).
    texture: bytes | None = None
    texture_mime: str | None = None


@dataclass(slots=True)
class Primitive:
    """One triangle list (or point list) drawn with one material."""

    positions: np.ndarray  # (n, 3) float32, local frame, metres
    indices: np.ndarray | None  # (m, 3) uint32 triangles; None for points
    material: int  # index into Scene.materials
    normals: np.ndarray | None = None  # (n, 3) float32, unit length
    colors: np.ndarray | None = None  # (n, 4) float32 linear RGBA 0..1 per vertex
    uvs: np.ndarray | None = None  # (n, 2) float32, glTF convention (v down)

    @property
    def is_points(self) -> bool:
        return self.indices is None

    @property
    def triangle_count(self) -> int:
        return 0 if self.indices is None else int(self.indices.shape[0])


@dataclass(slots=True)
class Mesh:
    """Geometry shared by one or more elements; `lods` holds coarser versions, finest first."""

    id: str
    primitives: list[Primitive]
    lods: list[list[Primitive]] = field(default_factory=list)

    @property
    def triangle_count(self) -> int:
        return sum(p.triangle_count for p in self.primitives)

    @property
    def point_count(self) -> int:
        return sum(len(p.positions) for p in self.primitives if p.is_points)

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        arrays = [p.positions for p in self.primitives if len(p.positions)]
        if not arrays:
            return None
        stacked = np.concatenate(arrays, axis=0)
        return stacked.min(axis=0), stacked.max(axis=0)


@dataclass(slots=True)
class Element:
    """One addressable thing in the twin: a wall, a pump, a storey, a scan, an assembly."""

    id: str  # stable twin id: IFC GlobalId, else derived deterministically from file + path
    name: str
    cls: str  # e.g. IfcPump, IfcBuildingStorey, StepPart, StepAssembly, Mesh, PointCloud, UsdXform
    parent: str | None = None
    matrix: np.ndarray = field(default_factory=lambda: IDENTITY.copy())  # world transform
    mesh: str | None = None  # key into Scene.meshes
    properties: PropertySets = field(default_factory=dict)
    source: int = 0  # index into Scene.inputs
    units: PropertyUnits = field(default_factory=dict)  # of `properties` that have one


@dataclass(slots=True)
class InputRecord:
    """Provenance of one source file."""

    path: str
    sha256: str
    format: str  # ifc, step, gltf, obj, stl, ply, off, 3mf, pointcloud, usd
    importer: str  # e.g. "ifcopenshell 0.8.4 (manifold)"
    source_units: str = "m"  # units of the source before conversion
    source_up_axis: str = "Y"


@dataclass
class Scene:
    """Elements in parent-before-child order, with shared meshes and materials."""

    elements: dict[str, Element] = field(default_factory=dict)
    meshes: dict[str, Mesh] = field(default_factory=dict)
    materials: list[Material] = field(default_factory=list)
    inputs: list[InputRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Seconds spent per import step (e.g. "parse", "tessellate"), reported by `twinview build`.
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, element: Element) -> Element:
        if element.id in self.elements:
            raise ValueError(f"duplicate element id {element.id!r}")
        if element.parent is not None and element.parent not in self.elements:
            raise ValueError(f"element {element.id!r} names unknown parent {element.parent!r}")
        self.elements[element.id] = element
        return element

    def add_material(self, material: Material) -> int:
        self.materials.append(material)
        return len(self.materials) - 1

    def children(self) -> dict[str | None, list[str]]:
        out: dict[str | None, list[str]] = {}
        for el in self.elements.values():
            out.setdefault(el.parent, []).append(el.id)
        return out

    def roots(self) -> list[str]:
        return [e.id for e in self.elements.values() if e.parent is None]

    def world_bounds(self, element_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Axis-aligned world bounds of one element's own geometry (not its children)."""
        el = self.elements[element_id]
        if el.mesh is None:
            return None
        local = self.meshes[el.mesh].local_bounds()
        if local is None:
            return None
        lo, hi = local
        corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        world = corners @ el.matrix.T
        return world[:, :3].min(axis=0), world[:, :3].max(axis=0)

    @property
    def triangle_count(self) -> int:
        return sum(self.meshes[e.mesh].triangle_count for e in self.elements.values() if e.mesh)


# Rotation taking a Z-up frame to the canonical Y-up frame: (x, y, z) -> (x, z, -y).
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
