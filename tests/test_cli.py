"""`twinview` from the user's side: exit codes, one-line errors, untouched outputs on failure."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.mosquitto import free_port


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


def _ascii_ply_cloud(path: Path, n: int) -> None:
    rng = __import__("numpy").random.default_rng(1)
    pts = rng.random((n, 3))
    header = (
        f"ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_text(header + "\n".join(f"{x:.5f} {y:.5f} {z:.5f}" for x, y, z in pts) + "\n")


def test_build_writes_the_four_outputs_and_honours_the_point_budget(tmp_path: Path):
    import json

    scan = tmp_path / "scan.ply"
    _ascii_ply_cloud(scan, 5000)
    out = tmp_path / "out"
    proc = twinview("build", str(scan), "-o", str(out), "--point-budget", "500")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "scene.glb", "scene.usdc", "scene.usdz"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["class"] for e in manifest["elements"]] == ["PointCloud"]
    assert any("budget 500" in w for w in manifest["warnings"])
    assert set(manifest["stats"]["timings_s"]) >= {"import", "usd", "glb", "usdz", "total"}
    summary = json.loads(twinview("inspect", str(out), "--json").stdout)
    assert summary["elements"] == 1 and summary["by_class"] == {"PointCloud": 1}


def test_serve_refuses_a_bad_broker_url_with_exit_2(tmp_path: Path):
    scan = tmp_path / "scan.ply"
    _ascii_ply_cloud(scan, 50)
    assert twinview("build", str(scan), "-o", str(tmp_path / "scene")).returncode == 0
    proc = twinview("serve", str(tmp_path / "scene"), "--mqtt", "http://broker", "--port", "0",
                    "--data-dir", str(tmp_path / "data"))  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == "twinview: http://broker: expected mqtt://host[:port] or mqtts://host[:port]"


def test_demo_serves_the_sample_with_join_links_and_keeps_its_state_private(tmp_path: Path) -> None:
    """`twinview demo` as the README runs it: the state goes to $XDG_DATA_HOME/twinview, never the source tree."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    port = free_port()
    args = [sys.executable, "-m", "viewer_server.cli", "demo", "--no-browser", "--port", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=repo)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any(line.lstrip().startswith("admin") for line in lines):  # the last join link printed
            line = proc.stdout.readline()
            assert line, f"demo stopped: {''.join(lines)}{proc.stderr.read() if proc.stderr else ''}"
            lines.append(line)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as response:
            assert json.load(response)["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    links = {line.split()[0]: line.split()[1] for line in lines if "token=" in line}
    assert set(links) == {"viewer", "annotator", "presenter", "operator", "admin"}
    data = tmp_path / "xdg" / "twinview"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("secret.key", "twinview.sqlite"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert (data / "scenes" / "pump-station" / "scene.glb").is_file()
    assert not (repo / ".twinview").exists()


def test_build_bounds_come_from_the_flags_or_grow_with_the_file() -> None:
    from scene.sandbox import DEFAULT_MEMORY_MB, Limits
    from viewer_server.cli import _limits, parser

    given = parser().parse_args(["build", "plant.ifc", "-o", "out", "--max-cpu", "5000", "--timeout", "9000"])
    assert _limits(given) == Limits(cpu_s=5000, timeout_s=9000, memory_mb=DEFAULT_MEMORY_MB)
    assert _limits(parser().parse_args(["build", "plant.ifc", "-o", "out"])) == Limits()  # sized per file
