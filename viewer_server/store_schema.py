"""The store's tables as versioned migrations, the same for SQLite and PostgreSQL.

`migrate(db)` brings a database to the newest version at start (`Store`) or on demand (`twinview store
migrate`): in one transaction that runs alone (several processes starting at once on one PostgreSQL
wait for each other), it applies every migration newer than the highest row of `schema_version` and adds
a row for each. A migration is never edited once released: a change is a new one at the end of the list.
A database newer than this twinview is refused (SchemaTooNew) rather than written to.

Files of twinview before the `schema_version` table (its `meta` said schema 4) hold exactly migration 1's
tables, which are created `IF NOT EXISTS`: they are adopted as they are, with their data.
"""

from __future__ import annotations

import time
from typing import Final

from viewer_server.store_db import PostgresDb, SqliteDb, StoreError

# (name, statements): `{id}` is an auto-numbered integer key, `{blob}` a byte string (store_db.SqliteDb.ID…).
MIGRATIONS: Final[tuple[tuple[str, str], ...]] = (
    (
        "tables of twinview 0.x (schema 4)",
        """
CREATE TABLE IF NOT EXISTS scenes (
  id TEXT PRIMARY KEY, path TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, loaded_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS bindings (
  scene TEXT PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL, content TEXT NOT NULL,
  loaded_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS log (
  id {id}, scene TEXT NOT NULL, epoch TEXT NOT NULL, seq BIGINT NOT NULL,
  kind TEXT NOT NULL, key TEXT NOT NULL, value {blob});
CREATE TABLE IF NOT EXISTS props (
  scene TEXT NOT NULL, element TEXT NOT NULL, prop TEXT NOT NULL, value {blob} NOT NULL,
  unit TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, rx DOUBLE PRECISION NOT NULL, quality TEXT NOT NULL,
  PRIMARY KEY (scene, element, prop));
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, scene TEXT NOT NULL, client TEXT NOT NULL, role TEXT NOT NULL,
  layer TEXT, connected_at DOUBLE PRECISION NOT NULL, disconnected_at DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS rooms (
  id TEXT PRIMARY KEY, scene TEXT NOT NULL, name TEXT NOT NULL, anonymous_role TEXT,
  created DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
  session TEXT NOT NULL, "user" TEXT NOT NULL, revoked_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (session, "user"));
CREATE TABLE IF NOT EXISTS topics (
  session TEXT NOT NULL, guid TEXT NOT NULL, revision BIGINT NOT NULL, data {blob} NOT NULL,
  PRIMARY KEY (session, guid));
CREATE TABLE IF NOT EXISTS comments (
  session TEXT NOT NULL, guid TEXT NOT NULL, topic TEXT NOT NULL, revision BIGINT NOT NULL, data {blob} NOT NULL,
  PRIMARY KEY (session, guid));
CREATE TABLE IF NOT EXISTS attachments (
  id TEXT PRIMARY KEY, session TEXT NOT NULL, mime TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL,
  data {blob} NOT NULL, author TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
  id {id}, session TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL,
  role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_session ON audit (session, id);
CREATE TABLE IF NOT EXISTS procedure_events (
  id {id}, session TEXT NOT NULL, run TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
  kind TEXT NOT NULL, data {blob} NOT NULL);
CREATE INDEX IF NOT EXISTS procedure_events_by_session ON procedure_events (session, id);
CREATE TABLE IF NOT EXISTS alarms (
  scene TEXT NOT NULL, id TEXT NOT NULL, data {blob} NOT NULL, PRIMARY KEY (scene, id));
CREATE TABLE IF NOT EXISTS alarm_events (
  id {id}, scene TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, alarm TEXT NOT NULL,
  kind TEXT NOT NULL, data {blob} NOT NULL);
CREATE INDEX IF NOT EXISTS alarm_events_by_scene ON alarm_events (scene, id);
""",
    ),
    (
        "indexes for a shared store: comments by topic, attachments by session, audit by age; meta retired",
        """
CREATE INDEX comments_by_topic ON comments (session, topic);
CREATE INDEX attachments_by_session ON attachments (session);
CREATE INDEX audit_by_ts ON audit (ts);
DROP TABLE IF EXISTS meta;
""",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
# Every table a store holds, in the order `twinview store copy` copies them.
TABLES: Final = (
    "scenes", "bindings", "rooms", "sessions", "revocations", "topics", "comments", "attachments", "audit",
    "procedure_events", "alarms", "alarm_events", "props", "log",
)  # fmt: skip
# Tables whose `id` is numbered by the database.
NUMBERED: Final = frozenset({"log", "audit", "procedure_events", "alarm_events"})


class SchemaTooNew(StoreError):
    """The database was migrated by a newer twinview."""


def statements(db: SqliteDb | PostgresDb, version: int) -> list[str]:
    """Migration `version`'s statements in `db`'s dialect."""
    text = MIGRATIONS[version - 1][1].format(id=db.ID, blob=db.BLOB)
    return [s.strip() for s in text.split(";") if s.strip()]


def version(db: SqliteDb | PostgresDb) -> int:
    """The database's schema version: 0 when it has no `schema_version` table yet."""
    if "schema_version" not in db.tables():
        return 0
    return int(db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def migrate(db: SqliteDb | PostgresDb, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the migrations up to `target` that `db` lacks, in one transaction; returns their versions."""
    db.begin(exclusive=True)
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = version(db)
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{db.location} is at schema version {current}, newer than this twinview knows"
                f" ({SCHEMA_VERSION}): upgrade twinview"
            )
        applied = list(range(current + 1, target + 1))
        for number in applied:
            for statement in statements(db, number):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (number, MIGRATIONS[number - 1][0], time.time()),
            )
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return applied
