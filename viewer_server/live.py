"""One served scene with everything live around it: bindings, rules, hub, ingest, sessions."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

from scene.bindings import Bindings, History, load_bindings
from scene.procedure_file import load_procedures
from viewer_server.alarms import AlarmBook, AlarmDesk, load_alarms
from viewer_server.annotations import Annotations
from viewer_server.audit import AuditSummaries
from viewer_server.auth import SECRET_BYTES, load_secret
from viewer_server.bcf.archive import MAX_CONCURRENT_IMPORTS
from viewer_server.bus import Bus
from viewer_server.commands import Commands
from viewer_server.historian import Historian
from viewer_server.hub import SceneHub
from viewer_server.ingest import Ingest, MqttStatus
from viewer_server.name_claims import NameClaims
from viewer_server.presenter import Presenters
from viewer_server.procedures import Procedures
from viewer_server.redis_bus import RedisBus
from viewer_server.replay import RuleVersions
from viewer_server.rooms import Rooms
from viewer_server.rules_adapter import LiveRules
from viewer_server.scenes import SceneEntry, load_scene
from viewer_server.shared_hub import SharedHub
from viewer_server.store import Store

if TYPE_CHECKING:
    from viewer_server.session import Session


@dataclass
class LiveScene:
    scene: SceneEntry
    bindings: Bindings | None
    bindings_path: Path | None
    bindings_text: str | None
    rules: LiveRules
    hub: SceneHub
    ingest: Ingest
    bus: Bus
    rooms: Rooms  # collaboration sessions on this scene and their members
    annotations: Annotations | None  # topics and comments (needs the store)
    secret: bytes  # signs join tokens (viewer_server.auth)
    sessions: set[Session] = field(default_factory=set)
    mqtt: MqttStatus = field(default_factory=MqttStatus)
    presenters: Presenters | None = None  # presenter mode and raised hands per session
    procedures: Procedures | None = None  # guided procedures per session (needs the store)
    commands: Commands | None = None  # operator commands to MQTT (needs the store, for the audit trail)
    alarm_desk: AlarmDesk | None = None  # acknowledging and shelving alarms (needs the store, for the audit trail)
    historian: Historian | None = None  # every reading and event, for replay and charts (needs the data dir)
    rule_versions: RuleVersions | None = None  # the bindings in force at any time of the history (with the historian)
    audit: AuditSummaries | None = None  # summary rows: ingest sources, refused requests (needs the store)
    mqtt_url: str | None = None  # the broker readings come from (`serve --mqtt`)
    bindings_error: str | None = None  # why the last edit of the bindings file was not applied (bindings_reload.py)
    # BCF imports running now: server-wide, so that concurrent uploads cannot add up (see bcf/archive.py).
    bcf_imports: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_IMPORTS))

    @classmethod
    def open(
        cls,
        scene_dir: Path,
        bindings_path: Path | None,
        *,
        bus: Bus,
        store: Store | None,
        procedures_path: Path | None = None,
        mqtt_url: str | None = None,
        history: bool = True,
    ) -> LiveScene:
        """Load the manifest, bindings and procedures (validated against its element ids) and restore
        the last persisted values, alarms and procedure runs; with a store and `history`, open the scene's
        historian. On a RedisBus the hub is one of several processes' (viewer_server/shared_hub.py;
        `await hub.start()` before serving). Raises SceneError, BindingsError or ProcedureError."""
        scene = load_scene(scene_dir)
        bindings = load_bindings(bindings_path, set(scene.elements)) if bindings_path is not None else None
        text = bindings_path.read_text() if bindings_path is not None else None
        rules = LiveRules(bindings)
        historian = None
        if store is not None and history:
            retention = bindings.history if bindings is not None else (lambda element, prop: History())
            folder = store.data_dir / HISTORY_DIR / scene.id  # with PostgreSQL, in the store's database
            historian = Historian(folder, database=store.postgres_url, retention=retention)
        rule_versions = None
        if historian is not None:
            content = text.encode() if text is not None else None
            if bindings_path is not None and content is not None:  # in force from now: replay's rules from here on
                historian.record_bindings(bindings_path.name, content, historian.clock())
            rule_versions = RuleVersions(historian, bindings, hashlib.sha256(content).hexdigest() if content else None)
        if isinstance(bus, RedisBus):
            hub: SceneHub = SharedHub(
                scene.id, rules=rules, alarms=AlarmBook(), bus=bus, store=store, historian=historian
            )
        else:
            hub = SceneHub(scene.id, rules=rules, alarms=AlarmBook(), bus=bus, store=store, historian=historian)
        desk = AlarmDesk(hub, store) if store is not None else None
        if store is not None:
            store.save_scene(scene.id, scene_dir, scene.manifest_bytes)
            if bindings_path is not None and text is not None:
                store.save_bindings(scene.id, bindings_path, text.encode())
            hub.alarms.restore(*store.submit(lambda db: load_alarms(db, scene.id)).result(), known=rules.alarm_ids())
            hub.restore(store.load_props(scene.id))
        else:
            hub.restore({})
        ingest = Ingest(set(scene.elements), bindings, hub.apply, historian=historian)
        known = set(scene.elements) | {t.id for t in (bindings.tags if bindings else ())}
        bound = {(b.element, b.prop) for b in bindings.bindings} if bindings else None
        library = load_procedures(procedures_path, known, bound) if procedures_path is not None else {}
        procedures = Procedures(library, hub, store) if store is not None else None
        if procedures is not None:
            procedures.restore()
        return cls(
            scene, bindings, bindings_path, text, rules, hub, ingest, bus,
            rooms=Rooms(store, scene.id, NameClaims(bus, scene.id) if isinstance(bus, RedisBus) else None),
            annotations=Annotations(store, hub, known) if store is not None else None,
            # Without a store (no data dir) tokens live as long as the process.
            secret=load_secret(store.data_dir) if store is not None else secrets.token_bytes(SECRET_BYTES),
            presenters=Presenters(hub, known),
            procedures=procedures,
            commands=Commands(bindings, mqtt_url, hub, store) if store is not None else None,
            alarm_desk=desk,
            historian=historian,
            rule_versions=rule_versions,
            audit=AuditSummaries(store) if store is not None else None,
            mqtt_url=mqtt_url,
        )  # fmt: skip


# The historian's folder in the data dir, one subfolder per scene (viewer_server/historian.py).
HISTORY_DIR: Final = "history"

LIVE: Final = web.AppKey("live", LiveScene)
STARTED: Final = web.AppKey("started", float)  # time.monotonic() at start, for uptime
