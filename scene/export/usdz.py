"""USDZ for AR Quick Look, made from the canonical stage.

AR Quick Look wants one self-contained package: a .usdc root layer first, UsdPreviewSurface
materials only, png/jpg textures, Y-up, a default prim. The canonical stage is written to satisfy
all of that already (internal references only, textures in `textures/` beside it), so the package
is its layers and textures, each at its path relative to the root layer, zipped as USD wants
(stored, 64-byte aligned) by `Sdf.ZipFileWriter`. That skips `UsdUtils.CreateNewARKitUsdzPackage`,
which opens the stage to find dependencies we already know and costs ~30x more. Units stay metres:
Quick Look honours metersPerUnit, so an object keeps its real size in AR. The `twin:` attributes
stay too: Quick Look ignores them, and AR apps that read USD find the twin ids. A stage of up to
`usd_stage.PART_ELEMENTS` elements is one layer, as the old `usdchecker --arkit` asked; a larger one
is its root layer and its part layers (`scene.parts/`), all inside the package.
"""

from __future__ import annotations

from pathlib import Path

from scene.errors import ExportFailed
from scene.export.usd_stage import TEXTURE_DIR, stage_files


def write_usdz(stage_path: Path, path: Path) -> None:
    """Package the stage at `stage_path` (its layers and textures) as an ARKit-ready .usdz at `path`."""
    from pxr import Sdf, Tf

    textures = stage_path.parent / TEXTURE_DIR
    try:
        writer = Sdf.ZipFileWriter.CreateNew(str(path))
        for layer in stage_files(stage_path):  # the root layer must come first
            writer.AddFile(str(layer), layer.relative_to(stage_path.parent).as_posix())
        for texture in sorted(textures.iterdir()) if textures.is_dir() else ():
            writer.AddFile(str(texture), f"{TEXTURE_DIR}/{texture.name}")
        writer.Save()
    except Tf.ErrorException as exc:
        raise ExportFailed(str(path), f"USD could not write the package: {exc}") from None
