"""The sandbox turns crashes, hangs and memory blow-ups of a reader into one clear ImportFailed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

from scene import pipeline, reader_host, sandbox
from scene.errors import ImportFailed
from scene.importers import ImportOptions
from scene.model import Element
from tests import sandbox_loaders as loaders


def _use_loader(monkeypatch: pytest.MonkeyPatch, fn) -> None:
    # The parent looks the importer up and names it to the reader (a module-level function of tests.sandbox_loaders).
    monkeypatch.setattr(sandbox, "loader_for", lambda path: fn)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "model.obj"
    path.write_text("v 0 0 0\n")
    return path


def test_result_comes_back_from_the_child(monkeypatch, src):
    _use_loader(monkeypatch, loaders.reports_its_pid)
    scene = sandbox.import_isolated(src, ImportOptions())
    ((name, _),) = [e.name.split(" parent ") for e in scene.elements.values()]
    assert name != f"pid {os.getpid()}", "the importer must run in another process"


def test_segfault_becomes_a_clear_error(monkeypatch, src):
    _use_loader(monkeypatch, loaders.segfaults)
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(src, ImportOptions())
    assert "crashed (SIGSEGV)" in err.value.reason
    assert err.value.path == str(src)


def test_hang_is_stopped_at_the_time_limit(monkeypatch, src):
    _use_loader(monkeypatch, loaders.sleeps)
    start = time.monotonic()
    with pytest.raises(ImportFailed, match="longer than 1 s"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(timeout_s=1.0))
    assert time.monotonic() - start < 10


def test_a_reader_that_uses_no_cpu_is_stopped_as_stuck_long_before_the_wall_clock_bound(monkeypatch, src):
    _use_loader(monkeypatch, loaders.sleeps)
    start = time.monotonic()
    with pytest.raises(ImportFailed, match=r"used no CPU for 2 s and was stopped: it is stuck") as err:
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(cpu_s=100.0, timeout_s=400.0, stall_s=2.0))
    assert time.monotonic() - start < 30
    assert "report it" in err.value.reason


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_stopped_reader_takes_its_own_children_with_it(monkeypatch, src):
    # The IFC reader forks kernel workers; a hung kernel must not outlive the reader's time limit.
    _use_loader(monkeypatch, loaders.spawning)
    with pytest.raises(ImportFailed, match=r"longer than 0\.5 s"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(timeout_s=0.5))
    worker = int(loaders.worker_pid_file(src).read_text())
    _wait_until(lambda: not _running(worker), 5, f"worker {worker} still runs")


def test_memory_blow_up_is_bounded(monkeypatch, src):
    _use_loader(monkeypatch, loaders.greedy)
    with pytest.raises(ImportFailed, match="out of memory"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(memory_mb=1024))


def test_a_bound_too_low_for_the_readers_libraries_says_so_and_how_to_raise_it():
    # IfcOpenShell that cannot map its library under the bound says it was "not built for" this platform.
    ifc = Path(__file__).parent / "fixtures" / "hard" / "ifc4x3_rc4_wall.ifc"
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(ifc, ImportOptions(), sandbox.Limits(memory_mb=120))
    assert err.value.reason == "ran out of memory loading its libraries (limit 120 MB): raise --max-memory"


def test_importer_errors_keep_their_location(monkeypatch, src):
    _use_loader(monkeypatch, loaders.fails_at_line_3)
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(src, ImportOptions())
    assert str(err.value) == f"{src}: bad vertex [line 3]"
    assert "Traceback" in err.value.__notes__[0]


def test_a_library_error_whose_message_starts_blank_still_says_what_happened(monkeypatch, src):
    _use_loader(monkeypatch, loaders.native_error)
    with pytest.raises(ImportFailed) as err:
        sandbox.import_isolated(src, ImportOptions())
    assert err.value.reason == "RuntimeError: Error in 'Reader' at line 323: '<layer.usda> is not a valid usda layer'"


# --- readers are never forked from a threaded process -----------------------------------------------------------


def test_a_lock_another_thread_holds_when_a_reader_starts_does_not_hang_the_reader(monkeypatch, src):
    # What hung suite runs: a reader forked while a thread of its parent (TBB, a server's) held a lock waited for
    # it forever. Readers come from a host that runs no thread of ours, so the lock is free there.
    _use_loader(monkeypatch, loaders.needs_the_lock)
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with loaders.LOCK:
            taken.set()
            release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(30)
        scene = sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(timeout_s=60.0))
    finally:
        release.set()
        thread.join()
    assert list(scene.elements) == ["locked"]


def test_readers_come_from_a_single_threaded_host_that_this_process_started(monkeypatch, src):
    _use_loader(monkeypatch, loaders.reports_its_pid)
    ((_, parent),) = [e.name.split(" parent ") for e in sandbox.import_isolated(src, ImportOptions()).elements.values()]
    assert int(parent) == reader_host.HOST.pid != os.getpid()
    assert reader_host.thread_count(int(parent)) == 1
    assert _parent_of(int(parent)) == os.getpid()


def test_a_reader_whose_host_is_killed_dies_with_it_and_the_next_read_starts_a_new_host(monkeypatch, src):
    _use_loader(monkeypatch, loaders.spawning_with_lifeline)
    job = sandbox.PendingImport(src, ImportOptions(), sandbox.Limits(timeout_s=120.0), debug=False)
    _wait_until(loaders.worker_pid_file(src).exists, 60, "the reader never forked its worker")
    worker, host = int(loaders.worker_pid_file(src).read_text()), reader_host.HOST.pid
    assert host is not None
    os.kill(host, signal.SIGKILL)
    with pytest.raises(ImportFailed, match="the reader was lost: the process that forked it"):
        job.result()
    _wait_until(lambda: not _running(worker), 10, f"worker {worker} outlived its reader")
    _use_loader(monkeypatch, loaders.reports_its_pid)
    assert sandbox.import_isolated(src, ImportOptions()).elements
    assert reader_host.HOST.pid not in (None, host)


def test_threads_of_one_process_may_start_readers_at_once(monkeypatch, tmp_path):
    # Several threads of one process (a server's executor) may start readers at once: each gets its own reader.
    _use_loader(monkeypatch, loaders.reports_its_pid)
    paths = [tmp_path / f"{i}.obj" for i in range(6)]
    for path in paths:
        path.write_text("v 0 0 0\n")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        names = list(pool.map(lambda p: next(iter(sandbox.import_isolated(p, ImportOptions()).elements)), paths))
    assert len(set(names)) == 6


def test_unknown_extension_is_refused_without_a_child(tmp_path):
    path = tmp_path / "drawing.dwg"
    path.write_bytes(b"AC1032")
    with pytest.raises(ImportFailed, match=r"unknown file type '\.dwg'"):
        sandbox.import_isolated(path, ImportOptions())


REPO = Path(__file__).resolve().parents[1]
SAMPLE_IFC = REPO / "assets" / "pump_station.ifc"


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
    _use_loader(monkeypatch, loaders.many_pieces)
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
    whole = len(pickle.dumps(loaders.many_pieces(src, ImportOptions())))
    assert max(sizes) < whole / 2, "no message may carry the whole scene: the receiver would hold it twice"


def test_formats_without_an_early_element_tree_do_not_announce(monkeypatch, src):
    _use_loader(monkeypatch, loaders.no_callback)
    announced: list[list[Element]] = []
    job = sandbox.PendingImport(src, ImportOptions(), sandbox.Limits(), debug=False, on_elements=announced.append)
    assert list(job.result().elements) == ["a"] and announced == []


# --- the reader and its kernel workers die with the CLI, however it is stopped --------------------------------

# A build whose IFC kernels never finish (a slow input, on demand): the real CLI, sandbox, reader host and kernel
# workers. The reader runs in another process, which gets the slow importer by name from the CLI's registry.
SLOW_BUILD = """
import scene.sandbox
from tests.sandbox_loaders import ifc_with_endless_kernels
scene.sandbox.loader_for = lambda path: ifc_with_endless_kernels
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


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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
    cli = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stderr=subprocess.PIPE, text=True)
    tree: list[int] = []
    try:

        def working() -> bool:  # the CLI's reader host, its reader, and the reader's kernel workers
            hosts = _children(cli.pid)
            readers = [r for h in hosts for r in _children(h)]
            tree[:] = [*hosts, *readers, *(w for r in readers for w in _children(r))]
            return len(readers) == 1 and len(tree) > 2

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
            os.killpg(tree[1], signal.SIGKILL)
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


def test_a_spinning_reader_is_stopped_at_its_cpu_bound_with_its_workers_counted(monkeypatch, src):
    # Two processes (the reader and a kernel worker it forked) share the bound: CPU, not wall time.
    _use_loader(monkeypatch, loaders.spinning)
    with pytest.raises(ImportFailed, match=r"more than 2 CPU-seconds and was stopped; allow more with --max-cpu"):
        sandbox.import_isolated(src, ImportOptions(), sandbox.Limits(cpu_s=2.0, timeout_s=120.0))


def test_a_reader_that_waits_is_not_refused_for_waiting(monkeypatch, src):
    # 3 s of wall time but almost no CPU: a reader waiting for a core (or for disk) is within a 1 s CPU bound.
    _use_loader(monkeypatch, loaders.waits_3_s)
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
    recording = loaders.recording
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
    log = loaders.log_file(inputs[0])
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
