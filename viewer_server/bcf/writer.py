"""TwinView topics -> a BCF 3.0 archive (`.bcf`) that validates against the buildingSMART XSDs.

Each topic is written, then read back with the importer's own reader; every field that does not come
back identical goes into the topic's TwinView extension (`extension.py`), so TwinView -> BCF ->
TwinView is lossless by construction, not by a list of special cases.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Final

from lxml import etree

from scene.errors import ExportFailed
from viewer_server.bcf import extension as ext_mod
from viewer_server.bcf.extension import CommentExt, TopicExt
from viewer_server.bcf.mapping import (
    DEFAULT_ASPECT,
    ORIGINATING_SYSTEM,
    PRIORITY_TO_BCF,
    STATUS_TO_BCF,
    bcf_guid,
    color_to_bcf,
    derived_guid,
    due_date_from,
    fmt_datetime,
    fmt_double,
    fmt_due_date,
    is_bcf_guid,
    is_ifc_guid,
    is_xs_datetime,
    nonblank,
    parse_datetime,
    priority_from_bcf,
    status_from_bcf,
    yup_to_zup,
)
from viewer_server.bcf.reader import DOCUMENTS_FOLDER, Reader
from viewer_server.topics import Attachment, BcfFields, Camera, Comment, Measurement, Topic, Vec3, Viewpoint

BCF_VERSION: Final = "3.0"
DEFAULT_FOV: Final = 60.0
# Zip entries get a fixed time so that the same topics always give the same archive bytes.
ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)
# Fields BCF states (possibly approximately) and the extension fills in exactly where needed.
TOPIC_FIELDS: Final = (
    "guid", "title", "author", "created", "description", "status", "priority", "topic_type", "assignee", "labels",
    "due_date", "viewpoints", "attachments", "modified", "modified_by", "original_author", "bcf",
)  # fmt: skip
COMMENT_FIELDS: Final = ("guid", "topic", "author", "text", "created", "modified", "viewpoint", "original_author")
_SUFFIX = {"image/png": "png", "image/jpeg": "jpg"}


@dataclass
class BcfExport:
    path: Path
    topics: int
    comments: int
    viewpoints: int
    snapshots: int


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = text
    return el


def _xml(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _date(ts: float) -> str:
    try:
        return fmt_datetime(ts)
    except (ValueError, OverflowError, OSError):  # outside datetime's range: the extension keeps the value
        return fmt_datetime(0.0)


def _point(parent: etree._Element, tag: str, v: Vec3) -> None:
    el = _sub(parent, tag)
    for axis, value in zip("XYZ", yup_to_zup(v), strict=True):
        _sub(el, axis, fmt_double(value))


def _components(parent: etree._Element, ids: Iterable[str]) -> None:
    for twin_id in ids:
        tool_id = nonblank(twin_id)
        if tool_id is None:
            continue
        comp = _sub(parent, "Component", **({"IfcGuid": twin_id} if is_ifc_guid(twin_id) else {}))
        _sub(comp, "OriginatingSystem", ORIGINATING_SYSTEM)
        _sub(comp, "AuthoringToolId", tool_id)


def _camera(root: etree._Element, cam: Camera) -> None:
    ortho = cam.ortho_height is not None
    el = _sub(root, "OrthogonalCamera" if ortho else "PerspectiveCamera")
    _point(el, "CameraViewPoint", cam.position)
    _point(el, "CameraDirection", cam.direction)
    _point(el, "CameraUpVector", cam.up)
    if ortho:
        _sub(el, "ViewToWorldScale", fmt_double(cam.ortho_height or 0.0))
    else:
        _sub(el, "FieldOfView", fmt_double(cam.fov_deg if 0.0 < cam.fov_deg < 180.0 else DEFAULT_FOV))
    _sub(el, "AspectRatio", fmt_double(cam.aspect_ratio or DEFAULT_ASPECT))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _kept_due(kept: str | None, due_date: str) -> str | None:
    """The DueDate another tool wrote, while our due date is still its day."""
    try:
        return kept if kept and is_xs_datetime(kept) and due_date_from(parse_datetime(kept)) == due_date else None
    except (OverflowError, OSError, ValueError):  # a date outside what datetime can place
        return None


def _status(t: Topic) -> str:
    """The other tool's spelling while our status is still the one it was read as, else ours."""
    kept = t.bcf.status if t.bcf else None
    return kept if kept and (status_from_bcf(kept) or "open") == t.status else STATUS_TO_BCF.get(t.status, "Open")


def _priority(t: Topic) -> str | None:
    """Like `_status`; None (no Priority element) for a topic read without one whose priority was not set since."""
    kept = t.bcf.priority if t.bcf else None
    if kept == "" and t.priority == "normal":
        return None
    if kept and (priority_from_bcf(kept) or "normal") == t.priority:
        return kept
    return PRIORITY_TO_BCF.get(t.priority, "Normal")


def measurement_lines(m: Measurement) -> list[tuple[Vec3, Vec3]]:
    """A measurement as BCF line segments: a distance's one, an angle's two legs, an area's closed outline."""
    pts = m.points
    pairs = list(pairwise(pts))
    return [*pairs, (pts[-1], pts[0])] if m.kind == "area" else pairs


def _header(root: etree._Element, bcf: BcfFields) -> None:
    files = _sub(_sub(root, "Header"), "Files")
    for f in bcf.files:
        attrib = {"IfcProject": f.ifc_project, "IfcSpatialStructureElement": f.ifc_spatial_structure_element}
        el = _sub(files, "File", **{k: v for k, v in attrib.items() if v}, IsExternal=_bool(f.is_external))
        date = f.date if f.date and is_xs_datetime(f.date) else None
        for tag, value in (("Filename", f.filename), ("Date", date), ("Reference", f.reference)):
            if text := nonblank(value):
                _sub(el, tag, text)


def _visinfo(vp: Viewpoint, guid: str, pinned: str | None) -> bytes:
    """A viewpoint's visualization info; the element a topic is pinned on is always in its selection, so that
    other tools highlight what the topic is about."""
    root = etree.Element("VisualizationInfo", Guid=guid)
    comps = _sub(root, "Components")
    selected = [*vp.selected, pinned] if pinned and pinned not in vp.selected else vp.selected
    if selected:
        _components(_sub(comps, "Selection"), selected)
    vis = _sub(comps, "Visibility", DefaultVisibility="true" if vp.default_visible else "false")
    if hints := vp.setup_hints:
        flags = (hints.spaces_visible, hints.space_boundaries_visible, hints.openings_visible)
        names = ("SpacesVisible", "SpaceBoundariesVisible", "OpeningsVisible")
        _sub(vis, "ViewSetupHints", **{name: _bool(flag) for name, flag in zip(names, flags, strict=True)})
    if vp.hidden:
        _components(_sub(vis, "Exceptions"), vp.hidden)
    groups = [(color_to_bcf(g.color), [i for i in g.ids if nonblank(i)]) for g in vp.colored]
    groups = [(c, ids) for c, ids in groups if c and ids]  # BCF needs a valid colour and at least one component
    if groups:
        coloring = _sub(comps, "Coloring")
        for color, ids in groups:
            _components(_sub(_sub(coloring, "Color", Color=color), "Components"), ids)
    _camera(root, vp.camera)
    segments = [seg for m in vp.measurements for seg in measurement_lines(m)]
    if segments:  # what other tools can show of a measurement; the extension keeps it exactly
        lines = _sub(root, "Lines")
        for start, end in segments:
            line = _sub(lines, "Line")
            _point(line, "StartPoint", start)
            _point(line, "EndPoint", end)
    if vp.clipping_planes:
        planes = _sub(root, "ClippingPlanes")
        for p in vp.clipping_planes:
            plane = _sub(planes, "ClippingPlane")
            _point(plane, "Location", p.location)
            _point(plane, "Direction", p.direction)
    return _xml(root)


class _TopicWriter:
    """The files of one topic folder plus its internal documents."""

    def __init__(self, topic: Topic, comments: list[Comment], attachments: dict[str, bytes]) -> None:
        self.topic, self.comments, self.blobs = topic, comments, attachments
        self.folder = bcf_guid(topic.guid)
        self.files: dict[str, bytes] = {}
        self.documents: dict[str, str] = {}  # document guid -> filename
        self.ext_guid = derived_guid("extension", self.folder)
        self.snapshots = 0

    def _meta(self, att_id: str) -> Attachment | None:
        return next((a for a in self.topic.attachments if a.id == att_id), None)

    def _viewpoints(self, markup_topic: etree._Element) -> None:
        if not self.topic.viewpoints:
            return
        refs = _sub(markup_topic, "Viewpoints")
        for index, vp in enumerate(self.topic.viewpoints):
            guid = bcf_guid(vp.guid)
            ref = _sub(refs, "ViewPoint", Guid=guid)
            _sub(ref, "Viewpoint", f"Viewpoint_{guid}.bcfv")
            pinned = self.topic.pin.element if self.topic.pin else None
            self.files[f"{self.folder}/Viewpoint_{guid}.bcfv"] = _visinfo(vp, guid, pinned)
            meta = self._meta(vp.snapshot) if vp.snapshot else None
            if vp.snapshot and vp.snapshot in self.blobs:
                suffix = _SUFFIX.get(meta.mime if meta else "", "png")
                _sub(ref, "Snapshot", f"Snapshot_{guid}.{suffix}")
                self.files[f"{self.folder}/Snapshot_{guid}.{suffix}"] = self.blobs[vp.snapshot]
                self.snapshots += 1
            _sub(ref, "Index", str(index))

    def _document_refs(self, markup_topic: etree._Element) -> None:
        refs = _sub(markup_topic, "DocumentReferences")
        for doc in self.topic.bcf.documents if self.topic.bcf else []:
            if not (url := nonblank(doc.url)) or not is_bcf_guid(doc.guid):
                continue
            ref = _sub(refs, "DocumentReference", Guid=doc.guid)
            _sub(ref, "Url", url)
            if description := nonblank(doc.description):
                _sub(ref, "Description", description)
        ref = _sub(refs, "DocumentReference", Guid=derived_guid("extension-reference", self.folder))
        _sub(ref, "DocumentGuid", self.ext_guid)
        _sub(ref, "Description", ext_mod.EXT_DESCRIPTION)
        self.documents[self.ext_guid] = f"{ext_mod.EXT_FILENAME_PREFIX}{self.folder}.json"
        snapshots = {vp.snapshot for vp in self.topic.viewpoints}
        for att in self.topic.attachments:
            if att.id in snapshots or att.id not in self.blobs:
                continue
            doc_guid = derived_guid("attachment-document", self.folder, att.id)
            self.documents[doc_guid] = f"{doc_guid}.{_SUFFIX.get(att.mime, 'png')}"
            self.files[f"{DOCUMENTS_FOLDER}/{doc_guid}"] = self.blobs[att.id]
            ref = _sub(refs, "DocumentReference", Guid=derived_guid("attachment-reference", self.folder, att.id))
            _sub(ref, "DocumentGuid", doc_guid)
            _sub(ref, "Description", "TwinView attachment")

    def _renamed_ids(self) -> dict[str, str]:
        ours = [self.topic.guid, *(v.guid for v in self.topic.viewpoints)]
        ours += [x for c in self.comments for x in (c.guid, c.viewpoint) if x]
        return {bcf_guid(x): x for x in ours if bcf_guid(x) != x}

    def markup(self) -> bytes:
        t, c = self.topic, self.comments
        bcf = t.bcf or BcfFields()
        root = etree.Element("Markup")
        if bcf.files:
            _header(root, bcf)
        ids = {"ServerAssignedId": nonblank(bcf.server_assigned_id)}
        topic = _sub(
            root,
            "Topic",
            Guid=self.folder,
            **{k: v for k, v in ids.items() if v},
            TopicType=nonblank(t.topic_type) or "Issue",
            TopicStatus=nonblank(_status(t)) or "Open",
        )
        links = [link for link in map(nonblank, bcf.reference_links) if link]
        if links:
            parent = _sub(topic, "ReferenceLinks")
            for link in links:
                _sub(parent, "ReferenceLink", link)
        _sub(topic, "Title", nonblank(t.title) or "(untitled)")
        if priority := nonblank(_priority(t)):
            _sub(topic, "Priority", priority)
        labels = [label for label in map(nonblank, t.labels) if label]
        if labels:
            parent = _sub(topic, "Labels")
            for label in labels:
                _sub(parent, "Label", label)
        _sub(topic, "CreationDate", _date(t.created))
        _sub(topic, "CreationAuthor", nonblank(t.original_author or t.author) or "unknown")
        if t.modified is not None:
            _sub(topic, "ModifiedDate", _date(t.modified))
        if author := nonblank(t.modified_by):
            _sub(topic, "ModifiedAuthor", author)
        if t.due_date and (due := fmt_due_date(t.due_date)):
            _sub(topic, "DueDate", _kept_due(bcf.due_date, t.due_date) or due)
        if assignee := nonblank(t.assignee):
            _sub(topic, "AssignedTo", assignee)
        if stage := nonblank(bcf.stage):
            _sub(topic, "Stage", stage)
        if description := nonblank(t.description):
            _sub(topic, "Description", description)
        self._document_refs(topic)
        related = [guid for guid in bcf.related_topics if is_bcf_guid(guid)]
        if related:
            parent = _sub(topic, "RelatedTopics")
            for guid in related:
                _sub(parent, "RelatedTopic", Guid=guid)
        if c:
            parent = _sub(topic, "Comments")
            for comment in c:
                el = _sub(parent, "Comment", Guid=bcf_guid(comment.guid))
                _sub(el, "Date", _date(comment.created))
                _sub(el, "Author", nonblank(comment.original_author or comment.author) or "unknown")
                if text := nonblank(comment.text):
                    _sub(el, "Comment", text)
                if comment.viewpoint:
                    _sub(el, "Viewpoint", Guid=bcf_guid(comment.viewpoint))
                if comment.modified is not None:
                    _sub(el, "ModifiedDate", _date(comment.modified))
        self._viewpoints(topic)
        return _xml(root)

    def write(self) -> None:
        """Fill self.files and self.documents with everything of the topic, the extension included."""
        markup = self.markup()
        self.files[f"{self.folder}/markup.bcf"] = markup
        ext = TopicExt(
            pin=self.topic.pin,
            live_values=self.topic.live_values,
            attachments=self.topic.attachments,
            revision=self.topic.revision,
            deleted=self.topic.deleted,
            ids=self._renamed_ids(),
            replay_time=self.topic.replay_time,
        )
        # Read our own output back the way an import will, and keep in the extension whatever differs.
        reader = Reader(Path(self.folder), self.files, element_ids=None, documents=dict(self.documents))
        back, back_comments = reader.topic(self.folder, etree.fromstring(markup), ext)
        ext.exact = ext_mod.differences(back, self.topic, TOPIC_FIELDS)
        originals = {c.guid: c for c in self.comments}
        for read in back_comments:
            original = originals[read.guid]
            read.topic = original.topic  # the importer sets it to the restored topic guid
            ext.comments[read.guid] = CommentExt(
                reply_to=original.reply_to,
                revision=original.revision,
                deleted=original.deleted,
                exact=ext_mod.differences(read, original, COMMENT_FIELDS),
                replay_time=original.replay_time,
            )
        self.files[f"{DOCUMENTS_FOLDER}/{self.ext_guid}"] = ext_mod.encode(ext)


def _extensions_xml(topics: list[Topic], comments: list[Comment]) -> bytes:
    root = etree.Element("Extensions")
    people = [*(x for t in topics for x in (t.original_author or t.author, t.assignee, t.modified_by)),
              *(c.original_author or c.author for c in comments)]  # fmt: skip
    statuses = {nonblank(_status(t)) or "Open" for t in topics}
    priorities = {p for t in topics if (p := nonblank(_priority(t)))}
    values = {
        ("TopicTypes", "TopicType"): {nonblank(t.topic_type) or "Issue" for t in topics},
        ("TopicStatuses", "TopicStatus"): {*STATUS_TO_BCF.values(), *statuses},
        ("Priorities", "Priority"): {*PRIORITY_TO_BCF.values(), *priorities},
        ("TopicLabels", "TopicLabel"): {label for t in topics for label in map(nonblank, t.labels) if label},
        ("Users", "User"): {u for u in map(nonblank, people) if u},
        ("Stages", "Stage"): {s for t in topics if t.bcf and (s := nonblank(t.bcf.stage))},
    }
    for (group, item), names in values.items():
        if names:
            parent = _sub(root, group)
            for name in sorted(names):
                _sub(parent, item, name)
    return _xml(root)


def _documents_xml(documents: dict[str, str]) -> bytes:
    root = etree.Element("DocumentInfo")
    docs = _sub(root, "Documents")
    for guid, filename in documents.items():
        _sub(_sub(docs, "Document", Guid=guid), "Filename", filename)
    return _xml(root)


def _project_xml(name: str) -> bytes:
    root = etree.Element("ProjectInfo")
    project = _sub(root, "Project", ProjectId=derived_guid("project", name))
    if label := nonblank(name):
        _sub(project, "Name", label)
    return _xml(root)


def export_bcf(
    topics: list[Topic],
    comments: list[Comment],
    attachments: dict[str, bytes],
    project_name: str,
    path: Path,
    *,
    include_deleted: bool = False,
) -> BcfExport:
    """Write `topics` with their comments, viewpoints and snapshots to a BCF 3.0 archive at `path`.

    Deleted (moderated) topics and comments are left out unless `include_deleted`: other tools
    would show them as live. The file appears only when complete (written beside it, then renamed).
    """
    topics = [t for t in topics if include_deleted or not t.deleted]
    by_topic: dict[str, list[Comment]] = {t.guid: [] for t in topics}
    for c in comments:
        if c.topic in by_topic and (include_deleted or not c.deleted):
            by_topic[c.topic].append(c)
    files: dict[str, bytes] = {
        "bcf.version": _xml(etree.Element("Version", VersionId=BCF_VERSION)),
        "project.bcfp": _project_xml(project_name),
        "extensions.xml": _extensions_xml(topics, [c for cs in by_topic.values() for c in cs]),
    }
    documents: dict[str, str] = {}
    topic_files: dict[str, bytes] = {}
    snapshots = 0
    for topic in topics:
        writer = _TopicWriter(topic, by_topic[topic.guid], attachments)
        writer.write()
        if any(name.startswith(f"{writer.folder}/") for name in topic_files):
            raise ExportFailed(str(path), f"two topics map to the BCF guid {writer.folder}")
        topic_files.update(writer.files)
        documents.update(writer.documents)
        snapshots += writer.snapshots
    files["documents.xml"] = _documents_xml(documents)
    # Topic folders first, then the shared documents folder (readers look entries up by name anyway).
    files.update(sorted(topic_files.items(), key=lambda kv: kv[0].startswith(f"{DOCUMENTS_FOLDER}/")))
    _write_zip(path, files)
    return BcfExport(
        path, len(topics), sum(map(len, by_topic.values())), sum(len(t.viewpoints) for t in topics), snapshots
    )


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type = zipfile.ZIP_STORED if name.endswith((".png", ".jpg")) else zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
