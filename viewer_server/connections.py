"""Connections at the socket: how many one address may hold, how long a request head may take, and what the
server says when it runs out of file descriptors (slowloris).

An attacker that opens thousands of connections and sends request headers a byte at a time (or never)
holds a file descriptor per connection; without bounds the server stops accepting, health checks and new
joins time out, and the log fills with one traceback per failed accept. Four bounds keep it answering:

- a request head must be complete within HEADER_TIMEOUT_S of the connection (or of the previous response
  on a kept-alive one), else the connection is closed (aiohttp's keep-alive timer, which also runs before
  the first request);
- one address holds at most `max_per_ip` connections at once (`serve --max-connections-per-ip`); the next
  is answered 429 and closed at once, before any handler, so a crowd behind one NAT is fine and one host
  cannot take every descriptor;
- the server holds at most its open-file limit less RESERVED_FILES connections (`serve --max-connections`);
  past that, a new connection closes the oldest one that has not finished its first request head (an attacker's,
  since a browser sends its head at once), so attackers from many addresses rotate among themselves while
  health checks and joins get in;
- an accept that fails for lack of descriptors or memory is logged once per ACCEPT_ERROR_LOG_INTERVAL_S
  with a count (asyncio retries the accept after a second by itself).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

import msgspec

log = logging.getLogger(__name__)

# Seconds from the connection (or the previous response) to a complete request head: a browser sends
# its head in one packet; 15 s is generous for a phone on a bad link, short for a slowloris attacker.
HEADER_TIMEOUT_S: Final = 15.0
# Connections one address may hold at once: a design review of 30 people behind one NAT opens ~30
# WebSockets plus up to 6 HTTP connections per browser (~210); twice that leaves room for a gateway.
MAX_CONNECTIONS_PER_IP: Final = 512
# A failed accept (out of descriptors or memory) is logged at most once per this many seconds.
ACCEPT_ERROR_LOG_INTERVAL_S: Final = 10.0
# Descriptors kept free of connections: the store, scene files, MQTT, and a batch of accepts (asyncio accepts
# up to its backlog, 100, in one go, before the descriptor of a connection closed to make room is released).
RESERVED_FILES: Final = 150
# Descriptors the server asks for at start (the soft limit is raised towards the hard one, up to this):
# one per connection, plus the store, scene files and MQTT.
WANTED_OPEN_FILES: Final = 65536
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _refusal(status: int, reason: str, ip: str, limit: int) -> bytes:
    """The whole HTTP response refusing a connection, sent before anything is read from it."""
    if status == 429:
        error, detail = (
            "too_many_connections",
            (
                f"{ip} holds {limit} connections to this server already, as many as one address may; close some (or, "
                "if many people share that address, start the server with a higher --max-connections-per-ip)"
            ),
        )
    else:
        error, detail = (
            "server_full",
            (
                f"the server holds {limit} connections, as many as it can, all of them busy; try again in a few "
                "seconds (or raise its open-file limit, or --max-connections)"
            ),
        )
    body = msgspec.json.encode({"error": error, "detail": detail})  # the API's error body (`api.ApiError`)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Retry-After: 5\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def connection_capacity(reserved: int = RESERVED_FILES) -> int:
    """Connections the server holds at once: its open-file limit less what it needs besides (at least half)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(soft - reserved, soft // 2)


class ConnectionGuard:
    """Counts open connections per peer address and admits at most `max_per_ip` (0: no bound); past
    `capacity` connections in all (None: `connection_capacity()`, 0: no bound) it closes the oldest one still
    waiting for its first request head to make room, or, when every one has sent its head, refuses the new one."""

    def __init__(self, max_per_ip: int = MAX_CONNECTIONS_PER_IP, capacity: int | None = None) -> None:
        self.max_per_ip = max_per_ip
        self.capacity = connection_capacity() if capacity is None else capacity
        self.open: Counter[str] = Counter()
        self.total = 0
        self.waiting: dict[GuardedConnection, None] = {}  # connections without a complete request head, oldest first
        self.refused = 0  # connections answered 429 / 503 since start
        self.evicted = 0  # connections closed to make room since start

    def admit(self, conn: GuardedConnection) -> bytes | None:
        """None when `conn` may stay (it is counted then), else the response that refuses it."""
        if self.max_per_ip and self.open[conn.ip] >= self.max_per_ip:
            self.refused += 1
            return _refusal(429, "Too Many Requests", conn.ip, self.max_per_ip)
        if self.capacity and self.total >= self.capacity:
            if not self.waiting:
                self.refused += 1
                return _refusal(503, "Service Unavailable", conn.ip, self.capacity)
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            oldest.evict()
            self.evicted += 1
        self.open[conn.ip] += 1
        self.total += 1
        self.waiting[conn] = None
        return None

    def release(self, conn: GuardedConnection) -> None:
        self.waiting.pop(conn, None)
        self.total -= 1
        self.open[conn.ip] -= 1
        if self.open[conn.ip] <= 0:
            del self.open[conn.ip]

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """For `loop.create_server`: each connection is admitted (or refused) before `inner` sees it."""
        return lambda: GuardedConnection(self, inner)


class GuardedConnection(asyncio.Protocol):
    """One connection: refused when its address holds too many or the server is full, else handed to the
    inner protocol (aiohttp's request handler), which gets every call the transport makes. Watches for the
    end of the first request head (an empty line), until which it may be closed to make room."""

    __slots__ = ("guard", "inner", "ip", "make", "tail", "transport")

    def __init__(self, guard: ConnectionGuard, make: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.make = make
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.tail = b""  # the last bytes received while the first head is incomplete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = self.guard.admit(self)
        if refusal is not None:
            transport.write(refusal)
            transport.close()
            return
        self.transport = transport
        self.inner = self.make()
        self.inner.connection_made(transport)

    def evict(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.guard.release(self)
            self.inner.connection_lost(exc)
            self.inner = None
            self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self in self.guard.waiting:
            seen = self.tail + data
            if b"\r\n\r\n" in seen:
                del self.guard.waiting[self]
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()


class AcceptErrorLog:
    """An event loop exception handler: a failed accept for lack of resources is one log line per interval
    (with how often it happened), not a traceback per accept; everything else goes to the previous handler."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float = ACCEPT_ERROR_LOG_INTERVAL_S) -> None:
        self.loop = loop
        self.previous = loop.get_exception_handler()
        self.interval_s = interval_s
        self.failures = 0  # since the last line
        self.total = 0
        self._logged_at = -float("inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS and "accept" in context.get("message", "")):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.failures += 1
        self.total += 1
        now = time.monotonic()
        if now - self._logged_at >= self.interval_s:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.error(
                "cannot accept connections: %s (%d time(s) since the last report; open-file limit %d): "
                "raise `ulimit -n`, or lower --max-connections-per-ip",
                exc.strerror or exc,
                self.failures,
                soft,
            )
            self.failures = 0
            self._logged_at = now

    def install(self) -> None:
        self.loop.set_exception_handler(self)

    def uninstall(self) -> None:
        self.loop.set_exception_handler(self.previous)


def raise_open_file_limit(wanted: int = WANTED_OPEN_FILES) -> int:
    """Raise the soft limit on open files towards the hard one (Linux starts services at 1024); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
