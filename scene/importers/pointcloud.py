"""Point clouds (PLY without faces, PCD, XYZ): one "PointCloud" element per file.

PLY is read by trimesh, PCD and XYZ by `pcd.py` (numpy). Scans carry no unit or axis metadata in these
formats; they are taken as metres, Y-up. Clouds above `ImportOptions.point_budget` are
voxel-downsampled in numpy (positions and colours averaged per voxel, the voxel size searched so the
count lands at or just under the budget) and the counts are reported as a warning. With
`mesh_scans=True` the cloud is Poisson-reconstructed into a surface by open3d, which only that needs: it
comes with the `scans` extra (`pip install 'twinview[scans]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.importers._common import element_id, new_scene, read_nonempty, require_finite, srgb_to_linear, timed
from scene.importers.pcd import read_pcd, read_xyz
from scene.model import Element, Material, Mesh, Primitive, Scene

# Voxel-size search: scans sample surfaces, so the occupied-voxel count goes as 1/size^2; each pass
# rescales the size by the square root of the miss. A few passes land in [FILL, 1] x budget; if they
# do not, the best result under the budget is used (or, failing that, a deterministic stride).
VOXEL_PASSES = 6
VOXEL_FILL_TARGET = 0.8  # accept any count between 80 % of the budget and the budget itself
VOXEL_AIM = 0.92  # aim inside that window, not at its edge, so one more pass is rarely needed
# Cells per axis are capped so the packed int64 voxel key cannot overflow (3 x 20 bits).
MAX_CELLS_PER_AXIS = 1 << 20

# Poisson reconstruction: octree depth 8 resolves ~1/256 of the extent, enough for a viewer preview
# in a couple of seconds; vertices in the sparsest 5 % are hallucinated surface far from any sample.
POISSON_DEPTH = 8
POISSON_DENSITY_QUANTILE = 0.05
NORMAL_NEIGHBOURS = 30  # neighbours for normal estimation (open3d's own recommended default)
NORMAL_ORIENT_K = 15  # neighbours for consistent normal orientation


def load(path: Path, options: ImportOptions) -> Scene:
    if options.mesh_scans:
        _open3d(path)  # before the read: a missing extra is said at once, not after minutes of parsing
    timings: dict[str, float] = {}
    with timed(timings, "read"):
        points, colors, importer = _read(path)
    if not len(points):
        raise ImportFailed(str(path), "contains no geometry (no points could be read)")
    require_finite(path, points, "points")
    scene = new_scene(path, "pointcloud", importer)
    original = len(points)
    if original > options.point_budget:
        with timed(timings, "downsample"):
            points, colors = downsample(points, colors, options.point_budget)
        budget = options.point_budget
        scene.warnings.append(f"{path.name}: voxel-downsampled {original} points to {len(points)} (budget {budget})")
    el_id = element_id(path, path.stem)
    material = scene.add_material(Material(name=f"{path.stem} points", roughness=1.0))
    if options.mesh_scans:
        with timed(timings, "reconstruct"):
            prim = reconstruct(path, _open3d_cloud(path, points, colors), material)
        cls, props = "Mesh", {"Scan": {"points": original, "reconstruction": "poisson"}}
    else:
        prim = Primitive(positions=points.astype(np.float32), indices=None, material=material, colors=_rgba(colors))
        cls, props = "PointCloud", {"Scan": {"points": original}}
    scene.meshes[el_id] = Mesh(el_id, [prim])
    scene.add(Element(el_id, path.stem, cls, mesh=el_id, properties=props))  # type: ignore[arg-type]
    scene.timings.update(timings)
    return scene


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Points (n, 3) float64, sRGB colours (n, 3) in 0..1 or None, and the importer's name."""
    suffix = path.suffix.lower()
    if suffix == ".pcd":
        return (*read_pcd(path, read_nonempty(path)), "twinview pcd")
    if suffix == ".xyz":
        return read_xyz(path, read_nonempty(path)), None, "twinview xyz"
    if suffix == ".ply":
        # trimesh reads PLY into numpy directly (and keeps inf as inf, where open3d aborts the
        # read half-way yet returns the zero-filled array), and it avoids open3d's import cost.
        import trimesh

        try:
            cloud = trimesh.load(path, file_type="ply")
        except Exception as exc:  # trimesh's PLY parser raises assorted types on damaged input
            raise ImportFailed(str(path), f"cannot parse PLY: {type(exc).__name__}: {exc}") from exc
        points = np.asarray(getattr(cloud, "vertices", np.zeros((0, 3))), dtype=np.float64)
        colors = getattr(cloud, "colors", None)
        rgb = None if colors is None or len(colors) != len(points) else np.asarray(colors)[:, :3] / 255.0
        return points, rgb, f"trimesh {trimesh.__version__}"
    raise ImportFailed(str(path), f"not a point-cloud file: {path.suffix} (PLY, PCD or XYZ)")


def _open3d(path: Path) -> Any:
    """open3d, or one line that says how to get it."""
    try:
        import open3d
    except ImportError as exc:
        raise ImportFailed(
            str(path), "--mesh-scans needs open3d, which is not installed: pip install 'twinview[scans]'"
        ) from exc
    return open3d


def _open3d_cloud(path: Path, points: np.ndarray, colors: np.ndarray | None) -> Any:
    o3d = _open3d(path)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if colors is not None:
        cloud.colors = o3d.utility.Vector3dVector(colors)
    return cloud


def downsample(points: np.ndarray, colors: np.ndarray | None, budget: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Average points (and colours) per voxel, with the voxel size chosen so the count fits `budget`."""
    lo = points.min(axis=0)
    extent = points.max(axis=0) - lo
    floor = float(extent.max()) / MAX_CELLS_PER_AXIS or 1e-9
    second, largest = np.sort(extent)[-2:]
    voxel = max(float(np.sqrt(max(second * largest, floor * floor) / budget)), floor)
    best: tuple[float, int] | None = None  # (voxel, count) of the fullest result under the budget
    for _ in range(VOXEL_PASSES):
        count = int(np.count_nonzero(np.diff(np.sort(_voxel_keys(points, lo, voxel)))) + 1)
        if count <= budget and (best is None or count > best[1]):
            best = (voxel, count)
        if VOXEL_FILL_TARGET * budget <= count <= budget:
            break
        voxel = max(voxel * float(np.sqrt(count / (budget * VOXEL_AIM))), floor)
    if best is None:  # still over after every pass: thin deterministically instead
        keep = np.arange(0, len(points), int(np.ceil(len(points) / budget)))
        return points[keep], None if colors is None else colors[keep]
    keys = _voxel_keys(points, lo, best[0])
    order = np.argsort(keys, kind="stable")
    group = np.concatenate([[0], np.cumsum(np.diff(keys[order]) != 0)])
    inverse = np.empty(len(points), dtype=np.int64)
    inverse[order] = group
    counts = np.bincount(inverse).astype(np.float64)[:, None]

    def mean(values: np.ndarray) -> np.ndarray:
        return np.column_stack([np.bincount(inverse, weights=values[:, i]) for i in range(values.shape[1])]) / counts

    return mean(points), None if colors is None else mean(colors)


def _voxel_keys(points: np.ndarray, lo: np.ndarray, voxel: float) -> np.ndarray:
    cells = np.minimum(((points - lo) / voxel).astype(np.int64), MAX_CELLS_PER_AXIS - 1)
    return (cells[:, 0] << 40) | (cells[:, 1] << 20) | cells[:, 2]


def reconstruct(path: Path, cloud: Any, material: int) -> Primitive:
    o3d = _open3d(path)
    if len(cloud.points) < 4 * NORMAL_ORIENT_K:
        raise ImportFailed(str(path), f"too few points ({len(cloud.points)}) for surface reconstruction")
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(NORMAL_NEIGHBOURS))
    cloud.orient_normals_consistent_tangent_plane(NORMAL_ORIENT_K)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=POISSON_DEPTH)
    densities = np.asarray(densities)
    mesh.remove_vertices_by_mask(densities < np.quantile(densities, POISSON_DENSITY_QUANTILE))
    mesh.compute_vertex_normals()
    return Primitive(
        positions=np.asarray(mesh.vertices, dtype=np.float32),
        indices=np.asarray(mesh.triangles, dtype=np.uint32),
        material=material,
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32),
        colors=_rgba(np.asarray(mesh.vertex_colors)) if mesh.has_vertex_colors() else None,
    )


def _rgba(colors: np.ndarray | None) -> np.ndarray | None:
    if colors is None:
        return None
    rgb = srgb_to_linear(np.clip(colors, 0.0, 1.0))  # scan colours are sRGB-encoded
    return np.hstack([rgb, np.ones((len(rgb), 1))]).astype(np.float32)
