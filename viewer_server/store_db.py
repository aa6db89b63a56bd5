"""One connection interface over SQLite and PostgreSQL, so that every store query is written once.

Queries use SQLite's `?` placeholders and the SQL both engines speak (`INSERT … ON CONFLICT … DO UPDATE`,
savepoints); `"user"` is quoted, being a reserved word in PostgreSQL. What differs is kept here:
the placeholder style, the column types of the schema (`{id}`: an auto-numbered key, `{blob}`), how a
transaction that must run alone starts (`begin(exclusive=True)`: SQLite's `BEGIN IMMEDIATE`, PostgreSQL's
advisory lock), resetting an id sequence after rows were copied with their ids, and the drivers' errors,
which become four of ours:

  StoreError          the statement failed (a full disk, a constraint, a bug)
  Conflict            a unique key is taken (a session id created meanwhile by another process)
  StoreUnavailable    the database cannot be reached; nothing was written. The next use reconnects
                      (at most one attempt per RECONNECT_INTERVAL_S, each bounded by CONNECT_TIMEOUT_S),
                      except on an event loop's thread, which never waits for an attempt: it fails at once
                      until another thread (the store's writer, the revocation poll) has reconnected.
  Contention          PostgreSQL aborted the transaction to break a deadlock or a serialization conflict
                      with another process; nothing was written and running it again is safe.

Locations: `sqlite:PATH` and `postgresql://USER@HOST:PORT/DB` (libpq's URL; the password
comes from `PGPASSWORD` or `~/.pgpass`, or the URL, and never appears in a message: `redact`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import psycopg

from viewer_server.health import public_url

# A connection attempt to PostgreSQL gives up after this long: a write's caller waits at most this.
CONNECT_TIMEOUT_S: Final = 2
# After a failed attempt, uses fail at once (with the last error) for this long before the next attempt.
RECONNECT_INTERVAL_S: Final = 1.0
# TCP keepalives: a peer gone without a word (a cut network) is noticed within ~10 s, not hours.
KEEPALIVES: Final = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
# A statement, and a wait for another transaction's row lock, fail after this long (StoreError) rather than
# keep a writer (and every caller queued behind it) waiting on a stuck server; migrations and copies wait.
STATEMENT_TIMEOUT_MS: Final = 30_000
LOCK_TIMEOUT_MS: Final = 10_000
# The advisory lock key that serialises schema migrations of several processes starting at once.
MIGRATION_LOCK_KEY: Final = 0x7477_696E_7669_6577  # "twinview" in ASCII
# SQLSTATE classes of a lost connection: 08 (connection exception), 57P (the server shuts down or starts).
CONNECTION_LOST: Final = ("08", "57P")
# SQLSTATEs of a transaction aborted because of others: serialization failure, deadlock.
CONTENTION: Final = ("40001", "40P01")
SQLITE_SCHEME: Final = "sqlite:"
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")


class StoreError(Exception):
    """A store statement failed; its message says why (never with a password)."""


class Conflict(StoreError):
    """A unique key is taken."""


class StoreUnavailable(StoreError):
    """The database cannot be reached: nothing was written; try again when it is back."""


class Contention(StoreError):
    """The transaction lost a deadlock or serialization conflict with another process: run it again."""


class Cursor(Protocol):
    rowcount: int
    description: Any

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int) -> list[Any]: ...
    def __iter__(self) -> Any: ...


class Db(Protocol):
    """What store functions get (`Store.run(fn)` calls `fn(db)`): statements with `?` placeholders."""

    backend: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


def is_postgres(location: str) -> bool:
    return location.startswith(POSTGRES_SCHEMES)


def redact(location: str) -> str:
    """The location fit to show in messages and /api/health: a PostgreSQL URL without user, password and query."""
    return public_url(location) if is_postgres(location) else location


def sqlite_path(location: str) -> Path:
    return Path(location.removeprefix(SQLITE_SCHEME))


def check_location(location: str) -> str:
    """`location` if it names a store we can open, else ValueError saying what a location looks like."""
    if is_postgres(location):
        parts = urlsplit(location)
        if not parts.path.strip("/"):
            raise ValueError(f"{redact(location)}: name the database, postgresql://USER@HOST:PORT/DB")
        try:
            parts.port  # noqa: B018 (a bad port raises)
        except ValueError as exc:
            raise ValueError(f"{redact(location)}: {exc}") from None
        return location
    if location.startswith(SQLITE_SCHEME) and location != SQLITE_SCHEME:
        return location
    raise ValueError(f"{redact(location)}: not a store; use sqlite:PATH or postgresql://USER@HOST:PORT/DB")


def insert(table: str, columns: Sequence[str]) -> str:
    """Insert a row; column names are quoted (`user` is a reserved word in PostgreSQL)."""
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"


def upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    """Insert a row, or replace the columns outside `key` of the row with its key (both engines' syntax)."""
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in key)
    return f"{insert(table, columns)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"


def connect(location: str) -> SqliteDb | PostgresDb:
    return PostgresDb(location) if is_postgres(location) else SqliteDb(sqlite_path(location))


class SqliteDb:
    """A SQLite file in WAL mode, in autocommit mode (transactions are explicit, so savepoints nest)."""

    backend: Final = "sqlite"
    ID: Final = "INTEGER PRIMARY KEY AUTOINCREMENT"
    BLOB: Final = "BLOB"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = f"{SQLITE_SCHEME}{path}"
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes, fast

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def begin(self, *, exclusive: bool = False) -> None:
        self.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self.execute("ROLLBACK")

    def tables(self) -> set[str]:
        return {row[0] for row in self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def reset_ids(self, table: str) -> None:
        """Nothing to do: an explicit id beyond SQLite's sequence moves the sequence."""

    def close(self) -> None:
        self._conn.close()


def _reads_only(sql: str) -> bool:
    return sql.lstrip().upper().startswith("SELECT")


class PostgresDb:
    """A PostgreSQL connection that reconnects by itself: a broken connection fails the statement (and
    the transaction it was in) with StoreUnavailable, and the next statement outside a transaction
    connects again. Thread-safe (psycopg serialises a connection's use)."""

    backend: Final = "postgresql"
    ID: Final = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    BLOB: Final = "BYTEA"

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        self.location = redact(url)
        self.schema = schema  # the search_path of every connection (the historian's per scene), else the default
        self._conn: psycopg.Connection[Any] | None = None
        self._in_transaction = False
        self._failed_at = -float("inf")
        self._failure = ""
        self._connecting = False
        self._lock = threading.RLock()
        self._connection(first=True)  # fail early (StoreUnavailable) when the server cannot be reached at start

    def _connection(self, *, first: bool = False, now: bool = False) -> psycopg.Connection[Any]:
        """The open connection, or a new one. Only one thread at a time tries to connect, and never an event
        loop's after the first connection (it must not wait CONNECT_TIMEOUT_S): they fail at once meanwhile.
        `now`: without waiting RECONNECT_INTERVAL_S since the last failure (a read retried once)."""
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            if self._in_transaction:  # the transaction died with its connection: never go on outside it
                raise StoreUnavailable(f"PostgreSQL at {self.location}: the connection was lost mid-transaction")
            pause = not now and time.monotonic() - self._failed_at < RECONNECT_INTERVAL_S
            waiting = self._connecting or pause
            if waiting or (not first and _on_event_loop()):
                raise StoreUnavailable(self._failure or f"PostgreSQL at {self.location}: reconnecting")
            self._connecting = True
        try:
            options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
            if self.schema is not None:
                options += f" -c search_path={self.schema}"
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, options=options, **KEEPALIVES
            )
        except psycopg.Error as exc:
            with self._lock:
                self._connecting = False
                self._failed_at = time.monotonic()
                self._failure = f"PostgreSQL at {self.location} unreachable: {_reason(exc, self.url)}"
            raise StoreUnavailable(self._failure) from None
        with self._lock:
            self._connecting = False
            self._conn = conn
            return conn

    def _failed(self, conn: psycopg.Connection[Any], exc: psycopg.Error) -> StoreError:
        """Our error for the driver's; a lost connection is dropped, so that the next use reconnects."""
        if isinstance(exc, psycopg.errors.IntegrityError):
            return Conflict(_reason(exc, self.url))
        if exc.sqlstate in CONTENTION:
            return Contention(f"{type(exc).__name__}: {_reason(exc, self.url)}")
        if not (conn.closed or conn.broken or (exc.sqlstate or "").startswith(CONNECTION_LOST)):
            return StoreError(f"{type(exc).__name__}: {_reason(exc, self.url)}")
        conn.close()
        with self._lock:
            if self._conn is conn:
                self._conn = None
            self._failed_at = time.monotonic()
            self._failure = f"PostgreSQL at {self.location} unreachable: {_reason(exc, self.url)}"
            return StoreUnavailable(self._failure)

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        conn = self._connection()
        try:  # psycopg serialises the connection's users and fetches the rows before it returns
            return conn.execute(self._sql(sql), params)
        except psycopg.Error as exc:
            error = self._failed(conn, exc)
            if not (isinstance(error, StoreUnavailable) and _reads_only(sql) and not self._in_transaction):
                raise error from None
        # A read on a connection the server dropped (it restarted since it was opened): once more on a new one,
        # so the first read after PostgreSQL is back is answered (a write is never retried: it may have happened).
        conn = self._connection(now=True)
        try:
            return conn.execute(self._sql(sql), params)
        except psycopg.Error as exc:
            raise self._failed(conn, exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))
        except psycopg.Error as exc:
            raise self._failed(conn, exc) from None

    def copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert many rows with COPY: one stream, no statement per row (the historian's raw samples)."""
        conn = self._connection()
        try:
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as stream:
                for row in rows:
                    stream.write_row(row)
        except psycopg.Error as exc:
            raise self._failed(conn, exc) from None

    # Transactions: only ever on a connection of one thread (the store's writer, a command).

    def begin(self, *, exclusive: bool = False) -> None:
        self.execute("BEGIN")
        self._in_transaction = True
        if exclusive:  # a migration or a copy: as long as it takes, after whoever holds the lock
            self.execute("SET LOCAL statement_timeout = 0")
            self.execute("SET LOCAL lock_timeout = 0")
            self.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        finally:
            self._in_transaction = False

    def rollback(self) -> None:
        was, self._in_transaction = self._in_transaction, False
        conn = self._conn
        if was and conn is not None and not conn.closed:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error as exc:
                self._failed(conn, exc)

    def tables(self) -> set[str]:
        rows = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in rows}

    def reset_ids(self, table: str) -> None:
        """After rows were inserted with their ids: the next automatic id follows the largest."""
        self.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}"
        )

    def interrupt(self) -> None:
        """Cancel the statement running now, from another thread: it fails with StoreError."""
        conn = self._conn
        if conn is not None and not conn.closed:
            conn.cancel_safe()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _reason(exc: psycopg.Error, url: str) -> str:
    """The driver's message in one line, without the password should libpq quote the URL."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text
