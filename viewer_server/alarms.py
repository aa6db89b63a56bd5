"""Alarms as an ISA-18.2 / IEC 62682 life cycle, decided by the server.

The rules (scene/rules.py) say when an alarm's *condition* comes and goes; the alarm book turns that, and
what operators do, into the alarm's state (docs/PROTOCOL.md §13):

    normal ──condition──► unacknowledged ──ack──► acknowledged ──condition gone──► normal
                              │  ▲                     │
               condition gone │  └─ condition again ───┘ (only an escalation asks for a new ack)
                              ▼
                          returned ──ack──► normal      (condition again: unacknowledged)

    listed ──shelve (minutes, reason)──► shelved ──unshelve, or time up──► unacknowledged (condition) or normal
    listed ──out of service (reason)──► out_of_service ──in service──────► unacknowledged (condition) or normal

Every transition is one event (protocol.ALARM_EVENTS) that carries the whole alarm at its new state, when
(`ts`: the value's source time for the condition, the server's clock for people) and who (`user`; "" = the
process, or the end of a shelving). An alarm whose new state is `normal` leaves the list.

Each transition is decided on the book (a draft), numbered by the hub and applied at once, so the next
change of the condition sees it; it is written to the store (`alarms`: the list, which survives a restart;
`alarm_events`: the history viewers show). Operators' requests (`AlarmDesk`) go permission → decision →
numbered and applied → the alarm row, the event and an audit row committed → `saved`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

import msgspec

from scene.rules import AlarmEvent
from viewer_server import protocol as p
from viewer_server.permissions import Action
from viewer_server.procedures import Refused, require
from viewer_server.rooms import Member
from viewer_server.store import AuditEntry, Store, put_audit
from viewer_server.store_db import Db, StoreError, upsert

if TYPE_CHECKING:
    from viewer_server.hub import SceneHub

# Alarm events a snapshot carries for the history panel: an hour or so of a busy plant, ~35 kB (~700 bytes
# each) for a late joiner; older ones are the historian's.
ALARM_HISTORY_MAX: Final = 50
# Alarm events kept in the store: the history panel needs the newest ALARM_HISTORY_MAX after a restart;
# the rest is for whoever reads the database (the audit trail keeps every operator action for good).
ALARM_EVENTS_KEEP: Final = 10_000
# Severity order: an alarm that escalates asks for a new acknowledgement, one that de-escalates does not.
SEVERITY_RANK: Final = {"warning": 1, "alarm": 2}
_SUPPRESSED: Final = ("shelved", "out_of_service")
_CLEAR_SUPPRESSION: Final = {"suppressed_by": "", "suppressed_at": None, "shelved_until": None, "reason": ""}
_CLEAR_ACK: Final = {"acknowledged_by": "", "acknowledged_at": None}


class AlarmBook:
    """The alarm list and its recent history. Pure: no I/O, no clock. Decisions return a draft event (seq 0)
    or raise Refused; `apply` installs a numbered one."""

    def __init__(self) -> None:
        self.alarms: dict[str, p.Alarm] = {}  # listed alarms by id: every state but normal
        self.history: deque[p.Event] = deque(maxlen=ALARM_HISTORY_MAX)

    def listed(self) -> list[p.Alarm]:
        return list(self.alarms.values())

    def restore(self, alarms: Iterable[p.Alarm], history: Iterable[p.Event], known: set[str]) -> None:
        """Load what was stored before a restart; alarms whose rule is gone (the bindings changed) are dropped."""
        self.alarms = {a.id: a for a in alarms if a.id in known and a.state != "normal"}
        self.history.extend(history)

    def apply(self, event: p.Event) -> None:
        alarm = event.alarm
        if alarm is None:
            return
        if alarm.state == "normal":
            self.alarms.pop(alarm.id, None)
        else:
            self.alarms[alarm.id] = alarm
        self.history.append(event)

    # --- the process ------------------------------------------------------------------------------

    def condition(self, ev: AlarmEvent) -> p.Event | None:
        """The transition a change of the condition makes, if any."""
        cur = self.alarms.get(ev.id)
        reading = {"message": ev.message, "value": ev.value, "unit": ev.unit}
        if ev.kind == "raised":
            if cur is None:
                new = p.Alarm(ev.id, ev.element, ev.ts, ev.prop, ev.source, ev.layer, ev.severity, **reading)
                return self._draft("alarm_raised", new, ev.ts)
            if cur.active and ev.severity == cur.severity:
                return None  # nothing new (the engine re-primed after a restart)
            escalated = SEVERITY_RANK.get(ev.severity, 0) > SEVERITY_RANK.get(cur.severity, 0)
            state = cur.state
            if state == "returned" or (state == "acknowledged" and escalated):
                state = "unacknowledged"
            ack = _CLEAR_ACK if state == "unacknowledged" else {}
            since = cur.since if cur.active else ev.ts  # a new activation starts its own time
            new = msgspec.structs.replace(
                cur, state=state, active=True, since=since, returned=None, severity=ev.severity, **reading, **ack
            )
            return self._draft("alarm_raised", new, ev.ts)
        if cur is None or not cur.active:
            return None
        if cur.state == "acknowledged":
            return self._draft("alarm_cleared", self._returned(cur, "normal", ev), ev.ts)
        state = "returned" if cur.state == "unacknowledged" else cur.state
        return self._draft("alarm_returned", self._returned(cur, state, ev), ev.ts)

    @staticmethod
    def _returned(cur: p.Alarm, state: p.AlarmState, ev: AlarmEvent) -> p.Alarm:
        return msgspec.structs.replace(
            cur, state=state, active=False, returned=ev.ts, message=ev.message, value=ev.value, unit=ev.unit
        )

    def retired(self, known: set[str], now: float) -> list[p.Event]:
        """The alarms whose rule is gone (the bindings file was reloaded without it) clear, as a restart drops
        them: drafts for the hub to number, so that clients take them off their lists too."""
        gone = [a for a in self.alarms.values() if a.id not in known]
        return [
            self._draft(
                "alarm_cleared",
                msgspec.structs.replace(
                    a, state="normal", active=False, message="its rule was removed from the bindings"
                ),
                now,
            )
            for a in gone
        ]

    def expired(self, now: float) -> list[p.Event]:
        """Shelvings whose time is up: the alarms come back (drafts, for the hub's periodic tick)."""
        return [
            self._unsuppressed("alarm_unshelved", alarm, now, "")
            for alarm in self.alarms.values()
            if alarm.state == "shelved" and alarm.shelved_until is not None and alarm.shelved_until <= now
        ]

    # --- people -----------------------------------------------------------------------------------

    def acknowledge(self, alarm_id: str, user: str, now: float) -> p.Event:
        cur = self._listed(alarm_id)
        if cur.state not in ("unacknowledged", "returned"):
            raise Refused(p.ERR_ALARM_STATE, f"{alarm_id} is {_words(cur.state)}: there is nothing to acknowledge")
        state: p.AlarmState = "acknowledged" if cur.state == "unacknowledged" else "normal"
        new = msgspec.structs.replace(cur, state=state, acknowledged_by=user, acknowledged_at=now)
        return self._draft("alarm_acknowledged", new, now, user)

    def shelve(self, alarm_id: str, user: str, now: float, minutes: int, reason: str) -> p.Event:
        """Shelve (or shelve again, with a new time and reason) an alarm that is in service."""
        cur = self._listed(alarm_id)
        if cur.state == "out_of_service":
            raise Refused(p.ERR_ALARM_STATE, f"{alarm_id} is out of service: put it back in service first")
        new = msgspec.structs.replace(
            cur, state="shelved", suppressed_by=user, suppressed_at=now, shelved_until=now + minutes * 60.0,
            reason=reason,
        )  # fmt: skip
        return self._draft("alarm_shelved", new, now, user)

    def unshelve(self, alarm_id: str, user: str, now: float) -> p.Event:
        cur = self._listed(alarm_id)
        if cur.state != "shelved":
            raise Refused(p.ERR_ALARM_STATE, f"{alarm_id} is {_words(cur.state)}, not shelved")
        return self._unsuppressed("alarm_unshelved", cur, now, user)

    def out_of_service(self, alarm_id: str, user: str, now: float, reason: str) -> p.Event:
        cur = self._listed(alarm_id)
        if cur.state == "out_of_service":
            raise Refused(p.ERR_ALARM_STATE, f"{alarm_id} is out of service already")
        new = msgspec.structs.replace(
            cur, state="out_of_service", suppressed_by=user, suppressed_at=now, shelved_until=None, reason=reason
        )
        return self._draft("alarm_out_of_service", new, now, user)

    def in_service(self, alarm_id: str, user: str, now: float) -> p.Event:
        cur = self._listed(alarm_id)
        if cur.state != "out_of_service":
            raise Refused(p.ERR_ALARM_STATE, f"{alarm_id} is {_words(cur.state)}, not out of service")
        return self._unsuppressed("alarm_in_service", cur, now, user)

    # --- helpers ----------------------------------------------------------------------------------

    def _listed(self, alarm_id: str) -> p.Alarm:
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            raise Refused(p.ERR_NOT_FOUND, f"no alarm {alarm_id!r} in the list (it may have cleared meanwhile)")
        return alarm

    def _unsuppressed(self, kind: str, cur: p.Alarm, now: float, user: str) -> p.Event:
        """Back from shelving or out of service: an alarm whose condition holds asks for attention again."""
        state: p.AlarmState = "unacknowledged" if cur.active else "normal"
        new = msgspec.structs.replace(cur, state=state, **_CLEAR_SUPPRESSION, **_CLEAR_ACK)
        return self._draft(kind, new, now, user)

    def _draft(self, kind: str, alarm: p.Alarm, ts: float, user: str = "") -> p.Event:
        cur = self.alarms.get(alarm.id)
        alarm = msgspec.structs.replace(alarm, changed=ts, revision=(cur.revision if cur else 0) + 1)
        return p.Event(
            0, kind, alarm.id, alarm.element, ts, alarm.prop, alarm.source, alarm.layer, alarm.severity,
            alarm.message, alarm.value, user=user, alarm=alarm,
        )  # fmt: skip


def _words(state: str) -> str:
    return state.replace("_", " ")


# --- persistence (tables in store._SCHEMA) ----------------------------------------------------------

_enc = msgspec.json.Encoder()
_alarm_dec = msgspec.json.Decoder(p.Alarm)
_event_dec = msgspec.json.Decoder(p.Event)


def put_transition(db: Db, scene: str, event: p.Event) -> None:
    """Write an alarm transition: the alarm's row (deleted once normal) and the event, keeping the newest
    ALARM_EVENTS_KEEP events."""
    alarm = event.alarm
    if alarm is None:
        return
    if alarm.state == "normal":
        db.execute("DELETE FROM alarms WHERE scene = ? AND id = ?", (scene, alarm.id))
    else:
        db.execute(upsert("alarms", ("scene", "id", "data"), ("scene", "id")), (scene, alarm.id, _enc.encode(alarm)))
    db.execute(
        "INSERT INTO alarm_events (scene, ts, alarm, kind, data) VALUES (?, ?, ?, ?, ?)",
        (scene, event.ts, alarm.id, event.kind, _enc.encode(event)),
    )
    db.execute("DELETE FROM alarm_events WHERE id <= (SELECT max(id) FROM alarm_events) - ?", (ALARM_EVENTS_KEEP,))


def load_alarms(db: Db, scene: str) -> tuple[list[p.Alarm], list[p.Event]]:
    """The stored list and the newest ALARM_HISTORY_MAX events (oldest first) of a scene."""
    alarms = [_alarm_dec.decode(data) for (data,) in db.execute("SELECT data FROM alarms WHERE scene = ?", (scene,))]
    rows = db.execute(
        "SELECT data FROM alarm_events WHERE scene = ? ORDER BY id DESC LIMIT ?", (scene, ALARM_HISTORY_MAX)
    ).fetchall()
    return alarms, [_event_dec.decode(data) for (data,) in reversed(rows)]


# --- operators' requests ------------------------------------------------------------------------------

_ACTIONS: Final[dict[type, Action]] = {
    p.AlarmAck: Action.ALARM_ACKNOWLEDGE,
    p.AlarmShelve: Action.ALARM_SHELVE,
    p.AlarmUnshelve: Action.ALARM_SHELVE,
    p.AlarmOutOfService: Action.ALARM_SERVICE,
    p.AlarmInService: Action.ALARM_SERVICE,
}


class AlarmDesk:
    """Where people answer alarms: acknowledge, shelve, unshelve, out of / back in service. Also writes the
    process's transitions (the hub's `on_alarm`) to the store."""

    def __init__(self, hub: SceneHub, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.store = store
        self.clock = clock
        hub.on_alarm.append(self._persist)

    def _persist(self, event: p.Event) -> None:
        scene = self.hub.scene_id
        self.store.submit(lambda db: put_transition(db, scene, event))

    async def handle(self, member: Member, msg: p.AlarmRequest) -> p.Saved:
        """Raises Refused: forbidden, not_found, alarm_state, bad_message (a blank reason), not_saved."""
        action = _ACTIONS[type(msg)]
        require(member, action)
        book, now, user = self.hub.alarms, self.clock(), member.user
        reason = getattr(msg, "reason", "").strip()
        if isinstance(msg, p.AlarmShelve | p.AlarmOutOfService) and not reason:
            raise Refused(p.ERR_BAD_MESSAGE, "say why: the reason is written to the alarm and the audit trail")
        if isinstance(msg, p.AlarmAck):
            draft = book.acknowledge(msg.id, user, now)
        elif isinstance(msg, p.AlarmShelve):
            draft = book.shelve(msg.id, user, now, msg.minutes, reason)
        elif isinstance(msg, p.AlarmUnshelve):
            draft = book.unshelve(msg.id, user, now)
        elif isinstance(msg, p.AlarmOutOfService):
            draft = book.out_of_service(msg.id, user, now, reason)
        else:
            draft = book.in_service(msg.id, user, now)
        event = await self.hub.number_alarm(draft)
        detail = f"{event.kind} -> {event.alarm.state if event.alarm else ''}"
        if isinstance(msg, p.AlarmShelve):
            detail += f" for {msg.minutes} min"
        if reason:
            detail += f": {reason}"
        entry = AuditEntry(member.room, now, user, member.role, action.value, msg.id, detail)
        scene = self.hub.scene_id

        def write(db: Db) -> None:
            put_transition(db, scene, event)
            put_audit(db, entry)

        try:
            await self.store.run(write)
        except StoreError as exc:
            raise Refused(p.ERR_NOT_SAVED, f"the change is shown but could not be stored: {exc}") from None
        revision = event.alarm.revision if event.alarm else 0
        return p.Saved(msg.ref, event.kind, msg.id, revision, event.seq)
