"""Bindings: which telemetry feeds which element property, and the layers of visual rules on top.

A bindings file (YAML or JSON, format in docs/BINDINGS.md) is decoded in three steps, each failing
with a `BindingsError` that names the file, the entry and the problem:
1. parse (YAML with duplicate mapping keys refused, since PyYAML would silently keep the last);
2. validate against the published JSON Schema (`bindings_schema()`, generated from the Structs below,
   so the Structs are the single source);
3. semantic checks: known element ids, duplicate selectors, ranges, layer references, JSON paths,
   MQTT topic filters and label templates.

`Bindings` is the immutable result; it turns MQTT messages and keyed values into `Reading`s.
"""

from __future__ import annotations

import math
import re
import string
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import msgspec
import orjson

from scene.config_file import ConfigFileError, check_finite, config_main, convert, entry_name, load_config, parse_config
from scene.json_schema import tidy
from scene.state import Quality, Reading, Scalar

# Largest MQTT payload we parse: a telemetry message (even a gateway batch) is a few kB; more is a
# misbehaving publisher, and parsing it would stall the event loop.
MAX_PAYLOAD_BYTES = 64 * 1024
# Longest string value we accept for a "string" binding: a status word or a short message.
MAX_STRING_LEN = 256
# Timestamps above this are read as milliseconds (many IoT gateways send ms); 1e11 s is year 5138.
MS_TIMESTAMP_ABOVE = 1e11
# Longest label a template may render: a viewer badge, not a paragraph.
MAX_LABEL_LEN = 120
# A property without a sample for this long is stale unless its binding says otherwise: field
# instruments report every second to every minute, so five minutes of silence means the source is gone.
DEFAULT_STALE_AFTER_S = 300.0
# Longest stale_after: a source silent for a year is gone; one that may be silent longer says null (never).
MAX_STALE_AFTER_S = 365 * 86400.0

SCHEMA_ID = "https://twinview.dev/schemas/bindings.schema.json"
# History kept by default (docs/BINDINGS.md "history"): every raw sample for a month covers the usual
# incident review and a monthly report; minute aggregates for a year cover seasonal comparisons.
DEFAULT_RAW_DAYS = 30
DEFAULT_ROLLUP_DAYS = 365
# Longest retention a file may ask for: ten years of minute aggregates is ~5 M rows per property.
MAX_RETENTION_DAYS = 3650

PropName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
LayerName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=64)]
ElementId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
HexColor = Annotated[str, msgspec.Meta(pattern=r"^#[0-9a-fA-F]{6}$")]
Vec3 = Annotated[list[float], msgspec.Meta(min_length=3, max_length=3)]
Op = Literal["<", "<=", ">", ">=", "==", "!="]


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every struct in the file: immutable, and typos in field names are errors."""


RetentionDays = Annotated[int, msgspec.Meta(ge=1, le=MAX_RETENTION_DAYS)]


class History(_Spec, kw_only=True):
    """How long the historian keeps a property: every raw sample for `raw_days`, then min / max / mean / last
    per minute until `rollup_days` (at least `raw_days`)."""

    raw_days: RetentionDays = DEFAULT_RAW_DAYS
    rollup_days: RetentionDays = DEFAULT_ROLLUP_DAYS


class Binding(_Spec, kw_only=True):
    """One telemetry source for one element property: an MQTT topic + JSON path, and/or a key."""

    element: ElementId
    prop: PropName
    topic: str | None = None  # MQTT topic filter; + and # wildcards allowed
    path: str = "$.value"  # JSON path of the value in the payload ("$" = the whole payload)
    ts_path: str | None = "$.ts"  # source timestamp (unix s or ms); absent -> receive time
    quality_path: str | None = "$.quality"  # "good" | "uncertain" | "bad"; absent -> good
    key: str | None = None  # HTTP/WebSocket ingest key, e.g. "PT-101.pressure"
    unit: str = ""
    scale: float = 1.0  # value = raw * scale + offset (numbers only)
    offset: float = 0.0
    kind: Literal["number", "bool", "string"] = "number"
    range: Annotated[list[float], msgspec.Meta(min_length=2, max_length=2)] | None = None  # plausible [lo, hi]
    # Seconds without a sample after which the value is stale (greyed in viewers); null = never (a source
    # that reports on change only).
    stale_after: Annotated[float, msgspec.Meta(gt=0, le=MAX_STALE_AFTER_S)] | None = DEFAULT_STALE_AFTER_S
    history: History | None = None  # retention of this property; None = the file's `history`


class Tag(_Spec, kw_only=True):
    """A sensor without geometry: a point anchor attached to a host element."""

    id: ElementId
    name: str
    host: ElementId
    offset: Vec3 = msgspec.field(default_factory=lambda: [0.0, 0.0, 0.0])  # metres, in the host's frame
    layers: list[LayerName] | None = None  # layers that show the tag; None = all


class Condition(_Spec, kw_only=True):
    op: Op
    value: float | bool | str


class Gate(_Spec, kw_only=True):
    """A condition on another property, e.g. "only while the pump runs"."""

    element: ElementId
    prop: PropName
    op: Op
    value: float | bool | str


class Limits(_Spec, kw_only=True):
    low: float | None = None  # status applies below this
    high: float | None = None  # status applies above this


class StatusColors(_Spec, kw_only=True):
    ok: HexColor = "#2e7d32"
    warning: HexColor = "#f9a825"
    alarm: HexColor = "#c62828"


class EwmaParams(_Spec, tag="ewma", tag_field="kind", kw_only=True):
    alpha: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.05  # weight of the newest sample
    threshold: Annotated[float, msgspec.Meta(gt=0)] = 5.0  # in standard deviations
    warmup: Annotated[int, msgspec.Meta(ge=2)] = 30  # samples before flagging


class ZScoreParams(_Spec, tag="zscore", tag_field="kind", kw_only=True):
    window: Annotated[int, msgspec.Meta(ge=3, le=10_000)] = 60
    threshold: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    warmup: Annotated[int, msgspec.Meta(ge=2)] = 30


class FlatlineParams(_Spec, tag="flatline", tag_field="kind", kw_only=True):
    still_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # no change for this long -> stuck or dead


Detector = EwmaParams | ZScoreParams | FlatlineParams


class _Rule(_Spec, tag_field="kind", kw_only=True):
    element: ElementId  # source element (or tag id)
    target: ElementId | None = None  # element whose visual changes; default: the source element

    @property
    def target_id(self) -> str:
        return self.target or self.element


class RampRule(_Rule, tag="ramp", kw_only=True):
    """Colour from a value: `colors` are evenly spaced stops from `min` to `max`, clamped."""

    prop: PropName
    min: float
    max: float
    colors: Annotated[list[HexColor], msgspec.Meta(min_length=2)]


class ThresholdsRule(_Rule, tag="thresholds", kw_only=True):
    """Status bands: outside `alarm` limits -> alarm, else outside `warning` limits -> warning."""

    prop: PropName
    warning: Limits | None = None
    alarm: Limits | None = None
    colors: StatusColors = StatusColors()


class VisibilityRule(_Rule, tag="visibility", kw_only=True):
    prop: PropName
    when: Condition  # visible while the condition holds


class TransformRule(_Rule, tag="transform", kw_only=True):
    """amount = clamp(value * scale + offset, min, max): metres along `axis` (translate), degrees
    about it (rotate), or a scale factor along it (scale: a tank's liquid column by level)."""

    prop: PropName
    mode: Literal["translate", "rotate", "scale"]
    axis: Vec3
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = None
    max: float | None = None


class LabelRule(_Rule, tag="label", kw_only=True):
    """Text from a template over the source element's properties: "{pressure:.1f} bar".

    `{value}` and `{unit}` name `prop`'s value and unit when `prop` is given.
    """

    template: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_LABEL_LEN)]
    prop: PropName | None = None


class AnomalyRule(_Rule, tag="anomaly", kw_only=True):
    prop: PropName
    detector: Detector
    only_if: Gate | None = None  # feed the detector only while this holds (it re-warms after)
    clear_after: Annotated[int, msgspec.Meta(ge=1)] = 10  # normal samples before the flag clears


Rule = RampRule | ThresholdsRule | VisibilityRule | TransformRule | LabelRule | AnomalyRule


class Layer(_Spec, kw_only=True):
    title: str = ""
    rules: list[Rule] = msgspec.field(default_factory=list)


class Command(_Spec, kw_only=True):
    """An operator command on an element, published to MQTT with QoS 1 (viewer_server/commands.py).

    With `range` the command takes a value (e.g. a setpoint) within it; `payload` may then place it
    with `{value}`. Without `payload` the server publishes {"command", "value", "user", "ts"} as JSON."""

    element: ElementId
    command: PropName
    topic: str
    payload: str | None = None
    range: Annotated[list[float], msgspec.Meta(min_length=2, max_length=2)] | None = None  # allowed [lo, hi]
    unit: str = ""


class BindingsFile(_Spec, kw_only=True):
    """The top level of a bindings file."""

    version: Literal[1] = 1
    default_layer: LayerName
    bindings: list[Binding]
    layers: dict[LayerName, Layer]
    tags: list[Tag] = msgspec.field(default_factory=list)
    commands: list[Command] = msgspec.field(default_factory=list)
    history: History = History()  # retention of every binding that says none of its own


class BindingsError(ConfigFileError):
    """A bindings file problem, located: `entry` is e.g. "bindings[3].path" or "layers.energy.rules[1]"."""


RejectCode = Literal["not_numeric", "not_finite", "out_of_range", "malformed"]


class RejectedReading(ValueError):
    """A value that cannot become a Reading; `code` is machine-readable, the message is for people."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(message)
        self.code: RejectCode = code


def bindings_schema() -> dict[str, Any]:
    """The published JSON Schema of a bindings file (docs/bindings.schema.json)."""
    return tidy(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
            "title": "TwinView bindings",
            **msgspec.json.schema(BindingsFile),
        }
    )


# --- JSON paths and topic filters -------------------------------------------------------------

_SEGMENT = re.compile(r"([^.\[\]]+)?((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """ "$.data.p[0]" or "data.p[0]" -> ("data", "p", 0); "$" -> (). Raises ValueError."""
    body = path[1:] if path.startswith("$") else path
    body = body[1:] if body.startswith(".") else body
    if not body:
        if path.startswith("$"):
            return ()
        raise ValueError("empty JSON path")
    steps: list[str | int] = []
    for seg in body.split("."):
        m = _SEGMENT.fullmatch(seg)
        if not seg or m is None or (m.group(1) is None and not steps and not m.group(2)):
            raise ValueError(f"bad JSON path segment {seg!r} in {path!r}")
        if m.group(1):
            steps.append(m.group(1))
        steps.extend(int(i) for i in _INDEX.findall(m.group(2)))
    return tuple(steps)


def _extract(doc: Any, steps: tuple[str | int, ...]) -> tuple[bool, Any]:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return False, None
        elif not isinstance(doc, dict) or step not in doc:
            return False, None
        doc = doc[step]
    return True, doc


def check_topic_filter(topic: str) -> None:
    """MQTT filter rules: non-empty, '#' only as the whole last level, '+' only as a whole level."""
    if not topic:
        raise ValueError("empty topic")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be the whole last level in {topic!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level in {topic!r}")


def topic_matches(pattern: str, topic: str) -> bool:
    pat, top = pattern.split("/"), topic.split("/")
    for i, p in enumerate(pat):
        if p == "#":
            return True
        if i >= len(top) or (p != "+" and p != top[i]):
            return False
    return len(pat) == len(top)


# --- label templates --------------------------------------------------------------------------

# A format spec we allow: [[fill]align][sign][width][,][.precision][type]; no nested fields.
_SAFE_SPEC = re.compile(r"^(?:[^{}]?[<>^=])?[+\- ]?\d{0,2},?(?:\.\d{1,2})?[eEfFgGd%s]?$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_template(template: str) -> list[tuple[str, str | None, str]]:
    """Split a label template into (literal, field, spec) parts, refusing anything but plain fields.

    Refused: attribute or index access ("{value.__class__}", "{x[0]}"), positional fields, !r/!s/!a
    conversions and nested or over-long format specs. Raises ValueError naming the offence.
    """
    parts: list[tuple[str, str | None, str]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template: {exc}") from None
    for literal, field, spec, conversion in parsed:
        if field is None:
            parts.append((literal, None, ""))
            continue
        if not _FIELD.fullmatch(field):
            raise ValueError(f"template field {{{field}}} must be a plain property name")
        if conversion is not None:
            raise ValueError(f"template field {{{field}}} may not use a !{conversion} conversion")
        if spec and not _SAFE_SPEC.fullmatch(spec):
            raise ValueError(f"template field {{{field}:{spec}}} has an unsupported format spec")
        parts.append((literal, field, spec or ""))
    return parts


# --- decoding values --------------------------------------------------------------------------


def _to_quality(raw: Any) -> Quality:
    if raw in ("good", "uncertain", "bad"):
        return raw
    raise RejectedReading("malformed", f"quality must be good, uncertain or bad, not {raw!r}")


def _to_ts(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw < 0:
        raise RejectedReading("malformed", f"timestamp must be a non-negative number, not {raw!r}")
    return raw / 1000.0 if raw > MS_TIMESTAMP_ABOVE else float(raw)


def convert_value(binding: Binding, raw: Any) -> Scalar:
    """Apply the binding's kind, scale, offset and range to a raw value, or raise RejectedReading."""
    if binding.kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise RejectedReading("not_numeric", f"non-numeric value {raw!r}")
        if not math.isfinite(raw):
            raise RejectedReading("not_finite", f"value {raw!r} is not finite")
        value: float | int = raw * binding.scale + binding.offset
        if binding.scale == 1.0 and binding.offset == 0.0:
            value = raw  # keep ints as ints when the binding does not rescale
        if not math.isfinite(value):
            raise RejectedReading("not_finite", f"scaled value {value!r} is not finite")
        if binding.range is not None and not binding.range[0] <= value <= binding.range[1]:
            raise RejectedReading("out_of_range", f"value {value!r} outside plausible range {binding.range}")
        return value
    if binding.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        raise RejectedReading("not_numeric", f"non-boolean value {raw!r}")
    if not isinstance(raw, str):
        raise RejectedReading("malformed", f"non-string value {raw!r}")
    if len(raw) > MAX_STRING_LEN:
        raise RejectedReading("malformed", f"string value longer than {MAX_STRING_LEN} characters")
    return raw


# --- the validated bindings -------------------------------------------------------------------


class Bindings:
    """Validated, immutable bindings: look-ups from MQTT topics and keys to element properties."""

    def __init__(self, spec: BindingsFile) -> None:
        self.spec = spec
        self.bindings: tuple[Binding, ...] = tuple(spec.bindings)
        self.tags: tuple[Tag, ...] = tuple(spec.tags)
        self.layers: dict[str, Layer] = dict(spec.layers)
        self.default_layer: str = spec.default_layer
        self.commands: tuple[Command, ...] = tuple(spec.commands)
        self._by_key = {b.key: b for b in self.bindings if b.key is not None}
        self._bound = {(b.element, b.prop): b for b in self.bindings}
        self._exact: dict[str, list[int]] = {}
        self._wild: list[int] = []
        for i, b in enumerate(self.bindings):
            if b.topic is None:
                continue
            if "+" in b.topic or "#" in b.topic:
                self._wild.append(i)
            else:
                self._exact.setdefault(b.topic, []).append(i)
        self._paths = {
            i: (parse_json_path(b.path), _opt_path(b.ts_path), _opt_path(b.quality_path))
            for i, b in enumerate(self.bindings)
        }

    def binding(self, element: str, prop: str) -> Binding | None:
        return self._bound.get((element, prop))

    def history(self, element: str, prop: str) -> History:
        """The retention of element.prop: its binding's, else the file's (also for an unbound property)."""
        b = self._bound.get((element, prop))
        return b.history if b is not None and b.history is not None else self.spec.history

    def stale_after(self, element: str, prop: str) -> float | None:
        """Seconds without a sample after which element.prop is stale; None = never (or unbound)."""
        b = self._bound.get((element, prop))
        return None if b is None else b.stale_after

    def is_bound(self, element: str, prop: str) -> bool:
        return (element, prop) in self._bound

    def bound_elements(self) -> set[str]:
        return {b.element for b in self.bindings}

    def keys(self) -> list[str]:
        return list(self._by_key)

    def tags_for(self, layer: str) -> list[Tag]:
        """The tags a client on `layer` shows."""
        return [t for t in self.tags if t.layers is None or layer in t.layers]

    def from_mqtt(self, topic: str, payload: bytes, rx: float) -> tuple[list[Reading], list[str]]:
        """Readings extracted from one MQTT message, and one reason per value that was rejected.

        A payload without a timestamp is stamped with `rx`, its arrival, not the later apply time.
        """
        indices = self._exact.get(topic, []) + [
            i for i in self._wild if topic_matches(self.bindings[i].topic or "", topic)
        ]
        if not indices:
            return [], [f"{topic}: unbound topic"]
        if len(payload) > MAX_PAYLOAD_BYTES:
            return [], [f"{topic}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"]
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return [], [f"{topic}: bad JSON: {exc}"]
        readings: list[Reading] = []
        reasons: list[str] = []
        for i in sorted(indices):
            b = self.bindings[i]
            value_path, ts_path, q_path = self._paths[i]
            found, raw = _extract(doc, value_path)
            if not found:
                reasons.append(f"{topic}: bindings[{i}]: missing path {b.path}")
                continue
            try:
                value = convert_value(b, raw)
                ts = _lookup(doc, ts_path, _to_ts, rx)
                quality = _lookup(doc, q_path, _to_quality, "good")
            except RejectedReading as exc:
                reasons.append(f"{topic}: bindings[{i}] ({b.path}): {exc}")
                continue
            readings.append(Reading(b.element, b.prop, value, b.unit, ts, quality))
        return readings, reasons

    def from_key(self, key: str, value: Any, ts: float | None = None, quality: Quality = "good") -> Reading | None:
        """The Reading for an HTTP/WS keyed value; None if the key is unbound.

        Raises RejectedReading (a ValueError, with the reason) for a value the binding refuses.
        """
        b = self._by_key.get(key)
        if b is None:
            return None
        converted = convert_value(b, value)
        return Reading(b.element, b.prop, converted, b.unit, 0.0 if ts is None else _to_ts(ts), _to_quality(quality))


def _opt_path(path: str | None) -> tuple[str | int, ...] | None:
    return None if path is None else parse_json_path(path)


def _lookup(doc: Any, steps: tuple[str | int, ...] | None, convert: Any, default: Any) -> Any:
    if steps is None:
        return default
    found, raw = _extract(doc, steps)
    return convert(raw) if found else default


# --- loading ----------------------------------------------------------------------------------


_TYPE_MISMATCH_LAST = jsonschema.exceptions.by_relevance(weak=frozenset({"anyOf", "oneOf", "type"}))


def _best_error(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Descend into anyOf errors, along the branch the `kind` discriminator selects when there is one.

    jsonschema's own best_match guesses a branch, and for a rule it often guesses the wrong kind.
    """
    relevance = jsonschema.exceptions.relevance
    while error.validator == "anyOf" and error.context:
        disc = error.schema.get("discriminator") if isinstance(error.schema, dict) else None
        if disc is None:  # e.g. a number or null: the branch of the value's own type says what is wrong
            return jsonschema.exceptions.best_match(error.context, key=_TYPE_MISMATCH_LAST)
        kind = error.instance.get("kind") if isinstance(error.instance, dict) else None
        if kind not in disc["mapping"]:
            return error  # reported as "unknown kind" by the caller
        ref = disc["mapping"][kind]
        branch = next(i for i, s in enumerate(error.schema["anyOf"]) if s.get("$ref") == ref)
        sub = [e for e in error.context if e.relative_schema_path[0] == branch]
        if not sub:
            break
        error = max(sub, key=relevance)
    return error


_VALIDATOR = jsonschema.Draft202012Validator(bindings_schema())


def _schema_errors(data: Any, file: str) -> None:
    errors = list(_VALIDATOR.iter_errors(data))
    if not errors:
        return
    error = _best_error(max(errors, key=jsonschema.exceptions.relevance))
    entry = entry_name(error.absolute_path)
    if error.validator == "anyOf" and isinstance(error.instance, dict) and "discriminator" in error.schema:
        kinds = ", ".join(error.schema["discriminator"]["mapping"])
        raise BindingsError(file, entry, f"unknown kind {error.instance.get('kind')!r} (expected one of {kinds})")
    raise BindingsError(file, entry, error.message)


def _semantic_errors(spec: BindingsFile, known: set[str] | None) -> Iterator[tuple[str, str]]:
    tag_ids = {t.id for t in spec.tags}
    ids = None if known is None else known | tag_ids

    def unknown(element: str) -> bool:
        return ids is not None and element not in ids

    if spec.default_layer not in spec.layers:
        yield "default_layer", f"unknown layer {spec.default_layer!r}"
    histories = [("history", spec.history)]
    histories += [(f"bindings[{i}].history", b.history) for i, b in enumerate(spec.bindings) if b.history is not None]
    for where, h in histories:
        if h.rollup_days < h.raw_days:
            yield (
                f"{where}.rollup_days",
                f"{h.rollup_days} is shorter than raw_days {h.raw_days}: make it at least that",
            )
    seen_tags: set[str] = set()
    for i, t in enumerate(spec.tags):
        if t.id in seen_tags:
            yield f"tags[{i}].id", f"duplicate tag id {t.id!r}"
        seen_tags.add(t.id)
        if known is not None and t.id in known:
            yield f"tags[{i}].id", f"tag id {t.id!r} is already an element id"
        if unknown(t.host):
            yield f"tags[{i}].host", f"unknown element {t.host!r}"
        for name in t.layers or ():
            if name not in spec.layers:
                yield f"tags[{i}].layers", f"unknown layer {name!r}"
    selectors: dict[Any, int] = {}
    for i, b in enumerate(spec.bindings):
        where = f"bindings[{i}]"
        if b.topic is None and b.key is None:
            yield where, "needs a topic or a key"
        if unknown(b.element):
            yield f"{where}.element", f"unknown element {b.element!r}"
        for field_name in ("path", "ts_path", "quality_path"):
            p = getattr(b, field_name)
            if p is not None:
                try:
                    parse_json_path(p)
                except ValueError as exc:
                    yield f"{where}.{field_name}", str(exc)
        if b.topic is not None:
            try:
                check_topic_filter(b.topic)
            except ValueError as exc:
                yield f"{where}.topic", str(exc)
        if b.range is not None and not b.range[0] < b.range[1]:
            yield f"{where}.range", f"range low {b.range[0]} must be below high {b.range[1]}"
        if b.kind != "number" and (b.scale != 1.0 or b.offset != 0.0 or b.range is not None):
            yield where, f"scale, offset and range apply to numbers only, not {b.kind}"
        for sel, text in (
            ((b.topic, b.path), f"topic {b.topic!r} with path {b.path!r}"),
            (("key", b.key), f"key {b.key!r}"),
            (("prop", b.element, b.prop), f"property {b.element}.{b.prop}"),
        ):
            if None in sel:
                continue
            if sel in selectors:
                yield where, f"duplicate {text} (also bindings[{selectors[sel]}])"
            selectors.setdefault(sel, i)
    bound = {(b.element, b.prop) for b in spec.bindings}
    for name, layer in spec.layers.items():
        for j, rule in enumerate(layer.rules):
            yield from _rule_errors(f"layers.{name}.rules[{j}]", rule, bound, unknown)
    for i, c in enumerate(spec.commands):
        if unknown(c.element):
            yield f"commands[{i}].element", f"unknown element {c.element!r}"
        try:
            check_topic_filter(c.topic)
        except ValueError as exc:
            yield f"commands[{i}].topic", str(exc)
        if "+" in c.topic or "#" in c.topic:
            yield f"commands[{i}].topic", "a command topic cannot contain wildcards"
        if c.range is not None and not c.range[0] < c.range[1]:
            yield f"commands[{i}].range", f"range low {c.range[0]} must be below high {c.range[1]}"
        if c.payload is not None and ("{value}" in c.payload) != (c.range is not None):
            yield f"commands[{i}].payload", "a payload has a {value} placeholder exactly when the command has a range"


def _rule_errors(where: str, rule: Rule, bound: set[tuple[str, str]], unknown: Any) -> Iterator[tuple[str, str]]:
    for field_name in ("element", "target"):
        el = getattr(rule, field_name)
        if el is not None and unknown(el):
            yield f"{where}.{field_name}", f"unknown element {el!r}"
    prop = getattr(rule, "prop", None)
    if prop is not None and (rule.element, prop) not in bound:
        yield f"{where}.prop", f"no binding provides {rule.element}.{prop}"
    if isinstance(rule, RampRule) and not rule.min < rule.max:
        yield where, f"ramp min {rule.min} must be below max {rule.max}"
    if isinstance(rule, ThresholdsRule):
        yield from _limits_errors(where, rule)
    if isinstance(rule, TransformRule):
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            yield where, f"clamp min {rule.min} must not exceed max {rule.max}"
        if not any(rule.axis):
            yield f"{where}.axis", "axis must not be the zero vector"
    if isinstance(rule, LabelRule):
        try:
            parts = parse_template(rule.template)
        except ValueError as exc:
            yield f"{where}.template", str(exc)
        else:
            own = {"value", "unit"} if rule.prop is not None else set()
            for _, field, _ in parts:
                if field is not None and field not in own and (rule.element, field) not in bound:
                    yield f"{where}.template", f"{{{field}}}: no binding provides {rule.element}.{field}"
    if isinstance(rule, AnomalyRule) and rule.only_if is not None:
        gate = rule.only_if
        if unknown(gate.element):
            yield f"{where}.only_if.element", f"unknown element {gate.element!r}"
        if (gate.element, gate.prop) not in bound:
            yield f"{where}.only_if.prop", f"no binding provides {gate.element}.{gate.prop}"


def _limits_errors(where: str, rule: ThresholdsRule) -> Iterator[tuple[str, str]]:
    if rule.warning is None and rule.alarm is None:
        yield where, "needs warning or alarm limits"
    for name in ("warning", "alarm"):
        lim: Limits | None = getattr(rule, name)
        if lim is None:
            continue
        if lim.low is None and lim.high is None:
            yield f"{where}.{name}", "needs low or high"
        if lim.low is not None and lim.high is not None and not lim.low < lim.high:
            yield f"{where}.{name}", f"low {lim.low} must be below high {lim.high}"
    w, a = rule.warning, rule.alarm
    if w is not None and a is not None:
        if w.high is not None and a.high is not None and a.high < w.high:
            yield f"{where}.alarm", f"alarm high {a.high} must not be below warning high {w.high}"
        if w.low is not None and a.low is not None and a.low > w.low:
            yield f"{where}.alarm", f"alarm low {a.low} must not be above warning low {w.low}"


def parse_bindings(data: Any, file: str = "<bindings>", known_elements: set[str] | None = None) -> Bindings:
    """Validate already-parsed data (finite numbers, schema, then semantics) and build `Bindings`."""
    check_finite(data, file, BindingsError)
    spec = convert(data, BindingsFile, file, BindingsError, _schema_errors)
    for entry, problem in _semantic_errors(spec, known_elements):
        raise BindingsError(file, entry, problem)
    return Bindings(spec)


def load_bindings(path: Path, known_elements: set[str] | None = None) -> Bindings:
    """Read, validate and build the bindings in a YAML or JSON file; raises BindingsError."""
    return load_config(path, BindingsError, lambda data, file: parse_bindings(data, file, known_elements))


def bindings_from_text(text: bytes, file: str, known_elements: set[str] | None = None) -> Bindings:
    """`load_bindings` of a file's content (a version the historian kept); `file` its name (.json: JSON)."""
    return parse_config(text, file, BindingsError, lambda data, f: parse_bindings(data, f, known_elements))


def main(argv: list[str]) -> int:
    return config_main(
        argv,
        "scene.bindings",
        bindings_schema,
        load_bindings,
        lambda b: f"{len(b.bindings)} bindings, {len(b.tags)} tags, layers {', '.join(b.layers)}",
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
