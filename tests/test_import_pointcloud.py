"""Point clouds: PLY (via the mesh dispatcher), PCD and XYZ, budget downsampling, Poisson surfaces.

open3d costs ~2 s to import, so the generated fixtures share one module-scoped folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scene.errors import ImportFailed
from scene.importers import ImportOptions, loader_for
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


@pytest.mark.parametrize("kind", ["pcd", "xyz", "ply"])
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
