"""Batches of seq-numbered changes, and the per-client outbox that coalesces them.

A `Batch` is one flush window of a scene (all layers). It is built once and shared by every client;
its encoded delta is cached per (layer, encoding), so N clients of one layer cost one encode.
An `Outbox` holds what one client has not been sent yet. While the client keeps up it holds at most
one shared batch (sent as the shared bytes); while its socket is busy, newer batches are merged into
a private batch coalesced by state key, so its memory is bounded by the number of keys. Pending
events are bounded too: beyond the bound the outbox asks for a resync snapshot instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from viewer_server import protocol as p

# Kinds of state: a property value, a visual on one layer, a session's presence.
PROP: Final = "p"
VISUAL: Final = "v"
PRESENCE: Final = "s"
PRESENTER: Final = "m"  # a collaboration session's presenter state; key and scope are the session id
# (kind, key, scope): key is "element/prop", "element@layer" or a connection id; scope is the layer of a
# visual, the collaboration session of a presence ("" = everyone).
StateKey = tuple[str, str, str]
StateValue = p.PropState | p.Visual | p.Presence | p.PresenterState | None
# The elements whose props and visuals reach one client (its `interest`, PROTOCOL.md §15); None: every element.
Seen = frozenset[str] | None

# Pending events per client before it is resynced with a snapshot: about 10 s of a busy alarm
# storm, a few MB at most; a client that far behind is better served by a fresh snapshot.
OUTBOX_MAX_EVENTS: Final = 10_000


def element_of(kind: str, key: str) -> str:
    """The element of a prop key ("element/prop") or a visual key ("element@layer"): split at the last separator."""
    return key.rpartition("/" if kind == PROP else "@")[0]


class Batch:
    """Changes with seq in [first, last]: state coalesced per key, events in order."""

    __slots__ = ("_encoded", "events", "first", "last", "state")

    def __init__(self, first: int, last: int, state: dict[StateKey, StateValue], events: list[p.Event]) -> None:
        self.first = first
        self.last = last
        self.state = state
        self.events = events
        self._encoded: dict[tuple[str, str, str], bytes] = {}

    def delta(self, layer: str, room: str = "", seen: Seen = None) -> p.Delta:
        """The delta a client of `layer` in collaboration session `room` that sees `seen` gets from this batch;
        sent even when empty for it, so that every client's deltas are contiguous (first = previous last + 1)."""
        props: dict[str, Any] = {}
        visuals: dict[str, Any] = {}
        presence: dict[str, Any] = {}
        presenter: dict[str, Any] = {}
        for (kind, key, scope), value in self.state.items():
            if kind == PROP:
                if seen is None or element_of(kind, key) in seen:
                    props[key] = value
            elif kind == VISUAL:
                if scope == layer and (seen is None or element_of(kind, key) in seen):
                    visuals[key] = value
            elif scope not in ("", room):
                continue
            elif kind == PRESENTER:
                presenter[key] = value
            else:
                presence[key] = value
        events = [ev for ev in self.events if ev.session in ("", room)]
        return p.Delta(self.first, self.last, props, visuals, presence, events, presenter)

    def encoded(self, layer: str, encoding: p.Encoding, room: str = "", seen: Seen = None) -> bytes:
        """The delta for `layer`, `room` and `seen` in `encoding`, encoded once and shared by every client that
        asks (clients with the same interest share the same `seen` set)."""
        cache_key = (layer, room, encoding, seen)
        frame = self._encoded.get(cache_key)
        if frame is None:
            frame = self._encoded[cache_key] = p.encode(self.delta(layer, room, seen), encoding)
        return frame

    def absorb(self, newer: Batch, layer: str, seen: Seen = None) -> None:
        """Coalesce a newer batch into this one, keeping only what concerns `layer` and the elements `seen`."""
        self.last = newer.last
        for skey, value in newer.state.items():
            kind, key, scope = skey
            if kind == VISUAL and scope != layer:
                continue
            if seen is not None and kind in (PROP, VISUAL) and element_of(kind, key) not in seen:
                continue
            self.state[skey] = value
        self.events.extend(newer.events)
        self._encoded.clear()

    def private_copy(self, layer: str, seen: Seen = None) -> Batch:
        """A mutable copy filtered to `layer` and `seen` (shared batches are never mutated)."""
        copy = Batch(self.first, self.first - 1, {}, [])
        copy.absorb(self, layer, seen)
        return copy


RESYNC: Final = object()  # what `Outbox.take` returns when the client needs a fresh snapshot


class Outbox:
    """What one client has not been sent yet. `offer` never blocks; the sender task awaits `take`."""

    def __init__(self, layer: str, encoding: p.Encoding, max_events: int | None = None, room: str = "") -> None:
        self.layer = layer
        self.encoding = encoding
        self.room = room  # the collaboration session: its presence and events only
        self.seen: Seen = None  # the elements whose props and visuals it sends (the client's interest)
        self.max_events = OUTBOX_MAX_EVENTS if max_events is None else max_events
        self._shared: Batch | None = None  # offered while idle: sent as the shared bytes
        self._private: Batch | None = None  # coalesced while the client was busy
        self._resync = False
        self._ready = asyncio.Event()
        self.high_water_keys = 0  # largest private batch seen (for tests and /api/health)

    def offer(self, batch: Batch) -> None:
        """Queue a batch for this client (called by the fan-out; O(batch) at worst, never awaits)."""
        if self._resync:
            return
        if self._shared is None and self._private is None:
            self._shared = batch
        else:
            if self._private is None:
                assert self._shared is not None
                self._private = self._shared.private_copy(self.layer, self.seen)
                self._shared = None
            self._private.absorb(batch, self.layer, self.seen)
            self.high_water_keys = max(self.high_water_keys, len(self._private.state))
            if len(self._private.events) > self.max_events:
                self.request_resync()
                return
        self._ready.set()

    def request_resync(self) -> None:
        """Drop everything pending: the next `take` says RESYNC (a snapshot replaces the backlog)."""
        self._shared = self._private = None
        self._resync = True
        self._ready.set()

    def reset(self, layer: str) -> None:
        """Start over for `layer` after a snapshot was sent (layer switch or resync)."""
        self.layer = layer
        self._shared = self._private = None
        self._resync = False

    @property
    def resync_pending(self) -> bool:
        return self._resync

    @property
    def pending_keys(self) -> int:
        return len(self._private.state) if self._private is not None else 0

    @property
    def pending_events(self) -> int:
        return len(self._private.events) if self._private is not None else 0

    def notify(self) -> None:
        """Wake the sender (also used for replies queued beside the outbox)."""
        self._ready.set()

    async def wait(self) -> None:
        """Wait until something may be pending (then call `take_nowait`)."""
        await self._ready.wait()
        self._ready.clear()

    def take_nowait(self) -> bytes | object | None:
        """The next frame to send (bytes), RESYNC, or None if nothing is pending."""
        if self._resync:
            return RESYNC
        shared, private = self._shared, self._private
        self._shared = self._private = None
        if shared is not None:
            return shared.encoded(self.layer, self.encoding, self.room, self.seen)
        if private is not None:
            return p.encode(private.delta(self.layer, self.room, self.seen), self.encoding)
        return None
