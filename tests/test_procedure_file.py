"""Procedure files: the sample loads against the sample twin's ids, the published schema is current, and
every kind of mistake is reported as FILE: ENTRY: PROBLEM (line N)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scene.bindings import load_bindings
from scene.procedure_file import (
    Completion,
    ProcedureError,
    load_procedure,
    load_procedures,
    procedure_schema,
    step_id,
)
from tests.live_server import write_scene
from viewer_server.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "pump_station.procedure.yaml"
SAMPLE_IDS = set(json.loads((REPO / "assets" / "pump_station.tags.json").read_text()).values())
SCHEMA_FILE = REPO / "docs" / "procedure.schema.json"

GOOD = """\
version: 1
name: p1-check
title: P-1 check
steps:
  - title: Look at the pump
    highlight: [P-1]
    viewpoint:
      camera: {position: [5, 2, 1], direction: [0, 0, -1], up: [0, 1, 0]}
  - id: pressure
    title: Pressure in range
    complete_when: {value: {element: PT-1, prop: pressure, min: 3, max: 5}}
  - title: Select the pipe
    complete_when: {select: PIPE-1}
"""
KNOWN = {"P-1", "PT-1", "PIPE-1"}


def write(tmp_path: Path, text: str, name: str = "x.procedure.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, name: str = "x.procedure.yaml") -> ProcedureError:
    with pytest.raises(ProcedureError) as info:
        load_procedure(write(tmp_path, text, name), KNOWN)
    return info.value


def test_the_sample_loads_against_the_sample_twin_and_its_bindings() -> None:
    bindings = load_bindings(REPO / "assets" / "pump_station.bindings.yaml", SAMPLE_IDS)
    proc = load_procedure(SAMPLE, SAMPLE_IDS, {(b.element, b.prop) for b in bindings.bindings})
    assert proc.name == "duty-pump-switch" and len(proc.steps) == 6
    conditions = [s.complete_when for s in proc.steps]
    assert conditions.count("acknowledge") == 2
    assert sum(isinstance(c, Completion) and c.value is not None for c in conditions) == 3
    assert sum(isinstance(c, Completion) and c.select is not None for c in conditions) == 1
    assert all(s.viewpoint is not None and s.highlight for s in proc.steps)


def test_the_published_schema_is_current_and_accepts_the_sample() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == procedure_schema(), (
        "regenerate: python -m scene.procedure_file --schema > docs/procedure.schema.json"
    )


def test_defaults_step_ids_and_json(tmp_path: Path) -> None:
    proc = load_procedure(write(tmp_path, GOOD), KNOWN)
    assert [step_id(proc, i) for i in range(3)] == ["step-1", "pressure", "step-3"]
    assert proc.steps[0].complete_when == "acknowledge"
    assert proc.steps[2].complete_when == Completion(select="PIPE-1")
    as_json = json.dumps({"name": "j", "title": "J", "steps": [{"title": "only"}]})
    assert load_procedure(write(tmp_path, as_json, "j.procedure.json")).steps[0].title == "only"


def test_a_folder_loads_every_procedure_by_name(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("p1-check", "other"), "b.procedure.yml")
    write(tmp_path, "not: a procedure", "notes.yaml")  # other files are ignored
    assert sorted(load_procedures(tmp_path, KNOWN)) == ["other", "p1-check"]
    write(tmp_path, GOOD, "c.procedure.yaml")
    with pytest.raises(ProcedureError, match="duplicate procedure name 'p1-check'"):
        load_procedures(tmp_path, KNOWN)


@pytest.mark.parametrize(
    ("text", "entry", "problem", "line"),
    [
        (GOOD.replace("[P-1]", "[P-9]"), "steps[0].highlight[0]", "unknown element 'P-9'", 6),
        (GOOD.replace("up: [0, 1, 0]}", "up: [0, 1, 0]}\n      xray: [P-1, WALL-9]"), "steps[0].viewpoint.xray[1]",
         "unknown element 'WALL-9'", 9),
        (GOOD.replace("element: PT-1", "element: GHOST"), "steps[1].complete_when.value.element", "unknown element",
         11),
        (GOOD.replace("min: 3, max: 5", "min: 5, max: 3"), "steps[1].complete_when.value.max", "below min 5", 11),
        (GOOD.replace(", min: 3, max: 5", ""), "steps[1].complete_when.value", "needs min or max", 11),
        (GOOD.replace("{select: PIPE-1}", "{select: PIPE-1, value: {element: PT-1, prop: pressure, min: 1}}"),
         "steps[2].complete_when", "exactly one of", 13),
        (GOOD.replace("{select: PIPE-1}", "{}"), "steps[2].complete_when", "exactly one of", 13),
        (GOOD.replace("{select: PIPE-1}", "done"), "steps[2].complete_when", "is not valid", 13),
        (GOOD.replace("{select: PIPE-1}", "{selct: PIPE-1}"), "steps[2].complete_when", "'selct' was unexpected", 13),
        (GOOD.replace("  - title: Select the pipe", "  - id: pressure\n    title: Select the pipe"),
         "steps[2].id", "duplicate step id 'pressure'", 12),
        (GOOD.replace("direction: [0, 0, -1]", "direction: [0, -1]"), "steps[0].viewpoint.camera.direction",
         "is too short", 8),
        (GOOD.replace("steps:\n", "steps: []\nx:\n"), "(top level)", "Additional properties", None),
        (GOOD.replace("position: [5, 2, 1]", "position: [5, .nan, 1]"), "steps[0].viewpoint.camera.position[1]",
         "nan is not a finite number", 8),
        (GOOD.replace("min: 3, max: 5", "min: 3, max: .inf"), "steps[1].complete_when.value.max",
         "inf is not a finite number", 11),
    ],
)  # fmt: skip
def test_errors_name_file_entry_problem_and_line(
    tmp_path: Path, text: str, entry: str, problem: str, line: int | None
) -> None:
    err = error_of(tmp_path, text)
    assert err.file.endswith("x.procedure.yaml") and err.entry == entry and problem in err.problem, str(err)
    assert err.line == line
    assert str(err).startswith(f"{err.file}: {entry}: ")


def test_a_step_view_says_what_is_hidden_and_x_rayed_and_clients_get_it(tmp_path: Path) -> None:
    from viewer_server.procedures import step_info

    text = GOOD.replace("up: [0, 1, 0]}", "up: [0, 1, 0]}\n      default_visible: false\n      hidden: [P-1]\n"
                        "      xray: [PT-1]")  # fmt: skip
    proc = load_procedure(write(tmp_path, text), KNOWN)
    view = step_info(proc, 0).viewpoint
    assert view is not None
    assert (view.default_visible, view.hidden, view.xray, view.xray_default) == (False, ["P-1"], ["PT-1"], False)
    assert view.selected == ["P-1"]  # the highlight


def test_watched_and_completion_properties_must_be_bound(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("prop: pressure", "prop: presure"))
    bound = {("PT-1", "pressure")}
    with pytest.raises(ProcedureError, match=r"steps\[1\].complete_when.value.prop: no binding provides PT-1.presure"):
        load_procedure(path, KNOWN, bound)
    assert load_procedure(path, KNOWN).steps[1].title  # without bindings there is nothing to check against


def test_bad_yaml_and_duplicate_keys_are_located(tmp_path: Path) -> None:
    err = error_of(tmp_path, "name: a\ntitle: [unclosed\n")
    assert err.entry.startswith("line ") and "bad YAML" in err.problem
    err = error_of(tmp_path, GOOD + "name: again\n")
    assert err.entry == "line 14, column 1" and "duplicate key 'name'" in err.problem


def test_bad_json_and_a_missing_file(tmp_path: Path) -> None:
    err = error_of(tmp_path, '{"name": ', "x.procedure.json")
    assert "bad JSON" in err.problem and err.entry.startswith("line 1")
    with pytest.raises(ProcedureError, match="No such file"):
        load_procedure(tmp_path / "missing.procedure.yaml")


def test_serve_refuses_a_bad_procedure_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, GOOD.replace("[P-1]", "[P-9]"))
    scene_dir = write_scene(tmp_path)
    argv = ["serve", str(scene_dir), "--procedures", str(bad), "--port", "0", "--data-dir", str(tmp_path / "d")]
    assert cli_main(argv) == 2
    assert capsys.readouterr().err.strip() == f"twinview: {bad}: steps[0].highlight[0]: unknown element 'P-9' (line 6)"
