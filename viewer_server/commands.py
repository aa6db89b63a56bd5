"""Operator commands: from a viewer to the plant over MQTT, checked, audited and announced.

Every `command` goes the same way:
  role (only `operator`; anyone else gets `forbidden`, counted in the connection's summary row of refused
  requests rather than a row each, see `viewer_server.audit`) → the bindings file's `commands` (the element
  and command must be listed; a value within the listed range, or none) → MQTT publish with QoS 1,
  answered `sent` only once the broker acknowledged it → an audit row → a `command_sent` event to the
  session. Whatever fails after the role check answers `command_ack {status: failed, detail}`; the
  attempt is audited all the same.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

import aiomqtt
import msgspec

from scene.bindings import Bindings, Command
from viewer_server import protocol as p
from viewer_server.hub import SceneHub
from viewer_server.ingest_mqtt import client_for
from viewer_server.permissions import Action, allowed
from viewer_server.procedures import Refused
from viewer_server.rooms import Member
from viewer_server.store import AuditEntry, Store, put_audit
from viewer_server.store_db import StoreError

# Connect + publish + PUBACK: a local broker answers in milliseconds; a command the operator waits
# on longer than this is better reported as failed than left hanging.
COMMAND_TIMEOUT_S: Final = 5.0
COMMAND_QOS: Final = 1  # at least once: a lost "stop" is worse than a repeated one
# Element ids and command names are at most this long in a bindings file; longer ones are refused
# before they are echoed into the ack and the audit trail.
MAX_NAME: Final = 256

Publish = Callable[[str, str, bytes], Awaitable[None]]  # (broker url, topic, payload)
_enc = msgspec.json.Encoder()


class CommandFailed(Exception):
    """The command cannot be sent; the message is the ack's detail."""


def find_command(bindings: Bindings | None, element: str, command: str) -> Command:
    """The bindings entry for element/command; CommandFailed naming what is allowed otherwise (not the element:
    the ack carries it, and viewers show it by its name)."""
    specs = [c for c in (bindings.commands if bindings else ()) if c.element == element]
    for spec in specs:
        if spec.command == command:
            return spec
    allowed_here = ", ".join(c.command for c in specs)
    raise CommandFailed(
        f"no command {command!r} here (allowed: {allowed_here})" if specs else "this element takes no commands"
    )


def payload_for(spec: Command, value: float | None, user: str, now: float) -> bytes:
    """Check the value against the command's range and render the MQTT payload."""
    if spec.range is None:
        if value is not None:
            raise CommandFailed(f"{spec.command} takes no value")
    elif value is None or not math.isfinite(value) or not spec.range[0] <= value <= spec.range[1]:
        lo, hi = spec.range
        raise CommandFailed(f"{spec.command} needs a value within [{lo:g}, {hi:g}] {spec.unit}".rstrip())
    if spec.payload is None:
        return _enc.encode({"command": spec.command, "value": value, "user": user, "ts": now})
    return spec.payload.replace("{value}", _enc.encode(value).decode()).encode()


async def mqtt_publish(url: str, topic: str, payload: bytes) -> None:
    """One QoS 1 publish on its own connection (commands are rare); returns once the broker acknowledged."""
    async with client_for(url) as client:
        await client.publish(topic, payload, qos=COMMAND_QOS)


class Commands:
    def __init__(
        self,
        bindings: Bindings | None,
        mqtt_url: str | None,
        hub: SceneHub,
        store: Store,
        publish: Publish = mqtt_publish,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bindings = bindings
        self.mqtt_url = mqtt_url
        self.hub = hub
        self.store = store
        self.publish = publish
        self.clock = clock

    async def send(self, member: Member, msg: p.Command) -> p.CommandAck:
        """Raises Refused (forbidden) for every role but operator, writing nothing; otherwise answers sent or
        failed, audited."""
        if not allowed(member.role, Action.COMMAND_SEND):  # before anything is written: see viewer_server.audit
            raise Refused(p.ERR_FORBIDDEN, f"role {member.role!r} may not {Action.COMMAND_SEND.value} (operators only)")
        now = self.clock()
        if len(msg.element) > MAX_NAME or len(msg.command) > MAX_NAME:
            msg = p.Command(msg.element[:MAX_NAME] + "…", msg.command[:MAX_NAME] + "…", msg.value, msg.ref)
        target = f"{msg.element}/{msg.command}"
        try:
            spec = find_command(self.bindings, msg.element, msg.command)
            payload = payload_for(spec, msg.value, member.user, now)
            if self.mqtt_url is None:
                raise CommandFailed("no MQTT broker configured: start the server with --mqtt URL")
            await asyncio.wait_for(self.publish(self.mqtt_url, spec.topic, payload), COMMAND_TIMEOUT_S)
        except CommandFailed as exc:
            return await self._failed(member, msg, target, now, str(exc))
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            detail = f"broker {self.mqtt_url}: {type(exc).__name__}: {exc}".rstrip(": ")
            return await self._failed(member, msg, target, now, detail)
        detail = f"published to {spec.topic} (QoS {COMMAND_QOS})"
        await self._audit(member, target, now, f"sent value={msg.value} topic={spec.topic}")
        await self.hub.number(
            lambda seq: p.Event(
                seq, "command_sent", target, msg.element, now, session=member.room, user=member.user,
                command=msg.command, value=msg.value, message=detail,
            )
        )  # fmt: skip
        return p.CommandAck("sent", detail, msg.element, msg.command, msg.ref)

    async def _failed(self, member: Member, msg: p.Command, target: str, now: float, detail: str) -> p.CommandAck:
        await self._audit(member, target, now, f"failed: {detail}")
        await self.hub.number(
            lambda seq: p.Event(
                seq, "command_failed", target, msg.element, now, session=member.room, user=member.user,
                command=msg.command, value=msg.value, message=detail,
            )
        )  # fmt: skip
        return p.CommandAck("failed", detail, msg.element, msg.command, msg.ref)

    async def _audit(self, member: Member, target: str, now: float, detail: str) -> None:
        entry = AuditEntry(member.room, now, member.user, member.role, Action.COMMAND_SEND.value, target, detail)
        try:
            await self.store.run(lambda db: put_audit(db, entry))
        except StoreError as exc:  # the command went (or failed) all the same: say so, and that it is not on record
            raise Refused(p.ERR_NOT_SAVED, f"{detail}; but its audit row could not be stored: {exc}") from None
