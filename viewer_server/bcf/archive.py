"""Reading an untrusted BCF zip safely, and parsing its XML safely.

The zip's directory is checked as a whole when it is opened (names, counts, declared sizes, compression
ratios); an entry is decompressed only when the importer reads it, one at a time and under its own bound,
so an import holds at most one entry (plus what it keeps) however large the archive declares itself.
Nothing is extracted to disk.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Final

from lxml import etree

from scene.errors import ImportFailed
from viewer_server.topics import MAX_ATTACHMENT_BYTES

# The archive file itself: a project-wide export with a snapshot per viewpoint is tens of MB;
# 256 MB is several thousand screenshots.
MAX_ARCHIVE_BYTES: Final = 256 * 1024 * 1024
# Entries: each topic is a folder with a markup, a viewpoint and a snapshot or two; 20 000 entries
# is ~5000 topics, more than any issue list we expect, and bounds the per-entry work.
MAX_ENTRIES: Final = 20_000
# Everything uncompressed together: bounds the decompression work of one import (entries are read one at a
# time, so it no longer bounds memory); PNG/JPEG snapshots do not compress, so this is ~MAX_ARCHIVE_BYTES.
MAX_TOTAL_BYTES: Final = 256 * 1024 * 1024
# One XML file: a markup with hundreds of 10 kB comments or a viewpoint listing ~50 000 components
# stays well below; anything bigger is not a hand-made issue.
MAX_XML_BYTES: Final = 16 * 1024 * 1024
# Any other entry (snapshots, documents): twice the largest attachment we store, so an oversized
# snapshot can still be reported and skipped rather than failing the whole archive.
MAX_FILE_BYTES: Final = 2 * MAX_ATTACHMENT_BYTES
# Compression ratio of one entry, and of the whole archive: XML compresses ~5-20x, PNG/JPEG ~1x; 200x is
# a bomb (zeros compress ~1000x). Only checked above RATIO_MIN_BYTES (of the entry, or of all entries
# together), where the ratio can matter at all: many entries just under it are caught by the total.
MAX_COMPRESSION_RATIO: Final = 200
RATIO_MIN_BYTES: Final = 1024 * 1024

# Imports a server runs at once (each in a worker thread, holding one entry and its topics): a few are plenty
# for people importing issue lists, and the bound keeps uploads from adding up on a small server.
MAX_CONCURRENT_IMPORTS: Final = 2

XML_SUFFIXES: Final = (".bcf", ".bcfv", ".bcfp", ".xml", ".version", ".xsd")


class BcfError(ImportFailed):
    """A BCF archive we refuse: `file` is the archive, `entry` the member inside it ("" for the archive)."""

    def __init__(self, file: str | Path, entry: str, problem: str) -> None:
        super().__init__(str(file), problem, entry)

    @property
    def file(self) -> str:
        return self.path

    @property
    def entry(self) -> str:
        return self.where

    @property
    def problem(self) -> str:
        return self.reason


def _unsafe_name(name: str) -> str | None:
    """Why an entry name could escape a folder it were extracted to (we never extract, but refuse anyway)."""
    if "\\" in name or "\x00" in name:
        return "backslash or NUL in entry name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path in entry name"
    if ".." in PurePosixPath(name).parts:
        return "path traversal ('..') in entry name"
    return None


def _limit_for(name: str) -> int:
    return MAX_XML_BYTES if name.lower().endswith(XML_SUFFIXES) else MAX_FILE_BYTES


class Archive(Mapping[str, bytes]):
    """A BCF zip as a read-only mapping entry name -> bytes: the directory is checked on opening (BcfError
    naming the first problem) and each entry is decompressed when it is read, never kept. Close it (or
    use it as a context manager) when done."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise BcfError(self.path, "", f"cannot read ({exc.strerror})") from None
        if size > MAX_ARCHIVE_BYTES:
            raise BcfError(self.path, "", f"archive is {size:,} bytes, more than the {MAX_ARCHIVE_BYTES:,} allowed")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise BcfError(self.path, "", f"not a zip archive ({exc})") from None
        try:
            self._infos = self._check(self._zip.infolist(), size)
        except BaseException:
            self._zip.close()
            raise

    def _check(self, infos: list[zipfile.ZipInfo], size: int) -> dict[str, zipfile.ZipInfo]:
        path = self.path
        if len(infos) > MAX_ENTRIES:
            raise BcfError(path, "", f"{len(infos):,} entries, more than the {MAX_ENTRIES:,} allowed")
        seen: set[str] = set()
        declared = 0
        for info in infos:
            if why := _unsafe_name(info.filename):
                raise BcfError(path, info.filename, why)
            if info.filename in seen:
                raise BcfError(path, info.filename, "duplicate entry name")
            seen.add(info.filename)
            if info.flag_bits & 0x1:
                raise BcfError(path, info.filename, "encrypted entry")
            declared += info.file_size
            if info.file_size > (limit := _limit_for(info.filename)):
                raise BcfError(path, info.filename, f"{info.file_size:,} bytes, more than the {limit:,} allowed")
            if _too_compressed(info.file_size, info.compress_size):
                raise BcfError(path, info.filename, f"compression ratio above {MAX_COMPRESSION_RATIO}:1 (zip bomb?)")
        if declared > MAX_TOTAL_BYTES:
            raise BcfError(path, "", f"{declared:,} bytes uncompressed, more than the {MAX_TOTAL_BYTES:,} allowed")
        if _too_compressed(declared, size):
            raise BcfError(path, "", f"{declared:,} bytes uncompressed from {size:,}: ratio above"
                           f" {MAX_COMPRESSION_RATIO}:1 (zip bomb?)")  # fmt: skip
        return {info.filename: info for info in infos if not info.is_dir()}

    def __getitem__(self, name: str) -> bytes:
        info = self._infos[name]
        try:
            with self._zip.open(info) as f:
                # zipfile stops at the declared size and checks the CRC, so headers cannot under-declare.
                return f.read()
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            raise BcfError(self.path, name, f"corrupt entry ({exc})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _too_compressed(size: int, compressed: int) -> bool:
    return size > RATIO_MIN_BYTES and size > MAX_COMPRESSION_RATIO * max(compressed, 1)


def parse_xml(file: Path, entry: str, data: bytes) -> etree._Element:
    """Parse one entry with no DTD, no entity expansion, no network and lxml's default size bounds."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, remove_comments=True, remove_pis=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise BcfError(file, entry, f"not well-formed XML ({exc})") from None
    if root.getroottree().docinfo.doctype:
        raise BcfError(file, entry, "DOCTYPE / entity declarations are not allowed in BCF")
    return root
