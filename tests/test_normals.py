"""Normals for meshes that come without them: crease normals keep flat faces flat and curves smooth,
for IFC shapes and mesh files alike; a glTF mesh without normals is shaded flat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scene.importers import ImportOptions
from scene.importers.mesh import load as load_mesh
from scene.importers.normals import CREASE_ANGLE_DEG, MAX_FAN, crease_normals
from scene.model import Primitive


def _creased(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    source, normals, faces = crease_normals(positions, faces)
    return positions[source], normals, faces


def _box(size: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A box with its 8 corners shared by the 12 triangles, as IfcOpenShell welds them."""
    x, y, z = size
    positions = np.array([[i * x, j * y, k * z] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int32)
    return positions, faces


def _corner_and_face_normals(positions: np.ndarray, normals: np.ndarray, faces: np.ndarray):
    p = positions.astype(np.float64)[faces]
    face = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return normals[faces].astype(np.float64), face / np.linalg.norm(face, axis=1, keepdims=True)


def test_flat_faces_keep_their_own_normal_next_to_a_small_face():
    # A 10 m x 0.2 m x 3 m wall: at each corner the big faces outweigh the small end faces; every
    # face must still shade flat (a mean over all faces at a corner tilts the big ones by up to 40°).
    positions, normals, faces = _creased(*_box((10.0, 0.2, 3.0)))
    corner, face = _corner_and_face_normals(positions, normals, faces)
    assert np.allclose(corner, face[:, None, :], atol=1e-6)
    assert len(positions) == 24  # each corner once per face that meets there


def test_a_tessellated_cylinder_is_smooth_around_and_flat_on_its_caps():
    n = 24
    angles = np.arange(n) * 2 * np.pi / n
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    rings = [np.column_stack([ring, np.full(n, z)]) for z in (0.0, 1.0)]
    positions = np.vstack([*rings, [[0, 0, 0], [0, 0, 1]]])
    side = [t for i in range(n) for t in ((i, (i + 1) % n, n + i), ((i + 1) % n, n + (i + 1) % n, n + i))]
    caps = [t for i in range(n) for t in ((2 * n, (i + 1) % n, i), (2 * n + 1, n + i, n + (i + 1) % n))]
    positions, normals, faces = _creased(positions, np.array(side + caps, dtype=np.int32))
    corner, face = _corner_and_face_normals(positions, normals, faces)
    sides, tops = corner[: 2 * n], corner[2 * n :]
    assert np.allclose(sides[..., 2], 0, atol=1e-6)  # radial: perpendicular to the axis ...
    radial = positions[faces[: 2 * n]][..., :2]
    outward = np.einsum("tck,tck->tc", sides[..., :2], radial / np.linalg.norm(radial, axis=-1, keepdims=True))
    assert (outward > np.cos(np.radians(3))).all()  # ... and round (within the area weights' pull, < 360°/24 / 2)
    assert np.allclose(tops, face[2 * n :, None, :], atol=1e-6)  # the caps are flat


def test_the_centre_of_a_large_fan_shades_flat_without_comparing_every_pair():
    # A disc of more triangles than MAX_FAN around one centre vertex.
    n = 2 * MAX_FAN
    angles = np.arange(n) * 2 * np.pi / n
    positions = np.vstack([[[0.0, 0.0, 0.0]], np.column_stack([np.cos(angles), np.sin(angles), np.zeros(n)])])
    faces = np.array([(0, 1 + i, 1 + (i + 1) % n) for i in range(n)], dtype=np.int32)
    positions, normals, faces = _creased(positions, faces)
    assert np.allclose(normals, (0, 0, 1), atol=1e-6) and len(positions) == n + 1


def _deviation_deg(prim: Primitive) -> np.ndarray:
    """Per triangle of real area, the largest angle between a corner's normal and the face's."""
    assert prim.indices is not None and prim.normals is not None
    p = prim.positions.astype(np.float64)[prim.indices]
    face = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    area = np.linalg.norm(face, axis=1)
    keep = area > 1e-9 * area.max()
    unit = face[keep] / area[keep, None]
    dots = np.einsum("tk,tck->tc", unit, prim.normals[prim.indices[keep]].astype(np.float64)).min(axis=1)
    return np.degrees(np.arccos(np.clip(dots, -1, 1)))


@pytest.mark.corpus
def test_a_cad_part_from_stl_keeps_its_edges(shared_data: Path):
    # An STL has one normal per face; trimesh welds the corners, so a mean per vertex rounded every
    # edge of this machined part (up to 99° off its faces before).
    scene = load_mesh(shared_data / "mesh" / "stl" / "featuretype.STL", ImportOptions())
    (prim,) = [p for m in scene.meshes.values() for p in m.primitives]
    deviation = _deviation_deg(prim)
    assert deviation.max() <= CREASE_ANGLE_DEG + 0.5
    assert (deviation < 0.1).mean() > 0.5  # most of it is flat faces, shaded exactly flat


def test_a_gltf_mesh_without_normals_is_shaded_flat(tmp_path: Path):
    import trimesh

    # A sphere of 80 faces written without normals: glTF says a viewer shades such a mesh flat.
    sphere = trimesh.creation.icosphere(subdivisions=1)
    path = tmp_path / "sphere.glb"
    path.write_bytes(trimesh.exchange.gltf.export_glb(trimesh.Scene(sphere), include_normals=False))
    scene = load_mesh(path, ImportOptions())
    (prim,) = [p for m in scene.meshes.values() for p in m.primitives]
    assert prim.triangle_count == 80 and _deviation_deg(prim).max() < 0.05  # float32 rounding
