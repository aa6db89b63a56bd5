"""Operator commands against a real Mosquitto: published with QoS 1 to the bound topic (payload checked
by a subscriber), validated against the bindings file's `commands`, refused for every role but operator,
audited, announced to the session, and reported as failed when no broker is there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.live_server import BINDINGS, Served, eventually, get_json, live_server, mint_token, person, session_id
from tests.mosquitto import free_port, mosquitto_url  # noqa: F401 - the fixture
from viewer_server.audit import REFUSED
from viewer_server.client import RequestRefused

pytestmark = pytest.mark.deployable

COMMANDS = """\
commands:
  - {element: P-1, command: start, topic: plant/P-1/cmd, payload: '{"cmd": "start"}'}
  - {element: P-1, command: speed, topic: plant/P-1/cmd, range: [0, 100], unit: "%"}
"""
TIMEOUT = 10.0


async def audit(srv: Served, count: int, action: str = "command.send") -> list[dict]:
    """The session's `count` audit rows of `action`, newest first, once written (the trail is written in
    batches, by the process that decided each)."""

    async def rows() -> list[dict]:
        trail = await get_json(srv, f"/api/sessions/{session_id(srv)}/audit", mint_token(srv, "root", "admin"))
        return [e for e in trail if e["action"] == action]

    return await eventually(rows, lambda rows: len(rows) >= count)


async def test_an_operator_command_reaches_the_broker_and_is_audited(tmp_path: Path, mosquitto_url: str) -> None:  # noqa: F811
    host, port = mosquitto_url.removeprefix("mqtt://").split(":")
    async with (
        aiomqtt.Client(host, int(port)) as plant,
        live_server(tmp_path, mqtt_url=mosquitto_url, bindings=BINDINGS + COMMANDS) as srv,
        person(srv, "olga", "operator") as olga,
        person(srv, "bob", "viewer") as bob,
    ):
        await plant.subscribe("plant/P-1/cmd", qos=1)
        ack = await olga.command("P-1", "start")
        assert ack.status == "sent" and "plant/P-1/cmd" in ack.detail and ack.element == "P-1"
        ack = await olga.command("P-1", "speed", 60)
        assert ack.status == "sent"
        received = []
        async with asyncio.timeout(TIMEOUT):
            async for message in plant.messages:
                received.append((message.topic.value, message.qos, message.payload))
                if len(received) == 2:
                    break
        assert received[0] == ("plant/P-1/cmd", 1, b'{"cmd": "start"}')
        speed = orjson.loads(received[1][2])  # type: ignore[arg-type]
        assert speed["command"] == "speed" and speed["value"] == 60 and speed["user"] == "olga"

        # The session sees what was sent, and by whom.
        await bob.wait_for(lambda c: sum(e.kind == "command_sent" for e in c.events) == 2, TIMEOUT)
        sent = [e for e in bob.events if e.kind == "command_sent"]
        assert [(e.command, e.value, e.user, e.element) for e in sent] == [("start", None, "olga", "P-1"),
                                                                          ("speed", 60, "olga", "P-1")]  # fmt: skip

        # Validation against the bindings' commands: answered `failed`, nothing published.
        for args, detail in [
            (("P-1", "speed", 150.0), "within [0, 100] %"),
            (("P-1", "speed"), "within [0, 100] %"),
            (("P-1", "start", 1.0), "takes no value"),
            (("P-1", "explode"), "allowed: start, speed"),
            (("T-1", "open"), "takes no commands"),
        ]:
            ack = await olga.command(*args)  # type: ignore[arg-type]
            assert ack.status == "failed" and detail in ack.detail, (args, ack)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await anext(aiter(plant.messages))

        # Every other role is refused — admin included.
        for role in ("viewer", "annotator", "presenter", "admin"):
            async with person(srv, f"{role}-user", role) as other:
                with pytest.raises(RequestRefused) as info:
                    await other.command("P-1", "start")
                assert info.value.error.code == "forbidden" and "operators only" in info.value.error.message

        entries = await audit(srv, 7)
        assert len(entries) == 7
        by_status = [e["detail"].split(":")[0].split(" ")[0] for e in reversed(entries)]  # oldest first
        assert by_status == ["sent"] * 2 + ["failed"] * 5
        assert entries[-1]["actor"] == "olga" and entries[-1]["role"] == "operator"
        assert entries[-1]["target"] == "P-1/start" and "topic=plant/P-1/cmd" in entries[-1]["detail"]
        # A refusal is counted in its connection's summary row (viewer_server.audit), not written per command.
        refused = await audit(srv, 4, REFUSED)
        assert sorted(e["role"] for e in refused) == ["admin", "annotator", "presenter", "viewer"]
        assert {e["detail"] for e in refused} == {"command 1"}


@pytest.mark.in_process_only("restarts the server on its data dir with another broker URL")
async def test_without_a_broker_a_command_fails_with_a_clear_detail(tmp_path: Path) -> None:
    async with (
        live_server(tmp_path, bindings=BINDINGS + COMMANDS) as srv,
        person(srv, "olga", "operator") as olga,
    ):
        ack = await olga.command("P-1", "start")
        assert ack.status == "failed" and "no MQTT broker configured" in ack.detail
        assert not any(e.kind == "command_sent" for e in olga.events)
    unreachable = f"mqtt://127.0.0.1:{free_port()}"
    async with (
        live_server(tmp_path, mqtt_url=unreachable, bindings=BINDINGS + COMMANDS) as srv,
        person(srv, "olga", "operator") as olga,
    ):
        ack = await olga.command("P-1", "speed", 10)
        assert ack.status == "failed" and unreachable in ack.detail and "refused" in ack.detail
        assert len(await audit(srv, 2)) == 2  # both attempts: the audit trail survived the restart
