"""`twinview store copy --from sqlite:DATA_DIR --to postgresql://…` of the historian's durable tier: each scene's
history in the data dir (`history/<scene>/`: `history.sqlite` and its sealed Parquet chunks, docs/BINDINGS.md) into
that scene's schema of the PostgreSQL database (`historian.pg_schema`, docs/STORE.md), where a server with
`--store postgresql://…` reads it.

It runs in the store copy's one transaction of the target (store_cli.py): a copy that fails, or is interrupted,
leaves the target as it was, store and history alike; it is not resumable, run it again. Raw samples of the
sealed chunks become rows of `samples` (PostgreSQL keeps raw samples as rows); keys, sources, events and
bindings versions keep their ids, so the alarm-list checkpoints (which name events by id) hold as they are.
Values are text there, as the historian writes them: an integer of the SQLite tail stays an integer, a sealed
chunk's numbers are floats (as the SQLite historian reads them).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from scene.state import Scalar
from viewer_server import protocol as p
from viewer_server.historian import HISTORY_FILE, QUALITIES, create_pg_tables, event_key, pg_schema
from viewer_server.store_db import PostgresDb, StoreError

# Tables of a history, in the order they are emptied (--replace) and checked for data.
TABLES: Final = ("samples", "minutes", "events", "alarm_books", "bindings", "keys", "sources")
# Rows read and written at a time.
CHUNK_ROWS: Final = 50_000
# Seconds between two progress lines of one table.
PROGRESS_EVERY_S: Final = 5.0

_event_dec = msgspec.msgpack.Decoder(p.Event)


def histories(history_dir: Path) -> list[Path]:
    """The scenes' history folders under a data dir's `history/`, by scene id."""
    if not history_dir.is_dir():
        return []
    return sorted(folder for folder in history_dir.iterdir() if (folder / HISTORY_FILE).is_file())


def filled(dst: PostgresDb, folder: Path) -> bool:
    """Whether the target already holds some of this scene's history (in `dst`'s transaction)."""
    with _in_schema(dst, folder):
        return any(dst.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None for table in TABLES)


@contextlib.contextmanager
def _in_schema(dst: PostgresDb, folder: Path) -> Iterator[None]:
    """Work in the scene's history schema (its tables created where missing), then in the store's again. (A
    block that raises leaves the transaction failed: it is rolled back whole, search path included.)"""
    create_pg_tables(dst, pg_schema(folder))
    yield
    dst.execute("SET LOCAL search_path TO DEFAULT")


def copy_history(folder: Path, dst: PostgresDb, say: Callable[[str], None]) -> int:
    """Copy one scene's history into its schema of `dst`, in `dst`'s transaction, replacing what is there;
    returns the rows copied."""
    with _in_schema(dst, folder), contextlib.closing(_open(folder)) as src:
        return _copy_tables(folder, src, dst, say)


def _open(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{(folder / HISTORY_FILE).resolve().as_uri()}?mode=ro", uri=True)


def _copy_tables(folder: Path, src: sqlite3.Connection, dst: PostgresDb, say: Callable[[str], None]) -> int:
    scene = folder.name
    for table in TABLES:
        dst.execute(f"DELETE FROM {table}")
    copied = 0
    key_rows = src.execute("SELECT id, element, prop, unit, kind FROM keys").fetchall()
    source_rows = src.execute("SELECT id, name FROM sources").fetchall()
    _insert(dst, "keys", ("id", "element", "prop", "unit", "kind"), iter(key_rows), scene, say)
    _insert(dst, "sources", ("id", "name"), iter(source_rows), scene, say)
    for table in ("keys", "sources"):  # a key or source only a chunk names is numbered after them
        _follow_ids(dst, table, "id")
    keys = {(element, prop): kid for kid, element, prop, _, _ in key_rows}
    sources = {name: sid for sid, name in source_rows}
    kinds = {kid: kind for kid, _, _, _, kind in key_rows}
    copied += len(key_rows) + len(source_rows)
    tail = (
        (k, ts, rx, _text(v, kinds.get(k)), q, s)
        for k, ts, rx, v, q, s in _rows(src, "samples", "key, ts, rx, v, q, src")
    )
    n = _copy_rows(dst, "samples", ("key", "ts", "rx", "v", "q", "src"), tail, f"history {scene}: samples", say)
    for (path,) in src.execute("SELECT path FROM chunks ORDER BY hour, path").fetchall():
        rows = _chunk_rows(folder / path, keys, sources, dst)
        n += _copy_rows(dst, "samples", ("key", "ts", "rx", "v", "q", "src"), rows, f"history {scene}: {path}", say)
    say(f"history {scene}: samples: {n} rows")
    copied += n
    minutes = (
        (*row[:6], _text(row[6], kinds.get(row[0])), *row[7:])
        for row in _rows(src, "minutes", "key, minute, min, max, sum, n, last, last_ts, last_q, first_ts")
    )
    columns = ("key", "minute", "min", "max", "sum", "n", "last", "last_ts", "last_q", "first_ts")
    copied += _insert(dst, "minutes", columns, minutes, scene, say)
    keyed = "key" in {row[1] for row in src.execute("PRAGMA table_info(events)")}  # else a history of before keys
    events = (
        (rowid, t, seq, kind, id_, element, session, body, key or event_key(_event_dec.decode(body)))
        for rowid, t, seq, kind, id_, element, session, body, key in _rows(
            src,
            "events",
            f"rowid, t, seq, kind, id, element, session, body, {'key' if keyed else 'NULL'}",
            order="rowid",
        )
    )
    columns = ("rowid", "t", "seq", "kind", "id", "element", "session", "body", "key")
    copied += _insert(dst, "events", columns, events, scene, say, ids=True, once=True)
    rows = _rows(src, "alarm_books", "t, events, body")
    copied += _insert(dst, "alarm_books", ("t", "events", "body"), rows, scene, say)
    rows = _rows(src, "bindings", "rowid, t, file, sha256, content", order="rowid")
    copied += _insert(dst, "bindings", ("rowid", "t", "file", "sha256", "content"), rows, scene, say, ids=True)
    for table in ("events", "bindings"):
        _follow_ids(dst, table, "rowid")
    return copied


def _follow_ids(dst: PostgresDb, table: str, column: str) -> None:
    """After rows were inserted with their ids: the next automatic id follows the largest."""
    dst.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), coalesce(max({column}), 0) + 1, false)"
        f" FROM {table}"
    )


def _rows(src: sqlite3.Connection, table: str, columns: str = "*", order: str = "") -> Iterator[tuple]:
    cursor = src.execute(f"SELECT {columns} FROM {table}" + (f" ORDER BY {order}" if order else ""))
    while chunk := cursor.fetchmany(CHUNK_ROWS):
        yield from chunk


def _text(value: Scalar | None, kind: str | None) -> str | None:
    """A value as the PostgreSQL historian stores it: text, bools as 0 / 1 (SQLite's tail holds them as 1 / 0)."""
    if value is None:
        return None
    if kind == "bool":
        return "1" if float(value) else "0"
    return str(value)


def _chunk_rows(
    path: Path, keys: dict[tuple[str, str], int], sources: dict[str, int], dst: PostgresDb
) -> Iterator[tuple[object, ...]]:
    """A sealed chunk's samples as rows of `samples`; a key or source only the chunk names is added."""
    columns = ["element", "prop", "ts", "rx", "value", "text", "quality", "source", "unit"]
    try:
        for batch in pq.ParquetFile(path).iter_batches(CHUNK_ROWS, columns=columns):
            for element, prop, ts, rx, value, text, quality, source, unit in zip(
                *(batch.column(c).to_pylist() for c in columns), strict=True
            ):
                key = keys.get((element, prop))
                if key is None:
                    kind = "string" if text is not None else "number"
                    (key,) = dst.execute(
                        "INSERT INTO keys (element, prop, unit, kind) VALUES (?, ?, ?, ?) RETURNING id",
                        (element, prop, unit, kind),
                    ).fetchone()
                    keys[(element, prop)] = key
                src = sources.get(source)
                if src is None:
                    (src,) = dst.execute("INSERT INTO sources (name) VALUES (?) RETURNING id", (source,)).fetchone()
                    sources[source] = src
                v = text if text is not None else None if value is None else str(value)
                yield key, ts, rx, v, QUALITIES.index(quality), src
    except (OSError, ValueError, pa.ArrowException) as exc:  # a server quarantines such a chunk at its start
        raise StoreError(f"{path}: the chunk cannot be read ({exc}); start the server once to quarantine it") from None


def _copy_rows(
    dst: PostgresDb,
    table: str,
    columns: tuple[str, ...],
    rows: Iterator[tuple[object, ...]],
    what: str,
    say: Callable[[str], None],
) -> int:
    """COPY rows in chunks of CHUNK_ROWS, saying how far it is every PROGRESS_EVERY_S."""
    count, told = 0, time.monotonic()
    while True:
        chunk = [row for _, row in zip(range(CHUNK_ROWS), rows, strict=False)]
        if not chunk:
            return count
        dst.copy(table, columns, chunk)
        count += len(chunk)
        if time.monotonic() - told >= PROGRESS_EVERY_S:
            say(f"{what}: {count} rows so far")
            told = time.monotonic()


def _insert(
    dst: PostgresDb,
    table: str,
    columns: tuple[str, ...],
    rows: Iterator[tuple[object, ...]],
    scene: str,
    say: Callable[[str], None],
    *,
    ids: bool = False,
    once: bool = False,
) -> int:
    """INSERT rows in chunks (`ids`: with the ids of an identity column; `once`: rows of a key already there are
    left out, an event a failover recorded twice before keys existed); one line when done, with the rows the
    table holds (it was emptied first)."""
    sql = f"INSERT INTO {table} ({', '.join(columns)})" + (" OVERRIDING SYSTEM VALUE" if ids else "")
    sql += f" VALUES ({', '.join('?' for _ in columns)})" + (" ON CONFLICT DO NOTHING" if once else "")
    while chunk := [row for _, row in zip(range(CHUNK_ROWS), rows, strict=False)]:
        dst.executemany(sql, chunk)
    (count,) = dst.execute(f"SELECT count(*) FROM {table}").fetchone()
    say(f"history {scene}: {table}: {count} rows")
    return int(count)
