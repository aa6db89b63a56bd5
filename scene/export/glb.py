"""Browser GLB: one node per element, addressable by twin id.

Layout (what the web client relies on):
- node `i` for the i-th element (Scene order), `name` = twin id, `extras` = {"id", "name", "class"};
  the hierarchy follows Element.parent with local transforms (translation + rotation when rigid,
  else `matrix`); element nodes come first, in Scene order, and there are no other nodes. glTF node
  matrices must be translation x rotation x scale: where an element's local transform is not (it
  shears, or a parent's non-uniform scale meets the child's rotation), the node keeps the rigid part
  and the rest is baked into that element's own copy of its mesh (`node_transforms`);
- shared Scene meshes become one glTF mesh referenced by every node that uses it, and so do Scene
  meshes whose written geometry is identical (IFC often repeats a shape under several
  representations; compressed, "identical" means the same quantised triangles in any order). That
  is the instancing the file carries: a repeated mesh's bytes are written once, each use costs its
  node. EXT_mesh_gpu_instancing (one node per shared mesh, placements as accessors) is not used: on
  5 000 copies of 3 meshes it would take 78 B per element (TRS 40 B + id, name and class in the
  node's extras) where the element node takes 157 B (BENCHMARKS.md §12), and every element would
  lose its own node, which the viewer, our glTF importer and other tools pick, name and address
  elements by; the viewer draws shared meshes instanced by itself (web_client's instanced_batch.js);
- `compress=True`: EXT_meshopt_compression + KHR_mesh_quantization (see meshopt.py); positions
  stay float (EXPONENTIAL filter), so the node layout is the same as uncompressed. three.js
  needs `GLTFLoader.setMeshoptDecoder(MeshoptDecoder)`. A three.js mesh with several primitives
  becomes a Group of Meshes: a picked object's element is the nearest ancestor with `userData.id`;
- `lod=True`: a mesh with coarser levels lists them in `mesh.extras.lods` =
  [{"mesh": glTF mesh index, "triangles": n}, ...], finest first. Those meshes are attached to no
  node (three.js has no MSFT_lod loader); the client reads them by index (web_client's
  `gltf_reader.js`, or GLTFLoader's parser) and swaps them in by screen size. They reuse the base
  mesh's vertex accessors, so a level costs one index buffer.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from scene.export import meshopt
from scene.export.hierarchy import MATRIX_DECIMALS, local_matrices
from scene.export.lod import lods_for
from scene.model import Material, Mesh, Primitive, Scene
from scene.transforms import bake_linear, split_shear

GLB_MAGIC = b"glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
MODE_POINTS = 0  # triangles are glTF's default mode, so only points name theirs
# glTF forbids the largest index value of a type (primitive restart), so 16-bit indices cover 65535 vertices.
UINT16_INDEX_LIMIT = 65535
# Rotation matrices orthonormal to this tolerance are written as quaternions (7 numbers instead of 16).
ROTATION_TOLERANCE = 1e-7
GENERATOR = "TwinView scene.export.glb"
EXT_MESHOPT = "EXT_meshopt_compression"
EXT_QUANTIZATION = "KHR_mesh_quantization"
LINEAR, LINEAR_MIPMAP_LINEAR, REPEAT = 9729, 9987, 10497


@dataclass(slots=True)
class GlbStats:
    nodes: int
    meshes: int
    primitives: int
    triangles: int  # drawn at full detail, counting every instance
    points: int
    bytes: int
    draw_calls_estimate: int  # one per (element, primitive) before any client-side batching


class _Binary:
    """The GLB binary chunk. Vertex and index data are gathered into one bufferView per layout (as
    gltfpack does): fewer views mean a shorter JSON, and longer streams code better. Compressed
    views point into a data-less fallback buffer and carry their meshopt-coded bytes in buffer 0."""

    def __init__(self, compress: bool) -> None:
        self.compress = compress
        # The chunk's bytes in order, written one by one: never joined, so the chunk is never held twice.
        self.parts: list[bytes | np.ndarray] = []
        self.size = 0
        self.fallback_size = 0
        self.views: list[dict] = []
        # layout key -> arrays and the accessors that read them, resolved by `finish`
        self.groups: dict[tuple, list[tuple[np.ndarray, dict]]] = {}

    def _append(self, *data: bytes | np.ndarray) -> int:
        """Append `data` back to back, padded to 4 bytes; returns where it starts."""
        offset = self.size
        length = sum(d.nbytes if isinstance(d, np.ndarray) else len(d) for d in data)
        self.parts.extend(data)
        pad = -length % 4
        if pad:
            self.parts.append(b"\0" * pad)
        self.size += length + pad
        return offset

    def plain_view(self, *data: bytes | np.ndarray, target: int | None = None, stride: int | None = None) -> int:
        """A view of `data` (pieces written back to back)."""
        length = sum(d.nbytes if isinstance(d, np.ndarray) else len(d) for d in data)
        view: dict = {"buffer": 0, "byteOffset": self._append(*data), "byteLength": length}
        if target is not None:
            view["target"] = target
        if stride is not None:
            view["byteStride"] = stride
        self.views.append(view)
        return len(self.views) - 1

    def add(self, key: tuple, data: np.ndarray, accessor: dict) -> None:
        """Queue `data` (rows of one vertex, or triangles) for the view of layout `key`, which
        starts with "vertex" or "index" and, for vertices, ends with the meshopt filter."""
        self.groups.setdefault(key, []).append((data, accessor))

    def finish(self) -> None:
        while self.groups:  # each layout's arrays are let go as soon as they are in its view
            key = next(iter(self.groups))
            entries = self.groups.pop(key)
            vertex = key[0] == "vertex"
            offset = 0
            for data, accessor in entries:
                if offset:
                    accessor["byteOffset"] = offset
                accessor["bufferView"] = len(self.views)
                offset += data.nbytes
            rows = [np.ascontiguousarray(d.reshape(len(d), -1)) for d, _ in entries]
            target, mode = (ARRAY_BUFFER, "ATTRIBUTES") if vertex else (ELEMENT_ARRAY_BUFFER, "TRIANGLES")
            stride = rows[0].shape[1] * rows[0].itemsize if vertex else rows[0].itemsize
            if not self.compress:  # the arrays themselves, back to back: the same bytes as their concatenation
                self.plain_view(*rows, target=target, stride=stride if vertex else None)
                continue
            self._encoded_view(np.concatenate(rows), target, mode, stride, key[-1] if vertex else None)

    def _encoded_view(self, stream: np.ndarray, target: int, mode: str, stride: int, filter: str | None) -> None:
        vertex = target == ARRAY_BUFFER
        encoded = meshopt.encode_vertices(stream) if vertex else meshopt.encode_triangles(stream, int(stream.max()) + 1)
        view: dict = {
            "buffer": 1,
            "byteOffset": self.fallback_size,
            "byteLength": stream.nbytes,
            "target": target,
            "extensions": {
                EXT_MESHOPT: {
                    "buffer": 0,
                    "byteOffset": self._append(encoded),
                    "byteLength": len(encoded),
                    "byteStride": stride,
                    "mode": mode,
                    "count": stream.size // (stride // stream.itemsize),
                }
            },
        }
        if filter:
            view["extensions"][EXT_MESHOPT]["filter"] = filter
        if vertex:
            view["byteStride"] = stride
        self.fallback_size += stream.nbytes + (-stream.nbytes % 4)
        self.views.append(view)

    def buffers(self) -> list[dict]:
        out = [{"byteLength": self.size}] if self.size else []
        if self.fallback_size:
            out.append({"byteLength": self.fallback_size, "extensions": {EXT_MESHOPT: {"fallback": True}}})
        return out


@dataclass(slots=True)
class _Stream:
    """One vertex attribute as stored: rows padded to 4 bytes, and how an accessor reads them."""

    data: np.ndarray
    ctype: int
    kind: str
    normalized: bool = False
    values: np.ndarray | None = None  # what a reader decodes, for POSITION's required min/max
    filter: str | None = None  # meshopt filter the data is encoded with


@dataclass(slots=True)
class _Base:
    """A written base primitive, for LOD levels that share its vertices."""

    source: Primitive
    attributes: dict[str, int]
    remap: np.ndarray | None  # source vertex -> written vertex, when compression reordered them
    vertex_count: int


@dataclass(slots=True)
class _Prepared:
    """A primitive as it will be written."""

    streams: dict[str, _Stream]
    triangles: np.ndarray | None  # None for points
    remap: np.ndarray | None  # source vertex -> written vertex, when compression reordered them
    digest: bytes  # of what it draws; where compression reorders anyway, independent of the source order


class _GltfWriter:
    def __init__(self, scene: Scene, compress: bool, lod: bool) -> None:
        self.scene = scene
        self.compress = compress
        self.lod = lod
        self.bin = _Binary(compress)
        self.accessors: list[dict] = []
        self.meshes: list[dict] = []
        self.images: list[dict] = []
        self.textures: list[dict] = []
        # Scene mesh id -> glTF mesh index (None: nothing drawable)
        self.mesh_index: dict[str, int | None] = {}
        # digest of the written geometry -> glTF mesh index, so identical meshes are written once
        self.geometry_index: dict[bytes, int | None] = {}

    # -- accessors -------------------------------------------------------------------------------
    def _accessor(self, stream: _Stream | None, ctype: int, count: int, kind: str) -> int:
        """A new accessor; `_Binary.finish` fills in its bufferView and byteOffset."""
        acc: dict = {"componentType": ctype, "count": count, "type": kind}
        if stream is not None and stream.normalized:
            acc["normalized"] = True
        if stream is not None and stream.values is not None:
            acc["min"], acc["max"] = _short(stream.values.min(axis=0)), _short(stream.values.max(axis=0))
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def _vertex_streams(self, prim: Primitive, exponent: int | None) -> dict[str, _Stream]:
        """The primitive's attributes as stored: float32, or quantised when compressing."""
        f32 = meshopt.GLTF_FLOAT
        if exponent is None:
            positions = _f32(prim.positions)
            out = {"POSITION": _Stream(positions, f32, "VEC3", values=positions)}
        else:
            encoded, decoded = meshopt.exponential_positions(prim.positions, exponent)
            out = {"POSITION": _Stream(encoded, f32, "VEC3", values=decoded, filter="EXPONENTIAL")}
        if prim.normals is not None:
            unit = _unit(prim.normals)
            out["NORMAL"] = (
                _Stream(
                    meshopt.octahedral_normals(unit), meshopt.GLTF_BYTE, "VEC3", normalized=True, filter="OCTAHEDRAL"
                )
                if self.compress
                else _Stream(unit, f32, "VEC3")
            )
        if prim.uvs is not None:
            out["TEXCOORD_0"] = (
                _Stream(meshopt.quantize_uvs(prim.uvs), meshopt.GLTF_UNSIGNED_SHORT, "VEC2", normalized=True)
                if self.compress and meshopt.uvs_fit_unit(prim.uvs)
                else _Stream(_f32(prim.uvs), f32, "VEC2")
            )
        if prim.colors is not None:
            out["COLOR_0"] = (
                _Stream(meshopt.quantize_colors(prim.colors), meshopt.GLTF_UNSIGNED_BYTE, "VEC4", normalized=True)
                if self.compress
                else _Stream(_f32(np.clip(prim.colors, 0, 1)), f32, "VEC4")
            )
        return out

    def _attributes(self, streams: dict[str, _Stream]) -> dict[str, int]:
        attrs = {}
        for semantic, st in streams.items():
            attrs[semantic] = self._accessor(st, st.ctype, len(st.data), st.kind)
            key = ("vertex", semantic, st.ctype, st.data.shape[1], st.normalized, st.filter)
            self.bin.add(key, st.data, self.accessors[-1])
        return attrs

    def _indices(self, triangles: np.ndarray, vertex_count: int) -> int:
        small = vertex_count <= UINT16_INDEX_LIMIT
        dtype, ctype = (np.uint16, meshopt.GLTF_UNSIGNED_SHORT) if small else (np.uint32, meshopt.GLTF_UNSIGNED_INT)
        index = self._accessor(None, ctype, triangles.size, "SCALAR")
        self.bin.add(("index", ctype), np.ascontiguousarray(triangles, dtype=dtype), self.accessors[index])
        return index

    # -- meshes ----------------------------------------------------------------------------------
    def mesh(self, mesh: Mesh) -> int | None:
        """The glTF mesh index for a Scene mesh, written on first use; None if nothing is drawable.
        A mesh whose written geometry equals one already written (same shape under another IFC
        representation) draws that one instead: its node simply references the same glTF mesh."""
        if mesh.id in self.mesh_index:
            return self.mesh_index[mesh.id]
        prims = [p for p in mesh.primitives if len(p.positions)]
        # Levels parallel mesh.primitives and share their vertices, so they filter the same way.
        levels = [[p for p in level if len(p.positions)] for level in lods_for(mesh)] if self.lod else []
        exponent = None
        if self.compress and prims:
            exponent = meshopt.position_exponent([p.positions for level in [prims, *levels] for p in level])
        prepared = [self._prepare(prim, exponent) for prim in prims]
        key = _geometry_key(prims, prepared)
        if key in self.geometry_index:
            self.mesh_index[mesh.id] = self.geometry_index[key]
            return self.geometry_index[key]
        gltf_prims: list[dict | None] = []
        bases: list[_Base | None] = []
        for prim, ready in zip(prims, prepared, strict=True):
            if ready is None:  # every triangle collapsed under quantisation
                bases.append(None)
                continue
            vertex_count = len(ready.streams["POSITION"].data)
            attrs = self._attributes(ready.streams)
            gltf_prims.append(self._primitive(prim.material, ready.triangles, attrs, vertex_count))
            bases.append(_Base(prim, attrs, ready.remap, vertex_count))
        gltf_prims = [p for p in gltf_prims if p is not None]
        index = None
        if gltf_prims:
            index = len(self.meshes)
            self.meshes.append({"name": mesh.id, "primitives": gltf_prims})
            lods = [self._lod_mesh(mesh.id, k, level, bases, exponent) for k, level in enumerate(levels)]
            lods = [lod for lod in lods if lod is not None]
            if lods:
                self.meshes[index]["extras"] = {"lods": lods}
        self.mesh_index[mesh.id] = self.geometry_index[key] = index
        return index

    def _prepare(self, prim: Primitive, exponent: int | None) -> _Prepared | None:
        """A primitive's streams and triangles as they will be written; None when nothing is left."""
        streams = self._vertex_streams(prim, exponent)
        if self.compress and prim.indices is not None:
            ready = _compact(streams, prim.indices)
        else:
            ready = _Prepared(streams, prim.indices, None, _digest(streams, prim.indices))
        return ready if len(ready.streams["POSITION"].data) else None

    def _primitive(
        self, material: int, triangles: np.ndarray | None, attrs: dict[str, int], vertex_count: int
    ) -> dict | None:
        """A glTF primitive, or None when every triangle collapsed (glTF forbids empty accessors)."""
        if triangles is not None and not len(triangles):
            return None
        out: dict = {"attributes": attrs, "material": material}
        if triangles is None:
            out["mode"] = MODE_POINTS
        else:
            out["indices"] = self._indices(triangles, vertex_count)
        return out

    def _lod_mesh(
        self, mesh_id: str, level: int, prims: list[Primitive], bases: list[_Base | None], exponent: int | None
    ) -> dict | None:
        """A coarser level: reuses the base primitive's vertex accessors when it shares its vertices."""
        gltf_prims = []
        for prim, base in zip(prims, bases, strict=True):
            if base is None:
                continue
            if prim.positions is not base.source.positions:
                attrs = self._attributes(self._vertex_streams(prim, exponent))
                gltf_prims.append(self._primitive(prim.material, prim.indices, attrs, len(prim.positions)))
                continue
            triangles = prim.indices
            if triangles is not None and base.remap is not None:
                mapped = base.remap[triangles]
                # A vertex only degenerate base triangles used was dropped; so are its triangles.
                mapped = _drop_degenerate(mapped[(mapped >= 0).all(axis=1)])
                triangles = meshopt.cache_order(mapped, base.vertex_count)
            gltf_prims.append(self._primitive(prim.material, triangles, base.attributes, base.vertex_count))
        gltf_prims = [p for p in gltf_prims if p is not None]
        if not gltf_prims:
            return None
        self.meshes.append({"name": f"{mesh_id}#lod{level + 1}", "primitives": gltf_prims})
        written = sum(self.accessors[p["indices"]]["count"] // 3 for p in gltf_prims if "indices" in p)
        return {"mesh": len(self.meshes) - 1, "triangles": written}

    # -- materials -------------------------------------------------------------------------------
    def material(self, mat: Material) -> dict:
        pbr: dict = {
            "baseColorFactor": _short(np.asarray(mat.base_color)),
            "metallicFactor": _short(np.asarray([mat.metallic]))[0],
            "roughnessFactor": _short(np.asarray([mat.roughness]))[0],
        }
        if mat.texture:
            view = self.bin.plain_view(mat.texture)
            self.images.append({"bufferView": view, "mimeType": mat.texture_mime or _sniff_mime(mat.texture)})
            self.textures.append({"source": len(self.images) - 1, "sampler": 0})
            pbr["baseColorTexture"] = {"index": len(self.textures) - 1}
        out: dict = {"name": mat.name, "pbrMetallicRoughness": pbr}
        if mat.base_color[3] < 1.0:
            out["alphaMode"] = "BLEND"
        if mat.double_sided:
            out["doubleSided"] = True
        return out

    # -- document --------------------------------------------------------------------------------
    def document(self) -> tuple[dict, GlbStats]:
        scene = self.scene
        elements = list(scene.elements.values())
        nodes = [{"name": e.id, "extras": {"id": e.id, "name": e.name, "class": e.cls}} for e in elements]
        position = {e.id: i for i, e in enumerate(elements)}
        roots: list[int] = []
        locals_, baked = node_transforms(scene)
        for i, (el, local) in enumerate(zip(elements, locals_, strict=True)):
            nodes[i].update(_transform(local))
            if el.parent is None:
                roots.append(i)
            else:
                nodes[position[el.parent]].setdefault("children", []).append(i)
        stats = GlbStats(len(nodes), 0, 0, 0, 0, 0, 0)
        for i, el in enumerate(elements):
            mesh = scene.meshes.get(el.mesh) if el.mesh else None
            if mesh is not None and i in baked:  # this element's own copy, with the non-TRS rest baked in
                mesh = Mesh(f"{mesh.id}@{el.id}", [bake_linear(p, baked[i]) for p in mesh.primitives])
            index = None if mesh is None else self.mesh(mesh)
            if index is None:
                continue
            nodes[i]["mesh"] = index
            stats.triangles += mesh.triangle_count
            stats.points += mesh.point_count
            stats.draw_calls_estimate += len(self.meshes[index]["primitives"])
        materials = [self.material(m) for m in scene.materials]
        self.bin.finish()
        stats.nodes = len(nodes)
        written = {i for i in self.mesh_index.values() if i is not None}
        stats.meshes = len(written)
        stats.primitives = sum(len(self.meshes[i]["primitives"]) for i in written)
        doc: dict = {
            "asset": {"version": "2.0", "generator": GENERATOR},
            "scene": 0,
            "scenes": [{"nodes": roots}] if roots else [{}],
            "nodes": nodes,
            "meshes": self.meshes,
            "materials": materials,
            "accessors": self.accessors,
            "bufferViews": self.bin.views,
            "buffers": self.bin.buffers(),
            "images": self.images,
            "textures": self.textures,
            "samplers": [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": REPEAT, "wrapT": REPEAT}]
            if self.textures
            else [],
        }
        if self.compress and self.meshes:
            doc["extensionsUsed"] = [EXT_QUANTIZATION, EXT_MESHOPT]
            doc["extensionsRequired"] = [EXT_QUANTIZATION, EXT_MESHOPT]
        # glTF forbids empty top-level arrays.
        return {k: v for k, v in doc.items() if v != []}, stats


def write_glb(scene: Scene, path: Path, *, compress: bool = False, lod: bool = False) -> GlbStats:
    """Write `scene` as a self-contained GLB; with `lod`, fills `Mesh.lods` of large meshes."""
    import orjson

    writer = _GltfWriter(scene, compress, lod)
    doc, stats = writer.document()
    json_bytes = orjson.dumps(doc)
    json_bytes += b" " * (-len(json_bytes) % 4)
    body = writer.bin.size
    total = 12 + 8 + len(json_bytes) + (8 + body if body else 0)
    with open(path, "wb") as f:
        f.write(GLB_MAGIC + struct.pack("<II", GLB_VERSION, total))
        f.write(struct.pack("<II", len(json_bytes), CHUNK_JSON) + json_bytes)
        if body:
            f.write(struct.pack("<II", body, CHUNK_BIN))
            for part in writer.bin.parts:
                f.write(part)
    stats.bytes = total
    return stats


def node_transforms(scene: Scene) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Local matrices glTF nodes can hold, in Scene order, and {element index: 3x3 to bake into its mesh}.
    An element whose local matrix is not TRS keeps its rigid part (`split_shear`); as its node then no
    longer carries its world transform, its children's local matrices are taken against what it does carry."""
    local = local_matrices(scene)
    if all(split_shear(m)[1] is None for m in local):
        return local, {}
    elements = list(scene.elements.values())
    position = {e.id: i for i, e in enumerate(elements)}
    node_world = np.stack([e.matrix for e in elements]).astype(np.float64)
    moved: set[int] = set()  # elements whose node carries less than their world matrix (the rest is baked)
    baked: dict[int, np.ndarray] = {}
    for i, el in enumerate(elements):  # parents come first
        parent = position[el.parent] if el.parent is not None else None
        if parent in moved:
            local[i] = np.round(np.linalg.inv(node_world[parent]) @ el.matrix, MATRIX_DECIMALS) + 0.0
        rigid, rest = split_shear(local[i])
        if rest is not None:
            local[i] = rigid
            node_world[i] = rigid if parent is None else node_world[parent] @ rigid
            baked[i] = rest
            moved.add(i)
    return local, baked


def _transform(local: np.ndarray) -> dict:
    """The shortest exact glTF form: nothing, translation, translation + rotation, or a matrix."""
    out: dict = {}
    rotation, t = local[:3, :3], local[:3, 3]
    if not np.array_equal(local[3], [0, 0, 0, 1]):
        return {"matrix": _numbers(local.T.ravel())}
    if not np.array_equal(rotation, np.eye(3)):
        rigid = np.allclose(rotation.T @ rotation, np.eye(3), atol=ROTATION_TOLERANCE)
        if not rigid or np.linalg.det(rotation) < 0:
            return {"matrix": _numbers(local.T.ravel())}  # glTF matrices are column-major
        out["rotation"] = _quaternion(rotation)
    if t.any():
        out["translation"] = _numbers(t)
    return out


def _quaternion(r: np.ndarray) -> list[float]:
    """Unit quaternion (x, y, z, w), w >= 0, of a rotation matrix (Shepperd's method)."""
    squares = np.array(
        [
            1 + r[0, 0] + r[1, 1] + r[2, 2],
            1 + r[0, 0] - r[1, 1] - r[2, 2],
            1 - r[0, 0] + r[1, 1] - r[2, 2],
            1 - r[0, 0] - r[1, 1] + r[2, 2],
        ]
    )
    i = int(squares.argmax())
    s = 2 * np.sqrt(squares[i])
    if i == 0:
        q = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4]
    elif i == 1:
        q = [s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
    elif i == 2:
        q = [(r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
    else:
        q = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4, (r[1, 0] - r[0, 1]) / s]
    quat = np.array(q) * (1 if q[3] >= 0 else -1)
    return _numbers(np.round(quat / np.linalg.norm(quat), MATRIX_DECIMALS))


def _compact(streams: dict[str, _Stream], triangles: np.ndarray) -> _Prepared:
    """Merge duplicate vertices, drop the triangles that collapse, order triangles and vertices for the codecs."""
    names = list(streams)
    arrays, triangles, merged, first = meshopt.deduplicate([streams[n].data for n in names], triangles)
    # Corners that share a quantised position but not a normal stay distinct vertices; their triangle has no area.
    triangles = triangles[_has_area(meshopt.same_rows(arrays[names.index("POSITION")])[triangles])]
    canonical = meshopt.canonical_triangles(triangles)
    # Deduplicated vertices are numbered by value, so this digest ignores the source's vertex and triangle order.
    digest = _digest({n: replace(streams[n], data=a) for n, a in zip(names, arrays, strict=True)}, canonical)
    # The cache optimiser's result depends on the order it starts from, and neither the source's order nor the
    # canonical one codes smaller on every mesh (either wins by 1-2% on a whole IFC file): code both, keep the smaller.
    candidates = [meshopt.optimize_order(t, len(arrays[0])) for t in (triangles, canonical)]
    sizes = [meshopt.coded_size([a[_written(remap)] for a in arrays], t) for t, remap in candidates]
    triangles, ordered = candidates[int(np.argmin(sizes))]
    order = _written(ordered)
    out = {}
    for name, data in zip(names, arrays, strict=True):
        st = streams[name]
        values = None if st.values is None else st.values[first][order]
        out[name] = _Stream(np.ascontiguousarray(data[order]), st.ctype, st.kind, st.normalized, values, st.filter)
    return _Prepared(out, triangles, ordered[merged], digest)


def _written(remap: np.ndarray) -> np.ndarray:
    """The inverse of a vertex remap (-1 for dropped vertices): written vertex -> vertex before remapping."""
    used = np.flatnonzero(remap >= 0)
    order = np.empty(len(used), np.int64)
    order[remap[used]] = used
    return order


def _digest(streams: dict[str, _Stream], triangles: np.ndarray | None) -> bytes:
    """A digest of one primitive's streams (layout and bytes) and triangles."""
    digest = hashlib.blake2b(digest_size=20)
    for name, st in streams.items():
        digest.update(f"{name}:{st.data.dtype}:{st.data.shape}:{st.normalized}:{st.filter};".encode())
        digest.update(np.ascontiguousarray(st.data).tobytes())
    digest.update(b"points" if triangles is None else np.ascontiguousarray(triangles, np.uint32).tobytes())
    return digest.digest()


def _geometry_key(prims: list[Primitive], prepared: list[_Prepared | None]) -> bytes:
    """Equal keys mean interchangeable glTF meshes: the same materials drawing the same geometry."""
    return b"".join(
        f"{p.material}:".encode() + (b"-" if ready is None else ready.digest)
        for p, ready in zip(prims, prepared, strict=True)
    )


def _drop_degenerate(triangles: np.ndarray) -> np.ndarray:
    """Triangles whose corners merged into fewer than three vertices draw nothing."""
    return triangles[_has_area(triangles)]


def _has_area(corners: np.ndarray) -> np.ndarray:
    """Which rows of (t, 3) corner ids name three different corners."""
    c = corners
    return (c[:, 0] != c[:, 1]) & (c[:, 1] != c[:, 2]) & (c[:, 0] != c[:, 2])


def _short(values: np.ndarray) -> list[float | int]:
    """float32 values as the shortest decimals that read back as the same float32 (as gltfpack
    writes them; the validator compares min/max in float32)."""
    return _numbers(np.array([float(str(v)) for v in values.astype(np.float32)]))


def _numbers(values: np.ndarray) -> list[float | int]:
    """Numbers for the JSON, whole ones as integers: "0", not "0.0"."""
    return [int(v) if v.is_integer() else v for v in values.astype(np.float64).tolist()]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _unit(normals: np.ndarray) -> np.ndarray:
    """Unit normals as glTF requires; zero-length ones (degenerate faces) point up."""
    n = normals.astype(np.float32)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-12), np.array([0, 1, 0], np.float32))


def _sniff_mime(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
