"""Collaboration sessions ("rooms") on the served scene, who is in them, and how a connection gets in.

One scene hosts many sessions: a design review, a training, an operations shift. Each has its own
members, presence, topics and procedure; the twin state (values, alarms) is shared by all. The scene's
default session has the scene's id and lets link-less visitors in as `viewer` (`anonymous_role`).

    member = admit(live.rooms, live.secret, hello)   # AuthError -> close 4003, NameRefused -> 4009
    live.rooms.join(member); ...; live.rooms.leave(member)
    live.rooms.members(member.room)                  # who is in a session now
    await live.rooms.revoke(room_id, "bob", admin)   # bob's links so far no longer admit him

`Member` is also the actor passed to the annotation service and to permission checks:
`allowed(member.role, Action.X)`.

Identity comes only from a verified token: `member.user` is the token's user, or for an anonymous visitor
a random `guest-<hex>` fixed for the connection (a reconnect keeps it by presenting the guest token its
`welcome.token` carried). What anyone calls themselves (`hello.name`) is only their display name, `member.name`:
unique in the session, never a role or another present user's name (refused: NameRefused), and a visitor's
always ends in " (guest)", so it never reads as a token user. With several processes (`Rooms.names`), unique
across all of them: `admitted` claims the name in Redis (viewer_server/name_claims.py).
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from viewer_server import protocol as p
from viewer_server.auth import DEFAULT_TTL_S, AuthError, Claims, mint, revocation_time, verify
from viewer_server.name_claims import NameClaims, NameRule
from viewer_server.permissions import PERSONS, ROLES, Action, is_role
from viewer_server.store import AuditEntry, RoomRow, Store, put_audit, put_revocation, put_room
from viewer_server.store_db import Conflict, Db

Room = RoomRow
# Session ids travel in links and file names: short and plain.
ROOM_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_ROOM_NAME: Final = 200
# User names come from tokens or hellos and are shown to everyone: one line of a member list.
MAX_USER_NAME: Final = 64
DEFAULT_ANONYMOUS_ROLE: Final = "viewer"
# Anonymous identities: the prefix, reserved (no token may be issued for such a user), and 48 random bits.
GUEST_PREFIX: Final = "guest-"
GUEST_ID_BYTES: Final = 6
# The display name of a visitor that gave none, and the mark every visitor's name ends with: "Ana (guest)"
# never reads as a token user. Token users' names may not end with it.
DEFAULT_GUEST_NAME: Final = "Visitor"
GUEST_MARK: Final = " (guest)"
# A visitor's name as granted, which a reconnect sends back: "Ana (guest)", or numbered "Visitor (guest) (2)".
GRANTED_GUEST_NAME: Final = re.compile(r"(?P<base>.*?) \(guest\)(?: \([0-9]+\))?", re.IGNORECASE)
# Names tried for one connection before giving up, when other processes' connections keep taking them.
MAX_NAME_CLAIMS: Final = 20


class NameRefused(AuthError):
    """A display name asked for in `hello.name` that cannot be used (close 4009): the reason says what to do."""


@dataclass(frozen=True)
class Member:
    """One connection in a session: its connection id, verified identity, granted role and display name."""

    connection: str
    room: str
    user: str  # a token's user, or the guest id of an anonymous visitor: authorship, ownership, audit
    role: p.Role
    token_id: str = ""  # the token's jti ("" = a REST call without a token)
    issued_at: float = 0.0  # the token's `iat`: a revocation later than this closes the connection
    name: str = ""  # what others see: unique among the people of the session
    guest_token: str = ""  # a visitor's first connection: the token that lets a reconnect keep this identity
    naming: NameRule = field(default_factory=NameRule)  # what else the name's claim across processes conflicts with

    @property
    def guest(self) -> bool:
        return self.user.startswith(GUEST_PREFIX)


def guest_id() -> str:
    return GUEST_PREFIX + secrets.token_hex(GUEST_ID_BYTES)


def user_problem(user: str, name: str = "") -> str | None:
    """Why a token cannot be issued for `user` with display `name` (None: it can): a guest id would let a
    token act as a visitor, a name ending in GUEST_MARK would read as one."""
    if not 0 < len(user) <= MAX_USER_NAME:
        return f"user name: 1..{MAX_USER_NAME} characters"
    if len(name) > MAX_USER_NAME:
        return f"display name: at most {MAX_USER_NAME} characters"
    if not (user + name).isprintable():
        return "user and display name: printable characters only"
    if user.casefold().startswith(GUEST_PREFIX):
        return f"user name: {GUEST_PREFIX!r} names anonymous visitors"
    if (name or user).casefold().endswith(GUEST_MARK):
        return f"display name: {GUEST_MARK.strip()!r} marks anonymous visitors"
    return None


def clean_name(text: str) -> str:
    """A display name: NFKC-normalised, without control or format characters, spaces collapsed, bounded."""
    text = unicodedata.normalize("NFKC", text[: 4 * MAX_USER_NAME])  # a hello may carry a megabyte
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    return " ".join(text.split())[:MAX_USER_NAME]


class Rooms:
    """The sessions of one scene (cached from the store) and their current members."""

    def __init__(self, store: Store | None, scene_id: str, names: NameClaims | None = None) -> None:
        self.store = store
        self.scene_id = scene_id
        self.names = names  # several processes: display names are claimed across them
        self._claiming: dict[str, dict[str, Member]] = {}  # by session and connection: admitted, claiming its name
        self._rooms: dict[str, Room] = {}
        self._members: dict[str, dict[str, Member]] = {}
        if store is not None:
            self._rooms = {r.id: r for r in store.rooms() if r.scene == scene_id}
        if scene_id not in self._rooms:  # the default session always exists
            default = Room(scene_id, scene_id, "default", time.time(), "server", DEFAULT_ANONYMOUS_ROLE)
            self._rooms[scene_id] = default
            if store is not None:  # so that `twinview session list` shows it
                store.submit(lambda db: put_room(db, default, if_absent=True))

    @property
    def default(self) -> Room:
        return self._rooms[self.scene_id]

    def get(self, room_id: str) -> Room | None:
        """A session by id; one created meanwhile by `twinview session create` is read from the store."""
        room = self._rooms.get(room_id)
        if room is None and self.store is not None:
            room = self.store.room(room_id)
            if room is not None and room.scene == self.scene_id:
                self._rooms[room_id] = room
        return room

    def list(self) -> list[Room]:
        if self.store is not None:
            for row in self.store.rooms():
                if row.scene == self.scene_id:
                    self._rooms.setdefault(row.id, row)
        return sorted(self._rooms.values(), key=lambda r: r.id)

    async def create(self, room_id: str, name: str, anonymous_role: str | None, created_by: str) -> Room:
        """A new session, committed before it is returned. ValueError for a bad or taken id."""
        room = new_room(room_id, self.scene_id, name, anonymous_role, created_by)
        if self.get(room_id) is not None:
            raise ValueError(f"session {room_id!r} exists")
        if self.store is not None:
            try:
                await self.store.run(lambda db: put_room(db, room))
            except Conflict:  # created meanwhile (another request, another process, or the CLI)
                raise ValueError(f"session {room_id!r} exists") from None
        self._rooms[room_id] = room
        return room

    # --- revocation ------------------------------------------------------------------------------

    def revoked_at(self, room_id: str, user: str) -> float | None:
        """Until when `user`'s tokens for the session are revoked (None: never); `auth.verify` asks it.
        Read from the store each time, so a revocation by `twinview session revoke` counts at once."""
        return self.store.revoked_at(room_id, user) if self.store is not None else None

    async def revoke(self, room_id: str, user: str, by: Member) -> float:
        """Void `user`'s tokens for the session issued up to now; committed (and audited) before it
        returns the revocation time. Needs the store. Open connections are the caller's to close."""
        if self.store is None:
            raise RuntimeError("revocation needs a server with a data dir")
        return await self.store.run(revocation(room_id, user, by.user, by.role))

    # --- membership ------------------------------------------------------------------------------

    def join(self, member: Member) -> None:
        self._members.setdefault(member.room, {})[member.connection] = member

    def display_name(
        self,
        room: str,
        user: str,
        requested: str,
        *,
        shared: bool = False,
        resuming: bool = False,
        elsewhere: frozenset[tuple[str, str]] = frozenset(),
    ) -> tuple[str, NameRule]:
        """`user`'s display name in the session: `requested` (cleaned), else the user id (a guest: "Visitor").

        A guest's always ends in GUEST_MARK, so that it never reads as a token user or a role. A name the person
        chose (`requested`) is refused (NameRefused) when it is a role, ends in GUEST_MARK (a token user's),
        or is another present user's name or user id. Else it is made unique by " (2)", " (3)"…: a default or
        a token's name that another connection holds. `shared`: a token's `name` claim names one person, whose
        connections (tabs) share it; `resuming`: a reconnect takes back the name its old connection may still
        hold, and is never refused for it: another process may have granted the same name meanwhile, so a name
        someone here holds is numbered instead. `elsewhere`: the claims (case-folded name, user) that connections
        hold on other processes, held as if here. Every comparison is case-insensitive. With the name, the rule
        its claim across processes follows (`NameRule`): the same as here."""
        chosen = clean_name(requested)
        guest = user.startswith(GUEST_PREFIX)
        granted = GRANTED_GUEST_NAME.fullmatch(chosen) if guest else None
        if granted:  # what a resuming visitor had: the mark (and a number) come back
            chosen = granted["base"]
        if chosen and not shared:
            refuse_chosen(chosen, user, guest)
        base = chosen or (DEFAULT_GUEST_NAME if guest else user)
        name = base[: MAX_USER_NAME - len(GUEST_MARK)] + GUEST_MARK if guest else base
        local = self.members(room) + list(self._claiming.get(room, {}).values())
        holding = [(m.name.casefold(), m.user) for m in local] + list(elsewhere)
        others = [(held_name, holder) for held_name, holder in holding if holder != user]
        held = {held_name for held_name, _ in others} | {holder.casefold() for _, holder in others}
        per_connection = not (shared or resuming)  # the same user's other connections are other people
        rule = NameRule(base if chosen and per_connection else "", per_connection)
        if resuming and granted and granted[0].casefold() not in held:
            return granted[0], rule
        if chosen and per_connection and {name.casefold(), base.casefold()} & held:
            raise NameRefused(f"{base!r} is the name of someone in this session: choose another name")
        if per_connection:  # a shared link
            held |= {held_name for held_name, holder in holding if holder == user}
        unique, n = name, 2
        while unique.casefold() in held:
            suffix = f" ({n})"
            unique, n = name[: MAX_USER_NAME - len(suffix)] + suffix, n + 1
        return unique, rule

    async def claimed(self, member: Member, again: Callable[[frozenset[tuple[str, str]]], Member]) -> Member:
        """`member` once its name is claimed across the processes (`names`); when another user holds it there,
        the member `again` admits with the claims held elsewhere (NameRefused: a chosen name someone holds).
        While it claims, its name counts as held here, so that connections admitted meanwhile choose others.
        Without `names` (one process), `member` as it is."""
        if self.names is None:
            return member
        elsewhere: set[tuple[str, str]] = set()
        try:
            for _ in range(MAX_NAME_CLAIMS):
                self._claiming.setdefault(member.room, {})[member.connection] = member
                taken = await self.names.claim(member.room, member.name, member.user, member.connection, member.naming)
                if not taken:
                    return member
                elsewhere.update(taken)
                self._claiming[member.room].pop(member.connection, None)
                member = again(frozenset(elsewhere))
            raise NameRefused("other people keep taking the names tried in this session: connect again")
        finally:
            claiming = self._claiming.get(member.room, {})
            claiming.pop(member.connection, None)
            if not claiming:
                self._claiming.pop(member.room, None)

    def release_name(self, connection: str) -> None:
        """The connection is gone: the name it claimed across the processes is free (see `claimed`)."""
        if self.names is not None:
            self.names.release(connection)

    def leave(self, member: Member) -> None:
        self.release_name(member.connection)
        members = self._members.get(member.room, {})
        members.pop(member.connection, None)
        if not members:
            self._members.pop(member.room, None)

    def members(self, room_id: str) -> list[Member]:
        return list(self._members.get(room_id, {}).values())


def refuse_chosen(name: str, user: str, guest: bool) -> None:
    """NameRefused when a person may not call themselves `name`: a role (unless it is their own user id, as on
    `twinview demo`'s links) or, for a token user, a name marked as a visitor's."""
    if name.casefold() in ROLES and name.casefold() != user.casefold():
        raise NameRefused(f"{name!r} is a role, not a name: choose a name of your own")
    if not guest and name.casefold().endswith(GUEST_MARK):
        raise NameRefused(f"{GUEST_MARK.strip()!r} marks visitors without a link: choose another name")


def new_room(room_id: str, scene_id: str, name: str, anonymous_role: str | None, created_by: str) -> Room:
    """A validated session record. ValueError names what is wrong."""
    if not ROOM_ID_PATTERN.fullmatch(room_id):
        raise ValueError(f"bad session id {room_id!r}: letters, digits, '_', '-', '.'; at most 64")
    if len(name) > MAX_ROOM_NAME:
        raise ValueError(f"session name longer than {MAX_ROOM_NAME} characters")
    if anonymous_role is not None and anonymous_role not in PERSONS:
        raise ValueError(f"anonymous role must be one of {', '.join(sorted(PERSONS))}")
    return Room(room_id, scene_id, name or room_id, time.time(), created_by, anonymous_role)


def revocation(room_id: str, user: str, actor: str, role: str) -> Callable[[Db], float]:
    """The write revoking `user`'s tokens for a session, with its audit entry, for `Store.run` / `submit`
    (the server and the CLI). It returns the revocation time, taken on the writer thread just before
    the commit: any token minted later has a later `iat`."""

    def write(db: Db) -> float:
        revoked_at = revocation_time()
        put_revocation(db, room_id, user, revoked_at)
        put_audit(db, AuditEntry(room_id, revoked_at, actor, role, Action.SESSION_REVOKE.value, user))
        return revoked_at

    return write


async def admitted(rooms: Rooms, secret: bytes, hello: p.Hello, connection: str) -> Member:
    """`admit`, with the display name claimed across the processes of a deployment (`rooms.names`): a name
    another user's connection holds on another process is held here too, so it is refused or numbered as on
    one process. A reconnect of the same user keeps its name."""
    member = admit(rooms, secret, hello, connection)
    return await rooms.claimed(member, lambda elsewhere: admit(rooms, secret, hello, connection, elsewhere))


def admit(
    rooms: Rooms,
    secret: bytes,
    hello: p.Hello,
    connection: str,
    elsewhere: frozenset[tuple[str, str]] = frozenset(),
) -> Member:
    """Who this hello is, in which session, with which role. AuthError (close 4003) when refused, NameRefused
    (close 4009) when the display name asked for cannot be used.

    With a token: its session (hello.session must match if given), user, role and display name (the `name`
    claim, else `hello.name`, else the user). Without: the session's `anonymous_role`, a new guest identity and
    `hello.name` as display name; a hello asking for `publisher` is granted it, as telemetry over REST and
    MQTT is open too, in sessions that admit anonymous users. The guest gets a token for its identity
    (`guest_token`, sent in `welcome.token`) so that a reconnect keeps it. See `Rooms.display_name` (and
    `elsewhere` there).
    """
    resuming = hello.resume is not None
    if hello.token:
        claims = verify(secret, hello.token, session=hello.session, revoked_at=rooms.revoked_at)
        room = rooms.get(claims.session)
        if room is None:
            raise AuthError(f"no session {claims.session[:40]!r}")
        user = claims.user[:MAX_USER_NAME]
        if claims.name:
            name, rule = rooms.display_name(room.id, user, claims.name, shared=True, elsewhere=elsewhere)
        else:
            name, rule = rooms.display_name(room.id, user, hello.name, resuming=resuming, elsewhere=elsewhere)
        return Member(connection, room.id, user, claims.role, claims.jti, claims.iat, name, naming=rule)
    room = rooms.get(hello.session) if hello.session else rooms.default
    if room is None:
        raise AuthError(f"no session {hello.session[:40]!r}" if hello.session else "no session")
    if room.anonymous_role is None or not is_role(room.anonymous_role):
        raise AuthError(f"session {room.id[:40]!r} needs a token: open the join link you were given")
    role: p.Role = "publisher" if hello.role == "publisher" else room.anonymous_role  # type: ignore[assignment]
    user, now = guest_id(), time.time()
    name, rule = rooms.display_name(room.id, user, hello.name, resuming=resuming, elsewhere=elsewhere)
    claims = Claims(room.id, user, role, now + DEFAULT_TTL_S, secrets.token_hex(8), now)
    return Member(connection, room.id, user, role, claims.jti, now, name, mint(secret, claims), rule)
