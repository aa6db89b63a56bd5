"""Shared fixtures: where the third-party corpus lives, and a skip with the reason when it is absent; one build of
each corpus file per session; a browser per browser-test module; every WebSocket frame a browser test's pages
exchanged is checked against the protocol schema after the test; and the two variants of a test marked
`deployable`: its server in the test's process, and deployed behind HAProxy (tests/live_server.py)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from tests import live_server
from tests.postgres_server import postgres, postgres_url, store_url  # noqa: F401 (fixtures for every module)
from tests.web_helpers import PROTOCOL_FRAMES, build_client, chromium_browser

if TYPE_CHECKING:
    from scene.pipeline import BuildResult

# Property tests fail on a wrong answer, never on the clock: a loaded CI machine is slow, not wrong. No example
# database either, so a run leaves nothing in the source tree.
settings.register_profile("twinview", deadline=None, database=None, print_blob=True)
settings.load_profile("twinview")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"corpus not found at {SHARED_DATA}: clone TwinView beside ../shared to run corpus tests")
    return SHARED_DATA


@pytest.fixture(scope="session")
def corpus_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], BuildResult]:
    """`build([path], out)` with the default options, once per input file in a session: the corpus test checks
    each build, and the tests that need a built real model (a GLB export's scene, a served office) reuse it
    rather than tessellating the same IFC again (several seconds each). Read-only: copy the output folder
    before serving it, and do not change the scene."""
    from scene.pipeline import build

    root = tmp_path_factory.mktemp("corpus-builds")

    @functools.cache
    def built(path: Path) -> BuildResult:
        return build([path], root / f"{len(list(root.iterdir()))}-{path.name}")

    return built


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Chromium for the browser tests of one module (Playwright's sync API runs one at a time), on the
    web client bundled afresh."""
    build_client()
    with chromium_browser() as b:
        yield b


@pytest.fixture(autouse=True)
def protocol_frames() -> Iterator[None]:
    """Fail the test whose pages sent or received a frame that is not protocol v1 (docs/protocol.schema.json)."""
    yield
    PROTOCOL_FRAMES.check()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A `deployable` test runs twice: `[in-process]` and `[deployment]` (its live_server behind HAProxy),
    unless it is marked `in_process_only` with the reason (a module marks itself deployable as a whole)."""
    marked = metafunc.definition.get_closest_marker
    if marked("deployable") and starts_a_server(metafunc) and not marked("in_process_only"):
        metafunc.parametrize("served_by", ["in-process", "deployment"], indirect=True)


def starts_a_server(metafunc: pytest.Metafunc) -> bool:
    """Whether the test calls live_server, itself or through a function of its module (else there is nothing to
    deploy, and a second variant would only run it twice)."""
    names = set(metafunc.function.__code__.co_names)
    helpers = [getattr(metafunc.module, name, None) for name in names]
    names.update(n for f in helpers if inspect.isfunction(f) for n in f.__code__.co_names)
    return "live_server" in names


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if (marker := item.get_closest_marker("in_process_only")) and not marker.args:
            raise pytest.UsageError(f"{item.nodeid}: in_process_only needs the reason it stays in one process")


@pytest.fixture(scope="session")
def deployments(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[live_server.DeploymentPool]:
    """The deployments the session's [deployment] variants share, one per configuration (tests/live_server.py)."""
    pool = live_server.DeploymentPool(
        tmp_path_factory.mktemp("deployments"), lambda: request.getfixturevalue("postgres")
    )
    yield pool
    pool.close()


@pytest.fixture(autouse=True)
def served_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[live_server.ServedBy]:
    """How this test's live_server runs: in process, unless the test is the deployment variant (then on the
    session's shared deployment of its configuration, or on one of its own, stopped after it, when it is
    marked `fresh_twin` or brings its own MQTT broker)."""
    mode: live_server.ServedBy = getattr(request, "param", "in-process")
    monkeypatch.setattr(live_server, "SERVED_BY", mode)
    if mode != "deployment":
        yield mode
        return
    pool: live_server.DeploymentPool = request.getfixturevalue("deployments")
    monkeypatch.setattr(live_server, "DEPLOYMENTS", pool)
    monkeypatch.setattr(live_server, "CURRENT_TEST", request.node.nodeid)
    monkeypatch.setattr(live_server, "FRESH_TWIN", request.node.get_closest_marker("fresh_twin") is not None)
    yield mode
    pool.stop_owned(request.node.nodeid)
