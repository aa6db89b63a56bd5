"""The historian on its own: append-only history that survives a restart, sealed into Parquet that pyarrow and
DuckDB read, retention and minute aggregates per binding (injected clocks, no sleeps), late samples at their
source time, corrupt chunks quarantined."""

from __future__ import annotations

import os
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
from viewer_server.store_db import StoreError
from viewer_server.topics import Comment, Topic

T0 = 1_800_000_000.0  # an hour boundary (1_800_000_000 / 3600 = 500 000)


def _open(
    folder: Path, now: list[float], retention: dict[str, History] | None = None, database: str | None = None
) -> Historian:
    """A historian in `folder`, or in the PostgreSQL `database` (a test taking `store_url` runs on both)."""
    policy = retention or {}
    return Historian(
        folder, database=database, retention=lambda el, prop: policy.get(prop, History()), clock=lambda: now[0]
    )


def _ramp(h: Historian, start: float, n: int, step: float = 1.0, prop: str = "pressure") -> None:
    readings = [Reading("PT-1", prop, float(i % 50), "bar", start + i * step) for i in range(n)]
    h.append(readings, start + n * step, "test").result()


def test_readings_and_events_survive_a_restart_and_late_ones_sit_at_their_source_time(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + 100]
    h = _open(tmp_path, now, database=store_url)
    h.append(
        [Reading("PT-1", "pressure", 2.0, "bar", T0 + 10), Reading("P-1", "running", True, "", T0 + 10)], T0 + 11, "gw"
    ).result()
    h.append([Reading("P-1", "mode", "auto", "", T0 + 20)], T0 + 21, "gw").result()
    h.append([Reading("PT-1", "pressure", 9.0, "bar", T0 + 5)], T0 + 50, "gw").result()  # late: an outage's buffer
    alarm = p.Alarm("operations.rules[1]", "P-1", since=T0 + 12, severity="alarm")
    h.record(p.Event(7, "alarm_raised", alarm.id, "P-1", T0 + 12, alarm=alarm)).result()
    h.close()

    h = _open(tmp_path, now, database=store_url)
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


def test_retention_per_binding_keeps_raw_for_n_days_then_minute_aggregates(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + HOUR]
    h = _open(
        tmp_path,
        now,
        {"pressure": History(raw_days=1, rollup_days=3), "level": History(raw_days=2, rollup_days=5)},
        store_url,
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


def test_chart_series_are_raw_when_few_and_bucketed_with_min_max_mean_last_when_many(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + DAY]
    h = _open(tmp_path, now, database=store_url)
    _ramp(h, T0, 3600)
    raw, resolution = h.series("PT-1", "pressure", T0, T0 + 100, 200)
    assert resolution == 0 and raw.last == [float(i % 50) for i in range(101)] and raw.unit == "bar"
    fine, resolution = h.series("PT-1", "pressure", T0, T0 + 100, 10)  # finer than a minute: from raw samples
    assert resolution == 10 and len(fine.t) == 10 and fine.mean[0] == 4.5
    coarse, resolution = h.series("PT-1", "pressure", T0, T0 + HOUR, 30)  # two minutes per point: aggregates
    assert resolution == 120 and len(coarse.t) == 30 and coarse.min[0] == 0 and coarse.max[0] == 49
    assert h.series("PT-1", "nothing", T0, T0 + HOUR, 30)[0].t == []


def test_integer_readings_come_back_as_integers_and_floats_as_floats_in_seek_samples_and_charts(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + DAY]
    h = _open(tmp_path, now, database=store_url)
    values: list[int | float] = [3, 2.0, -7, 2**40, 0.5]  # one counter that a gateway sends as either
    h.append([Reading("C-1", "count", v, "", T0 + 60 * i) for i, v in enumerate(values)], T0 + 300, "gw").result()
    h.close()
    h = _open(tmp_path, now, database=store_url)
    typed = [(type(v), v) for v in values]
    assert [(type(s.value), s.value) for s in h.samples(T0 - 1, T0 + 300)] == typed
    for i, v in enumerate(values):  # seek
        assert (type(sample := h.state_at(T0 + 60 * i + 1)[("C-1", "count")].value), sample) == (type(v), v)
    raw, _ = h.series("C-1", "count", T0, T0 + 300, 100)
    assert [(type(v), v) for v in raw.last] == typed
    buckets, resolution = h.series("C-1", "count", T0, T0 + 300, 5)  # a minute each: from the minute aggregates
    assert resolution == 60 and [(type(v), v) for v in buckets.last] == typed
    h.close()


def test_aggregated_buckets_hold_only_samples_inside_the_range_even_in_its_partial_first_and_last_minutes(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + DAY]
    h = _open(tmp_path, now, database=store_url)
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


def _open_files(folder: Path) -> list[str]:
    """The files under `folder` this process holds open (the history's SQLite file, its WAL and shared memory)."""
    names = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            names.append(os.readlink(fd))
        except OSError:  # the listing's own descriptor, gone by now
            continue
    return [name for name in names if name.startswith(str(folder))]


def test_closing_leaves_no_file_of_the_history_open_whichever_threads_read_it(tmp_path: Path) -> None:
    now = [T0 + 10]
    h = _open(tmp_path / "history", now)
    _ramp(h, T0, 5)
    readers = [threading.Thread(target=h.state_at, args=(T0 + 3,)) for _ in range(3)]  # each opens its own
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert len(_open_files(tmp_path)) >= 4, "the check must see the history's files while it is open"
    h.close()
    assert _open_files(tmp_path) == []
    with pytest.raises(historian.HistorianClosed, match="is closed: its server is stopping"):
        h.state_at(T0 + 3)


def test_a_close_during_the_retention_job_waits_for_it_then_closes_everything(tmp_path: Path) -> None:
    # What crashed the server at shutdown: close() closed the connection the retention job was using in its thread.
    policy_asked, go_on = threading.Event(), threading.Event()

    def retention(element: str, prop: str) -> History:
        policy_asked.set()
        assert go_on.wait(60)
        return History(raw_days=1)

    now = [T0 + 3 * DAY]
    h = Historian(tmp_path / "history", retention=retention, clock=lambda: now[0])
    _ramp(h, T0, 500)
    outcome: list[BaseException | None] = []

    def retain() -> None:
        try:
            h.retain()
            outcome.append(None)
        except (sqlite3.OperationalError, historian.HistorianClosed) as exc:  # interrupted by the close: fine
            outcome.append(exc)

    upkeep = threading.Thread(target=retain)
    upkeep.start()
    assert policy_asked.wait(60)  # the job is inside retain(), between its reads and its deletes
    closer = threading.Thread(target=h.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive(), "close() must wait for the retention job it interrupted"
    go_on.set()
    upkeep.join(60)
    closer.join(60)
    assert not upkeep.is_alive() and not closer.is_alive()
    assert len(outcome) == 1
    assert _open_files(tmp_path) == []


def test_a_close_while_queries_run_in_many_threads_neither_crashes_nor_hangs(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + HOUR]
    h = _open(tmp_path / "history", now, database=store_url)
    _ramp(h, T0, 3000)
    started = threading.Barrier(5)
    ended: list[str] = []

    def query() -> None:
        started.wait()
        try:
            while True:
                h.series("PT-1", "pressure", T0, T0 + 3000, 500)
                h.events(T0, T0 + 3000)
        except historian.HistorianClosed:
            ended.append("refused")
        except sqlite3.OperationalError as exc:  # its SQL interrupted by the close
            ended.append(str(exc))
        except StoreError as exc:  # PostgreSQL: its statement cancelled by the close
            ended.append("interrupted" if "canceling statement" in str(exc) else str(exc))

    readers = [threading.Thread(target=query, daemon=True) for _ in range(4)]
    for reader in readers:
        reader.start()
    started.wait()
    h.close()
    for reader in readers:
        reader.join(60)
    assert not any(reader.is_alive() for reader in readers)
    assert len(ended) == 4 and set(ended) <= {"refused", "interrupted"}, ended
    assert _open_files(tmp_path) == []


def test_a_waiter_that_gave_up_neither_loses_its_write_nor_stops_the_writer(
    tmp_path: Path, store_url: str | None
) -> None:
    # A publisher that disconnects while waiting for its ack cancels the future; the next writes must still commit.
    now = [T0 + 100]
    h = _open(tmp_path / "history", now, database=store_url)
    h._queue.put(None)  # hold the writer: it stops after what is queued, so nothing is taken before the cancel
    h._writer.join()
    abandoned = h.append([Reading("PT-1", "pressure", 1.0, "bar", T0 + 1)], T0 + 1, "test")
    assert abandoned.cancel()
    h._writer = threading.Thread(target=h._write_loop, name="twinview-historian", daemon=True)
    h._writer.start()
    h.append([Reading("PT-1", "pressure", 2.0, "bar", T0 + 2)], T0 + 2, "test").result(timeout=30)
    assert [s.value for s in h.samples(T0, T0 + 10)] == [1.0, 2.0]
    h.close()


def test_every_version_of_the_bindings_is_kept_from_the_time_it_took_effect(
    tmp_path: Path, store_url: str | None
) -> None:
    now = [T0 + HOUR]
    h = _open(tmp_path, now, database=store_url)
    assert h.bindings_at(T0) is None
    h.record_bindings("plant.yaml", b"version: 1  # A", T0 + 10)
    h.record_bindings("plant.yaml", b"version: 1  # A", T0 + 20)  # a restart with the same file: no new version
    h.record_bindings("plant.yaml", b"version: 1  # B", T0 + 30)
    h.record_bindings("plant.json", b'{"version": 1}', T0 + 40)
    h.record_bindings("plant.yaml", b"version: 1  # A", T0 + 50).result()  # back to A: a version of its own
    h.close()
    h = _open(tmp_path, now, database=store_url)
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


def test_the_alarm_list_at_t_comes_from_the_checkpoint_before_t_and_the_transitions_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None
) -> None:
    monkeypatch.setattr(historian, "CHECKPOINT_ALARM_EVENTS", 500)
    now = [T0]
    h = _open(tmp_path, now, database=store_url)
    recorded: list[p.Event] = []
    for i in range(6 * 360):  # six hours, an alarm transition every 10 s over 50 alarms
        state: p.AlarmState = ("unacknowledged", "acknowledged", "normal")[(i // 50) % 3]
        alarm = p.Alarm(f"ops.rules[{i % 50}]", f"E-{i % 50}", since=T0 + i * 10, severity="alarm", state=state)
        kind = {"unacknowledged": "alarm_raised", "acknowledged": "alarm_acknowledged", "normal": "alarm_cleared"}
        recorded.append(p.Event(i, kind[state], alarm.id, alarm.element, T0 + i * 10, alarm=alarm))
        h.record(recorded[-1])
        if i % 360 == 359:  # the upkeep runs on
            now[0] = T0 + (i + 1) * 10 + SEAL_GRACE_S
            h.flush()
            h.checkpoint_alarms()
    h.flush()
    db = h._connect()  # this thread's connection to its SQLite file or PostgreSQL schema (autocommit)
    checkpoints = [t for (t,) in db.execute("SELECT t FROM alarm_books ORDER BY t")]
    assert checkpoints == [T0 + 2 * HOUR, T0 + 4 * HOUR, T0 + 6 * HOUR]  # every ≥ 500 transitions, on the hour

    def listed(t: float, events: list[p.Event]) -> list[tuple[str, str]]:
        latest = {e.id: e.alarm for e in events if e.ts <= t and e.alarm is not None}
        return sorted((a.id, a.state) for a in latest.values() if a.state != "normal")

    moments = [T0 + k * 1234.5 for k in range(18)] + [*checkpoints, checkpoints[1] - 0.5, checkpoints[1] + 0.5]
    for t in moments:
        assert sorted((a.id, a.state) for a in h.alarms_at(t)) == listed(t, recorded), t
    # Nothing before the checkpoint is read: without those transitions, the list after it is the same.
    db.execute("DELETE FROM events WHERE t < ?", (checkpoints[1],))
    for t in (checkpoints[1], checkpoints[1] + 5000.5, T0 + 6 * HOUR - 1):
        assert sorted((a.id, a.state) for a in h.alarms_at(t)) == listed(t, recorded), t

    # A transition recorded with a time before a checkpoint (a clock stepped back) drops the checkpoints after it.
    late = p.Alarm("ops.rules[99]", "E-99", since=T0 + 3 * HOUR, severity="warning")
    h.record(p.Event(99_999, "alarm_raised", late.id, late.element, T0 + 3 * HOUR, alarm=late)).result()
    assert [t for (t,) in db.execute("SELECT t FROM alarm_books ORDER BY t")] == [T0 + 2 * HOUR]
    assert "ops.rules[99]" in {a.id for a in h.alarms_at(T0 + 5 * HOUR)}
    h.close()


def test_topics_at_t_come_from_the_session_s_own_annotation_events_and_equal_every_revision_s_replay(
    tmp_path: Path,
) -> None:
    """Topics and comments of two sessions revised many times among many alarm events: `annotations_at` answers as
    replaying every event up to t does, and reads only the session's annotation events (its index), not the rest."""
    h = _open(tmp_path, [T0 + DAY])
    recorded: list[p.Event] = []
    for i in range(400):
        t = T0 + i * 10
        alarm = p.Alarm(f"rules[{i % 7}]", "P-1", since=t, state="normal" if i % 2 else "unacknowledged")
        recorded.append(p.Event(2 * i, "alarm_raised", alarm.id, "P-1", t, alarm=alarm))
        session, guid = ("s1", "s2")[i % 2], f"topic-{i % 5}"
        if i % 3 == 0:
            topic = Topic(guid, f"title {i}", "ana", T0, revision=i + 1, deleted=i % 11 == 0)
            kind = "topic_created" if i < 10 else "topic_updated"
            recorded.append(p.Event(2 * i + 1, kind, guid, "", t, session=session, topic=topic))
        else:
            comment = Comment(f"comment-{i % 4}", guid, "bob", f"text {i}", T0, revision=i + 1)
            recorded.append(p.Event(2 * i + 1, "comment_added", comment.guid, "", t, session=session, comment=comment))
    for event in recorded:
        h.record(event)
    h.flush()
    for t in [T0 - 1, T0, T0 + 5, T0 + 1234, T0 + 2000, T0 + 3990, T0 + DAY]:
        for session in ("s1", "s2", "s3"):
            topics: dict[str, Topic] = {}
            comments: dict[str, Comment] = {}
            for event in recorded:
                if event.session == session and event.ts <= t:
                    if event.topic is not None:
                        topics[event.topic.guid] = event.topic
                    if event.comment is not None:
                        comments[event.comment.guid] = event.comment
            assert h.annotations_at(t, session) == (topics, comments), (t, session)
    statements: list[str] = []
    h._connect().set_trace_callback(statements.append)  # this thread's connection: the query as run
    h.annotations_at(T0 + 2000, "s1")
    (query,) = [sql for sql in statements if "GROUP BY id" in sql]
    db = sqlite3.connect(tmp_path / "history.sqlite")
    plan = [row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {query}")]
    assert any("COVERING INDEX events_session (session=? AND kind=?" in step for step in plan), plan
    db.close()
    h.close()
