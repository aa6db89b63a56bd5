"""Visual rules: ramps, thresholds and alarm events, visibility, transforms, labels, anomalies, layers."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scene.bindings import MAX_LABEL_LEN, Bindings, BindingsError, parse_bindings, parse_template
from scene.rules import MISSING, UNFORMATTABLE, AlarmEvent, RuleEngine, Transform, Visual, render_label
from scene.state import Quality, Reading, Scalar, TwinState

SPEC: dict[str, Any] = {
    "default_layer": "ops",
    "bindings": [
        {"element": "S", "prop": "p", "unit": "bar", "key": "S.p"},
        {"element": "S", "prop": "mode", "kind": "string", "key": "S.mode"},
        {"element": "Z", "prop": "pos", "unit": "%", "key": "Z.pos"},
        {"element": "P", "prop": "running", "kind": "bool", "key": "P.running"},
        {"element": "VT", "prop": "vib", "unit": "mm/s", "key": "VT.vib"},
    ],
    "layers": {
        "ops": {
            "rules": [
                {"kind": "ramp", "element": "S", "prop": "p", "target": "PIPE", "min": 0, "max": 10,
                 "colors": ["#000000", "#ffffff"]},
                {"kind": "thresholds", "element": "S", "prop": "p", "target": "P",
                 "warning": {"low": 1, "high": 6}, "alarm": {"high": 8}},
                {"kind": "transform", "element": "Z", "prop": "pos", "target": "V", "mode": "translate",
                 "axis": [0, 2, 0], "scale": 0.001, "min": 0, "max": 0.08},
                {"kind": "label", "element": "S", "prop": "p", "template": "{value:.1f} {unit} ({mode})"},
                {"kind": "visibility", "element": "S", "prop": "p", "target": "BADGE", "when": {"op": ">", "value": 5}},
                {"kind": "anomaly", "element": "VT", "prop": "vib", "target": "P",
                 "detector": {"kind": "ewma", "alpha": 0.05, "threshold": 5, "warmup": 20},
                 "only_if": {"element": "P", "prop": "running", "op": "==", "value": True}, "clear_after": 3},
            ]
        },
        "energy": {
            "rules": [
                {"kind": "ramp", "element": "S", "prop": "p", "target": "P", "min": 0, "max": 10,
                 "colors": ["#0000ff", "#00ff00", "#ff0000"]},
                {"kind": "transform", "element": "Z", "prop": "pos", "target": "V", "mode": "rotate",
                 "axis": [0, 0, 3], "scale": 0.9, "max": 45},
                {"kind": "anomaly", "element": "Z", "prop": "pos", "target": "V",
                 "detector": {"kind": "flatline", "still_s": 10}},
            ]
        },
    },
}  # fmt: skip


class Rig:
    """A state, an engine and a clock: `put` applies a reading and observes the change."""

    def __init__(self, spec: dict[str, Any] = SPEC) -> None:
        self.bindings: Bindings = parse_bindings(copy.deepcopy(spec))
        self.engine = RuleEngine(self.bindings)
        self.state = TwinState()
        self.t = 1000.0

    def put(
        self, element: str, prop: str, value: Scalar, quality: Quality = "good", unit: str = ""
    ) -> list[AlarmEvent]:
        self.t += 1.0
        b = self.bindings.binding(element, prop)
        change = self.state.apply(Reading(element, prop, value, unit or (b.unit if b else ""), self.t, quality), self.t)
        return self.engine.observe(change) if change else []

    def visual(self, element: str, layer: str = "ops") -> Visual:
        return self.engine.evaluate(element, layer, self.state)


@pytest.mark.parametrize(
    ("value", "color"),
    [(0, "#000000"), (5, "#808080"), (10, "#ffffff"), (-3, "#000000"), (42, "#ffffff"), (2.5, "#404040")],
)
def test_ramp_two_stops(value: float, color: str) -> None:
    rig = Rig()
    rig.put("S", "p", value)
    assert rig.visual("PIPE").color == color


@pytest.mark.parametrize(("value", "color"), [(0, "#0000ff"), (5, "#00ff00"), (10, "#ff0000"), (7.5, "#808000")])
def test_ramp_three_stops(value: float, color: str) -> None:
    rig = Rig()
    rig.put("S", "p", value)
    assert rig.visual("P", "energy").color == color


def test_no_value_no_visual() -> None:
    rig = Rig()
    assert rig.visual("PIPE") == Visual()
    assert rig.visual("nobody") == Visual()


@pytest.mark.parametrize(
    ("value", "status", "color"),
    [(0.5, "warning", "#f9a825"), (3, "ok", "#2e7d32"), (6.5, "warning", "#f9a825"), (9, "alarm", "#c62828")],
)
def test_threshold_bands(value: float, status: str, color: str) -> None:
    rig = Rig()
    rig.put("S", "p", value)
    v = rig.visual("P")
    assert (v.status, v.color) == (status, color)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (8.0, "warning"),  # on the alarm's high limit: within it (docs/BINDINGS.md)
        (math.nextafter(8.0, math.inf), "alarm"),
        (6.0, "ok"),  # on the warning's high limit
        (math.nextafter(6.0, math.inf), "warning"),
        (1.0, "ok"),  # on the warning's low limit
        (math.nextafter(1.0, -math.inf), "warning"),
    ],
)
def test_limits_are_inclusive_a_value_on_a_limit_is_within_it(value: float, status: str) -> None:
    rig = Rig()
    events = rig.put("S", "p", value)
    assert rig.visual("P").status == status
    assert [e.severity for e in events if e.kind == "raised"] == ([status] if status != "ok" else [])


def test_alarm_raised_and_cleared_once_each() -> None:
    rig = Rig()
    assert rig.put("S", "p", 3) == []
    [raised] = rig.put("S", "p", 9)
    assert (raised.kind, raised.severity, raised.element, raised.source, raised.layer) == (
        "raised",
        "alarm",
        "P",
        "S",
        "ops",
    )
    assert raised.id == "ops.rules[1]" and "above alarm limit 8 bar" in raised.message
    assert rig.put("S", "p", 9.5) == []
    assert rig.put("S", "p", 9.5) == []  # no change at all
    assert rig.engine.active_alarms() == [raised]
    [cleared] = rig.put("S", "p", 3)
    assert (cleared.kind, cleared.id) == ("cleared", raised.id)
    assert rig.put("S", "p", 4) == []
    assert rig.engine.active_alarms() == []


def test_escalation_and_deescalation_update_the_same_alarm() -> None:
    rig = Rig()
    rig.put("S", "p", 3)
    kinds = [(e.kind, e.severity) for v in (7, 9, 7, 3) for e in rig.put("S", "p", v)]
    assert kinds == [("raised", "warning"), ("raised", "alarm"), ("raised", "warning"), ("cleared", "warning")]


def test_bad_quality_neither_raises_nor_clears() -> None:
    rig = Rig()
    rig.put("S", "p", 9)
    assert rig.put("S", "p", 3, quality="bad") == []
    assert len(rig.engine.active_alarms()) == 1
    assert rig.visual("P").status is None  # unknown, not "ok"


@given(st.lists(st.floats(-5, 15, allow_nan=False), max_size=40))
def test_alarm_events_alternate_and_match_final_status(values: list[float]) -> None:
    rig = Rig()
    events = [e for v in values for e in rig.put("S", "p", v)]
    active = False
    for e in events:
        assert e.kind == "raised" or active, "a clear without a raise"
        active = e.kind == "raised"
    final = rig.visual("P").status if values else None
    assert active == (final in ("warning", "alarm"))
    assert len(rig.engine.active_alarms()) == int(active)


def test_transform_translate_normalises_axis_and_clamps() -> None:
    rig = Rig()
    rig.put("Z", "pos", 50)
    assert rig.visual("V").transform == Transform(translate=[0.0, 0.05, 0.0])
    rig.put("Z", "pos", 100)
    assert rig.visual("V").transform == Transform(translate=[0.0, 0.08, 0.0])  # clamped at 80 mm
    rig.put("Z", "pos", -20)
    assert rig.visual("V").transform == Transform(translate=[0.0, 0.0, 0.0])


def test_a_transform_that_overflows_is_dropped_not_sent_as_infinity() -> None:
    spec = copy.deepcopy(SPEC)
    spec["layers"]["ops"]["rules"].append(
        {"kind": "transform", "element": "Z", "prop": "pos", "target": "FAR", "mode": "translate",
         "axis": [1, 0, 0], "scale": 1e10}
    )  # fmt: skip
    rig = Rig(spec)
    rig.put("Z", "pos", 1e300)  # finite, but 1e300 * 1e10 is not
    assert rig.visual("FAR").transform is None
    rig.put("Z", "pos", 2.0)
    assert rig.visual("FAR").transform == Transform(translate=[2e10, 0.0, 0.0])


def test_transform_rotate_about_axis() -> None:
    rig = Rig()
    rig.put("Z", "pos", 10)
    assert rig.visual("V", "energy").transform == Transform(rotate=[0.0, 0.0, 1.0, 9.0])
    rig.put("Z", "pos", 100)
    assert rig.visual("V", "energy").transform == Transform(rotate=[0.0, 0.0, 1.0, 45.0])


def test_transform_scale_along_axis() -> None:
    spec = copy.deepcopy(SPEC)
    spec["layers"]["ops"]["rules"].append(
        {"kind": "transform", "element": "Z", "prop": "pos", "target": "LIQUID", "mode": "scale",
         "axis": [0, 1, 0], "scale": 0.01, "min": 0.01}
    )  # fmt: skip
    rig = Rig(spec)
    rig.put("Z", "pos", 40)
    assert rig.visual("LIQUID").transform == Transform(scale=[1.0, 0.4, 1.0])
    rig.put("Z", "pos", 0)
    assert rig.visual("LIQUID").transform == Transform(scale=[1.0, 0.01, 1.0])  # never flat


def test_visibility_condition() -> None:
    rig = Rig()
    rig.put("S", "p", 3)
    assert rig.visual("BADGE").visible is False
    rig.put("S", "p", 7)
    assert rig.visual("BADGE").visible is True


def test_label_template_uses_the_elements_properties() -> None:
    rig = Rig()
    rig.put("S", "p", 4.25)
    assert rig.visual("S").label == f"4.2 bar ({MISSING})"
    rig.put("S", "mode", "auto")
    assert rig.visual("S").label == "4.2 bar (auto)"


def test_label_value_that_does_not_fit_its_spec() -> None:
    state = TwinState()
    state.apply(Reading("S", "p", "offline"), 1.0)
    assert render_label("{value:.1f}", state.element("S"), "p") == UNFORMATTABLE


@pytest.mark.parametrize(
    "template", ["{value.__class__}", "{value.__class__.__init__.__globals__}", "{mode[0]}", "{0}", "{value!r}"]
)
def test_label_injection_is_refused_at_load(template: str) -> None:
    spec = copy.deepcopy(SPEC)
    spec["layers"]["ops"]["rules"][3]["template"] = template
    with pytest.raises(BindingsError, match=r"layers\.ops\.rules\[3\]\.template"):
        Rig(spec)
    with pytest.raises(ValueError):
        render_label(template, {}, "p")


def test_layers_are_separate() -> None:
    rig = Rig()
    rig.put("S", "p", 10)
    assert rig.visual("P", "ops").color == "#c62828"  # thresholds in ops
    assert rig.visual("P", "energy").color == "#ff0000"  # ramp in energy
    assert rig.visual("PIPE", "energy") == Visual()  # the ops ramp does not leak
    assert {e.layer for e in rig.engine.active_alarms()} == {"ops"}
    assert rig.engine.layers() == ["ops", "energy"]
    assert sorted(rig.engine.targets("energy")) == ["P", "V"]


def test_affected_names_rule_targets_not_just_the_sensor() -> None:
    engine = Rig().engine
    assert engine.affected("S", "p") == [("energy", "P"), ("ops", "BADGE"), ("ops", "P"), ("ops", "PIPE"), ("ops", "S")]
    assert engine.affected("S", "mode") == [("ops", "S")]  # through the label template
    assert engine.affected("P", "running") == [("ops", "P")]  # the anomaly gate
    assert engine.affected("S", "unbound") == []


def test_evaluate_is_pure() -> None:
    rig = Rig()
    rig.put("S", "p", 7)
    assert rig.visual("P") == rig.visual("P")


def _feed_vibration(rig: Rig, values: list[float]) -> list[AlarmEvent]:
    return [e for v in values for e in rig.put("VT", "vib", v)]


def test_anomaly_flags_target_raises_and_clears_after_normal_samples() -> None:
    rig = Rig()
    rig.put("P", "running", True)
    normal = [1.8 + 0.05 * ((i * 7) % 5 - 2) for i in range(40)]
    assert _feed_vibration(rig, normal) == []
    assert rig.visual("P").anomaly is False
    [raised] = _feed_vibration(rig, [6.0])
    assert (raised.kind, raised.element, raised.severity) == ("raised", "P", "warning")
    assert "ewma anomaly" in raised.message
    assert rig.visual("P").anomaly is True
    assert _feed_vibration(rig, [6.1, 1.8, 1.85]) == []  # flagged once; not yet 3 normal samples
    [cleared] = _feed_vibration(rig, [1.75])
    assert cleared.kind == "cleared" and rig.visual("P").anomaly is False


def test_a_reloaded_engine_keeps_the_detectors_of_unchanged_anomaly_rules_only() -> None:
    """A bindings file reloaded with another threshold limit keeps the warmed-up vibration detector (a spike is
    flagged at once); one whose anomaly rule itself changed starts it afresh (warming up: the spike is not)."""
    normal = [1.8 + 0.05 * ((i * 7) % 5 - 2) for i in range(40)]
    for anomaly_threshold, flagged in ((5, True), (4, False)):
        rig = Rig()
        rig.put("P", "running", True)
        assert _feed_vibration(rig, normal) == []
        spec = copy.deepcopy(SPEC)
        rules = spec["layers"]["ops"]["rules"]
        rules[1]["alarm"] = {"high": 9}
        rules[5]["detector"]["threshold"] = anomaly_threshold
        reloaded = RuleEngine(parse_bindings(spec))
        reloaded.adopt_detectors(rig.engine)
        assert reloaded.prime(rig.state, {}) == []
        rig.engine = reloaded
        assert [e.kind for e in _feed_vibration(rig, [6.0])] == (["raised"] if flagged else [])


def test_anomaly_gate_stops_and_rewarms_the_detector() -> None:
    rig = Rig()
    rig.put("P", "running", True)
    _feed_vibration(rig, [1.8 + 0.01 * (i % 3) for i in range(30)])
    _feed_vibration(rig, [9.0])
    [cleared] = rig.put("P", "running", False)  # pump stopped: the anomaly no longer applies
    assert cleared.kind == "cleared"
    assert _feed_vibration(rig, [0.05, 9.0, 0.02]) == []  # not fed while stopped
    rig.put("P", "running", True)
    assert _feed_vibration(rig, [5.0]) == []  # warming up again


def test_flatline_is_raised_by_tick_and_cleared_by_movement() -> None:
    rig = Rig()
    rig.put("Z", "pos", 40)
    assert rig.engine.tick(rig.t + 5) == []
    [raised] = rig.engine.tick(rig.t + 10)
    assert raised.kind == "raised" and raised.element == "V" and raised.layer == "energy"
    assert rig.engine.tick(rig.t + 11) == []  # raised once
    rig.t += 11
    assert rig.put("Z", "pos", 41) == []  # one normal sample; clear_after defaults to 10
    events = [e for v in range(42, 52) for e in rig.put("Z", "pos", v)]
    assert [e.kind for e in events] == ["cleared"]


@given(st.text(max_size=40), st.one_of(st.floats(), st.integers(), st.booleans(), st.text(max_size=300)))
def test_any_template_either_is_refused_or_renders_safely(template: str, value: Scalar) -> None:
    try:
        parse_template(template)
    except ValueError:
        return
    state = TwinState()
    state.apply(Reading("S", "p", value, "bar"), 1.0)
    label = render_label(template, state.element("S"), "p")
    assert isinstance(label, str) and len(label) <= MAX_LABEL_LEN


def test_a_label_says_which_values_it_is_made_of() -> None:
    rig = Rig()
    rig.put("S", "p", 4.25)
    assert rig.visual("S").label_props == ["S/mode", "S/p"]  # "{value:.1f} {unit} ({mode})" on S.p
    assert rig.visual("P").label_props is None  # no label there


def test_alarm_events_name_the_property_not_the_element_and_carry_the_unit() -> None:
    rig = Rig()
    [raised] = rig.put("S", "p", 9)
    assert raised.message == "p = 9 bar: above alarm limit 8 bar" and raised.unit == "bar"


def test_priming_after_a_restart_reports_only_what_changed_meanwhile() -> None:
    """The state as restored: S.p = 9 (alarm). Before the restart the alarm was active as a warning."""
    rig = Rig()
    rig.state.apply(Reading("S", "p", 9.0, "bar", 5.0), 5.0)
    [escalated] = rig.engine.prime(rig.state, {"ops.rules[1]": "warning"})
    assert (escalated.kind, escalated.id, escalated.severity, escalated.value) == (
        "raised",
        "ops.rules[1]",
        "alarm",
        9.0,
    )
    # Primed: the same status is no news, a value back within limits clears it.
    assert rig.put("S", "p", 9.5) == []
    [cleared] = rig.put("S", "p", 3)
    assert cleared.kind == "cleared"


def test_priming_clears_an_alarm_whose_value_came_back_and_raises_one_nobody_knew() -> None:
    rig = Rig()
    rig.state.apply(Reading("S", "p", 3.0, "bar", 5.0), 5.0)
    [cleared] = rig.engine.prime(rig.state, {"ops.rules[1]": "alarm"})
    assert (cleared.kind, cleared.severity) == ("cleared", "alarm")
    fresh = Rig()
    fresh.state.apply(Reading("S", "p", 7.0, "bar", 5.0), 5.0)
    assert [(e.kind, e.severity) for e in fresh.engine.prime(fresh.state, {})] == [("raised", "warning")]
    assert fresh.engine.prime(fresh.state, {"ops.rules[1]": "warning"}) == []  # known already


def test_priming_keeps_an_active_alarm_whose_value_is_unusable_until_a_good_one_comes() -> None:
    rig = Rig()
    rig.state.apply(Reading("S", "p", 3.0, "bar", 5.0, "bad"), 5.0)
    assert rig.engine.prime(rig.state, {"ops.rules[1]": "alarm"}) == []
    [cleared] = rig.put("S", "p", 3.0)
    assert cleared.kind == "cleared"


def test_priming_keeps_an_active_anomaly_flagged_until_clear_after_normal_samples() -> None:
    rig = Rig()
    rig.state.apply(Reading("P", "running", True, "", 5.0), 5.0)
    assert rig.engine.prime(rig.state, {"ops.rules[5]": "warning"}) == []
    assert rig.visual("P").anomaly is True
    assert _feed_vibration(rig, [1.8, 1.81]) == []  # warming up counts as normal: 3 needed
    [cleared] = _feed_vibration(rig, [1.82])
    assert cleared.kind == "cleared" and rig.visual("P").anomaly is False
    assert rig.engine.alarm_ids() == {"ops.rules[1]", "ops.rules[5]", "energy.rules[2]"}


def test_evaluate_many_gives_every_element_the_visual_evaluate_gives_it() -> None:
    """Ramps (several stop lists, ranges crossing zero, values on a channel's half-way point and outside the range)
    and thresholds (one-sided, two-sided, own colours) are evaluated in numpy; elements with several rules, labels,
    visibility, transforms and anomalies one by one; every value kind, bad quality, non-finite and missing values."""
    ramps = [
        {"kind": "ramp", "element": f"R{i}", "prop": "v", "min": lo, "max": hi, "colors": stops}
        for i, (lo, hi, stops) in enumerate(
            [
                (0, 10, ["#000000", "#ffffff"]),
                (-5, 5, ["#0000ff", "#00ff00", "#ff0000"]),
                (18, 22, ["#2F6FDE", "#e5533d"]),
            ]
            * 12
        )
    ]
    thresholds = [
        {"kind": "thresholds", "element": f"T{i}", "prop": "v", **limits}
        for i, limits in enumerate(
            [
                {"warning": {"high": 5.0}, "alarm": {"high": 5.5}},
                {"warning": {"low": 1, "high": 6}, "alarm": {"low": 0}},
                {"alarm": {"high": 8}, "colors": {"ok": "#ABCDEF", "warning": "#111111", "alarm": "#222222"}},
                {"warning": {"low": -1}},
            ]
            * 9
        )
    ]
    spec = copy.deepcopy(SPEC)
    spec["bindings"] += [{"element": r["element"], "prop": "v", "key": f"{r['element']}.v"} for r in ramps + thresholds]
    spec["layers"]["ops"]["rules"] += ramps + thresholds
    rig = Rig(spec)
    values: list[Scalar] = [-7.5, 0.0, 2.5, 5.0, 19.99, 20.0, 21.37, 35.0, 5.2, 7, True, False, "closed", 0.5, 1e300]
    values += [255.5 / 255 * 10, 127.5 / 255 * 10, 6.0, 5.5, 1.0, -0.0]
    for i, rule in enumerate(ramps + thresholds):
        if i % 23 == 22:
            continue  # no value at all
        quality: Quality = "bad" if i % 17 == 16 else "good"
        value = values[i % len(values)] if i % 19 != 18 else math.inf
        rig.state.apply(Reading(rule["element"], "v", value, "", 1.0, quality), 1.0)
    for reading in (Reading("S", "p", 6.5, "bar", 1.0), Reading("S", "mode", "auto"), Reading("Z", "pos", 40.0)):
        rig.state.apply(reading, 1.0)
    for layer in ("ops", "energy"):
        targets = rig.engine.targets(layer)
        assert rig.engine.evaluate_many(targets, layer, rig.state) == {
            el: rig.engine.evaluate(el, layer, rig.state) for el in targets
        }, layer
