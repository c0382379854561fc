"""``mesh products | history | rollback | lineage | query | contract diff | maintain | drop``:
what consumers and operators ask of the published products."""

from __future__ import annotations

import csv as csvmod
import json
import sys
import time

import dagster as dg
import duckdb
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError

from mesh_assets.access import audit
from mesh_assets.cli import add_verb
from mesh_assets.cli.output import check_status, say
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.maintenance import dagster_run_states, maintain
from mesh_assets.iceberg.schema import contract_diff
from mesh_assets.iceberg.versions import VersionError, history, lineage
from mesh_assets.iceberg.wap import RollbackRefused, rollback
from mesh_assets.ingest.quarantine import maintain_quarantine
from mesh_assets.read_api import query, trino_query
from mesh_assets.runs import fail_dead_runs
from mesh_assets.settings import default_engine, load_settings, mesh_user, use_dagster_home
from mesh_assets.workspace import all_products


def _evaluations_of_run(instance, run_id: str, key: dg.AssetKey) -> list:
    """The check evaluations of ``key`` in run ``run_id`` (the run of its current version), in
    order: the same the demo summary counts."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    found = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return [e for e in found if e.asset_key == key]


def cmd_products(args) -> int:
    """Owner, rows, current snapshot, last materialization and check status of every product."""

    settings = load_settings()
    catalog = open_catalog()
    use_dagster_home(settings)
    say(f"{'product':34} {'owner':18} {'rows':>8}  {'snapshot id':>20}  {'last materialized':20} checks")
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
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(event.timestamp)) if event else "never"
            checks = check_status(_evaluations_of_run(instance, event.run_id, key)) if event else "not run"
            say(f"{product.identifier:34} {product.owner:18} {rows:>8}  {snapshot:>20}  {when:20} {checks}")
    return 0


def _table(identifier: str):

    try:
        return open_catalog().load_table(identifier)
    except (NoSuchTableError, ValueError):
        raise SystemExit(f"mesh: no data product table {identifier} (see `mesh products`)") from None


def cmd_history(args) -> int:

    say(
        f"{'snapshot id':>20}  {'committed at (UTC)':19}  {'operation':9} {'rows':>9}  "
        f"{'dagster run':36}  refs"
    )
    for row in history(_table(args.product)):
        mark = " *" if row["current"] else ""
        say(
            f"{row['snapshot_id']:>20}  {row['committed_at']:%Y-%m-%d %H:%M:%S}  "
            f"{row['operation']:9} {row['rows']:>9}  {row['run_id'] or '-':36}  "
            f"{', '.join(row['refs'])}{mark}"
        )
    return 0


def _audit_rollback(product: str, user: str, decision: str, detail: dict) -> None:
    audit.record(
        audit.Decision(
            time=audit.now(),
            user=user,
            groups=(),
            source="mesh",
            operation="Rollback",
            product=product,
            decision=decision,
            detail=detail,
        )
    )


def cmd_rollback(args) -> int:
    """Make a past snapshot current; refused for one that never passed the blocking checks
    unless forced with a reason. Every rollback, and every refusal, is in the audit log."""

    table = _table(args.product)
    user = mesh_user()
    if args.reason is not None and not args.force:
        raise SystemExit("mesh: --reason goes with --force (a checked snapshot needs no reason)")
    try:
        done = rollback(table, args.snapshot, user=user, reason=args.reason or "", force=args.force)
    except RollbackRefused as exc:
        _audit_rollback(args.product, user, "deny", {"snapshot": str(args.snapshot), "reason": args.reason})
        raise SystemExit(f"mesh: {exc}") from None
    except VersionError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    _audit_rollback(args.product, user, "forced" if done.forced else "allow", done.record())
    say(
        f"{args.product} now reads snapshot {done.restored} (rollback snapshot {done.snapshot_id}, "
        f"by {done.user} at {done.at}" + (f", forced: {done.reason}" if done.forced else "") + ")"
    )
    if not done.checked:
        say(f"warning: snapshot {done.restored} never passed the blocking checks; consumers now read it")
    return 0


def cmd_lineage(args) -> int:

    _table(args.product)
    try:
        node = lineage(open_catalog(), args.product, args.snapshot)
    except VersionError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    say(json.dumps(node.as_dict(), indent=2) if args.json else "\n".join(node.lines()))
    return 0


def cmd_query(args) -> int:

    if args.engine == "trino":
        try:
            names, rows = trino_query(args.sql, as_of=args.as_of, user=args.as_user)
        except VersionError as exc:
            raise SystemExit(f"mesh: --as-of {args.as_of}: {exc}") from None
        except Exception as exc:  # trino.exceptions.* carry Trino's own message
            raise SystemExit(f"mesh: query failed on Trino: {getattr(exc, 'message', exc)}") from None

        if args.format == "csv":
            writer = csvmod.writer(sys.stdout)
            writer.writerow(names)
            writer.writerows(rows)
        else:
            con = duckdb.connect()

            con.from_arrow(
                pa.Table.from_pylist([dict(zip(names, r)) for r in rows])
                if rows
                else pa.table({n: pa.array([], pa.string()) for n in names})
            ).show(max_rows=args.max_rows)
        return 0

    try:
        con, relation = query(args.sql, args.as_of, user=args.as_user)
    except VersionError as exc:
        raise SystemExit(f"mesh: --as-of {args.as_of}: {exc}") from None
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
        say(
            f"{product.table_identifier}: no table yet; the first materialization creates it "
            f"from contract {product.path}"
        )
        return 0
    if d.is_empty:
        say(f"{product.table_identifier}: no change (contract {product.version} matches the table)")
        return 0
    for line in d.describe():
        say(line)
    if d.breaking:
        say(
            f"refused at the next write: breaking change(s); bump the contract to "
            f"{product.major_version + 1}.0.0 to publish {product.identifier}_v"
            f"{max(product.major_version + 1, 2)} beside the current table"
        )
        return 1
    say("applied automatically at the next write")
    return 0


def cmd_maintain(args) -> int:
    """Fail the runs of this machine whose worker process died, publish the quarantine rows of
    runs stopped after publishing their product, remove expired tags and the audit branches of
    runs no longer running (asking the mesh's Dagster instance; quarantine tables' too), expire
    snapshots past each contract's retention, compact small files and manifests, remove orphan
    files."""

    catalog = open_catalog()
    use_dagster_home(load_settings())
    products = [p for p in all_products() if not args.products or p.identifier in args.products]
    with dg.DagsterInstance.get() as instance:
        if not args.dry_run:  # a dead run's audit branch is no longer in use
            for run_id in fail_dead_runs(instance):
                say(f"run {run_id} marked failed: its worker process is gone (killed or crashed)")
        run_states = dagster_run_states(instance)
        for product in products:
            if product.quarantine and not args.dry_run:  # before the product's snapshots expire
                quarantine = maintain_quarantine(catalog, product, run_states)
                if quarantine is not None and quarantine.published:
                    say(
                        f"{quarantine.table:28} published the rows parked on audit branch(es) of runs "
                        f"that published the product (unless a newer run had): {', '.join(quarantine.published)}"
                    )
                if quarantine is not None and quarantine.removed:
                    say(
                        f"{quarantine.table:28} removed audit branch(es) of runs no longer running: "
                        f"{', '.join(quarantine.removed)}"
                    )
            report = maintain(product, catalog, dry_run=args.dry_run, run_states=run_states)
            if report is None:
                say(f"{product.identifier:28} no table yet")
                continue
            md = report.as_metadata()
            say(
                f"{report.table:28} expired {md['expired_snapshots']} snapshot(s), "
                f"{md['expired_refs']} tag(s)/audit branch(es); "
                f"{'would remove' if args.dry_run else 'removed'} "
                f"{md['orphan_files_removed']} orphan file(s), {md['orphan_bytes_removed']:,} bytes; "
                f"{md['files_kept_too_young']} kept as too young"
            )
            if report.compaction is not None:
                c = report.compaction
                say(
                    f"{'':28} compaction: {c.skipped}"
                    if c.skipped
                    else f"{'':28} compacted {c.partitions_rewritten} partition(s): data files "
                    f"{c.files_before} -> {c.files_after}, manifests {c.manifests_before} -> {c.manifests_after}"
                )
            if report.removed_branches:
                say(
                    f"{'':28} removed audit branch(es) of runs no longer running: {md['removed_audit_branches']}"
                )
    return 0


def cmd_drop(args) -> int:

    catalog = open_catalog()
    if not catalog.table_exists(args.product):
        raise SystemExit(f"mesh: no Iceberg table {args.product}")
    catalog.drop_table(args.product)
    say(f"dropped {args.product}")
    return 0


def add_cli(sub) -> None:
    add_verb(sub, "products").set_defaults(fn=cmd_products)
    hist = add_verb(sub, "history")
    hist.add_argument("product", metavar="DOMAIN.PRODUCT")
    hist.set_defaults(fn=cmd_history)
    rb = add_verb(sub, "rollback")
    rb.add_argument("product", metavar="DOMAIN.PRODUCT")
    rb.add_argument("snapshot", help="snapshot id, tag or ISO timestamp")
    rb.add_argument(
        "--force", action="store_true", help="roll back to a snapshot that never passed the blocking checks"
    )
    rb.add_argument(
        "--reason", metavar="TEXT", help="why (required with --force; recorded with the rollback)"
    )
    rb.set_defaults(fn=cmd_rollback)
    lin = add_verb(sub, "lineage")
    lin.add_argument("product", metavar="DOMAIN.PRODUCT")
    lin.add_argument("--snapshot", help="snapshot id, tag or ISO timestamp (default: current)")
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(fn=cmd_lineage)
    q = add_verb(sub, "query")
    q.add_argument("sql")
    q.add_argument("--as-of", help="snapshot id, tag or ISO timestamp")
    q.add_argument("--format", choices=["table", "csv"], default="table")
    q.add_argument("--max-rows", type=int, default=40)
    q.add_argument(
        "--as-user",
        metavar="USER",
        help="an operator's impersonation (needs MESH_OPERATOR=1, recorded in the audit log): "
        "apply the access policy for USER (denials, row filters, column masks)",
    )
    q.add_argument(
        "--engine",
        choices=["duckdb", "trino"],
        default=default_engine(),
        help="duckdb (in process, default) or trino (the production engine)",
    )
    q.set_defaults(fn=cmd_query)
    maint = add_verb(sub, "maintain")
    maint.add_argument("products", nargs="*", metavar="DOMAIN.PRODUCT")
    maint.add_argument("--dry-run", action="store_true")
    maint.set_defaults(fn=cmd_maintain)
    contract = add_verb(sub, "contract")
    contract_sub = contract.add_subparsers(dest="contract_command", required=True)
    cdiff = contract_sub.add_parser("diff", help="what the contract would change in its table")
    cdiff.add_argument("product", metavar="DOMAIN.PRODUCT")
    cdiff.set_defaults(fn=cmd_contract_diff)
    drop = add_verb(sub, "drop")
    drop.add_argument("product", metavar="DOMAIN.PRODUCT")
    drop.set_defaults(fn=cmd_drop)
