"""The historian: every accepted reading and every event, append-only, in the data dir (PROTOCOL.md §14).

Layout under `<data dir>/history/` (docs/BINDINGS.md "history" says how to read it with DuckDB or pandas):

    history.sqlite                    the hot tail (WAL): raw samples not sealed yet, minute aggregates of
                                      every property, every event, the list of sealed chunks, every version of
                                      the bindings file (`record_bindings`), checkpoints of the alarm list
                                      (`checkpoint_alarms`) and a keyframe per sealed hour (`_Keyframe`)
    chunks/YYYY-MM-DD/HH-<n>.parquet  sealed hours of raw samples (zstd), one row per sample, sorted by
                                      minute, then property, then time (PARQUET_OPTIONS)
    quarantine/                       chunks found unreadable at start (power loss while one was written)

Writes go through one writer thread. `append` queues readings and returns a Future that completes once the
group commit holding them is done, so a publisher's ack can wait for it (durable against kill -9: the WAL
is written before the ack, PROTOCOL.md §8). A sample is kept at its source time whenever it arrives: a
gateway uploading its buffer after an outage fills the past in; the minute aggregates take it in too.

`seal(now)` moves every finished hour (older than SEAL_GRACE_S) from SQLite into a Parquet chunk; the chunk
is written and renamed into place first, then listed and its rows deleted in one transaction, so a crash in
between leaves an unlisted file that the next start removes (its rows are still in SQLite). `retain(now)`
drops raw samples older than their binding's `raw_days` and minute aggregates older than `rollup_days`.

Queries (`state_at`, `samples`, `series`, `events`) open their own read connection per thread and read the
chunks with pyarrow; they never wait for the writer. `close` finishes the queued writes, interrupts the SQL
of the queries and upkeep still running, refuses new ones (`HistorianClosed`), waits until none runs and
only then closes every thread's connection: a connection closed under a thread still using it crashes the
process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Concatenate, Final, Literal, NamedTuple, ParamSpec, TypeVar

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scene.bindings import DEFAULT_RAW_DAYS, History
from scene.state import Quality, Reading, Scalar
from viewer_server import protocol as p
from viewer_server.health import EngineHealth, public_url
from viewer_server.store_db import PostgresDb

log = logging.getLogger(__name__)

HISTORY_FILE: Final = "history.sqlite"  # the SQLite tail, in a scene's history folder
HOUR: Final = 3600
MINUTE: Final = 60
DAY: Final = 86400
# A finished hour is sealed this long after its end: readings of the last few minutes that arrive a little
# late still land in SQLite, where they cost nothing; later ones go into an extra chunk of that hour.
SEAL_GRACE_S: Final = 600
# Rows per Parquet row group: small enough that a seek into one minute reads a few groups, not the hour.
ROW_GROUP_ROWS: Final = 65_536
# Writes (one per accepted batch or event) queued for the writer before `append` blocks its caller: a writer
# that far behind means the disk has stopped, and pushing back on producers is then the honest answer.
WRITE_QUEUE_MAX: Final = 100_000
# Alarm transitions between two checkpoints of the alarm list (`checkpoint_alarms`): the alarm list as of t reads
# the checkpoint before t and the transitions after it, about this many plus those of an hour at most.
CHECKPOINT_ALARM_EVENTS: Final = 5000
QUALITIES: Final[tuple[Quality, ...]] = ("good", "uncertain", "bad")
Kind = Literal["number", "bool", "string"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (id INTEGER PRIMARY KEY, element TEXT NOT NULL, prop TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'number', UNIQUE (element, prop));
CREATE TABLE IF NOT EXISTS sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (key INTEGER NOT NULL, ts REAL NOT NULL, rx REAL NOT NULL, v,
    q INTEGER NOT NULL, src INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE INDEX IF NOT EXISTS samples_key_ts ON samples (key, ts);
CREATE TABLE IF NOT EXISTS minutes (key INTEGER NOT NULL, minute INTEGER NOT NULL, min REAL, max REAL,
    sum REAL, n INTEGER NOT NULL, last, last_ts REAL NOT NULL, last_q INTEGER NOT NULL, first_ts REAL NOT NULL,
    PRIMARY KEY (key, minute)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (t REAL NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    id TEXT NOT NULL, element TEXT NOT NULL, session TEXT NOT NULL, body BLOB NOT NULL, key BLOB);
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE INDEX IF NOT EXISTS events_id ON events (id, t);
CREATE INDEX IF NOT EXISTS events_session ON events (session, kind, id, t);
CREATE TABLE IF NOT EXISTS chunks (path TEXT PRIMARY KEY, hour INTEGER NOT NULL, rows INTEGER NOT NULL,
    t0 REAL NOT NULL, t1 REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alarm_books (t REAL PRIMARY KEY, events INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (t REAL NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL, content BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS bindings_t ON bindings (t);
CREATE INDEX IF NOT EXISTS minutes_by_minute ON minutes (minute, key, last_ts, last_q, last);
CREATE TABLE IF NOT EXISTS keyframes (t INTEGER PRIMARY KEY, body BLOB NOT NULL);
"""

# The same tables in PostgreSQL (one schema per scene, `pg_schema`): `rowid` is a column there, values (`v`, `last`:
# numbers, 0 / 1 for bools, strings) are text read back by their key's kind (`_typed`), and no chunk is ever listed
# (raw samples stay in `samples`: `seal` is SQLite's).
_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, element TEXT NOT NULL,
    prop TEXT NOT NULL, unit TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'number', UNIQUE (element, prop));
CREATE TABLE IF NOT EXISTS sources (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS samples (key BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, rx DOUBLE PRECISION NOT NULL,
    v TEXT, q SMALLINT NOT NULL, src BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE INDEX IF NOT EXISTS samples_key_ts ON samples (key, ts);
CREATE TABLE IF NOT EXISTS minutes (key BIGINT NOT NULL, minute BIGINT NOT NULL, min DOUBLE PRECISION,
    max DOUBLE PRECISION, sum DOUBLE PRECISION, n BIGINT NOT NULL, last TEXT, last_ts DOUBLE PRECISION NOT NULL,
    last_q SMALLINT NOT NULL, first_ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (key, minute));
CREATE INDEX IF NOT EXISTS minutes_first_ts ON minutes (first_ts);
CREATE TABLE IF NOT EXISTS events (rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    t DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, element TEXT NOT NULL,
    session TEXT NOT NULL, body BYTEA NOT NULL, key BYTEA);
ALTER TABLE events ADD COLUMN IF NOT EXISTS key BYTEA;
CREATE INDEX IF NOT EXISTS events_t ON events (t);
CREATE INDEX IF NOT EXISTS events_id ON events (id, t);
CREATE INDEX IF NOT EXISTS events_session ON events (session, kind, id, t);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (key);
CREATE TABLE IF NOT EXISTS chunks (path TEXT PRIMARY KEY, hour BIGINT NOT NULL, rows BIGINT NOT NULL,
    t0 DOUBLE PRECISION NOT NULL, t1 DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS alarm_books (t DOUBLE PRECISION PRIMARY KEY, events BIGINT NOT NULL, body BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    t DOUBLE PRECISION NOT NULL, file TEXT NOT NULL, sha256 TEXT NOT NULL, content BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS bindings_t ON bindings (t);
"""


class _Dialect(NamedTuple):
    """What the historian's SQL says differently on SQLite and PostgreSQL."""

    least: str  # the smaller of two values
    greatest: str
    keep_order_join: str  # a join whose left side drives the loop (SQLite's planner obeys CROSS JOIN)
    ids_of_json: str  # the ids of a JSON array given as one parameter, as a subquery
    by_time: str  # the index hint for a range of events by time
    by_session: str  # ... for a session's events of some kinds


_SQLITE: Final = _Dialect(
    "min", "max", "CROSS JOIN", "SELECT value FROM json_each(?)", "INDEXED BY events_t", "INDEXED BY events_session"
)
_POSTGRES: Final = _Dialect(
    "least", "greatest", "JOIN", "SELECT value::bigint FROM json_array_elements_text(?::json)", "", ""
)

CHUNK_SCHEMA: Final = pa.schema(
    [
        ("element", pa.dictionary(pa.int32(), pa.string())),
        ("prop", pa.dictionary(pa.int32(), pa.string())),
        ("ts", pa.float64()),  # source time, Unix seconds
        ("rx", pa.float64()),  # receive time
        ("value", pa.float64()),  # numbers and bools (1.0 / 0.0); null for strings
        ("text", pa.string()),  # strings; null otherwise
        ("quality", pa.dictionary(pa.int8(), pa.string())),
        ("source", pa.dictionary(pa.int32(), pa.string())),
        ("unit", pa.dictionary(pa.int32(), pa.string())),
    ]
)

# How chunks are written (BENCHMARKS.md §8 compares the options): rows by minute, then property, then time, so
# a property's samples of one minute sit together (their values compress) while a row group still spans a few
# minutes (a seek's time filter skips the others); times as BYTE_STREAM_SPLIT (their high bytes repeat), values
# and names dictionary-encoded, zstd level 15 (its share of sealing: ~0.4 µs of CPU per sample, of ~8).
# Readers need no option: chunks written before (by time, zstd level 1) read the same.
PARQUET_OPTIONS: Final[dict[str, object]] = {
    "compression": "zstd",
    "compression_level": 15,
    "use_dictionary": ["element", "prop", "value", "text", "quality", "source", "unit"],
    "use_byte_stream_split": ["ts", "rx"],
}

# The columns queries need (not `rx`, `source`: decoding them would only cost time).
# The raw samples as an export reads them (`raw_table`): the chunk's columns but the source, dictionaries decoded.
EXPORT_SCHEMA: Final = pa.schema(
    [
        ("element", pa.string()),
        ("prop", pa.string()),
        ("ts", pa.float64()),
        ("rx", pa.float64()),
        ("value", pa.float64()),
        ("text", pa.string()),
        ("quality", pa.string()),
        ("unit", pa.string()),
    ]
)
_READ_COLUMNS: Final = ["element", "prop", "ts", "value", "text", "quality", "unit"]


class _Keyframe(msgspec.Struct, array_like=True):
    """Every property's last minute aggregate before an hour boundary `t` (its `last`, `last_ts`, `last_q`), column
    by column: the state at t's hour start that a seek completes with range reads of the minutes since (`state_at`).
    Written by `seal` for each finished hour from the one before; any reading stored with a time before a keyframe's
    boundary deletes it and those after (`_write_readings`), so a late reading is never hidden by one."""

    keys: list[int]
    last: list[Scalar | None]
    ts: list[float]
    q: list[int]


_keyframe_dec = msgspec.msgpack.Decoder(_Keyframe)
_event_enc = msgspec.msgpack.Encoder()
_event_dec = msgspec.msgpack.Decoder(p.Event)
# A checkpoint of the alarm list: (alarm id, rowid of its last event before the checkpoint, the alarm as that
# event left it, or None when it left the list), for every alarm that had an event.
_Book = dict[str, tuple[int, p.Alarm | None]]
_book_dec = msgspec.msgpack.Decoder(list[tuple[str, int, p.Alarm | None]])


class Sample(NamedTuple):
    """One stored sample (a tuple: a seek makes one per property, 10 000 and more)."""

    element: str
    prop: str
    ts: float
    value: Scalar
    quality: Quality
    unit: str


@dataclass
class Series:
    """One property's chart series: raw samples (resolution 0), or buckets of `resolution` seconds."""

    element: str
    prop: str
    unit: str
    t: list[float] = field(default_factory=list)
    min: list[float | None] = field(default_factory=list)
    max: list[float | None] = field(default_factory=list)
    mean: list[float | None] = field(default_factory=list)
    last: list[Scalar | None] = field(default_factory=list)


def _number(value: Scalar) -> float | None:
    if isinstance(value, str):
        return None
    return float(value)


def _kind(value: Scalar) -> Kind:
    return "bool" if isinstance(value, bool) else "string" if isinstance(value, str) else "number"


def _typed(value: object, kind: str) -> Scalar:
    if kind == "bool":
        return bool(float(str(value)))  # 0 / 1 (as text in PostgreSQL, 0.0 / 1.0 in chunks)
    if kind == "string":
        return str(value)
    if isinstance(value, int | float):
        return value
    text = str(value)  # PostgreSQL's text: "3" for an integer reading, "3.0" for a float, as SQLite keeps them
    return int(text) if text.removeprefix("-").isdigit() else float(text)


def event_key(event: p.Event) -> bytes:
    """What makes an event the same event whatever seq it was numbered with: its content (a person's draft, or
    an alarm transition computed from the same readings, carries the same times and ids when numbered again)."""
    return hashlib.blake2b(_event_enc.encode(msgspec.structs.replace(event, seq=0)), digest_size=16).digest()


def _read_keyframe(db: Connection, t: int) -> _Keyframe | None:
    """The keyframe at hour boundary `t`; None when there is none, or it is unreadable (logged: the caller then
    works without it)."""
    if not isinstance(db, sqlite3.Connection):  # PostgreSQL keeps none
        return None
    row = db.execute("SELECT body FROM keyframes WHERE t = ?", (t,)).fetchone()
    if row is None:
        return None
    try:
        frame = _keyframe_dec.decode(row[0])
    except (msgspec.DecodeError, TypeError) as e:
        log.warning("history keyframe at %s is unreadable (%s): seeks after it look values up one by one", t, e)
        return None
    if not len(frame.keys) == len(frame.last) == len(frame.ts) == len(frame.q):
        log.warning("history keyframe at %s has columns of different lengths: seeks after it do without it", t)
        return None
    return frame


def _chunk_table(rows: list[tuple]) -> pa.Table:
    """Rows (element, prop, ts, rx, value, quality code, source, unit) as one row group of a chunk."""
    element, prop, ts, rx, value, q, source, unit = zip(*rows, strict=True)
    return pa.table(
        {
            "element": pa.array(element).dictionary_encode(),
            "prop": pa.array(prop).dictionary_encode(),
            "ts": pa.array(ts, pa.float64()),
            "rx": pa.array(rx, pa.float64()),
            "value": pa.array([None if isinstance(v, str) else float(v) for v in value], pa.float64()),
            "text": pa.array([v if isinstance(v, str) else None for v in value], pa.string()),
            "quality": pa.array([QUALITIES[c] for c in q]).dictionary_encode(),
            "source": pa.array(source).dictionary_encode(),
            "unit": pa.array(unit).dictionary_encode(),
        }
    ).cast(CHUNK_SCHEMA)


def _pylists(table: pa.Table) -> list[list[object]]:
    """The `_READ_COLUMNS` of chunk rows as Python lists; dictionary columns are decoded in arrow first (their own
    `to_pylist` goes value by value, several times slower)."""
    columns = [table[c] for c in _READ_COLUMNS]
    return [(c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c).to_pylist() for c in columns]


class _KeyIndex(NamedTuple):
    """The keys known at one moment, for queries: never changed, replaced whole when keys are added (a query takes
    it as it is rather than copying maps of 10 000 keys under the lock). Units are fixed when a key is added."""

    names: dict[int, tuple[str, str]]  # key id -> (element, prop)
    ids: dict[tuple[str, str], int]  # (element, prop) -> key id
    kinds: dict[int, str]
    units: dict[int, str]
    newest: int  # the highest key id
    typed: dict[tuple[str, str], str]  # (element, prop) -> its kind, for the keys not of numbers


class BindingsVersion(NamedTuple):
    """A bindings file as it took effect at `t` (its name, e.g. `plant.bindings.yaml`, and content)."""

    t: float
    file: str
    sha256: str
    content: bytes


class _Write:
    """One `append`, `record` or `record_bindings`: rows for the writer and the future its caller waits on."""

    __slots__ = ("bindings", "events", "future", "readings", "rx", "source")

    def __init__(
        self,
        readings: list[Reading],
        rx: float,
        source: str,
        events: list[p.Event],
        bindings: BindingsVersion | None = None,
    ) -> None:
        self.readings, self.rx, self.source, self.events, self.bindings = readings, rx, source, events, bindings
        self.future: Future[None] = Future()


def pg_schema(folder: Path) -> str:
    """The PostgreSQL schema of a history (its folder's name is the scene id): readable, and unique whatever the id."""
    name = folder.name
    readable = "".join(c if c.isascii() and c.isalnum() else "_" for c in name.lower())[:40]
    return f"history_{readable}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def create_pg_tables(db: PostgresDb, schema: str) -> None:
    """The history tables in `schema` (created where missing), in `db`'s transaction, which then works in it."""
    db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    db.execute(f"SET LOCAL search_path TO {schema}")
    for statement in filter(str.strip, _PG_SCHEMA.split(";")):
        db.execute(statement)


Connection = sqlite3.Connection | PostgresDb


class HistorianHealth(EngineHealth, kw_only=True):
    """The historian as `/api/health` reports it (`engine`: "sqlite" or "postgresql"; `ok`: its last group commit
    succeeded)."""

    write_errors: int  # group commits that failed (their readings were not acknowledged)
    last_error: str  # the last failure, kept after recovery ("" if none)


class HistorianClosed(RuntimeError):
    """A query or upkeep asked of a historian that has been closed (its server is stopping)."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _uses_connection(method: Callable[Concatenate[Historian, _P], _R]) -> Callable[Concatenate[Historian, _P], _R]:
    """A query or upkeep (through this thread's connection): refused once closing, waited for by `close`."""

    @functools.wraps(method)
    def counted(self: Historian, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._in_use():
            return method(self, *args, **kwargs)

    return counted


class Historian:
    """The history of one scene. `append` / `record` from the event loop; queries from any thread. In `folder`
    (SQLite and Parquet), or with `database` (a PostgreSQL URL, the store's) in that database, shared by every
    process of a deployment: the process that accepts a reading writes it, the leader that numbers an event
    writes that (docs/STORE.md). A `reader` (an export beside a running server) leaves the files as they are: the
    start's checks of the chunks would remove one the server has written and not listed yet."""

    def __init__(
        self,
        folder: Path,
        *,
        database: str | None = None,
        retention: Callable[[str, str], History] | None = None,
        clock: Callable[[], float] = time.time,
        reader: bool = False,
    ) -> None:
        self.folder = folder
        self.database = database
        self.schema = pg_schema(folder) if database is not None else None
        self._sql = _SQLITE if database is None else _POSTGRES
        self.path = folder / HISTORY_FILE
        self.chunks_dir = folder / "chunks"
        self.retention = retention or (lambda element, prop: History())
        self.clock = clock
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[Connection] = []  # every thread's, closed by `close`
        self._users = threading.Condition()  # guards the list, `_running` and `_closing`
        self._running = 0  # queries and upkeep using a connection now
        self._closing = False
        db = self._connect()
        self._create_tables(db)
        self._lock = threading.Lock()
        self._shortest = (-1, DEFAULT_RAW_DAYS)  # (keys counted, shortest raw_days among them)
        self._keys: dict[tuple[str, str], int] = {}
        self._kinds: dict[int, str] = {}
        self._index = _KeyIndex({}, {}, {}, {}, 0, {})
        self._learn_keys(db.execute("SELECT id, element, prop, kind, unit FROM keys").fetchall())
        self._sources = {name: sid for sid, name in db.execute("SELECT id, name FROM sources")}
        self.quarantined = [] if reader else self._check_chunks(db)
        self._first_minute: tuple[float | None] | None = None  # (the minutes' oldest `first_ts`,) once known
        (newest_book,) = db.execute("SELECT max(t) FROM alarm_books").fetchone()
        self._books_until = -math.inf if newest_book is None else newest_book  # the newest checkpoint's time
        self.write_errors = 0
        self.last_error = ""
        self.failing = False  # the last group commit failed
        self._probing = False  # an empty commit queued by `health` to learn whether PostgreSQL is back
        self._queue: queue.Queue[_Write | None] = queue.Queue(WRITE_QUEUE_MAX)
        self._writer_db: Connection | None = None  # the writer's own: never interrupted
        self._writer = threading.Thread(target=self._write_loop, name="twinview-historian", daemon=True)
        self._writer.start()

    # --- connections -----------------------------------------------------------------------------

    def _connect(self) -> Connection:
        """This thread's connection (WAL: readers never wait for the writer, nor the writer for them)."""
        db: Connection | None = getattr(self._local, "db", None)
        if db is None and self.database is not None:
            db = PostgresDb(self.database, schema=self.schema)
            self._local.db = db
            with self._users:
                self._connections.append(db)
        elif db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # commits survive a process kill; fsync at checkpoints
            self._local.db = db
            with self._users:
                self._connections.append(db)
            os.chmod(self.path, 0o600)
        return db

    def _create_tables(self, db: Connection) -> None:
        if isinstance(db, sqlite3.Connection):
            db.executescript(_SCHEMA)
            if "key" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}:  # a history of before it
                db.execute("ALTER TABLE events ADD COLUMN key BLOB")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (key)")
            return
        db.begin(exclusive=True)  # processes starting together take turns (the store migrations' advisory lock)
        try:
            create_pg_tables(db, pg_schema(self.folder))
        except BaseException:
            db.rollback()
            raise
        db.commit()

    @contextmanager
    def _transaction(self, db: Connection, *, lock_events: bool = False) -> Iterator[None]:
        """One transaction, rolled back when the block raises; `lock_events`: no event is written meanwhile (on
        SQLite, nothing at all)."""
        if isinstance(db, sqlite3.Connection):
            db.execute("BEGIN IMMEDIATE" if lock_events else "BEGIN")
        else:
            db.begin()
            if lock_events:
                db.execute("LOCK TABLE events IN SHARE MODE")
        try:
            yield
        except BaseException:
            if isinstance(db, sqlite3.Connection):
                if db.in_transaction:
                    db.execute("ROLLBACK")
            else:
                db.rollback()
            raise
        if isinstance(db, sqlite3.Connection):
            db.execute("COMMIT")
        else:
            db.commit()

    @contextmanager
    def _in_use(self) -> Iterator[None]:
        with self._users:
            if self._closing:
                raise HistorianClosed(f"the history in {self.folder} is closed: its server is stopping")
            self._running += 1
        try:
            yield
        finally:
            with self._users:
                self._running -= 1
                self._users.notify_all()

    def close(self) -> None:
        """Finish every queued write and stop the writer; interrupt the queries and upkeep still running and
        wait for them; then close every thread's connection (a stopped server, or one of many historians in a
        test process, leaves no file open)."""
        with self._users:
            self._closing = True
            for db in self._connections:  # what runs stops at its next SQL step (sqlite3.OperationalError)
                if db is not self._writer_db:
                    db.interrupt()
        self._queue.put(None)
        self._writer.join()
        with self._users:
            self._users.wait_for(lambda: self._running == 0)
            for db in self._connections:
                db.close()
            self._connections.clear()

    # --- writing ---------------------------------------------------------------------------------

    def append(self, readings: list[Reading], rx: float, source: str) -> Future[None]:
        """Queue accepted readings (source time `ts`, 0 = `rx`); the future completes once they are committed."""
        write = _Write(readings, rx, source, [])
        self._queue.put(write)
        return write.future

    def record(self, event: p.Event) -> Future[None]:
        """Queue an event (alarm transition, annotation, procedure step, command); kept at `event.ts`."""
        write = _Write([], 0.0, "", [event])
        self._queue.put(write)
        return write.future

    def record_bindings(self, file: str, content: bytes, t: float) -> Future[None]:
        """Queue the bindings file in force from `t` (the rules replay uses from then on); kept only when it
        differs from the version before it."""
        version = BindingsVersion(t, file, hashlib.sha256(content).hexdigest(), content)
        write = _Write([], 0.0, "", [], version)
        self._queue.put(write)
        return write.future

    def flush(self) -> None:
        """Wait until everything queued so far is committed (tests, shutdown)."""
        self.record_barrier().result()

    def record_barrier(self) -> Future[None]:
        write = _Write([], 0.0, "", [])
        self._queue.put(write)
        return write.future

    def _write_loop(self) -> None:
        with self._users:
            self._writer_db = db = self._connect()
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while True:  # group commit: everything waiting goes into one transaction
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            # A waiter that gave up (a publisher that went away) cancelled its future: the write still goes in,
            # and the futures still waited for can no longer be cancelled under us.
            waiting = [write.future for write in batch if write.future.set_running_or_notify_cancel()]
            try:
                with self._transaction(db):
                    for write in batch:
                        self._write_readings(db, write)
                        self._write_events(db, write.events)
                        if write.bindings is not None:
                            self._write_bindings(db, write.bindings)
            except Exception as exc:  # the writer outlives any one batch: nothing else would ever be committed
                self.write_errors += 1
                self.last_error, self.failing = f"{type(exc).__name__}: {exc}", True
                log.error("historian: %d writes not committed: %s", len(batch), exc)
                for future in waiting:
                    future.set_exception(exc)
                continue
            self.failing = False
            for future in waiting:
                future.set_result(None)

    def health(self) -> HistorianHealth:
        """As of the last group commit. While it failed on PostgreSQL, each call queues an empty commit (one at a
        time) so that a database that came back is seen without waiting for the next reading; SQLite's next write
        tells (an empty commit succeeds on a full disk)."""
        if self.failing and self.database is not None and not self._probing:
            self._probing = True
            self.record_barrier().add_done_callback(self._probed)
        if self.database is not None:
            engine, url, where = "postgresql", public_url(self.database), "bring PostgreSQL back"
        else:
            engine, url, where = "sqlite", f"sqlite:{self.path}", f"free or repair the disk of {self.folder}"
        detail = (
            f"the history cannot be written ({self.last_error}): readings are refused (not acknowledged) and events"
            f" go unrecorded until it can; {where}, the next write tries again"
            if self.failing
            else ""
        )
        return HistorianHealth(
            engine, ok=not self.failing, url=url, detail=detail, write_errors=self.write_errors,
            last_error=self.last_error,
        )  # fmt: skip

    def _probed(self, _: Future[None]) -> None:
        self._probing = False

    def _add_keys(self, db: Connection, readings: list[Reading]) -> None:
        """Number the properties of `readings` not known yet: one statement for them all, in (element, prop) order
        as in every process (two writers adding the same keys wait for each other, never deadlock); another process
        serving the scene (same data dir or database) may have added some meanwhile."""
        new = {(r.element, r.prop): r for r in readings if (r.element, r.prop) not in self._keys}
        if not new:
            return
        db.executemany(
            "INSERT INTO keys (element, prop, unit, kind) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(*key, new[key].unit, _kind(new[key].value)) for key in sorted(new)],
        )
        self._sync_keys(db)

    def _sync_keys(self, db: Connection | None = None) -> None:
        """Learn the keys added since (by this process's writer, or another process's on the same file or database).
        PostgreSQL numbers keys before their transactions commit, in any order across processes: a key may show up
        below the newest known, so there the whole list is read again whenever the count differs."""
        db = db or self._connect()
        index = self._index
        newest = index.newest
        if isinstance(db, PostgresDb):
            (count,) = db.execute("SELECT count(*) FROM keys").fetchone()
            if count == len(index.names):
                return
            newest = 0
        rows = db.execute("SELECT id, element, prop, kind, unit FROM keys WHERE id > ?", (newest,)).fetchall()
        if rows:
            self._learn_keys(rows)

    def _learn_keys(self, rows: list[tuple[int, str, str, str, str]]) -> None:
        """Take in keys (id, element, prop, kind, unit) read from the keys table."""
        with self._lock:  # readers copy `_keys` under the lock (`_names`), or take `_index` whole
            index = self._index
            names, ids = dict(index.names), dict(index.ids)
            kinds, units = dict(index.kinds), dict(index.units)
            for kid, element, prop, kind, unit in rows:
                self._keys[(element, prop)] = kid
                self._kinds[kid] = kind
                names[kid], ids[(element, prop)], kinds[kid], units[kid] = (element, prop), kid, kind, unit
            typed = {names[kid]: kind for kid, kind in kinds.items() if kind != "number"}
            self._index = _KeyIndex(names, ids, kinds, units, max(names, default=0), typed)

    def _key_index(self) -> _KeyIndex:
        """The keys as known now (the writer adds keys meanwhile)."""
        self._sync_keys()
        return self._index

    def _names(self) -> dict[int, tuple[str, str]]:
        """Key id -> (element, prop), as known now (the writer adds keys meanwhile)."""
        return self._key_index().names

    def _kind_of(self, element: str, prop: str) -> str:
        self._sync_keys()
        with self._lock:
            kid = self._keys.get((element, prop))
            return "number" if kid is None else self._kinds[kid]

    def _source(self, db: Connection, name: str) -> int:
        sid = self._sources.get(name)
        if sid is None:  # ON CONFLICT: another process on the same file or database may have added it
            db.execute("INSERT INTO sources (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
            (sid,) = db.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
            self._sources[name] = sid
        return sid

    def _write_readings(self, db: Connection, write: _Write) -> None:
        if not write.readings:
            return
        src = self._source(db, write.source)
        self._add_keys(db, write.readings)
        rows = []
        minutes: dict[tuple[int, int], list[object]] = {}
        for r in write.readings:
            ts = r.ts if r.ts > 0 else write.rx
            kid = self._keys[(r.element, r.prop)]
            value = int(r.value) if isinstance(r.value, bool) else r.value
            q = QUALITIES.index(r.quality)
            rows.append((kid, ts, write.rx, value, q, src))
            num = _number(r.value)
            agg = minutes.get((kid, int(ts // MINUTE)))
            if agg is None:
                minutes[(kid, int(ts // MINUTE))] = [
                    num,
                    num,
                    num or 0.0,
                    1 if num is not None else 0,
                    value,
                    ts,
                    q,
                    ts,
                ]
            else:
                if num is not None:
                    agg[0] = num if agg[0] is None else min(agg[0], num)  # type: ignore[call-overload]
                    agg[1] = num if agg[1] is None else max(agg[1], num)  # type: ignore[call-overload]
                    agg[2] = agg[2] + num  # type: ignore[operator]
                    agg[3] = agg[3] + 1  # type: ignore[operator]
                if ts >= agg[5]:  # type: ignore[operator]
                    agg[4], agg[5], agg[6] = value, ts, q
                agg[7] = min(agg[7], ts)  # type: ignore[type-var]
        if isinstance(db, PostgresDb):
            db.copy("samples", ("key", "ts", "rx", "v", "q", "src"), rows)
        else:
            db.executemany("INSERT INTO samples (key, ts, rx, v, q, src) VALUES (?, ?, ?, ?, ?, ?)", rows)
        first = min(agg[7] for agg in minutes.values())
        with self._lock:
            known = self._first_minute
            if known is not None and (known[0] is None or first < known[0]):
                self._first_minute = (first,)
        least, greatest = self._sql.least, self._sql.greatest
        merge = f"""ON CONFLICT (key, minute) DO UPDATE SET
                 min = CASE WHEN excluded.min IS NULL THEN m.min WHEN m.min IS NULL THEN excluded.min
                            ELSE {least}(m.min, excluded.min) END,
                 max = CASE WHEN excluded.max IS NULL THEN m.max WHEN m.max IS NULL THEN excluded.max
                            ELSE {greatest}(m.max, excluded.max) END,
                 sum = m.sum + excluded.sum, n = m.n + excluded.n,
                 last = CASE WHEN excluded.last_ts >= m.last_ts THEN excluded.last ELSE m.last END,
                 last_q = CASE WHEN excluded.last_ts >= m.last_ts THEN excluded.last_q ELSE m.last_q END,
                 last_ts = {greatest}(m.last_ts, excluded.last_ts),
                 first_ts = {least}(m.first_ts, excluded.first_ts)"""
        insert = "INSERT INTO minutes AS m (key, minute, min, max, sum, n, last, last_ts, last_q, first_ts)"
        # In (key, minute) order, as every process: concurrent upserts of the same minutes wait, never deadlock.
        rows = [(kid, minute, *agg) for (kid, minute), agg in sorted(minutes.items())]
        if isinstance(db, PostgresDb):  # one statement, the rows as arrays: not a round trip and a plan per row
            columns = [list(column) for column in zip(*rows, strict=True)]
            columns[6] = [None if v is None else str(v) for v in columns[6]]  # `last`: text
            arrays = "?::bigint[], ?::bigint[], ?::float8[], ?::float8[], ?::float8[], ?::bigint[], ?::text[], "
            arrays += "?::float8[], ?::smallint[], ?::float8[]"
            db.execute(f"{insert} SELECT * FROM unnest({arrays}) {merge}", columns)
        else:
            db.executemany(f"{insert} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) {merge}", rows)
            # A reading older than a keyframe's boundary (a gateway's buffer after an outage): that keyframe and
            # those after no longer hold the last values; `seal` writes them again. In this transaction, which the
            # keyframe's writer cannot interleave with (it holds the write lock from reading the minutes on).
            db.execute("DELETE FROM keyframes WHERE t > ?", (first,))

    def _write_events(self, db: Connection, events: list[p.Event]) -> None:
        """Each event once (`event_key`): a leader that takes over numbers again what the dead one had recorded but
        not appended to the log; the first record of it stays."""
        db.executemany(
            "INSERT INTO events (t, seq, kind, id, element, session, body, key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(e.ts, e.seq, e.kind, e.id, e.element, e.session, _event_enc.encode(e), event_key(e)) for e in events],
        )
        with self._lock:
            before = min((e.ts for e in events if e.alarm is not None and e.ts < self._books_until), default=None)
            if before is not None:  # an alarm transition older than a checkpoint (a clock stepped back): redo them
                db.execute("DELETE FROM alarm_books WHERE t > ?", (before,))
                (newest,) = db.execute("SELECT max(t) FROM alarm_books").fetchone()
                self._books_until = -math.inf if newest is None else newest

    def _write_bindings(self, db: Connection, version: BindingsVersion) -> None:
        last = db.execute("SELECT sha256 FROM bindings ORDER BY t DESC, rowid DESC LIMIT 1").fetchone()
        if last is None or last[0] != version.sha256:
            db.execute("INSERT INTO bindings (t, file, sha256, content) VALUES (?, ?, ?, ?)", version)

    # --- sealing and retention -------------------------------------------------------------------

    @_uses_connection
    def seal(self, now: float | None = None) -> list[Path]:
        """Move every hour that ended more than SEAL_GRACE_S ago from SQLite into Parquet chunks; returns them.
        Runs in the caller's thread (a periodic task runs it off the event loop)."""
        now = self.clock() if now is None else now
        cutoff = math.floor((now - SEAL_GRACE_S) / HOUR) * HOUR
        db = self._connect()
        if not isinstance(db, sqlite3.Connection):  # PostgreSQL keeps raw samples in its table
            return []
        hours = [
            int(h)
            for (h,) in db.execute("SELECT DISTINCT CAST(ts / 3600 AS INTEGER) FROM samples WHERE ts < ?", (cutoff,))
        ]
        written = []
        for hour in sorted(hours):
            if self._closing:  # the next upkeep, after a restart, seals the rest
                break
            path = self._seal_hour(db, hour)
            if path is not None:
                written.append(path)
        self._write_keyframes(db, cutoff)
        return written

    def _write_keyframes(self, db: sqlite3.Connection, cutoff: int) -> None:
        """A keyframe at every hour boundary up to `cutoff` that has none, each from the one before and that hour's
        minute aggregates (one range read of the minutes' time index); the first from every minute before it. A
        history kept before keyframes existed gets them all at its first upkeep."""
        (newest,) = db.execute("SELECT max(t) FROM keyframes").fetchone()
        if newest is None:
            (first,) = db.execute("SELECT min(minute) FROM minutes").fetchone()
            if first is None:
                return
            boundary = first * MINUTE // HOUR * HOUR  # the history's first hour: an empty keyframe
        else:
            boundary = newest + HOUR
        while boundary <= cutoff and not self._closing:
            with self._transaction(db, lock_events=True):  # the write lock before reading: see `_write_readings`
                before = _read_keyframe(db, boundary - HOUR)
                start = 0 if before is None else (boundary - HOUR) // MINUTE  # none before: every minute before
                before = before or _Keyframe([], [], [], [])
                frame = dict(zip(before.keys, zip(before.last, before.ts, before.q, strict=True), strict=True))
                # One row per key, its newest minute (SQLite takes the bare columns from the max(last_ts) row).
                for kid, last, ts, q in db.execute(
                    """SELECT key, last, max(last_ts), last_q FROM minutes INDEXED BY minutes_by_minute
                       WHERE minute >= ? AND minute < ? GROUP BY key""",
                    (start, boundary // MINUTE),
                ):
                    if kid not in frame or ts >= frame[kid][1]:
                        frame[kid] = (last, ts, q)
                last, ts, q = (list(c) for c in zip(*frame.values(), strict=True)) if frame else ([], [], [])
                body = msgspec.msgpack.encode(_Keyframe(list(frame), last, ts, q))
                db.execute("INSERT OR REPLACE INTO keyframes (t, body) VALUES (?, ?)", (boundary, body))
            boundary += HOUR

    def _seal_hour(self, db: Connection, hour: int) -> Path | None:
        """Stream one hour's samples (those stored so far: `rowid` bound) into a chunk, one row group at a time,
        so memory stays at one row group whatever the rate; then list it and delete its rows in one commit."""
        t0, t1 = hour * HOUR, (hour + 1) * HOUR
        (last_row,) = db.execute("SELECT max(rowid) FROM samples").fetchone()
        cursor = db.execute(
            """SELECT k.element, k.prop, s.ts, s.rx, s.v, s.q, src.name, k.unit FROM samples s
               JOIN keys k ON k.id = s.key JOIN sources src ON src.id = s.src
               WHERE s.ts >= ? AND s.ts < ? AND s.rowid <= ?
               ORDER BY CAST(s.ts / 60 AS INTEGER), s.key, s.ts, s.rowid""",
            (t0, t1, last_row),
        )
        rows = cursor.fetchmany(ROW_GROUP_ROWS)
        if not rows:
            return None
        folder = self.chunks_dir / time.strftime("%Y-%m-%d", time.gmtime(t0))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        n = 0
        while (folder / f"{hour % 24:02d}-{n}.parquet").exists():
            n += 1
        path = folder / f"{hour % 24:02d}-{n}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        count, first, last = 0, math.inf, -math.inf
        with pq.ParquetWriter(tmp, CHUNK_SCHEMA, **PARQUET_OPTIONS) as writer:
            while rows:
                writer.write_table(_chunk_table(rows), row_group_size=ROW_GROUP_ROWS)
                count, first, last = count + len(rows), min(first, rows[0][2]), max(last, rows[-1][2])
                rows = cursor.fetchmany(ROW_GROUP_ROWS)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        rel = str(path.relative_to(self.folder))
        with self._transaction(db):
            db.execute(
                "INSERT INTO chunks (path, hour, rows, t0, t1) VALUES (?, ?, ?, ?, ?)", (rel, hour, count, first, last)
            )
            db.execute("DELETE FROM samples WHERE ts >= ? AND ts < ? AND rowid <= ?", (t0, t1, last_row))
        return path

    @_uses_connection
    def checkpoint_alarms(self, now: float | None = None) -> float | None:
        """Write a checkpoint of the alarm list as of the last whole hour that ended SEAL_GRACE_S ago, once at least
        CHECKPOINT_ALARM_EVENTS alarm transitions have happened since the previous one (from which it is made: the
        transitions in between are read once). Returns its time, or None. Runs in the caller's thread (the upkeep)."""
        now = self.clock() if now is None else now
        cutoff = float(math.floor((now - SEAL_GRACE_S) / HOUR) * HOUR)
        db = self._connect()
        with self._transaction(db, lock_events=True):  # writers wait: no alarm transition slips in before cutoff
            last = db.execute("SELECT t, body FROM alarm_books ORDER BY t DESC LIMIT 1").fetchone()
            since = -math.inf if last is None else last[0]
            where = f"kind IN ({','.join('?' * len(p.ALARM_EVENTS))}) AND t >= ? AND t < ?"
            args = (*p.ALARM_EVENTS, since, cutoff)
            (count,) = db.execute(f"SELECT count(*) FROM events WHERE {where}", args).fetchone()
            if count < CHECKPOINT_ALARM_EVENTS:
                return None
            book: _Book = {} if last is None else {aid: (rowid, a) for aid, rowid, a in _book_dec.decode(last[1])}
            self._take_latest(book, db.execute(f"SELECT rowid, id, body FROM events WHERE {where}", args))
            body = _event_enc.encode([(aid, rowid, a) for aid, (rowid, a) in book.items()])
            db.execute(  # another process may have written the same one meanwhile
                "INSERT INTO alarm_books (t, events, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (cutoff, count, body),
            )
            with self._lock:  # before the commit: the writer's next transition older than it drops it
                self._books_until = max(self._books_until, cutoff)
        return cutoff

    @staticmethod
    def _take_latest(book: _Book, rows: Iterable[tuple[int, str, bytes]]) -> None:
        """Each alarm's latest event (by rowid, as recorded) of `rows` (rowid, id, body) into `book`."""
        for rowid, aid, body in rows:
            if aid not in book or rowid > book[aid][0]:
                alarm = _event_dec.decode(body).alarm
                book[aid] = (rowid, alarm if alarm is not None and alarm.state != "normal" else None)

    def _check_chunks(self, db: Connection) -> list[Path]:
        """At start: remove chunk files that were written but never listed (their rows are still in SQLite),
        and move listed chunks that cannot be read into quarantine/ (warning), unlisting them."""
        listed = {path for (path,) in db.execute("SELECT path FROM chunks")}
        for path in self.chunks_dir.glob("*/*.parquet*") if self.chunks_dir.exists() else ():
            if str(path.relative_to(self.folder)) not in listed:
                path.unlink()
        quarantined = []
        for rel in sorted(listed):
            path = self.folder / rel
            try:
                pq.ParquetFile(path).metadata  # noqa: B018 - reads and checks the footer
            except (OSError, pa.ArrowException) as exc:
                target = self.folder / "quarantine" / rel.replace("/", "_")
                target.parent.mkdir(mode=0o700, exist_ok=True)
                if path.exists():
                    os.replace(path, target)
                db.execute("DELETE FROM chunks WHERE path = ?", (rel,))
                log.warning(
                    "historian: chunk %s is unreadable (%s); moved to %s, the rest stays readable", rel, exc, target
                )
                quarantined.append(target)
        return quarantined

    @_uses_connection
    def retain(self, now: float | None = None) -> None:
        """Drop raw samples older than each property's `raw_days` (SQLite rows, and rows of sealed chunks,
        which are rewritten) and minute aggregates older than its `rollup_days`."""
        now = self.clock() if now is None else now
        db = self._connect()
        policy = {kid: self.retention(*key) for kid, key in self._names().items()}
        with self._transaction(db):
            for kid, h in policy.items():
                db.execute("DELETE FROM samples WHERE key = ? AND ts < ?", (kid, now - h.raw_days * DAY))
                cutoff = (now - h.rollup_days * DAY) // MINUTE
                db.execute("DELETE FROM minutes WHERE key = ? AND minute < ?", (kid, cutoff))
        with self._lock:
            self._first_minute = None  # minutes dropped: scanned again when next asked
        longest = max((h.raw_days for h in policy.values()), default=DEFAULT_RAW_DAYS)
        shortest = min((h.raw_days for h in policy.values()), default=DEFAULT_RAW_DAYS)
        for rel, t1 in db.execute("SELECT path, t1 FROM chunks WHERE t0 < ?", (now - shortest * DAY,)).fetchall():
            if self._closing:  # the next upkeep, after a restart, rewrites the rest
                break
            path = self.folder / rel
            if t1 < now - longest * DAY:
                self._drop_chunk(db, rel)
                continue
            table = pq.read_table(path)
            keep = self._kept_rows(table, now)
            if pc.all(keep).as_py():
                continue
            kept = table.filter(keep)
            if kept.num_rows == 0:
                self._drop_chunk(db, rel)
                continue
            tmp = path.with_suffix(".parquet.tmp")
            pq.write_table(kept, tmp, row_group_size=ROW_GROUP_ROWS, **PARQUET_OPTIONS)
            os.replace(tmp, path)
            db.execute("UPDATE chunks SET rows = ? WHERE path = ?", (kept.num_rows, rel))

    def _kept_rows(self, table: pa.Table, now: float) -> pa.ChunkedArray:
        """Which rows of a chunk are within their property's raw retention (vectorised: the policy is looked
        up once per property of the chunk, not per row)."""
        names = pc.binary_join_element_wise(table["element"].cast(pa.string()), table["prop"].cast(pa.string()), "\x00")
        props = pc.unique(names)
        cutoffs = pa.array(
            [now - self.retention(*name.split("\x00", 1)).raw_days * DAY for name in props.to_pylist()], pa.float64()
        )
        return pc.greater_equal(table["ts"], pc.take(cutoffs, pc.index_in(names, value_set=props)))

    def _shortest_raw_days(self) -> int:
        """The shortest raw retention of any property: before it, some raw samples may have been dropped
        (worked out again only when properties were added)."""
        names = self._names()
        if self._shortest[0] != len(names):
            days = min((self.retention(*key).raw_days for key in names.values()), default=DEFAULT_RAW_DAYS)
            self._shortest = (len(names), days)
        return self._shortest[1]

    def _drop_chunk(self, db: Connection, rel: str) -> None:
        (self.folder / rel).unlink(missing_ok=True)
        db.execute("DELETE FROM chunks WHERE path = ?", (rel,))

    # --- reading ---------------------------------------------------------------------------------

    @_uses_connection
    def stored_bytes(self) -> int:
        """What the history takes on disk: its SQLite files and chunks, or its PostgreSQL tables with their indexes."""
        db = self._connect()
        if isinstance(db, sqlite3.Connection):
            return sum(path.stat().st_size for path in self.folder.rglob("*") if path.is_file())
        (size,) = db.execute(
            """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"""
        ).fetchone()
        return int(size)

    @_uses_connection
    def range(self) -> p.HistoryRange:
        """The times the history holds: from the oldest sample, minute or event up to now (everything since
        is recorded, so the twin at any time in between is known)."""
        db = self._connect()
        lows = [
            db.execute("SELECT min(ts) FROM samples").fetchone()[0],
            db.execute("SELECT min(t0) FROM chunks").fetchone()[0],
            self._earliest_minute(db),
            db.execute("SELECT min(t) FROM events").fetchone()[0],
        ]
        earliest = min((lo for lo in lows if lo is not None), default=None)
        return p.HistoryRange(earliest, self.clock())

    def _earliest_minute(self, db: Connection) -> float | None:
        """The oldest sample time the minute aggregates hold: a scan of them (no index leads with time) the first
        time, then kept up by the writer (`_write_readings`) until retention drops minutes (`retain`). In PostgreSQL,
        where other processes write too, one seek of its index every time."""
        if isinstance(db, PostgresDb):
            return db.execute("SELECT min(first_ts) FROM minutes").fetchone()[0]
        with self._lock:
            if self._first_minute is not None:
                return self._first_minute[0]
        (first,) = db.execute("SELECT min(first_ts) FROM minutes").fetchone()
        with self._lock:
            if self._first_minute is None:  # the writer may have known better meanwhile
                self._first_minute = (first,)
            return self._first_minute[0]

    def _chunks_between(self, t0: float, t1: float) -> list[Path]:
        rows = self._connect().execute("SELECT path FROM chunks WHERE t1 >= ? AND t0 <= ? ORDER BY t0", (t0, t1))
        return [self.folder / rel for (rel,) in rows]

    @_uses_connection
    def samples(
        self, t0: float, t1: float, *, include_start: bool = False, keys: Iterable[tuple[str, str]] | None = None
    ) -> list[Sample]:
        """Raw samples with t0 < ts <= t1 (t0 <= ts with `include_start`), of `keys` (default all), oldest first.
        With `keys`, the chunks are read with the elements and properties pushed down into pyarrow's filter and the
        SQLite tail through its (key, ts) index, so a chart of one property never reads the other properties."""
        lo_op = ">=" if include_start else ">"
        wanted = None if keys is None else set(keys)
        names, ids, kinds, units, _, typed = self._key_index()
        filters: list[tuple[str, str, object]] = [("ts", lo_op, t0), ("ts", "<=", t1)]
        if wanted is not None:
            filters += [
                ("element", "in", sorted({e for e, _ in wanted})),
                ("prop", "in", sorted({pr for _, pr in wanted})),
            ]
        out: list[Sample] = []
        for path in self._chunks_between(t0, t1):  # column by column: one Python object per sample, the Sample
            table = pq.read_table(path, columns=_READ_COLUMNS, filters=filters).sort_by("ts")  # stable, as `sort`
            element, prop, ts, value, text, quality, unit = _pylists(table)
            pairs = zip(element, prop, strict=True)
            value = [  # numbers as read; bools (1.0 / 0.0 in chunks) and the rest by their key's kind (`_typed`)
                tx if tx is not None else v if k not in typed else _typed(v, typed[k])
                for k, v, tx in zip(pairs, value, text, strict=True)
            ]
            rows = map(Sample._make, zip(element, prop, ts, value, quality, unit, strict=True))
            out.extend(rows if wanted is None else (s for s in rows if (s.element, s.prop) in wanted))
        db = self._connect()
        sql = f"SELECT key, ts, v, q FROM samples WHERE ts {lo_op} ? AND ts <= ?"
        args: list[object] = [t0, t1]
        if wanted is not None:
            kids = [ids[key] for key in wanted if key in ids]
            sql += f" AND key IN ({','.join('?' * len(kids))})" if kids else " AND false"
            args += kids
        for kid, ts, v, q in db.execute(sql, args):
            key = names.get(kid)
            if key is not None:
                out.append(Sample(*key, ts, _typed(v, kinds[kid]), QUALITIES[q], units.get(kid, "")))
        out.sort(key=attrgetter("ts"))  # merges the chunks' runs and the tail's (each already by time)
        return out

    def properties(self) -> set[tuple[str, str]]:
        """Every (element, property) the history has."""
        self._sync_keys()
        with self._lock:
            return set(self._keys)

    @_uses_connection
    def raw_table(
        self, t0: float, t1: float, *, elements: Iterable[str] | None = None, props: Iterable[str] | None = None
    ) -> pa.Table:
        """Every raw sample with t0 <= ts < t1 (of `elements` and `props`, default all) as one table of EXPORT_SCHEMA,
        by time (then receive time): the sealed chunks' rows (the filter pushed down into pyarrow) and the tail's.
        A window of an export (viewer_server/history_export.py): it holds every row of [t0, t1) in memory."""
        want_e = None if elements is None else sorted(set(elements))
        want_p = None if props is None else sorted(set(props))
        filters: list[tuple[str, str, object]] = [("ts", ">=", t0), ("ts", "<", t1)]
        if want_e is not None:
            filters.append(("element", "in", want_e))
        if want_p is not None:
            filters.append(("prop", "in", want_p))
        tables = [
            pq.read_table(path, columns=list(EXPORT_SCHEMA.names), filters=filters).cast(EXPORT_SCHEMA)
            for path in self._chunks_between(t0, t1)
        ]
        self._sync_keys()
        with self._lock:
            keys = {
                kid: (key, self._kinds[kid])
                for key, kid in self._keys.items()
                if (want_e is None or key[0] in want_e) and (want_p is None or key[1] in want_p)
            }
        db = self._connect()
        units = dict(db.execute("SELECT id, unit FROM keys"))
        sql = "SELECT key, ts, rx, v, q FROM samples WHERE ts >= ? AND ts < ?"
        args: list[object] = [t0, t1]
        if want_e is not None or want_p is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})" if keys else " AND false"
            args += list(keys)
        rows = []
        for kid, ts, rx, v, q in db.execute(sql, args):
            if kid in keys:
                (element, prop), kind = keys[kid]
                value = _typed(v, kind)
                number = None if isinstance(value, str) else float(value)
                text = value if isinstance(value, str) else None
                rows.append((element, prop, ts, rx, number, text, QUALITIES[q], units.get(kid, "")))
        if rows:
            columns = zip(*rows, strict=True)
            tables.append(pa.table(dict(zip(EXPORT_SCHEMA.names, columns, strict=True)), schema=EXPORT_SCHEMA))
        table = pa.concat_tables(tables) if tables else EXPORT_SCHEMA.empty_table()
        return table.sort_by([("ts", "ascending"), ("rx", "ascending")])

    @_uses_connection
    def state_at(self, t: float) -> dict[tuple[str, str], Sample]:
        """Every property's last sample at or before `t`. The raw samples of t's own minute come first (reduced to
        one per property in arrow, `_latest`); for the properties without one, their latest minute aggregate before
        t's minute (its `last`: this also serves after the raw samples are gone; or, where raw samples may be gone,
        that minute's aggregate when all of it is at or before t). With a keyframe at t's hour start (SQLite, once
        the hour before is sealed: `_Keyframe`) that is range reads of the minutes since it (`_since_keyframe`), the
        keyframe serving the properties silent since; without, one index seek per property silent in t's minute
        (CROSS JOIN keeps SQLite's loop over the keys: its planner would otherwise scan every minute row)."""
        db = self._connect()
        minute = math.floor(t / MINUTE)
        state = self._latest(minute * MINUTE, t)
        names, _, kinds, units, _, _ = self._index  # as `_latest` brought them up to date
        found_ids = {kid for kid, key in names.items() if key in state}
        found = msgspec.json.encode(list(found_ids)).decode()
        join = self._sql.keep_order_join
        silent = f"k.id NOT IN ({self._sql.ids_of_json})"  # found in t's minute: no seek for those
        hour = minute * MINUTE // HOUR * HOUR
        frame = _read_keyframe(db, hour)
        if frame is None:  # no keyframe (PostgreSQL, the hour not sealed yet, or unreadable): one seek per key
            rows = db.execute(  # max() over the primary key alone: SQLite's one-seek min/max optimisation
                f"""SELECT m.key, m.last, m.last_ts, m.last_q FROM keys k {join} minutes m ON m.key = k.id
                   AND m.minute = (SELECT max(minute) FROM minutes WHERE key = k.id AND minute < ?) WHERE {silent}""",
                (minute, found),
            ).fetchall()
        else:
            rows = self._since_keyframe(db, frame, hour, minute, found_ids, len(names))
        if t < self.clock() - self._shortest_raw_days() * DAY:  # raw samples of t's minute may be gone: its
            rows += db.execute(  # aggregate serves where all of that minute is at or before t
                f"""SELECT m.key, m.last, m.last_ts, m.last_q FROM keys k {join} minutes m ON m.key = k.id
                   AND m.minute = ? WHERE m.last_ts <= ? AND {silent}""",
                (minute, t, found),
            ).fetchall()
        for kid, last, ts, q in rows:
            key = names.get(kid)  # None: a key added since the index was taken
            if key is not None and (key not in state or ts >= state[key].ts):
                state[key] = Sample(*key, ts, _typed(last, kinds[kid]), QUALITIES[q], units[kid])
        return state

    def _since_keyframe(
        self, db: Connection, frame: _Keyframe, hour: int, minute: int, found: set[int], keys: int
    ) -> list[tuple[int, object, float, int]]:
        """The newest minute aggregate before `minute` of each key not in `found`, from the minutes since the keyframe
        at `hour` and then the keyframe: range reads of the minutes' time index in windows doubling back from
        `minute` (1, 2, 4, … minutes), each for the keys not found yet, until every key is found or the hour start
        is reached. A key that reported a minute ago costs one row; one silent since the hour start, its rows of
        the hour (SQLite takes the bare columns of each key's max(last_ts) row)."""
        rows: list[tuple[int, object, float, int]] = []
        seen = set(found)
        start, end, width = hour // MINUTE, minute, 1
        while end > start and len(seen) < keys:
            lo = max(start, end - width)
            got = db.execute(
                f"""SELECT key, last, max(last_ts), last_q FROM minutes INDEXED BY minutes_by_minute
                   WHERE minute >= ? AND minute < ? AND key NOT IN ({self._sql.ids_of_json}) GROUP BY key""",
                (lo, end, msgspec.json.encode(list(seen)).decode()),
            ).fetchall()
            rows += got
            seen.update(row[0] for row in got)
            end, width = lo, width * 2
        rows += [
            (kid, last, ts, q)
            for kid, last, ts, q in zip(frame.keys, frame.last, frame.ts, frame.q, strict=True)
            if kid not in seen
        ]
        return rows

    def _latest(self, t0: float, t1: float) -> dict[tuple[str, str], Sample]:
        """Each property's last raw sample with t0 <= ts <= t1. The chunks' rows are reduced to the last one per
        property in pyarrow / numpy, so only one Python object per property is made, not one per sample."""
        names, ids, kinds, units, _, _ = self._key_index()
        latest: dict[tuple[str, str], Sample] = {}
        filters = [("ts", ">=", t0), ("ts", "<=", t1)]
        tables = [pq.read_table(path, columns=_READ_COLUMNS, filters=filters) for path in self._chunks_between(t0, t1)]
        table = pa.concat_tables(tables).unify_dictionaries().combine_chunks() if tables else None
        if table is not None and table.num_rows:
            element, prop = table["element"].chunk(0), table["prop"].chunk(0)
            code = element.indices.to_numpy(zero_copy_only=False).astype(np.int64) * len(prop.dictionary)
            code += prop.indices.to_numpy(zero_copy_only=False)
            order = np.lexsort((table["ts"].to_numpy(), code))  # by property, then by time
            code = code[order]
            rows = table.take(pa.array(order[np.flatnonzero(np.r_[code[1:] != code[:-1], True])]))  # each one's last
            for e, pr, ts, v, tx, q, u in zip(*_pylists(rows), strict=True):
                kid = ids.get((e, pr))
                value = tx if tx is not None else _typed(v, "number" if kid is None else kinds[kid])
                latest[(e, pr)] = Sample(e, pr, ts, value, q, u)
        db = self._connect()
        tail = "SELECT key, ts, v, q FROM samples WHERE ts >= ? AND ts <= ? ORDER BY ts"
        for kid, ts, v, q in db.execute(tail, (t0, t1)):  # the hot tail: one hour at most, oldest first
            key = names.get(kid)
            if key is not None and (key not in latest or ts >= latest[key].ts):
                latest[key] = Sample(*key, ts, _typed(v, kinds[kid]), QUALITIES[q], units.get(kid, ""))
        return latest

    @_uses_connection
    def bindings_at(self, t: float) -> BindingsVersion | None:
        """The bindings file in force at `t`: the last version that took effect at or before it (before the first
        one the historian kept, that first one: the history before it was made with rules it never saw)."""
        db = self._connect()
        sql = "SELECT t, file, sha256, content FROM bindings WHERE t <= ? ORDER BY t DESC, rowid DESC LIMIT 1"
        row = db.execute(sql, (t,)).fetchone()
        if row is None:
            row = db.execute("SELECT t, file, sha256, content FROM bindings ORDER BY t, rowid LIMIT 1").fetchone()
        return None if row is None else BindingsVersion(*row)

    @_uses_connection
    def bindings_changes(self, t0: float, t1: float) -> list[tuple[float, str, str]]:
        """(t, file, sha256) of each bindings version that took effect with t0 < t <= t1, oldest first."""
        sql = "SELECT t, file, sha256 FROM bindings WHERE t > ? AND t <= ? ORDER BY t, rowid"
        return [(t, file, sha) for t, file, sha in self._connect().execute(sql, (t0, t1))]

    @_uses_connection
    def events(
        self,
        t0: float,
        t1: float,
        *,
        kinds: Iterable[str] | None = None,
        limit: int | None = None,
        include_start: bool = False,
    ) -> list[p.Event]:
        """Recorded events with t0 < ts <= t1, oldest first (in seq order within one time)."""
        lo_op = ">=" if include_start else ">"
        sql = f"SELECT body FROM events WHERE t {lo_op} ? AND t <= ?"
        args: list[object] = [t0, t1]
        if kinds is not None:
            kinds = list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += kinds
        sql += " ORDER BY t, seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_event_dec.decode(body) for (body,) in self._connect().execute(sql, args)]

    @_uses_connection
    def alarms_at(self, t: float) -> list[p.Alarm]:
        """The alarms listed at `t`: each alarm's latest event at or before t, unless it left the list. From the
        checkpoint at or before t (`checkpoint_alarms`) and the alarm transitions after it, grouped by alarm:
        the cost follows the transitions since the checkpoint, not the whole history before t."""
        db = self._connect()
        cp = db.execute("SELECT t, body FROM alarm_books WHERE t <= ? ORDER BY t DESC LIMIT 1", (t,)).fetchone()
        book: _Book = {} if cp is None else {aid: (rowid, a) for aid, rowid, a in _book_dec.decode(cp[1])}
        kinds = p.ALARM_EVENTS
        rows = db.execute(  # events_t: the range after the checkpoint (the (id, t) index would walk every alarm)
            f"""SELECT rowid, id, body FROM events WHERE rowid IN (SELECT max(rowid) FROM events {self._sql.by_time}
                WHERE kind IN ({",".join("?" * len(kinds))}) AND t >= ? AND t <= ? GROUP BY id)""",
            (*kinds, -math.inf if cp is None else cp[0], t),
        )
        self._take_latest(book, rows)
        return sorted((a for _, a in book.values() if a is not None), key=lambda a: (a.since, a.id))

    @_uses_connection
    def annotations_at(self, t: float, session: str) -> tuple[dict[str, p.Topic], dict[str, p.Comment]]:
        """The session's topics and comments at their latest revision at or before `t`, by guid. From the index of
        the session's events by kind (events_session, which holds the rowid too): the cost follows the session's own
        annotation events up to t, not the whole history's (alarms, other sessions)."""
        kinds = p.ANNOTATION_EVENTS
        rows = self._connect().execute(
            f"""SELECT body FROM events WHERE rowid IN (SELECT max(rowid) FROM events {self._sql.by_session}
                WHERE kind IN ({",".join("?" * len(kinds))}) AND session = ? AND t <= ? GROUP BY id)""",
            (*kinds, session, t),
        )
        topics: dict[str, p.Topic] = {}
        comments: dict[str, p.Comment] = {}
        for (body,) in rows:
            event = _event_dec.decode(body)
            if event.topic is not None:
                topics[event.topic.guid] = event.topic
            if event.comment is not None:
                comments[event.comment.guid] = event.comment
        return topics, comments

    @_uses_connection
    def series(self, element: str, prop: str, t0: float, t1: float, points: int) -> tuple[Series, float]:
        """At most `points` values between t0 and t1: raw samples when there are no more than that, else
        min / max / mean / last per bucket (from the minute aggregates when a bucket spans minutes).
        Returns the series and its resolution in seconds (0 = raw)."""
        self._sync_keys()
        db = self._connect()
        with self._lock:
            kid = self._keys.get((element, prop))
        unit = "" if kid is None else db.execute("SELECT unit FROM keys WHERE id = ?", (kid,)).fetchone()[0]
        out = Series(element, prop, unit)
        if kid is None:
            return out, 0.0
        width = (t1 - t0) / points
        if width < MINUTE:
            raw = self.samples(t0, t1, include_start=True, keys=[(element, prop)])
            if len(raw) <= points:
                for s in raw:
                    num = _number(s.value)
                    out.t.append(s.ts)
                    out.min.append(num)
                    out.max.append(num)
                    out.mean.append(num)
                    out.last.append(s.value)
                return out, 0.0
            buckets: dict[int, list[Sample]] = {}
            for s in raw:
                buckets.setdefault(min(int((s.ts - t0) / width), points - 1), []).append(s)
            for b, group in sorted(buckets.items()):
                nums = [n for n in (_number(s.value) for s in group) if n is not None]
                out.t.append(t0 + b * width)
                out.min.append(min(nums) if nums else None)
                out.max.append(max(nums) if nums else None)
                out.mean.append(sum(nums) / len(nums) if nums else None)
                out.last.append(group[-1].value)
            return out, width
        minutes_per = max(1, math.ceil(width / MINUTE))
        return self._bucketed(db, kid, out, t0, t1, minutes_per), float(minutes_per * MINUTE)

    def _bucketed(self, db: Connection, kid: int, out: Series, t0: float, t1: float, minutes_per: int) -> Series:
        """Buckets of `minutes_per` minutes from one range scan of the minute aggregates' primary key. A minute
        only partly inside [t0, t1] (t0's, t1's) is taken from its raw samples inside the range instead, so no
        bucket holds a value from outside it; its aggregate serves only if all of it is inside (raw gone)."""
        lo, hi = math.floor(t0 / MINUTE), math.floor(t1 / MINUTE)
        rows = db.execute(
            """SELECT minute, min, max, sum, n, last, last_ts, first_ts FROM minutes
               WHERE key = ? AND minute >= ? AND minute <= ? ORDER BY minute""",
            (kid, lo, hi),
        ).fetchall()
        rows = [r for r in rows if lo < r[0] < hi or (r[7] >= t0 and r[6] <= t1)]
        whole = {r[0] for r in rows}
        for minute in {lo, hi} - whole:
            edge = self.samples(
                max(t0, minute * MINUTE),
                min(t1, (minute + 1) * MINUTE),
                include_start=True,
                keys=[(out.element, out.prop)],
            )
            for s in edge:
                if s.ts < (minute + 1) * MINUTE:
                    num = _number(s.value)
                    rows.append((minute, num, num, num or 0.0, 0 if num is None else 1, s.value, s.ts, s.ts))
        if not rows:
            return out
        minute, lows, highs, sums, counts, lasts, last_ts, _ = zip(*rows, strict=True)
        bucket = np.asarray(minute, np.int64) // minutes_per
        order = np.lexsort((np.asarray(last_ts, np.float64), bucket))  # by bucket, then by time: last is last
        bucket = bucket[order]
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        ends = np.r_[starts[1:], len(bucket)] - 1

        def column(values: tuple[object, ...]) -> np.ndarray:
            return np.asarray([np.nan if v is None else v for v in values], np.float64)[order]

        with np.errstate(invalid="ignore"):  # a bucket of strings only: no min, max or mean
            mins = np.fmin.reduceat(column(lows), starts)
            maxs = np.fmax.reduceat(column(highs), starts)
        totals = np.add.reduceat(column(sums), starts)
        ns = np.add.reduceat(np.asarray(counts, np.int64)[order], starts)
        kind = self._kind_of(out.element, out.prop)
        for b, mn, mx, total, n, i in zip(bucket[starts], mins, maxs, totals, ns, order[ends], strict=True):
            out.t.append(float(b * minutes_per * MINUTE))
            out.min.append(None if math.isnan(mn) else float(mn))
            out.max.append(None if math.isnan(mx) else float(mx))
            out.mean.append(float(total / n) if n else None)
            out.last.append(_typed(lasts[i], kind))
        return out
