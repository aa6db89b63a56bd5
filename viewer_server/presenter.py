"""Presenter mode ("spotlight") of each collaboration session: who presents, their current view, and the
raise-hand queue.

The state of a session is one `PresenterState`, kept as coalesced hub state (not as events): a late
joiner finds the presenter's current view in its snapshot, a slow client gets only the newest view.
The presenter's camera updates are throttled to PRESENTER_VIEW_HZ with a trailing update, so the last
pose of a camera move always arrives. Following, breaking away and "return to presenter" are client
side: the client simply applies (or not) the newest `presenter.viewpoint`.

A request is checked against this process's copy (`PresenterRoom`), which yields a `PresenterChange`; the hub
applies it (`applied`): on one process the copy is the state, on several the leader applies the changes of
every process in inbox order, so that a hand raised here while the presenter takes the role there both hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import msgspec

from viewer_server import protocol as p
from viewer_server.hub import SceneHub
from viewer_server.permissions import Action, allowed
from viewer_server.procedures import Refused, require
from viewer_server.rooms import GUEST_PREFIX, Member
from viewer_server.topics import TopicError, Viewpoint, check_viewpoints

# Presenter views fanned out per second: smooth enough to follow a camera, and with the 60 Hz
# flush window at most every third window carries one.
PRESENTER_VIEW_HZ: Final = 20.0
# Raised hands per session: one per identity anyway; the bound keeps a snapshot small in a big lecture...
MAX_HANDS: Final = 500
# ...of which visitors (a new guest identity per connection) hold at most this many: a flood of anonymous
# connections cannot fill the queue for the people invited by link.
MAX_GUEST_HANDS: Final = 50
# A quick pin carries no surface normal: it points up, as a marker stands on the floor.
MARKUP_NORMAL: Final = (0.0, 1.0, 0.0)


# --- changes: decided on a process's copy, applied in order by whoever numbers (the hub, or the leader) ---


class Took(msgspec.Struct, tag="take", array_like=True):
    user: str
    session: str
    ts: float


class Released(msgspec.Struct, tag="release", array_like=True):
    ts: float


class Viewed(msgspec.Struct, tag="view", array_like=True):
    """The presenter's camera: applies only while `session` still presents."""

    session: str
    viewpoint: p.Viewpoint
    ts: float


class HandRaised(msgspec.Struct, tag="raise", array_like=True):
    hand: p.Hand


class HandsLowered(msgspec.Struct, tag="lower", array_like=True):
    """One user's hand (`user`), one connection's (`session`), or, with neither, every hand."""

    user: str = ""
    session: str = ""


class Left(msgspec.Struct, tag="leave", array_like=True):
    """A connection left: its hand goes down, and presenter mode ends if it was presenting."""

    connection: str
    ts: float


PresenterChange = Took | Released | Viewed | HandRaised | HandsLowered | Left


def applied(state: p.PresenterState, change: PresenterChange) -> p.PresenterState:
    """The state after `change`. Pure and total: on several processes each change was checked against the
    deciding process's copy, and the leader applies it to the deployment's state, where it may find that
    another change came first (a view of a presenter who was replaced meanwhile, a hand already up)."""
    replace = msgspec.structs.replace
    hands = state.hands
    if isinstance(change, Took):
        return replace(state, presenter=change.user, session=change.session, viewpoint=None, ts=change.ts)
    if isinstance(change, Released):
        return replace(state, presenter="", session="", viewpoint=None, ts=change.ts)
    if isinstance(change, Viewed):
        if change.session != state.session:
            return state
        return replace(state, viewpoint=change.viewpoint, ts=change.ts)
    if isinstance(change, HandRaised):
        hand = change.hand
        guest = hand.user.startswith(GUEST_PREFIX)
        if (
            any(h.user == hand.user for h in hands)
            or len(hands) >= MAX_HANDS
            or (guest and sum(h.user.startswith(GUEST_PREFIX) for h in hands) >= MAX_GUEST_HANDS)
        ):
            return state
        return replace(state, hands=[*hands, hand])
    if isinstance(change, HandsLowered):
        if change.user:
            return replace(state, hands=[h for h in hands if h.user != change.user])
        if change.session:
            return replace(state, hands=[h for h in hands if h.session != change.session])
        return replace(state, hands=[])
    kept = [h for h in hands if h.session != change.connection]
    if change.connection == state.session:
        return replace(state, presenter="", session="", viewpoint=None, ts=change.ts, hands=kept)
    return replace(state, hands=kept)


class PresenterRoom:
    """The presenter state of one session (this process's copy). Every method checks a request against it
    and returns the change it makes (None: none), applied to the copy, or raises Refused."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.state = p.PresenterState()

    def take(self, member: Member, now: float) -> PresenterChange | None:
        require(member, Action.PRESENTER_TAKE)
        return self._apply(Took(member.user, member.connection, now))

    def release(self, member: Member, now: float) -> PresenterChange | None:
        if not self.state.presenter:
            raise Refused("no_presenter", "nobody is presenting")
        if member.connection != self.state.session and not allowed(member.role, Action.PRESENTER_TAKE):
            raise Refused(p.ERR_FORBIDDEN, "only the presenter (or another presenter / admin) can end presenter mode")
        return self._apply(Released(now))

    def view(self, member: Member, viewpoint: Viewpoint, now: float) -> PresenterChange | None:
        if member.connection != self.state.session:
            raise Refused(p.ERR_FORBIDDEN, "only the presenter's views are shared; send presenter_take first")
        return self._apply(Viewed(member.connection, viewpoint, now))

    def raise_hand(self, member: Member, now: float) -> PresenterChange | None:
        """None when the user's hand is already up (from any of their connections: nothing changes)."""
        require(member, Action.HAND_RAISE)
        hands = self.state.hands
        if any(h.user == member.user for h in hands):
            return None
        if len(hands) >= MAX_HANDS:
            raise Refused("too_many_hands", f"{MAX_HANDS} hands are already up")
        if member.guest and sum(h.user.startswith(GUEST_PREFIX) for h in hands) >= MAX_GUEST_HANDS:
            raise Refused("too_many_hands", f"{MAX_GUEST_HANDS} visitors' hands are already up; join with your link")
        return self._apply(HandRaised(p.Hand(member.user, member.connection, now, member.name)))

    def lower_hand(self, member: Member, session: str | None, everyone: bool) -> PresenterChange | None:
        """Lower one's own hand; the presenter (or a presenter / admin) lowers anyone's, or all."""
        if (everyone or session not in (None, member.connection)) and not self._leads(member):
            raise Refused(p.ERR_FORBIDDEN, "only the presenter can lower other hands")
        if everyone:
            return self._apply(HandsLowered())
        if session is None or session == member.connection:
            return self._apply(HandsLowered(user=member.user))
        return self._apply(HandsLowered(session=session))

    def leave(self, connection: str, now: float) -> PresenterChange | None:
        return self._apply(Left(connection, now))

    def _leads(self, member: Member) -> bool:
        return member.connection == self.state.session or allowed(member.role, Action.PRESENTER_TAKE)

    def _apply(self, change: PresenterChange) -> PresenterChange | None:
        """The change, applied to the copy; None when it changes nothing."""
        state = applied(self.state, change)
        if state == self.state:
            return None
        self.state = state
        return change


def markup_topic(msg: p.Markup) -> p.TopicCreate:
    """A quick markup is a topic of type "Markup" pinned where the user pointed, the note as its title."""
    pin = p.Pin(msg.element, p.Vec3(*msg.point), p.Vec3(*MARKUP_NORMAL))
    return p.TopicCreate(p.TopicDraft(msg.note, pin=pin, topic_type="Markup"), msg.ref)


class Presenters:
    """Every session's presenter state, published to the hub; views throttled per session."""

    def __init__(self, hub: SceneHub, known: set[str], clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.known = known  # element ids a view may select, hide or colour
        self.clock = clock
        self.rooms: dict[str, PresenterRoom] = {}
        self._last_sent: dict[str, float] = {}  # room -> loop time of the last published view
        self._trailing: dict[str, asyncio.TimerHandle] = {}
        self._pending: dict[str, PresenterChange] = {}  # room -> the newest view not yet published
        # Called with (room, state) after each published state: replaying connections get it apart from deltas.
        self.on_publish: list[Callable[[str, p.PresenterState], None]] = []
        hub.on_presenter.append(self._adopt)
        hub.on_departed.append(self._gone)

    def room(self, room: str) -> PresenterRoom:
        pr = self.rooms.get(room)
        if pr is None:
            pr = self.rooms[room] = PresenterRoom(room)
        return pr

    def snapshot(self, room: str) -> p.PresenterState | None:
        pr = self.rooms.get(room)
        return None if pr is None or pr.state == p.PresenterState() else pr.state

    def handle(self, member: Member, msg: p.PresenterTake | p.PresenterRelease | p.HandRaise | p.HandLower) -> None:
        """Raises Refused."""
        pr, now = self.room(member.room), self.clock()
        if isinstance(msg, p.PresenterTake):
            self._publish(pr, pr.take(member, now))
        elif isinstance(msg, p.PresenterRelease):
            self._publish(pr, pr.release(member, now))
        elif isinstance(msg, p.HandRaise):
            self._publish(pr, pr.raise_hand(member, now))
        else:
            self._publish(pr, pr.lower_hand(member, msg.session, msg.all))

    def view(self, member: Member, viewpoint: Viewpoint) -> None:
        """The presenter's camera: kept at once, published at most PRESENTER_VIEW_HZ (the newest wins). Its
        component ids must be scene elements, at most MAX_VIEWPOINT_IDS (every joiner's snapshot carries it)."""
        pr = self.room(member.room)
        try:
            check_viewpoints([("viewpoint", viewpoint)], self.known)
        except TopicError as exc:
            raise Refused(p.TOPIC_ERROR_CODES[exc.kind], str(exc)) from None
        change = pr.view(member, viewpoint, self.clock())
        if change is None:
            return
        pending = member.room in self._trailing
        self._pending[member.room] = change
        if pending:
            return  # the pending trailing publish will carry this newest view
        loop = asyncio.get_running_loop()
        wait = self._last_sent.get(member.room, -1e9) + 1 / PRESENTER_VIEW_HZ - loop.time()
        if wait <= 0:
            self._publish_trailing(pr)
        else:
            self._trailing[member.room] = loop.call_later(wait, self._publish_trailing, pr)

    def leave(self, member: Member) -> None:
        pr = self.rooms.get(member.room)
        if pr is not None:
            self._publish(pr, pr.leave(member.connection, self.clock()))

    def _gone(self, connection: str) -> None:
        """A connection of a process that died: its hand goes down, its presenter mode ends."""
        for pr in list(self.rooms.values()):
            self._publish(pr, pr.leave(connection, self.clock()))

    def _adopt(self, room: str, state: p.PresenterState) -> None:
        """A presenter state from the shared log (another process's person, or this one's coming back)."""
        pr = self.room(room)
        if pr.state == state:
            return
        pr.state = state
        for observer in self.on_publish:
            observer(room, state)

    def _publish_trailing(self, pr: PresenterRoom) -> None:
        self._trailing.pop(pr.room, None)
        self._publish(pr, self._pending.pop(pr.room, None))

    def _publish(self, pr: PresenterRoom, change: PresenterChange | None) -> None:
        if change is None:
            return
        self._last_sent[pr.room] = asyncio.get_running_loop().time()
        self.hub.change_presenter(pr.room, change, pr.state)
        for observer in self.on_publish:
            observer(pr.room, pr.state)
