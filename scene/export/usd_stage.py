"""The canonical USD stage (`scene.usdc`): the source of truth for content.

Layout:
- stage metadata metersPerUnit 1, upAxis Y, defaultPrim World; provenance in customLayerData:
  `twinview:version` and `twinview:inputs` = {"0": {path, sha256, format, importer, source_units,
  source_up_axis}, ...} (VtDictionary holds no lists of dictionaries, hence the index keys);
- /World/Looks/<material>: UsdPreviewSurface materials (+ UsdUVTexture for textures, written
  beside the stage in `textures/`);
- one Xform per element, nested like Element.parent, named after Element.name (sanitised, unique
  among siblings; ids contain `$`, which USD names cannot), with its local transform and
  attributes `twin:id`, `twin:name`, `twin:class`;
- properties as typed custom attributes `twin:props:<Pset>:<Name>` (what usdview shows in its
  attribute table). Where sanitising changed a pset or property name, the exact names are kept
  in the attribute's displayGroup and displayName (only there: two metadata edits per attribute
  would double the stage's write time), so `read_properties` round-trips them. None is an
  attribute without a value; lists of strings or numbers are string[]/double[]; other lists are
  JSON text flagged in customData {"twin": {"json": true}} (key path "twin:json"; customData keys must be
  identifiers); a property with a unit (`Element.units`) has it there too, {"twin": {"unit": "kW"}}
  (`read_units`);
- geometry under the element's `Geometry` child: UsdGeom.Mesh per triangle primitive (normals,
  primvars:displayColor/displayOpacity for vertex colours, primvars:st with v flipped to USD's
  up convention) or UsdGeom.Points for point primitives, with its material bound. A mesh used by
  several elements is written once under the abstract `/World/_Prototypes` and referenced by
  instanceable `Geometry` prims.

Speed: everything is authored with the Sdf API inside Sdf.ChangeBlocks, arrays go in through
Vt.*.FromNumpy, so per element there are only a handful of spec creations. `StageWriter` lets the
build author the element prims and their properties (most of the work) while an importer is
still tessellating.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TypeVar

import numpy as np
from pxr import Gf, Sdf, Tf, Vt

from scene.errors import ExportFailed
from scene.export.hierarchy import local_matrices
from scene.model import Element, Material, Mesh, Primitive, PropertySets, PropertyUnits, PropertyValue, Scene

WORLD = "/World"
LOOKS = "/World/Looks"
PROTOTYPES = "/World/_Prototypes"
T = TypeVar("T")
GEOMETRY = "Geometry"  # reserved child name for an element's own geometry
TEXTURE_DIR = "textures"
PROPS_NAMESPACE = "twin:props"
# A property attribute's customData: {"twin": {"json": true, "unit": "kW"}}, read by these key paths.
CUSTOM_DATA = "twin"
JSON_FLAG = "twin:json"  # the value is JSON text
UNIT_KEY = "twin:unit"  # the property's unit symbol
# Elements authored per Sdf.ChangeBlock. A block keeps a change entry for every spec made in it until it closes:
# a plant in one block nearly doubled the layer's memory (20 000 prims of 12 attributes: +142 MB in one block,
# +83 MB in blocks of 1 000), at the same speed.
CHANGE_BLOCK_ELEMENTS = 1000
# Elements per part layer of a larger stage (`StageWriter`): ~10 MB of layer per part on a plant, ~30 MB more
# while it is saved.
PART_ELEMENTS = 2000
PARTS_SUFFIX = ".parts"  # scene.usdc's parts are in scene.parts/
# Rendered size of a scan point; scans are typically sampled at a few millimetres to centimetres.
POINT_WIDTH_M = 0.01


def twinview_version() -> str:
    try:
        return metadata.version("twinview")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class StageWriter:
    """Writes the stage in two steps, so that the element tree can be authored while the
    importer is still making the geometry: `add_elements` (prims, twin attributes, properties),
    then `write` (materials, transforms, geometry, provenance, the file). A `write` whose scene
    does not hold exactly the elements added (id, name, class, parent, in order) starts over.

    A stage of more than `part_elements` elements is written in parts, so that memory holds one part's
    layer at a time, never the whole stage (an Sdf layer costs ~5 KB per element prim and its properties,
    a copy of every mesh, and as much again while it is saved): the root layer (`path`) holds the stage
    metadata, provenance, materials and prototypes, and its sublayers in `parts_dir(path)` the element
    prims of `part_elements` elements each (`elements-NNNN.usdc`, written as the tree arrives) and their
    transforms and geometry (`geometry-NNNN.usdc`, written from the scene). Each part is saved and let go
    as soon as it is authored. A smaller stage is one layer, as before.
    """

    def __init__(self, path: Path, part_elements: int = PART_ELEMENTS) -> None:
        if part_elements < 1:
            raise ValueError(f"part_elements must be at least 1, not {part_elements}")
        self.path = Path(path)
        self.part_elements = part_elements
        self._root: Sdf.Layer | None = None
        self._added: list[tuple[str, str, str, str | None]] = []
        self._paths: dict[str, str] = {}  # element id -> prim path
        self._parts: list[str] = []  # the element parts written, as sublayer paths

    def add_elements(self, elements: Iterable[Element]) -> None:
        """Author the prims of `elements` (parents before children) in a fresh stage."""
        elements = list(elements)
        shutil.rmtree(parts_dir(self.path), ignore_errors=True)  # parts of an earlier start
        # Anonymous then Export: CreateNew refuses a path whose layer is already open in this process.
        root = Sdf.Layer.CreateAnonymous(self.path.name)
        root.defaultPrim = "World"
        root.pseudoRoot.SetInfo("metersPerUnit", 1.0)
        root.pseudoRoot.SetInfo("upAxis", "Y")
        _prim(root, WORLD, "Xform")
        paths: dict[str, str] = {}
        taken: dict[str, set[str]] = {}
        in_parts = len(elements) > self.part_elements
        parts: list[str] = []
        for index, part in enumerate(_runs(elements, self.part_elements)):
            layer = Sdf.Layer.CreateAnonymous(self.path.name) if in_parts else root
            for block in _runs(part, CHANGE_BLOCK_ELEMENTS):
                with Sdf.ChangeBlock():
                    for el in block:
                        parent = paths[el.parent] if el.parent is not None else WORLD
                        siblings = taken.setdefault(parent, {GEOMETRY, "Looks", "_Prototypes"})
                        prim_path = f"{parent}/{_unique(_identifier(el.name), siblings)}"
                        paths[el.id] = prim_path
                        # In a part, the ancestors the prim needs become `over`s; their `def` is in their own part.
                        _write_element(_prim(layer, prim_path, "Xform"), el)
            if in_parts:
                parts.append(self._save_part(layer, f"elements-{index:04d}"))
        self._root, self._paths, self._parts = root, paths, parts
        self._added = [_identity(el) for el in elements]

    def write(self, scene: Scene) -> None:
        """Author the rest of `scene` and write the file; textures go to `textures/` beside it."""
        if self._root is None or self._added != [_identity(el) for el in scene.elements.values()]:
            self.add_elements(scene.elements.values())
        root, paths = self._root, self._paths
        assert root is not None
        looks = _write_textures(scene, self.path.parent)
        with Sdf.ChangeBlock():
            root.customLayerData = _provenance(scene)
            _prim(root, LOOKS, "Scope")
            material_paths = [_write_material(root, i, m, looks.get(i)) for i, m in enumerate(scene.materials)]
            double_sided = [m.double_sided for m in scene.materials]
            uses = Counter(e.mesh for e in scene.elements.values() if e.mesh in scene.meshes)
            if any(n > 1 for n in uses.values()):
                _prim(root, PROTOTYPES, "Scope", Sdf.SpecifierClass)
            prototypes = {
                mesh_id: _MeshWriter(root, material_paths, double_sided).write(
                    f"{PROTOTYPES}/{_identifier(mesh_id)}_{i}", scene.meshes[mesh_id]
                )
                for i, (mesh_id, n) in enumerate(uses.items())
                if n > 1
            }
        items = list(zip(scene.elements.values(), local_matrices(scene), strict=True))
        geometry: list[str] = []
        for index, part in enumerate(_runs(items, self.part_elements)):
            layer = Sdf.Layer.CreateAnonymous(self.path.name) if self._parts else root
            writer = _MeshWriter(layer, material_paths, double_sided)
            for block in _runs(part, CHANGE_BLOCK_ELEMENTS):
                with Sdf.ChangeBlock():
                    for el, local in block:
                        prim_path = paths[el.id]
                        # The element's prim in the root, an `over` of it in a part.
                        _write_transform(Sdf.CreatePrimInLayer(layer, prim_path), local)
                        if el.mesh in prototypes:
                            # An internal reference: resolved in the root's layer stack, which holds the prototypes.
                            instance = _prim(layer, f"{prim_path}/{GEOMETRY}", "Xform")
                            instance.referenceList.Prepend(Sdf.Reference(primPath=prototypes[el.mesh]))
                            instance.SetInfo("instanceable", True)
                        elif el.mesh in uses:
                            writer.write(f"{prim_path}/{GEOMETRY}", scene.meshes[el.mesh])
            if self._parts:
                geometry.append(self._save_part(layer, f"geometry-{index:04d}"))
        # Weakest first: a prim's children are composed from the weakest layer to the strongest, so the element
        # parts (weakest, first part last) give the scene's order, the geometry parts then add each `Geometry`
        # child after its element's children, and the root `Looks` and `_Prototypes` after the elements.
        root.subLayerPaths = [*reversed(geometry), *reversed(self._parts)]
        if not root.Export(str(self.path)):
            raise ExportFailed(str(self.path), "USD could not write the layer")
        # The layer holds a copy of every array and property: let it go before the other outputs are made.
        self._root, self._paths, self._added, self._parts = None, {}, [], []

    def _save_part(self, layer: Sdf.Layer, name: str) -> str:
        """Write one part of the stage into `parts_dir`; its path as the root layer's sublayer."""
        folder = parts_dir(self.path)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}{self.path.suffix}"
        if not layer.Export(str(path)):
            raise ExportFailed(str(path), "USD could not write the layer")
        return f"./{folder.name}/{path.name}"


def parts_dir(stage_path: Path) -> Path:
    """The folder of the part layers of the stage at `stage_path` (scene.usdc: scene.parts/)."""
    return stage_path.with_suffix(PARTS_SUFFIX)


def stage_files(stage_path: Path) -> list[Path]:
    """The files the stage at `stage_path` is made of: its root layer first, then its parts."""
    folder = parts_dir(stage_path)
    return [stage_path, *(sorted(folder.iterdir()) if folder.is_dir() else ())]


def _runs(items: list[T], size: int) -> Iterator[list[T]]:
    """`items` in runs of `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def write_stage(scene: Scene, path: Path) -> None:
    """Write `scene` as a USD layer at `path` (usually scene.usdc); textures go to `textures/` beside it."""
    StageWriter(path).write(scene)


def _identity(el: Element) -> tuple[str, str, str, str | None]:
    return el.id, el.name, el.cls, el.parent


def _provenance(scene: Scene) -> dict:
    inputs = {
        str(i): {
            "path": rec.path,
            "sha256": rec.sha256,
            "format": rec.format,
            "importer": rec.importer,
            "source_units": rec.source_units,
            "source_up_axis": rec.source_up_axis,
        }
        for i, rec in enumerate(scene.inputs)
    }
    return {"twinview:version": twinview_version(), "twinview:inputs": inputs}


def _prim(layer: object, path: str, type_name: str, specifier: object = None) -> object:
    spec = Sdf.CreatePrimInLayer(layer, path)
    spec.specifier = specifier if specifier is not None else Sdf.SpecifierDef
    spec.typeName = type_name
    return spec


def _attr(
    spec: object, name: str, type_name: object, value: object = None, *, uniform: bool = False, custom: bool = False
) -> object:
    variability = Sdf.VariabilityUniform if uniform else Sdf.VariabilityVarying
    attr = Sdf.AttributeSpec(spec, name, type_name, variability, custom)
    if value is not None:
        attr.default = value
    return attr


def _identifier(name: str) -> str:
    return Tf.MakeValidIdentifier(name) if name else "_"


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def _write_transform(spec: object, local: np.ndarray) -> None:
    if not np.array_equal(local, np.eye(4)):
        _attr(spec, "xformOp:transform", Sdf.ValueTypeNames.Matrix4d, Gf.Matrix4d(local.T.tolist()))
        _attr(spec, "xformOpOrder", Sdf.ValueTypeNames.TokenArray, ["xformOp:transform"], uniform=True)


def _write_element(spec: object, el: Element) -> None:
    _attr(spec, "twin:id", Sdf.ValueTypeNames.String, el.id, custom=True)
    _attr(spec, "twin:name", Sdf.ValueTypeNames.String, el.name, custom=True)
    _attr(spec, "twin:class", Sdf.ValueTypeNames.String, el.cls, custom=True)
    _write_properties(spec, el.properties, el.units)


def _write_properties(spec: object, properties: PropertySets, units: PropertyUnits) -> None:
    taken: set[str] = set()
    for pset, values in properties.items():
        set_units = units.get(pset, {})
        for name, value in values.items():
            attr_name = _unique(f"{PROPS_NAMESPACE}:{_identifier(pset)}:{_identifier(name)}", taken)
            type_name, stored, is_json = _usd_value(value)
            attr = _attr(spec, attr_name, type_name, stored, custom=True)
            if attr_name != f"{PROPS_NAMESPACE}:{pset}:{name}":  # sanitised: keep the exact names
                attr.displayGroup = pset
                attr.displayName = name
            data: dict[str, object] = {"json": True} if is_json else {}
            if name in set_units:
                data["unit"] = set_units[name]
            if data:  # a dictionary under "twin": customData keys must be identifiers, "twin:json" is its path
                attr.customData = {CUSTOM_DATA: data}


def _usd_value(value: PropertyValue) -> tuple[object, object, bool]:
    """(Sdf type, value to store, whether it is JSON text) for one property value."""
    names = Sdf.ValueTypeNames
    if value is None:
        return names.String, None, False
    if isinstance(value, bool):
        return names.Bool, value, False
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return names.Int64, value, False
    if isinstance(value, float):
        return names.Double, value, False
    if isinstance(value, str):
        return names.String, value, False
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return names.StringArray, value, False
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return names.DoubleArray, value, False
    return names.String, json.dumps(value), True


def read_properties(prim: object) -> PropertySets:
    """The property sets written by `write_stage`, from a composed Usd.Prim."""
    out: PropertySets = {}
    for attr in prim.GetAuthoredAttributes():
        if not attr.GetName().startswith(PROPS_NAMESPACE + ":"):
            continue
        _, _, pset, name = attr.GetName().split(":")
        value = attr.Get()
        if attr.GetCustomDataByKey(JSON_FLAG):
            value = json.loads(value)
        elif value is not None and not isinstance(value, bool | int | float | str):
            value = list(value)
        out.setdefault(attr.GetDisplayGroup() or pset, {})[attr.GetDisplayName() or name] = value
    return out


def read_units(prim: object) -> PropertyUnits:
    """The property units written by `write_stage`, from a composed Usd.Prim."""
    out: PropertyUnits = {}
    for attr in prim.GetAuthoredAttributes():
        unit = attr.GetCustomDataByKey(UNIT_KEY) if attr.GetName().startswith(PROPS_NAMESPACE + ":") else None
        if unit:
            _, _, pset, name = attr.GetName().split(":")
            out.setdefault(attr.GetDisplayGroup() or pset, {})[attr.GetDisplayName() or name] = unit
    return out


def _write_textures(scene: Scene, directory: Path) -> dict[int, str]:
    """Texture files beside the stage; returns material index -> relative asset path."""
    out = {}
    for i, mat in enumerate(scene.materials):
        if not mat.texture:
            continue
        suffix = ".png" if mat.texture.startswith(b"\x89PNG") else ".jpg"
        rel = f"{TEXTURE_DIR}/{i}_{_identifier(mat.name)}{suffix}"
        (directory / TEXTURE_DIR).mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(mat.texture)
        out[i] = f"./{rel}"
    return out


def _write_material(layer: object, index: int, mat: Material, texture: str | None) -> str:
    names = Sdf.ValueTypeNames
    path = f"{LOOKS}/{_identifier(mat.name)}_{index}"
    material = _prim(layer, path, "Material")
    surface = _prim(layer, f"{path}/PreviewSurface", "Shader")
    _attr(surface, "info:id", names.Token, "UsdPreviewSurface", uniform=True)
    r, g, b, a = (float(c) for c in mat.base_color)
    diffuse = _attr(surface, "inputs:diffuseColor", names.Color3f, Gf.Vec3f(r, g, b))
    _attr(surface, "inputs:metallic", names.Float, float(mat.metallic))
    _attr(surface, "inputs:roughness", names.Float, float(mat.roughness))
    if a < 1.0:
        _attr(surface, "inputs:opacity", names.Float, a)
    out = _attr(surface, "outputs:surface", names.Token)
    _attr(material, "outputs:surface", names.Token).connectionPathList.Prepend(out.path)
    if texture:
        reader = _prim(layer, f"{path}/StReader", "Shader")
        _attr(reader, "info:id", names.Token, "UsdPrimvarReader_float2", uniform=True)
        _attr(reader, "inputs:varname", names.String, "st")
        st = _attr(reader, "outputs:result", names.Float2)
        image = _prim(layer, f"{path}/BaseColorTexture", "Shader")
        _attr(image, "info:id", names.Token, "UsdUVTexture", uniform=True)
        _attr(image, "inputs:file", names.Asset, Sdf.AssetPath(texture))
        _attr(image, "inputs:st", names.Float2).connectionPathList.Prepend(st.path)
        _attr(image, "inputs:wrapS", names.Token, "repeat")
        _attr(image, "inputs:wrapT", names.Token, "repeat")
        # glTF multiplies the texture by baseColorFactor; UsdUVTexture's scale does the same.
        _attr(image, "inputs:scale", names.Float4, Gf.Vec4f(r, g, b, 1.0))
        rgb = _attr(image, "outputs:rgb", names.Float3)
        diffuse.connectionPathList.Prepend(rgb.path)
    return path


class _MeshWriter:
    def __init__(self, layer: object, materials: list[str], double_sided: list[bool]) -> None:
        self.layer = layer
        self.materials = materials
        self.double_sided = double_sided

    def write(self, path: str, mesh: Mesh) -> str:
        """An Xform at `path` holding one Mesh or Points prim per primitive of `mesh`."""
        _prim(self.layer, path, "Xform")
        for i, prim in enumerate(p for p in mesh.primitives if len(p.positions)):
            child = f"{path}/{'Points' if prim.is_points else 'Mesh'}_{i}"
            self._primitive(child, prim)
        return path

    def _primitive(self, path: str, prim: Primitive) -> None:
        names = Sdf.ValueTypeNames
        spec = _prim(self.layer, path, "Points" if prim.is_points else "Mesh")
        positions = np.ascontiguousarray(prim.positions, dtype=np.float32)
        _attr(spec, "points", names.Point3fArray, Vt.Vec3fArray.FromNumpy(positions))
        _attr(
            spec,
            "extent",
            names.Float3Array,
            Vt.Vec3fArray.FromNumpy(np.stack([positions.min(axis=0), positions.max(axis=0)])),
        )
        if prim.is_points:
            _attr(spec, "widths", names.FloatArray, Vt.FloatArray([POINT_WIDTH_M])).SetInfo("interpolation", "constant")
        else:
            tris = np.ascontiguousarray(prim.indices, dtype=np.int32)
            _attr(spec, "faceVertexCounts", names.IntArray, Vt.IntArray.FromNumpy(np.full(len(tris), 3, np.int32)))
            _attr(spec, "faceVertexIndices", names.IntArray, Vt.IntArray.FromNumpy(tris.reshape(-1)))
            _attr(spec, "subdivisionScheme", names.Token, "none", uniform=True)
        if prim.normals is not None:
            normals = np.ascontiguousarray(prim.normals, dtype=np.float32)
            _attr(spec, "normals", names.Normal3fArray, Vt.Vec3fArray.FromNumpy(normals)).SetInfo(
                "interpolation", "vertex"
            )
        if prim.colors is not None:
            colors = np.ascontiguousarray(prim.colors, dtype=np.float32)
            _attr(
                spec,
                "primvars:displayColor",
                names.Color3fArray,
                Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(colors[:, :3])),
            ).SetInfo("interpolation", "vertex")
            if (colors[:, 3] < 1).any():
                _attr(
                    spec,
                    "primvars:displayOpacity",
                    names.FloatArray,
                    Vt.FloatArray.FromNumpy(np.ascontiguousarray(colors[:, 3])),
                ).SetInfo("interpolation", "vertex")
        if prim.uvs is not None:
            st = np.ascontiguousarray(prim.uvs, dtype=np.float32).copy()
            st[:, 1] = 1.0 - st[:, 1]  # glTF's v points down, USD's st up
            _attr(spec, "primvars:st", names.TexCoord2fArray, Vt.Vec2fArray.FromNumpy(st)).SetInfo(
                "interpolation", "vertex"
            )
        if 0 <= prim.material < len(self.materials):
            spec.SetInfo("apiSchemas", Sdf.TokenListOp.Create(prependedItems=["MaterialBindingAPI"]))
            rel = Sdf.RelationshipSpec(spec, "material:binding", False)
            rel.targetPathList.Prepend(Sdf.Path(self.materials[prim.material]))
            if self.double_sided[prim.material] and not prim.is_points:
                _attr(spec, "doubleSided", names.Bool, True, uniform=True)
