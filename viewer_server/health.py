"""What `/api/health` says about the engines a process depends on, and about its peers.

A process depends on a bus (fan-out to the other processes: in-process, or Redis), a store (SQLite, or
PostgreSQL) and, with a data dir, the historian's writer (historian.HistorianHealth). Each reports itself as an
`EngineHealth`; a bus also names the other processes it hears from
(`Peer`). The process is `ok` when every engine is, `degraded` otherwise: it still serves what it holds
(snapshots, state, history, the web client) and refuses the writes that need the missing engine with a clear
error, so a load balancer keeps sending it readers (docs/DEPLOY.md, "Health checks").
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Iterable
from typing import Final, Literal, Protocol

import msgspec

OK: Final = "ok"
DEGRADED: Final = "degraded"
Status = Literal["ok", "degraded"]


class EngineHealth(msgspec.Struct):
    """One engine as this process sees it now."""

    engine: str  # "in-process" or "redis" for the bus; "sqlite" or "postgresql" for the store and the historian
    ok: bool  # reachable, and its last operation succeeded
    url: str = ""  # where it is, without credentials ("" for in-process engines)
    detail: str = ""  # when not ok: what failed and what to do; empty when ok


class Peer(msgspec.Struct):
    """Another server process on the same bus."""

    name: str  # the process's name (host:pid), as its own /api/health gives it in `process`
    seen_s: float  # seconds since the bus last heard from it


class ReportsHealth(Protocol):
    def health(self) -> EngineHealth: ...


def process_name() -> str:
    """This process as its peers and a load balancer's operator see it: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def overall(engines: Iterable[EngineHealth]) -> Status:
    return OK if all(e.ok for e in engines) else DEGRADED


def public_url(url: str) -> str:
    """An engine URL fit to show: the password (and any user name) dropped, the query kept out."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
