"""What starting a sandboxed reader costs: `twinview build` of a one-triangle OBJ (a fresh process, as a user
runs it), and `import_isolated` of it in a process that has read before (warm) and in one that has not (first).

    .venv/bin/python -m bench.reader_start [--repeat 9] [--before /tmp/checkout-of-main]

With `--before`, each repetition runs that checkout and this one alternately, so machine noise hits both
alike. Reports medians in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRIANGLE = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
WARM_READS = 5
# In the measured checkout: the first read of a process, then WARM_READS more, each in seconds.
IN_PROCESS = f"""
import sys, time
from pathlib import Path
from scene.importers import ImportOptions
from scene.sandbox import import_isolated
times = []
for _ in range({WARM_READS + 1}):
    start = time.perf_counter()
    import_isolated(Path(sys.argv[1]), ImportOptions())
    times.append(time.perf_counter() - start)
print(*times)
"""


def measure(checkout: Path, obj: Path, out: Path) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    run = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(obj)], env=env, cwd=checkout, check=True, capture_output=True, text=True
    )
    first, *warm = map(float, run.stdout.split())
    start = time.perf_counter()
    build = [sys.executable, "-m", "viewer_server.cli", "build", str(obj), "-o", str(out), "-q"]
    subprocess.run(build, env=env, cwd=checkout, check=True)
    return {"first": [first], "warm": warm, "build": [time.perf_counter() - start]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--before", type=Path, help="another checkout, measured alternately")
    args = ap.parse_args()
    checkouts = [c.resolve() for c in (args.before, REPO) if c is not None]
    results = {c: {"first": [], "warm": [], "build": []} for c in checkouts}
    print(f"load average at the start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="twinview-reader-start-") as tmp:
        obj = Path(tmp) / "triangle.obj"
        obj.write_text(TRIANGLE)
        for _ in range(args.repeat):
            for checkout in checkouts:
                for key, values in measure(checkout, obj, Path(tmp) / "out").items():
                    results[checkout][key] += values
    print(f"load average at the end: {os.getloadavg()}")
    print("| checkout | first read in a process | warm read | `twinview build` (fresh process) |")
    print("|---|---:|---:|---:|")
    for checkout, r in results.items():
        ms = {key: statistics.median(values) * 1000 for key, values in r.items()}
        print(f"| {checkout} | {ms['first']:.0f} ms | {ms['warm']:.0f} ms | {ms['build']:.0f} ms |")


if __name__ == "__main__":
    main()
