"""Revoking a user's join links: per (session, user), over REST (which also disconnects them at once) or
the CLI (refused by a running server at the next connection, and open connections closed within a
poll), with a fresh link working again."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec
import pytest

from tests.live_server import JSON_BODY, Served, ServedBy, live_server, mint_token, new_session, session_id
from viewer_server import auth
from viewer_server import protocol as p
from viewer_server.auth import REVOKED, AuthError, Claims, _b64, _sign, issue, mint, revocation_time, verify
from viewer_server.client import TwinClient, TwinClientError
from viewer_server.serve import REVOCATION_POLL_S
from viewer_server.store import Store, put_revocation

pytestmark = pytest.mark.deployable

SECRET = b"k" * 32


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _ws_refusal(srv: Served, token: str) -> TwinClientError:
    with pytest.raises(TwinClientError) as info:
        async with TwinClient(srv.ws_url, token=token, reconnect=False):
            pass
    return info.value


async def _joins(srv: Served, token: str) -> tuple[str, str]:
    async with TwinClient(srv.ws_url, token=token, reconnect=False) as c:
        assert c.welcome is not None
        return c.welcome.session, c.welcome.user


async def _topics_status(http: aiohttp.ClientSession, srv: Served, session: str, token: str) -> tuple[int, Any]:
    async with http.get(f"{srv.url}/api/sessions/{session}/topics", headers=_bearer(token)) as r:
        return r.status, await r.json()


async def _revoke(http: aiohttp.ClientSession, srv: Served, session: str, body: Any, token: str) -> Any:
    data = body if isinstance(body, bytes) else p.encode(body, "json")
    async with http.post(
        f"{srv.url}/api/sessions/{session}/revoke", data=data, headers={**_bearer(token), **JSON_BODY}
    ) as r:
        return r.status, await r.json()


# --- tokens ----------------------------------------------------------------------------------------


def test_verify_refuses_tokens_issued_until_the_users_revocation_and_nobody_elses() -> None:
    before = issue(SECRET, "review", "bob", "annotator")
    revocations = {("review", "bob"): revocation_time()}
    after = issue(SECRET, "review", "bob", "annotator")

    def lookup(session: str, user: str) -> float | None:
        return revocations.get((session, user))

    assert verify(SECRET, before, session="review").iat < revocations["review", "bob"] < verify(SECRET, after).iat
    with pytest.raises(AuthError) as info:
        verify(SECRET, before, session="review", revoked_at=lookup)
    assert info.value.reason == REVOKED == "token revoked"
    assert verify(SECRET, after, session="review", revoked_at=lookup).user == "bob"  # re-issued: admitted
    assert verify(SECRET, issue(SECRET, "review", "ana", "annotator"), revoked_at=lookup).user == "ana"
    assert verify(SECRET, issue(SECRET, "training", "bob", "annotator"), revoked_at=lookup).user == "bob"


def test_a_token_without_iat_counts_as_issued_at_zero() -> None:
    claims = {"session": "review", "user": "bob", "role": "viewer", "exp": time.time() + 60, "jti": "old"}
    payload = msgspec.json.encode(claims)  # as minted before `iat` existed
    old = f"{_b64(payload)}.{_b64(_sign(SECRET, payload))}"
    assert verify(SECRET, old, revoked_at=lambda s, u: None).iat == 0.0  # no revocation: still valid
    with pytest.raises(AuthError, match="token revoked"):
        verify(SECRET, old, revoked_at=lambda s, u: 1.0)


def test_a_link_issued_right_after_a_revocation_is_never_caught_by_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A coarse clock (1 ms, as on some systems): without care, the revocation and a link issued right
    # after it would read the same time, and the new link would be refused.
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: round(time.time(), 3)))
    for _ in range(50):
        revoked = revocation_time()
        token = mint(SECRET, Claims("review", "bob", "viewer", exp=time.time() + 60))
        assert verify(SECRET, token, revoked_at=lambda s, u, t=revoked: t).iat > revoked


# --- over REST -------------------------------------------------------------------------------------


async def test_a_revoked_users_old_links_are_refused_and_a_new_link_works(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        review = await new_session(srv, "review", None)
        default = session_id(srv)
        admin = mint_token(srv, "root", "admin")
        bob_old = mint_token(srv, "bob", "annotator", session=review)
        bob_elsewhere = mint_token(srv, "bob", "annotator")  # the default session: not revoked
        ana = mint_token(srv, "ana", "annotator", session=review)
        assert await _joins(srv, bob_old) == (review, "bob")

        status, revoked = await _revoke(http, srv, review, {"user": "bob"}, admin)
        assert status == 200, revoked
        assert (revoked["session"], revoked["user"], revoked["disconnected"]) == (review, "bob", 0)
        assert abs(revoked["revoked_at"] - time.time()) < 5

        error = await _ws_refusal(srv, bob_old)
        assert (error.code, error.reason) == (p.CLOSE_AUTH, "token revoked")
        assert await _topics_status(http, srv, review, bob_old) == (
            401,
            {"error": "unauthorized", "detail": "token revoked"},
        )
        assert await _joins(srv, ana) == (review, "ana")  # another user of the session
        assert (await _topics_status(http, srv, review, ana))[0] == 200
        assert await _joins(srv, bob_elsewhere) == (default, "bob")  # the same user in another session

        bob_new = mint_token(srv, "bob", "annotator", session=review)
        assert await _joins(srv, bob_new) == (review, "bob")
        assert (await _topics_status(http, srv, review, bob_new))[0] == 200

        auditor = _bearer(mint_token(srv, "auditor", "admin", session=review))
        async with http.get(f"{srv.url}/api/sessions/{review}/audit", headers=auditor) as r:
            entry = next(e for e in await r.json() if e["action"] == "session.revoke")
        assert (entry["actor"], entry["role"], entry["target"]) == ("root", "admin", "bob")


async def test_revoking_over_rest_disconnects_the_users_connections_to_that_session_now(
    tmp_path: Path, served_by: ServedBy
) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        review = await new_session(srv, "review", "viewer")
        clients = {
            "bob": TwinClient(srv.ws_url, token=mint_token(srv, "bob", "annotator", session=review)),
            "bob-2": TwinClient(srv.ws_url, token=mint_token(srv, "bob", "viewer", session=review)),
            "ana": TwinClient(srv.ws_url, token=mint_token(srv, "ana", "annotator", session=review)),
            "bob-default": TwinClient(srv.ws_url, token=mint_token(srv, "bob", "annotator")),
            # An anonymous visitor (not "bob" while bob is here) holds no token: nothing of his to revoke.
            "bob-anonymous": TwinClient(srv.ws_url, session=review, name="Bobby"),
        }
        for c in clients.values():
            await c.connect()
            if c is not clients["bob-default"]:
                await c.send_presence(p.Pose((0, 0, 0), (0, 0, 0, 1)))
        ana = clients["ana"]
        await ana.wait_for(lambda c: len(c.presence) == 4)  # everyone in the session, ana too
        try:
            status, revoked = await _revoke(http, srv, review, {"user": "bob"}, mint_token(srv, "root", "admin"))
            # On a deployment, the answering process counts the connections it closed; the others close theirs
            # within a second (PROTOCOL.md §16), as the clients below see.
            assert status == 200 and (revoked["disconnected"] == 2 or served_by == "deployment")
            for name in ("bob", "bob-2"):
                await clients[name].wait_for(lambda c: c.closed_with is not None)
                closed = clients[name].closed_with
                assert closed is not None and (closed.code, closed.reason) == (p.CLOSE_AUTH, "token revoked")
            for name in ("ana", "bob-default", "bob-anonymous"):
                await clients[name].ping()
                assert clients[name].closed_with is None
            await ana.wait_for(lambda c: sorted(pr.client for pr in c.presence.values()) == ["Bobby (guest)", "ana"])
        finally:
            for c in clients.values():
                await c.close()


@pytest.mark.in_process_only("reads the server's store to see that no refusal revoked anything")
async def test_revoke_is_for_admins_of_known_sessions_with_a_user(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        await srv.live.rooms.create("review", "Review", None, "test")
        admin = mint_token(srv, "root", "admin")
        for role in ("viewer", "annotator", "presenter", "operator", "publisher"):
            status, body = await _revoke(http, srv, "review", {"user": "bob"}, mint_token(srv, "x", role))  # type: ignore[arg-type]
            assert (status, body["error"]) == (403, "forbidden"), role
        assert (await _revoke(http, srv, "nope", {"user": "bob"}, admin))[0] == 404
        for bad in (b"not json", {"name": "bob"}, {"user": 7}, {"user": ""}, {"user": "b" * 65}):
            status, body = await _revoke(http, srv, "review", bad, admin)
            assert status == 400, bad
        async with http.post(f"{srv.url}/api/sessions/review/revoke", headers=JSON_BODY, data=b'{"user": "bob"}') as r:
            assert r.status == 401
        assert srv.store.revoked_at("review", "bob") is None  # none of the refusals revoked anything

        async with http.get(f"{srv.url}/api/openapi.json") as r:
            op = (await r.json())["paths"]["/api/sessions/{session}/revoke"]["post"]
        assert op["operationId"] == "session_revoke" and "requestBody" in op
        assert {"200", "400", "401", "403", "404"} <= set(op["responses"])


@pytest.mark.in_process_only("writes revocations into the server's store before it starts, then reads it")
async def test_the_server_forgets_revocations_older_than_any_token(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    for user, age_s in (("old", auth.MAX_TTL_S + 3600), ("recent", 3600)):
        revoked_at = time.time() - age_s
        store.submit(lambda db, user=user, at=revoked_at: put_revocation(db, "review", user, at)).result()
    store.close()
    async with live_server(tmp_path) as srv:
        srv.store.flush()
        assert srv.store.revoked_at("review", "old") is None  # every token it voided has expired
        assert srv.store.revoked_at("review", "recent") is not None


# --- from the CLI ----------------------------------------------------------------------------------


async def _twinview(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "viewer_server.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.in_process_only("revokes with the CLI on the server's data dir")
async def test_a_revocation_by_the_cli_is_seen_by_the_running_server(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        await srv.live.rooms.create("review", "Review", "viewer", "test")
        bob_old = mint_token(srv, "bob", "annotator", session="review")
        ana = mint_token(srv, "ana", "annotator", session="review")
        async with (
            TwinClient(srv.ws_url, token=bob_old) as open_before,
            TwinClient(srv.ws_url, token=ana) as ana_open,
            TwinClient(srv.ws_url, session="review", name="Bobby") as anonymous_bob,
        ):
            code, out, err = await _twinview("session", "revoke", "review", "--user", "bob", *data)
            assert (code, err) == (0, ""), err
            assert out.startswith("revoked bob's links to session review issued until ")

            error = await _ws_refusal(srv, bob_old)
            assert (error.code, error.reason) == (p.CLOSE_AUTH, "token revoked")
            assert (await _topics_status(http, srv, "review", bob_old))[0] == 401
            assert await _joins(srv, ana) == ("review", "ana")
            # The server finds the CLI's revocation at its next poll and closes bob's open connection.
            await open_before.wait_for(lambda c: c.closed_with is not None, timeout=REVOCATION_POLL_S + 5)
            assert open_before.closed_with is not None
            assert (open_before.closed_with.code, open_before.closed_with.reason) == (p.CLOSE_AUTH, "token revoked")
            async with TwinClient(srv.ws_url, token=mint_token(srv, "bob", "viewer", session="review")) as bob_new:
                await asyncio.sleep(2 * REVOCATION_POLL_S)  # polls that must leave a newer link alone
                for still_open in (bob_new, ana_open, anonymous_bob):
                    await still_open.ping()
                    assert still_open.closed_with is None

        for args, message in [
            (("nope", "--user", "bob", *data), "twinview: no session 'nope'; see `twinview session list`"),
            (("review", "--user", "", *data), "twinview: user name: 1..64 characters"),
            (("review", "--user", "bob", "--data-dir", str(tmp_path / "none")), f"twinview: {tmp_path / 'none'}: "),
        ]:
            code, out, err = await _twinview("session", "revoke", *args)
            assert code == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith(message), err
        assert not (tmp_path / "none").exists()

    async with live_server(tmp_path) as srv:  # revocations are in the store: a restart keeps them
        error = await _ws_refusal(srv, bob_old)
        assert (error.code, error.reason) == (p.CLOSE_AUTH, "token revoked")
