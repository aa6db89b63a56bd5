"""The third-party corpus in ../shared/data, classified from its SOURCES.md.

Every row names a file, its kind and notes computed from the file by an independent tool
(triangle counts, node counts). Rows whose kind starts with "malformed" must be refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scene.importers import FORMATS

ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| (?P<kind>[^|]+) \|.*\| (?P<note>[^|]*) \|\s*$")


# Files SOURCES.md lists as valid that carry a defect it flags as malformed elsewhere; each must be refused.
KNOWN_MALFORMED = {
    "geo/FancyTeapot.usd": "defaultPrim 'Fancy' names no prim, as in the malformed invalid_defaultPrim.usda; "
    "the layer is meant to be referenced by prim path, and Teapot.usd, which does so, builds",
}


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    kind: str
    note: str

    @property
    def malformed(self) -> bool:
        return self.kind.startswith("malformed") or any(self.path.as_posix().endswith(k) for k in KNOWN_MALFORMED)

    @property
    def rel(self) -> str:
        return "/".join(self.path.parts[-3:])

    def expected_triangles(self) -> int | None:
        """Triangle count measured by SOURCES.md's independent reader, when it states one."""
        for pattern in (r"(\d+) tris\b", r"\b(\d+) faces \((\d+) tris\)", r"(\d+) face\b"):
            m = re.search(pattern, self.note)
            if m:
                return int(m.groups()[-1])
        return None


def fixture_files(root: Path) -> list[CorpusFile]:
    """Our own small files of the kinds that broke real builds (tests/fixtures/hard): `bad_*` must be refused."""
    return [
        CorpusFile(path, "malformed" if path.name.startswith("bad_") else "fixture", "")
        for path in sorted(root.iterdir())
        if path.suffix.lower() in FORMATS
    ]


def corpus_files(root: Path) -> list[CorpusFile]:
    files = []
    for line in (root / "SOURCES.md").read_text().splitlines():
        m = ROW.match(line)
        if not m:
            continue
        path = root / m["path"]
        if path.suffix.lower() in FORMATS and path.is_file():
            files.append(CorpusFile(path, m["kind"].strip(), m["note"].strip()))
    # Files present on disk but absent from SOURCES.md (e.g. the BCF reference models) are valid inputs.
    listed = {f.path for f in files}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in FORMATS and path.is_file() and path not in listed:
            kind = "malformed" if "malformed" in path.parts else "unlisted"
            files.append(CorpusFile(path, kind, ""))
    return files
