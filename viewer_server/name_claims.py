"""Display names unique across the processes of a deployment (`serve --bus redis://…`).

One process makes a session's display names unique among its own connections (`rooms.Rooms.display_name`).
With several processes, each connection also claims its name in Redis (`RedisBus.claim_name`: per session and
name, the holding user and connection, with an expiry). The claim follows the one-process rule (its `NameRule`,
decided by `display_name`): it conflicts with another user's claim of the name, or whose user id is the name,
or (a name the person chose) whose name or user id is the chosen base (`ALICE` for `ALICE (guest)`); and,
where the same user's connections are different people (a shared link, not resuming), with that user's other
connections' claims of the name. A conflict returns every claim held elsewhere, which `rooms.admitted` holds as
if here, so the name is refused or numbered just as on one process. The claims are renewed every RENEW_S while
their connections last (all of a process's in one round trip) and released when they close; a process that
dies stops renewing, and its claims run out after TTL_MS. A reconnect (or another tab of a named person) may
hold the name its user's other connections still hold, wherever that was, so it keeps its name.

While Redis does not answer, names are unique per process only: the connection is admitted with its name,
and the renewal claims it once Redis is back (logging a name that someone else took meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final

from viewer_server.bus import BusUnavailable
from viewer_server.redis_bus import RedisBus

log = logging.getLogger(__name__)

# How long a claim lasts without renewal: a dead process's names are free again after this.
TTL_MS: Final = 10_000
# How often the claims of this process's connections are renewed.
RENEW_S: Final = 3.0


@dataclass(frozen=True)
class NameRule:
    """What else a display name's claim conflicts with, as `rooms.Rooms.display_name` decided it."""

    chosen: str = ""  # the base of a name the person chose: another user may not hold it, as name or user id
    per_connection: bool = False  # the same user's other connections are other people (a shared link)


@dataclass(frozen=True)
class Claim:
    """One connection's display name as Redis holds it."""

    room: str  # the session
    name: str  # as granted (Redis keeps it case-folded)
    user: str  # whose: the same user's other connections may hold it too
    holder: str  # this process and the connection's id
    rule: NameRule


class NameClaims:
    """The display names this process's connections hold in one scene's sessions, claimed in Redis."""

    def __init__(self, bus: RedisBus, scene: str) -> None:
        self.bus = bus
        self.scene = scene
        self._held: dict[str, Claim] = {}  # by connection id
        self._releasing: set[asyncio.Task[None]] = set()

    async def claim(self, room: str, name: str, user: str, connection: str, rule: NameRule) -> list[tuple[str, str]]:
        """Claim `name` for `user`'s `connection` under `rule`. Empty when claimed (or Redis does not answer: the
        renewal claims it once it does); on a conflict, every claim (case-folded name, user) other connections
        hold in the session, so that the next name tried is free as far as Redis knows."""
        claim = Claim(room, name, user, self._holder(connection), rule)
        try:
            taken = await self._claim(claim)
        except BusUnavailable as exc:
            log.debug("display name %r not claimed across processes for now: %s", name, exc)  # the bus logs it
            taken = []
        if not taken:
            self._held[connection] = claim
        return taken

    def release(self, connection: str) -> None:
        """The connection closed: its name is free (at once, or when its claim runs out)."""
        claim = self._held.pop(connection, None)
        if claim is None:
            return
        call = self.bus.release_name(self.scene, claim.room, claim.name, claim.user, claim.holder)
        task = asyncio.ensure_future(_quietly(call))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def renew_forever(self) -> None:
        """Renew every held claim each RENEW_S, in one round trip; a claim Redis no longer holds (it was away
        longer than TTL_MS, or lost its data) is claimed again, and a name another user took meanwhile logged."""
        while True:
            await asyncio.sleep(RENEW_S)
            held = list(self._held.items())
            if not held:
                continue
            try:
                lost = await self.bus.renew_names(
                    self.scene, [(c.room, c.name, c.user, c.holder) for _, c in held], TTL_MS
                )
                for connection, claim in (held[i] for i in lost):
                    if await self._claim(claim) and self._held.get(connection) == claim:
                        log.warning("display name %r of session %s is held by someone else too", claim.name, claim.room)
            except BusUnavailable:
                continue

    def _holder(self, connection: str) -> str:
        return f"{self.bus.process}/{connection}"

    async def _claim(self, claim: Claim) -> list[tuple[str, str]]:
        rule = claim.rule
        return await self.bus.claim_name(
            self.scene, claim.room, claim.name, claim.user, claim.holder, TTL_MS, rule.chosen, rule.per_connection
        )


async def _quietly(call: Awaitable[None]) -> None:
    with contextlib.suppress(BusUnavailable):
        await call
