"""A client that stops reading must not stall the others, and its server-side memory stays bounded
by the number of keys, however fast updates arrive; when it reads again it converges."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.live_server import live_server
from viewer_server import outbox
from viewer_server import protocol as p
from viewer_server import session as session_mod
from viewer_server.client import TwinClient

KEYS = 300  # bound properties
ROUNDS = 60  # every round rewrites every key: 18 000 changes, ~1 MB of deltas per client


def many_bindings(n: int) -> tuple[list[dict], str]:
    elements = [{"id": f"E{i}", "name": f"Element {i}", "class": "IfcSensor", "parent": None} for i in range(n)]
    lines = [f"  - {{element: E{i}, prop: v, key: E{i}.v}}" for i in range(n)]
    text = "version: 1\ndefault_layer: ops\nbindings:\n" + "\n".join(lines) + "\nlayers:\n  ops: {rules: []}\n"
    return elements, text


async def test_slow_client_does_not_stall_a_fast_one_and_stays_bounded(tmp_path: Path) -> None:
    elements, text = many_bindings(KEYS)
    async with live_server(tmp_path, bindings=text, elements=elements) as srv:
        # The slow client: a tiny receive buffer, and it stops reading after its snapshot.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        async with (
            connect(srv.ws_url, sock=sock, subprotocols=[p.SUBPROTOCOL_JSON], max_queue=1, close_timeout=1) as slow,  # type: ignore[list-item]
            TwinClient(srv.ws_url) as fast,
            TwinClient(srv.ws_url, role="publisher", encoding="msgpack") as pub,
        ):
            await slow.send(p.encode(p.Hello("slow", "1"), "json").decode())
            await slow.recv()  # welcome
            await slow.recv()  # snapshot; then it stops reading
            [session] = [s for s in srv.live.sessions if s.client == "slow"]
            buffered = 0
            lags = []
            for r in range(ROUNDS):
                started = time.monotonic()
                await pub.publish([p.Reading(float(r), key=f"E{i}.v") for i in range(KEYS)])
                target = srv.live.hub.seq
                await fast.wait_for(lambda c, t=target: c.seq >= t, timeout=5)
                lags.append(time.monotonic() - started)
                assert session.outbox.pending_keys <= KEYS  # memory bounded by keys, not by rate
                buffered = max(buffered, session.send_queue_bytes())
            final = srv.live.hub.seq
            assert fast.props["E0/v"].v == ROUNDS - 1
            assert max(lags) < 2.0, f"fast client lagged {max(lags):.2f} s behind a slow one"
            sent_while_stalled = session.frames_sent
            assert sent_while_stalled < ROUNDS  # the slow one really was stalled ...
            assert session.outbox.high_water_keys <= KEYS  # ... and coalesced instead of queueing
            # Below the outbox: the transport's and the kernel's unsent bytes, what the client's window
            # admits and a frame (~16 kB here).
            assert buffered < 2 * session_mod.SEND_QUEUE_BYTES + 32 * 1024 + 32 * 1024
            print(
                f"slow client: {sent_while_stalled} frames for {ROUNDS} rounds, outbox <= "
                f"{session.outbox.high_water_keys} keys, queued below it <= {buffered} B; "
                f"fast lag max {max(lags) * 1000:.0f} ms"
            )

            # Reading again, the slow client converges to the final state without a backlog.
            props: dict[str, p.PropState] = {}
            seq = 0
            while seq < final:
                msg = p.decode_server(await asyncio.wait_for(slow.recv(), 10), "json")
                assert isinstance(msg, p.Delta)
                props.update(msg.props)
                seq = msg.last
            assert all(props[f"E{i}/v"].v == ROUNDS - 1 for i in range(KEYS))
            assert session.frames_sent - sent_while_stalled < ROUNDS


async def test_an_event_backlog_beyond_the_bound_becomes_a_resync_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "OUTBOX_MAX_EVENTS", 10)
    elements, text = many_bindings(50)  # padding: ~3 kB per delta fills the buffers sooner
    elements += [{"id": "PT-1", "name": "PT-1", "class": "IfcSensor"}, {"id": "P-1", "name": "P-1", "class": "IfcPump"}]
    text = text.replace("bindings:\n", "bindings:\n  - {element: PT-1, prop: pressure, key: PT-1.pressure}\n")
    text = text.replace(
        "ops: {rules: []}",
        "ops: {rules: [{kind: thresholds, element: PT-1, prop: pressure, target: P-1, alarm: {high: 5}}]}",
    )
    async with live_server(tmp_path, bindings=text, elements=elements) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port))
        async with (
            connect(srv.ws_url, sock=sock, subprotocols=[p.SUBPROTOCOL_JSON], max_queue=1, close_timeout=1) as slow,  # type: ignore[list-item]
            TwinClient(srv.ws_url, role="publisher") as pub,
        ):
            await slow.send(p.encode(p.Hello("slow", "1"), "json").decode())
            await slow.recv()  # welcome
            await slow.recv()  # snapshot
            [session] = [s for s in srv.live.sessions if s.client == "slow"]
            for i in range(80):  # an alarm storm, one flush window each: raised, cleared, raised, ...
                pad = [p.Reading(float(i), key=f"E{k}.v") for k in range(50)]
                await pub.publish([p.Reading(6.0 if i % 2 == 0 else 1.0, key="PT-1.pressure"), *pad])
                await asyncio.sleep(0.02)
            final = srv.live.hub.props["PT-1/pressure"]
            assert session.outbox.resync_pending and session.outbox.pending_events == 0
            # Reading again: a resync snapshot with reason "backlog" instead of the whole storm.
            reasons: list[str | None] = []
            props: dict[str, p.PropState] = {}
            while not reasons or props.get("E0/v") != p.PropState(79.0, props["E0/v"].ts):
                msg = p.decode_server(await asyncio.wait_for(slow.recv(), 10), "json")
                if isinstance(msg, p.Snapshot):
                    reasons.append(msg.reason)
                    props = dict(msg.props)
                elif isinstance(msg, p.Delta):
                    props.update(msg.props)
            assert reasons == ["backlog"]
            assert props["PT-1/pressure"] == final


STALL_ROUNDS = 100  # rounds published, one flush window each, while the slow client reads nothing


async def test_a_reader_that_stalls_gets_fresh_state_not_a_kernel_backlog(tmp_path: Path) -> None:
    """Without a bound on the kernel's send buffer (autotuned to ~4 MB on Linux) the stalled client's
    deltas pile up there, the outbox never coalesces, and after resuming the client reads seconds of
    stale deltas before it sees the present. With the bound it reads at most a few windows of them."""
    elements, text = many_bindings(KEYS)
    async with live_server(tmp_path, bindings=text, elements=elements) as srv:
        sock = socket.socket()  # the client's own buffer is small: what piles up is the server's
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", srv.port))
        async with (
            connect(srv.ws_url, sock=sock, subprotocols=[p.SUBPROTOCOL_JSON], max_queue=1, close_timeout=1) as slow,  # type: ignore[list-item]
            TwinClient(srv.ws_url, role="publisher", encoding="msgpack") as pub,
        ):
            await slow.send(p.encode(p.Hello("slow", "1"), "json").decode())
            await slow.recv()  # welcome
            await slow.recv()  # snapshot
            [session] = [s for s in srv.live.sessions if s.client == "slow"]

            async def round_of(value: int) -> None:
                await pub.publish([p.Reading(float(value), key=f"E{i}.v") for i in range(KEYS)])
                await asyncio.sleep(0.02)  # past the flush window: one delta per round

            # Keeping up first, then it stops reading.
            for r in range(10):
                await round_of(r)
                assert await next_value(slow) == r
            queued = 0
            for r in range(10, 10 + STALL_ROUNDS):
                await round_of(r)
                queued = max(queued, session.send_queue_bytes())
            newest = 10 + STALL_ROUNDS - 1
            delta_bytes = len(p.encode(p.Delta(0, 0, dict(srv.live.hub.props), {}, {}, []), "json"))
            # Below the outbox: the transport's and the kernel's unsent bytes, the in-flight bytes the
            # client's small window admits, and the frame being written.
            bound = 2 * session_mod.SEND_QUEUE_BYTES + 32 * 1024 + delta_bytes
            assert queued <= bound, queued
            assert session.outbox.pending_keys == KEYS  # the rest was coalesced, one entry per key
            async with aiohttp.ClientSession() as http, http.get(f"{srv.url}/api/health") as answer:
                health = await answer.json()
            assert 0 < health["send_queue_bytes_max"] <= bound  # the gauge an operator sees
            assert health["outbox_pending_keys_max"] == KEYS

            # Reading again: a few stale windows (what the buffers held), then the present at once.
            stale_rounds: list[int] = []
            while (value := await next_value(slow)) != newest:
                stale_rounds.append(value)
            assert len(stale_rounds) <= 12, f"read {len(stale_rounds)} stale deltas before the newest state"
            assert session.outbox.high_water_keys <= KEYS
            print(f"stalled reader: <= {queued} B queued below its outbox, {len(stale_rounds)} stale deltas")


async def next_value(ws: ClientConnection) -> int:
    """E0's value in the next delta `ws` receives."""
    msg = p.decode_server(await asyncio.wait_for(ws.recv(), 10), "json")
    assert isinstance(msg, p.Delta)
    return int(msg.props["E0/v"].v)
