"""Persistence: scenes, bindings, the change log, last property values, sessions, revocations, topics,
comments, attachments, procedure events, alarms and the audit trail, in one SQLite file (WAL) under the data
dir by default, or in PostgreSQL (`serve --store postgresql://…`), which several server processes share.

Both run the same queries (`store_db`: one connection interface, `?` placeholders) on the same versioned
schema (`store_schema`, migrated at start). Writes go through one writer thread fed by a queue, in one
transaction per flush window, so the event loop never waits on the database. Reads happen at start-up (before
serving), for rare REST calls and, for `revocations`, once per token check. Collaboration (`rooms`,
`revocations`, `topics`, `comments`, `attachments`, `audit`) and operators' alarm transitions are written
through `run(fn)`: `fn(db)` runs on the writer thread in its own savepoint, and the awaiting caller resumes only
after the COMMIT, so whatever the server acknowledges survives a crash of the process. When the database
cannot be reached, `run` raises StoreUnavailable (nothing was written), reads raise it too except
`revoked_at`, which answers from the revocations last read (the poll reads them every second), and the next
use reconnects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from scene.state import PropertyValue, Scalar
from viewer_server.data_dir import create_private, prepare
from viewer_server.health import EngineHealth
from viewer_server.outbox import PRESENCE, PRESENTER, Batch
from viewer_server.store_db import (
    SQLITE_SCHEME,
    Contention,
    Db,
    PostgresDb,
    SqliteDb,
    StoreError,
    StoreUnavailable,
    connect,
    insert,
    is_postgres,
    sqlite_path,
    upsert,
)
from viewer_server.store_schema import migrate
from viewer_server.topics import Attachment, Comment, Topic

T = TypeVar("T")

STORE_FILE: Final = "twinview.sqlite"
# Rows of the change log kept (audit and post-mortem); pruned on every write, newest kept.
STORE_LOG_MAX_ROWS: Final = 200_000
# Queued jobs written in one transaction at most: one commit per ~16 s of flush windows when the
# database lags, short enough that a crash loses little.
STORE_TXN_MAX_JOBS: Final = 1000
# Batches waiting for the writer (~1 min of flush windows). If the database stalls longer, further batches
# are dropped and counted (`dropped_batches`, in /api/health): live fan-out never waits for the database,
# and memory stays bounded. Values then persist with the next batch that touches them.
STORE_QUEUE_MAX: Final = 4000
# A failing database is logged when its error changes, else at most once per this many seconds (/api/health
# and `write_errors` count every failure).
STORE_LOG_REPEAT_S: Final = 10.0
# `/api/health` asks the database itself (`SELECT 1`, off the event loop) at most once per this many seconds,
# waiting at most STORE_PROBE_TIMEOUT_S for the answer (a slower one counts for a later request): its store status
# follows the database both ways, down and back, without waiting for a write.
STORE_PROBE_INTERVAL_S: Final = 1.0
STORE_PROBE_TIMEOUT_S: Final = 0.5
# Times a transaction of values and log rows is run when PostgreSQL aborts it for contention with another
# process (a deadlock); one holding collaboration calls is not run again, its callers are told.
STORE_TXN_ATTEMPTS: Final = 3

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


class StaleRevision(Exception):
    """A conditional write found the stored item at another revision (`current`; None: there is none):
    someone changed it meanwhile, maybe through another server process."""

    def __init__(self, table: str, guid: str, current: int | None) -> None:
        super().__init__(f"{table} {guid!r} is at revision {current}")
        self.current = current


class StoreHealth(EngineHealth, kw_only=True):
    """The store as `/api/health` reports it (`engine`: "sqlite" or "postgresql"; `url`: sqlite:FILE, or the
    PostgreSQL URL without user and password)."""

    path: str  # the SQLite file ("" for PostgreSQL, or without a data dir)
    reachable: bool  # the last statement reached the database
    latency_ms: float | None  # round trip of the last read (None: none yet)
    last_error: str  # the last failure, kept after recovery ("" if none)
    dropped_batches: int  # not persisted because the database lagged (STORE_QUEUE_MAX)
    write_errors: int  # transactions that failed (their callers were told)


# --- collaboration writes: compose them in a function passed to Store.run -------------------------


def put_room(db: Db, room: RoomRow, *, if_absent: bool = False) -> None:
    """Add a session; Conflict if its id is taken, unless `if_absent` (then the stored one stays)."""
    db.execute(
        "INSERT INTO rooms (id, scene, name, anonymous_role, created, created_by) VALUES (?, ?, ?, ?, ?, ?)"
        + (" ON CONFLICT (id) DO NOTHING" if if_absent else ""),
        (room.id, room.scene, room.name, room.anonymous_role, room.created, room.created_by),
    )


def put_revocation(db: Db, session: str, user: str, revoked_at: float) -> None:
    """Void `user`'s tokens for `session` issued up to `revoked_at`; a revocation never moves back in time."""
    db.execute(
        'INSERT INTO revocations (session, "user", revoked_at) VALUES (?, ?, ?)'
        ' ON CONFLICT (session, "user") DO UPDATE SET revoked_at = CASE'
        " WHEN excluded.revoked_at > revocations.revoked_at THEN excluded.revoked_at"
        " ELSE revocations.revoked_at END",
        (session, user, revoked_at),
    )


def prune_revocations(db: Db, before: float) -> int:
    """Forget revocations older than `before`: every token they voided has expired by then."""
    return db.execute("DELETE FROM revocations WHERE revoked_at < ?", (before,)).rowcount


def prune_audit(db: Db, before: float | None, max_rows: int | None) -> int:
    """Delete audit rows older than `before` and all but the newest `max_rows` (None: no such bound)."""
    deleted = db.execute("DELETE FROM audit WHERE ts < ?", (before,)).rowcount if before is not None else 0
    if max_rows is not None:
        deleted += db.execute(
            "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)", (max_rows,)
        ).rowcount
    return deleted


def _put_revised(db: Db, table: str, row: dict[str, Any], expected: int | None) -> None:
    """Write a revised item (`row` has session, guid, revision, data…). `expected`: None writes it whatever is
    stored (an import replacing it); 0 adds it (Conflict if the guid is taken); n replaces it only if the stored
    one is at revision n — one conditional UPDATE, atomic in both engines whichever process writes — else
    StaleRevision."""
    columns = list(row)
    if expected is None:
        db.execute(upsert(table, columns, ("session", "guid")), list(row.values()))
    elif expected == 0:
        db.execute(insert(table, columns), list(row.values()))
    else:
        changed = [c for c in columns if c not in ("session", "guid")]
        sets = ", ".join(f"{c} = ?" for c in changed)
        updated = db.execute(
            f"UPDATE {table} SET {sets} WHERE session = ? AND guid = ? AND revision = ?",
            [*(row[c] for c in changed), row["session"], row["guid"], expected],
        ).rowcount
        if updated == 0:
            found = db.execute(
                f"SELECT revision FROM {table} WHERE session = ? AND guid = ?", (row["session"], row["guid"])
            ).fetchone()
            raise StaleRevision(table, row["guid"], found[0] if found else None)


def put_topic(db: Db, session: str, topic: Topic, *, expected: int | None = None) -> None:
    """Write a topic; `expected`: see `_put_revised` (the revision it replaces, 0 for a new one)."""
    row = {"session": session, "guid": topic.guid, "revision": topic.revision, "data": _enc.encode(topic)}
    _put_revised(db, "topics", row, expected)


def put_comment(db: Db, session: str, comment: Comment, *, expected: int | None = None) -> None:
    row = {
        "session": session,
        "guid": comment.guid,
        "topic": comment.topic,
        "revision": comment.revision,
        "data": _enc.encode(comment),
    }
    _put_revised(db, "comments", row, expected)


def put_attachment(db: Db, session: str, attachment: Attachment, data: bytes, author: str, created: float) -> None:
    db.execute(
        "INSERT INTO attachments (id, session, mime, size, sha256, data, author, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (attachment.id, session, attachment.mime, attachment.size, attachment.sha256, data, author, created),
    )


def put_audit(db: Db, entry: AuditEntry) -> None:
    db.execute(
        "INSERT INTO audit (session, ts, actor, role, action, target, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (entry.session, entry.ts, entry.actor, entry.role, entry.action, entry.target, entry.detail),
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_store(data_dir: Path, location: str | None = None) -> Store:
    """The store of a server for a command (`twinview session|bcf|procedure`): at `location` (the server's
    `--store`) if given, else the data dir's SQLite file, which must exist — NoStore rather than an empty store
    where a path was mistyped."""
    if location is None and not (data_dir / STORE_FILE).is_file():
        raise NoStore(f"{data_dir}: no server data here (no {STORE_FILE}); pass the server's --data-dir (and --store)")
    return Store(data_dir, location)


class NoStore(StoreError):
    """A command was pointed at a data dir without a store."""


_SCENE = upsert("scenes", ("id", "path", "manifest_sha256", "loaded_at"), ("id",))
_BINDINGS = upsert("bindings", ("scene", "path", "sha256", "content", "loaded_at"), ("scene",))
_PROPS = upsert(
    "props", ("scene", "element", "prop", "value", "unit", "ts", "rx", "quality"), ("scene", "element", "prop")
)


class Store:
    """The server's store: the SQLite file under the data dir, or the PostgreSQL database at `location`
    (`postgresql://USER@HOST:PORT/DB`). Thread-safe by construction: one writer thread. Raises
    StoreUnavailable when PostgreSQL cannot be reached at start, SchemaTooNew for a newer database."""

    def __init__(self, data_dir: Path, location: str | None = None) -> None:
        self.data_dir = prepare(data_dir)
        if location is None:
            location = f"{SQLITE_SCHEME}{self.data_dir / STORE_FILE}"
        if not is_postgres(location):
            create_private(sqlite_path(location))
        self._read: SqliteDb | PostgresDb = connect(location)
        try:
            migrate(self._read)
            writer = connect(location)
        except BaseException:
            self._read.close()
            raise
        self.backend = self._read.backend
        self.location = self._read.location  # never with a password
        # The PostgreSQL URL as given (with its password, if any: never shown), for the historian's connections.
        self.postgres_url = location if is_postgres(location) else None
        self.path = self._read.path if isinstance(self._read, SqliteDb) else None
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue()
        self.dropped_batches = 0
        self.write_errors = 0
        self.last_error = ""
        self.failing = False  # the last transaction failed, the database reachable (cleared by the next commit)
        self.reachable = True  # the last statement reached the database
        self.latency_ms: float | None = None  # round trip of the last read
        self._logged_at = -float("inf")  # when a failed transaction was last logged
        self._probe: asyncio.Future[None] | None = None  # the health probe running now
        self._probed_at = -float("inf")  # when it last started
        self._revoked: dict[tuple[str, str], float] = {}
        self.revocations()
        self._writer = threading.Thread(target=self._write_loop, args=(writer,), name="twinview-store", daemon=True)
        self._writer.start()

    def health(self) -> StoreHealth:
        """Not ok while the database cannot be reached (as of the last statement or `probe`) or a transaction failed
        while it could (a full disk) since the last commit: what is acknowledged is still never lost (an ack follows
        the commit), but new changes are refused until it takes writes again."""
        ok = self.reachable and not self.failing
        if ok:
            detail = ""
        elif self.path is not None:
            detail = f"{self.last_error}: free space or fix the permissions under {self.path.parent}"
        else:
            detail = f"{self.last_error}: start PostgreSQL or mend the network; the store reconnects by itself"
        return StoreHealth(
            self.backend,
            ok=ok,
            url=self.location,
            detail=detail,
            path=str(self.path or ""),
            reachable=self.reachable,
            latency_ms=None if self.latency_ms is None else round(self.latency_ms, 3),
            last_error=self.last_error,
            dropped_batches=self.dropped_batches,
            write_errors=self.write_errors,
        )

    async def probe(self) -> None:
        """Ask the database whether it answers, for `health`: at most once per STORE_PROBE_INTERVAL_S and one at a
        time, on a worker thread (reconnecting there if need be, never on the event loop), waiting at most
        STORE_PROBE_TIMEOUT_S. A database that answers again makes the store ok without a write."""
        if (self._probe is not None and not self._probe.done()) or (
            time.monotonic() - self._probed_at < STORE_PROBE_INTERVAL_S
        ):
            return
        self._probed_at = time.monotonic()
        self._probe = asyncio.ensure_future(asyncio.to_thread(self._ping))
        await asyncio.wait({self._probe}, timeout=STORE_PROBE_TIMEOUT_S)

    def _ping(self) -> None:
        try:
            self._rows("SELECT 1")
        except StoreError as exc:  # _rows marked an unreachable database; a slow one only leaves its error
            self._failed(exc)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read on the caller's thread, timed for `health`."""
        started = time.perf_counter()
        try:
            rows = self._read.execute(sql, params).fetchall()
        except StoreUnavailable as exc:
            self._failed(exc)
            raise
        self.latency_ms = (time.perf_counter() - started) * 1000
        self.reachable = True
        return rows

    def _failed(self, exc: StoreError) -> None:
        self.last_error = str(exc)
        if isinstance(exc, StoreUnavailable):
            self.reachable = False

    # --- reads (start-up, REST) ------------------------------------------------------------------

    def load_props(self, scene: str) -> dict[str, dict[str, PropertyValue]]:
        rows = self._rows("SELECT element, prop, value, unit, ts, rx, quality FROM props WHERE scene = ?", (scene,))
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
        return [row[0] for row in self._rows("SELECT id FROM scenes ORDER BY id")]

    def scene_path(self, scene: str) -> Path | None:
        """The folder the scene was last served from."""
        rows = self._rows("SELECT path FROM scenes WHERE id = ?", (scene,))
        return Path(rows[0][0]) if rows else None

    def rooms(self) -> list[RoomRow]:
        rows = self._rows("SELECT id, scene, name, created, created_by, anonymous_role FROM rooms ORDER BY id")
        return [RoomRow(*row) for row in rows]

    def room(self, room_id: str) -> RoomRow | None:
        rows = self._rows(
            "SELECT id, scene, name, created, created_by, anonymous_role FROM rooms WHERE id = ?", (room_id,)
        )
        return RoomRow(*rows[0]) if rows else None

    def revoked_at(self, session: str, user: str) -> float | None:
        """Until when `user`'s tokens for `session` are revoked (None: never). Read on every token check,
        so a revocation committed by another process counts at once. While the database cannot be reached,
        the answer comes from the revocations last read (`revocations`, polled every second): none can be
        committed meanwhile."""
        try:
            rows = self._rows('SELECT revoked_at FROM revocations WHERE session = ? AND "user" = ?', (session, user))
        except StoreUnavailable:
            return self._revoked.get((session, user))
        return rows[0][0] if rows else None

    def revocations(self) -> dict[tuple[str, str], float]:
        """Every revocation: (session, user) -> revoked until. A running server compares its connections
        with it every second (`serve.REVOCATION_POLL_S`), so those of a user revoked by another process
        (the CLI, another server) are closed."""
        rows = self._rows('SELECT session, "user", revoked_at FROM revocations')
        self._revoked = {(s, u): t for s, u, t in rows}
        return dict(self._revoked)

    def topics(self, session: str) -> list[Topic]:
        """Every topic of a session (deleted ones included, flagged), oldest first."""
        rows = self._rows("SELECT guid, data FROM topics WHERE session = ?", (session,))
        return sorted(decoded(rows, _topic_dec, "topics"), key=lambda t: (t.created, t.guid))

    def topic(self, session: str, guid: str) -> Topic | None:
        """One topic as stored now (another process may have changed it)."""
        found = decoded(
            self._rows("SELECT guid, data FROM topics WHERE session = ? AND guid = ?", (session, guid)),
            _topic_dec,
            "topics",
        )
        return found[0] if found else None

    def comments(self, session: str, topic: str | None = None) -> list[Comment]:
        if topic is None:
            rows = self._rows("SELECT guid, data FROM comments WHERE session = ?", (session,))
        else:
            rows = self._rows("SELECT guid, data FROM comments WHERE session = ? AND topic = ?", (session, topic))
        return sorted(decoded(rows, _comment_dec, "comments"), key=lambda c: (c.created, c.guid))

    def comment(self, session: str, guid: str) -> Comment | None:
        """One comment as stored now."""
        found = decoded(
            self._rows("SELECT guid, data FROM comments WHERE session = ? AND guid = ?", (session, guid)),
            _comment_dec,
            "comments",
        )
        return found[0] if found else None

    def attachment(self, attachment_id: str) -> tuple[str, Attachment, bytes] | None:
        """(session, metadata, bytes) of an attachment, or None."""
        rows = self._rows("SELECT session, mime, size, sha256, data FROM attachments WHERE id = ?", (attachment_id,))
        if not rows:
            return None
        session, mime, size, digest, data = rows[0]
        return session, Attachment(attachment_id, mime, size, digest), data

    def attachment_sessions(self, attachment_ids: Iterable[str]) -> dict[str, str]:
        """The session holding each of these attachments that exists (attachment id -> session)."""
        out = {}
        for attachment_id in attachment_ids:
            rows = self._rows("SELECT session FROM attachments WHERE id = ?", (attachment_id,))
            if rows:
                out[attachment_id] = rows[0][0]
        return out

    def audit(self, session: str, limit: int, before: int | None = None) -> list[AuditEntry]:
        """The newest `limit` audit entries of a session (older than id `before`), newest first."""
        rows = self._rows(
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
        based_on: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Insert or replace topics, comments and attachments of a session in one transaction, with
        the audit entry `actor`. `based_on` (("topics" or "comments", guid) -> revision of the session's items
        the import was admitted against): each item is written only if the store has that revision (none: new),
        else StaleRevision and nothing is written; without it, whatever is stored is replaced. Connected clients
        learn of them only through `Annotations.import_topics`, which calls this."""

        def expected(table: str, guid: str) -> int | None:
            return None if based_on is None else based_on.get((table, guid), 0)

        def write(db: Db) -> None:
            for attachment, data in attachments:
                db.execute("DELETE FROM attachments WHERE id = ?", (attachment.id,))
                put_attachment(db, session, attachment, data, actor.actor, actor.ts)
            for topic in topics:
                put_topic(db, session, topic, expected=expected("topics", topic.guid))
            for comment in comments:
                put_comment(db, session, comment, expected=expected("comments", comment.guid))
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

    def submit(self, fn: Callable[[Db], T]) -> concurrent.futures.Future[T]:
        """Run `fn(db)` on the writer thread in its own savepoint; the future resolves after the COMMIT
        (with fn's result, or its exception, in which case only fn's writes are rolled back). When the
        transaction fails (StoreError; StoreUnavailable: the database cannot be reached) every call in it
        gets that error: nothing of theirs was written."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(("call", (fn, future)))
        return future

    async def run(self, fn: Callable[[Db], T]) -> T:
        """`submit` for the event loop: resumes once fn's writes are committed."""
        return await asyncio.wrap_future(self.submit(fn))

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

    def _write_loop(self, db: SqliteDb | PostgresDb) -> None:
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

    def _run(self, db: SqliteDb | PostgresDb, jobs: list[tuple[str, tuple[Any, ...]]]) -> None:
        barriers = [args[0] for kind, args in jobs if kind == "barrier"]
        for attempt in range(1, STORE_TXN_ATTEMPTS + 1):
            try:
                results = self._transaction(db, jobs)
                break
            except Contention as exc:  # another process's transaction won: nothing was written
                db.rollback()
                if attempt < STORE_TXN_ATTEMPTS and all(kind != "call" for kind, _ in jobs):
                    continue  # values and log rows: run it again (a call may not run twice: its caller is told)
                results = self._failed_transaction(exc, jobs)
            except StoreError as exc:  # a full disk or a lost database must not kill the writer (nor the server)
                db.rollback()
                results = self._failed_transaction(exc, jobs)
                break
            except Exception as exc:  # a bug must not either: every later write would wait for ever
                log.exception("store %s: transaction failed", self.location)
                db.rollback()
                results = self._failed_transaction(StoreError(f"internal error: {exc!r}"), jobs)
                break
        for future, value, error in results:  # only now: the caller's ack follows the commit
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
        for barrier in barriers:
            barrier.set()

    def _transaction(
        self, db: SqliteDb | PostgresDb, jobs: list[tuple[str, tuple[Any, ...]]]
    ) -> list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]]:
        """Write every job in one transaction; the calls' outcomes, to be told once it is committed. A call alone
        in its transaction (the usual collaboration write) needs no savepoint: if it fails, the transaction is
        rolled back whole, which is the same, two round trips to PostgreSQL fewer."""
        results = []
        alone = sum(kind != "barrier" for kind, _ in jobs) == 1
        db.begin()
        for kind, args in jobs:
            if kind == "scene":
                db.execute(_SCENE, args)
            elif kind == "bindings":
                db.execute(_BINDINGS, args)
            elif kind == "batch":
                self._write_batch(db, *args)
            elif kind == "call":
                results.append(self._call(db, *args, savepoint=not alone))
        if alone and results and results[0][2] is not None:  # the only call failed: nothing to commit
            db.rollback()
            return results
        if any(kind == "batch" for kind, _ in jobs):  # the log grew: keep its newest rows (a round trip saved else)
            db.execute("DELETE FROM log WHERE id <= (SELECT max(id) FROM log) - ?", (STORE_LOG_MAX_ROWS,))
        db.commit()
        self.reachable = True
        if any(kind != "barrier" for kind, _ in jobs):  # something was written: the database takes writes again
            self.failing = False
        return results

    def _failed_transaction(
        self, exc: StoreError, jobs: list[tuple[str, tuple[Any, ...]]]
    ) -> list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]]:
        """Count and log a transaction that failed; every call in it is told `exc`. An unreachable database is
        `reachable = False` (cleared by the next statement or probe that reaches it); another failure (a full disk,
        a bug) keeps the store failing until a transaction commits."""
        if not isinstance(exc, StoreUnavailable):
            self.failing = True
        self.write_errors += 1
        if str(exc) != self.last_error or time.monotonic() - self._logged_at >= STORE_LOG_REPEAT_S:
            log.warning("store %s: %s (%d jobs not written)", self.location, exc, len(jobs))
            self._logged_at = time.monotonic()
        self._failed(exc)
        return [(args[1], None, exc) for kind, args in jobs if kind == "call"]

    @staticmethod
    def _call(
        db: Db, fn: Callable[[Db], Any], future: concurrent.futures.Future[Any], *, savepoint: bool
    ) -> tuple[concurrent.futures.Future[Any], Any, BaseException | None]:
        """Run one call, in a savepoint of its own if `savepoint` (so that its failure undoes only its writes)."""
        if savepoint:
            db.execute("SAVEPOINT call")
        try:
            value = fn(db)
        except StoreUnavailable:  # the whole transaction is lost: every call in it is told
            raise
        except Exception as exc:  # the caller gets it; the rest of the transaction goes on
            if savepoint:
                db.execute("ROLLBACK TO SAVEPOINT call")
                db.execute("RELEASE SAVEPOINT call")
            return future, None, exc
        if savepoint:
            db.execute("RELEASE SAVEPOINT call")
        return future, value, None

    @staticmethod
    def _write_batch(db: Db, scene: str, epoch: str, batch: Batch, props: list[tuple[str, str, PropertyValue]]) -> None:
        rows = [
            (scene, epoch, batch.last, kind, key, _enc.encode(value))
            for (kind, key, _), value in batch.state.items()
            if kind not in (PRESENCE, PRESENTER)  # poses and views are ephemeral: not worth a disk write each
        ]
        rows += [(scene, epoch, ev.seq, "e", ev.kind, _enc.encode(ev)) for ev in batch.events]
        if rows:
            db.executemany("INSERT INTO log (scene, epoch, seq, kind, key, value) VALUES (?, ?, ?, ?, ?, ?)", rows)
        if props:  # in key order: processes writing the same values lock their rows in the same order
            db.executemany(
                _PROPS,
                [
                    (scene, el, prop, _enc.encode(pv.value), pv.unit, pv.ts, pv.rx, pv.quality)
                    for el, prop, pv in sorted(props, key=lambda row: (row[0], row[1]))
                ],
            )
