"""Twin state: writes that change nothing produce no change; history is bounded and ordered."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from scene.state import Change, PropertyValue, Reading, TwinState


def test_first_write_is_a_change_and_carries_source_and_receive_time() -> None:
    s = TwinState()
    change = s.apply(Reading("P1", "pressure", 4.2, "bar", ts=100.0), rx=101.0)
    assert change == Change("P1", "pressure", PropertyValue(4.2, "bar", 100.0, 101.0, "good"))
    assert s.get("P1", "pressure") == change.current


def test_missing_source_time_uses_receive_time() -> None:
    s = TwinState()
    change = s.apply(Reading("P1", "pressure", 4.2), rx=50.0)
    assert change is not None and change.current.ts == 50.0


def test_same_value_unit_and_quality_is_no_change_but_is_still_a_sample() -> None:
    s = TwinState()
    s.apply(Reading("P1", "p", 1.0, "bar", 1.0), 1.0)
    assert s.apply(Reading("P1", "p", 1.0, "bar", 2.0), 2.0) is None
    assert s.get("P1", "p").ts == 1.0  # the current value keeps the time of its last change
    assert s.history("P1", "p") == [(1.0, 1.0), (2.0, 1.0)]


def test_a_silent_source_is_marked_stale_and_its_next_sample_is_a_change_even_with_the_same_value() -> None:
    s = TwinState()
    assert s.mark_stale("P1", "p", 1.0) is None  # no value yet: nothing to mark
    s.apply(Reading("P1", "p", 1.0, "bar", 1.0), 1.0)
    stale = s.mark_stale("P1", "p", 1.0)
    assert stale is not None and stale.current == PropertyValue(1.0, "bar", 1.0, 1.0, "good", silent_since=1.0)
    assert s.mark_stale("P1", "p", 1.0) is None  # stale already
    fresh = s.apply(Reading("P1", "p", 1.0, "bar", 900.0), 900.0)
    assert fresh is not None and fresh.current == PropertyValue(1.0, "bar", 900.0, 900.0, "good")
    assert s.apply(Reading("P1", "p", 1.0, "bar", 901.0), 901.0) is None  # fresh again: same value, no change


def test_unit_or_quality_change_is_a_change() -> None:
    s = TwinState()
    s.apply(Reading("P1", "p", 1.0, "bar", 1.0), 1.0)
    assert s.apply(Reading("P1", "p", 1.0, "kPa", 2.0), 2.0) is not None
    assert s.apply(Reading("P1", "p", 1.0, "kPa", 3.0, "bad"), 3.0) is not None


def test_bool_to_number_is_a_change_even_though_true_equals_one() -> None:
    s = TwinState()
    s.apply(Reading("P1", "running", True, ts=1.0), 1.0)
    assert s.apply(Reading("P1", "running", 1, ts=2.0), 2.0) is not None


def test_nan_repeated_is_no_change() -> None:
    s = TwinState()
    s.apply(Reading("P1", "p", math.nan, ts=1.0), 1.0)
    assert s.apply(Reading("P1", "p", math.nan, ts=2.0), 2.0) is None


def test_out_of_order_sample_goes_into_history_in_place_but_not_into_current() -> None:
    s = TwinState()
    s.apply(Reading("P1", "p", 1.0, ts=10.0), 10.0)
    s.apply(Reading("P1", "p", 3.0, ts=30.0), 30.0)
    assert s.apply(Reading("P1", "p", 2.0, ts=20.0), 31.0) is None
    assert s.get("P1", "p").value == 3.0
    assert s.history("P1", "p") == [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)]


def test_history_is_bounded_and_keeps_the_newest() -> None:
    s = TwinState(history_len=5)
    for i in range(20):
        s.apply(Reading("P1", "p", float(i), ts=float(i + 1)), float(i + 1))
    assert s.history("P1", "p") == [(float(i + 1), float(i)) for i in range(15, 20)]


def test_history_since_and_limit() -> None:
    s = TwinState()
    for i in range(10):
        s.apply(Reading("P1", "p", i, ts=float(i + 1)), float(i + 1))
    assert [v for _, v in s.history("P1", "p", since=7.0)] == [7, 8, 9]
    assert [v for _, v in s.history("P1", "p", limit=2)] == [8, 9]
    assert s.history("P1", "p", limit=0) == []
    assert s.history("nope", "p") == []


def test_snapshot_and_restore_round_trip() -> None:
    s = TwinState()
    s.apply(Reading("P1", "p", 1.5, "bar", 5.0), 6.0)
    s.apply(Reading("T1", "level", 40, "%", 5.0, "uncertain"), 6.0)
    restored = TwinState()
    restored.restore(s.snapshot())
    assert restored.snapshot() == s.snapshot()
    assert restored.apply(Reading("P1", "p", 1.5, "bar", 7.0), 7.0) is None


keys = st.sampled_from([("A", "p"), ("A", "q"), ("B", "p")])
values = st.one_of(st.integers(-5, 5), st.booleans(), st.sampled_from(["on", "off"]))


@given(st.lists(st.tuples(keys, values), max_size=60), st.integers(1, 8))
def test_final_state_is_last_value_per_key_and_history_is_bounded_and_ordered(
    seq: list[tuple[tuple[str, str], int | bool | str]], bound: int
) -> None:
    s = TwinState(history_len=bound)
    last: dict[tuple[str, str], int | bool | str] = {}
    for t, ((el, prop), value) in enumerate(seq, start=1):
        before = s.get(el, prop)
        change = s.apply(Reading(el, prop, value, ts=float(t)), float(t))
        # A change is reported exactly when the value differs (type included) from the current one.
        differs = before is None or type(before.value) is not type(value) or before.value != value
        assert (change is not None) == differs
        last[(el, prop)] = value
    for (el, prop), value in last.items():
        got = s.get(el, prop)
        assert got is not None and got.value == value and type(got.value) is type(value)
        hist = s.history(el, prop)
        assert 1 <= len(hist) <= bound
        assert [t for t, _ in hist] == sorted(t for t, _ in hist)
        assert hist[-1][1] == value


@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(-5, 5)), min_size=1, max_size=60),
    st.integers(1, 8),
)
def test_out_of_order_arrivals_keep_history_sorted_and_current_newest(
    samples: list[tuple[int, int]], bound: int
) -> None:
    s = TwinState(history_len=bound)
    newest: tuple[int, int] | None = None
    for ts, value in samples:
        s.apply(Reading("A", "p", value, ts=float(ts + 1)), 100.0)
        if newest is None or ts >= newest[0]:
            newest = (ts, value)
    hist = s.history("A", "p")
    assert 1 <= len(hist) <= bound
    assert [t for t, _ in hist] == sorted(t for t, _ in hist)
    assert newest is not None and s.get("A", "p").value == newest[1]
