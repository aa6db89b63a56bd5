"""Where the writer's memory goes: its RSS and peak RSS at each stage of one `twinview build`.

    nice -n 10 .venv/bin/python -m bench.build_memory /tmp/twinview-plants/plant-20000.ifc

Builds the file once in this process (the writer; the reader is a child of the reader host and not counted)
and prints, at each stage the build reports as it starts (`progress`), the writer's resident memory now
(VmRSS) and its peak so far (VmHWM) in MB, and the wall seconds since the start. A stage's cost is the rise of
the peak between its mark and the next. Memory that Sdf or numpy freed stays resident until reused, so the
peak, not the RSS after a stage, is what counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scene import reader_host
from scene.pipeline import build


def memory_mb() -> dict[str, int]:
    """This process's VmRSS and VmHWM in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    args = ap.parse_args()
    start = time.perf_counter()
    marks: list[dict] = []

    def mark(stage: str) -> None:
        marks.append({"stage": stage, "wall_s": round(time.perf_counter() - start, 1), **memory_mb()})

    mark("start")
    with tempfile.TemporaryDirectory() as tmp:
        result = build([args.source], Path(tmp) / "scene", progress=mark)
    mark("done")
    reader_host.stop()
    print(f"{len(result.scene.elements)} elements; writer memory in MB at the start of each stage:")
    for m in marks:
        print(json.dumps(m))


if __name__ == "__main__":
    main()
