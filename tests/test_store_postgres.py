"""The shared store on a real PostgreSQL: several server processes' stores on one database (revisions,
revocations), migrations from an empty and from older schemas, `twinview store copy`, and PostgreSQL
restarting under writes. The tests that run on both backends are in test_server_store, test_annotations and
test_audit (`store_url`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psycopg
import pytest

from scene.state import Reading
from tests.live_server import live_server, mint_token, store_rows, write_scene
from tests.postgres_server import PASSWORD, PostgresServer
from tests.test_history_export import SCENE, _history
from tests.test_history_export import T0 as HISTORY_T0
from viewer_server import annotations as annotations_mod
from viewer_server import cli, store_db
from viewer_server import protocol as p
from viewer_server.client import RequestRefused, TwinClient, TwinClientError
from viewer_server.historian import Historian
from viewer_server.rooms import revocation
from viewer_server.serve import REVOCATION_POLL_S, RunningServer
from viewer_server.store import CLI_ACTOR, STORE_FILE, Store, put_topic
from viewer_server.store_db import Conflict, PostgresDb, StoreError, StoreUnavailable, connect
from viewer_server.store_schema import MIGRATIONS, SCHEMA_VERSION, TABLES, SchemaTooNew, statements, version
from viewer_server.topics import Topic

ROUNDS = 5


@contextlib.asynccontextmanager
async def servers(tmp_path: Path, url: str, count: int) -> AsyncIterator[list[RunningServer]]:
    """`count` servers of one scene, each with its own data dir and Store, sharing the database at `url`:
    what several server processes are to the database (one connection pair and writer thread each)."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(live_server(tmp_path / f"p{i}", store=url)) for i in range(count)]


def person(srv: RunningServer, user: str, role: p.Role = "annotator") -> TwinClient:
    return TwinClient(srv.ws_url, token=mint_token(srv, user, role), name=user)


async def test_concurrent_edits_from_several_processes_keep_one_revision_chain(
    tmp_path: Path, postgres_url: str
) -> None:
    async with servers(tmp_path, postgres_url, 3) as (a, b, c), contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(person(srv, f"user-{i}")) for i, srv in enumerate((a, b, c))]
        topic = await clients[0].create_topic(p.TopicDraft("shared valve"))
        for revision in range(1, ROUNDS + 1):  # every process edits revision r at once: one wins
            answers = await asyncio.gather(
                *(
                    cl.update_topic(topic.guid, revision, assignee=f"crew {i} at {revision}")
                    for i, cl in enumerate(clients)
                ),
                return_exceptions=True,
            )
            won = [x for x in answers if isinstance(x, p.Saved)]
            lost = [x.error for x in answers if isinstance(x, RequestRefused)]
            assert len(won) == 1 and won[0].revision == revision + 1, answers
            assert [(e.code, e.revision) for e in lost] == [(p.ERR_STALE_REVISION, revision + 1)] * 2, answers
        stored = a.store.topic(a.live.scene.id, topic.guid)
        assert stored is not None and stored.revision == ROUNDS + 1
        updates = store_rows(a.store, "SELECT count(*) FROM audit WHERE action = 'topic.update'")
        assert updates == [(ROUNDS,)]  # no trail of a refused edit
        for srv in (a, b, c):  # each process's memory took the stored topic
            [mine] = srv.live.annotations.topics(srv.live.scene.id)
            assert (mine.revision, mine.assignee) == (stored.revision, stored.assignee)


# One editor process: read the shared topic, write the next revision if nobody did meanwhile; prints its wins.
EDITOR = """
import sys
from pathlib import Path

import msgspec

from viewer_server.store import StaleRevision, Store, put_topic

url, data, name, rounds = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
store = Store(data, url)
print("ready", flush=True)
sys.stdin.readline()  # all start together
wins = 0
for i in range(rounds):
    current = store.topic("s", "shared")
    new = msgspec.structs.replace(current, revision=current.revision + 1, assignee=f"{name} {i}")
    try:
        store.submit(lambda db: put_topic(db, "s", new, expected=current.revision)).result()
        wins += 1
    except StaleRevision:
        pass
store.close()
print(wins)
"""


def test_read_modify_write_races_between_processes_lose_no_update(tmp_path: Path, postgres_url: str) -> None:
    store = Store(tmp_path / "seed", postgres_url)
    store.submit(lambda db: put_topic(db, "s", Topic("shared", "valve", "ana", 1.0), expected=0)).result()
    store.close()
    editors = [
        subprocess.Popen(
            [sys.executable, "-c", EDITOR, postgres_url, str(tmp_path / f"e{i}"), f"editor {i}", "30"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        for i in range(3)
    ]
    for editor in editors:
        assert editor.stdout is not None and editor.stdout.readline() == "ready\n"
    for editor in editors:
        assert editor.stdin is not None
        editor.stdin.write("go\n")
        editor.stdin.flush()
    wins = [int(editor.communicate(timeout=120)[0]) for editor in editors]
    assert all(editor.returncode == 0 for editor in editors)
    store = Store(tmp_path / "seed", postgres_url)
    try:
        final = store.topic("s", "shared")
    finally:
        store.close()
    assert final is not None and final.revision == 1 + sum(wins)  # every win is one revision: none overwritten
    assert sum(wins) < 90  # the processes did race (an unconditional write would count 90 wins)


async def test_a_revocation_on_one_process_closes_connections_on_the_others(tmp_path: Path, postgres_url: str) -> None:
    async with servers(tmp_path, postgres_url, 2) as (a, b), person(b, "bob") as bob_on_b:
        room = a.live.scene.id
        revoked_at = await a.store.run(revocation(room, "bob", CLI_ACTOR, "admin"))
        assert b.store.revoked_at(room, "bob") == revoked_at  # seen at once by the other's token checks
        await bob_on_b.wait_for(lambda c: c.closed_with is not None, timeout=REVOCATION_POLL_S + 10)
        assert bob_on_b.closed_with is not None and bob_on_b.closed_with.code == p.CLOSE_AUTH


async def test_commands_work_on_the_shared_store(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with live_server(tmp_path, store=postgres_url) as srv, person(srv, "bob") as bob:
        monkeypatch.setenv("TWINVIEW_STORE", postgres_url)  # what an operator sets once for every command
        data = ["--data-dir", str(tmp_path / "data")]
        assert cli.main(["session", "create", "review", *data]) == 0
        assert srv.live.rooms.get("review") is not None  # the server reads it from the shared store
        assert cli.main(["session", "revoke", srv.live.scene.id, "--user", "bob", *data]) == 0
        await bob.wait_for(lambda c: c.closed_with is not None, timeout=REVOCATION_POLL_S + 10)
        assert bob.closed_with is not None and bob.closed_with.code == p.CLOSE_AUTH
        assert PASSWORD not in capsys.readouterr().out
    assert not (tmp_path / "data" / STORE_FILE).exists()  # nothing went to a SQLite file beside it


async def test_a_bcf_import_on_one_process_goes_on_from_an_edit_made_on_another(
    tmp_path: Path, postgres_url: str
) -> None:
    async with servers(tmp_path, postgres_url, 2) as (a, b), aiohttp.ClientSession() as http:
        room = a.live.scene.id
        async with person(a, "ana") as ana_on_a:
            made = await ana_on_a.create_topic(p.TopicDraft("valve"))
        admin = {"Authorization": f"Bearer {mint_token(a, 'root', 'admin')}"}
        async with http.get(f"{a.url}/api/sessions/{room}/bcf", headers=admin) as r:
            archive = await r.read()  # the topic at revision 1
        async with person(b, "ana") as ana_on_b:
            await ana_on_b.update_topic(made.guid, 1, assignee="crew b")  # revision 2, which process a never saw
        async with http.post(f"{a.url}/api/sessions/{room}/bcf", data=archive, headers=admin) as r:
            assert r.status == 201, await r.text()
        stored = a.store.topic(room, made.guid)
        assert stored is not None and stored.revision == 3  # after b's edit, not over it
        [mine] = a.live.annotations.topics(room)
        assert mine.revision == 3


def test_migrations_from_an_empty_and_from_older_schemas(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SCHEMA_VERSION >= 2
    # An empty PostgreSQL database at version 1 (an older twinview), with data; then the current code opens it.
    db = connect(postgres_url)
    db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT, applied_at DOUBLE PRECISION)")
    for statement in statements(db, 1):
        db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1, ?, 0)", (MIGRATIONS[0][0],))
    db.execute("INSERT INTO rooms VALUES ('review', 'pump-test', 'Review', NULL, 1, 'ana')")
    assert version(db) == 1
    store = Store(tmp_path / "pg", postgres_url)
    try:
        assert [r.id for r in store.rooms()] == ["review"]  # kept
        assert version(db) == SCHEMA_VERSION
        indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'comments'")}
        assert "comments_by_topic" in indexes  # migration 2 ran
    finally:
        store.close()
    Store(tmp_path / "pg", postgres_url).close()  # a second start applies nothing
    assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    db.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="upgrade twinview"):
        Store(tmp_path / "pg", postgres_url)
    db.close()

    # A SQLite file of twinview before schema_version (its `meta` said 4): adopted with its data.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    old = sqlite3.connect(legacy / STORE_FILE)
    old.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '4');"
        "CREATE TABLE rooms (id TEXT PRIMARY KEY, scene TEXT NOT NULL, name TEXT NOT NULL, anonymous_role TEXT,"
        " created REAL NOT NULL, created_by TEXT NOT NULL);"
        "INSERT INTO rooms VALUES ('old', 'pump-test', 'Old', 'viewer', 1, 'ana');"
        "CREATE TABLE revocations (session TEXT NOT NULL, user TEXT NOT NULL, revoked_at REAL NOT NULL,"
        " PRIMARY KEY (session, user));"
        "INSERT INTO revocations VALUES ('old', 'bob', 5);"
    )
    old.close()
    assert cli.main(["store", "migrate", "--data-dir", str(legacy)]) == 0  # what `serve` would do at start
    applied = ", ".join(str(v) for v in range(1, SCHEMA_VERSION + 1))
    assert (
        capsys.readouterr().err
        == f"twinview: sqlite:{legacy / STORE_FILE}: schema version {SCHEMA_VERSION} (applied {applied})\n"
    )
    assert cli.main(["store", "migrate", "--data-dir", str(legacy)]) == 0
    assert capsys.readouterr().err.endswith("(nothing to do)\n")
    assert cli.main(["store", "migrate", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no store here" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()
    store = Store(legacy)
    try:
        assert [r.id for r in store.rooms()] == ["old"] and store.revoked_at("old", "bob") == 5
        tables = store.submit(lambda db: db.tables()).result()  # type: ignore[attr-defined]
        assert "meta" not in tables and set(TABLES) <= tables
    finally:
        store.close()
    # And an empty SQLite store gets every migration.
    fresh = Store(tmp_path / "fresh")
    try:
        assert store_rows(fresh, "SELECT version FROM schema_version ORDER BY version") == [
            (v,) for v in range(1, SCHEMA_VERSION + 1)
        ]
    finally:
        fresh.close()


def _contents(location: str) -> dict[str, list[tuple[Any, ...]]]:
    db = connect(location)
    try:
        out = {}
        for table in TABLES:
            rows = db.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted(
                (tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows), key=repr
            )
        return out
    finally:
        db.close()


async def test_store_copy_round_trip_sqlite_to_postgresql_and_back(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with live_server(tmp_path) as srv, person(srv, "ana") as ana, TwinClient(srv.ws_url, role="publisher") as pub:
        topic = await ana.create_topic(p.TopicDraft("leak"))
        await ana.add_comment(topic.guid, "seen at 10:00")
        await ana.update_topic(topic.guid, 1, status="in_progress")
        await pub.publish([p.Reading(3.5, key="PT-1.pressure")])
        await srv.store.run(revocation(srv.live.scene.id, "bob", CLI_ACTOR, "admin"))
        srv.live.hub.flush()
        srv.store.flush()
    source = f"sqlite:{tmp_path / 'data'}"
    before = _contents(f"sqlite:{tmp_path / 'data' / STORE_FILE}")
    assert all(before[t] for t in ("topics", "comments", "audit", "props", "log", "revocations", "rooms"))

    assert cli.main(["store", "copy", "--from", source, "--to", postgres_url]) == 0
    err = capsys.readouterr().err
    assert "twinview: topics: 1 rows" in err and "twinview: copied " in err and PASSWORD not in err
    assert _contents(postgres_url) == before

    # Refused on a target holding data, in one line, with exit 2; --replace makes it the same copy again.
    assert cli.main(["store", "copy", "--from", source, "--to", postgres_url]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "already holds data" in err and "--replace" in err, err
    assert cli.main(["store", "copy", "--from", source, "--to", postgres_url, "--replace"]) == 0
    assert _contents(postgres_url) == before

    # The copy serves: ids go on after the copied ones; and back to a new SQLite file, equal.
    store = Store(tmp_path / "pg-dir", postgres_url)
    try:
        assert [t.title for t in store.topics(srv.live.scene.id)] == ["leak"]
        await store.run(revocation(srv.live.scene.id, "carl", CLI_ACTOR, "admin"))
        audit_ids = [e.id for e in store.audit(srv.live.scene.id, 100)]
        assert len(set(audit_ids)) == len(audit_ids)
    finally:
        store.close()
    back = tmp_path / "back.sqlite"
    assert cli.main(["store", "copy", "--from", postgres_url, "--to", f"sqlite:{back}"]) == 0
    assert _contents(f"sqlite:{back}") == _contents(postgres_url)
    capsys.readouterr()

    for args, message in [
        (["--from", "sqlite:" + str(tmp_path / "nowhere"), "--to", postgres_url], "no store here"),
        (["--from", source, "--to", "mysql://x/y"], "not a store"),
        (["--from", source, "--to", "postgresql://u@127.0.0.1:1/"], "name the database"),
        (["--from", source, "--to", source], "the same store"),
    ]:
        assert cli.main(["store", "copy", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("twinview: ") and message in err, err
    assert not (tmp_path / "nowhere").exists()


async def test_postgresql_restarting_under_writes_errors_clearly_then_recovers_and_loses_nothing_acked(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(annotations_mod, "ANNOTATION_BURST", 10_000)  # a writer as fast as the store allows
    acked: list[str] = []
    refusals: list[p.Error] = []
    stop = asyncio.Event()

    async def write(cl: TwinClient, name: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                acked.append((await cl.create_topic(p.TopicDraft(f"{name} {n}"))).guid)
            except RequestRefused as exc:
                refusals.append(exc.error)
                await asyncio.sleep(0.05)

    async with (
        live_server(tmp_path, store=postgres_url) as srv,
        person(srv, "ana") as ana,
        person(srv, "ben") as ben,
        aiohttp.ClientSession() as http,
    ):
        await srv.live.rooms.create("review", "Review", None, "test")  # a session nobody has opened yet
        review = mint_token(srv, "ana", "annotator", session="review")
        writers = [asyncio.create_task(write(cl, name)) for cl, name in ((ana, "ana"), (ben, "ben"))]
        await _until(lambda: len(acked) >= 20)
        postgres.stop(crash=True)  # as if killed: no goodbye to the clients
        await _until(lambda: len(refusals) >= 5)
        down = len(acked)
        async with http.get(f"{srv.url}/api/health") as r:
            health = (await r.json())["store"]
        assert health["reachable"] is False
        assert health["engine"] == "postgresql" and health["ok"] is False and "reconnects" in health["detail"]
        assert "PostgreSQL at " in health["last_error"] and PASSWORD not in str(health)
        assert health["url"] == f"postgresql://127.0.0.1:{postgres.port}/{postgres_url.rsplit('/', 1)[1]}"
        error = refusals[-1]
        assert error.code == p.ERR_NOT_SAVED and "PostgreSQL" in error.message and "unreachable" in error.message
        # Reads served from memory go on: the topics of the session, over REST.
        token = mint_token(srv, "ana", "annotator")
        url = f"{srv.url}/api/sessions/{srv.live.scene.id}/topics"
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 200 and len(await r.json()) >= down
        admin = {"Authorization": f"Bearer {mint_token(srv, 'root', 'admin')}"}
        async with http.get(f"{srv.url}/api/sessions/{srv.live.scene.id}/audit", headers=admin) as r:
            body = await r.json()  # not in memory: a clear 503
            assert r.status == 503 and body["error"] == "store_unavailable" and "PostgreSQL" in body["detail"]
        with pytest.raises(TwinClientError) as refused_join:  # its topics cannot be loaded: come back later
            async with TwinClient(srv.ws_url, token=review, reconnect=False):
                pass
        assert refused_join.value.code == p.CLOSE_GOING_AWAY and "store" in refused_join.value.reason
        await asyncio.sleep(1.5)
        assert len(acked) == down  # nothing acknowledged while it is down

        postgres.start()  # the same server comes back: the store reconnects by itself
        await _until(lambda: len(acked) >= down + 20, timeout=30)
        stop.set()
        await asyncio.gather(*writers)
        assert await _joins(srv.ws_url, review) == "review"  # once the poll has reconnected the reads (~1 s)
        health: dict[str, Any] = {}

        async def healthy() -> bool:  # the historian's events may have failed too: it tries again when asked
            nonlocal health
            async with http.get(f"{srv.url}/api/health") as r:
                health = await r.json()
            return health["status"] == "ok"

        deadline = time.monotonic() + 30
        while not await healthy() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert health["status"] == "ok" and health["store"]["reachable"] is True and health["store"]["ok"] is True

    with psycopg.connect(postgres_url) as check:
        stored = {row[0] for row in check.execute("SELECT guid FROM topics")}
    assert set(acked) <= stored  # nothing acknowledged was lost


async def test_health_follows_postgresql_down_and_back_without_waiting_for_a_write(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str
) -> None:
    async with (
        live_server(tmp_path, store=postgres_url) as srv,
        person(srv, "ana") as ana,
        aiohttp.ClientSession() as http,
    ):

        async def store_health() -> dict[str, Any]:
            async with http.get(f"{srv.url}/api/health") as r:
                return (await r.json())["store"]

        async def until_store(ok: bool) -> dict[str, Any]:
            deadline = time.monotonic() + 30
            while (health := await store_health())["ok"] is not ok:
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.2)
            return health

        postgres.stop(crash=True)
        down = await until_store(ok=False)  # seen by the probe, before any write
        assert down["reachable"] is False and "start PostgreSQL" in down["detail"]
        with pytest.raises(RequestRefused) as refused:
            await ana.create_topic(p.TopicDraft("while down"))
        assert refused.value.error.code == p.ERR_NOT_SAVED and srv.live.hub.store is not None
        writes = srv.live.hub.store.write_errors
        assert writes >= 1

        postgres.start()
        up = await until_store(ok=True)  # no write in between: the probe saw the database answer
        assert up["reachable"] is True and up["detail"] == "" and srv.live.hub.store.write_errors == writes
        assert (await ana.create_topic(p.TopicDraft("after"))).guid


def test_the_first_read_after_postgresql_restarted_is_answered_and_a_write_is_not_retried(
    postgres: PostgresServer, postgres_url: str
) -> None:
    db = PostgresDb(postgres_url)
    assert db.execute("SELECT 1").fetchone() == (1,)
    postgres.stop(crash=True)
    postgres.start()  # the connection db holds is dead now, which it learns only by using it
    assert db.execute("SELECT 2").fetchone() == (2,)  # retried once on a new connection
    postgres.stop(crash=True)
    postgres.start()
    with pytest.raises(StoreUnavailable):  # it may have been applied before the connection went: the caller decides
        db.execute("CREATE TEMPORARY TABLE t (x INTEGER)")
    db.close()


def test_the_password_can_come_from_pgpassword(
    tmp_path: Path, postgres: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.url(postgres_url.rsplit("/", 1)[1], password=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(StoreUnavailable, match=r"password authentication failed|no password supplied"):
        Store(tmp_path, url)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    store = Store(tmp_path, url)
    try:
        assert store.health().ok and store.health().url == url.replace("twinview@", "")
    finally:
        store.close()


def test_an_unreachable_postgresql_at_start_is_one_clear_line(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://twinview:{PASSWORD}@127.0.0.1:1/nothing"
    with pytest.raises(StoreUnavailable, match=re.escape("PostgreSQL at postgresql://127.0.0.1:1/nothing unreachable")):
        Store(tmp_path, url)
    for command in (["store", "migrate"], ["serve", str(write_scene(tmp_path)), "--data-dir", str(tmp_path / "d")]):
        assert cli.main([*command, "--store", url]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "unreachable" in err and PASSWORD not in err, err


async def _joins(url: str, token: str, timeout: float = 30.0) -> str:
    """The session a client joins, reconnecting after 1001 as a client does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with TwinClient(url, token=token, reconnect=False) as joined:
                assert joined.welcome is not None
                return joined.welcome.session
        except TwinClientError as exc:
            assert exc.code == p.CLOSE_GOING_AWAY and time.monotonic() < deadline, exc
            await asyncio.sleep(0.2)


async def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_a_row_locked_too_long_by_another_process_fails_the_write_instead_of_stalling_the_writer(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_db, "LOCK_TIMEOUT_MS", 300)
    store = Store(tmp_path, postgres_url)
    try:
        topic = Topic("t", "valve", "ana", 1.0)
        store.submit(lambda db: put_topic(db, "s", topic, expected=0)).result()
        with psycopg.connect(postgres_url) as other, other.transaction():  # another process, stuck mid-edit
            other.execute("SELECT * FROM topics WHERE guid = 't' FOR UPDATE")
            edit = msgspec.structs.replace(topic, revision=2)
            with pytest.raises(StoreError, match="lock timeout"):
                store.submit(lambda db: put_topic(db, "s", edit, expected=1)).result(timeout=30)
        store.submit(lambda db: put_topic(db, "s", edit, expected=1)).result(timeout=30)  # and then it goes on
        assert store.topic("s", "t") == edit
    finally:
        store.close()


def test_a_deadlock_with_another_process_is_contention_and_a_taken_key_a_conflict(postgres_url: str) -> None:
    Store(Path(tempfile.mkdtemp()), postgres_url).close()  # the tables
    one, two = connect(postgres_url), connect(postgres_url)
    for db in (one, two):
        db.begin()
    one.execute("INSERT INTO rooms VALUES ('a', 's', 'A', NULL, 1, 'x')")
    two.execute("INSERT INTO rooms VALUES ('b', 's', 'B', NULL, 1, 'x')")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # each waits for the other's key: a deadlock
        waits = [
            pool.submit(one.execute, "INSERT INTO rooms VALUES ('b', 's', 'B', NULL, 1, 'x')"),
            pool.submit(two.execute, "INSERT INTO rooms VALUES ('a', 's', 'A', NULL, 1, 'x')"),
        ]
        errors = [f.exception(timeout=30) for f in waits]
    assert sorted(type(e).__name__ for e in errors) == ["Contention", "NoneType"], errors  # one lost, one won
    winner, loser = (one, two) if errors[0] is None else (two, one)
    loser.rollback()
    winner.commit()
    with pytest.raises(Conflict):  # the key is taken now
        loser.execute("INSERT INTO rooms VALUES ('a', 's', 'A', NULL, 1, 'x')")
    for db in (one, two):
        db.close()


def _history_seen(historian: Historian, t0: float) -> tuple[object, ...]:
    """What a server reads of a history: samples, states, events, alarms and bindings over its two hours."""
    times = [t0 + s for s in (0, 31, 95, 3599, 3605, 7200)]
    return (
        sorted(historian.samples(t0 - 1, t0 + 2 * 3600)),
        [sorted(historian.state_at(t).items()) for t in times],
        historian.events(t0 - 1, t0 + 2 * 3600),
        [historian.alarms_at(t) for t in times],
        [historian.bindings_at(t) for t in times],
    )


def test_store_copy_moves_the_history_in_one_transaction_with_progress(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _history(data)  # a sealed hour (a Parquet chunk) and a tail in SQLite
    folder = data / "history" / SCENE
    h = Historian(folder, clock=lambda: HISTORY_T0 + 2 * 3600)
    h.append([Reading("C-1", "count", 3, "", HISTORY_T0 + 3600 + 7)], HISTORY_T0 + 3608, "gw").result()  # an int
    alarm = p.Alarm("rules[0]", "PT-1", since=HISTORY_T0 + 95, severity="alarm")
    h.record(p.Event(4, "alarm_raised", alarm.id, "PT-1", HISTORY_T0 + 95, alarm=alarm)).result()
    h.record_bindings("plant.bindings.yaml", b"version: 1\n", HISTORY_T0).result()
    expected = _history_seen(h, HISTORY_T0)
    h.close()
    assert expected[0] and expected[2] and expected[3][2] and expected[4][0]
    with contextlib.closing(sqlite3.connect(folder / "history.sqlite")) as db:  # kept before events had keys, and
        db.executescript("DROP INDEX events_key; ALTER TABLE events DROP COLUMN key;")  # a failover recorded one twice
        [(body,)] = db.execute("SELECT body FROM events").fetchall()
        again = msgspec.msgpack.encode(msgspec.structs.replace(msgspec.msgpack.decode(body, type=p.Event), seq=9))
        db.execute("INSERT INTO events (t, seq, kind, id, element, session, body) SELECT t, 9, kind, id, element,"
                   " session, ? FROM events", (again,))  # fmt: skip
        db.commit()

    copy = ["store", "copy", "--from", f"sqlite:{data}", "--to", postgres_url]
    [chunk] = (folder / "chunks").rglob("*.parquet")
    sealed = chunk.read_bytes()
    chunk.write_bytes(sealed[: len(sealed) // 2])  # unreadable: refused in one line, and nothing copied at all
    assert cli.main(copy) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 + sum("rows" in line for line in err) and "cannot be read" in err[-1], err
    assert not any(_contents(postgres_url).values())
    with psycopg.connect(postgres_url) as pg:
        assert pg.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'history_%'").fetchone() == (0,)

    chunk.write_bytes(sealed)
    assert cli.main(copy) == 0
    err = capsys.readouterr().err
    assert f"twinview: history {SCENE}: samples: 64 rows" in err and f"history {SCENE}: events: 1 rows" in err, err
    pg_history = Historian(tmp_path / "elsewhere" / SCENE, database=postgres_url)  # a server of the scene on it
    try:
        assert _history_seen(pg_history, HISTORY_T0) == expected
        count = pg_history.state_at(HISTORY_T0 + 3700)[("C-1", "count")].value
        assert (type(count), count) == (int, 3)
    finally:
        pg_history.close()
    assert cli.main(copy) == 2  # a target holding the history is refused, as one holding the store
    assert "history of plant" in capsys.readouterr().err
