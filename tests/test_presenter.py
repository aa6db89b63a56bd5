"""Presenter mode over real WebSockets: only presenters present, followers get the presenter's newest
view (throttled, the last one always arrives), a late joiner lands on it, the raise-hand queue is shared
and ordered, the presenter leaving ends presenter mode, and quick markup becomes a "Markup" topic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.live_server import live_server, person
from viewer_server import protocol as p
from viewer_server.client import TwinClient
from viewer_server.presenter import PRESENTER_VIEW_HZ
from viewer_server.topics import MAX_VIEWPOINT_IDS, Camera

pytestmark = pytest.mark.deployable

TIMEOUT = 10.0


def view(x: float) -> p.Viewpoint:
    return p.Viewpoint(f"v{x}", Camera(p.Vec3(x, 1.6, 4.0), p.Vec3(0, 0, -1), p.Vec3(0, 1, 0)))


async def wait_error(tc: TwinClient, code: str, count: int = 1) -> None:
    await tc.wait_for(lambda c: sum(e.code == code for e in c.errors) >= count, TIMEOUT)


def hands(tc: TwinClient) -> list[str]:
    return [h.user for h in tc.presenter.hands] if tc.presenter else []


@pytest.mark.in_process_only("counts the presenter states the hub publishes by wrapping its method")
async def test_followers_get_the_presenters_newest_view_and_a_late_joiner_lands_on_it(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "ann", "presenter") as ann,
        person(srv, "bob", "viewer") as bob,
    ):
        await bob.send(p.PresenterTake())
        await bob.send(p.PresenterView(view(9)))
        await wait_error(bob, p.ERR_FORBIDDEN, 2)
        await ann.send(p.PresenterView(view(0)))  # not presenting yet
        await wait_error(ann, p.ERR_FORBIDDEN)

        published: list[p.PresenterState] = []
        hub = srv.live.hub
        original = hub.set_presenter
        hub.set_presenter = lambda room, state: (published.append(state), original(room, state))[1]  # type: ignore[method-assign]

        await ann.send(p.PresenterTake())
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.presenter == "ann", TIMEOUT)
        assert bob.presenter is not None and bob.presenter.session and bob.presenter.viewpoint is None

        # A camera move: 50 poses as fast as the socket takes them; followers end on the last one.
        started = asyncio.get_running_loop().time()
        for i in range(1, 51):
            await ann.send(p.PresenterView(view(i)))
        last = view(50)
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.viewpoint == last, TIMEOUT)
        elapsed = asyncio.get_running_loop().time() - started
        views = [s for s in published if s.viewpoint is not None]
        assert views[-1].viewpoint == last
        assert len(views) <= 2 + elapsed * PRESENTER_VIEW_HZ, (len(views), elapsed)

        async with person(srv, "carol", "viewer") as carol:  # the late joiner
            assert carol.presenter is not None and carol.presenter.presenter == "ann"
            assert carol.presenter.viewpoint == last

            await carol.send(p.PresenterRelease())  # not hers to end
            await wait_error(carol, p.ERR_FORBIDDEN)
        await ann.close()  # the presenter leaves: presenter mode ends for everyone
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.presenter == "", TIMEOUT)
        assert bob.presenter is not None and bob.presenter.viewpoint is None


async def test_a_presenter_view_names_scene_elements_and_is_bounded(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "ann", "presenter") as ann,
        person(srv, "bob", "viewer") as bob,
    ):
        await ann.send(p.PresenterTake())
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.presenter == "ann", TIMEOUT)
        unknown = p.Viewpoint("v1", view(1).camera, selected=["NOPE"])
        huge = p.Viewpoint("v2", view(1).camera, hidden=["P-1"] * (MAX_VIEWPOINT_IDS + 1))
        for bad, code in ((unknown, p.ERR_NOT_FOUND), (huge, p.ERR_TOO_LONG)):
            await ann.send(p.PresenterView(bad))
            await wait_error(ann, code)
        good = p.Viewpoint("v3", view(1).camera, hidden=["P-1"] * MAX_VIEWPOINT_IDS)
        await ann.send(p.PresenterView(good))
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.viewpoint == good, TIMEOUT)
        assert [e.code for e in ann.errors] == [p.ERR_NOT_FOUND, p.ERR_TOO_LONG]


async def test_the_raise_hand_queue_is_shared_ordered_and_cleared_by_the_presenter(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "ann", "presenter") as ann,
        person(srv, "bob", "viewer") as bob,
        person(srv, "eve", "annotator") as eve,
    ):
        await ann.send(p.PresenterTake())
        await bob.send(p.HandRaise())
        await ann.wait_for(lambda c: hands(c) == ["bob"], TIMEOUT)
        await eve.send(p.HandRaise())
        await bob.send(p.HandRaise())  # already up: stays first, once
        await bob.wait_for(lambda c: hands(c) == ["bob", "eve"], TIMEOUT)

        async with person(srv, "carol", "viewer") as carol:  # late joiner sees the queue
            assert hands(carol) == ["bob", "eve"]
        bob_session = ann.presenter.hands[0].session  # type: ignore[union-attr]
        await eve.send(p.HandLower(session=bob_session))  # not hers to lower
        await wait_error(eve, p.ERR_FORBIDDEN)
        await eve.send(p.HandLower())  # her own
        await ann.wait_for(lambda c: hands(c) == ["bob"], TIMEOUT)
        await eve.send(p.HandRaise())
        await ann.wait_for(lambda c: hands(c) == ["bob", "eve"], TIMEOUT)
        await ann.send(p.HandLower(session=bob_session))
        await eve.wait_for(lambda c: hands(c) == ["eve"], TIMEOUT)
        await bob.send(p.HandRaise())
        await ann.wait_for(lambda c: hands(c) == ["eve", "bob"], TIMEOUT)
        await ann.send(p.HandLower(all=True))
        await bob.wait_for(lambda c: hands(c) == [], TIMEOUT)
        await eve.send(p.HandRaise())
        await ann.wait_for(lambda c: hands(c) == ["eve"], TIMEOUT)
        await eve.close()  # leaving lowers the hand
        await bob.wait_for(lambda c: hands(c) == [], TIMEOUT)


async def test_quick_markup_is_a_markup_topic_for_authors_only(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "eve", "annotator") as eve,
        person(srv, "bob", "viewer") as bob,
    ):
        await bob.send(p.Markup("P-1", (1.0, 0.5, 2.0), "leak here?"))
        await wait_error(bob, p.ERR_FORBIDDEN)
        await eve.send(p.Markup("P-1", (1.0, 0.5, 2.0), "leak here?"))
        await bob.wait_for(lambda c: any(t.topic_type == "Markup" for t in c.topics.values()), TIMEOUT)
        [topic] = bob.topics.values()
        assert topic.title == "leak here?" and topic.author == "eve" and topic.pin is not None
        assert topic.pin.element == "P-1" and topic.pin.point == p.Vec3(1.0, 0.5, 2.0)
        saved = await eve._request(p.Markup("P-1", (0.0, 0.0, 0.0), "and here", ref="m2"), "m2", TIMEOUT)
        assert isinstance(saved, p.Saved) and (saved.ref, saved.kind) == ("m2", "topic_created")
        await eve.send(p.Markup("NOPE", (0.0, 0.0, 0.0), "nowhere"))
        await wait_error(eve, p.ERR_NOT_FOUND)
        assert eve.errors[-1].ref == "markup"  # a refusal names the message that was sent


async def test_a_follower_that_drops_resumes_onto_the_newest_view(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        person(srv, "ann", "presenter") as ann,
        person(srv, "bob", "viewer") as bob,
    ):
        await ann.send(p.PresenterTake())
        await ann.send(p.PresenterView(view(1)))
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.viewpoint == view(1), TIMEOUT)
        await bob.drop()  # a headset on bad Wi-Fi
        await ann.send(p.PresenterView(view(2)))
        await bob.wait_for(lambda c: c.connects == 2, TIMEOUT)
        await bob.wait_for(lambda c: c.presenter is not None and c.presenter.viewpoint == view(2), TIMEOUT)
        assert bob.resyncs == [] and bob.snapshots == 1  # resumed, not re-snapshotted
