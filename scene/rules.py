"""Visual rules: what each element looks like in each layer, given the twin state.

`RuleEngine.evaluate` is a pure function of the state plus the engine's anomaly flags. Within one
(layer, element), rules apply in file order: a later colour, label or rotation replaces an earlier
one, translations add up, `status` is the worst of all thresholds, `visible` is the AND of all
visibility rules, and `anomaly` is the OR of all anomaly rules.

`evaluate_many` gives the same visuals for many elements at once (a replay's whole twin, a frame of ~1 000
changes): an element whose only rule in the layer is a ramp or thresholds is evaluated in numpy with the others
of its kind, the rest one by one (`evaluate`).

`observe` feeds each change to the threshold state machine and the anomaly detectors and returns
alarm events. An alarm has a stable `id`; "raised" carries its current severity (so warning ->
alarm is another "raised" with the same id), "cleared" says its condition is gone. These are
conditions of the process only: acknowledging and shelving are the alarm book's (viewer_server/alarms.py).
`tick(now)` catches flat lines (stuck sensors, silent sources), which by definition produce no changes.
`prime` lets the engine start from restored state after a restart.

Anomaly flags change inside `observe` and `tick`, so a caller evaluates visuals *after* observing a
change, and re-evaluates (event.layer, event.element) for every alarm event it gets.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import msgspec
import numpy as np

from scene.anomaly import FlatlineDetector, StreamDetector, make_detector
from scene.bindings import (
    MAX_LABEL_LEN,
    AnomalyRule,
    Bindings,
    Condition,
    Gate,
    LabelRule,
    Limits,
    RampRule,
    Rule,
    ThresholdsRule,
    TransformRule,
    VisibilityRule,
    parse_template,
)
from scene.state import Change, PropertyValue, Scalar, TwinState

Status = Literal["ok", "warning", "alarm"]
Severity = Literal["warning", "alarm"]
_RANK = {None: 0, "ok": 1, "warning": 2, "alarm": 3}
_OPS: dict[str, Callable[[object, object], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_NONE: dict[str, PropertyValue] = {}  # an element without values (read only)
MISSING = "–"  # shown in a label for a property that has no value yet
UNFORMATTABLE = "?"  # shown when a value does not fit its format spec (a string with ":.1f")


class Transform(msgspec.Struct, omit_defaults=True):
    translate: list[float] | None = None  # metres, in the element's frame
    rotate: list[float] | None = None  # axis-angle: [x, y, z, degrees], unit axis
    scale: list[float] | None = None  # per-axis factors in the element's frame


class Visual(msgspec.Struct, omit_defaults=True):
    """What a viewer shows for one element in one layer; None = the model's own look."""

    color: str | None = None  # "#rrggbb"
    status: Status | None = None
    visible: bool | None = None
    transform: Transform | None = None
    label: str | None = None
    anomaly: bool | None = None
    # The "element/prop" values the label is made from: viewers show their age, quality and staleness with it.
    label_props: list[str] | None = None


class AlarmEvent(msgspec.Struct, frozen=True):
    id: str  # stable per alarm: "<layer>.rules[<i>]"
    kind: Literal["raised", "cleared"]
    element: str  # the element the alarm is shown on (the rule's target)
    prop: str
    source: str  # the element whose property triggered it (a sensor or a tag)
    layer: str
    severity: Severity
    message: str
    ts: float  # source time of the triggering value
    value: Scalar | None = None
    unit: str = ""  # of `value`


def _number(pv: PropertyValue | None) -> float | None:
    """A usable numeric value: present, numeric (bools count), finite and not of bad quality."""
    if pv is None or pv.quality == "bad" or isinstance(pv.value, str):
        return None
    v = float(pv.value)
    return v if math.isfinite(v) else None


def _holds(cond: Condition | Gate, pv: PropertyValue | None) -> bool | None:
    if pv is None or pv.quality == "bad":
        return None
    try:
        return bool(_OPS[cond.op](pv.value, cond.value))
    except TypeError:  # e.g. "<" between a string and a number: the condition cannot hold
        return False


@functools.lru_cache(maxsize=4096)
def _rgb(color: str) -> tuple[int, int, int]:
    """ "#rrggbb" as its channels (a ramp's stops are read on every evaluation: parsed once each)."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def ramp_color(rule: RampRule, value: float) -> str:
    t = min(max((value - rule.min) / (rule.max - rule.min), 0.0), 1.0)
    pos = t * (len(rule.colors) - 1)
    i = min(int(pos), len(rule.colors) - 2)
    f = pos - i
    (ar, ag, ab), (br, bg, bb) = _rgb(rule.colors[i]), _rgb(rule.colors[i + 1])
    g = 1 - f
    return f"#{round(ar * g + br * f):02x}{round(ag * g + bg * f):02x}{round(ab * g + bb * f):02x}"


def _color_visual(color: str) -> Visual:
    return Visual(color=color)


def _ramp_colors(stops: tuple[str, ...], values: list[float], rules: list[RampRule]) -> list[str]:
    """`ramp_color(rule, value)` of each of `values`, whose `rules` share the colour `stops`: the same float
    operations in the same order, element-wise (round half to even, as `round`), so the same colours."""
    low = np.array([r.min for r in rules], np.float64)
    t = np.minimum(
        np.maximum((np.array(values, np.float64) - low) / (np.array([r.max for r in rules]) - low), 0.0), 1.0
    )
    pos = t * (len(stops) - 1)
    i = np.minimum(pos.astype(np.int64), len(stops) - 2)
    f = pos - i
    g = 1 - f
    rgb = np.array([_rgb(c) for c in stops], np.float64)
    mixed = np.rint(rgb[i] * g[:, None] + rgb[i + 1] * f[:, None]).astype(np.int64)
    codes = (mixed[:, 0] << 16) | (mixed[:, 1] << 8) | mixed[:, 2]
    return [f"#{code:06x}" for code in codes.tolist()]


_STATUSES: tuple[Status, ...] = ("ok", "warning", "alarm")


def _threshold_visuals(values: list[float], rules: list[ThresholdsRule]) -> list[Visual]:
    """What `evaluate` makes of each of `values` with its one thresholds rule of `rules`, the limits in numpy."""

    def limit(lims: list[Limits | None], side: str, absent: float) -> np.ndarray:
        return np.array([absent if lim is None or getattr(lim, side) is None else getattr(lim, side) for lim in lims])

    v = np.array(values, np.float64)
    alarms, warnings = [r.alarm for r in rules], [r.warning for r in rules]
    alarm = (v > limit(alarms, "high", math.inf)) | (v < limit(alarms, "low", -math.inf))
    warning = (v > limit(warnings, "high", math.inf)) | (v < limit(warnings, "low", -math.inf))
    status = np.where(alarm, 2, np.where(warning, 1, 0)).tolist()
    return [
        Visual(color=getattr(r.colors, _STATUSES[s]), status=_STATUSES[s]) for r, s in zip(rules, status, strict=True)
    ]


def _breach(lim: Limits | None, value: float) -> tuple[str, float] | None:
    """How `value` breaks the limits (("above", 8.0), ("below", 1.0)), or None when it is inside."""
    if lim is None:
        return None
    if lim.high is not None and value > lim.high:
        return "above", lim.high
    if lim.low is not None and value < lim.low:
        return "below", lim.low
    return None


def threshold_status(rule: ThresholdsRule, value: float) -> Status:
    if _breach(rule.alarm, value):
        return "alarm"
    if _breach(rule.warning, value):
        return "warning"
    return "ok"


def _finite_transform(t: Transform) -> bool:
    return all(math.isfinite(x) for part in (t.translate, t.rotate, t.scale) if part is not None for x in part)


def transform_amount(rule: TransformRule, value: float) -> float:
    amount = value * rule.scale + rule.offset
    if rule.min is not None:
        amount = max(amount, rule.min)
    if rule.max is not None:
        amount = min(amount, rule.max)
    return amount


def render_label(template: str, props: dict[str, PropertyValue], prop: str | None) -> str:
    """Fill a template from property values; only plain fields, never attribute access."""
    values: dict[str, Scalar | None] = {k: pv.value for k, pv in props.items()}
    if prop is not None:
        pv = props.get(prop)
        values["value"] = None if pv is None else pv.value
        values["unit"] = "" if pv is None else pv.unit
    out: list[str] = []
    for literal, name, spec in parse_template(template):
        out.append(literal)
        if name is None:
            continue
        v = values.get(name)
        if v is None:
            out.append(MISSING)
            continue
        try:
            out.append(format(v, spec))
        except (ValueError, TypeError):
            out.append(UNFORMATTABLE)
    return "".join(out)[:MAX_LABEL_LEN]


@dataclass
class _AnomalyState:
    rule: AnomalyRule
    detector: StreamDetector
    flagged: bool = False
    normal_run: int = 0
    value: Scalar | None = None
    unit: str = ""
    ts: float = 0.0


@dataclass
class _Compiled:
    layer: str
    index: int
    rule: Rule
    anomaly: _AnomalyState | None = None
    status: Status = "ok"  # thresholds: the last status observed
    deps: set[tuple[str, str]] = field(default_factory=set)
    label_props: list[str] | None = None  # labels: their deps as "element/prop", sorted

    @property
    def alarm_id(self) -> str:
        return f"{self.layer}.rules[{self.index}]"


class RuleEngine:
    def __init__(self, bindings: Bindings) -> None:
        self.bindings = bindings
        self._rules: list[_Compiled] = []
        self._by_target: dict[tuple[str, str], list[_Compiled]] = {}
        self._by_source: dict[tuple[str, str], list[_Compiled]] = {}
        self._by_gate: dict[tuple[str, str], list[_Compiled]] = {}
        self._gate_values: dict[tuple[str, str], PropertyValue] = {}
        self._active: dict[str, AlarmEvent] = {}
        self._bulk: dict[str, tuple[dict[str, tuple[RampRule | ThresholdsRule, int]], list[tuple[str, ...]]]] = {}
        for name, layer in bindings.layers.items():
            for i, rule in enumerate(layer.rules):
                c = _Compiled(name, i, rule, deps=_dependencies(rule))
                if isinstance(rule, LabelRule):
                    c.label_props = sorted(f"{el}/{prop}" for el, prop in c.deps)
                if isinstance(rule, AnomalyRule):
                    c.anomaly = _AnomalyState(rule, make_detector(rule.detector))
                    if rule.only_if is not None:
                        self._by_gate.setdefault((rule.only_if.element, rule.only_if.prop), []).append(c)
                self._rules.append(c)
                self._by_target.setdefault((name, rule.target_id), []).append(c)
                for dep in c.deps:
                    self._by_source.setdefault(dep, []).append(c)

    def layers(self) -> list[str]:
        return list(self.bindings.layers)

    def targets(self, layer: str) -> list[str]:
        """Elements that have at least one rule in `layer`."""
        return [el for (name, el) in self._by_target if name == layer]

    def affected(self, element: str, prop: str) -> list[tuple[str, str]]:
        """(layer, element) pairs whose Visual may change when this property changes."""
        out = {(c.layer, c.rule.target_id) for c in self._by_source.get((element, prop), ())}
        out.update((c.layer, c.rule.target_id) for c in self._by_gate.get((element, prop), ()))
        return sorted(out)

    def active_alarms(self) -> list[AlarmEvent]:
        """The last "raised" event of every alarm that is currently active (for late joiners)."""
        return list(self._active.values())

    def show_anomalies(self, active: set[str]) -> list[tuple[str, str]]:
        """Set every anomaly flag from the ids of the anomaly alarms active (a replay of the history, where no
        detector runs); returns the (layer, element) whose flag changed."""
        changed = []
        for c in self._rules:
            if c.anomaly is not None and c.anomaly.flagged != (c.alarm_id in active):
                c.anomaly.flagged = c.alarm_id in active
                changed.append((c.layer, c.rule.target_id))
        return changed

    def alarm_ids(self) -> set[str]:
        """The id of every alarm the rules can raise (thresholds and anomaly rules)."""
        return {c.alarm_id for c in self._rules if isinstance(c.rule, ThresholdsRule) or c.anomaly is not None}

    def adopt_detectors(self, old: RuleEngine) -> None:
        """Take over the detectors (baseline, warm-up, flag) of `old`'s anomaly rules that this engine has unchanged
        under the same alarm id (a reloaded bindings file): only a new or changed rule's detector starts afresh."""
        before = {c.alarm_id: c for c in old._rules if c.anomaly is not None}
        for c in self._rules:
            prev = before.get(c.alarm_id)
            if c.anomaly is not None and prev is not None and prev.rule == c.rule:
                c.anomaly = prev.anomaly

    def prime(self, state: TwinState, active: dict[str, str]) -> list[AlarmEvent]:
        """Start from restored state (a server restart) and the alarms that were `active` before it (id ->
        severity). Thresholds take the status of the current values; an anomaly alarm that was active stays
        flagged until `clear_after` normal samples (its detector warms up again). Returns what differs:
        "raised" for a threshold now outside its limits that was not active at that severity, "cleared" for
        one that was active and no longer is."""
        events: list[AlarmEvent] = []
        for gate in self._by_gate:
            pv = state.get(*gate)
            if pv is not None:
                self._gate_values[gate] = pv
        for c in self._rules:
            rule = c.rule
            if isinstance(rule, ThresholdsRule):
                pv = state.get(rule.element, rule.prop)
                value = _number(pv)
                severity = active.get(c.alarm_id)
                was: Status | None = None if severity is None else "alarm" if severity == "alarm" else "warning"
                if pv is None or value is None:
                    c.status = was or "ok"  # no usable value: the alarm stays as it was until one comes
                    continue
                status = threshold_status(rule, value)
                c.status = status
                if status != "ok" and status != was:
                    events.append(self._threshold_event(c, rule, status, was or "ok", pv, value))
                elif status == "ok" and was is not None:
                    events.append(self._threshold_event(c, rule, status, was, pv, value))
            elif c.anomaly is not None and c.alarm_id in active:
                c.anomaly.flagged = True
        return events

    def evaluate(self, element: str, layer: str, state: TwinState) -> Visual:
        vis = Visual()
        translate: list[float] | None = None
        for c in self._by_target.get((layer, element), ()):
            rule = c.rule
            if isinstance(rule, LabelRule):
                vis.label = render_label(rule.template, state.element(rule.element), rule.prop)
                vis.label_props = c.label_props
                continue
            if c.anomaly is not None:
                vis.anomaly = bool(vis.anomaly) or c.anomaly.flagged
                continue
            pv = state.get(rule.element, rule.prop)
            if isinstance(rule, VisibilityRule):
                holds = _holds(rule.when, pv)
                if holds is not None:
                    vis.visible = holds and vis.visible is not False
                continue
            value = _number(pv)
            if value is None:
                continue
            if isinstance(rule, RampRule):
                vis.color = ramp_color(rule, value)
            elif isinstance(rule, ThresholdsRule):
                status = threshold_status(rule, value)
                vis.color = getattr(rule.colors, status)
                if _RANK[status] > _RANK[vis.status]:
                    vis.status = status
            elif isinstance(rule, TransformRule):
                amount = transform_amount(rule, value)
                norm = math.sqrt(sum(a * a for a in rule.axis))
                axis = [a / norm for a in rule.axis]
                vis.transform = vis.transform or Transform()
                if rule.mode == "translate":
                    translate = [t + a * amount for t, a in zip(translate or [0.0] * 3, axis, strict=True)]
                    vis.transform.translate = translate
                elif rule.mode == "rotate":
                    vis.transform.rotate = [*axis, amount]
                else:  # stretch along the axis only: the other directions keep factor 1
                    vis.transform.scale = [abs(a) * amount + (1.0 - abs(a)) for a in axis]
        if vis.transform is not None and not _finite_transform(vis.transform):
            vis.transform = None  # a huge value times a rule's scale overflowed: show the model's own placement
        return vis

    def evaluate_many(self, elements: Iterable[str], layer: str, state: TwinState) -> dict[str, Visual]:
        """`evaluate` of each of `elements` (the same visuals): those whose one rule is a ramp or thresholds together
        in numpy, ramps by their colour stops (a replay's 10 000 colours in a few ms), the others one by one."""
        bulk, ramp_stops = self._bulk_rules(layer)
        out: dict[str, Visual] = {}
        ramps: list[tuple[list[str], list[float], list[RampRule]]] = [([], [], []) for _ in ramp_stops]
        thresholds: tuple[list[str], list[float], list[ThresholdsRule]] = ([], [], [])
        current = state.values()
        for element in elements:
            found = bulk.get(element)
            if found is None:
                out[element] = self.evaluate(element, layer, state)
                continue
            rule, group = found
            value = _number(current.get(rule.element, _NONE).get(rule.prop))
            if value is None:
                out[element] = Visual()  # as `evaluate` leaves an element whose one rule has no usable value
            elif isinstance(rule, RampRule):
                names, values, rules = ramps[group]
                names.append(element)
                values.append(value)
                rules.append(rule)
            else:
                thresholds[0].append(element)
                thresholds[1].append(value)
                thresholds[2].append(rule)
        for stops, (names, values, rules) in zip(ramp_stops, ramps, strict=True):
            if names:
                out.update(zip(names, map(_color_visual, _ramp_colors(stops, values, rules)), strict=True))
        if thresholds[0]:
            out.update(zip(thresholds[0], _threshold_visuals(thresholds[1], thresholds[2]), strict=True))
        return out

    def _bulk_rules(self, layer: str) -> tuple[dict[str, tuple[RampRule | ThresholdsRule, int]], list[tuple[str, ...]]]:
        """The layer's elements whose only rule there is a ramp or thresholds, with that rule and, for a ramp, the
        number of its group (the ramps with the same colour stops); and each group's stops."""
        found = self._bulk.get(layer)
        if found is None:
            by_element: dict[str, tuple[RampRule | ThresholdsRule, int]] = {}
            numbers: dict[tuple[str, ...], int] = {}  # each stop list's group number, in order of appearance
            for (name, element), compiled in self._by_target.items():
                rule = compiled[0].rule
                if name != layer or len(compiled) != 1:
                    continue
                if isinstance(rule, RampRule):
                    by_element[element] = (rule, numbers.setdefault(tuple(rule.colors), len(numbers)))
                elif isinstance(rule, ThresholdsRule):
                    by_element[element] = (rule, -1)
            found = self._bulk[layer] = (by_element, list(numbers))
        return found

    def observe(self, change: Change) -> list[AlarmEvent]:
        """Feed one state change to thresholds and detectors; return alarm raised/cleared events."""
        key = (change.element, change.prop)
        events: list[AlarmEvent] = []
        if key in self._by_gate:
            self._gate_values[key] = change.current
            for c in self._by_gate[key]:
                st = c.anomaly
                if st is not None and not self._gate_open(st):
                    st.detector.reset()  # the detector re-warms when the gate opens again
                    events.extend(self._anomaly_clear(c, st, change.current.ts))
        for c in self._by_source.get(key, ()):
            rule = c.rule
            if getattr(rule, "prop", None) != change.prop or rule.element != change.element:
                continue  # a label depending on this property: nothing to observe
            if isinstance(rule, ThresholdsRule):
                events.extend(self._threshold(c, rule, change))
            elif c.anomaly is not None:
                events.extend(self._anomaly(c, c.anomaly, change))
        return events

    def tick(self, now: float) -> list[AlarmEvent]:
        """Raise flat-line anomalies for properties that have not changed for too long."""
        events: list[AlarmEvent] = []
        for c in self._rules:
            st = c.anomaly
            if st is None or st.flagged or not isinstance(st.detector, FlatlineDetector):
                continue
            if self._gate_open(st) and st.detector.stale(now):
                events.append(self._raise_anomaly(c, st, "no change", now))
        return events

    # --- internals ----------------------------------------------------------------------------

    def _event(
        self,
        c: _Compiled,
        kind: Literal["raised", "cleared"],
        severity: Severity,
        message: str,
        ts: float,
        value: Scalar | None,
        unit: str,
    ) -> AlarmEvent:
        rule = c.rule
        prop = getattr(rule, "prop", None) or ""
        ev = AlarmEvent(
            c.alarm_id, kind, rule.target_id, prop, rule.element, c.layer, severity, message, ts, value, unit
        )
        if kind == "raised":
            self._active[ev.id] = ev
        else:
            self._active.pop(ev.id, None)
        return ev

    def _threshold(self, c: _Compiled, rule: ThresholdsRule, change: Change) -> list[AlarmEvent]:
        value = _number(change.current)
        if value is None:
            return []  # bad or non-numeric data neither raises nor clears an alarm
        status = threshold_status(rule, value)
        if status == c.status:
            return []
        previous, c.status = c.status, status
        return [self._threshold_event(c, rule, status, previous, change.current, value)]

    def _threshold_event(
        self, c: _Compiled, rule: ThresholdsRule, status: Status, previous: Status, pv: PropertyValue, value: float
    ) -> AlarmEvent:
        """The event of a threshold going from `previous` to `status`. The message names the property, not
        the element: viewers show the element by its name."""
        what = f"{rule.prop} = {value:g} {pv.unit}".rstrip()
        if status == "ok":
            severity: Severity = "alarm" if previous == "alarm" else "warning"
            return self._event(c, "cleared", severity, f"{what}: back to normal", pv.ts, pv.value, pv.unit)
        side, bound = _breach(rule.alarm if status == "alarm" else rule.warning, value) or ("", 0.0)
        msg = f"{what}: {side} {status} limit {bound:g} {pv.unit}".rstrip()
        return self._event(c, "raised", status, msg, pv.ts, pv.value, pv.unit)

    def _gate_open(self, st: _AnomalyState) -> bool:
        gate = st.rule.only_if
        return gate is None or bool(_holds(gate, self._gate_values.get((gate.element, gate.prop))))

    def _anomaly(self, c: _Compiled, st: _AnomalyState, change: Change) -> list[AlarmEvent]:
        value = _number(change.current)
        if value is None or not self._gate_open(st):
            return []
        st.value, st.unit, st.ts = change.current.value, change.current.unit, change.current.ts
        if st.detector.update(value, change.current.rx):
            st.normal_run = 0
            if st.flagged:
                return []
            return [self._raise_anomaly(c, st, f"{value:g} {change.current.unit}".rstrip(), st.ts)]
        if not st.flagged:
            return []
        st.normal_run += 1
        if st.normal_run < st.rule.clear_after:
            return []
        return self._anomaly_clear(c, st, st.ts)

    def _raise_anomaly(self, c: _Compiled, st: _AnomalyState, detail: str, ts: float) -> AlarmEvent:
        st.flagged, st.normal_run = True, 0
        rule = st.rule
        msg = f"{rule.prop}: {rule.detector.__struct_config__.tag} anomaly ({detail})"
        return self._event(c, "raised", "warning", msg, ts, st.value, st.unit)

    def _anomaly_clear(self, c: _Compiled, st: _AnomalyState, ts: float) -> list[AlarmEvent]:
        if not st.flagged:
            return []
        st.flagged, st.normal_run = False, 0
        msg = f"{st.rule.prop}: back to normal"
        return [self._event(c, "cleared", "warning", msg, ts, st.value, st.unit)]


def _dependencies(rule: Rule) -> set[tuple[str, str]]:
    """The (element, prop) pairs whose values the rule's visual reads."""
    if isinstance(rule, LabelRule):
        deps: set[tuple[str, str]] = set()
        for _, name, _ in parse_template(rule.template):
            if name in ("value", "unit") and rule.prop is not None:
                deps.add((rule.element, rule.prop))
            elif name is not None:
                deps.add((rule.element, name))
        return deps
    return {(rule.element, rule.prop)}
