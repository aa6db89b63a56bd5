"""Levels of detail: coarser index buffers over a mesh's own vertices.

Semantics of `Mesh.lods` as filled here: `mesh.lods[k][j]` simplifies `mesh.primitives[j]` at level
k (finest first) and *shares its vertex arrays* (same numpy objects, only `indices` differ), so a
writer can reuse the vertex data and store just one extra index buffer per level. Points and
primitives too small to simplify are carried over unchanged at every level, keeping levels parallel
to the base.

Two kinds of mesh, two simplifiers:
- large meshes (`LOD_MIN_TRIANGLES` and up: scanned parts, detailed equipment) keep their topology
  (meshoptimizer's edge-collapse simplifier, within a small error per level);
- small parts (`SMALL_LOD_MIN_TRIANGLES` up to `LOD_MIN_TRIANGLES`: a plant's pipes, valves, pumps,
  instruments) get *impostor* levels from the sloppy simplifier, which clusters positions on a grid and
  ignores seams and hard edges (CAD meshes split every vertex at a crease, which leaves the edge-collapse
  simplifier nothing to collapse). They are coarse shapes, not faithful ones: the viewer draws a level
  only where the element is a few pixels across (`LOD_TRIANGLES_PER_PIXEL` in web_client's batcher.js)
  or while the camera moves over a triangle budget, so the error allowed grows fast with the level.
Each level stays one element's own geometry (the same vertices, so the same per-vertex element slot in
the viewer's batches): picking, colour rules and visibility work on every level alike. Clustering
several elements into one simplified mesh was left out: the viewer already draws all elements of a
material in one call, so a cluster would save no draw call, and it would lose the per-element ids.
"""

from __future__ import annotations

import numpy as np

from scene.model import Mesh, Primitive

# Below this a mesh is a "small part": its levels come from the sloppy simplifier (see the module's doc).
LOD_MIN_TRIANGLES = 1024
# Each level keeps about a quarter of the previous one's triangles (half the linear resolution).
LOD_RATIO = 0.25
# Stop when a level would keep more than this share of the previous one: it is not worth a download.
LOD_MIN_REDUCTION = 0.8
# At most this many coarser levels; the third is already 1/64 of the triangles.
LOD_MAX_LEVELS = 3
# Allowed geometric error per level, relative to the mesh extent (meshoptimizer's convention).
LOD_TARGET_ERRORS = (0.01, 0.03, 0.1)
# Small parts with fewer triangles than this (a box is 12) get no level: drawing them costs next to nothing.
SMALL_LOD_MIN_TRIANGLES = 32
# A small part's levels: the error allowed, relative to its extent (a level is drawn a few pixels across).
SMALL_LOD_TARGET_ERRORS = (0.1, 0.35)
# A level of a small part keeps at least this many triangles (fewer is no longer a shape).
SMALL_LOD_MIN_KEPT = 4


def lods_for(mesh: Mesh) -> list[list[Primitive]]:
    """`mesh.lods`, generated (and stored on the mesh) when absent and the mesh is large enough."""
    if not mesh.lods and mesh.triangle_count >= SMALL_LOD_MIN_TRIANGLES:
        mesh.lods = build_lods(mesh)
    return mesh.lods


def build_lods(mesh: Mesh) -> list[list[Primitive]]:
    large = mesh.triangle_count >= LOD_MIN_TRIANGLES
    errors = LOD_TARGET_ERRORS[:LOD_MAX_LEVELS] if large else SMALL_LOD_TARGET_ERRORS
    levels: list[list[Primitive]] = []
    current = mesh.primitives
    for error in errors:
        level = [_simplify(p, error) if large else _impostor(p, error) for p in current]
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

    flat, positions, target = _inputs(prim)
    out = np.zeros_like(flat)
    count = meshoptimizer.simplify(out, flat, positions, len(flat), len(positions), 12, target, target_error)
    return _with_triangles(prim, out[:count])


def _impostor(prim: Primitive, target_error: float) -> Primitive:
    """A coarse stand-in over the primitive's own vertices; the primitive itself when it cannot get coarser."""
    if prim.indices is None or prim.triangle_count < SMALL_LOD_MIN_KEPT * 2:
        return prim
    import meshoptimizer

    flat, positions, target = _inputs(prim)
    target = max(target, SMALL_LOD_MIN_KEPT * 3)
    out = np.zeros_like(flat)
    count = meshoptimizer.simplify_sloppy(out, flat, positions, len(flat), len(positions), 12, target, target_error)
    triangles = out[:count].reshape(-1, 3)
    # The grid may merge all but a sliver: such a level is no shape, keep the primitive as it is.
    return _with_triangles(prim, triangles) if len(triangles) >= SMALL_LOD_MIN_KEPT else prim


def _inputs(prim: Primitive) -> tuple[np.ndarray, np.ndarray, int]:
    """The flat index buffer, float32 positions and the index count a level aims at (LOD_RATIO of the triangles)."""
    flat = np.ascontiguousarray(prim.indices, dtype=np.uint32).reshape(-1)
    positions = np.ascontiguousarray(prim.positions, dtype=np.float32)
    return flat, positions, max(3, int(len(flat) * LOD_RATIO) // 3 * 3)


def _with_triangles(prim: Primitive, triangles: np.ndarray) -> Primitive:
    """`prim` drawing `triangles` over its own vertex arrays (shared, not copied)."""
    return Primitive(
        prim.positions,
        triangles.reshape(-1, 3),
        prim.material,
        normals=prim.normals,
        colors=prim.colors,
        uvs=prim.uvs,
    )
