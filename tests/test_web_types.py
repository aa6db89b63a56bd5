"""The web client type-checks (`npm run typecheck`: tsc over src/ with the protocol's generated declarations),
and the check bites: a handler that reads a field the protocol does not have, or reads one as the wrong type,
and a protocol change the client was not updated for, each fail it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.web_helpers import REPO

CLIENT = REPO / "web_client"
TSC = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
# tsc takes about a second here; a hung one must not hold the suite.
TSC_TIMEOUT_S = 120


def tsc(*args: str, cwd: Path = CLIENT) -> subprocess.CompletedProcess[str]:
    if not TSC.is_file():
        pytest.skip("web_client/node_modules/typescript is missing: run setup.sh (npm ci)")
    return subprocess.run(
        ["node", str(TSC), *args], cwd=cwd, capture_output=True, text=True, timeout=TSC_TIMEOUT_S, check=False
    )


def test_the_client_type_checks():
    result = tsc("-p", "tsconfig.json")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_generated_declarations_compile_on_their_own():
    """tsconfig's skipLibCheck skips every .d.ts, ours too: check it by itself, strictly."""
    result = tsc("--ignoreConfig", "--noEmit", "--strict", "src/protocol_types.d.ts")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def _mutate(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name} changed: update this test's mutation {old!r}"
    path.write_text(text.replace(old, new))


def test_a_client_out_of_step_with_the_protocol_fails_the_check(tmp_path: Path):
    shutil.copytree(CLIENT / "src", tmp_path / "src")
    shutil.copy(CLIENT / "tsconfig.json", tmp_path)
    (tmp_path / "node_modules").symlink_to(CLIENT / "node_modules")
    src = tmp_path / "src"
    # A handler reads a field `saved` does not have; another puts a string where the protocol has a number.
    _mutate(src / "topics" / "panel.js", "this.savedAt = msg.revision;", "this.savedAt = msg.rev;")
    _mutate(src / "state.js", "this.seq = snap.seq;", "this.seq = snap.epoch;")
    # The protocol renames a field the client reads (the declarations regenerated, the client not updated).
    _mutate(src / "protocol_types.d.ts", "  u?: string;\n", "  unit?: string;\n")
    result = tsc("-p", "tsconfig.json", cwd=tmp_path)
    assert result.returncode != 0
    errors = result.stdout
    assert "src/topics/panel.js(" in errors and "Property 'rev' does not exist on type 'Saved'" in errors
    assert "src/state.js(" in errors and "Type 'string' is not assignable to type 'number'" in errors
    assert "src/ui/properties.js(" in errors and "Property 'u' does not exist on type 'PropState'" in errors


def test_three_typings_match_three():
    pkg = json.loads((CLIENT / "package.json").read_text())
    minor = pkg["dependencies"]["three"].rsplit(".", 1)[0]
    assert pkg["devDependencies"]["@types/three"].rsplit(".", 1)[0] == minor
