"""MQTT ingest: subscribe to every bound topic, feed messages through the bindings, never crash.

Several processes serving one scene (`serve --bus`) subscribe as one shared-subscription group
(`$share/…`, MQTT 5 and Mosquitto ≥ 1.6 for 3.1.1 clients too), so the broker delivers each message once.

Connection failures are logged and retried with exponential backoff (capped), forever; a bad
message is counted as a rejection, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Final
from urllib.parse import urlparse

import aiomqtt

from viewer_server.ingest import MqttStatus

if TYPE_CHECKING:  # live.py builds the command publisher, which connects through client_for below
    from viewer_server.live import LiveScene

log = logging.getLogger(__name__)

# Reconnect delays: start fast (a broker restart takes a second), back off to a calm retry rate.
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
# Messages buffered by the client while the loop is busy; beyond it the broker holds them (QoS 1).
MQTT_QUEUE_MAX: Final = 10_000
DEFAULT_PORTS: Final = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


class BrokerUrlError(ValueError):
    """A broker URL the server cannot use; the CLI reports it as bad input (exit 2)."""


def check_url(url: str) -> None:
    """Refuse a broker URL we cannot use, before the server starts."""
    u = urlparse(url)
    if u.scheme not in DEFAULT_PORTS or not u.hostname:
        raise BrokerUrlError(f"{url}: expected mqtt://host[:port] or mqtts://host[:port]")


def client_for(url: str) -> aiomqtt.Client:
    """An aiomqtt client for mqtt://[user:pass@]host[:port] (mqtts:// for TLS)."""
    check_url(url)
    u = urlparse(url)
    tls = ssl.create_default_context() if u.scheme in ("mqtts", "ssl") else None
    return aiomqtt.Client(
        u.hostname,
        u.port or DEFAULT_PORTS[u.scheme],
        username=u.username,
        password=u.password,
        tls_context=tls,
        max_queued_incoming_messages=MQTT_QUEUE_MAX,
    )


def bound_topics(live: LiveScene) -> list[str]:
    if live.bindings is None:
        return []
    return sorted({b.topic for b in live.bindings.bindings if b.topic})


def shared_group(scene: str) -> str:
    """The shared-subscription group of a scene's processes (`serve --bus`): the broker hands each message to
    one of them, so a reading is ingested (and recorded) once, not once per process."""
    return f"$share/twinview-{scene}/"


async def mqtt_ingest(url: str, live: LiveScene, status: MqttStatus | None = None, *, shared: bool = False) -> None:
    """Run until cancelled: connect, subscribe (`shared`: as one of the scene's processes), ingest; on any
    failure wait and reconnect."""
    status = status or live.mqtt
    status.enabled = True
    prefix = shared_group(live.scene.id) if shared else ""
    topics = [prefix + topic for topic in bound_topics(live)]
    if not topics:
        log.warning("MQTT %s: no binding has a topic; not connecting", url)
        return
    delay = BACKOFF_FIRST_S
    while True:
        try:
            async with client_for(url) as client:
                for topic in topics:
                    await client.subscribe(topic, qos=1)
                status.connected, delay = True, BACKOFF_FIRST_S
                status.connects += 1
                log.info("MQTT %s: subscribed to %d topics", url, len(topics))
                async for message in client.messages:
                    status.messages += 1
                    payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                    live.ingest.submit_mqtt(message.topic.value, payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broker problem must never take the server down
            status.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("MQTT %s: %s; retrying in %.1f s", url, status.last_error, delay)
        status.connected = False
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_S)
