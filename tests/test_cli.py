"""`twinview` from the user's side: exit codes, one-line errors, untouched outputs on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def twinview(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "viewer_server.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("plan.dwg", b"AC1032", "unknown file type '.dwg'"),
        ("empty.ifc", b"", "file is empty"),
        ("scan.e57", b"ASTM-E57", "unknown file type '.e57'"),
    ],
)
def test_unreadable_input_gets_exit_2_and_one_line(tmp_path: Path, name: str, content: bytes, reason: str):
    src = tmp_path / name
    src.write_bytes(content)
    proc = twinview("build", str(src), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"twinview: {src}: {reason}")
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_missing_file_is_named(tmp_path: Path):
    proc = twinview("build", str(tmp_path / "nope.ifc"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"twinview: {tmp_path / 'nope.ifc'}: file not found"


def test_failed_build_keeps_the_previous_output(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    bad = tmp_path / "broken.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00")
    proc = twinview("build", str(bad), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    assert (out / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.glb", "out"]


def test_debug_shows_the_traceback(tmp_path: Path):
    bad = tmp_path / "broken.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00")
    proc = twinview("--debug", "build", str(bad), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"twinview: {bad}: ")


def test_inspect_rejects_what_is_not_a_manifest(tmp_path: Path):
    fake = tmp_path / "manifest.json"
    fake.write_text("[1, 2")
    proc = twinview("inspect", str(fake))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"twinview: {fake}: not a TwinView manifest")
