"""Validation of a BCF 3.0 archive against buildingSMART's XSDs (shipped unmodified in bcf_schemas/)."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Final

SCHEMA_DIR: Final = Path(__file__).resolve().parents[1] / "bcf_schemas"
# Which schema each archive member must satisfy, by name or suffix.
_SCHEMA_FOR: Final = {
    "bcf.version": "version.xsd",
    "project.bcfp": "project.xsd",
    "extensions.xml": "extensions.xsd",
    "documents.xml": "documents.xsd",
    ".bcf": "markup.xsd",
    ".bcfv": "visinfo.xsd",
}


@functools.cache
def _schema(name: str):  # xmlschema is a test/tooling dependency: import it only when validating
    import xmlschema

    return xmlschema.XMLSchema(SCHEMA_DIR / name)


def schema_for(entry: str) -> str | None:
    name = entry.rsplit("/", 1)[-1]
    return _SCHEMA_FOR.get(name) or _SCHEMA_FOR.get(Path(name).suffix)


def validate_archive(path: Path) -> dict[str, list[str]]:
    """Schema errors per XML member ({} when every member is valid)."""
    errors: dict[str, list[str]] = {}
    with zipfile.ZipFile(path) as zf:
        for entry in zf.namelist():
            if (xsd := schema_for(entry)) is None:
                continue
            found = [str(e.reason or e) for e in _schema(xsd).iter_errors(zf.read(entry))]
            if found:
                errors[entry] = found
    return errors
