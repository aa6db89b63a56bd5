"""Fan-out benchmark: TwinView against viser, the same node updates fanned out to N clients.

    python -m bench.fanout --quick          # small matrix, about a minute
    python -m bench.fanout                  # the full matrix of the issue (K, N, R = {100, 10 000} x
                                            # {10, 100} x {1 000, 10 000}, T = 10 s), both systems
    python -m bench.fanout --systems twin --k 10000 --n 100 --rate 10000 --duration 10

K elements, N WebSocket clients of one session, telemetry at an aggregate R updates/s for T seconds,
measured at the clients. Each server runs in its own process (so psutil sees its CPU and RSS alone),
the driver in another (for viser, inside the server: it has no ingest path), the clients in one or a
few more; all on 127.0.0.1. Results: a markdown table on stdout and in bench/results/fanout.md, the
raw numbers in bench/results/fanout.json. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench._fanout_stats import ClientLog, compute_metrics, make_schedule

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = sys.executable

FULL_K = (100, 10_000)
FULL_N = (10, 100)
FULL_R = (1_000, 10_000)
QUICK_K = (100, 1_000)
QUICK_N = (10,)
QUICK_R = (1_000,)

DRAIN_S = 2.0  # clients keep listening this long after the last update, then convergence is judged
# Server start + seeding + all clients holding the seed state. viser replays its whole scene to each
# new client, about 1 s per client at K = 10 000 on this 2-core machine, so N = 100 needs minutes.
SETUP_TIMEOUT_S = 600.0
SAMPLE_S = 0.25  # how often the load, the kernel's socket queues and the server's backlog are sampled
# A client process using this share of a core, or this many unread bytes in one client socket's
# receive queue, means the clients are behind, whatever the server does.
CLIENT_SATURATED = 0.9
CLIENT_BEHIND_BYTES = 256 * 1024
# A benchmark process runnable but waiting for a CPU this share of the run: the host, not the code.
HOST_STARVED = 0.25


# --- child processes speaking JSON lines ----------------------------------------------------------


class Child:
    """A subprocess that prints JSON lines on stdout and reads JSON lines on stdin."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.lines: queue.Queue[dict | None] = queue.Queue()
        self.stderr_tail: list[str] = []
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.ps = psutil.Process(self.proc.pid)
        _renice(self)
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read_out(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    self.lines.put(json.loads(line))
        self.lines.put(None)

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            self.stderr_tail.append(line.rstrip())
            del self.stderr_tail[:-30]

    def send(self, **msg: Any) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.write(json.dumps(msg) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]

    def expect(self, key: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {key!r} within {timeout:.0f} s; {self.err()}")
            try:
                msg = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                raise RuntimeError(f"{self.name} exited ({self.proc.poll()}) before {key!r}; {self.err()}")
            if key in msg:
                return msg
            if "error" in msg:
                raise RuntimeError(f"{self.name}: {msg['error']}")

    def err(self) -> str:
        return "stderr: " + " | ".join(self.stderr_tail[-8:]) if self.stderr_tail else "no stderr"

    def cpu(self) -> float:
        """CPU seconds (user + system) of the process and its children so far."""
        total = 0.0
        for p in [self.ps, *self._children()]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def thread_cpu(self, tid: int) -> float:
        """CPU seconds of one thread of the process so far (/proc/PID/task/TID/schedstat, first field)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(Path(f"/proc/{self.proc.pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9
        return 0.0

    def run_queue_wait(self) -> float:
        """Seconds the process's threads (and its children's) were runnable but waiting for a CPU
        (/proc/PID/task/*/schedstat, second field): how much the rest of the machine held it back."""
        total = 0
        for p in [self.ps, *self._children()]:
            for stat in Path(f"/proc/{p.pid}/task").glob("*/schedstat"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int(stat.read_text().split()[1])
        return total / 1e9

    def _children(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return self.ps.children(recursive=True)
        return []

    def rss(self) -> int:
        with contextlib.suppress(psutil.Error):
            return self.ps.memory_info().rss
        return 0

    def peak_rss(self) -> int:
        """VmHWM: the peak resident set size over the process's life."""
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return self.rss()

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.send(quit=True)
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


class JitterProbe(threading.Thread):
    """How late a 5 ms sleep wakes up on this host while a configuration runs: a measure of how much
    CPU the benchmark's processes were denied by everything else on the machine."""

    PERIOD_S = 0.005

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.late: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.monotonic()
            time.sleep(self.PERIOD_S)
            self.late.append(time.monotonic() - t - self.PERIOD_S)

    def result(self) -> dict[str, float]:
        self.halt.set()
        self.join(1.0)
        a = np.array(self.late or [math.nan]) * 1e3
        return {"host_jitter_p99_ms": float(np.percentile(a, 99)), "host_jitter_max_ms": float(a.max())}


GC_FREEZE = False  # set by --gc-freeze: an experiment on TwinView's server, not its normal behaviour
NICE = 0  # set by --nice: scheduling priority of every benchmark process (negative = ahead of others)
CLIENT_PROCS = 4  # set by --client-procs: the clients are spread over this many processes (at most N)
ENCODING = "msgpack"  # set by --encoding: TwinView's subprotocol for the clients (viser has one format)


def socket_queues(port: int) -> tuple[list[int], list[int], list[int]]:
    """Bytes unread in the receive queue of every established client socket connected to `port`, bytes
    not yet acknowledged in the send queue of every server socket on it, and bytes the server has not
    read from its sockets (the publisher's readings waiting) (/proc/net/tcp*: the same numbers `ss -tn`
    shows as Recv-Q and Send-Q)."""
    recv, send, server_recv = [], [], []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] != "01":  # ESTABLISHED
                    continue
                tx, rx = (int(x, 16) for x in f[4].split(":"))
                if int(f[2].rsplit(":", 1)[1], 16) == port:
                    recv.append(rx)
                elif int(f[1].rsplit(":", 1)[1], 16) == port:
                    send.append(tx)
                    server_recv.append(rx)
    return recv, send, server_recv


class ConditionSampler(threading.Thread):
    """While a configuration runs, every SAMPLE_S: the load average, the kernel's queues of the server's
    sockets (clients' receive side, server's send side) and, for TwinView, the server's own backlog
    gauge (`/api/health`: outbox_pending_keys_max, send_queue_bytes_max)."""

    def __init__(self, port: int, health_url: str | None) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.health_url = health_url
        self.halt = threading.Event()
        self.samples: list[dict[str, float]] = []

    def run(self) -> None:
        while not self.halt.wait(SAMPLE_S):
            recv, send, server_recv = socket_queues(self.port)
            sample = {
                "load": os.getloadavg()[0],
                "recv_sum": float(sum(recv)),
                "recv_max": float(max(recv, default=0)),
                "send_sum": float(sum(send)),
                "server_recv_sum": float(sum(server_recv)),
            }
            if self.health_url:
                with contextlib.suppress(OSError, ValueError):
                    with urllib.request.urlopen(self.health_url, timeout=2) as answer:
                        health = json.load(answer)
                    sample["backlog_keys"] = float(health["outbox_pending_keys_max"])
                    sample["send_queue_max"] = float(health.get("send_queue_bytes_max", math.nan))
            self.samples.append(sample)

    def result(self) -> dict[str, float]:
        self.halt.set()
        self.join(2.0)

        def peak(name: str) -> float:
            values = [x[name] for x in self.samples if name in x]
            return max(values) if values else math.nan

        last = self.samples[-1] if self.samples else {}
        return {
            "load_during_max": peak("load"),
            "client_recv_queue_peak_mb": peak("recv_sum") / 2**20,
            "client_recv_queue_socket_peak_kb": peak("recv_max") / 1024,
            "client_recv_queue_end_mb": last.get("recv_sum", math.nan) / 2**20,
            "server_send_queue_peak_mb": peak("send_sum") / 2**20,
            "server_recv_queue_peak_mb": peak("server_recv_sum") / 2**20,
            "server_backlog_keys_peak": peak("backlog_keys"),
            "server_send_queue_bytes_max_peak": peak("send_queue_max"),
        }


def _renice(child: Child) -> None:
    if NICE:
        with contextlib.suppress(psutil.Error):
            child.ps.nice(NICE)


# --- the two systems -------------------------------------------------------------------------------


@dataclass
class Running:
    server: Child
    driver: Child  # the same Child as server for viser
    url: str
    setup_s: float
    extra: list[Child] = field(default_factory=list)
    historian_tid: int | None = None  # TwinView's historian writer thread, when it runs one

    def stop(self) -> None:
        for c in {id(x): x for x in [self.driver, *self.extra, self.server]}.values():
            c.stop()


def start_viser(k: int, work: Path) -> Running:
    t = time.monotonic()
    server = Child("viser server", [PY, "-m", "bench._fanout_viser", "--k", str(k)])
    try:
        port = server.expect("ready", SETUP_TIMEOUT_S)["ready"]
    except Exception:
        server.stop()
        raise
    return Running(server, server, f"ws://127.0.0.1:{port}", time.monotonic() - t)


def start_twin(k: int, work: Path, history: bool = True) -> Running:
    from bench import _fanout_twin

    t = time.monotonic()
    scene_dir = work / "scene"
    bindings = work / "bindings.json"
    _fanout_twin.write_scene(scene_dir, bindings, k)
    port = _fanout_twin.free_port()
    server = Child(
        "twinview server",
        [
            PY,
            "-m",
            "bench._fanout_twin",
            "serve",
            "--scene-dir",
            str(scene_dir),
            "--bindings",
            str(bindings),
            "--port",
            str(port),
            "--data-dir",
            str(work / "data"),
            *([] if history else ["--no-history"]),
        ],
    )
    try:
        historian_tid = server.expect("ready", SETUP_TIMEOUT_S).get("historian_tid")
        url = f"ws://127.0.0.1:{port}/ws"
        driver = Child("twinview publisher", [PY, "-m", "bench._fanout_twin", "drive", "--url", url, "--k", str(k)])
        try:
            driver.expect("ready", SETUP_TIMEOUT_S)
        except Exception:
            driver.stop()
            raise
    except Exception:
        server.stop()
        raise
    return Running(server, driver, url, time.monotonic() - t, historian_tid=historian_tid)


STARTERS = {"viser": start_viser, "twin": start_twin}
LABEL = {"viser": "viser", "twin": "TwinView"}


def clients_argv(system: str, url: str, k: int, *options: str) -> list[str]:
    """The command line of one bench._fanout_clients process for `system` at `url` with K elements."""
    return [PY, "-m", "bench._fanout_clients", "--system", system, "--url", url, "--k", str(k), *options]


def start_clients(
    system: str, url: str, k: int, n: int, work: Path, tag: str, idle: bool = False, max_seconds: float = 1200.0
) -> list[Child]:
    procs = max(1, min(n, CLIENT_PROCS))
    sizes = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    out = []
    for i, size in enumerate(sizes):
        argv = clients_argv(
            system,
            url,
            k,
            "--n",
            str(size),
            "--sync-timeout",
            str(SETUP_TIMEOUT_S),
            "--max-seconds",
            str(max_seconds),
            "--encoding",
            ENCODING,
        )
        if idle:
            argv.append("--idle")
        else:
            argv += ["--out", str(work / f"{tag}-clients-{i}.npz")]
        out.append(Child(f"{system} clients #{i}", argv))
    return out


def load_client_logs(path: Path) -> list[ClientLog]:
    with np.load(path) as npz:
        z = {name: npz[name] for name in npz.files}  # each npz[name] access re-reads the file
    logs = []
    o = fo = 0
    for ln, fl in zip(z["lens"], z["flens"], strict=True):
        logs.append(
            ClientLog(
                elems=z["elems"][o : o + ln],
                counters=z["counters"][o : o + ln],
                times=z["times"][o : o + ln],
                frame_times=z["frame_times"][fo : fo + fl],
            )
        )
        o += ln
        fo += fl
    return logs


# --- one configuration -------------------------------------------------------------------------------


def run_config(system: str, k: int, n: int, rate: float, duration: float, seed: int = 1, history: bool = True) -> dict:
    """One configuration; `history=False` serves TwinView without its historian (bench/history.py compares)."""
    row: dict[str, Any] = {
        "system": system,
        "k": k,
        "n": n,
        "rate": rate,
        "duration": duration,
        "encoding": ENCODING if system == "twin" else "msgpack+zstd",
        "status": "ok",
    }
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"fanout-{system}-") as tmp:
        work = Path(tmp)
        running: Running | None = None
        clients: list[Child] = []
        window: tuple[float, float] | None = None
        sampler: ConditionSampler | None = None
        try:
            running = start_twin(k, work, history) if system == "twin" else STARTERS[system](k, work)
            row["setup_s"] = round(running.setup_s, 2)
            clients = start_clients(
                system, running.url, k, n, work, "run", max_seconds=SETUP_TIMEOUT_S + 4 * duration + 180
            )
            sync_ms: list[float] = []
            for c in clients:
                msg = c.expect("synced", SETUP_TIMEOUT_S + 30)
                if not msg["synced"]:
                    raise RuntimeError(
                        f"{c.name}: only {msg['n_synced']}/{msg['n']} clients got the seed state; "
                        f"errors {msg.get('errors')}"
                    )
                sync_ms += msg["sync_ms"]
            row["initial_sync_p50_ms"] = float(np.median(sync_ms)) if sync_ms else None
            row["sync_s"] = round(time.monotonic() - t_start - running.setup_s, 2)

            if GC_FREEZE and system == "twin":
                running.server.send(gc_freeze=True)
                time.sleep(0.5)
            procs = [running.server, running.driver, *clients]
            row["nice_server"] = running.server.ps.nice()
            row["nice_clients"] = sorted({c.ps.nice() for c in clients})
            row["load_before"] = round(os.getloadavg()[0], 2)
            cpu0 = {id(p): p.cpu() for p in procs}
            wait0 = {id(p): p.run_queue_wait() for p in procs}
            tid = running.historian_tid
            historian0 = running.server.thread_cpu(tid) if tid else 0.0
            t0 = time.monotonic() + 0.3
            probe = JitterProbe()
            probe.start()
            port = urllib.parse.urlsplit(running.url).port or 0
            sampler = ConditionSampler(port, f"http://127.0.0.1:{port}/api/health" if system == "twin" else None)
            sampler.start()
            log_path = work / "issue.npz"
            running.driver.send(go=t0, rate=rate, duration=duration, seed=seed, log=str(log_path))
            done = running.driver.expect("done", duration * 10 + 120)
            t_end = max(t0 + duration, time.monotonic())
            stop_at = t_end + DRAIN_S
            for c in clients:
                c.send(stop_at=stop_at)
            window = (t0, stop_at)
            time.sleep(max(0.0, stop_at - time.monotonic()))
            cpu1 = {id(p): p.cpu() for p in procs}
            wait1 = {id(p): p.run_queue_wait() for p in procs}
            run_s = time.monotonic() - t0
            row.update(probe.result())
            row.update(sampler.result())
            row["load_avg_1m"] = round(os.getloadavg()[0], 2)
            server_cpu = cpu1[id(running.server)] - cpu0[id(running.server)]
            row["server_cpu_s"] = server_cpu
            row["server_core_share"] = server_cpu / run_s
            if tid:
                row["historian_thread_cpu_s"] = running.server.thread_cpu(tid) - historian0
            if running.driver is not running.server:
                row["driver_cpu_s"] = cpu1[id(running.driver)] - cpu0[id(running.driver)]
            per_proc = [cpu1[id(c)] - cpu0[id(c)] for c in clients]
            row["client_cpu_s_per_proc"] = per_proc
            row["client_cpu_s"] = sum(per_proc)
            row["client_core_share_max"] = max(per_proc, default=0.0) / run_s
            row["client_procs"] = len(clients)
            row["server_wait_share"] = (wait1[id(running.server)] - wait0[id(running.server)]) / run_s
            row["client_wait_share_max"] = max((wait1[id(c)] - wait0[id(c)] for c in clients), default=0.0) / run_s
            row["server_peak_rss_mb"] = running.server.peak_rss() / 2**20
            row["server_rss_end_mb"] = running.server.rss() / 2**20
            for c in clients:
                msg = c.expect("done", SETUP_TIMEOUT_S)  # a starved client process takes long to close and write
                if msg.get("errors"):
                    row.setdefault("client_errors", []).extend(msg["errors"])
            if done.get("rejected"):
                row["rejected"] = done["rejected"]
            row["accepted"] = done.get("accepted")  # acknowledged: with a historian, committed there

            t_an = time.monotonic()
            row["collect_s"] = round(t_an - stop_at, 2)
            sched = make_schedule(k, rate, duration, seed)
            issue = np.load(log_path)["issue"]
            logs: list[ClientLog] = []
            for i in range(len(clients)):
                logs += load_client_logs(work / f"run-clients-{i}.npz")
            m = compute_metrics(k, sched, issue, logs, (t0, float(issue.max())))
            row.update(m.as_dict())
            row["achieved_rate"] = m.updates_issued / max(m.issue_seconds, 1e-9)
            row["cpu_us_per_delivered"] = server_cpu / m.delivered_updates * 1e6 if m.delivered_updates else None
            row["analysis_s"] = round(time.monotonic() - t_an, 2)
            row["bottleneck"] = bottleneck(row)
        except Exception as e:  # one failed configuration must not stop the matrix
            row["status"] = "failed"
            row["error"] = f"{type(e).__name__}: {e}"
            row["traceback"] = traceback.format_exc(limit=3)
        finally:
            if sampler is not None:
                sampler.halt.set()
            for c in clients:
                c.stop(timeout=10)
            if running is not None:
                # lifetime CPU of the server (setup + sync + run), read before it exits
                with contextlib.suppress(Exception):
                    row["server_cpu_lifetime_s"] = running.server.cpu()
                running.stop()
                if window is not None:  # TwinView's server reports its event-loop stalls on exit
                    while not running.server.lines.empty():
                        msg = running.server.lines.get_nowait()
                        if msg and "loop_stalls" in msg:
                            inside = [late for t, late in msg["loop_stalls"] if window[0] <= t <= window[1]]
                            row["server_loop_stalls_over_20ms"] = len(inside)
                            row["server_loop_stall_max_ms"] = round(max(inside, default=0.0) * 1e3, 1)
                            gcs = [d for t, d in msg.get("gc_full", []) if window[0] <= t <= window[1]]
                            row["server_full_gcs"] = len(gcs)
                            row["server_full_gc_max_ms"] = round(max(gcs, default=0.0) * 1e3, 1)
    row["wall_s"] = round(time.monotonic() - t_start, 1)
    return row


def bottleneck(row: dict) -> str:
    """Which side held the run back, from the client processes' CPU, the clients' unread receive
    queues, the server's CPU and backlog, and the machine's load."""
    behind = []
    if row["client_core_share_max"] >= CLIENT_SATURATED:
        behind.append(f"a client process used {row['client_core_share_max']:.0%} of a core")
    if row["client_recv_queue_socket_peak_kb"] * 1024 >= CLIENT_BEHIND_BYTES:
        behind.append(
            f"up to {row['client_recv_queue_peak_mb']:.1f} MB lay unread in the clients' receive queues "
            f"({row['client_recv_queue_socket_peak_kb']:.0f} kB in one socket)"
        )
    server_busy = row["server_core_share"] >= CLIENT_SATURATED
    cores = os.cpu_count() or 1
    load = max(row["load_before"], row["load_during_max"])
    host = f"; the machine was oversubscribed (load {load:.1f} on {cores} cores)" if load > cores else ""
    if max(row["server_wait_share"], row["client_wait_share_max"]) >= HOST_STARVED:
        host += (
            f"; the host starved the benchmark: runnable but waiting for a CPU for {row['server_wait_share']:.0%} "
            f"of the run (server) and up to {row['client_wait_share_max']:.0%} (a client process)"
        )
    if behind and not server_busy:
        return "clients: " + "; ".join(behind) + f", the server used {row['server_core_share']:.0%} of a core" + host
    if server_busy:
        also = "; also " + "; ".join(behind) if behind else ""
        return f"server: {row['server_core_share']:.0%} of a core{also}{host}"
    return "neither saturated" + host


def run_memory(system: str, k: int, n_idle: int, late_joins: int = 3) -> dict:
    """Late joiner (WebSocket open -> full state of K elements) and server RSS per idle client."""
    row: dict[str, Any] = {"system": system, "k": k, "n_idle": n_idle, "status": "ok"}
    with tempfile.TemporaryDirectory(prefix=f"fanout-mem-{system}-") as tmp:
        work = Path(tmp)
        running = None
        idle: list[Child] = []
        try:
            running = STARTERS[system](k, work)
            time.sleep(1.0)
            row["rss_0_mb"] = running.server.rss() / 2**20
            lj = Child(
                f"{system} late joiner",
                clients_argv(system, running.url, k, "--late-join", str(late_joins), "--encoding", ENCODING),
            )
            try:
                row["late_join_ms"] = lj.expect("late_join_ms", 120)["late_join_ms"]
            finally:
                lj.stop()
            row["late_join_median_ms"] = float(np.median(row["late_join_ms"]))
            time.sleep(0.5)
            row["rss_before_idle_mb"] = running.server.rss() / 2**20
            idle = start_clients(system, running.url, k, n_idle, work, "idle", idle=True)
            for c in idle:
                msg = c.expect("synced", SETUP_TIMEOUT_S + 30)
                if not msg["synced"]:
                    raise RuntimeError(f"{c.name}: only {msg['n_synced']}/{msg['n']} idle clients synced")
            time.sleep(2.0)  # let the initial snapshots' buffers go
            row["rss_idle_mb"] = running.server.rss() / 2**20
            row["rss_per_idle_client_kb"] = (row["rss_idle_mb"] - row["rss_before_idle_mb"]) * 1024 / n_idle
        except Exception as e:
            row["status"] = "failed"
            row["error"] = f"{type(e).__name__}: {e}"
        finally:
            for c in idle:
                c.send(stop_at=0)
                c.stop(timeout=10)
            if running is not None:
                running.stop()
    return row


# --- report ------------------------------------------------------------------------------------------


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞"
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _failed(r: dict, columns: int) -> str:
    error = r.get("error", "")[:120].replace("|", "/")
    return f"| {LABEL[r['system']]} | {r['k']:,} | {r['n']} | {int(r['rate']):,} | FAILED: {error} |" + " |" * columns


def table(rows: list[dict]) -> str:
    head = (
        "| system | K | N | R/s | encoding | achieved R/s | staleness p50 / p99 / max ms | reached % | convergence % "
        "| max gap ms | server CPU s (share of a core) | CPU µs / delivered | peak RSS MB |"
    )
    out = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        if r.get("status") != "ok":
            out.append(_failed(r, 8))
            continue
        out.append(
            f"| {LABEL[r['system']]} | {r['k']:,} | {r['n']} | {int(r['rate']):,} | {r['encoding']} "
            f"| {_f(r['achieved_rate'], 0)} "
            f"| {_f(r['staleness_p50_ms'])} / {_f(r['staleness_p99_ms'])} / {_f(r['staleness_max_ms'])} "
            f"| {_f(r['reached_pct'], 2)} | {_f(r['convergence_pct'], 2)} | {_f(r['max_gap_ms'])} "
            f"| {_f(r['server_cpu_s'], 2)} ({r['server_core_share']:.0%}) | {_f(r['cpu_us_per_delivered'], 2)} "
            f"| {_f(r['server_peak_rss_mb'])} |"
        )
    return "\n".join(out)


def conditions_table(rows: list[dict]) -> str:
    """Under which conditions each row of `table` was measured, and which side held it back."""
    head = (
        "| system | K | N | R/s | load before → peak during | nice server / clients | client processes: CPU s each "
        "(busiest, share of a core) | clients' receive queues, peak MB (one socket kB) "
        "| server send / receive queues, peak MB | server backlog, peak keys / bytes per client "
        "| waiting for a CPU: server / busiest client process | host lateness p99 ms | bottleneck |"
    )
    out = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        if r.get("status") != "ok":
            out.append(_failed(r, 8))
            continue
        per_proc = ", ".join(f"{x:.1f}" for x in r["client_cpu_s_per_proc"])
        backlog = (
            f"{_f(r['server_backlog_keys_peak'], 0)} / {_f(r['server_send_queue_bytes_max_peak'], 0)}"
            if r["system"] == "twin"
            else "– (no gauge)"
        )
        out.append(
            f"| {LABEL[r['system']]} | {r['k']:,} | {r['n']} | {int(r['rate']):,} "
            f"| {r['load_before']:.1f} → {_f(r['load_during_max'])} "
            f"| {r['nice_server']} / {', '.join(str(x) for x in r['nice_clients'])} "
            f"| {r['client_procs']}: {per_proc} ({r['client_core_share_max']:.0%}) "
            f"| {_f(r['client_recv_queue_peak_mb'], 2)} ({_f(r['client_recv_queue_socket_peak_kb'], 0)}) "
            f"| {_f(r['server_send_queue_peak_mb'], 2)} / {_f(r['server_recv_queue_peak_mb'], 2)} | {backlog} "
            f"| {r['server_wait_share']:.0%} / {r['client_wait_share_max']:.0%} | {_f(r.get('host_jitter_p99_ms'))} "
            f"| {r['bottleneck']} |"
        )
    return "\n".join(out)


def memory_table(rows: list[dict]) -> str:
    out = [
        "| system | K | late joiner ms (median of runs) | RSS before idle MB | RSS with idle MB | idle clients "
        "| RSS per idle client KB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("status") != "ok":
            out.append(
                f"| {LABEL[r['system']]} | {r['k']:,} | FAILED: {r.get('error', '')[:120].replace('|', '/')} | | | | |"
            )
            continue
        runs = ", ".join(_f(x) for x in r["late_join_ms"])
        out.append(
            f"| {LABEL[r['system']]} | {r['k']:,} | {_f(r['late_join_median_ms'])} ({runs}) "
            f"| {_f(r['rss_before_idle_mb'])} | {_f(r['rss_idle_mb'])} | {r['n_idle']} "
            f"| {_f(r['rss_per_idle_client_kb'])} |"
        )
    return "\n".join(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return _jsonable(v.item())
    return v


def main(argv: list[str] | None = None) -> int:
    global NICE, GC_FREEZE, CLIENT_PROCS, ENCODING
    ap = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small matrix: K in {100, 1000}, N=10, R=1000, T=3 s")
    ap.add_argument("--systems", default="twin,viser", help="comma list of: twin, viser")
    ap.add_argument("--k", type=int, nargs="*", help="element counts")
    ap.add_argument("--n", type=int, nargs="*", help="client counts")
    ap.add_argument("--rate", type=float, nargs="*", help="aggregate updates per second")
    ap.add_argument("--duration", type=float, default=None, help="seconds of updates (default 10, quick 3)")
    ap.add_argument(
        "--memory-k",
        type=int,
        default=None,
        help="K for the late-joiner / idle-memory test (default 10000, quick 1000); 0 skips it",
    )
    ap.add_argument("--memory-only", action="store_true", help="only the late-joiner / idle-memory test")
    ap.add_argument("--idle-clients", type=int, default=None, help="idle clients for the memory test (default 200)")
    ap.add_argument("--out", default=str(RESULTS / "fanout"), help="output path without extension")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run every benchmark process at this nice value (e.g. -5, needs root) to shield it from other load",
    )
    ap.add_argument(
        "--client-procs",
        type=int,
        default=CLIENT_PROCS,
        help=f"spread the clients over this many processes (default {CLIENT_PROCS}, at most N)",
    )
    ap.add_argument(
        "--encoding",
        choices=["msgpack", "json"],
        default=ENCODING,
        help="TwinView clients' subprotocol: twinview.v1.msgpack or twinview.v1 (JSON)",
    )
    ap.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.collect() + gc.freeze() in TwinView's server after seeding, before the run",
    )
    args = ap.parse_args(argv)
    NICE = args.nice
    GC_FREEZE = args.gc_freeze
    CLIENT_PROCS = max(1, args.client_procs)
    ENCODING = args.encoding

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    ks = args.k or (QUICK_K if args.quick else FULL_K)
    ns = args.n or (QUICK_N if args.quick else FULL_N)
    rates = args.rate or (QUICK_R if args.quick else FULL_R)
    duration = args.duration or (3.0 if args.quick else 10.0)
    memory_k = args.memory_k if args.memory_k is not None else (1000 if args.quick else 10_000)
    n_idle = args.idle_clients or (50 if args.quick else 200)

    rows: list[dict] = []
    for k in [] if args.memory_only else ks:
        for n in ns:
            for r in rates:
                for s in systems:
                    print(f"# {LABEL[s]}: K={k} N={n} R={r:g}/s T={duration:g}s ...", file=sys.stderr, flush=True)
                    row = run_config(s, k, n, r, duration)
                    rows.append(row)
                    print(
                        "#   "
                        + (
                            f"p99 {_f(row.get('staleness_p99_ms'))} ms, convergence "
                            f"{_f(row.get('convergence_pct'), 2)} %, {row['wall_s']} s"
                            if row["status"] == "ok"
                            else f"FAILED {row.get('error')}"
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    mem_rows = []
    if memory_k:
        for s in systems:
            print(f"# {LABEL[s]}: late joiner + {n_idle} idle clients, K={memory_k} ...", file=sys.stderr, flush=True)
            mem_rows.append(run_memory(s, memory_k, n_idle))

    host = f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end"
    md = [
        "# Fan-out benchmark",
        "",
        f"`python -m bench.fanout {' '.join(argv if argv is not None else sys.argv[1:])}` — T = {duration:g} s, "
        f"drain {DRAIN_S:g} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {host}.",
        "",
        table(rows),
        "",
        conditions_table(rows),
    ]
    if mem_rows:
        md += ["", memory_table(mem_rows)]
    text = "\n".join(md) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps(_jsonable({"duration": duration, "drain": DRAIN_S, "rows": rows, "memory": mem_rows}), indent=1)
    )
    return 0 if all(r["status"] == "ok" for r in rows + mem_rows) else 1


if __name__ == "__main__":
    sys.exit(main())
