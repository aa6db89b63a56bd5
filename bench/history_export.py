"""`twinview history export`: rows per second and the command's peak memory, CSV and Parquet.

    nice -n 10 python -m bench.history_export [--keys 1000] [--hours 2] [--step 2]

A history of --keys properties × --hours hours at one sample per --step seconds (bench/history.py's
`build_history`: sine plus noise, each key at its own moment, every finished hour sealed into Parquet, the last
readings in SQLite) in a data dir; then `twinview history export` of the whole range, run as its own process,
to Parquet and to CSV: wall time, rows per second, the output's size and the process's peak RSS (its VmHWM at
exit: ru_maxrss would count the benchmark process it was forked from), against a process that only imports
the export's modules.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.history import build_history
from viewer_server.store import Store

# `twinview` with the arguments given, then its peak RSS (kB) as the last line on stdout.
_PEAK = """import sys
import viewer_server.history_export  # the baseline: what the command imports
from viewer_server.cli import main
code = main(sys.argv[1:]) if sys.argv[1:] else 0
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
sys.exit(code)"""


def _child(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `twinview ARGV` in a process of its own."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", _PEAK, *argv], env=env, check=True, stdout=subprocess.PIPE, text=True)
    return time.perf_counter() - started, int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--step", type=float, default=2.0)
    args = ap.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="twinview-export-") as tmp:
        data = Path(tmp) / "data"
        Store(data).close()
        h, _, t0, t1 = build_history(data / "history", args.keys, args.hours, args.step)  # scene "historian"
        h.close()
        rows = int(args.keys * args.hours * 3600 / args.step)
        _, base = _child([])
        print(f"{rows:,} samples, {args.keys} keys × {args.hours} h; load {load} → ", end="")
        lines = [f"| the command's imports only | | | | {base:.0f} |"]
        for fmt in ("parquet", "csv"):
            out = Path(tmp) / f"out.{fmt}"
            cmd = ["history", "export", "--data-dir", str(data)]
            wall, peak = _child([*cmd, "--from", str(t0), "--to", str(t1 + 1), "-o", str(out)])
            size = out.stat().st_size
            lines.append(f"| {fmt} | {wall:.1f} | {rows / wall:,.0f} | {size / 1e6:.1f} | {peak:.0f} |")
        print(os.getloadavg())
    print("| export | wall s | rows/s | output MB | peak RSS MB |\n|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
