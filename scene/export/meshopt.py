"""Vertex quantisation (KHR_mesh_quantization) and meshopt stream coding (EXT_meshopt_compression).

Quantised layout (what gltfpack writes, so three.js's MeshoptDecoder reads it unchanged):
- POSITION: float32 through the EXPONENTIAL filter on a per-mesh power-of-two grid. gltfpack's
  default (integer positions) needs a dequantisation transform on a node per mesh instance, which
  for thousands of elements costs more JSON than the geometry itself (duplex.ifc, folded into the
  element nodes: 4.5 KB less geometry, 12 KB more node JSON);
- NORMAL: OCTAHEDRAL filter into signed bytes, normalised; TEXCOORD_0: unsigned 16-bit
  normalised when inside [0, 1]; COLOR_0: unsigned bytes, normalised;
- each attribute is its own stream with a 4-byte-multiple stride (meshopt's and glTF's rule).
"""

from __future__ import annotations

import numpy as np

# gltfpack's default position precision: 14 bits across the mesh (under 1 mm on a 10 m wall).
POSITION_BITS = 14
# Steps of 2^-10 m (~1 mm, so errors under 0.5 mm) are below what a viewer can show; finer steps
# on small parts (bolts, handles) would only add incompressible low bits.
MIN_STEP_EXPONENT = -10
# The EXPONENTIAL filter stores a signed 24-bit mantissa.
MANTISSA_BITS = 23
# Signed-byte normals keep angular error under 1 degree, invisible in shading.
NORMAL_MAX = 127
# 16-bit UVs: 1/65535 of the texture, below one texel for textures up to 64k wide.
UV_MAX = 65535
COLOR_MAX = 255
# EXT_meshopt_compression only defines version 0 of the vertex codec; v1 needs newer decoders.
VERTEX_CODEC_VERSION = 0

# meshopt's remap value for a vertex no index uses.
UNUSED = 0xFFFFFFFF

GLTF_BYTE, GLTF_UNSIGNED_BYTE, GLTF_UNSIGNED_SHORT, GLTF_UNSIGNED_INT, GLTF_FLOAT = 5120, 5121, 5123, 5125, 5126


def position_exponent(arrays: list[np.ndarray]) -> int:
    """The power of two of one quantisation step for a mesh: 2^POSITION_BITS steps across its
    extent, but no finer than `MIN_STEP_EXPONENT` (gltfpack gets the same effect from one
    scene-wide grid), and coarser only where a mesh far from its origin would overflow the
    filter's 24-bit mantissa."""
    stacked = np.concatenate([a for a in arrays if len(a)]).astype(np.float64)
    extent = float((stacked.max(axis=0) - stacked.min(axis=0)).max())
    largest = float(np.abs(stacked).max())
    fine = int(np.ceil(np.log2(extent / ((1 << POSITION_BITS) - 1)))) if extent > 0 else -POSITION_BITS
    return max(fine, MIN_STEP_EXPONENT, int(np.frexp(largest)[1]) - MANTISSA_BITS)


def exponential_positions(positions: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """meshopt's EXPONENTIAL filter, encoder side (like meshopt_encodeFilterExp with one exponent
    for the whole mesh): each float becomes a 24-bit mantissa and an 8-bit exponent, so positions
    stay float32 in the glTF and need no dequantisation node, while the codec sees integers on a
    uniform grid. Returns (encoded int32 rows, the float32 values a decoder will produce)."""
    mantissa = np.rint(positions.astype(np.float64) * 2.0**-exponent).astype(np.int64)
    encoded = ((mantissa & 0xFFFFFF) | ((exponent & 0xFF) << 24)).astype(np.uint32).view(np.int32)
    return np.ascontiguousarray(encoded), (mantissa * 2.0**exponent).astype(np.float32)


def octahedral_normals(normals: np.ndarray) -> np.ndarray:
    """meshopt's OCTAHEDRAL filter, encoder side (meshopt_encodeFilterOct with 8 bits): each unit
    vector becomes (u, v, K, 0) bytes on the octahedron, which code far better than x, y, z; the
    decoder restores signed-byte normalised x, y, z."""
    n = normals.astype(np.float64)
    n = n / np.maximum(np.abs(n).sum(axis=1, keepdims=True), 1e-30)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    sign_x, sign_y = np.where(x >= 0, 1.0, -1.0), np.where(y >= 0, 1.0, -1.0)
    u = np.where(z >= 0, x, (1 - np.abs(y)) * sign_x)
    v = np.where(z >= 0, y, (1 - np.abs(x)) * sign_y)
    out = np.zeros((len(n), 4), np.int8)
    out[:, 0], out[:, 1], out[:, 2] = np.rint(u * NORMAL_MAX), np.rint(v * NORMAL_MAX), NORMAL_MAX
    return out


def uvs_fit_unit(uvs: np.ndarray) -> bool:
    return bool(uvs.min() >= 0.0 and uvs.max() <= 1.0)


def quantize_uvs(uvs: np.ndarray) -> np.ndarray:
    return np.rint(uvs * UV_MAX).astype(np.uint16)


def quantize_colors(colors: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(colors, 0, 1) * COLOR_MAX).astype(np.uint8)


def encode_vertices(stream: np.ndarray) -> bytes:
    """meshopt ATTRIBUTES coding of one (count, k) stream whose row size is a multiple of 4."""
    import meshoptimizer

    meshoptimizer.encode_vertex_version(VERTEX_CODEC_VERSION)
    return meshoptimizer.encode_vertex_buffer(stream)


def encode_triangles(indices: np.ndarray, vertex_count: int) -> bytes:
    """meshopt TRIANGLES coding; the codec may rotate a triangle's corners but keeps its winding."""
    import meshoptimizer

    flat = indices.reshape(-1).astype(np.uint32)
    return meshoptimizer.encode_index_buffer(flat, len(flat), vertex_count)


def coded_size(streams: list[np.ndarray], triangles: np.ndarray) -> int:
    """Bytes the codecs make of one primitive's vertex streams and triangles."""
    vertices = sum(len(encode_vertices(np.ascontiguousarray(s))) for s in streams)
    return vertices + len(encode_triangles(triangles, len(streams[0])))


def cache_order(indices: np.ndarray, vertex_count: int) -> np.ndarray:
    """Triangles in strip-friendly vertex-cache order: a little worse for the GPU cache than
    meshopt's default order, but the index and vertex codecs shrink it ~15% more (gltfpack -cc's choice)."""
    import meshoptimizer

    flat = indices.reshape(-1).astype(np.uint32)
    ordered = np.zeros_like(flat)
    meshoptimizer.optimize_vertex_cache_strip(ordered, flat, len(flat), vertex_count)
    return ordered.reshape(-1, 3)


def optimize_order(indices: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Reorder triangles for the vertex cache and vertices by first use: both make the codecs
    several times more effective. Returns (new triangles in new vertex numbering, remap) where
    remap[old vertex] = new vertex, or -1 for vertices no triangle uses."""
    import meshoptimizer

    ordered = cache_order(indices, vertex_count).reshape(-1)
    fetch = np.zeros(vertex_count, np.uint32)
    meshoptimizer.optimize_vertex_fetch_remap(fetch, ordered, len(ordered), vertex_count)
    remap = np.where(fetch == UNUSED, -1, fetch.astype(np.int64))
    return remap[ordered].reshape(-1, 3).astype(np.uint32), remap


def same_rows(rows: np.ndarray) -> np.ndarray:
    """An id per row, equal for rows with equal bytes (meshopt's hashing: linear time, unlike a sort)."""
    import meshoptimizer

    ids = np.zeros(len(rows), np.uint32)
    # The wrapper drops the count of an unindexed call, so index the rows explicitly.
    every = np.arange(len(rows), dtype=np.uint32)
    meshoptimizer.generate_vertex_remap(ids, every, len(rows), np.ascontiguousarray(rows), len(rows))
    return ids


def deduplicate(
    streams: list[np.ndarray], triangles: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Merge vertices whose quantised attributes are identical (seams and poles often repeat them).
    Returns (streams, triangles, remap, first) with remap[old vertex] = new vertex and
    first[new vertex] = one old vertex it came from."""
    rows = np.concatenate([s.view(np.uint8).reshape(len(s), -1) for s in streams], axis=1)
    keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return [s[first] for s in streams], inverse[triangles].astype(np.uint32), inverse.ravel(), first


def canonical_triangles(triangles: np.ndarray) -> np.ndarray:
    """Triangles in an order that depends only on the set of triangles: each rotated to start at its
    smallest vertex (winding kept), then sorted. After `deduplicate` (which numbers vertices by value),
    two meshes with the same triangles in another order come out byte-identical."""
    t = np.asarray(triangles, np.uint64)
    rotated = np.take_along_axis(t, (t.argmin(axis=1)[:, None] + np.arange(3)) % 3, axis=1)
    if len(t) and t.max() < 1 << 21:  # one 63-bit key sorts several times faster than a three-key lexsort
        order = np.argsort((rotated[:, 0] << 42) | (rotated[:, 1] << 21) | rotated[:, 2], kind="stable")
    else:
        order = np.lexsort(rotated.T[::-1])
    return rotated[order].astype(np.uint32)


def decode_vertices(data: bytes, count: int, stride: int, dtype: np.dtype) -> np.ndarray:
    """Inverse of `encode_vertices` (for tests and `twinview inspect`)."""
    import meshoptimizer

    # The wrapper's typed mode under-allocates; decode to bytes and reinterpret instead.
    raw = meshoptimizer.decode_vertex_buffer(count, stride, data)
    return np.ascontiguousarray(raw).view(np.uint8).view(dtype).reshape(count, -1)


def decode_exponential(data: np.ndarray) -> np.ndarray:
    """Undo `exponential_positions` on decoded (count, 3) int32 rows, giving float32 values."""
    import meshoptimizer

    out = meshoptimizer.decode_filter_exp(np.ascontiguousarray(data, np.int32).copy(), len(data), 12)
    return np.asarray(out).view(np.float32).reshape(len(data), 3)


def decode_octahedral(data: np.ndarray) -> np.ndarray:
    """Undo `octahedral_normals` on decoded (count, 4) int8 rows, giving int8 x, y, z, w."""
    import meshoptimizer

    out = meshoptimizer.decode_filter_oct(np.ascontiguousarray(data, np.int8).copy(), len(data), 4)
    return np.asarray(out).view(np.int8).reshape(len(data), 4)


def decode_triangles(data: bytes, count: int, index_size: int) -> np.ndarray:
    import meshoptimizer

    # The wrapper always allocates uint32s; with 2-byte indices only the first half holds data.
    raw = meshoptimizer.decode_index_buffer(count, index_size, data)
    dtype = np.uint16 if index_size == 2 else np.uint32
    return raw.view(dtype)[:count].reshape(-1, 3)
