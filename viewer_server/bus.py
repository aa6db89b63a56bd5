"""Fan-out of batches from a scene to its sessions.

The interface is two calls: `publish(scene, batch)` and `subscribe(scene, callback)`. Callbacks must not
block: they hand the batch to an outbox and return. Inside a process the fan-out is always this
`InProcessBus`; several processes serving one scene (`serve --bus redis://…`) share a numbered log of
batches instead (`viewer_server/shared_hub.py` over `viewer_server/redis_bus.py`), from which each
process's hub publishes on its own `InProcessBus`, so sessions never know how many processes there are.
`health()` and `peers()` say how it is for `/api/health` (viewer_server.health).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from viewer_server.health import EngineHealth, Peer
from viewer_server.outbox import Batch

Subscriber = Callable[[Batch], None]
Unsubscribe = Callable[[], None]


class BusUnavailable(Exception):
    """The shared bus cannot take a write now (its engine is unreachable, or no process leads the scene):
    nothing was changed; the message says what is wrong and that the write can be sent again."""


class Bus(Protocol):
    def publish(self, scene: str, batch: Batch) -> None: ...

    def subscribe(self, scene: str, callback: Subscriber) -> Unsubscribe: ...

    def health(self) -> EngineHealth: ...

    def peers(self) -> list[Peer]: ...


class InProcessBus:
    """Synchronous fan-out inside one process: publish calls every subscriber, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: dict[str, dict[int, Subscriber]] = {}
        self._next_id = 0

    def publish(self, scene: str, batch: Batch) -> None:
        for callback in list(self._subscribers.get(scene, {}).values()):
            callback(batch)

    def subscribe(self, scene: str, callback: Subscriber) -> Unsubscribe:
        self._next_id += 1
        sub_id = self._next_id
        subs = self._subscribers.setdefault(scene, {})
        subs[sub_id] = callback

        def unsubscribe() -> None:
            subs.pop(sub_id, None)

        return unsubscribe

    def health(self) -> EngineHealth:
        return EngineHealth("in-process", ok=True)

    def peers(self) -> list[Peer]:
        return []  # alone by construction
