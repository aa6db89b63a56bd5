"""Outbox and resume log: state converges, events arrive exactly once and in order, memory is bounded.

The state machine drives the real Batch / Outbox / ResumeLog classes the way the hub and sessions
do (flush windows, a sender that sometimes lags, drops and resumes) and checks a mirrored client
against the server after every quiet point.
"""

from __future__ import annotations

import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from viewer_server import protocol as p
from viewer_server.outbox import PROP, RESYNC, VISUAL, Batch, Outbox, StateKey, StateValue
from viewer_server.resume_log import ResumeLog

LAYERS = ["ops", "energy"]
ELEMENTS = ["A", "B", "C"]
LOG_MAX = 25  # small, so that "too old" happens
EVENTS_MAX = 6  # small, so that outbox overflow happens


class Server:
    """The hub's bookkeeping, reduced to what the outbox and the log see."""

    def __init__(self) -> None:
        self.seq = 0
        self.log = ResumeLog(LOG_MAX)
        self.props: dict[str, p.PropState] = {}
        self.visuals: dict[str, dict[str, p.Visual]] = {layer: {} for layer in LAYERS}
        self.events: list[p.Event] = []
        self.window: dict[StateKey, StateValue] = {}
        self.window_events: list[p.Event] = []
        self.first = 1

    def set_prop(self, element: str, value: float) -> None:
        key = f"{element}/x"
        if self.props.get(key) == p.PropState(value, 1.0):
            return  # a no-op write makes no change
        self.seq += 1
        self.props[key] = p.PropState(value, 1.0)
        skey = (PROP, key, "")
        self.log.append_state(self.seq, skey, self.props[key])
        self.window[skey] = self.props[key]

    def set_visual(self, element: str, layer: str, color: str) -> None:
        self.seq += 1
        vis = p.Visual(color=color)
        self.visuals[layer][element] = vis
        skey = (VISUAL, f"{element}@{layer}", layer)
        self.log.append_state(self.seq, skey, vis)
        self.window[skey] = vis

    def event(self, element: str) -> None:
        self.seq += 1
        ev = p.Event(self.seq, "alarm_raised", f"id{self.seq}", element, 1.0)
        self.events.append(ev)
        self.log.append_event(ev)
        self.window_events.append(ev)

    def flush(self) -> Batch | None:
        if self.seq < self.first:
            return None
        batch = Batch(self.first, self.seq, self.window, self.window_events)
        self.window, self.window_events, self.first = {}, [], self.seq + 1
        return batch


class Client:
    """The mirrored state a client holds, fed with encoded frames as the real client is."""

    def __init__(self, layer: str, encoding: p.Encoding) -> None:
        self.layer = layer
        self.encoding = encoding
        self.seq = 0
        self.props: dict[str, p.PropState] = {}
        self.visuals: dict[str, p.Visual] = {}
        self.events: list[p.Event] = []
        self.snapshot_seqs: list[int] = []  # events before these may be legitimately missing

    def snapshot(self, server: Server) -> None:
        self.seq = server.seq
        self.props = dict(server.props)
        self.visuals = dict(server.visuals[self.layer])
        self.snapshot_seqs.append(server.seq)

    def apply(self, frame: bytes) -> None:
        delta = p.decode_server(frame, self.encoding)
        assert isinstance(delta, p.Delta)
        assert delta.first == self.seq + 1, "deltas are contiguous"
        self.props.update(delta.props)
        for key, vis in delta.visuals.items():
            element, layer = key.rsplit("@", 1)
            assert layer == self.layer, "only the session's layer is sent"
            self.visuals[element] = vis
        self.events.extend(delta.events)
        self.seq = delta.last


class OutboxMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Server()
        self.client = Client("ops", "json")
        self.client.snapshot(self.server)
        self.outbox: Outbox | None = Outbox("ops", "json", max_events=EVENTS_MAX)
        self.in_flight: list[bytes] = []  # taken by the sender, not yet delivered

    @rule(element=st.sampled_from(ELEMENTS), value=st.sampled_from([0.0, 1.0, 2.5]))
    def write_prop(self, element: str, value: float) -> None:
        self.server.set_prop(element, value)

    @rule(
        element=st.sampled_from(ELEMENTS), layer=st.sampled_from(LAYERS), color=st.sampled_from(["#000000", "#ffffff"])
    )
    def write_visual(self, element: str, layer: str, color: str) -> None:
        self.server.set_visual(element, layer, color)

    @rule(element=st.sampled_from(ELEMENTS))
    def raise_event(self, element: str) -> None:
        self.server.event(element)

    @rule()
    def flush(self) -> None:
        batch = self.server.flush()
        if batch is not None and self.outbox is not None:
            self.outbox.offer(batch)

    @precondition(lambda self: self.outbox is not None)
    @rule()
    def sender_takes(self) -> None:
        assert self.outbox is not None
        frame = self.outbox.take_nowait()
        if frame is RESYNC:
            # Session: the hub publishes its open window, the snapshot is taken, the outbox reset,
            # all in one step; frames already in flight still arrive before the snapshot.
            self.flush()
            self.network_delivers()
            self.client.snapshot(self.server)
            self.outbox.reset(self.client.layer)
        elif frame is not None:
            self.in_flight.append(frame)  # type: ignore[arg-type]

    @rule()
    def network_delivers(self) -> None:
        for frame in self.in_flight:
            self.client.apply(frame)
        self.in_flight.clear()

    @precondition(lambda self: self.outbox is not None)
    @rule()
    def connection_drops(self) -> None:
        self.outbox = None  # pending and in-flight frames are lost with the connection
        self.in_flight.clear()

    @precondition(lambda self: self.outbox is None)
    @rule()
    def client_resumes(self) -> None:
        batch = self.server.flush()  # the hub publishes its open window before a resume
        del batch  # ... to the other sessions; this client is not subscribed yet
        if self.server.log.covers(self.client.seq):
            missed = self.server.log.since(self.client.seq)
            self.client.apply(p.encode(missed.delta(self.client.layer), "json"))
        else:
            self.client.snapshot(self.server)  # the window was flushed just above
        self.outbox = Outbox(self.client.layer, "json", max_events=EVENTS_MAX)

    @invariant()
    def memory_is_bounded_by_keys(self) -> None:
        if self.outbox is not None:
            keys = len(ELEMENTS) + len(ELEMENTS)  # props + visuals of one layer
            assert self.outbox.pending_keys <= keys
            assert self.outbox.pending_events <= EVENTS_MAX

    @invariant()
    def events_never_duplicated_nor_reordered(self) -> None:
        seqs = [e.seq for e in self.client.events]
        assert seqs == sorted(set(seqs))

    def teardown(self) -> None:
        # Quiesce: reconnect if needed, flush, send and deliver everything; then compare.
        if self.outbox is None:
            self.client_resumes()
        self.flush()
        for _ in range(3):
            self.sender_takes()
            self.network_delivers()
        server, client = self.server, self.client
        assert client.props == server.props
        assert client.visuals == server.visuals[client.layer]
        assert client.seq <= server.seq
        # Exactly once, in order: every event after the last snapshot; none twice.
        floor = max(client.snapshot_seqs)
        expected = [e for e in server.events if e.seq > floor]
        assert [e for e in client.events if e.seq > floor] == expected


TestOutboxMachine = OutboxMachine.TestCase
TestOutboxMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def _batch(first: int, key: str, value: float, events: int = 0) -> Batch:
    state: dict[StateKey, StateValue] = {(PROP, key, ""): p.PropState(value, 1.0)}
    evs = [p.Event(first + i, "alarm_raised", "a", "A", 1.0) for i in range(events)]
    return Batch(first, first + events, state, evs)


def test_idle_client_gets_the_shared_bytes() -> None:
    batch = _batch(1, "A/x", 1.0)
    a, b = Outbox("ops", "json"), Outbox("ops", "json")
    a.offer(batch)
    b.offer(batch)
    assert a.take_nowait() is b.take_nowait()  # one encode, the same bytes object for both


def test_busy_client_coalesces_to_the_newest_value() -> None:
    box = Outbox("ops", "msgpack")
    for i in range(1000):
        box.offer(_batch(i + 1, "A/x", float(i)))
    assert box.pending_keys == 1
    delta = p.decode_server(box.take_nowait(), "msgpack")  # type: ignore[arg-type]
    assert isinstance(delta, p.Delta)
    assert (delta.first, delta.last, delta.props["A/x"].v) == (1, 1000, 999.0)


def test_a_client_that_sees_part_of_the_scene_keeps_only_that_part_pending() -> None:
    box = Outbox("ops", "json")
    box.seen = frozenset({"A", "el/with/slashes"})
    for i in range(1000):  # a busy client: everything coalesces privately
        state: dict[StateKey, StateValue] = {
            (PROP, f"E{i}/x", ""): p.PropState(float(i), 1.0),
            (PROP, "el/with/slashes/x", ""): p.PropState(float(i), 1.0),
            (VISUAL, f"E{i}@ops", "ops"): p.Visual(color="#ff0000"),
            (VISUAL, "A@ops", "ops"): p.Visual(color="#00ff00"),
        }
        box.offer(Batch(4 * i + 1, 4 * i + 4, state, [p.Event(4 * i + 4, "alarm_raised", "a", f"E{i}", 1.0)]))
    assert box.pending_keys == 2  # not one per element of the plant
    delta = p.decode_server(box.take_nowait(), "json")  # type: ignore[arg-type]
    assert isinstance(delta, p.Delta) and (delta.first, delta.last) == (1, 4000)
    assert list(delta.props) == ["el/with/slashes/x"] and list(delta.visuals) == ["A@ops"]
    assert len(delta.events) == 1000  # events are never filtered


def test_clients_with_the_same_interest_share_one_encoding() -> None:
    batch = Batch(1, 2, {(PROP, "A/x", ""): p.PropState(1.0, 1.0), (PROP, "B/x", ""): p.PropState(2.0, 1.0)}, [])
    a, b, c = Outbox("ops", "json"), Outbox("ops", "json"), Outbox("ops", "json")
    a.seen, b.seen, c.seen = frozenset({"A"}), frozenset({"A"}), None
    for box in (a, b, c):
        box.offer(batch)
    frames = [box.take_nowait() for box in (a, b, c)]
    assert frames[0] is frames[1] and frames[2] is not frames[0]
    assert list(p.decode_server(frames[0], "json").props) == ["A/x"]  # type: ignore[arg-type, union-attr]


def test_event_overflow_asks_for_a_resync_and_drops_the_backlog() -> None:
    box = Outbox("ops", "json", max_events=10)
    for i in range(20):
        box.offer(_batch(i * 10 + 1, "A/x", float(i), events=3))
    assert box.take_nowait() is RESYNC
    assert box.pending_keys == 0 and box.pending_events == 0


def test_log_covers_only_what_it_still_holds() -> None:
    log = ResumeLog(max_changes=3)
    for seq in range(1, 6):
        log.append_state(seq, (PROP, "A/x", ""), p.PropState(float(seq), 1.0))
    assert [log.covers(s) for s in range(0, 7)] == [False, False, True, True, True, True, False]
    missed = log.since(3)
    assert msgspec.to_builtins(missed.state) == {("p", "A/x", ""): {"v": 5.0, "ts": 1.0}}
