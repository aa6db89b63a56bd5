"""A built scene directory as the server sees it: its manifest, element search, tree and areas, and public URLs.

The web client never downloads the manifest whole (at 100 000 elements it is ~60 MB): it asks for the
children of a tree node, a search, or one element's record, and each answer is small (docs/CLIENT.md
"Element metadata").
"""

from __future__ import annotations

import bisect
import functools
import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import orjson

from scene.export.tiles import CATALOG_NAME, INDEX_NAME, TILES_DIR, TileIndex, TilesError, read_index

log = logging.getLogger(__name__)

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
# Children of a tree node per request: a screenful of rows many times over; a storey with 20 000 elements
# is read in pages (`offset`), never in one answer of megabytes.
TREE_PAGE_DEFAULT: Final = 200
TREE_PAGE_MAX: Final = 1000


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
    # The streaming tiles (scene/export/tiles.py) when the build wrote a valid index, else None: single-file.
    tiles: TileIndex | None = None

    def tile_file(self, name: str) -> Path | None:
        """The path of a file of `tiles/` that clients may download: the index, the catalogue, a listed tile."""
        if self.tiles is None:
            return None
        if name in (INDEX_NAME, CATALOG_NAME) or any(t.file == name for t in self.tiles.tiles):
            return self.dir / TILES_DIR / name
        return None

    def url(self, name: str) -> str:
        return f"/scenes/{self.id}/{name}"

    @property
    def urls(self) -> dict[str, str]:
        """The scene's files; `tiles`, the index of its streaming tiles, only when it has them."""
        return {
            "glb": self.url("scene.glb"),
            "manifest": self.url("manifest.json"),
            "usdz": self.url("scene.usdz"),
            "usdc": self.url("scene.usdc"),
            **({"tiles": self.url(f"{TILES_DIR}/{INDEX_NAME}")} if self.tiles is not None else {}),
        }

    @functools.cached_property
    def index(self) -> ElementIndex:
        return ElementIndex(list(self.elements.values()))

    def search(self, q: str | None, limit: int) -> list[dict[str, Any]]:
        """Elements whose id, name or class contain every word of `q` (case-insensitive); all when q is empty."""
        return self.index.search(q, limit)

    @functools.cached_property
    def tree(self) -> ElementTree:
        return ElementTree(list(self.elements.values()))

    @functools.cached_property
    def areas(self) -> ElementBoxes:
        return ElementBoxes(list(self.elements.values()))

    def prepare(self) -> None:
        """Build the search index, the tree and the boxes now (~1 s at 100 000 elements), in a thread at start-up,
        so that no client's first search, tree page or interest waits for them."""
        for cached in ("index", "tree", "areas"):
            getattr(self, cached)


class ElementIndex:
    """Substring search over every element's id, name and class without a Python loop per element: one
    lowercase text holds them all, a record per line, and `str.find` (C) jumps from match to match. At
    100 000 elements a query that matches nothing scans ~6 MB in a few milliseconds (a loop over the
    records took ~100 ms)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        lines = [
            f"{el.get('id', '')}\x00{el.get('name', '')}\x00{el.get('class', '')}".lower().replace("\n", " ")
            for el in records
        ]
        self.text = "\n".join(lines) + "\n"
        self.starts = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))

    def search(self, q: str | None, limit: int) -> list[dict[str, Any]]:
        """Records whose id, name or class hold every word of `q` (case-insensitive); the first `limit` when q is
        empty. The longest word is looked for with `str.find`, the others only in the lines it hits."""
        words = sorted(set((q or "").lower().split()), key=len, reverse=True)
        if not words:
            return self.records[:limit]
        needle, others = words[0], words[1:]
        out: list[dict[str, Any]] = []
        at = self.text.find(needle)
        while at >= 0 and len(out) < limit:
            row = bisect.bisect_right(self.starts, at) - 1
            line = self.text[self.starts[row] : self.starts[row + 1]]
            if all(word in line for word in others):
                out.append(self.records[row])
            at = self.text.find(needle, self.starts[row + 1])  # the next record: one hit per element
        return out


class TreeNode(msgspec.Struct, frozen=True):
    """One row of the element tree: what a client shows, and how many children it may expand (0: a leaf)."""

    id: str
    name: str
    cls: str = msgspec.field(name="class")
    children: int = 0


class ElementTree:
    """The element hierarchy as child lists (file order); an element whose parent is not in the scene is a root."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        ids = {el["id"] for el in records}
        self.records = {el["id"]: el for el in records}
        self.children: dict[str | None, list[str]] = {}
        for el in records:
            parent = el.get("parent")
            self.children.setdefault(parent if parent in ids else None, []).append(el["id"])

    def __contains__(self, eid: str) -> bool:
        return eid in self.records

    def page(self, parent: str | None, offset: int, limit: int) -> tuple[int, list[TreeNode]]:
        """How many children `parent` (None: the roots) has, and `limit` of them from `offset` on."""
        kids = self.children.get(parent, [])
        return len(kids), [self._node(eid) for eid in kids[offset : offset + limit]]

    def _node(self, eid: str) -> TreeNode:
        el = self.records[eid]
        return TreeNode(eid, str(el.get("name") or ""), str(el.get("class") or ""), len(self.children.get(eid, ())))


class ElementBoxes:
    """Every element's own world box (manifest `bbox`) as arrays, to find the elements in an area at once."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        boxed = [el for el in records if _is_box(el.get("bbox"))]
        self.ids = [el["id"] for el in boxed]
        boxes = np.asarray([el["bbox"] for el in boxed], dtype=np.float64).reshape(-1, 2, 3)
        self.lo, self.hi = boxes[:, 0], boxes[:, 1]

    def overlapping(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> list[str]:
        """The elements whose box meets the box [lo, hi] (touching counts); elements without geometry never do."""
        hit = np.all(self.lo <= np.asarray(hi), axis=1) & np.all(self.hi >= np.asarray(lo), axis=1)
        return [self.ids[i] for i in np.flatnonzero(hit)]


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(c, list) and len(c) == 3 and all(isinstance(x, int | float) for x in c) for c in value)
    )


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
    return SceneEntry(scene_id_for(scene_dir), scene_dir, raw, manifest, elements, _tiles(scene_dir))


def _tiles(scene_dir: Path) -> TileIndex | None:
    """The scene's tile index, if it has one that reads; a bad one is logged and the scene served as one file."""
    path = scene_dir / TILES_DIR / INDEX_NAME
    if not path.is_file():
        return None
    try:
        return read_index(path)
    except TilesError as exc:
        log.warning("tiles not used, serving scene.glb whole: %s", exc)
        return None
