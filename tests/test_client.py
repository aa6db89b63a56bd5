"""The Python client: iteration over updates, both encodings, and automatic resume after drops."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live_server import live_server, numbered
from viewer_server import protocol as p
from viewer_server.client import TwinClient

pytestmark = pytest.mark.deployable


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_iterating_yields_the_snapshot_then_deltas_in_order(tmp_path: Path, encoding: p.Encoding) -> None:
    async with (
        live_server(tmp_path) as srv,
        TwinClient(srv.ws_url, encoding=encoding) as tc,
        TwinClient(srv.ws_url, role="publisher", encoding=encoding) as pub,
    ):
        for value in (1.0, 2.0, 3.0):  # one delta each: the next is published once this one arrived
            await pub.publish([p.Reading(value, key="LT-1.level")])
            await tc.wait_for(lambda c, v=value: c.props.get("LT-1/level") is not None and c.props["LT-1/level"].v == v)
        target = await numbered(srv)
        seen: list[p.Snapshot | p.Delta] = []
        async for msg in tc:  # the mirror is already updated; iteration tells what arrived
            seen.append(msg)
            if isinstance(msg, p.Delta) and msg.last >= target:
                break
        assert isinstance(seen[0], p.Snapshot)
        lasts = [m.last for m in seen[1:] if isinstance(m, p.Delta)]
        assert lasts == sorted(lasts) and lasts[-1] == tc.seq == target
        assert [m.props["LT-1/level"].v for m in seen[1:] if isinstance(m, p.Delta)][-1] == 3.0


def level_of(c: TwinClient) -> float | None:
    return c.props["LT-1/level"].v if "LT-1/level" in c.props else None  # type: ignore[return-value]


def running_of(c: TwinClient) -> bool | None:
    return c.props["P-1/running"].v if "P-1/running" in c.props else None  # type: ignore[return-value]


async def test_repeated_drops_resume_without_loss(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path) as srv,
        TwinClient(srv.ws_url) as tc,
        TwinClient(srv.ws_url) as reference,  # connected throughout
        TwinClient(srv.ws_url, role="publisher") as pub,
    ):
        for round_ in range(5):
            await tc.drop()
            level, running = float(round_ * 10), round_ % 2 == 0
            await pub.publish([p.Reading(level, key="LT-1.level"), p.Reading(running, key="P-1.running")])
            await reference.wait_for(lambda c, v=(level, running): (level_of(c), running_of(c)) == v, timeout=10)
            await tc.wait_for(lambda c, r=round_: c.connects == r + 2 and c.seq == reference.seq, timeout=10)
        assert tc.props == reference.props
        assert tc.snapshots == 1 and tc.resyncs == [] and tc.duplicate_events == 0
        pong = await tc.ping()
        assert pong.t is not None
