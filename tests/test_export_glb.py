"""The browser GLB: valid for Khronos, one node per element by twin id, shared meshes, LOD and meshopt."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from scene.export import meshopt
from scene.export.glb import write_glb
from scene.importers.gltf_decode import GltfDocument, read_gltf
from scene.model import Element, Mesh, Primitive, Scene
from scene.pipeline import BuildResult
from scene.validate import validate_glb
from tests.scene_factory import grid_scene, synthetic_scene

# What `--compress` may move a vertex, in its element's frame: half a quantisation step, and the writer keeps
# steps within 2^-10 m (~1 mm) or 2^-14 of the mesh's extent, whichever is larger.
POSITION_TOLERANCE_M = 0.5e-3
POSITION_TOLERANCE_OF_EXTENT = 1e-4
VARIANTS = {
    "plain": {},
    "compress": {"compress": True},
    "lod": {"lod": True},
    "compress_lod": {"compress": True, "lod": True},
}
DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    """A minimal GLB reader that also decodes EXT_meshopt_compression, to check what we wrote."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        magic, version, length = struct.unpack_from("<4sII", data)
        assert (magic, version, length) == (b"glTF", 2, len(data))
        json_len = struct.unpack_from("<I", data, 12)[0]
        self.doc = json.loads(data[20 : 20 + json_len])
        self.bin = data[28 + json_len :] if len(data) > 20 + json_len else b""

    def view_bytes(self, index: int) -> bytes:
        view = self.doc["bufferViews"][index]
        ext = view.get("extensions", {}).get("EXT_meshopt_compression")
        if ext is None:
            return self.bin[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
        encoded = self.bin[ext["byteOffset"] : ext["byteOffset"] + ext["byteLength"]]
        if ext["mode"] == "ATTRIBUTES":
            rows = meshopt.decode_vertices(encoded, ext["count"], ext["byteStride"], np.uint8)
            if ext.get("filter") == "EXPONENTIAL":
                rows = meshopt.decode_exponential(rows.view(np.int32))
            elif ext.get("filter") == "OCTAHEDRAL":
                rows = meshopt.decode_octahedral(rows.view(np.int8))
            return rows.tobytes()
        dtype = np.uint16 if ext["byteStride"] == 2 else np.uint32
        return meshopt.decode_triangles(encoded, ext["count"], ext["byteStride"]).astype(dtype).tobytes()

    def accessor(self, index: int) -> np.ndarray:
        acc = self.doc["accessors"][index]
        view = self.doc["bufferViews"][acc["bufferView"]]
        dtype = np.dtype(DTYPES[acc["componentType"]])
        width = WIDTH[acc["type"]]
        stride = view.get("byteStride", dtype.itemsize * width)
        start = acc.get("byteOffset", 0)
        raw = np.frombuffer(self.view_bytes(acc["bufferView"]), np.uint8)[start:]
        rows = raw[: acc["count"] * stride].reshape(acc["count"], stride)
        out = rows[:, : dtype.itemsize * width].copy().view(dtype).reshape(acc["count"], width)
        if acc.get("normalized"):
            out = np.maximum(out / np.iinfo(dtype).max, -1.0)
        return out

    def node_local(self, node: dict) -> np.ndarray:
        if "matrix" in node:
            return np.array(node["matrix"]).reshape(4, 4).T
        x, y, z, w = node.get("rotation", [0, 0, 0, 1])
        rotation = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        m = np.eye(4)
        m[:3, :3] = rotation * node.get("scale", [1, 1, 1])
        m[:3, 3] = node.get("translation", [0, 0, 0])
        return m

    def world_matrices(self) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}

        def walk(i: int, parent: np.ndarray) -> None:
            out[i] = parent @ self.node_local(self.doc["nodes"][i])
            for c in self.doc["nodes"][i].get("children", []):
                walk(c, out[i])

        for root in self.doc["scenes"][0].get("nodes", []):
            walk(root, np.eye(4))
        return out

    def element_geometry(self) -> dict[str, list[tuple[np.ndarray, np.ndarray, dict]]]:
        """Per twin id: (node world matrix, positions, primitive) of every primitive drawn for it."""
        world = self.world_matrices()
        nodes = self.doc["nodes"]
        owner = {}
        for i, node in enumerate(nodes):
            if "extras" in node:
                owner[i] = node["extras"]["id"]
                for c in node.get("children", []):
                    if "extras" not in nodes[c]:
                        owner[c] = node["extras"]["id"]
        out: dict[str, list] = {}
        for i, node in enumerate(nodes):
            if "mesh" in node:
                for prim in self.doc["meshes"][node["mesh"]]["primitives"]:
                    positions = self.accessor(prim["attributes"]["POSITION"])
                    out.setdefault(owner[i], []).append((world[i], positions, prim))
        return out


def written(tmp_path: Path, scene: Scene, variant: str) -> Glb:
    path = tmp_path / f"{variant}.glb"
    write_glb(scene, path, **VARIANTS[variant])
    return Glb(path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_passes_the_khronos_validator_without_warnings(tmp_path: Path, variant: str) -> None:
    path = tmp_path / "scene.glb"
    write_glb(synthetic_scene(), path, **VARIANTS[variant])
    assert validate_glb(path, warnings=True) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_node_per_element_named_by_id_with_extras_and_hierarchy(tmp_path: Path, variant: str) -> None:
    scene = synthetic_scene()
    nodes = written(tmp_path, scene, variant).doc["nodes"]
    elements = list(scene.elements.values())
    assert [n["name"] for n in nodes[: len(elements)]] == [e.id for e in elements]
    for node, el in zip(nodes, elements, strict=False):
        assert node["extras"] == {"id": el.id, "name": el.name, "class": el.cls}
    parent_of = {c: nodes[i]["name"] for i, n in enumerate(nodes) for c in n.get("children", [])}
    for i, el in enumerate(elements):
        assert parent_of.get(i) == el.parent
    assert len(nodes) == len(elements)


@pytest.mark.parametrize("variant", VARIANTS)
def test_world_bounds_per_element_round_trip(tmp_path: Path, variant: str) -> None:
    scene = synthetic_scene()
    geometry = written(tmp_path, scene, variant).element_geometry()
    assert set(geometry) == {e.id for e in scene.elements.values() if e.mesh}
    for el_id, prims in geometry.items():
        corners = []
        for world, positions, _ in prims:
            homogeneous = np.concatenate([positions, np.ones((len(positions), 1))], axis=1)
            corners.append((homogeneous @ world.T)[:, :3])
        stacked = np.concatenate(corners)
        lo, hi = scene.world_bounds(el_id)
        positions = [p.positions for p in scene.meshes[scene.elements[el_id].mesh].primitives]
        # Half a quantisation step, which rotation may spread over two axes.
        step = 2.0 ** meshopt.position_exponent(positions) if "compress" in variant else 0.0
        tolerance = 1e-5 + step
        np.testing.assert_allclose(stacked.min(axis=0), lo, atol=tolerance)
        np.testing.assert_allclose(stacked.max(axis=0), hi, atol=tolerance)


def test_shared_scene_mesh_is_written_once(tmp_path: Path) -> None:
    glb = written(tmp_path, synthetic_scene(), "plain")
    by_name = {n["name"]: n for n in glb.doc["nodes"]}
    assert by_name["wall0"]["mesh"] == by_name["wall1b"]["mesh"]
    assert len(glb.doc["meshes"]) == len(synthetic_scene().meshes)


def test_materials_blend_double_sided_texture_points_and_attributes(tmp_path: Path) -> None:
    glb = written(tmp_path, synthetic_scene(), "plain")
    mats = {m["name"]: m for m in glb.doc["materials"]}
    assert mats["Glass"]["alphaMode"] == "BLEND" and mats["Glass"]["doubleSided"] is True
    assert "alphaMode" not in mats["Concrete"]
    texture = glb.doc["textures"][mats["Poster"]["pbrMetallicRoughness"]["baseColorTexture"]["index"]]
    image = glb.doc["images"][texture["source"]]
    assert image["mimeType"] == "image/png"
    assert glb.view_bytes(image["bufferView"]).startswith(b"\x89PNG")
    meshes = {m["name"]: m for m in glb.doc["meshes"]}
    assert meshes["scan"]["primitives"][0]["mode"] == 0
    assert "indices" not in meshes["scan"]["primitives"][0]
    assert {"POSITION", "NORMAL", "TEXCOORD_0"} <= set(meshes["poster"]["primitives"][0]["attributes"])
    assert "COLOR_0" in meshes["crate"]["primitives"][0]["attributes"]


def _canonical_triangles(q: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Triangles as rows of 9 integers, each rotated to start at its smallest corner (keeps winding)."""
    corners = q[triangles]  # (t, 3, 3)
    keys = corners[:, :, 0] * 2**40 + corners[:, :, 1] * 2**20 + corners[:, :, 2]
    start = keys.argmin(axis=1)
    rolled = np.stack([corners[np.arange(len(corners)), (start + k) % 3] for k in range(3)], axis=1)
    rows = rolled.reshape(len(rolled), 9)
    return rows[np.lexsort(rows.T[::-1])]


def _non_degenerate(q: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """The triangles whose corners stay distinct after quantisation (the writer drops the others)."""
    corners = q[triangles]
    distinct = [(corners[:, a] != corners[:, b]).any(axis=1) for a, b in ((0, 1), (1, 2), (0, 2))]
    return triangles[distinct[0] & distinct[1] & distinct[2]]


def test_meshopt_stream_decodes_to_the_same_triangles_within_quantisation(tmp_path: Path) -> None:
    scene = synthetic_scene()
    glb = written(tmp_path, scene, "compress")
    assert set(glb.doc["extensionsRequired"]) == {"EXT_meshopt_compression", "KHR_mesh_quantization"}
    fallback = glb.doc["buffers"][1]
    assert "uri" not in fallback and fallback["extensions"]["EXT_meshopt_compression"]["fallback"] is True
    nodes = glb.doc["nodes"]
    assert len(nodes) == len(scene.elements)  # float positions: no dequantisation nodes
    for node, el in zip(nodes, scene.elements.values(), strict=True):
        assert ("mesh" in node) == (el.mesh is not None)
        if el.mesh is None:
            continue
        prims = scene.meshes[el.mesh].primitives
        exponent = meshopt.position_exponent([p.positions for p in prims])
        step = 2.0**exponent
        for prim, gprim in zip(prims, glb.doc["meshes"][node["mesh"]]["primitives"], strict=True):
            decoded = glb.accessor(gprim["attributes"]["POSITION"])
            expected = meshopt.exponential_positions(prim.positions, exponent)[1]
            assert np.abs(expected - prim.positions).max() <= step / 2 + 1e-7
            if prim.indices is None:
                np.testing.assert_array_equal(np.sort(decoded, axis=0), np.sort(expected, axis=0))
                continue
            got = _canonical_triangles(
                np.rint(decoded / step).astype(np.int64), glb.accessor(gprim["indices"]).reshape(-1, 3)
            )
            q = np.rint(expected / step).astype(np.int64)
            want = _canonical_triangles(q, _non_degenerate(q, prim.indices.astype(np.int64)))
            np.testing.assert_array_equal(got, want)
            if "NORMAL" in gprim["attributes"]:  # octahedral bytes decode to unit vectors
                normals = glb.accessor(gprim["attributes"]["NORMAL"])
                np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=0.02)


def test_identical_geometry_is_written_once_whatever_its_order(tmp_path: Path) -> None:
    scene = synthetic_scene()
    box = scene.meshes[scene.elements["wall0"].mesh].primitives[0]
    copy = Primitive(box.positions.copy(), box.indices.copy(), box.material, normals=box.normals.copy())
    shuffled = np.random.default_rng(1).permutation(len(box.positions))  # same triangles, other numbering and order
    inverse = np.argsort(shuffled)
    reordered = Primitive(
        box.positions[shuffled],
        inverse[box.indices][::-1].astype(np.uint32),
        box.material,
        normals=box.normals[shuffled],
    )
    recoloured = Primitive(box.positions, box.indices, 1 - box.material, normals=box.normals)
    for mesh_id, prim in (("copy", copy), ("reordered", reordered), ("recoloured", recoloured)):
        scene.meshes[mesh_id] = Mesh(mesh_id, [prim])
        scene.add(Element(mesh_id, mesh_id, "Wall", "storey$1", mesh=mesh_id))
    for variant, shared in (("plain", {"copy"}), ("compress", {"copy", "reordered"})):
        glb = written(tmp_path, scene, variant)
        by_name = {n["name"]: n for n in glb.doc["nodes"]}
        for mesh_id in ("copy", "reordered", "recoloured"):
            assert (by_name[mesh_id]["mesh"] == by_name["wall0"]["mesh"]) == (mesh_id in shared), (variant, mesh_id)
        assert validate_glb(tmp_path / f"{variant}.glb", warnings=True) == []


@pytest.fixture(scope="module", params=["AC20-FZK-Haus.ifc", "duplex.ifc"])
def real_ifc(request: pytest.FixtureRequest, shared_data: Path, corpus_build: Callable[[Path], BuildResult]) -> Scene:
    # Imported by `twinview build`'s pipeline (sandboxed: the IFC kernel can crash on real files), shared with
    # the corpus test's build of the same file.
    return corpus_build(shared_data / "ifc" / request.param).scene


def test_compressed_real_ifc_keeps_every_node_and_stays_within_tolerance_of_the_plain_build(
    tmp_path: Path, real_ifc: Scene
) -> None:
    write_glb(real_ifc, tmp_path / "plain.glb")
    write_glb(real_ifc, tmp_path / "packed.glb", compress=True)
    assert validate_glb(tmp_path / "packed.glb") == []
    plain, packed = read_gltf(tmp_path / "plain.glb"), read_gltf(tmp_path / "packed.glb")
    # Node for node the same (names, extras, transforms, hierarchy); only which glTF mesh a node draws may differ.
    layout = [[{**n, "mesh": "mesh" in n} for n in doc.json["nodes"]] for doc in (plain, packed)]
    assert layout[0] == layout[1] and len(layout[0]) == len(real_ifc.elements)
    for node, packed_node in zip(plain.json["nodes"], packed.json["nodes"], strict=True):
        if "mesh" not in node:
            continue
        source = [
            plain.accessor(p["attributes"]["POSITION"]).astype(np.float64)
            for p in plain.json["meshes"][node["mesh"]]["primitives"]
        ]
        extent = float(np.ptp(np.concatenate(source), axis=0).max())
        step = 2.0 ** meshopt.position_exponent(source)
        assert step / 2 <= max(POSITION_TOLERANCE_M, POSITION_TOLERANCE_OF_EXTENT * extent)
        want_keys, want_corners = _triangles_by_grid(plain, node["mesh"], step)
        got_keys, got_corners = _triangles_by_grid(packed, packed_node["mesh"], step)
        np.testing.assert_array_equal(got_keys, want_keys)  # the same triangles, less those without area
        assert np.abs(got_corners - want_corners).max(initial=0) <= max(
            POSITION_TOLERANCE_M, POSITION_TOLERANCE_OF_EXTENT * extent
        )


def _triangles_by_grid(doc: GltfDocument, mesh: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """A mesh's triangles that keep an area on the grid of `step`, as rows (material, grid corners), each
    triangle rotated to start at its smallest corner (winding kept) and the rows sorted; with the float
    corners they came from, in the same order."""
    keys, corners = [], []
    for prim in doc.json["meshes"][mesh]["primitives"]:
        positions = doc.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        grid = np.rint(positions / step).astype(np.int64)
        triangles = _non_degenerate(grid, doc.accessor(prim["indices"]).reshape(-1, 3).astype(np.int64))
        rank = np.empty(len(grid), np.int64)
        rank[np.lexsort(grid.T[::-1])] = np.arange(len(grid))
        start = rank[triangles].argmin(axis=1)
        rows = np.arange(len(triangles))
        rotated = np.stack([triangles[rows, (start + k) % 3] for k in range(3)], axis=1)
        keys.append(np.column_stack([np.full(len(rotated), prim["material"]), grid[rotated].reshape(-1, 9)]))
        corners.append(positions[rotated].reshape(-1, 9))
    key, corner = np.concatenate(keys), np.concatenate(corners)
    order = np.lexsort(key.T[::-1])
    return key[order], corner[order]


def test_lod_levels_share_vertices_and_are_listed_in_mesh_extras(tmp_path: Path) -> None:
    scene = synthetic_scene()
    for variant in ("lod", "compress_lod"):
        glb = written(tmp_path, scene, variant)
        meshes = {m["name"]: m for m in glb.doc["meshes"]}
        ball = meshes["ball"]
        lods = ball["extras"]["lods"]
        assert len(lods) >= 2
        base = glb.doc["accessors"][ball["primitives"][0]["indices"]]["count"] // 3
        triangles = [base] + [lod["triangles"] for lod in lods]
        assert triangles == sorted(triangles, reverse=True) and len(set(triangles)) == len(triangles)
        for lod in lods:
            prim = glb.doc["meshes"][lod["mesh"]]["primitives"][0]
            assert prim["attributes"] == ball["primitives"][0]["attributes"]
            assert glb.doc["accessors"][prim["indices"]]["count"] == lod["triangles"] * 3
        assert "extras" not in meshes["wall"]
    level = scene.meshes["ball"].lods[0][0]
    assert level.positions is scene.meshes["ball"].primitives[0].positions


def test_geometry_that_collapses_under_quantisation_is_left_out_validly(tmp_path: Path) -> None:
    scene = synthetic_scene()
    speck = np.array([[0, 0, 0], [1e-6, 0, 0], [0, 1e-6, 0]], np.float32)
    scene.meshes["speck"] = Mesh("speck", [Primitive(speck, np.array([[0, 1, 2]], np.uint32), 0)])
    scene.add(Element("speck", "Speck", "Mesh", "site", mesh="speck"))
    path = tmp_path / "c.glb"
    stats = write_glb(scene, path, compress=True, lod=True)
    assert validate_glb(path, warnings=True) == []
    assert "mesh" not in Glb(path).doc["nodes"][-1] and stats.meshes == len(scene.meshes) - 1


def test_stats_count_instances_and_draw_calls(tmp_path: Path) -> None:
    scene = synthetic_scene()
    stats = write_glb(scene, tmp_path / "s.glb")
    assert stats.triangles == scene.triangle_count
    assert stats.points == 500
    assert stats.meshes == len(scene.meshes)
    assert stats.draw_calls_estimate == sum(
        len(scene.meshes[e.mesh].primitives) for e in scene.elements.values() if e.mesh
    )
    assert stats.bytes == (tmp_path / "s.glb").stat().st_size


def test_compression_shrinks_geometry_several_times_and_stays_valid(tmp_path: Path) -> None:
    scene = grid_scene(200, kinds=40)
    write_glb(scene, tmp_path / "plain.glb")
    write_glb(scene, tmp_path / "packed.glb", compress=True)
    plain, packed = Glb(tmp_path / "plain.glb"), Glb(tmp_path / "packed.glb")
    assert len(packed.bin) < len(plain.bin) / 4
    assert validate_glb(tmp_path / "packed.glb") == []


THREE_LOADER = """
const [glbPath, three] = process.argv.slice(1);
const { readFileSync } = await import("node:fs");
const THREE = await import(three + "/build/three.module.js");
const { GLTFLoader } = await import(three + "/examples/jsm/loaders/GLTFLoader.js");
const { MeshoptDecoder } = await import(three + "/examples/jsm/libs/meshopt_decoder.module.js");
const data = readFileSync(glbPath);
const loader = new GLTFLoader().setMeshoptDecoder(MeshoptDecoder);
loader.parse(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), "", (gltf) => {
  const ids = [];
  let triangles = 0;
  gltf.scene.traverse((o) => {
    if (o.userData.id) ids.push(o.userData.id);
    if (o.isMesh) triangles += o.geometry.index.count / 3;
  });
  const box = new THREE.Box3().setFromObject(gltf.scene);
  console.log(JSON.stringify({ ids, triangles, min: box.min.toArray(), max: box.max.toArray() }));
}, (e) => { console.error(e); process.exit(1); });
"""


def test_three_js_loads_the_compressed_glb_with_its_meshopt_decoder(tmp_path: Path) -> None:
    """What the browser client does: GLTFLoader + MeshoptDecoder (headless; no textures in this scene)."""
    import shutil
    import subprocess

    three = Path(__file__).resolve().parents[1] / "web_client" / "node_modules" / "three"
    if shutil.which("node") is None or not three.is_dir():
        pytest.skip("needs node and web_client/node_modules/three: run ./setup.sh")
    scene = grid_scene(60)
    write_glb(scene, tmp_path / "c.glb", compress=True)
    done = subprocess.run(
        ["node", "--input-type=module", "-e", THREE_LOADER, str(tmp_path / "c.glb"), str(three)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(done.stdout)
    assert sorted(loaded["ids"]) == sorted(scene.elements)
    assert loaded["triangles"] == scene.triangle_count
    lows, highs = zip(*(scene.world_bounds(i) for i in scene.elements if scene.elements[i].mesh), strict=True)
    np.testing.assert_allclose(loaded["min"], np.min(lows, axis=0), atol=1e-3)
    np.testing.assert_allclose(loaded["max"], np.max(highs, axis=0), atol=1e-3)
