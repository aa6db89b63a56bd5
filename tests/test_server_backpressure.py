"""A client that stops reading must not stall the others, and its server-side memory stays bounded
by the number of keys, however fast updates arrive; when it reads again it converges."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from websockets.asyncio.client import connect

from tests.live_server import live_server
from viewer_server import protocol as p
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
            connect(srv.ws_url, sock=sock, subprotocols=[p.SUBPROTOCOL_JSON], max_queue=1) as slow,  # type: ignore[list-item]
            TwinClient(srv.ws_url) as fast,
            TwinClient(srv.ws_url, role="publisher", encoding="msgpack") as pub,
        ):
            await slow.send(p.encode(p.Hello("slow", "1"), "json").decode())
            await slow.recv()  # welcome
            await slow.recv()  # snapshot; then it stops reading
            [session] = [s for s in srv.live.sessions if s.client == "slow"]
            # A slow link: shrink the server's send buffer too, so the kernel cannot hide the stall.
            server_sock = session.ws._req.transport.get_extra_info("socket")  # type: ignore[union-attr]
            server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            lags = []
            for r in range(ROUNDS):
                started = time.monotonic()
                await pub.publish([p.Reading(float(r), key=f"E{i}.v") for i in range(KEYS)])
                target = srv.live.hub.seq
                await fast.wait_for(lambda c, t=target: c.seq >= t, timeout=5)
                lags.append(time.monotonic() - started)
                assert session.outbox.pending_keys <= KEYS  # memory bounded by keys, not by rate
            final = srv.live.hub.seq
            assert fast.props["E0/v"].v == ROUNDS - 1
            assert max(lags) < 2.0, f"fast client lagged {max(lags):.2f} s behind a slow one"
            sent_while_stalled = session.frames_sent
            assert sent_while_stalled < ROUNDS  # the slow one really was stalled ...
            assert session.outbox.high_water_keys <= KEYS  # ... and coalesced instead of queueing

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
