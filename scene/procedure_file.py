"""Procedure files: a guided task (training, a switch-over, an inspection) as an ordered list of steps.

A procedure file (YAML or JSON, format in docs/PROCEDURES.md) is decoded like a bindings file, each
step failing with a `ProcedureError` that names the file, the entry and the problem:
1. parse (YAML with duplicate keys refused);
2. validate against the published JSON Schema (`procedure_schema()`, generated from the Structs below);
3. semantic checks: known element ids, one completion condition per step, sane value ranges,
   unique step ids.

Viewpoints reuse the annotation model's camera (`scene.camera.Camera` / `ClippingPlane`), so a step's
view, a presenter's view and a BCF viewpoint are one shape.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import jsonschema
import msgspec

from scene.bindings import ElementId, PropName
from scene.camera import Camera, ClippingPlane
from scene.config_file import ConfigFileError, check_finite, config_main, convert, entry_name, load_config
from scene.json_schema import tidy

SCHEMA_ID = "https://twinview.dev/schemas/procedure.schema.json"
# Steps per procedure: a long checklist has a few dozen; hundreds means a file that should be split.
MAX_STEPS = 200
# Text lengths: a step is read on a headset, so instructions are a paragraph, not a manual.
MAX_TITLE = 200
MAX_INSTRUCTIONS = 4000
# Elements highlighted or watched per step: enough for a skid, few enough to stay legible.
MAX_STEP_ELEMENTS = 50

StepId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TITLE)]


class _Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every struct in the file: immutable, and typos in field names are errors."""


class StepView(_Spec, kw_only=True):
    """Where the step is looked at from, and what is shown (as in a topic's viewpoint: `hidden` lists the
    exceptions to `default_visible`, `xray` those to `xray_default`; a storey's id stands for its contents).
    `selected` of the published Viewpoint is the step's highlight."""

    camera: Camera
    clipping_planes: list[ClippingPlane] = []
    hidden: Annotated[list[ElementId], msgspec.Meta(max_length=MAX_STEP_ELEMENTS)] = []
    default_visible: bool = True
    xray: Annotated[list[ElementId], msgspec.Meta(max_length=MAX_STEP_ELEMENTS)] = []
    xray_default: bool = False


class Watch(_Spec, kw_only=True):
    """A live value shown beside the step, e.g. the discharge pressure while a valve opens."""

    element: ElementId
    prop: PropName


class ValueRange(_Spec, kw_only=True):
    """Complete when element.prop is within [min, max] (either bound may be open)."""

    element: ElementId
    prop: PropName
    min: float | None = None
    max: float | None = None


class Completion(_Spec, kw_only=True):
    """Exactly one of: `select` (the trainee selects this element), `value` (a live value in range)."""

    select: ElementId | None = None
    value: ValueRange | None = None


CompleteWhen = Literal["acknowledge"] | Completion


class Step(_Spec, kw_only=True):
    title: Title
    id: StepId | None = None  # stable id for records; default "step-<n>" (1-based)
    instructions: Annotated[str, msgspec.Meta(max_length=MAX_INSTRUCTIONS)] = ""
    highlight: Annotated[list[ElementId], msgspec.Meta(max_length=MAX_STEP_ELEMENTS)] = []
    viewpoint: StepView | None = None
    watch: Annotated[list[Watch], msgspec.Meta(max_length=MAX_STEP_ELEMENTS)] = []
    complete_when: CompleteWhen = "acknowledge"


class ProcedureFile(_Spec, kw_only=True):
    """The top level of a procedure file."""

    version: Literal[1] = 1
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)]
    title: Title
    description: Annotated[str, msgspec.Meta(max_length=MAX_INSTRUCTIONS)] = ""
    steps: Annotated[list[Step], msgspec.Meta(min_length=1, max_length=MAX_STEPS)]


class ProcedureError(ConfigFileError):
    """A procedure file problem, located: `entry` is e.g. "steps[2].complete_when.value.max"."""


def step_id(procedure: ProcedureFile, index: int) -> str:
    return procedure.steps[index].id or f"step-{index + 1}"


# --- schema -----------------------------------------------------------------------------------


def procedure_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of a procedure file, generated from the Structs."""
    return tidy(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_ID,
            "title": "TwinView procedure file",
            "description": "A guided procedure: ordered steps with views, highlights and completion conditions; "
            "see docs/PROCEDURES.md.",
            **msgspec.json.schema(ProcedureFile),
        }
    )


_validator = jsonschema.Draft202012Validator(procedure_schema())


def _schema_errors(data: Any, file: str) -> None:
    error = jsonschema.exceptions.best_match(_validator.iter_errors(data))
    if error is not None:
        raise ProcedureError(file, entry_name(error.absolute_path), error.message)


# --- semantic checks --------------------------------------------------------------------------


def _semantic_errors(
    spec: ProcedureFile, known: set[str] | None, bound: set[tuple[str, str]] | None
) -> Iterator[tuple[str, str]]:
    def unknown(element: str) -> bool:
        return known is not None and element not in known

    def unbound(element: str, prop: str) -> bool:  # a value nothing feeds would never show or complete
        return bound is not None and (element, prop) not in bound

    seen: dict[str, int] = {}
    for i, step in enumerate(spec.steps):
        where = f"steps[{i}]"
        sid = step_id(spec, i)
        if sid in seen:
            yield f"{where}.id", f"duplicate step id {sid!r} (also steps[{seen[sid]}])"
        seen.setdefault(sid, i)
        view = step.viewpoint
        listed = [
            ("highlight", step.highlight),
            *((f"viewpoint.{name}", getattr(view, name)) for name in ("hidden", "xray") if view),
        ]
        for field, elements in listed:
            for j, element in enumerate(elements):
                if unknown(element):
                    yield f"{where}.{field}[{j}]", f"unknown element {element!r}"
        for j, w in enumerate(step.watch):
            if unknown(w.element):
                yield f"{where}.watch[{j}].element", f"unknown element {w.element!r}"
            elif unbound(w.element, w.prop):
                yield f"{where}.watch[{j}].prop", f"no binding provides {w.element}.{w.prop}"
        cond = step.complete_when
        if isinstance(cond, Completion):
            yield from _condition_errors(f"{where}.complete_when", cond, unknown, unbound)


def _condition_errors(where: str, cond: Completion, unknown: Any, unbound: Any) -> Iterator[tuple[str, str]]:
    if (cond.select is None) == (cond.value is None):
        yield where, "needs exactly one of 'select' or 'value' (or the word 'acknowledge')"
    if cond.select is not None and unknown(cond.select):
        yield f"{where}.select", f"unknown element {cond.select!r}"
    v = cond.value
    if v is not None:
        if unknown(v.element):
            yield f"{where}.value.element", f"unknown element {v.element!r}"
        elif unbound(v.element, v.prop):
            yield f"{where}.value.prop", f"no binding provides {v.element}.{v.prop}"
        if v.min is None and v.max is None:
            yield f"{where}.value", "needs min or max"
        if v.min is not None and v.max is not None and not v.min <= v.max:
            yield f"{where}.value.max", f"max {v.max} must not be below min {v.min}"


# --- loading ----------------------------------------------------------------------------------


def parse_procedure(
    data: Any,
    file: str = "<procedure>",
    known_elements: set[str] | None = None,
    bound_props: set[tuple[str, str]] | None = None,
) -> ProcedureFile:
    """Validate already-parsed data (schema, then semantics: element ids when `known_elements` is given,
    watched and completion properties when `bound_props` (element, prop) pairs are). Numbers must be finite."""
    check_finite(data, file, ProcedureError)
    spec = convert(data, ProcedureFile, file, ProcedureError, _schema_errors)
    for entry, problem in _semantic_errors(spec, known_elements, bound_props):
        raise ProcedureError(file, entry, problem)
    return spec


def load_procedure(
    path: Path, known_elements: set[str] | None = None, bound_props: set[tuple[str, str]] | None = None
) -> ProcedureFile:
    """Read and validate a procedure file (YAML, or JSON by its .json suffix); raises ProcedureError."""
    return load_config(
        path, ProcedureError, lambda data, file: parse_procedure(data, file, known_elements, bound_props)
    )


PROCEDURE_SUFFIXES = (".procedure.yaml", ".procedure.yml", ".procedure.json")


def load_procedures(
    folder: Path, known_elements: set[str] | None = None, bound_props: set[tuple[str, str]] | None = None
) -> dict[str, ProcedureFile]:
    """Every `*.procedure.{yaml,yml,json}` in `folder` (or that one file), by procedure name."""
    paths = [folder] if folder.is_file() else sorted(p for p in folder.iterdir() if p.name.endswith(PROCEDURE_SUFFIXES))
    out: dict[str, ProcedureFile] = {}
    for path in paths:
        proc = load_procedure(path, known_elements, bound_props)
        if proc.name in out:
            raise ProcedureError(str(path), "name", f"duplicate procedure name {proc.name!r}")
        out[proc.name] = proc
    return out


def main(argv: list[str]) -> int:
    return config_main(
        argv,
        "scene.procedure_file",
        procedure_schema,
        load_procedure,
        lambda proc: f"procedure {proc.name!r}, {len(proc.steps)} steps",
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
