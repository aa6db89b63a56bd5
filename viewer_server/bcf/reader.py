"""BCF 3.0 (`.bcf`) and 2.1 (`.bcfzip`) archives -> TwinView topics, comments and attachments.

The whole archive is interpreted first, one entry at a time; only a complete `BcfImport` is returned, so a
caller that writes it in one transaction never imports part of a file. Attachment bytes are not kept: the
import names the entries that hold them, and `BcfImport.attachments()` reads them back one at a time.
What another tool wrote beyond TwinView's fields is kept in `Topic.bcf` (see topics.BcfFields).
"""

from __future__ import annotations

import hashlib
import math
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lxml import etree

from scene.camera import MAX_ASPECT_RATIO, Camera, ClippingPlane, Vec3
from viewer_server.bcf import extension as ext_mod
from viewer_server.bcf.archive import Archive, BcfError, parse_xml
from viewer_server.bcf.extension import TopicExt
from viewer_server.bcf.mapping import (
    DEFAULT_ASPECT,
    ORIGINATING_SYSTEM,
    PRIORITY_TO_BCF,
    STATUS_TO_BCF,
    color_from_bcf,
    derived_guid,
    due_date_from,
    is_bcf_guid,
    is_ifc_guid,
    is_xs_datetime,
    nonblank,
    parse_datetime,
    priority_from_bcf,
    status_from_bcf,
    zup_to_yup,
)
from viewer_server.topics import (
    MAX_ATTACHMENT_BYTES,
    MAX_CLIPPING_PLANES,
    MAX_LABEL,
    MAX_LABELS,
    MAX_MEASUREMENTS,
    MAX_TEXT,
    MAX_TITLE,
    MAX_VIEWPOINT_IDS,
    Attachment,
    BcfDocument,
    BcfFields,
    BcfFile,
    ColoredComponents,
    Comment,
    Topic,
    TopicError,
    Viewpoint,
    ViewSetupHints,
    check_topic,
    measurement_problem,
)

SUPPORTED_VERSIONS: Final = ("2.1", "3.0")
DOCUMENTS_FOLDER: Final = "documents"
# Placeholder for what BCF allows to be blank but our model requires (check_topic).
NO_TITLE: Final = "(untitled)"
# Other tools' fields kept per topic (Topic.bcf): header files; reference links, related topics and external
# documents (each); and the length of one kept text. Real files list a handful; the bounds keep a topic a
# small frame in every joiner's snapshot.
MAX_BCF_FILES: Final = 50
MAX_BCF_LINKS: Final = 100
MAX_BCF_TEXT: Final = 2_000
SECONDS_PER_DAY: Final = 86_400
# BCF 2.1 makes the camera optional; a viewpoint without one looks from 10 m along +Z at the origin.
NO_CAMERA: Final = Camera(position=Vec3(0.0, 0.0, 10.0), direction=Vec3(0.0, 0.0, -1.0), up=Vec3(0.0, 1.0, 0.0))
_PNG, _JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
# Topic children we read; anything else present is reported once per topic as not imported.
_TOPIC_KNOWN: Final = {
    "Title", "Priority", "Index", "Labels", "CreationDate", "CreationAuthor", "ModifiedDate", "ModifiedAuthor",
    "DueDate", "AssignedTo", "Description", "DocumentReferences", "DocumentReference", "Comments", "Viewpoints",
    "Stage", "ReferenceLinks", "ReferenceLink", "RelatedTopics", "RelatedTopic",
}  # fmt: skip


@dataclass
class BcfImport:
    topics: list[Topic]
    comments: list[Comment]
    unmapped_components: list[str]  # IfcGuid / AuthoringToolId of components not found among our twin ids
    warnings: list[str]
    version: str  # of the archive: "3.0" or "2.1"
    path: Path
    attachment_entries: dict[str, str]  # attachment id -> the archive entry holding its bytes

    @property
    def viewpoint_count(self) -> int:
        return sum(len(t.viewpoints) for t in self.topics)

    def attachments(self) -> Iterator[tuple[Attachment, bytes]]:
        """The topics' attachments with their bytes (snapshots and image documents), read from the archive
        one at a time; BcfError if the archive no longer holds what was imported."""
        metas = {a.id: a for t in self.topics for a in t.attachments}
        with Archive(self.path) as archive:
            for att_id, entry in self.attachment_entries.items():
                data = archive.get(entry, b"")
                if hashlib.sha256(data).hexdigest() != metas[att_id].sha256:
                    raise BcfError(self.path, entry, "the archive changed while it was being imported")
                yield metas[att_id], data


@dataclass
class Reader:
    """State of one import: the archive's files and what has been collected so far."""

    file: Path
    files: Mapping[str, bytes]  # an Archive (entries decompressed when read) or the writer's own files
    element_ids: set[str] | None  # None: keep every component id as given (no scene to check against)
    id_for_guid: dict[str, str] | None = None
    documents: dict[str, str] = field(default_factory=dict)  # document guid -> filename (documents.xml)
    attachments: dict[str, str] = field(default_factory=dict)  # attachment id -> entry with its bytes
    unmapped: dict[str, None] = field(default_factory=dict)  # ordered set
    warnings: list[str] = field(default_factory=list)

    def xml(self, entry: str) -> etree._Element:
        return parse_xml(self.file, entry, self.files[entry])

    # --- values ------------------------------------------------------------------------------------

    def date(self, el: etree._Element | None, entry: str, what: str) -> float | None:
        if el is None or not (el.text or "").strip():
            return None
        try:
            return parse_datetime(el.text)
        except ValueError:
            raise BcfError(self.file, entry, f"{what}: not an xs:dateTime: {el.text!r}") from None

    def vec(self, el: etree._Element | None, entry: str, what: str) -> Vec3:
        if el is None:
            raise BcfError(self.file, entry, f"missing {what}")
        try:
            xyz = [float(el.findtext(axis) or "") for axis in "XYZ"]
        except ValueError:
            raise BcfError(self.file, entry, f"{what}: X, Y and Z must be numbers") from None
        for axis, value in zip("XYZ", xyz, strict=True):
            _finite(value, f"{what} {axis}")
        return zup_to_yup(*xyz)

    def number(self, el: etree._Element, path: str, entry: str) -> float:
        try:
            value = float(el.findtext(path) or "")
        except ValueError:
            raise BcfError(self.file, entry, f"{path}: not a number") from None
        return _finite(value, path)

    def _aspect(self, camera: etree._Element, entry: str) -> float | None:
        """The camera's AspectRatio; None for the one we write when none is recorded, or an unusable one."""
        if camera.find("AspectRatio") is None:
            return None
        value = self.number(camera, "AspectRatio", entry)
        if not 1 / MAX_ASPECT_RATIO <= value <= MAX_ASPECT_RATIO:  # also refuses NaN
            self.warnings.append(f"{entry}: AspectRatio {value!r} is not a screen's, not kept")
            return None
        return None if value == DEFAULT_ASPECT else value

    def component_ids(self, components: Iterable[etree._Element]) -> list[str]:
        out = []
        for comp in components:
            twin_id = self._resolve(comp)
            if twin_id is None:
                label = comp.get("IfcGuid") or comp.findtext("AuthoringToolId") or "(component without id)"
                self.unmapped[label] = None
            else:
                out.append(twin_id)
        return out

    def _resolve(self, comp: etree._Element) -> str | None:
        """Twin id of a component: our own AuthoringToolId first, then the IFC GlobalId."""
        known = self.element_ids
        tool_id = comp.findtext("AuthoringToolId")
        if tool_id and comp.findtext("OriginatingSystem") == ORIGINATING_SYSTEM and (known is None or tool_id in known):
            return tool_id
        guid = comp.get("IfcGuid")
        if not guid:
            return None
        if self.id_for_guid and guid in self.id_for_guid:
            return self.id_for_guid[guid]
        return guid if known is None or guid in known else None

    def attachment(self, data: bytes, entry: str, table: list[Attachment]) -> Attachment | None:
        """An image of the archive as an attachment; the id from the extension's table when it lists the bytes."""
        mime = "image/png" if data.startswith(_PNG) else "image/jpeg" if data.startswith(_JPEG) else None
        if mime is None:
            self.warnings.append(f"{entry}: not a PNG or JPEG image, not imported")
            return None
        if len(data) > MAX_ATTACHMENT_BYTES:
            self.warnings.append(f"{entry}: {len(data):,} bytes, more than the {MAX_ATTACHMENT_BYTES:,} we store")
            return None
        digest = hashlib.sha256(data).hexdigest()
        att = next((a for a in table if a.sha256 == digest and a.size == len(data)), None)
        att = att or Attachment(id=derived_guid("attachment", digest), mime=mime, size=len(data), sha256=digest)
        self.attachments[att.id] = entry
        return att

    # --- topic -------------------------------------------------------------------------------------

    def topic(self, folder: str, root: etree._Element, ext: TopicExt | None) -> tuple[Topic, list[Comment]]:
        """The topic and comments as BCF states them, under our ids; `restore` adds the rest of the extension."""
        entry = f"{folder}/markup.bcf"
        t = root.find("Topic")
        if t is None or not t.get("Guid"):
            raise BcfError(self.file, entry, "no Topic element with a Guid")
        ids = ext.ids if ext else {}
        guid = ids.get(t.get("Guid", ""), t.get("Guid", ""))
        table = ext.attachments if ext else []
        attachments: dict[str, Attachment] = {}
        viewpoints = self._viewpoints(folder, root, t, table, attachments)
        for vp in viewpoints:
            vp.guid = ids.get(vp.guid, vp.guid)
        documents, external = self._documents(folder, t, table)
        for att in documents:
            attachments.setdefault(att.id, att)
        status_name, priority_name = t.get("TopicStatus", ""), nonblank(t.findtext("Priority"))
        status = status_from_bcf(status_name)
        if status is None:
            self.warnings.append(f"{entry}: unknown TopicStatus {status_name!r}, imported as open")
        priority = priority_from_bcf(priority_name) if priority_name else "normal"
        if priority is None:
            self.warnings.append(f"{entry}: unknown Priority {priority_name!r}, imported as normal")
        status, priority = status or "open", priority or "normal"
        created = self.date(t.find("CreationDate"), entry, "CreationDate")
        if created is None:
            raise BcfError(self.file, entry, "missing CreationDate")
        due = self.date(t.find("DueDate"), entry, "DueDate")
        dropped = sorted({c.tag for c in t if isinstance(c.tag, str) and c.tag not in _TOPIC_KNOWN and _filled(c)})
        if dropped:
            self.warnings.append(f"{entry}: not imported (TwinView has no field for it): {', '.join(dropped)}")
        topic = Topic(
            guid=guid,
            title=t.findtext("Title") or "",
            author=t.findtext("CreationAuthor") or "",
            created=created,
            description=t.findtext("Description") or "",
            status=status,
            priority=priority,
            topic_type=t.get("TopicType") or "Issue",
            assignee=t.findtext("AssignedTo"),
            labels=_labels(t),
            due_date=due_date_from(due) if due is not None else None,
            viewpoints=viewpoints,
            attachments=list(attachments.values()),
            modified=self.date(t.find("ModifiedDate"), entry, "ModifiedDate"),
            modified_by=t.findtext("ModifiedAuthor"),
            bcf=self._bcf_fields(entry, root, t, (status_name, status), (priority_name, priority), external),
        )
        # BCF 3.0 nests comments in the Topic; 2.1 puts them beside it.
        elements = [*t.findall("Comments/Comment"), *root.findall("Comment")]
        comments = [self._comment(c, guid, entry, ids) for c in elements]
        return topic, comments

    def _comment(self, c: etree._Element, topic: str, entry: str, ids: dict[str, str]) -> Comment:
        created = self.date(c.find("Date"), entry, "Comment Date")
        if created is None or not c.get("Guid"):
            raise BcfError(self.file, entry, "a Comment without Guid or Date")
        vp = c.find("Viewpoint")
        vp_guid = vp.get("Guid") if vp is not None else None
        return Comment(
            guid=ids.get(c.get("Guid", ""), c.get("Guid", "")),
            topic=topic,
            author=c.findtext("Author") or "",
            text=c.findtext("Comment") or "",
            created=created,
            modified=self.date(c.find("ModifiedDate"), entry, "Comment ModifiedDate"),
            viewpoint=ids.get(vp_guid, vp_guid) if vp_guid else None,
        )

    def _bcf_fields(
        self,
        entry: str,
        root: etree._Element,
        t: etree._Element,
        status: tuple[str, str],
        priority: tuple[str | None, str],
        documents: list[BcfDocument],
    ) -> BcfFields | None:
        """What the topic says beyond our fields, as written; None when there is nothing (TwinView's own output).
        `status` and `priority` are (as written, as read)."""
        (status_name, status_read), (priority_name, priority_read) = status, priority
        due = self.date(t.find("DueDate"), entry, "DueDate")
        # Our due date is a day: a DueDate at another time than midnight UTC is kept as written.
        written = (t.findtext("DueDate") or "").strip()
        exact_due = written if due is not None and due % SECONDS_PER_DAY and is_xs_datetime(written) else None
        files = [self._file(f, entry) for f in [*root.findall("Header/Files/File"), *root.findall("Header/File")]]
        links = [link.text or "" for link in [*t.findall("ReferenceLinks/ReferenceLink"), *t.findall("ReferenceLink")]]
        related = [r.get("Guid", "").strip().lower() for r in [*t.findall("RelatedTopics/RelatedTopic"),
                                                                  *t.findall("RelatedTopic")]]  # fmt: skip
        if bad := [g for g in related if not is_bcf_guid(g)]:
            self.warnings.append(f"{entry}: {len(bad)} RelatedTopic(s) without a valid Guid, not kept")
        links = [x for x in (self._text(link, entry, "ReferenceLink") for link in links) if x]
        related = [g for g in related if is_bcf_guid(g)]
        fields = BcfFields(
            status=_verbatim(status_name, STATUS_TO_BCF[status_read]),
            priority="" if priority_name is None else _verbatim(priority_name, PRIORITY_TO_BCF[priority_read]),
            server_assigned_id=self._text(t.get("ServerAssignedId"), entry, "ServerAssignedId"),
            due_date=exact_due,
            stage=self._text(t.findtext("Stage"), entry, "Stage"),
            files=self._at_most(files, MAX_BCF_FILES, entry, "header files"),
            reference_links=self._at_most(links, MAX_BCF_LINKS, entry, "reference links"),
            related_topics=self._at_most(related, MAX_BCF_LINKS, entry, "related topics"),
            documents=self._at_most(documents, MAX_BCF_LINKS, entry, "external documents"),
        )
        return None if fields == BcfFields() else fields

    def _file(self, el: etree._Element, entry: str) -> BcfFile:
        """A `Header` file reference; values the schema would refuse (a malformed IfcGuid or date) are dropped."""
        date = nonblank(el.findtext("Date"))
        date = date.strip() if date else None
        if date is not None and not is_xs_datetime(date):
            self.warnings.append(f"{entry}: header file date {date[:40]!r} is not an xs:dateTime, not kept")
            date = None
        guids = {name: el.get(name) for name in ("IfcProject", "IfcSpatialStructureElement")}
        external = el.get("IsExternal", el.get("isExternal", "true")).strip() in ("true", "1")
        return BcfFile(
            filename=self._text(el.findtext("Filename"), entry, "header Filename"),
            date=date,
            reference=self._text(el.findtext("Reference"), entry, "header Reference"),
            ifc_project=guids["IfcProject"] if is_ifc_guid(guids["IfcProject"] or "") else None,
            ifc_spatial_structure_element=g if is_ifc_guid(g := guids["IfcSpatialStructureElement"] or "") else None,
            is_external=external,
        )

    def _text(self, text: str | None, entry: str, what: str) -> str | None:
        """Another tool's text kept as written: None when blank, cut to MAX_BCF_TEXT."""
        kept = nonblank(text)
        return None if kept is None else _fit(kept, MAX_BCF_TEXT, f"{entry}: {what}", self.warnings)

    def _at_most(self, items: list, limit: int, entry: str, what: str) -> list:
        if len(items) > limit:
            self.warnings.append(f"{entry}: {len(items)} {what}, only the first {limit} kept")
        return items[:limit]

    def _viewpoints(
        self, folder: str, root: etree._Element, t: etree._Element, table: list[Attachment], found: dict
    ) -> list[Viewpoint]:
        refs = [*t.findall("Viewpoints/ViewPoint"), *root.findall("Viewpoints")]  # 3.0 / 2.1
        listed = [(r.get("Guid"), r.findtext("Viewpoint"), r.findtext("Snapshot"), r.findtext("Index")) for r in refs]
        if not listed and f"{folder}/viewpoint.bcfv" in self.files:  # BCF 2.0 style: one unnamed viewpoint
            listed = [(None, "viewpoint.bcfv", "snapshot.png", None)]
        order = sorted(range(len(listed)), key=lambda i: (_index(listed[i][3]), i))
        out = []
        for i in order:
            guid, vfile, sfile, _ = listed[i]
            entry = self._member(folder, vfile)
            if entry is None:
                self.warnings.append(f"{folder}/markup.bcf: viewpoint {guid or vfile!r} has no .bcfv file, skipped")
                continue
            try:
                vp = self._viewpoint(entry, guid)
            except NotFinite as exc:
                self.warnings.append(f"{entry}: {exc}, viewpoint skipped")
                continue
            snap = self._member(folder, sfile)
            if sfile and snap is None and sfile.strip() != "snapshot.png":  # 2.0 default name: often absent
                self.warnings.append(f"{folder}/markup.bcf: snapshot {sfile!r} is not in the topic folder")
            if snap is not None and (att := self.attachment(self.files[snap], snap, table)):
                found.setdefault(att.id, att)
                vp.snapshot = att.id
            out.append(vp)
        return out

    def _member(self, folder: str, name: str | None) -> str | None:
        """The archive entry a topic-relative file name refers to, if it is a file of that topic folder."""
        if not name or "/" in name.strip() or "\\" in name:
            return None
        entry = f"{folder}/{name.strip()}"
        return entry if entry in self.files else None

    def _viewpoint(self, entry: str, guid: str | None) -> Viewpoint:
        v = self.xml(entry)
        if v.tag != "VisualizationInfo":
            raise BcfError(self.file, entry, f"root element is {v.tag}, not VisualizationInfo")
        persp, ortho = v.find("PerspectiveCamera"), v.find("OrthogonalCamera")
        cam_el = persp if persp is not None else ortho
        if cam_el is None:
            self.warnings.append(f"{entry}: no camera, a default one is used")
            camera = NO_CAMERA
        else:
            camera = Camera(
                position=self.vec(cam_el.find("CameraViewPoint"), entry, "CameraViewPoint"),
                direction=self.vec(cam_el.find("CameraDirection"), entry, "CameraDirection"),
                up=self.vec(cam_el.find("CameraUpVector"), entry, "CameraUpVector"),
            )
            if persp is not None:
                camera.fov_deg = self.number(persp, "FieldOfView", entry)
            else:
                camera.ortho_height = self.number(ortho, "ViewToWorldScale", entry)
            camera.aspect_ratio = self._aspect(cam_el, entry)
        comps = v.find("Components")
        vis = comps.find("Visibility") if comps is not None else None
        colored = []
        for color in comps.findall("Coloring/Color") if comps is not None else []:
            rgb = color_from_bcf(color.get("Color", ""))
            ids = self.component_ids([*color.findall("Components/Component"), *color.findall("Component")])
            if rgb is None:
                self.warnings.append(f"{entry}: colour {color.get('Color')!r} is not RRGGBB or AARRGGBB, skipped")
            elif ids:
                colored.append(ColoredComponents(color=rgb, ids=ids))
        if v.find("Lines/Line") is not None or v.find("Bitmaps/Bitmap") is not None or v.find("Bitmap") is not None:
            self.warnings.append(f"{entry}: Lines and Bitmaps are not imported")
        return Viewpoint(
            guid=guid or v.get("Guid") or derived_guid("viewpoint", entry),
            camera=camera,
            clipping_planes=[
                ClippingPlane(
                    location=self.vec(p.find("Location"), entry, "ClippingPlane Location"),
                    direction=self.vec(p.find("Direction"), entry, "ClippingPlane Direction"),
                )
                for p in v.findall("ClippingPlanes/ClippingPlane")
            ],
            selected=self.component_ids(comps.findall("Selection/Component")) if comps is not None else [],
            hidden=self.component_ids(vis.findall("Exceptions/Component")) if vis is not None else [],
            # The XSD default is false, but an absent Visibility means "show the model as it is".
            default_visible=vis is None or _true(vis.get("DefaultVisibility")),
            colored=colored,
            setup_hints=_setup_hints(vis, comps),
        )

    def _documents(
        self, folder: str, t: etree._Element, table: list[Attachment]
    ) -> tuple[list[Attachment], list[BcfDocument]]:
        """Image documents the topic references become attachments, references to URLs are kept as written
        (BcfDocument); others are reported."""
        out, external_refs = [], []
        entry = f"{folder}/markup.bcf"
        for ref in [*t.findall("DocumentReferences/DocumentReference"), *t.findall("DocumentReference")]:
            doc_guid, url = ref.findtext("DocumentGuid"), nonblank(ref.findtext("Url"))
            referenced, external = ref.findtext("ReferencedDocument"), _true(ref.get("isExternal"))
            if doc_guid:  # 3.0 internal document
                filename = self.documents.get(doc_guid, "")
                if _is_extension(filename):
                    continue
                member = f"{DOCUMENTS_FOLDER}/{doc_guid}"
            elif referenced and not external:  # 2.1: a path relative to the topic folder
                member = posixpath.normpath(posixpath.join(folder, referenced))
                filename = referenced
            elif link := self._text(url or referenced, entry, "document Url"):
                guid = (ref.get("Guid") or "").strip().lower()
                guid = guid if is_bcf_guid(guid) else derived_guid("document-reference", folder, link)
                description = self._text(ref.findtext("Description"), entry, "document Description")
                external_refs.append(BcfDocument(guid, link, description))
                continue
            else:
                self.warnings.append(f"{entry}: a document reference without a document, not imported")
                continue
            if member not in self.files:
                self.warnings.append(f"{entry}: document {filename or doc_guid!r} is not in the archive")
            elif att := self.attachment(self.files[member], member, table):
                out.append(att)
        return out, external_refs

    def extension(self, folder: str, root: etree._Element) -> TopicExt | None:
        for doc_guid in root.findall("Topic/DocumentReferences/DocumentReference/DocumentGuid"):
            member = f"{DOCUMENTS_FOLDER}/{(doc_guid.text or '').strip()}"
            if _is_extension(self.documents.get((doc_guid.text or "").strip(), "")) and member in self.files:
                ext = ext_mod.decode(self.files[member])
                if ext is None:
                    self.warnings.append(f"{member}: TwinView extension of another version or damaged, ignored")
                return ext
        return None


class NotFinite(ValueError):
    """A viewpoint number that is NaN or infinite (text `NaN`, `INF`, `1e999`): that viewpoint is skipped."""


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise NotFinite(f"{what} is {value}, not a finite number")
    return value


def _verbatim(written: str | None, ours: str) -> str | None:
    """Another tool's spelling of an enumeration value, or None where it is the one we would write."""
    kept = nonblank(written)
    return kept if kept is not None and kept != ours else None


def _true(value: str | None) -> bool:
    return (value or "").strip() in ("true", "1")


def _setup_hints(vis: etree._Element | None, comps: etree._Element | None) -> ViewSetupHints | None:
    """ViewSetupHints: in Visibility (3.0) or directly in Components (2.1); None when absent."""
    el = vis.find("ViewSetupHints") if vis is not None else None
    if el is None and comps is not None:
        el = comps.find("ViewSetupHints")
    if el is None:
        return None
    return ViewSetupHints(
        spaces_visible=_true(el.get("SpacesVisible")),
        space_boundaries_visible=_true(el.get("SpaceBoundariesVisible")),
        openings_visible=_true(el.get("OpeningsVisible")),
    )


def _is_extension(filename: str) -> bool:
    return filename.startswith(ext_mod.EXT_FILENAME_PREFIX) and filename.endswith(".json")


def _filled(el: etree._Element) -> bool:
    return bool((el.text or "").strip()) or len(el) > 0 or bool(el.attrib)


def _index(text: str | None) -> int:
    try:
        return int(text) if text is not None else 2**31
    except ValueError:
        return 2**31


def _labels(t: etree._Element) -> list[str]:
    out = []
    for el in t.findall("Labels"):  # 3.0: Labels/Label*; 2.1: repeated Labels with text
        subs = el.findall("Label")
        out += [s.text or "" for s in subs] if subs else ([el.text] if (el.text or "").strip() else [])
    return out


def restore(topic: Topic, comments: list[Comment], ext: TopicExt | None) -> tuple[Topic, list[Comment]]:
    """Apply the TwinView extension to what BCF stated."""
    if ext is None:
        return topic, comments
    topic = ext_mod.restore(topic, ext.exact)
    topic.pin, topic.live_values, topic.revision, topic.deleted = ext.pin, ext.live_values, ext.revision, ext.deleted
    topic.replay_time = ext.replay_time
    out = []
    for c in comments:
        c.topic = topic.guid
        if ce := ext.comments.get(c.guid):
            c = ext_mod.restore(c, ce.exact)
            c.reply_to, c.revision, c.deleted, c.replay_time = ce.reply_to, ce.revision, ce.deleted, ce.replay_time
        out.append(c)
    return topic, out


def _fit(text: str, limit: int, what: str, warnings: list[str]) -> str:
    if len(text) <= limit:
        return text
    warnings.append(f"{what}: longer than {limit} characters, cut")
    return text[: limit - 1] + "…"


def _fit_viewpoints(topic: Topic, warnings: list[str]) -> None:
    """Keep at most MAX_CLIPPING_PLANES per viewpoint and MAX_VIEWPOINT_IDS component ids in all of them
    (selected first, then coloured, then hidden), as other tools may list every component of a model."""
    budget = MAX_VIEWPOINT_IDS
    for vp in topic.viewpoints:
        where = f"topic {topic.guid} viewpoint {vp.guid}"
        if len(vp.clipping_planes) > MAX_CLIPPING_PLANES:
            planes = len(vp.clipping_planes)
            warnings.append(f"{where}: {planes} clipping planes, only the first {MAX_CLIPPING_PLANES} kept")
            vp.clipping_planes = vp.clipping_planes[:MAX_CLIPPING_PLANES]
        measurements = [m for m in vp.measurements if not measurement_problem(m)][:MAX_MEASUREMENTS]
        if len(measurements) < len(vp.measurements):
            warnings.append(
                f"{where}: {len(vp.measurements) - len(measurements)} measurements left out"
                f" (malformed, or over {MAX_MEASUREMENTS})"
            )
            vp.measurements = measurements
        listed = len(vp.selected) + len(vp.hidden) + sum(len(c.ids) for c in vp.colored)
        vp.selected = vp.selected[:budget]
        budget -= len(vp.selected)
        for c in vp.colored:
            c.ids = c.ids[:budget]
            budget -= len(c.ids)
        vp.colored = [c for c in vp.colored if c.ids]
        vp.hidden = vp.hidden[:budget]
        budget -= len(vp.hidden)
        kept = len(vp.selected) + len(vp.hidden) + sum(len(c.ids) for c in vp.colored)
        if kept < listed:
            warnings.append(f"{where}: {listed} components, only {kept} kept (at most {MAX_VIEWPOINT_IDS} per topic)")


def fit(topic: Topic, comments: list[Comment], warnings: list[str]) -> None:
    """Bring what another tool wrote within our limits (a TwinView export is within them already). A comment
    without text stays without: BCF allows it (a comment that only points at a viewpoint)."""
    where = f"topic {topic.guid}"
    topic.title = _fit(topic.title, MAX_TITLE, f"{where} title", warnings) if topic.title.strip() else NO_TITLE
    topic.description = _fit(topic.description, MAX_TEXT, f"{where} description", warnings)
    labels = [_fit(label, MAX_LABEL, f"{where} label", warnings) for label in topic.labels if label]
    if len(labels) > MAX_LABELS:
        warnings.append(f"{where}: {len(labels)} labels, only the first {MAX_LABELS} kept")
    topic.labels = labels[:MAX_LABELS]
    _fit_viewpoints(topic, warnings)
    check_topic(topic)
    for c in comments:
        c.text = _fit(c.text, MAX_TEXT, f"comment {c.guid}", warnings)


def _version(file: Path, files: Mapping[str, bytes]) -> str:
    if "bcf.version" not in files:
        raise BcfError(file, "bcf.version", "missing: not a BCF archive")
    root = parse_xml(file, "bcf.version", files["bcf.version"])
    version = (root.get("VersionId") or "").strip()
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(SUPPORTED_VERSIONS)
        raise BcfError(file, "bcf.version", f"BCF version {version!r} is not supported (only {supported})")
    return version


def _topic_folders(file: Path, files: Mapping[str, bytes]) -> list[str]:
    """Folders with a markup.bcf, in archive order; one with viewpoints but no markup is a broken topic.
    Other folders (documents/, files a 2.1 DocumentReference points to) are not topics."""
    folders = dict.fromkeys(name.split("/", 1)[0] for name in files if "/" in name)
    out = []
    for folder in folders:
        if f"{folder}/markup.bcf" in files:
            out.append(folder)
        elif any(name.startswith(f"{folder}/") and name.endswith(".bcfv") for name in files):
            raise BcfError(file, f"{folder}/markup.bcf", "missing: every topic folder needs a markup.bcf")
    return out


def import_bcf(path: Path, element_ids: set[str] | None, id_for_guid: dict[str, str] | None = None) -> BcfImport:
    """Read a BCF archive fully; BcfError on anything unsafe or malformed. `element_ids` None keeps all ids.
    Two comments of the archive with one guid both stay: the later ones get a derived guid (and a warning),
    so that every count and id of the result is true."""
    path = Path(path)
    with Archive(path) as files:
        version = _version(path, files)
        reader = Reader(path, files, element_ids, id_for_guid)
        if "documents.xml" in files:
            docs = reader.xml("documents.xml")
            reader.documents = {d.get("Guid", ""): d.findtext("Filename") or "" for d in docs.iter("Document")}
        topics: list[Topic] = []
        comments: dict[str, Comment] = {}
        for folder in _topic_folders(path, files):
            root = reader.xml(f"{folder}/markup.bcf")
            if root.tag != "Markup":
                raise BcfError(path, f"{folder}/markup.bcf", f"root element is {root.tag}, not Markup")
            ext = reader.extension(folder, root)
            topic, thread = restore(*reader.topic(folder, root, ext), ext)
            if any(t.guid == topic.guid for t in topics):
                reader.warnings.append(f"{folder}/markup.bcf: topic {topic.guid} appears twice, second skipped")
                continue
            try:
                fit(topic, thread, reader.warnings)
            except TopicError as exc:
                raise BcfError(path, f"{folder}/markup.bcf", str(exc)) from None
            topics.append(topic)
            for comment in remap_comments(thread, comments, reader.warnings):
                comments[comment.guid] = comment
    kept = {a.id for t in topics for a in t.attachments}
    entries = {k: v for k, v in reader.attachments.items() if k in kept}
    return BcfImport(topics, list(comments.values()), list(reader.unmapped), reader.warnings, version, path, entries)


def remap_comments(thread: list[Comment], taken: Mapping[str, Comment], warnings: list[str]) -> list[Comment]:
    """The comments of one topic, each whose guid `taken` holds for another topic (or that repeats within the
    thread) under a guid derived from the topic and the original, with a warning; replies follow."""
    renamed: dict[str, str] = {}
    seen: set[str] = set()
    for c in thread:
        other = taken.get(c.guid)
        if c.guid in seen or (other is not None and other.topic != c.topic):
            n = 1
            while (guid := derived_guid("comment", c.topic, c.guid, str(n))) in taken or guid in seen:
                n += 1
            warnings.append(f"comment {c.guid} of topic {c.topic} has the guid of another comment, imported as {guid}")
            if c.guid not in seen:  # replies in this thread meant this comment, not the other topic's
                renamed[c.guid] = guid
            c.guid = guid
        seen.add(c.guid)
    for c in thread:
        if c.reply_to in renamed:
            c.reply_to = renamed[c.reply_to]
    return thread
