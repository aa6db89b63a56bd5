"""Instancing: a plant of many copies of a few meshes, in the GLB and in the viewer.

    .venv/bin/python -m bench.instancing                          # 5 000 copies of 3 meshes, thresholds 0 and 8
    .venv/bin/python -m bench.instancing --copies 20000 --thresholds 0,2,8,32 --runs 3
    .venv/bin/python -m bench.instancing --ifc /tmp/plant-5000.ifc     # a bench.plant IFC, `twinview build --compress`

The scene is ``tests.scene_factory.repeated_scene``: ``--copies`` elements placing one of ``--kinds`` meshes
(a 12-triangle box, a 552- and a 120-triangle sphere; turned, every fourth stretched, as mapped IFC types are)
plus ``--unique`` parts with meshes of their own, written by our GLB writer with ``--compress`` (meshopt +
quantization) and a manifest, served by the real server; or, with ``--ifc``, that file built by ``twinview build
--compress`` (e.g. a ``bench.plant`` plant, whose equipment is mapped IFC types).

**File.** Bytes of the GLB, its JSON chunk, and per element: the element node's JSON (name, extras
{id, name, class}, translation/rotation/scale, mesh), measured on the written file; and what the same
placements and ids would cost in an ``EXT_mesh_gpu_instancing`` layout (one node per shared mesh, TRS as
float32 accessors: 40 B, the ids, names and classes as JSON arrays in its extras, measured by encoding
them), the alternative the writer did not take (see ARCHITECTURE.md).

**Viewer** (headless Debian Chromium, SwiftShader, 1280x800), per ``?instancing=N`` threshold (0: every
copy baked into the merged batches, as before; N: meshes at least N elements share drawn instanced), a
fresh browser context per run, thresholds interleaved: draw calls and triangles of a frame, median frame
time of ``--frames`` frames (bench.web's FRAME_TIMES: request to the frame read back), TTFF (navigation
start to the first frame with the model), JS heap (used, after a GC), the bytes of vertex, index and
element-texture arrays the batches hold (what goes to the GPU), and the resident memory (RSS) of the
browser's GPU and renderer processes after the frames.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
from pathlib import Path

import orjson

from bench.web import FRAME_TIMES, LOAD_TIMEOUT_MS, heap_mb, open_viewer_page
from scene.export.glb import write_glb
from scene.export.manifest import write_manifest
from tests.scene_factory import repeated_scene
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS, _predicates_without_eval, build_client, build_scene, serve_scene

RESULTS = Path(__file__).resolve().parent / "results"
NO_BINDINGS = "version: 1\ndefault_layer: operations\nbindings: []\nlayers:\n  operations:\n    rules: []\n"
TRS_BYTES = 40  # float32 translation (12), rotation quaternion (16), scale (12)
# Bytes the batches hold in typed arrays for the GPU: vertex attributes, indices, element textures.
GPU_BYTES = """() => {
  const seen = new Set();
  let bytes = 0;
  const add = (a) => { if (a && !seen.has(a.array)) { seen.add(a.array); bytes += a.array.byteLength; } };
  window.twinview.app.batches.group.traverse((o) => {
    const g = o.geometry;
    if (!g) return;
    for (const a of Object.values(g.attributes)) add(a);
    add(g.index);
    const t = o.material?.uniforms?.elementData?.value;
    if (t) add({ array: t.image.data });
  });
  return bytes;
}"""


def glb_json(path: Path) -> dict:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[20 : 20 + length])


def triangles(doc: dict) -> tuple[int, int]:
    """Triangles a glTF draws (every node's mesh) and holds (every mesh its nodes use, once)."""

    def of(mesh: int) -> int:
        return sum(doc["accessors"][p["indices"]]["count"] // 3 for p in doc["meshes"][mesh]["primitives"])

    used = [n["mesh"] for n in doc["nodes"] if "mesh" in n]
    return sum(of(m) for m in used), sum(of(m) for m in set(used))


def file_figures(glb: Path) -> dict:
    """Bytes of the file and per element: the node as written, and the EXT_mesh_gpu_instancing layout's share."""
    doc = glb_json(glb)
    element_nodes = [n for n in doc["nodes"] if "mesh" in n]
    node_bytes = [len(orjson.dumps(n)) + 1 for n in element_nodes]  # + the comma between nodes
    ids = [n["extras"]["id"] for n in element_nodes]
    names = [n["extras"]["name"] for n in element_nodes]
    classes = [n["extras"]["class"] for n in element_nodes]
    table = len(orjson.dumps({"id": ids, "name": names, "class": classes}))
    json_bytes = len(orjson.dumps(doc))
    drawn, unique = triangles(doc)
    return {
        "triangles": drawn,
        "unique_triangles": unique,
        "glb_bytes": glb.stat().st_size,
        "json_bytes": json_bytes,
        "elements": len(element_nodes),
        "gltf_meshes": len(doc["meshes"]),
        "node_bytes_per_element": statistics.mean(node_bytes),
        "instancing_bytes_per_element": (table / len(element_nodes)) + TRS_BYTES,
        "glb_bytes_per_element": glb.stat().st_size / len(element_nodes),
    }


def process_rss_mb() -> dict[str, float]:
    """RSS of this process's Chromium GPU and renderer processes (not other users' browsers)."""
    parent: dict[int, int] = {}
    kind: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        for k in ("gpu-process", "renderer"):
            if f"--type={k}" in cmd:
                kind[int(proc.name)] = k
    me = os.getpid()

    def mine(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parent.get(pid, 1)
        return False

    out = {"gpu-process": 0.0, "renderer": 0.0}
    for pid, k in kind.items():
        if mine(pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            rss = next((line for line in status if line.startswith("VmRSS")), "VmRSS: 0 kB")
            out[k] += int(rss.split()[1]) / 1024
    return out


def run_viewer(browser, url: str, frames: int) -> dict:
    ctx, page, errors, ttff = open_viewer_page(browser, url)
    page.wait_for_function("window.twinview.app.twin?.lodsLoaded === true", timeout=LOAD_TIMEOUT_MS)
    page.evaluate(FRAME_TIMES, 2)
    ft = page.evaluate(FRAME_TIMES, frames)
    out = {
        "ttff_ms": ttff,
        "frame_ms": statistics.median(ft["times"]),
        "draw_calls": ft["calls"],
        "triangles": ft["triangles"],
        "gpu_array_mb": page.evaluate(GPU_BYTES) / 2**20,
        "heap_mb": heap_mb(page),
        "rss_mb": process_rss_mb(),
        "batches": page.evaluate("window.twinview.app.batches.batches.map((b) => b.name.split(':')[0])"),
        "errors": errors,
    }
    ctx.close()
    return out


def table(files: dict, results: dict[int, list[dict]], meta: dict) -> str:
    def med(key: str, runs: list[dict], digits: int = 0) -> str:
        xs = [r[key] for r in runs]
        m = statistics.median(xs)
        return f"{m:.{digits}f}" + (f" [{min(xs):.{digits}f}–{max(xs):.{digits}f}]" if len(xs) > 1 else "")

    lines = [
        f"{meta['scene']}, {files['triangles']:,} triangles drawn at full detail "
        f"({files['unique_triangles']:,} in the meshes); "
        f"GLB {files['glb_bytes'] / 2**20:.2f} MB ({files['glb_bytes_per_element']:.0f} B per element), "
        f"JSON {files['json_bytes'] / 2**20:.2f} MB, {files['gltf_meshes']} glTF meshes; "
        f"element node {files['node_bytes_per_element']:.0f} B of JSON per element, "
        f"EXT_mesh_gpu_instancing layout {files['instancing_bytes_per_element']:.0f} B",
        "",
        "| threshold | batches | draw calls | frame ms | TTFF ms | GPU arrays MB | JS heap MB | GPU proc RSS MB"
        " | renderer RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for threshold, runs in results.items():
        kinds = sorted(set(runs[0]["batches"]))
        counts = ", ".join(f"{runs[0]['batches'].count(k)} {k}" for k in kinds)
        gpu = [r["rss_mb"]["gpu-process"] for r in runs]
        ren = [r["rss_mb"]["renderer"] for r in runs]
        lines.append(
            f"| {threshold or 'off'} | {counts} | {runs[0]['draw_calls']} | {med('frame_ms', runs)} | "
            f"{med('ttff_ms', runs)} | {med('gpu_array_mb', runs, 1)} | {med('heap_mb', runs, 1)} | "
            f"{statistics.median(gpu):.0f} | {statistics.median(ren):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=5000)
    ap.add_argument("--kinds", type=int, default=3)
    ap.add_argument("--unique", type=int, default=20)
    ap.add_argument("--thresholds", default="0,8", help="comma-separated ?instancing= values (0: off)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--frames", type=int, default=15)
    ap.add_argument("--ifc", type=Path, help="measure this IFC file, built by twinview build --compress, instead")
    args = ap.parse_args(argv)
    thresholds = [int(t) for t in args.thresholds.split(",")]
    build_client()
    _predicates_without_eval()  # the server's CSP forbids eval, which string predicates need
    from playwright.sync_api import sync_playwright

    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scene_dir = root / "repeated"
        scene_dir.mkdir()
        if args.ifc:
            scene_dir.rmdir()
            build_scene(str(args.ifc), "-o", str(scene_dir), "--compress")
            meta = {"scene": f"{args.ifc.name} (twinview build --compress)"}
        else:
            scene = repeated_scene(args.copies, kinds=args.kinds, unique=args.unique)
            write_glb(scene, scene_dir / "scene.glb", compress=True)
            write_manifest(scene, scene_dir / "manifest.json", {})
            meta = {"scene": f"{args.copies} copies of {args.kinds} meshes + {args.unique} unique parts"}
        files = file_figures(scene_dir / "scene.glb")
        (root / "b.yaml").write_text(NO_BINDINGS)
        results: dict[int, list[dict]] = {t: [] for t in thresholds}
        with serve_scene(scene_dir, root / "b.yaml", root / "data") as live, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            url = f"{live.url}/?scene={scene_dir.name}&name=bench&instancing="
            for t in thresholds:  # warm-up, not counted
                run_viewer(browser, f"{url}{t}", 2)
            for r in range(args.runs):
                for t in thresholds[r % len(thresholds) :] + thresholds[: r % len(thresholds)]:
                    res = run_viewer(browser, f"{url}{t}", args.frames)
                    results[t].append(res)
                    print(
                        f"  run {r + 1} instancing={t}: calls {res['draw_calls']}, frame {res['frame_ms']:.0f} ms,"
                        f" gpu arrays {res['gpu_array_mb']:.1f} MB, heap {res['heap_mb']:.1f} MB, rss {res['rss_mb']}",
                        file=sys.stderr,
                    )
            browser.close()
    text = table(files, results, meta)
    print(text)
    (RESULTS / "instancing.md").write_text(text + "\n")
    (RESULTS / "instancing.json").write_text(json.dumps({"meta": meta, "file": files, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
