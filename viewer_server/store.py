"""Persistence in one SQLite file (WAL): scenes, bindings, the change log, last property values.

Writes go through one writer thread fed by a queue, in one transaction per flush window, so the
event loop never waits on the disk. Reads happen at start-up (before serving), for rare REST calls and,
for `revocations`, once per token check. Collaboration (`rooms`, `revocations`, `topics`, `comments`,
`attachments`, `audit`) and operators' alarm transitions are written through `run(fn)`: `fn(db)` runs on
the writer thread in its own savepoint, and the awaiting caller resumes only after the COMMIT, so
whatever the server acknowledges survives a crash of the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from scene.state import PropertyValue, Scalar
from viewer_server.data_dir import create_private, prepare
from viewer_server.health import EngineHealth
from viewer_server.outbox import PRESENCE, PRESENTER, Batch
from viewer_server.topics import Attachment, Comment, Topic

T = TypeVar("T")

SCHEMA_VERSION: Final = 4
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
CREATE TABLE IF NOT EXISTS rooms (
  id TEXT PRIMARY KEY, scene TEXT NOT NULL, name TEXT NOT NULL, anonymous_role TEXT,
  created REAL NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  session TEXT NOT NULL, user TEXT NOT NULL, revoked_at REAL NOT NULL, PRIMARY KEY (session, user));
CREATE TABLE IF NOT EXISTS topics (
  session TEXT NOT NULL, guid TEXT NOT NULL, revision INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (session, guid));
CREATE TABLE IF NOT EXISTS comments (
  session TEXT NOT NULL, guid TEXT NOT NULL, topic TEXT NOT NULL, revision INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (session, guid));
CREATE TABLE IF NOT EXISTS attachments (
  id TEXT PRIMARY KEY, session TEXT NOT NULL, mime TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
  data BLOB NOT NULL, author TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, ts REAL NOT NULL, actor TEXT NOT NULL,
  role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_session ON audit (session, id);
CREATE TABLE IF NOT EXISTS procedure_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, run TEXT NOT NULL, ts REAL NOT NULL,
  kind TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS procedure_events_by_session ON procedure_events (session, id);
CREATE TABLE IF NOT EXISTS alarms (scene TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (scene, id));
CREATE TABLE IF NOT EXISTS alarm_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, scene TEXT NOT NULL, ts REAL NOT NULL, alarm TEXT NOT NULL,
  kind TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS alarm_events_by_scene ON alarm_events (scene, id);
"""

_enc = msgspec.json.Encoder()
_topic_dec = msgspec.json.Decoder(Topic)
_comment_dec = msgspec.json.Decoder(Comment)
log = logging.getLogger(__name__)


def decoded(rows: Iterable[tuple[str, bytes]], decoder: msgspec.json.Decoder[T], table: str) -> list[T]:
    """Decode stored `(key, data)` rows, skipping with a warning each one that no longer decodes: a NaN that
    an older version stored (as `null`), or a damaged row, must not take its whole session down."""
    out = []
    for key, data in rows:
        try:
            out.append(decoder.decode(data))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            log.warning("store: %s row %s skipped, it does not decode: %s", table, key, exc)
    return out


def _stored_value(data: bytes) -> Scalar | None:
    """A stored property value, or None when it is not a finite scalar (a NaN an older version stored as null)."""
    value = msgspec.json.decode(data)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, bool | int | float | str) else None


class RoomRow(msgspec.Struct):
    """A collaboration session as stored (see `viewer_server.rooms`)."""

    id: str
    scene: str
    name: str
    created: float
    created_by: str
    anonymous_role: str | None = None


# The audit trail's actor for changes made with the `twinview` command directly on the data dir.
CLI_ACTOR: Final = "twinview-cli"


class AuditEntry(msgspec.Struct, omit_defaults=True):
    """One change: who (`actor`, `role`), what (`action`, a permissions.Action value), when, on what."""

    session: str
    ts: float
    actor: str
    role: str
    action: str
    target: str
    detail: str = ""
    id: int = 0


# --- collaboration writes: compose them in a function passed to Store.run -------------------------


def put_room(db: sqlite3.Connection, room: RoomRow) -> None:
    db.execute(
        "INSERT INTO rooms VALUES (?, ?, ?, ?, ?, ?)",
        (room.id, room.scene, room.name, room.anonymous_role, room.created, room.created_by),
    )


def put_revocation(db: sqlite3.Connection, session: str, user: str, revoked_at: float) -> None:
    """Void `user`'s tokens for `session` issued up to `revoked_at`; a revocation never moves back in time."""
    db.execute(
        "INSERT INTO revocations VALUES (?, ?, ?)"
        " ON CONFLICT (session, user) DO UPDATE SET revoked_at = max(revoked_at, excluded.revoked_at)",
        (session, user, revoked_at),
    )


def prune_revocations(db: sqlite3.Connection, before: float) -> int:
    """Forget revocations older than `before`: every token they voided has expired by then."""
    return db.execute("DELETE FROM revocations WHERE revoked_at < ?", (before,)).rowcount


def prune_audit(db: sqlite3.Connection, before: float | None, max_rows: int | None) -> int:
    """Delete audit rows older than `before` and all but the newest `max_rows` (None: no such bound)."""
    deleted = db.execute("DELETE FROM audit WHERE ts < ?", (before,)).rowcount if before is not None else 0
    if max_rows is not None:
        deleted += db.execute(
            "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)", (max_rows,)
        ).rowcount
    return deleted


def put_topic(db: sqlite3.Connection, session: str, topic: Topic) -> None:
    db.execute(
        "INSERT OR REPLACE INTO topics VALUES (?, ?, ?, ?)", (session, topic.guid, topic.revision, _enc.encode(topic))
    )


def put_comment(db: sqlite3.Connection, session: str, comment: Comment) -> None:
    db.execute(
        "INSERT OR REPLACE INTO comments VALUES (?, ?, ?, ?, ?)",
        (session, comment.guid, comment.topic, comment.revision, _enc.encode(comment)),
    )


def put_attachment(
    db: sqlite3.Connection, session: str, attachment: Attachment, data: bytes, author: str, created: float
) -> None:
    db.execute(
        "INSERT INTO attachments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (attachment.id, session, attachment.mime, attachment.size, attachment.sha256, data, author, created),
    )


def put_audit(db: sqlite3.Connection, entry: AuditEntry) -> None:
    db.execute(
        "INSERT INTO audit (session, ts, actor, role, action, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (entry.session, entry.ts, entry.actor, entry.role, entry.action, entry.target, entry.detail),
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store:
    """The server's SQLite file under the data dir. Thread-safe by construction: one writer thread."""

    def __init__(self, data_dir: Path) -> None:
        self.path = prepare(data_dir) / STORE_FILE
        create_private(self.path)
        db = self._connect()
        db.executescript(_SCHEMA)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.commit()
        self._read = db
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self.dropped_batches = 0
        self.write_errors = 0
        self.last_error = ""
        self.failing = False  # the last transaction failed (cleared by the next that commits)
        self._writer = threading.Thread(target=self._write_loop, name="twinview-store", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN in `_run`), so savepoints nest inside them.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast
        return db

    # --- reads (start-up, REST) ------------------------------------------------------------------

    def load_props(self, scene: str) -> dict[str, dict[str, PropertyValue]]:
        rows = self._read.execute(
            "SELECT element, prop, value, unit, ts, rx, quality FROM props WHERE scene = ?", (scene,)
        )
        out: dict[str, dict[str, PropertyValue]] = {}
        for element, prop, data, unit, ts, rx, quality in rows:
            value = _stored_value(data)
            if value is None:
                log.warning("store: value of %s/%s skipped, not a finite number or text: %r", element, prop, data[:40])
                continue
            out.setdefault(element, {})[prop] = PropertyValue(value, unit, ts, rx, quality)
        return out

    # --- collaboration reads --------------------------------------------------------------------

    def scene_ids(self) -> list[str]:
        return [row[0] for row in self._read.execute("SELECT id FROM scenes ORDER BY id")]

    def rooms(self) -> list[RoomRow]:
        rows = self._read.execute("SELECT id, scene, name, created, created_by, anonymous_role FROM rooms ORDER BY id")
        return [RoomRow(*row) for row in rows]

    def room(self, room_id: str) -> RoomRow | None:
        row = self._read.execute(
            "SELECT id, scene, name, created, created_by, anonymous_role FROM rooms WHERE id = ?", (room_id,)
        ).fetchone()
        return RoomRow(*row) if row else None

    def revoked_at(self, session: str, user: str) -> float | None:
        """Until when `user`'s tokens for `session` are revoked (None: never). Read on every token check,
        so a revocation committed by another process (the CLI) counts at once."""
        row = self._read.execute(
            "SELECT revoked_at FROM revocations WHERE session = ? AND user = ?", (session, user)
        ).fetchone()
        return row[0] if row else None

    def revocations(self) -> dict[tuple[str, str], float]:
        """Every revocation: (session, user) -> revoked until. A running server compares its connections
        with it every second (`serve.REVOCATION_POLL_S`), so those of a user revoked by another process
        (the CLI) are closed."""
        return {(s, u): t for s, u, t in self._read.execute("SELECT session, user, revoked_at FROM revocations")}

    def topics(self, session: str) -> list[Topic]:
        """Every topic of a session (deleted ones included, flagged), oldest first."""
        rows = self._read.execute("SELECT guid, data FROM topics WHERE session = ?", (session,))
        return sorted(decoded(rows, _topic_dec, "topics"), key=lambda t: (t.created, t.guid))

    def comments(self, session: str, topic: str | None = None) -> list[Comment]:
        if topic is None:
            rows = self._read.execute("SELECT guid, data FROM comments WHERE session = ?", (session,))
        else:
            rows = self._read.execute(
                "SELECT guid, data FROM comments WHERE session = ? AND topic = ?", (session, topic)
            )
        return sorted(decoded(rows, _comment_dec, "comments"), key=lambda c: (c.created, c.guid))

    def attachment(self, attachment_id: str) -> tuple[str, Attachment, bytes] | None:
        """(session, metadata, bytes) of an attachment, or None."""
        row = self._read.execute(
            "SELECT session, mime, size, sha256, data FROM attachments WHERE id = ?", (attachment_id,)
        ).fetchone()
        if row is None:
            return None
        session, mime, size, digest, data = row
        return session, Attachment(attachment_id, mime, size, digest), data

    def attachment_sessions(self, attachment_ids: Iterable[str]) -> dict[str, str]:
        """The session holding each of these attachments that exists (attachment id -> session)."""
        out = {}
        for attachment_id in attachment_ids:
            row = self._read.execute("SELECT session FROM attachments WHERE id = ?", (attachment_id,)).fetchone()
            if row is not None:
                out[attachment_id] = row[0]
        return out

    def audit(self, session: str, limit: int, before: int | None = None) -> list[AuditEntry]:
        """The newest `limit` audit entries of a session (older than id `before`), newest first."""
        rows = self._read.execute(
            "SELECT session, ts, actor, role, action, target, detail, id FROM audit"
            " WHERE session = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (session, before if before is not None else 2**62, limit),
        )
        return [AuditEntry(*row) for row in rows]

    async def import_topics(
        self,
        session: str,
        topics: Iterable[Topic],
        comments: Iterable[Comment],
        attachments: Iterable[tuple[Attachment, bytes]],
        actor: AuditEntry,
    ) -> None:
        """Insert or replace topics, comments and attachments of a session in one transaction, with
        the audit entry `actor`. Connected clients learn of them only through
        `Annotations.import_topics`, which calls this."""

        def write(db: sqlite3.Connection) -> None:
            for attachment, data in attachments:
                db.execute("DELETE FROM attachments WHERE id = ?", (attachment.id,))
                put_attachment(db, session, attachment, data, actor.actor, actor.ts)
            for topic in topics:
                put_topic(db, session, topic)
            for comment in comments:
                put_comment(db, session, comment)
            put_audit(db, actor)

        await self.run(write)

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

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> concurrent.futures.Future[T]:
        """Run `fn(db)` on the writer thread in its own savepoint; the future resolves after the COMMIT
        (with fn's result, or its exception, in which case only fn's writes are rolled back)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(("call", (fn, future)))
        return future

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`submit` for the event loop: resumes once fn's writes are committed."""
        return await asyncio.wrap_future(self.submit(fn))

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(("barrier", (done,)))
        done.wait(timeout)

    def health(self) -> EngineHealth:
        """Failing while its last transaction failed: what is acknowledged is still never lost (an ack
        follows the commit), but new changes are refused until the disk takes writes again."""
        if not self.failing:
            return EngineHealth("sqlite", ok=True)
        return EngineHealth(
            "sqlite", ok=False, detail=f"{self.last_error}: free space or fix the permissions under {self.path.parent}"
        )

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
        results: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
        try:
            db.execute("BEGIN")  # one transaction for everything queued
            for kind, args in jobs:
                if kind == "scene":
                    db.execute("INSERT OR REPLACE INTO scenes VALUES (?, ?, ?, ?)", args)
                elif kind == "bindings":
                    db.execute("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, ?)", args)
                elif kind == "batch":
                    self._write_batch(db, *args)
                elif kind == "call":
                    results.append(self._call(db, *args))
            db.execute("DELETE FROM log WHERE id <= (SELECT max(id) FROM log) - ?", (STORE_LOG_MAX_ROWS,))
            db.execute("COMMIT")
            if len(barriers) < len(jobs):  # something was written: the disk takes writes again
                self.failing = False
        except sqlite3.Error as exc:  # a full or failing disk must not kill the writer (nor the server)
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.failing = True
            self.write_errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("store %s: %s (%d jobs lost)", self.path, self.last_error, len(jobs))
            results = [(future, None, exc) for future, _, _ in results]
        for future, value, error in results:  # only now: the caller's ack follows the commit
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
        for barrier in barriers:
            barrier.set()

    @staticmethod
    def _call(
        db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], Any], future: concurrent.futures.Future[Any]
    ) -> tuple[concurrent.futures.Future[Any], Any, BaseException | None]:
        db.execute("SAVEPOINT call")
        try:
            value = fn(db)
        except Exception as exc:  # the caller gets it; the rest of the transaction goes on
            db.execute("ROLLBACK TO call")
            db.execute("RELEASE call")
            return future, None, exc
        db.execute("RELEASE call")
        return future, value, None

    @staticmethod
    def _write_batch(
        db: sqlite3.Connection, scene: str, epoch: str, batch: Batch, props: list[tuple[str, str, PropertyValue]]
    ) -> None:
        rows = [
            (scene, epoch, batch.last, kind, key, _enc.encode(value))
            for (kind, key, _), value in batch.state.items()
            if kind not in (PRESENCE, PRESENTER)  # poses and views are ephemeral: not worth a disk write each
        ]
        rows += [(scene, epoch, ev.seq, "e", ev.kind, _enc.encode(ev)) for ev in batch.events]
        db.executemany("INSERT INTO log (scene, epoch, seq, kind, key, value) VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT OR REPLACE INTO props VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(scene, el, prop, _enc.encode(pv.value), pv.unit, pv.ts, pv.rx, pv.quality) for el, prop, pv in props],
        )
