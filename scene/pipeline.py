"""`twinview build`: source files -> canonical scene -> scene.usdc, scene.glb, scene.usdz, manifest.json (and tiles/
for large scenes: scene/export/tiles.py).

Outputs are written into a temporary sibling folder and renamed into place only when every
output is complete, so a failed build leaves nothing behind in OUTDIR.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from scene.errors import ImportFailed
from scene.importers import ElementsReady, ImportOptions, loader_for
from scene.merge import merge
from scene.model import Element, Scene
from scene.sandbox import CHECK_INTERVAL_S, Limits, PendingImport, available_memory_mb, stop_all

OUTPUT_FILES = ("scene.usdc", "scene.glb", "scene.usdz", "manifest.json")

Progress = Callable[[str], None]


@dataclass
class BuildResult:
    outdir: Path
    scene: Scene
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    glb_stats: dict[str, int] = field(default_factory=dict)


def check_input(path: Path) -> None:
    """Reject what no importer should see: missing, unreadable, empty or unknown files."""
    if not path.exists():
        raise ImportFailed(str(path), "file not found")
    if not path.is_file():
        raise ImportFailed(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise ImportFailed(str(path), "file is empty")
    loader_for(path)
    if not os.access(path, os.R_OK):
        raise ImportFailed(str(path), "permission denied")


def concurrent_imports(limits: Limits) -> int:
    """How many inputs of a federated build are read at once: one per core, and no more than fit in the
    machine's memory at their memory bound (each IFC reader also runs a kernel worker per core)."""
    return max(1, min(os.cpu_count() or 1, available_memory_mb() // limits.memory_mb))


def import_all(
    inputs: list[Path],
    options: ImportOptions,
    limits: Limits,
    *,
    debug: bool = False,
    progress: Progress | None = None,
    preload: Callable[[], object] | None = None,
    on_elements: ElementsReady | None = None,
    slots: int | None = None,
) -> Scene:
    """Import every input in its own child and merge them. At most `slots` (default
    `concurrent_imports`) read at once; the others start as those finish, and their time bounds start
    with them. `on_elements` gets a single input's elements early (see `PendingImport`); with several
    inputs, merging renames, so it is not called."""
    for path in inputs:
        check_input(path)
    if progress:
        progress(f"importing {', '.join(p.name for p in inputs)}")
    early = on_elements if len(inputs) == 1 else None
    slots = slots or concurrent_imports(limits)
    waiting = list(enumerate(inputs))
    running: dict[int, PendingImport] = {}
    scenes: dict[int, Scene] = {}

    def start_waiting() -> None:
        while waiting and len(running) < slots:
            index, path = waiting.pop(0)
            if progress and len(inputs) > slots:
                progress(f"reading {path.name} ({index + 1} of {len(inputs)})")
            running[index] = PendingImport(path, options, limits, debug=debug, on_elements=early)

    try:
        # The first children start before the parent does anything else: they read on their own cores
        # while the parent loads the exporters.
        start_waiting()
        if preload is not None:
            preload()
        while running:
            answered = set(wait([job.answer for job in running.values()], timeout=CHECK_INTERVAL_S))
            for index, job in list(running.items()):
                if job.answer in answered:
                    scenes[index] = job.result()
                    del running[index]
                else:
                    job.check_limits()
            start_waiting()
    except BaseException:  # one input failed (or we are being stopped): the other readers stop too
        for job in running.values():
            job.stop()
        raise
    return merge([scenes[index] for index in range(len(inputs))])


# Staging folders of builds in progress, so that `abort` can remove them.
_STAGING: set[Path] = set()


def abort() -> None:
    """Stop every reader and remove every staging folder of this process's builds in progress: for a
    process about to exit on a signal, which will not unwind."""
    stop_all()
    for staging in list(_STAGING):
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def _staging(outdir: Path) -> Iterator[Path]:
    """A temporary folder beside OUTDIR that replaces it only on success."""
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    _STAGING.add(staging)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _STAGING.discard(staging)
    backup = None
    if outdir.exists():
        backup = outdir.with_name(f".{outdir.name}.old-{os.getpid()}")
        outdir.rename(backup)
    staging.rename(outdir)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def build(
    inputs: list[Path],
    outdir: Path,
    *,
    compress: bool = False,
    lod: bool = False,
    tile_threshold: int | None = None,
    options: ImportOptions = ImportOptions(),
    limits: Limits = Limits(),
    debug: bool = False,
    progress: Progress | None = None,
) -> BuildResult:
    timings: dict[str, float] = {}
    start = time.perf_counter()

    def stage(name: str, fn: Callable[[], object]) -> object:
        if progress:
            progress(f"writing {name}")
        t0 = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - t0
        return result

    with _staging(outdir) as tmp:
        early: list[StageWriter] = []  # the stage, begun while the importer still tessellates

        def begin_stage(elements: list[Element]) -> None:
            from scene.export.usd_stage import StageWriter  # loaded by now: `preload` ran first

            writer = StageWriter(tmp / "scene.usdc")
            stage("usd.elements", lambda: writer.add_elements(elements))
            early[:] = [writer]

        scene = import_all(
            inputs, options, limits, debug=debug, progress=progress, preload=_load_exporters, on_elements=begin_stage
        )
        timings["import"] = time.perf_counter() - start
        timings.update({f"import.{step}": seconds for step, seconds in scene.timings.items()})
        from scene.export.glb import write_glb
        from scene.export.manifest import write_manifest
        from scene.export.tiles import TILE_MIN_ELEMENTS, wants_tiles, write_tiles
        from scene.export.usd_stage import StageWriter
        from scene.export.usdz import write_usdz

        writer = early[0] if early else StageWriter(tmp / "scene.usdc")
        stage("usd", lambda: writer.write(scene))
        glb_stats = stage("glb", lambda: write_glb(scene, tmp / "scene.glb", compress=compress, lod=lod))
        stage("usdz", lambda: write_usdz(tmp / "scene.usdc", tmp / "scene.usdz"))
        threshold = TILE_MIN_ELEMENTS if tile_threshold is None else tile_threshold
        if wants_tiles(scene, threshold):
            stage("tiles", lambda: write_tiles(scene, tmp, compress=compress, lod=lod))
        timings["total"] = time.perf_counter() - start
        stats = {"timings_s": {k: round(v, 4) for k, v in timings.items()}}
        glb_dict = _as_dict(glb_stats)
        if glb_dict:
            stats["glb"] = glb_dict
        stage("manifest", lambda: write_manifest(scene, tmp / "manifest.json", stats))
    timings["total"] = time.perf_counter() - start
    return BuildResult(outdir=outdir, scene=scene, timings=timings, glb_stats=glb_dict)


def _load_exporters() -> None:
    """Import the exporters (usd-core is ~0.2 s) while the importers run in their children."""
    import scene.export.glb
    import scene.export.manifest
    import scene.export.tiles
    import scene.export.usd_stage
    import scene.export.usdz  # noqa: F401


def _as_dict(stats: object) -> dict[str, int]:
    if stats is None:
        return {}
    if isinstance(stats, dict):
        return stats
    fields = getattr(stats, "__dataclass_fields__", None) or getattr(stats, "__struct_fields__", ())
    return {name: getattr(stats, name) for name in fields}
