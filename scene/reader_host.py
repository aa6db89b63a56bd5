"""The process that forks the sandboxed readers: one per process that reads, started fresh, single-threaded.

A fork copies the memory of every thread but runs only the forking one, so a lock another thread held at
the fork stays held in the child forever. The processes that start readers run threads (usd-core's TBB
workers in a test process that validated a stage, a server's historian and executor threads), and readers
forked from them hung: one in TBB's `wait_on_address`, one on a Python lock. So no reader is forked from
the process that asks for it. The first request starts this host with `subprocess` (fork and exec at
once, safe in a threaded process); it imports the modules every reader needs (`PRELOAD`, so a reader
starts as fast as a plain fork would) with numpy's BLAS held to one thread, checks that it runs no thread
but its own, and then forks one reader per request.

A request is a message on a socket pair: the pickled target and arguments (the target by reference, so
it must be a module-level function), a status pipe and the write end of the reader's answer pipe. The
host forks, puts the reader into a process group of its own (from both sides, so the group exists
before the requester learns the pid: a stop kills the group with the reader's own children), writes the
pid on the status pipe and, when it has reaped the reader, its exit code (`waitstatus_to_exitcode`).

Lifetimes: a reader is SIGKILLed when the host dies (`scene.lifeline`, forked from the host's only
thread). The host kills every reader's group and exits when the requesting process is gone, however
it went: the kernel closes that process's end of the socket pair, which the host sees as end of file.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from scene.lifeline import die_with_parent

# What the host imports before its first fork: the sandbox's reader entry point and what it imports
# (numpy, the model, the importer registry). The readers' own libraries load in each reader, as they are
# format-specific and some are large.
PRELOAD = ("scene.sandbox",)
# numpy's BLAS (OpenBLAS) starts worker threads at import unless held to one; the host must stay single-threaded.
# Its readers inherit the setting: their numpy work is small arrays, and a federated build runs one per core.
HOST_ENV = {"OPENBLAS_NUM_THREADS": "1"}
MAX_REQUEST_BYTES = 1 << 20  # a pickled target and its arguments: a path, options, a few numbers
_SIGNED = struct.Struct("q")
# `python -c _BOOT FD PATHS`: the requester's import path (a test run's root, say), then serve on FD.
_BOOT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
    "from scene.reader_host import serve; serve(int(sys.argv[1]))"
)


class HostGone(RuntimeError):
    """The host died (it was killed): the readers it ran died with it."""


def thread_count(pid: int | str = "self") -> int:
    """Threads of process `pid` (this one by default)."""
    return len(os.listdir(f"/proc/{pid}/task"))


# --- the host ------------------------------------------------------------------------------------------------


def serve(control_fd: int) -> None:
    """Run the host on `control_fd` (its end of the socket pair) until the requesting process is gone."""
    for module in PRELOAD:
        importlib.import_module(module)
    if (threads := thread_count()) != 1:
        raise SystemExit(f"reader host: {threads} threads after loading {PRELOAD}; a fork would copy their locks")
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to the wakeup fd
    status: dict[int, int] = {}  # running reader's pid -> its status pipe
    while True:
        ready, _, _ = select.select([control, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(status)
        if control not in ready:
            continue
        request, fds, _, _ = socket.recv_fds(control, MAX_REQUEST_BYTES, 2)
        if not request:  # the requesting process is gone: so are its readers
            for pid in status:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            return
        status_fd, answer_fd = fds
        pid = _fork_reader(request, answer_fd, [control.fileno(), wake_r, wake_w, status_fd, *status.values()])
        with contextlib.suppress(OSError):  # the reader has made its group already, or has gone
            os.setpgid(pid, 0)
        os.close(answer_fd)
        with contextlib.suppress(BrokenPipeError):  # the requester stopped listening
            _write_signed(status_fd, pid)
        status[pid] = status_fd
        _reap(status)  # a reader that ended before we listed it


def _fork_reader(request: bytes, answer_fd: int, host_fds: list[int]) -> int:
    host = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        die_with_parent(host)  # first: before anything can fail
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in host_fds:
            os.close(fd)
        target, args = pickle.loads(request)
        target(Connection(answer_fd, readable=False), *args)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _reap(status: dict[int, int]) -> None:
    """Report the exit code of every reader that has ended, and forget it."""
    while status:
        try:
            pid, wait_status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status_fd = status.pop(pid)
        with contextlib.suppress(BrokenPipeError):  # the requester stopped listening
            _write_signed(status_fd, os.waitstatus_to_exitcode(wait_status))
        os.close(status_fd)


def _write_signed(fd: int, value: int) -> None:
    os.write(fd, _SIGNED.pack(value))  # 8 bytes into an empty pipe: written whole


# --- the requesting side -------------------------------------------------------------------------------------


class HostedProcess:
    """A reader the host forked: its pid, whether it still runs and, once it has ended, its exit code
    (negative: the signal that ended it; None after `join` only if the host died first)."""

    def __init__(self, pid: int, status_fd: int) -> None:
        self.pid = pid
        self.exitcode: int | None = None
        self._status = status_fd

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader to end, at most `timeout` seconds."""
        if self._status < 0:
            return
        ready, _, _ = select.select([self._status], [], [], timeout)
        if ready:
            data = os.read(self._status, _SIGNED.size)
            if len(data) == _SIGNED.size:
                (self.exitcode,) = _SIGNED.unpack(data)
            os.close(self._status)
            self._status = -1

    def is_alive(self) -> bool:
        self.join(0)
        return self._status >= 0

    def __del__(self) -> None:
        if self._status >= 0:
            os.close(self._status)


class _Host:
    """This process's reader host, started at its first request and again if it has died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self, target: Callable[..., None], args: tuple[Any, ...], answer_fd: int) -> HostedProcess:
        """Fork a reader that runs `target(Connection(answer_fd), *args)`; `target` and `args` are pickled."""
        request = pickle.dumps((target, args))
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        try:
            with self._lock:
                control = self._running()
                try:
                    socket.send_fds(control, [request], [status_w, answer_fd])
                except OSError as exc:
                    raise HostGone(f"the reader host has died ({exc})") from None
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        data = os.read(status_r, _SIGNED.size)
        if len(data) != _SIGNED.size:
            os.close(status_r)
            raise HostGone("the reader host died before it started the reader")
        return HostedProcess(_SIGNED.unpack(data)[0], status_r)

    def ensure_running(self) -> None:
        """Start the host now if it does not run, so that its start overlaps the caller's own work (the CLI
        calls it before it loads the importers)."""
        with self._lock:
            self._running()

    def _running(self) -> socket.socket:
        if self.pid is None or self._control is None:
            self._launch()
        assert self._control is not None
        return self._control

    def _launch(self) -> None:
        if self._control is not None:
            self._control.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), json.dumps(sys.path)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, **HOST_ENV},
            )
        self._control = ours

    def stop(self) -> None:
        """Close the host and wait for it to exit: then its readers' resource use (CPU, peak RSS) counts in
        this process's RUSAGE_CHILDREN, as `bench.plant_build` reports it."""
        with self._lock:
            if self._control is not None:
                self._control.close()
                self._control = None
            if self._proc is not None:
                self._proc.wait()
                self._proc = None

    def forget(self) -> None:
        """In a child forked from this process: the parent's host and socket are not ours to use."""
        self._lock = threading.Lock()
        self._proc = None
        if self._control is not None:
            self._control.close()  # our copy only: the parent's end stays open
            self._control = None


HOST = _Host()
os.register_at_fork(after_in_child=HOST.forget)
start = HOST.start
ensure_running = HOST.ensure_running
stop = HOST.stop
