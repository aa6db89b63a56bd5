"""Helpers for the browser tests: a synthetic twin (GLB + manifest), a headless Chromium launcher and
screenshot artefacts.

The synthetic twin follows the scene contract the server serves: one glTF node per element, node name =
twin id, ``extras = {id, name, class}``, Y-up metres, node hierarchy = spatial tree (site → storeys →
elements), and a ``manifest.json`` with per-element ``{id, name, class, parent, bbox, triangles, properties}``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
DOCS_IMG = REPO / "docs" / "img"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]

# Element classes of the synthetic plant, each with its own material colour (so batching has >1 group).
CLASSES = {
    "IfcPump": (0.55, 0.60, 0.68),
    "IfcPipeSegment": (0.70, 0.70, 0.72),
    "IfcTank": (0.62, 0.66, 0.58),
    "IfcValve": (0.68, 0.58, 0.52),
}

# Unit cube: 24 vertices (flat normals) and 36 indices.
_FACES = [
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
]
# How long a browser test waits for a condition: generous, because a loaded 2-core machine (CI, or other
# suites beside it) can take seconds to render a frame; a condition that never comes still fails.
WAIT_MS = 30_000


def _unit_box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos, nrm, idx = [], [], []
    for n, u, v in _FACES:
        n, u, v = np.array(n, float), np.array(u, float), np.array(v, float)
        base = len(pos)
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            pos.append(0.5 * (n + su * u + sv * v))
            nrm.append(n)
        idx += [base, base + 1, base + 2, base, base + 2, base + 3]
    return np.array(pos, np.float32), np.array(nrm, np.float32), np.array(idx, np.uint16)


@dataclass
class SyntheticTwin:
    """A generated scene: where its files are and what is in them."""

    directory: Path
    ids: list[str]
    names: dict[str, str]
    centers: dict[str, tuple[float, float, float]]
    manifest: dict = field(repr=False)

    @property
    def glb(self) -> Path:
        return self.directory / "scene.glb"


def element_id(i: int) -> str:
    return f"el-{i:05d}"


SCAN_ID = "scan-0"


def make_twin(
    directory: Path, count: int = 24, names: dict[int, str] | None = None, scan_points: int = 0
) -> SyntheticTwin:
    """Write ``scene.glb`` and ``manifest.json`` with ``count`` boxes laid out on a grid (one node each).

    ``names`` overrides element names by index (e.g. to inject markup that must render as text);
    ``scan_points`` > 0 adds a point-cloud element ``SCAN_ID`` (a POINTS primitive) above the grid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = names or {}
    box_pos, box_nrm, box_idx = _unit_box()
    side = int(np.ceil(np.sqrt(count)))
    pitch = 1.5
    storeys = 2
    class_names = list(CLASSES)

    nodes: list[dict] = [
        {"name": "site", "extras": {"id": "site", "name": "Pump station", "class": "IfcSite"}, "children": []}
    ]
    for s in range(storeys):
        nodes[0]["children"].append(len(nodes))
        nodes.append(
            {
                "name": f"storey-{s}",
                "children": [],
                "extras": {"id": f"storey-{s}", "name": f"Level {s}", "class": "IfcBuildingStorey"},
            }
        )
    materials = [
        {
            "name": c,
            "pbrMetallicRoughness": {"baseColorFactor": [*rgb, 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8},
        }
        for c, rgb in CLASSES.items()
    ]
    meshes, accessors, views = [], [], []
    blob = bytearray()

    def add_view(data: bytes, target: int) -> int:
        while len(blob) % 4:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), "target": target})
        blob.extend(data)
        return len(views) - 1

    manifest_elements = []
    ids, name_of, centers = [], {}, {}
    rng = np.random.default_rng(7)
    for i in range(count):
        eid = element_id(i)
        cls = class_names[i % len(class_names)]
        gx, gz = i % side, i // side
        size = np.array([0.6 + 0.4 * rng.random(), 0.5 + 1.5 * rng.random(), 0.6 + 0.4 * rng.random()], np.float32)
        # Geometry is in local coordinates around the origin; the node translation places it.
        pos = box_pos * size
        center = (float(gx * pitch), float(size[1] / 2), float(gz * pitch))
        pv = add_view(pos.tobytes(), 34962)
        nv = add_view(box_nrm.tobytes(), 34962)
        iv = add_view(box_idx.tobytes(), 34963)
        accessors += [
            {
                "bufferView": pv,
                "componentType": 5126,
                "count": 24,
                "type": "VEC3",
                "min": pos.min(0).tolist(),
                "max": pos.max(0).tolist(),
            },
            {"bufferView": nv, "componentType": 5126, "count": 24, "type": "VEC3"},
            {"bufferView": iv, "componentType": 5123, "count": 36, "type": "SCALAR"},
        ]
        a = len(accessors) - 3
        meshes.append(
            {
                "primitives": [
                    {"attributes": {"POSITION": a, "NORMAL": a + 1}, "indices": a + 2, "material": i % len(class_names)}
                ]
            }
        )
        name = names.get(i, f"{cls[3:]} {i}")
        storey = 1 + (i * storeys) // count
        nodes[storey]["children"].append(len(nodes))
        nodes.append(
            {
                "name": eid,
                "mesh": len(meshes) - 1,
                "translation": list(center),
                "extras": {"id": eid, "name": name, "class": cls},
            }
        )
        ids.append(eid)
        name_of[eid] = name
        centers[eid] = center
        half = size / 2
        manifest_elements.append(
            {
                "id": eid,
                "name": name,
                "class": cls,
                "parent": f"storey-{storey - 1}",
                "bbox": [
                    [center[k] - float(half[k]) for k in range(3)],
                    [center[k] + float(half[k]) for k in range(3)],
                ],
                "triangles": 12,
                "properties": {
                    "Pset_Identity": {"Tag": f"P-{i:03d}", "Manufacturer": "ACME"},
                    "Pset_Design": {"NominalFlow": {"value": 12.5, "unit": "m3/h"}, "RatedPower": 15.0},
                },
                "units": {"Pset_Design": {"RatedPower": "kW"}},  # as `twinview build` writes an IFC measure's
            }
        )
    spatial = [
        {
            "id": "site",
            "name": "Pump station",
            "class": "IfcSite",
            "parent": None,
            "bbox": None,
            "triangles": 0,
            "properties": {},
        }
    ]
    spatial += [
        {
            "id": f"storey-{s}",
            "name": f"Level {s}",
            "class": "IfcBuildingStorey",
            "parent": "site",
            "bbox": None,
            "triangles": 0,
            "properties": {},
        }
        for s in range(storeys)
    ]

    if scan_points:
        pts = (rng.random((scan_points, 3)) * [side * pitch, 0.5, side * pitch]).astype(np.float32)
        pv = add_view(pts.tobytes(), 34962)
        accessors.append(
            {
                "bufferView": pv,
                "componentType": 5126,
                "count": scan_points,
                "type": "VEC3",
                "min": pts.min(0).tolist(),
                "max": pts.max(0).tolist(),
            }
        )
        meshes.append({"primitives": [{"attributes": {"POSITION": len(accessors) - 1}, "mode": 0, "material": 0}]})
        nodes[0]["children"].append(len(nodes))
        nodes.append(
            {
                "name": SCAN_ID,
                "mesh": len(meshes) - 1,
                "translation": [0.0, 3.0, 0.0],
                "extras": {"id": SCAN_ID, "name": "Laser scan", "class": "PointCloud"},
            }
        )
        manifest_elements.append(
            {
                "id": SCAN_ID,
                "name": "Laser scan",
                "class": "PointCloud",
                "parent": "site",
                "bbox": [[0.0, 3.0, 0.0], [side * pitch, 3.5, side * pitch]],
                "triangles": 0,
                "properties": {},
            }
        )

    while len(blob) % 4:
        blob.append(0)
    gltf = {
        "asset": {"version": "2.0", "generator": "twinview tests/web_helpers.py"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": materials,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    _write_glb(directory / "scene.glb", gltf, bytes(blob))
    manifest = {
        "format": "twinview-manifest",
        "version": 1,
        "elements": spatial + manifest_elements,
        "stats": {"elements": len(spatial) + count},
        "inputs": [],
        "warnings": [],
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return SyntheticTwin(directory, ids, name_of, centers, manifest)


def _write_glb(path: Path, gltf: dict, blob: bytes) -> None:
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    with path.open("wb") as f:
        f.write(struct.pack("<III", 0x46546C67, 2, total))
        f.write(struct.pack("<II", len(js), 0x4E4F534A) + js)
        f.write(struct.pack("<II", len(blob), 0x004E4942) + blob)


# Bindings of the synthetic twin: element 0 carries a pressure coloured blue -> red on itself,
# element 1 a temperature with thresholds (status + alarm), element 2 a label, element 3 moves up with
# its position, element 4 shows only while its level is below 50; energy is a second layer.
BINDINGS = """\
version: 1
default_layer: operations
bindings:
  - {element: el-00000, prop: pressure, unit: bar, range: [-1, 16], key: el-00000.pressure}
  - {element: el-00001, prop: temperature, unit: degC, range: [-40, 200], key: el-00001.temperature}
  - {element: el-00002, prop: flow, unit: m3/h, range: [0, 500], key: el-00002.flow}
  - {element: el-00003, prop: position, unit: "%", range: [0, 100], key: el-00003.position}
  - {element: el-00004, prop: level, unit: "%", range: [0, 100], key: el-00004.level}
layers:
  operations:
    rules:
      - {kind: ramp, element: el-00000, prop: pressure, min: 0, max: 6, colors: ["#0000ff", "#ff0000"]}
      - {kind: thresholds, element: el-00001, prop: temperature, warning: {high: 50}, alarm: {high: 80}}
      - {kind: label, element: el-00002, prop: flow, template: "{value:.0f} {unit}"}
      - {kind: transform, element: el-00003, prop: position, mode: translate, axis: [0, 1, 0], scale: 0.01,
         min: 0, max: 1}
      - {kind: visibility, element: el-00004, prop: level, when: {op: "<", value: 50}}
  energy:
    rules:
      - {kind: ramp, element: el-00002, prop: flow, min: 0, max: 500, colors: ["#00ff00", "#ff00ff"]}
"""


def build_scene(*args: str) -> None:
    """`twinview build ARGS` as a user runs it: the real CLI, in a process of its own."""
    subprocess.run([sys.executable, "-m", "viewer_server.cli", "build", *args, "-q"], check=True, timeout=600)


def build_client() -> None:
    """Bundle web_client/ into dist/ (what the server serves), once per test session: no test changes the
    client's sources, and every browser test module and fixture asks for it (esbuild and node's start-up take
    about a second each time under load)."""
    if not (REPO / "web_client" / "node_modules" / "three").is_dir():
        pytest.skip("web_client/node_modules is missing: run setup.sh (npm ci)")
    _bundle_client()


@functools.cache
def _bundle_client() -> None:
    subprocess.run(["node", "build.mjs"], cwd=REPO / "web_client", check=True, capture_output=True)


@dataclass
class LiveServer:
    """A real TwinView server running in a background thread, for a browser to talk to."""

    url: str
    server: object

    def ingest(self, readings: list[dict]) -> dict:
        """POST /api/ingest, as any producer would."""
        req = urllib.request.Request(
            f"{self.url}/api/ingest",
            data=json.dumps({"readings": readings}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as res:
            return json.loads(res.read())


@dataclass
class LiveTwin(LiveServer):
    """The synthetic twin, served."""

    twin: SyntheticTwin


@contextmanager
def serve_scene(
    scene_dir: Path,
    bindings: Path,
    data_dir: Path,
    simulate: bool = False,
    port: int = 0,
    procedures: Path | None = None,
) -> Iterator[LiveServer]:
    """Run `viewer_server.serve.running_server` on localhost (port 0: a free one) until the block ends."""
    from viewer_server.serve import running_server

    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def main() -> None:
        holder["stop"] = asyncio.Event()
        try:
            async with running_server(
                scene_dir,
                bindings=bindings,
                mqtt_url=None,
                host="127.0.0.1",
                port=port,
                data_dir=data_dir,
                simulate=simulate,
                procedures=procedures,
            ) as srv:
                holder["server"] = srv
                started.set()
                await holder["stop"].wait()
        finally:
            started.set()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        finally:  # the loop's worker threads (asyncio.to_thread) end with it, not with the test process
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(60)
    if "server" not in holder:
        raise RuntimeError("the TwinView server did not start")
    try:
        yield LiveServer(holder["server"].url, holder["server"])
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(15)


@contextmanager
def live_twin(
    root: Path,
    count: int = 24,
    names: dict[int, str] | None = None,
    bindings: str = BINDINGS,
    scan_points: int = 0,
    procedure: str | None = None,
) -> Iterator[LiveTwin]:
    """The synthetic twin of ``count`` elements (see make_twin) with ``bindings`` (and a ``procedure``
    file's text, if given), served by the real server."""
    twin = make_twin(root / "synthetic", count, names, scan_points)
    (root / "twin.bindings.yaml").write_text(bindings)
    procedures = None
    if procedure is not None:
        procedures = root / "twin.procedure.yaml"
        procedures.write_text(procedure)
    with serve_scene(twin.directory, root / "twin.bindings.yaml", root / "data", procedures=procedures) as srv:
        yield LiveTwin(srv.url, srv.server, twin)


def open_viewer(target, url: str, width: int = 1280, height: int = 800):
    """A page (of a browser, or of a context that set its own viewport) on the viewer, once the model
    is loaded; uncaught page errors and what the Content-Security-Policy blocked are collected in page.errors."""
    is_browser = hasattr(target, "new_context")
    page = target.new_page(viewport={"width": width, "height": height}) if is_browser else target.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(url)
    page.evaluate("window.twinview.ready")
    return page


# A predicate that is a function: `function …`, `async …`, `(a, b) => …` or `a => …` (not an expression that
# merely contains one, such as `(() => x)().y`).
_FUNCTION = re.compile(r"\s*(?:async\b|function\b|\([^()]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)")


def _predicates_without_eval() -> None:
    """The server's Content-Security-Policy forbids `eval`, and Playwright's `wait_for_function` evaluates a
    predicate given as an expression with `eval` (one given as a function it does not): make the tests'
    expressions functions, so the pages run under the policy the server really sends."""
    from playwright.sync_api import Page

    original = Page.wait_for_function
    if getattr(original, "wraps_expressions", False):
        return

    @functools.wraps(original)
    def wait_for_function(self: Page, expression: str, *args: object, **kwargs: object) -> object:
        if not _FUNCTION.match(expression):
            expression = f"() => ({expression})"
        return original(self, expression, *args, **kwargs)  # type: ignore[arg-type]

    wait_for_function.wraps_expressions = True  # type: ignore[attr-defined]
    Page.wait_for_function = wait_for_function  # type: ignore[method-assign]


@contextmanager
def chromium_browser() -> Iterator:
    """Debian's Chromium, headless, rendering WebGL through SwiftShader. Every WebSocket frame its pages send
    or receive is checked against the protocol (PROTOCOL_FRAMES): after each test, and when it closes."""
    from playwright.sync_api import sync_playwright

    _predicates_without_eval()
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (setup.sh installs Debian's)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        PROTOCOL_FRAMES.watch_browser(browser)
        try:
            yield browser
        finally:
            browser.close()
    PROTOCOL_FRAMES.check()


@contextmanager
def closing_contexts(browser) -> Iterator:
    """The module's browser (the `browser` fixture) for one test: the contexts the test opens are closed when
    it ends, so the next one starts with none of them, as on a browser of its own (whose launch takes a
    second or more under load)."""
    before = set(browser.contexts)
    try:
        yield browser
    finally:
        for context in browser.contexts:
            if context not in before:
                context.close()


def screenshot(page, name: str) -> Path:
    """Save a screenshot into test-artifacts/ (git-ignored) and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def publish(shot: Path, name: str) -> None:
    """Refresh a README image (docs/img/<name>.png) from a test screenshot, when asked to with
    TWINVIEW_UPDATE_SCREENSHOTS=1: a plain test run must not leave the working tree modified."""
    if os.environ.get("TWINVIEW_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, DOCS_IMG / f"{name}.png")


def non_background_pixels(png: bytes, background: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels of a PNG differ from the background colour by more than ``tolerance``."""
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(img - np.array(background)).max(axis=2) > tolerance).sum())


@dataclass
class FrameLog:
    """Every WebSocket frame the pages it watches send and receive (the web client speaks JSON text)."""

    sent: list[dict] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)

    def watch(self, page) -> None:
        def on_socket(ws) -> None:
            ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
            ws.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

        page.on("websocket", on_socket)


PROTOCOL_SCHEMA = REPO / "docs" / "protocol.schema.json"


@functools.cache
def _message_validators() -> dict[str, dict[str, jsonschema.Draft202012Validator]]:
    """Per direction ("sent": ClientMessage, "received": ServerMessage), a validator per message type, chosen
    by the union's discriminator: an invalid frame is then reported against its own type, at its own path."""
    defs = json.loads(PROTOCOL_SCHEMA.read_text())["$defs"]
    validators = {}
    for direction, union in (("sent", "ClientMessage"), ("received", "ServerMessage")):
        mapping = defs[union]["discriminator"]["mapping"]
        validators[direction] = {
            tag: jsonschema.Draft202012Validator({"$ref": ref, "$defs": defs}) for tag, ref in mapping.items()
        }
    return validators


def frame_problem(direction: str, payload: str | bytes) -> str | None:
    """Why a frame the page sent or received is not protocol v1 (docs/protocol.schema.json), or None."""
    try:
        frame = json.loads(payload)
    except ValueError:
        return f"{direction} frame is not JSON text: {payload[:80]!r}"
    kind = frame.get("type") if isinstance(frame, dict) else None
    validator = _message_validators()[direction].get(kind) if isinstance(kind, str) else None
    if validator is None:
        return f"{direction} frame has no message type of its direction: type {kind!r}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(frame))
    if error is None:
        return None
    path = "/".join(str(part) for part in error.absolute_path) or "(the message)"
    return f"{direction} {kind} frame does not match {PROTOCOL_SCHEMA.name} at {path}: {error.message}"


class ProtocolFrames:
    """The WebSocket frames of every page of every browser the tests launch, until they are checked."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str | bytes]] = []

    def watch(self, page) -> None:
        def on_socket(ws) -> None:
            ws.on("framesent", lambda payload: self.pending.append(("sent", payload)))
            ws.on("framereceived", lambda payload: self.pending.append(("received", payload)))

        page.on("websocket", on_socket)

    def watch_browser(self, browser) -> None:
        """Watch every page `browser` opens, whether through `new_page()` or a context of its own."""
        new_context, new_page = browser.new_context, browser.new_page

        def watched_context(*args, **kwargs):
            context = new_context(*args, **kwargs)
            context.on("page", self.watch)
            return context

        def watched_page(*args, **kwargs):
            page = new_page(*args, **kwargs)
            self.watch(page)
            return page

        browser.new_context, browser.new_page = watched_context, watched_page

    def check(self) -> None:
        """Fail on the first frame since the last check that is not protocol v1; either way, forget them."""
        frames, self.pending = self.pending, []
        for direction, payload in frames:
            problem = frame_problem(direction, payload)
            if problem:
                pytest.fail(problem, pytrace=False)


# Checked after every test (tests/conftest.py) and when a browser closes, so a failure names the test.
PROTOCOL_FRAMES = ProtocolFrames()


def session_joiner(browser, url: str, secret: bytes, session: str, frames: FrameLog | None = None):
    """`join(user, role)`: the viewer opened through a join link in a fresh browser context (its frames
    logged in `frames`, if given), once the session has told the page who it is."""
    from viewer_server.auth import issue

    def join(user: str, role: str):
        link = f"{url}/?session={session}&token={issue(secret, session, user, role)}"
        context = browser.new_context()
        if frames is not None:
            context.on("page", frames.watch)
        page = open_viewer(context, link)
        page.wait_for_function("window.twinview.collab.identity.role !== null")
        return page

    return join
