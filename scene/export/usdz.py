"""USDZ for AR Quick Look, made from the canonical stage.

AR Quick Look wants one self-contained package: a .usdc root layer first, UsdPreviewSurface
materials only, png/jpg textures, Y-up, a default prim. The canonical stage is written to satisfy
all of that already (one layer, internal references only, textures in `textures/` beside it), so
the package is that layer plus its textures, zipped as USD wants (stored, 64-byte aligned) by
`Sdf.ZipFileWriter`. That skips `UsdUtils.CreateNewARKitUsdzPackage`, which opens the stage to
find dependencies we already know and costs ~30x more. Units stay metres: Quick Look honours
metersPerUnit, so an object keeps its real size in AR. The `twin:` attributes stay too: Quick Look
ignores them, and AR apps that read USD find the twin ids.
"""

from __future__ import annotations

from pathlib import Path

from scene.errors import ExportFailed
from scene.export.usd_stage import TEXTURE_DIR


def write_usdz(stage_path: Path, path: Path) -> None:
    """Package the stage at `stage_path` (and its textures) as an ARKit-ready .usdz at `path`."""
    from pxr import Sdf, Tf

    textures = stage_path.parent / TEXTURE_DIR
    try:
        writer = Sdf.ZipFileWriter.CreateNew(str(path))
        writer.AddFile(str(stage_path), stage_path.name)  # the root layer must come first
        for texture in sorted(textures.iterdir()) if textures.is_dir() else ():
            writer.AddFile(str(texture), f"{TEXTURE_DIR}/{texture.name}")
        writer.Save()
    except Tf.ErrorException as exc:
        raise ExportFailed(str(path), f"USD could not write the package: {exc}") from None
