"""Helpers every importer shares: provenance, stable ids, safe URI resolution, sanity checks."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from scene.errors import ImportFailed
from scene.model import InputRecord, Scene

# Read files in 1 MiB blocks so hashing a multi-GB scan never holds it in memory.
HASH_BLOCK = 1 << 20

# Longest element id adopted from a file (TwinView's own GLB/USD outputs carry ids back in);
# anything longer is not an id TwinView wrote and falls back to a derived one.
MAX_ADOPTED_ID_LENGTH = 256

# Files up to this size are read to check they are not just whitespace; larger ones cannot be.
BLANK_CHECK_LIMIT = 1 << 16

# Characters kept verbatim in element ids; anything else becomes "_" so ids stay URL- and USD-friendly.
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:/\-]")


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    """Add the block's wall time to `timings[step]` (reported per import step by `twinview build`)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def new_scene(path: Path, fmt: str, importer: str, source_units: str = "m", source_up_axis: str = "Y") -> Scene:
    """An empty scene carrying the one InputRecord every import must have."""
    scene = Scene()
    scene.inputs.append(
        InputRecord(
            path=str(path),
            sha256=sha256_file(path),
            format=fmt,
            importer=importer,
            source_units=source_units,
            source_up_axis=source_up_axis,
        )
    )
    return scene


def read_nonempty(path: Path) -> bytes:
    """The file's bytes; an empty file is refused up front with the same wording for every format."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFailed(str(path), f"cannot read file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ImportFailed(str(path), "empty file: contains no geometry")
    return data


def require_nonempty(path: Path) -> None:
    """Refuse an empty (or whitespace-only) file without reading a large one into memory."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImportFailed(str(path), f"cannot read file: {exc.strerror or exc}") from exc
    if size <= BLANK_CHECK_LIMIT:
        read_nonempty(path)


def sanitise(text: str) -> str:
    return _UNSAFE_ID_CHARS.sub("_", text)


def element_id(path: Path, source_path: str) -> str:
    """Deterministic twin id from the file name and the element's path inside the source."""
    return f"{sanitise(path.stem)}:{sanitise(source_path)}"


def adopted_id(value: object) -> str | None:
    """`value` if it can serve as a twin id carried in a file (glTF extras.id, USD twin:id), else None.

    Adopted ids are kept verbatim (IFC GlobalIds contain `$`), only checked for shape.
    """
    if isinstance(value, str) and 0 < len(value) <= MAX_ADOPTED_ID_LENGTH and value.isprintable():
        return value
    return None


def unique_id(scene: Scene, base: str) -> str:
    """`base`, or `base~2`, `base~3`… when siblings share a name; stable because import order is."""
    if base not in scene.elements and base not in scene.meshes:
        return base
    n = 2
    while f"{base}~{n}" in scene.elements or f"{base}~{n}" in scene.meshes:
        n += 1
    return f"{base}~{n}"


def resolve_inside(path: Path, uri: str, what: str) -> Path:
    """Resolve a relative URI found inside `path`, refusing URLs and anything outside its folder.

    A file must never make the importer fetch from the network or read files the user did not hand
    over; symlinks are resolved before the containment check so they cannot escape either.
    """
    parsed = urlparse(uri)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, refused below as absolute
        raise ImportFailed(str(path), f"{what} names an external URI, which TwinView never fetches", uri)
    relative = unquote(uri)
    if Path(relative).is_absolute() or re.match(r"^[A-Za-z]:[\\/]", relative):
        raise ImportFailed(str(path), f"{what} uses an absolute path; only files beside the model are read", uri)
    folder = path.resolve().parent
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder):
        raise ImportFailed(str(path), f"{what} points outside the model's folder", uri)
    return target  # may not exist: whether that is fatal depends on what refers to it


def require_finite(path: Path, values: np.ndarray, where: str) -> None:
    """Refuse NaN/inf coordinates: they poison bounds, LOD and every camera fit downstream."""
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise ImportFailed(str(path), f"{bad} NaN/infinite coordinate value(s)", where)


def require_geometry(path: Path, scene: Scene) -> Scene:
    has_any = any(len(p.positions) for m in scene.meshes.values() for p in m.primitives)
    if not has_any:
        raise ImportFailed(str(path), "contains no geometry")
    return scene


def sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def hex_color(rgb: tuple[float, ...] | np.ndarray) -> str:
    """The colour as "#rrggbb": a readable default name for colour-only materials."""
    r, g, b = (round(min(max(float(c), 0.0), 1.0) * 255) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded 0..1 values to linear (the model stores linear colours)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
