"""`manifest.json`: what was converted, from what, and every element with its id, class and bounds.

`elements[i].bbox` is the world-space axis-aligned box of the element's *own* geometry (not its
children's), [[minx, miny, minz], [maxx, maxy, maxz]] in metres, or null when it has none: a
client can union children itself, but cannot subtract them. `triangles` counts that geometry too.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scene.model import Scene

MANIFEST_FORMAT = "twinview-manifest"
MANIFEST_VERSION = 1
# Bounds to the micrometre: enough for picking and framing, and it keeps the file short.
BBOX_DECIMALS = 6


class ManifestError(ValueError):
    """The file is not a TwinView manifest this version can read."""


def write_manifest(scene: Scene, path: Path, stats: dict[str, Any]) -> None:
    """Write the manifest; `stats` (e.g. stage timings, GlbStats) is merged into "stats". The element records
    are encoded and written one at a time (the file is the text `build_manifest` would give), so a plant's
    manifest is never held whole, as a dictionary or as text."""
    # Compact: a 10 000-element manifest shrinks by a third; `twinview inspect` pretty-prints it.
    encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_jsonable)
    head = encoder.encode({**_head(scene, stats), "elements": []})
    assert head.endswith('"elements":[]}')  # the records go last, between these brackets
    with Path(path).open("w", encoding="utf-8") as f:
        f.write(head[: -len("]}")])
        for i, record in enumerate(_records(scene)):
            if i:
                f.write(",")
            f.write(encoder.encode(record))
        f.write("]}")


def _jsonable(value: object) -> object:
    """Stats may hold dataclasses (GlbStats) and numpy scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def build_manifest(scene: Scene, stats: dict[str, Any]) -> dict[str, Any]:
    return {**_head(scene, stats), "elements": list(_records(scene))}


def _head(scene: Scene, stats: dict[str, Any]) -> dict[str, Any]:
    """Everything but the element records."""
    elements = scene.elements.values()
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "units": "m",
        "up_axis": "Y",
        "inputs": [
            {
                "path": rec.path,
                "sha256": rec.sha256,
                "format": rec.format,
                "importer": rec.importer,
                "source_units": rec.source_units,
                "source_up_axis": rec.source_up_axis,
            }
            for rec in scene.inputs
        ],
        "stats": {
            "elements": len(elements),
            "triangles": scene.triangle_count,
            "points": sum(scene.meshes[e.mesh].point_count for e in elements if e.mesh in scene.meshes),
            "meshes": len(scene.meshes),
            "materials": len(scene.materials),
            "by_class": dict(Counter(e.cls for e in elements)),
            **stats,
        },
        "warnings": list(scene.warnings),
    }


def _records(scene: Scene) -> Iterator[dict[str, Any]]:
    """One record per element, in scene order."""
    mesh_bounds = {mid: m.local_bounds() for mid, m in scene.meshes.items()}
    for e in scene.elements.values():
        yield {
            "id": e.id,
            "name": e.name,
            "class": e.cls,
            "parent": e.parent,
            "bbox": _world_bbox(mesh_bounds.get(e.mesh) if e.mesh else None, e.matrix),
            "triangles": scene.meshes[e.mesh].triangle_count if e.mesh in scene.meshes else 0,
            "properties": e.properties,
            **({"units": e.units} if e.units else {}),
        }


def _world_bbox(local: tuple[np.ndarray, np.ndarray] | None, matrix: np.ndarray) -> list[list[float]] | None:
    if local is None:
        return None
    lo, hi = local
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1).T
    world = corners @ matrix[:3, :3].T + matrix[:3, 3]
    return [np.round(world.min(axis=0), BBOX_DECIMALS).tolist(), np.round(world.max(axis=0), BBOX_DECIMALS).tolist()]


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest, refusing other formats and newer versions with a message that says which."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not readable as JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a {MANIFEST_FORMAT} file")
    version = data.get("version")
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ManifestError(f"{path}: manifest version {version!r}; this TwinView reads up to {MANIFEST_VERSION}")
    return data
