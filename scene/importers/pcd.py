"""Point Cloud Library files (.pcd, v0.7 and older) and plain XYZ text, read with numpy alone.

PCD: a text header (FIELDS, SIZE, TYPE, COUNT, POINTS, DATA), then the points as `ascii` rows, `binary`
records, or `binary_compressed` (LZF; one column after another). Only x, y, z and a packed `rgb`/`rgba` are
kept. Every count in the header is checked against the file before anything is allocated.
XYZ: one point per line, `x y z` and anything after it ignored; `#` starts a comment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from scene.errors import ImportFailed

# The header is a handful of short lines; a file whose first DATA line is not within this many bytes is
# not a PCD file (and a hostile one cannot make us scan gigabytes for it).
MAX_HEADER_BYTES: Final = 1 << 16
# LZF's best case: 3 bytes of back-reference make 264; a larger claimed ratio is a lie told to make us allocate.
MAX_LZF_RATIO: Final = 88
_TYPES: Final = {("F", 4): "<f4", ("F", 8): "<f8", ("I", 1): "<i1", ("I", 2): "<i2", ("I", 4): "<i4",
                 ("I", 8): "<i8", ("U", 1): "<u1", ("U", 2): "<u2", ("U", 4): "<u4", ("U", 8): "<u8"}  # fmt: skip
_DATA_KINDS: Final = ("ascii", "binary", "binary_compressed")


def read_pcd(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Points (n, 3) float64 and sRGB colours (n, 3) in 0..1 or None."""
    header, body = _split_header(path, data)
    fields = header.get("FIELDS", [])
    sizes = [int(s) for s in header.get("SIZE", [])]
    types = header.get("TYPE", [])
    counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
    if not fields or not len(fields) == len(sizes) == len(types) == len(counts):
        raise ImportFailed(str(path), "PCD header: FIELDS, SIZE, TYPE and COUNT must name the same fields")
    if not {"x", "y", "z"} <= set(fields):
        raise ImportFailed(str(path), f"PCD has no x, y, z fields (fields: {' '.join(fields)})")
    points = _count(path, header)
    columns = []
    for name, kind, size, count in zip(fields, types, sizes, counts, strict=True):
        if (kind, size) not in _TYPES:
            raise ImportFailed(str(path), f"PCD field {name}: TYPE {kind} SIZE {size} is not F/I/U of 1/2/4/8 bytes")
        columns.append((name, np.dtype(_TYPES[(kind, size)]), count))
    if any(c < 1 for c in counts):
        raise ImportFailed(str(path), "PCD COUNT must be at least 1 for every field")
    data_kind = header["DATA"][0].lower()
    if data_kind == "ascii":
        table = _ascii(path, body, columns, points)
    else:
        need = sum(dt.itemsize * c for _, dt, c in columns) * points
        raw = body if data_kind == "binary" else _decompress(path, body, need)
        if len(raw) < need:
            raise ImportFailed(str(path), f"PCD is truncated: {points} points need {need} bytes, it has {len(raw)}")
        table = _records(raw[:need], columns, points, interleaved=data_kind == "binary")
    xyz = np.column_stack([table["x"], table["y"], table["z"]]).astype(np.float64)
    packed = table.get("rgb", table.get("rgba"))
    return xyz, None if packed is None else _unpack_rgb(packed)


def read_xyz(path: Path, data: bytes) -> np.ndarray:
    """Points (n, 3) float64 from `x y z ...` lines."""
    try:
        table = np.loadtxt(data.decode("utf-8", "replace").splitlines(), usecols=(0, 1, 2), ndmin=2, comments="#")
    except ValueError as exc:
        raise ImportFailed(str(path), f"XYZ lines must start with three numbers: {exc}") from exc
    return table.astype(np.float64)


def _split_header(path: Path, data: bytes) -> tuple[dict[str, list[str]], bytes]:
    header: dict[str, list[str]] = {}
    offset = 0
    while offset < min(len(data), MAX_HEADER_BYTES):
        end = data.find(b"\n", offset)
        end = len(data) if end < 0 else end
        line = data[offset:end].decode("ascii", "replace").strip()
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            if not values or values[0].lower() not in _DATA_KINDS:
                raise ImportFailed(str(path), f"PCD DATA must be one of {', '.join(_DATA_KINDS)}")
            return header, data[offset:]
    raise ImportFailed(str(path), "not a PCD file: no DATA line in its header")


def _count(path: Path, header: dict[str, list[str]]) -> int:
    try:
        if "POINTS" in header:
            points = int(header["POINTS"][0])
        else:
            points = int(header["WIDTH"][0]) * int(header.get("HEIGHT", ["1"])[0])
    except (KeyError, IndexError, ValueError):
        points = -1
    if points < 0:
        raise ImportFailed(str(path), "PCD header: POINTS (or WIDTH and HEIGHT) must be a whole number")
    return points


def _ascii(path: Path, body: bytes, columns: list[tuple[str, np.dtype, int]], points: int) -> dict[str, np.ndarray]:
    width = sum(c for _, _, c in columns)
    try:
        table = np.loadtxt(body.decode("ascii", "replace").splitlines(), ndmin=2, dtype=np.float64, max_rows=points)
    except ValueError as exc:
        raise ImportFailed(str(path), f"PCD ascii data: {exc}") from exc
    if table.shape[1] < width:
        raise ImportFailed(str(path), f"PCD ascii rows have {table.shape[1]} values, the header names {width}")
    out: dict[str, np.ndarray] = {}
    at = 0
    for name, dt, count in columns:
        column = table[:, at]
        # A packed colour is written as the float whose bits are 0x00RRGGBB: take its bits back.
        out[name] = column.astype(np.float32).view(np.uint32) if name in ("rgb", "rgba") and dt.kind == "f" else column
        at += count
    return out


def _records(
    raw: bytes, columns: list[tuple[str, np.dtype, int]], points: int, *, interleaved: bool
) -> dict[str, np.ndarray]:
    """Each field's first component; `interleaved`: point after point, else field after field (compressed)."""
    out: dict[str, np.ndarray] = {}
    if interleaved:
        record = np.dtype([(f"f{i}", dt, (c,)) for i, (_, dt, c) in enumerate(columns)])
        table = np.frombuffer(raw, dtype=record, count=points)
        for i, (name, dt, _) in enumerate(columns):
            out[name] = _colour_bits(name, dt, table[f"f{i}"][:, 0])
        return out
    at = 0
    for name, dt, count in columns:
        column = np.frombuffer(raw, dtype=dt, count=points * count, offset=at).reshape(points, count)[:, 0]
        out[name] = _colour_bits(name, dt, column)
        at += dt.itemsize * count * points
    return out


def _colour_bits(name: str, dt: np.dtype, column: np.ndarray) -> np.ndarray:
    if name in ("rgb", "rgba") and dt.itemsize == 4:
        return np.ascontiguousarray(column).view(np.uint32)
    return column


def _unpack_rgb(packed: np.ndarray) -> np.ndarray:
    bits = packed.astype(np.uint32)
    rgb = np.column_stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF])
    return rgb.astype(np.float64) / 255.0


def _decompress(path: Path, body: bytes, expected: int) -> bytes:
    """`binary_compressed`: two little-endian uint32 sizes, then LZF data."""
    if len(body) < 8:
        raise ImportFailed(str(path), "PCD binary_compressed data is truncated")
    packed, unpacked = np.frombuffer(body[:8], dtype="<u4")
    if int(unpacked) != expected:
        raise ImportFailed(str(path), f"PCD says {int(unpacked)} bytes uncompressed; its points need {expected}")
    if int(packed) > len(body) - 8:
        raise ImportFailed(str(path), "PCD binary_compressed data is truncated")
    if expected > MAX_LZF_RATIO * int(packed) + 32:
        raise ImportFailed(str(path), f"PCD claims {expected} bytes from {int(packed)} compressed: not LZF")
    try:
        return lzf_decompress(body[8 : 8 + int(packed)], expected)
    except ValueError as exc:
        raise ImportFailed(str(path), f"PCD binary_compressed data is damaged: {exc}") from exc


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LibLZF's format: a control byte < 32 copies that many + 1 literal bytes; else a back-reference of
    (control >> 5) + 2 bytes (7: plus the next byte) at distance ((control & 31) << 8 | next) + 1.
    Exactly `size` bytes must come out; anything else raises ValueError."""
    out = bytearray(size)
    i = o = 0
    n = len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            length = ctrl + 1
            if i + length > n or o + length > size:
                raise ValueError("literal run past the end")
            out[o : o + length] = data[i : i + length]
            i += length
        else:
            length = ctrl >> 5
            if length == 7:
                if i >= n:
                    raise ValueError("back-reference past the end")
                length += data[i]
                i += 1
            if i >= n:
                raise ValueError("back-reference past the end")
            ref = o - ((ctrl & 0x1F) << 8) - data[i] - 1
            i += 1
            length += 2
            if ref < 0 or o + length > size:
                raise ValueError("back-reference out of range")
            distance = o - ref
            while length > 0:  # an overlapping reference repeats its last `distance` bytes
                step = min(length, distance)
                out[o : o + step] = out[ref : ref + step]
                o += step
                ref += step
                length -= step
            continue
        o += length
    if o != size:
        raise ValueError(f"{o} bytes came out, {size} expected")
    return bytes(out)
