"""What the audit trail keeps, and how long: retention, and summary rows for what happens too often for a
row each (ingest batches, refused requests).

Every change a person makes is a row of its own, written with the change (`store.put_audit`). Two kinds of
traffic would flood the table that way: telemetry (a gateway posts many batches a second) and refusals (a
viewer sending `command` in a loop wrote 17 111 rows in 15 s before). They are summarised instead: the
first event of a source writes a row at once, later ones are counted and written as one row per source per
SUMMARY_INTERVAL_S (and at shutdown), with the counts in `detail`. A source is an address and a user (all
visitors of an address are one user, "guests"), so reconnecting does not make more rows either.

Retention: rows older than `days` and beyond the newest `max_rows` are deleted at start and every
PRUNE_INTERVAL_S (`serve --audit-days`, `--audit-max-rows`; 0 = keep). SQLite reuses the freed pages,
so the file stops growing; it does not shrink.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec

from viewer_server.permissions import Action
from viewer_server.store import AuditEntry, Store, prune_audit, put_audit

# Audit rows kept by default: a year of a plant's operator actions, and a cap on the table's size
# (~400 bytes a row with its index: 1 000 000 rows are ~0.4 GB).
AUDIT_RETENTION_DAYS: Final = 365
AUDIT_MAX_ROWS: Final = 1_000_000
# How often the retention is applied while serving (also once at start).
PRUNE_INTERVAL_S: Final = 3600.0
# At most one summary row per source per this many seconds.
SUMMARY_INTERVAL_S: Final = 60.0
# The action of a connection's summary row of requests refused for its role; `detail` counts them by type.
REFUSED: Final = "request.refused"
# The actor of summary rows for visitors: each of their connections is a guest identity of its own.
GUESTS: Final = "guests"


@dataclass(frozen=True)
class Retention:
    days: float = AUDIT_RETENTION_DAYS  # 0: no age limit
    max_rows: int = AUDIT_MAX_ROWS  # 0: no row limit

    def prune(self, store: Store, now: float | None = None) -> None:
        """Queue the deletion of what the policy no longer keeps (on the store's writer thread)."""
        before = (now if now is not None else time.time()) - self.days * 86400 if self.days else None
        store.submit(lambda db: prune_audit(db, before, self.max_rows or None))


async def prune_periodically(store: Store, retention: Retention, interval_s: float = PRUNE_INTERVAL_S) -> None:
    while True:
        retention.prune(store)
        await asyncio.sleep(interval_s)


@dataclass
class _Pending:
    entry: AuditEntry  # the row to write, its detail filled from `counts`
    counts: Counter[str] = field(default_factory=Counter)
    written_at: float = -float("inf")  # monotonic time of the source's last row


class AuditSummaries:
    """Summary rows: `note` counts events of a source; a row is written at once for a source's first event,
    then at most once per `interval_s` (by `flush_due`), and at shutdown (`close_all`)."""

    def __init__(
        self, store: Store, interval_s: float = SUMMARY_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.clock = clock
        self._sources: dict[object, _Pending] = {}

    def note(self, source: object, entry: AuditEntry, counts: dict[str, int]) -> None:
        """Count `counts` for `source`; `entry` (who, what, where) is the row written for it."""
        pending = self._sources.get(source)
        if pending is None:
            pending = self._sources[source] = _Pending(entry)
        pending.counts.update(counts)
        if self.clock() - pending.written_at >= self.interval_s:
            self._write(pending)

    def flush_due(self) -> None:
        """Write the rows whose interval has passed; forget sources quiet for a whole interval."""
        now = self.clock()
        for source, pending in list(self._sources.items()):
            if now - pending.written_at < self.interval_s:
                continue
            if pending.counts:
                self._write(pending)
            else:
                del self._sources[source]

    def close_all(self) -> None:
        """The server stops: write every source's counts not reported yet."""
        for pending in self._sources.values():
            if pending.counts:
                self._write(pending)
        self._sources.clear()

    def _write(self, pending: _Pending) -> None:
        detail = ", ".join(f"{name} {count}" for name, count in pending.counts.items())
        entry = msgspec.structs.replace(pending.entry, ts=time.time(), detail=detail)
        self.store.submit(lambda db: put_audit(db, entry))
        pending.counts = Counter()
        pending.written_at = self.clock()


def note_ingest(
    summaries: AuditSummaries | None,
    session: str,
    via: str,
    peer: str,
    user: str,
    role: str,
    accepted: int,
    rejected: int,
) -> None:
    """Count one batch of readings from `peer` (over `via`: HTTP, WebSocket) by `user` for the audit trail."""
    if summaries is None:
        return
    entry = AuditEntry(session, time.time(), user, role, Action.TELEMETRY_PUBLISH.value, f"{via} from {peer}")
    summaries.note(("ingest", via, peer, user), entry, {"batches": 1, "accepted": accepted, "rejected": rejected})


async def flush_periodically(summaries: AuditSummaries) -> None:
    while True:
        await asyncio.sleep(summaries.interval_s / 4)
        summaries.flush_due()
