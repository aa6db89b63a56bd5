"""The bounded log of recent changes that lets a reconnecting client resume instead of resyncing."""

from __future__ import annotations

from collections import deque
from typing import Final

from viewer_server import protocol as p
from viewer_server.outbox import Batch, StateKey, StateValue

# Changes kept for resume: ~10 s at the 10 000 updates/s design rate, minutes at typical rates;
# about 200 bytes each, so ~20 MB at most. Older clients get a snapshot (reason "too_old").
RESUME_LOG_MAX_CHANGES: Final = 100_000


class ResumeLog:
    """(seq, state key, value) and (seq, event) entries, oldest first, seq strictly increasing."""

    def __init__(self, max_changes: int = RESUME_LOG_MAX_CHANGES, start: int = 0) -> None:
        """`start`: the seq the log begins after (a mirror that began at a checkpoint knows nothing before)."""
        self.max_changes = max_changes
        self._entries: deque[tuple[int, StateKey | None, StateValue | p.Event]] = deque(maxlen=max_changes)
        self.last_seq = start  # the newest seq ever logged (also when it has been evicted)
        self._start = start

    def append_state(self, seq: int, key: StateKey, value: StateValue) -> None:
        self._entries.append((seq, key, value))
        self.last_seq = seq

    def append_event(self, event: p.Event) -> None:
        self._entries.append((event.seq, None, event))
        self.last_seq = event.seq

    def covers(self, seq: int) -> bool:
        """True when every change after `seq` is still in the log (so `since(seq)` is exact)."""
        if seq > self.last_seq or seq < self._start:
            return False
        if not self._entries:
            return True
        oldest = self._entries[0][0]
        # When the log is full, entries before `oldest` were evicted; seq oldest-1 is still exact.
        return seq >= oldest - 1 or len(self._entries) < (self._entries.maxlen or 0)

    def since(self, seq: int) -> Batch:
        """Everything after `seq`, coalesced per state key, events in order (check `covers` first)."""
        tail = []
        for entry in reversed(self._entries):
            if entry[0] <= seq:
                break
            tail.append(entry)
        state: dict[StateKey, StateValue] = {}
        events: list[p.Event] = []
        for _, key, value in reversed(tail):
            if key is None:
                events.append(value)  # type: ignore[arg-type]
            else:
                state[key] = value  # type: ignore[assignment]
        return Batch(seq + 1, self.last_seq, state, events)
