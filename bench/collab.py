"""Collaboration benchmark: annotation event latency to N clients, and restoring a large session.

    python -m bench.collab                   # N = 100 clients, 50 topics, a 1 000-topic session
    python -m bench.collab --clients 20 --topics 10 --restore-topics 200   # quick

1. Latency: N clients join one session over WebSocket (JSON); AUTHORS of them create topics one after
   another. For each topic: time from the author receiving `saved` (the change is committed) to each
   client applying its `topic_created` event; p50 / p99 / max over all (topic, client) pairs.
2. Restore: a session holding R topics (each with a pin, a viewpoint, a description and one comment),
   seeded in SQLite before the server starts. A late joiner opens a WebSocket; time until its snapshot
   with every topic is applied (median of RESTORE_RUNS), and the snapshot's size.

The server is a real `twinview serve` process; the clients run in this process (one event loop), all
on 127.0.0.1. Results: a markdown table on stdout and in bench/results/collab.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._fanout_twin import free_port, write_scene
from bench._server import server, wait_ready
from viewer_server import protocol as p
from viewer_server.annotations import ANNOTATION_BURST
from viewer_server.auth import issue, load_secret
from viewer_server.client import TwinClient
from viewer_server.rooms import new_room
from viewer_server.scenes import scene_id_for
from viewer_server.store import Store, put_comment, put_room, put_topic
from viewer_server.store_db import Db
from viewer_server.topics import Camera, Comment, Topic, Vec3, Viewpoint

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ELEMENTS = 1000
# Topics per author stay under the per-user burst, so the rate limit never paces the benchmark.
TOPICS_PER_AUTHOR = ANNOTATION_BURST - 1
RESTORE_RUNS = 5
EVENT_TIMEOUT_S = 30.0


class TimedClient(TwinClient):
    """A TwinClient that notes when its reader got each `saved` and applied each topic_created event."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.seen: dict[str, float] = {}
        self.saved_at: dict[str, float] = {}

    async def _apply(self, msg: p.ServerMessage) -> None:
        if isinstance(msg, p.Saved):
            self.saved_at[msg.guid] = time.perf_counter()
        await super()._apply(msg)

    def _apply_delta(self, delta: p.Delta) -> None:
        super()._apply_delta(delta)
        now = time.perf_counter()
        for event in delta.events:
            if event.kind == "topic_created":
                self.seen.setdefault(event.id, now)


def seed(data_dir: Path, scene: str, session: str, topics: int) -> None:
    """A session with `topics` realistic topics and a comment each, written before the server starts."""
    store = Store(data_dir)
    room = new_room(session, scene, "restore benchmark", None, "bench")
    now = time.time()
    camera = Camera(Vec3(10, 5, 10), Vec3(-0.7, -0.3, -0.7), Vec3(0, 1, 0))

    def write(db: Db) -> None:
        put_room(db, room)
        for i in range(topics):
            guid = f"topic-{i:05d}"
            topic = Topic(
                guid=guid,
                title=f"Finding {i}: check the flange bolts",
                author=f"user{i % 7}",
                created=now + i * 1e-3,
                pin=p.Pin(f"e{i % ELEMENTS}", Vec3(i % 10, 1.5, i % 13), Vec3(0, 1, 0)),
                description="Torque marks missing on two bolts; re-torque to spec and photograph. " * 3,
                labels=["mechanical", "inspection"],
                viewpoints=[Viewpoint(guid=f"vp-{i}", camera=camera, selected=[f"e{i % ELEMENTS}"])],
            )
            put_topic(db, session, topic)
            put_comment(db, session, Comment(f"c-{i}", guid, "reviewer", "Agreed, scheduled.", now + i * 1e-3))

    store.submit(write).result()
    store.close()


async def latency(ws_url: str, secret: bytes, session: str, n: int, topics: int) -> dict[str, list[float]]:
    """Seconds, per topic: request sent -> `saved` received ("commit"); and for every (topic, client)
    pair: `saved` received -> event applied ("fanout", negative when the event overtook the ack on
    another socket), request sent -> event applied ("end_to_end")."""
    authors = max(1, -(-topics // TOPICS_PER_AUTHOR))
    clients = [
        TimedClient(
            ws_url,
            token=issue(secret, session, f"u{i}", "annotator" if i < authors else "viewer"),
            name=f"u{i}",
            reconnect=False,
        )
        for i in range(max(n, authors))
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    for k in range(topics):
        author = clients[k // TOPICS_PER_AUTHOR]
        start = time.perf_counter()
        saved = await author.create_topic(p.TopicDraft(f"bench {k}"))
        sent[saved.guid], acked[saved.guid] = start, author.saved_at[saved.guid]
        await asyncio.sleep(0.02)  # one topic per ~20 ms: a busy review, not a flood
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    while any(len(c.seen.keys() & acked.keys()) < len(acked) for c in clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    pairs = [(guid, c.seen[guid]) for guid in acked for c in clients if guid in c.seen]
    if len(pairs) < len(acked) * len(clients):
        raise RuntimeError(f"{len(acked) * len(clients) - len(pairs)} events never arrived")
    await asyncio.gather(*(c.close() for c in clients))
    return {
        "commit": [acked[g] - sent[g] for g in acked],
        "fanout": [at - acked[g] for g, at in pairs],
        "end_to_end": [at - sent[g] for g, at in pairs],
    }


async def restore(ws_url: str, secret: bytes, session: str, topics: int) -> tuple[list[float], int]:
    """Seconds from opening the WebSocket to the snapshot with every topic applied; snapshot bytes."""
    runs = []
    size = 0
    for i in range(RESTORE_RUNS):
        client = TwinClient(ws_url, token=issue(secret, session, f"late{i}", "viewer"), reconnect=False)
        start = time.perf_counter()
        await client.connect()  # returns once the first frame (the snapshot) is applied
        runs.append(time.perf_counter() - start)
        assert len(client.topics) == topics and len(client.comments) == topics
        size = len(
            p.encode({"topics": list(client.topics.values()), "comments": list(client.comments.values())}, "json")
        )
        await client.close()
    return runs, size


def table(n: int, topics: int, lat: dict[str, list[float]], restore_topics: int, runs: list[float], size: int) -> str:
    def pct(name: str, *qs: float) -> str:
        return " / ".join(f"{np.percentile(np.array(lat[name]) * 1000, q):.1f}" for q in qs) + " ms"

    rows = [
        "| measure | value |",
        "|---|---|",
        f"| clients (one session) | {n} |",
        f"| topics created (one every ~20 ms) | {topics} |",
        f"| create → `saved` at the author (SQLite commit included), p50 / p99 | {pct('commit', 50, 99)} |",
        f"| `saved` at the author → event applied at each client, p50 / p99 | {pct('fanout', 50, 99)} |",
        f"| create → event applied at each client, p50 / p99 / max | {pct('end_to_end', 50, 99, 100)} |",
        f"| late joiner: topics (+1 comment each) in the session | {restore_topics} |",
        f"| late joiner: WebSocket open → snapshot applied, median of {len(runs)} | "
        f"{statistics.median(runs) * 1000:.0f} ms |",
        f"| late joiner: worst of {len(runs)} | {max(runs) * 1000:.0f} ms |",
        f"| snapshot size (topics + comments, JSON) | {size / 1e6:.2f} MB |",
    ]
    return "\n".join(rows) + "\n"


async def run(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="twinview-collab-") as tmp:
        root = Path(tmp)
        scene_dir, bindings = root / "bench-scene", root / "bench.bindings.json"
        write_scene(scene_dir, bindings, ELEMENTS)
        data = root / "data"
        scene = scene_id_for(scene_dir)
        seed(data, scene, "big-review", args.restore_topics)
        port = free_port()
        with server(scene_dir, bindings, data, port):
            await wait_ready(f"http://127.0.0.1:{port}")
            secret = load_secret(data)
            ws_url = f"ws://127.0.0.1:{port}/ws/{scene}"
            lat = await latency(ws_url, secret, scene, args.clients, args.topics)
            runs, size = await restore(ws_url, secret, "big-review", args.restore_topics)
    return table(args.clients, args.topics, lat, args.restore_topics, runs, size)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--topics", type=int, default=50)
    ap.add_argument("--restore-topics", type=int, default=1000)
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]  # the host is shared: say how busy it was
    text = asyncio.run(run(args))
    text += f"\nHost: {os.cpu_count()} CPUs, 1-min load average {load:.1f} at the start (shared machine).\n"
    command = " ".join(["python -m bench.collab", *(argv if argv is not None else sys.argv[1:])])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "collab.md").write_text(f"# Collaboration benchmark\n\n`{command}`\n\n{text}")
    print(text, end="")


if __name__ == "__main__":
    main()
