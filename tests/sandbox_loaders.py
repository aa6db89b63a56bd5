"""Importers that misbehave on purpose, for tests/test_sandbox.py.

A reader is forked by `scene.reader_host`, not by the test process, so it gets its importer by reference
(module and name, as pickle names a function): these are module-level, and what a test would otherwise
close over (a file to write, a log) is derived from the input's path.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scene import sandbox
from scene.errors import ImportFailed
from scene.importers import ElementsReady, ImportOptions
from scene.lifeline import die_with_parent
from scene.model import Element, Mesh, Primitive, Scene

# Held by a thread of the test process while it starts a reader (see `needs_the_lock`).
LOCK = threading.Lock()


def one_element(name: str) -> Scene:
    scene = Scene()
    scene.add(Element(id=name, name=name, cls="Mesh"))
    return scene


def worker_pid_file(path: Path) -> Path:
    """Where `spawning` writes the pid of the worker it forked."""
    return path.with_name(f"{path.stem}.worker")


def log_file(path: Path) -> Path:
    """Where `recording` logs the start and end of each read."""
    return path.with_name("log")


def reports_its_pid(path: Path, options: ImportOptions) -> Scene:
    return one_element(f"pid {os.getpid()} parent {os.getppid()}")


def segfaults(path: Path, options: ImportOptions) -> Scene:
    os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError("unreachable")


def sleeps(path: Path, options: ImportOptions) -> Scene:
    time.sleep(600)
    raise AssertionError("woke up")


def _spawn_and_sleep(path: Path, *, lifeline: bool) -> Scene:
    reader = os.getpid()
    worker = os.fork()
    if worker == 0:
        if lifeline:
            die_with_parent(reader)
        time.sleep(600)
        os._exit(0)
    written = worker_pid_file(path).with_suffix(".partial")  # renamed into place: never seen empty
    written.write_text(str(worker))
    written.rename(worker_pid_file(path))
    time.sleep(600)
    raise AssertionError("woke up")


def spawning(path: Path, options: ImportOptions) -> Scene:
    """Fork a bare worker, then sleep: only a kill of the reader's whole group stops the worker."""
    return _spawn_and_sleep(path, lifeline=False)


def spawning_with_lifeline(path: Path, options: ImportOptions) -> Scene:
    """Fork a worker that dies with the reader, as the IFC reader's kernel workers do, then sleep."""
    return _spawn_and_sleep(path, lifeline=True)


def greedy(path: Path, options: ImportOptions) -> Scene:
    hoard = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GiB
    raise AssertionError(len(hoard))


def fails_at_line_3(path: Path, options: ImportOptions) -> Scene:
    raise ImportFailed(str(path), "bad vertex", "line 3")


def native_error(path: Path, options: ImportOptions) -> Scene:  # what usd-core's Tf.ErrorException looks like
    raise RuntimeError("\n\tError in 'Reader' at line 323: '<layer.usda> is not a valid usda layer'\n\tmore")


def no_callback(path: Path, options: ImportOptions, *extra: object) -> Scene:
    assert not extra, "only formats in ANNOUNCES_ELEMENTS get the callback"
    return one_element("a")


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def spinning(path: Path, options: ImportOptions) -> Scene:
    """The reader and a worker it forked both spin: together they use CPU twice as fast as wall time."""
    if os.fork() == 0:
        _spin(600)
        os._exit(0)
    _spin(600)
    raise AssertionError("spun out")


def waits_3_s(path: Path, options: ImportOptions) -> Scene:
    time.sleep(3)
    return one_element("a")


def recording(path: Path, options: ImportOptions) -> Scene:
    with log_file(path).open("a") as f:
        f.write(f"start {path.stem}\n")
    time.sleep(0.3)
    with log_file(path).open("a") as f:
        f.write(f"end {path.stem}\n")
    return one_element(path.stem)


def needs_the_lock(path: Path, options: ImportOptions) -> Scene:
    """Take `LOCK`, as a library takes its own (TBB's, the logging module's): a reader forked while another
    thread of its parent held it would wait forever."""
    with LOCK:
        return one_element("locked")


def ifc_with_endless_kernels(path: Path, options: ImportOptions, ready: ElementsReady) -> Scene:
    """The real IFC reader, whose kernel workers (forked by it, so they inherit this) never finish."""
    from scene.importers import ifc

    def never_done(*args: object, **kwargs: object) -> Iterator[object]:
        time.sleep(3600)
        yield from ()

    ifc._iterate = never_done  # type: ignore[assignment]
    return ifc.load(path, options, ready)


def many_pieces(path: Path, options: ImportOptions) -> Scene:
    """A scene of more meshes and elements than two pieces of a hand-over hold (`sandbox.PIECE_ITEMS`)."""
    scene = Scene()
    for i in range(2 * sandbox.PIECE_ITEMS + 1):
        triangle = Primitive(np.full((3, 3), i, np.float32), np.array([[0, 1, 2]], np.uint32), 0)
        scene.meshes[f"m{i}"] = Mesh(f"m{i}", [triangle])
        scene.add(Element(f"e{i}", f"element {i}", "Mesh", mesh=f"m{i}", properties={"P": {"i": i}}))
    scene.warnings.append("kept")
    return scene
