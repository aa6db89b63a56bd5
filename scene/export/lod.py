"""Levels of detail: coarser index buffers over a mesh's own vertices.

Semantics of `Mesh.lods` as filled here: `mesh.lods[k][j]` simplifies `mesh.primitives[j]` at level
k (finest first) and *shares its vertex arrays* (same numpy objects, only `indices` differ), so a
writer can reuse the vertex data and store just one extra index buffer per level. Points and
small primitives are carried over unchanged at every level, keeping levels parallel to the base.
"""

from __future__ import annotations

import numpy as np

from scene.model import Mesh, Primitive

# Below this a mesh draws in microseconds; simplifying it only adds bytes.
LOD_MIN_TRIANGLES = 1024
# Each level keeps about a quarter of the previous one's triangles (half the linear resolution).
LOD_RATIO = 0.25
# Stop when a level would keep more than this share of the previous one: it is not worth a download.
LOD_MIN_REDUCTION = 0.8
# At most this many coarser levels; the third is already 1/64 of the triangles.
LOD_MAX_LEVELS = 3
# Allowed geometric error per level, relative to the mesh extent (meshoptimizer's convention).
LOD_TARGET_ERRORS = (0.01, 0.03, 0.1)


def lods_for(mesh: Mesh) -> list[list[Primitive]]:
    """`mesh.lods`, generated (and stored on the mesh) when absent and the mesh is large enough."""
    if not mesh.lods and mesh.triangle_count >= LOD_MIN_TRIANGLES:
        mesh.lods = build_lods(mesh)
    return mesh.lods


def build_lods(mesh: Mesh) -> list[list[Primitive]]:
    levels: list[list[Primitive]] = []
    current = mesh.primitives
    for error in LOD_TARGET_ERRORS[:LOD_MAX_LEVELS]:
        level = [_simplify(p, error) for p in current]
        before = sum(p.triangle_count for p in current)
        after = sum(p.triangle_count for p in level)
        if after == 0 or after > before * LOD_MIN_REDUCTION:
            break
        levels.append(level)
        current = level
    return levels


def _simplify(prim: Primitive, target_error: float) -> Primitive:
    if prim.indices is None or prim.triangle_count < LOD_MIN_TRIANGLES // 4:
        return prim
    import meshoptimizer

    flat = prim.indices.reshape(-1).astype(np.uint32)
    out = np.zeros_like(flat)
    target = max(3, int(len(flat) * LOD_RATIO) // 3 * 3)
    count = meshoptimizer.simplify(
        out,
        flat,
        np.ascontiguousarray(prim.positions, dtype=np.float32),
        len(flat),
        len(prim.positions),
        12,
        target,
        target_error,
    )
    return Primitive(
        prim.positions,
        out[:count].reshape(-1, 3),
        prim.material,
        normals=prim.normals,
        colors=prim.colors,
        uvs=prim.uvs,
    )
