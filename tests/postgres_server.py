"""A real PostgreSQL 15 (Debian's) for tests: one server per test session, one database per test.

`initdb` in a temporary dir, `postgres` on a free port of 127.0.0.1 with its socket in that dir. PostgreSQL
refuses to run as root, and tests run as root on CI: then it runs as `nobody`, which a bare Debian has,
in a dir handed over to it. The server dies with the test process however that ends (`PR_SET_PDEATHSIG`,
see scene.lifeline), and its dir is removed at the end of the session.

Fixtures (import them into the test module): `postgres` (the session's server; skips with the reason when
PostgreSQL is not installed), `postgres_url` (a fresh database for the test: postgresql://USER:PASSWORD@…),
`store_url` (parametrized: None — the SQLite file in the data dir — and a fresh PostgreSQL database, so that
a test taking it runs on both backends).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest

from scene.lifeline import die_with_parent
from tests.mosquitto import free_port

PG_BIN: Final = Path("/usr/lib/postgresql/15/bin")
USER: Final = "twinview"
PASSWORD: Final = "s3cret-test-pw"
START_TIMEOUT_S: Final = 30.0
# For speed: no fsync (an operating system crash is not what tests simulate); commits stay synchronous, so a
# PostgreSQL killed with SIGQUIT (an immediate stop) keeps every commit it acknowledged.
SETTINGS: Final = ("fsync=off", "full_page_writes=off", "max_connections=200", "shared_buffers=16MB")


class PostgresServer:
    """One PostgreSQL cluster in `root`: start, stop (as a crash or cleanly), fresh databases."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._initdb()

    def _run_as_owner(self, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        parent = os.getpid()
        user = self.owner.pw_name if self.owner else None
        return subprocess.Popen(args, user=user, preexec_fn=lambda: die_with_parent(parent), **kw)  # type: ignore[call-overload]

    def _initdb(self) -> None:
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD)
        if self.owner is not None:
            os.chown(pwfile, self.owner.pw_uid, self.owner.pw_gid)
        args = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8"]
        args += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"]
        proc = self._run_as_owner(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=120)
        pwfile.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.decode(errors='replace')}")

    def start(self) -> None:
        """Start (again) on the same port and data. Call it from the main thread: the server dies with the
        thread that started it."""
        args = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root)]
        args += ["-c", "listen_addresses=127.0.0.1"] + [a for s in SETTINGS for a in ("-c", s)]
        log = (self.root / "postgres.log").open("ab")
        self.proc = self._run_as_owner(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.admin_dsn, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.root / "postgres.log").read_text()[-2000:]
                    raise RuntimeError(f"postgres did not start: {log_text}") from None
                time.sleep(0.1)

    def stop(self, *, crash: bool = False) -> None:
        """Stop: `crash` is an immediate stop (SIGQUIT: no checkpoint, as if killed), else a fast one (SIGINT)."""
        if self.proc is None:
            return
        self.proc.send_signal(3 if crash else 2)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def admin_dsn(self) -> str:
        return f"host={self.root} port={self.port} user={USER} dbname=postgres"

    def url(self, database: str, *, password: bool = True) -> str:
        secret = f":{PASSWORD}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"t{next(self._names)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    if not (PG_BIN / "postgres").is_file():
        pytest.skip(f"PostgreSQL 15 not installed at {PG_BIN} (apt-get install postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("PostgreSQL refuses to run as root, and there is no user `nobody` to run it as")
    root = Path(tempfile.mkdtemp(prefix="twinview-pg-"))
    try:
        server = PostgresServer(root)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    if postgres.proc is None:  # a test that stopped it failed before starting it again
        postgres.start()
    name = postgres.create_database()
    yield postgres.url(name)
    if postgres.proc is None:
        postgres.start()
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None (the SQLite file in the data dir) or a fresh PostgreSQL database: a test taking it runs on both."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")
