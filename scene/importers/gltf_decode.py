"""glTF 2.0 container and accessor decoding: GLB framing, buffers, bufferViews, accessors.

We decode glTF ourselves instead of through trimesh because trimesh silently loads several
malformed files as empty scenes, fails on EXT_meshopt_compression and on accessors without a
bufferView (KHR_mesh_quantization), and flattens the node tree we need for stable element ids.
Every structural check happens here, before any array is built, so a hostile file fails with
the exact glTF object that is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scene.errors import ImportFailed
from scene.importers._common import read_nonempty, resolve_inside, sniff_image

GLB_MAGIC = b"glTF"
GLB_HEADER = struct.Struct("<4sII")  # magic, version, total length
GLB_CHUNK_HEADER = struct.Struct("<II")  # chunk length, chunk type
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

COMPONENT_DTYPES: dict[int, np.dtype] = {
    5120: np.dtype("<i1"),
    5121: np.dtype("<u1"),
    5122: np.dtype("<i2"),
    5123: np.dtype("<u2"),
    5125: np.dtype("<u4"),
    5126: np.dtype("<f4"),
}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}

# Accessors without a bufferView (or sparse ones) are allocated from `count` alone; cap it so a
# forged count cannot demand gigabytes. 2^28 elements is far beyond any real viewer asset.
MAX_ACCESSOR_COUNT = 1 << 28

# Relative tolerance when checking float accessor data against its declared min/max: exporters
# round the JSON bounds, so a strict comparison flags honest files.
MINMAX_TOLERANCE = 1e-4

# RFC 2397 header as glTF uses it: optional media type, optional key=value parameters, base64 flag.
_DATA_URI_HEADER = re.compile(r"^data:(?:[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[^;,]*)*;base64$")

MESHOPT_FILTERS = {"OCTAHEDRAL", "QUATERNION", "EXPONENTIAL"}


@dataclass
class GltfDocument:
    """A parsed glTF with its buffers loaded and checked; accessors decode on demand."""

    path: Path
    json: dict[str, Any]
    buffers: list[bytes | None]
    warnings: list[str] = field(default_factory=list)
    _views: dict[int, bytes] = field(default_factory=dict)

    def fail(self, reason: str, where: str) -> ImportFailed:
        return ImportFailed(str(self.path), reason, where)

    def items(self, key: str) -> list[dict[str, Any]]:
        value = self.json.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(f"'{key}' must be an array of objects", key)
        return value

    def item(self, key: str, index: Any) -> dict[str, Any]:
        items = self.items(key)
        if not isinstance(index, int) or not 0 <= index < len(items):
            raise self.fail(f"reference to missing {key[:-1]} {index!r}", key)
        return items[index]

    def view_bytes(self, index: int) -> bytes:
        """The bytes of bufferView `index` (meshopt-decoded when compressed)."""
        if index not in self._views:
            self._views[index] = self._load_view(index)
        return self._views[index]

    def _load_view(self, index: int) -> bytes:
        view = self.item("bufferViews", index)
        where = f"bufferViews[{index}]"
        meshopt = view.get("extensions", {}).get("EXT_meshopt_compression")
        if meshopt is not None:
            return decode_meshopt(self, meshopt, where)
        data = self._buffer(view.get("buffer"), where)
        return _slice(self, data, view.get("byteOffset", 0), view.get("byteLength"), where)

    def _buffer(self, index: Any, where: str) -> bytes:
        self.item("buffers", index)
        data = self.buffers[index]
        if data is None:
            raise self.fail(f"buffer {index} has no data (no uri and not the GLB binary chunk)", where)
        return data

    def accessor(self, index: Any) -> np.ndarray:
        """Accessor `index` as an (count, width) array; normalized integers become float32 in 0..1 / -1..1."""
        raw = self.raw_accessor(index)
        acc = self.item("accessors", index)
        if acc.get("normalized") and raw.dtype.kind in "iu":
            info = np.iinfo(raw.dtype)
            return np.maximum(raw.astype(np.float32) / info.max, -1.0)
        return raw

    def raw_accessor(self, index: Any) -> np.ndarray:
        acc = self.item("accessors", index)
        where = f"accessors[{index}]"
        dtype = COMPONENT_DTYPES.get(acc.get("componentType"))  # type: ignore[arg-type]
        width = TYPE_WIDTHS.get(acc.get("type"))  # type: ignore[arg-type]
        count = acc.get("count")
        if dtype is None or width is None:
            raise self.fail(f"unsupported componentType/type {acc.get('componentType')}/{acc.get('type')}", where)
        if not isinstance(count, int) or not 0 <= count <= MAX_ACCESSOR_COUNT:
            raise self.fail(f"count {count!r} is not an integer in 0..{MAX_ACCESSOR_COUNT}", where)
        if "bufferView" in acc:
            out = _strided(self, acc["bufferView"], acc.get("byteOffset", 0), count, width, dtype, where)
        else:
            out = np.zeros((count, width), dtype=dtype)  # spec: no bufferView means all zeros
        sparse = acc.get("sparse")
        if sparse:
            out = _apply_sparse(self, out, sparse, width, dtype, where)
        self._check_bounds(acc, out, where)
        return out

    def _check_bounds(self, acc: dict[str, Any], data: np.ndarray, where: str) -> None:
        # Declared min/max only steer culling and dequantisation hints; the data is what gets drawn,
        # so a mismatch is a warning (the file still renders as its author's other tools show it).
        if not len(data):
            return
        for key, op in (("min", np.less), ("max", np.greater)):
            bound = acc.get(key)
            if not isinstance(bound, list) or len(bound) != data.shape[1]:
                continue
            limit = np.asarray(bound, dtype=np.float64)
            slack = MINMAX_TOLERANCE * np.maximum(np.abs(limit), 1.0) if data.dtype.kind == "f" else 0.0
            target = limit - slack if key == "min" else limit + slack
            outside = int(np.count_nonzero(op(data.astype(np.float64), target)))
            if outside:
                self.warnings.append(f"{where}: {outside} value(s) outside its declared {key}")

    def image(self, index: Any) -> tuple[bytes, str] | None:
        """Bytes and mime type of image `index`; None (with a warning) when it cannot be used."""
        image = self.item("images", index)
        where = f"images[{index}]"
        if "bufferView" in image:
            data = self.view_bytes(image["bufferView"])
        elif isinstance(image.get("uri"), str):
            uri = image["uri"]
            if uri.startswith("data:"):
                data = decode_data_uri(self, uri, where)
            elif "://" in uri:
                self.warnings.append(f"{where}: texture {uri} is a remote URL and was not fetched")
                return None
            else:
                target = resolve_inside(self.path, uri, f"{where} uri")
                if not target.is_file():
                    self.warnings.append(f"{where}: texture file {uri} not found; drawn untextured")
                    return None
                data = target.read_bytes()
        else:
            return None
        mime = sniff_image(data)
        if mime is None:
            self.warnings.append(f"{where}: texture is neither PNG nor JPEG; drawn untextured")
            return None
        return data, mime


def read_gltf(path: Path) -> GltfDocument:
    data = read_nonempty(path)
    if path.suffix.lower() == ".glb" or data[:4] == GLB_MAGIC:
        json_bytes, bin_chunk = split_glb(path, data)
    else:
        json_bytes, bin_chunk = data, None
    try:
        parsed = json.loads(json_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFailed(str(path), f"invalid JSON: {exc}", "JSON chunk" if bin_chunk is not None else "") from exc
    if not isinstance(parsed, dict):
        raise ImportFailed(str(path), "invalid glTF: top-level JSON value is not an object")
    version = str(parsed.get("asset", {}).get("version", ""))
    if not version.startswith("2."):
        reason = f"unsupported glTF version {version or '(missing)'}; TwinView reads glTF 2.x"
        raise ImportFailed(str(path), reason, "asset")
    doc = GltfDocument(path, parsed, [])
    doc.buffers = [_load_buffer(doc, i, buf, bin_chunk) for i, buf in enumerate(doc.items("buffers"))]
    for i, view in enumerate(doc.items("bufferViews")):
        if "EXT_meshopt_compression" not in view.get("extensions", {}):
            doc.view_bytes(i)  # validates that every plain view lies inside its buffer
    return doc


def split_glb(path: Path, data: bytes) -> tuple[bytes, bytes | None]:
    """Validate GLB framing (header, declared length, chunk bounds) and return (JSON, BIN) chunks."""
    where = "GLB header"
    if len(data) < GLB_HEADER.size:
        raise ImportFailed(str(path), f"truncated GLB header: {len(data)} bytes, need {GLB_HEADER.size}", where)
    magic, version, length = GLB_HEADER.unpack_from(data)
    if magic != GLB_MAGIC:
        raise ImportFailed(str(path), f"invalid GLB magic {magic!r} (expected b'glTF')", where)
    if version != 2:
        raise ImportFailed(str(path), f"unsupported GLB version {version}", where)
    if length != len(data):
        state = "truncated" if length > len(data) else "trailing bytes"
        raise ImportFailed(
            str(path), f"GLB length mismatch: header declares {length} bytes, file has {len(data)} ({state})", where
        )
    chunks: list[tuple[int, bytes]] = []
    offset = GLB_HEADER.size
    while offset < len(data):
        where = f"GLB chunk {len(chunks)} at byte {offset}"
        if offset + GLB_CHUNK_HEADER.size > len(data):
            raise ImportFailed(str(path), "truncated GLB chunk header", where)
        chunk_length, chunk_type = GLB_CHUNK_HEADER.unpack_from(data, offset)
        start = offset + GLB_CHUNK_HEADER.size
        if start + chunk_length > len(data):
            raise ImportFailed(
                str(path), f"GLB chunk data truncated: declares {chunk_length} bytes, {len(data) - start} remain", where
            )
        chunks.append((chunk_type, data[start : start + chunk_length]))
        offset = start + chunk_length
    if not chunks or chunks[0][0] != CHUNK_JSON:
        raise ImportFailed(str(path), "GLB has no JSON chunk first", "GLB chunk 0")
    bin_chunk = chunks[1][1] if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN else None
    return chunks[0][1], bin_chunk


def decode_data_uri(doc: GltfDocument, uri: str, where: str) -> bytes:
    header, _, payload = uri.partition(",")
    if not _DATA_URI_HEADER.match(header):
        raise doc.fail(f"malformed data: URI header {header[:60]!r} (expected data:<type>;base64,)", where)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise doc.fail(f"invalid base64 in data: URI ({exc})", where) from exc


def _load_buffer(doc: GltfDocument, index: int, buf: dict[str, Any], bin_chunk: bytes | None) -> bytes | None:
    where = f"buffers[{index}]"
    uri = buf.get("uri")
    if uri is None:
        if index == 0 and bin_chunk is not None:
            data: bytes | None = bin_chunk
        elif buf.get("extensions", {}).get("EXT_meshopt_compression", {}).get("fallback"):
            return None  # placeholder for meshopt-decoded views; never read directly
        else:
            raise doc.fail("buffer has no uri and there is no GLB binary chunk for it", where)
    elif not isinstance(uri, str):
        raise doc.fail("buffer uri is not a string", where)
    elif uri.startswith("data:"):
        data = decode_data_uri(doc, uri, where)
    else:
        target = resolve_inside(doc.path, uri, f"{where} uri")
        if not target.is_file():
            raise doc.fail(f"buffer file {uri} not found", where)
        data = target.read_bytes()
    length = buf.get("byteLength")
    if not isinstance(length, int) or length < 0:
        raise doc.fail(f"byteLength {length!r} is not a non-negative integer", where)
    if len(data) < length:
        raise doc.fail(f"buffer holds {len(data)} bytes but declares byteLength {length}", where)
    return data


def _slice(doc: GltfDocument, data: bytes, offset: Any, length: Any, where: str) -> bytes:
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
        raise doc.fail(f"byteOffset/byteLength {offset!r}/{length!r} must be non-negative integers", where)
    if offset + length > len(data):
        raise doc.fail(
            f"bufferView runs past the end of its buffer: bytes {offset}..{offset + length} of {len(data)}", where
        )
    return data[offset : offset + length]


def _strided(
    doc: GltfDocument, view_index: Any, offset: Any, count: int, width: int, dtype: np.dtype, where: str
) -> np.ndarray:
    view = doc.item("bufferViews", view_index)
    data = doc.view_bytes(view_index)
    element = width * dtype.itemsize
    stride = view.get("byteStride") or element
    if not isinstance(offset, int) or offset < 0 or not isinstance(stride, int) or stride < element:
        raise doc.fail(f"invalid byteOffset {offset!r} or byteStride {stride!r}", where)
    if count and offset + stride * (count - 1) + element > len(data):
        raise doc.fail(f"accessor reads past the end of bufferView {view_index}", where)
    if not count:
        return np.zeros((0, width), dtype=dtype)
    array = np.ndarray((count, width), dtype=dtype, buffer=data, offset=offset, strides=(stride, dtype.itemsize))
    return array.copy()


def _apply_sparse(
    doc: GltfDocument, out: np.ndarray, sparse: dict[str, Any], width: int, dtype: np.dtype, where: str
) -> np.ndarray:
    count = sparse.get("count")
    idx, val = sparse.get("indices", {}), sparse.get("values", {})
    idx_dtype = COMPONENT_DTYPES.get(idx.get("componentType"))  # type: ignore[arg-type]
    if not isinstance(count, int) or count < 0 or idx_dtype is None or idx_dtype.kind != "u":
        raise doc.fail("invalid sparse count or indices componentType", f"{where}.sparse")
    indices = _strided(doc, idx.get("bufferView"), idx.get("byteOffset", 0), count, 1, idx_dtype, where)[:, 0]
    values = _strided(doc, val.get("bufferView"), val.get("byteOffset", 0), count, width, dtype, where)
    if count and int(indices.max()) >= len(out):
        raise doc.fail(f"sparse index {int(indices.max())} beyond accessor count {len(out)}", f"{where}.sparse")
    out = out.copy()
    out[indices.astype(np.int64)] = values
    return out


def decode_meshopt(doc: GltfDocument, ext: dict[str, Any], where: str) -> bytes:
    """Decode one EXT_meshopt_compression bufferView into plain bytes."""
    import meshoptimizer

    where = f"{where}.extensions.EXT_meshopt_compression"
    source = doc._buffer(ext.get("buffer"), where)
    encoded = _slice(doc, source, ext.get("byteOffset", 0), ext.get("byteLength"), where)
    count, stride, mode = ext.get("count"), ext.get("byteStride"), ext.get("mode")
    filt = ext.get("filter", "NONE")
    if not isinstance(count, int) or not isinstance(stride, int) or count < 0 or stride <= 0:
        raise doc.fail(f"invalid count/byteStride {count!r}/{stride!r}", where)
    try:
        if mode == "ATTRIBUTES":
            if stride % 4 or stride > 256:
                raise doc.fail(f"ATTRIBUTES byteStride {stride} must be a multiple of 4 up to 256", where)
            decoded = np.frombuffer(
                meshoptimizer.decode_vertex_buffer(count, stride, encoded).tobytes(), dtype=np.uint8
            )
        elif mode in ("TRIANGLES", "INDICES"):
            if stride not in (2, 4):
                raise doc.fail(f"{mode} byteStride {stride} must be 2 or 4", where)
            decode = meshoptimizer.decode_index_buffer if mode == "TRIANGLES" else meshoptimizer.decode_index_sequence
            # The wrapper always allocates uint32 slots; only the first count*stride bytes are written.
            decoded = np.frombuffer(decode(count, stride, encoded).tobytes()[: count * stride], dtype=np.uint8)
        else:
            raise doc.fail(f"unknown meshopt mode {mode!r}", where)
    except (RuntimeError, ValueError) as exc:
        raise doc.fail(f"meshopt decoding failed: {exc}", where) from exc
    if filt != "NONE":
        decoded = _meshopt_filter(doc, decoded, filt, count, stride, where)
    return decoded.tobytes()


def _meshopt_filter(doc: GltfDocument, data: np.ndarray, filt: str, count: int, stride: int, where: str) -> np.ndarray:
    import meshoptimizer

    # The native filters trust their stride; check the spec's allowed strides before calling them.
    allowed = {"OCTAHEDRAL": (4, 8), "QUATERNION": (8,), "EXPONENTIAL": tuple(range(4, 257, 4))}
    if filt not in MESHOPT_FILTERS:
        raise doc.fail(f"unknown meshopt filter {filt!r}", where)
    if stride not in allowed[filt]:
        raise doc.fail(f"meshopt filter {filt} cannot use byteStride {stride}", where)
    apply = {
        "OCTAHEDRAL": meshoptimizer.decode_filter_oct,
        "QUATERNION": meshoptimizer.decode_filter_quat,
        "EXPONENTIAL": meshoptimizer.decode_filter_exp,
    }[filt]
    return apply(data.copy(), count, stride)
