"""The historian on its own: append-only history that survives a restart, sealed into Parquet that pyarrow and
DuckDB read, retention and minute aggregates per binding (injected clocks, no sleeps), late samples at their
source time, corrupt chunks quarantined."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scene.bindings import History
from scene.state import Reading
from viewer_server import historian
from viewer_server import protocol as p
from viewer_server.historian import DAY, HOUR, SEAL_GRACE_S, Historian

T0 = 1_800_000_000.0  # an hour boundary (1_800_000_000 / 3600 = 500 000)


def _open(folder: Path, now: list[float], retention: dict[str, History] | None = None) -> Historian:
    policy = retention or {}
    return Historian(folder, retention=lambda el, prop: policy.get(prop, History()), clock=lambda: now[0])


def _ramp(h: Historian, start: float, n: int, step: float = 1.0, prop: str = "pressure") -> None:
    readings = [Reading("PT-1", prop, float(i % 50), "bar", start + i * step) for i in range(n)]
    h.append(readings, start + n * step, "test").result()


def test_readings_and_events_survive_a_restart_and_late_ones_sit_at_their_source_time(tmp_path: Path) -> None:
    now = [T0 + 100]
    h = _open(tmp_path, now)
    h.append(
        [Reading("PT-1", "pressure", 2.0, "bar", T0 + 10), Reading("P-1", "running", True, "", T0 + 10)], T0 + 11, "gw"
    ).result()
    h.append([Reading("P-1", "mode", "auto", "", T0 + 20)], T0 + 21, "gw").result()
    h.append([Reading("PT-1", "pressure", 9.0, "bar", T0 + 5)], T0 + 50, "gw").result()  # late: an outage's buffer
    alarm = p.Alarm("operations.rules[1]", "P-1", since=T0 + 12, severity="alarm")
    h.record(p.Event(7, "alarm_raised", alarm.id, "P-1", T0 + 12, alarm=alarm)).result()
    h.close()

    h = _open(tmp_path, now)
    at = h.state_at(T0 + 7)
    assert at[("PT-1", "pressure")].value == 9.0 and at[("PT-1", "pressure")].ts == T0 + 5
    later = h.state_at(T0 + 30)
    assert later[("PT-1", "pressure")].value == 2.0
    assert later[("P-1", "running")].value is True and later[("P-1", "mode")].value == "auto"
    assert [a.id for a in h.alarms_at(T0 + 30)] == ["operations.rules[1]"] and h.alarms_at(T0 + 11) == []
    assert [e.seq for e in h.events(T0, T0 + 30)] == [7]
    assert h.range() == p.HistoryRange(T0 + 5, now[0])


def test_sealed_hours_are_parquet_that_pyarrow_and_duckdb_read_and_queries_still_see(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(historian, "ROW_GROUP_ROWS", 1000)  # streamed a row group at a time
    now = [T0 + 2 * HOUR + SEAL_GRACE_S + 1]
    h = _open(tmp_path, now)
    _ramp(h, T0, 7200)  # two hours at 1 Hz
    _ramp(h, T0 + 2 * HOUR, 10)  # the current hour stays in SQLite
    before = h.state_at(T0 + HOUR + 1800.5)
    chunks = h.seal()
    assert len(chunks) == 2 and all(c.suffix == ".parquet" for c in chunks)
    table = pq.read_table(chunks[0])
    assert table.num_rows == 3600 and set(table.column_names) >= {"element", "prop", "ts", "value", "quality", "source"}
    assert pq.ParquetFile(chunks[0]).metadata.row_group(0).column(2).compression == "ZSTD"
    assert pq.ParquetFile(chunks[0]).metadata.num_row_groups == 4
    db = sqlite3.connect(tmp_path / "history.sqlite")
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 10  # sealed rows left SQLite
    assert h.state_at(T0 + HOUR + 1800.5) == before
    assert [s.value for s in h.samples(T0 + 3599, T0 + 3601)] == [float(3600 % 50), float(3601 % 50)]
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(
        f"SELECT count(*), max(value) FROM '{tmp_path}/chunks/*/*.parquet' WHERE prop = 'pressure'"
    ).fetchall()
    assert rows == [(7200, 49.0)]
    h.append([Reading("PT-1", "pressure", 99.0, "bar", T0 + 10.5)], now[0], "late").result()  # after its seal
    (late,) = h.seal()
    assert late.name == chunks[0].name.replace("-0.", "-1.") and late.parent == chunks[0].parent  # a 2nd chunk
    assert h.state_at(T0 + 10.7)[("PT-1", "pressure")].value == 99.0


def test_a_chunk_written_but_not_listed_is_removed_and_a_corrupt_one_quarantined(tmp_path: Path) -> None:
    now = [T0 + 3 * HOUR]
    h = _open(tmp_path, now)
    _ramp(h, T0, 10)
    _ramp(h, T0 + HOUR, 10)
    first, second = h.seal()
    h.close()
    second.write_bytes(second.read_bytes()[:100])  # power lost while it was rewritten
    orphan = first.with_name("23-0.parquet")
    orphan.write_bytes(first.read_bytes())  # written, never listed (a crash before the commit)
    h = _open(tmp_path, now)
    assert not orphan.exists()
    assert [q.name for q in h.quarantined] == [f"chunks_{second.parent.name}_{second.name}"]
    assert len(h.samples(T0 - 1, T0 + 2 * HOUR)) == 10  # the rest stays readable
    assert h.state_at(T0 + 100)[("PT-1", "pressure")].value == 9.0


def test_retention_per_binding_keeps_raw_for_n_days_then_minute_aggregates(tmp_path: Path) -> None:
    now = [T0 + HOUR]
    h = _open(
        tmp_path, now, {"pressure": History(raw_days=1, rollup_days=3), "level": History(raw_days=2, rollup_days=5)}
    )
    _ramp(h, T0, 600, prop="pressure")
    _ramp(h, T0, 600, prop="level")
    now[0] = T0 + HOUR + SEAL_GRACE_S
    h.seal()
    series, resolution = h.series("PT-1", "pressure", T0, T0 + 600, 1000)
    assert resolution == 0 and len(series.t) == 600  # raw while it is kept

    now[0] = T0 + 1.5 * DAY
    h.retain()
    assert h.samples(T0, T0 + 600, keys=[("PT-1", "pressure")]) == []  # raw gone after a day...
    assert len(h.samples(T0, T0 + 600, include_start=True, keys=[("PT-1", "level")])) == 600  # ...the level's stays two
    series, resolution = h.series("PT-1", "pressure", T0, T0 + 600, 5)  # ...the minute aggregates stay
    assert resolution == 2 * 60 and len(series.t) == 5
    assert series.min[0] == 0.0 and series.max[0] == 49.0 and series.last[-1] == float(599 % 50)
    assert h.state_at(T0 + 599.5)[("PT-1", "pressure")].value == float(599 % 50)  # seek uses them too

    now[0] = T0 + 4 * DAY
    h.retain()
    assert h.series("PT-1", "pressure", T0, T0 + 600, 5)[0].t == []  # aggregates gone after rollup_days
    assert h.series("PT-1", "level", T0, T0 + 600, 5)[0].t != []
    assert list((tmp_path / "chunks").glob("*/*.parquet")) == []  # no raw left in any chunk: deleted


def test_chart_series_are_raw_when_few_and_bucketed_with_min_max_mean_last_when_many(tmp_path: Path) -> None:
    now = [T0 + DAY]
    h = _open(tmp_path, now)
    _ramp(h, T0, 3600)
    raw, resolution = h.series("PT-1", "pressure", T0, T0 + 100, 200)
    assert resolution == 0 and raw.last == [float(i % 50) for i in range(101)] and raw.unit == "bar"
    fine, resolution = h.series("PT-1", "pressure", T0, T0 + 100, 10)  # finer than a minute: from raw samples
    assert resolution == 10 and len(fine.t) == 10 and fine.mean[0] == 4.5
    coarse, resolution = h.series("PT-1", "pressure", T0, T0 + HOUR, 30)  # two minutes per point: aggregates
    assert resolution == 120 and len(coarse.t) == 30 and coarse.min[0] == 0 and coarse.max[0] == 49
    assert h.series("PT-1", "nothing", T0, T0 + HOUR, 30)[0].t == []


def test_aggregated_buckets_hold_only_samples_inside_the_range_even_in_its_partial_first_and_last_minutes(
    tmp_path: Path,
) -> None:
    now = [T0 + DAY]
    h = _open(tmp_path, now)
    h.append([Reading("PT-1", "pressure", float(i), "bar", T0 + i) for i in range(HOUR)], T0 + HOUR, "test").result()
    series, resolution = h.series("PT-1", "pressure", T0 + 30, T0 + 690, 5)  # three minutes per bucket
    assert resolution == 180 and series.t == [T0, T0 + 180, T0 + 360, T0 + 540]
    assert (series.min[0], series.max[0], series.mean[0], series.last[0]) == (30.0, 179.0, 104.5, 179.0)
    assert (series.min[-1], series.max[-1], series.mean[-1], series.last[-1]) == (540.0, 690.0, 615.0, 690.0)
    now[0] = T0 + HOUR + SEAL_GRACE_S
    h.seal()  # the edges' raw samples now come from the chunk: the same buckets
    assert h.series("PT-1", "pressure", T0 + 30, T0 + 690, 5) == (series, resolution)


def test_the_state_at_any_moment_is_each_property_s_last_sample_at_or_before_it_across_hours_and_chunks(
    tmp_path: Path,
) -> None:
    """Around hour and minute boundaries, in sealed hours and the hot tail, for properties silent for hours
    and for a late sample filling in a sealed hour: `state_at` equals the last sample at or before t."""
    now = [T0 + 3 * HOUR]
    h = _open(tmp_path, now)
    sent: list[Reading] = [Reading("PT-1", "pressure", float(i % 17), "bar", T0 + 7 * i) for i in range(1540)]
    sent += [Reading("TT-1", "temp", 21.5, "°C", T0 + 100)]  # then silent for the rest of the three hours
    sent += [Reading("P-1", "running", i % 2 == 0, "", T0 + HOUR - 30 + 3600 * i) for i in range(3)]
    sent += [Reading("P-1", "mode", m, "", T0 + 60 * (i + 1)) for i, m in enumerate(["auto", "manual"])]
    h.append(sent, now[0], "gw").result()
    now[0] = T0 + 2 * HOUR + SEAL_GRACE_S + 1
    assert len(h.seal()) == 2  # hours 0 and 1 sealed, hour 2 stays in the tail
    late = Reading("TT-1", "temp", 19.0, "°C", T0 + HOUR + 1800)  # a gateway's buffer fills a sealed hour in
    h.append([late], now[0], "gw").result()
    sent.append(late)

    moments = [T0 + k * HOUR + d for k in range(3) for d in (-0.5, 0.0, 0.5, 59.9, 60.0, 1800.0, 1801.0)]
    moments += [T0 + 7 * i + d for i in (0, 500, 514, 515, 1028) for d in (-0.01, 0.0, 0.01)]
    for sealed_late in (False, True):
        if sealed_late:  # the late sample in a second chunk of its hour: t's minute read from two chunks
            (second,) = h.seal()
            assert second.name.endswith("-1.parquet")
        for t in moments:
            expected: dict[tuple[str, str], Reading] = {}
            for r in sent:
                if r.ts <= t:
                    expected[(r.element, r.prop)] = r  # the later one sent wins a tie
            got = h.state_at(t)
            assert {key: (s.ts, s.value) for key, s in got.items()} == {
                key: (r.ts, r.value) for key, r in expected.items()
            }, (t, sealed_late)


def test_chunks_are_grouped_by_minute_and_property_and_those_written_by_time_before_read_the_same(
    tmp_path: Path,
) -> None:
    now = [T0 + HOUR + SEAL_GRACE_S + 1]
    h = _open(tmp_path, now)
    sent = [
        Reading(f"PT-{k}", "pressure", round(2 + 0.01 * ((i * 7 + k) % 13), 2), "bar", T0 + i + k / 10)
        for i in range(180)
        for k in range(3)
    ]
    h.append(sent, now[0], "gw").result()
    (chunk,) = h.seal()
    table = pq.read_table(chunk)
    order = list(
        zip((table["ts"].to_numpy() // 60).tolist(), table["element"].to_pylist(), table["ts"].to_pylist(), strict=True)
    )
    assert order == sorted(order) and len(order) == len(sent)  # each property's minute together, then by time
    column = pq.ParquetFile(chunk).metadata.row_group(0).column(2)
    assert column.path_in_schema == "ts" and "BYTE_STREAM_SPLIT" in column.encodings

    answers = (h.state_at(T0 + 90.25), h.samples(T0, T0 + 120), h.series("PT-1", "pressure", T0 + 30, T0 + 170, 2))
    pq.write_table(table.sort_by("ts"), chunk, compression="zstd")  # as the historian wrote chunks until now
    assert (
        h.state_at(T0 + 90.25),
        h.samples(T0, T0 + 120),
        h.series("PT-1", "pressure", T0 + 30, T0 + 170, 2),
    ) == answers
    assert answers[0][("PT-1", "pressure")].ts == T0 + 90.1 and len(answers[1]) == 360


def test_a_waiter_that_gave_up_neither_loses_its_write_nor_stops_the_writer(tmp_path: Path) -> None:
    # A publisher that disconnects while waiting for its ack cancels the future; the next writes must still commit.
    now = [T0 + 100]
    h = _open(tmp_path / "history", now)
    h._queue.put(None)  # hold the writer: it stops after what is queued, so nothing is taken before the cancel
    h._writer.join()
    abandoned = h.append([Reading("PT-1", "pressure", 1.0, "bar", T0 + 1)], T0 + 1, "test")
    assert abandoned.cancel()
    h._writer = threading.Thread(target=h._write_loop, name="twinview-historian", daemon=True)
    h._writer.start()
    h.append([Reading("PT-1", "pressure", 2.0, "bar", T0 + 2)], T0 + 2, "test").result(timeout=30)
    assert [s.value for s in h.samples(T0, T0 + 10)] == [1.0, 2.0]
    h.close()


def test_every_version_of_the_bindings_is_kept_from_the_time_it_took_effect(tmp_path: Path) -> None:
    now = [T0 + HOUR]
    h = _open(tmp_path, now)
    assert h.bindings_at(T0) is None
    h.record_bindings("plant.yaml", b"version: 1  # A", T0 + 10)
    h.record_bindings("plant.yaml", b"version: 1  # A", T0 + 20)  # a restart with the same file: no new version
    h.record_bindings("plant.yaml", b"version: 1  # B", T0 + 30)
    h.record_bindings("plant.json", b'{"version": 1}', T0 + 40)
    h.record_bindings("plant.yaml", b"version: 1  # A", T0 + 50).result()  # back to A: a version of its own
    h.close()
    h = _open(tmp_path, now)
    contents = {t: h.bindings_at(t).content for t in (T0, T0 + 10, T0 + 29.9, T0 + 30, T0 + 45, T0 + 60)}  # type: ignore[union-attr]
    assert contents == {
        T0: b"version: 1  # A",  # before the first version: the first (the history before it had no other)
        T0 + 10: b"version: 1  # A",
        T0 + 29.9: b"version: 1  # A",
        T0 + 30: b"version: 1  # B",
        T0 + 45: b'{"version": 1}',
        T0 + 60: b"version: 1  # A",
    }
    assert [(t, file) for t, file, _ in h.bindings_changes(T0 + 10, T0 + 50)] == [
        (T0 + 30, "plant.yaml"),
        (T0 + 40, "plant.json"),
        (T0 + 50, "plant.yaml"),
    ]
    h.close()
