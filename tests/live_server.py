"""A tiny live twin for server tests: a four-element scene, its bindings, and a running server.

The server runs in the test's process, or, for tests marked `deployable` in their `deployment` variant
(conftest.py parametrizes them), as a deployment of `twinview serve` processes behind HAProxy
(tests/deployment.py): the same test, through the load balancer of docs/DEPLOY.md.

Deployments are shared: the test session starts one per configuration (bindings, elements, procedures,
store engine, broker) at its first use and keeps it to the end (`DeploymentPool`), so a test costs its own
work, not three process starts. Each test gets a session of its own on it (`DeployedSession`: its links, its
anonymous visitors, its people, topics, procedure and presenter), as users of one scene do; the twin's
telemetry state is the scene's, shared with the tests before it, so a deployable test asserts what its own
readings change, not a pristine twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import aiohttp
import orjson

from tests.deployment import Deployment, deployed
from tests.postgres_server import PostgresServer
from tests.redis_server import redis_server
from viewer_server.auth import issue
from viewer_server.client import TwinClient
from viewer_server.permissions import Role
from viewer_server.serve import RunningServer, running_server
from viewer_server.store import Store

ServedBy = Literal["in-process", "deployment"]
SERVED_BY: ServedBy = "in-process"  # set per test by conftest.served_by
StoreEngine = Literal["sqlite", "postgresql"]
T = TypeVar("T")
# Processes of the `deployment` variant, on one Redis (`serve --bus`), behind the proxy.
DEPLOYED_PROCESSES: Final = 3

ELEMENTS = [
    {"id": "P-1", "name": "Pump 1", "class": "IfcPump", "parent": None},
    {"id": "PT-1", "name": "Pressure transmitter 1", "class": "IfcSensor", "parent": "P-1"},
    {"id": "LT-1", "name": "Level transmitter 1", "class": "IfcSensor", "parent": None},
    {"id": "PIPE-1", "name": "Discharge pipe", "class": "IfcPipeSegment", "parent": None},
    {"id": "T-1", "name": "Wet well", "class": "IfcTank", "parent": None},
]

BINDINGS = """\
version: 1
default_layer: operations
bindings:
  - {element: PT-1, prop: pressure, unit: bar, range: [-1, 16], topic: plant/PT-1/telemetry, key: PT-1.pressure}
  - {element: P-1, prop: running, kind: bool, topic: plant/P-1/state, path: $.running, key: P-1.running}
  - {element: LT-1, prop: level, unit: "%", topic: plant/LT-1/telemetry, key: LT-1.level}
  - {element: P-1, prop: mode, kind: string, key: P-1.mode}
layers:
  operations:
    rules:
      - {kind: ramp, element: PT-1, prop: pressure, target: PIPE-1, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}
      - {kind: thresholds, element: PT-1, prop: pressure, target: P-1, warning: {high: 5.0}, alarm: {high: 5.5}}
      - {kind: label, element: PT-1, prop: pressure, template: "{value:.2f} {unit}"}
  energy:
    rules:
      - {kind: thresholds, element: LT-1, prop: level, target: T-1, alarm: {high: 95}}
"""
# The header every JSON body needs (415 without it: viewer_server.http_edge).
JSON_BODY = {"Content-Type": "application/json"}


def write_scene(root: Path, elements: list[dict] | None = None) -> Path:
    """A SCENE_DIR with a manifest and a dummy GLB (the server only serves it)."""
    scene_dir = root / "pump-test"
    scene_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": "twinview-manifest",
        "version": 1,
        "elements": [
            {"bbox": [[0, 0, 0], [1, 1, 1]], "triangles": 12, "properties": {}, **el} for el in elements or ELEMENTS
        ],
        "stats": {"elements": len(elements or ELEMENTS)},
        "inputs": [],
        "warnings": [],
    }
    (scene_dir / "manifest.json").write_bytes(orjson.dumps(manifest))
    (scene_dir / "scene.glb").write_bytes(b"glTF\x02\x00\x00\x00" + b"\x00" * 12)
    return scene_dir


def write_bindings(root: Path, text: str = BINDINGS) -> Path:
    path = root / "test.bindings.yaml"
    path.write_text(text)
    return path


@dataclass(frozen=True)
class DeploymentConfig:
    """What makes two tests' deployments different: a test gets a deployment of its configuration."""

    bindings: str | None
    elements: bytes  # the manifest's elements as JSON (hashable)
    procedures: str | None  # the procedure file's text
    store: StoreEngine
    mqtt_url: str | None
    owner: str = ""  # "": shared; else the one test (node id) it is for, stopped after it (`stop_owned`)


class DeploymentPool:
    """The test session's deployments: one per configuration, started at its first use, stopped at the end;
    a test's own (a fresh twin, a broker of its own) stopped after that test.

    They are started from a thread of the pool's own, with an event loop of its own, because a test asks for
    one from inside its event loop; that thread lives as long as the pool, and the processes, Redis and
    HAProxy die with it (PR_SET_PDEATHSIG is the starting thread's)."""

    def __init__(self, root: Path, postgres: Callable[[], PostgresServer]) -> None:
        """`postgres`: the session's PostgreSQL (called on the test's thread, when a configuration needs it)."""
        self._root = root
        self._postgres = postgres
        self._deployments: dict[DeploymentConfig, Deployment] = {}
        self._engines: dict[DeploymentConfig, contextlib.AsyncExitStack] = {}
        self._started = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="deployments", daemon=True)
        self._thread.start()

    def database(self, config: DeploymentConfig) -> str | None:
        """A fresh PostgreSQL database for a configuration not started yet that needs one (the test's thread)."""
        if config.store != "postgresql" or config in self._deployments:
            return None
        postgres = self._postgres()
        return postgres.url(postgres.create_database())

    def get(self, config: DeploymentConfig, store_url: str | None) -> Deployment:
        """The deployment of `config` (on `store_url` if it starts now); blocks while it starts."""
        with self._lock:
            if config not in self._deployments:
                start = self._start(config, store_url)
                self._deployments[config] = asyncio.run_coroutine_threadsafe(start, self._loop).result()
            return self._deployments[config]

    async def _start(self, config: DeploymentConfig, store_url: str | None) -> Deployment:
        root = self._root / f"deployment-{next(self._started)}"
        root.mkdir()
        scene_dir = write_scene(root, orjson.loads(config.elements))
        flags = ["--bindings", str(write_bindings(root, config.bindings))] if config.bindings is not None else []
        if config.procedures is not None:
            procedure_file = root / "test.procedure.yaml"
            procedure_file.write_text(config.procedures)
            flags += ["--procedures", str(procedure_file)]
        flags += ["--store", store_url] if store_url else []
        flags += ["--mqtt", config.mqtt_url] if config.mqtt_url else []
        engines = self._engines[config] = contextlib.AsyncExitStack()
        redis = engines.enter_context(redis_server(root))
        options = [*flags, "--bus", redis.url]
        return await engines.enter_async_context(deployed(root, scene_dir, DEPLOYED_PROCESSES, options))

    def _stop(self, config: DeploymentConfig) -> None:
        """kill -9 its processes, then stop Redis and HAProxy: the deployment is thrown away, and a graceful stop
        (tests/test_deployment.py checks it) took up to its 10 s bound per process late in a loaded suite run."""
        for process in self._deployments.pop(config).processes:
            process.kill()
        asyncio.run_coroutine_threadsafe(self._engines.pop(config).aclose(), self._loop).result()

    def stop_owned(self, owner: str) -> None:
        """Stop the deployments that were `owner`'s own."""
        with self._lock:
            for config in [c for c in self._deployments if c.owner == owner]:
                self._stop(config)

    def close(self) -> None:
        with self._lock:
            for config in list(self._deployments):
                self._stop(config)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


DEPLOYMENTS: DeploymentPool | None = None  # set for a test's [deployment] variant by conftest.served_by
CURRENT_TEST = ""  # the node id of the [deployment] variant running now (conftest.served_by)
FRESH_TWIN = False  # whether it needs a twin of its own (marked `fresh_twin`)
_SESSIONS: Final = itertools.count(1)


@dataclass(frozen=True)
class DeployedSession:
    """One test's share of a shared deployment: its proxy and processes, and a session of the scene that is the
    test's own. Its `ws_url` names that session (`?session=`), so anonymous visitors join it too."""

    deployment: Deployment
    session: str

    @classmethod
    async def open(cls, deployment: Deployment) -> DeployedSession:
        """A new session, open to anonymous visitors as viewers (as the default session is)."""
        session = f"test-{next(_SESSIONS)}"
        await _create_session(deployment.url, deployment.secret, deployment.scene_id, session, "viewer")
        return cls(deployment, session)

    @property
    def url(self) -> str:
        return self.deployment.url

    @property
    def ws_url(self) -> str:
        return f"{self.deployment.ws_url}?session={self.session}"

    @property
    def secret(self) -> bytes:
        return self.deployment.secret

    @property
    def scene_id(self) -> str:
        return self.deployment.scene_id


@contextlib.asynccontextmanager
async def live_server(
    root: Path,
    *,
    mqtt_url: str | None = None,
    simulate: bool = False,
    bindings: str | None = BINDINGS,
    elements: list[dict] | None = None,
    port: int = 0,
    procedures: str | None = None,
    **options: Any,
) -> AsyncIterator[Served]:
    """A real server on a free localhost port with its data dir root/data (its store there too unless
    `store=URL`); `procedures` is the text of a procedure file (YAML); `options` are further ServeOptions
    fields. In a test's `deployment` variant, the shared deployment of this configuration (DeploymentPool:
    DEPLOYED_PROCESSES processes on one Redis behind HAProxy, on PostgreSQL if `store` is) and a session of
    the test's own on it (DeployedSession: url, ws_url, secret)."""
    if SERVED_BY == "deployment":
        store = options.pop("store", None)
        if port or simulate or options:
            raise TypeError("a deployment takes no port, simulate or ServeOptions fields: mark this test otherwise")
        if DEPLOYMENTS is None:
            raise RuntimeError("no deployment pool: the `served_by` fixture (conftest.py) sets it for [deployment]")
        engine: StoreEngine = "postgresql" if store else "sqlite"
        owner = CURRENT_TEST if FRESH_TWIN or mqtt_url else ""  # a broker is the test's own (its fixture's)
        config = DeploymentConfig(bindings, orjson.dumps(elements or ELEMENTS), procedures, engine, mqtt_url, owner)
        deployment = await asyncio.to_thread(DEPLOYMENTS.get, config, DEPLOYMENTS.database(config))
        yield await DeployedSession.open(deployment)
        return
    procedure_file = root / "test.procedure.yaml"
    if procedures is not None:
        procedure_file.write_text(procedures)
    scene_dir = write_scene(root, elements)
    bindings_file = write_bindings(root, bindings) if bindings is not None else None
    async with running_server(
        scene_dir,
        bindings=bindings_file,
        mqtt_url=mqtt_url,
        host="127.0.0.1",
        port=port,
        data_dir=root / "data",
        simulate=simulate,
        procedures=procedure_file if procedures is not None else None,
        **options,
    ) as server:
        yield server


def store_rows(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of `sql` on the server's store (either backend), read on its writer thread after what is queued."""
    return store.submit(lambda db: db.execute(sql, params).fetchall()).result()


Served = RunningServer | DeployedSession


def mint_token(server: Served, user: str, role: Role, *, session: str | None = None, ttl_s: float = 3600) -> str:
    """A join token signed by the server's secret (default: the test's session, see `session_id`)."""
    return issue(server_secret(server), session or session_id(server), user, role, ttl_s)


async def new_session(server: Served, name: str, anonymous_role: Role | None = None) -> str:
    """A session of the scene made by an admin over REST (through the proxy on a deployment); its id: `name`, or
    on a shared deployment `name` after the test's own session, unique among the tests sharing it."""
    session = f"{server.session}.{name}" if isinstance(server, DeployedSession) else name
    await _create_session(server.url, server_secret(server), scene_id(server), session, anonymous_role)
    return session


async def _create_session(url: str, secret: bytes, scene: str, session: str, anonymous_role: Role | None) -> None:
    admin = issue(secret, scene, "harness-admin", "admin", 600)  # an admin of the default session
    body = {"id": session, "anonymous_role": anonymous_role}
    headers = {"Authorization": f"Bearer {admin}"}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/sessions", json=body, headers=headers) as r:
        if r.status != 201:
            raise RuntimeError(f"could not make session {session!r}: {r.status} {await r.text()}")


def server_secret(server: Served) -> bytes:
    """The secret join tokens are signed with (the deployment's processes share one)."""
    return server.secret if isinstance(server, DeployedSession) else server.live.secret


def scene_id(server: Served) -> str:
    """The served scene's id, which is also its default session's."""
    return server.scene_id if isinstance(server, DeployedSession) else server.live.scene.id


def session_id(server: Served) -> str:
    """The test's session: the scene's default session in process, a session of the test's own on a shared
    deployment (DeployedSession)."""
    return server.session if isinstance(server, DeployedSession) else server.live.scene.id


async def process_healths(server: Served) -> list[dict]:
    """/api/health of each process serving the test: one in process, each of the deployment's (asked directly,
    not through the proxy). Its counts (clients, publishers, accepted, rejected) are that process's own."""
    urls = [proc.url for proc in server.deployment.processes] if isinstance(server, DeployedSession) else [server.url]
    async with aiohttp.ClientSession() as http:
        answers = []
        for url in urls:
            async with http.get(f"{url}/api/health") as r:
                answers.append(await r.json())
        return answers


async def numbered(server: Served) -> int:
    """The last seq the scene has numbered as far as the test can know: the hub's in process, on a deployment
    the highest any process has applied from the log."""
    if isinstance(server, DeployedSession):
        return max(h["seq"] for h in await process_healths(server))
    return server.live.hub.seq


async def eventually(read: Callable[[], Awaitable[T]], holds: Callable[[T], bool], timeout: float = 10.0) -> T:
    """`read()` again until what it answers `holds` (and return that), at most `timeout` seconds, then fail with
    the last answer. On a deployment a read served by another process than the write's may lag the write by
    the time the log takes to reach that process (docs/DEPLOY.md); in process the first read holds."""
    deadline = time.monotonic() + timeout
    while not holds(answer := await read()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still {answer!r} after {timeout} s")
        await asyncio.sleep(0.02)
    return answer


async def get_json(server: Served, path: str, token: str | None = None) -> Any:
    """GET `path` (through the proxy on a deployment), 200 expected, as JSON; with `token` as the bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}{path}", headers=headers) as r:
        assert r.status == 200, f"GET {path}: {r.status} {await r.text()}"
        return await r.json()


def person(server: Served, user: str, role: Role) -> TwinClient:
    """A TwinClient joining the test's session as `user` with `role` (through a minted token)."""
    return TwinClient(server.ws_url, name=user, token=mint_token(server, user, role))
