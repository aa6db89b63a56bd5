"""USD (.usd/.usda/.usdc/.usdz) via usd-core: the composed stage becomes elements, one per prim.

Decisions:
- Composition stays inside the input's folder. Before the stage is composed, the layer graph is
  walked at Sdf level; layers (sublayers, references, payloads) that resolve outside the folder are
  *muted*, so USD never reads them, and each gets a warning. An asset path with a URL scheme is an
  error: a model must never make the importer reach the network.
- A composition arc to a file that does not exist is an error (the model is incomplete and USD would
  silently drop that branch). A layer that exists but whose format this usd-core build cannot read
  (MaterialX .mtlx in the PyPI wheel) is a warning: that is our capability gap, not a broken model.
- A stage left without geometry is an error, unless content was skipped (outside layers, unreadable
  formats): then it builds, possibly empty, and the warnings say what is missing.
- upAxis other than Y/Z and a non-positive metersPerUnit are errors (the geometry's meaning is unknown).
- A defaultPrim naming a missing prim is an error (unless skipped layers may define it): the file
  says what it shows and that thing is not there. (Layers meant to be referenced by explicit prim path,
  like usd-wg's FancyTeapot.usd, still compose fine through the layer that references them.)
- Values are read at the earliest time: the authored default, or the first sample of animated data.
- Every UsdGeom.Imageable prim (and every untyped container prim) is an element named after the prim,
  id "{file}:{prim path}", cls "Usd"+type; guides, invisible prims and non-imageable typed prims
  (materials, shaders, skeletons) are skipped with their subtrees.
- Vertices are scaled to metres; the Y-up correction lives in the matrices, which stay unit-free.
"""

from __future__ import annotations

import gc
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scene.errors import ImportFailed, first_line
from scene.importers import ImportOptions
from scene.importers._common import (
    adopted_id,
    element_id,
    hex_color,
    new_scene,
    require_finite,
    require_nonempty,
    sniff_image,
    timed,
    unique_id,
)
from scene.importers.normals import vertex_normals
from scene.model import Z_UP_TO_Y_UP, Element, Material, Mesh, Primitive, Scene
from scene.transforms import bake_linear, split_shear

# Segments used when tessellating implicit prims (Sphere, Cylinder, Cone, Capsule): smooth enough
# for a preview, a few hundred triangles each.
IMPLICIT_SEGMENTS = 32
SPHERE_SUBDIVISIONS = 3  # icosphere level: 1280 triangles

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")  # two letters or more: "C:" is a drive, not a scheme
TWINVIEW_LAYER_KEY = "twinview:version"  # customLayerData key scene/export/usd_stage.py writes

_PARSE_LOCATION = re.compile(r":(\d+):(\d+): ([^\n]*)")  # "<file>:11:2: Expected } at ..."
_ASSET_IN_MESSAGE = re.compile(r"@([^@]+)@")  # Pcp quotes asset paths as @path@
_PACKAGE_PART = re.compile(r"\[.*\]$")  # "pkg.usdz[inner.usdc]" -> the package file holds the layer


def load(path: Path, options: ImportOptions) -> Scene:
    from pxr import Sdf, Tf

    require_nonempty(path)
    try:
        root = Sdf.Layer.FindOrOpen(str(path))
    except Tf.ErrorException as exc:
        message, where = _parse_error(exc)
        raise ImportFailed(str(path), f"cannot read USD layer: {message}", where) from exc
    if root is None:
        raise ImportFailed(str(path), "cannot read USD layer (unknown format or damaged file)")
    warnings: list[str] = []
    blocked = _outside_layers(path, root, warnings)
    # Muted before the stage opens, so USD never reads them. Unmuted only once the stage is gone: a stage
    # still alive (an exception's traceback keeps one) would read them the moment they are unmuted.
    for layer in blocked:
        Sdf.Layer.AddToMutedLayers(layer)
    failure: Exception | None = None
    try:
        return _compose(path, root, warnings, blocked)
    except Exception as exc:  # kept without its traceback and chain (they hold the stage), raised once unmuted
        exc.add_note("".join(traceback.format_exception(exc)))  # for --debug
        exc.__cause__ = exc.__context__ = None
        failure = exc.with_traceback(None)
    finally:
        gc.collect()  # the stage, if a reference cycle held it
        for layer in blocked:
            Sdf.Layer.RemoveFromMutedLayers(layer)
    raise failure


def _compose(path: Path, root: Any, warnings: list[str], blocked: set[str]) -> Scene:
    from pxr import Tf, Usd

    timings: dict[str, float] = {}
    try:
        with timed(timings, "compose"):
            stage = Usd.Stage.Open(root, Usd.Stage.LoadAll)
        with timed(timings, "convert"):
            scene = _build(path, stage, warnings, blocked)
    except Tf.ErrorException as exc:
        raise ImportFailed(str(path), f"USD composition failed: {first_line(exc)}") from exc
    scene.timings.update(timings)
    return scene


def _parse_error(exc: Exception) -> tuple[str, str]:
    """USD's parser message without its C++ source location, plus "line N" when it names one."""
    match = _PARSE_LOCATION.search(str(exc))
    if match is None:
        return first_line(exc), ""
    return match.group(3).strip().rstrip("'").strip(), f"line {match.group(1)}"


def _outside_layers(path: Path, root: Any, warnings: list[str]) -> set[str]:
    """Walk composition arcs (and value clips) at Sdf level; return layer paths that leave the input's folder."""
    from pxr import Sdf, Tf

    folder = path.resolve().parent
    blocked: set[str] = set()
    seen: set[str] = {root.identifier}
    pending = [root]
    while pending:
        layer = pending.pop()
        for asset in [*layer.GetCompositionAssetDependencies(), *_clip_assets(path, layer)]:
            if _SCHEME.match(asset):
                raise ImportFailed(str(path), "composition arc names a URL, which TwinView never fetches", asset)
            absolute = layer.ComputeAbsolutePath(asset)
            if absolute in seen:
                continue
            seen.add(absolute)
            on_disk = Path(_PACKAGE_PART.sub("", absolute))
            if not on_disk.is_absolute():  # unresolvable (missing) assets come back unanchored
                on_disk = Path(_PACKAGE_PART.sub("", layer.realPath or layer.identifier)).parent / on_disk
            if not on_disk.resolve().is_relative_to(folder):
                blocked.add(absolute)
                referrer = Path(layer.realPath or layer.identifier).name
                warnings.append(f"skipped layer {asset} (referenced by {referrer}): it lies outside the model's folder")
                continue
            try:
                child = Sdf.Layer.FindOrOpen(absolute)
            except Tf.ErrorException:
                child = None  # reported by composition below, with USD's own wording
            if child is not None:
                pending.append(child)
    return blocked


def _clip_assets(path: Path, layer: Any) -> list[str]:
    """Asset paths of value clips, which USD opens as layers but does not list as dependencies."""
    from pxr import Sdf

    found: list[str] = []

    def visit(spec_path: Any) -> None:
        if not spec_path.IsPrimPath():
            return
        spec = layer.GetPrimAtPath(spec_path)
        if spec is None or not spec.HasInfo("clips"):
            return
        for clip_set in spec.GetInfo("clips").values():
            found.extend(asset.path for asset in clip_set.get("assetPaths", []))
            template = clip_set.get("templateAssetPath")
            if template and (_SCHEME.match(template) or ".." in Path(template).parts or template.startswith("/")):
                # Templates expand to many names at run time; only plain local patterns are accepted.
                raise ImportFailed(str(path), "value-clip template points outside the model's folder", template)

    layer.Traverse(Sdf.Path.absoluteRootPath, visit)
    return found


def _build(path: Path, stage: Any, warnings: list[str], blocked: set[str]) -> Scene:
    from pxr import Usd, UsdGeom

    up = str(stage.GetMetadata("upAxis") or UsdGeom.GetFallbackUpAxis())
    if up not in ("Y", "Z"):
        raise ImportFailed(str(path), f'invalid upAxis {up!r}: must be "Y" or "Z"', "upAxis")
    mpu = float(UsdGeom.GetStageMetersPerUnit(stage))
    if not np.isfinite(mpu) or mpu <= 0:
        raise ImportFailed(str(path), f"invalid metersPerUnit {mpu!r}: must be a positive number", "metersPerUnit")
    scene = new_scene(path, "usd", f"usd-core {'.'.join(map(str, Usd.GetVersion()))}", _unit_name(mpu), up)
    scene.warnings.extend(warnings)
    skipped = bool(blocked)
    for error in stage.GetCompositionErrors():
        message = str(error).splitlines()[0]
        if any(layer in message for layer in blocked):
            continue  # already reported as a skipped layer
        asset = _ASSET_IN_MESSAGE.search(message)
        if "Could not open asset" in message and "Cannot determine file format" not in message and asset:
            raise ImportFailed(str(path), "composition arc names a file that cannot be opened", asset.group(1))
        skipped = True
        scene.warnings.append(f"composition: {message}")
    default = stage.GetRootLayer().defaultPrim
    if default and not stage.GetPrimAtPath(f"/{default}") and not skipped:  # skipped layers may define it
        raise ImportFailed(str(path), f"defaultPrim {default!r} names no prim in the stage", "layer metadata")
    _StageWalker(path, stage, scene, up, mpu).walk()
    has_geometry = any(p.positions.size for m in scene.meshes.values() for p in m.primitives)
    if not has_geometry and not skipped:
        raise ImportFailed(str(path), "contains no geometry")
    return scene


def _unit_name(mpu: float) -> str:
    names = {1.0: "m", 0.01: "cm", 0.001: "mm", 0.0254: "in", 0.3048: "ft"}
    return next((name for value, name in names.items() if np.isclose(mpu, value)), f"{mpu:g} m")


class _StageWalker:
    def __init__(self, path: Path, stage: Any, scene: Scene, up: str, mpu: float) -> None:
        from pxr import Usd, UsdGeom

        self.path, self.stage, self.scene, self.mpu = path, stage, scene, mpu
        self.time = Usd.TimeCode.EarliestTime()
        self.xforms = UsdGeom.XformCache(self.time)
        self.up = Z_UP_TO_Y_UP if up == "Z" else np.eye(4)
        self.materials: dict[Any, _Binding] = {}
        self.ids: dict[str, str] = {}
        # A stage TwinView wrote (scene.usdc) carries twin ids: only those prims are elements, and
        # each element's `Geometry` child subtree folds back into the element's mesh.
        self.twin_stage = TWINVIEW_LAYER_KEY in stage.GetRootLayer().customLayerData
        self.prototype_meshes: dict[str, str] = {}

    def walk(self) -> None:
        from pxr import Usd

        predicate = Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)
        prims = iter(Usd.PrimRange(self.stage.GetPseudoRoot(), predicate))
        next(prims)  # the pseudo-root itself
        for prim in prims:
            if not self._wanted(prim):
                prims.PruneChildren()
                continue
            if self.twin_stage:
                self._twin_element(prim, prims)
                continue
            el_id = element_id(self.path, str(prim.GetPath()))
            matrix, baked = split_shear(self._matrix(prim))
            element = Element(el_id, prim.GetName(), f"Usd{prim.GetTypeName() or 'Prim'}", self._parent(prim), matrix)
            element.mesh = self._mesh(prim, baked)
            self._add(prim, element)

    def _add(self, prim: Any, element: Element) -> None:
        self.ids[str(prim.GetPath())] = element.id
        self.scene.add(element)

    def _parent(self, prim: Any) -> str | None:
        """The nearest ancestor that became an element."""
        parent = prim.GetParent()
        while parent and not parent.IsPseudoRoot():
            if str(parent.GetPath()) in self.ids:
                return self.ids[str(parent.GetPath())]
            parent = parent.GetParent()
        return None

    def _twin_element(self, prim: Any, prims: Any) -> None:
        from scene.export.usd_stage import GEOMETRY, read_properties

        twin = adopted_id(_string_attr(prim, "twin:id"))
        if twin is None:
            if prim.GetName() == GEOMETRY and str(prim.GetParent().GetPath()) in self.ids:
                prims.PruneChildren()  # already folded into its element's mesh
            return  # containers such as /World and /World/Looks are not elements
        matrix, baked = split_shear(self._matrix(prim))
        element = Element(
            id=unique_id(self.scene, twin),
            name=_string_attr(prim, "twin:name") or prim.GetName(),
            cls=_string_attr(prim, "twin:class") or f"Usd{prim.GetTypeName() or 'Prim'}",
            parent=self._parent(prim),
            matrix=matrix,
            properties=read_properties(prim),
        )
        geometry = prim.GetChild(GEOMETRY)
        if geometry:
            element.mesh = self._folded_mesh(geometry, matrix, baked)
        self._add(prim, element)

    def _folded_mesh(self, geometry: Any, element_matrix: np.ndarray, baked: np.ndarray | None) -> str | None:
        """Every Mesh/Points/Gprim under `geometry`, in the element's frame, as one shared mesh."""
        from pxr import Usd

        prototype = str(geometry.GetPrototype().GetPath()) if geometry.IsInstance() and baked is None else None
        if prototype in self.prototype_meshes:
            return self.prototype_meshes[prototype]
        to_element = np.linalg.inv(element_matrix)
        primitives = []
        for part in Usd.PrimRange(geometry, Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)):
            relative = to_element @ self._matrix(part)
            for primitive in self._primitives(part):
                moved = bake_linear(primitive, relative[:3, :3])
                moved.positions += relative[:3, 3].astype(np.float32)
                primitives.append(moved if baked is None else bake_linear(moved, baked))
        if not primitives:
            return None
        mesh_id = unique_id(self.scene, element_id(self.path, f"mesh:{geometry.GetPath()}"))
        self.scene.meshes[mesh_id] = Mesh(mesh_id, primitives)
        if prototype is not None:
            self.prototype_meshes[prototype] = mesh_id
        return mesh_id

    def _wanted(self, prim: Any) -> bool:
        from pxr import UsdGeom

        if not prim.GetTypeName():
            return True  # untyped "def" prims are plain containers
        if not prim.IsA(UsdGeom.Imageable):
            return False
        imageable = UsdGeom.Imageable(prim)
        if imageable.GetPurposeAttr().Get() == UsdGeom.Tokens.guide:
            return False
        return imageable.GetVisibilityAttr().Get(self.time) != UsdGeom.Tokens.invisible

    def _matrix(self, prim: Any) -> np.ndarray:
        world = np.array(self.xforms.GetLocalToWorldTransform(prim), dtype=np.float64).T  # USD is row-vector
        world[:3, 3] *= self.mpu  # vertices are scaled to metres, so translations are too
        return self.up @ world

    def _mesh(self, prim: Any, baked: np.ndarray | None) -> str | None:
        """Shared per prototype; an element whose transform shears gets its own copy with the shear baked in."""
        key = str(prim.GetPrimInPrototype().GetPath()) if prim.IsInstanceProxy() else str(prim.GetPath())
        mesh_id = element_id(self.path, f"mesh:{key}" if baked is None else f"mesh:{prim.GetPath()}:sheared")
        if mesh_id in self.scene.meshes:
            return mesh_id
        primitives = self._primitives(prim)
        if not primitives:
            return None
        if baked is not None:
            primitives = [bake_linear(p, baked) for p in primitives]
        self.scene.meshes[mesh_id] = Mesh(mesh_id, primitives)
        return mesh_id

    def _primitives(self, prim: Any) -> list[Primitive]:
        from pxr import UsdGeom

        where = str(prim.GetPath())
        if prim.IsA(UsdGeom.Mesh):
            return self._mesh_primitives(UsdGeom.Mesh(prim), where)
        if prim.IsA(UsdGeom.Points):
            points = UsdGeom.Points(prim).GetPointsAttr().Get(self.time)
            if not points:
                return []
            positions = self._positions(np.asarray(points, dtype=np.float64), where)
            return [Primitive(positions, None, self._material(prim).index)]
        if prim.IsA(UsdGeom.Gprim) and (shape := _implicit(prim, self.time)) is not None:
            positions = self._positions(shape[0], where)
            return [Primitive(positions, shape[1], self._material(prim).index, vertex_normals(positions, shape[1]))]
        return []

    def _positions(self, points: np.ndarray, where: str) -> np.ndarray:
        require_finite(self.path, points, where)
        return (points * self.mpu).astype(np.float32)

    def _mesh_primitives(self, mesh: Any, where: str) -> list[Primitive]:
        """One primitive per GeomSubset material (plus the rest), welded unless data varies per face-corner."""
        from pxr import UsdShade

        topo = _topology(mesh, self.time, self.scene, where)
        if topo is None:
            return []
        prim = mesh.GetPrim()
        rest = np.ones(len(topo.corners), dtype=bool)  # triangles not claimed by a subset
        groups: dict[int, tuple[_Binding, np.ndarray]] = {}
        for subset in UsdShade.MaterialBindingAPI(prim).GetMaterialBindSubsets():
            faces = np.asarray(subset.GetIndicesAttr().Get(self.time) or [], dtype=np.int64)
            chosen = np.isin(topo.tri_face, faces) & rest
            binding = self._material(subset.GetPrim())
            if chosen.any():
                rest &= ~chosen
                previous = groups.get(binding.index, (binding, np.zeros_like(rest)))[1]
                groups[binding.index] = (binding, previous | chosen)
        if rest.any():
            binding = self._material(prim)
            previous = groups.get(binding.index, (binding, np.zeros_like(rest)))[1]
            groups[binding.index] = (binding, previous | rest)
        return [self._mesh_primitive(mesh, topo, binding, mask, where) for binding, mask in groups.values()]

    def _mesh_primitive(self, mesh: Any, topo: _Topology, binding: _Binding, mask: np.ndarray, where: str) -> Primitive:
        from pxr import UsdGeom

        prim = mesh.GetPrim()
        normals = _primvar(prim, "normals", self.time, 3)
        if normals is None and (authored := _rows(mesh.GetNormalsAttr().Get(self.time), 3)) is not None:
            normals = (authored, str(mesh.GetNormalsInterpolation()))
        colors = _primvar(prim, binding.color_primvar or "displayColor", self.time, 3)
        if colors is not None and not binding.color_primvar and colors[1] == "constant":
            colors = None  # a constant displayColor under a bound material is only a preview colour
        uvs = _primvar(prim, binding.uv_primvar, self.time, 2) if binding.material.texture else None
        present = [a for a in (normals, colors, uvs) if a is not None]
        welded = all(interp in _PER_POINT for _, interp in present)
        if welded:
            positions, triangles = topo.points, topo.flat[topo.corners[mask]]
        else:
            positions, triangles = topo.points[topo.flat], topo.corners[mask]
        normal_arr, color_arr, uv_arr = (None if a is None else topo.expand(*a, welded) for a in (normals, colors, uvs))
        used, triangles = np.unique(triangles, return_inverse=True)
        triangles = triangles.reshape(-1, 3).astype(np.uint32)
        positions = self._positions(positions[used], where)
        if normal_arr is not None:
            normal_arr = normal_arr[used]
            length = np.linalg.norm(normal_arr, axis=1, keepdims=True)
            normal_arr = np.divide(normal_arr, length, out=np.zeros_like(normal_arr), where=length > 0)
        if mesh.GetOrientationAttr().Get(self.time) == UsdGeom.Tokens.leftHanded:
            triangles = triangles[:, [0, 2, 1]]
        if color_arr is not None:
            color_arr = np.hstack([color_arr[used][:, :3], np.ones((len(used), 1))]).astype(np.float32)
        if uv_arr is not None:
            uv_arr = uv_arr[used][:, :2].astype(np.float32)
            uv_arr[:, 1] = 1.0 - uv_arr[:, 1]  # USD's st has v up; the model uses glTF's v down
        return Primitive(
            positions=positions,
            indices=triangles,
            material=binding.index,
            normals=vertex_normals(positions, triangles) if normal_arr is None else normal_arr.astype(np.float32),
            colors=color_arr,
            uvs=uv_arr,
        )

    def _material(self, prim: Any) -> _Binding:
        """Bound UsdPreviewSurface (constants and diffuse texture), else the displayColor, else grey."""
        from pxr import UsdShade

        bound, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        if bound:
            key: Any = str(bound.GetPath())
            if key not in self.materials:
                self.materials[key] = self._preview_surface(bound)
            return self.materials[key]
        return self._display_color(prim)

    def _display_color(self, prim: Any) -> _Binding:
        from pxr import UsdGeom

        gprim = UsdGeom.Gprim(prim) if prim.IsA(UsdGeom.Gprim) else None
        primvar = _primvar(prim, "displayColor", self.time, 3) if gprim else None
        if primvar is not None and primvar[1] != "constant":
            key: Any = "vertex colours"  # per-vertex colours over a white material
            rgb: tuple[float, ...] = (1.0, 1.0, 1.0)
        else:
            rgb = tuple(float(c) for c in primvar[0][0]) if primvar is not None else (0.8, 0.8, 0.8)
            key = rgb
        opacity = _primvar(prim, "displayOpacity", self.time, 1) if gprim else None
        alpha = float(opacity[0][0]) if opacity is not None and opacity[1] == "constant" else 1.0
        key = (key, alpha)
        if key not in self.materials:
            material = Material(name=f"displayColor {hex_color(rgb)}", base_color=(*rgb, alpha))  # type: ignore[arg-type]
            color_primvar = "displayColor" if rgb == (1.0, 1.0, 1.0) and primvar is not None else None
            self.materials[key] = _Binding(self.scene.add_material(material), material, color_primvar, "st")
        return self.materials[key]

    def _preview_surface(self, bound: Any) -> _Binding:
        material = Material(name=bound.GetPrim().GetName())
        color_primvar, uv_primvar = None, "st"
        shader = bound.ComputeSurfaceSource()[0]
        if shader and shader.GetIdAttr().Get() == "UsdPreviewSurface":
            for name in ("diffuseColor", "metallic", "roughness", "opacity"):
                shader_input = shader.GetInput(name)
                if not shader_input:
                    continue
                source = _connected_shader(shader_input)
                if source is None:
                    value = shader_input.Get()
                    if value is None:
                        continue
                    if name == "diffuseColor":
                        material.base_color = (
                            float(value[0]),
                            float(value[1]),
                            float(value[2]),
                            material.base_color[3],
                        )
                    elif name == "opacity":
                        material.base_color = (*material.base_color[:3], float(value))
                    else:
                        setattr(material, name, float(value))
                elif name == "diffuseColor":
                    kind = source.GetIdAttr().Get() or ""
                    material.base_color = (1.0, 1.0, 1.0, material.base_color[3])  # colour comes from the source
                    if kind == "UsdUVTexture":
                        self._texture(material, source)
                        uv_primvar = _reader_varname(source.GetInput("st")) or "st"
                    elif kind.startswith("UsdPrimvarReader"):
                        color_primvar = str(source.GetInput("varname").Get() or "displayColor")
        return _Binding(self.scene.add_material(material), material, color_primvar, uv_primvar)

    def _texture(self, material: Material, texture: Any) -> None:
        """Read a UsdUVTexture's file (inside the model's folder or package only) into the material."""
        from pxr import Ar

        asset = texture.GetInput("file").Get() if texture.GetInput("file") else None
        if asset is None:
            return
        authored, resolved = asset.path, asset.resolvedPath
        if _SCHEME.match(authored) or not resolved:
            why = "is a remote URL and was not fetched" if _SCHEME.match(authored) else "was not found"
            self.scene.warnings.append(f"{material.name}: texture {authored} {why}; drawn untextured")
            return
        if not Path(_PACKAGE_PART.sub("", resolved)).resolve().is_relative_to(self.path.resolve().parent):
            self.scene.warnings.append(f"{material.name}: texture {authored} lies outside the model's folder; skipped")
            return
        data = bytes(Ar.GetResolver().OpenAsset(Ar.ResolvedPath(resolved)).GetBuffer())
        mime = sniff_image(data)
        if mime is None:
            self.scene.warnings.append(f"{material.name}: texture {authored} is neither PNG nor JPEG; drawn untextured")
            return
        material.texture, material.texture_mime = data, mime


@dataclass(frozen=True, slots=True)
class _Binding:
    """A scene material plus where its per-vertex inputs come from."""

    index: int
    material: Material
    color_primvar: str | None  # diffuse colour read from this primvar (e.g. displayColor)
    uv_primvar: str  # texture coordinates for the diffuse texture


@dataclass(frozen=True, slots=True)
class _Topology:
    """A polygon mesh fan-triangulated: each triangle is three face-corners (indices into `flat`)."""

    points: np.ndarray  # (n, 3) float64
    flat: np.ndarray  # (c,) faceVertexIndices
    corners: np.ndarray  # (m, 3) corner indices
    tri_face: np.ndarray  # (m,) source face of each triangle
    corner_face: np.ndarray  # (c,) source face of each corner

    def expand(self, values: np.ndarray, interpolation: str, welded: bool) -> np.ndarray | None:
        """Primvar values per point (welded) or per face-corner; None when their count is inconsistent."""
        count = len(self.points) if welded else len(self.flat)
        if interpolation == "constant":
            return np.repeat(values[:1], count, axis=0) if len(values) else None
        if interpolation in _PER_POINT:
            if len(values) < len(self.points):
                return None
            return values if welded else values[self.flat]
        if interpolation == "faceVarying" and len(values) == len(self.flat):
            return values
        if interpolation == "uniform" and len(values) > int(self.corner_face.max(initial=0)):
            return values[self.corner_face]
        return None


_PER_POINT = ("vertex", "varying", "constant")


def _string_attr(prim: Any, name: str) -> str | None:
    attribute = prim.GetAttribute(name)
    value = attribute.Get() if attribute else None
    return value if isinstance(value, str) and value else None


def _primvar(prim: Any, name: str, time: Any, width: int) -> tuple[np.ndarray, str] | None:
    """Flattened primvar values as (n, width) rows and their interpolation; None if absent or ill-typed."""
    from pxr import UsdGeom

    primvar = UsdGeom.PrimvarsAPI(prim).GetPrimvar(name)
    if not primvar or not primvar.HasValue():
        return None
    rows = _rows(primvar.ComputeFlattened(time), width)
    return None if rows is None else (rows, str(primvar.GetInterpolation()))


def _rows(values: Any, width: int) -> np.ndarray | None:
    # Authored data can have the wrong type (the usd-wg schema tests author `int normals = 7`).
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if array.ndim == 1 and width == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != width or not len(array):
        return None
    return array


def _connected_shader(shader_input: Any) -> Any:
    from pxr import UsdShade

    if not shader_input.HasConnectedSource():
        return None
    source = shader_input.GetConnectedSource()[0]
    return UsdShade.Shader(source.GetPrim())


def _reader_varname(st_input: Any) -> str | None:
    reader = _connected_shader(st_input) if st_input else None
    if reader is None or not reader.GetInput("varname"):
        return None
    value = reader.GetInput("varname").Get()
    return str(value) if value else None


def _topology(mesh: Any, time: Any, scene: Scene, where: str) -> _Topology | None:
    """Fan-triangulate faceVertexCounts (holes and degenerate faces dropped)."""
    points = mesh.GetPointsAttr().Get(time)
    counts = mesh.GetFaceVertexCountsAttr().Get(time)
    flat = mesh.GetFaceVertexIndicesAttr().Get(time)
    if not points or not counts or not flat:
        return None
    positions = np.asarray(points, dtype=np.float64)
    counts_arr = np.asarray(counts, dtype=np.int64)
    flat_arr = np.asarray(flat, dtype=np.int64)
    if counts_arr.sum() != len(flat_arr) or (counts_arr < 0).any():
        scene.warnings.append(f"{where}: faceVertexCounts do not match faceVertexIndices; mesh skipped")
        return None
    if len(flat_arr) and (flat_arr.min() < 0 or flat_arr.max() >= len(positions)):
        scene.warnings.append(f"{where}: face vertex index beyond the point count; mesh skipped")
        return None
    starts = np.concatenate([[0], np.cumsum(counts_arr)[:-1]])
    keep = counts_arr >= 3
    holes = np.asarray(mesh.GetHoleIndicesAttr().Get(time) or [], dtype=np.int64)
    keep[holes[(holes >= 0) & (holes < len(keep))]] = False
    fans = np.where(keep, counts_arr - 2, 0)
    face = np.repeat(np.arange(len(counts_arr)), fans)
    k = np.arange(fans.sum()) - np.repeat(np.cumsum(fans) - fans, fans)
    base = starts[face]
    corners = np.stack([base, base + k + 1, base + k + 2], axis=1)
    corner_face = np.repeat(np.arange(len(counts_arr)), counts_arr)
    return _Topology(positions, flat_arr, corners, face, corner_face)


def _implicit(prim: Any, time: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Tessellate Cube/Sphere/Cylinder/Cone/Capsule with their authored (or fallback) sizes."""
    import trimesh.creation as tc

    type_name = prim.GetTypeName()

    def attr(name: str) -> float:
        return float(prim.GetAttribute(name).Get(time))

    if type_name == "Cube":
        shape = tc.box(extents=[attr("size")] * 3)
        shape.unmerge_vertices()  # own vertices per face, so the cube's normals stay flat
    elif type_name == "Sphere":
        shape = tc.icosphere(subdivisions=SPHERE_SUBDIVISIONS, radius=attr("radius"))
    elif type_name in ("Cylinder", "Cone", "Capsule"):
        radius, height = attr("radius"), attr("height")
        if type_name == "Cylinder":
            shape = tc.cylinder(radius=radius, height=height, sections=IMPLICIT_SEGMENTS)
        elif type_name == "Cone":
            shape = tc.cone(radius=radius, height=height, sections=IMPLICIT_SEGMENTS)
            shape.apply_translation([0.0, 0.0, -height / 2.0])  # USD cones are centred on the origin
        else:
            shape = tc.capsule(height=height, radius=radius, count=[IMPLICIT_SEGMENTS, IMPLICIT_SEGMENTS])
        axis = str(prim.GetAttribute("axis").Get(time) or "Z")
        # trimesh builds along Z; rotate Z onto the authored axis.
        to_axis = {"X": [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], "Y": [[1, 0, 0], [0, 0, -1], [0, 1, 0]]}
        if axis in to_axis:
            matrix = np.eye(4)
            matrix[:3, :3] = to_axis[axis]
            shape.apply_transform(matrix)
    else:
        return None
    return np.asarray(shape.vertices, dtype=np.float64), np.asarray(shape.faces, dtype=np.uint32)
