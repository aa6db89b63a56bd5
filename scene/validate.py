"""Validators for TwinView's outputs, shared by the tests, `twinview inspect` and CI.

- `validate_glb` runs the Khronos glTF-Validator (npm `gltf-validator`, via node) and returns its errors.
- `validate_usd` runs every registered `pxr.UsdValidation` validator (usd-core 26 has no usdchecker
  and no ComplianceChecker any more) and, with `arkit=True`, the AR Quick Look rules that the old
  `usdchecker --arkit` enforced and that UsdValidation does not cover yet (allowed prim types,
  UsdPreviewSurface-only shaders, png/jpg textures, a self-contained package).

Both return a list of human-readable error strings; an empty list means valid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLTF_VALIDATOR_SCRIPT = REPO / "tests" / "tools" / "validate_gltf.mjs"
GLTF_VALIDATOR_PACKAGE = REPO / "web_client" / "node_modules" / "gltf-validator"
# Large scenes take a few seconds to validate; a hang beyond this is a broken node install.
GLTF_VALIDATOR_TIMEOUT_S = 300
# Khronos report severities: 0 error, 1 warning, 2 info, 3 hint.
SEVERITY_ERROR = 0
SEVERITY_WARNING = 1

# What AR Quick Look renders (the list from usdchecker --arkit's ARKitPrimTypeChecker).
ARKIT_PRIM_TYPES = frozenset(
    {
        "",
        "Scope",
        "Xform",
        "Camera",
        "Shader",
        "Material",
        "Mesh",
        "Sphere",
        "Cube",
        "Cylinder",
        "Cone",
        "Capsule",
        "GeomSubset",
        "Points",
        "SkelRoot",
        "Skeleton",
        "SkelAnimation",
        "BlendShape",
        "SpatialAudio",
    }
)
ARKIT_SHADER_IDS = frozenset({"UsdPreviewSurface", "UsdUVTexture", "UsdPrimvarReader_float2", "UsdTransform2d"})
ARKIT_FILE_EXTENSIONS = frozenset({"usdc", "usda", "usd", "png", "jpg", "jpeg", "m4a", "mp3", "wav"})


class ValidatorUnavailable(RuntimeError):
    """The external validator is not installed; the message says how to install it."""


def gltf_report(path: Path) -> dict:
    """The full Khronos validator report (JSON) for one .glb/.gltf file."""
    node = shutil.which("node")
    if node is None or not GLTF_VALIDATOR_PACKAGE.is_dir():
        raise ValidatorUnavailable(
            "glTF validation needs node and web_client/node_modules/gltf-validator: run ./setup.sh"
        )
    done = subprocess.run(
        [node, str(GLTF_VALIDATOR_SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=GLTF_VALIDATOR_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise ValidatorUnavailable(f"gltf-validator failed on {path}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def _messages(report: dict, severity: int) -> list[str]:
    return [
        f"{m['code']} at {m.get('pointer', '?')}: {m['message']}"
        for m in report["issues"]["messages"]
        if m["severity"] == severity
    ]


def validate_glb(path: Path, *, warnings: bool = False) -> list[str]:
    """Errors (and, with `warnings=True`, also warnings) from the Khronos glTF-Validator."""
    report = gltf_report(path)
    out = _messages(report, SEVERITY_ERROR)
    return out + _messages(report, SEVERITY_WARNING) if warnings else out


def validate_usd(path: Path, arkit: bool = False) -> list[str]:
    """Errors from all UsdValidation validators, plus the AR Quick Look rules when `arkit`."""
    from pxr import Usd, UsdValidation

    stage = Usd.Stage.Open(str(path))
    if stage is None:
        return [f"{path}: cannot open as a USD stage"]
    registry = UsdValidation.ValidationRegistry()
    context = UsdValidation.ValidationContext(registry.GetOrLoadAllValidators())
    out = [
        e.GetErrorAsString() for e in context.Validate(stage) if e.GetType() == UsdValidation.ValidationErrorType.Error
    ]
    if arkit:
        out += _arkit_errors(stage, Path(path))
    return out


def _arkit_errors(stage: object, path: Path) -> list[str]:
    from pxr import Sdf, Usd, UsdShade, UsdUtils

    out: list[str] = []
    if not stage.GetDefaultPrim():
        out.append("ARKit: the stage has no default prim")
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        if prim.GetTypeName() not in ARKIT_PRIM_TYPES:
            out.append(f"ARKit: prim {prim.GetPath()} has unsupported type {prim.GetTypeName()!r}")
        if prim.IsA(UsdShade.Shader):
            shader_id = UsdShade.Shader(prim).GetShaderId()
            if shader_id not in ARKIT_SHADER_IDS:
                out.append(f"ARKit: shader {prim.GetPath()} has unsupported id {shader_id!r}")
    if path.suffix.lower() == ".usdz":
        root = stage.GetRootLayer()
        if root.GetFileFormat() != Sdf.FileFormat.FindById("usdz"):
            out.append("ARKit: not a usdz package")
        names = list(Sdf.ZipFile.Open(str(path)).GetFileNames())
        if not names or not names[0].lower().endswith(".usdc"):
            out.append(f"ARKit: the package's first file must be a .usdc layer, found {names[:1]}")
        for name in names:
            if name.rsplit(".", 1)[-1].lower() not in ARKIT_FILE_EXTENSIONS:
                out.append(f"ARKit: package member {name!r} has an unsupported file type")
        _layers, _assets, unresolved = UsdUtils.ComputeAllDependencies(str(path))
        out += [f"ARKit: unresolved asset {u}" for u in unresolved]
    return out
