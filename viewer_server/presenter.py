"""Presenter mode ("spotlight") of each collaboration session: who presents, their current view, and the
raise-hand queue.

The state of a session is one `PresenterState`, kept as coalesced hub state (not as events): a late
joiner finds the presenter's current view in its snapshot, a slow client gets only the newest view.
The presenter's camera updates are throttled to PRESENTER_VIEW_HZ with a trailing update, so the last
pose of a camera move always arrives. Following, breaking away and "return to presenter" are client
side: the client simply applies (or not) the newest `presenter.viewpoint`.
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


class PresenterRoom:
    """The presenter state of one session. Pure: every method returns the new state or raises Refused."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.state = p.PresenterState()

    def take(self, member: Member, now: float) -> p.PresenterState:
        require(member, Action.PRESENTER_TAKE)
        return self._set(presenter=member.user, session=member.connection, viewpoint=None, ts=now)

    def release(self, member: Member, now: float) -> p.PresenterState:
        if not self.state.presenter:
            raise Refused("no_presenter", "nobody is presenting")
        if member.connection != self.state.session and not allowed(member.role, Action.PRESENTER_TAKE):
            raise Refused(p.ERR_FORBIDDEN, "only the presenter (or another presenter / admin) can end presenter mode")
        return self._set(presenter="", session="", viewpoint=None, ts=now)

    def view(self, member: Member, viewpoint: Viewpoint, now: float) -> p.PresenterState:
        if member.connection != self.state.session:
            raise Refused(p.ERR_FORBIDDEN, "only the presenter's views are shared; send presenter_take first")
        return self._set(viewpoint=viewpoint, ts=now)

    def raise_hand(self, member: Member, now: float) -> p.PresenterState | None:
        """None when the user's hand is already up (from any of their connections: nothing changes)."""
        require(member, Action.HAND_RAISE)
        hands = self.state.hands
        if any(h.user == member.user for h in hands):
            return None
        if len(hands) >= MAX_HANDS:
            raise Refused("too_many_hands", f"{MAX_HANDS} hands are already up")
        if member.guest and sum(h.user.startswith(GUEST_PREFIX) for h in hands) >= MAX_GUEST_HANDS:
            raise Refused("too_many_hands", f"{MAX_GUEST_HANDS} visitors' hands are already up; join with your link")
        return self._set(hands=[*hands, p.Hand(member.user, member.connection, now, member.name)])

    def lower_hand(self, member: Member, session: str | None, everyone: bool) -> p.PresenterState | None:
        """Lower one's own hand; the presenter (or a presenter / admin) lowers anyone's, or all."""
        if (everyone or session not in (None, member.connection)) and not self._leads(member):
            raise Refused(p.ERR_FORBIDDEN, "only the presenter can lower other hands")
        if everyone:
            hands = []
        elif session is None or session == member.connection:
            hands = [h for h in self.state.hands if h.user != member.user]
        else:
            hands = [h for h in self.state.hands if h.session != session]
        return None if hands == self.state.hands else self._set(hands=hands)

    def leave(self, connection: str, now: float) -> p.PresenterState | None:
        """A connection left: its hand goes down, and presenter mode ends if it was presenting."""
        hands = [h for h in self.state.hands if h.session != connection]
        if connection == self.state.session:
            return self._set(presenter="", session="", viewpoint=None, ts=now, hands=hands)
        return None if hands == self.state.hands else self._set(hands=hands)

    def _leads(self, member: Member) -> bool:
        return member.connection == self.state.session or allowed(member.role, Action.PRESENTER_TAKE)

    def _set(self, **changes: object) -> p.PresenterState:
        self.state = msgspec.structs.replace(self.state, **changes)
        return self.state


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
        pr.view(member, viewpoint, self.clock())
        if member.room in self._trailing:
            return  # the pending trailing publish will carry this newest view
        loop = asyncio.get_running_loop()
        wait = self._last_sent.get(member.room, -1e9) + 1 / PRESENTER_VIEW_HZ - loop.time()
        if wait <= 0:
            self._publish(pr, pr.state)
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
        self._publish(pr, pr.state)

    def _publish(self, pr: PresenterRoom, state: p.PresenterState | None) -> None:
        if state is None:
            return
        self._last_sent[pr.room] = asyncio.get_running_loop().time()
        self.hub.set_presenter(pr.room, state)
        for observer in self.on_publish:
            observer(pr.room, state)
