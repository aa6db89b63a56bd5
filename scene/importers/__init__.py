"""Importer registry: one module per format family, each exposing `load(path, options) -> Scene`.

Importers run inside `scene.sandbox` (a child process with time and memory bounds), so a
native crash in IfcOpenShell, OCP or open3d becomes an `ImportFailed`, never a dead CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scene.errors import ImportFailed
from scene.model import Element, Scene

# Points kept per scan after voxel downsampling: about what a browser draws smoothly in software.
DEFAULT_POINT_BUDGET = 2_000_000


@dataclass(frozen=True, slots=True)
class ImportOptions:
    point_budget: int = DEFAULT_POINT_BUDGET
    mesh_scans: bool = False  # Poisson-reconstruct point clouds into surfaces
    ifc_kernel: str = "auto"  # "auto" (manifold, falling back to opencascade), "manifold", "opencascade"
    threads: int = 0  # 0 = all cores


# extension -> (module under scene.importers, format name)
FORMATS: dict[str, tuple[str, str]] = {
    ".ifc": ("ifc", "ifc"),
    ".ifczip": ("ifc", "ifc"),
    ".step": ("step", "step"),
    ".stp": ("step", "step"),
    ".glb": ("mesh", "gltf"),
    ".gltf": ("mesh", "gltf"),
    ".obj": ("mesh", "obj"),
    ".stl": ("mesh", "stl"),
    ".off": ("mesh", "off"),
    ".3mf": ("mesh", "3mf"),
    ".ply": ("mesh", "ply"),  # mesh.py hands face-less PLY files to pointcloud.py
    ".pcd": ("pointcloud", "pointcloud"),
    ".xyz": ("pointcloud", "pointcloud"),
    ".usd": ("usd", "usd"),
    ".usda": ("usd", "usd"),
    ".usdc": ("usd", "usd"),
    ".usdz": ("usd", "usd"),
}


# Called once by an importer with its elements (tree and properties, no geometry yet) as soon as it
# knows them, so that the caller can write them while the geometry is still being made.
ElementsReady = Callable[[list[Element]], None]
# Formats whose importer takes `ready: ElementsReady` as a third argument (the slow geometry comes last).
ANNOUNCES_ELEMENTS = frozenset({"ifc"})


# An importer's `load`: module-level, so that it can be named to the process that runs it (pickled by reference).
Loader = Callable[..., Scene]


def loader_for(path: Path) -> Loader:
    ext = path.suffix.lower()
    if ext not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise ImportFailed(str(path), f"unknown file type '{ext or '(none)'}'; TwinView reads {known}")
    module = importlib.import_module(f"scene.importers.{FORMATS[ext][0]}")
    return module.load
