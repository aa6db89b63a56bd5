"""Point clouds (PLY without faces, PCD, XYZ) via open3d: one "PointCloud" element per file.

Scans carry no unit or axis metadata in these formats; they are taken as metres, Y-up. Clouds above
`ImportOptions.point_budget` are voxel-downsampled (colours averaged per voxel) and the counts are
reported as a warning. With `mesh_scans=True` the cloud is Poisson-reconstructed into a surface.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.importers._common import element_id, new_scene, read_nonempty, require_finite, srgb_to_linear, timed
from scene.model import Element, Material, Mesh, Primitive, Scene

# Voxel-size search: each pass rescales the voxel by the overshoot (as for a surface, count ~ 1/size^2)
# and a few passes land within the budget; the last resort is a deterministic uniform stride.
VOXEL_PASSES = 6
VOXEL_OVERSHOOT_MARGIN = 1.05  # aim 5 % under the budget so rounding does not leave us just above it

# Poisson reconstruction: octree depth 8 resolves ~1/256 of the extent, enough for a viewer preview
# in a couple of seconds; vertices in the sparsest 5 % are hallucinated surface far from any sample.
POISSON_DEPTH = 8
POISSON_DENSITY_QUANTILE = 0.05
NORMAL_NEIGHBOURS = 30  # neighbours for normal estimation (open3d's own recommended default)
NORMAL_ORIENT_K = 15  # neighbours for consistent normal orientation


def load(path: Path, options: ImportOptions) -> Scene:
    data = read_nonempty(path)
    timings: dict[str, float] = {}
    with timed(timings, "read"):
        points, colors, importer = _read(path, data)
    if not len(points):
        raise ImportFailed(str(path), "contains no geometry (no points could be read)")
    require_finite(path, points, "points")
    scene = new_scene(path, "pointcloud", importer)
    original = len(points)
    if original > options.point_budget or options.mesh_scans:
        cloud = _open3d_cloud(points, colors)
        if original > options.point_budget:
            with timed(timings, "downsample"):
                cloud = downsample(cloud, options.point_budget)
            kept, budget = len(cloud.points), options.point_budget
            scene.warnings.append(f"{path.name}: voxel-downsampled {original} points to {kept} (budget {budget})")
        points = np.asarray(cloud.points)
        colors = np.asarray(cloud.colors) if cloud.has_colors() else None
    el_id = element_id(path, path.stem)
    material = scene.add_material(Material(name=f"{path.stem} points", roughness=1.0))
    if options.mesh_scans:
        with timed(timings, "reconstruct"):
            prim = reconstruct(path, cloud, material)
        cls, props = "Mesh", {"Scan": {"points": original, "reconstruction": "poisson"}}
    else:
        prim = Primitive(positions=points.astype(np.float32), indices=None, material=material, colors=_rgba(colors))
        cls, props = "PointCloud", {"Scan": {"points": original}}
    scene.meshes[el_id] = Mesh(el_id, [prim])
    scene.add(Element(el_id, path.stem, cls, mesh=el_id, properties=props))  # type: ignore[arg-type]
    scene.timings.update(timings)
    return scene


def _read(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Points (n, 3) float64, sRGB colours (n, 3) in 0..1 or None, and the importer's name."""
    if path.suffix.lower() == ".ply":
        # trimesh reads PLY into numpy directly (and keeps inf as inf, where open3d aborts the
        # read half-way yet returns the zero-filled array), and it avoids open3d's import cost.
        import trimesh

        try:
            cloud = trimesh.load(io.BytesIO(data), file_type="ply")
        except Exception as exc:  # trimesh's PLY parser raises assorted types on damaged input
            raise ImportFailed(str(path), f"cannot parse PLY: {type(exc).__name__}: {exc}") from exc
        points = np.asarray(getattr(cloud, "vertices", np.zeros((0, 3))), dtype=np.float64)
        colors = getattr(cloud, "colors", None)
        rgb = None if colors is None or len(colors) != len(points) else np.asarray(colors)[:, :3] / 255.0
        return points, rgb, f"trimesh {trimesh.__version__}"
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(path), remove_nan_points=False, remove_infinite_points=False)
    colors = np.asarray(cloud.colors) if cloud.has_colors() else None
    return np.asarray(cloud.points), colors, f"open3d {o3d.__version__}"


def _open3d_cloud(points: np.ndarray, colors: np.ndarray | None) -> Any:
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if colors is not None:
        cloud.colors = o3d.utility.Vector3dVector(colors)
    return cloud


def downsample(cloud: Any, budget: int) -> Any:
    """Voxel-downsample to at most `budget` points, choosing the voxel size from the bounding box."""
    extent = np.asarray(cloud.get_max_bound()) - np.asarray(cloud.get_min_bound())
    volume = float(np.prod(np.maximum(extent, extent.max() * 1e-3)))
    voxel = (volume / budget) ** (1.0 / 3.0)  # a filled volume: an underestimate for surface scans
    result = cloud
    for _ in range(VOXEL_PASSES):
        result = cloud.voxel_down_sample(voxel)
        count = len(result.points)
        if count <= budget:
            return result
        voxel *= np.sqrt(count / budget) * VOXEL_OVERSHOOT_MARGIN
    stride = int(np.ceil(len(result.points) / budget))
    return result.uniform_down_sample(stride)


def reconstruct(path: Path, cloud: Any, material: int) -> Primitive:
    import open3d as o3d

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
