"""USDZ for AR Quick Look, made from the canonical stage.

AR Quick Look wants one self-contained package: a .usdc root layer first, UsdPreviewSurface
materials only, png/jpg textures, Y-up, a default prim. The canonical stage is written to satisfy
all of that already (one layer, internal references only, textures beside it), so the package is
that layer plus its textures; `UsdUtils` flattens only if a stage ever gains external references.
Units stay metres: Quick Look honours metersPerUnit, so an object keeps its real size in AR. The
`twin:` attributes stay too: Quick Look ignores them, and AR apps that read USD find the twin ids.
"""

from __future__ import annotations

from pathlib import Path

from scene.errors import ExportFailed


def write_usdz(stage_path: Path, path: Path) -> None:
    """Package the stage at `stage_path` (and its textures) as an ARKit-ready .usdz at `path`."""
    from pxr import Sdf, UsdUtils

    if not UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(stage_path)), str(path)):
        raise ExportFailed(str(path), "UsdUtils could not create the usdz package")
