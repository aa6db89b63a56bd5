"""Scale-out benchmark: the fan-out workload over 1, 2 and 3 server processes on one Redis (`serve --bus`).

    python -m bench.scaleout                        # K = 10 000, N = 300, R = 10 000/s, T = 10 s:
                                                    # 1 process in-process bus, then 1, 2, 3 processes on Redis
    python -m bench.scaleout --k 10 --n 4 --rate 100 --duration 1 --processes 1 2   # a smoke run

The workload, the clients and the statistics are bench/fanout.py's (its client processes decode every frame in
full; staleness is from the publisher's issue time to the moment a client holds the value). What changes: the
servers are P `bench._fanout_twin serve --bus redis://…` processes, each with its own data dir (as on P
machines), the publisher sends every update to the first one (telemetry may arrive at any process: the leader
numbers it once for all), and the N clients are spread evenly over the P processes (as a `leastconn` balancer
spreads them; they connect to the processes directly, so the proxy's own CPU is not in the figures). The first
row, one process on the in-process bus, is the reference the Redis rows' staleness is compared with, in the same
run. Every process's CPU is measured apart (servers, Redis, publisher, client processes).
Results: a markdown table on stdout and in bench/results/scaleout.md, raw numbers in bench/results/scaleout.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import _fanout_twin, fanout
from bench._fanout_stats import ClientLog, compute_metrics, make_schedule
from bench.fanout import PY, RESULTS, SETUP_TIMEOUT_S, Child, JitterProbe, _f, load_client_logs, start_clients

REDIS_SERVER: Final = "redis-server"
# The engine's settings of docs/DEPLOY.md: the log in memory with an append-only file synced every second.
REDIS_SETTINGS: Final = (
    "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
    "--maxmemory", "1gb", "--maxmemory-policy", "noeviction",
)  # fmt: skip
IN_PROCESS: Final = "in-process"
REDIS: Final = "redis"


@dataclass(frozen=True)
class Setup:
    processes: int
    bus: str  # IN_PROCESS or REDIS


def setups(processes: list[int]) -> list[Setup]:
    """The reference (one process, in-process bus) first, then each count of processes on Redis."""
    return [Setup(1, IN_PROCESS), *(Setup(p, REDIS) for p in processes)]


def start_redis(work: Path) -> tuple[Child, str]:
    port = _fanout_twin.free_port()
    (work / "redis").mkdir()
    redis = Child(
        "redis-server",
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work / "redis"), *REDIS_SETTINGS],
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return redis, f"redis://127.0.0.1:{port}"
        except OSError:
            if redis.proc.poll() is not None or time.monotonic() > deadline:
                redis.stop(timeout=0.5)
                raise RuntimeError(f"redis-server did not listen on {port}: {redis.err()}") from None
            time.sleep(0.05)


def start_servers(setup: Setup, work: Path, bus_url: str | None) -> list[tuple[Child, int]]:
    """The setup's server processes, one after the other (the first founds the deployment), each ready."""
    servers: list[tuple[Child, int]] = []
    try:
        for i in range(setup.processes):
            port = _fanout_twin.free_port()
            argv = [
                PY, "-m", "bench._fanout_twin", "serve", "--scene-dir", str(work / "scene"),
                "--bindings", str(work / "bindings.json"), "--port", str(port), "--data-dir", str(work / f"data-{i}"),
            ]  # fmt: skip
            if bus_url:
                argv += ["--bus", bus_url]
            child = Child(f"server {i + 1}", argv)
            servers.append((child, port))
            child.expect("ready", SETUP_TIMEOUT_S)
    except Exception:
        for child, _ in servers:
            child.stop()
        raise
    return servers


def run_setup(setup: Setup, k: int, n: int, rate: float, duration: float, client_procs: int, seed: int = 1) -> dict:
    row: dict[str, Any] = {
        "processes": setup.processes,
        "bus": setup.bus,
        "k": k,
        "n": n,
        "rate": rate,
        "duration": duration,
        "status": "ok",
    }
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"scaleout-{setup.bus}-{setup.processes}-") as tmp:
        work = Path(tmp)
        redis: Child | None = None
        servers: list[tuple[Child, int]] = []
        driver: Child | None = None
        clients: list[Child] = []
        try:
            _fanout_twin.write_scene(work / "scene", work / "bindings.json", k)
            bus_url = None
            if setup.bus == REDIS:
                redis, bus_url = start_redis(work)
            servers = start_servers(setup, work, bus_url)
            first_url = f"ws://127.0.0.1:{servers[0][1]}/ws"
            driver = Child("publisher", [PY, "-m", "bench._fanout_twin", "drive", "--url", first_url, "--k", str(k)])
            driver.expect("ready", SETUP_TIMEOUT_S)
            # N clients spread evenly over the processes, `client_procs` client processes in all.
            fanout.CLIENT_PROCS = max(1, client_procs // setup.processes)
            for i, (_, port) in enumerate(servers):
                share = n // setup.processes + (1 if i < n % setup.processes else 0)
                clients += start_clients(
                    "twin",
                    f"ws://127.0.0.1:{port}/ws",
                    k,
                    share,
                    work,
                    f"p{i}",
                    max_seconds=SETUP_TIMEOUT_S + 4 * duration + 180,
                )
            for c in clients:
                msg = c.expect("synced", SETUP_TIMEOUT_S + 30)
                if not msg["synced"]:
                    raise RuntimeError(
                        f"{c.name}: only {msg['n_synced']}/{msg['n']} clients synced: {msg.get('errors')}"
                    )
            row["setup_s"] = round(time.monotonic() - t_start, 1)

            server_children = [child for child, _ in servers]
            engines = [redis] if redis is not None else []
            measured = [*server_children, *engines, driver, *clients]
            row["nice"] = sorted({c.ps.nice() for c in measured})
            row["client_procs"] = len(clients)
            row["load_before"] = round(os.getloadavg()[0], 2)
            cpu0 = {id(c): c.cpu() for c in measured}
            wait0 = {id(c): c.run_queue_wait() for c in measured}
            probe = JitterProbe()
            probe.start()
            t0 = time.monotonic() + 0.3
            log_path = work / "issue.npz"
            driver.send(go=t0, rate=rate, duration=duration, seed=seed, log=str(log_path))
            done = driver.expect("done", duration * 10 + 120)
            stop_at = max(t0 + duration, time.monotonic()) + fanout.DRAIN_S
            for c in clients:
                c.send(stop_at=stop_at)
            time.sleep(max(0.0, stop_at - time.monotonic()))
            run_s = time.monotonic() - t0
            cpu = {id(c): c.cpu() - cpu0[id(c)] for c in measured}
            wait = {id(c): c.run_queue_wait() - wait0[id(c)] for c in measured}
            row.update(probe.result())
            row["load_during"] = round(os.getloadavg()[0], 2)
            row["server_cpu_s"] = [cpu[id(c)] for c in server_children]
            row["server_core_share"] = [cpu[id(c)] / run_s for c in server_children]
            row["server_wait_share"] = [wait[id(c)] / run_s for c in server_children]
            row["engine_cpu_s"] = cpu[id(redis)] if redis is not None else None
            row["engine_core_share"] = cpu[id(redis)] / run_s if redis is not None else None
            row["driver_cpu_s"] = cpu[id(driver)]
            per_client = [cpu[id(c)] for c in clients]
            row["client_cpu_s"] = sum(per_client)
            row["client_core_share_max"] = max(per_client) / run_s
            row["rejected"] = done.get("rejected", 0)
            for c in clients:
                msg = c.expect("done", SETUP_TIMEOUT_S)
                if msg.get("errors"):
                    row.setdefault("client_errors", []).extend(msg["errors"])
            sched = make_schedule(k, rate, duration, seed)
            issue = np.load(log_path)["issue"]
            logs: list[ClientLog] = []
            for path in sorted(work.glob("p*-clients-*.npz")):
                logs += load_client_logs(path)
            m = compute_metrics(k, sched, issue, logs, (t0, float(issue.max())))
            row.update(m.as_dict())
            row["achieved_rate"] = m.updates_issued / max(m.issue_seconds, 1e-9)
            row["delivered_per_s"] = m.delivered_updates / max(m.issue_seconds, 1e-9)
            server_total = sum(row["server_cpu_s"])
            row["cpu_us_per_delivered"] = server_total / m.delivered_updates * 1e6 if m.delivered_updates else None
        except Exception as e:  # one failed setup must not stop the others
            row["status"] = "failed"
            row["error"] = f"{type(e).__name__}: {e}"
            row["traceback"] = traceback.format_exc(limit=3)
        finally:
            for c in clients:
                c.stop(timeout=10)
            if driver is not None:
                driver.stop()
            for child, _ in servers:
                child.stop()
            if redis is not None:
                redis.stop(timeout=0.5)
    row["wall_s"] = round(time.monotonic() - t_start, 1)
    return row


def table(rows: list[dict]) -> str:
    head = (
        "| processes | bus | achieved R/s | delivered updates/s | staleness p50 / p99 ms | convergence % "
        "| server CPU s per process (share of a core) | server CPU µs / delivered | engine CPU s (share) "
        "| clients: processes, CPU s, busiest share | load before → after "
        "| servers waiting for a CPU (share of the run) | host lateness p99 ms |"
    )
    out = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['processes']} | {r['bus']} | FAILED: {r['error'][:150].replace('|', '/')} |" + " |" * 10)
            continue
        per_proc = ", ".join(
            f"{c:.1f} ({s:.0%})" for c, s in zip(r["server_cpu_s"], r["server_core_share"], strict=True)
        )
        engine = "–" if r["engine_cpu_s"] is None else f"{r['engine_cpu_s']:.2f} ({r['engine_core_share']:.0%})"
        out.append(
            f"| {r['processes']} | {r['bus']} | {_f(r['achieved_rate'], 0)} | {_f(r['delivered_per_s'], 0)} "
            f"| {_f(r['staleness_p50_ms'])} / {_f(r['staleness_p99_ms'])} | {_f(r['convergence_pct'], 2)} "
            f"| {per_proc} | {_f(r['cpu_us_per_delivered'], 2)} | {engine} "
            f"| {r['client_procs']}, {r['client_cpu_s']:.1f}, {r['client_core_share_max']:.0%} "
            f"| {r['load_before']:.1f} → {r['load_during']:.1f} "
            f"| {', '.join(f'{w:.0%}' for w in r['server_wait_share'])} | {_f(r.get('host_jitter_p99_ms'))} |"
        )
    return "\n".join(out)


def comparison(rows: list[dict]) -> str:
    """What the issue asks of the figures: throughput from 1 to 3 processes, and Redis against in-process."""
    ok = {(r["bus"], r["processes"]): r for r in rows if r["status"] == "ok"}
    lines = []
    reference, one = ok.get((IN_PROCESS, 1)), ok.get((REDIS, 1))
    if reference and one:
        added = one["staleness_p50_ms"] - reference["staleness_p50_ms"]
        if math.isfinite(added):
            lines.append(
                f"- Redis adds {added:+.1f} ms to p50 staleness against the in-process bus (one process, same run)."
            )
        else:
            lines.append(
                "- Redis against the in-process bus: not measurable in this run (a p50 staleness is infinite)."
            )
    most = max((p for bus, p in ok if bus == REDIS), default=None)
    if one and most and most > 1:
        gain = ok[(REDIS, most)]["delivered_per_s"] / one["delivered_per_s"]
        lines.append(f"- Delivered updates/s grow {gain:.2f}× from 1 to {most} processes on Redis.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.scaleout", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--k", type=int, default=10_000, help="elements")
    ap.add_argument("--n", type=int, default=300, help="clients, spread over the processes")
    ap.add_argument("--rate", type=float, default=10_000, help="aggregate updates per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of updates")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3], help="process counts on Redis")
    ap.add_argument("--client-procs", type=int, default=6, help="client processes in all (default 6)")
    ap.add_argument("--nice", type=int, default=0, help="nice value of every benchmark process (see bench.fanout)")
    ap.add_argument("--out", default=str(RESULTS / "scaleout"), help="output path without extension")
    args = ap.parse_args(argv)
    fanout.NICE = args.nice
    rows = []
    for setup in setups(args.processes):
        print(f"# {setup.processes} process(es), {setup.bus} bus ...", file=sys.stderr, flush=True)
        row = run_setup(setup, args.k, args.n, args.rate, args.duration, args.client_procs)
        rows.append(row)
        print(f"#   {row['status']} {row.get('error', '')} in {row['wall_s']} s", file=sys.stderr, flush=True)
    command = " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join(
        [
            "# Scale-out benchmark",
            "",
            f"`python -m bench.scaleout {command}` — K = {args.k:,}, N = {args.n}, R = {args.rate:,.0f}/s, "
            f"T = {args.duration:g} s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs.",
            "",
            table(rows),
            "",
            comparison(rows),
        ]
    )
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(fanout._jsonable({"rows": rows}), indent=1))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
