"""The browser client speaks docs/PROTOCOL.md exactly: every frame it sends, and every frame it is sent,
validates against the JSON Schema the server generates from viewer_server/protocol.py."""

from __future__ import annotations

import json
import urllib.request

import jsonschema
import pytest

from tests.web_helpers import build_client, chromium_browser, element_id, live_twin

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_every_frame_matches_the_protocol_schema(tmp_path):
    build_client()
    with live_twin(tmp_path, count=24) as live, chromium_browser() as browser:
        with urllib.request.urlopen(f"{live.url}/api/protocol.schema.json", timeout=10) as res:
            schema = json.loads(res.read())
        sent: list[dict] = []
        received: list[dict] = []
        page = browser.new_page(viewport={"width": 1024, "height": 640})

        def watch(ws):
            ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
            ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

        page.on("websocket", watch)
        page.goto(f"{live.url}/?name=Conformance")
        page.evaluate("window.twinview.ready")
        # Exercise every client message: presence (camera + pointer), subscribe, ping; and a delta with events.
        at = page.evaluate("id => window.twinview.screenOf(id)", element_id(5))
        page.mouse.move(at["x"], at["y"])
        page.mouse.move(at["x"] + 3, at["y"] + 3)
        live.ingest([{"element": element_id(1), "prop": "temperature", "value": 99.0}])
        live.ingest([{"element": element_id(3), "prop": "position", "value": 50}])
        page.select_option("#layer-select", "energy")
        page.wait_for_function("window.twinview.state.layer === 'energy'")
        page.wait_for_timeout(5500)  # one ping interval

        kinds = {m["type"] for m in sent}
        assert {"hello", "presence", "subscribe", "ping"} <= kinds
        assert {"welcome", "snapshot", "delta", "pong"} <= {m["type"] for m in received}
        client = {"$ref": "#/$defs/ClientMessage", "$defs": schema["$defs"]}
        server = {"$ref": "#/$defs/ServerMessage", "$defs": schema["$defs"]}
        for msg in sent:
            jsonschema.validate(msg, client)
        for msg in received:
            jsonschema.validate(msg, server)
