"""Tiles for large scenes: the browser's first frame never waits for the whole model (docs/CLIENT.md *Tiles*).

Above `TILE_MIN_ELEMENTS` drawn elements, `twinview build` also writes `tiles/` beside `scene.glb`:

- `tile-<n>.glb`: the elements of one cell of a k-d partition of their box centres (at most `TILE_ELEMENTS`
  each), written by the same GLB writer as `scene.glb` (meshopt, LODs), so each tile is self-contained: its
  meshes, its element nodes with the same ids, names and extras, and the ancestors of those elements (site,
  storeys, …) as nodes without mesh, which keep the hierarchy and the placements. Every drawn element is in
  exactly one tile; a shared mesh is written once per tile that uses it;
- `elements.json`: every element's id, name, class and parent as columns (the client's catalogue: tree, names and
  classes before any tile has arrived);
- `tiles.json`: the index — per tile its file, world bounds, elements, triangles and bytes, and its **impostors**:
  the boxes of its largest elements with their colours, which the client draws at once as the coarse level and
  replaces by the tile when it arrives. The index is two levels deep (the coarse level, then the tiles).

`read_index` checks an index as hostile input: sizes, counts, names and finite numbers.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
import numpy as np

from scene.export.glb import write_glb
from scene.finite import Finite
from scene.model import Scene

TILES_DIR: Final = "tiles"
INDEX_NAME: Final = "tiles.json"
CATALOG_NAME: Final = "elements.json"
INDEX_FORMAT: Final = "twinview-tiles"
# From this many drawn elements on a scene gets tiles (BENCHMARKS.md §16: at 20 000 the single file's first frame
# and panels came as early and the whole model sooner; at 50 000 and 100 000 tiles brought the first frame and the
# panels 2-3x sooner).
TILE_MIN_ELEMENTS: Final = 30_000
# Elements per tile: a 100 000-element plant gets 16 tiles. Smaller tiles come sooner each, but every tile is a few
# draw calls of its own (its merged batch and up to 4 instanced ones), which on a software GL cost ~1 ms a frame
# each: 64 tiles of 1 560 were 320 draw calls (BENCHMARKS.md §16).
TILE_ELEMENTS: Final = 8_000
# The boxes per tile drawn before the tile arrives: its largest elements (12 triangles each).
IMPOSTORS_PER_TILE: Final = 64
# What a reader accepts: more tiles than a million-element scene would make at TILE_ELEMENTS, an index of a few
# MB, and nothing outside the tile file pattern (a name is never a path).
MAX_TILES: Final = 4096
MAX_INDEX_BYTES: Final = 16 * 1024 * 1024
MAX_ELEMENTS: Final = 10_000_000
TILE_FILE: Final = re.compile(r"tile-[0-9]{1,5}\.glb")
BOX_DECIMALS: Final = 3

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_ELEMENTS * 1000)]
Point = tuple[Finite, Finite, Finite]
Rgb = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFF)]


class TilesError(Exception):
    """A tile index that cannot be used; says what is wrong and what to do."""


class Impostor(msgspec.Struct, array_like=True, frozen=True):
    """One box of the coarse level: its world corners and the element's colour (0xRRGGBB)."""

    lo: Point
    hi: Point
    rgb: Rgb


class Tile(msgspec.Struct, frozen=True):
    file: Annotated[str, msgspec.Meta(pattern=TILE_FILE.pattern + "$", max_length=16)]
    lo: Point
    hi: Point
    elements: Annotated[int, msgspec.Meta(ge=0, le=MAX_ELEMENTS)]
    triangles: Count
    bytes: Count
    impostors: Annotated[list[Impostor], msgspec.Meta(max_length=IMPOSTORS_PER_TILE)] = []


class TileIndex(msgspec.Struct, frozen=True):
    format: Literal["twinview-tiles"]
    version: Literal[1]
    elements: Annotated[int, msgspec.Meta(ge=0, le=MAX_ELEMENTS)]
    lo: Point
    hi: Point
    tiles: Annotated[list[Tile], msgspec.Meta(max_length=MAX_TILES)]
    catalog: Literal["elements.json"] = "elements.json"


def read_index(path: Path) -> TileIndex:
    """The index at `path`, checked: at most MAX_INDEX_BYTES, the schema, finite numbers, tile names that are file
    names of this folder, each once, and element counts that add up. Raises TilesError."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_INDEX_BYTES + 1)
    except OSError as exc:
        raise TilesError(f"{path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_INDEX_BYTES:
        raise TilesError(f"{path}: larger than {MAX_INDEX_BYTES} bytes; rebuild the scene with `twinview build`")
    try:
        index = msgspec.json.decode(raw, type=TileIndex)
    except msgspec.DecodeError as exc:
        raise TilesError(f"{path}: {exc}; rebuild the scene with `twinview build`") from None
    files = [t.file for t in index.tiles]
    if len(set(files)) != len(files):
        raise TilesError(f"{path}: a tile file is listed twice; rebuild the scene with `twinview build`")
    if sum(t.elements for t in index.tiles) != index.elements:
        raise TilesError(f"{path}: the tiles' elements do not add up to {index.elements}; rebuild the scene")
    return index


def partition(centres: np.ndarray, per_tile: int = TILE_ELEMENTS) -> list[np.ndarray]:
    """Indices of `centres` (n, 3) in cells of at most `per_tile`: a k-d tree split at the median of the longest
    axis, cells in depth-first order (neighbours in space are neighbours in the list). Every index is in
    exactly one cell."""
    if per_tile < 1:
        raise ValueError("per_tile must be at least 1")
    cells: list[np.ndarray] = []
    stack = [np.arange(len(centres))]
    while stack:
        idx = stack.pop()
        if len(idx) <= per_tile:
            if len(idx):
                cells.append(idx)
            continue
        pts = centres[idx]
        axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
        half = len(idx) // 2
        order = np.argpartition(pts[:, axis], half)
        stack.extend((idx[order[half:]], idx[order[:half]]))  # low half popped first
    return cells


def element_boxes(scene: Scene, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """World boxes (lo, hi) of the elements `ids`' own geometry, vectorised (8 corners of each mesh box)."""
    bounds = {mid: m.local_bounds() for mid, m in scene.meshes.items()}
    local = np.zeros((len(ids), 2, 3))
    matrices = np.empty((len(ids), 4, 4))
    for i, eid in enumerate(ids):
        el = scene.elements[eid]
        b = bounds.get(el.mesh) if el.mesh else None
        if b is not None:
            local[i] = b
        matrices[i] = el.matrix
    corners = np.stack([local[:, [x, y, z], [0, 1, 2]] for x in (0, 1) for y in (0, 1) for z in (0, 1)], axis=1)
    world = np.einsum("nij,nkj->nki", matrices[:, :3, :3], corners) + matrices[:, None, :3, 3]
    return world.min(axis=1), world.max(axis=1)


def drawn_elements(scene: Scene) -> list[str]:
    """Elements with geometry, in scene order: what tiles partition."""
    return [e.id for e in scene.elements.values() if e.mesh is not None and e.mesh in scene.meshes]


def wants_tiles(scene: Scene, threshold: int = TILE_MIN_ELEMENTS) -> bool:
    return threshold > 0 and len(drawn_elements(scene)) >= threshold


def write_tiles(
    scene: Scene, outdir: Path, *, compress: bool = False, lod: bool = False, per_tile: int = TILE_ELEMENTS
) -> TileIndex:
    """Write `outdir/tiles/` (tiles, catalogue, index) for `scene`; returns the index."""
    folder = outdir / TILES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    ids = drawn_elements(scene)
    lo, hi = element_boxes(scene, ids)
    cells = partition((lo + hi) / 2, per_tile)
    tiles = [
        _write_tile(scene, [ids[i] for i in cell], lo[cell], hi[cell], folder / f"tile-{n}.glb", compress, lod)
        for n, cell in enumerate(cells)
    ]
    tile_of = {ids[i]: n for n, cell in enumerate(cells) for i in cell}
    (folder / CATALOG_NAME).write_bytes(catalog_bytes(scene, tile_of))
    index = TileIndex(
        INDEX_FORMAT, 1, len(ids), _point(lo.min(axis=0) if ids else np.zeros(3)),
        _point(hi.max(axis=0) if ids else np.zeros(3)), tiles,
    )  # fmt: skip
    (folder / INDEX_NAME).write_bytes(msgspec.json.encode(index))
    return index


def catalog_bytes(scene: Scene, tile_of: dict[str, int]) -> bytes:
    """Every element's id, name, class (an index into `classes`), parent (an index into `ids`, -1: a root) and tile
    (-1: no geometry) as columns: ~50 B per element instead of a manifest record's hundreds."""
    order = {eid: i for i, eid in enumerate(scene.elements)}
    classes: dict[str, int] = {}
    cls = [classes.setdefault(e.cls, len(classes)) for e in scene.elements.values()]
    parents = [order.get(e.parent, -1) if e.parent is not None else -1 for e in scene.elements.values()]
    return json.dumps(
        {
            "ids": list(scene.elements),
            "names": [e.name for e in scene.elements.values()],
            "classes": list(classes),
            "class": cls,
            "parent": parents,
            "tile": [tile_of.get(eid, -1) for eid in scene.elements],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _write_tile(
    scene: Scene, members: list[str], lo: np.ndarray, hi: np.ndarray, path: Path, compress: bool, lod: bool
) -> Tile:
    """One tile: `members` with their meshes, and all their ancestors (as nodes without geometry unless they are
    members too), so that every node keeps its parent and its placement."""
    keep = set(members)
    ancestors: set[str] = set()
    for eid in members:
        parent = scene.elements[eid].parent
        while parent is not None and parent not in ancestors and parent not in keep:
            ancestors.add(parent)
            parent = scene.elements[parent].parent
    sub = Scene(materials=scene.materials, inputs=scene.inputs)
    for el in scene.elements.values():  # scene order: parents before children
        if el.id in keep:
            sub.elements[el.id] = el
            sub.meshes.setdefault(el.mesh, scene.meshes[el.mesh])  # type: ignore[index]
        elif el.id in ancestors:
            sub.elements[el.id] = dataclasses.replace(el, mesh=None)
    stats = write_glb(sub, path, compress=compress, lod=lod)
    size = hi - lo
    largest = np.argsort(-np.einsum("ij,ij->i", size, size))[:IMPOSTORS_PER_TILE]
    impostors = [Impostor(_point(lo[i]), _point(hi[i]), _rgb(scene, members[i])) for i in sorted(largest)]
    return Tile(path.name, _point(lo.min(axis=0)), _point(hi.max(axis=0)), len(members), stats.triangles,
                stats.bytes, impostors)  # fmt: skip


def _rgb(scene: Scene, eid: str) -> int:
    mesh = scene.meshes[scene.elements[eid].mesh]  # type: ignore[index]
    if not mesh.primitives or not scene.materials:
        return 0xCCCCCC
    r, g, b, _ = scene.materials[mesh.primitives[0].material].base_color
    return (round(r * 255) << 16) | (round(g * 255) << 8) | round(b * 255)


def _point(v: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (round(float(c), BOX_DECIMALS) for c in v)
    return (x, y, z)
