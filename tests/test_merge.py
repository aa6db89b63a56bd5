"""Several inputs become one scene under one root, with ids that stay unique."""

from __future__ import annotations

import numpy as np

from scene.merge import ROOT_ID, merge
from scene.model import Element, InputRecord, Material, Mesh, Primitive, Scene


def _scene(path: str, ids: list[str]) -> Scene:
    scene = Scene(inputs=[InputRecord(path=path, sha256="0" * 64, format="obj", importer="test")])
    mat = scene.add_material(Material(name=f"{path} paint"))
    tri = Primitive(positions=np.zeros((3, 3), np.float32), indices=np.array([[0, 1, 2]], np.uint32), material=mat)
    scene.meshes["m"] = Mesh(id="m", primitives=[tri])
    parent = None
    for element_id in ids:
        scene.add(Element(id=element_id, name=element_id, cls="Mesh", parent=parent, mesh="m"))
        parent = element_id
    return scene


def test_single_input_is_unchanged():
    scene = _scene("/data/a.obj", ["x"])
    assert merge([scene]) is scene


def test_inputs_go_under_one_root_with_unique_ids():
    a = _scene("/data/building.ifc", ["site", "wall"])
    b = _scene("/data/pump.step", ["site", "impeller"])
    merged = merge([a, b])
    assert merged.roots() == [ROOT_ID]
    assert set(merged.elements) == {ROOT_ID, "site", "wall", "pump:site", "impeller"}
    assert merged.elements["impeller"].parent == "pump:site"
    assert merged.elements["pump:site"].parent == ROOT_ID
    assert any("1 ids renamed" in w for w in merged.warnings)


def test_meshes_materials_and_provenance_follow_their_input():
    a = _scene("/data/a.obj", ["a"])
    b = _scene("/data/b.obj", ["b"])
    merged = merge([a, b])
    assert set(merged.meshes) == {"0/m", "1/m"}
    mesh_b = merged.meshes[merged.elements["b"].mesh]
    assert merged.materials[mesh_b.primitives[0].material].name == "/data/b.obj paint"
    assert merged.inputs[merged.elements["b"].source].path == "/data/b.obj"
    assert merged.triangle_count == 2
