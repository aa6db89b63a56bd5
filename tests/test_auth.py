"""Join tokens: signing, expiry, sessions; and the server refusing bad ones with close 4003."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import live_server, mint_token, new_session, server_secret, session_id
from viewer_server import protocol as p
from viewer_server.auth import AuthError, Claims, issue, load_secret, mint, parse_ttl, verify
from viewer_server.client import TwinClient, TwinClientError

pytestmark = pytest.mark.deployable

SECRET = b"k" * 32


def test_a_token_carries_its_claims_and_verifies_for_its_session() -> None:
    token = issue(SECRET, "review", "ana", "annotator", 60)
    claims = verify(SECRET, token, session="review")
    assert (claims.session, claims.user, claims.role) == ("review", "ana", "annotator")
    assert claims.jti and abs(claims.exp - time.time() - 60) < 2
    assert verify(SECRET, token).session == "review"  # any session when none is asked for


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (issue(b"x" * 32, "review", "ana", "admin"), "bad token signature"),
        (mint(SECRET, Claims("review", "ana", "admin", exp=time.time() - 3600)), "token expired"),
        (issue(SECRET, "other", "ana", "admin"), "token is for another session (other)"),
        ("not-a-token", "malformed token"),
        ("a.b.c", "malformed token"),
        ("!!!.???", "malformed token"),
    ],
    ids=["bad-signature", "expired", "wrong-session", "garbage", "three-parts", "not-base64"],
)
def test_bad_tokens_are_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(AuthError) as info:
        verify(SECRET, token, session="review")
    assert info.value.reason == reason


def test_the_clock_skew_allowance_is_proportional_for_short_tokens() -> None:
    now = time.time()
    short = mint(SECRET, Claims("review", "ana", "viewer", exp=now + 1, iat=now))
    assert verify(SECRET, short, now=now + 1.05).user == "ana"  # 10 % of 1 s
    with pytest.raises(AuthError, match="token expired"):
        verify(SECRET, short, now=now + 1.5)  # was accepted until now + 31 s
    day = mint(SECRET, Claims("review", "ana", "viewer", exp=now + 8 * 3600, iat=now))
    assert verify(SECRET, day, now=now + 8 * 3600 + 29).user == "ana"  # long tokens keep the full 30 s
    with pytest.raises(AuthError, match="token expired"):
        verify(SECRET, day, now=now + 8 * 3600 + 31)


def test_a_tampered_payload_fails_the_signature() -> None:
    sig = issue(SECRET, "review", "ana", "viewer").split(".")[1]
    forged = issue(b"attacker" * 4, "review", "ana", "admin").split(".")[0]
    with pytest.raises(AuthError, match="signature"):
        verify(SECRET, f"{forged}.{sig}")


def test_the_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_secret(tmp_path / "data")
    assert len(first) == 32 and load_secret(tmp_path / "data") == first
    assert stat.S_IMODE((tmp_path / "data" / "secret.key").stat().st_mode) == 0o600


def test_lifetimes_parse_and_are_bounded() -> None:
    assert [parse_ttl(t) for t in ("90s", "30m", "8h", "2d", "15")] == [90, 1800, 28800, 172800, 15]
    with pytest.raises(ValueError):
        parse_ttl("soon")
    with pytest.raises(ValueError):
        issue(SECRET, "s", "u", "viewer", ttl_s=365 * 86400)


async def _refusal(url: str, **kw: object) -> TwinClientError:
    with pytest.raises(TwinClientError) as info:
        async with TwinClient(url, reconnect=False, **kw):  # type: ignore[arg-type]
            pass
    return info.value


async def test_the_server_closes_4003_for_bad_expired_and_wrong_session_tokens(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv:
        review = await new_session(srv, "review")
        cases = {
            "bad token signature": issue(b"y" * 32, review, "ana", "admin"),
            "token expired": mint(server_secret(srv), Claims(review, "ana", "admin", exp=time.time() - 600)),
            "token is for another session": mint_token(srv, "ana", "admin"),  # default session, asked for review
        }
        for reason, token in cases.items():
            error = await _refusal(srv.ws_url, token=token, session=review)
            assert error.code == p.CLOSE_AUTH and error.reason.startswith(reason)
        error = await _refusal(srv.ws_url, session=review)  # no token, session without anonymous role
        assert error.code == p.CLOSE_AUTH and "needs a token" in error.reason
        error = await _refusal(srv.ws_url, session="nope")
        assert error.code == p.CLOSE_AUTH and "no session" in error.reason
        async with TwinClient(srv.ws_url, token=mint_token(srv, "ana", "presenter", session=review)) as ok:
            assert (ok.welcome.session, ok.welcome.user, ok.welcome.role) == (review, "ana", "presenter")


async def test_anonymous_visitors_of_the_default_session_are_viewers(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, TwinClient(srv.ws_url, role="admin", name="eve") as eve:
        assert (eve.welcome.session, eve.welcome.role, eve.welcome.name) == (session_id(srv), "viewer", "eve (guest)")
        assert eve.welcome.user.startswith("guest-")


async def test_rest_refuses_missing_bad_and_expired_bearer_tokens(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        review = await new_session(srv, "review")
        url = f"{srv.url}/api/sessions/{review}/topics"
        expired = mint(server_secret(srv), Claims(review, "ana", "admin", exp=time.time() - 600))
        for headers in ({}, {"Authorization": "Bearer junk"}, {"Authorization": f"Bearer {expired}"}):
            async with http.get(url, headers=headers) as r:
                assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        good = {"Authorization": f"Bearer {mint_token(srv, 'ana', 'viewer', session=review)}"}
        async with http.get(url, headers=good) as r:
            assert r.status == 200 and await r.json() == []
