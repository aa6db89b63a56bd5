"""`twinview bcf export|import`: BCF archives to and from a session's topics in the store.

Import goes through the server when one is serving the data dir (`server_file`), so everyone connected
sees the topics at once; otherwise it writes the SQLite store directly, in one transaction. Export
reads the store, which a running server keeps up to date.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Final

from scene.errors import ImportFailed
from viewer_server.auth import issue, load_secret
from viewer_server.bcf.admission import Admitted, SessionContent, admit
from viewer_server.bcf.mapping import is_ifc_guid
from viewer_server.bcf.reader import BcfImport, import_bcf
from viewer_server.bcf.writer import export_bcf
from viewer_server.permissions import Action
from viewer_server.server_file import running_server
from viewer_server.store import CLI_ACTOR, AuditEntry, open_store

# Unmapped components listed on the terminal; the rest are counted (a clash report can list thousands).
MAX_LISTED: Final = 50
# The admin token the import hands a running server lives this long; the upload this long at most.
IMPORT_TOKEN_TTL_S: Final = 120.0
IMPORT_TIMEOUT_S: Final = 120.0
_PREFIXED = re.compile(r"(?P<prefix>.+):(?P<guid>[0-9A-Za-z_$]{22})")


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
    store = open_store(Path(args.data_dir), args.store)
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
    path, data_dir = Path(args.file), Path(args.data_dir)
    element_ids, by_guid = scene_index(Path(args.scene)) if args.scene else (None, {})
    result = import_bcf(path, element_ids, by_guid)  # read fully first: a bad archive stops here
    url = running_server(data_dir)
    if url is not None:
        try:
            answer = _import_through(url, data_dir, args.session, path)
        except urllib.error.URLError as exc:  # announced but not answering: it learns of them on restart
            print(f"the server at {url} did not answer ({exc.reason}); writing the store directly: it shows"
                  " the topics after a restart")  # fmt: skip
        else:
            counts = (answer["topics"], answer["comments"], answer["replaced"])
            _report(path, result, counts, answer["warnings"], f"through the server at {url}; everyone connected"
                    " sees them now")  # fmt: skip
            _report_unmapped(answer["unmapped_components"], "the served scene")
            return 0
    admitted = _import_into_store(data_dir, args.store, args.session, path, result)
    counts = (len(admitted.topics), len(admitted.comments), len(admitted.replaced))
    _report(path, result, counts, [*result.warnings, *admitted.warnings], None)
    if element_ids is None:
        print("  components not checked against a scene (give --scene SCENE_DIR to check them)")
    else:
        _report_unmapped(result.unmapped_components, args.scene)
    return 0


def _import_through(url: str, data_dir: Path, session: str, path: Path) -> dict:
    """POST the archive to the server serving `data_dir` (its REST import, as this data dir's admin)."""
    token = issue(load_secret(data_dir), session, CLI_ACTOR, "admin", ttl_s=IMPORT_TOKEN_TTL_S)
    request = urllib.request.Request(
        f"{url}/api/sessions/{urllib.parse.quote(session, safe='')}/bcf",
        data=path.read_bytes(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    )
    try:
        with urllib.request.urlopen(request, timeout=IMPORT_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ImportFailed(str(path), f"the server at {url} refused it: {detail}") from None


def _import_into_store(data_dir: Path, store_url: str | None, session: str, path: Path, result: BcfImport) -> Admitted:
    """Admit the import (`twinview-cli`, an admin of the data dir, is its author of record) and write it."""
    store = open_store(data_dir, store_url)
    try:
        topics, comments = store.topics(session), store.comments(session)
        owners = store.attachment_sessions({a.id for t in result.topics for a in t.attachments})
        content = SessionContent(
            name=session,
            topics={t.guid: t for t in topics},
            comments={c.guid: c for c in comments},
            foreign_attachments={att for att, owner in owners.items() if owner != session},
        )
        admitted = admit(result.topics, result.comments, result.attachments(), CLI_ACTOR, content)
        detail = f"{path}" + (f"; replaced {len(admitted.replaced)} topic(s)" if admitted.replaced else "")
        entry = AuditEntry(
            session=session,
            ts=time.time(),
            actor=CLI_ACTOR,
            role="admin",
            action=Action.BCF_IMPORT.value,
            target=f"{len(admitted.topics)} topics",
            detail=detail,
        )
        asyncio.run(store.import_topics(session, admitted.topics, admitted.comments, admitted.attachments, entry))
        return admitted
    finally:
        store.close()


def _report(path: Path, result: BcfImport, counts: tuple[int, int, int], warnings: list[str], how: str | None) -> None:
    topics, comments, replaced = counts
    print(
        f"imported {topics} topics, {comments} comments, {result.viewpoint_count} viewpoints"
        f" (BCF {result.version}) from {path}" + (f" {how}" if how else "")
    )
    if replaced:
        print(f"  {replaced} of these topics replaced topics the session had")
    for warning in warnings:
        print(f"  warning: {warning}")


def _report_unmapped(unmapped: list[str], scene: str) -> None:
    if not unmapped:
        return
    print(f"  {len(unmapped)} components not found in {scene}:")
    for label in unmapped[:MAX_LISTED]:
        print(f"    {label}")
    if len(unmapped) > MAX_LISTED:
        print(f"    … and {len(unmapped) - MAX_LISTED} more")
