"""Moving about in VR on an emulated Meta Quest 3 (iwer, forced into headless Chromium; see test_web_xr.py):
teleport along an arc moves the reference space to the target, snap turns rotate by the step about the head, the
left thumbstick walks where the head looks (behind a comfort vignette), the XR panel switches the world scale
between table-top and 1:1; live labels and alarm badges are in the XR scene with element names; and the start
pose — in VR and the first desktop view — faces the area of interest of the sample pump station, not a wall."""

from __future__ import annotations

import math

import pytest

from tests.test_web_xr import AIM, FRAMES_TIMEOUT_MS, INSTALL, IWER, pull_trigger, settle
from tests.web_helpers import (
    REPO,
    WAIT_MS,
    build_scene,
    element_id,
    live_twin,
    open_viewer,
    publish,
    screenshot,
    serve_scene,
)
from viewer_server.auth import issue, load_secret

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SNAP_TURN_DEG = 30  # xr/locomotion.js
EYE = 1.6  # iwer's default head height (m)

# The head in the scene, as the XR system says in the reference space three.js renders with (the viewer pose,
# between the eyes): position, gaze and the gaze's angle about +Y from -Z (degrees).
HEAD = """() => new Promise((resolve) => { const r = window.twinview.viewer.renderer;
  r.xr.getSession().requestAnimationFrame((t, frame) => {
    const { position: p, orientation: q } = frame.getViewerPose(r.xr.getReferenceSpace()).transform;
    const V = window.twinview.viewer.camera.position.constructor;
    const f = new V(0, 0, -1).applyQuaternion(window.twinview.viewer.camera.quaternion.clone().set(q.x, q.y, q.z, q.w));
    resolve({p: [p.x, p.y, p.z], f: f.toArray(), yaw: Math.atan2(-f.x, -f.z) * 180 / Math.PI}); }); })"""


# Turn the emulated head to look along a horizontal scene direction [x, z], pitched by some degrees.
LOOK = """([d, pitch]) => { const tv = window.twinview; const V = tv.viewer.camera.position.constructor;
  const f = new V(d[0], 0, d[1]).transformDirection(tv.xr.locomotion.rig.clone().invert());
  const e = tv.viewer.camera.rotation.clone().set(pitch * Math.PI / 180, Math.atan2(-f.x, -f.z), 0, 'YXZ');
  const q = tv.viewer.camera.quaternion.clone().setFromEuler(e); window.__xr.quaternion.set(q.x, q.y, q.z, q.w); }"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, browser):
    with live_twin(tmp_path_factory.mktemp("xr-move"), count=24) as live:
        yield live, browser


@pytest.fixture
def twin(served):
    """The served twin and the browser; the test's pages are closed after it (an XR page draws all the time)."""
    live, browser = served
    yield live, browser
    for context in browser.contexts:
        context.close()


def enter_vr(browser, url: str):
    context = browser.new_context(viewport={"width": 1024, "height": 640})
    context.add_init_script(path=str(IWER))
    context.add_init_script(INSTALL)
    page = open_viewer(context, url)
    page.locator("#btn-vr").wait_for(state="visible", timeout=WAIT_MS)
    page.locator("#btn-vr").click()
    page.wait_for_function(
        "window.twinview.xr?.mode === 'vr' && window.twinview.viewer.renderer.xr.isPresenting",
        timeout=FRAMES_TIMEOUT_MS,
    )
    settle(page, 5)  # the start pose is taken at the first frames
    return page


def stick(page, hand: str, x: float, y: float) -> None:
    page.evaluate(f"window.__xr.controllers.{hand}.updateAxes('thumbstick', {x}, {y})")


def press(page, hand: str, button: str) -> None:
    page.evaluate(f"window.__xr.controllers.{hand}.updateButtonValue('{button}', 1)")
    settle(page)
    page.evaluate(f"window.__xr.controllers.{hand}.updateButtonValue('{button}', 0)")
    settle(page)


def hand_before(head: dict) -> list[float]:
    """Where a right hand is: 20 cm ahead of the head and 40 cm below it."""
    p, f = head["p"], head["f"]
    n = math.hypot(f[0], f[2])
    return [p[0] + 0.2 * f[0] / n, p[1] - 0.4, p[2] + 0.2 * f[2] / n]


def test_teleport_moves_the_reference_space_to_the_target(twin):
    live, browser = twin
    page = enter_vr(browser, live.url)
    # Look away from the boxes, a little down, and aim at the ground 3 m off there (the arc falls short of a line
    # aimed down); push the right stick forward: the arc and its marker show where the jump lands, on the ground.
    here = page.evaluate(HEAD)["p"]
    away = page.evaluate(
        """(p) => { const b = window.twinview.app.batches.boxOf('el-00002'); const c = b.getCenter(b.min.clone());
          return [p[0] - c.x, p[2] - c.z]; }""",
        here,
    )
    page.evaluate(LOOK, [away, -20])
    settle(page)
    start = page.evaluate(HEAD)
    n = math.hypot(*away)
    ground = [start["p"][0] + 3 * away[0] / n, 0, start["p"][2] + 3 * away[1] / n]
    page.evaluate(AIM, ["right", hand_before(start), ground])
    stick(page, "right", 0, -1)
    page.wait_for_function("window.twinview.xr.locomotion.target !== null", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.xr.locomotion.arc.visible && window.twinview.xr.locomotion.marker.visible")
    target = page.evaluate("window.twinview.xr.locomotion.target.toArray()")
    assert target[1] == pytest.approx(0, abs=0.01)  # the ground, drawn as a grid
    assert page.evaluate("window.twinview.viewer.scene.getObjectByName('xr-ground').position.y") == 0
    assert math.dist(target[::2], start["p"][::2]) > 1.5
    screenshot(page, "xr-teleport-aim")

    # Let go: the reference space is offset so that the head stands over the target, looking the same way.
    base = page.evaluate("window.twinview.xr.locomotion.base !== null")
    stick(page, "right", 0, 0)
    page.wait_for_function("window.twinview.xr.locomotion.aimedBy === null", timeout=WAIT_MS)
    assert base and page.evaluate(
        "window.twinview.viewer.renderer.xr.getReferenceSpace() !== window.twinview.xr.locomotion.base"
    )
    settle(page)
    after = page.evaluate(HEAD)
    assert after["p"][0] == pytest.approx(target[0], abs=0.02) and after["p"][2] == pytest.approx(target[2], abs=0.02)
    assert after["p"][1] == pytest.approx(target[1] + EYE, abs=0.02)
    assert after["yaw"] == pytest.approx(start["yaw"], abs=0.5)
    assert not page.evaluate("window.twinview.xr.locomotion.arc.visible")

    # The side of a box is no floor: the arc turns red, there is no marker, and letting go goes nowhere.
    box = page.evaluate("""() => { const b = window.twinview.app.batches.boxOf('el-00002');
      return [b.getCenter(b.min.clone()).toArray(), b.max.y]; }""")
    side = [box[0][0], box[1] / 3, box[0][2]]  # low on the box, where the arc meets its side
    page.evaluate(AIM, ["right", [side[0] - 0.0, side[1] + 0.3, side[2] + 1.5], side])
    stick(page, "right", 0, -1)
    page.wait_for_function("window.twinview.xr.locomotion.arc.visible", timeout=WAIT_MS)
    settle(page)
    assert page.evaluate("window.twinview.xr.locomotion.target") is None
    assert not page.evaluate("window.twinview.xr.locomotion.marker.visible")
    assert page.evaluate("'#' + window.twinview.xr.locomotion.arc.material.color.getHexString()") == "#f85149"
    stick(page, "right", 0, 0)
    page.wait_for_function("window.twinview.xr.locomotion.aimedBy === null", timeout=WAIT_MS)
    settle(page)
    assert page.evaluate(HEAD)["p"] == pytest.approx(after["p"], abs=0.01)

    # The grip of the left hand aims too (a button, for controllers without a stick): hold, aim, let go.
    page.evaluate(AIM, ["left", hand_before(after), [after["p"][0] + 2, 0, after["p"][2] + 2]])
    page.evaluate("window.__xr.controllers.left.updateButtonValue('squeeze', 1)")
    page.wait_for_function("window.twinview.xr.locomotion.target !== null", timeout=WAIT_MS)
    target = page.evaluate("window.twinview.xr.locomotion.target.toArray()")
    page.evaluate("window.__xr.controllers.left.updateButtonValue('squeeze', 0)")
    page.wait_for_function("window.twinview.xr.locomotion.aimedBy === null", timeout=WAIT_MS)
    settle(page)
    moved = page.evaluate(HEAD)["p"]
    assert moved[0] == pytest.approx(target[0], abs=0.02) and moved[2] == pytest.approx(target[2], abs=0.02)
    # Presence says where we are now, in model coordinates (three's XR camera: an eye, 3 cm off the head's centre).
    assert page.evaluate("window.twinview.presence.ownPose().position") == pytest.approx(moved, abs=0.05)
    assert page.errors == []


def test_snap_turn_rotates_by_the_step_about_the_head(twin):
    live, browser = twin
    page = enter_vr(browser, live.url)
    page.evaluate("window.__xr.position.set(0.4, 1.6, -0.3)")  # off the space's origin: turns are about the head
    settle(page)
    start = page.evaluate(HEAD)
    stick(page, "right", 1, 0)  # right: clockwise seen from above
    page.wait_for_function("window.twinview.xr.locomotion.turnArmed === false", timeout=WAIT_MS)
    settle(page, 5)  # held: one step only
    turned = page.evaluate(HEAD)
    assert (turned["yaw"] - start["yaw"] + 540) % 360 - 180 == pytest.approx(-SNAP_TURN_DEG, abs=0.5)
    assert turned["p"] == pytest.approx(start["p"], abs=0.01)
    stick(page, "right", 0, 0)
    settle(page)
    stick(page, "right", -1, 0)  # released and pushed left: one step back
    page.wait_for_function("window.twinview.xr.locomotion.turnArmed === false", timeout=WAIT_MS)
    stick(page, "right", 0, 0)
    settle(page)
    back = page.evaluate(HEAD)
    assert (back["yaw"] - start["yaw"] + 540) % 360 - 180 == pytest.approx(0, abs=0.5)
    assert back["p"] == pytest.approx(start["p"], abs=0.01)
    assert page.errors == []


def test_the_left_thumbstick_walks_where_the_head_looks(twin):
    live, browser = twin
    page = enter_vr(browser, live.url)
    # Look 40° to the left and a little down: movement follows the gaze, along the floor.
    f = page.evaluate(HEAD)["f"]
    left = [f[0] * math.cos(0.7) + f[2] * math.sin(0.7), -f[0] * math.sin(0.7) + f[2] * math.cos(0.7)]
    page.evaluate(LOOK, [left, -17])
    settle(page)
    start = page.evaluate(HEAD)
    assert not page.evaluate("window.twinview.xr.locomotion.vignette.visible")
    stick(page, "left", 0, -1)  # forward
    page.wait_for_function(
        """(s) => { const p = window.twinview.presence.ownPose().position;
          return Math.hypot(p[0] - s[0], p[2] - s[2]) > 0.6; }""",
        arg=start["p"],
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.twinview.xr.locomotion.vignette.visible")  # comfort: the edges dim while moving
    screenshot(page, "xr-smooth-move")
    stick(page, "left", 0, 0)
    page.wait_for_function("!window.twinview.xr.locomotion.vignette.visible", timeout=WAIT_MS)
    settle(page)
    end = page.evaluate(HEAD)
    step = [end["p"][k] - start["p"][k] for k in range(3)]
    assert step[1] == pytest.approx(0, abs=0.01)  # level
    f = start["f"]
    cos = (step[0] * f[0] + step[2] * f[2]) / (math.hypot(step[0], step[2]) * math.hypot(f[0], f[2]))
    assert cos > 0.999  # along the gaze
    settle(page, 5)
    assert page.evaluate(HEAD)["p"] == pytest.approx(end["p"], abs=0.001)  # released: stands still
    assert page.errors == []


# Where the model stands in the scene and how large it is.
MODEL = """() => { const tv = window.twinview; const w = tv.viewer.world; w.updateMatrixWorld(true);
  let box = null; for (const e of tv.app.batches.elements.values()) box = box ? box.union(e.box) : e.box.clone();
  const c = box.getCenter(box.min.clone()); const base = c.clone().setY(box.min.y).applyMatrix4(w.matrixWorld);
  const d = box.getSize(box.min.clone()); return {base: base.toArray(), across: Math.max(d.x, d.z) * w.scale.x,
  scale: w.scale.x}; }"""


def test_the_xr_panel_switches_the_world_scale(twin):
    live, browser = twin
    page = enter_vr(browser, live.url)
    start = page.evaluate(HEAD)
    press(page, "right", "b-button")  # the menu button opens the panel
    page.wait_for_function("window.twinview.xr.panel.visible", timeout=WAIT_MS)
    assert page.evaluate("window.twinview.xr.panel.content.scale") == "Scale: 1:1"

    def press_scale() -> None:
        head = page.evaluate(HEAD)
        button = page.evaluate("window.twinview.xr.panel.pointOf('scale').toArray()")
        page.evaluate(AIM, ["right", hand_before(head), button])
        settle(page)
        pull_trigger(page)

    press_scale()
    page.wait_for_function("window.twinview.xr.tabletop", timeout=WAIT_MS)
    table = page.evaluate(MODEL)
    assert table["across"] == pytest.approx(1.0, abs=0.01)  # a 1 m model on a virtual table
    assert table["base"][1] == pytest.approx(0.8, abs=0.01)
    head = page.evaluate(HEAD)
    assert math.dist(table["base"][::2], head["p"][::2]) == pytest.approx(1.0, abs=0.05)  # a step ahead
    assert page.evaluate("window.twinview.xr.panel.content.scale") == "Scale: table-top"
    screenshot(page, "xr-vr-tabletop")

    press_scale()  # back to 1:1, at the start pose
    page.wait_for_function("!window.twinview.xr.tabletop", timeout=WAIT_MS)
    settle(page)
    full = page.evaluate(MODEL)
    assert full["scale"] == 1 and page.evaluate("window.twinview.viewer.world.position.toArray()") == [0, 0, 0]
    assert page.evaluate(HEAD)["p"] == pytest.approx(start["p"], abs=0.05)
    assert page.errors == []


def test_labels_and_alarms_are_in_the_xr_scene_by_name(twin):
    live, browser = twin
    live.ingest([
        {"element": element_id(2), "prop": "flow", "value": 42},
        {"element": element_id(1), "prop": "temperature", "value": 95},
    ])  # fmt: skip
    page = enter_vr(browser, live.url)
    label = "window.twinview.viewer.scene.getObjectByName('xr-label:el:el-00002')"
    badge = "window.twinview.viewer.scene.getObjectByName('xr-alarm:el-00001')"
    page.wait_for_function(f"{label}?.visible && {badge}?.visible", timeout=WAIT_MS)
    assert page.evaluate(f"{label}.userData.lines") == ["Tank 2", "42 m3/h"]
    lines = page.evaluate(f"{badge}.userData.lines")
    assert lines[0] == "⚠ PipeSegment 1" and "temperature" in lines[1]
    texts = page.evaluate("""() => { const out = [];
      window.twinview.viewer.scene.getObjectByName('xr-labels').traverse((o) => out.push(...(o.userData.lines ?? [])));
      return out; }""")
    assert texts and not any("el-0" in t for t in texts)  # names, never ids
    # The label floats over its element, the badge above it.
    top = page.evaluate("window.twinview.app.twin.topOf('el-00002').toArray()")
    assert page.evaluate(f"{label}.position.toArray()") == pytest.approx(top)
    screenshot(page, "xr-labels-and-alarm")

    # Readable at distance: a label farther away is drawn larger, about 2.9° of view.
    page.evaluate("window.__xr.position.set(0, 1.6, 25)")
    settle(page, 3)
    size = page.evaluate(f"""() => {{ const s = {label}; const eye = window.twinview.viewer.renderer.xr.getCamera()
      .position; return [s.scale.y, s.getWorldPosition(eye.clone()).distanceTo(eye)]; }}""")
    assert size[1] > 20 and size[0] == pytest.approx(0.05 * size[1], rel=0.02)

    # Live: a new value redraws the label; the alarm's end removes the badge.
    live.ingest([{"element": element_id(2), "prop": "flow", "value": 77}])
    page.wait_for_function(f"{label}.userData.lines[1] === '77 m3/h'", timeout=WAIT_MS)

    # The XR panel lists the alarm by name; pressing it picks the element and turns the user to it.
    page.evaluate("window.__xr.position.set(0, 1.6, 0)")
    press(page, "right", "b-button")
    page.wait_for_function("window.twinview.xr.panel.visible", timeout=WAIT_MS)
    rows = page.evaluate("window.twinview.xr.panel.content.alarms")
    assert [r["text"] for r in rows] == ["PipeSegment 1 · temperature · alarm"]
    head = page.evaluate(HEAD)
    row = page.evaluate("window.twinview.xr.panel.pointOf('alarm:el-00001').toArray()")
    page.evaluate(AIM, ["right", hand_before(head), row])
    settle(page)
    pull_trigger(page)
    page.wait_for_function("window.twinview.app.twin.selected === 'el-00001'", timeout=WAIT_MS)
    settle(page)
    head = page.evaluate(HEAD)
    c = page.evaluate("""() => { const b = window.twinview.app.batches.boxOf('el-00001');
      return b.getCenter(b.min.clone()).toArray(); }""")
    to = [c[0] - head["p"][0], c[2] - head["p"][2]]
    f = head["f"]
    assert (to[0] * f[0] + to[1] * f[2]) / (math.hypot(*to) * math.hypot(f[0], f[2])) > math.cos(math.radians(15))

    # Back to normal, the alarm is "returned, unacknowledged" (ISA-18.2): its badge stays until someone acknowledges.
    live.ingest([{"element": element_id(1), "prop": "temperature", "value": 20}])
    page.wait_for_function("[...window.twinview.state.alarms.values()].every((a) => a.state === 'returned')")
    assert page.evaluate(f"Boolean({badge})")
    page.evaluate("window.twinview.viewer.renderer.xr.getSession().end()")
    page.wait_for_function("!window.twinview.viewer.scene.getObjectByName('xr-label:el:el-00002')", timeout=WAIT_MS)
    assert page.errors == []


# ---- The start pose, on the sample pump station: equipment inside four 3.5 m walls. ----

SAMPLE = REPO / "assets" / "pump_station.ifc"
BINDINGS = REPO / "assets" / "pump_station.bindings.yaml"
PROCEDURES = REPO / "assets" / "pump_station.procedure.yaml"
# Step 1 of the sample procedure ("walk down the standby pump") highlights P-102, M-102 and V-102; its camera
# stands outside the south wall.
WALKDOWN = ["241y89REDK4PiKHzE_yrjW", "04fn6XEQ9LnfhHJg3VxxNf", "0gf2PeruXV9AWrz701z5qo"]
P_101 = "1AiWluxinM89dwW6lBggzg"

# The area of interest: the elements with live data, rules or alarms (docs/CLIENT.md, "Start pose").
AREA = """() => { const tv = window.twinview; const s = tv.state; const b = tv.app.batches;
  const ids = [...new Set([...s.props.keys(), ...s.visuals.keys()])].filter((id) => b.isVisible(id));
  let box = null; for (const id of ids) box = box ? box.union(b.elements.get(id).box) : b.elements.get(id).box.clone();
  return {ids, center: box.getCenter(box.min.clone()).toArray()}; }"""
# Of the area's elements, how many the eye sees: the first element on the way to each one's centre is one of them.
SEEN_FROM = """([eye, ids]) => { const tv = window.twinview; const V = tv.viewer.camera.position.constructor;
  const rc = new tv.viewer.raycaster.constructor(); const inArea = new Set(ids); let seen = 0;
  for (const id of ids) { const c = tv.app.batches.elements.get(id).box.getCenter(new V());
    const d = c.clone().sub(new V(...eye)); rc.set(new V(...eye), d.clone().normalize()); rc.far = d.length();
    const hit = tv.viewer.pickRay(rc); if (!hit || inArea.has(tv.app.batches.idOf(hit))) seen++; }
  return seen; }"""


@pytest.fixture(scope="module")
def served_sample(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("sample")
    build_scene(str(SAMPLE), "-o", str(root / "pump_station"))
    with serve_scene(root / "pump_station", BINDINGS, root / "data", simulate=True, procedures=PROCEDURES) as srv:
        yield srv, browser, load_secret(root / "data")


@pytest.fixture
def sample(served_sample):
    """The served sample, the browser and the data dir's secret; the test's pages are closed after it."""
    srv, browser, secret = served_sample
    yield srv, browser, secret
    for context in browser.contexts:
        context.close()


def test_the_first_desktop_view_faces_the_area_of_interest(sample):
    srv, browser, _ = sample
    page = open_viewer(browser, srv.url)
    area = page.evaluate(AREA)
    assert len(area["ids"]) >= 10
    view = page.evaluate("""() => { const v = window.twinview.viewer; return {eye: v.camera.position.toArray(),
      target: v.controls.target.toArray(), fwd: v.camera.getWorldDirection(v.camera.position.clone()).toArray()}; }""")
    assert view["target"] == pytest.approx(area["center"], abs=0.01)
    to = [area["center"][k] - view["eye"][k] for k in range(3)]
    assert sum(to[k] * view["fwd"][k] for k in range(3)) / math.hypot(*to) > math.cos(math.radians(1))
    seen = page.evaluate(SEEN_FROM, [view["eye"], area["ids"]])
    assert seen >= 0.9 * len(area["ids"])  # over the walls, not through them
    screenshot(page, "start-view-desktop")
    assert page.errors == []


def test_entering_vr_faces_the_area_of_interest_not_a_wall(sample):
    srv, browser, _ = sample
    page = enter_vr(browser, srv.url)
    area = page.evaluate(AREA)
    head = page.evaluate(HEAD)
    to = [area["center"][0] - head["p"][0], area["center"][2] - head["p"][2]]
    f = head["f"]
    cos = (to[0] * f[0] + to[1] * f[2]) / (math.hypot(*to) * math.hypot(f[0], f[2]))
    assert cos > math.cos(math.radians(10))  # facing the area's centre
    # What the user looks at first is equipment, not a wall, and most of the area is in sight.
    ahead = page.evaluate(
        """(p) => { const tv = window.twinview; const V = tv.viewer.camera.position.constructor;
      const c = tv.viewer.renderer.xr.getCamera();
      const f = new V(0, 0, -1).applyQuaternion(c.quaternion).setY(0).normalize();
      const rc = new tv.viewer.raycaster.constructor(new V(...p), f); const hit = tv.viewer.pickRay(rc);
      const id = hit && tv.app.batches.idOf(hit); return id && tv.app.catalog.get(id).class; }""",
        head["p"],
    )
    assert ahead is not None and ahead != "IfcWall"
    assert page.evaluate(SEEN_FROM, [head["p"], area["ids"]]) >= 0.7 * len(area["ids"])
    assert head["p"][1] == pytest.approx(EYE, abs=0.05)  # standing on the pump room's floor (y 0)
    publish(screenshot(page, "start-pose-vr"), "xr")
    assert page.errors == []


def test_entering_vr_during_a_procedure_or_presentation_faces_what_it_is_about(sample):
    """The sample's step 1 looks at the standby pump from outside the south wall; a trainee entering VR then
    stands inside the pump room, facing the step's elements, not the wall. While someone presents, the element
    the presenter looks at comes first."""
    srv, browser, secret = sample
    session = "pump_station"  # the scene's default session
    lead = open_viewer(
        browser.new_context(), f"{srv.url}/?session={session}&token={issue(secret, session, 'Pia', 'presenter')}"
    )
    lead.wait_for_function("document.querySelectorAll('#procedure-panel select.procedure-name option').length > 0")
    lead.click("#procedure-panel button.start")
    page = enter_vr(browser, f"{srv.url}/?session={session}&token={issue(secret, session, 'Tom', 'annotator')}")
    assert page.evaluate("window.twinview.collab.procedure.step.highlight") == WALKDOWN
    head = page.evaluate(HEAD)
    center = page.evaluate(
        """(ids) => { const b = window.twinview.app.batches; let box = null;
          for (const id of ids) box = box ? box.union(b.elements.get(id).box) : b.elements.get(id).box.clone();
          return box.getCenter(box.min.clone()).toArray(); }""",
        WALKDOWN,
    )
    to = [center[0] - head["p"][0], center[2] - head["p"][2]]
    f = head["f"]
    assert (to[0] * f[0] + to[1] * f[2]) / (math.hypot(*to) * math.hypot(f[0], f[2])) > math.cos(math.radians(10))
    assert 0.25 < head["p"][0] < 10 and -7 < head["p"][2] < 0  # inside the pump room's walls
    assert page.evaluate(SEEN_FROM, [head["p"], WALKDOWN]) == len(WALKDOWN)
    screenshot(page, "start-pose-vr-procedure")

    # The lead presents, looking at P-101 from beside it: the presenter's view comes first.
    page.evaluate("window.twinview.viewer.renderer.xr.getSession().end()")
    lead.click("#btn-present")
    lead.evaluate(
        """(id) => { const v = window.twinview.viewer; const b = window.twinview.app.batches.boxOf(id);
          v.flyTo(v.camera.position.clone().set(4.5, 2.0, -6.5), b.getCenter(b.min.clone()), 0); }""",
        P_101,
    )
    page.wait_for_function(
        "window.twinview.collab.presenter.state?.viewpoint?.camera.position[2] === -6.5", timeout=FRAMES_TIMEOUT_MS
    )
    page.locator("#btn-vr").click()
    page.wait_for_function("window.twinview.viewer.renderer.xr.isPresenting", timeout=FRAMES_TIMEOUT_MS)
    settle(page, 5)
    head = page.evaluate(HEAD)
    c = page.evaluate(
        "(id) => { const b = window.twinview.app.batches.boxOf(id); return b.getCenter(b.min.clone()).toArray(); }",
        P_101,
    )
    to = [c[0] - head["p"][0], c[2] - head["p"][2]]
    f = head["f"]
    assert (to[0] * f[0] + to[1] * f[2]) / (math.hypot(*to) * math.hypot(f[0], f[2])) > math.cos(math.radians(10))
    assert page.errors == [] and lead.errors == []
