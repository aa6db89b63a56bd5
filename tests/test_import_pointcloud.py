"""Point clouds: PLY (via the mesh dispatcher), PCD and XYZ, budget downsampling, Poisson surfaces.

The fixtures are written by open3d (the `scans` extra, in the test install), an independent PCD writer;
open3d costs ~2 s to import, so they share one module-scoped folder. Reading needs no open3d.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scene.errors import ImportFailed
from scene.importers import ImportOptions, loader_for
from scene.importers._common import srgb_to_linear as load_linear
from scene.importers.pcd import lzf_decompress
from scene.model import Scene

# A 100 x 100 grid on a slightly wavy sheet: 10 000 coloured points, like one scan tile.
GRID = 100


def load(path: Path, **options: object) -> Scene:
    return loader_for(path)(path, ImportOptions(**options))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import open3d as o3d

    folder = tmp_path_factory.mktemp("clouds")
    u, v = np.meshgrid(np.linspace(0, 2, GRID), np.linspace(0, 2, GRID))
    points = np.stack([u.ravel(), 0.05 * np.sin(3 * u.ravel()), v.ravel()], axis=1)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.colors = o3d.utility.Vector3dVector(np.tile([[1.0, 0.5, 0.0]], (len(points), 1)))
    out = {"pcd": folder / "tile.pcd", "xyz": folder / "tile.xyz", "ply": folder / "tile.ply"}
    o3d.io.write_point_cloud(str(out["pcd"]), cloud)
    out["pcd-ascii"], out["pcd-compressed"] = folder / "ascii.pcd", folder / "compressed.pcd"
    o3d.io.write_point_cloud(str(out["pcd-ascii"]), cloud, write_ascii=True)
    o3d.io.write_point_cloud(str(out["pcd-compressed"]), cloud, compressed=True)
    o3d.io.write_point_cloud(str(out["xyz"]), cloud)
    o3d.io.write_point_cloud(str(out["ply"]), cloud)
    directions = np.random.default_rng(1).normal(size=(3000, 3))
    sphere = directions / np.linalg.norm(directions, axis=1, keepdims=True)  # unit sphere samples
    out["sphere"] = folder / "sphere.pcd"
    o3d.io.write_point_cloud(str(out["sphere"]), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sphere)))
    return out


@pytest.mark.parametrize("relative", ["mesh/ply/points_ascii.ply", "mesh/ply/points_bin.ply"])
def test_faceless_ply_from_the_corpus_is_a_point_cloud(shared_data: Path, relative: str) -> None:
    scene = load(shared_data / relative)
    (element,) = scene.elements.values()
    assert element.cls == "PointCloud" and element.name == Path(relative).stem
    (prim,) = scene.meshes[element.mesh].primitives
    assert prim.is_points and len(prim.positions) == 5
    assert scene.inputs[0].format == "pointcloud"


@pytest.mark.parametrize("kind", ["pcd", "pcd-ascii", "pcd-compressed", "xyz", "ply"])
def test_generated_clouds_load_whole_under_the_budget(clouds: dict[str, Path], kind: str) -> None:
    scene = load(clouds[kind])
    (element,) = scene.elements.values()
    (prim,) = scene.meshes[element.mesh].primitives
    assert len(prim.positions) == GRID * GRID and not scene.warnings
    if kind != "xyz":  # XYZ carries no colour
        # sRGB (1, 0.5, 0) is stored linear: 0.5 becomes ~0.214.
        np.testing.assert_allclose(prim.colors[0], [1.0, 0.214, 0.0, 1.0], atol=0.01)


@pytest.mark.parametrize("budget", [5000, 1000, 50])
def test_voxel_downsampling_lands_at_or_under_the_budget(clouds: dict[str, Path], budget: int) -> None:
    scene = load(clouds["pcd"], point_budget=budget)
    (element,) = scene.elements.values()
    count = scene.meshes[element.mesh].point_count
    assert 0.7 * budget <= count <= budget  # the voxel search fills most of the budget
    assert any(f"{GRID * GRID} points to {count}" in w for w in scene.warnings)
    assert element.properties["Scan"]["points"] == GRID * GRID


def test_mesh_scans_reconstructs_a_closed_surface(clouds: dict[str, Path]) -> None:
    scene = load(clouds["sphere"], mesh_scans=True)
    (element,) = scene.elements.values()
    assert element.cls == "Mesh" and scene.triangle_count > 1000
    lo, hi = scene.world_bounds(element.id)
    np.testing.assert_allclose(hi - lo, [2.0, 2.0, 2.0], atol=0.15)


def test_empty_and_non_finite_clouds_fail(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(ImportFailed, match="3 NaN/infinite"):
        load(shared_data / "malformed/mesh/float_inf_point_cloud.ply")
    empty = tmp_path / "empty.xyz"
    empty.write_text("\n")
    with pytest.raises(ImportFailed, match="contains no geometry"):
        load(empty)
    nan = tmp_path / "nan.xyz"
    nan.write_text("0 0 0\nnan 1 2\n1 1 1\n")
    with pytest.raises(ImportFailed, match="1 NaN/infinite"):
        load(nan)


@pytest.mark.parametrize("kind", ["pcd", "pcd-ascii", "pcd-compressed", "xyz"])
def test_pcd_and_xyz_read_the_same_points_as_open3d(clouds: dict[str, Path], kind: str) -> None:
    import open3d as o3d

    theirs = o3d.io.read_point_cloud(str(clouds[kind]))
    (mesh,) = load(clouds[kind]).meshes.values()
    (prim,) = mesh.primitives
    np.testing.assert_allclose(prim.positions, np.asarray(theirs.points), atol=1e-6)
    if theirs.has_colors():
        np.testing.assert_allclose(prim.colors[:, :3], load_linear(np.asarray(theirs.colors)), atol=1e-3)


def test_lzf_back_references_may_overlap_what_they_copy() -> None:
    # "ab", then 6 bytes from distance 2: the reference reads what it is writing.
    assert lzf_decompress(bytes([1, ord("a"), ord("b"), 0x80, 1]), 8) == b"abababab"
    with pytest.raises(ValueError):
        lzf_decompress(bytes([1, ord("a"), ord("b"), 0x80, 9]), 8)  # distance 10 reaches before the start


@pytest.mark.parametrize(
    ("header", "body", "error"),
    [
        ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1000000000000\nDATA binary\n", b"\0" * 24, "truncated"),
        ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS -3\nDATA binary\n", b"\0" * 24, "whole number"),
        ("FIELDS x y\nSIZE 4 4\nTYPE F F\nPOINTS 1\nDATA binary\n", b"\0" * 8, "no x, y, z"),
        ("FIELDS x y z\nSIZE 3 4 4\nTYPE F F F\nPOINTS 1\nDATA binary\n", b"\0" * 11, "SIZE 3"),
        ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 2\nDATA lzma\n", b"", "DATA must be"),
        ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 100000000\nDATA binary_compressed\n",
         np.array([4, 1_200_000_000], "<u4").tobytes() + b"\x00abc", "not LZF"),
        ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 1\nDATA binary_compressed\n",
         np.array([4, 12], "<u4").tobytes() + b"\x1fabc", "damaged"),
        ("VERSION 0.7\n", b"", "no DATA line"),
    ],
)  # fmt: skip
def test_hostile_pcd_headers_fail_with_one_clear_reason(tmp_path: Path, header: str, body: bytes, error: str) -> None:
    path = tmp_path / "hostile.pcd"
    path.write_bytes(header.encode() + body)
    with pytest.raises(ImportFailed, match=error):
        load(path)


def test_mesh_scans_without_open3d_says_what_to_install(clouds: dict[str, Path], tmp_path: Path) -> None:
    # A stand-in package that fails to import, as a missing one does, ahead of the real open3d on the path.
    (tmp_path / "no_open3d" / "open3d").mkdir(parents=True)
    (tmp_path / "no_open3d" / "open3d" / "__init__.py").write_text("raise ImportError('no open3d here')\n")
    repo = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": f"{tmp_path / 'no_open3d'}:{repo}", "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "viewer_server.cli", "build", str(clouds["sphere"]), "-o", str(tmp_path / "out")]
    done = subprocess.run([*args, "--mesh-scans"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "pip install 'twinview[scans]'" in done.stderr and not (tmp_path / "out").exists()
    plain = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)  # reading needs no open3d
    assert plain.returncode == 0, plain.stderr
