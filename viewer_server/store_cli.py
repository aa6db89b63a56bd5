"""`twinview store migrate|copy`: bring a store to the current schema; move a data dir's SQLite store to
PostgreSQL (or back).

`copy` migrates both ends, then copies every table (`store_schema.TABLES`) in one transaction of the target,
ids included, and from a data dir to PostgreSQL also each scene's history (history_copy.py), so a failed or
interrupted copy leaves the target as it was: it refuses to half-copy rather than resume. It refuses a target
that holds data unless told (`--replace`: the target becomes exactly the source, so running it again changes
nothing). Stop the servers writing to the source first: what they write during the copy is not copied.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Final

from viewer_server import history_copy
from viewer_server.store import STORE_FILE
from viewer_server.store_db import (
    SQLITE_SCHEME,
    PostgresDb,
    SqliteDb,
    StoreError,
    check_location,
    connect,
    insert,
    is_postgres,
    redact,
    sqlite_path,
)
from viewer_server.store_schema import NUMBERED, SCHEMA_VERSION, TABLES, migrate

# Rows read and written at a time: attachments are up to a few MB each.
COPY_CHUNK_ROWS: Final = 200


class StoreCliError(ValueError):
    """A problem the user can fix (the CLI prints it and exits with 2)."""


def _located(location: str) -> str | Path:
    """`location` checked: a PostgreSQL URL as it is, else the SQLite file it names (a data dir: its store)."""
    try:
        location = check_location(location)
    except ValueError as exc:
        raise StoreCliError(str(exc)) from None
    if is_postgres(location):
        return location
    path = sqlite_path(location)
    return path / STORE_FILE if path.is_dir() else path


def open_existing(location: str) -> SqliteDb | PostgresDb:
    """A connection to the store at `location` (sqlite:PATH — a file, or a data dir holding one — or
    postgresql://…), never creating a SQLite file where the user mistyped a path."""
    path = _located(location)
    if isinstance(path, str):
        return connect(path)
    if not path.is_file():
        raise StoreCliError(f"{path}: no store here (no such file); pass the data dir or its {STORE_FILE}")
    return connect(f"{SQLITE_SCHEME}{path}")


def migrate_store(location: str, say: Callable[[str], None]) -> list[int]:
    db = open_existing(location)
    try:
        applied = migrate(db)
    finally:
        db.close()
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to do"
    say(f"{db.location}: schema version {SCHEMA_VERSION} ({done})")
    return applied


def copy_store(source: str, target: str, *, replace: bool, say: Callable[[str], None]) -> dict[str, int]:
    """Copy every table of `source` into `target`; returns the rows copied per table."""
    if redact(source) == redact(target):
        raise StoreCliError("--from and --to name the same store")
    src = open_existing(source)
    try:
        migrate(src)
        dst = open_target(target)
        try:
            migrate(dst)
            histories = _histories(source, dst, say)
            return _copy(src, dst, replace, say, histories)
        finally:
            dst.close()
    finally:
        src.close()


def open_target(location: str) -> SqliteDb | PostgresDb:
    """The store to copy into: a PostgreSQL database, or a SQLite file (created if its folder exists)."""
    path = _located(location)
    if isinstance(path, str):
        return connect(path)
    if not path.parent.is_dir():
        raise StoreCliError(f"{path.parent}: no such folder")
    return SqliteDb(path)


def _histories(source: str, dst: SqliteDb | PostgresDb, say: Callable[[str], None]) -> list[Path]:
    """The scenes' history folders to copy along: those of the source's data dir, into a PostgreSQL target."""
    path = _located(source)
    if isinstance(path, str):
        if isinstance(dst, SqliteDb):
            say("the history stays in PostgreSQL (`twinview history export --store …` reads it)")
        return []
    from viewer_server.live import HISTORY_DIR  # the server's modules: only for a copy from a data dir

    folders = history_copy.histories(path.parent / HISTORY_DIR)
    if folders and isinstance(dst, SqliteDb):
        say(f"the history stays in {path.parent / HISTORY_DIR} (copy that folder along with the store)")
        return []
    return folders


def _copy(
    src: SqliteDb | PostgresDb,
    dst: SqliteDb | PostgresDb,
    replace: bool,
    say: Callable[[str], None],
    histories: list[Path],
) -> dict[str, int]:
    dst.begin(exclusive=True)
    try:
        filled = [t for t in TABLES if dst.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() is not None]
        if isinstance(dst, PostgresDb):
            filled += [f"history of {f.name}" for f in histories if history_copy.filled(dst, f)]
        if filled and not replace:
            raise StoreCliError(
                f"{dst.location} already holds data ({', '.join(filled)}): pass --replace to make it a copy of"
                f" {src.location}, or choose an empty database"
            )
        for table in TABLES:
            dst.execute(f"DELETE FROM {table}")
        counts = {}
        for table in TABLES:
            rows = src.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in rows.description]
            sql, counts[table] = insert(table, columns), 0
            while chunk := rows.fetchmany(COPY_CHUNK_ROWS):
                dst.executemany(sql, chunk)
                counts[table] += len(chunk)
            if table in NUMBERED:
                dst.reset_ids(table)
            say(f"{table}: {counts[table]} rows")
        for folder in histories:
            assert isinstance(dst, PostgresDb)  # _histories: only into PostgreSQL
            counts[f"history {folder.name}"] = history_copy.copy_history(folder, dst, say)
        dst.commit()
    except BaseException:
        dst.rollback()
        raise
    say(f"copied {sum(counts.values())} rows from {src.location} to {dst.location}")
    return counts


def cmd_store(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    try:
        if args.store_command == "migrate":
            location = args.store or f"{SQLITE_SCHEME}{Path(args.data_dir) / STORE_FILE}"
            migrate_store(location, say)
        else:
            copy_store(args.source, args.target, replace=args.replace, say=say)
    except StoreError as exc:
        raise StoreCliError(str(exc)) from None
    return 0
