"""BCF 3.0 round trip: TwinView topics -> `.bcf` -> TwinView loses nothing; the official BCF 3.0 test
cases import and map to the elements of their IFC models; other tools (bcf-client) read what we write;
hostile archives are refused with one clear error and import nothing."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest
from bcf.v2.bcfxml import BcfXml as BcfXml21
from bcf.v3.bcfxml import BcfXml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from scene.model import Z_UP_TO_Y_UP
from viewer_server.bcf import BcfError, BcfImport, export_bcf, import_bcf, validate_archive
from viewer_server.bcf import archive as bcf_archive
from viewer_server.bcf import reader as bcf_reader
from viewer_server.bcf.mapping import bcf_guid, yup_to_zup, zup_to_yup
from viewer_server.topics import (
    Attachment,
    BcfDocument,
    BcfFields,
    BcfFile,
    Camera,
    ClippingPlane,
    ColoredComponents,
    Comment,
    LiveValue,
    Measurement,
    Pin,
    Topic,
    TransparentComponents,
    Vec3,
    Viewpoint,
    ViewSetupHints,
)

WALL = "2O2Fr$t4X7Zf8NOew3FLOH"  # IFC GlobalIds (22 characters)
DOOR = "1hOSvn6df7F8_7GcBWlRGQ"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + b"twinview-jpeg" * 50


def blobs_of(result: BcfImport) -> dict[str, bytes]:
    return {att.id: data for att, data in result.attachments()}


def _att(att_id: str, data: bytes, mime: str = "image/png") -> Attachment:
    return Attachment(att_id, mime, len(data), hashlib.sha256(data).hexdigest())


def sample() -> tuple[Topic, list[Comment], dict[str, bytes]]:
    """A topic using every field: pin, live values, two viewpoints (perspective + orthogonal), a snapshot,
    an extra image, a non-IFC twin id, a threaded, edited and a deleted comment."""
    snap, photo = _att("a" * 32, PNG), _att("b" * 32, JPEG, "image/jpeg")
    vp1 = Viewpoint(
        guid="0f4c8e2a9b7d4e1f8a6c3b5d7e9f1a2b",
        camera=Camera(Vec3(1.5, 2.25, -3.0), Vec3(0.0, -0.6, 0.8), Vec3(0.0, 0.8, 0.6), fov_deg=55.0),
        clipping_planes=[ClippingPlane(Vec3(0.0, 1.0, 0.0), Vec3(0.0, 1.0, 0.0))],
        selected=[WALL, "pump:P-101"],
        hidden=[DOOR],
        default_visible=True,
        colored=[ColoredComponents("#ff8800", [WALL]), ColoredComponents("#00aaff", ["pump:P-101", DOOR])],
        snapshot=snap.id,
    )
    vp2 = Viewpoint(
        guid="6a1d0c3e-5b2f-4a8e-9c7d-1e3f5a7b9c0d",
        camera=Camera(Vec3(0.0, 20.0, 0.0), Vec3(0.0, -1.0, 0.0), Vec3(0.0, 0.0, -1.0), ortho_height=12.5),
        selected=["pump:P-101"],  # the pinned element, as the client selects it
        default_visible=False,
        hidden=[WALL],
    )
    topic = Topic(
        guid="c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6",
        title="Pump P-101 vibrates above limit",
        author="alice@example.com",
        created=1_764_000_000.123456,
        pin=Pin("pump:P-101", Vec3(1.0, 0.5, -2.0), Vec3(0.0, 1.0, 0.0)),
        description="Seen during the night shift.\nCheck the coupling.",
        status="in_progress",
        priority="high",
        topic_type="Maintenance",
        assignee="bob@example.com",
        labels=["mechanical", "pumps"],
        due_date="2026-12-01",
        viewpoints=[vp1, vp2],
        live_values=[LiveValue("vibration", 7.25, "mm/s", 1_764_000_000.0), LiveValue("running", True)],
        attachments=[snap, photo],
        revision=3,
        modified=1_764_000_100.5,
        modified_by="bob@example.com",
    )
    first = "11111111-2222-4333-8444-555555555555"
    comments = [
        Comment(first, topic.guid, "alice@example.com", "See viewpoint", 1_764_000_001.0, viewpoint=vp1.guid),
        Comment("d" * 32, topic.guid, "bob@example.com", "On it", 1_764_000_050.0, reply_to=first, revision=2,
                modified=1_764_000_060.0),
        Comment("e" * 32, topic.guid, "eve@example.com", "spam", 1_764_000_070.0, deleted=True),
    ]  # fmt: skip
    return topic, comments, {snap.id: PNG, photo.id: JPEG}


def _zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


VERSION_30 = b'<?xml version="1.0" encoding="UTF-8"?><Version VersionId="3.0"/>'
MINIMAL_MARKUP = (
    b'<?xml version="1.0" encoding="UTF-8"?><Markup><Topic Guid="%s" TopicType="Issue" TopicStatus="Open">'
    b"<Title>t</Title><CreationDate>2026-01-01T00:00:00Z</CreationDate><CreationAuthor>a</CreationAuthor>"
    b"</Topic></Markup>"
)
TOPIC_A, TOPIC_B = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"


# --- export: layout, schema validity, other readers ------------------------------------------------------------


def test_export_writes_the_bcf30_layout_and_every_file_validates(tmp_path: Path):
    topic, comments, blobs = sample()
    out = tmp_path / "issues.bcf"
    result = export_bcf([topic], comments, blobs, "Pump station", out)
    assert (result.topics, result.comments, result.viewpoints, result.snapshots) == (1, 2, 2, 1)  # deleted left out
    names = zipfile.ZipFile(out).namelist()
    folder = "c1d2e3f4-a5b6-c7d8-e9f0-a1b2c3d4e5f6"  # our 32-hex id in UUID spelling
    assert {"bcf.version", "project.bcfp", "extensions.xml", "documents.xml", f"{folder}/markup.bcf"} <= set(names)
    assert f"{folder}/Viewpoint_0f4c8e2a-9b7d-4e1f-8a6c-3b5d7e9f1a2b.bcfv" in names
    assert f"{folder}/Snapshot_0f4c8e2a-9b7d-4e1f-8a6c-3b5d7e9f1a2b.png" in names
    assert sum(n.startswith("documents/") for n in names) == 2  # the extension and the extra photo
    with zipfile.ZipFile(out) as zf:
        docs = [zf.read(n) for n in names if n.startswith("documents/")]
    ext = msgspec.json.decode(next(d for d in docs if d.startswith(b"{")))
    assert ext["pin"] == msgspec.to_builtins(topic.pin) and ext["ids"][folder] == topic.guid
    assert "exact" not in ext  # everything else of a typical topic is stated by BCF itself
    assert validate_archive(out) == {}
    assert not list(tmp_path.glob(".*.tmp"))  # written beside, then renamed


def test_bcf_client_reads_what_we_write(tmp_path: Path):
    topic, comments, blobs = sample()
    out = export_bcf([topic], comments, blobs, "Pump station", tmp_path / "issues.bcf").path
    with BcfXml.load(out) as bcf:
        assert bcf.version.version_id == "3.0"
        assert bcf.project.name == "Pump station"
        (handler,) = bcf.topics.values()
        t = handler.topic
        assert (t.title, t.topic_status, t.priority, t.topic_type) == (topic.title, "InProgress", "High", "Maintenance")
        assert t.labels.label == ["mechanical", "pumps"]
        assert t.assigned_to == "bob@example.com"
        assert [c.comment for c in handler.comments] == ["See viewpoint", "On it"]
        assert handler.comments[0].viewpoint.guid == "0f4c8e2a-9b7d-4e1f-8a6c-3b5d7e9f1a2b"
        vps = {v.visualization_info.guid: v for v in handler.viewpoints.values()}
        vi = vps["0f4c8e2a-9b7d-4e1f-8a6c-3b5d7e9f1a2b"].visualization_info
        cam = vi.perspective_camera
        assert (cam.camera_view_point.x, cam.camera_view_point.y, cam.camera_view_point.z) == yup_to_zup(
            topic.viewpoints[0].camera.position
        )
        assert cam.field_of_view == 55.0
        selected = vi.components.selection.component
        assert [(c.ifc_guid, c.originating_system, c.authoring_tool_id) for c in selected] == [
            (WALL, "TwinView", WALL),
            (None, "TwinView", "pump:P-101"),  # not an IFC GlobalId: no IfcGuid, the twin id as AuthoringToolId
        ]
        assert [c.color for c in vi.components.coloring.color] == ["FF8800", "00AAFF"]
        assert vps["0f4c8e2a-9b7d-4e1f-8a6c-3b5d7e9f1a2b"].snapshot == PNG
        ortho = vps["6a1d0c3e-5b2f-4a8e-9c7d-1e3f5a7b9c0d"].visualization_info
        assert ortho.orthogonal_camera.view_to_world_scale == 12.5
        assert ortho.components.visibility.default_visibility is False
        docs = bcf.documents.documents
        assert JPEG in docs.values()
        assert any(name.startswith("twinview-") and name.endswith(".json") for name in docs)


def test_exported_viewpoints_select_the_pinned_element_and_keep_visibility(tmp_path: Path):
    """Issue 12 item 10: another tool opening our export highlights the element a topic is pinned on, in every
    viewpoint, also one that selected nothing; isolation is DefaultVisibility=false + Exceptions; x-ray and
    transparency (no BCF equivalent) come back through the extension."""
    camera = Camera(Vec3(4.0, 3.0, 4.0), Vec3(-0.6, -0.4, -0.6), Vec3(0.0, 1.0, 0.0))
    isolated = Viewpoint(guid="1" * 32, camera=camera, default_visible=False, hidden=[WALL, DOOR],
                         xray_default=True, xray=[WALL])  # fmt: skip
    transparent = Viewpoint(guid="2" * 32, camera=camera, selected=[DOOR], hidden=[DOOR],
                            transparent=[TransparentComponents(0.35, [DOOR])])  # fmt: skip
    pin = Pin(WALL, Vec3(1.0, 1.0, 0.0), Vec3(0.0, 0.0, 1.0))
    topic = Topic(guid="3" * 32, title="Crack in the wall", author="alice", created=1_764_000_000.0, pin=pin,
                  viewpoints=[isolated, transparent])  # fmt: skip
    out = export_bcf([topic], [], {}, "p", tmp_path / "pinned.bcf").path
    assert validate_archive(out) == {}
    with zipfile.ZipFile(out) as zf:
        infos = {n: etree.fromstring(zf.read(n)) for n in zf.namelist() if n.endswith(".bcfv")}
        markup = etree.fromstring(next(zf.read(n) for n in zf.namelist() if n.endswith("markup.bcf")))
    listed = [ref.findtext("Viewpoint") for ref in markup.iterfind("Topic/Viewpoints/ViewPoint")]
    assert len(listed) == 2 and all(any(n.endswith(name) for n in infos) for name in listed)
    by_guid = {info.get("Guid"): info for info in infos.values()}

    def guids(info: etree._Element, path: str) -> list[str]:
        return [c.get("IfcGuid") for c in info.iterfind(f"Components/{path}/Component")]

    first, second = by_guid[bcf_guid(isolated.guid)], by_guid[bcf_guid(transparent.guid)]
    assert guids(first, "Selection") == [WALL]  # selected nothing: the pin is added
    assert guids(second, "Selection") == [DOOR, WALL]
    assert first.find("Components/Visibility").get("DefaultVisibility") == "false"
    assert guids(first, "Visibility/Exceptions") == [WALL, DOOR]
    assert second.find("Components/Visibility").get("DefaultVisibility") == "true"
    assert guids(second, "Visibility/Exceptions") == [DOOR]
    back = import_bcf(out, element_ids={WALL, DOOR})
    assert back.topics == [topic] and back.warnings == []


def test_axes_convert_with_the_ifc_importers_rotation():
    for v in [(1.0, 2.0, 3.0), (-0.5, 0.0, 7.25)]:
        assert list(msgspec.to_builtins(zup_to_yup(*v))) == (Z_UP_TO_Y_UP[:3, :3] @ np.array(v)).tolist()
        assert yup_to_zup(zup_to_yup(*v)) == v


# --- round trip ------------------------------------------------------------------------------------------------


def test_measurements_are_bcf_lines_and_come_back_exactly(tmp_path: Path):
    topic, comments, blobs = sample()
    a, b, c = Vec3(0.0, 0.0, 0.0), Vec3(1.5, 0.0, 0.0), Vec3(1.5, 0.0, 2.0)
    vp = topic.viewpoints[0]
    vp.measurements = [Measurement("distance", [a, b]), Measurement("angle", [a, b, c]), Measurement("area", [a, b, c])]
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "m.bcf", include_deleted=True).path
    assert validate_archive(out) == {}
    with BcfXml.load(out) as bcf:  # another tool sees the measurements as lines: 1 + 2 + 3 segments
        (handler,) = bcf.topics.values()
        vi = next(v.visualization_info for v in handler.viewpoints.values() if v.visualization_info.lines)
        ends = [(ln.start_point, ln.end_point) for ln in vi.lines.line]
        assert len(ends) == 6
        assert [(p.x, p.y, p.z) for p in ends[0]] == [yup_to_zup(a), yup_to_zup(b)]
    assert import_bcf(out, element_ids={WALL, DOOR, "pump:P-101"}).topics == [topic]


def test_a_malformed_measurement_is_left_out_of_an_import_with_a_warning(tmp_path: Path):
    topic, comments, blobs = sample()
    a, b = Vec3(0.0, 0.0, 0.0), Vec3(1.0, 0.0, 0.0)
    topic.viewpoints[0].measurements = [Measurement("distance", [a, b]), Measurement("angle", [a, b])]  # an angle of 2
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "m.bcf").path
    back = import_bcf(out, element_ids={WALL, DOOR, "pump:P-101"})
    assert [m.kind for m in back.topics[0].viewpoints[0].measurements] == ["distance"]
    assert any("1 measurements left out" in w for w in back.warnings)


def test_round_trip_keeps_pin_live_values_viewpoints_comments_and_attachments(tmp_path: Path):
    topic, comments, blobs = sample()
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf", include_deleted=True).path
    back = import_bcf(out, element_ids={WALL, DOOR, "pump:P-101"})
    assert back.topics == [topic]
    assert back.comments == comments
    assert blobs_of(back) == blobs
    assert back.unmapped_components == [] and back.warnings == []


def test_the_replayed_time_of_an_annotation_travels_in_the_extension_and_the_archive_stays_valid(tmp_path: Path):
    topic, comments, blobs = sample()
    topic.replay_time = 1_764_000_000.25  # made while replaying the history (PROTOCOL.md §14)
    comments[0].replay_time = 1_764_000_010.5
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "r.bcf", include_deleted=True).path
    assert validate_archive(out) == {}
    with zipfile.ZipFile(out) as zf:
        docs = [zf.read(n) for n in zf.namelist() if n.startswith("documents/")]
    ext = msgspec.json.decode(next(d for d in docs if d.startswith(b"{")))
    assert ext["replay_time"] == 1_764_000_000.25
    back = import_bcf(out, element_ids={WALL, DOOR, "pump:P-101"})
    assert back.topics[0].replay_time == 1_764_000_000.25
    assert [c.replay_time for c in back.comments] == [1_764_000_010.5, None, None]


def test_without_the_scene_elements_components_are_reported_unmapped(tmp_path: Path):
    topic, comments, blobs = sample()
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path
    back = import_bcf(out, element_ids={WALL})
    assert back.unmapped_components == ["pump:P-101", DOOR]
    vp = back.topics[0].viewpoints[0]
    assert (vp.selected, vp.hidden, vp.colored) == ([WALL], [], [ColoredComponents("#ff8800", [WALL])])
    assert back.topics[0].pin == topic.pin  # our own pin is kept even where the scene lacks the element


def test_deleted_topics_and_comments_are_left_out_unless_asked(tmp_path: Path):
    topic, comments, blobs = sample()
    gone = msgspec.structs.replace(topic, guid="f" * 32, deleted=True)
    out = export_bcf([topic, gone], comments, blobs, "p", tmp_path / "a.bcf").path
    back = import_bcf(out, None)
    assert [t.guid for t in back.topics] == [topic.guid]
    assert [c.guid for c in back.comments] == [c.guid for c in comments if not c.deleted]


def test_an_edit_made_in_another_tool_wins_over_the_extension(tmp_path: Path):
    topic, comments, blobs = sample()
    topic.title = "Pump\x07 P-101"  # a control character XML cannot hold: the extension keeps the exact title
    topic.status = "open"
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path
    assert import_bcf(out, None).topics[0].title == "Pump\x07 P-101"
    edited = tmp_path / "edited.bcf"
    with zipfile.ZipFile(out) as src, zipfile.ZipFile(edited, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("markup.bcf"):
                data = data.replace(b"<Title>Pump P-101</Title>", b"<Title>Pump P-101 fixed</Title>")
                data = data.replace(b'TopicStatus="Open"', b'TopicStatus="Closed"')
            dst.writestr(name, data)
    back = import_bcf(edited, None).topics[0]
    assert (back.title, back.status) == ("Pump P-101 fixed", "closed")
    assert back.pin == topic.pin and back.live_values == topic.live_values


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_finite = st.floats(allow_nan=False, allow_infinity=False)
_vec = st.builds(Vec3, _finite, _finite, _finite)
_ifc_guid = st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$", min_size=22, max_size=22)
_twin_id = st.one_of(_ifc_guid, st.sampled_from(["pump:P-101", "MEP:" + WALL, "x y", " "]), _text)
_guid = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), _text.filter(bool))
_time = st.one_of(st.floats(0, 4e9), st.integers(0, 4_000_000_000).map(float))
_viewpoint = st.builds(
    Viewpoint,
    guid=_guid,
    camera=st.builds(
        Camera, _vec, _vec, _vec, fov_deg=st.one_of(st.floats(1, 179), _finite), ortho_height=st.none() | _finite,
        aspect_ratio=st.none() | st.floats(0.05, 20) | st.just(16 / 9),
    ),
    clipping_planes=st.lists(st.builds(ClippingPlane, _vec, _vec), max_size=2),
    selected=st.lists(_twin_id, max_size=3),
    hidden=st.lists(_twin_id, max_size=3),
    default_visible=st.booleans(),
    colored=st.lists(
        st.builds(ColoredComponents, st.from_regex(r"#[0-9a-fA-F]{6}", fullmatch=True),
                  st.lists(_twin_id, min_size=1, max_size=3)),
        max_size=2,
    ),
    setup_hints=st.none() | st.builds(ViewSetupHints, st.booleans(), st.booleans(), st.booleans()),
    measurements=st.lists(
        st.one_of(st.builds(Measurement, st.just("distance"), st.lists(_vec, min_size=2, max_size=2)),
                  st.builds(Measurement, st.just("angle"), st.lists(_vec, min_size=3, max_size=3)),
                  st.builds(Measurement, st.just("area"), st.lists(_vec, min_size=3, max_size=5))),
        max_size=2,
    ),
)  # fmt: skip
_bcf_fields = st.builds(
    BcfFields,
    status=st.none() | st.sampled_from(["OPEN", "Active", "Done"]) | _text,
    priority=st.none() | st.sampled_from(["", "Major", "P1"]) | _text,
    server_assigned_id=st.none() | _text,
    due_date=st.none() | st.just("2021-03-15T11:00:00Z") | _text,
    stage=st.none() | _text,
    files=st.lists(st.builds(BcfFile, st.none() | _text, st.none() | st.just("2021-01-04T09:37:45.000Z"),
                             st.none() | _text, st.none() | _ifc_guid, st.none() | _ifc_guid, st.booleans()),
                   max_size=2),
    reference_links=st.lists(_text, max_size=2),
    related_topics=st.lists(st.uuids().map(str) | _text, max_size=2),
    documents=st.lists(st.builds(BcfDocument, st.uuids().map(str) | _text, _text, st.none() | _text), max_size=2),
)  # fmt: skip
_live = st.builds(
    LiveValue,
    _text,
    st.one_of(st.booleans(), st.integers(-(2**53), 2**53), _finite, _text),
    unit=_text,
    ts=_time,
)


@st.composite
def topics_with_threads(draw):
    viewpoints = draw(st.lists(_viewpoint, max_size=3, unique_by=lambda v: bcf_guid(v.guid)))
    blobs = draw(st.lists(st.binary(min_size=1, max_size=64), max_size=3, unique=True))
    atts = [_att(f"{i:032x}", PNG + b, "image/png") for i, b in enumerate(blobs)]
    for vp in viewpoints:
        vp.snapshot = draw(st.none() | st.sampled_from([a.id for a in atts])) if atts else None
    topic = Topic(
        guid=draw(_guid),
        title=draw(_text.filter(lambda s: s.strip())),
        author=draw(_text),
        created=draw(_time),
        pin=draw(st.none() | st.builds(Pin, _twin_id, _vec, _vec)),
        description=draw(_text),
        status=draw(st.sampled_from(["open", "in_progress", "resolved", "closed"])),
        priority=draw(st.sampled_from(["low", "normal", "high", "critical"])),
        topic_type=draw(st.one_of(st.just("Issue"), _text)),
        assignee=draw(st.none() | _text),
        labels=draw(st.lists(_text.filter(bool), max_size=3)),
        due_date=draw(st.none() | st.dates().map(str) | _text),
        viewpoints=viewpoints,
        live_values=draw(st.lists(_live, max_size=3)),
        attachments=atts,
        revision=draw(st.integers(1, 1000)),
        modified=draw(st.none() | _time),
        modified_by=draw(st.none() | _text),
        original_author=draw(st.none() | _text),
        bcf=draw(st.none() | _bcf_fields),
        replay_time=draw(st.none() | _time),
    )
    guids = draw(st.lists(_guid, max_size=3, unique_by=bcf_guid))
    comments = [
        Comment(
            guid=g,
            topic=topic.guid,
            author=draw(_text),
            text=draw(_text),  # "" too: a BCF comment may have no text
            created=draw(_time),
            revision=draw(st.integers(1, 5)),
            modified=draw(st.none() | _time),
            reply_to=draw(st.none() | st.sampled_from(guids)),
            viewpoint=draw(st.none() | st.sampled_from([v.guid for v in viewpoints] or [None])),
            deleted=draw(st.booleans()),
            original_author=draw(st.none() | _text),
            replay_time=draw(st.none() | _time),
        )
        for g in guids
    ]
    return topic, comments, {a.id: PNG + b for a, b in zip(atts, blobs, strict=True)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=topics_with_threads())
def test_round_trip_is_lossless_for_any_topic(tmp_path: Path, case):
    topic, comments, blobs = case
    out = tmp_path / "h.bcf"
    export_bcf([topic], comments, blobs, "h", out, include_deleted=True)
    assert validate_archive(out) == {}
    back = import_bcf(out, None)
    assert back.topics == [topic]
    assert back.comments == comments
    assert blobs_of(back) == blobs


# --- the official BCF 3.0 test cases ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ifc_ids(shared_data: Path) -> dict[str, set[str]]:
    """Twin ids of the models the test cases refer to, from our own IFC importer."""
    from scene.importers import ImportOptions
    from scene.importers.ifc import load

    ifc = shared_data / "bcf" / "ifc"
    return {name: set(load(ifc / name, ImportOptions(threads=1)).elements) for name in ("Architectural.ifc", "MEP.ifc")}


def _cases() -> list[str]:
    from tests.conftest import SHARED_DATA

    return sorted(p.name for p in (SHARED_DATA / "bcf" / "v3.0").glob("*.bcf")) or ["(corpus absent)"]


def _components_by_client(path: Path) -> dict[str, tuple[list[str], list[str], list[tuple[str, list[str]]]]]:
    """viewpoint guid -> (selected, visibility exceptions, colours) as bcf-client reads them."""
    out = {}
    with BcfXml.load(path) as bcf:
        for handler in bcf.topics.values():
            for vh in handler.viewpoints.values():
                vi, comps = vh.visualization_info, vh.visualization_info.components
                sel = [c.ifc_guid for c in comps.selection.component] if comps and comps.selection else []
                vis = comps.visibility if comps else None
                hid = [c.ifc_guid for c in vis.exceptions.component] if vis and vis.exceptions else []
                col = [(c.color, [x.ifc_guid for x in c.components.component]) for c in comps.coloring.color] if (
                    comps and comps.coloring) else []  # fmt: skip
                out[vi.guid] = (sel, hid, col)
    return out


@pytest.mark.corpus
@pytest.mark.parametrize("case", _cases())
def test_official_case_imports_and_maps_to_the_ifc_elements(shared_data: Path, ifc_ids: dict[str, set[str]], case: str):
    path = shared_data / "bcf" / "v3.0" / case
    ids = ifc_ids["Architectural.ifc"] | ifc_ids["MEP.ifc"]
    result = import_bcf(path, ids)
    with BcfXml.load(path) as bcf:
        assert sorted(t.guid for t in result.topics) == sorted(h.topic.guid for h in bcf.topics.values())
        assert len(result.comments) == sum(len(h.comments) for h in bcf.topics.values())
        assert result.viewpoint_count == sum(len(h.viewpoints) for h in bcf.topics.values())
    expected = _components_by_client(path)
    every = {g for sel, hid, col in expected.values() for g in [*sel, *hid, *(x for _, ids_ in col for x in ids_)]}
    assert sorted(result.unmapped_components) == sorted(every - ids)  # what the archive really lacks in our scene
    ours = {vp.guid: vp for t in result.topics for vp in t.viewpoints}
    assert set(ours) == set(expected)
    for guid, (sel, hid, col) in expected.items():
        assert ours[guid].selected == [g for g in sel if g in ids]
        assert ours[guid].hidden == [g for g in hid if g in ids]
        assert [(c.color, c.ids) for c in ours[guid].colored] == [
            ("#" + color[-6:].lower(), [g for g in gs if g in ids]) for color, gs in col if any(g in ids for g in gs)
        ]
        assert all(g in ifc_ids["Architectural.ifc"] for g in [*sel, *hid])  # these cases point at the architecture


@pytest.mark.corpus
def test_official_components_are_unmapped_against_the_wrong_model(shared_data: Path, ifc_ids: dict[str, set[str]]):
    result = import_bcf(shared_data / "bcf" / "v3.0" / "Labels.bcf", ifc_ids["MEP.ifc"])
    assert sorted(result.unmapped_components) == ["1bbI761TbBCOoIa5Kt6PXt", "1m5wAJelDFdhn6qBdOGjos"]
    assert result.topics[0].viewpoints[0].hidden == []


@pytest.mark.corpus
@pytest.mark.parametrize("case", _cases())
def test_official_case_reexports_valid_and_readable(shared_data: Path, ifc_ids, tmp_path: Path, case: str):
    first = import_bcf(shared_data / "bcf" / "v3.0" / case, ifc_ids["Architectural.ifc"] | ifc_ids["MEP.ifc"])
    out = export_bcf(first.topics, first.comments, blobs_of(first), case, tmp_path / case).path
    assert validate_archive(out) == {}
    with BcfXml.load(out) as bcf:
        assert sorted(h.topic.title for h in bcf.topics.values()) == sorted(t.title for t in first.topics)
        assert sum(len(h.viewpoints) for h in bcf.topics.values()) == first.viewpoint_count
    assert _components_by_client(out) == _components_by_client(shared_data / "bcf" / "v3.0" / case)  # same IfcGuids
    again = import_bcf(out, ifc_ids["Architectural.ifc"] | ifc_ids["MEP.ifc"])
    assert (again.topics, again.comments, blobs_of(again)) == (first.topics, first.comments, blobs_of(first))


@pytest.mark.corpus
def test_official_case_fields_arrive(shared_data: Path):
    v3 = shared_data / "bcf" / "v3.0"
    due = import_bcf(v3 / "Due_Date.bcf", None).topics[0]
    assert (due.due_date, due.assignee, due.status) == ("2021-03-15", "Architect@example.com", "open")
    labels = import_bcf(v3 / "Labels.bcf", None)
    assert labels.topics[0].labels == ["Architects"]
    assert labels.comments[0].viewpoint == labels.topics[0].viewpoints[0].guid
    assert blobs_of(labels)[labels.topics[0].viewpoints[0].snapshot].startswith(b"\x89PNG")
    milestone = import_bcf(v3 / "Milestone.bcf", None)
    assert milestone.comments[0].text == ""  # a viewpoint-only comment stays without text
    assert milestone.topics[0].bcf.stage == "February"


# --- BCF 2.1 ---------------------------------------------------------------------------------------------------


def test_bcf21_written_by_bcf_client_imports(tmp_path: Path):
    bcf = BcfXml21.create_new("p21")
    handler = bcf.add_topic("Door clash", "The door hits the duct", "a@example.com", "Clash", "Active")
    handler.add_viewpoint_from_point_and_guids(np.array([1.0, 2.0, 3.0]), WALL, DOOR)
    path = tmp_path / "clash.bcfzip"
    bcf.save(path)
    result = import_bcf(path, {WALL})
    (topic,) = result.topics
    assert (result.version, topic.title, topic.topic_type) == ("2.1", "Door clash", "Clash")
    assert (topic.description, topic.status) == ("The door hits the duct", "open")  # "Active" is open
    assert topic.viewpoints[0].selected == [WALL]
    assert result.unmapped_components == [DOOR]


MARKUP_21 = b"""<?xml version="1.0" encoding="UTF-8"?>
<Markup>
  <Topic Guid="%(t)s" TopicType="Issue" TopicStatus="Closed">
    <ReferenceLink>https://example.com/issue/1</ReferenceLink>
    <Title>Old issue</Title>
    <Priority>Major</Priority>
    <Labels>Structure</Labels>
    <Labels>HVAC</Labels>
    <CreationDate>2019-05-01T10:00:00+02:00</CreationDate>
    <CreationAuthor>old@example.com</CreationAuthor>
    <DocumentReference Guid="44444444-0000-4000-8000-000000000004" isExternal="false">
      <ReferencedDocument>../shared/photo.jpg</ReferencedDocument>
    </DocumentReference>
  </Topic>
  <Comment Guid="33333333-0000-4000-8000-000000000003">
    <Date>2019-05-02T10:00:00Z</Date>
    <Author>old@example.com</Author>
    <Comment>Fixed on site</Comment>
    <Viewpoint Guid="22222222-0000-4000-8000-000000000002"/>
  </Comment>
  <Viewpoints Guid="22222222-0000-4000-8000-000000000002">
    <Viewpoint>viewpoint.bcfv</Viewpoint>
    <Snapshot>snapshot.png</Snapshot>
  </Viewpoints>
</Markup>"""
VISINFO_21 = b"""<?xml version="1.0" encoding="UTF-8"?>
<VisualizationInfo Guid="22222222-0000-4000-8000-000000000002">
  <Components>
    <ViewSetupHints SpacesVisible="false"/>
    <Selection><Component IfcGuid="%(w)s"/></Selection>
    <Visibility DefaultVisibility="false"><Exceptions><Component IfcGuid="%(d)s"/></Exceptions></Visibility>
    <Coloring><Color Color="80FF0000"><Component IfcGuid="%(w)s"/></Color></Coloring>
  </Components>
  <OrthogonalCamera>
    <CameraViewPoint><X>1</X><Y>2</Y><Z>3</Z></CameraViewPoint>
    <CameraDirection><X>0</X><Y>0</Y><Z>-1</Z></CameraDirection>
    <CameraUpVector><X>0</X><Y>1</Y><Z>0</Z></CameraUpVector>
    <ViewToWorldScale>25</ViewToWorldScale>
  </OrthogonalCamera>
</VisualizationInfo>"""


def test_bcf21_layout_topic_comments_viewpoints_and_documents(tmp_path: Path):
    t = "11111111-0000-4000-8000-000000000001"
    path = _zip(tmp_path / "old.bcfzip", {
        "bcf.version": b'<Version VersionId="2.1"><DetailedVersion>2.1</DetailedVersion></Version>',
        f"{t}/markup.bcf": MARKUP_21 % {b"t": t.encode()},
        f"{t}/viewpoint.bcfv": VISINFO_21 % {b"w": WALL.encode(), b"d": DOOR.encode()},
        f"{t}/snapshot.png": PNG,
        "shared/photo.jpg": JPEG,
    })  # fmt: skip
    result = import_bcf(path, {WALL, DOOR})
    (topic,) = result.topics
    assert (topic.status, topic.priority, topic.labels) == ("closed", "high", ["Structure", "HVAC"])
    assert topic.created == 1556697600.0  # 10:00 at +02:00
    (vp,) = topic.viewpoints
    assert vp.camera == Camera(Vec3(1.0, 3.0, -2.0), Vec3(0.0, -1.0, -0.0), Vec3(0.0, 0.0, -1.0), ortho_height=25.0)
    assert (vp.selected, vp.hidden, vp.default_visible) == ([WALL], [DOOR], False)
    assert vp.colored == [ColoredComponents("#ff0000", [WALL])]  # AARRGGBB: alpha dropped
    assert blobs_of(result)[vp.snapshot] == PNG
    assert JPEG in blobs_of(result).values()  # the 2.1 document reference, relative to the topic folder
    (comment,) = result.comments
    assert (comment.text, comment.viewpoint, comment.topic) == ("Fixed on site", vp.guid, t)
    # What TwinView does not use is kept as written, for the export: the link, "Major", the setup hints.
    assert topic.bcf == BcfFields(priority="Major", reference_links=["https://example.com/issue/1"])
    assert vp.setup_hints == ViewSetupHints(spaces_visible=False)


# --- hostile and broken archives ------------------------------------------------------------------------------


def _bad(path: Path) -> BcfError:
    with pytest.raises(BcfError) as info:
        import_bcf(path, None)
    err = info.value
    assert err.file == str(path)
    assert str(err).startswith(f"{path}: {err.problem}")
    return err


def test_not_a_zip_is_refused(tmp_path: Path):
    (tmp_path / "x.bcf").write_bytes(b"PK\x03\x04 garbage")
    assert "not a zip archive" in _bad(tmp_path / "x.bcf").problem


def test_truncated_archive_is_refused(tmp_path: Path):
    topic, comments, blobs = sample()
    data = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path.read_bytes()
    (tmp_path / "cut.bcf").write_bytes(data[: len(data) // 2])
    assert "not a zip archive" in _bad(tmp_path / "cut.bcf").problem


def test_topic_folder_without_markup_is_refused(tmp_path: Path):
    path = _zip(tmp_path / "m.bcf", {"bcf.version": VERSION_30, f"{TOPIC_A}/Viewpoint_x.bcfv": b"<VisualizationInfo/>"})
    err = _bad(path)
    assert (err.entry, err.problem) == (f"{TOPIC_A}/markup.bcf", "missing: every topic folder needs a markup.bcf")


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        (b'<Version VersionId="4.0"/>', "BCF version '4.0' is not supported (only 2.1, 3.0)"),
        (b'<Version VersionId="1.0"/>', "BCF version '1.0' is not supported (only 2.1, 3.0)"),
        (None, "missing: not a BCF archive"),
    ],
)
def test_unknown_or_missing_version_is_refused(tmp_path: Path, version: bytes | None, problem: str):
    entries = {f"{TOPIC_A}/markup.bcf": MINIMAL_MARKUP % TOPIC_A.encode()}
    if version is not None:
        entries["bcf.version"] = version
    err = _bad(_zip(tmp_path / "v.bcf", entries))
    assert (err.entry, err.problem) == ("bcf.version", problem)


@pytest.mark.parametrize("name", ["../evil.bcf", f"{TOPIC_A}/../../evil", "/etc/evil", "C:/evil", "a\\..\\evil"])
def test_path_traversal_entries_are_refused(tmp_path: Path, name: str):
    err = _bad(_zip(tmp_path / "t.bcf", {"bcf.version": VERSION_30, name: b"x"}))
    assert err.entry == name
    assert "entry name" in err.problem


def test_duplicate_entries_are_refused(tmp_path: Path):
    path = tmp_path / "d.bcf"
    with zipfile.ZipFile(path, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("bcf.version", VERSION_30)
        zf.writestr(f"{TOPIC_A}/markup.bcf", MINIMAL_MARKUP % TOPIC_A.encode())
        zf.writestr(f"{TOPIC_A}/markup.bcf", MINIMAL_MARKUP % TOPIC_B.encode())  # which one would a tool read?
    err = _bad(path)
    assert (err.entry, err.problem) == (f"{TOPIC_A}/markup.bcf", "duplicate entry name")


def test_zip_bomb_ratio_is_refused(tmp_path: Path):
    path = _zip(tmp_path / "b.bcf", {"bcf.version": VERSION_30, f"documents/{TOPIC_A}": bytes(4 * 1024 * 1024)})
    err = _bad(path)
    assert err.entry == f"documents/{TOPIC_A}"
    assert f"compression ratio above {bcf_archive.MAX_COMPRESSION_RATIO}:1" in err.problem


def test_total_uncompressed_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bcf_archive, "MAX_TOTAL_BYTES", 100_000)
    entries = {"bcf.version": VERSION_30} | {f"documents/{i}": bytes(range(256)) * 200 for i in range(3)}
    err = _bad(_zip(tmp_path / "big.bcf", entries))
    assert "bytes uncompressed, more than the 100,000 allowed" in err.problem


def test_entry_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bcf_archive, "MAX_ENTRIES", 10)
    entries = {"bcf.version": VERSION_30} | {f"documents/{i}": b"x" for i in range(10)}
    assert "11 entries, more than the 10 allowed" in _bad(_zip(tmp_path / "n.bcf", entries)).problem


def test_oversized_xml_is_refused(tmp_path: Path):
    title = b"<Title>" + b"ab" * (bcf_archive.MAX_XML_BYTES // 2) + b"</Title>"
    huge = (MINIMAL_MARKUP % TOPIC_A.encode()).replace(b"<Title>t</Title>", title)
    path = _zip(tmp_path / "x.bcf", {"bcf.version": VERSION_30, f"{TOPIC_A}/markup.bcf": huge}, zipfile.ZIP_STORED)
    err = _bad(path)
    assert err.entry == f"{TOPIC_A}/markup.bcf"
    assert f"more than the {bcf_archive.MAX_XML_BYTES:,} allowed" in err.problem


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Markup [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]>
<Markup><Topic Guid="%s" TopicType="Issue" TopicStatus="Open"><Title>&e;</Title>
<CreationDate>2026-01-01T00:00:00Z</CreationDate><CreationAuthor>a</CreationAuthor></Topic></Markup>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE Markup [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Markup><Topic Guid="%s" TopicType="Issue" TopicStatus="Open"><Title>&x;</Title>
<CreationDate>2026-01-01T00:00:00Z</CreationDate><CreationAuthor>a</CreationAuthor></Topic></Markup>"""


@pytest.mark.parametrize("markup", [LAUGHS, XXE], ids=["entity-expansion", "external-entity"])
def test_entity_declarations_are_refused(tmp_path: Path, markup: bytes):
    path = _zip(tmp_path / "e.bcf", {"bcf.version": VERSION_30, f"{TOPIC_A}/markup.bcf": markup % TOPIC_A.encode()})
    err = _bad(path)
    assert (err.entry, err.problem) == (f"{TOPIC_A}/markup.bcf", "DOCTYPE / entity declarations are not allowed in BCF")


def test_malformed_xml_is_refused(tmp_path: Path):
    path = _zip(tmp_path / "e.bcf", {"bcf.version": VERSION_30, f"{TOPIC_A}/markup.bcf": b"<Markup><Topic"})
    assert "not well-formed XML" in _bad(path).problem


def _edited(src: Path, dst: Path, edit: Callable[[str, bytes], bytes]) -> Path:
    """A copy of the archive `src` with every entry passed through `edit(name, data)`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, edit(name, zin.read(name)))
    return dst


@pytest.mark.parametrize("text", ["NaN", "INF", "-inf", "1e999"])
@pytest.mark.parametrize("where", ["CameraViewPoint", "ClippingPlane", "FieldOfView"])
def test_a_viewpoint_with_a_non_finite_number_is_skipped_with_a_warning(tmp_path: Path, text: str, where: str):
    topic, comments, blobs = sample()
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path

    def poison(name: str, data: bytes) -> bytes:
        if b"PerspectiveCamera" not in data:  # only the first viewpoint (vp1) is perspective
            return data
        if where == "FieldOfView":
            return re.sub(rb"<FieldOfView>[^<]*<", b"<FieldOfView>" + text.encode() + b"<", data)
        return re.sub(rb"(<%s>\s*(?:<Location>)?\s*<X>)[^<]*<" % where.encode(), rb"\g<1>" + text.encode() + b"<", data)

    back = import_bcf(_edited(out, tmp_path / "poisoned.bcf", poison), None)
    [imported] = back.topics
    assert [vp.guid for vp in imported.viewpoints] == [topic.viewpoints[1].guid]  # vp1 skipped, vp2 kept
    [warning] = [w for w in back.warnings if "viewpoint skipped" in w]
    assert "not a finite number" in warning and imported.title == topic.title


def test_guids_are_bounded_on_import(tmp_path: Path):
    markup = MINIMAL_MARKUP % (b"a" * 100_000)
    err = _bad(_zip(tmp_path / "g.bcf", {"bcf.version": VERSION_30, "t/markup.bcf": markup}))
    assert err.entry == "t/markup.bcf" and err.problem == "guid: 1..64 characters, not 100000"
    topic, comments, blobs = sample()
    topic.viewpoints[0].guid = "v" * 65
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path
    assert "viewpoints[0].guid: 1..64 characters" in _bad(out).problem
    topic, comments, blobs = sample()
    long_id = "x" * 65  # the extension's table names attachments: its ids are checked too
    blobs[long_id] = blobs.pop(topic.attachments[1].id)
    topic.attachments[1] = msgspec.structs.replace(topic.attachments[1], id=long_id)
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "b.bcf").path
    assert "attachments[1].id: 1..64 characters" in _bad(out).problem


def test_viewpoint_components_and_planes_are_bounded_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(bcf_reader, "MAX_VIEWPOINT_IDS", 3)
    monkeypatch.setattr(bcf_reader, "MAX_CLIPPING_PLANES", 0)
    topic, comments, blobs = sample()  # vp1: 2 selected, 1 hidden, 3 coloured; vp2: 1 hidden
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path
    back = import_bcf(out, None)
    vp1, vp2 = back.topics[0].viewpoints
    assert (vp1.selected, vp1.colored, vp1.hidden, vp1.clipping_planes) == (
        [WALL, "pump:P-101"],
        [ColoredComponents("#ff8800", [WALL])],
        [],
        [],
    )
    assert vp2.hidden == []
    assert sum("components, only" in w for w in back.warnings) == 2
    assert any("clipping planes, only the first 0 kept" in w for w in back.warnings)


# --- the command line --------------------------------------------------------------------------------------------


def twinview(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "viewer_server.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A server data dir whose session `s1` holds the sample topic, comments and attachments."""
    import asyncio

    from viewer_server.store import AuditEntry, Store

    topic, comments, blobs = sample()
    store = Store(tmp_path / "data")
    entry = AuditEntry("s1", 0.0, "test", "admin", "bcf.import", "fixture")
    pairs = [(a, blobs[a.id]) for a in topic.attachments]
    asyncio.run(store.import_topics("s1", [topic], comments, pairs, entry))
    store.close()
    return tmp_path / "data"


def _scene(tmp_path: Path, ids: list[str]) -> Path:
    from scene.export.manifest import MANIFEST_FORMAT, MANIFEST_VERSION

    scene = tmp_path / "scene"
    scene.mkdir()
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "elements": [{"id": i} for i in ids]}
    (scene / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    return scene


def test_cli_export_then_import_into_another_session(data_dir: Path, tmp_path: Path):
    from viewer_server.store import Store

    out = tmp_path / "s1.bcf"
    proc = twinview("bcf", "export", "s1", "-o", str(out), "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("exported 1 topics, 2 comments, 2 viewpoints (1 snapshots)")
    assert validate_archive(out) == {}
    scene = _scene(tmp_path, [WALL, "MEP:" + DOOR])  # a merge prefixed the door's id
    proc = twinview("bcf", "import", "s2", str(out), "--data-dir", str(data_dir), "--scene", str(scene))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"imported 1 topics, 2 comments, 2 viewpoints (BCF 3.0) from {out}"
    assert lines[1:] == ["  1 components not found in " + str(scene) + ":", "    pump:P-101"]
    store = Store(data_dir)
    try:
        (topic,) = store.topics("s2")
        assert topic.pin == sample()[0].pin
        assert topic.viewpoints[0].hidden == ["MEP:" + DOOR]  # found by its GlobalId
        assert store.attachment(topic.viewpoints[0].snapshot)[2] == PNG
        assert len(store.comments("s2")) == 2
    finally:
        store.close()


def test_cli_bad_archive_exits_2_with_one_line_and_imports_nothing(data_dir: Path, tmp_path: Path):
    from viewer_server.store import Store

    # The first topic is fine, the second is broken: nothing at all may be imported.
    path = _zip(tmp_path / "half.bcf", {
        "bcf.version": VERSION_30,
        f"{TOPIC_A}/markup.bcf": MINIMAL_MARKUP % TOPIC_A.encode(),
        f"{TOPIC_B}/markup.bcf": (MINIMAL_MARKUP % TOPIC_B.encode()).replace(b"2026-01-01T00:00:00Z", b"yesterday"),
    })  # fmt: skip
    proc = twinview("bcf", "import", "s1", str(path), "--data-dir", str(data_dir))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"twinview: {path}: CreationDate: not an xs:dateTime: 'yesterday' [{TOPIC_B}/markup.bcf]"
    ]
    store = Store(data_dir)
    try:
        assert [t.guid for t in store.topics("s1")] == [sample()[0].guid]
    finally:
        store.close()


def test_cli_needs_an_existing_data_dir(tmp_path: Path):
    proc = twinview("bcf", "export", "s1", "-o", str(tmp_path / "x.bcf"), "--data-dir", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert "no server data here" in proc.stderr
    assert not (tmp_path / "nope").exists()


async def test_cli_import_goes_through_a_running_server_so_everyone_sees_it_at_once(tmp_path: Path):
    import asyncio

    from tests.live_server import live_server, mint_token
    from viewer_server.client import TwinClient
    from viewer_server.server_file import SERVER_FILE, running_server

    topic, comments, blobs = sample()
    archive = tmp_path / "from-the-coordinator.bcf"
    export_bcf([topic], comments, blobs, "s1", archive)
    data = tmp_path / "data"
    async with live_server(tmp_path) as srv:
        assert running_server(data) == srv.url
        session = srv.live.scene.id
        async with TwinClient(srv.ws_url, token=mint_token(srv, "ana", "viewer")) as ana:
            proc = await asyncio.to_thread(twinview, "bcf", "import", session, str(archive), "--data-dir", str(data))
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.splitlines()[0] == (
                f"imported 1 topics, 2 comments, 2 viewpoints (BCF 3.0) from {archive} through the server at"
                f" {srv.url}; everyone connected sees them now"
            )
            await ana.wait_for(lambda c: [t.title for t in c.topics.values()] == [topic.title])
            await ana.wait_for(lambda c: len(c.comments) == 2)  # the deleted one is not exported
        audit = srv.store.audit(session, 10)
        assert [(e.actor, e.action) for e in audit][:1] == [("twinview-cli", "bcf.import")]
    assert running_server(data) is None and not (data / SERVER_FILE).exists()  # the server said it stopped


def test_a_server_file_left_by_a_dead_server_is_ignored(tmp_path: Path):
    from viewer_server.server_file import SERVER_FILE, running_server

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for text in (f'{{"pid": {int(gone.stdout)}, "url": "http://127.0.0.1:9"}}', "not json", '{"pid": "x"}', "[]"):
        (tmp_path / SERVER_FILE).write_text(text)
        assert running_server(tmp_path) is None, text


def test_cli_import_writes_the_store_when_the_announced_server_does_not_answer(data_dir: Path, tmp_path: Path):
    import os
    import socket

    from viewer_server.server_file import SERVER_FILE
    from viewer_server.store import Store

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (data_dir / SERVER_FILE).write_text(f'{{"pid": {os.getpid()}, "url": "http://127.0.0.1:{port}"}}')
    out = tmp_path / "s1.bcf"
    assert twinview("bcf", "export", "s1", "-o", str(out), "--data-dir", str(data_dir)).returncode == 0
    proc = twinview("bcf", "import", "s3", str(out), "--data-dir", str(data_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"the server at http://127.0.0.1:{port} did not answer (")
    assert "writing the store directly: it shows the topics after a restart" in proc.stdout.splitlines()[0]
    store = Store(data_dir)
    try:
        assert len(store.topics("s3")) == 1
    finally:
        store.close()
