"""The sandbox turns crashes, hangs and memory blow-ups of a reader into one clear ImportFailed."""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from scene import pipeline, sandbox
from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.model import Element, Mesh, Primitive, Scene


def _use_loader(monkeypatch: pytest.MonkeyPatch, fn) -> None:
    # The child is forked, so it sees the patched registry lookup.
    monkeypatch.setattr(sandbox, "loader_for", lambda path: fn)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "model.obj"
    path.write_text("v 0 0 0\n")
    return path


def test_result_comes_back_from_the_child(monkeypatch, src):
    def load(path: Path, options: ImportOptions) -> Scene:
        scene = Scene()
        scene.add(Element(id="a", name=f"pid {os.getpid()}", cls="Mesh"))
        return scene

    _use_loader(monkeypatch, load)
    scene = sandbox.import_isolated(src, ImportOptions())
    assert list(scene.elements) == ["a"]
    assert scene.elements["a"].name != f"pid {os.getpid()}", "the importer must run in another process"


def test_segfault_becomes_a_clear_error(monkeypatch, src):
    _use_loader(monkeypatch, lambda path, options: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(src, ImportOptions())
    assert "crashed (SIGSEGV)" in err.value.reason
    assert err.value.path == str(src)


def test_hang_is_stopped_at_the_time_limit(monkeypatch, src):
    _use_loader(monkeypatch, lambda path, options: time.sleep(60))
    start = time.monotonic()
    with pytest.raises(ImportFailed, match="longer than 1 s"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(timeout_s=1.0))
    assert time.monotonic() - start < 10


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_stopped_reader_takes_its_own_children_with_it(monkeypatch, src, tmp_path):
    # The IFC reader forks kernel workers; a hung kernel must not outlive the reader's time limit.
    pid_file = tmp_path / "worker.pid"

    def spawning(path: Path, options: ImportOptions) -> Scene:
        worker = os.fork()
        if worker == 0:
            time.sleep(60)
            os._exit(0)
        pid_file.write_text(str(worker))
        time.sleep(60)

    _use_loader(monkeypatch, spawning)
    with pytest.raises(ImportFailed, match=r"longer than 0\.5 s"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(timeout_s=0.5))
    worker = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(worker)


def test_memory_blow_up_is_bounded(monkeypatch, src):
    def greedy(path: Path, options: ImportOptions) -> Scene:
        hoard = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GiB
        raise AssertionError(len(hoard))

    _use_loader(monkeypatch, greedy)
    with pytest.raises(ImportFailed, match="out of memory"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(memory_mb=1024))


def test_importer_errors_keep_their_location(monkeypatch, src):
    def bad(path: Path, options: ImportOptions) -> Scene:
        raise ImportFailed(str(path), "bad vertex", "line 3")

    _use_loader(monkeypatch, bad)
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(src, ImportOptions())
    assert str(err.value) == f"{src}: bad vertex [line 3]"
    assert "Traceback" in err.value.__notes__[0]


def test_a_library_error_whose_message_starts_blank_still_says_what_happened(monkeypatch, src):
    def native(path: Path, options: ImportOptions) -> Scene:  # what usd-core's Tf.ErrorException looks like
        raise RuntimeError("\n\tError in 'Reader' at line 323: '<layer.usda> is not a valid usda layer'\n\tmore")

    _use_loader(monkeypatch, native)
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(src, ImportOptions())
    assert err.value.reason == "RuntimeError: Error in 'Reader' at line 323: '<layer.usda> is not a valid usda layer'"


def test_unknown_extension_is_refused_without_a_child(tmp_path):
    path = tmp_path / "drawing.dwg"
    path.write_bytes(b"AC1032")
    with pytest.raises(ImportFailed, match=r"unknown file type '\.dwg'"):
        sandbox.import_isolated(path, ImportOptions())


SAMPLE_IFC = Path(__file__).resolve().parents[1] / "assets" / "pump_station.ifc"


def test_an_ifc_import_hands_over_its_elements_before_the_geometry() -> None:
    announced: list[tuple[list[Element], list[str | None]]] = []
    options, limits = ImportOptions(), sandbox.Limits()

    def early(elements: list[Element]) -> None:
        announced.append((elements, [e.mesh for e in elements]))

    scene = sandbox.PendingImport(SAMPLE_IFC, options, limits, debug=False, on_elements=early).result()
    ((elements, meshes_then),) = announced
    assert all(mesh is None for mesh in meshes_then) and any(e.mesh for e in scene.elements.values())
    # The tree and its properties cross the pipe once: the scene's elements are the very objects announced,
    # placed and given their meshes afterwards.
    assert all(a is b for a, b in zip(elements, scene.elements.values(), strict=True))


def test_a_scene_crosses_the_pipe_in_pieces_and_comes_back_whole(monkeypatch, src):
    count = 2 * sandbox.PIECE_ITEMS + 1

    def load(path: Path, options: ImportOptions) -> Scene:
        scene = Scene()
        for i in range(count):
            triangle = Primitive(np.full((3, 3), i, np.float32), np.array([[0, 1, 2]], np.uint32), 0)
            scene.meshes[f"m{i}"] = Mesh(f"m{i}", [triangle])
            scene.add(Element(f"e{i}", f"element {i}", "Mesh", mesh=f"m{i}", properties={"P": {"i": i}}))
        scene.warnings.append("kept")
        return scene

    _use_loader(monkeypatch, load)
    sizes: list[int] = []
    receive = sandbox.PendingImport._receive

    def measured(self: sandbox.PendingImport) -> tuple[str, object]:
        message = receive(self)
        sizes.append(len(pickle.dumps(message)))
        return message

    monkeypatch.setattr(sandbox.PendingImport, "_receive", measured)
    scene = sandbox.import_isolated(src, ImportOptions())
    assert list(scene.elements) == [f"e{i}" for i in range(count)]
    assert [e.properties["P"]["i"] for e in scene.elements.values()] == list(range(count))
    assert all(scene.meshes[f"m{i}"].primitives[0].positions[0, 0] == i for i in range(count))
    assert scene.warnings == ["kept"]
    whole = len(pickle.dumps(load(src, ImportOptions())))
    assert max(sizes) < whole / 2, "no message may carry the whole scene: the receiver would hold it twice"


def test_formats_without_an_early_element_tree_do_not_announce(monkeypatch, src):
    def load(path: Path, options: ImportOptions, *extra: object) -> Scene:
        assert not extra, "only formats in ANNOUNCES_ELEMENTS get the callback"
        scene = Scene()
        scene.add(Element(id="a", name="a", cls="Mesh"))
        return scene

    _use_loader(monkeypatch, load)
    announced: list[list[Element]] = []
    job = sandbox.PendingImport(src, ImportOptions(), sandbox.Limits(), debug=False, on_elements=announced.append)
    assert list(job.result().elements) == ["a"] and announced == []


# --- the reader and its kernel workers die with the CLI, however it is stopped --------------------------------

# A build whose IFC kernels never finish (a slow input, on demand): the real CLI, sandbox and kernel workers.
SLOW_BUILD = """
import sys, time
import scene.importers.ifc as ifc

def never_done(*args, **kwargs):
    time.sleep(3600)
    yield from ()

ifc._iterate = never_done
from viewer_server.cli import run
run()
"""
STARTUP_BOUND_S = 120.0  # Python, usd-core, the IFC parse and the fork, on a loaded 2-core machine
GONE_BOUND_S = 30.0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _wait_until(condition, bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGTERM to the CLI", "SIGKILL to its process group", "SIGKILL to the CLI alone"])
def test_the_reader_and_its_kernel_workers_die_with_the_cli(tmp_path: Path, stop: str) -> None:
    import subprocess
    import sys

    out = tmp_path / "out"
    cmd = [sys.executable, "-c", SLOW_BUILD, "build", str(SAMPLE_IFC), "-o", str(out)]
    # Its own process group, as a CI job or a systemd unit has; the reader makes one of its own.
    cli = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    tree: list[int] = []
    try:

        def working() -> bool:
            readers = _children(cli.pid)
            tree[:] = [*readers, *(w for r in readers for w in _children(r))]
            return len(readers) == 1 and len(tree) > 1

        _wait_until(working, STARTUP_BOUND_S, "the reader never started its kernel workers")
        if stop == "SIGTERM to the CLI":
            cli.send_signal(signal.SIGTERM)
        elif stop == "SIGKILL to its process group":
            os.killpg(cli.pid, signal.SIGKILL)
        else:
            cli.send_signal(signal.SIGKILL)
        _wait_until(lambda: not any(map(_running, tree)), GONE_BOUND_S, f"left running: {tree}")
        _, err = cli.communicate(timeout=GONE_BOUND_S)
        if stop == "SIGTERM to the CLI":  # a clean stop: one line, and no staging folder left behind
            assert (cli.returncode, err.strip().splitlines()) == (143, ["twinview: terminated"])
            assert list(tmp_path.iterdir()) == []
    finally:  # whatever the test found still running, and the reader's whole group
        for pid in [cli.pid, *tree]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, IndexError):
            os.killpg(tree[0], signal.SIGKILL)
        cli.wait()


def test_a_child_whose_parent_died_before_it_asked_exits_at_once() -> None:
    import multiprocessing as mp

    from scene.lifeline import ORPHAN_EXIT, die_with_parent

    def orphan() -> None:
        die_with_parent(os.getppid() + 1_000_000)  # not our parent: as if it had died and we were adopted
        os._exit(0)

    child = mp.get_context("fork").Process(target=orphan)
    child.start()
    child.join(GONE_BOUND_S)
    assert child.exitcode == ORPHAN_EXIT


# --- the default memory bound ------------------------------------------------------------------------------------


def test_the_default_memory_bound_is_a_fraction_of_the_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    total_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    monkeypatch.setattr(sandbox, "CGROUP_MEMORY_LIMITS", ())
    assert sandbox.available_memory_mb() == total_mb
    assert max(sandbox.MIN_MEMORY_MB, int(total_mb * sandbox.MEMORY_FRACTION)) == sandbox.DEFAULT_MEMORY_MB
    assert total_mb > sandbox.DEFAULT_MEMORY_MB
    (tmp_path / "memory.max").write_text(f"{8 * 2**30}\n")  # a container allowed 8 GiB
    (tmp_path / "unlimited").write_text("max\n")
    monkeypatch.setattr(sandbox, "CGROUP_MEMORY_LIMITS", (str(tmp_path / "unlimited"), str(tmp_path / "memory.max")))
    assert sandbox.available_memory_mb() == min(total_mb, 8192)
    assert sandbox.default_memory_mb() == max(sandbox.MIN_MEMORY_MB, int(min(total_mb, 8192) * sandbox.MEMORY_FRACTION))
    monkeypatch.setattr(sandbox, "available_memory_mb", lambda: 1024)  # a small machine still reads USD and STEP
    assert sandbox.default_memory_mb() == sandbox.MIN_MEMORY_MB


# --- the CPU-time bound and federated builds ---------------------------------------------------------------------


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_spinning_reader_is_stopped_at_its_cpu_bound_with_its_workers_counted(monkeypatch, src):
    # Two processes (the reader and a kernel worker it forked) share the bound: CPU, not wall time.
    def spinning(path: Path, options: ImportOptions) -> Scene:
        if os.fork() == 0:
            _spin(60)
            os._exit(0)
        _spin(60)

    _use_loader(monkeypatch, spinning)
    with pytest.raises(ImportFailed, match=r"more than 2 CPU-seconds and was stopped; allow more with --max-cpu"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(cpu_s=2.0, timeout_s=120.0))


def test_a_reader_that_waits_is_not_refused_for_waiting(monkeypatch, src):
    # 3 s of wall time but almost no CPU: a reader waiting for a core (or for disk) is within a 1 s CPU bound.
    def waiting(path: Path, options: ImportOptions) -> Scene:
        time.sleep(3)
        scene = Scene()
        scene.add(Element(id="a", name="A", cls="Mesh"))
        return scene

    _use_loader(monkeypatch, waiting)
    scene = sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(cpu_s=1.0, timeout_s=60.0))
    assert list(scene.elements) == ["a"]


def test_the_default_bounds_grow_with_the_file(tmp_path: Path):
    small, big = tmp_path / "small.ifc", tmp_path / "big.ifc"
    small.write_bytes(b"x" * 1000)
    with big.open("wb") as f:
        f.truncate(200_000_000)  # a 200 MB plant
    limits = sandbox.Limits()
    cpu_small, wall_small = limits.for_input(small)
    cpu_big, wall_big = limits.for_input(big)
    assert cpu_small == pytest.approx(sandbox.CPU_S_BASE, abs=0.1)
    assert cpu_big == pytest.approx(sandbox.CPU_S_BASE + 200 * sandbox.CPU_S_PER_MB)
    assert (wall_small, wall_big) == (sandbox.WALL_PER_CPU * cpu_small, sandbox.WALL_PER_CPU * cpu_big)
    assert sandbox.Limits(cpu_s=5, timeout_s=7).for_input(big) == (5, 7)


def test_a_federated_build_reads_within_its_slots_and_keeps_the_input_order(monkeypatch, tmp_path: Path):
    log = tmp_path / "log"

    def recording(path: Path, options: ImportOptions) -> Scene:
        with log.open("a") as f:
            f.write(f"start {path.stem}\n")
        time.sleep(0.3)
        with log.open("a") as f:
            f.write(f"end {path.stem}\n")
        scene = Scene()
        scene.add(Element(id=path.stem, name=path.stem, cls="Mesh"))
        return scene

    _use_loader(monkeypatch, recording)
    monkeypatch.setattr(pipeline, "loader_for", lambda path: recording)
    inputs = []
    for name in ("a", "b", "c", "d", "e"):
        inputs.append(tmp_path / f"{name}.obj")
        inputs[-1].write_text("v 0 0 0\n")
    said: list[str] = []
    scene = pipeline.import_all(inputs, ImportOptions(), sandbox.Limits(), progress=said.append, slots=2)
    assert [e.name for e in scene.elements.values() if e.cls == "Mesh"] == ["a", "b", "c", "d", "e"]
    running = peak = 0
    for line in log.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        peak = max(peak, running)
    assert peak == 2, log.read_text()
    assert said[1:] == [f"reading {name}.obj ({i} of 5)" for i, name in enumerate("abcde", 1)]


def test_a_federated_build_uses_the_cores_it_has_and_the_memory_it_may(monkeypatch):
    monkeypatch.setattr(pipeline, "available_memory_mb", lambda: 8192)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 8)
    assert pipeline.concurrent_imports(sandbox.Limits(memory_mb=2048)) == 4  # memory decides
    assert pipeline.concurrent_imports(sandbox.Limits(memory_mb=512)) == 8  # cores decide
    assert pipeline.concurrent_imports(sandbox.Limits(memory_mb=16384)) == 1  # always one
