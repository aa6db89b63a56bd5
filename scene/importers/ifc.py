"""IFC importer: IfcOpenShell parses and tessellates, we build the canonical scene.

- IFC2X3, IFC4 and IFC4X3_ADD2 (IFC 4.3); a FILE_SCHEMA naming IFC 4.3 otherwise (IFC4X3, _TC1,
  _ADD1, _RC1.._RC4) is read as IFC4X3_ADD2, and refused naming the entities that schema lacks.
- Every IfcProduct (plus the IfcProject root) becomes an Element keyed by its GlobalId, placed in
  the spatial tree (aggregation, nesting, voids, containment); psets, qtos and key attributes
  become its properties (a set without a name under its class, plus its GlobalId where needed).
- Geometry comes from `ifcopenshell.geom.iterator`. The manifold kernel is ~10x faster than
  opencascade but supports fewer constructs (no sweeps, tapered extrusions; circles only when
  given a segment count) and can crash natively. Kernels run in forked workers, one per core,
  that stream shapes back. With `ifc_kernel="auto"`, what manifold skipped, built only in part,
  or did not reach before a crash is then tessellated with opencascade, and what is known to
  crash it (openings in surface models) or that it does not make (swept disks: a plant's bent
  pipes) goes to opencascade directly, in the same workers. This process builds the
  hierarchy and properties while the workers tessellate.
- Shapes with the same iterator geometry id share one Mesh; each mesh is split into one
  Primitive per IFC surface style.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import multiprocessing as mp
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from scene.errors import ImportFailed
from scene.importers import ElementsReady, ImportOptions
from scene.importers._common import new_scene, read_nonempty, timed, unique_id
from scene.importers.normals import crease_normals
from scene.lifeline import die_with_parent
from scene.model import (
    Z_UP_TO_Y_UP,
    Element,
    Material,
    Mesh,
    Primitive,
    PropertySets,
    PropertyUnits,
    PropertyValue,
    Scene,
)

# Kernels tried in order for each ImportOptions.ifc_kernel value.
KERNELS: dict[str, tuple[str, ...]] = {
    "auto": ("manifold", "opencascade"),
    "manifold": ("manifold",),
    "opencascade": ("opencascade",),
}
# Kernel workers (see _start_workers): runs of products per worker, and the fewest products worth a
# process of their own. Run numbers travel as single bytes.
CHUNKS_PER_WORKER = 4
MIN_PRODUCTS_PER_WORKER = 8
# ...and the most products in one run: on a 100k-element plant, runs of 12 500 left one worker alone with
# the last run for minutes after the other had finished.
MAX_RUN_PRODUCTS = 1000
MAX_CHUNKS = 255
# Segments per full circle for the manifold kernel, which refuses circles unless told (0 is
# its default); 24 keeps the chord error under 1 % of the radius.
CIRCLE_SEGMENTS = 24
# Open surface models (not closed solids), which manifold cannot cut openings into.
SURFACE_MODELS = frozenset({"IfcFaceBasedSurfaceModel", "IfcShellBasedSurfaceModel"})
# Body items the manifold kernel does not make (it has no sweep along a curve: a plant's bent pipes). With
# ifc_kernel "auto" their products go to opencascade at once (`_manifold_verdict`).
MANIFOLD_UNSUPPORTED = frozenset({"IfcSweptDiskSolid"})
MANIFOLD_CRASHES, MANIFOLD_LEAVES_OUT = "crashes", "leaves out"
# Products kept in the hierarchy without a mesh: openings are already cut from their hosts and
# spaces are volumes of air that would hide everything inside them.
NO_MESH_CLASSES = ("IfcOpeningElement", "IfcSpace")
# Representation identifiers that describe a 3D body; products with only plan symbols, axes or
# bounding boxes are not expected to produce a mesh.
BODY_IDENTIFIERS = frozenset({"Body", "Body-Fallback", "Body-FallBack", "Facetation", "Mesh"})
# Representation types that are never a body, for representations exported without an identifier.
NON_BODY_TYPES = frozenset(
    {"Curve", "Curve2D", "Curve3D", "GeometricCurveSet", "GeometricSet", "Annotation2D", "Point", "BoundingBox"}
)
# Warnings name at most this many examples and count the rest: a list of thousands helps nobody.
MAX_EXAMPLES = 5
# Direct attributes copied into the "Attributes" property set when set (PredefinedType and the type
# name are added from the element or its type).
ATTRIBUTES = ("GlobalId", "Description", "ObjectType", "Tag", "LongName")
# The SI unit of measures a project often leaves without a unit assignment (the sample twin's power and
# pressure): IFC then means the SI unit, and BIM viewers show it so. Others with a project unit get that.
SI_MEASURE_UNITS = {
    "IfcPowerMeasure": "W", "IfcPressureMeasure": "Pa", "IfcThermodynamicTemperatureMeasure": "K",
    "IfcMassFlowRateMeasure": "kg/s", "IfcVolumetricFlowRateMeasure": "m3/s", "IfcRotationalFrequencyMeasure": "Hz",
    "IfcFrequencyMeasure": "Hz", "IfcElectricCurrentMeasure": "A", "IfcElectricVoltageMeasure": "V",
    "IfcEnergyMeasure": "J", "IfcForceMeasure": "N", "IfcMassMeasure": "kg", "IfcTimeMeasure": "s",
}  # fmt: skip
# Keys of get_psets' nested property dicts that describe the property rather than hold its value.
_PROPERTY_META = frozenset({"id", "type", "Name", "Description"})
# Attributes of a property that hold a measure (single and bounded values).
_MEASURED = ("NominalValue", "UpperBoundValue", "LowerBoundValue")
# Bytes read from the end of a .ifc file to check it ends with the STEP terminator.
TAIL_BYTES = 512
# IFC 4.3 (ISO 16739-1:2024) is IFC4X3_ADD2, which IfcOpenShell reads; files also name it IFC4X3, _TC1,
# _ADD1 or a pre-release (_RC1.._RC4). Those are read as IFC4X3_ADD2 when their entities exist there.
IFC4X3 = "IFC4X3_ADD2"
IFC4X3_SPELLINGS = re.compile(r"IFC4X3(_(TC1|ADD1|ADD2|RC\d))?")
# The HEADER section holding FILE_SCHEMA: real headers are a few hundred bytes.
HEADER_BYTES = 64 * 1024
_FILE_SCHEMA = re.compile(rb"FILE_SCHEMA\s*\(\s*\(\s*'[^']*'\s*\)\s*\)", re.IGNORECASE)
_UNKNOWN_ENTITY = re.compile(r"Entity with name '(\w+)' not found in schema")
# The STEP physical file's first keyword and its terminator; a file without the latter was cut short.
STEP_MAGIC = b"ISO-10303-21;"
END_MARKER = b"END-ISO-10303-21;"
# Named length units (IfcSIUnit prefix + name, or conversion-based unit name) -> short label.
UNIT_LABELS = {
    "METRE": "m", "MILLIMETRE": "mm", "CENTIMETRE": "cm", "DECIMETRE": "dm", "KILOMETRE": "km",
    "INCH": "in", "FOOT": "ft", "YARD": "yd", "MILE": "mi",
}  # fmt: skip
# Characters of an entity's STEP text quoted in a warning.
ENTITY_TEXT_CHARS = 80
_LOG_ENTRY = re.compile(r"^\[(\w+)\](?: \[\w+\])? \[[^\]]+\] ", re.MULTILINE)
_OFFSET = re.compile(r" at offset (\d+)")
_UNITS_UNDETECTED = "Unable to detect unit information"
# A product the kernel built without some of its items ("{GlobalId} ... failed to convert").
_PARTIAL = re.compile(r"\{([0-9A-Za-z_$]{22})\} (?:Manifold kernel: failed to convert|No support)")


@dataclass(frozen=True, slots=True)
class _Style:
    key: str  # IfcSurfaceStyle instance id, or the kernel's default material name
    name: str
    rgba: tuple[float, float, float, float]
    metallic: float


@dataclass(frozen=True, slots=True)
class _Shape:
    """One tessellated product, as plain bytes so it crosses the process boundary cheaply."""

    product: int  # STEP instance id
    geometry: str  # iterator geometry id: equal for products sharing a representation
    matrix: tuple[float, ...]  # 16 floats, column-major, metres
    verts: bytes  # float64 xyz, metres
    faces: bytes  # int32 triangles
    material_ids: bytes  # int32 per triangle, index into styles
    styles: tuple[_Style, ...]


def load(path: Path, options: ImportOptions, ready: ElementsReady | None = None) -> Scene:
    import ifcopenshell

    timings: dict[str, float] = {}
    with timed(timings, "parse"):
        model, parse_errors = _open(path)
    projects = model.by_type("IfcProject")
    if not projects:
        raise ImportFailed(str(path), "no IfcProject: not a complete IFC model", "DATA section")
    kernels = KERNELS.get(options.ifc_kernel)
    if kernels is None:
        raise ImportFailed(str(path), f"unknown ifc_kernel {options.ifc_kernel!r}; use one of {', '.join(KERNELS)}")
    threads = options.threads or os.cpu_count() or 1
    products = model.by_type("IfcProduct")
    expected = [p for p in products if _expects_mesh(p)]

    structures: list[_Structure] = []

    def meanwhile() -> None:
        structures.append(_structure(model, projects, products, {p.id() for p in expected}))
        if ready is not None:
            ready(structures[0].elements)

    with timed(timings, "tessellate"):  # the spatial tree, properties and elements are made meanwhile
        done = _tessellate(model, kernels, threads, expected, meanwhile)
    if done.failed and len(done.failed) == len(expected):
        said = done.errors[0] if done.errors else "the kernel produced no shape"
        reason = "; ".join([f"no element could be tessellated: {said}", *parse_errors])
        raise ImportFailed(str(path), reason, _describe(done.failed[0]))

    used = sorted({k for _, k in done.shapes.values()}, key=kernels.index) or [kernels[0]]
    scene = new_scene(
        path,
        "ifc",
        f"ifcopenshell {ifcopenshell.version} ({'+'.join(used)})",
        source_units=_unit_label(model),
        source_up_axis="Z",
    )
    (structure,) = structures
    scene.warnings.extend([*parse_errors, *done.events, *structure.warnings])
    if done.failed:
        said = f"; the kernel said: {'; '.join(done.errors[:MAX_EXAMPLES])}" if done.errors else ""
        scene.warnings.append(f"{len(done.failed)} element(s) failed to tessellate: {_examples(done.failed)}{said}")
    with timed(timings, "assemble"):
        _fill(scene, model, structure, done)
    scene.timings.update(timings)
    return scene


# ---------------------------------------------------------------------------------------------
# Opening and checking the file


def _open(path: Path) -> tuple[Any, list[str]]:
    """Open the model; refuse what cannot be read. Dangling references come back as warnings:
    real exports have them (example.ifc) and IfcOpenShell reads the attribute as unset. A FILE_SCHEMA
    that IfcOpenShell does not know but that is IFC 4.3 under another name is read as IFC4X3_ADD2."""
    import ifcopenshell

    if path.suffix.lower() == ".ifczip":
        read_nonempty(path)
    else:
        _require_terminated(path)
    ifcopenshell.get_log()  # drop messages left by earlier calls in this process
    try:
        model = ifcopenshell.open(str(path))
    except ifcopenshell.SchemaError as exc:
        schema = str(exc).removeprefix("Unsupported schema: ").strip()
        if not IFC4X3_SPELLINGS.fullmatch(schema.upper()):
            raise ImportFailed(str(path), _unsupported(schema), "FILE_SCHEMA") from None
        return _open_as(path, schema, IFC4X3)
    except (ifcopenshell.Error, OSError, zipfile.BadZipFile, RuntimeError) as exc:
        errors = _log_errors(ifcopenshell.get_log())
        reason = f"not a readable IFC file: {errors[0][0] if errors else exc}"
        where = _line_of(path, errors[0][1]) if errors else ""
        if not where and "header" in str(exc):
            where = "HEADER section"
        raise ImportFailed(str(path), reason, where) from None
    return model, _parse_warnings(path, _log_errors(ifcopenshell.get_log()))


def _parse_warnings(path: Path, errors: list[tuple[str, int | None]]) -> list[str]:
    if not errors:
        return []
    listed = "; ".join(f"{msg} ({_line_of(path, offset)})" for msg, offset in errors[:MAX_EXAMPLES])
    more = f" and {len(errors) - MAX_EXAMPLES} more" if len(errors) > MAX_EXAMPLES else ""
    return [f"{len(errors)} parse error(s), the attributes concerned read as unset: {listed}{more}"]


def _unsupported(schema: str) -> str:
    import ifcopenshell.ifcopenshell_wrapper as wrapper

    if not schema.upper().startswith("IFC"):  # e.g. a CAD exchange file (AP203/AP214) named .ifc
        return f"a STEP file in schema {schema}, not IFC: import it as .step"
    known = ", ".join(n for n in wrapper.schema_names() if n.startswith("IFC"))
    return f"IFC schema {schema} is not supported (TwinView reads {known}): export the model in one of those"


def _open_as(path: Path, schema: str, target: str) -> tuple[Any, list[str]]:
    """Read `path` as if its FILE_SCHEMA said `target` (from a copy with that header: IfcOpenShell picks
    the schema from the header alone). Refused when the data uses entities `target` does not have."""
    import ifcopenshell

    with tempfile.TemporaryDirectory(prefix="twinview-ifc-") as tmp, _step_text(path) as src:
        copy = Path(tmp) / "model.ifc"
        with copy.open("wb") as dst:
            head = src.read(HEADER_BYTES)
            dst.write(_FILE_SCHEMA.sub(f"FILE_SCHEMA(('{target}'))".encode(), head, count=1))
            shutil.copyfileobj(src, dst)
        ifcopenshell.get_log()
        try:
            model = ifcopenshell.open(str(copy))
        except (ifcopenshell.Error, OSError, RuntimeError) as exc:
            raise ImportFailed(str(path), f"not a readable IFC file: {exc}") from None
    errors = _log_errors(ifcopenshell.get_log())
    unknown = sorted({m.group(1) for msg, _ in errors if (m := _UNKNOWN_ENTITY.search(msg))})
    if unknown:
        shown = ", ".join(unknown[:MAX_EXAMPLES]) + (" …" if len(unknown) > MAX_EXAMPLES else "")
        raise ImportFailed(
            str(path),
            f"IFC schema {schema} uses entities that {target} (IFC 4.3 as published) does not have ({shown}):"
            f" export the model as {target}",
            "FILE_SCHEMA",
        )
    return model, [f"FILE_SCHEMA {schema} read as {target} (IFC 4.3)", *_parse_warnings(path, errors)]


@contextlib.contextmanager
def _step_text(path: Path) -> Iterator[BinaryIO]:
    """The STEP text of a .ifc, or of the first .ifc inside a .ifczip (as IfcOpenShell picks it)."""
    if path.suffix.lower() != ".ifczip":
        with path.open("rb") as fh:
            yield fh
        return
    with zipfile.ZipFile(path) as zf:
        member = next((n for n in zf.namelist() if n.lower().endswith(".ifc")), None)
        if member is None:
            raise ImportFailed(str(path), "no .ifc file inside the .ifczip")
        with zf.open(member) as fh:
            yield fh


def _require_terminated(path: Path) -> None:
    """A STEP file cut short still parses up to the cut; refuse it instead of importing half a model."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(STEP_MAGIC) + TAIL_BYTES).lstrip()
            fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
            tail = fh.read().rstrip()
    except OSError as exc:
        raise ImportFailed(str(path), f"cannot read file: {exc.strerror or exc}") from exc
    if not head:
        raise ImportFailed(str(path), "empty file: contains no geometry")
    if head.startswith(STEP_MAGIC) and not tail.endswith(END_MARKER):
        where = f"line {_count_lines(path.read_bytes())}"
        raise ImportFailed(str(path), "file is truncated: it ends without END-ISO-10303-21;", where)


def _log_errors(log: str) -> list[tuple[str, int | None]]:
    """IfcOpenShell's logged errors as (message without its offset, byte offset or None)."""
    entries = list(_LOG_ENTRY.finditer(log))
    ends = [e.start() for e in entries[1:]] + [len(log)] if entries else []
    out = []
    for entry, end in zip(entries, ends, strict=True):
        if entry.group(1) != "error":
            continue
        message = log[entry.end() : end].strip()
        m = _OFFSET.search(message)
        out.append((message[: m.start()] + message[m.end() :] if m else message, int(m.group(1)) if m else None))
    return out


def _line_of(path: Path, offset: int | None) -> str:
    if offset is None:
        return ""
    if path.suffix.lower() == ".ifczip":
        return f"byte {offset} of the zipped model"
    with path.open("rb") as fh:
        return f"line {_count_lines(fh.read(offset))}"


def _count_lines(data: bytes) -> int:
    return data.count(b"\n") + 1


def _unit_label(model: Any) -> str:
    import ifcopenshell.util.unit

    unit = ifcopenshell.util.unit.get_project_unit(model, "LENGTHUNIT")
    if unit is None:
        return "m"
    name = (unit.Prefix or "") + unit.Name if unit.is_a("IfcSIUnit") else (unit.Name or "").upper()
    return UNIT_LABELS.get(name, name.lower())


def _expects_mesh(product: Any) -> bool:
    if product.is_a() in NO_MESH_CLASSES or not product.Representation:
        return False
    return any(_is_body(r) for r in product.Representation.Representations or ())


def _is_body(representation: Any) -> bool:
    identifier = representation.RepresentationIdentifier
    if identifier:
        return identifier in BODY_IDENTIFIERS
    return representation.RepresentationType not in NON_BODY_TYPES  # unnamed: judge by its kind


def _describe(product: Any) -> str:
    name = f" {product.Name!r}" if getattr(product, "Name", None) else ""
    return f"#{product.id()} {product.is_a()}{name}"


def _examples(products: list[Any]) -> str:
    shown = ", ".join(_describe(p) for p in products[:MAX_EXAMPLES])
    return shown + (f" and {len(products) - MAX_EXAMPLES} more" if len(products) > MAX_EXAMPLES else "")


# ---------------------------------------------------------------------------------------------
# Tessellation


@dataclass(frozen=True, slots=True)
class _Creased:
    """A shape's triangles with crease-aware normals, ready to split into primitives."""

    positions: np.ndarray  # float32
    normals: np.ndarray  # float32
    faces: np.ndarray  # uint32 triangles
    material_ids: np.ndarray  # int32 per triangle, index into the shape's styles


@dataclass(slots=True)
class _Tessellation:
    shapes: dict[int, tuple[_Shape, str]]  # product id -> (shape, kernel that made it)
    creased: dict[str, _Creased]  # geometry id -> its normals, computed while the kernel still runs
    failed: list[Any]  # products no kernel could tessellate
    events: list[str]  # kernel crashes and retries, reported as warnings
    errors: list[str]  # the last kernel's own error messages

    def keep(self, shapes: Iterable[tuple[_Shape, str]]) -> None:
        """Record shapes made by a kernel (see `_placed`)."""
        for shape, kernel in shapes:
            if shape.geometry not in self.creased:
                self.creased[shape.geometry] = _crease(shape)
            self.shapes[shape.product] = (_placed(shape), kernel)


def _tessellate(
    model: Any, kernels: tuple[str, ...], threads: int, expected: list[Any], meanwhile: Callable[[], None]
) -> _Tessellation:
    """Run the kernels in order, each on what the previous ones left, in forked workers (one per
    thread; see `_start_workers`), so that a crash of a kernel with a fallback after it is
    survivable. What manifold is known to crash on goes to its fallback at once, in the same
    workers. A small last batch stays in this process. `meanwhile` runs exactly once, while
    workers tessellate if there are any."""
    done = _Tessellation({}, {}, expected, [], [])
    pending: Callable[[], None] | None = meanwhile
    for i, kernel in enumerate(kernels):
        fallback = kernels[i + 1] if i + 1 < len(kernels) else None
        verdicts = {p.id(): _manifold_verdict(p) for p in done.failed} if kernel == "manifold" else {}
        unsafe = [p for p in done.failed if verdicts.get(p.id()) == MANIFOLD_CRASHES]
        if unsafe and not fallback:
            done.events.append(
                f"{len(unsafe)} element(s) skipped: manifold cannot cut openings into surface models, "
                f"opencascade can (ifc_kernel auto): {_examples(unsafe)}"
            )
        # With a fallback, what manifold would crash on or leave out goes to the fallback at once, in the same
        # workers: no second pass, which would wait for the slowest worker of the first and fork again.
        ahead = [p for p in done.failed if verdicts.get(p.id())] if fallback else unsafe
        bypass = {p.id() for p in ahead}
        batch = [p for p in done.failed if p.id() not in bypass]
        jobs = [_Job(kernel, batch, complete_only=fallback is not None)] if batch else []
        if ahead and fallback:  # first: they are the slow ones
            jobs.insert(0, _Job(fallback, ahead, complete_only=fallback != kernels[-1]))
        if not jobs:
            continue
        done.errors = []
        workers = min(threads, math.ceil(sum(len(job.products) for job in jobs) / MIN_PRODUCTS_PER_WORKER))
        if fallback or workers > 1:
            wait = _start_workers(model, jobs, workers, done)
            try:
                if pending:
                    pending()
                    pending = None
            finally:
                lost = wait()
            missed = [p for p in batch if p.id() not in done.shapes]
            if fallback and missed:
                done.events.append(f"{len(missed)} element(s) retried with {fallback}: {_examples(missed)}")
            elif lost and not fallback:
                # What a crashed worker held, once more in this process: a second crash ends the
                # import with the reader's clear error, as a run without workers would.
                done.keep((s, kernel) for s in _iterate(model, kernel, 1, lost, done.errors))
        else:
            done.keep((s, kernel) for s in _iterate(model, kernel, threads, batch, done.errors))
        done.failed = [p for p in done.failed if p.id() not in done.shapes]
    if pending:
        pending()
    return done


def _manifold_verdict(product: Any) -> str | None:
    """Why manifold must not get `product`, if it must not: openings cut into an open surface model
    (MANIFOLD_CRASHES: its booleans need closed solids and segfault on these, e.g. the cabinets of
    duplex.ifc), or body items it does not make (MANIFOLD_LEAVES_OUT)."""
    openings = bool(getattr(product, "HasOpenings", None))
    verdict = None
    for item in _body_items(product):
        cls = item.is_a()
        if openings and cls in SURFACE_MODELS:
            return MANIFOLD_CRASHES
        if cls in MANIFOLD_UNSUPPORTED:
            verdict = MANIFOLD_LEAVES_OUT
    return verdict


def _body_items(product: Any) -> Iterator[Any]:
    stack = [r for r in product.Representation.Representations if _is_body(r)]
    while stack:
        for item in stack.pop().Items:
            if item.is_a("IfcMappedItem"):
                stack.append(item.MappingSource.MappedRepresentation)
            else:
                yield item


def _iterate(
    model: Any, kernel: str, threads: int, include: list[Any], errors: list[str], *, complete_only: bool = False
) -> Iterator[_Shape]:
    """Tessellate `include` with one kernel; its distinct error messages are added to `errors`.

    With `complete_only`, shapes the kernel built with some items missing are withheld, so
    the next kernel can build them whole.
    """
    import ifcopenshell
    import ifcopenshell.geom
    import ifcopenshell.util.unit

    settings = ifcopenshell.geom.settings()
    if kernel == "manifold":
        settings.set("circle-segments", CIRCLE_SEGMENTS)
    ifcopenshell.get_log()
    iterator = ifcopenshell.geom.iterator(settings, model, threads, include=include, geometry_library=kernel)
    ok = iterator.initialize()
    log = ifcopenshell.get_log()
    # The iterator falls back to file units when the model has several contexts (e.g. an
    # IfcProjectLibrary beside the IfcProject); scale such output to metres ourselves.
    scale = ifcopenshell.util.unit.calculate_unit_scale(model) if _UNITS_UNDETECTED in log else 1.0
    partial = set(_PARTIAL.findall(log))
    styles: dict[int | str, _Style] = {}
    while ok:
        shape = iterator.get()
        news = ifcopenshell.get_log()  # a shape's warnings are logged before the shape is handed out
        log += news
        partial.update(_PARTIAL.findall(news))
        geometry = shape.geometry
        if geometry.faces_buffer and not (complete_only and shape.guid in partial):
            verts = geometry.verts_buffer
            yield _Shape(
                product=shape.id,
                geometry=geometry.id,
                matrix=_scaled_matrix(shape.transformation.matrix, scale),
                verts=verts if scale == 1.0 else (np.frombuffer(verts) * scale).tobytes(),
                faces=geometry.faces_buffer,
                material_ids=geometry.material_ids_buffer,
                styles=tuple(_style(model, m, styles) for m in geometry.materials),
            )
        ok = iterator.next()
    log += ifcopenshell.get_log()
    for message, _ in _log_errors(log):
        text = _kernel_message(message)
        if text not in errors:
            errors.append(text)


def _kernel_message(message: str) -> str:
    """First line of a kernel error, plus the entity it names ("Failed to convert: #14=...")."""
    lines = message.splitlines()
    if "Failed to convert:" in lines[1:-1]:
        entity = lines[lines.index("Failed to convert:") + 1]
        return f"{lines[0]} in {entity[:ENTITY_TEXT_CHARS]}"
    return lines[0]


def _scaled_matrix(matrix: tuple[float, ...], scale: float) -> tuple[float, ...]:
    if scale == 1.0:
        return tuple(matrix)
    return (*matrix[:12], matrix[12] * scale, matrix[13] * scale, matrix[14] * scale, matrix[15])


def _style(model: Any, material: Any, cache: dict[int | str, _Style]) -> _Style:
    """The kernel's style as plain data. Colours pass through unchanged, as IfcOpenShell's glTF
    serializer and Bonsai treat IFC colours, so a model looks the same in all three."""
    instance = material.instance_id()
    key = instance or material.name  # 0 is a kernel default material, which has no IFC entity
    if key in cache:
        return cache[key]
    rgb = material.diffuse.components
    if any(math.isnan(c) for c in rgb):
        rgb = material.surface.components
    alpha = 1.0 if math.isnan(material.transparency) else 1.0 - material.transparency
    name, metallic = material.name, 0.0
    if instance:
        entity = model.by_id(instance)
        name = getattr(entity, "Name", None) or name
        metallic = 1.0 if _reflectance(entity) == "METAL" else 0.0
    style = _Style(str(key), name, (*(float(c) for c in rgb), float(alpha)), metallic)
    cache[key] = style
    return style


def _reflectance(style: Any) -> str | None:
    for item in getattr(style, "Styles", None) or ():
        if item.is_a("IfcSurfaceStyleRendering"):
            return item.ReflectanceMethod
    return None


@dataclass(frozen=True, slots=True)
class _Job:
    kernel: str
    products: list[Any]
    complete_only: bool  # withhold shapes built in part: a later kernel builds them whole


def _start_workers(model: Any, jobs: list[_Job], workers: int, done: _Tessellation) -> Callable[[], list[Any]]:
    """Tessellate the jobs' products in `workers` forked children streaming shapes back. The
    returned call waits for them, records what they made in `done` and returns the products that
    a crashed child had taken but not finished.

    ifcopenshell's iterator hardly gains from threads of its own (duplex.ifc: 1.52 s with one,
    1.51 s with two), so the products are shared out among processes instead: contiguous runs in
    file order (a type's instances stay together, which the kernel reuses; split by stride,
    duplex.ifc takes 20 % longer), about CHUNKS_PER_WORKER per worker and at most MAX_RUN_PRODUCTS
    each, handed out in job order
    through a pipe that holds one byte per run. One slow run then leaves no core idle, and no lock
    can be left held by a child that crashed. Workers give shapes their normals themselves and send a
    geometry once (a mapped type's further occurrences go as their placement): creasing in this
    process, which reads the tree and properties meanwhile, made it the bottleneck (on a 100k-element
    plant it used as much CPU as both workers together).
    """
    total = sum(len(job.products) for job in jobs)
    runs: list[tuple[_Job, list[Any]]] = []
    for job in jobs:
        n = len(job.products)
        wanted = max(round(workers * CHUNKS_PER_WORKER * n / total), math.ceil(n / MAX_RUN_PRODUCTS))
        count = max(1, min(n, wanted, MAX_CHUNKS // len(jobs)))
        runs += [(job, job.products[k * n // count : (k + 1) * n // count]) for k in range(count)]
    claims, claims_writer = os.pipe()
    os.write(claims_writer, bytes(range(len(runs))))
    os.close(claims_writer)
    children: dict[Connection, int] = {}
    parent = os.getpid()
    # Every child is forked before the reader thread starts: no thread may run while we fork.
    for _ in range(min(workers, len(runs))):
        receiver, sender = mp.Pipe(duplex=False)
        # A bare fork rather than multiprocessing.Process: it also works inside daemonic workers,
        # and the child never runs the parent's exit handlers.
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                die_with_parent(parent)  # a reader killed outright (SIGKILL) takes its workers with it
                receiver.close()
                _work(sender, claims, runs, model)
                code = 0
            finally:
                os._exit(code)
        sender.close()
        children[receiver] = pid
    os.close(claims)
    received: list[tuple[_Shape, str]] = []
    working: dict[Connection, int] = {}  # child -> the run it took last
    finished: set[int] = set()

    def drain() -> None:
        live = list(children)
        while live:
            for conn in wait(live):
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):  # the child finished or died: nothing more from it
                    live.remove(conn)
                    continue
                if kind == "shape":
                    shape, creased, run = payload
                    if creased is not None:
                        done.creased.setdefault(shape.geometry, creased)
                    received.append((shape, runs[run][0].kernel))
                elif kind == "started":
                    working[conn] = payload
                elif kind == "finished":
                    finished.add(payload)
                elif payload not in done.errors:
                    done.errors.append(payload)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()

    def wait_all() -> list[Any]:
        reader.join()
        for conn in children:
            conn.close()
        done.shapes.update((shape.product, (shape, kernel)) for shape, kernel in received)
        crashed: dict[str, list[int]] = {}  # kernel -> exit codes of the workers it took down
        for conn, pid in children.items():
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            if code != 0:
                run = working.get(conn)
                crashed.setdefault(runs[run][0].kernel if run is not None else jobs[-1].kernel, []).append(code)
        for kernel, codes in crashed.items():
            workers_down = f"{len(codes)} of {len(children)} worker(s)"
            done.events.append(f"{kernel} kernel crashed (exit code {codes[0]}) in {workers_down}")
        unfinished = [products for k, (_, products) in enumerate(runs) if k not in finished]
        return [p for products in unfinished for p in products if p.id() not in done.shapes]

    return wait_all


def _work(conn: Connection, claims: int, runs: list[tuple[_Job, list[Any]]], model: Any) -> None:
    """A kernel worker: tessellate the next unclaimed run of products until none is left."""
    faulthandler.disable()  # a crash here is expected and handled by the parent: no traceback noise
    errors: list[str] = []
    sent: set[str] = set()  # geometry ids whose creased geometry this worker has sent
    while claimed := os.read(claims, 1):
        run = claimed[0]
        job, products = runs[run]
        conn.send(("started", run))
        for shape in _iterate(model, job.kernel, 1, products, errors, complete_only=job.complete_only):
            creased = None if shape.geometry in sent else _crease(shape)
            sent.add(shape.geometry)
            conn.send(("shape", (_placed(shape), creased, run)))
        conn.send(("finished", run))
    for error in errors:
        conn.send(("error", error))
    conn.close()


# ---------------------------------------------------------------------------------------------
# Meshes


def _placed(shape: _Shape) -> _Shape:
    """The shape without its geometry, once that is creased (`_Tessellation.creased`, once per geometry id):
    a product's vertices as the kernel sent them are 3x the size of its triangles in the mesh, and mapped
    equipment repeats them for every occurrence."""
    return replace(shape, verts=b"", faces=b"", material_ids=b"")


def _crease(shape: _Shape) -> _Creased:
    positions = np.frombuffer(shape.verts, dtype=np.float64).reshape(-1, 3)
    faces = np.frombuffer(shape.faces, dtype=np.int32).reshape(-1, 3)
    source, normals, faces = crease_normals(positions, faces)
    positions = positions[source].astype(np.float32)
    material_ids = np.frombuffer(shape.material_ids, dtype=np.int32)
    if len(material_ids) != len(faces):
        material_ids = np.zeros(len(faces), dtype=np.int32)
    return _Creased(positions, normals, faces.astype(np.uint32), material_ids)


def _mesh(shape: _Shape, creased: _Creased, scene: Scene, materials: dict[str, int]) -> Mesh:
    positions, normals, faces, material_ids = creased.positions, creased.normals, creased.faces, creased.material_ids
    styles = np.unique(material_ids)
    primitives = []
    for mid in styles:
        index = _material(scene, materials, shape.styles[mid] if 0 <= mid < len(shape.styles) else None)
        if len(styles) == 1:
            primitives.append(Primitive(positions, faces, index, normals))
            continue
        used, local = np.unique(faces[material_ids == mid], return_inverse=True)
        primitives.append(Primitive(positions[used], local.reshape(-1, 3).astype(np.uint32), index, normals[used]))
    return Mesh(shape.geometry, primitives)


def _material(scene: Scene, materials: dict[str, int], style: _Style | None) -> int:
    key = style.key if style else ""
    if key not in materials:
        material = Material(style.name, style.rgba, metallic=style.metallic) if style else Material("IfcDefault")
        materials[key] = scene.add_material(material)
    return materials[key]


# ---------------------------------------------------------------------------------------------
# Elements


@dataclass(slots=True)
class _Structure:
    order: list[Any]  # project(s) then products, parents before children
    elements: list[Element]  # one per entity of `order`, without geometry; placed unless meshed
    unplaced: list[Any]  # entities whose placement could not be read
    warnings: list[str]


def _structure(model: Any, projects: tuple[Any, ...], products: tuple[Any, ...], meshed: set[int]) -> _Structure:
    """The spatial tree and every element with its properties (no geometry needed). Elements
    not expected to get a mesh (`meshed`: instance ids) are placed; the others take their
    shape's matrix."""
    import ifcopenshell.util.unit

    scale = ifcopenshell.util.unit.calculate_unit_scale(model)
    root = projects[0].id()
    entities = {e.id(): e for e in (*projects, *products)}
    parent: dict[int, int | None] = {p.id(): None for p in projects}
    for product in products:
        up = _parent_of(product)
        parent[product.id()] = up.id() if up is not None and up.id() in entities and up.id() != product.id() else root
    order, cycles = _parents_first(parent, root)
    warnings = [f"{len(cycles)} element(s) in a decomposition cycle moved under the project"] if cycles else []
    tree = Scene()  # only for its id checks
    ids: dict[int, str] = {}
    duplicates: list[Any] = []
    unplaced: list[Any] = []
    for key in order:
        entity = entities[key]
        element_id = entity.GlobalId or f"#{key}"
        if element_id in tree.elements:
            duplicates.append(entity)
            element_id = unique_id(tree, element_id)
        ids[key] = element_id
        up = parent[key]
        cls = entity.is_a()
        props, units = _properties(entity)
        element = tree.add(Element(element_id, entity.Name or cls, cls, ids.get(up), properties=props, units=units))
        if key not in meshed and not _place(element, entity, scale):
            unplaced.append(entity)
    if duplicates:
        shown = _examples(duplicates)
        warnings.append(f"{len(duplicates)} duplicate GlobalId(s), later ones suffixed ~2, ~3…: {shown}")
    return _Structure([entities[i] for i in order], list(tree.elements.values()), unplaced, warnings)


def _place(element: Element, entity: Any, scale: float) -> bool:
    """Set the element's matrix from its IFC placement; False if that cannot be read."""
    import ifcopenshell.util.placement

    if getattr(entity, "ObjectPlacement", None) is None:
        element.matrix = Z_UP_TO_Y_UP.copy()
        return True
    try:
        local = np.array(ifcopenshell.util.placement.get_local_placement(entity.ObjectPlacement), dtype=float)
    except (AttributeError, TypeError, ValueError):
        return False
    local[:3, 3] *= scale
    element.matrix = Z_UP_TO_Y_UP @ local
    return True


def _parent_of(product: Any) -> Any:
    """Aggregate, nest, voided host, then spatial container (IFC2x3 and IFC4 inverse names)."""
    for rel in (getattr(product, "Decomposes", None) or ()) + (getattr(product, "Nests", None) or ()):
        return rel.RelatingObject
    for rel in getattr(product, "VoidsElements", None) or ():
        return rel.RelatingBuildingElement
    for rel in getattr(product, "ContainedInStructure", None) or ():
        return rel.RelatingStructure
    return None


def _parents_first(parent: dict[int, int | None], root: int) -> tuple[list[int], list[int]]:
    """Breadth-first order from the roots. A decomposition cycle (hostile input) is cut by
    re-hanging one of its members under `root`, which keeps everything below it in place."""
    children: dict[int | None, list[int]] = {}
    for child, up in parent.items():
        children.setdefault(up, []).append(child)
    order: list[int] = []
    seen: set[int] = set()

    def visit(start: int) -> None:
        queue = [start]
        seen.add(start)
        for node in queue:
            order.append(node)
            fresh = [c for c in children.get(node, ()) if c not in seen]
            seen.update(fresh)
            queue.extend(fresh)

    for top in children.get(None, ()):
        visit(top)
    rehung = []
    for node in parent:
        if node in seen:
            continue
        on_path: set[int] = set()
        while node not in on_path:  # unreachable, so walking up must end in a cycle
            on_path.add(node)
            node = parent[node]
        parent[node] = root
        rehung.append(node)
        visit(node)
    return order, rehung


def _properties(entity: Any) -> tuple[PropertySets, PropertyUnits]:
    """Property and quantity sets (the type's, overridden by the occurrence's, by name) plus key attributes,
    and the units of their measures (`_units`). A set without a name (ArchiCAD writes its door lining and
    panel sets so) is kept under a generated name: its class, and its GlobalId where the element has two
    unnamed sets of that class."""
    import ifcopenshell.util.element

    props: PropertySets = {}
    units: PropertyUnits = {}
    for name, values in ifcopenshell.util.element.get_psets(entity).items():
        if name:  # get_psets merges every unnamed set under None: they are taken one by one below
            props[name] = _flat(values)
            if set_units := _units(entity.file.by_id(values["id"])):
                units[name] = set_units
    unnamed = _unnamed_definitions(entity)
    classes = [d.is_a() for d in unnamed]
    for definition, cls in zip(unnamed, classes, strict=True):
        name = cls if classes.count(cls) == 1 else f"{cls} {definition.GlobalId or f'#{definition.id()}'}"
        props[name] = _flat(ifcopenshell.util.element.get_property_definition(definition))
    attributes = {name: _json(getattr(entity, name, None)) for name in ATTRIBUTES}
    if entity.is_a("IfcObject"):  # the occurrence's own, else its type's (IFC puts it on one of them)
        attributes["PredefinedType"] = ifcopenshell.util.element.get_predefined_type(entity)
    element_type = ifcopenshell.util.element.get_type(entity)
    if element_type is not None and element_type.Name:
        attributes["TypeName"] = element_type.Name
    props["Attributes"] = {k: v for k, v in attributes.items() if v is not None}
    return props, units


def _units(definition: Any) -> dict[str, str]:
    """The unit symbol of each measured property or quantity of a set: its own unit, else the project's for
    its measure, else the SI unit of a measure projects often leave unassigned (SI_MEASURE_UNITS)."""
    import ifcopenshell.util.unit

    units: dict[str, str] = {}
    for prop in getattr(definition, "HasProperties", None) or getattr(definition, "Quantities", None) or ():
        try:
            unit = ifcopenshell.util.unit.get_property_unit(prop, definition.file)
            symbol = ifcopenshell.util.unit.get_unit_symbol(unit) if unit is not None else ""
        except (AttributeError, KeyError, TypeError, ValueError):  # an odd unit entity: the value stays, unitless
            symbol = ""
        if not symbol:
            value = next((getattr(prop, a) for a in _MEASURED if getattr(prop, a, None) is not None), None)
            symbol = SI_MEASURE_UNITS.get(value.is_a(), "") if hasattr(value, "is_a") else ""
        if symbol and prop.Name:
            units[prop.Name] = symbol
    return units


def _flat(values: dict[str, Any]) -> dict[str, PropertyValue]:
    """One set's properties as plain values (get_psets' shape: name -> value, or a dict for complex ones)."""
    flat: dict[str, PropertyValue] = {}
    for key, value in values.items():
        if key == "id":
            continue
        if not isinstance(value, dict):
            flat[key] = _json(value)
        elif value.get("type") == "IfcPropertyBoundedValue":  # [lower, upper]; unset when neither is
            bounds = [_json(value.get("LowerBoundValue")), _json(value.get("UpperBoundValue"))]
            flat[key] = bounds if bounds != [None, None] else None
        else:  # complex, table or reference value: one level of "Name.Part" keys
            parts = value.get("properties", value)
            flat.update({f"{key}.{k}": _json(v) for k, v in parts.items() if k not in _PROPERTY_META})
    return flat


def _unnamed_definitions(entity: Any) -> list[Any]:
    """Property and quantity set definitions without a Name, of the element's type and of the element."""
    import ifcopenshell.util.element

    holders = [ifcopenshell.util.element.get_type(entity), entity] if entity.is_a("IfcObject") else [entity]
    found = []
    for holder in filter(None, holders):
        if holder.is_a("IfcTypeObject"):
            definitions = list(holder.HasPropertySets or ())
        else:
            definitions = []
            for rel in getattr(holder, "IsDefinedBy", None) or ():
                if rel.is_a("IfcRelDefinesByProperties") and (d := rel.RelatingPropertyDefinition) is not None:
                    definitions += list(d.wrappedValue) if d.is_a("IfcPropertySetDefinitionSet") else [d]
        found += [d for d in definitions if not d.Name]
    return found


def _json(value: Any) -> PropertyValue:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if hasattr(value, "wrappedValue"):  # a typed measure, e.g. IfcMassFlowRateMeasure(40.)
        return _json(value.wrappedValue)
    name = getattr(value, "Name", None) if hasattr(value, "is_a") else None  # a referenced entity
    return name if isinstance(name, str) else str(value)


def _fill(scene: Scene, model: Any, parts: _Structure, done: _Tessellation) -> None:
    import ifcopenshell.util.unit

    scale = ifcopenshell.util.unit.calculate_unit_scale(model)
    materials: dict[str, int] = {}
    unplaced = list(parts.unplaced)
    failed = {p.id() for p in done.failed}  # expected a mesh, got none: placed here instead
    for entity, element in zip(parts.order, parts.elements, strict=True):
        found = done.shapes.get(entity.id())
        if found is not None:
            shape = found[0]
            if shape.geometry not in scene.meshes:
                scene.meshes[shape.geometry] = _mesh(shape, done.creased[shape.geometry], scene, materials)
            element.mesh = shape.geometry
            element.matrix = Z_UP_TO_Y_UP @ np.asarray(shape.matrix, dtype=np.float64).reshape(4, 4).T
        elif entity.id() in failed and not _place(element, entity, scale):
            unplaced.append(entity)
        scene.add(element)
    if unplaced:
        scene.warnings.append(
            f"{len(unplaced)} element(s) with an unreadable placement left at the origin: {_examples(unplaced)}"
        )
