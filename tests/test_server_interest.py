"""A client that sees part of the scene (hello.interest, `interest`): its snapshot and deltas carry the props and
visuals of that part only; a client without one sees everything, as before (PROTOCOL.md §15)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.live_server import ELEMENTS, live_server
from tests.test_server_ws import ingest, pressure
from viewer_server import protocol as p
from viewer_server.client import TwinClient

pytestmark = pytest.mark.deployable

# The pump and its transmitter stand at the origin, the pipe and the wet well 10 m away, the level transmitter 20 m.
PLACES = {"P-1": 0, "PT-1": 0, "PIPE-1": 10, "T-1": 10, "LT-1": 20}
SCENE = [{**el, "bbox": [[PLACES[el["id"]], 0, 0], [PLACES[el["id"]] + 1, 1, 1]]} for el in ELEMENTS]
AROUND_THE_PIPE = p.Interest(box=((9, -1, -1), (12, 2, 2)))
PT, LEVEL = "PT-1/pressure", "LT-1/level"


def elements_of(keys: object, sep: str = "/") -> set[str]:
    return {k.rpartition(sep)[0] for k in keys}  # type: ignore[attr-defined]


async def test_a_client_sees_the_props_and_visuals_of_its_area_only(tmp_path: Path) -> None:
    async with live_server(tmp_path, elements=SCENE) as srv, aiohttp.ClientSession() as http:
        await ingest(http, srv.url, pressure(1.0), p.Reading(40.0, key="LT-1.level"))
        async with TwinClient(srv.ws_url) as everything, TwinClient(srv.ws_url, interest=AROUND_THE_PIPE) as area:
            assert elements_of(everything.props) == {"PT-1", "LT-1"}
            assert area.props == {} and set(area.visuals) == {"PIPE-1"}  # the ramp colours the pipe
            await ingest(http, srv.url, pressure(4.0), p.Reading(60.0, key="LT-1.level"))
            await everything.wait_for(lambda c: (c.props[PT].v, c.props[LEVEL].v) == (4.0, 60.0))
            await area.wait_for(lambda c: c.seq == everything.seq)  # deltas stay contiguous
            assert area.seq_gaps == 0
            assert area.props == {} and set(area.visuals) == {"PIPE-1"}
            assert area.visuals["PIPE-1"] == everything.visuals["PIPE-1"]
            # Listing elements adds them, with or without a box; alarms are never filtered.
            snap = await area.watch(p.Interest(box=AROUND_THE_PIPE.box, elements=["LT-1"]))
            assert snap.interest is not None and snap.interest.elements == ["LT-1"]
            assert elements_of(area.props) == {"LT-1"} and set(area.visuals) == {"PIPE-1"}
            await ingest(http, srv.url, pressure(5.9))  # raises the pump's alarm: the pump is not in the area
            await everything.wait_for(lambda c: c.props[PT].v == 5.9)
            await area.wait_for(lambda c: c.seq == everything.seq and c.alarms)
            assert [a.element for a in area.alarms.values()] == ["P-1"] and "P-1" not in area.visuals
            # null: the whole scene again.
            snap = await area.watch(None)
            assert snap.interest is None and area.props == everything.props and area.visuals == everything.visuals


async def test_a_resume_keeps_the_interest(tmp_path: Path) -> None:
    interest = p.Interest(elements=["PT-1"])
    async with (
        live_server(tmp_path, elements=SCENE) as srv,
        aiohttp.ClientSession() as http,
        TwinClient(srv.ws_url, interest=interest) as tc,
        TwinClient(srv.ws_url) as everything,  # connected throughout
    ):
        await tc.drop()
        await ingest(http, srv.url, pressure(2.0), p.Reading(70.0, key="LT-1.level"))
        await everything.wait_for(lambda c: (c.props[PT].v, c.props[LEVEL].v) == (2.0, 70.0))
        await tc.wait_for(lambda c: c.connects == 2 and c.seq == everything.seq, timeout=10)
        assert tc.snapshots == 1 and tc.resyncs == []  # resumed
        assert elements_of(tc.props) == {"PT-1"}


async def test_interests_are_bounded_and_checked(tmp_path: Path) -> None:
    too_many = [f"E{i}" for i in range(p.MAX_INTEREST_ELEMENTS + 1)]
    async with live_server(tmp_path, elements=SCENE) as srv, TwinClient(srv.ws_url) as tc:
        assert "interest" in tc.welcome.capabilities  # type: ignore[union-attr]
        assert tc.welcome.limits["max_interest_elements"] == p.MAX_INTEREST_ELEMENTS  # type: ignore[union-attr]
        for raw, needle in [
            ('{"type": "interest", "interest": {"box": [[0, 0, 5], [1, 1, 1]]}}', "min must be <="),
            ('{"type": "interest", "interest": {"box": [[0, 0, 0], [1, 1, 1e999]]}}', "box[1][2]"),
            ('{"type": "interest", "interest": {"box": [[0, 0], [1, 1]]}}', "box[0]"),
            ('{"type": "interest", "interest": {"elements": [""]}}', "elements[0]"),
            (p.encode(p.ChangeInterest(p.Interest(elements=too_many)), "json").decode(), "elements"),
        ]:
            waiter = asyncio.ensure_future(tc.next_error())
            await asyncio.sleep(0)
            await tc.send_raw(raw)
            error = await waiter
            assert error.code == p.ERR_BAD_MESSAGE and needle in error.message, error.message
        assert tc.snapshots == 1  # nothing changed
