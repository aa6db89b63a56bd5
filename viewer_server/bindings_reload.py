"""Hot reload of the bindings file: an edited file takes effect in the running server, without a restart.

`watch_bindings` looks at the file's inode, size and modification time every POLL_S off the event loop (a plant
engineer edits thresholds in an editor and saves; nobody has to remember to call anything). A file is read once
its stamp has held still for one look (an editor that truncates, then writes, is not caught half-way); when its
sha256 differs from the served version's it is parsed and validated exactly as at start (`scene.bindings`,
against the scene's elements). A valid new version is applied whole, in one step of the event loop
(`apply_bindings`); an invalid one changes nothing: the old rules stay, the problem is logged once and shown by
`GET /api/bindings` (`reload_error`) until a good version is saved. With several processes (`serve --bus
redis://`) each watches its file (the same one: docs/BINDINGS.md "Reloading"); the leader's engine applies it and
the leader records the version.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from scene.bindings import Bindings, BindingsError, bindings_from_text
from viewer_server.rules_adapter import LiveRules

if TYPE_CHECKING:
    from viewer_server.live import LiveScene

log = logging.getLogger(__name__)

# How often the file's stamp is looked at.
POLL_S: Final = 1.0

Stamp = tuple[int, int, int] | None  # (inode, size, mtime in ns); None: the file cannot be seen


def _stamp(path: Path) -> Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns  # an editor that saves by renaming a new file changes the inode


def refusal(live: LiveScene, bindings: Bindings) -> str | None:
    """Why `bindings` cannot replace the served ones without a restart, or None."""
    gone = [layer for layer in live.rules.layers if layer not in bindings.layers]
    if gone:
        return f"layers removed ({', '.join(gone)}): clients may be showing them; restart the server to remove layers"
    if live.mqtt_url is not None:
        before = {b.topic for b in live.bindings.bindings if b.topic} if live.bindings else set()
        after = {b.topic for b in bindings.bindings if b.topic}
        if before != after:
            return "the MQTT topics changed: restart the server to subscribe to them"
    return None


def apply_bindings(live: LiveScene, rules: LiveRules, text: str) -> None:
    """Serve the bindings of `rules` from now on, everywhere the start-up bindings are used: rules, visuals and
    alarms (the hub), ingest, commands, tags, history retention; the historian records the version as in force from
    now (replay and the timeline's "Rules changed" follow), the store keeps the file. Synchronous: nothing runs
    between."""
    bindings = rules.bindings
    assert bindings is not None
    content = text.encode()
    live.rules = rules  # what sessions offer (layers, the default one)
    live.hub.swap_rules(rules)
    live.bindings, live.bindings_text, live.bindings_error = bindings, text, None
    live.ingest.bindings = bindings
    tags = {t.id for t in bindings.tags}  # new anchors are known from now on (a removed one stays harmless)
    for service in (live.ingest, live.annotations, live.presenters):
        if service is not None:
            service.known |= tags
    if live.commands is not None:
        live.commands.bindings = bindings
    if live.historian is not None:
        live.historian.retention = bindings.history
        assert live.bindings_path is not None
        if live.hub.leading:  # of the processes sharing the scene (and its history), the one whose engine runs it
            live.historian.record_bindings(live.bindings_path.name, content, live.historian.clock())
    if live.rule_versions is not None:
        live.rule_versions.current = bindings
    if live.hub.store is not None and live.bindings_path is not None:
        live.hub.store.save_bindings(live.scene.id, live.bindings_path, content)


async def watch_bindings(live: LiveScene) -> None:
    """Run until cancelled: apply each new valid version of the served bindings file (module docstring)."""
    path = live.bindings_path
    if path is None:
        return
    known = set(live.scene.elements)
    # Nothing read yet: the first look reads the file, which may have changed since the server loaded it.
    loaded: Stamp | tuple[()] = ()
    seen: Stamp | tuple[()] = ()
    sha = hashlib.sha256(live.bindings_text.encode()).hexdigest() if live.bindings_text is not None else None
    while True:
        await asyncio.sleep(POLL_S)
        stamp = await asyncio.to_thread(_stamp, path)
        if stamp != seen:  # changing: read it once it holds still
            seen = stamp
            continue
        if stamp == loaded:
            continue
        loaded = stamp
        try:
            content = await asyncio.to_thread(path.read_bytes)
            new_sha = hashlib.sha256(content).hexdigest()
            if new_sha == sha:  # saved again unchanged, or back to the served version: nothing to parse
                live.bindings_error = None
                continue
            # Parsed and checked as at start (`load_bindings`); named without its folders, as the API shows it.
            bindings = await asyncio.to_thread(bindings_from_text, content, path.name, known)
            text = content.decode()
        except (BindingsError, OSError, UnicodeDecodeError) as exc:
            _refuse(live, str(exc) if isinstance(exc, BindingsError) else f"{path.name}: cannot be read: {exc}")
            continue
        why = refusal(live, bindings)
        if why is not None:
            _refuse(live, f"{path.name}: {why}")
            continue
        rules = await asyncio.to_thread(LiveRules, bindings)  # compiling the rules of a large file takes a while
        apply_bindings(live, rules, text)
        sha = new_sha
        log.warning("bindings reloaded from %s (sha256 %s): %d bindings, layers %s", path, new_sha[:12],
                    len(bindings.bindings), ", ".join(bindings.layers))  # fmt: skip


def _refuse(live: LiveScene, problem: str) -> None:
    live.bindings_error = problem
    log.error("bindings not reloaded from %s, the served rules stay: %s", live.bindings_path, problem)
