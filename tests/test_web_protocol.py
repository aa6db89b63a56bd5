"""The browser client speaks docs/PROTOCOL.md exactly: every WebSocket frame a page of any browser test sends or
receives is validated against docs/protocol.schema.json after that test (tests/conftest.py, PROTOCOL_FRAMES in
tests/web_helpers.py). These tests prove that check bites, from the page to the failure."""

from __future__ import annotations

import json

import pytest

from tests.web_helpers import PROTOCOL_FRAMES, build_client, chromium_browser, frame_problem, live_twin

# Sent by the page itself through the client's session: a pose whose position has a string in it.
BAD_PRESENCE = "{type: 'presence', pose: {position: [1, 1.6, 'up'], quaternion: [0, 0, 0, 1]}}"


@pytest.mark.browser
def test_an_invalid_frame_a_page_sends_fails_the_check(tmp_path):
    build_client()
    with live_twin(tmp_path, count=8) as live, chromium_browser() as browser:
        page = browser.new_page()
        with page.expect_websocket() as opened:
            page.goto(live.url)
        page.wait_for_function("window.twinview.session.status === 'live'")
        PROTOCOL_FRAMES.check()  # hello, welcome, snapshot, ping, pong...: all valid
        with opened.value.expect_event("framesent", lambda payload: '"up"' in payload):
            page.evaluate(f"window.twinview.session.send({BAD_PRESENCE})")
        message = r"sent presence frame does not match protocol.schema.json at pose/position/2: 'up' is not of type"
        with pytest.raises(pytest.fail.Exception, match=message):
            PROTOCOL_FRAMES.check()


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ({"type": "pong", "t": 1.0, "server_time": 2.0}, None),
        ({"type": "pong", "t": 1.0}, "received pong frame does not match protocol.schema.json at (the message): "),
        (
            {"type": "delta", "first": 1, "last": 2, "props": {"el-1/p": {"v": 1.0, "ts": "now"}}},
            "received delta frame does not match protocol.schema.json at props/el-1/p/ts: 'now' is not of type",
        ),
        (
            {"type": "hello", "client": "x", "client_version": "1"},
            "received frame has no message type of its direction: type 'hello'",
        ),
    ],
)
def test_received_frames_are_checked_against_their_own_type(frame: dict, problem: str | None):
    found = frame_problem("received", json.dumps(frame))
    assert found == problem if problem is None else found.startswith(problem), found


def test_a_frame_that_is_not_json_is_a_problem():
    assert frame_problem("received", b"\x81\xa4type").startswith("received frame is not JSON text")
