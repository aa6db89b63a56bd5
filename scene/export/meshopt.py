"""Vertex quantisation (KHR_mesh_quantization) and meshopt stream coding (EXT_meshopt_compression).

Quantised layout, chosen to match what gltfpack does so three.js's MeshoptDecoder reads it unchanged:
- POSITION: unsigned 16-bit integers (not normalised) on a per-mesh uniform grid of
  `POSITION_BITS`; the grid's offset and scale become the translation/scale of a geometry node
  (uniform, so normals stay correct);
- NORMAL: signed bytes, normalised; TEXCOORD_0: unsigned 16-bit normalised when inside [0, 1];
  COLOR_0: unsigned bytes, normalised;
- each attribute is its own stream padded to a 4-byte stride (meshopt's and glTF's requirement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# gltfpack's default position precision: 1/16383 of the mesh extent (0.6 mm on a 10 m wall).
POSITION_BITS = 14
POSITION_MAX = (1 << POSITION_BITS) - 1
# Signed-byte normals keep angular error under 1 degree, invisible in shading.
NORMAL_MAX = 127
# 16-bit UVs: 1/65535 of the texture, below one texel for textures up to 64k wide.
UV_MAX = 65535
COLOR_MAX = 255
# EXT_meshopt_compression only defines version 0 of the vertex codec; v1 needs newer decoders.
VERTEX_CODEC_VERSION = 0

GLTF_BYTE, GLTF_UNSIGNED_BYTE, GLTF_SHORT, GLTF_UNSIGNED_SHORT, GLTF_UNSIGNED_INT, GLTF_FLOAT = (
    5120, 5121, 5122, 5123, 5125, 5126,
)


@dataclass(frozen=True, slots=True)
class PositionGrid:
    """Maps quantised integer positions back to metres: p = offset + q * scale."""

    offset: tuple[float, float, float]
    scale: float

    @classmethod
    def covering(cls, arrays: list[np.ndarray]) -> PositionGrid:
        stacked = np.concatenate(arrays, axis=0)
        lo, hi = stacked.min(axis=0).astype(np.float64), stacked.max(axis=0).astype(np.float64)
        extent = float((hi - lo).max())
        # A single point or a flat degenerate mesh still needs a non-zero scale.
        scale = extent / POSITION_MAX if extent > 0 else 1.0
        return cls((float(lo[0]), float(lo[1]), float(lo[2])), scale)

    def quantize(self, positions: np.ndarray) -> np.ndarray:
        q = np.rint((positions - np.asarray(self.offset)) / self.scale)
        return _pad4(np.clip(q, 0, POSITION_MAX).astype(np.uint16))


def _pad4(a: np.ndarray) -> np.ndarray:
    """Pad rows with zero components up to a 4-byte stride (zeros cost nothing after coding)."""
    row = a.shape[1] * a.itemsize
    extra = (-row % 4) // a.itemsize
    if extra == 0:
        return np.ascontiguousarray(a)
    return np.concatenate([a, np.zeros((len(a), extra), a.dtype)], axis=1)


def quantize_normals(normals: np.ndarray) -> np.ndarray:
    return _pad4(np.rint(np.clip(normals, -1, 1) * NORMAL_MAX).astype(np.int8))


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


def cache_order(indices: np.ndarray, vertex_count: int) -> np.ndarray:
    """Triangles reordered for the GPU vertex cache, which also suits the index codec."""
    import meshoptimizer

    flat = indices.reshape(-1).astype(np.uint32)
    ordered = np.zeros_like(flat)
    meshoptimizer.optimize_vertex_cache(ordered, flat, len(flat), vertex_count)
    return ordered.reshape(-1, 3)


def optimize_order(indices: np.ndarray, vertex_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Reorder triangles for the vertex cache and vertices by first use: both make the codecs
    several times more effective. Returns (new triangles in new vertex numbering, remap) where
    remap[old vertex] = new vertex, or -1 for vertices no triangle uses."""
    ordered = cache_order(indices, vertex_count).reshape(-1)
    used, first = np.unique(ordered, return_index=True)
    by_first_use = used[np.argsort(first)]
    remap = np.full(vertex_count, -1, dtype=np.int64)
    remap[by_first_use] = np.arange(len(by_first_use))
    return remap[ordered].reshape(-1, 3).astype(np.uint32), remap


def decode_vertices(data: bytes, count: int, stride: int, dtype: np.dtype) -> np.ndarray:
    """Inverse of `encode_vertices` (for tests and `twinview inspect`)."""
    import meshoptimizer

    # The wrapper's typed mode under-allocates; decode to bytes and reinterpret instead.
    raw = meshoptimizer.decode_vertex_buffer(count, stride, data)
    return np.ascontiguousarray(raw).view(np.uint8).view(dtype).reshape(count, -1)


def decode_triangles(data: bytes, count: int, index_size: int) -> np.ndarray:
    import meshoptimizer

    return np.asarray(meshoptimizer.decode_index_buffer(count, index_size, data)).reshape(-1, 3)
