"""A tiny live twin for server tests: a four-element scene, its bindings, and a running server.

The server runs in the test's process, or, for tests marked `deployable` in their `deployment` variant
(conftest.py parametrizes them), as a deployment of `twinview serve` processes behind HAProxy
(tests/deployment.py): the same test, through the load balancer of docs/DEPLOY.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from tests.deployment import Deployment, deployed
from tests.redis_server import redis_server
from viewer_server.auth import issue
from viewer_server.client import TwinClient
from viewer_server.permissions import Role
from viewer_server.serve import RunningServer, running_server
from viewer_server.store import Store

ServedBy = Literal["in-process", "deployment"]
SERVED_BY: ServedBy = "in-process"  # set per test by conftest.served_by
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
) -> AsyncIterator[RunningServer | Deployment]:
    """A real server on a free localhost port with its data dir root/data (its store there too unless
    `store=URL`); `procedures` is the text of a procedure file (YAML); `options` are further ServeOptions
    fields. In a test's `deployment` variant, DEPLOYED_PROCESSES processes behind HAProxy (a Deployment:
    url, ws_url), on `store` too."""
    procedure_file = root / "test.procedure.yaml"
    if procedures is not None:
        procedure_file.write_text(procedures)
    scene_dir = write_scene(root, elements)
    bindings_file = write_bindings(root, bindings) if bindings is not None else None
    if SERVED_BY == "deployment":
        store = options.pop("store", None)
        if port or simulate or options:
            raise TypeError("a deployment takes no port, simulate or ServeOptions fields: mark this test otherwise")
        flags = ["--bindings", str(bindings_file)] if bindings_file else []
        flags += ["--store", store] if store else []
        flags += ["--procedures", str(procedure_file)] if procedures is not None else []
        flags += ["--mqtt", mqtt_url] if mqtt_url else []
        with redis_server(root) as redis:
            async with deployed(root, scene_dir, DEPLOYED_PROCESSES, [*flags, "--bus", redis.url]) as deployment:
                yield deployment
        return
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


def mint_token(
    server: RunningServer | Deployment, user: str, role: Role, *, session: str | None = None, ttl_s: float = 3600
) -> str:
    """A join token signed by the server's secret (default: its scene's default session)."""
    secret = server.secret if isinstance(server, Deployment) else server.live.secret
    return issue(secret, session or scene_id(server), user, role, ttl_s)


def scene_id(server: RunningServer | Deployment) -> str:
    """The served scene's id, which is also its default session's."""
    return server.scene_id if isinstance(server, Deployment) else server.live.scene.id


def person(server: RunningServer | Deployment, user: str, role: Role) -> TwinClient:
    """A TwinClient joining the default session as `user` with `role` (through a minted token)."""
    return TwinClient(server.ws_url, name=user, token=mint_token(server, user, role))
