"""What a BCF import may do to a session, and under whose name. Both import paths (the server's REST import
and `twinview bcf import` writing the store) admit what they read through `admit`:

- attribution: the importer, whose identity the caller verified, is the author of record of every imported
  topic and comment. The author the file names (BCF `CreationAuthor` / comment `Author`, or the original
  author an earlier import kept) is only a claim: it stays in `original_author`, is shown as such, and is
  what an export writes back as the BCF author;
- replacement: the topics of the session that the archive would replace are listed, so that the caller can
  require `topic.moderate` for them (an import must not overwrite other people's topics otherwise);
- collisions: a comment whose guid belongs to a comment of another topic of the session is imported under a
  derived guid (`remap_comments`), so that it can neither overwrite nor move that comment; an attachment
  whose id another session holds gets an id derived from this session's name, so that it cannot take that
  session's attachment away.

Every count taken from an `Admitted` is what will be stored.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from viewer_server.bcf.mapping import derived_guid
from viewer_server.bcf.reader import remap_comments
from viewer_server.topics import Attachment, Comment, Topic

T = TypeVar("T", Topic, Comment)


@dataclass(frozen=True)
class SessionContent:
    """What the session an import goes into holds, as far as the import could collide with it."""

    name: str
    topics: Mapping[str, Topic]
    comments: Mapping[str, Comment]
    foreign_attachments: Collection[str]  # attachment ids of the import that another session holds


@dataclass
class Admitted:
    topics: list[Topic]
    comments: list[Comment]
    attachments: Iterable[tuple[Attachment, bytes]]  # lazy when the import's was: read it once
    replaced: list[str]  # guids of topics already in the session that this import replaces
    warnings: list[str]


def admit(
    topics: list[Topic],
    comments: list[Comment],
    attachments: Iterable[tuple[Attachment, bytes]],
    importer: str,
    session: SessionContent,
) -> Admitted:
    """The imported topics, comments and attachments attributed to `importer`, with ids that collide with
    another topic's comment or another session's attachment remapped."""
    warnings: list[str] = []
    renamed = {a: derived_guid("attachment", session.name, a) for a in session.foreign_attachments}
    threads: dict[str, list[Comment]] = {t.guid: [] for t in topics}
    for comment in comments:
        threads.setdefault(comment.topic, []).append(comment)
    admitted: dict[str, Comment] = {}
    taken = ChainMap(admitted, session.comments)  # type: ignore[arg-type]
    for thread in threads.values():
        for c in remap_comments([msgspec.structs.replace(c) for c in thread], taken, warnings):
            admitted[c.guid] = _attributed(c, importer)
    return Admitted(
        topics=[_with_attachment_ids(_attributed(t, importer), renamed) for t in topics],
        comments=list(admitted.values()),
        attachments=_renamed(attachments, renamed),
        replaced=[t.guid for t in topics if t.guid in session.topics],
        warnings=warnings,
    )


def _attributed(item: T, importer: str) -> T:
    claimed = item.original_author or item.author or None
    return msgspec.structs.replace(item, author=importer, original_author=claimed)


def _with_attachment_ids(topic: Topic, renamed: Mapping[str, str]) -> Topic:
    if not renamed:
        return topic
    viewpoints = [msgspec.structs.replace(vp, snapshot=renamed.get(vp.snapshot, vp.snapshot)) if vp.snapshot else vp
                  for vp in topic.viewpoints]  # fmt: skip
    atts = [msgspec.structs.replace(a, id=renamed.get(a.id, a.id)) for a in topic.attachments]
    return msgspec.structs.replace(topic, viewpoints=viewpoints, attachments=atts)


Blobs = Iterable[tuple[Attachment, bytes]]


def _renamed(pairs: Blobs, renamed: Mapping[str, str]) -> Iterator[tuple[Attachment, bytes]]:
    for meta, data in pairs:
        yield msgspec.structs.replace(meta, id=renamed.get(meta.id, meta.id)), data
