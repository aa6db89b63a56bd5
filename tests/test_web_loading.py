"""The two ways the client reads a model give the same view: the direct reader (web_client/src/gltf_reader.js,
accessors straight into the batches) and three.js's GLTFLoader (forced with `?loader=three`). Checked on our
writer's GLB with meshopt compression, quantization, shared meshes, a metallic material (the BatchedMesh path)
and levels of detail; on a hand-written KHR_mesh_quantization GLB (normalized int16 positions scaled by node
matrices, int8 normals, interleaved vertices, 8-bit indices, a mesh of two primitives); and a model the direct
reader leaves to GLTFLoader (a point cloud) still loads."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from scene.validate import validate_glb
from tests.scene_factory import grid_scene
from tests.web_helpers import (
    BINDINGS,
    _unit_box,
    _write_glb,
    live_twin,
    open_viewer,
    serve_scene,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NO_BINDINGS = "version: 1\ndefault_layer: operations\nbindings: []\nlayers:\n  operations:\n    rules: []\n"
# What the batches hold once the levels of detail are in, per element and per batch.
SUMMARY = """async () => {
  const tv = window.twinview;
  await tv.ready;
  await new Promise((done) => {
    const t = setInterval(() => tv.app.twin.lodsLoaded && (clearInterval(t), done()), 50);
  });
  const b = tv.app.batches;
  const xyz = (v) => [v.x, v.y, v.z];
  return {
    loader: tv.app.loader,
    nodes: b.nodes,
    elements: [...b.elements.values()].map((e) => ({ id: e.id, name: e.name, cls: e.cls, parent: e.parent,
      parts: e.parts.length, color: tv.colorOf(e.id), box: [...xyz(b.boxOf(e.id).min), ...xyz(b.boxOf(e.id).max)],
      levels: e.parts.map((p) => p.target.isMergedBatch ? p.target.levels[p.instanceId].map((l) => l.triangles)
        : (p.levels ?? []).map((l) => l.triangles)) })),
    batches: b.batches.map((x) => [x.name, x.slots ?? x.instanceCount]),
  };
}"""


def read_both_ways(browser, url: str) -> tuple[dict, dict, list[np.ndarray]]:
    """The summary and a screenshot of the view with each reader."""
    out, shots = [], []
    for query in ("", "&loader=three"):
        page = open_viewer(browser, url + query)
        out.append(page.evaluate(SUMMARY))
        page.wait_for_timeout(300)
        shots.append(np.asarray(Image.open(io.BytesIO(page.locator("#view canvas").screenshot())).convert("RGB")))
        assert page.errors == []
        page.close()
    return out[0], out[1], shots


def assert_same_view(direct: dict, three: dict, shots: list[np.ndarray]) -> None:
    assert direct["loader"] == "direct"
    assert three["loader"].startswith("GLTFLoader")
    assert direct["nodes"] == three["nodes"]
    assert direct["batches"] == three["batches"]
    assert [{**e, "box": None} for e in direct["elements"]] == [{**e, "box": None} for e in three["elements"]]
    boxes = np.array([e["box"] for e in direct["elements"]])
    assert np.allclose(boxes, [e["box"] for e in three["elements"]], atol=1e-4)
    # The same batches seen from the same camera: the same picture, up to rounding at a few edge pixels.
    differ = (np.abs(shots[0].astype(int) - shots[1]).max(axis=2) > 24).mean()
    assert differ < 0.002, differ


def test_our_compressed_glb_with_lods_reads_the_same_both_ways(browser, tmp_path):
    scene = grid_scene(120)
    scene.materials[1] = dataclasses.replace(scene.materials[1], metallic=1.0)  # glTF shading: a BatchedMesh
    write_glb(scene, tmp_path / "scene.glb", compress=True, lod=True)
    write_manifest(scene, tmp_path / "manifest.json", {})
    (tmp_path / "b.yaml").write_text(NO_BINDINGS)
    with serve_scene(tmp_path, tmp_path / "b.yaml", tmp_path / "data") as live:
        direct, three, shots = read_both_ways(browser, f"{live.url}/?scene={tmp_path.name}")
    assert_same_view(direct, three, shots)
    kinds = {name.split(":")[0] for name, _ in direct["batches"]}
    assert kinds == {"merged", "batch"}
    assert any(len(level) > 1 for e in direct["elements"] for level in e["levels"])  # the LODs are in


def quantized_twin(directory, count: int = 12) -> None:
    """Boxes stored as KHR_mesh_quantization allows: positions normalized int16 in [-1, 1] and each node's
    matrix scaling them back to size, int8 normals, both interleaved in one buffer view (12-byte stride),
    8-bit indices; under two storeys, one rotated. The last element's mesh has two primitives."""
    pos, nrm, idx = _unit_box()
    q_pos = np.round(pos * 2 * 32767).astype(np.int16)  # the unit box spans [-0.5, 0.5]
    q_nrm = np.round(nrm * 127).astype(np.int8)
    vertices = np.zeros((len(pos), 12), np.uint8)
    vertices[:, 0:6] = q_pos.view(np.uint8).reshape(-1, 6)
    vertices[:, 8:11] = q_nrm.view(np.uint8).reshape(-1, 3)
    half = len(idx) // 2
    blob = vertices.tobytes() + idx.astype(np.uint8).tobytes()
    blob += b"\0" * (-len(blob) % 4)
    accessors = [
        {
            "bufferView": 0,
            "componentType": 5122,
            "normalized": True,
            "count": len(pos),
            "type": "VEC3",
            "min": q_pos.min(0).tolist(),
            "max": q_pos.max(0).tolist(),
        },
        {
            "bufferView": 0,
            "byteOffset": 8,
            "componentType": 5120,
            "normalized": True,
            "count": len(pos),
            "type": "VEC3",
        },
        {"bufferView": 1, "componentType": 5121, "count": len(idx), "type": "SCALAR"},
        {"bufferView": 1, "componentType": 5121, "count": half, "type": "SCALAR"},
        {"bufferView": 1, "byteOffset": half, "componentType": 5121, "count": half, "type": "SCALAR"},
    ]
    colours = [(0.55, 0.6, 0.68), (0.7, 0.7, 0.72), (0.62, 0.66, 0.58)]
    materials = [
        {"name": f"M{i}", "pbrMetallicRoughness": {"baseColorFactor": [*c, 1.0], "metallicFactor": 0.0}}
        for i, c in enumerate(colours)
    ]
    materials.append({"name": "Steel", "pbrMetallicRoughness": {"baseColorFactor": [0.6, 0.6, 0.65, 1.0]}})
    prim = {"attributes": {"POSITION": 0, "NORMAL": 1}}
    meshes = [{"primitives": [{**prim, "indices": 2, "material": m}]} for m in range(len(materials))]
    meshes.append({"primitives": [{**prim, "indices": 3, "material": 0}, {**prim, "indices": 4, "material": 3}]})
    storeys = [
        {"name": "s0", "extras": {"id": "storey-0", "name": "Level 0", "class": "IfcBuildingStorey"}, "children": []},
        {
            "name": "s1",
            "extras": {"id": "storey-1", "name": "Level 1", "class": "IfcBuildingStorey"},
            "children": [],
            "translation": [0, 3, 0],
            "rotation": [0, 0.3826834, 0, 0.9238795],
        },
    ]
    nodes = [
        {"name": "site", "extras": {"id": "site", "name": "Site", "class": "IfcSite"}, "children": [1, 2]},
        *storeys,
    ]
    elements = [
        {
            "id": "site",
            "name": "Site",
            "class": "IfcSite",
            "parent": None,
            "bbox": None,
            "triangles": 0,
            "properties": {},
        }
    ]
    elements += [
        {
            "id": s["extras"]["id"],
            "name": s["extras"]["name"],
            "class": "IfcBuildingStorey",
            "parent": "site",
            "bbox": None,
            "triangles": 0,
            "properties": {},
        }
        for s in storeys
    ]
    for i in range(count):
        size = (0.6 + 0.05 * i, 0.5 + 0.1 * i, 0.8)
        matrix = np.diag([*(s / 2 for s in size), 1.0])  # the stored box spans [-1, 1]
        matrix[:3, 3] = ((i % 4) * 1.5, size[1] / 2, (i // 4) * 1.5)
        eid = f"q-{i:02d}"
        nodes[1 + i % 2]["children"].append(len(nodes))
        nodes.append(
            {
                "name": eid,
                "mesh": len(meshes) - 1 if i == count - 1 else i % len(materials),
                "matrix": matrix.T.ravel().tolist(),
                "extras": {"id": eid, "name": f"Box {i}", "class": "IfcPump"},
            }
        )
        elements.append(
            {
                "id": eid,
                "name": f"Box {i}",
                "class": "IfcPump",
                "parent": f"storey-{i % 2}",
                "bbox": None,
                "triangles": 12,
                "properties": {},
            }
        )
    gltf = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_mesh_quantization"],
        "extensionsRequired": ["KHR_mesh_quantization"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": materials,
        "accessors": accessors,
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": vertices.nbytes, "byteStride": 12, "target": 34962},
            {"buffer": 0, "byteOffset": vertices.nbytes, "byteLength": len(idx), "target": 34963},
        ],
        "buffers": [{"byteLength": len(blob)}],
    }
    directory.mkdir(parents=True, exist_ok=True)
    _write_glb(directory / "scene.glb", gltf, blob)
    manifest = {
        "format": "twinview-manifest",
        "version": 1,
        "elements": elements,
        "stats": {},
        "inputs": [],
        "warnings": [],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_quantized_interleaved_glb_reads_the_same_both_ways(browser, tmp_path):
    quantized_twin(tmp_path / "quantized")
    (tmp_path / "b.yaml").write_text(NO_BINDINGS)
    with serve_scene(tmp_path / "quantized", tmp_path / "b.yaml", tmp_path / "data") as live:
        direct, three, shots = read_both_ways(browser, f"{live.url}/?scene=quantized")
    assert_same_view(direct, three, shots)
    last = direct["elements"][-1]
    assert last["id"] == "q-11" and last["parts"] == 2
    # Node scale applied to the dequantised box: element i is 0.6 + 0.05 i wide.
    first = next(e for e in direct["elements"] if e["id"] == "q-00")
    assert abs((first["box"][3] - first["box"][0]) - 0.6) < 1e-3


def test_a_point_cloud_is_left_to_gltfloader(browser, tmp_path):
    with live_twin(tmp_path, count=6, bindings=BINDINGS, scan_points=200) as live:
        page = open_viewer(browser, live.url)
        assert page.evaluate("window.twinview.app.loader") == "GLTFLoader: points or lines"
        assert page.evaluate("window.twinview.app.batches.elements.size") == 7
        page.close()


def test_the_hand_written_quantized_glb_is_valid(tmp_path):
    quantized_twin(tmp_path / "q")
    assert validate_glb(tmp_path / "q" / "scene.glb") == []
