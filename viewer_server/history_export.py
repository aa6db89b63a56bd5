"""Export of the raw readings the historian accepted, as CSV or Parquet: `twinview history export` and
`GET /api/scenes/{id}/history/export` (docs/BINDINGS.md "History") share `export_batches` and `encoded`.

Rows come in time order (source time, then receive time) a window of WINDOW_S at a time (`Historian.raw_table`),
so memory holds one window whatever the range; each window is written as batches of at most BATCH_ROWS rows, Parquet
with zstd (one row group per batch) or CSV with a header line. The file is written beside the output under a
temporary name and renamed only once complete: an interrupted export leaves nothing behind.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from viewer_server import protocol as p
from viewer_server.historian import Historian

Format = Literal["csv", "parquet"]
FORMATS: Final[tuple[Format, ...]] = ("csv", "parquet")
# Seconds of history read at a time: 1 000 properties at 1 Hz are 600 000 rows.
WINDOW_S: Final = 600.0
BATCH_ROWS: Final = 65_536
# Seconds between two progress lines of the command.
PROGRESS_EVERY_S: Final = 5.0
# Names listed at most in an error about unknown elements or properties.
NAMES_SHOWN: Final = 20
_TIME: Final = pa.timestamp("us", tz="UTC")
SCHEMA: Final = pa.schema(
    [
        ("element", pa.string()),  # twin id
        ("name", pa.string()),  # the element's name in the scene ("" when it has none)
        ("prop", pa.string()),
        ("value", pa.float64()),  # numbers, and bools as 1 / 0; null for text
        ("text", pa.string()),  # text values; null otherwise
        ("unit", pa.string()),
        ("quality", pa.string()),  # good | uncertain | bad
        ("ts", _TIME),  # source time
        ("rx", _TIME),  # receive time
    ]
)


class ExportError(ValueError):
    """Bad input to an export (a time, a range, an element): one line saying what to do."""


def parse_time(name: str, raw: str) -> float:
    """Unix seconds from epoch seconds or ISO 8601 (a time without a timezone is UTC)."""
    try:
        value = float(raw)
    except ValueError:
        try:
            when = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ExportError(f"{name} {raw[:40]!r}: give ISO 8601 (2026-12-01T08:00Z) or Unix seconds") from None
        value = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise ExportError(f"{name} must be a finite time")
    return value


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def checked_range(
    historian: Historian, t0: float, t1: float, elements: list[str] | None, props: list[str] | None
) -> tuple[float, float]:
    """[t0, t1) narrowed to what the history holds; ExportError for an empty or disjoint range (naming the stored
    one), or elements or properties the history never had (naming them all, and those it has)."""
    if t0 >= t1:
        raise ExportError(f"from ({_iso(t0)}) must be before to ({_iso(t1)})")
    stored = historian.range()
    if stored.earliest is None:
        raise ExportError("the history is empty: nothing recorded yet")
    if t1 <= stored.earliest or t0 > stored.latest:
        raise ExportError(f"nothing stored then: the history holds {_iso(stored.earliest)} … {_iso(stored.latest)}")
    stored_keys = historian.properties()
    _known("element", elements, {element for element, _ in stored_keys})
    _known("property", props, {prop for _, prop in stored_keys})
    # Readings may be stamped a little ahead of the server's clock (PROTOCOL.md §8), never further.
    return max(t0, stored.earliest), min(t1, stored.latest + p.FUTURE_TOLERANCE_S)


def _known(what: str, asked: list[str] | None, known: set[str]) -> None:
    """ExportError naming every asked name the history does not have, and (the first few of) those it has."""
    unknown = sorted(set(asked or ()) - known)
    if not unknown:
        return
    listed = sorted(known)
    named = ", ".join(repr(u[:80]) for u in unknown[:NAMES_SHOWN]) + _more(len(unknown))
    there = ", ".join(listed[:NAMES_SHOWN]) + _more(len(listed))
    plural = "properties" if what == "property" else f"{what}s"
    raise ExportError(f"no history of {plural if len(unknown) > 1 else what} {named}; it has {plural}: {there}")


def _more(count: int) -> str:
    return f" and {count - NAMES_SHOWN} more" if count > NAMES_SHOWN else ""


def export_batches(
    historian: Historian,
    t0: float,
    t1: float,
    *,
    names: Mapping[str, str],
    elements: list[str] | None = None,
    props: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """The raw samples with t0 <= ts < t1 as batches of SCHEMA, in time order, one window in memory at a time."""
    start = t0
    while start < t1:
        end = min(start + WINDOW_S, t1)
        table = historian.raw_table(start, end, elements=elements, props=props)
        if table.num_rows:
            ids = table["element"]
            distinct = pc.unique(ids)
            their_names = pa.array([names.get(e, "") for e in distinct.to_pylist()], pa.string())
            table = pa.table(
                {
                    "element": ids,
                    "name": their_names.take(pc.index_in(ids, value_set=distinct)),
                    "prop": table["prop"],
                    "value": table["value"],
                    "text": table["text"],
                    "unit": table["unit"],
                    "quality": table["quality"],
                    "ts": _times(table["ts"]),
                    "rx": _times(table["rx"]),
                },
                schema=SCHEMA,
            )
            yield from table.to_batches(max_chunksize=BATCH_ROWS)
        start = end


def _times(seconds: pa.ChunkedArray) -> pa.Array:
    micro = pc.round(pc.multiply(seconds, 1e6))
    return micro.cast(pa.int64()).cast(_TIME)


def encoded(batches: Iterator[pa.RecordBatch], fmt: Format) -> Iterator[bytes]:
    """The file's bytes, a batch at a time (a header, or Parquet's footer, included)."""
    sink = io.BytesIO()
    writer: pq.ParquetWriter | pcsv.CSVWriter
    writer = pq.ParquetWriter(sink, SCHEMA, compression="zstd") if fmt == "parquet" else pcsv.CSVWriter(sink, SCHEMA)
    try:
        for batch in batches:
            writer.write_batch(batch)  # a Parquet row group per batch
            yield _drain(sink)
    finally:
        writer.close()
    yield _drain(sink)


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def format_of(path: Path) -> Format:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ExportError(f"-o {path.name}: the name must end in .csv or .parquet")
    return suffix  # type: ignore[return-value]


def write_file(path: Path, chunks: Iterator[bytes], progress: Callable[[int], None] | None = None) -> int:
    """Write `chunks` to `path` through a temporary file beside it, renamed once complete; the bytes written."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    written = 0
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written)
        partial.replace(path)
    except BaseException:
        with suppress(OSError):
            partial.unlink()
        raise
    return written


def _scene_names(data_dir: Path, store_url: str | None, scene: str) -> dict[str, str]:
    """Element id -> name from the scene the server last loaded (empty when it is gone)."""
    from viewer_server.scenes import SceneError, load_scene
    from viewer_server.store import open_store

    store = open_store(data_dir, store_url)
    try:
        scene_dir = store.scene_path(scene)
    finally:
        store.close()
    try:
        elements = load_scene(scene_dir).elements if scene_dir is not None else {}
    except SceneError:
        return {}
    return {eid: str(e.get("name") or "") for eid, e in elements.items()}


def _scene(data_dir: Path, store_url: str | None, scene: str | None) -> str:
    """`scene`, or the only one with a history; ExportError when it has none (before anything is created for it)."""
    from viewer_server.live import HISTORY_DIR

    if store_url is None:
        folder = data_dir / HISTORY_DIR
        found = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
    else:
        from viewer_server.store import open_store

        store = open_store(data_dir, store_url)
        try:
            found = store.scene_ids()
        finally:
            store.close()
    if scene is not None and scene not in found:
        raise ExportError(f"no history of scene {scene[:80]!r}; there are histories of: {', '.join(found) or 'none'}")
    if scene is None and len(found) != 1:
        raise ExportError(f"pass --scene: there are histories of: {', '.join(found) or 'none'}")
    return scene or found[0]


def run(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """`twinview history export`."""
    from viewer_server.live import HISTORY_DIR

    out = Path(args.output)
    fmt = format_of(out)
    t0, t1 = parse_time("--from", args.start), parse_time("--to", args.to)
    data_dir = Path(args.data_dir)
    scene = _scene(data_dir, args.store, args.scene)
    folder = data_dir / HISTORY_DIR / scene
    names = _scene_names(data_dir, args.store, scene)
    historian = Historian(folder, database=args.store, reader=True)
    try:
        t0, t1 = checked_range(historian, t0, t1, args.elements, args.props)
        rows = 0
        shown = time.monotonic()

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal rows, shown
            for batch in export_batches(historian, t0, t1, names=names, elements=args.elements, props=args.props):
                rows += batch.num_rows
                if time.monotonic() - shown >= PROGRESS_EVERY_S:
                    shown = time.monotonic()
                    say(f"{rows:,} rows, up to {batch['ts'][-1].as_py():%Y-%m-%d %H:%M:%S}Z…")
                yield batch

        size = write_file(out, encoded(counted(), fmt))
    finally:
        historian.close()
    print(f"{rows:,} readings {_iso(t0)} … {_iso(t1)} -> {out} ({size:,} bytes)", file=sys.stderr)
    return 0
