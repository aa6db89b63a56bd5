"""Which properties have gone silent: the watch behind stale values (scene/freshness.py)."""

from __future__ import annotations

from scene.freshness import SilenceWatch

PERIODS = {("A", "p"): 10.0, ("B", "p"): 30.0, ("C", "on"): None}


def watch() -> SilenceWatch:
    return SilenceWatch(lambda element, prop: PERIODS.get((element, prop), 10.0))


def test_a_property_expires_once_after_its_own_stale_after_and_comes_back_with_a_sample() -> None:
    w = watch()
    for element, prop in PERIODS:
        w.seen(element, prop, 100.0)
    assert w.expired(109.0) == []
    assert w.expired(110.0) == [("A", "p", 100.0)]
    assert w.expired(125.0) == []  # reported once; B's 30 s are not up
    assert w.expired(130.0) == [("B", "p", 100.0)]
    assert w.expired(10_000.0) == []  # C reports on change only: never stale
    w.seen("A", "p", 200.0)
    assert w.expired(215.0) == [("A", "p", 200.0)]


def test_a_sample_keeps_a_property_fresh_and_the_tick_stops_at_the_first_fresh_one() -> None:
    calls: list[tuple[str, str]] = []

    def period(element: str, prop: str) -> float:
        calls.append((element, prop))
        return 10.0

    w = SilenceWatch(period)
    for i in range(1000):
        w.seen(f"E{i}", "p", 100.0 + i * 0.001)
    w.seen("E0", "p", 105.0)  # the oldest sends again: now the newest
    assert calls.count(("E0", "p")) == 1  # each period is looked up once
    expired = w.expired(110.4995)
    assert [e for e, _, _ in expired] == [f"E{i}" for i in range(1, 500)]
    assert ("E0", "p", 105.0) not in expired


def test_restored_values_are_seen_in_time_order() -> None:
    w = watch()
    w.seen_all([("B", "p", 50.0), ("A", "p", 10.0), ("C", "on", 0.0)])
    assert w.expired(60.0) == [("A", "p", 10.0)]
    assert w.expired(80.0) == [("B", "p", 50.0)]
