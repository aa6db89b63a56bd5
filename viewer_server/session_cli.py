"""`twinview session create|token|revoke|list`: manage collaboration sessions in a server's data dir.

They work on the store (the data dir's SQLite file, or the server's `--store`) and the secret directly, with
or without the server running (a running server reads sessions created meanwhile on first use, and
revocations on every token check; it closes the open connections a revocation voids within a second,
`serve.REVOCATION_POLL_S`; with a shared PostgreSQL store, every process does).
`twinview demo` prints `demo_links`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from viewer_server.auth import issue, join_link, load_secret, parse_ttl
from viewer_server.permissions import ROLES, Role
from viewer_server.rooms import DEFAULT_ANONYMOUS_ROLE, MAX_USER_NAME, Room, new_room, revocation, user_problem
from viewer_server.store import CLI_ACTOR, open_store, put_room


class SessionCliError(ValueError):
    """A problem the user can fix (the CLI prints it and exits with 2)."""


def sessions(data_dir: Path, *, store_url: str | None = None) -> list[Room]:
    """Every session, including each scene's default session (id = the scene id). `store_url`: the server's
    `--store`, when it is not the data dir's SQLite file (the same in every function here)."""
    store = open_store(data_dir, store_url)
    try:
        rooms = {r.id: r for r in store.rooms()}
        for scene in store.scene_ids():
            rooms.setdefault(scene, Room(scene, scene, "default", 0.0, "server", DEFAULT_ANONYMOUS_ROLE))
        return sorted(rooms.values(), key=lambda r: r.id)
    finally:
        store.close()


def create(
    data_dir: Path, session_id: str, *, scene: str | None, anonymous_role: str | None, store_url: str | None = None
) -> Room:
    store = open_store(data_dir, store_url)
    try:
        scenes = store.scene_ids()
        if scene is None:
            if len(scenes) != 1:
                raise SessionCliError(f"pass --scene: this data dir serves {', '.join(scenes) or 'no scene yet'}")
            scene = scenes[0]
        if session_id in scenes or store.room(session_id) is not None:
            raise SessionCliError(f"session {session_id!r} exists")
        try:
            room = new_room(session_id, scene, session_id, anonymous_role, "cli")
        except ValueError as exc:
            raise SessionCliError(str(exc)) from None
        store.submit(lambda db: put_room(db, room)).result()
        return room
    finally:
        store.close()


def _check(data_dir: Path, session_id: str, user: str, store_url: str | None) -> None:
    """Refuse a bad user name or an unknown session (this also checks the data dir)."""
    if not 0 < len(user) <= MAX_USER_NAME:
        raise SessionCliError(f"user name: 1..{MAX_USER_NAME} characters")
    if session_id not in {r.id for r in sessions(data_dir, store_url=store_url)}:
        raise SessionCliError(f"no session {session_id!r}; see `twinview session list`")


def token(
    data_dir: Path,
    session_id: str,
    *,
    user: str,
    role: str,
    ttl: str,
    name: str = "",
    store_url: str | None = None,
) -> str:
    """A join link (relative: prefix the server's address) for `user` as `role`, shown to others as `name`."""
    if role not in ROLES:
        raise SessionCliError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    try:
        ttl_s = parse_ttl(ttl)
    except ValueError as exc:
        raise SessionCliError(str(exc)) from None
    problem = user_problem(user, name)
    if problem is not None:
        raise SessionCliError(problem)
    _check(data_dir, session_id, user, store_url)
    try:
        return join_link(session_id, issue(load_secret(data_dir), session_id, user, role, ttl_s, name))  # type: ignore[arg-type]
    except ValueError as exc:
        raise SessionCliError(str(exc)) from None


def revoke(data_dir: Path, session_id: str, *, user: str, store_url: str | None = None) -> float:
    """Void every token issued to `user` for the session until now; returns the revocation time."""
    _check(data_dir, session_id, user, store_url)
    store = open_store(data_dir, store_url)
    try:
        return store.submit(revocation(session_id, user, CLI_ACTOR, "admin")).result()
    finally:
        store.close()


def demo_links(data_dir: Path, session_id: str, base_url: str, ttl_s: float = 8 * 3600) -> dict[str, str]:
    """A ready-made link per person role for the demo's default session."""
    secret = load_secret(data_dir)
    people: list[Role] = ["viewer", "annotator", "presenter", "operator", "admin"]
    base = base_url.rstrip("/")
    return {role: base + join_link(session_id, issue(secret, session_id, role, role, ttl_s)) for role in people}


def cmd_session(args: argparse.Namespace) -> int:
    data_dir, store_url = Path(args.data_dir), args.store
    if args.session_command == "create":
        room = create(data_dir, args.session, scene=args.scene, anonymous_role=args.anonymous_role, store_url=store_url)
        anonymous = f"visitors without a link join as {room.anonymous_role}" if room.anonymous_role else "links only"
        print(f"created session {room.id} on scene {room.scene} ({anonymous})")
    elif args.session_command == "token":
        link = token(
            data_dir, args.session, user=args.user, role=args.role, ttl=args.ttl, name=args.name, store_url=store_url
        )
        print(args.base_url.rstrip("/") + link)
    elif args.session_command == "revoke":
        until = time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(revoke(data_dir, args.session, user=args.user, store_url=store_url))
        )
        print(
            f"revoked {args.user}'s links to session {args.session} issued until {until}: refused from now on;"
            " a server running on this data dir closes their open connections within a second"
        )
    else:
        for room in sessions(data_dir, store_url=store_url):
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(room.created)) if room.created else "-"
            print(f"{room.id}\t{room.scene}\t{room.anonymous_role or 'token only'}\t{created}\t{room.name}")
    return 0
