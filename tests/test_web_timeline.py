"""The time machine in real browsers on a real server (issue 13; docs/CLIENT.md "Time machine"): readings fed
with known source times; seeking shows the twin as it was (values, colours, alarms) and no live value mixes
in; playing moves forward in time order; "Back to live" brings the present back; an alarm's marker on the
timeline goes to the alarm's moment; the chart draws the stored samples with their unit and seeks on click;
Compare colours the element that changed; a presenter's replay reaches a follower, who cannot fight it and
can break away; on a phone the timeline fits and every control is a finger wide."""

from __future__ import annotations

import time

import pytest

from tests.web_helpers import (
    BINDINGS,
    element_id,
    live_twin,
    open_viewer,
    publish,
    screenshot,
    session_joiner,
)
from viewer_server.auth import load_secret

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT = 30000  # ms: two shared cores, eight engineers
PUMP = element_id(0)  # pressure, ramped blue (0 bar) … red (6 bar)
HOT = element_id(1)  # temperature, alarm above 80 degC
STEADY = element_id(5)  # pressure too, never changes
QUIET = element_id(6)  # no bound property
SESSION = "synthetic"
TIMELINE_BINDINGS = BINDINGS.replace(
    "  - {element: el-00004, prop: level",
    "  - {element: el-00005, prop: pressure, unit: bar, key: el-00005.pressure}\n  - {element: el-00004, prop: level",
)
BLUE, RED = "#0000ff", "#ff0000"

# The history every test sees (source times, s before the fixture started): pressure 0 → 6 → 1.5 bar,
# then 3 bar live; the steady element at 2 bar throughout.
HISTORY = [(-300, 0.0), (-240, 6.0), (-180, 1.5)]
LIVE_PRESSURE = 3.0


@pytest.fixture(scope="module")
def world(tmp_path_factory, browser):
    root = tmp_path_factory.mktemp("timeline")
    with live_twin(root, count=24, bindings=TIMELINE_BINDINGS) as live:
        t0 = time.time()
        for dt, value in HISTORY:
            live.ingest(
                [
                    {"element": PUMP, "prop": "pressure", "value": value, "ts": t0 + dt},
                    {"element": STEADY, "prop": "pressure", "value": 2.0, "ts": t0 + dt},
                ]
            )
        live.ingest([{"element": PUMP, "prop": "pressure", "value": LIVE_PRESSURE}])
        yield live, browser, t0, load_secret(root / "data")


@pytest.fixture
def page(world):
    live, browser, _, _ = world
    page = open_viewer(browser, live.url)
    _wait_pressure(page, LIVE_PRESSURE)
    page.wait_for_function("window.twinview.timeline.replay.available", timeout=WAIT)
    yield page
    assert not page.errors, page.errors
    page.close()


def _wait_pressure(page, value: float, element: str = PUMP) -> None:
    page.wait_for_function(
        "([id, v]) => window.twinview.state.props.get(id)?.get('pressure')?.v === v", arg=[element, value], timeout=WAIT
    )


def _wait_replay_at(page, t: float, tol: float = 0.01) -> None:
    page.wait_for_function(
        """([t, tol]) => { const r = window.twinview.timeline.replay;
        return r.mode === 'replay' && Math.abs(r.asOf - t) <= tol; }""",
        arg=[t, tol],
        timeout=WAIT,
    )


def _track_x(page, t: float) -> tuple[float, float]:
    """Where moment `t` is on the timeline's track (client px)."""
    return page.evaluate(
        """t => { const bar = window.twinview.timeline.bar; const { from, to } = bar.window();
        const r = bar.track.getBoundingClientRect();
        return [r.left + ((t - from) / (to - from)) * r.width, r.top + r.height / 2]; }""",
        t,
    )


def test_seek_shows_the_past_and_back_to_live_the_present(world, page):
    live, _, t0, _ = world
    page.locator(".tl-span").select_option("900")  # a quarter hour: the history is a few px per second wide
    x, y = _track_x(page, t0 - 210)  # between the 6 bar (-240) and the 1.5 bar (-180) samples
    page.mouse.move(x - 40, y)
    page.mouse.down()
    page.mouse.move(x, y, steps=4)  # a drag: the replay follows it
    page.mouse.up()
    page.wait_for_function("window.twinview.timeline.replay.mode === 'replay'", timeout=WAIT)
    _wait_pressure(page, 6.0)
    page.wait_for_function("id => window.twinview.colorOf(id) === '#ff0000'", arg=PUMP, timeout=WAIT)
    banner = page.locator(".tl-banner")
    assert banner.inner_text().startswith("REPLAY — ")
    page.evaluate("id => window.twinview.select(id)", PUMP)
    assert page.locator("#properties h4").first.inner_text() == "Values then (replay)"
    assert "6 bar" in page.locator("#properties tr[data-prop=pressure] td.value").inner_text()
    # Its age is as of the moment shown (the 6 bar sample is ~30 s older than it), not as of now (4 min).
    page.wait_for_function(
        "() => /^\\d+ s$/.test(document.querySelector('#properties tr[data-prop=pressure] [data-age]')?.dataset.age)",
        timeout=WAIT,
    )
    assert page.evaluate("document.body.dataset.replay") == "own"
    assert page.locator("#timeline").get_attribute("data-mode") == "replay"
    screenshot(page, "timeline-replay")

    # No live value mixes in: a reading now does not reach the replayed view (a seek afterwards is answered
    # after any live delta the server could have sent first).
    page.evaluate(
        """id => { window.__mixed = false; window.twinview.state.addEventListener('delta', () => {
        if (window.twinview.state.props.get(id)?.get('pressure')?.v === 5.5) window.__mixed = true; }); }""",
        PUMP,
    )
    live.ingest([{"element": PUMP, "prop": "pressure", "value": 5.5}])
    page.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 300)
    _wait_replay_at(page, t0 - 300)
    _wait_pressure(page, 0.0)
    page.wait_for_function("id => window.twinview.colorOf(id) === '#0000ff'", arg=PUMP, timeout=WAIT)
    assert page.evaluate("window.__mixed") is False

    # The keyboard: → steps forward by the speed's second, End goes back to live.
    page.locator(".tl-track").focus()
    page.keyboard.press("ArrowRight")
    _wait_replay_at(page, t0 - 299)
    page.locator(".tl-live").click()
    page.wait_for_function("window.twinview.timeline.replay.mode === 'live'", timeout=WAIT)
    _wait_pressure(page, 5.5)
    assert banner.inner_text() == "LIVE"
    assert page.locator("#properties h4").first.inner_text() == "Live values"
    assert page.evaluate("document.body.dataset.replay") == ""
    assert page.locator(".tl-live").is_hidden()
    assert page.locator("#status").inner_text().startswith("live")  # not "resynced": live is no failed resume
    assert page.locator("#notice").is_hidden()
    live.ingest([{"element": PUMP, "prop": "pressure", "value": LIVE_PRESSURE}])  # as the other tests expect it
    _wait_pressure(page, LIVE_PRESSURE)


def test_play_moves_forward_in_time_order(world, page):
    _, _, t0, _ = world
    page.evaluate(
        """id => { window.__seen = []; const r = window.twinview.timeline.replay;
        r.addEventListener('change', () => { if (r.mode !== 'replay') return;
          window.__seen.push([r.asOf, window.twinview.state.props.get(id)?.get('pressure')?.v ?? null,
            window.twinview.state.visuals.get(id)?.color ?? null]); }); }""",
        PUMP,
    )
    page.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 300)  # the oldest sample
    _wait_replay_at(page, t0 - 300)
    page.locator(".tl-speed").select_option("100")
    page.locator(".tl-play").click()
    page.wait_for_function("window.twinview.timeline.replay.playing", timeout=WAIT)
    # It plays on to the newest history and stops there by itself (§14: playing never runs into live).
    page.wait_for_function(
        "t => !window.twinview.timeline.replay.playing && window.twinview.timeline.replay.asOf > t",
        arg=t0,
        timeout=WAIT,
    )
    seen = page.evaluate("window.__seen")
    times = [t for t, _, _ in seen]
    assert times == sorted(times), times
    values = [v for _, v, _ in seen if v is not None]
    changes = [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]
    # Every sample, in the order of their source times, up to the newest (the live value of now).
    assert changes[:3] == [0.0, 6.0, 1.5] and changes[-1] == LIVE_PRESSURE, changes
    # ...and the colours the frames bring with them (the ramp's: blue at 0 bar, red at 6, 1.5 and 3 in between), drawn.
    colors = [c for _, _, c in seen if c is not None]
    changes = [c for i, c in enumerate(colors) if i == 0 or c != colors[i - 1]]
    assert changes[:3] == [BLUE, RED, "#4000bf"] and changes[-1] == "#800080", changes
    assert page.evaluate("id => window.twinview.colorOf(id)", PUMP) == "#800080"
    assert "×100 (paused)" in page.locator(".tl-banner").inner_text()


def test_an_alarm_marker_goes_to_the_alarms_moment(world, page):
    live = world[0]
    live.ingest([{"element": HOT, "prop": "temperature", "value": 95.0}])
    page.wait_for_function("window.twinview.state.alarms.size >= 1", timeout=WAIT)
    marker = page.locator(".tl-marker.alarm[data-kind=alarm_raised]").last
    marker.wait_for(timeout=WAIT)
    name = live.twin.names[HOT]
    label = marker.get_attribute("aria-label")
    assert name in label and HOT not in label  # names, not ids
    t = float(marker.get_attribute("data-t"))
    live.ingest([{"element": HOT, "prop": "temperature", "value": 20.0}])  # back to normal now: not at t
    page.wait_for_function(
        "() => [...window.twinview.state.alarms.values()].every((a) => a.state !== 'unacknowledged')", timeout=WAIT
    )
    # Its own click, not the mouse's: the return's marker, listed by the next refresh of the events, is less than a
    # pixel away (4 px wide, later in the list, so on top) and takes a mouse click there; previous / next (below)
    # are the way to markers that cover each other.
    marker.dispatch_event("click")
    _wait_replay_at(page, t)
    alarm = page.locator("#alarms li.alarm", has_text=name)
    alarm.wait_for(timeout=WAIT)
    assert "unacknowledged" in alarm.get_attribute("class")  # as it was then, not returned as it is now
    # Previous / next event walk the markers: to the one before (the server's start says which rules are in force:
    # `rules_changed`, seconds before the alarm), and forward to the alarm again.
    page.locator(".tl-prev").click()
    page.wait_for_function(
        """t => { const r = window.twinview.timeline.replay, bar = window.twinview.timeline.bar;
        return r.asOf < t - 0.5 && bar.events.some((e) => e.t === r.asOf); }""",
        arg=t,
        timeout=WAIT,
    )
    page.locator(".tl-next").click()
    _wait_replay_at(page, t)
    page.locator(".tl-live").click()
    page.wait_for_function("window.twinview.timeline.replay.mode === 'live'", timeout=WAIT)


def test_the_chart_draws_the_stored_samples_with_their_unit(world, page):
    _, _, t0, _ = world
    page.evaluate("id => window.twinview.select(id)", PUMP)
    toggle = page.locator("#properties tr[data-prop=pressure] button.chart-toggle")
    toggle.click()
    page.wait_for_function("window.twinview.timeline.chart.plot !== null", timeout=WAIT)
    assert toggle.get_attribute("aria-pressed") == "true"
    chart = page.locator("#chart-panel")
    assert "bar" in page.evaluate("window.twinview.timeline.chart.plot.axes.map((a) => a.label)")  # the value axis
    series = page.evaluate(
        "(() => { const s = window.twinview.timeline.chart.series[0]; return {t: s.t, last: s.last, unit: s.unit}; })()"
    )
    pts = [(t, v) for t, v in zip(series["t"], series["last"], strict=True) if t0 - 400 <= t]
    assert [v for _, v in pts][:3] == [0.0, 6.0, 1.5]
    assert series["unit"] == "bar"
    drawn = page.evaluate("window.twinview.timeline.chart.plot.data[0].length")
    assert drawn == len(series["t"])  # every stored sample, raw (the hour holds fewer than the chart's pixels)
    # Hover: a tooltip with the value and unit, and the time on the timeline.
    over = chart.locator(".u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + over["height"] / 2)
    page.locator(".chart-tooltip").wait_for(timeout=WAIT)
    assert "bar" in page.locator(".chart-tooltip").inner_text()
    assert page.locator(".tl-hover").is_visible()
    # A click seeks the replay to the moment under the pointer.
    page.mouse.click(over["x"] + over["width"] * 0.5, over["y"] + over["height"] / 2)
    page.wait_for_function("window.twinview.timeline.replay.mode === 'replay'", timeout=WAIT)
    publish(screenshot(page, "timeline-chart"), "timeline")
    page.locator(".tl-live").click()
    page.wait_for_function("window.twinview.timeline.replay.mode === 'live'", timeout=WAIT)
    toggle.click()
    page.wait_for_function("window.twinview.timeline.chart.plot === null", timeout=WAIT)
    assert chart.is_hidden()


def test_compare_colours_the_element_that_changed(world, page):
    _, _, t0, _ = world
    page.locator(".tl-compare-open").click()
    panel = page.locator("#compare-panel")
    panel.wait_for()
    panel.locator(".compare-prop").select_option("pressure")
    page.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 290)
    _wait_replay_at(page, t0 - 290)
    panel.locator(".compare-a").click()
    page.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 230)
    _wait_replay_at(page, t0 - 230)
    panel.locator(".compare-b").click()
    page.wait_for_function("window.twinview.timeline.compare.changes !== null", timeout=WAIT)
    colors = page.evaluate("ids => ids.map((id) => window.twinview.colorOf(id))", [PUMP, STEADY, QUIET])
    assert colors == ["#e5533d", "#8a8f98", "#3a3f47"], colors  # went up: red; the same: grey; no data: dimmed
    legend = panel.locator(".compare-legend").inner_text()
    assert "+6 bar" in legend and world[0].twin.names[PUMP] in legend
    screenshot(page, "timeline-compare")
    # A replay's colours do not undo the comparison; Clear does.
    page.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 180)
    _wait_replay_at(page, t0 - 180)
    assert page.evaluate("id => window.twinview.colorOf(id)", PUMP) == "#e5533d"
    panel.locator(".compare-clear").click()
    page.wait_for_function("id => window.twinview.colorOf(id) !== '#e5533d'", arg=PUMP, timeout=WAIT)
    page.locator(".tl-live").click()
    page.wait_for_function("window.twinview.timeline.replay.mode === 'live'", timeout=WAIT)


def test_a_presenters_replay_reaches_a_follower(world):
    live, browser, t0, secret = world
    join = session_joiner(browser, live.url, secret, SESSION)
    ana = join("ana", "presenter")
    ben = join("ben", "viewer")
    try:
        ana.locator("#btn-present").click()
        ben.wait_for_function("window.twinview.collab.presenter.following", timeout=WAIT)
        ana.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 230)
        _wait_replay_at(ben, t0 - 230)
        _wait_pressure(ben, 6.0)
        banner = ben.locator(".tl-banner")
        ben.wait_for_function(
            "() => document.querySelector('.tl-banner').textContent.includes('driven by')", timeout=WAIT
        )
        presenter_name = ana.evaluate("window.twinview.session.welcome.name")
        assert f"REPLAY — driven by {presenter_name}" in banner.inner_text()
        assert ben.evaluate("document.body.dataset.replay") == "followed"
        assert ben.locator(".tl-play").is_disabled() and ben.locator(".tl-speed").is_disabled()
        assert ben.locator(".tl-track").get_attribute("aria-disabled") == "true"
        assert "driven by" not in ana.locator(".tl-banner").inner_text()  # the presenter drives it
        screenshot(ben, "timeline-follower")
        # The follower's track does nothing; the presenter plays on for both.
        x, y = _track_x(ben, t0 - 100)
        ben.mouse.click(x, y)
        ana.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 300)
        _wait_replay_at(ben, t0 - 300)
        _wait_pressure(ben, 0.0)
        # Breaking away: the follower's own replay from that moment, its controls back.
        ben.locator(".tl-break").click()
        ben.wait_for_function("!window.twinview.timeline.replay.followed", timeout=WAIT)
        assert not ben.locator(".tl-play").is_disabled()
        assert "driven by" not in banner.inner_text()
        ana.evaluate("t => window.twinview.timeline.bar.seek(t)", t0 - 180)
        _wait_replay_at(ana, t0 - 180)
        assert ben.evaluate("window.twinview.timeline.replay.asOf") == pytest.approx(t0 - 300, abs=0.01)
        # The presenter returns to live; the follower, back to following, with it.
        ben.locator(".tl-live").click()
        _wait_replay_at(ben, t0 - 180)
        ana.locator(".tl-live").click()
        ben.wait_for_function("window.twinview.timeline.replay.mode === 'live'", timeout=WAIT)
        _wait_pressure(ben, LIVE_PRESSURE)
    finally:
        ana.context.close()
        ben.context.close()


def test_the_timeline_fits_a_phone(world):
    live, browser, t0, _ = world
    from tests.test_web_mobile import NO_SIDEWAYS_SCROLL, PHONE, SMALL_TARGETS, TAP_PX

    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = open_viewer(context, live.url)
        page.wait_for_function("window.twinview.timeline.replay.available", timeout=WAIT)
        bar = page.locator("#timeline").bounding_box()
        view = page.locator("#view").bounding_box()
        assert bar["x"] >= 0 and bar["x"] + bar["width"] <= PHONE["width"]
        assert bar["y"] + bar["height"] <= view["y"] + view["height"] + 1
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        assert page.evaluate(SMALL_TARGETS, ["#timeline", TAP_PX]) == []
        x, y = _track_x(page, t0 - 230)
        page.touchscreen.tap(x, y)
        page.wait_for_function("window.twinview.timeline.replay.mode === 'replay'", timeout=WAIT)
        page.locator(".tl-live").tap()
        page.wait_for_function("window.twinview.timeline.replay.mode === 'live'", timeout=WAIT)
        screenshot(page, "timeline-phone")
        assert not page.errors, page.errors
    finally:
        context.close()
