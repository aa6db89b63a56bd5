"""Protocol v1: the schema file and the TypeScript declarations are current, and every message type validates
against the schema."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import msgspec
import pytest

from scene.json_schema import tidy
from viewer_server import protocol as p
from viewer_server.topics import Camera

REPO = Path(__file__).resolve().parents[1]
POSE = p.Pose((1.0, 1.6, 3.0), (0.0, 0.0, 0.0, 1.0), (1.0, 1.6, 3.0), (0.0, 0.0, -1.0))
VISUAL = p.Visual(color="#c62828", status="alarm", transform=p.Transform(translate=[0.0, 0.01, 0.0]), label="5.7 bar")
VIEWPOINT = p.Viewpoint("v1", Camera(p.Vec3(5, 2, 1), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0)), selected=["P-1"])
EVENT = p.Event(
    7, "alarm_raised", "operations.rules[1]", "P-1", 1.7e9, "pressure", "PT-1", "operations", "alarm", "high"
)

ALARM = p.Alarm(
    "operations.rules[1]", "P-1", 1.7e9, "pressure", "PT-1", "operations", "alarm", "pressure = 5.7 bar", 5.7, "bar",
    state="acknowledged", changed=1.7e9 + 5, revision=2, acknowledged_by="ann", acknowledged_at=1.7e9 + 5,
)  # fmt: skip

SAMPLES: list[object] = [
    p.Hello("web", "0.1.0"),
    p.Hello("py", "0.1.0", role="publisher", layer="energy", resume=p.Resume("abc", 42)),
    p.Subscribe("energy"),
    p.ChangeInterest(p.Interest(box=((0, 0, 0), (10, 3, 10)), elements=["P-101"])),
    p.ChangeInterest(None),
    p.Publish([p.Reading(4.2, key="PT-1.pressure"), p.Reading(True, element="P-1", prop="running", ts=1.7e9)], "r1"),
    p.PresenceUpdate(POSE),
    p.Ping(1.0),
    p.Welcome("s1", "e1", 3, "0.1.0", 1, "json", "pump", "operations", ["operations"], ["resume"], {"x": 1}),
    p.Snapshot(
        seq=3,
        epoch="e1",
        scene="pump",
        layer="operations",
        glb_url="/scenes/pump/scene.glb",
        manifest_url="/scenes/pump/manifest.json",
        props={"PT-1/pressure": p.PropState(4.2, 1.7e9, "bar")},
        visuals={"P-1": VISUAL},
        alarms=[p.Alarm("operations.rules[1]", "P-1", 1.7e9)],
        presence={"s2": p.Presence("web", POSE, 1.7e9)},
        alarm_history=[EVENT],
        resync=True,
        reason="epoch_changed",
    ),
    p.Delta(
        4,
        9,
        {"PT-1/pressure": p.PropState(5.7, 1.7e9, "bar", "uncertain")},
        {"P-1@operations": VISUAL},
        {"s2": None, "s3": p.Presence("vr", POSE, 1.7e9)},
        [EVENT],
    ),
    p.Ack(1, [p.Rejection(1, "unbound_key", "no binding has key 'x'")], "r1"),
    p.Error(p.ERR_BAD_MESSAGE, "Object missing required field `layer`", "subscribe"),
    p.Pong(1.0, 2.0),
    p.Status("degraded", "the shared bus is unreachable"),
    p.Status("ok"),
    p.TopicCreate(
        p.TopicDraft(
            "Leak at flange", "Drips", p.Pin("P-1", p.Vec3(1, 2, 3), p.Vec3(0, 1, 0)), labels=["leak"], guid="t1"
        ),
        "r2",
    ),
    p.TopicUpdate("t1", 1, status="resolved", assignee="", ref="r3"),
    p.TopicDelete("t1", 2),
    p.CommentAdd("t1", "Fixed <b>now</b>", reply_to="c0", ref="r4"),
    p.CommentEdit("c1", 1, "Fixed."),
    p.CommentDelete("c1", 2),
    p.Saved("r4", "comment_added", "c1", 1, 12),
    p.ProcedureControl("start", name="duty-pump-switch"),
    p.ProcedureControl("goto", step=2),
    p.StepComplete(2, element="P-1"),
    p.PresenterTake(),
    p.PresenterRelease(),
    p.PresenterView(VIEWPOINT),
    p.HandRaise(),
    p.HandLower(all=True),
    p.Markup("P-1", (1.0, 0.5, 2.0), "check this flange"),
    p.Command("V-1", "setpoint", 60.0, "c1"),
    p.Delta(
        10,
        11,
        events=[
            p.Event(
                10,
                "procedure_step",
                "run1",
                "",
                1.7e9,
                message="Start P-102",
                procedure="x",
                step=1,
                viewpoint=VIEWPOINT,
                user="ann",
                session="s1",
            )
        ],
        presenter={"s1": p.PresenterState("ann", "sid1", VIEWPOINT, 1.7e9, [p.Hand("bob", "sid2", 1.7e9)])},
    ),
    p.CommandAck("sent", "published to plant/V-1/cmd (QoS 1)", "V-1", "setpoint", "c1"),
    p.AlarmAck("operations.rules[1]", "a1"),
    p.AlarmShelve("operations.rules[1]", 30, "chattering while the valve is serviced", "a2"),
    p.AlarmUnshelve("operations.rules[1]"),
    p.AlarmOutOfService("operations.rules[1]", "transmitter replaced"),
    p.AlarmInService("operations.rules[1]", "a3"),
    p.Delta(
        12,
        12,
        {"PT-1/pressure": p.PropState(5.7, 1.7e9, "bar", silent_since=1.7e9 + 3)},
        events=[
            p.Event(12, "alarm_acknowledged", "operations.rules[1]", "P-1", 1.7e9 + 5, user="ann", alarm=ALARM),
        ],
    ),
    p.Seek(1.7e9, "s1"),
    p.Play(60.0, start=1.7e9 - 600),
    p.Pause(),
    p.Live("l1"),
    p.Replay(
        1.7e9,
        60.0,
        True,
        "operations",
        p.HistoryRange(1.69e9, 1.7e9 + 3600),
        {"PT-1/pressure": p.PropState(5.7, 1.7e9 - 2, "bar")},
        {"P-1": p.Visual(color="#ff0000", status="alarm")},
        [ALARM],
        driven_by="Ann",
        ref="s1",
    ),
    p.ReplayDelta(
        1.7e9 + 6,
        {"PT-1/pressure": p.PropState(5.9, 1.7e9 + 5.5, "bar")},
        {"P-1": p.Visual(status="ok")},
        [],
        [p.Event(12, "alarm_acknowledged", "operations.rules[1]", "P-1", 1.7e9 + 5, user="ann", alarm=ALARM)],
    ),
    p.Error(p.ERR_OUT_OF_RANGE, "no history before 2023-07-28", "s1", range=p.HistoryRange(1.69e9, 1.7e9)),
]


def test_schema_file_is_current() -> None:
    on_disk = (REPO / "docs" / "protocol.schema.json").read_text()
    assert on_disk == p.schema_text(), "regenerate: python -m viewer_server.protocol > docs/protocol.schema.json"


def test_typescript_declarations_are_current() -> None:
    on_disk = (REPO / "web_client" / "src" / "protocol_types.d.ts").read_text()
    regenerate = "python -m viewer_server.protocol --typescript > web_client/src/protocol_types.d.ts"
    assert on_disk == p.typescript_text(), f"regenerate: {regenerate}"


def test_typescript_declarations_cover_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert p.main(["--typescript"]) == 0
    text = capsys.readouterr().out
    for name in p.schema()["$defs"]:
        assert f"export interface {name} {{" in text or f"export type {name} = " in text, name
    assert 'export interface Subscribe {\n  type: "subscribe";\n  layer: string;\n}' in text
    members = " | ".join(m.__name__ for m in p.ServerMessage.__args__)  # type: ignore[attr-defined]
    assert f"export type ServerMessage = {members};" in text


def test_main_prints_the_schema_and_refuses_unknown_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert p.main([]) == 0
    assert capsys.readouterr().out == p.schema_text()
    assert p.main(["--typescrpt"]) == 2
    assert capsys.readouterr().err == "usage: python -m viewer_server.protocol [--typescript]\n"


def test_play_names_its_start_from_on_the_wire() -> None:
    wire = msgspec.json.decode(p.encode(p.Play(10.0, start=5.0), "json"))
    assert wire == {"type": "play", "speed": 10.0, "from": 5.0}
    assert p.decode_client(b'{"type":"play","speed":2,"from":7}', "json") == p.Play(2.0, start=7.0)


def test_samples_cover_every_message_type() -> None:
    union = set(p.ClientMessage.__args__) | set(p.ServerMessage.__args__)  # type: ignore[attr-defined]
    assert {type(s) for s in SAMPLES} == union


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_every_message_validates_and_round_trips(msg: object, encoding: p.Encoding) -> None:
    schema = p.schema()
    builtins = msgspec.json.decode(p.encode(msg, "json"))
    jsonschema.Draft202012Validator(schema).validate(builtins)
    data = p.encode(msg, encoding)
    decode = p.decode_client if isinstance(msg, p.ClientMessage) else p.decode_server
    assert decode(data, encoding) == msg


def test_schema_rejects_an_unknown_type_and_a_missing_field() -> None:
    validator = jsonschema.Draft202012Validator(p.schema())
    assert not validator.is_valid({"type": "teleport"})
    assert not validator.is_valid({"type": "subscribe"})
    with pytest.raises(msgspec.ValidationError, match="layer"):
        p.decode_client(b'{"type":"subscribe"}', "json")


def test_subprotocols_name_the_version_and_encoding() -> None:
    assert p.encoding_for("twinview.v1") == "json"
    assert p.encoding_for("twinview.v1.msgpack") == "msgpack"
    assert p.encoding_for("twinview.v2") is None


def test_generated_schemas_do_not_depend_on_how_msgspec_indents_docstrings() -> None:
    """msgspec 0.22 kept a docstring's indentation in `description`, 0.23 strips it: the files must not care."""
    as_022 = {"$defs": {"A": {"description": "First line.\n\n    Second line,\n    indented.", "type": "object"}}}
    as_023 = {"$defs": {"A": {"description": "First line.\n\nSecond line,\nindented.", "type": "object"}}}
    assert tidy(as_022) == tidy(as_023) == as_023
    a_field_named_description = {"properties": {"description": {"type": "string"}}}
    assert tidy(a_field_named_description) == a_field_named_description
