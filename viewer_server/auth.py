"""Join tokens: who a connection is, in which session, with which role, until when.

A token is `base64url(payload).base64url(HMAC-SHA256(secret, payload))`, the payload being the JSON of
`Claims`. The secret is generated at first start in `<data-dir>/secret.key` (mode 0600); deleting it
invalidates every token. `verify` raises `AuthError` with a reason fit for a close frame (4003).
Revoking a user in a session (`revocation_time`, stored by `viewer_server.rooms`) voids every token
issued to them there until then: `verify(..., revoked_at=rooms.revoked_at)` refuses an older `iat`.

    secret = load_secret(data_dir)
    token = mint(secret, Claims(session="review", user="ana", role="annotator", exp=time.time() + 3600))
    claims = verify(secret, token, session="review")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from viewer_server.data_dir import PRIVATE_FILE, prepare
from viewer_server.permissions import Role

SECRET_FILE: Final = "secret.key"
SECRET_BYTES: Final = 32  # 256-bit key, the HMAC-SHA256 block-size recommendation
# Token lifetime when none is given: one working day, so a link handed out in the morning lasts.
DEFAULT_TTL_S: Final = 8 * 3600
# Longest lifetime `mint` accepts: a leaked link must not stay valid forever.
MAX_TTL_S: Final = 30 * 24 * 3600
# Tokens longer than this are refused before decoding (a real one is ~200 bytes).
MAX_TOKEN_CHARS: Final = 2048
# Clock skew tolerated between the issuing and the verifying host (both are usually the same)...
CLOCK_SKEW_S: Final = 30.0
# ...but at most this fraction of the token's lifetime: a 1 s token must not be good for 31 s.
CLOCK_SKEW_FRACTION: Final = 0.1
# Why a revoked user's token is refused, and why their open connections are closed (close 4003).
REVOKED: Final = "token revoked"


class Claims(msgspec.Struct, omit_defaults=True):
    session: str
    user: str  # the identity: authorship, ownership, audit, revocation
    role: Role
    exp: float  # unix seconds
    jti: str = ""  # token id, for the audit trail
    iat: float = 0.0  # issued at, unix seconds (set by `mint`); 0 in tokens minted before revocation existed
    name: str = ""  # the display name shown to others ("" = the user id); made unique per session on join


class AuthError(Exception):
    """A token that cannot be used; `reason` is short enough for a WebSocket close frame."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_secret(data_dir: Path) -> bytes:
    """The server secret, created (mode 0600) on first use."""
    path = data_dir / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        prepare(data_dir)
        key = secrets.token_bytes(SECRET_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:  # another process created it first: use theirs
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def mint(secret: bytes, claims: Claims) -> str:
    if claims.exp - time.time() > MAX_TTL_S:
        raise ValueError(f"token lifetime longer than {MAX_TTL_S // 86400} days")
    claims = msgspec.structs.replace(claims, jti=claims.jti or secrets.token_hex(8), iat=claims.iat or time.time())
    payload = msgspec.json.encode(claims)
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def issue(secret: bytes, session: str, user: str, role: Role, ttl_s: float = DEFAULT_TTL_S, name: str = "") -> str:
    return mint(secret, Claims(session=session, user=user, role=role, exp=time.time() + ttl_s, name=name))


def clock_skew(claims: Claims) -> float:
    """The skew allowed past `exp`: CLOCK_SKEW_S, or CLOCK_SKEW_FRACTION of a shorter token's lifetime."""
    if claims.iat <= 0:  # minted before `iat` existed: the lifetime is unknown
        return CLOCK_SKEW_S
    return min(CLOCK_SKEW_S, max(claims.exp - claims.iat, 0.0) * CLOCK_SKEW_FRACTION)


_claims_dec = msgspec.json.Decoder(Claims)


def revocation_time() -> float:
    """Now, as the time before which a revoked user's tokens are void: spins until the clock has moved
    past it, so a token minted after the revocation returns always has a later `iat` (never equal)."""
    now = time.time()
    while time.time() <= now:  # at most one clock tick (~1 µs)
        pass
    return now


def verify(
    secret: bytes,
    token: str,
    *,
    session: str | None = None,
    now: float | None = None,
    revoked_at: Callable[[str, str], float | None] | None = None,
) -> Claims:
    """The claims of a valid token for `session` (any session when None); AuthError otherwise.
    `revoked_at(session, user)`: the time up to which that user's tokens are revoked (None: never)."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise AuthError("malformed token")
    body, sig = token.split(".")
    try:
        payload, signature = _unb64(body), _unb64(sig)
    except ValueError:
        raise AuthError("malformed token") from None
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise AuthError("bad token signature")
    try:
        claims = _claims_dec.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise AuthError("malformed token") from None
    if claims.exp + clock_skew(claims) < (time.time() if now is None else now):
        raise AuthError("token expired")
    if session is not None and claims.session != session:
        raise AuthError(f"token is for another session ({claims.session[:40]})")
    if revoked_at is not None:
        revoked = revoked_at(claims.session, claims.user)
        if revoked is not None and claims.iat <= revoked:
            raise AuthError(REVOKED)
    return claims


def join_link(session: str, token: str) -> str:
    """The web client's join link, relative to the server's address."""
    return f"/?session={session}&token={token}"


def parse_ttl(text: str) -> float:
    """'8h', '30m', '2d', '90s' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"bad duration {text!r}: use e.g. 90s, 30m, 8h, 2d") from None
    if value <= 0:
        raise ValueError(f"bad duration {text!r}: must be positive")
    return value
