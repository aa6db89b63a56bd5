"""A built scene directory as the server sees it: its manifest, element index and public URLs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

MANIFEST_FORMAT: Final = "twinview-manifest"
# Files of a SCENE_DIR that clients may download, with their media types (AR Quick Look needs the
# USDZ one); anything else in the directory stays private.
SCENE_FILES: Final = {
    "manifest.json": "application/json",
    "scene.glb": "model/gltf-binary",
    "scene.usdc": "application/octet-stream",
    "scene.usdz": "model/vnd.usdz+zip",
}
# Search results per request: enough for a picker list, small enough to answer in a millisecond.
MAX_SEARCH_RESULTS: Final = 200


@dataclass
class SceneError(Exception):
    """A scene directory the server cannot serve."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class SceneEntry:
    id: str
    dir: Path
    manifest_bytes: bytes
    manifest: dict[str, Any]
    elements: dict[str, dict[str, Any]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"/scenes/{self.id}/{name}"

    @property
    def urls(self) -> dict[str, str]:
        return {
            "glb": self.url("scene.glb"),
            "manifest": self.url("manifest.json"),
            "usdz": self.url("scene.usdz"),
            "usdc": self.url("scene.usdc"),
        }

    def search(self, q: str | None, limit: int) -> list[dict[str, Any]]:
        """Elements whose id, name or class contains `q` (case-insensitive); all when q is empty."""
        needle = (q or "").strip().lower()
        out = []
        for el in self.elements.values():
            hay = f"{el.get('id', '')}\x00{el.get('name', '')}\x00{el.get('class', '')}".lower()
            if needle in hay:
                out.append(el)
                if len(out) >= limit:
                    break
        return out


def scene_id_for(path: Path) -> str:
    """A URL-safe id from the directory name: "Pump Station (v2)" -> "pump-station-v2"."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", path.resolve().name.lower()).strip("-")
    return slug or "scene"


def load_scene(scene_dir: Path) -> SceneEntry:
    """Read SCENE_DIR/manifest.json; raises SceneError with the problem."""
    path = scene_dir / "manifest.json"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SceneError(str(path), exc.strerror or str(exc)) from None
    try:
        manifest = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SceneError(str(path), f"bad JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise SceneError(str(path), f"not a {MANIFEST_FORMAT} file (run `twinview build` first)")
    elements = {el["id"]: el for el in manifest.get("elements", []) if isinstance(el, dict) and "id" in el}
    return SceneEntry(scene_id_for(scene_dir), scene_dir, raw, manifest, elements)
