"""Run one importer in a child process with a time and a memory bound.

Native readers (IfcOpenShell, OCP, open3d, usd-core) can segfault or spin on hostile input. Running
each input in its own process turns a crash, a hang or a memory blow-up into an `ImportFailed`
with a clear reason, and the CLI or server stays alive.

The time bound is CPU time, not wall time: the CPU-seconds the reader and its kernel workers used,
scaled with the file's size by default, so a big plant on a loaded machine is not refused for waiting
for a core. A wall-clock bound (a multiple of the CPU bound) still stops a reader that sleeps forever.

A reader that uses no CPU at all for `STALL_S` is stuck (a deadlock in a native library) and is stopped
then, with its own error, rather than at the wall-clock bound.

Readers are forked by `scene.reader_host`, a single-threaded process of their own, never by the process
that asks (it may run threads, whose locks a fork would copy held). A reader dies with that host, the host
with the process that started it, however that one dies, and a stopped import takes the reader's own
children (the IFC kernel workers) with it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import resource
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

import numpy as np

from scene import reader_host
from scene.errors import ImportFailed, first_line
from scene.importers import ANNOUNCES_ELEMENTS, FORMATS, ElementsReady, ImportOptions, Loader, loader_for
from scene.model import Element, Mesh, Scene

# CPU-seconds allowed per input: a base for any file plus this much per MB of it. Real IFC costs ~7 CPU-s per
# 1 000 elements (BENCHMARKS.md section 1) and a 1 000-element IFC is ~1 MB or more, so real files stay well
# under the bound while a reader spinning on a small hostile file is stopped within minutes.
CPU_S_BASE = 300.0
CPU_S_PER_MB = 20.0
# The wall-clock bound, when not given: this many times the CPU bound (a reader on a machine at load 8 on
# 2 cores gets a quarter of a core), so only a reader that sleeps or waits forever meets it.
WALL_PER_CPU = 4.0
# A reader whose process group used no CPU-second at all for this long is stuck, not slow: even at load 8
# on 2 cores a working reader gets a quarter of a core.
STALL_S = 60.0
# How often the parent checks a reader's CPU time while it waits for its answer.
CHECK_INTERVAL_S = 1.0
# The default address-space cap per input is this fraction of the memory the machine (or the cgroup we run
# in, if smaller) has: a hostile file (a 5 MB .3mf zip bomb) then fails cleanly long before the machine
# swaps or the OOM killer picks a victim, and a few inputs imported at once still fit.
MEMORY_FRACTION = 0.25
# ...but never below this: usd-core or OCP alone map ~1 GB of address space just to load.
MIN_MEMORY_MB = 2048
# What the dynamic loader says when a shared library does not fit under RLIMIT_AS.
LIBRARY_MAP_FAILURES = ("failed to map segment", "cannot allocate memory", "Cannot allocate memory")
CRASH_EXIT_GRACE_S = 5.0  # time for a child that sent its result to exit cleanly
# Elements or meshes per message when a reader hands its scene over: a scene pickled whole is a second copy of
# it (~40 MB per 1 000 plant elements) on both sides of the pipe; in pieces, neither side holds more than one.
PIECE_ITEMS = 500
# cgroup v2 and v1 files holding the memory limit of the cgroup we run in ("max" or a huge number: none).
CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def available_memory_mb() -> int:
    """Physical memory, or the cgroup's memory limit where it is lower, in MB."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in CGROUP_MEMORY_LIMITS:
        with contextlib.suppress(OSError, ValueError):
            total = min(total, int(Path(limit_file).read_text().strip()))
    return total // (1024 * 1024)


def default_memory_mb() -> int:
    return max(MIN_MEMORY_MB, int(available_memory_mb() * MEMORY_FRACTION))


DEFAULT_MEMORY_MB = default_memory_mb()


def default_cpu_s(path: Path) -> float:
    """CPU-seconds allowed for reading `path` when not given: grows with the file's size."""
    return CPU_S_BASE + CPU_S_PER_MB * path.stat().st_size / 1e6


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds per input. `cpu_s` None: `default_cpu_s` of the file; `timeout_s` (wall clock) None:
    `WALL_PER_CPU` times the CPU bound; `stall_s`: wall seconds without any CPU used."""

    cpu_s: float | None = None
    timeout_s: float | None = None
    memory_mb: int = DEFAULT_MEMORY_MB
    stall_s: float = STALL_S

    def for_input(self, path: Path) -> tuple[float, float]:
        """The (CPU-seconds, wall seconds) bounds for reading `path`."""
        cpu = self.cpu_s if self.cpu_s is not None else default_cpu_s(path)
        return cpu, self.timeout_s if self.timeout_s is not None else WALL_PER_CPU * cpu


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) used by the processes of group `pgid`, the leader's reaped children
    included: a reader and its kernel workers together. Processes gone between listing and reading
    are skipped."""
    ticks = 0
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            # After the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
            # utime stime cutime cstime (fields 0-14 here)
            if int(fields[2]) == pgid:
                ticks += int(fields[11]) + int(fields[12])
                if int(stat_file.parent.name) == pgid:
                    ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _child(
    conn: Connection, path: str, load: Loader, options: ImportOptions, memory_mb: int, debug: bool, announce: bool
) -> None:
    """The reader, in a process `reader_host` forked: read `path` with `load`, answer through `conn`."""
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if not debug:
        # A crash is reported by the parent as one line; a faulthandler (PYTHONFAULTHANDLER) would dump a trace.
        faulthandler.disable()
        # Native libraries print to fd 2 directly; the user gets our one line instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.dup2(devnull, 1)
    try:
        announced: list[Element] = []
        if announce:

            def ready(elements: list[Element]) -> None:
                for piece in _pieces(elements):
                    conn.send(("tree", piece))
                conn.send(("tree_end", None))
                announced[:] = elements

            scene = load(Path(path), options, ready)  # type: ignore[call-arg]
        else:
            scene = load(Path(path), options)
        _send_scene(conn, scene, announced)
    except ImportFailed as exc:
        conn.send(("failed", (exc.path, exc.reason, exc.where, traceback.format_exc())))
    except MemoryError:
        conn.send(("failed", (path, f"ran out of memory (limit {memory_mb} MB)", "", traceback.format_exc())))
    except ImportError as exc:
        # A native library that cannot be mapped under the memory bound (IfcOpenShell then says it was "not built
        # for" this platform, which misleads): the bound is the cause.
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        if any(sign in str(exc) for sign in LIBRARY_MAP_FAILURES):
            reason = f"ran out of memory loading its libraries (limit {memory_mb} MB): raise --max-memory"
        conn.send(("failed", (path, reason, "", traceback.format_exc())))
    except Exception as exc:  # an importer bug or a library error we did not classify: still one line
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        conn.send(("failed", (path, reason, "", traceback.format_exc())))
    finally:
        conn.close()


def _pieces(items: list) -> Iterator[list]:
    for start in range(0, len(items), PIECE_ITEMS):
        yield items[start : start + PIECE_ITEMS]


def _send_scene(conn: Connection, scene: Scene, announced: list[Element]) -> None:
    """Hand `scene` over in pieces (`SceneReceiver` puts it together): meshes, then elements, then the rest.
    Elements the parent already has (`announced`: the very objects, in scene order) travel as their mesh and
    world matrix only: their properties crossed the pipe once already."""
    meshes = list(scene.meshes.values())
    scene.meshes = {}
    for piece in _pieces(meshes):
        conn.send(("meshes", piece))
    del meshes
    elements = list(scene.elements.values())
    scene.elements = {}
    if len(announced) == len(elements) and all(a is b for a, b in zip(announced, elements, strict=True)):
        for piece in _pieces(elements):
            conn.send(("placed", ([e.mesh for e in piece], np.stack([e.matrix for e in piece]))))
    else:
        for piece in _pieces(elements):
            conn.send(("elements", piece))
    conn.send(("ok", scene))


class SceneReceiver:
    """Puts together what `_send_scene` sends; `tree` collects the elements announced early."""

    def __init__(self) -> None:
        self.tree: list[Element] = []
        self.elements: dict[str, Element] = {}
        self.meshes: dict[str, Mesh] = {}

    def take(self, status: str, payload: Any) -> bool:
        """Take one piece of the scene; False if the message is none (an answer, or the end of the tree)."""
        if status == "tree":
            self.tree.extend(payload)
        elif status == "meshes":
            self.meshes.update((mesh.id, mesh) for mesh in payload)
        elif status == "elements":
            self.elements.update((element.id, element) for element in payload)
        elif status == "placed":
            meshes, matrices = payload
            for mesh, matrix in zip(meshes, matrices, strict=True):
                element = self.tree[len(self.elements)]
                element.mesh, element.matrix = mesh, matrix
                self.elements[element.id] = element
        else:
            return False
        return True

    def finish(self, rest: Scene) -> Scene:
        """The scene: `rest` (materials, inputs, warnings, timings; sent last) with the pieces put back."""
        rest.elements, rest.meshes = self.elements, self.meshes
        return rest


# Imports whose reader may still run, so that `stop_all` can stop them (a SIGTERM to the CLI).
_RUNNING: set[PendingImport] = set()


def stop_all() -> None:
    """Stop every reader this process started that may still run, with its own children."""
    for job in list(_RUNNING):
        job.stop()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the reader was lost: the process that forked it (scene.reader_host) was killed"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the reader crashed ({name}); the file is probably malformed"
    return f"the reader exited unexpectedly (exit code {code})"


class ReaderCrashed(ImportFailed):
    """The child process died without an answer (a native crash)."""


class PendingImport:
    """An import running in its own child process; `result()` waits for it.

    Starting every input's child first lets the parent do its own work (loading the exporters)
    while the children read, on separate cores. With `on_elements`, an importer that knows its
    elements before their geometry (ANNOUNCES_ELEMENTS) hands them over early: `result()` calls
    it with them while the child is still at work (again, with the new elements, after a retry).
    """

    def __init__(
        self,
        path: Path,
        options: ImportOptions,
        limits: Limits,
        *,
        debug: bool,
        on_elements: ElementsReady | None = None,
    ) -> None:
        load = loader_for(path)  # unknown extensions fail here, before a process is spent on them
        self.path, self.options, self.limits, self.debug = path, options, limits, debug
        self.cpu_s, self.wall_s = limits.for_input(path)
        self.on_elements = on_elements if FORMATS[path.suffix.lower()][1] in ANNOUNCES_ELEMENTS else None
        self.started = self._progress_at = time.monotonic()
        self._cpu_used = 0.0
        self._conn, child_conn = Pipe(duplex=False)
        with child_conn:  # the reader holds the only write end: its death is the end of the answer
            args = (str(path), load, options, limits.memory_mb, debug, self.on_elements is not None)
            self._proc = reader_host.start(_child, args, child_conn.fileno())
        _RUNNING.add(self)

    def result(self) -> Scene:
        """The imported scene; a crash of the manifold IFC kernel (it segfaults on some real files,
        e.g. duplex.ifc) is retried once with opencascade when `ifc_kernel="auto"`."""
        try:
            return self._collect()
        except ReaderCrashed:
            if self.options.ifc_kernel != "auto" or FORMATS[self.path.suffix.lower()][1] != "ifc":
                raise
            fallback = replace(self.options, ifc_kernel="opencascade")
            retry = PendingImport(self.path, fallback, self.limits, debug=self.debug, on_elements=self.on_elements)
            scene = retry.result()
            scene.warnings.insert(0, f"{self.path}: manifold kernel crashed; geometry made with opencascade instead")
            return scene

    def stop(self) -> None:
        """Kill the reader with its own children (the IFC kernels) now, if it still runs."""
        _RUNNING.discard(self)
        if self._proc.is_alive():  # its group exists: the host made it before it told us the pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.join()
        self._conn.close()

    def _collect(self) -> Scene:
        proc = self._proc
        received = SceneReceiver()
        try:
            status, payload = self._receive()
            while received.take(status, payload) or status == "tree_end":
                if status == "tree_end":
                    assert self.on_elements is not None  # the child announces only when asked to
                    self.on_elements(received.tree)
                status, payload = self._receive()
        except BaseException:  # a time limit, a crash, or this process being stopped: no grace
            self.stop()
            raise
        if proc.is_alive():  # it answered: let it exit by itself, briefly
            proc.join(CRASH_EXIT_GRACE_S)
        self.stop()
        if status == "ok":
            return received.finish(payload)
        err_path, reason, where, tb = payload
        failure = ImportFailed(err_path, reason, where)
        failure.__notes__ = [tb]  # shown by the CLI with --debug
        raise failure

    @property
    def answer(self) -> Connection:
        """Readable when the reader has something to say (for `multiprocessing.connection.wait`)."""
        return self._conn

    def check_limits(self) -> None:
        """Raise ImportFailed if the reader has used up its CPU time or its wall-clock time, or has used no
        CPU at all for `Limits.stall_s`."""
        used, now = group_cpu_seconds(self._proc.pid), time.monotonic()
        if used > self._cpu_used:
            self._cpu_used, self._progress_at = used, now
        elif now - self._progress_at > self.limits.stall_s:
            raise ImportFailed(
                str(self.path),
                f"the reader used no CPU for {self.limits.stall_s:g} s and was stopped: it is stuck (a deadlock "
                f"in a native library?); try again, and if it happens again with this file, report it",
            )
        if used > self.cpu_s:
            raise ImportFailed(
                str(self.path),
                f"import used more than {self.cpu_s:g} CPU-seconds and was stopped; "
                f"allow more with --max-cpu SECONDS (the default grows with the file: "
                f"{CPU_S_BASE:g} + {CPU_S_PER_MB:g} per MB)",
            )
        if now - self.started > self.wall_s:
            raise ImportFailed(
                str(self.path),
                f"import took longer than {self.wall_s:g} s and was stopped; allow more with --timeout SECONDS",
            )

    def _receive(self) -> tuple[str, object]:
        """The child's next message, within its CPU and wall-clock bounds."""
        while not self._conn.poll(min(CHECK_INTERVAL_S, max(0.0, self.started + self.wall_s - time.monotonic()))):
            try:
                self.check_limits()
            except ImportFailed:
                if self._conn.poll(0):  # it answered just in time
                    break
                raise
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(CRASH_EXIT_GRACE_S)
            raise ReaderCrashed(str(self.path), _describe_exit(self._proc.exitcode)) from None


def import_isolated(path: Path, options: ImportOptions, limits: Limits = Limits(), *, debug: bool = False) -> Scene:
    """Import `path` in a child process; raise ImportFailed on any failure, crash or timeout."""
    return PendingImport(path, options, limits, debug=debug).result()
