"""STEP (AP203/AP214/AP242) via OpenCascade's XCAF reader: assembly tree, names, colours, placements.

Each free shape and assembly component becomes an element ("StepAssembly" or "StepPart"); parts that
are instanced several times share one mesh, keyed by their XCAF prototype label. OCCT converts every
STEP length unit to millimetres on transfer, so geometry and placements are scaled by 0.001; STEP is
Z-up by convention, so roots get the Z-up to Y-up rotation. Surface colours (per face, solid or
part) become materials; a face's own colour wins over its solid's, which wins over its part's.
A colour set on an assembly instance applies to everything below it that has no colour of its own
(face, solid, or a closer instance); such an instance gets its own copy of the part's mesh.

Multi-file assemblies name their part files inside the STEP text and OCCT opens them itself, so
those names are checked first: a part file that exists only outside the model's folder (or a URL) is
refused with ImportFailed.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.importers._common import (
    element_id,
    hex_color,
    new_scene,
    read_nonempty,
    require_geometry,
    timed,
    unique_id,
)
from scene.importers.normals import vertex_normals
from scene.model import Z_UP_TO_Y_UP, Element, Material, Mesh, Primitive, Scene

Rgba = tuple[float, float, float, float]

STEP_MAGIC = b"ISO-10303-21"
# First string argument of the entities that name external part files in multi-file assemblies.
_EXTERNAL_REFERENCE = re.compile(
    rb"(?:DOCUMENT_FILE|APPLIED_EXTERNAL_IDENTIFICATION_ASSIGNMENT|EXTERNAL_SOURCE\s*\(\s*IDENTIFIER)\s*\(\s*'((?:[^']|'')*)'"
)
MM_TO_M = 0.001  # OCCT's transfer unit (xstep.cascade.unit default) is the millimetre

# Chord deflection as a fraction of the part's bounding-box diagonal: 0.1 % keeps small fillets
# round without exploding the triangle count of large, simple parts.
LINEAR_DEFLECTION_RATIO = 0.001
ANGULAR_DEFLECTION = 0.5  # radians; caps the facet angle on tight curves regardless of size

DEFAULT_COLOR: Rgba = (0.8, 0.8, 0.8, 1.0)  # Material's default grey, for parts no one coloured

# Map the file's declared length unit (as OCCT spells it) to the short names InputRecord uses.
UNIT_NAMES = {"METRE": "m", "MILLIMETRE": "mm", "CENTIMETRE": "cm", "INCH": "in", "FOOT": "ft", "MICROMETRE": "um"}


def load(path: Path, options: ImportOptions) -> Scene:
    data = read_nonempty(path)
    if not data.lstrip()[: len(STEP_MAGIC)] == STEP_MAGIC:
        raise ImportFailed(str(path), "not a STEP file: it does not start with ISO-10303-21", "line 1")
    _check_external_references(path, data)
    timings: dict[str, float] = {}
    with timed(timings, "read"):
        reader = _StepReader(path)
    scene = new_scene(path, "step", reader.importer, reader.units, "Z")
    with timed(timings, "tessellate"):
        reader.build(scene)
    scene.timings.update(timings)
    return require_geometry(path, scene)


@functools.cache
def _silence_occt() -> None:
    """Detach OpenCascade's console printer. It writes parse diagnostics ("ERR StepFile : ...") to a buffered
    std::cout that is flushed only when the process exits, long after the import, where they read like a
    failure of whatever ran last; the importer reports what went wrong itself."""
    from OCP.Message import Message

    messenger = Message.DefaultMessenger_s()
    for printer in list(messenger.Printers()):
        messenger.RemovePrinter(printer)


class _StepReader:
    """Holds the XCAF document and tools while the element tree is walked."""

    def __init__(self, path: Path) -> None:
        import OCP
        from OCP.IFSelect import IFSelect_RetDone
        from OCP.OCP.collections import Sequence_TCollection_AsciiString
        from OCP.STEPCAFControl import STEPCAFControl_Reader
        from OCP.TCollection import TCollection_ExtendedString
        from OCP.TDocStd import TDocStd_Document
        from OCP.XCAFApp import XCAFApp_Application
        from OCP.XCAFDoc import XCAFDoc_DocumentTool

        _silence_occt()
        self.path = path
        self.importer = f"OCP {getattr(OCP, '__version__', '?')} (OpenCascade XCAF)"
        self.doc = TDocStd_Document(TCollection_ExtendedString("XmlOcaf"))
        XCAFApp_Application.GetApplication_s().InitDocument(self.doc)
        reader = STEPCAFControl_Reader()
        reader.SetColorMode(True)
        reader.SetNameMode(True)
        status = reader.ReadFile(str(path))
        if status != IFSelect_RetDone:
            raise ImportFailed(str(path), f"STEP reader could not parse the file ({status.name})")
        lengths, angles, solids = (Sequence_TCollection_AsciiString() for _ in range(3))
        reader.ChangeReader().FileUnits(lengths, angles, solids)
        declared = lengths.Value(1).ToCString() if lengths.Length() else "MILLIMETRE"
        self.units = UNIT_NAMES.get(declared.upper(), declared.lower())
        if not reader.Transfer(self.doc):
            raise ImportFailed(str(path), "STEP transfer failed: no shapes could be built from the file")
        self.shapes = XCAFDoc_DocumentTool.ShapeTool_s(self.doc.Main())
        self.meshes: dict[str, str | None] = {}
        self.materials: dict[Rgba, int] = {}

    def build(self, scene: Scene) -> None:
        from OCP.OCP.collections import Sequence_TDF_Label

        self.scene = scene
        free = Sequence_TDF_Label()
        self.shapes.GetFreeShapes(free)
        for i in range(1, free.Length() + 1):
            label = free.Value(i)
            self._element(label, label, None, "", Z_UP_TO_Y_UP.copy(), None)

    def _element(
        self, instance: Any, label: Any, parent: str | None, parent_path: str, matrix: np.ndarray, color: Rgba | None
    ) -> None:
        """Add `label` (an assembly or part prototype) as seen through `instance` (its component label).

        `color` is the nearest instance colour above; an instance's own colour replaces it.
        """
        from OCP.OCP.collections import Sequence_TDF_Label
        from OCP.TDF import TDF_Label

        name = _name(instance)
        if not name or name.startswith("=>"):  # OCCT names unnamed instances after their label entry
            name = _name(label) or _entry(label)
        node_path = f"{parent_path}/{name}"
        el_id = unique_id(self.scene, element_id(self.path, node_path))
        if instance is not label:
            color = _color(instance) or color
        if self.shapes.IsAssembly_s(label):
            self.scene.add(Element(el_id, name, "StepAssembly", parent=parent, matrix=matrix))
            components = Sequence_TDF_Label()
            self.shapes.GetComponents_s(label, components)
            for i in range(1, components.Length() + 1):
                component = components.Value(i)
                referred = TDF_Label()
                self.shapes.GetReferredShape_s(component, referred)
                local = _matrix(self.shapes.GetLocation_s(component))
                self._element(component, referred, el_id, node_path, matrix @ local, color)
            return
        mesh = self._mesh(label, color)
        self.scene.add(Element(el_id, name, "StepPart", parent=parent, matrix=matrix, mesh=mesh))

    def _mesh(self, label: Any, instance_color: Rgba | None) -> str | None:
        """One mesh per part, and one more per distinct instance colour it is shown in."""
        key = _entry(label) + (f"@{hex_color(instance_color)}" if instance_color else "")
        if key not in self.meshes:
            self.meshes[key] = self._tessellate(label, key, instance_color)
        return self.meshes[key]

    def _tessellate(self, label: Any, key: str, instance_color: Rgba | None) -> str | None:
        from OCP.Bnd import Bnd_Box
        from OCP.BRepBndLib import BRepBndLib
        from OCP.BRepMesh import BRepMesh_IncrementalMesh

        # A prototype's own location (rare) is baked into its vertices; instance placements are matrices.
        shape = self.shapes.GetShape_s(label)
        box = Bnd_Box()
        BRepBndLib.Add_s(shape, box)
        if box.IsVoid():
            return None
        diagonal = np.sqrt(box.SquareExtent())
        deflection = max(diagonal * LINEAR_DEFLECTION_RATIO, 1e-6)
        # In parallel, on OCP's thread pool: readers are forked by scene.reader_host, which never meshed, so
        # the pool is never one inherited without its threads (meshing on such a pool would wait forever).
        BRepMesh_IncrementalMesh(shape, deflection, False, ANGULAR_DEFLECTION, True)
        face_colors = self._face_colors(label)
        # Face and solid colours win; then the instance's colour; then the part's own.
        part_color = instance_color or _color(label) or DEFAULT_COLOR
        groups: dict[Rgba, list[tuple[np.ndarray, np.ndarray]]] = {}
        for face in _faces(shape):
            triangles = _face_triangles(face)
            if triangles is not None:
                groups.setdefault(face_colors.get(hash(face), part_color), []).append(triangles)
        primitives = [self._primitive(color, parts) for color, parts in groups.items()]
        if not primitives:
            return None
        mesh_id = unique_id(self.scene, element_id(self.path, f"shape{key}"))
        self.scene.meshes[mesh_id] = Mesh(mesh_id, primitives)
        return mesh_id

    def _face_colors(self, label: Any) -> dict[int, Rgba]:
        """Colours authored on sub-shapes, by face hash; faces override the solids and shells they sit in."""
        from OCP.OCP.collections import Sequence_TDF_Label
        from OCP.TopAbs import TopAbs_FACE

        subs = Sequence_TDF_Label()
        self.shapes.GetSubShapes_s(label, subs)
        coloured = []
        for i in range(1, subs.Length() + 1):
            color = _color(subs.Value(i))
            if color is not None:
                coloured.append((self.shapes.GetShape_s(subs.Value(i)), color))
        coloured.sort(key=lambda item: item[0].ShapeType() == TopAbs_FACE)  # faces last, so they win
        out: dict[int, Rgba] = {}
        for sub, color in coloured:
            for face in _faces(sub):
                out[hash(face)] = color
        return out

    def _primitive(self, color: Rgba, parts: list[tuple[np.ndarray, np.ndarray]]) -> Primitive:
        positions, indices, offset = [], [], 0
        for points, triangles in parts:
            positions.append(points)
            indices.append(triangles + offset)
            offset += len(points)
        pos = np.concatenate(positions).astype(np.float32)
        idx = np.concatenate(indices).astype(np.uint32)
        normals = np.concatenate([vertex_normals(p.astype(np.float32), t) for p, t in parts])
        if color not in self.materials:
            self.materials[color] = self.scene.add_material(Material(name=hex_color(color), base_color=color))
        return Primitive(positions=pos, indices=idx, material=self.materials[color], normals=normals)


def _check_external_references(path: Path, data: bytes) -> None:
    """Refuse external part files OCCT would read from outside the model's folder (or a URL).

    Multi-file STEP assemblies name their part files in DOCUMENT_FILE / EXTERNAL_SOURCE entities and
    STEPCAFControl_Reader opens them: beside the model first, else as written (absolute, or relative
    to the working directory). References that exist only outside the folder would be read, so they
    are refused; ones that exist nowhere are harmless (OCCT skips them).
    """
    folder = path.resolve().parent
    for match in _EXTERNAL_REFERENCE.finditer(data):
        name = match.group(1).decode("latin-1").replace("''", "'")
        line_number = data.count(b"\n", 0, match.start()) + 1
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+://", name):
            raise ImportFailed(str(path), "external part file is a URL, which TwinView never fetches", name)
        for candidate in (folder / name, Path(name)):
            target = candidate.resolve()
            if target.is_file() and not target.is_relative_to(folder):
                raise ImportFailed(
                    str(path), f"external part file {name} lies outside the model's folder", f"line {line_number}"
                )


def _faces(shape: Any) -> list[Any]:
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopoDS import TopoDS

    out = []
    explorer = TopExp_Explorer(shape, TopAbs_FACE)
    while explorer.More():
        out.append(TopoDS.Face(explorer.Current()))
        explorer.Next()
    return out


def _face_triangles(face: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(points in metres, 0-based triangles) of one meshed face, wound to its outward orientation."""
    from OCP.BRep import BRep_Tool
    from OCP.TopAbs import TopAbs_REVERSED
    from OCP.TopLoc import TopLoc_Location

    location = TopLoc_Location()
    tri = BRep_Tool.Triangulation_s(face, location)
    if tri is None or tri.NbTriangles() == 0:
        return None
    points = np.array([tri.Node(i).Coord() for i in range(1, tri.NbNodes() + 1)], dtype=np.float64)
    triangles = np.array([tri.Triangle(i).Get() for i in range(1, tri.NbTriangles() + 1)], dtype=np.int64) - 1
    if not location.IsIdentity():
        m = _matrix(location, scale=1.0)
        points = points @ m[:3, :3].T + m[:3, 3]
    if face.Orientation() == TopAbs_REVERSED:
        triangles = triangles[:, [0, 2, 1]]
    return points * MM_TO_M, triangles


def _matrix(location: Any, scale: float = MM_TO_M) -> np.ndarray:
    """4x4 of an OCCT location, translation converted to metres (unless `scale` says otherwise)."""
    trsf = location.Transformation()
    out = np.eye(4)
    for r in range(3):
        for c in range(4):
            out[r, c] = trsf.Value(r + 1, c + 1)
    out[:3, 3] *= scale
    return out


def _name(label: Any) -> str:
    from OCP.TDataStd import TDataStd_Name

    # Probe with IsAttribute first: FindAttribute on a label without a name crashes OCP's bindings.
    if not label.IsAttribute(TDataStd_Name.GetID_s()):
        return ""
    attribute = TDataStd_Name()
    label.FindAttribute(TDataStd_Name.GetID_s(), attribute)
    return attribute.Get().ToExtString()


def _entry(label: Any) -> str:
    from OCP.TCollection import TCollection_AsciiString
    from OCP.TDF import TDF_Tool

    entry = TCollection_AsciiString()
    TDF_Tool.Entry_s(label, entry)
    return entry.ToCString()


def _color(label: Any) -> Rgba | None:
    from OCP.Quantity import Quantity_ColorRGBA
    from OCP.XCAFDoc import XCAFDoc_ColorTool, XCAFDoc_ColorType

    rgba = Quantity_ColorRGBA()
    for kind in (XCAFDoc_ColorType.XCAFDoc_ColorSurf, XCAFDoc_ColorType.XCAFDoc_ColorGen):
        if XCAFDoc_ColorTool.GetColor_s(label, kind, rgba):
            rgb = rgba.GetRGB()  # OCCT stores linear RGB (it decodes STEP's sRGB values on read)
            return (rgb.Red(), rgb.Green(), rgb.Blue(), rgba.Alpha())
    return None
