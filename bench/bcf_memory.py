"""BCF import memory: how much a running server holds while hostile archives are uploaded to it.

    python -m bench.bcf_memory                  # every archive, 1 and 8 concurrent uploads

Archives (built in memory, deterministic):
- `padding`: the amplification attack of issue 11 — a valid one-topic archive plus 500 entries of exactly
  1 MiB of zeros (each under the per-entry ratio check, which starts above 1 MiB); ~0.6 MB uploaded.
- `snapshots`: 100 topics whose viewpoint snapshot is a 1 MiB "PNG" (the PNG signature, then zeros), ~1 MB
  uploaded, so every entry is one the importer really reads.
- `dense`: what still passes every check: 200 topics whose 1 MiB snapshot compresses ~150:1 (7 kB of noise,
  then zeros), 200 MB uncompressed from a ~1.5 MB upload.
- `photos`: 3.5 MB of incompressible snapshots (35 topics, 100 kB each), a legitimate archive near the
  4 MiB upload limit: what an accepted import costs.

For each archive and concurrency C, a fresh `twinview serve` process (on a 10-element scene) gets C
simultaneous `POST /api/sessions/{id}/bcf` as an admin; its RSS (psutil) is sampled every 10 ms from
before the uploads until 2 s after the last answer. Reported: RSS before, peak, RSS 2 s after, and the
HTTP statuses. Run it with `PYTHONPATH` pointing at another checkout to compare versions.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import sys
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

import aiohttp
import psutil

from bench._fanout_twin import free_port, write_scene
from bench._server import server, wait_ready
from viewer_server.auth import issue, load_secret
from viewer_server.scenes import scene_id_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MIB = 1024 * 1024
SAMPLE_S = 0.01
SETTLE_S = 2.0
VERSION = b'<?xml version="1.0" encoding="UTF-8"?><Version VersionId="3.0"/>'
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _markup(guid: str, snapshot: str | None) -> bytes:
    views = ""
    if snapshot:
        views = (
            f'<Viewpoints><ViewPoint Guid="{guid[:-4]}beef"><Viewpoint>v.bcfv</Viewpoint>'
            f"<Snapshot>{snapshot}</Snapshot></ViewPoint></Viewpoints>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Markup><Topic Guid="{guid}" TopicType="Issue" TopicStatus="Open">'
        "<Title>t</Title><CreationDate>2026-01-01T00:00:00Z</CreationDate><CreationAuthor>a</CreationAuthor>"
        f"{views}</Topic></Markup>"
    ).encode()


VISINFO = (
    b'<?xml version="1.0" encoding="UTF-8"?><VisualizationInfo><PerspectiveCamera>'
    b"<CameraViewPoint><X>0</X><Y>0</Y><Z>10</Z></CameraViewPoint>"
    b"<CameraDirection><X>0</X><Y>0</Y><Z>-1</Z></CameraDirection>"
    b"<CameraUpVector><X>0</X><Y>1</Y><Z>0</Z></CameraUpVector>"
    b"<FieldOfView>60</FieldOfView><AspectRatio>1.5</AspectRatio></PerspectiveCamera></VisualizationInfo>"
)


def _guid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def archive(kind: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bcf.version", VERSION)
        if kind == "padding":
            zf.writestr(f"{_guid(1)}/markup.bcf", _markup(_guid(1), None))
            for i in range(500):
                zf.writestr(f"padding/{i:03d}.bin", bytes(MIB))
        else:
            topics, size, noise = {
                "snapshots": (100, MIB, 0),
                "dense": (200, MIB, 7000),
                "photos": (35, 100_000, None),
            }[kind]
            rng = random.Random(11)
            for i in range(topics):
                folder = _guid(i + 1)
                zf.writestr(f"{folder}/markup.bcf", _markup(folder, "s.png"))
                zf.writestr(f"{folder}/v.bcfv", VISINFO)
                body_size = size - len(PNG_MAGIC)
                random_bytes = body_size if noise is None else noise
                body = rng.randbytes(random_bytes) + bytes(body_size - random_bytes)
                zf.writestr(f"{folder}/s.png", PNG_MAGIC + body, zipfile.ZIP_STORED if noise is None else None)
    return buf.getvalue()


async def one_run(kind: str, data: bytes, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="twinview-bcfmem-") as tmp:
        root = Path(tmp)
        scene_dir, bindings = root / "scene", root / "bench.bindings.json"
        write_scene(scene_dir, bindings, 10)
        port, session = free_port(), scene_id_for(scene_dir)
        with server(scene_dir, bindings, root / "data", port) as proc:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            token = issue(load_secret(root / "data"), session, "bench", "admin", 600)
            rss = psutil.Process(proc.pid)
            before = rss.memory_info().rss
            peak = before
            running = True

            async def sample() -> None:
                nonlocal peak
                while running:
                    peak = max(peak, rss.memory_info().rss)
                    await asyncio.sleep(SAMPLE_S)

            sampler = asyncio.create_task(sample())
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout) as http:

                async def upload() -> int:
                    async with http.post(f"{url}/api/sessions/{session}/bcf", data=data, headers=headers) as r:
                        await r.read()
                        return r.status

                statuses = await asyncio.gather(*(upload() for _ in range(concurrency)))
            await asyncio.sleep(SETTLE_S)
            running = False
            await sampler
            after = rss.memory_info().rss
    return {
        "archive": kind,
        "upload_bytes": len(data),
        "concurrency": concurrency,
        "statuses": dict(Counter(statuses)),
        "rss_before_mb": before / 1e6,
        "rss_peak_mb": peak / 1e6,
        "rss_after_mb": after / 1e6,
    }


def table(rows: list[dict]) -> str:
    out = [
        "| archive | upload | concurrent | HTTP statuses | RSS before | RSS peak | RSS 2 s after |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        statuses = ", ".join(f"{n}× {s}" for s, n in sorted(r["statuses"].items()))
        out.append(
            f"| {r['archive']} | {r['upload_bytes'] / 1e6:.2f} MB | {r['concurrency']} | {statuses} |"
            f" {r['rss_before_mb']:.0f} MB | {r['rss_peak_mb']:.0f} MB | {r['rss_after_mb']:.0f} MB |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archives", nargs="+", default=["padding", "snapshots", "dense", "photos"])
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 8])
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    rows = []
    for kind in args.archives:
        data = archive(kind)
        for c in args.concurrency:
            rows.append(asyncio.run(one_run(kind, data, c)))
            print(rows[-1], file=sys.stderr)
    text = table(rows) + f"\nHost: {os.cpu_count()} CPUs, 1-min load average {load:.1f} at the start (shared).\n"
    command = " ".join(["python -m bench.bcf_memory", *(argv if argv is not None else sys.argv[1:])])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bcf_memory.md").write_text(f"# BCF import memory\n\n`{command}`\n\n{text}")
    print(text, end="")


if __name__ == "__main__":
    main()
