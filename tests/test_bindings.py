"""Bindings files: the sample validates, every error names file/entry/problem, payloads decode."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from scene.bindings import (
    DEFAULT_STALE_AFTER_S,
    Bindings,
    BindingsError,
    RejectedReading,
    bindings_schema,
    load_bindings,
    parse_bindings,
    parse_json_path,
    parse_template,
    topic_matches,
)
from scene.bindings import main as bindings_cli
from scene.samples import pump_station

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "pump_station.bindings.yaml"
SCHEMA_FILE = REPO / "docs" / "bindings.schema.json"

BASE: dict[str, Any] = {
    "version": 1,
    "default_layer": "ops",
    "tags": [{"id": "tag:T1", "name": "T1", "host": "PUMP"}],
    "bindings": [
        {"element": "SENSOR", "prop": "pressure", "unit": "bar", "topic": "plant/+/SENSOR/telemetry", "key": "S.p"},
        {"element": "PUMP", "prop": "running", "kind": "bool", "topic": "plant/gw", "path": "$.pumps[0].on"},
        {"element": "tag:T1", "prop": "temp", "topic": "plant/gw", "path": "data.t", "scale": 0.1, "offset": -5},
        {"element": "PUMP", "prop": "mode", "kind": "string", "topic": "plant/gw", "path": "$.mode"},
    ],
    "layers": {
        "ops": {
            "rules": [
                {
                    "kind": "ramp",
                    "element": "SENSOR",
                    "prop": "pressure",
                    "target": "PUMP",
                    "min": 0,
                    "max": 10,
                    "colors": ["#000000", "#ffffff"],
                }
            ]
        },
        "energy": {"rules": [{"kind": "label", "element": "PUMP", "template": "{mode}"}]},
    },
}
KNOWN = {"SENSOR", "PUMP"}


def write(tmp_path: Path, data: Any, name: str = "b.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def error_for(tmp_path: Path, mutate: Any) -> BindingsError:
    data = copy.deepcopy(BASE)
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(BindingsError) as info:
        load_bindings(path, KNOWN)
    err = info.value
    assert err.line is not None
    assert str(err) == f"{path}: {err.entry}: {err.problem} (line {err.line})"
    return err


def test_sample_file_validates_and_binds_every_sensor() -> None:
    b = load_bindings(SAMPLE)
    assert b.default_layer == "operations"
    assert set(b.layers) == {"operations", "energy", "maintenance"}
    assert len(b.bound_elements()) >= 14
    assert {c.command for c in b.commands} == {"start", "stop", "open", "close", "setpoint"}


def test_sample_file_validates_against_the_ifc_ids() -> None:
    ids = set(pump_station.tag_ids().values())
    bindings = load_bindings(SAMPLE, known_elements=ids)
    tags = {t.id for t in bindings.tags}
    assert {b.element for b in bindings.bindings} <= ids | tags


def test_schema_file_is_current() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == bindings_schema(), (
        "regenerate: python -m scene.bindings --schema > docs/bindings.schema.json"
    )


def test_cli_prints_schema_and_checks_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert bindings_cli(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "TwinView bindings"
    assert bindings_cli([str(SAMPLE)]) == 0


def test_json_files_load_too(tmp_path: Path) -> None:
    b = load_bindings(write(tmp_path, json.dumps(BASE), "b.json"), KNOWN)
    assert len(b.bindings) == 4


# --- every error names the file, the entry and the problem -----------------------------------


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nbindings: [\n  {element: x\n")
    with pytest.raises(BindingsError) as info:
        load_bindings(path)
    assert info.value.entry.startswith("line ")
    assert "bad YAML" in info.value.problem


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(BindingsError, match=r"line 1, column \d+: bad JSON"):
        load_bindings(write(tmp_path, '{"version": 1,', "b.json"))


def test_duplicate_yaml_mapping_key_is_refused(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False) + "default_layer: energy\n"
    with pytest.raises(BindingsError, match="duplicate key 'default_layer'"):
        load_bindings(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BindingsError, match=r"\(file\)"):
        load_bindings(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("mutate", "entry", "problem"),
    [
        (lambda d: d["bindings"][1].update(unit=3), "bindings[1].unit", "is not of type 'string'"),
        (lambda d: d["bindings"][0].update(tpoic="x"), "bindings[0]", "'tpoic' was unexpected"),
        (lambda d: d["bindings"][2].pop("prop"), "bindings[2]", "'prop' is a required property"),
        (lambda d: d["bindings"][0].update(prop="has space"), "bindings[0].prop", "does not match"),
        (
            lambda d: d["layers"]["ops"]["rules"][0].update(colors=["red", "#ffffff"]),
            "layers.ops.rules[0].colors[0]",
            "does not match",
        ),
        (
            lambda d: d["layers"]["ops"]["rules"][0].update(colors=["#000000"]),
            "layers.ops.rules[0].colors",
            "too short",
        ),
        (lambda d: d["layers"]["ops"]["rules"][0].pop("min"), "layers.ops.rules[0]", "'min' is a required"),
        (
            lambda d: d["layers"]["ops"]["rules"][0].update(kind="sparkle"),
            "layers.ops.rules[0]",
            "unknown kind 'sparkle'",
        ),
        (lambda d: d.update(version=2), "version", "2 is not one of [1]"),
        (lambda d: d["bindings"][0].update(stale_after=0), "bindings[0].stale_after", "or equal to the minimum"),
        (lambda d: d["bindings"][0].update(stale_after="5m"), "bindings[0].stale_after", "is not of type 'number'"),
    ],
)
def test_schema_violations_name_the_entry(tmp_path: Path, mutate: Any, entry: str, problem: str) -> None:
    err = error_for(tmp_path, mutate)
    assert err.entry == entry
    assert problem in err.problem


@pytest.mark.parametrize(
    ("mutate", "entry", "problem"),
    [
        (lambda d: d["bindings"][0].update(element="GHOST"), "bindings[0].element", "unknown element 'GHOST'"),
        (
            lambda d: d["layers"]["ops"]["rules"][0].update(target="GHOST"),
            "layers.ops.rules[0].target",
            "unknown element 'GHOST'",
        ),
        (lambda d: d["tags"][0].update(host="GHOST"), "tags[0].host", "unknown element 'GHOST'"),
        (lambda d: d["tags"][0].update(id="PUMP"), "tags[0].id", "already an element id"),
        (
            lambda d: d["bindings"].append(dict(d["bindings"][1], prop="other")),
            "bindings[4]",
            "duplicate topic 'plant/gw' with path '$.pumps[0].on'",
        ),
        (
            lambda d: d["bindings"].append({"element": "PUMP", "prop": "x", "key": "S.p"}),
            "bindings[4]",
            "duplicate key 'S.p'",
        ),
        (
            lambda d: d["bindings"].append({"element": "PUMP", "prop": "running", "key": "k"}),
            "bindings[4]",
            "duplicate property PUMP.running",
        ),
        (lambda d: d.update(default_layer="nope"), "default_layer", "unknown layer 'nope'"),
        (lambda d: d["tags"][0].update(layers=["ops", "nope"]), "tags[0].layers", "unknown layer 'nope'"),
        (lambda d: d["bindings"][0].update(range=[5, 1]), "bindings[0].range", "must be below"),
        (lambda d: d["layers"]["ops"]["rules"][0].update(min=10), "layers.ops.rules[0]", "min 10"),
        (lambda d: d["bindings"][0].update(path="$..x"), "bindings[0].path", "bad JSON path"),
        (lambda d: d["bindings"][0].update(topic="a/#/b"), "bindings[0].topic", "'#' must be"),
        (lambda d: d["bindings"][0].update(topic="a/b+"), "bindings[0].topic", "'+' must be"),
        (
            lambda d: d["bindings"][0].pop("topic") and d["bindings"][0].pop("key"),
            "bindings[0]",
            "needs a topic or a key",
        ),
        (
            lambda d: d["layers"]["ops"]["rules"][0].update(prop="flow"),
            "layers.ops.rules[0].prop",
            "no binding provides SENSOR.flow",
        ),
        (
            lambda d: d["layers"]["energy"]["rules"][0].update(template="{mode.__class__}"),
            "layers.energy.rules[0].template",
            "plain property name",
        ),
        (
            lambda d: d["layers"]["energy"]["rules"][0].update(template="{nope}"),
            "layers.energy.rules[0].template",
            "no binding provides PUMP.nope",
        ),
        (
            lambda d: d["layers"]["energy"]["rules"].append(
                {
                    "kind": "thresholds",
                    "element": "SENSOR",
                    "prop": "pressure",
                    "warning": {"high": 5},
                    "alarm": {"high": 4},
                }
            ),
            "layers.energy.rules[1].alarm",
            "must not be below warning high",
        ),
        (
            lambda d: d["layers"]["energy"]["rules"].append(
                {"kind": "transform", "element": "SENSOR", "prop": "pressure", "mode": "rotate", "axis": [0, 0, 0]}
            ),
            "layers.energy.rules[1].axis",
            "zero vector",
        ),
        (lambda d: d["bindings"][1].update(scale=2), "bindings[1]", "numbers only"),
        (
            lambda d: d.update(commands=[{"element": "PUMP", "command": "speed", "topic": "c/p", "range": [5, 1]}]),
            "commands[0].range",
            "must be below high",
        ),
        (
            lambda d: d.update(commands=[{"element": "PUMP", "command": "go", "topic": "c/p", "payload": "{value}"}]),
            "commands[0].payload",
            "{value} placeholder exactly when the command has a range",
        ),
    ],
)
def test_semantic_errors_name_the_entry(tmp_path: Path, mutate: Any, entry: str, problem: str) -> None:
    err = error_for(tmp_path, mutate)
    assert err.entry == entry
    assert problem in err.problem


def test_errors_point_at_the_yaml_line(tmp_path: Path) -> None:
    text = SAMPLE.read_text().replace("min: 0, max: 25", "min: 30, max: 25", 1)
    path = write(tmp_path, text)
    with pytest.raises(BindingsError) as info:
        load_bindings(path)
    lines = text.splitlines()
    assert info.value.entry.startswith("layers.energy.rules[")
    assert info.value.line is not None and "min: 30, max: 25" in lines[info.value.line - 1]


@pytest.mark.parametrize(
    ("yaml_number", "shown"), [(".nan", "nan"), (".inf", "inf"), ("-.inf", "-inf"), ("1.0e+999", "inf")]
)
def test_non_finite_numbers_are_refused_naming_the_entry(tmp_path: Path, yaml_number: str, shown: str) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).replace("max: 10", f"max: {yaml_number}", 1)
    path = write(tmp_path, text)
    with pytest.raises(BindingsError) as info:
        load_bindings(path, KNOWN)
    assert (info.value.entry, info.value.problem) == ("layers.ops.rules[0].max", f"{shown} is not a finite number")
    assert "max: " + yaml_number in text.splitlines()[info.value.line - 1]


def test_a_range_bound_or_offset_of_infinity_is_refused() -> None:
    data = copy.deepcopy(BASE)
    data["bindings"][0]["range"] = [0, math.inf]
    with pytest.raises(BindingsError, match=r"bindings\[0\]\.range\[1\]: inf is not a finite number"):
        parse_bindings(data)
    data = copy.deepcopy(BASE)
    data["bindings"][2]["offset"] = math.nan
    with pytest.raises(BindingsError, match=r"bindings\[2\]\.offset: nan is not a finite number"):
        parse_bindings(data)


def test_deeply_nested_yaml_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nbindings: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(BindingsError, match="nested too deeply"):
        load_bindings(path)


def test_unknown_elements_are_not_checked_without_a_model() -> None:
    data = copy.deepcopy(BASE)
    data["bindings"][0]["element"] = "ANYTHING"
    data["layers"]["ops"]["rules"][0]["element"] = "ANYTHING"
    parse_bindings(data)


# --- MQTT and keyed ingest ---------------------------------------------------------------------


@pytest.fixture
def b() -> Bindings:
    return parse_bindings(copy.deepcopy(BASE), known_elements=KNOWN)


def test_wildcard_topic_and_default_paths(b: Bindings) -> None:
    readings, reasons = b.from_mqtt("plant/a/SENSOR/telemetry", b'{"value": 4.5, "ts": 1700000000123}', 9.0)
    assert reasons == []
    [r] = readings
    assert (r.element, r.prop, r.value, r.unit, r.quality) == ("SENSOR", "pressure", 4.5, "bar", "good")
    assert r.ts == pytest.approx(1700000000.123)  # milliseconds understood


def test_gateway_batch_with_paths_and_scaling(b: Bindings) -> None:
    payload = b'{"pumps": [{"on": 1}], "data": {"t": 250}, "mode": "auto", "quality": "uncertain"}'
    readings, reasons = b.from_mqtt("plant/gw", payload, 9.0)
    assert reasons == []
    got = {(r.element, r.prop): (r.value, r.quality, r.ts) for r in readings}
    assert got == {
        ("PUMP", "running"): (True, "uncertain", 9.0),  # no ts in the payload: its arrival time
        ("tag:T1", "temp"): (20.0, "uncertain", 9.0),
        ("PUMP", "mode"): ("auto", "uncertain", 9.0),
    }


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("plant/other", b'{"value": 1}', "plant/other: unbound topic"),
        ("plant/a/SENSOR/telemetry/extra", b'{"value": 1}', "unbound topic"),
        ("plant/a/SENSOR/telemetry", b"{nope", "bad JSON"),
        ("plant/a/SENSOR/telemetry", b'{"v": 1}', "missing path $.value"),
        ("plant/a/SENSOR/telemetry", b'{"value": "high"}', "non-numeric value 'high'"),
        ("plant/a/SENSOR/telemetry", b'{"value": true}', "non-numeric value True"),
        ("plant/a/SENSOR/telemetry", b'{"value": NaN}', "bad JSON"),
        ("plant/a/SENSOR/telemetry", b'{"value": 1e999}', "bad JSON"),
        ("plant/a/SENSOR/telemetry", b'{"value": 1, "quality": "meh"}', "quality must be"),
        ("plant/a/SENSOR/telemetry", b'{"value": 1, "ts": "noon"}', "timestamp must be"),
        ("plant/a/SENSOR/telemetry", b'{"value": 1, "pad": "' + b"x" * 70000 + b'"}', "exceeds"),
    ],
)
def test_rejections_give_reasons(b: Bindings, topic: str, payload: bytes, reason: str) -> None:
    readings, reasons = b.from_mqtt(topic, payload, 1.0)
    assert readings == []
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_a_bad_field_in_a_batch_rejects_only_that_field(b: Bindings) -> None:
    readings, reasons = b.from_mqtt("plant/gw", b'{"pumps": [{"on": "yes"}], "data": {"t": 1}}', 1.0)
    assert [r.prop for r in readings] == ["temp"]
    assert len(reasons) == 2  # "yes" is not a bool; the mode is missing
    assert any("bindings[1]" in r and "non-boolean" in r for r in reasons)


def test_from_key(b: Bindings) -> None:
    r = b.from_key("S.p", 3, ts=5.0, quality="bad")
    assert r is not None and (r.element, r.prop, r.value, r.ts, r.quality) == ("SENSOR", "pressure", 3, 5.0, "bad")
    assert b.from_key("unknown", 3) is None
    for bad, code in ((math.nan, "not_finite"), (math.inf, "not_finite"), ("3", "not_numeric"), (None, "not_numeric")):
        with pytest.raises(RejectedReading) as info:
            b.from_key("S.p", bad)
        assert info.value.code == code
    with pytest.raises(RejectedReading, match="quality") as info:
        b.from_key("S.p", 1, quality="great")  # type: ignore[arg-type]
    assert info.value.code == "malformed"


def test_scaling_to_infinity_is_rejected() -> None:
    data = copy.deepcopy(BASE)
    data["bindings"][0]["scale"] = 1e308
    with pytest.raises(RejectedReading, match="not finite"):
        parse_bindings(data).from_key("S.p", 1e10)


def test_range_rejects_implausible_values() -> None:
    data = copy.deepcopy(BASE)
    data["bindings"][0]["range"] = [0, 16]
    bb = parse_bindings(data)
    assert bb.from_key("S.p", 16) is not None
    with pytest.raises(RejectedReading, match="outside plausible range"):
        bb.from_key("S.p", 17)


def test_tags_for_layer() -> None:
    data = copy.deepcopy(BASE)
    data["tags"].append({"id": "tag:T2", "name": "T2", "host": "PUMP", "layers": ["energy"]})
    bb = parse_bindings(data, known_elements=KNOWN)
    assert [t.id for t in bb.tags_for("ops")] == ["tag:T1"]
    assert [t.id for t in bb.tags_for("energy")] == ["tag:T1", "tag:T2"]


def test_stale_after_defaults_to_five_minutes_and_null_means_never() -> None:
    data = copy.deepcopy(BASE)
    data["bindings"][0]["stale_after"] = 2.5
    data["bindings"][1]["stale_after"] = None
    bb = parse_bindings(data, known_elements=KNOWN)
    first, second, third = bb.bindings[:3]
    assert bb.stale_after(first.element, first.prop) == 2.5
    assert bb.stale_after(second.element, second.prop) is None
    assert bb.stale_after(third.element, third.prop) == DEFAULT_STALE_AFTER_S == 300.0
    assert bb.stale_after("NOPE", "x") is None


def test_is_bound(b: Bindings) -> None:
    assert b.is_bound("SENSOR", "pressure") and not b.is_bound("SENSOR", "flow")
    assert b.bound_elements() == {"SENSOR", "PUMP", "tag:T1"}


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.value", ("value",)),
        ("data.p", ("data", "p")),
        ("$.a[2].b", ("a", 2, "b")),
        ("$.PT-101.value", ("PT-101", "value")),
        ("a[0][1]", ("a", 0, 1)),
    ],
)
def test_json_paths(path: str, steps: tuple[str | int, ...]) -> None:
    assert parse_json_path(path) == steps


@pytest.mark.parametrize(
    ("pattern", "topic", "match"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a/b/c", True),
        ("a/#", "a", True),
        ("#", "x/y", True),
        ("a/b", "a/b/c", False),
        ("a/+", "a", False),
    ],
)
def test_topic_wildcards(pattern: str, topic: str, match: bool) -> None:
    assert topic_matches(pattern, topic) is match


@pytest.mark.parametrize(
    "template",
    [
        "{value.__class__}",
        "{value[0]}",
        "{0}",
        "{}",
        "{value!r}",
        "{value:{width}}",
        "{value:>1000}",
        "{",
    ],
)
def test_templates_refuse_anything_but_plain_fields(template: str) -> None:
    with pytest.raises(ValueError):
        parse_template(template)


def test_templates_allow_common_formats() -> None:
    for t in ("{value:.1f} {unit}", "{power_kw:>6.2f} kW", "{n:d}", "{p:+.0%}", "{{literal}} {x}"):
        parse_template(t)


def test_sample_topics_decode_field_sensors_and_motor_batches() -> None:
    b = load_bindings(SAMPLE)
    readings, reasons = b.from_mqtt(
        "plant/pumpstation/PT-101/telemetry", b'{"value": 4.2, "ts": 1764200000.5, "quality": "good"}', 1.0
    )
    assert reasons == [] and [(r.prop, r.value, r.unit, r.ts) for r in readings] == [
        ("pressure", 4.2, "bar", 1764200000.5)
    ]
    payload = b'{"power_kw": 11.2, "current_a": 18.8, "running_hours": 1234.5, "ts": 1764200000}'
    readings, reasons = b.from_mqtt("plant/pumpstation/M-101/telemetry", payload, 1.0)
    assert reasons == [] and {r.prop: r.value for r in readings} == {
        "power_kw": 11.2,
        "current_a": 18.8,
        "running_hours": 1234.5,
    }
    _, reasons = b.from_mqtt("plant/pumpstation/PT-101/telemetry", b'{"value": 99}', 1.0)
    assert reasons and "outside plausible range" in reasons[0]


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.floats(-100, 100), st.floats(-100, 100))
def test_mqtt_numbers_round_trip_with_scale_and_offset(x: float, scale: float, offset: float) -> None:
    data = copy.deepcopy(BASE)
    data["bindings"][0].update(scale=scale, offset=offset)
    bb = parse_bindings(data)
    readings, reasons = bb.from_mqtt("plant/x/SENSOR/telemetry", orjson.dumps({"value": x}), 5.0)
    if scale == 1.0 and offset == 0.0:
        assert readings[0].value == x
    else:
        assert reasons == [] and readings[0].value == pytest.approx(x * scale + offset)
