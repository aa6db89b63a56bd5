"""Two people in one scene: each sees the other's avatar (camera frustum), name and pointer; one can
follow the other; an avatar leaves with its user (no ghosts)."""

from __future__ import annotations

import pytest

from tests.web_helpers import WAIT_MS, closing_contexts, live_twin, open_viewer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_people_see_and_follow_each_other(tmp_path, browser):
    with live_twin(tmp_path, count=24) as live, closing_contexts(browser):
        alice = open_viewer(browser.new_context(), f"{live.url}/?name=Alice")
        bob = open_viewer(browser.new_context(), f"{live.url}/?name=Bob")
        # Alice looks at the plant from a known spot.
        alice.evaluate("""() => { const v = window.twinview.viewer;
          v.flyTo(v.camera.position.clone().set(9, 5, 12), v.controls.target.clone().set(3, 0, 3), 0); }""")
        bob.wait_for_function(
            """() => [...window.twinview.state.presence.values()]
          .some(p => p.client === 'Alice (guest)' && Math.abs(p.pose.position[0] - 9) < 0.01)""",
            timeout=WAIT_MS,
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
        bob.wait_for_function("window.twinview.presence.avatars.size === 1", timeout=WAIT_MS)

        # Bob follows Alice: his camera goes where hers is.
        people.locator("button", has_text="Follow").click()
        bob.wait_for_function(
            "window.twinview.viewer.camera.position.distanceTo({x: 9, y: 5, z: 12}) < 0.05", timeout=WAIT_MS
        )
        # Alice leaves: her avatar goes with her.
        alice.context.close()
        bob.wait_for_function("window.twinview.presence.avatars.size === 0", timeout=WAIT_MS)
        assert "Only you" in bob.locator("#people").inner_text()


# Where another user's avatar is drawn on this page: visibility, opacity and the frustum's scale.
AVATAR = "() => window.twinview.presence.describe()[0] ?? null"


def test_a_co_located_user_does_not_fill_the_view(tmp_path, browser):
    """Two people on the same link start from the same view: each one's frustum would sit on the other's eye.
    It is not drawn there (nor the name); it fades and shrinks in as the other moves away, to full size."""
    with live_twin(tmp_path, count=24) as live, closing_contexts(browser):
        alice = open_viewer(browser.new_context(), f"{live.url}/?name=Alice")
        bob = open_viewer(browser.new_context(), f"{live.url}/?name=Bob")
        # Bob's first pose may come from before his start view (a loaded machine); he settles where Alice stands.
        alice.wait_for_function(
            """() => { const [o] = window.twinview.presence.describe(), c = window.twinview.viewer.camera.position;
              return o !== undefined && o.head.every((x, k) => Math.abs(x - c.getComponent(k)) < 0.01); }""",
            timeout=WAIT_MS,
        )
        assert alice.evaluate("window.twinview.presence.avatars.size") == 1
        alice.wait_for_function("window.twinview.presence.describe()[0].opacity === 0")
        assert not alice.evaluate("[...window.twinview.presence.avatars.values()][0].visible")
        assert alice.locator("#labels .tag.user:not([hidden])").count() == 0

        eye, ahead = alice.evaluate("""() => { const c = window.twinview.viewer.camera;
          return [c.position.toArray(), c.getWorldDirection(c.position.clone()).toArray()]; }""")

        def bob_walks_ahead(metres: float) -> dict:
            """Bob walks `metres` ahead of where both started, into Alice's view; she draws him there."""
            at = [eye[k] + metres * ahead[k] for k in range(3)]
            bob.evaluate(
                """([p, f]) => { const v = window.twinview.viewer; const at = v.camera.position.clone().set(...p);
                  v.flyTo(at, at.clone().add(v.camera.position.clone().set(...f)), 0); }""",
                [at, ahead],
            )
            alice.wait_for_function(
                """([p, d]) => { const a = window.twinview.presence.describe()[0];
                  const far = Math.hypot(a.head[0] - p[0], a.head[1] - p[1], a.head[2] - p[2]);
                  return Math.abs(far - d) < 0.01 && a.opacity > 0; }""",
                arg=[eye, metres],
                timeout=WAIT_MS,
            )
            return alice.evaluate(AVATAR)

        near = bob_walks_ahead(0.9)
        assert 0 < near["opacity"] < 1 and near["frustumScale"] == pytest.approx(0.3, abs=0.01)
        far = bob_walks_ahead(4)
        assert far["opacity"] == 1 and far["frustumScale"] == 1
        alice.wait_for_selector("#labels .tag.user:not([hidden])", timeout=WAIT_MS)  # his name is back
        screenshot(alice, "presence-co-located-walked-ahead")
        assert alice.errors == [] and bob.errors == []


# The pixel rectangle of the (first) other user's frustum on this page's canvas: [x0, y0, x1, y1].
FRUSTUM_ON_CANVAS = """() => { const v = window.twinview.viewer; const c = v.renderer.domElement;
  const f = [...window.twinview.presence.avatars.values()][0].getObjectByName('frustum');
  f.geometry.computeBoundingBox(); const b = f.geometry.boundingBox.clone().applyMatrix4(f.matrixWorld);
  const p = v.camera.position.clone(); let r = [Infinity, Infinity, -Infinity, -Infinity];
  for (const x of [b.min.x, b.max.x]) for (const y of [b.min.y, b.max.y]) for (const z of [b.min.z, b.max.z]) {
    p.set(x, y, z).project(v.camera); const px = ((p.x + 1) / 2) * c.width; const py = ((1 - p.y) / 2) * c.height;
    r = [Math.min(r[0], px), Math.min(r[1], py), Math.max(r[2], px), Math.max(r[3], py)]; }
  return r.map(Math.round); }"""


def _png(data: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_topic_snapshots_leave_other_users_out(tmp_path, browser):
    """Ana pins two topics from the same view, the second while Ben's frustum stands in it: Ben is drawn on
    her screen, but the second topic's snapshot shows that part of the view as the first one does."""
    import urllib.request

    from tests.web_helpers import session_joiner
    from viewer_server.auth import issue, load_secret

    with live_twin(tmp_path, count=24) as live, closing_contexts(browser):
        secret = load_secret(tmp_path / "data")
        join = session_joiner(browser, live.url, secret, "synthetic")
        ana = join("Ana", "annotator")
        view = [[3.75, 6.0, 14.0], [3.75, 0.0, 3.75]]
        ana.evaluate(
            """([p, t]) => { const v = window.twinview.viewer;
          v.flyTo(v.camera.position.clone().set(...p), v.controls.target.clone().set(...t), 0); }""",
            view,
        )

        def pin_topic(title: str) -> str:
            """A topic pinned on el-00000 through the UI; its snapshot's attachment id."""
            before = ana.evaluate("window.twinview.collab.store.topics.size")
            ana.click("#btn-new-topic")
            at = ana.evaluate("window.twinview.screenOf('el-00000')")
            ana.mouse.click(at["x"], at["y"])
            ana.locator(".topic-form input[name=title]").fill(title)
            ana.click("#topic-form button.create")
            ana.wait_for_function(f"window.twinview.collab.store.topics.size === {before + 1}", timeout=WAIT_MS)
            topics = ana.evaluate("[...window.twinview.collab.store.topics.values()]")
            return next(t for t in topics if t["title"] == title)["viewpoints"][0]["snapshot"]

        alone = pin_topic("Before Ben came")
        # Ben stands 3 m in front of Ana, looking where she looks: his frustum is in the middle of her view.
        ben = join("Ben", "viewer")
        ben.evaluate(
            """([p, t]) => { const v = window.twinview.viewer; const eye = v.camera.position.clone().set(...p);
          const ahead = v.controls.target.clone().set(...t).sub(eye).normalize().multiplyScalar(3);
          v.flyTo(eye.clone().add(ahead), v.controls.target.clone().set(...t), 0); }""",
            view,
        )
        ana.wait_for_function(
            """([p, t]) => { const a = window.twinview.presence.describe()[0];
              const d = [0, 1, 2].map((k) => t[k] - p[k]); const n = Math.hypot(...d);
              const at = [0, 1, 2].map((k) => p[k] + 3 * d[k] / n);
              return a && a.opacity === 1 && Math.hypot(...[0, 1, 2].map((k) => a.head[k] - at[k])) < 0.01; }""",
            arg=view,
            timeout=WAIT_MS,
        )
        # Where his frustum is on Ana's canvas (drawing-buffer pixels).
        x0, y0, x1, y1 = ana.evaluate(FRUSTUM_ON_CANVAS)
        assert 20 < x1 - x0 < 800 and 20 < y1 - y0 < 800
        live_view = _png(ana.locator("#view canvas").screenshot())
        with_ben = pin_topic("With Ben in the view")
        screenshot(ana, "presence-snapshot-without-ben")

        token = issue(secret, "synthetic", "Ana", "annotator")

        def attachment(aid: str):
            req = urllib.request.Request(f"{live.url}/api/sessions/synthetic/attachments/{aid}",
                                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            with urllib.request.urlopen(req, timeout=10) as res:
                return _png(res.read())

        first, second = attachment(alone), attachment(with_ben)
        assert first.shape == second.shape == live_view.shape
        region = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        # On screen Ben is drawn there; in the snapshot that part of the view is as it was without him.
        assert (abs(live_view[region] - first[region]).max(axis=2) > 30).sum() > 50
        assert (abs(second[region] - first[region]).max(axis=2) > 30).sum() == 0
        assert ana.errors == [] and ben.errors == []
