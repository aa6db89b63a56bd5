"""A BCF archive is untrusted input from whoever uploads it: it may not overwrite other people's topics
without moderation rights, its authors are claims (the importer is the author of record), colliding ids
are remapped so that every count is true and nothing of another topic or session is taken over, and
it costs the server bounded memory (decompressed one entry at a time, a few imports at once)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import Served, eventually, get_json, live_server, mint_token, new_session, session_id
from tests.test_bcf import PNG, VERSION_30, _zip, blobs_of, sample, twinview
from viewer_server import protocol as p
from viewer_server.bcf import BcfError, export_bcf, import_bcf
from viewer_server.bcf.archive import MAX_COMPRESSION_RATIO, MAX_CONCURRENT_IMPORTS, RATIO_MIN_BYTES
from viewer_server.client import TwinClient

pytestmark = pytest.mark.deployable

PIN = p.Pin("PT-1", p.Vec3(1.0, 2.0, 3.0), p.Vec3(0.0, 1.0, 0.0))
T1, T2 = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
SHARED = "cccccccc-0000-4000-8000-000000000003"  # one comment guid used by two topics


def markup(topic: str, author: str, comments: list[tuple[str, str, str]]) -> bytes:
    """A BCF 3.0 markup; comments are (guid, author, text)."""
    thread = "".join(
        f'<Comment Guid="{guid}"><Date>2026-01-02T00:00:00Z</Date><Author>{who}</Author><Comment>{text}</Comment>'
        "</Comment>"
        for guid, who, text in comments
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Markup><Topic Guid="{topic}" TopicType="Issue" TopicStatus="Open">'
        f"<Title>from {author}</Title><CreationDate>2026-01-01T00:00:00Z</CreationDate>"
        f"<CreationAuthor>{author}</CreationAuthor><Comments>{thread}</Comments></Topic></Markup>"
    ).encode()


def archive(path: Path, topics: dict[str, bytes]) -> bytes:
    return _zip(path, {"bcf.version": VERSION_30, **{f"{t}/markup.bcf": m for t, m in topics.items()}}).read_bytes()


def bearer(srv: Served, user: str, role: p.Role, session: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(srv, user, role, session=session)}"}


async def bcf_imports(srv: Served, admin_token: str) -> list[dict]:
    """The session's BCF imports in its audit trail, newest first."""
    trail = await get_json(srv, f"/api/sessions/{session_id(srv)}/audit", admin_token)
    return [e for e in trail if e["action"] == "bcf.import"]


async def post_bcf(http: aiohttp.ClientSession, srv: Served, session: str, data: bytes, headers: dict):
    async with http.post(f"{srv.url}/api/sessions/{session}/bcf", data=data, headers=headers) as r:
        return r.status, await r.json(), r.headers


# --- moderation, provenance and collisions through the server ------------------------------------------------


async def test_replacing_topics_by_import_needs_moderation(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        session = session_id(srv)
        async with TwinClient(srv.ws_url, token=mint_token(srv, "ana", "annotator"), name="ana") as ana:
            made = await ana.create_topic(p.TopicDraft("Valve leaks", "drips", pin=PIN))
        forged = archive(tmp_path / "forged.bcf", {T1: markup(T1, "ana", [])})
        # The presenter exports the session, rewrites ana's topic in another tool and imports it back.
        async with http.get(f"{srv.url}/api/sessions/{session}/bcf", headers=bearer(srv, "lead", "presenter")) as r:
            exported = await r.read()
        edited = tmp_path / "edited.bcf"
        (tmp_path / "exported.bcf").write_bytes(exported)
        with zipfile.ZipFile(tmp_path / "exported.bcf") as src, zipfile.ZipFile(edited, "w") as dst:
            for name in src.namelist():
                data = src.read(name)
                dst.writestr(name, data.replace(b"<Title>Valve leaks</Title>", b"<Title>nothing to see</Title>"))
        status, body, _ = await post_bcf(http, srv, session, edited.read_bytes(), bearer(srv, "lead", "presenter"))
        assert (status, body["error"]) == (403, "forbidden")
        assert "replaces 1 topic(s)" in body["detail"] and "topic.moderate" in body["detail"]
        async with TwinClient(srv.ws_url, token=mint_token(srv, "v", "viewer")) as viewer:
            assert [(t.title, t.revision, t.author) for t in viewer.topics.values()] == [("Valve leaks", 1, "ana")]
        # New topics are the presenter's to import; replacing is the admin's.
        status, body, _ = await post_bcf(http, srv, session, forged, bearer(srv, "lead", "presenter"))
        assert (status, body["topics"], body["replaced"]) == (201, 1, 0)
        status, body, _ = await post_bcf(http, srv, session, edited.read_bytes(), bearer(srv, "root", "admin"))
        assert (status, body["topics"], body["replaced"]) == (201, 1, 1)
        async with TwinClient(srv.ws_url, token=mint_token(srv, "v", "viewer")) as viewer:
            replaced = viewer.topics[made.guid]
            assert (replaced.title, replaced.revision, replaced.author) == ("nothing to see", 2, "root")
            assert replaced.original_author == "ana"
        admin = mint_token(srv, "root", "admin")
        imports = await eventually(lambda: bcf_imports(srv, admin), lambda rows: len(rows) == 2)  # newest first
        assert [e["actor"] for e in imports] == ["root", "lead"] and "replaced 1 topic(s)" in imports[0]["detail"]


async def test_the_importer_is_the_author_of_record_and_the_file_s_author_is_kept_as_original(tmp_path: Path):
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        review = await new_session(srv, "review")
        data = archive(tmp_path / "claims.bcf", {T1: markup(T1, "admin", [("d" * 8 + SHARED[8:], "root", "ok")])})
        watcher = TwinClient(srv.ws_url, token=mint_token(srv, "w", "viewer", session=review))
        async with watcher:
            status, body, _ = await post_bcf(http, srv, review, data, bearer(srv, "lead", "presenter", review))
            assert (status, body["topics"], body["comments"]) == (201, 1, 1)
            await watcher.wait_for(lambda c: T1 in c.topics and len(c.comments) == 1)
            topic, (comment,) = watcher.topics[T1], watcher.comments.values()
            assert (topic.author, topic.original_author) == ("lead", "admin")  # as the protocol shows it
            assert (comment.author, comment.original_author) == ("lead", "root")
        async with http.get(f"{srv.url}/api/sessions/{review}/topics", headers=bearer(srv, "w", "viewer", review)) as r:
            [listed] = await r.json()
            assert (listed["author"], listed["original_author"]) == ("lead", "admin")
        # The export gives the file's authors back, not the importer.
        lead = bearer(srv, "lead", "presenter", review)
        async with http.get(f"{srv.url}/api/sessions/{review}/bcf", headers=lead) as r:
            (tmp_path / "again.bcf").write_bytes(await r.read())
        with zipfile.ZipFile(tmp_path / "again.bcf") as zf:
            text = zf.read(f"{T1}/markup.bcf")
        assert b"<CreationAuthor>admin</CreationAuthor>" in text and b"<Author>root</Author>" in text


async def test_comment_guid_collisions_are_remapped_and_the_counts_are_true(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        session = session_id(srv)
        async with TwinClient(srv.ws_url, token=mint_token(srv, "ana", "annotator"), name="ana") as ana:
            mine = await ana.create_topic(p.TopicDraft("Mine", pin=PIN))
            said = await ana.add_comment(mine.guid, "my words")
        # Two topics of the archive share a comment guid, which is also ana's comment on another topic.
        data = archive(tmp_path / "clash.bcf", {
            T1: markup(T1, "x", [(said.guid, "x", "first")]),
            T2: markup(T2, "x", [(said.guid, "x", "second")]),
        })  # fmt: skip
        status, body, _ = await post_bcf(http, srv, session, data, bearer(srv, "lead", "presenter"))
        assert (status, body["topics"], body["comments"]) == (201, 2, 2)
        assert sum("has the guid of another comment" in w for w in body["warnings"]) == 2
        async with TwinClient(srv.ws_url, token=mint_token(srv, "v", "viewer")) as viewer:
            by_topic = {(c.topic, c.text) for c in viewer.comments.values()}
            assert by_topic == {(mine.guid, "my words"), (T1, "first"), (T2, "second")}
            assert viewer.comments[said.guid].text == "my words"  # ana's comment was neither replaced nor moved
        stored = [await get_json(srv, f"/api/sessions/{session}/topics/{t}/comments") for t in (mine.guid, T1, T2)]
        assert [len(comments) for comments in stored] == [1, 1, 1]


def test_cli_counts_what_it_stores_and_keeps_other_sessions_attachments(tmp_path: Path) -> None:
    import asyncio

    from viewer_server.store import AuditEntry, Store

    topic, comments, blobs = sample()
    store = Store(tmp_path / "data")
    pairs = [(a, blobs[a.id]) for a in topic.attachments]
    asyncio.run(store.import_topics("s1", [topic], comments, pairs, AuditEntry("s1", 0.0, "t", "admin", "x", "")))
    store.close()
    out = tmp_path / "s1.bcf"
    assert twinview("bcf", "export", "s1", "-o", str(out), "--data-dir", str(tmp_path / "data")).returncode == 0
    archive(tmp_path / "clash.bcf", {T1: markup(T1, "x", [(SHARED, "x", "a")]), T2: markup(T2, "x", [
        (SHARED, "x", "b")])})  # fmt: skip
    for path in (out, tmp_path / "clash.bcf"):
        proc = twinview("bcf", "import", "s2", str(path), "--data-dir", str(tmp_path / "data"))
        assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("imported 2 topics, 2 comments")
    store = Store(tmp_path / "data")
    try:
        assert len(store.comments("s2")) == 4  # sample's 2 exported comments + the 2 clashing ones
        # The snapshot of s1 still belongs to s1; s2 got its own copy under another id.
        snapshot = topic.viewpoints[0].snapshot
        assert store.attachment(snapshot)[0] == "s1"
        copied = next(t for t in store.topics("s2") if t.guid == topic.guid).viewpoints[0].snapshot
        owner, _, data = store.attachment(copied)
        assert copied != snapshot and (owner, data) == ("s2", PNG)
        assert all(t.author == "twinview-cli" for t in store.topics("s2"))
    finally:
        store.close()


@pytest.mark.in_process_only("holds the server's import slots from inside it")
async def test_a_busy_server_refuses_more_imports_with_503(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        session = session_id(srv)
        data = archive(tmp_path / "one.bcf", {T1: markup(T1, "x", [])})
        for _ in range(MAX_CONCURRENT_IMPORTS):  # imports in progress hold the slots
            await srv.live.bcf_imports.acquire()
        status, body, headers = await post_bcf(http, srv, session, data, bearer(srv, "root", "admin"))
        assert (status, body["error"]) == (503, "busy")
        assert "try again in a few seconds" in body["detail"] and int(headers["Retry-After"]) > 0
        for _ in range(MAX_CONCURRENT_IMPORTS):
            srv.live.bcf_imports.release()
        status, body, _ = await post_bcf(http, srv, session, data, bearer(srv, "root", "admin"))
        assert (status, body["topics"]) == (201, 1)


# --- memory: bounded work, one entry at a time ----------------------------------------------------------------


def test_many_entries_just_under_the_entry_ratio_check_are_refused_as_a_whole(tmp_path: Path) -> None:
    entries = {f"padding/{i}.bin": bytes(RATIO_MIN_BYTES) for i in range(20)}  # each exactly at the entry bound
    path = _zip(tmp_path / "amplify.bcf", {"bcf.version": VERSION_30, f"{T1}/markup.bcf": markup(T1, "x", []),
                                           **entries})  # fmt: skip
    with pytest.raises(BcfError) as info:
        import_bcf(path, None)
    assert info.value.entry == "" and f"ratio above {MAX_COMPRESSION_RATIO}:1" in info.value.problem


def test_entries_the_topics_do_not_use_are_never_decompressed(tmp_path: Path) -> None:
    topic, comments, blobs = sample()
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr(zipfile.ZipInfo("unused/noise.bin"), b"\x00" * 4096)  # stored as is
    data = bytearray(out.read_bytes())
    at = data.index(b"\x00" * 4096)
    data[at : at + 8] = b"\xff" * 8  # the entry's CRC no longer matches
    (tmp_path / "b.bcf").write_bytes(bytes(data))
    result = import_bcf(tmp_path / "b.bcf", None)  # reading that entry would fail its CRC
    assert result.topics == [topic] and blobs_of(result) == blobs
    assert all(isinstance(entry, str) for entry in result.attachment_entries.values())  # names, not bytes


def test_an_archive_changed_after_reading_is_refused_when_its_attachments_are_read(tmp_path: Path) -> None:
    topic, comments, blobs = sample()
    out = export_bcf([topic], comments, blobs, "p", tmp_path / "a.bcf").path
    result = import_bcf(out, None)
    export_bcf([topic], comments, {k: PNG[:-1] + b"!" for k in blobs}, "p", out)
    with pytest.raises(BcfError, match="changed while it was being imported"):
        dict(result.attachments())
