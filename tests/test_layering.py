"""`scene/` is content and knows no networking: no module under it imports `viewer_server`."""

from __future__ import annotations

import ast
from pathlib import Path

SCENE = Path(__file__).resolve().parents[1] / "scene"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_scene_imports_nothing_from_viewer_server() -> None:
    offenders = {
        str(path.relative_to(SCENE.parent)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == "viewer_server"
        )
        for path in sorted(SCENE.rglob("*.py"))
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_check_sees_every_form_of_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import viewer_server.hub\nfrom viewer_server.topics import Camera\nfrom . import model\n")
    assert _imported_modules(sample) == {"viewer_server.hub", "viewer_server.topics"}
