"""`twinview bcf export|import`: BCF archives to and from a session's topics in the store.

Run it while the server is stopped (or accept that a running server learns of imported topics only
on restart): it writes the SQLite store directly, in one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path
from typing import Final

from scene.errors import ImportFailed
from viewer_server.bcf.mapping import is_ifc_guid
from viewer_server.bcf.reader import import_bcf
from viewer_server.bcf.writer import export_bcf
from viewer_server.permissions import Action
from viewer_server.store import CLI_ACTOR, STORE_FILE, AuditEntry, Store

# Unmapped components listed on the terminal; the rest are counted (a clash report can list thousands).
MAX_LISTED: Final = 50
_PREFIXED = re.compile(r"(?P<prefix>.+):(?P<guid>[0-9A-Za-z_$]{22})")


def _open_store(data_dir: Path) -> Store:
    if not (data_dir / STORE_FILE).is_file():  # do not create an empty store where the user mistyped a path
        raise ImportFailed(str(data_dir), f"no server data here (no {STORE_FILE}); pass the server's --data-dir")
    return Store(data_dir)


def scene_index(scene_dir: Path) -> tuple[set[str], dict[str, str]]:
    """Twin ids of a built scene and, for ids a merge prefixed (`stem:GlobalId`), GlobalId -> twin id."""
    from scene.export.manifest import ManifestError, load_manifest

    try:
        manifest = load_manifest(scene_dir / "manifest.json")
    except ManifestError as exc:
        raise ImportFailed(str(scene_dir), str(exc)) from None
    ids = {e["id"] for e in manifest["elements"]}
    by_guid = {}
    for twin_id in ids:
        if not is_ifc_guid(twin_id) and (m := _PREFIXED.fullmatch(twin_id)) and m["guid"] not in ids:
            by_guid[m["guid"]] = twin_id
    return ids, by_guid


def run_export(args: argparse.Namespace) -> int:
    store = _open_store(Path(args.data_dir))
    try:
        topics = store.topics(args.session)
        comments = store.comments(args.session)
        blobs = {}
        for att in {a.id for t in topics for a in t.attachments}:
            if (found := store.attachment(att)) is not None and found[0] == args.session:
                blobs[att] = found[2]
    finally:
        store.close()
    out = Path(args.output)
    try:
        result = export_bcf(topics, comments, blobs, args.session, out)
    except OSError as exc:
        raise ImportFailed(str(out), f"cannot write ({exc.strerror or exc})") from None
    print(
        f"exported {result.topics} topics, {result.comments} comments, {result.viewpoints} viewpoints"
        f" ({result.snapshots} snapshots) -> {out}"
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    element_ids, by_guid = scene_index(Path(args.scene)) if args.scene else (None, {})
    result = import_bcf(path, element_ids, by_guid)  # fully in memory: a bad archive stops here
    store = _open_store(Path(args.data_dir))
    try:
        metas = {a.id: a for t in result.topics for a in t.attachments}
        entry = AuditEntry(
            session=args.session,
            ts=time.time(),
            actor=CLI_ACTOR,
            role="admin",
            action=Action.BCF_IMPORT.value,
            target=f"{len(result.topics)} topics",
            detail=str(path),
        )
        pairs = [(metas[k], v) for k, v in result.attachments.items()]
        asyncio.run(store.import_topics(args.session, result.topics, result.comments, pairs, entry))
    finally:
        store.close()
    print(
        f"imported {len(result.topics)} topics, {len(result.comments)} comments, {result.viewpoint_count} viewpoints"
        f" (BCF {result.version}) from {path}"
    )
    if element_ids is None:
        print("  components not checked against a scene (give --scene SCENE_DIR to check them)")
    elif result.unmapped_components:
        print(f"  {len(result.unmapped_components)} components not found in {args.scene}:")
        for label in result.unmapped_components[:MAX_LISTED]:
            print(f"    {label}")
        if len(result.unmapped_components) > MAX_LISTED:
            print(f"    … and {len(result.unmapped_components) - MAX_LISTED} more")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    return 0
