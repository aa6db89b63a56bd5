"""Mesh files: glTF/GLB (own decoder, see gltf_decode.py) and OBJ, STL, PLY, OFF, 3MF (via trimesh).

Conventions: glTF is metres and Y-up by specification. OBJ, STL, PLY and OFF carry no units or up
axis; they are taken as metres, Y-up (recorded as such in the InputRecord). 3MF declares its unit
(millimetres by default) and trimesh reports it, so it is scaled to metres.

Decisions on damaged input:
- accessor data outside its declared min/max is a *warning*: bounds only steer culling, the data
  is what every other viewer draws;
- an OBJ face with fewer than 3 vertices (notenoughindices.obj) is an *error*: trimesh would drop it
  silently, but such a line means the file is corrupt or truncated, and a twin must not lose faces
  without anyone noticing;
- NaN/inf coordinates, indices beyond the vertex count, broken framing and empty results are errors.

Files named inside a model (glTF buffers and images, OBJ material libraries and textures, PLY
textures) are read only from the model's folder: URLs, absolute paths, `../` and escaping symlinks are
refused with ImportFailed naming the URI. glTF images at a URL are optional and skipped with a warning.

Text encodings: an OBJ that is not UTF-8 (Japanese CAD tools write Shift-JIS) is decoded with the encoding
detected on the whole OBJ, and its material libraries with the same one: detected on a short MTL alone, the
guess is often wrong (Shift-JIS read as Big5), and then no material name matches.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.importers._common import (
    adopted_id,
    element_id,
    new_scene,
    read_nonempty,
    require_finite,
    require_geometry,
    resolve_inside,
    srgb_to_linear,
    timed,
    unique_id,
)
from scene.importers.gltf_decode import GltfDocument, read_gltf
from scene.importers.normals import with_crease_normals
from scene.model import IDENTITY, Element, Material, Mesh, Primitive, PropertyValue, Scene

GLTF_IMPORTER = "twinview-gltf 1"

# Node trees deeper than this are refused: real assets stay in the tens, and recursion must stay bounded.
MAX_NODE_DEPTH = 256

# glTF primitive modes we draw; lines (1-3) have no surface and are skipped with a warning.
MODE_POINTS, MODE_TRIANGLES, MODE_STRIP, MODE_FAN = 0, 4, 5, 6

# 3MF's unit attribute values (trimesh reports them verbatim) -> (metres per unit, short name).
THREEMF_UNITS = {
    "micron": (1e-6, "um"),
    "millimeter": (0.001, "mm"),
    "centimeter": (0.01, "cm"),
    "inch": (0.0254, "in"),
    "foot": (0.3048, "ft"),
    "meter": (1.0, "m"),
}

# PLY headers are a few hundred bytes; reading this much finds `end_header` in any sane file.
PLY_HEADER_LIMIT = 1 << 16

# Bytes of a text file looked at to detect its encoding (charset_normalizer): plenty for a guess.
ENCODING_SAMPLE = 1 << 16
# OBJ tokens that make trimesh silently drop vertices instead of failing.
_OBJ_BAD_NUMBER = re.compile(rb"(?i)[-+]?(nan|inf)")
_OBJ_VERTEX_LINE = re.compile(rb"(?m)^v[ \t]+[^\n]*")
_OBJ_SHORT_FACE = re.compile(rb"(?m)^f(?:[ \t]+\S+){0,2}[ \t]*\r?$")


def load(path: Path, options: ImportOptions) -> Scene:
    ext = path.suffix.lower()
    if ext in (".gltf", ".glb"):
        return load_gltf(path)
    if ext == ".ply" and not _ply_has_faces(path):
        from scene.importers import pointcloud

        return pointcloud.load(path, options)
    return load_trimesh(path, read_nonempty(path), ext)


# --- glTF -------------------------------------------------------------------------------------------


def load_gltf(path: Path) -> Scene:
    timings: dict[str, float] = {}
    with timed(timings, "parse"):
        doc = read_gltf(path)
    scene = new_scene(path, "gltf", GLTF_IMPORTER)
    with timed(timings, "decode"):
        _GltfBuilder(doc, scene).build()
    scene.timings.update(timings)
    scene.warnings.extend(doc.warnings)
    return require_geometry(path, scene)


class _GltfBuilder:
    """Turns a decoded glTF into elements (one per node), shared meshes and materials."""

    def __init__(self, doc: GltfDocument, scene: Scene) -> None:
        self.doc, self.scene = doc, scene
        self.meshes: dict[int, str] = {}
        self.visited: set[int] = set()
        self.materials: dict[int | None, tuple[int, int]] = {}  # glTF index -> (scene index, texCoord set)

    def build(self) -> None:
        nodes = self.doc.items("nodes")
        scenes = self.doc.items("scenes")
        if scenes:
            index = self.doc.json.get("scene", 0)
            roots = self.doc.item("scenes", index).get("nodes", [])
        else:
            children = {c for n in nodes for c in n.get("children", [])}
            roots = [i for i in range(len(nodes)) if i not in children]
        for root in roots:
            self._node(root, None, "", IDENTITY, 0)
        if not nodes:
            # Mesh-only files (no node tree) still show their meshes, one element each.
            for index, mesh in enumerate(self.doc.items("meshes")):
                name = mesh.get("name") or f"mesh{index}"
                el_id = unique_id(self.scene, element_id(self.doc.path, name))
                self.scene.add(Element(el_id, name, "GltfMesh", mesh=self._mesh(index)))

    def _node(self, index: Any, parent: str | None, parent_path: str, parent_matrix: np.ndarray, depth: int) -> None:
        node = self.doc.item("nodes", index)
        # glTF node trees are strict trees; a shared or cyclic child could otherwise multiply elements.
        if index in self.visited:
            raise self.doc.fail("node is reached twice (more than one parent, or a cycle)", f"nodes[{index}]")
        if depth >= MAX_NODE_DEPTH:
            raise self.doc.fail(f"node hierarchy deeper than {MAX_NODE_DEPTH}", f"nodes[{index}]")
        self.visited.add(index)
        mesh_name = self.doc.item("meshes", node["mesh"]).get("name") if "mesh" in node else None
        name = str(node.get("name") or mesh_name or f"node{index}")  # exporters often name only the mesh
        node_path = f"{parent_path}/{name}"
        matrix = parent_matrix @ _node_matrix(self.doc, node, index)
        extras = node.get("extras") if isinstance(node.get("extras"), dict) else {}
        # TwinView's own GLB carries each element's id, name and class in extras: keep them.
        twin = adopted_id(extras.get("id"))
        el_id = unique_id(self.scene, twin or element_id(self.doc.path, node_path))
        if twin and isinstance(extras.get("name"), str):
            name = extras["name"]
        cls = str(extras["class"]) if twin and isinstance(extras.get("class"), str) else "GltfNode"
        others = {k: _property_value(v) for k, v in extras.items() if not (twin and k in ("id", "name", "class"))}
        mesh = self._mesh(node["mesh"]) if "mesh" in node else None
        properties = {"glTF extras": others} if others else {}
        self.scene.add(Element(el_id, name, cls, parent=parent, matrix=matrix, mesh=mesh, properties=properties))
        for child in node.get("children", []):
            self._node(child, el_id, node_path, matrix, depth + 1)

    def _mesh(self, index: Any) -> str | None:
        if index in self.meshes:
            return self.meshes[index]
        mesh = self.doc.item("meshes", index)
        prims = []
        for p_index, prim in enumerate(mesh.get("primitives", [])):
            built = self._primitive(prim, f"meshes[{index}].primitives[{p_index}]")
            if built is not None:
                prims.append(built)
        mesh_id = unique_id(self.scene, element_id(self.doc.path, f"mesh{index}"))
        self.scene.meshes[mesh_id] = Mesh(mesh_id, prims)
        self.meshes[index] = mesh_id
        return mesh_id

    def _primitive(self, prim: dict[str, Any], where: str) -> Primitive | None:
        mode = prim.get("mode", MODE_TRIANGLES)
        if mode not in (MODE_POINTS, MODE_TRIANGLES, MODE_STRIP, MODE_FAN):
            self.doc.warnings.append(f"{where}: line primitives (mode {mode}) are not drawn")
            return None
        attrs = prim.get("attributes", {})
        draco = prim.get("extensions", {}).get("KHR_draco_mesh_compression")
        if draco is not None:
            arrays, raw_indices = _decode_draco(self.doc, draco, where)
        else:
            arrays = {name: self.doc.accessor(acc) for name, acc in attrs.items() if _wanted(name)}
            raw_indices = self.doc.raw_accessor(prim["indices"])[:, 0] if "indices" in prim else None
        if "POSITION" not in arrays:
            self.doc.warnings.append(f"{where}: no POSITION attribute; skipped")
            return None
        positions = arrays.pop("POSITION").astype(np.float32)
        require_finite(self.doc.path, positions, f"{where}.POSITION")
        count = len(positions)
        for name in [n for n, values in arrays.items() if len(values) != count]:
            self.doc.warnings.append(
                f"{where}: {name} has {len(arrays.pop(name))} values for {count} vertices; ignored"
            )
        indices = None
        if mode != MODE_POINTS:
            flat = np.arange(count, dtype=np.uint32) if raw_indices is None else raw_indices.astype(np.uint32)
            if len(flat) and int(flat.max()) >= count:
                raise self.doc.fail(f"index {int(flat.max())} beyond vertex count {count}", where)
            indices = _triangles(flat, mode)
        material, tex_coord = self._material(prim.get("material"))
        normals = arrays.get("NORMAL")
        if normals is not None:  # quantized normals are only roughly unit length
            length = np.linalg.norm(normals, axis=1, keepdims=True)
            normals = np.divide(normals, length, out=np.zeros_like(normals, dtype=np.float32), where=length > 0)
        colors = arrays.get("COLOR_0")
        if colors is not None and colors.shape[1] == 3:
            colors = np.hstack([colors, np.ones((len(colors), 1), dtype=colors.dtype)])
        uvs = arrays.get(f"TEXCOORD_{tex_coord}")
        out = Primitive(
            positions=positions,
            indices=indices,
            material=material,
            normals=None if normals is None else normals.astype(np.float32),
            colors=None if colors is None else colors.astype(np.float32),
            uvs=None if uvs is None else uvs.astype(np.float32),
        )
        # Triangles without normals are shaded flat (glTF 2.0, "Meshes").
        return with_crease_normals(out, crease_deg=0.0) if normals is None and indices is not None else out

    def _material(self, index: Any) -> tuple[int, int]:
        if index in self.materials:
            return self.materials[index]
        if index is None:
            result = (self.scene.add_material(Material("default")), 0)
        else:
            mat = self.doc.item("materials", index)
            pbr = mat.get("pbrMetallicRoughness", {})
            color = tuple(float(c) for c in pbr.get("baseColorFactor", (1.0, 1.0, 1.0, 1.0)))
            material = Material(
                name=str(mat.get("name") or f"material{index}"),
                base_color=color,  # type: ignore[arg-type]
                metallic=float(pbr.get("metallicFactor", 1.0)),
                roughness=float(pbr.get("roughnessFactor", 1.0)),
                double_sided=bool(mat.get("doubleSided", False)),
            )
            tex_ref = pbr.get("baseColorTexture")
            tex_coord = 0
            if isinstance(tex_ref, dict):
                tex_coord = int(tex_ref.get("texCoord", 0))
                texture = self.doc.item("textures", tex_ref.get("index"))
                if "source" in texture:
                    image = self.doc.image(texture["source"])
                    if image is not None:
                        material.texture, material.texture_mime = image
            result = (self.scene.add_material(material), tex_coord)
        self.materials[index] = result
        return result


def _property_value(value: Any) -> PropertyValue:
    """JSON extras as a property value: scalars and lists as they are, objects as JSON text."""
    if value is None or isinstance(value, bool | int | float | str | list):
        return value
    return json.dumps(value, sort_keys=True)


def _wanted(attribute: str) -> bool:
    return attribute in ("POSITION", "NORMAL", "COLOR_0") or attribute.startswith("TEXCOORD_")


def _node_matrix(doc: GltfDocument, node: dict[str, Any], index: int) -> np.ndarray:
    if "matrix" in node:
        values = np.asarray(node["matrix"], dtype=np.float64)
        if values.shape != (16,):
            raise doc.fail("node matrix must have 16 numbers", f"nodes[{index}]")
        return values.reshape(4, 4).T  # glTF stores column-major
    t = np.asarray(node.get("translation", (0.0, 0.0, 0.0)), dtype=np.float64)
    x, y, z, w = np.asarray(node.get("rotation", (0.0, 0.0, 0.0, 1.0)), dtype=np.float64)
    s = np.asarray(node.get("scale", (1.0, 1.0, 1.0)), dtype=np.float64)
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    out = np.eye(4)
    out[:3, :3] = rotation * s
    out[:3, 3] = t
    return out


def _triangles(flat: np.ndarray, mode: int) -> np.ndarray:
    if mode == MODE_TRIANGLES:
        usable = len(flat) - len(flat) % 3
        return flat[:usable].reshape(-1, 3)
    if len(flat) < 3:
        return np.zeros((0, 3), dtype=np.uint32)
    k = np.arange(len(flat) - 2)
    if mode == MODE_STRIP:
        # Every other strip triangle is wound backwards; swap two corners to keep faces outward.
        odd = k % 2 == 1
        a, b, c = flat[k], flat[k + 1], flat[k + 2]
        return np.stack([a, np.where(odd, c, b), np.where(odd, b, c)], axis=1)
    return np.stack([np.full_like(k, flat[0]), flat[k + 1], flat[k + 2]], axis=1).astype(np.uint32)


def _decode_draco(doc: GltfDocument, ext: dict[str, Any], where: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import DracoPy

    where = f"{where}.extensions.KHR_draco_mesh_compression"
    try:
        decoded = DracoPy.decode(doc.view_bytes(ext.get("bufferView")))
    except Exception as exc:  # DracoPy raises its own exception types for corrupt streams
        raise doc.fail(f"Draco decoding failed: {exc}", where) from exc
    by_id = {a["unique_id"]: np.asarray(a["data"]) for a in decoded.attributes}
    arrays = {}
    for name, unique in ext.get("attributes", {}).items():
        if _wanted(name) and unique in by_id:
            data = by_id[unique]
            arrays[name] = data.reshape(len(data), -1).astype(np.float32)
    faces = getattr(decoded, "faces", None)
    flat = np.zeros(0, dtype=np.uint32) if faces is None else np.asarray(faces, dtype=np.uint32).reshape(-1)
    return arrays, flat


# --- trimesh formats --------------------------------------------------------------------------------


def _ply_has_faces(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(PLY_HEADER_LIMIT)
    header = head.split(b"end_header", 1)[0]
    match = re.search(rb"(?m)^element\s+face\s+(\d+)", header)
    return bool(match and int(match.group(1)) > 0)


class _GuardedResolver:
    """A trimesh resolver that serves only files inside the model's folder and records refusals."""

    def __init__(self, path: Path, text_encoding: str | None = None) -> None:
        self.path = path
        self.text_encoding = text_encoding  # of the model: material libraries that are not UTF-8 share it
        self.refused: ImportFailed | None = None
        self.missing: list[str] = []

    def get(self, name: str) -> bytes:
        try:
            target = resolve_inside(self.path, name, "referenced file")
        except ImportFailed as exc:
            self.refused = self.refused or exc
            raise FileNotFoundError(name) from exc
        if not target.is_file():
            self.missing.append(name)
            raise FileNotFoundError(name)
        data = target.read_bytes()
        if self.text_encoding and target.suffix.lower() == ".mtl":
            return _as_utf8(data, self.text_encoding)
        return data

    def __getitem__(self, name: str) -> bytes:  # trimesh's OBJ reader indexes instead of calling get
        return self.get(name)


def load_trimesh(path: Path, data: bytes, ext: str) -> Scene:
    import trimesh

    fmt = ext.lstrip(".")
    encoding = None
    if ext == ".obj":
        _check_obj_text(path, data)
        encoding = _text_encoding(data)
        data = _as_utf8(data, encoding)
    resolver = _GuardedResolver(path, encoding)
    timings: dict[str, float] = {}
    with timed(timings, "parse"):
        loaded = _trimesh_load(path, data, fmt, resolver)
    if ext == ".ply" and resolver.missing:
        # trimesh replaces a missing PLY texture with a placeholder and drops the vertex colours;
        # without the texture the colours are the better picture.
        loaded = _trimesh_load(path, data, fmt, _GuardedResolver(path), skip_materials=True)
    # 3MF declares its unit (millimetre by default); the other formats have none and are taken as metres.
    scale, unit = THREEMF_UNITS.get(str(loaded.units), (1.0, "m")) if ext == ".3mf" else (1.0, "m")
    scene = new_scene(path, fmt, f"trimesh {trimesh.__version__}", unit)
    scene.warnings.extend(f"referenced file {name} not found; drawn without it" for name in resolver.missing)
    _add_trimesh_nodes(path, scene, loaded, scale, textures=not resolver.missing)
    scene.timings.update(timings)
    return require_geometry(path, scene)


def _trimesh_load(path: Path, data: bytes, fmt: str, resolver: _GuardedResolver, **kwargs: Any) -> Any:
    import trimesh

    try:
        loaded = trimesh.load(io.BytesIO(data), file_type=fmt, resolver=resolver, force="scene", **kwargs)
    except ImportFailed:
        raise
    except Exception as exc:  # trimesh's parsers raise anything from ValueError to IndexError
        raise ImportFailed(str(path), f"cannot parse {fmt.upper()}: {type(exc).__name__}: {exc}") from exc
    if resolver.refused is not None:
        raise resolver.refused
    return loaded


def _text_encoding(data: bytes) -> str | None:
    """None for UTF-8 (or ASCII) text, else the encoding charset_normalizer detects."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:ENCODING_SAMPLE]).best()
        return best.encoding if best is not None else "latin-1"
    return None


def _as_utf8(data: bytes, encoding: str | None) -> bytes:
    """`data` re-encoded from `encoding` to UTF-8; as it is when it already is UTF-8 (or no encoding is given)."""
    if encoding is None:
        return data
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(encoding, errors="replace").encode("utf-8")
    return data


def _check_obj_text(path: Path, data: bytes) -> None:
    # trimesh drops non-finite vertices and short faces silently, so find them in the text first.
    bad = sum(len(_OBJ_BAD_NUMBER.findall(line)) for line in _OBJ_VERTEX_LINE.findall(data))
    if bad:
        raise ImportFailed(str(path), f"{bad} NaN/infinite coordinate value(s) in vertex lines", "v")
    short = _OBJ_SHORT_FACE.search(data)
    if short:
        line = data.count(b"\n", 0, short.start()) + 1
        raise ImportFailed(str(path), "face with fewer than 3 vertices (file corrupt or truncated)", f"line {line}")


def _add_trimesh_nodes(path: Path, scene: Scene, loaded: Any, scale: float, textures: bool) -> None:
    """One element per file; its primitives are trimesh's geometries (OBJ splits them by material).

    3MF build items and other multi-object files get one child element per object instead.
    """
    nodes = list(loaded.graph.nodes_geometry)
    multi_object = path.suffix.lower() == ".3mf" and len(nodes) > 1
    root_id = element_id(path, path.stem)
    root_prims: list[Primitive] = []
    root = scene.add(Element(root_id, path.stem, "Mesh"))
    for node in nodes:
        transform, geom_name = loaded.graph[node]
        geom = loaded.geometry[geom_name]
        if not hasattr(geom, "faces") or len(geom.faces) == 0:
            continue
        prim = _trimesh_primitive(path, scene, geom, geom_name, textures)
        matrix = np.asarray(transform, dtype=np.float64).copy()
        matrix[:3, 3] *= scale
        prim.positions *= np.float32(scale)
        if not multi_object and not np.allclose(matrix, IDENTITY):
            prim.positions = _transform(prim.positions, matrix)
        # Mesh files rarely carry normals we can trust (STL has one per face, trimesh welds vertices).
        prim = with_crease_normals(prim)
        if multi_object:
            child_id = unique_id(scene, element_id(path, f"{path.stem}/{node}"))
            scene.meshes[child_id] = Mesh(child_id, [prim])
            scene.add(Element(child_id, str(node), "Mesh", parent=root_id, matrix=matrix, mesh=child_id))
        else:
            root_prims.append(prim)
    if root_prims:
        scene.meshes[root_id] = Mesh(root_id, root_prims)
        root.mesh = root_id


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (points.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)


def _trimesh_primitive(path: Path, scene: Scene, geom: Any, name: str, textures: bool) -> Primitive:
    """`textures` is False when a referenced image was missing: trimesh then holds a placeholder."""
    positions = np.asarray(geom.vertices, dtype=np.float32)
    require_finite(path, positions, name)
    indices = np.asarray(geom.faces, dtype=np.uint32)
    visual = geom.visual
    colors = uvs = None
    material = Material(name=name)
    if visual.kind == "texture":
        pbr = visual.material.to_pbr() if hasattr(visual.material, "to_pbr") else visual.material
        material = _pbr_material(pbr, str(getattr(visual.material, "name", None) or name), textures)
        if visual.uv is not None and len(visual.uv) == len(positions):
            uvs = np.asarray(visual.uv, dtype=np.float32).copy()
            uvs[:, 1] = 1.0 - uvs[:, 1]  # OBJ/PLY put v=0 at the bottom; glTF at the top
    elif visual.kind in ("vertex", "face"):
        # 8-bit vertex colours in PLY/OFF are display (sRGB) values; the model stores linear.
        rgba = np.asarray(visual.vertex_colors, dtype=np.float32) / 255.0
        colors = np.hstack([srgb_to_linear(rgba[:, :3]), rgba[:, 3:4]]).astype(np.float32)
    return Primitive(
        positions=positions,
        indices=indices,
        material=scene.add_material(material),
        colors=colors,
        uvs=uvs,
    )


def _pbr_material(pbr: Any, name: str, textures: bool) -> Material:
    factor = pbr.baseColorFactor
    color = (1.0, 1.0, 1.0, 1.0) if factor is None else tuple(float(c) for c in np.asarray(factor) / 255.0)
    material = Material(
        name=name,
        base_color=color,  # type: ignore[arg-type]
        metallic=float(pbr.metallicFactor if pbr.metallicFactor is not None else 0.0),
        roughness=float(pbr.roughnessFactor if pbr.roughnessFactor is not None else 0.8),
        double_sided=bool(pbr.doubleSided),
    )
    image = pbr.baseColorTexture if textures else None
    if image is not None:
        fmt = "JPEG" if getattr(image, "format", None) == "JPEG" else "PNG"
        buffer = io.BytesIO()
        (image.convert("RGB") if fmt == "JPEG" else image).save(buffer, format=fmt)
        material.texture, material.texture_mime = buffer.getvalue(), f"image/{fmt.lower()}"
    return material
