"""The quality verbs of the ``mesh`` command (registered through ``cli.EXTENSION_MODULES``).

mesh quality suites [DOMAIN ...] [--check]   GX ExpectationSuite JSON per product, from the
                                             contracts (domains/<d>/expectations/<p>.json)
mesh quality sql DOMAIN.PRODUCT [--dialect duckdb|trino]   the SQL the checks run
mesh quality run DOMAIN.PRODUCT [--as-of X]  run the rules now (no Dagster) + HTML report
mesh profile DOMAIN.PRODUCT [--as-of X] [--sample PCT]    rules proposed from the data
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyiceberg.exceptions import NoSuchTableError

from mesh_assets import engine
from mesh_assets.cli import add_verb
from mesh_assets.cli.output import say
from mesh_assets.contract.expectations import is_pushdown, kind_of
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import VersionError, resolve_as_of
from mesh_assets.quality.gx import suite_json, suite_path
from mesh_assets.quality.profiling import profile_product
from mesh_assets.quality.report import write_report
from mesh_assets.quality.run import evaluate, register_references
from mesh_assets.quality.sql import compile_suite, nan_as_null, trino_relation
from mesh_assets.settings import PROJECT_DIR
from mesh_assets.workspace import (
    domain_file,
    domain_path,
    expectations_path,
    load_domain_contracts,
    load_product,
    referenced_contract,
    workspace_domains,
)


def _products(domains: list[str] | None = None):

    for domain in domains or workspace_domains():
        if not domain_file(domain_path(domain)).exists():
            raise SystemExit(f"mesh: unknown domain '{domain}'")
        yield from load_domain_contracts(domain_path(domain))


def _product(identifier: str):

    if identifier.count(".") != 1:
        raise SystemExit(f"mesh: '{identifier}' is not DOMAIN.PRODUCT")
    try:
        return load_product(identifier)
    except ValueError as exc:
        raise SystemExit(f"mesh: {exc}") from None


def suite_status(domains: list[str] | None = None) -> tuple[dict[Path, str], list[Path]]:
    """(expected file -> content, stale or orphaned files) of the committed GX suites."""

    expected: dict[Path, str] = {}
    for product in _products(domains):
        if product.rules:
            expected[suite_path(product)] = suite_json(product)
    folders = {p.parent for p in expected} | {expectations_path(p).parent for p in _products(domains)}
    stale = [path for path, text in expected.items() if not path.exists() or path.read_text() != text]
    stale += sorted(
        f for folder in folders if folder.exists() for f in folder.glob("*.json") if f not in expected
    )
    return expected, stale


def cmd_suites(args) -> int:

    expected, stale = suite_status(args.domains or None)
    rel = lambda p: p.relative_to(PROJECT_DIR) if p.is_relative_to(PROJECT_DIR) else p  # noqa: E731
    if args.check:
        for path in stale:
            say(
                f"{rel(path)}: {'stale' if path in expected else 'no such product'} "
                "(run `mesh quality suites`)"
            )
        say(
            f"mesh quality suites: {len(stale)} stale suite(s)"
            if stale
            else f"mesh quality suites: {len(expected)} suite(s) in sync with the contracts"
        )
        return 1 if stale else 0
    for path in stale:
        if path in expected:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(expected[path])
            say(f"wrote {rel(path)}")
        else:
            path.unlink()
            say(f"removed {rel(path)} (no such product)")
    say(f"mesh quality suites: {len(expected)} suite(s), {len(stale)} written or removed")
    return 0


def cmd_sql(args) -> int:

    product = _product(args.product)
    rules = [r for r in product.rules if is_pushdown(r)]
    refs = sorted({r.kwargs["product"] for r in rules if kind_of(r.expectation) == "ref"})
    if args.dialect == "trino":
        relation = trino_relation(product.table_identifier)
        lookups = {ref: trino_relation(referenced_contract(product, ref).table_identifier) for ref in refs}
    else:
        relation = '"product"'
        lookups = {ref: '"ref_' + ref.replace(".", "__") + '"' for ref in refs}
    columns = [(c.name, c.type_name) for c in product.columns]
    plan = compile_suite(
        rules, nan_as_null(relation, columns, args.dialect), dialect=args.dialect, lookups=lookups
    )
    say(f"-- {product.identifier}: {len(rules)} rule(s) in one statement ({args.dialect})")
    say(plan.sql + ";")
    say(f"-- parameters: {plan.params!r}")
    fallback = [r.name for r in product.rules if not is_pushdown(r)]
    if fallback:
        say(f"-- through Great Expectations on pandas: {', '.join(fallback)}")
    return 0


def cmd_run(args) -> int:

    product = _product(args.product)
    catalog = open_catalog()
    if not catalog.table_exists(product.table_identifier):
        raise SystemExit(f"mesh: {product.table_identifier} has no table yet")
    table = catalog.load_table(product.table_identifier)
    try:
        snapshot_id = resolve_as_of(table, args.as_of)
    except VersionError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    con = engine.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        relation = engine.register_table(con, table, "product", snapshot_id=snapshot_id)
        lookups, refs = register_references(con, catalog, product, product.rules)
        results = evaluate(
            con, relation, product.rules, lookups=lookups, columns=[c.name for c in product.columns]
        )
    finally:
        con.close()
    results = [result.masked(product) for result in results]
    run_id = "cli-" + dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = write_report(product, results, run_id=run_id, snapshot_id=snapshot_id, references=refs)
    for r in results:
        md = r.metadata()
        extra = (
            f"unexpected {md['unexpected_count']}"
            if "unexpected_count" in md
            else f"observed {md.get('observed_value')}"
        )
        say(
            f"{r.status:8} {'blocking' if r.rule.severity == 'error' else 'warn':8} "
            f"{r.rule.name:32} {r.engine:18} {extra}" + (f"  {r.error}" if r.error else "")
        )
    say(f"report: {report}")
    return 0 if all(r.passed for r in results if r.rule.severity == "error") else 1


def cmd_profile(args) -> int:

    if args.product.count(".") != 1:
        raise SystemExit(f"mesh: '{args.product}' is not DOMAIN.PRODUCT")
    try:
        say(profile_product(args.product, as_of=args.as_of, sample_percent=args.sample))
    except NoSuchTableError:
        raise SystemExit(f"mesh: {args.product} has no table yet (materialize it first)") from None
    return 0


def add_cli(subparsers) -> None:
    quality = add_verb(subparsers, "quality")
    sub = quality.add_subparsers(dest="quality_command", required=True)
    suites = sub.add_parser(
        "suites",
        help="write each product's GX ExpectationSuite JSON (domains/<domain>/expectations/<product>.json)",
    )
    suites.add_argument("domains", nargs="*")
    suites.add_argument("--check", action="store_true", help="fail when a suite is stale")
    suites.set_defaults(fn=cmd_suites)
    sql = sub.add_parser("sql", help="the SQL statement a product's checks run")
    sql.add_argument("product", metavar="DOMAIN.PRODUCT")
    sql.add_argument("--dialect", choices=["duckdb", "trino"], default="duckdb")
    sql.set_defaults(fn=cmd_sql)
    run = sub.add_parser("run", help="run a product's rules now (no Dagster), write a report")
    run.add_argument("product", metavar="DOMAIN.PRODUCT")
    run.add_argument("--as-of", help="snapshot id, tag or ISO timestamp (default: current)")
    run.set_defaults(fn=cmd_run)
    prof = add_verb(subparsers, "profile")
    prof.add_argument("product", metavar="DOMAIN.PRODUCT")
    prof.add_argument("--as-of", help="snapshot id, tag or ISO timestamp (default: current)")
    prof.add_argument(
        "--sample", type=float, metavar="PCT", help="profile a Bernoulli sample of PCT percent of the rows"
    )
    prof.set_defaults(fn=cmd_profile)
