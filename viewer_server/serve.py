"""Start a live twin server: load, listen, feed, and stop cleanly. `twinview serve` and `demo` call `run`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from scene.simulator import Simulator
from viewer_server.app import make_app
from viewer_server.audit import Retention, flush_periodically, prune_periodically
from viewer_server.auth import CLOCK_SKEW_S, MAX_TTL_S, REVOKED
from viewer_server.bindings_reload import watch_bindings
from viewer_server.bus import InProcessBus
from viewer_server.connections import (
    HEADER_TIMEOUT_S,
    MAX_CONNECTIONS_PER_IP,
    AcceptErrorLog,
    ConnectionGuard,
    raise_open_file_limit,
)
from viewer_server.historian import Historian
from viewer_server.http_edge import EdgePolicy
from viewer_server.hub import SceneHub
from viewer_server.ingest import as_protocol
from viewer_server.ingest_mqtt import check_url, mqtt_ingest
from viewer_server.live import LiveScene
from viewer_server.protocol import CLOSE_AUTH
from viewer_server.redis_bus import RedisBus
from viewer_server.server_file import announced, local_url
from viewer_server.session import close_sessions, revoked, tell_status
from viewer_server.shared_hub import SharedHub
from viewer_server.store import Store, prune_revocations
from viewer_server.store_db import StoreError

log = logging.getLogger(__name__)

# Simulated plant samples per second: field instruments typically report at 1 Hz.
SIMULATOR_RATE_HZ: Final = 1.0
SIMULATOR_SEED: Final = 7
# How often flat-line detectors are checked: they look for minutes of silence, a second is plenty.
RULES_TICK_S: Final = 1.0
# How often the server looks for revocations made by another process (`twinview session revoke`) to
# close the connections they void; the REST call closes its own at once.
REVOCATION_POLL_S: Final = 1.0
# How long start-up waits for the shared bus's revocation channel (Redis answered a moment before).
STARTUP_WAIT_S: Final = 10.0
# The historian's upkeep (sealing finished hours, retention): a few times per hour is enough for hourly chunks.
HISTORY_UPKEEP_S: Final = 300.0


@dataclass
class RunningServer:
    live: LiveScene
    store: Store
    runner: web.AppRunner
    port: int
    host: str
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    connections: ConnectionGuard = field(default_factory=ConnectionGuard)  # open connections per address

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/{self.live.scene.id}"


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """What to serve and how: the built scene, its bindings and procedures, where to listen and keep data."""

    scene_dir: Path
    bindings: Path | None
    mqtt_url: str | None
    host: str
    port: int
    data_dir: Path
    simulate: bool
    procedures: Path | None = None
    allow_origins: tuple[str, ...] = ()  # web pages (scheme://host:port) besides the server's own that may use it
    allow_hosts: tuple[str, ...] = ()  # names in `Host` besides local ones, addresses and the bound name
    trusted_proxies: tuple[str, ...] = ()  # addresses or networks of reverse proxies whose X-Forwarded-For counts
    header_timeout_s: float = HEADER_TIMEOUT_S  # to complete a request head (also the keep-alive idle time)
    max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP  # 0: no bound
    max_connections: int | None = None  # in all; None: the open-file limit less RESERVED_FILES, 0: no bound
    audit: Retention = field(default_factory=Retention)  # how long audit rows are kept (viewer_server.audit)
    store: str | None = None  # postgresql://USER@HOST:PORT/DB or sqlite:PATH; None: the SQLite file in data_dir
    history: bool = True  # keep the historian (replay, charts); False: a data dir without one (bench/fanout.py)
    bus_url: str | None = None  # redis://HOST:PORT: several processes serve the scene (viewer_server/shared_hub.py)


def _options(options: ServeOptions | Path, fields: dict[str, Any]) -> ServeOptions:
    """`options` as given, or built from a scene folder and keyword fields (the older call form); fields given
    with a ServeOptions replace its values."""
    if isinstance(options, ServeOptions):
        return replace(options, **fields) if fields else options
    return ServeOptions(scene_dir=options, **fields)


@contextlib.asynccontextmanager
async def running_server(options: ServeOptions | Path, **fields: Any) -> AsyncIterator[RunningServer]:
    """Load the scene, bindings and procedures, open the store, listen (port 0 = any free port), and start
    MQTT, the simulator and the rules ticker. SceneError / BindingsError / ProcedureError / ValueError (a bad
    MQTT URL) are raised before anything listens. Takes a ServeOptions, or a scene folder and its fields as
    keywords."""
    opts = _options(options, fields)
    if opts.mqtt_url:
        check_url(opts.mqtt_url)
    # A bad --bus URL is a ValueError before anything opens.
    bus: InProcessBus | RedisBus = RedisBus(opts.bus_url) if opts.bus_url else InProcessBus()
    edge = EdgePolicy.for_server(opts.host, opts.allow_hosts, opts.allow_origins, opts.trusted_proxies)
    store = Store(opts.data_dir, opts.store)
    live: LiveScene | None = None
    started = False
    runner: web.AppRunner | None = None
    listener: asyncio.Server | None = None
    tasks: list[asyncio.Task[Any]] = []
    accept_errors = AcceptErrorLog(asyncio.get_running_loop())
    try:
        live = LiveScene.open(
            opts.scene_dir,
            opts.bindings,
            bus=bus,
            store=store,
            procedures_path=opts.procedures,
            mqtt_url=opts.mqtt_url,
            history=opts.history,
        )
        if isinstance(live.hub, SharedHub):
            await live.hub.start()  # BusUnavailable: Redis does not answer
            started = True
            live.hub.on_reset.append(functools.partial(_resync_all, live))
            live.hub.redis.on_status.append(functools.partial(tell_status, live))
        _freeze_loaded_objects()
        # aiohttp's keep-alive timer also runs from the connection until the first request head is complete.
        runner = web.AppRunner(make_app(live, edge=edge), handle_signals=False, keepalive_timeout=opts.header_timeout_s)
        await runner.setup()
        assert runner.server is not None
        guard = ConnectionGuard(opts.max_connections_per_ip, opts.max_connections)
        accept_errors.install()
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(guard.protocol_factory(runner.server), opts.host, opts.port)
        bound = listener.sockets[0].getsockname()[1] if listener.sockets else opts.port
        store.submit(lambda db: prune_revocations(db, time.time() - MAX_TTL_S - CLOCK_SKEW_S))
        jobs: list[Coroutine[Any, Any, None]] = [_tick_rules(live), _close_revoked(live, store)]
        jobs.append(asyncio.to_thread(live.scene.prepare))
        subscribed = asyncio.Event()
        if isinstance(bus, RedisBus):
            jobs.append(_close_announced(live, store, bus, subscribed))
        if live.rooms.names is not None:
            jobs.append(live.rooms.names.renew_forever())
        jobs.append(prune_periodically(store, opts.audit))
        if live.audit is not None:
            jobs.append(flush_periodically(live.audit))
        if live.historian is not None:
            jobs.append(_keep_history(live.historian, live.hub))
        if opts.mqtt_url:
            jobs.append(mqtt_ingest(opts.mqtt_url, live, shared=isinstance(bus, RedisBus)))
        if opts.simulate:
            jobs.append(_simulate(live))
        jobs.append(watch_bindings(live))
        tasks = [asyncio.create_task(job) for job in jobs]
        if isinstance(bus, RedisBus):  # revocations announced from now on reach this process
            await asyncio.wait_for(subscribed.wait(), STARTUP_WAIT_S)
        with announced(opts.data_dir, local_url(opts.host, bound)):  # for commands on this data dir
            yield RunningServer(live, store, runner, bound, opts.host, tasks, guard)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if listener is not None:
            listener.close()
        if runner is not None:
            await runner.cleanup()
        if started and isinstance(live.hub, SharedHub):
            await live.hub.stop()
        if isinstance(bus, RedisBus):
            await bus.close()
        if live is not None:
            live.hub.close()
            if live.audit is not None:
                live.audit.close_all()
            if live.historian is not None:
                live.historian.close()
        accept_errors.uninstall()
        store.close()


def _freeze_loaded_objects() -> None:
    """Move the loaded scene, bindings and restored state out of the garbage collector's sight.

    Measured in bench/fanout.py: full collections over these long-lived objects stalled the event
    loop for 70-90 ms a few times per 10 s at 10 000 updates/s, which is the p99 staleness.
    """
    gc.collect()
    gc.freeze()


async def serve(
    options: ServeOptions | Path,
    *,
    ready: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    **fields: Any,
) -> None:
    """Serve until cancelled. `ready` is set (and `on_ready(url)` called) once /api/health answers."""
    async with running_server(_options(options, fields)) as server:
        if ready is not None:
            ready.set()
        if on_ready is not None:
            on_ready(server.url + "/")
        await asyncio.Event().wait()


def run(options: ServeOptions | Path, *, on_ready: Callable[[str], None] | None = None, **fields: Any) -> None:
    """Blocking `serve` for the CLI; returns on Ctrl+C. Raises SceneError / BindingsError (exit 2)."""
    raise_open_file_limit()  # one descriptor per connection: 1024, where services start, is few
    # Ctrl+C / SIGINT is how the server is stopped (systemd's KillSignal, the deployment's harness), even when it
    # was started as a shell script's background job, which inherits SIGINT ignored and would never stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(_options(options, fields), on_ready=on_ready))


async def _tick_rules(live: LiveScene) -> None:
    while True:
        await asyncio.sleep(RULES_TICK_S)
        live.hub.tick()


async def _keep_history(historian: Historian, hub: SceneHub) -> None:
    """Seal finished hours into Parquet chunks, checkpoint the alarm list and apply retention, off the event loop;
    of the processes sharing a scene (and its data dir or PostgreSQL history), only the leader."""
    while True:
        try:
            if hub.leading:
                await asyncio.to_thread(historian.seal)
                await asyncio.to_thread(historian.checkpoint_alarms)
                await asyncio.to_thread(historian.retain)
        except (OSError, sqlite3.Error, StoreError) as exc:  # PostgreSQL unreachable: the next round catches up
            log.error("historian upkeep failed (retried in %.0f s): %s", HISTORY_UPKEEP_S, exc)
        await asyncio.sleep(HISTORY_UPKEEP_S)


async def _close_revoked(live: LiveScene, store: Store) -> None:
    """Close the connections of users revoked by another process, within REVOCATION_POLL_S: one read
    of the (small) revocations table per poll, compared with every connection's token. While the store
    cannot be read it says so once, and goes on polling until it can."""
    failing = False
    while True:
        await asyncio.sleep(REVOCATION_POLL_S)
        try:
            revocations = await asyncio.to_thread(store.revocations)
        except StoreError as exc:
            if not failing:
                log.error("store: revocations cannot be read (retried every %.0f s): %s", REVOCATION_POLL_S, exc)
            failing = True
            continue
        if failing:
            log.warning("store: revocations readable again (%s)", store.location)
        failing = False
        gone = revoked(live.sessions, revocations)
        if gone:
            await close_sessions(gone, CLOSE_AUTH, REVOKED)


def _resync_all(live: LiveScene) -> None:
    """The shared hub's mirror started over from a checkpoint: every connection gets a resync snapshot."""
    for session in live.sessions:
        session.outbox.request_resync()


async def _close_announced(live: LiveScene, store: Store, bus: RedisBus, subscribed: asyncio.Event) -> None:
    """Close the connections revoked on another process of the deployment as soon as it says so."""
    async for _ in bus.announcements(live.scene.id, subscribed):
        gone = revoked(live.sessions, store.revocations())
        if gone:
            await close_sessions(gone, CLOSE_AUTH, REVOKED)


async def _simulate(live: LiveScene) -> None:
    """Feed the simulated plant through the same validation as any producer."""
    if live.bindings is None:
        log.warning("--simulate needs bindings: nothing to simulate")
        return
    sim = Simulator(live.bindings, seed=SIMULATOR_SEED)
    while True:
        readings = sim.step(time.time())
        if live.hub.leading:  # one plant however many processes serve it: the leader's simulator feeds it
            await live.ingest.submit([as_protocol(r) for r in readings], "simulator")
        await asyncio.sleep(1 / SIMULATOR_RATE_HZ)
