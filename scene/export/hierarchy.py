"""Element transforms relative to their parents, shared by the USD and GLB writers."""

from __future__ import annotations

import numpy as np

from scene.model import Scene

# Nanometre rounding of local matrices: hides float noise from the parent inversion, shortens output.
MATRIX_DECIMALS = 9


def local_matrices(scene: Scene) -> np.ndarray:
    """(n, 4, 4) local = inverse(parent world) @ world, for all elements at once, in Scene order."""
    elements = list(scene.elements.values())
    if not elements:
        return np.zeros((0, 4, 4))
    world = np.stack([e.matrix for e in elements]).astype(np.float64)
    position = {e.id: i for i, e in enumerate(elements)}
    parents = np.array([position[e.parent] if e.parent is not None else -1 for e in elements])
    parent_world = np.where((parents >= 0)[:, None, None], world[parents], np.eye(4))
    local = np.linalg.inv(parent_world) @ world
    return np.round(local, MATRIX_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
