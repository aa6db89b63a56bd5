"""Export of the raw readings (`twinview history export`, GET /api/scenes/{id}/history/export): sealed chunks and
the SQLite tail in one time-ordered file, CSV or Parquet, units, quality and both times; bad input refused; an
interrupted export leaves no file."""

from __future__ import annotations

import io
import time
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from scene.state import Reading
from tests.live_server import live_server, mint_token, write_scene
from tests.test_server_ws import ingest
from viewer_server import history_export
from viewer_server import protocol as p
from viewer_server.cli import EXIT_BAD_INPUT, main
from viewer_server.historian import HOUR, SEAL_GRACE_S, Historian
from viewer_server.store import Store

T0 = 1_789_200_000.0  # an hour boundary, 2026-09-12T08:00Z
SCENE = "plant"


def _history(data_dir: Path, store_url: str | None = None) -> None:
    """Two hours: the first sealed into a chunk (in SQLite; PostgreSQL keeps its samples in its table), the second
    still in SQLite; a late reading of the first hour, bools, text and a bad-quality sample; the scene (for element
    names) in the store."""
    store = Store(data_dir, store_url)
    scene_dir = write_scene(data_dir.parent)
    store.save_scene(SCENE, scene_dir, (scene_dir / "manifest.json").read_bytes())
    store.close()
    now = [T0 + HOUR + SEAL_GRACE_S + 1]
    h = Historian(data_dir / "history" / SCENE, database=store_url, clock=lambda: now[0])
    h.append([Reading("PT-1", "pressure", float(i), "bar", T0 + i * 60) for i in range(60)], T0 + 3600, "gw").result()
    h.append([Reading("P-1", "running", True, "", T0 + 30, "bad")], T0 + 31, "gw").result()
    assert h.seal(now[0]) or store_url is not None
    h.append([Reading("PT-1", "pressure", 99.0, "bar", T0 + 90, "uncertain")], T0 + 4000, "gw").result()  # late
    h.append([Reading("P-1", "mode", "auto", "", T0 + HOUR + 5)], T0 + HOUR + 6, "gw").result()
    h.close()


def _read(path: Path | io.BytesIO, fmt: str) -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(path)
    types = pcsv.ConvertOptions(
        column_types=history_export.SCHEMA, strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    return pcsv.read_csv(path, convert_options=types)


def _export(data_dir: Path, out: Path, *more: str, start: str = "2026-09-12T08:00:00Z") -> int:
    command = ["history", "export", "--data-dir", str(data_dir), "--from", start, "--to", str(T0 + 2 * HOUR)]
    return main([*command, "-o", str(out), *more])


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_the_command_writes_chunks_and_tail_in_time_order_with_units_quality_and_both_times(
    tmp_path: Path, suffix: str, store_url: str | None
) -> None:
    data = tmp_path / "data"
    _history(data, store_url)
    out = tmp_path / f"export.{suffix}"
    store = ["--store", store_url] if store_url else []
    assert _export(data, out, *store, start=str(T0)) == 0
    table = _read(out, suffix)
    rows = table.to_pylist()
    assert len(rows) == 63 and [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    assert table.schema == history_export.SCHEMA
    late = next(r for r in rows if r["value"] == 99.0)
    assert (late["element"], late["name"], late["unit"], late["quality"]) == ("PT-1", "Pressure transmitter 1",
                                                                              "bar", "uncertain")  # fmt: skip
    assert late["ts"].timestamp() == T0 + 90 and late["rx"].timestamp() == T0 + 4000
    running = next(r for r in rows if r["prop"] == "running")
    assert (running["value"], running["quality"]) == (1.0, "bad")
    assert rows[-1]["text"] == "auto" and rows[-1]["ts"].timestamp() == T0 + HOUR + 5
    only = tmp_path / f"only.{suffix}"
    assert _export(data, only, *store, "--elements", "P-1", start=str(T0)) == 0
    assert _read(only, suffix)["prop"].to_pylist() == ["running", "mode"]


def test_bad_times_ranges_and_elements_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _history(data)
    out = tmp_path / "x.csv"
    assert _export(data, out, start="yesterday") == EXIT_BAD_INPUT
    sealing = data / "history" / SCENE / "chunks" / "2026-09-12" / "09-0.parquet"
    sealing.write_bytes(b"PAR1")  # a running server's seal, written but not listed yet: the export leaves it
    assert _export(data, out, start=str(T0 - 10 * HOUR)) == 0  # overlapping: narrowed to what is stored
    assert sealing.exists()
    out.unlink()
    assert main(["history", "export", "--data-dir", str(data), "--from", "2020-01-01", "--to", "2020-01-02",
                 "-o", str(out)]) == EXIT_BAD_INPUT  # fmt: skip
    assert _export(data, out, "--elements", "NOPE", "PT-1", "NADA", start=str(T0)) == EXIT_BAD_INPUT
    assert _export(data, out, "--props", "presure", start=str(T0)) == EXIT_BAD_INPUT
    assert _export(data, out, "--scene", "other", start=str(T0)) == EXIT_BAD_INPUT
    lines = capsys.readouterr().err.strip().splitlines()
    assert "ISO 8601" in lines[0]
    assert "the history holds 2026-09-12T08:00:00Z" in lines[2]
    assert lines[3] == "twinview: no history of elements 'NADA', 'NOPE'; it has elements: P-1, PT-1"
    assert lines[4] == "twinview: no history of property 'presure'; it has properties: mode, pressure, running"
    assert lines[5] == "twinview: no history of scene 'other'; there are histories of: plant" and len(lines) == 6
    assert not out.exists()


def test_an_export_interrupted_midway_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    _history(data)
    real = history_export.export_batches

    def interrupted(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        yield from list(real(*args, **kwargs))[:1]  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(history_export, "export_batches", interrupted)
    monkeypatch.setattr(history_export, "PROGRESS_EVERY_S", 0.0)
    out = tmp_path / "x.parquet"
    assert _export(data, out, start=str(T0)) == 130
    assert sorted(f.name for f in tmp_path.iterdir()) == ["data", "pump-test"]
    assert capsys.readouterr().err.splitlines() == [
        "twinview: 12 rows, up to 2026-09-12 08:09:00Z…",  # the first window of ten minutes
        "twinview: interrupted",
    ]


async def test_rest_streams_the_same_rows_and_refuses_what_it_cannot_bound(tmp_path: Path) -> None:
    async with live_server(tmp_path) as srv, aiohttp.ClientSession() as http:
        start = time.time() - 60
        readings = [p.Reading(float(i), key="PT-1.pressure", ts=start + i) for i in range(5)]
        await ingest(http, srv.url, *readings, p.Reading(True, key="P-1.running", ts=start + 2.5))
        url = f"{srv.url}/api/scenes/pump-test/history/export"
        query = {"from": str(start), "to": str(time.time()), "format": "parquet", "elements": "PT-1"}
        async with http.get(url, params=query) as r:
            assert r.status == 200 and r.headers["Transfer-Encoding"] == "chunked"
            table = _read(io.BytesIO(await r.read()), "parquet")
        assert table["value"].to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert set(table["unit"].to_pylist()) == {"bar"} and set(table["name"].to_pylist()) == {
            "Pressure transmitter 1"
        }
        async with http.get(url, params={**query, "format": "csv", "elements": ""}) as r:
            assert r.status == 200 and r.content_type == "text/csv"
            assert _read(io.BytesIO(await r.read()), "csv")["prop"].to_pylist()[3] == "running"
        refusals = [
            ({**query, "from": "2020-01-01", "to": "2020-01-02"}, 400, "the history holds"),
            (
                {**query, "elements": "PT-1,NOPE,NADA"},
                400,
                "no history of elements 'NADA', 'NOPE'; it has elements: P-1, PT-1",
            ),
            (
                {**query, "props": "pressure,presure"},
                400,
                "no history of property 'presure'; it has properties: pressure, running",
            ),
            ({**query, "from": "2020-01-01"}, 413, "twinview history export"),
            ({**query, "elements": ",".join(f"E{i}" for i in range(300))}, 400, "at most 256"),
        ]
        for params, status, detail in refusals:
            async with http.get(url, params=params) as r:
                assert r.status == status and detail in (await r.json())["detail"], params
        # A role without history.read: a publisher's token (a gateway's) reads no history.
        publisher = {"Authorization": f"Bearer {mint_token(srv, 'gw', 'publisher')}"}
        async with http.get(url, params=query, headers=publisher) as r:
            assert r.status == 403 and (await r.json())["error"] == p.ERR_FORBIDDEN
            assert "history.read" in (await r.json())["detail"]
        async with http.get(f"{srv.url}/api/openapi.json") as r:
            assert "/api/scenes/{scene_id}/history/export" in (await r.json())["paths"]
