"""Matrices a glTF node cannot hold: a linear part that is not rotation x scale (a shear, or a non-uniform
scale applied after a rotation) is split into a rigid matrix for the node and a 3x3 baked into the
vertices. USD and IFC allow shear; glTF requires TRS-decomposable node matrices (NODE_MATRIX_NON_TRS).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import numpy as np

from scene.model import Primitive

# Relative size of off-diagonal terms in L^T L above which a matrix counts as sheared (not TRS);
# float32 round-off in authored rotations stays far below it.
SHEAR_TOLERANCE: Final = 1e-6


def split_shear(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split a world matrix that is not translation x rotation x scale into a rigid one and a 3x3 to bake.

    glTF nodes (and most viewers) require TRS-decomposable matrices; USD and IFC allow shear. Polar
    decomposition L = R P keeps the rotation R in the matrix and returns P (scale + shear) for the
    vertices; plain TRS matrices come back unchanged with None.
    """
    linear = matrix[:3, :3]
    gram = linear.T @ linear  # diagonal exactly when the columns are orthogonal, i.e. no shear
    off_diagonal = np.abs(gram - np.diag(np.diag(gram))).max()
    if off_diagonal <= SHEAR_TOLERANCE * max(float(np.abs(gram).max()), 1e-300):
        return matrix, None
    u, sigma, vt = np.linalg.svd(linear)
    rigid = matrix.copy()
    rigid[:3, :3] = u @ vt
    return rigid, vt.T @ np.diag(sigma) @ vt


def bake_linear(prim: Primitive, linear: np.ndarray) -> Primitive:
    """A copy of `prim` with a 3x3 transform applied to its positions (normals follow its inverse transpose)."""
    positions = (prim.positions.astype(np.float64) @ linear.T).astype(np.float32)
    normals = None
    if prim.normals is not None:
        normals = prim.normals.astype(np.float64) @ np.linalg.inv(linear)  # (L^-T n) for row vectors
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.divide(normals, length, out=np.zeros_like(normals), where=length > 0).astype(np.float32)
    return replace(prim, positions=positions, normals=normals)
