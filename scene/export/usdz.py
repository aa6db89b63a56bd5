"""USDZ for AR Quick Look, made from the canonical stage.

AR Quick Look wants one self-contained package: a single flattened .usdc root layer (no
references, no instancing it cannot resolve), UsdPreviewSurface materials only, png/jpg
textures, Y-up, a default prim. Units stay metres: Quick Look honours metersPerUnit, so an object
keeps its real size in AR. The stage's custom `twin:` attributes are removed from the copy:
Quick Look ignores them and they only add bytes; the .usdc keeps them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from scene.errors import ExportFailed

TWIN_NAMESPACE = "twin:"
PROTOTYPES = "/World/_Prototypes"


def write_usdz(stage_path: Path, path: Path) -> None:
    """Package the stage at `stage_path` (and its textures) as an ARKit-ready .usdz at `path`."""
    from pxr import Sdf, Usd, UsdUtils

    stage = Usd.Stage.Open(str(stage_path))
    if stage is None:
        raise ExportFailed(str(path), f"cannot open stage {stage_path}")
    flat = stage.Flatten()
    with Sdf.ChangeBlock():
        _strip_for_arkit(flat)
    # Flatten anchors asset paths, so the root layer can be written anywhere; the packager copies
    # the textures it references into the archive.
    with tempfile.TemporaryDirectory(prefix="twinview-usdz-") as tmp:
        root = Path(tmp) / f"{Path(path).stem}.usdc"
        flat.Export(str(root))
        ok = UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(root)), str(path))
    if not ok:
        raise ExportFailed(str(path), "UsdUtils could not create the usdz package")


def _strip_for_arkit(layer: object) -> None:
    """Remove custom twin: attributes and the abstract prototypes nothing draws."""
    from pxr import Sdf

    doomed: list[object] = []

    def visit(path: object) -> None:
        if path.IsPropertyPath() and path.name.startswith(TWIN_NAMESPACE):
            doomed.append(path)

    layer.Traverse(Sdf.Path.absoluteRootPath, visit)
    if layer.GetPrimAtPath(PROTOTYPES) is not None:
        doomed.append(Sdf.Path(PROTOTYPES))
    edit = Sdf.BatchNamespaceEdit()
    for path in doomed:
        edit.Add(Sdf.NamespaceEdit.Remove(path))
    if not layer.Apply(edit):
        raise ExportFailed(layer.identifier, "could not strip twin: attributes for the usdz copy")
