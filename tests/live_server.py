"""A tiny live twin for server tests: a four-element scene, its bindings, and a running server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from viewer_server.auth import issue
from viewer_server.client import TwinClient
from viewer_server.permissions import Role
from viewer_server.serve import RunningServer, running_server

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
) -> AsyncIterator[RunningServer]:
    """A real server on a free localhost port with its SQLite file under root/data; `procedures` is
    the text of a procedure file (YAML); `options` are further ServeOptions fields."""
    procedure_file = root / "test.procedure.yaml"
    if procedures is not None:
        procedure_file.write_text(procedures)
    async with running_server(
        write_scene(root, elements),
        bindings=write_bindings(root, bindings) if bindings is not None else None,
        mqtt_url=mqtt_url,
        host="127.0.0.1",
        port=port,
        data_dir=root / "data",
        simulate=simulate,
        procedures=procedure_file if procedures is not None else None,
        **options,
    ) as server:
        yield server


def mint_token(server: RunningServer, user: str, role: Role, *, session: str | None = None, ttl_s: float = 3600) -> str:
    """A join token signed by the running server's secret (default: its scene's default session)."""
    return issue(server.live.secret, session or server.live.scene.id, user, role, ttl_s)


def person(server: RunningServer, user: str, role: Role) -> TwinClient:
    """A TwinClient joining the default session as `user` with `role` (through a minted token)."""
    return TwinClient(server.ws_url, name=user, token=mint_token(server, user, role))
