"""Operations in a real browser on a real server: the alarm list follows the ISA-18.2 life cycle (names, state,
value with unit, acknowledge and shelve by role, by keyboard too, a history panel), and live values say how far
to trust them (age, stale source, lost server, bad quality) in the properties panel, on the model's labels and
in alarm items."""

from __future__ import annotations

import pytest

from tests.web_helpers import (
    BINDINGS,
    WAIT_MS,
    element_id,
    live_twin,
    open_viewer,
    publish,
    screenshot,
    session_joiner,
)
from viewer_server.auth import load_secret

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION = "synthetic"  # the synthetic twin's scene id: its default session
TEMP = element_id(1)  # temperature thresholds: warning 50, alarm 80 degC (alarm "operations.rules[1]")
FLOW = element_id(2)  # labelled "{value:.0f} {unit}"
PRESSURE = element_id(0)
# The pressure transmitter reports every few hundred ms at most: silent for a second, it is stale.
STALE_BINDINGS = BINDINGS.replace("key: el-00000.pressure}", "key: el-00000.pressure, stale_after: 1}")


@pytest.fixture
def live(tmp_path, browser):
    """The synthetic twin served, with `join(user, role)` opening a viewer through a join link."""
    with live_twin(tmp_path, count=24, bindings=STALE_BINDINGS) as lt:
        lt.join = session_joiner(browser, lt.url, load_secret(tmp_path / "data"), SESSION)
        yield lt


def _alarm(page, state: str):
    item = page.locator(f"#alarms li.alarm.state-{state}")
    item.wait_for(timeout=WAIT_MS)
    return item


def test_an_alarm_is_acknowledged_by_an_operator_with_the_keyboard_and_clears(live):
    otto = live.join("otto", "operator")
    vic = live.join("vic", "viewer")
    live.ingest([{"element": TEMP, "prop": "temperature", "value": 95.0}])
    item = _alarm(vic, "unacknowledged")
    text = item.inner_text()
    assert live.twin.names[TEMP] in text and "temperature 95 degC" in text and "UNACKNOWLEDGED" in text.upper()
    assert TEMP not in text  # the name, not the id
    assert vic.locator("#alarm-count").inner_text() == "1"
    assert vic.locator("#alarms .alarm-ack, #alarms .alarm-shelve").count() == 0  # a viewer may not answer alarms
    live.ingest([{"element": TEMP, "prop": "temperature", "value": 99.5}])  # still an alarm: no transition
    vic.wait_for_function("document.querySelector('#alarms .alarm-value').textContent === 'temperature 99.5 degC'")
    label = vic.locator("#alarms .alarm-go").get_attribute("aria-label")
    assert live.twin.names[TEMP] in label and "unacknowledged" in label
    _alarm(otto, "unacknowledged")
    assert otto.locator("#alarms .alarm-oos").count() == 0  # out of service is the admin's

    # Keyboard only: focus the alarm, Enter shows its element, Tab reaches Acknowledge, Space presses it.
    otto.focus("#alarms .alarm-go")
    otto.keyboard.press("Enter")
    otto.wait_for_function("id => window.twinview.app.twin.selected === id", arg=TEMP)
    otto.keyboard.press("Tab")
    assert otto.evaluate("document.activeElement.className") == "alarm-ack"
    otto.keyboard.press("Space")
    for page in (otto, vic):
        _alarm(page, "acknowledged")
    assert "acknowledged by otto" in vic.locator("#alarms li.alarm").inner_text()
    assert otto.evaluate("document.activeElement.className") == "alarm-go"  # the focus stays on the alarm
    vic.locator("#alarm-history summary").click()
    newest = vic.locator("#alarm-history li.alarm-event").first
    assert newest.get_attribute("data-kind") == "alarm_acknowledged" and "by otto" in newest.inner_text()
    publish(screenshot(vic, "ops-alarm-acknowledged"), "alarms")

    live.ingest([{"element": TEMP, "prop": "temperature", "value": 20.0}])
    vic.locator("#alarms li.empty").wait_for(timeout=WAIT_MS)
    vic.wait_for_function("document.querySelector('#alarm-history li.alarm-event')?.dataset.kind === 'alarm_cleared'")
    kinds = vic.eval_on_selector_all("#alarm-history li.alarm-event", "els => els.map(e => e.dataset.kind)")
    assert kinds == ["alarm_cleared", "alarm_acknowledged", "alarm_raised"]
    for page in (otto, vic):
        assert not page.errors, page.errors
        page.context.close()


def test_a_returned_alarm_stays_until_shelved_or_acknowledged_and_refusals_show_in_place(live):
    otto = live.join("otto", "operator")
    olga = live.join("olga", "operator")
    live.ingest([{"element": TEMP, "prop": "temperature", "value": 95.0}])
    live.ingest([{"element": TEMP, "prop": "temperature", "value": 20.0}])
    item = _alarm(otto, "returned")
    assert "RETURNED" in item.inner_text().upper()
    _alarm(olga, "returned")

    otto.locator("#alarms .alarm-shelve").click()
    dialog = otto.locator("dialog.alarm-dialog")
    assert dialog.is_visible() and live.twin.names[TEMP] in dialog.inner_text()
    dialog.locator(".alarm-confirm").click()  # no reason yet: the dialog asks for one
    assert dialog.is_visible() and "Say why" in dialog.inner_text()
    dialog.locator("select.alarm-minutes").select_option("15")
    dialog.locator("input.alarm-reason-input").fill("TT-1 is being recalibrated")
    dialog.locator(".alarm-confirm").click()
    shelved = _alarm(olga, "shelved")
    assert "Reason: TT-1 is being recalibrated" in shelved.inner_text() and "shelved by otto" in shelved.inner_text()
    assert olga.locator("#alarm-count").is_hidden()  # shelved: nothing asks for attention

    # Olga's view falls behind; what she asks for then is refused, and she reads why beside the alarm.
    olga.evaluate("window.twinview.state.applyDelta = () => false")
    otto.locator("#alarms .alarm-unshelve").click()
    otto.locator("#alarms li.empty").wait_for(timeout=WAIT_MS)  # unshelved while its condition is gone: normal
    olga.locator("#alarms .alarm-unshelve").click()
    error = olga.locator("#alarms .alarm-error")
    error.wait_for(timeout=WAIT_MS)
    assert error.inner_text().startswith("not_found:")
    assert olga.locator("#notice").is_hidden()  # said once, where it happened
    screenshot(olga, "ops-alarm-refused")
    for page in (otto, olga):
        assert not page.errors, page.errors
        page.context.close()


def _cell(page, prop: str):
    return page.locator(f'#properties tr[data-prop="{prop}"] td.value')


def _wait_for_cell(page, prop: str, condition: str) -> None:
    """Wait until `condition` (JavaScript about `c`, the value cell of `prop` in the properties panel) holds, the
    cell looked up afresh each time: the panel redraws its rows, so a cell found once may be detached (its
    computed style empty) by the time its style is read, which a loaded machine makes likely."""
    find = f"document.querySelector('#properties tr[data-prop=\"{prop}\"] td.value')"
    page.wait_for_function(f"() => {{ const c = {find}; return !!c && ({condition}); }}", timeout=WAIT_MS)


def test_live_values_show_their_age_and_grey_out_when_stale_or_disconnected(browser, live):
    page = open_viewer(browser, live.url)
    live.ingest(
        [
            {"element": PRESSURE, "prop": "pressure", "value": 3.0},
            {"element": FLOW, "prop": "flow", "value": 120.0},
            {"element": TEMP, "prop": "temperature", "value": 90.0},
        ]
    )
    page.evaluate("id => window.twinview.select(id)", FLOW)
    cell = _cell(page, "flow")
    cell.wait_for()
    page.wait_for_function("() => document.querySelector('#properties td.value')?.dataset.age?.endsWith(' s')")
    first = cell.get_attribute("data-age")
    page.wait_for_function("a => document.querySelector('#properties td.value').dataset.age !== a", arg=first)
    assert cell.get_attribute("data-stale") is None and cell.get_attribute("data-q") is None
    tag = page.locator(".labels .tag[data-live]")
    tag.wait_for()
    assert tag.inner_text() == "120 m3/h" and tag.get_attribute("data-age")
    alarm_value = page.locator("#alarms .alarm-value[data-live]")
    alarm_value.wait_for(timeout=WAIT_MS)

    # A source that says its value is bad: a badge and a style, in the panel and on the model.
    live.ingest([{"element": FLOW, "prop": "flow", "value": 121.0, "quality": "bad"}])
    page.wait_for_function("() => document.querySelector('.labels .tag[data-live]')?.dataset.q === 'bad'")
    _wait_for_cell(page, "flow", """c.dataset.q === 'bad' && getComputedStyle(c, '::before').content === '"bad"'""")

    # A silent source: the server says so after its stale_after (1 s), and says it again when it speaks.
    page.evaluate("id => window.twinview.select(id)", PRESSURE)
    _wait_for_cell(page, "pressure", "c.dataset.stale?.startsWith('no data for') && getComputedStyle(c).opacity < 1")
    screenshot(page, "ops-stale-value")
    live.ingest([{"element": PRESSURE, "prop": "pressure", "value": 3.0}])  # the same value: fresh all the same
    page.wait_for_function("() => !document.querySelector('#properties tr[data-prop=pressure] td.value').dataset.stale")

    # The server is gone: everything it sent is greyed with the reason, until it is back.
    page.evaluate("window.twinview.session.drop(4000)")
    for selector in ("#properties td.value", ".labels .tag[data-live]", "#alarms .alarm-value"):
        page.wait_for_function(
            "s => document.querySelector(s)?.dataset.stale === 'server disconnected'", arg=selector, timeout=WAIT_MS
        )
    screenshot(page, "ops-disconnected")
    page.wait_for_function("window.twinview.session.status === 'live'", timeout=WAIT_MS)
    page.wait_for_function("() => !document.querySelector('.labels .tag[data-live]').dataset.stale")
    assert not page.errors, page.errors
    page.close()
