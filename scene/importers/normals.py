"""Vertex normals for meshes that come without them (IFC, STL, OBJ, PLY, glTF, USD).

- `vertex_normals`: one smooth normal per vertex, for surfaces known to be smooth (a STEP face);
- `crease_normals`: smooth where faces meet gently, hard across creases. Each corner's normal is the
  area-weighted mean of the faces at its vertex that lie within the crease angle of its own face, so
  a flat face keeps exactly its own normal even where a small face meets it at an edge, and a
  tessellated curve is smooth. Corners of one vertex with the same normal share a vertex; the others
  get a copy of it, so callers copy their other per-vertex data (UVs, colours) through `source`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Final

import numpy as np

from scene.model import Primitive

# Faces meeting at more than this angle keep their own normals (walls and housings stay crisp,
# tessellated pipes stay smooth).
CREASE_ANGLE_DEG: Final = 40.0
# Unit normals are rounded to this many steps per unit when deciding which corners share a vertex;
# the components, offset to be non-negative, are packed 15 bits each.
NORMAL_QUANTUM: Final = 10_000
# Vertices shared by more faces than this (the centre of a fan) get their corners' normals without
# comparing every pair of faces there, which would grow with the square of the count.
MAX_FAN: Final = 64
# Corner pairs compared at once: bounds the memory of a mesh with millions of triangles (~100 MB).
PAIRS_PER_BLOCK: Final = 2_000_000


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (float32, unit length; zero where a vertex has no area)."""
    face = np.repeat(_face_normals(positions, triangles), 3, axis=0)
    return _normalised(_sum_by(triangles.ravel().astype(np.int64), face, len(positions))).astype(np.float32)


def crease_normals(
    positions: np.ndarray, faces: np.ndarray, crease_deg: float = CREASE_ANGLE_DEG
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, normals, faces): for each output vertex the input vertex it copies, its unit normal
    (float32), and the triangles (int64) over the output vertices. `crease_deg` 0 shades every face
    flat (what glTF asks for a mesh without normals)."""
    face_normal = _face_normals(positions, faces)
    vertex_of = faces.ravel().astype(np.int64)
    face_of = np.repeat(np.arange(len(faces)), 3)
    count = len(positions)
    vertex_sum = _sum_by(vertex_of, face_normal[face_of], count)
    mean = _normalised(vertex_sum)
    own = _normalised(face_normal)[face_of]
    near_mean = np.einsum("ck,ck->c", own, mean[vertex_of])
    # A vertex is creased when a face there is more than half the angle off their mean (then two of
    # them may be more than the angle apart); a zero-area face has no normal of its own to count.
    off = (near_mean < math.cos(math.radians(crease_deg / 2))) & own.any(axis=1)
    creased = np.bincount(vertex_of[off], minlength=count) > 0
    # Most vertices (inside a flat face or a smooth curve) keep one vertex, with the mean normal.
    plain = np.flatnonzero(~creased & (np.bincount(vertex_of, minlength=count) > 0))
    slot = np.empty(count, dtype=np.int64)
    slot[plain] = np.arange(len(plain))
    slot = slot[vertex_of]
    sources, normals = [plain], [_unit_or_up(mean[plain])]
    at_crease = np.flatnonzero(creased[vertex_of])
    if len(at_crease):
        unit = _corner_normals(at_crease, vertex_of, face_of, face_normal, own, mean, crease_deg)
        missing = ~unit.any(axis=1)  # a zero-area face's corner, or neighbours that cancel out
        unit[missing] = mean[vertex_of[at_crease[missing]]]
        unit = _unit_or_up(unit)
        rounded = np.round(unit * NORMAL_QUANTUM).astype(np.int64) + NORMAL_QUANTUM
        packed = (rounded[:, 0] << 30) | (rounded[:, 1] << 15) | rounded[:, 2]
        vertex = vertex_of[at_crease]
        order = np.lexsort((packed, vertex))
        starts = np.r_[True, (np.diff(vertex[order]) != 0) | (np.diff(packed[order]) != 0)]
        group = np.empty(len(order), dtype=np.int64)
        group[order] = np.cumsum(starts) - 1
        slot[at_crease] = len(plain) + group
        sources.append(vertex[order[starts]])
        normals.append(unit[order[starts]])
    return np.concatenate(sources), np.concatenate(normals).astype(np.float32), slot.reshape(-1, 3)


def _corner_normals(
    corners: np.ndarray,
    vertex_of: np.ndarray,
    face_of: np.ndarray,
    face_normal: np.ndarray,
    own: np.ndarray,
    mean: np.ndarray,
    crease_deg: float,
) -> np.ndarray:
    """Unit normals of `corners` (every corner of their vertices): the area-weighted mean of the faces at
    the vertex within the crease angle of the corner's own face, every pair of corners of a vertex
    compared. Around a vertex with more than MAX_FAN faces a corner takes its face's normal unless the
    vertex's mean is within the crease angle of it."""
    cos_crease = math.cos(math.radians(crease_deg))
    order = corners[np.argsort(vertex_of[corners], kind="stable")]  # grouped by vertex
    vertex = vertex_of[order]
    start = np.searchsorted(vertex, vertex)  # position of the first corner of the same vertex
    size = np.searchsorted(vertex, vertex, side="right") - start
    small = np.flatnonzero(size <= MAX_FAN)
    out = np.zeros((len(vertex_of), 3))
    pairs = np.cumsum(size[small])
    bounds = np.searchsorted(pairs, np.arange(PAIRS_PER_BLOCK, pairs[-1] if len(pairs) else 0, PAIRS_PER_BLOCK))
    for block in np.split(small, bounds):  # a block of corners at a time, each with every corner of its vertex
        k = size[block]
        a = np.repeat(block, k)
        b = np.repeat(start[block], k) + (np.arange(len(a)) - np.repeat(np.cumsum(k) - k, k))
        ca, cb = order[a], order[b]
        near = (ca == cb) | (np.einsum("pk,pk->p", own[ca], own[cb]) >= cos_crease)
        out += _sum_by(ca[near], face_normal[face_of[cb[near]]], len(vertex_of))
    crowded = order[size > MAX_FAN]
    at = mean[vertex_of[crowded]]
    out[crowded] = np.where((np.einsum("ck,ck->c", at, own[crowded]) >= cos_crease)[:, None], at, own[crowded])
    return _normalised(out[corners])


def _face_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(faces, 3) float64: each triangle's normal, twice its area long."""
    corners = positions[faces].astype(np.float64).reshape(-1, 3, 3)
    return np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])


def _sum_by(index: np.ndarray, vectors: np.ndarray, count: int) -> np.ndarray:
    """(count, 3): row i is the sum of the rows of `vectors` whose `index` is i."""
    return np.stack([np.bincount(index, vectors[:, k], count) for k in range(3)], axis=1)


def _unit_or_up(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors; +Z where there is no direction (only zero-area faces around a vertex)."""
    unit = _normalised(vectors)
    unit[~unit.any(axis=1)] = (0.0, 0.0, 1.0)
    return unit


def _normalised(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, length, out=np.zeros_like(vectors), where=length > 0)


def with_crease_normals(prim: Primitive, crease_deg: float = CREASE_ANGLE_DEG) -> Primitive:
    """The triangle primitive `prim` with `crease_normals`, its vertices split where corners differ;
    its colours and UVs follow the split."""
    assert prim.indices is not None, "points have no normals"
    source, normals, faces = crease_normals(prim.positions, prim.indices, crease_deg)
    return replace(
        prim,
        positions=prim.positions[source],
        indices=faces.astype(np.uint32),
        normals=normals,
        colors=None if prim.colors is None else prim.colors[source],
        uvs=None if prim.uvs is None else prim.uvs[source],
    )
