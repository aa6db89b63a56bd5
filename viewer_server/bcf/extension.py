"""The TwinView extension: what a BCF topic cannot carry, kept beside it so a round trip loses nothing.

BCF 3.0's markup schema has no `xs:any` extension point, so the extension is a JSON document stored
the BCF way, as an internal document (`documents/<guid>`, listed in `documents.xml`, filename
`twinview-<topic guid>.json`) that the topic references with a `DocumentReference`. Other tools show
it as an attached file and carry it along.

It holds the fields BCF has no place for (pin, live values, attachment table, revision, deletion,
comment threading, the replayed time an annotation was made at); in `ids`, our ids where BCF needs another
spelling (a UUID), applied everywhere they occur so references stay consistent; and in `exact`, the
original of every field BCF only approximates, as a pair `[value read back from the BCF, original value]`.
On import the original replaces the BCF value only while the BCF value is still the one we wrote, so edits
made in another tool win over the extension.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from viewer_server.topics import Attachment, LiveValue, Pin

S = TypeVar("S", bound=msgspec.Struct)

EXT_FORMAT: Final = "twinview.bcf-extension"
EXT_VERSION: Final = 1
EXT_FILENAME_PREFIX: Final = "twinview-"
EXT_DESCRIPTION: Final = "TwinView extension: 3D pin, live values and fields BCF cannot hold"


class CommentExt(msgspec.Struct, omit_defaults=True):
    reply_to: str | None = None
    revision: int = 1
    deleted: bool = False
    exact: dict[str, list[Any]] = {}
    replay_time: float | None = None  # written while replaying the history: the time shown (Unix seconds)


class TopicExt(msgspec.Struct, omit_defaults=True):
    format: str = EXT_FORMAT
    version: int = EXT_VERSION
    pin: Pin | None = None
    live_values: list[LiveValue] = []
    attachments: list[Attachment] = []
    revision: int = 1
    deleted: bool = False
    ids: dict[str, str] = {}  # BCF guid -> our id, for topic / viewpoint / comment ids BCF spells differently
    exact: dict[str, list[Any]] = {}
    comments: dict[str, CommentExt] = {}  # by comment id
    replay_time: float | None = None  # made while replaying the history: the time shown (Unix seconds)


def encode(ext: TopicExt) -> bytes:
    return msgspec.json.format(msgspec.json.encode(ext), indent=1)


def decode(data: bytes) -> TopicExt | None:
    """The extension, or None if the document is not one we can read (then it is just a document)."""
    try:
        ext = msgspec.json.decode(data, type=TopicExt)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # RecursionError: nested too deeply
        return None
    return ext if ext.format == EXT_FORMAT and ext.version == EXT_VERSION else None


def differences(read_back: msgspec.Struct, original: msgspec.Struct, fields: tuple[str, ...]) -> dict[str, list[Any]]:
    """`exact` entries for the fields where what BCF gives back differs from the original."""
    out: dict[str, list[Any]] = {}
    for name in fields:
        got, want = msgspec.to_builtins(getattr(read_back, name)), msgspec.to_builtins(getattr(original, name))
        if got != want:
            out[name] = [got, want]
    return out


def restore(read: S, exact: dict[str, list[Any]]) -> S:
    """Apply `exact` where the BCF value is still the one we wrote; malformed entries are ignored."""
    data = msgspec.to_builtins(read)
    changed = False
    for name, pair in exact.items():
        if len(pair) == 2 and name in read.__struct_fields__ and msgspec.to_builtins(getattr(read, name)) == pair[0]:
            data[name], changed = pair[1], True
    if not changed:
        return read
    try:
        return msgspec.convert(data, type=type(read))
    except msgspec.ValidationError:
        return read
