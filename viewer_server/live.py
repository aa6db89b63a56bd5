"""One served scene with everything live around it: bindings, rules, hub, ingest, sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from aiohttp import web

from scene.bindings import Bindings, load_bindings
from viewer_server.bus import Bus
from viewer_server.hub import SceneHub
from viewer_server.ingest import Ingest, MqttStatus
from viewer_server.rules_adapter import LiveRules
from viewer_server.scenes import SceneEntry, load_scene
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
    sessions: set[Session] = field(default_factory=set)
    mqtt: MqttStatus = field(default_factory=MqttStatus)

    @classmethod
    def open(cls, scene_dir: Path, bindings_path: Path | None, *, bus: Bus, store: Store | None) -> LiveScene:
        """Load the manifest and bindings (validated against its element ids) and restore the last
        persisted values. Raises SceneError or BindingsError."""
        scene = load_scene(scene_dir)
        bindings = load_bindings(bindings_path, set(scene.elements)) if bindings_path is not None else None
        text = bindings_path.read_text() if bindings_path is not None else None
        rules = LiveRules(bindings)
        hub = SceneHub(scene.id, rules=rules, bus=bus, store=store)
        if store is not None:
            store.save_scene(scene.id, scene_dir, scene.manifest_bytes)
            if bindings_path is not None and text is not None:
                store.save_bindings(scene.id, bindings_path, text.encode())
            hub.restore(store.load_props(scene.id))
        else:
            hub.restore({})
        ingest = Ingest(set(scene.elements), bindings, hub.apply)
        return cls(scene, bindings, bindings_path, text, rules, hub, ingest, bus)


LIVE: Final = web.AppKey("live", LiveScene)
STARTED: Final = web.AppKey("started", float)  # time.monotonic() at start, for uptime
