"""Guided procedures at run time: each session's active procedure, its current step, every trainee's
completions, and the record of who completed which step when.

Event-sourced: every change is an event (`procedure_started`, `procedure_step`, `step_completed`,
`procedure_finished`) that is first decided (`ProcedureSession.start/move/complete/observe` check the
request and return drafts), then numbered by the hub, persisted, and applied (`apply`). A restart
replays the persisted events through the same `apply`, so the state a late joiner sees after a restart
is exactly the state before it.

Completion (documented in docs/PROCEDURES.md):
- `acknowledge` and `select` complete per trainee: each person sends `step_complete` for the current
  step (with the selected element for `select`).
- `value` completes once for everyone (user "*"), by the server, as soon as the live value is within
  range while the step is current: it is a fact about the plant, not about a trainee.
The presenter moves the session between steps; completions never advance it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from scene.procedure_file import Completion, ProcedureFile, ValueRange, step_id
from viewer_server import protocol as p
from viewer_server.hub import Guard, GuardFailed, SceneHub
from viewer_server.permissions import Action, allowed
from viewer_server.rooms import Member
from viewer_server.store import Store, decoded
from viewer_server.store_db import Db, StoreError
from viewer_server.topics import Viewpoint

# Longest procedure name (as in the file format) echoed back in an error.
MAX_NAME: Final = 64
EVERYONE: Final = "*"  # the user of a completion made by the live twin (value condition)
# Completions kept per run in memory and in snapshots: a 200-step procedure with 50 trainees; beyond
# it completions are still recorded on disk, the snapshot keeps the first ones.
MAX_COMPLETIONS: Final = 10_000

Value = bool | int | float | str


log = logging.getLogger(__name__)


class Refused(Exception):
    """A procedure, presenter or command request that cannot be done now; becomes an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def frame(self, ref: str | None) -> p.Error:
        return p.Error(self.code, self.message, ref)


def step_info(proc: ProcedureFile, index: int) -> p.StepInfo:
    """A file step as clients see it; its viewpoint selects the highlighted elements."""
    step = proc.steps[index]
    sid = step_id(proc, index)
    view = None
    if step.viewpoint is not None:
        view = Viewpoint(
            guid=f"{proc.name}/{sid}",
            camera=step.viewpoint.camera,
            clipping_planes=list(step.viewpoint.clipping_planes),
            selected=list(step.highlight),
            hidden=list(step.viewpoint.hidden),
            default_visible=step.viewpoint.default_visible,
            xray=list(step.viewpoint.xray),
            xray_default=step.viewpoint.xray_default,
        )
    return p.StepInfo(
        sid, step.title, step.instructions, list(step.highlight), view, list(step.watch), step.complete_when
    )


def in_range(value: object, lo: float | None, hi: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def position(run: p.ProcedureRun | None) -> str:
    """Where a session's procedure is, as a `Guard` register holds it: "RUN:STEP", or "" when none runs."""
    return f"{run.run}:{run.step}" if run is not None and not run.finished else ""


def position_after(event: p.Event) -> str | None:
    """Where a procedure event moves its session (None: it does not move it, a completion)."""
    if event.kind == "procedure_started":
        return f"{event.id}:0"
    if event.kind == "procedure_step":
        return f"{event.id}:{event.step}"
    return "" if event.kind == "procedure_finished" else None


def apply_event(run: p.ProcedureRun | None, event: p.Event) -> p.ProcedureRun | None:
    """The run after a procedure event (server, on restore, and clients mirroring the state)."""
    if event.kind == "procedure_started" and event.run is not None:
        return msgspec.structs.replace(event.run, completions=[])
    if run is None or run.run != event.id:
        return run  # not a procedure event, or one of an older run (restore replays every run)
    if event.kind == "procedure_step" and event.step is not None:
        run.step = event.step
    elif event.kind == "step_completed" and event.step is not None and len(run.completions) < MAX_COMPLETIONS:
        run.completions.append(p.StepDone(event.step, event.user, event.ts, event.element, event.value))
    elif event.kind == "procedure_finished":
        run.finished = "completed" if event.message == "completed" else "stopped"
    return run


class ProcedureSession:
    """The procedure state of one collaboration session. Pure: no I/O, no clock, no ids of its own."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.run: p.ProcedureRun | None = None  # the latest run (kept, with `finished`, after it ends)

    @property
    def active(self) -> p.ProcedureRun | None:
        return self.run if self.run is not None and not self.run.finished else None

    # --- decisions: check a request, return the events it produces --------------------------------

    def start(self, proc: ProcedureFile, user: str, now: float, run_id: str) -> list[p.Event]:
        if self.active is not None:
            raise Refused("procedure_active", f"{self.active.name!r} is running; stop it first")
        steps = [step_info(proc, i) for i in range(len(proc.steps))]
        run = p.ProcedureRun(run_id, proc.name, proc.title, 0, now, user, steps)
        first = steps[0]
        return [self._event("procedure_started", run, user, now, step=0, message=proc.title, run=run,
                            viewpoint=first.viewpoint)]  # fmt: skip

    def move(self, action: str, step: int | None, user: str, now: float, from_step: int | None = None) -> list[p.Event]:
        """next / back / goto / stop, made at `from_step` if given (refused once the session has moved on). `next`
        on the last step finishes the run as completed."""
        run = self._require_active()
        if from_step is not None and from_step != run.step:
            raise Refused(p.ERR_STEP_MOVED, step_moved(run.step))
        if action == "stop":
            return [self._event("procedure_finished", run, user, now, message="stopped")]
        target = {"next": run.step + 1, "back": run.step - 1}.get(action, step)
        if target is None:
            raise Refused("bad_step", "goto needs a step")
        if action == "next" and target == len(run.steps):
            return [self._event("procedure_finished", run, user, now, message="completed")]
        if not 0 <= target < len(run.steps):
            raise Refused("bad_step", f"no step {target}: the procedure has steps 0..{len(run.steps) - 1}")
        info = run.steps[target]
        return [
            self._event("procedure_step", run, user, now, step=target, message=info.title, viewpoint=info.viewpoint)
        ]

    def complete(self, step: int, user: str, element: str | None, now: float) -> list[p.Event]:
        """A trainee's `step_complete` for the current step."""
        run = self._require_active()
        if step != run.step:
            raise Refused("not_current_step", f"step {step} is not the current step ({run.step})")
        cond = run.steps[step].complete_when
        if isinstance(cond, Completion) and cond.value is not None:
            raise Refused("completed_by_twin", "this step completes by itself when the live value is in range")
        if isinstance(cond, Completion) and cond.select is not None and element != cond.select:
            raise Refused("wrong_element", f"select {cond.select!r} to complete this step")
        if self.done(step, user):
            return []  # a repeated click: nothing new to record
        selected = cond.select if isinstance(cond, Completion) and cond.select is not None else ""
        return [self._event("step_completed", run, user, now, step=step, element=selected)]

    def observe(self, value_of: Callable[[str, str], Value | None], now: float) -> list[p.Event]:
        """Complete the current step for everyone when its value condition holds (call after the step
        changes and after every change of the watched property)."""
        run, cond = self.active, self._value_condition()
        if run is None or cond is None or self.done(run.step, EVERYONE):
            return []
        value = value_of(cond.element, cond.prop)
        if not in_range(value, cond.min, cond.max):
            return []
        return [self._event("step_completed", run, EVERYONE, now, step=run.step, element=cond.element, prop=cond.prop,
                            value=value)]  # fmt: skip

    def watches(self, element: str, prop: str) -> bool:
        """True when the current step completes on element.prop (so a change of it must be observed)."""
        cond = self._value_condition()
        return cond is not None and (cond.element, cond.prop) == (element, prop)

    def _value_condition(self) -> ValueRange | None:
        run = self.active
        cond = None if run is None else run.steps[run.step].complete_when
        return cond.value if isinstance(cond, Completion) else None

    def done(self, step: int, user: str) -> bool:
        return self.run is not None and any(c.step == step and c.user == user for c in self.run.completions)

    # --- applying events (live and on restore) ----------------------------------------------------

    def apply(self, event: p.Event) -> None:
        self.run = apply_event(self.run, event)

    def snapshot(self) -> p.ProcedureRun | None:
        """A copy for a snapshot (later events must not change what was already handed out)."""
        return None if self.run is None else msgspec.structs.replace(self.run, completions=list(self.run.completions))

    # --- helpers ----------------------------------------------------------------------------------

    def _require_active(self) -> p.ProcedureRun:
        run = self.active
        if run is None:
            raise Refused("no_procedure", "no procedure is running in this session")
        return run

    def _event(
        self, kind: str, of: p.ProcedureRun, user: str, now: float, *, element: str = "", **fields: Any
    ) -> p.Event:
        """A draft: seq 0 until the hub numbers it."""
        return p.Event(0, kind, of.run, element, now, session=self.session, user=user, procedure=of.name, **fields)


def step_moved(now_at: int | None) -> str:
    """The message of a `step_moved` refusal (`now_at`: the step the session is at, if it still runs)."""
    where = f"is at step {now_at}" if now_at is not None else "moved"
    return f"someone else moved the procedure meanwhile: it {where}; look again before moving it"


class ProcedureSummary(msgspec.Struct):
    """A procedure the server can run (GET /api/procedures): what a presenter picks from."""

    name: str
    title: str
    description: str
    steps: list[str]  # step titles


class Procedures:
    """The procedure library of the server and every session's procedure state, wired to the hub
    (numbering and fan-out of events), the store (the persisted record) and the live twin (values).

    Each change goes the same way, under the session's lock: decide (permission first) → one SQLite
    transaction with the new events → only after the COMMIT: number, apply and fan out. What anyone
    saw survives a `kill -9`. Each move is numbered under a `Guard` of the session's position, so that of two
    presenters pressing "next" at once on two processes only the first moves it (the other is refused
    `step_moved`, as one process refuses a `from_step` the session has left)."""

    def __init__(
        self,
        library: dict[str, ProcedureFile],
        hub: SceneHub,
        store: Store,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.library = library
        self.hub = hub
        self.store = store
        self.clock = clock
        self.sessions: dict[str, ProcedureSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._observers: set[asyncio.Task[None]] = set()  # value checks started by telemetry changes
        hub.on_change.append(self._on_change)
        hub.on_event.append(self._apply)

    def restore(self) -> None:
        """Replay the persisted events (start-up, before serving): every session lands where it was."""
        for event in self.store.submit(load_events).result():
            self.session(event.session).apply(event)

    def session(self, room: str) -> ProcedureSession:
        ps = self.sessions.get(room)
        if ps is None:
            ps = self.sessions[room] = ProcedureSession(room)
        return ps

    def snapshot(self, room: str) -> p.ProcedureRun | None:
        ps = self.sessions.get(room)
        return None if ps is None else ps.snapshot()

    def summaries(self) -> list[ProcedureSummary]:
        return [
            ProcedureSummary(proc.name, proc.title, proc.description, [s.title for s in proc.steps])
            for proc in sorted(self.library.values(), key=lambda proc: proc.name)
        ]

    # --- requests of a member (permission checked here, for every operation) ----------------------

    async def control(self, member: Member, msg: p.ProcedureControl) -> None:
        """start / next / back / goto / stop; raises Refused."""
        require(member, Action.PROCEDURE_CONTROL)
        ps = self.session(member.room)
        async with self._lock(member.room):
            now = self.clock()
            if msg.action == "start":
                proc = self.library.get(msg.name or "")
                if proc is None:
                    known = ", ".join(sorted(self.library)) or "none loaded (serve --procedures DIR)"
                    raise Refused(p.ERR_NOT_FOUND, f"no procedure {(msg.name or '')[:MAX_NAME]!r}; known: {known}")
                await self._commit(ps, ps.start(proc, member.user, now, secrets.token_hex(6)))
            else:
                await self._commit(ps, ps.move(msg.action, msg.step, member.user, now, msg.from_step))

    async def complete(self, member: Member, msg: p.StepComplete) -> None:
        require(member, Action.PROCEDURE_PROGRESS)
        ps = self.session(member.room)
        async with self._lock(member.room):
            await self._commit(ps, ps.complete(msg.step, member.user, msg.element, self.clock()))

    async def record(self, room: str, run: str | None = None) -> Record | None:
        """The persisted record of a run (committed writes only: read on the writer thread, after them)."""
        return build_record(await self.store.run(lambda db: load_events(db, room)), run)

    # --- internals --------------------------------------------------------------------------------

    def _lock(self, room: str) -> asyncio.Lock:
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = asyncio.Lock()
        return lock

    async def _commit(self, ps: ProcedureSession, drafts: list[p.Event]) -> None:
        """Persist, then number and fan out (the hub's `on_event` applies it); a step change re-checks its value
        condition at once. Refused (not_saved, naming the cause) when the store cannot commit: nothing changed.
        A move the deployment's leader refuses (its guard: another process moved the session first) is taken out
        of the store again and refused `step_moved` (`procedure_active` for a start)."""
        at = position(ps.run)  # what the drafts were decided on (other processes' events may come meanwhile)
        while drafts:
            try:
                await self.store.run(lambda db, batch=drafts: [put_event(db, d) for d in batch])
            except StoreError as exc:
                raise Refused(p.ERR_NOT_SAVED, f"not saved, try again: {exc}") from None
            moved = False
            for i, draft in enumerate(drafts):
                after = position_after(draft)
                guard = None if after is None else Guard(f"procedure:{ps.session}", at, after)
                try:
                    event = await self.hub.number(lambda seq, d=draft: msgspec.structs.replace(d, seq=seq), guard)
                except GuardFailed:
                    await self._forget(drafts[i:])
                    if draft.kind == "procedure_started":
                        raise Refused("procedure_active", "another presenter started a procedure meanwhile") from None
                    raise Refused(p.ERR_STEP_MOVED, step_moved(ps.active.step if ps.active else None)) from None
                at = at if after is None else after
                moved = moved or event.kind in ("procedure_started", "procedure_step")
            drafts = ps.observe(self._value, self.clock()) if moved else []

    async def _forget(self, drafts: list[p.Event]) -> None:
        """Take persisted drafts that were never numbered out of the store (logged if it cannot: a restart would
        replay them)."""
        try:
            await self.store.run(lambda db: [forget_event(db, d) for d in drafts])
        except StoreError as exc:
            log.error("procedure events refused by the leader stay in the store (%s): %s", exc, drafts)

    def _apply(self, event: p.Event, mine: bool) -> None:
        """Every numbered event, in seq order (whichever process's person made it): the session's run follows."""
        if event.kind in p.PROCEDURE_EVENTS:
            self.session(event.session).apply(event)

    def _on_change(self, element: str, prop: str) -> None:
        """A telemetry change (inside the hub's apply): check the value steps watching it, with the value
        it has now — a spike into range within one ingest batch still completes the step."""
        value = self._value(element, prop)
        for ps in self.sessions.values():
            if ps.watches(element, prop) and ps.active is not None:
                at = (ps.active.run, ps.active.step)
                task = asyncio.get_running_loop().create_task(self._observe(ps, at, element, prop, value))
                self._observers.add(task)
                task.add_done_callback(self._observers.discard)

    async def _observe(
        self, ps: ProcedureSession, at: tuple[str, int], element: str, prop: str, value: Value | None
    ) -> None:
        def value_of(e: str, pr: str) -> Value | None:
            return value if (e, pr) == (element, prop) else self._value(e, pr)

        async with self._lock(ps.session):
            run = ps.active
            if run is not None and (run.run, run.step) == at:  # else the step changed and was checked then
                try:
                    await self._commit(ps, ps.observe(value_of, self.clock()))
                except Refused as exc:  # the value completes the step again at its next change
                    log.warning(
                        "procedure %s: step %d not completed by %s/%s: %s", run.run, run.step, element, prop, exc
                    )

    def _value(self, element: str, prop: str) -> Value | None:
        pv = self.hub.state.element(element).get(prop)
        return None if pv is None else pv.value


def require(member: Member, action: Action) -> None:
    """Refuse (`forbidden`) unless the member's role may do `action` (docs/PERMISSIONS.md)."""
    if not allowed(member.role, action):
        raise Refused(p.ERR_FORBIDDEN, f"role {member.role!r} may not {action.value}")


# --- persistence: the record table (schema in store._SCHEMA) -------------------------------------------

_event_dec = msgspec.json.Decoder(p.Event)
_enc = msgspec.json.Encoder()


def put_event(db: Db, event: p.Event) -> None:
    db.execute(
        "INSERT INTO procedure_events (session, run, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
        (event.session, event.id, event.ts, event.kind, _enc.encode(event)),
    )


def forget_event(db: Db, draft: p.Event) -> None:
    """Delete a persisted draft (as `put_event` wrote it) that was never numbered."""
    db.execute(
        "DELETE FROM procedure_events WHERE session = ? AND run = ? AND kind = ? AND data = ?",
        (draft.session, draft.id, draft.kind, _enc.encode(draft)),
    )


def load_events(db: Db, session: str | None = None) -> list[p.Event]:
    """Persisted procedure events, oldest first: of one session, or of all (restore)."""
    if session is None:
        rows = db.execute("SELECT id, data FROM procedure_events ORDER BY id")
    else:
        rows = db.execute("SELECT id, data FROM procedure_events WHERE session = ? ORDER BY id", (session,))
    return decoded(rows, _event_dec, "procedure_events")


# --- the record: who completed which step, when ---------------------------------------------------


class RecordRow(msgspec.Struct):
    step: int
    step_id: str
    step_title: str
    user: str
    completed_at: str  # ISO 8601, UTC
    ts: float
    detail: str  # the selected element, or prop=value of a value condition


class Record(msgspec.Struct, omit_defaults=True):
    session: str
    run: str
    procedure: str
    title: str
    started_by: str
    started_at: str
    finished: str  # "" (running), "completed" or "stopped"
    finished_at: str
    completions: list[RecordRow]


RECORD_CSV_COLUMNS: Final = ("session", "run", "procedure", *RecordRow.__struct_fields__)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_record(events: Iterable[p.Event], run_id: str | None = None) -> Record | None:
    """The record of run `run_id` (default: the latest run) from a session's events; None if no run."""
    events = list(events)
    starts = [e for e in events if e.kind == "procedure_started" and e.run is not None]
    start = next((e for e in starts if e.id == run_id), None) if run_id else (starts[-1] if starts else None)
    if start is None or start.run is None:
        return None
    run = start.run
    record = Record(start.session, run.run, run.name, run.title, run.by, iso(run.started), "", "", [])
    for e in events:
        if e.id != run.run:
            continue
        if e.kind == "step_completed" and e.step is not None:
            info = run.steps[e.step]
            detail = f"{e.prop}={e.value}" if e.prop else e.element
            record.completions.append(RecordRow(e.step, info.id, info.title, e.user, iso(e.ts), e.ts, detail))
        elif e.kind == "procedure_finished":
            record.finished, record.finished_at = e.message, iso(e.ts)
    return record


def record_csv(record: Record) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RECORD_CSV_COLUMNS)
    for row in record.completions:
        writer.writerow([record.session, record.run, record.procedure, *msgspec.structs.astuple(row)])
    return out.getvalue()
