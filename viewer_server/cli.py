"""The `twinview` command line: build, inspect, serve, demo.

Exit codes (documented in the README):
  0  success
  1  unexpected internal error (a bug: rerun with --debug and report it)
  2  bad input: a file that cannot be read, a bad bindings file, bad arguments
  130 interrupted (Ctrl-C)
  143 terminated (SIGTERM to `build` or `inspect`: the readers are stopped and nothing is left behind)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from scene import reader_host
from scene.errors import ExportFailed, ImportFailed
from scene.importers import DEFAULT_POINT_BUDGET, ImportOptions
from scene.sandbox import CPU_S_BASE, CPU_S_PER_MB, DEFAULT_MEMORY_MB, WALL_PER_CPU, Limits
from viewer_server.data_dir import default_data_dir

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
REPO = Path(__file__).resolve().parents[1]
SAMPLE_IFC = REPO / "assets" / "pump_station.ifc"
SAMPLE_BINDINGS = REPO / "assets" / "pump_station.bindings.yaml"
SAMPLE_PROCEDURES = REPO / "assets" / "pump_station.procedure.yaml"
DEFAULT_PORT = 8800
# The store every command uses when --store is not given (docs/STORE.md): set it once for a deployment.
STORE_ENV = "TWINVIEW_STORE"
TRUSTED_PROXIES_ENV = "TWINVIEW_TRUSTED_PROXIES"


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _terminate_on_sigterm() -> None:
    """For commands that run sandboxed readers: on SIGTERM, stop the readers and remove the staging
    folder, say so and exit 143. (Without this the readers would still die, see scene.lifeline, but a
    staging folder would be left.) The handler does it all itself rather than raise: an exception raised
    by a signal handler can land where nothing unwinds it (inside an import, a finalizer)."""

    from scene.pipeline import abort  # now, not in the handler: the main thread may hold an import lock then

    def terminate(signum: int, frame: object) -> None:
        try:
            abort()
            _say("terminated")
            sys.stderr.flush()
        finally:
            os._exit(EXIT_TERMINATED)

    signal.signal(signal.SIGTERM, terminate)


def _say(msg: str) -> None:
    print(f"twinview: {msg}", file=sys.stderr)


def _progress(enabled: bool):
    if not enabled:
        return None
    return lambda step: _say(f"{step}…")


def _import_options(args: argparse.Namespace) -> ImportOptions:
    return ImportOptions(point_budget=args.point_budget, mesh_scans=args.mesh_scans)


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(cpu_s=args.max_cpu, timeout_s=args.timeout, memory_mb=args.max_memory)


def cmd_build(args: argparse.Namespace) -> int:
    from scene.pipeline import build

    result = build(
        [Path(p) for p in args.inputs],
        Path(args.output),
        compress=args.compress,
        lod=args.lod,
        tile_threshold=args.tiles,
        options=_import_options(args),
        limits=_limits(args),
        debug=args.debug,
        progress=_progress(not args.quiet and sys.stderr.isatty()),
    )
    scene = result.scene
    if not args.quiet:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
        print(f"built {len(scene.elements)} elements, {scene.triangle_count} triangles -> {result.outdir}")
        print(f"  {stages}")
        for name in ("scene.usdc", "scene.glb", "scene.usdz", "manifest.json"):
            print(f"  {result.outdir / name}  ({(result.outdir / name).stat().st_size:,} bytes)")
        tiles = sorted((result.outdir / "tiles").glob("tile-*.glb"))
        if tiles:
            total = sum(t.stat().st_size for t in tiles)
            print(f"  {result.outdir / 'tiles'}  ({len(tiles)} tiles, {total:,} bytes)")
        if scene.warnings:
            print(f"  {len(scene.warnings)} warning(s): see manifest.json; first: {scene.warnings[0]}")
    return EXIT_OK


def _summary_from_manifest(manifest: dict) -> dict:
    by_class = Counter(e["class"] for e in manifest["elements"])
    boxes = [e["bbox"] for e in manifest["elements"] if e.get("bbox")]
    bbox = None
    if boxes:
        lo = [min(b[0][i] for b in boxes) for i in range(3)]
        hi = [max(b[1][i] for b in boxes) for i in range(3)]
        bbox = [lo, hi]
    return {
        "file": manifest.get("_path", ""),
        "elements": len(manifest["elements"]),
        "by_class": dict(by_class.most_common()),
        "triangles": sum(e.get("triangles", 0) for e in manifest["elements"]),
        "bbox": bbox,
        "units": manifest.get("units", "m"),
        "up_axis": manifest.get("up_axis", "Y"),
        "inputs": manifest.get("inputs", []),
        "warnings": manifest.get("warnings", []),
    }


def _summary_from_scene(path: Path, args: argparse.Namespace) -> dict:
    import numpy as np

    from scene.pipeline import import_all

    scene = import_all([path], _import_options(args), _limits(args), debug=args.debug)
    boxes = [b for b in (scene.world_bounds(i) for i in scene.elements) if b is not None]
    bbox = None
    if boxes:
        bbox = [np.min([b[0] for b in boxes], axis=0).tolist(), np.max([b[1] for b in boxes], axis=0).tolist()]
    src = scene.inputs[0]
    return {
        "file": str(path),
        "format": src.format,
        "importer": src.importer,
        "elements": len(scene.elements),
        "by_class": dict(Counter(e.cls for e in scene.elements.values()).most_common()),
        "triangles": scene.triangle_count,
        "bbox": bbox,
        "units": f"m (source: {src.source_units})",
        "up_axis": f"Y (source: {src.source_up_axis})",
        "warnings": scene.warnings,
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    from scene.pipeline import check_input

    path = Path(args.file)
    if path.is_dir() and (path / "manifest.json").is_file():
        path = path / "manifest.json"
    if path.name == "manifest.json":
        try:
            manifest = json.loads(path.read_text())
            manifest["_path"] = str(path)
            summary = _summary_from_manifest(manifest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ImportFailed(str(path), f"not a TwinView manifest ({exc})") from None
    else:
        check_input(path)
        summary = _summary_from_scene(path, args)
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"{summary['file']}")
    if "format" in summary:
        print(f"  format     {summary['format']} via {summary['importer']}")
    print(f"  elements   {summary['elements']}")
    for cls, n in summary["by_class"].items():
        print(f"    {n:6d}  {cls}")
    print(f"  triangles  {summary['triangles']:,}")
    if summary["bbox"]:
        lo, hi = summary["bbox"]
        size = [h - low for low, h in zip(lo, hi, strict=True)]
        print(f"  bbox       min {_fmt(lo)}  max {_fmt(hi)}  size {_fmt(size)} m")
    print(f"  units      {summary['units']}")
    print(f"  up axis    {summary['up_axis']}")
    print(f"  warnings   {len(summary['warnings'])}")
    for w in summary["warnings"][:20]:
        print(f"    - {w}")
    return EXIT_OK


def _fmt(v: list[float]) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in v) + ")"


def build_sample(data_dir: Path, *, force: bool = False, quiet: bool = False) -> Path:
    """Build the sample pump station into DATA_DIR/scenes/pump-station (once)."""
    from scene.pipeline import build

    outdir = data_dir / "scenes" / "pump-station"
    if (outdir / "manifest.json").is_file() and not force:
        return outdir
    if not SAMPLE_IFC.is_file():
        from scene.samples.pump_station import generate

        generate(SAMPLE_IFC)
    result = build([SAMPLE_IFC], outdir, progress=None if quiet else _progress(True))
    if not quiet:
        print(f"built the sample twin: {len(result.scene.elements)} elements -> {outdir}")
    return outdir


def cmd_demo(args: argparse.Namespace) -> int:
    from viewer_server.data_dir import prepare

    data_dir = prepare(Path(args.data_dir))
    scene_dir = build_sample(data_dir, force=args.rebuild)
    for name in ("scene.glb", "scene.usdz", "scene.usdc", "manifest.json"):
        print(f"  {scene_dir / name}")
    if args.build_only:
        return EXIT_OK
    from viewer_server.serve import ServeOptions, run

    def announce(url: str) -> None:
        from viewer_server.scenes import scene_id_for
        from viewer_server.session_cli import demo_links

        print(f"serving the live pump station at {url}  (simulated telemetry; Ctrl+C to stop)")
        print("join links for the default session, one per role (valid 8 h; add &name=YourName to be told apart):")
        for role, link in demo_links(data_dir, scene_id_for(scene_dir), url).items():
            print(f"  {role:<10} {link}")
        sys.stdout.flush()
        if not args.no_browser:
            import webbrowser

            webbrowser.open(url)

    options = ServeOptions(
        scene_dir=scene_dir,
        bindings=SAMPLE_BINDINGS,
        procedures=SAMPLE_PROCEDURES,
        mqtt_url=args.mqtt,
        host=args.host,
        port=args.port,
        data_dir=data_dir,
        simulate=True,
        **_edge_options(args),
    )
    run(options, on_ready=announce)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from viewer_server.serve import ServeOptions, run

    scene_dir = Path(args.scene_dir)
    if not (scene_dir / "manifest.json").is_file():
        raise UserError(f"{scene_dir}: not a built scene (no manifest.json); run `twinview build` first")
    options = ServeOptions(
        scene_dir=scene_dir,
        bindings=Path(args.bindings) if args.bindings else None,
        mqtt_url=args.mqtt,
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir),
        simulate=args.simulate,
        procedures=Path(args.procedures) if args.procedures else None,
        **_edge_options(args),
    )
    run(options, on_ready=lambda url: print(f"serving {scene_dir} at {url}  (Ctrl+C to stop)", flush=True))
    return EXIT_OK


def cmd_procedure_record(args: argparse.Namespace) -> int:
    from viewer_server.procedures import build_record, load_events, record_csv
    from viewer_server.store import open_store

    store = open_store(Path(args.data_dir), args.store)
    try:
        record = build_record(store.submit(lambda db: load_events(db, args.session)).result(), args.run)
    finally:
        store.close()
    if record is None:
        raise UserError(f"session {args.session!r}: no procedure run" + (f" {args.run!r}" if args.run else ""))
    if args.format == "json":
        import msgspec

        print(msgspec.json.format(msgspec.json.encode(record).decode(), indent=2))
    else:
        print(record_csv(record), end="")
    return EXIT_OK


def cmd_bcf(args: argparse.Namespace) -> int:
    from viewer_server.bcf import command

    return command.run_export(args) if args.bcf_command == "export" else command.run_import(args)


def cmd_store(args: argparse.Namespace) -> int:
    from viewer_server.store_cli import cmd_store

    return cmd_store(args, _say)


def cmd_history(args: argparse.Namespace) -> int:
    from viewer_server.history_export import run

    return run(args, _say)


def cmd_session(args: argparse.Namespace) -> int:
    from viewer_server.session_cli import cmd_session

    return cmd_session(args)


def _add_session_parser(sub: argparse._SubParsersAction) -> None:
    from viewer_server.permissions import ROLES  # light: `twinview build` must not pay for the server's imports

    se = sub.add_parser("session", help="collaboration sessions: create, issue and revoke join links, list")
    se_sub = se.add_subparsers(dest="session_command", required=True)
    c = se_sub.add_parser("create", help="create a session (a named room on a scene)")
    c.add_argument("session", metavar="NAME", help="session id: letters, digits, _ - .")
    c.add_argument("--scene", default=None, help="scene id (default: the data dir's only scene)")
    c.add_argument("--anonymous-role", default=None, choices=sorted(set(ROLES) - {"publisher"}),
                   help="let visitors without a link in with this role (default: links only)")  # fmt: skip
    t = se_sub.add_parser("token", help="print a join link for one user and role")
    t.add_argument("session", metavar="SESSION", help="session id (the scene id for the default session)")
    t.add_argument("--user", required=True)
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--ttl", default="8h", help="lifetime: 90s, 30m, 8h, 2d (default 8h)")
    t.add_argument("--name", default="", help="display name others see (default: the user)")
    t.add_argument("--base-url", default="", help="prefix, e.g. http://host:8800")
    r = se_sub.add_parser("revoke", help="void every join link issued to a user for a session until now")
    r.add_argument("session", metavar="SESSION", help="session id (the scene id for the default session)")
    r.add_argument("--user", required=True)
    se_sub.add_parser("list", help="list sessions")
    for p in (c, t, *se_sub.choices.values()):
        if "--data-dir" not in p._option_string_actions:
            _add_data_flags(p)
    se.set_defaults(func=cmd_session)


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    """Where a command finds the server's data: its data dir, and its store if that is not the data dir's."""
    p.add_argument("--data-dir", default=str(default_data_dir()), help="the server's data dir")
    p.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV),
        metavar="URL",
        help=f"the server's --store, if it has one (default: ${STORE_ENV}, else the data dir's SQLite file)",
    )


def _add_import_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--point-budget", type=int, default=DEFAULT_POINT_BUDGET, help="points kept per scan")
    p.add_argument("--mesh-scans", action="store_true", help="Poisson-reconstruct point clouds into surfaces")
    p.add_argument(
        "--max-cpu",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"CPU-seconds allowed per input, its kernel workers included "
        f"(default {CPU_S_BASE:g} + {CPU_S_PER_MB:g} per MB of the file)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"wall-clock seconds allowed per input (default {WALL_PER_CPU:g} times its CPU bound)",
    )
    p.add_argument(
        "--max-memory",
        type=int,
        default=DEFAULT_MEMORY_MB,
        help=f"MB of address space allowed per input (default {DEFAULT_MEMORY_MB}: a quarter of this machine's memory)",
    )


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    from viewer_server.audit import AUDIT_MAX_ROWS, AUDIT_RETENTION_DAYS
    from viewer_server.connections import HEADER_TIMEOUT_S, MAX_CONNECTIONS_PER_IP, RESERVED_FILES

    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--data-dir", default=str(default_data_dir()), help="SQLite store and built scenes")
    p.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV),
        metavar="URL",
        help="postgresql://USER@HOST:PORT/DB shared by several server processes (password: PGPASSWORD or"
        f" ~/.pgpass; default: ${STORE_ENV}, else the SQLite file in --data-dir)",
    )
    p.add_argument("--mqtt", default=None, help="MQTT broker URL, e.g. mqtt://localhost:1883")
    p.add_argument(
        "--bus",
        default=None,
        metavar="URL",
        help="redis://HOST:PORT: serve the scene with every other process on this Redis (default: this process"
        " alone); see docs/PROTOCOL.md 'Several server processes'",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="a web page origin (https://host:port) besides the server's own that may use it; repeatable",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name this server is reached by, besides localhost, its addresses and --host; repeatable",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=os.environ.get(TRUSTED_PROXIES_ENV, "").replace(",", " ").split(),
        metavar="CIDR",
        help="a reverse proxy's address or network (10.0.2.0/24): behind it the client's address is the one it"
        " puts in X-Forwarded-For (ignored from anyone else); repeatable, added to those of"
        f" ${TRUSTED_PROXIES_ENV} (separated by spaces or commas)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT_S,
        metavar="S",
        help=f"seconds to complete a request's headers (default {HEADER_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=MAX_CONNECTIONS_PER_IP,
        metavar="N",
        help=f"connections one address may hold at once (default {MAX_CONNECTIONS_PER_IP}; 0: no bound)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=None,
        metavar="N",
        help=f"connections in all (default: the open-file limit less {RESERVED_FILES}; 0: no bound)",
    )
    p.add_argument(
        "--audit-days",
        type=float,
        default=AUDIT_RETENTION_DAYS,
        metavar="DAYS",
        help=f"days the audit trail keeps a row (default {AUDIT_RETENTION_DAYS}; 0: no age limit)",
    )
    p.add_argument("--audit-max-rows", type=int, default=AUDIT_MAX_ROWS, metavar="N",
                   help=f"audit rows kept at most, the newest (default {AUDIT_MAX_ROWS}; 0: no limit)")  # fmt: skip


def _edge_options(args: argparse.Namespace) -> dict[str, Any]:
    """The serve flags of the store, the HTTP edge, connections, audit retention and the bus, as ServeOptions fields."""
    from viewer_server.audit import Retention
    from viewer_server.http_edge import EdgePolicy
    from viewer_server.redis_bus import check_url
    from viewer_server.store_db import check_location

    try:
        EdgePolicy.for_server(args.host, args.allow_host, args.allow_origin, args.trusted_proxy)
        if args.bus:
            check_url(args.bus)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    counts = (args.max_connections_per_ip, args.max_connections or 0, args.audit_days, args.audit_max_rows)
    if args.header_timeout <= 0 or min(counts) < 0:
        raise UserError("--header-timeout must be positive; --max-connections* and --audit-* not negative")
    try:
        store = check_location(args.store) if args.store is not None else None
    except ValueError as exc:
        raise UserError(f"--store {exc}") from None
    return {
        "store": store,
        "allow_origins": tuple(args.allow_origin),
        "allow_hosts": tuple(args.allow_host),
        "trusted_proxies": tuple(args.trusted_proxy),
        "header_timeout_s": args.header_timeout,
        "max_connections_per_ip": args.max_connections_per_ip,
        "max_connections": args.max_connections,
        "audit": Retention(args.audit_days, args.audit_max_rows),
        "bus_url": args.bus,
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="twinview", description="TwinView: live, collaborative digital twins.")
    ap.add_argument("--debug", action="store_true", help="show tracebacks and native library output")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="turn CAD/BIM/mesh/scan/USD files into one scene")
    b.add_argument("inputs", nargs="+", metavar="INPUT")
    b.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    b.add_argument("--compress", action="store_true", help="EXT_meshopt_compression + quantization")
    b.add_argument("--lod", action="store_true", help="add simplified levels for heavy meshes")
    b.add_argument(
        "--tiles",
        type=int,
        default=None,
        metavar="N",
        help="also write tiles/ for streaming when the scene has at least N elements with geometry "
        "(default 30000; 0: never; 1: always)",
    )
    b.add_argument("-q", "--quiet", action="store_true")
    _add_import_flags(b)
    b.set_defaults(func=cmd_build, skip_teardown=True, runs_readers=True)

    i = sub.add_parser("inspect", help="summarise a source file, a GLB/USD output or a built scene")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="machine-readable summary")
    _add_import_flags(i)
    i.set_defaults(func=cmd_inspect, skip_teardown=True, runs_readers=True)

    s = sub.add_parser("serve", help="serve a built scene with live telemetry")
    s.add_argument("scene_dir", metavar="SCENE_DIR")
    s.add_argument("--bindings", default=None, help="bindings file (YAML or JSON)")
    s.add_argument("--simulate", action="store_true", help="feed the bindings with simulated telemetry")
    s.add_argument("--procedures", default=None, help="a procedure file, or a folder of *.procedure.yaml|json")
    _add_server_flags(s)
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="build the sample pump station and serve it live")
    _add_server_flags(d)
    d.add_argument("--no-browser", action="store_true", help="do not open a browser")
    d.add_argument("--rebuild", action="store_true", help="rebuild the sample even if it exists")
    d.add_argument("--build-only", action="store_true", help="build the sample and exit")
    d.set_defaults(func=cmd_demo)

    pr = sub.add_parser("procedure", help="guided procedures: records of who completed which step")
    pr_sub = pr.add_subparsers(dest="procedure_command", required=True)
    rec = pr_sub.add_parser("record", help="print the record of a session's latest procedure run")
    rec.add_argument("session", metavar="SESSION", help="session id (the scene id for the default session)")
    rec.add_argument("--format", choices=("csv", "json"), default="csv")
    rec.add_argument("--run", default=None, help="a run id (default: the latest run)")
    _add_data_flags(rec)
    rec.set_defaults(func=cmd_procedure_record)

    _add_session_parser(sub)

    st = sub.add_parser("store", help="the server's store: migrate its schema, copy it to PostgreSQL")
    st_sub = st.add_subparsers(dest="store_command", required=True)
    mi = st_sub.add_parser("migrate", help="bring a store to this twinview's schema (serve also does it)")
    _add_data_flags(mi)
    cp = st_sub.add_parser("copy", help="copy every table of one store into another, e.g. SQLite to PostgreSQL")
    cp.add_argument("--from", dest="source", required=True, metavar="URL", help="sqlite:PATH (file or data dir)")
    cp.add_argument("--to", dest="target", required=True, metavar="URL", help="postgresql://USER@HOST:PORT/DB")
    cp.add_argument("--replace", action="store_true", help="empty a target that holds data first")
    st.set_defaults(func=cmd_store)

    h = sub.add_parser("history", help="the historian: export raw readings")
    h_sub = h.add_subparsers(dest="history_command", required=True)
    ex = h_sub.add_parser("export", help="write the raw readings of a time range to CSV or Parquet")
    ex.add_argument("--from", dest="start", required=True, metavar="T", help="ISO 8601 (UTC if no zone) or Unix s")
    ex.add_argument("--to", required=True, metavar="T", help="end (excluded), as --from")
    ex.add_argument("--scene", default=None, help="scene id (default: the data dir's only history)")
    ex.add_argument("--elements", nargs="+", default=None, metavar="ID", help="element ids (default: all)")
    ex.add_argument("--props", nargs="+", default=None, metavar="P", help="property names (default: all)")
    ex.add_argument("-o", "--output", required=True, metavar="FILE.csv|FILE.parquet")
    _add_data_flags(ex)
    h.set_defaults(func=cmd_history)

    bc = sub.add_parser("bcf", help="export or import a session's topics as BCF (3.0; import also 2.1)")
    bc_sub = bc.add_subparsers(dest="bcf_command", required=True)
    be = bc_sub.add_parser("export", help="write a session's topics to a BCF 3.0 archive")
    be.add_argument("session", metavar="SESSION", help="session id (the scene id for the default session)")
    be.add_argument("-o", "--output", required=True, metavar="FILE.bcf")
    _add_data_flags(be)
    be.set_defaults(func=cmd_bcf)
    bi = bc_sub.add_parser("import", help="add the topics of a BCF 3.0 or 2.1 archive to a session")
    bi.add_argument("session", metavar="SESSION", help="session id (the scene id for the default session)")
    bi.add_argument("file", metavar="FILE.bcf")
    _add_data_flags(bi)
    bi.add_argument("--scene", default=None, metavar="SCENE_DIR", help="built scene to map components to")
    bi.set_defaults(func=cmd_bcf)
    return ap


def _user_input_errors() -> tuple[type[Exception], ...]:
    """Errors in what the user gave us: a bad scene, bindings or procedure file, MQTT URL or session request,
    or a shared bus that does not answer."""
    from scene.config_file import ConfigFileError
    from viewer_server.bus import BusUnavailable
    from viewer_server.history_export import ExportError
    from viewer_server.ingest_mqtt import BrokerUrlError
    from viewer_server.scenes import SceneError
    from viewer_server.session_cli import SessionCliError
    from viewer_server.store_cli import StoreCliError
    from viewer_server.store_db import StoreError

    return (
        ConfigFileError,
        SceneError,
        BrokerUrlError,
        SessionCliError,
        BusUnavailable,
        StoreCliError,
        StoreError,
        ExportError,
    )


def main(argv: list[str] | None = None) -> int:
    return _run(parser().parse_args(argv))


def run() -> None:
    """The console script. After `build` and `inspect`, whose files are all written and closed by
    then, it exits without the interpreter's teardown: once usd-core is loaded that takes ~35 ms,
    a twelfth of building a small IFC."""
    args = parser().parse_args()
    if getattr(args, "runs_readers", False):  # the process is ours: its signal handling too
        _terminate_on_sigterm()
        reader_host.ensure_running()  # starts while this process loads the importer and checks the inputs
    code = _run(args)
    if getattr(args, "skip_teardown", False):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except ExportFailed as exc:
        if args.debug:
            traceback.print_exc()
        _say(f"could not write {exc} (rerun with --debug and report it)")
        return EXIT_INTERNAL
    except (ImportFailed, UserError, *_user_input_errors()) as exc:
        if args.debug:
            for note in getattr(exc, "__notes__", []):
                print(note, file=sys.stderr)
            traceback.print_exc()
        _say(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        _say(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    run()
