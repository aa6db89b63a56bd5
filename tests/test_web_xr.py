"""WebXR on an emulated Meta Quest 3 (iwer, forced into headless Chromium): "Enter VR" starts an
immersive-vr session that renders frames from the head pose, controller-ray picking selects an element
and shows the XR properties panel, live colours keep updating, and the head pose goes out as presence —
a second, plain browser shows the XR user as head and hand where the head is. "Enter AR" with iwer's
Synthetic Environment Module (a captured office) hit-tests the table and the floor, places the model
where the user selects and anchors it; without it (no hit-test) the model goes on a virtual table."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.web_helpers import (
    REPO,
    WAIT_MS,
    closing_contexts,
    element_id,
    live_twin,
    open_viewer,
    screenshot,
)
from viewer_server.auth import issue, load_secret

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"  # the synthetic scene's default session: its id is the scene's
IWER = REPO / "web_client" / "node_modules" / "iwer" / "build" / "iwer.min.js"
# iwer 2.5.0 reads getOffsetReferenceSpace's originOffset as a gl-matrix mat4 and ignores the XRRigidTransform
# WebXR passes (and browsers take): the shim hands it the transform's matrix, so locomotion's offset spaces work.
INSTALL = """window.__xr = new IWER.XRDevice(IWER.metaQuest3);
window.__xr.installRuntime({ forceInstall: true });
window.__xr.stereoEnabled = false;
{ const offset = XRReferenceSpace.prototype.getOffsetReferenceSpace;
  XRReferenceSpace.prototype.getOffsetReferenceSpace = function (t) { return offset.call(this, t?.matrix ?? t); }; }"""
# iwer's Synthetic Environment Module (npm @iwer/sem, a test-only devDependency): planes, meshes and hit-test
# from a captured room. Its UMD build (global IWER_SEM, next to iwer's IWER) is injected as is; the room
# is the small office it ships, passed in as JSON — loadDefaultEnvironment() would fetch it from a CDN.
SEM = REPO / "web_client" / "node_modules" / "@iwer" / "sem"
SEM_ROOM = SEM / "captures" / "office_small.json"


def room_plane(label: str) -> dict:
    """The captured room's plane with this semantic label (office_small has one floor and one table top)."""
    entities = json.loads(SEM_ROOM.read_text())["spatialEntities"]
    return next(e for e in entities if e.get("semanticLabel_META") == label and "bounded2D_META" in e)


@pytest.fixture
def vr_page(tmp_path, browser):
    with live_twin(tmp_path, count=24) as live, closing_contexts(browser):
        context = browser.new_context(viewport={"width": 1024, "height": 640})
        context.add_init_script(path=str(IWER))
        context.add_init_script(INSTALL)
        page = open_viewer(context, live.url)
        yield live, page


# The emulator's poses (head, controllers) are in the session's own floor space; locomotion's rig maps that
# space into the scene (xr/locomotion.js). These turn scene points into emulator poses and back.
TO_SCENE = """(p) => { const tv = window.twinview; const V = tv.viewer.camera.position.constructor;
  return new V(...p).applyMatrix4(tv.xr.locomotion.rig).toArray(); }"""
# Put a controller at `from` (scene) pointing at `to` (scene).
AIM = """([hand, from, to]) => { const tv = window.twinview; const V = tv.viewer.camera.position.constructor;
  const inv = tv.xr.locomotion.rig.clone().invert();
  const a = new V(...from).applyMatrix4(inv), b = new V(...to).applyMatrix4(inv);
  const q = tv.viewer.camera.quaternion.clone().setFromUnitVectors(new V(0, 0, -1), b.sub(a).normalize());
  const c = window.__xr.controllers[hand]; c.position.set(a.x, a.y, a.z); c.quaternion.set(q.x, q.y, q.z, q.w); }"""


# XR frames on a shared machine under load (software GL, one frame drawn per XR frame) can stall for seconds.
FRAMES_TIMEOUT_MS = 30_000


def settle(page, frames: int = 3) -> None:
    """Wait until the page has drawn `frames` more frames (so the emulator's new poses are read)."""
    now = page.evaluate("window.twinview.viewer.frames")
    page.wait_for_function(f"window.twinview.viewer.frames >= {now + frames}", timeout=FRAMES_TIMEOUT_MS)


def pull_trigger(page, hand: str = "right") -> None:
    """Press and release a controller's trigger, a frame or more apart: a select."""
    page.evaluate(f"window.__xr.controllers.{hand}.updateButtonValue('trigger', 1)")
    settle(page)
    page.evaluate(f"window.__xr.controllers.{hand}.updateButtonValue('trigger', 0)")
    settle(page)


def test_enter_vr_renders_frames_from_the_head_pose(vr_page):
    live, page = vr_page
    vr = page.locator("#btn-vr")
    vr.wait_for(state="visible", timeout=WAIT_MS)
    vr.click()
    page.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
    page.evaluate("window.__xr.position.set(0.3, 1.6, 0.2)")
    settle(page, 10)
    head = page.evaluate("window.twinview.viewer.renderer.xr.getCamera().position.toArray()")
    assert head == pytest.approx(page.evaluate(TO_SCENE, [0.3, 1.6, 0.2]), abs=0.05)
    assert head[1] == pytest.approx(1.6, abs=0.05)  # the model's floor is the user's
    # The model is 1:1, where it is; the user stands at the start pose (tests/test_web_xr_move.py).
    assert page.evaluate("window.twinview.viewer.world.position.toArray()") == [0, 0, 0]
    assert page.evaluate("window.twinview.viewer.world.scale.x") == 1

    # Live colours keep updating inside the session.
    live.ingest([{"element": element_id(0), "prop": "pressure", "value": 6.0}])
    page.wait_for_function("window.twinview.colorOf('el-00000') === '#ff0000'", timeout=WAIT_MS)

    # Our head goes out as presence, in model coordinates.
    pose = page.evaluate("window.twinview.presence.ownPose()")
    assert pose["position"] == pytest.approx(head, abs=0.05)

    # Point the right controller at an element and pull the trigger: it is selected, the panel shows it by name.
    c = page.evaluate("""() => { const b = window.twinview.app.batches.boxOf('el-00004');
      return b.getCenter(b.min.clone()).toArray(); }""")
    page.evaluate(AIM, ["right", [c[0], c[1] + 1.0, c[2]], c])  # straight down onto it
    settle(page)
    pull_trigger(page)
    page.wait_for_function("window.twinview.app.twin.selected === 'el-00004'", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.xr.panel.mesh.visible")
    lines = page.evaluate("window.twinview.xr.panelLines()")
    assert lines[:2] == ["Pump 4", "IfcPump"] and not any("el-00004" in line for line in lines)
    screenshot(page, "xr-vr-session")

    page.evaluate("window.twinview.viewer.renderer.xr.getSession().end()")
    page.wait_for_function("!window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.viewer.world.position.toArray()") == [0, 0, 0]
    assert page.errors == []


def _post(live, path: str, body: dict, token: str) -> dict:
    req = urllib.request.Request(
        f"{live.url}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())


def test_a_technician_reads_a_topic_by_pointing_at_its_pin(vr_page, tmp_path):
    # Someone at a desk pinned an issue to an element and commented; in VR, pointing at the pin and
    # pulling the trigger shows the topic in the panel, and a new comment appears there live.
    live, page = vr_page
    token = issue(load_secret(tmp_path / "data"), SESSION, "Ana", "annotator")
    top = page.evaluate("""() => { const b = window.twinview.app.batches.boxOf('el-00004');
      const c = b.getCenter(b.min.clone()); return [c.x, b.max.y, c.z]; }""")
    pin = {"element": element_id(4), "point": top, "normal": [0, 1, 0]}
    draft = {"title": "Seal weeps at the flange", "priority": "high", "assignee": "Tom", "pin": pin}
    guid = _post(live, f"/api/sessions/{SESSION}/topics", draft, token)["guid"]
    _post(live, f"/api/sessions/{SESSION}/topics/{guid}/comments", {"text": "Retorque to 40 Nm"}, token)
    page.wait_for_function("(g) => window.twinview.collab.pins.pins.has(g)", arg=guid, timeout=WAIT_MS)

    page.locator("#btn-vr").click()
    page.wait_for_function("window.twinview.xr?.mode === 'vr' && window.twinview.viewer.renderer.xr.isPresenting",
                           timeout=WAIT_MS)  # fmt: skip
    # The right hand, beside the head, points at the pin (which faces the head).
    settle(page)
    hand, pin = page.evaluate(
        """(g) => { const tv = window.twinview; const head = tv.viewer.renderer.xr.getCamera().position;
      const pin = tv.collab.pins.pins.get(g).getWorldPosition(head.clone());
      const toward = pin.clone().sub(head).setY(0).normalize().multiplyScalar(0.2);
      return [head.clone().add(toward).setY(head.y - 0.3).toArray(), pin.toArray()]; }""",
        guid,
    )
    page.evaluate(AIM, ["right", hand, pin])
    settle(page)
    pull_trigger(page)
    page.wait_for_function("(g) => window.twinview.xr.topic === g", arg=guid, timeout=WAIT_MS)
    assert page.evaluate("window.twinview.xr.panel.mesh.visible")
    assert page.evaluate("window.twinview.xr.panelLines()") == [
        "Seal weeps at the flange",
        "open · high",
        "by Ana · assigned to Tom",
        "on Pump 4 (IfcPump)",  # the pinned element by name, not its id
        "Ana: Retorque to 40 Nm",
    ]
    assert page.evaluate("window.twinview.app.twin.selected") != element_id(4)  # a pin is not a pick

    _post(live, f"/api/sessions/{SESSION}/topics/{guid}/comments", {"text": "Done, no more drips"}, token)
    page.wait_for_function("window.twinview.xr.panelLines().at(-1) === 'Ana: Done, no more drips'", timeout=WAIT_MS)
    page.evaluate("window.twinview.viewer.renderer.xr.getSession().end()")
    assert page.errors == []


def test_a_plain_browser_sees_the_xr_user_as_head_and_hand(tmp_path, browser):
    """Context A (emulated Quest 3) enters VR and moves its head and right controller; context B (a plain
    browser) shows A as an XR user — head and hand, not a frustum — at A's head in model coordinates."""
    with live_twin(tmp_path, count=24) as live, closing_contexts(browser):
        ctx_a = browser.new_context(viewport={"width": 1024, "height": 640})
        ctx_a.add_init_script(path=str(IWER))
        ctx_a.add_init_script(INSTALL)
        a = open_viewer(ctx_a, f"{live.url}/?name=Ana")
        b = open_viewer(browser.new_context(viewport={"width": 1024, "height": 640}), f"{live.url}/?name=Ben")
        assert b.evaluate("navigator.xr === undefined || !window.__xr")  # B has no emulator
        a.locator("#btn-vr").wait_for(state="visible", timeout=WAIT_MS)
        a.locator("#btn-vr").click()
        a.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
        assert a.evaluate("window.twinview.viewer.world.position.toArray()") == [0, 0, 0]
        assert a.evaluate("window.twinview.viewer.world.scale.x") == 1
        settle(a)  # the start pose is taken

        def expect_head(head: list[float]) -> list[float]:
            """Wait until B shows A as an XR user at this head position (A's local-floor space) and return
            the avatar's head in model coordinates."""
            a.evaluate(f"window.__xr.position.set({head[0]}, {head[1]}, {head[2]})")
            model = a.evaluate(TO_SCENE, head)  # the world group is the identity at 1:1
            b.wait_for_function(
                """(m) => window.twinview.presence.describe().some(u => u.name === 'Ana (guest)' && u.kind === 'xr'
                  && Math.hypot(u.head[0] - m[0], u.head[1] - m[1], u.head[2] - m[2]) < 0.05)""",
                arg=model,
                timeout=WAIT_MS,
            )
            return model

        first = expect_head([0.3, 1.6, 0.2])
        # A's pointer is its first tracked controller (iwer's left one): B draws the hand there (model
        # coordinates), with its laser.
        a.evaluate("window.__xr.controllers.left.position.set(0.5, 1.2, -0.1)")
        hand_model = a.evaluate(TO_SCENE, [0.5, 1.2, -0.1])
        b.wait_for_function(
            """(m) => window.twinview.presence.describe().some(u => u.name === 'Ana (guest)' && u.hand && u.laser
              && Math.hypot(u.hand[0] - m[0], u.hand[1] - m[1], u.hand[2] - m[2]) < 0.05)""",
            arg=hand_model,
            timeout=WAIT_MS,
        )
        users = b.evaluate("window.twinview.presence.describe()")
        assert [(u["name"], u["kind"]) for u in users] == [("Ana (guest)", "xr")]
        avatar = "[...window.twinview.presence.avatars.values()][0]"
        assert b.evaluate(f"{avatar}.getObjectByName('head').visible")
        assert not b.evaluate(f"{avatar}.getObjectByName('frustum').visible"), "an XR user is not a frustum"
        assert "Ana" in b.locator("#people").inner_text()
        assert b.evaluate("window.twinview.state.presence.values().next().value.pose.device") == "xr"

        # A moves its head: the avatar follows.
        second = expect_head([-0.6, 1.3, 0.8])
        assert max(abs(first[k] - second[k]) for k in range(3)) > 0.5
        screenshot(b, "xr-presence-seen-from-browser")

        # A leaves XR: B shows a browser user (frustum) again.
        a.evaluate("window.twinview.viewer.renderer.xr.getSession().end()")
        b.wait_for_function(
            "window.twinview.presence.describe().some(u => u.name === 'Ana (guest)' && u.kind === 'browser')",
            timeout=WAIT_MS,
        )
        assert a.errors == [] and b.errors == []


def test_enter_ar_places_the_model_on_a_table_and_switches_to_full_scale(vr_page):
    _, page = vr_page
    ar = page.locator("#btn-ar")
    ar.wait_for(state="visible", timeout=WAIT_MS)
    ar.click()
    page.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
    # Bare iwer has no surface detection (no SEM here, so no hit-test): the model goes on a virtual
    # table 1 m ahead, tabletop size. With hit-test it waits for a tap on a surface (the test below).
    page.wait_for_function("window.twinview.viewer.world.visible")
    assert page.evaluate("window.twinview.viewer.scene.background") is None  # camera passthrough shows
    size = page.evaluate("""() => { const tv = window.twinview; const s = tv.viewer.world.scale.x;
      let box = null; for (const e of tv.app.batches.elements.values()) box = box ? box.union(e.box) : e.box.clone();
      const d = box.getSize(box.min.clone()); return Math.max(d.x, d.z) * s; }""")
    assert size == pytest.approx(0.6, abs=0.01)
    assert page.evaluate("document.querySelector('#xr-overlay').hidden") is False
    # iwer lays its own canvas over the page (it does not emulate dom-overlay): click the buttons directly.
    page.locator("#xr-scale").dispatch_event("click")
    assert page.evaluate("window.twinview.viewer.world.scale.x") == 1
    assert page.locator("#xr-scale").inner_text() == "1:1"
    page.locator("#xr-exit").dispatch_event("click")
    page.wait_for_function("!window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.viewer.scene.background !== null")
    assert page.locator("#xr-overlay").is_hidden()
    assert page.errors == []


@pytest.fixture
def ar_page(tmp_path, browser):
    if not (SEM / "build" / "iwer-sem.min.js").is_file():
        pytest.skip("@iwer/sem is missing: run setup.sh (npm ci)")
    with live_twin(tmp_path, count=24) as live, closing_contexts(browser):
        context = browser.new_context(viewport={"width": 1024, "height": 640})
        context.add_init_script(path=str(IWER))
        context.add_init_script(INSTALL)
        context.add_init_script(path=str(SEM / "build" / "iwer-sem.min.js"))
        context.add_init_script(
            f"window.__xr.installSEM(IWER_SEM.SyntheticEnvironmentModule);"
            f"window.__xr.sem.loadEnvironment({SEM_ROOM.read_text()});"
        )
        page = open_viewer(context, live.url)
        yield live, page


# Where the model stands in the XR reference space (local-floor, m): its base centre and footprint.
MODEL_BASE = """() => { const tv = window.twinview; const w = tv.viewer.world; w.updateMatrixWorld(true);
  let box = null; for (const e of tv.app.batches.elements.values()) box = box ? box.union(e.box) : e.box.clone();
  const c = box.getCenter(box.min.clone()); const base = c.clone().setY(box.min.y).applyMatrix4(w.matrixWorld);
  const d = box.getSize(box.min.clone()); return {base: base.toArray(), across: Math.max(d.x, d.z) * w.scale.x}; }"""
# Look straight down from (x, y, z): the viewer-space hit-test ray (-Z) turned to -Y.
LOOK_DOWN = (
    "(p) => { window.__xr.position.set(...p); const s = Math.SQRT1_2; window.__xr.quaternion.set(-s, 0, 0, s); }"
)


def test_ar_hit_test_places_the_model_on_a_detected_surface(ar_page):
    """With iwer's synthetic office: Enter AR asks for hit-test, the reticle sits on the surface looked at,
    a select puts the model there (tabletop on the table, then 1:1 on the floor), anchored."""
    _, page = ar_page
    table, floor = room_plane("TABLE"), room_plane("FLOOR")
    table_y, floor_y = table["locatable_META"]["position"]["y"], floor["locatable_META"]["position"]["y"]
    page.locator("#btn-ar").wait_for(state="visible", timeout=WAIT_MS)
    page.locator("#btn-ar").click()
    page.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
    page.wait_for_function("window.twinview.xr.hitSource !== null", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.viewer.world.visible") is False  # waits for a tap on a surface

    # Look down at the table: the reticle lands on its top.
    tx, tz = table["locatable_META"]["position"]["x"], table["locatable_META"]["position"]["z"] + 0.1
    page.evaluate(LOOK_DOWN, [tx, 1.5, tz])
    page.wait_for_function(
        "window.twinview.xr.reticle.visible && "
        f"Math.abs(window.twinview.xr.reticle.matrix.elements[13] - {table_y}) < 0.03",
        timeout=WAIT_MS,
    )
    pull_trigger(page)
    page.wait_for_function("window.twinview.xr.placed && window.twinview.viewer.world.visible", timeout=WAIT_MS)
    placed = page.evaluate(MODEL_BASE)
    assert placed["across"] == pytest.approx(0.6, abs=0.01)  # tabletop size
    assert placed["base"][1] == pytest.approx(table_y, abs=0.03)  # standing on the detected table top
    assert placed["base"][0] == pytest.approx(tx, abs=0.03) and placed["base"][2] == pytest.approx(tz, abs=0.03)
    screenshot(page, "xr-ar-hit-test-table")

    # It stays where it was put while the user walks and looks around (anchored to the surface).
    # iwer has anchors: one is made from the next frame at the hit pose, and the model follows it.
    page.wait_for_function("window.twinview.xr.anchor !== null", timeout=WAIT_MS)
    page.evaluate(LOOK_DOWN, [0.3, 1.6, 0.9])  # open floor (a chair stands at x -0.8)
    frames = page.evaluate("window.twinview.viewer.frames")
    page.wait_for_function(f"window.twinview.viewer.frames > {frames} + 10", timeout=WAIT_MS)
    after = page.evaluate(MODEL_BASE)
    assert max(abs(after["base"][k] - placed["base"][k]) for k in range(3)) < 0.01

    # 1:1: placed again at the next tap, here on the floor where the user now looks.
    page.locator("#xr-scale").dispatch_event("click")
    page.wait_for_function(
        "window.twinview.xr.reticle.visible && "
        f"Math.abs(window.twinview.xr.reticle.matrix.elements[13] - {floor_y}) < 0.03",
        timeout=WAIT_MS,
    )
    pull_trigger(page)
    page.wait_for_function("window.twinview.xr.placed", timeout=WAIT_MS)
    full = page.evaluate(MODEL_BASE)
    assert page.evaluate("window.twinview.viewer.world.scale.x") == 1
    assert full["base"][1] == pytest.approx(floor_y, abs=0.03)
    assert full["base"][0] == pytest.approx(0.3, abs=0.03) and full["base"][2] == pytest.approx(0.9, abs=0.03)
    page.wait_for_function("window.twinview.xr.anchor !== null", timeout=WAIT_MS)  # a new anchor, on the floor
    page.evaluate(LOOK_DOWN, [-0.5, 1.6, -0.5])
    frames = page.evaluate("window.twinview.viewer.frames")
    page.wait_for_function(f"window.twinview.viewer.frames > {frames} + 10", timeout=WAIT_MS)
    assert max(abs(page.evaluate(MODEL_BASE)["base"][k] - full["base"][k]) for k in range(3)) < 0.01

    page.locator("#xr-exit").dispatch_event("click")
    page.wait_for_function("!window.twinview.viewer.renderer.xr.isPresenting", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.viewer.world.position.toArray()") == [0, 0, 0]
    assert page.errors == []
