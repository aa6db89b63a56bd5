"""Levels of detail for small parts (`twinview build --lod`): a plant's pipes and valves, far below the
1 024 triangles large meshes need, get coarser levels over their own vertices, so the viewer can swap an
element to its coarse level by size on screen or under its triangle budget and keep its id, colour and
picking (scene/export/lod.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scene.export.glb import write_glb
from scene.export.lod import SMALL_LOD_MIN_TRIANGLES, lods_for
from scene.model import Element, Material, Mesh, Primitive, Scene
from scene.validate import validate_glb
from tests.scene_factory import box_primitive, pipe_primitive, small_parts_scene
from tests.test_export_glb import Glb


def _levels(glb: Glb, mesh: dict) -> list[int]:
    """Triangles of a glTF mesh and of each level it lists, finest first."""
    base = sum(glb.doc["accessors"][p["indices"]]["count"] // 3 for p in mesh["primitives"])
    return [base] + [lod["triangles"] for lod in mesh.get("extras", {}).get("lods", [])]


@pytest.mark.parametrize("compress", [False, True])
def test_small_parts_get_coarser_levels_that_share_their_vertices(tmp_path: Path, compress: bool) -> None:
    scene = small_parts_scene(12)
    plain, lod = tmp_path / "plain.glb", tmp_path / "lod.glb"
    write_glb(scene, plain, compress=compress)
    stats = write_glb(scene, lod, compress=compress, lod=True)
    assert validate_glb(lod, warnings=True) == []
    before, after = Glb(plain), Glb(lod)
    assert lod.stat().st_size > plain.stat().st_size and stats.bytes == lod.stat().st_size

    # The element nodes are the same (ids, names, meshes): levels are meshes no node uses.
    def nodes(glb: Glb) -> list[dict]:
        return [n | {"mesh": glb.doc["meshes"][n["mesh"]]["name"]} if "mesh" in n else n for n in glb.doc["nodes"]]

    assert nodes(after) == nodes(before)
    used = {n["mesh"] for n in after.doc["nodes"] if "mesh" in n}
    for index in used:
        mesh = after.doc["meshes"][index]
        triangles = _levels(after, mesh)
        assert len(triangles) >= 2, f"{mesh['name']} got no coarser level"
        assert triangles == sorted(set(triangles), reverse=True)
        assert triangles[-1] <= triangles[0] // 3
        base = mesh["primitives"][0]
        for lod_ref in mesh["extras"]["lods"]:
            assert lod_ref["mesh"] not in used
            prim = after.doc["meshes"][lod_ref["mesh"]]["primitives"][0]
            # The same vertices, hence in the viewer the same per-vertex element slot: ids hold on every level.
            assert prim["attributes"] == base["attributes"] and prim["material"] == base["material"]
            corners = after.accessor(prim["indices"])
            assert corners.max() < after.doc["accessors"][base["attributes"]["POSITION"]]["count"]


def test_boxes_and_other_tiny_meshes_get_no_level(tmp_path: Path) -> None:
    scene = small_parts_scene(3)
    scene.meshes["plate"] = Mesh("plate", [box_primitive((1.0, 0.02, 1.0), 0)])
    scene.add(Element("plate", "Plate", "IfcPlate", "site", mesh="plate"))
    write_glb(scene, tmp_path / "s.glb", lod=True)
    meshes = {m["name"]: m for m in Glb(tmp_path / "s.glb").doc["meshes"]}
    assert "extras" not in meshes["plate"] and "extras" in meshes["pipe0"]
    assert scene.meshes["plate"].triangle_count < SMALL_LOD_MIN_TRIANGLES


def _hostile_meshes() -> dict[str, Mesh]:
    rng = np.random.default_rng(3)
    points = np.zeros((60, 3), np.float32)  # every corner at one place: no area anywhere
    collapsed = Primitive(points, np.arange(60, dtype=np.uint32).reshape(-1, 3), 0)
    line = np.stack([np.linspace(0, 1, 60), np.zeros(60), np.zeros(60)], axis=1).astype(np.float32)
    slivers = Primitive(line, np.arange(60, dtype=np.uint32).reshape(-1, 3), 0)  # collinear: zero area
    tiny = pipe_primitive(1e-7, 1e-7, 26, 0)  # below any quantisation step
    soup = Primitive(rng.normal(size=(300, 3)).astype(np.float32), rng.integers(0, 300, (100, 3)).astype(np.uint32), 0)
    cloud = Primitive(rng.normal(size=(50, 3)).astype(np.float32), None, 0)  # points beside triangles
    return {
        "collapsed": Mesh("collapsed", [collapsed]),
        "slivers": Mesh("slivers", [slivers]),
        "tiny": Mesh("tiny", [tiny]),
        "soup": Mesh("soup", [soup]),
        "mixed": Mesh("mixed", [pipe_primitive(0.1, 1.0, 26, 0), cloud]),
    }


@pytest.mark.parametrize("compress", [False, True])
def test_degenerate_and_hostile_meshes_write_valid_levels_or_none(tmp_path: Path, compress: bool) -> None:
    scene = Scene()
    scene.add_material(Material("Steel", (0.5, 0.5, 0.5, 1.0)))
    for name, mesh in _hostile_meshes().items():
        scene.meshes[name] = mesh
        scene.add(Element(name, name, "IfcBuildingElementProxy", mesh=name))
    path = tmp_path / "h.glb"
    write_glb(scene, path, compress=compress, lod=True)
    assert validate_glb(path, warnings=True) == []
    for mesh in scene.meshes.values():
        for level in mesh.lods:  # levels stay parallel to the primitives and over the same vertices
            assert len(level) == len(mesh.primitives)
            for prim, base in zip(level, mesh.primitives, strict=True):
                assert prim.positions is base.positions
                assert prim.indices is None or (prim.indices.size == 0 or prim.indices.max() < len(base.positions))
    assert not scene.meshes["collapsed"].lods and not scene.meshes["slivers"].lods
    mixed = scene.meshes["mixed"]
    assert mixed.lods and all(level[1] is mixed.primitives[1] for level in mixed.lods)


def test_levels_are_made_once_per_mesh_whatever_the_uses() -> None:
    scene = small_parts_scene(30)  # ten valves share one mesh
    valve = scene.meshes["valve"]
    first = lods_for(valve)
    assert first and lods_for(valve) is first
