"""Build benchmark: `twinview build` against IfcOpenShell's own GLB writer, and size against gltfpack.

    .venv/bin/python -m bench.build [--repeat 5] [--files AC20-FZK-Haus.ifc duplex.ifc]

Each run is a fresh process (import costs included, as a user pays them), alternating ours and
the peer so that machine noise hits both alike. Reports medians, the ratio, peak RSS (of the
process tree, from wait4), our per-stage times, and `--compress` size against `gltfpack -cc`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "ifc"
GLTFPACK = REPO / "web_client" / "node_modules" / "gltfpack" / "cli.js"
RESULTS = REPO / "bench" / "results"
CIRCLE_SEGMENTS = 24  # scene/importers/ifc.py uses the same

# The peer: ifcopenshell.geom.serializers.glb over the same kernel and thread count as our importer.
PEER = f"""
CIRCLE_SEGMENTS = {CIRCLE_SEGMENTS}
import multiprocessing, sys, ifcopenshell, ifcopenshell.geom as geom
path, out, kernel = sys.argv[1:4]
f = ifcopenshell.open(path)
settings = geom.settings()
settings.set("use-world-coords", False)
settings.set("circle-segments", CIRCLE_SEGMENTS)  # as our importer: manifold otherwise drops circular profiles
ser = geom.serializers.glb(out, settings)
ser.setFile(f)
ser.writeHeader()
it = geom.iterator(settings, f, multiprocessing.cpu_count(), geometry_library=kernel)
if it.initialize():
    while True:
        ser.write(it.get())
        if not it.next():
            break
ser.finalize()
"""


@dataclass(frozen=True, slots=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system of the command and the children it waited for
    rss_mb: float  # peak RSS of the largest of those processes
    stdout: str


def run(cmd: list[str], *, capture: bool = False) -> Run:
    """Run a command to its end and measure it (`wait4`); raise with its stderr's end if it fails."""
    start = time.perf_counter()
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stdout=out, stderr=err) as proc:
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-500:]}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MB of a command and the children it waited for."""
    measured = run(cmd)
    return measured.wall_s, measured.rss_mb


def peer_kernel(path: Path, kernel: str, out: Path) -> str:
    """The kernel the peer can use on this file: manifold segfaults on some real files (duplex.ifc)."""
    try:
        timed([sys.executable, "-c", PEER, str(path), str(out), kernel])
        return kernel
    except RuntimeError:
        return "opencascade"


def bench_file(path: Path, repeat: int, kernel: str) -> dict:
    ours, peer, ours_rss, peer_rss, stages = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scene"
        peer_glb = Path(tmp) / "peer.glb"
        kernel = peer_kernel(path, kernel, peer_glb)
        for _ in range(repeat):
            t, rss = timed([sys.executable, "-m", "viewer_server.cli", "build", str(path), "-o", str(out), "-q"])
            ours.append(t)
            ours_rss.append(rss)
            stages.append(json.loads((out / "manifest.json").read_text())["stats"]["timings_s"])
            t, rss = timed([sys.executable, "-c", PEER, str(path), str(peer_glb), kernel])
            peer.append(t)
            peer_rss.append(rss)
        plain = out / "scene.glb"
        packed = Path(tmp) / "gltfpack.glb"
        packed_kn = Path(tmp) / "gltfpack-kn.glb"
        packed_ke = Path(tmp) / "gltfpack-kn-ke.glb"
        subprocess.run(
            ["node", str(GLTFPACK), "-i", str(plain), "-o", str(packed), "-cc"], check=True, capture_output=True
        )
        for out_glb, flags in ((packed_kn, ["-kn"]), (packed_ke, ["-kn", "-ke"])):
            cmd = ["node", str(GLTFPACK), "-i", str(plain), "-o", str(out_glb), "-cc", *flags]
            subprocess.run(cmd, check=True, capture_output=True)
        compressed = Path(tmp) / "compressed"
        subprocess.run(
            [sys.executable, "-m", "viewer_server.cli", "build", str(path), "-o", str(compressed), "-q", "--compress"],
            check=True,
        )
        manifest = json.loads((out / "manifest.json").read_text())
        sizes = {
            "plain": plain.stat().st_size,
            "ours_compressed": (compressed / "scene.glb").stat().st_size,
            "gltfpack_cc": packed.stat().st_size,
            "gltfpack_cc_kn": packed_kn.stat().st_size,
            "gltfpack_cc_kn_ke": packed_ke.stat().st_size,
            "peer_glb": peer_glb.stat().st_size,
        }
    median_stages = {k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[0]}
    return {
        "file": path.name,
        "peer_kernel": kernel,
        "elements": len(manifest["elements"]),
        "triangles": manifest["stats"].get("triangles"),
        "ours_s": statistics.median(ours),
        "peer_s": statistics.median(peer),
        "ours_runs": ours,
        "peer_runs": peer,
        "ours_rss_mb": max(ours_rss),
        "peer_rss_mb": max(peer_rss),
        "stages_s": median_stages,
        "sizes": sizes,
    }


def table(rows: list[dict], repeat: int, kernel: str) -> str:
    lines = [
        f"Build time, median of {repeat} fresh-process runs each, alternating; {os.cpu_count()} threads for both. "
        f"Our importer uses `{kernel}` and falls back to opencascade per element where manifold fails; the peer "
        "uses the kernel shown (opencascade where manifold crashes it).",
        "",
        "| file | elements | triangles | twinview build (USD+GLB+USDZ+manifest) | IfcOpenShell GLB only (kernel) | "
        "ratio | peak RSS ours / peer |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['elements']} | {r['triangles']:,} | {r['ours_s']:.2f} s | "
            f"{r['peer_s']:.2f} s ({r['peer_kernel']}) | "
            f"{r['ours_s'] / r['peer_s']:.2f}× | {r['ours_rss_mb']:.0f} / {r['peer_rss_mb']:.0f} MB |"
        )
    lines += ["", "Time per stage of `twinview build` (median seconds):", ""]
    keys = sorted({k for r in rows for k in r["stages_s"]}, key=lambda k: (k == "total", k))
    lines.append("| file | " + " | ".join(keys) + " |")
    lines.append("|---|" + "---:|" * len(keys))
    for r in rows:
        lines.append(f"| {r['file']} | " + " | ".join(f"{r['stages_s'].get(k, 0):.2f}" for k in keys) + " |")
    lines += [
        "",
        "GLB size (bytes): ours `--compress` against `gltfpack -cc` on our uncompressed GLB; `-kn` keeps the "
        "named nodes and `-ke` the extras, which ours keeps (one node per element with {id, name, class}):",
        "",
        "| file | plain GLB | ours --compress | gltfpack -cc | ratio | gltfpack -cc -kn | ratio | gltfpack -cc -kn -ke "
        "| ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["sizes"]
        lines.append(
            f"| {r['file']} | {s['plain']:,} | {s['ours_compressed']:,} | {s['gltfpack_cc']:,} | "
            f"{s['ours_compressed'] / s['gltfpack_cc']:.2f}× | {s['gltfpack_cc_kn']:,} | "
            f"{s['ours_compressed'] / s['gltfpack_cc_kn']:.2f}× | {s['gltfpack_cc_kn_ke']:,} | "
            f"{s['ours_compressed'] / s['gltfpack_cc_kn_ke']:.2f}× |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kernel", default="manifold")
    ap.add_argument("--files", nargs="+", default=["AC20-FZK-Haus.ifc", "duplex.ifc"])
    args = ap.parse_args()
    rows = []
    for name in args.files:
        path = CORPUS / name
        print(f"benchmarking {path} …", file=sys.stderr)
        rows.append(bench_file(path, args.repeat, args.kernel))
    text = table(rows, args.repeat, args.kernel)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "build.md").write_text(text + "\n")
    (RESULTS / "build.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
