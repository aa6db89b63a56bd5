"""Persistence in one SQLite file (WAL): scenes, bindings, the change log, last property values.

Writes go through one writer thread fed by a queue, in one transaction per flush window, so the
event loop never waits on the disk. Reads happen at start-up (before serving) and for rare REST calls.
Tables for sessions and annotations exist for the collaboration issue (schema only).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final

import msgspec

from scene.state import PropertyValue
from viewer_server.outbox import PRESENCE, Batch

SCHEMA_VERSION: Final = 1
STORE_FILE: Final = "twinview.sqlite"
# Rows of the change log kept on disk (audit and post-mortem); pruned on every write, newest kept.
STORE_LOG_MAX_ROWS: Final = 200_000
# Queued jobs written in one transaction at most: one commit per ~16 s of flush windows when the
# disk lags, short enough that a crash loses little.
STORE_TXN_MAX_JOBS: Final = 1000
# Batches waiting for the writer (~1 min of flush windows). If the disk stalls longer, further batches
# are dropped and counted (`dropped_batches`, in /api/health): live fan-out never waits for the disk,
# and memory stays bounded. Values then persist with the next batch that touches them.
STORE_QUEUE_MAX: Final = 4000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (
  id TEXT PRIMARY KEY, path TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, loaded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
  scene TEXT PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL, content TEXT NOT NULL,
  loaded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS log (
  id INTEGER PRIMARY KEY AUTOINCREMENT, scene TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
  kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB);
CREATE TABLE IF NOT EXISTS props (
  scene TEXT NOT NULL, element TEXT NOT NULL, prop TEXT NOT NULL, value BLOB NOT NULL,
  unit TEXT NOT NULL, ts REAL NOT NULL, rx REAL NOT NULL, quality TEXT NOT NULL,
  PRIMARY KEY (scene, element, prop));
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, scene TEXT NOT NULL, client TEXT NOT NULL, role TEXT NOT NULL,
  layer TEXT, connected_at REAL NOT NULL, disconnected_at REAL);
CREATE TABLE IF NOT EXISTS annotations (
  id TEXT PRIMARY KEY, scene TEXT NOT NULL, element TEXT, author TEXT NOT NULL, body TEXT NOT NULL,
  viewpoint BLOB, revision INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, updated_at REAL NOT NULL);
"""

_enc = msgspec.json.Encoder()
log = logging.getLogger(__name__)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store:
    """The server's SQLite file under the data dir. Thread-safe by construction: one writer thread."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / STORE_FILE
        db = self._connect()
        db.executescript(_SCHEMA)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.commit()
        self._read = db
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self.dropped_batches = 0
        self.write_errors = 0
        self.last_error = ""
        self._writer = threading.Thread(target=self._write_loop, name="twinview-store", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast
        return db

    # --- reads (start-up, REST) ------------------------------------------------------------------

    def load_props(self, scene: str) -> dict[str, dict[str, PropertyValue]]:
        rows = self._read.execute(
            "SELECT element, prop, value, unit, ts, rx, quality FROM props WHERE scene = ?", (scene,)
        )
        out: dict[str, dict[str, PropertyValue]] = {}
        for element, prop, value, unit, ts, rx, quality in rows:
            out.setdefault(element, {})[prop] = PropertyValue(msgspec.json.decode(value), unit, ts, rx, quality)
        return out

    # --- writes (queued) -------------------------------------------------------------------------

    def save_scene(self, scene: str, path: Path, manifest: bytes) -> None:
        self._queue.put(("scene", (scene, str(path), sha256(manifest), time.time())))

    def save_bindings(self, scene: str, path: Path, content: bytes) -> None:
        self._queue.put(("bindings", (scene, str(path), sha256(content), content.decode(), time.time())))

    def save_batch(self, scene: str, epoch: str, batch: Batch, props: list[tuple[str, str, PropertyValue]]) -> None:
        """Log a flushed batch and upsert the new current values (`props`: element, prop, value)."""
        if self._queue.qsize() >= STORE_QUEUE_MAX:
            self.dropped_batches += 1
            return
        self._queue.put(("batch", (scene, epoch, batch, props)))

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(("barrier", (done,)))
        done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=10)
        self._read.close()

    # --- writer thread ---------------------------------------------------------------------------

    def _write_loop(self) -> None:
        db = self._connect()
        while True:
            job = self._queue.get()
            if job is None:
                break
            jobs = [job]
            while not self._queue.empty() and len(jobs) < STORE_TXN_MAX_JOBS:
                nxt = self._queue.get()
                if nxt is None:
                    self._run(db, jobs)
                    db.close()
                    return
                jobs.append(nxt)
            self._run(db, jobs)
        db.close()

    def _run(self, db: sqlite3.Connection, jobs: list[tuple[str, tuple[Any, ...]]]) -> None:
        barriers = [args[0] for kind, args in jobs if kind == "barrier"]
        try:
            with db:  # one transaction for everything queued
                for kind, args in jobs:
                    if kind == "scene":
                        db.execute("INSERT OR REPLACE INTO scenes VALUES (?, ?, ?, ?)", args)
                    elif kind == "bindings":
                        db.execute("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?)", args)
                    elif kind == "batch":
                        self._write_batch(db, *args)
                db.execute("DELETE FROM log WHERE id <= (SELECT max(id) FROM log) - ?", (STORE_LOG_MAX_ROWS,))
        except sqlite3.Error as exc:  # a full or failing disk must not kill the writer (nor the server)
            self.write_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("store %s: %s (%d jobs lost)", self.path, self.last_error, len(jobs))
        for barrier in barriers:
            barrier.set()

    @staticmethod
    def _write_batch(
        db: sqlite3.Connection, scene: str, epoch: str, batch: Batch, props: list[tuple[str, str, PropertyValue]]
    ) -> None:
        rows = [
            (scene, epoch, batch.last, kind, key, _enc.encode(value))
            for (kind, key, _), value in batch.state.items()
            if kind != PRESENCE  # poses are ephemeral: not worth a disk write per heartbeat
        ]
        rows += [(scene, epoch, ev.seq, "e", ev.kind, _enc.encode(ev)) for ev in batch.events]
        db.executemany("INSERT INTO log (scene, epoch, seq, kind, key, value) VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT OR REPLACE INTO props VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(scene, el, prop, _enc.encode(pv.value), pv.unit, pv.ts, pv.rx, pv.quality) for el, prop, pv in props],
        )
