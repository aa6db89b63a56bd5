"""Reading an untrusted BCF zip safely, and parsing its XML safely.

Everything is read into memory under fixed bounds before any of it is interpreted, so a hostile
archive costs at most these limits and never touches the disk: nothing is extracted.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath
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
# Everything uncompressed together: the real bound on memory, since all entries are held at once.
MAX_TOTAL_BYTES: Final = 512 * 1024 * 1024
# One XML file: a markup with hundreds of 10 kB comments or a viewpoint listing ~50 000 components
# stays well below; anything bigger is not a hand-made issue.
MAX_XML_BYTES: Final = 16 * 1024 * 1024
# Any other entry (snapshots, documents): twice the largest attachment we store, so an oversized
# snapshot can still be reported and skipped rather than failing the whole archive.
MAX_FILE_BYTES: Final = 2 * MAX_ATTACHMENT_BYTES
# Compression ratio of one entry: XML compresses ~5-20x, PNG/JPEG ~1x; 200x is a bomb (zeros
# compress ~1000x). Only checked above RATIO_MIN_BYTES, where the ratio can matter at all.
MAX_COMPRESSION_RATIO: Final = 200
RATIO_MIN_BYTES: Final = 1024 * 1024

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


def read_archive(path: Path) -> dict[str, bytes]:
    """Every file entry of the zip, name -> bytes, or BcfError naming the first problem."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BcfError(path, "", f"cannot read ({exc.strerror})") from None
    if size > MAX_ARCHIVE_BYTES:
        raise BcfError(path, "", f"archive is {size:,} bytes, more than the {MAX_ARCHIVE_BYTES:,} allowed")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BcfError(path, "", f"not a zip archive ({exc})") from None
    with zf:
        infos = zf.infolist()
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
            if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                raise BcfError(path, info.filename, f"compression ratio above {MAX_COMPRESSION_RATIO}:1 (zip bomb?)")
        if declared > MAX_TOTAL_BYTES:
            raise BcfError(path, "", f"{declared:,} bytes uncompressed, more than the {MAX_TOTAL_BYTES:,} allowed")
        files: dict[str, bytes] = {}
        for info in infos:
            if info.is_dir():
                continue
            try:
                with zf.open(info) as f:
                    # zipfile stops at the declared size and checks the CRC, so headers cannot under-declare.
                    files[info.filename] = f.read()
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
                raise BcfError(path, info.filename, f"corrupt entry ({exc})") from None
        return files


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
