"""Errors the user can act on. The CLI prints them as one line; the server sends them as error frames."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ImportFailed(Exception):
    """A source file could not be read. `where` locates the problem inside the file (entity, line, URI)."""

    path: str
    reason: str
    where: str = ""

    def __str__(self) -> str:
        suffix = f" [{self.where}]" if self.where else ""
        return f"{self.path}: {self.reason}{suffix}"


@dataclass
class ExportFailed(Exception):
    """An output could not be written or failed its own validation."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message (native libraries start theirs with a newline and
    follow with pages of detail), or its class name when it says nothing."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
