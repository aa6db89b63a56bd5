"""Fidelity on other tools' files: buildingSMART's own BCF 3.0 test archives, imported into a session and
exported again with `twinview bcf`, carry the same information, read by an independent BCF reader
(bcf-client): header files, statuses and priorities as written (or absent), setup hints, comments without
text, stages, links, related topics, external documents, cameras, components and snapshots."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from bcf.v3.bcfxml import BcfXml
from xsdata.models.datatype import XmlDateTime

from tests.test_bcf import _cases, twinview
from viewer_server.bcf import validate_archive

pytestmark = pytest.mark.corpus

# What TwinView does not keep of these files, each named (and reported as a warning on import): a
# component's OriginatingSystem / AuthoringToolId from another tool (we write our own; the IfcGuid is
# kept), internal documents that are not images, Lines, Bitmaps, BimSnippet and the deprecated Index.
NOT_KEPT = {"originating_system", "authoring_tool_id", "lines", "bitmaps", "bim_snippet", "index"}


def _plain(value: Any) -> Any:
    """bcf-client's objects as plain values: dates as UTC timestamps, and an empty wrapper element (`<Labels/>`)
    the same as none, as BCF means it."""
    if isinstance(value, XmlDateTime):
        return value.to_datetime().timestamp()
    if dataclasses.is_dataclass(value):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in NOT_KEPT}
        return fields if any(v is not None for v in fields.values()) else None
    if isinstance(value, list):
        return [_plain(v) for v in value] or None
    return value


def information(path: Path) -> dict[str, Any]:
    out = {}
    with BcfXml.load(path) as bcf:
        for guid, handler in bcf.topics.items():
            markup = _plain(handler.markup)
            refs = markup["topic"].pop("document_references")
            # Our extension document is our own addition; internal non-image documents are not kept.
            external = [r for r in ((refs or {}).get("document_reference") or []) if r["url"] is not None]
            markup["topic"]["external_documents"] = external or None
            views = {g: (_plain(v.visualization_info), v.snapshot) for g, v in sorted(handler.viewpoints.items())}
            out[guid] = (markup, views)
    return out


@pytest.mark.parametrize("case", _cases())
def test_official_archive_imported_and_exported_again_keeps_its_information(
    shared_data: Path, tmp_path: Path, case: str
) -> None:
    from viewer_server.store import Store

    original = shared_data / "bcf" / "v3.0" / case
    data = tmp_path / "data"
    Store(data).close()  # a server's data dir, without a server running
    proc = twinview("bcf", "import", "review", str(original), "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "again.bcf"
    proc = twinview("bcf", "export", "review", "-o", str(out), "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    assert validate_archive(out) == {}
    assert information(out) == information(original)
