"""Two people in one scene: each sees the other's avatar (camera frustum), name and pointer; one can
follow the other; an avatar leaves with its user (no ghosts)."""

from __future__ import annotations

import pytest

from tests.web_helpers import build_client, chromium_browser, live_twin, open_viewer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_people_see_and_follow_each_other(tmp_path):
    build_client()
    with live_twin(tmp_path, count=24) as live, chromium_browser() as browser:
        alice = open_viewer(browser.new_context(), f"{live.url}/?name=Alice")
        bob = open_viewer(browser.new_context(), f"{live.url}/?name=Bob")
        # Alice looks at the plant from a known spot.
        alice.evaluate("""() => { const v = window.twinview.viewer;
          v.flyTo(v.camera.position.clone().set(9, 5, 12), v.controls.target.clone().set(3, 0, 3), 0); }""")
        bob.wait_for_function(
            """() => [...window.twinview.state.presence.values()]
          .some(p => p.client === 'Alice (guest)' && Math.abs(p.pose.position[0] - 9) < 0.01)""",
            timeout=5000,
        )
        assert bob.evaluate("window.twinview.presence.avatars.size") == 1
        people = bob.locator("#people li")
        assert people.count() == 1 and "Alice" in people.inner_text()
        frustum_visible = bob.evaluate("""[...window.twinview.presence.avatars.values()][0]
          .getObjectByName('frustum').visible""")
        assert frustum_visible, "a browser user is shown as a camera frustum"
        screenshot(bob, "presence-bob-sees-alice")

        # A late joiner sees Alice at once, from the snapshot, before she moves again.
        carol = open_viewer(browser.new_context(), f"{live.url}/?name=Carol")
        assert carol.evaluate("""() => [...window.twinview.state.presence.values()]
          .some(p => p.client === 'Alice (guest)' && Math.abs(p.pose.position[0] - 9) < 0.01)""")
        carol.wait_for_function("window.twinview.presence.avatars.size === 2")  # Alice and Bob
        carol.context.close()
        bob.wait_for_function("window.twinview.presence.avatars.size === 1", timeout=10_000)

        # Bob follows Alice: his camera goes where hers is.
        people.locator("button", has_text="Follow").click()
        bob.wait_for_function(
            "window.twinview.viewer.camera.position.distanceTo({x: 9, y: 5, z: 12}) < 0.05", timeout=5000
        )
        # Alice leaves: her avatar goes with her.
        alice.context.close()
        bob.wait_for_function("window.twinview.presence.avatars.size === 0", timeout=10_000)
        assert "Only you" in bob.locator("#people").inner_text()
