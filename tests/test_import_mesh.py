"""Mesh importers: glTF/GLB (incl. Draco, meshopt, quantization, sparse), OBJ+MTL, STL, PLY, OFF, 3MF.

Triangle counts are the ones SOURCES.md records for each corpus file.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from scene.errors import ImportFailed
from scene.importers import ImportOptions, loader_for
from scene.model import Scene

OPTIONS = ImportOptions()


def load(path: Path) -> Scene:
    return loader_for(path)(path, OPTIONS)


def unique_triangles(scene: Scene) -> int:
    return sum(m.triangle_count for m in scene.meshes.values())


# --- glTF corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "triangles"),
    [
        ("gltf/Box.glb", 12),
        ("gltf/Box_Draco.glb", 12),
        ("gltf/BoxMeshopt.glb", 12),
        ("gltf/Box_glTF-Embedded/Box.gltf", 12),
        ("gltf/BoxTextured/BoxTextured.gltf", 12),
        ("gltf/CesiumMilkTruck.glb", 2856),
        ("gltf/Fox/Fox.gltf", 576),
        ("gltf/MultiUVTest/MultiUVTest.gltf", 12),
        ("gltf/SimpleSparseAccessor/SimpleSparseAccessor.gltf", 12),
        ("gltf/VertexColorTest/VertexColorTest.gltf", 36),
        ("gltf/AnimatedMorphCube/AnimatedMorphCube.gltf", 12),
        ("gltf/KHR_mesh_quantization_valid.gltf", 1),
    ],
)
def test_gltf_corpus_loads_with_source_triangle_counts(shared_data: Path, relative: str, triangles: int) -> None:
    scene = load(shared_data / relative)
    assert unique_triangles(scene) == triangles
    record = scene.inputs[0]
    assert record.format == "gltf" and len(record.sha256) == 64 and record.source_up_axis == "Y"
    assert all(e.cls in ("GltfNode", "GltfMesh") for e in scene.elements.values())


def test_draco_and_meshopt_boxes_decode_to_the_same_geometry_as_the_plain_box(shared_data: Path) -> None:
    def world_bounds(scene: Scene) -> np.ndarray:
        boxes = [scene.world_bounds(e) for e in scene.elements if scene.elements[e].mesh]
        return np.array([np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)])

    plain = world_bounds(load(shared_data / "gltf/Box.glb"))
    for variant in ("gltf/Box_Draco.glb", "gltf/BoxMeshopt.glb"):
        scene = load(shared_data / variant)
        np.testing.assert_allclose(world_bounds(scene), plain, atol=1e-3)
        normals = next(iter(scene.meshes.values())).primitives[0].normals
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)  # quantized, renormalised


def test_gltf_node_tree_becomes_elements_with_stable_ids(shared_data: Path) -> None:
    path = shared_data / "gltf/CesiumMilkTruck.glb"
    scene = load(path)
    names = sorted(e.name for e in scene.elements.values())
    assert names == ["Cesium_Milk_Truck", "Wheels", "Wheels", "node1", "node3"]  # unnamed nodes: mesh name
    wheels = [e for e in scene.elements.values() if e.name == "Wheels"]
    assert wheels[0].mesh == wheels[1].mesh  # one mesh, instanced twice
    assert all(w.parent is not None for w in wheels)
    assert list(load(path).elements) == list(scene.elements)  # re-import: same ids, same order
    truck = next(m for m in scene.materials if m.name == "truck")
    assert truck.texture_mime == "image/png" and truck.texture is not None


def test_gltf_vertex_colours_and_second_uv_set(shared_data: Path) -> None:
    scene = load(shared_data / "gltf/VertexColorTest/VertexColorTest.gltf")
    colored = [p for m in scene.meshes.values() for p in m.primitives if p.colors is not None]
    assert colored and all(p.colors.shape[1] == 4 for p in colored)
    multi = load(shared_data / "gltf/MultiUVTest/MultiUVTest.gltf")
    prim = next(iter(multi.meshes.values())).primitives[0]
    assert prim.uvs is not None and prim.uvs.shape == (len(prim.positions), 2)


def test_sparse_accessor_overrides_positions(shared_data: Path) -> None:
    scene = load(shared_data / "gltf/SimpleSparseAccessor/SimpleSparseAccessor.gltf")
    positions = next(iter(scene.meshes.values())).primitives[0].positions
    assert positions[:, 1].max() > 1.5  # the sparse values lift some vertices to y=4 above the base grid


# --- malformed glTF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("malformed/glb/empty_file.glb", "contains no geometry"),
        ("malformed/glb/invalid_magic.glb", "invalid GLB magic"),
        ("malformed/glb/length_mismatch.glb", "GLB length mismatch"),
        ("malformed/glb/chunk_too_big.glb", "GLB length mismatch"),
        ("malformed/glb/truncated_chunk_data.glb", "(truncated)"),
        ("malformed/glb/truncated_chunk_header.glb", "truncated GLB chunk header"),
        ("malformed/glb/invalid_json_chunk.glb", "invalid JSON"),
        ("malformed/gltf/buffer/invalid_uri_data.gltf", "malformed data: URI"),
        ("malformed/gltf/buffer_view/invalid_length.gltf", "bufferView runs past the end of its buffer"),
        ("malformed/gltf/accessor_data/out_of_range_elements_uint16.gltf", "contains no geometry"),
    ],
)
def test_malformed_gltf_fails_with_a_clear_reason(shared_data: Path, relative: str, reason: str) -> None:
    with pytest.raises(ImportFailed) as info:
        load(shared_data / relative)
    assert reason in info.value.reason


def _gltf_box(tmp_path: Path, buffer_uri: str | None = None, image_uri: str | None = None, **accessor: object) -> Path:
    """A one-triangle glTF with its buffer beside it (or at `buffer_uri`)."""
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32).tobytes()
    (tmp_path / "tri.bin").write_bytes(positions)
    doc: dict = {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": buffer_uri or "tri.bin", "byteLength": len(positions)}],
        "bufferViews": [{"buffer": 0, "byteLength": len(positions)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", **accessor}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.1, 0.2, 0.3, 1.0]}}],
        "nodes": [{"name": "tri", "mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    if image_uri:
        doc["images"] = [{"uri": image_uri}]
        doc["textures"] = [{"source": 0}]
        doc["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0}
    path = tmp_path / "tri.gltf"
    path.write_text(json.dumps(doc))
    return path


def test_gltf_material_factor_and_node_name(tmp_path: Path) -> None:
    scene = load(_gltf_box(tmp_path))
    (element,) = scene.elements.values()
    assert element.name == "tri" and element.id == "tri:/tri"
    assert scene.materials[0].base_color == (0.1, 0.2, 0.3, 1.0)


@pytest.mark.parametrize(
    ("accessor", "reason"),
    [
        ({"count": 2**31}, "is not an integer in 0.."),  # refused before anything is allocated
        ({"count": 1000}, "accessor reads past the end of bufferView"),
        ({"bufferView": 7}, "reference to missing bufferView 7"),
        ({"componentType": 9999}, "unsupported componentType"),
    ],
)
def test_forged_accessors_fail_before_allocating(tmp_path: Path, accessor: dict, reason: str) -> None:
    with pytest.raises(ImportFailed) as info:
        load(_gltf_box(tmp_path, **accessor))
    assert reason in info.value.reason


def test_shared_child_node_is_refused(tmp_path: Path) -> None:
    path = _gltf_box(tmp_path)
    doc = json.loads(path.read_text())
    doc["nodes"] = [{"children": [2, 2]}, {"children": [0]}, {"mesh": 0}]  # node 2 twice: a DAG, not a tree
    doc["scenes"] = [{"nodes": [0]}]
    path.write_text(json.dumps(doc))
    with pytest.raises(ImportFailed) as info:
        load(path)
    assert "reached twice" in info.value.reason and info.value.where == "nodes[2]"


def test_twinview_ids_in_node_extras_are_kept_and_other_extras_become_properties(tmp_path: Path) -> None:
    path = _gltf_box(tmp_path)
    doc = json.loads(path.read_text())
    doc["nodes"][0]["extras"] = {"id": "2O2Fr$t4X7Zf8NOew3FLOH", "name": "Pump 7", "class": "IfcPump", "sensor": "p7"}
    path.write_text(json.dumps(doc))
    (element,) = load(path).elements.values()
    assert (element.id, element.name, element.cls) == ("2O2Fr$t4X7Zf8NOew3FLOH", "Pump 7", "IfcPump")
    assert element.properties == {"glTF extras": {"sensor": "p7"}}


def test_ids_survive_a_round_trip_through_twinview_glb(shared_data: Path, tmp_path: Path) -> None:
    from scene.export.glb import write_glb

    source = load(shared_data / "gltf/CesiumMilkTruck.glb")
    write_glb(source, tmp_path / "out.glb")
    again = load(tmp_path / "out.glb")
    assert [(e.id, e.name, e.cls, e.parent) for e in again.elements.values()] == [
        (e.id, e.name, e.cls, e.parent) for e in source.elements.values()
    ]
    for element in source.elements.values():
        np.testing.assert_allclose(again.elements[element.id].matrix, element.matrix, atol=1e-5)
    assert again.triangle_count == source.triangle_count


def test_accessor_outside_declared_bounds_is_a_warning(tmp_path: Path) -> None:
    scene = load(_gltf_box(tmp_path, min=[0, 0, 0], max=[0.5, 0.5, 0.0]))
    assert any("outside its declared max" in w for w in scene.warnings)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("https://example.com/tri.bin", "external URI"),
        ("file:///etc/passwd", "external URI"),
        ("../tri.bin", "outside the model's folder"),
        ("/etc/passwd", "absolute path"),
    ],
)
def test_gltf_buffer_uris_never_leave_the_folder(tmp_path: Path, uri: str, reason: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ImportFailed) as info:
        load(_gltf_box(model, buffer_uri=uri))
    assert reason in info.value.reason and info.value.where == uri


def test_gltf_symlink_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 36)
    model = tmp_path / "model"
    model.mkdir()
    (model / "link.bin").symlink_to(secret)
    with pytest.raises(ImportFailed, match="outside the model's folder"):
        load(_gltf_box(model, buffer_uri="link.bin"))


def test_remote_texture_is_skipped_with_a_warning(tmp_path: Path) -> None:
    scene = load(_gltf_box(tmp_path, image_uri="http://example.com/t.png"))
    assert scene.materials[0].texture is None
    assert any("remote URL" in w for w in scene.warnings)


def test_glb_with_embedded_buffer_roundtrips_through_the_reader(tmp_path: Path) -> None:
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32).tobytes()
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(positions)}],
        "bufferViews": [{"buffer": 0, "byteLength": len(positions)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
    }
    body = json.dumps(doc).encode().ljust(4 * ((len(json.dumps(doc)) + 3) // 4), b" ")
    json_chunk = struct.pack("<II", len(body), 0x4E4F534A) + body
    chunks = json_chunk + struct.pack("<II", len(positions), 0x004E4942) + positions
    path = tmp_path / "tri.glb"
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)
    scene = load(path)
    assert scene.triangle_count == 1 and next(iter(scene.elements.values())).name == "node0"
    data_uri = "data:application/octet-stream;base64," + base64.b64encode(positions).decode()
    assert load(_gltf_box(tmp_path, buffer_uri=data_uri)).triangle_count == 1


# --- OBJ / STL / PLY / OFF / 3MF --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "triangles"),
    [
        ("mesh/obj/box/box.obj", 12),
        ("mesh/obj/fuze/fuze.obj", 1000),
        ("mesh/stl/featuretype.STL", 3476),
        ("mesh/stl/test_sphere.stl", 224),
        ("mesh/stl/test_sphere_ascii.stl", 224),
        ("mesh/ply/fuze.ply", 1000),
        ("mesh/ply/test_pos_color.ply", 224),
    ],
)
def test_mesh_corpus_triangle_counts(shared_data: Path, relative: str, triangles: int) -> None:
    scene = load(shared_data / relative)
    assert scene.triangle_count == triangles
    (root,) = scene.roots()
    assert scene.elements[root].name == Path(relative).stem


def test_obj_materials_and_texture_with_a_space_in_its_name(shared_data: Path) -> None:
    box = load(shared_data / "mesh/obj/box/box.obj")
    assert sorted(m.name for m in box.materials) == ["Material", "SecondMaterial"]
    assert all(m.texture is None for m in box.materials)
    fuze = load(shared_data / "mesh/obj/fuze/fuze.obj")  # map_Kd fuze uv.jpg
    assert fuze.materials[0].texture_mime == "image/jpeg"
    prim = next(iter(fuze.meshes.values())).primitives[0]
    assert prim.uvs is not None and prim.uvs.shape == (len(prim.positions), 2)


def test_ply_vertex_colours_survive(shared_data: Path) -> None:
    scene = load(shared_data / "mesh/ply/test_pos_color.ply")
    prim = next(iter(scene.meshes.values())).primitives[0]
    assert prim.colors is not None and prim.colors.shape == (len(prim.positions), 4)
    assert len(np.unique(prim.colors.round(3), axis=0)) > 1


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("malformed/mesh/obj_empty.obj", "contains no geometry"),
        ("malformed/mesh/ply_empty_header.ply", "contains no geometry"),
        ("malformed/mesh/stl_empty_bin.stl", "contains no geometry"),
        ("malformed/mesh/inf_nan.obj", "8 NaN/infinite coordinate value(s)"),
        ("malformed/mesh/float_inf_point_cloud.ply", "3 NaN/infinite coordinate value(s)"),
        ("malformed/mesh/notenoughindices.obj", "face with fewer than 3 vertices"),
    ],
)
def test_malformed_meshes_fail_with_a_clear_reason(shared_data: Path, relative: str, reason: str) -> None:
    with pytest.raises(ImportFailed) as info:
        load(shared_data / relative)
    assert reason in info.value.reason


def test_obj_short_face_error_names_its_line(shared_data: Path) -> None:
    with pytest.raises(ImportFailed) as info:
        load(shared_data / "malformed/mesh/notenoughindices.obj")
    assert info.value.where == "line 9"


def test_missing_material_library_is_a_warning(tmp_path: Path) -> None:
    obj = tmp_path / "tri.obj"
    obj.write_text("mtllib gone.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    scene = load(obj)
    assert scene.triangle_count == 1 and any("gone.mtl not found" in w for w in scene.warnings)


def test_obj_material_library_outside_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "evil.mtl").write_text("newmtl m\nKd 1 0 0\n")
    model = tmp_path / "model"
    model.mkdir()
    obj = model / "tri.obj"
    obj.write_text("mtllib ../evil.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n")
    with pytest.raises(ImportFailed) as info:
        load(obj)
    assert "outside the model's folder" in info.value.reason and info.value.where == "../evil.mtl"


def test_off_and_3mf_written_by_trimesh(tmp_path: Path) -> None:
    import trimesh

    box = trimesh.creation.box(extents=[1.0, 2.0, 3.0])
    off = tmp_path / "box.off"
    box.export(off)
    scene = load(off)
    assert scene.triangle_count == 12 and scene.inputs[0].format == "off"
    three_mf = tmp_path / "pair.3mf"
    pair = trimesh.Scene()
    pair.add_geometry(box, node_name="a")
    pair.add_geometry(box, node_name="b", transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    pair.export(three_mf)
    scene = load(three_mf)
    assert scene.inputs[0].format == "3mf" and scene.inputs[0].source_units == "mm"
    assert scene.triangle_count == 24
    children = scene.children()[scene.roots()[0]]
    assert [scene.elements[c].name for c in children] == ["a", "b"]
    lo, hi = scene.world_bounds(children[1])  # millimetres in the file, metres in the scene
    np.testing.assert_allclose(hi - lo, [0.001, 0.002, 0.003], atol=1e-7)
    np.testing.assert_allclose((hi + lo) / 2, [0.005, 0, 0], atol=1e-7)


# --- glTF semantics a wrong constant would still "load": normalised integers, strip winding -----------------------


def _gltf_with(tmp_path: Path, attributes: dict[str, tuple[np.ndarray, int, str, bool]], mode: int = 4,
               indices: np.ndarray | None = None) -> Path:  # fmt: skip
    """A one-primitive glTF; attributes: name -> (data, componentType, type, normalized), each its own view."""
    blobs, views, accessors, attrs = [], [], [], {}
    offset = 0
    for name, (data, ctype, kind, normalized) in attributes.items():
        raw = np.ascontiguousarray(data).tobytes()
        raw += b"\0" * (-len(raw) % 4)
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw)})
        acc = {"bufferView": len(views) - 1, "componentType": ctype, "count": len(data), "type": kind}
        if normalized:
            acc["normalized"] = True
        if name == "POSITION":
            acc["min"], acc["max"] = data.min(axis=0).tolist(), data.max(axis=0).tolist()
        attrs[name] = len(accessors)
        accessors.append(acc)
        blobs.append(raw)
        offset += len(raw)
    primitive: dict = {"attributes": attrs, "mode": mode}
    if indices is not None:
        raw = indices.astype(np.uint16).tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(raw)})
        accessors.append({"bufferView": len(views) - 1, "componentType": 5123, "count": len(indices), "type": "SCALAR"})
        primitive["indices"] = len(accessors) - 1
        blobs.append(raw + b"\0" * (-len(raw) % 4))
    data = b"".join(blobs)
    doc = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_mesh_quantization"],
        "buffers": [{"uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode(),
                     "byteLength": len(data)}],
        "bufferViews": views,
        "accessors": accessors,
        "meshes": [{"primitives": [primitive]}],
        "nodes": [{"name": "n", "mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }  # fmt: skip
    path = tmp_path / "semantics.gltf"
    path.write_text(json.dumps(doc))
    return path


def test_normalised_integer_attributes_divide_by_the_type_maximum(tmp_path: Path) -> None:
    """glTF 2.0, "Animations / Accessor data": f = c / 255 (ubyte), c / 65535 (ushort), max(c / 127, -1) (byte),
    max(c / 32767, -1) (short) — not 256 or 65536, which would make full intensity 0.996."""
    from scene.importers.gltf_decode import read_gltf

    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    ubyte = np.array([[255, 0, 128, 255], [0, 255, 51, 255], [1, 2, 3, 0]], dtype=np.uint8)
    ushort = np.array([[65535, 0], [0, 65535], [32768, 13107]], dtype=np.uint16)
    byte = np.array([[127, 0, 0], [0, -127, 0], [0, 0, -128]], dtype=np.int8)
    short = np.array([[32767, 0], [-32767, 0], [-32768, 16384]], dtype=np.int16)
    path = _gltf_with(tmp_path, {
        "POSITION": (tri, 5126, "VEC3", False),
        "COLOR_0": (ubyte, 5121, "VEC4", True),
        "TEXCOORD_0": (ushort, 5123, "VEC2", True),
        "NORMAL": (byte, 5120, "VEC3", True),
        "TEXCOORD_1": (short, 5122, "VEC2", True),
    })  # fmt: skip
    doc = read_gltf(path)
    got = [doc.accessor(i) for i in range(1, 5)]
    np.testing.assert_array_equal(got[0], ubyte / np.float32(255))
    np.testing.assert_array_equal(got[1], ushort / np.float32(65535))
    np.testing.assert_array_equal(got[2], np.maximum(byte / np.float32(127), -1))
    np.testing.assert_array_equal(got[3], np.maximum(short / np.float32(32767), -1))
    assert got[0].max() == 1.0 and got[1].max() == 1.0 and got[2].min() == -1.0 and got[3].min() == -1.0
    (prim,) = load(path).meshes[next(iter(load(path).meshes))].primitives
    np.testing.assert_array_equal(prim.colors, ubyte / np.float32(255))  # what the scene keeps
    np.testing.assert_array_equal(prim.uvs, ushort / np.float32(65535))


def _facing(prim) -> np.ndarray:
    corners = prim.positions[prim.indices.astype(np.int64)]
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])[:, 2]


def test_triangle_strip_alternates_winding_so_every_face_points_the_same_way(tmp_path: Path) -> None:
    # A zig-zag strip over a flat band, counter-clockwise seen from +Z: 0-1-2 is CCW, 1-2-3 is CW as listed,
    # and glTF says the odd ones are (v1, v0, v2): every triangle then faces +Z.
    band = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 1, 0]], dtype=np.float32)
    band[:, 1] *= -1  # 0, 1, 2 counter-clockwise
    path = _gltf_with(tmp_path, {"POSITION": (band, 5126, "VEC3", False)}, mode=5)
    (prim,) = next(iter(load(path).meshes.values())).primitives
    assert len(prim.indices) == 4
    assert (_facing(prim) > 0).all(), _facing(prim)
    # Five of its vertices walked backwards (an odd count) face the other way, every triangle.
    indexed = _gltf_with(tmp_path, {"POSITION": (band, 5126, "VEC3", False)}, mode=5, indices=np.arange(5)[::-1])
    (prim,) = next(iter(load(indexed).meshes.values())).primitives
    assert len(prim.indices) == 3
    assert (_facing(prim) < 0).all(), _facing(prim)


def test_triangle_fan_keeps_its_winding(tmp_path: Path) -> None:
    fan = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [-1, 1, 0]], dtype=np.float32)
    path = _gltf_with(tmp_path, {"POSITION": (fan, 5126, "VEC3", False)}, mode=6)
    (prim,) = next(iter(load(path).meshes.values())).primitives
    assert prim.indices.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    assert (_facing(prim) > 0).all()


def test_a_gltf_mesh_used_by_many_nodes_stays_one_shared_mesh(tmp_path: Path) -> None:
    from scene.export.glb import write_glb

    doc = json.loads(_gltf_box(tmp_path).read_text())
    turns = [[0.0, float(np.sin(a / 2)), 0.0, float(np.cos(a / 2))] for a in np.radians(np.arange(40) * 9.0)]
    doc["nodes"] = [
        {"name": f"valve{i}", "mesh": 0, "translation": [i * 2.0, 0.0, 0.0], "rotation": turns[i]} for i in range(40)
    ]
    doc["scenes"] = [{"nodes": list(range(40))}]
    (tmp_path / "valves.gltf").write_text(json.dumps(doc))
    scene = load(tmp_path / "valves.gltf")
    assert len(scene.elements) == 40 and len(scene.meshes) == 1
    assert {e.mesh for e in scene.elements.values()} == set(scene.meshes)
    tip = scene.elements["valves:/valve10"].matrix @ [1.0, 0.0, 0.0, 1.0]  # 90 degrees about Y
    np.testing.assert_allclose(tip[:3], [20.0, 0.0, -1.0], atol=1e-6)
    write_glb(scene, tmp_path / "out.glb")
    again = load(tmp_path / "out.glb")
    assert len(again.meshes) == 1 and len(again.elements) == 40
