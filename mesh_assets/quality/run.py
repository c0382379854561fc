"""Running a product's rules: pushdown SQL for what the compiler supports, Great Expectations
for the rest, never skipped. The only place that chooses between the two engines."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyiceberg.exceptions import NoSuchTableError

from mesh_assets import engine
from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.expectations import is_pushdown, kind_of
from mesh_assets.contract.model import QualityRule
from mesh_assets.engine import trino_connection
from mesh_assets.quality.gx import validate_relation
from mesh_assets.quality.results import RuleResult
from mesh_assets.quality.sql import Dialect, run_pushdown, trino_relation
from mesh_assets.workspace import referenced_contract

if TYPE_CHECKING:
    import duckdb

    from mesh_assets.contract.model import DataProduct


def run_suite(
    connection,
    relation: str,
    rules: Sequence[QualityRule],
    *,
    dialect: str | Dialect = "duckdb",
    lookups: dict[str, str] | None = None,
    now: dt.datetime | None = None,
    columns: Sequence[str] | None = None,
) -> list[RuleResult]:
    """Every rule of a product on ``relation`` through ``connection`` (DuckDB, or any DB-API
    connection with ``dialect="trino"``), in the order given.

    Pushdown rules run as one SQL statement; the others run through Great Expectations on pandas
    (:mod:`mesh_assets.quality.gx`) over only the columns they need, read from the same
    ``relation`` (the audited snapshot), never skipped. ``columns`` (all columns of the
    relation) is needed only by table-level GX expectations."""
    rules = list(rules)
    pushdown = [i for i, r in enumerate(rules) if is_pushdown(r)]
    fallback = [i for i, r in enumerate(rules) if not is_pushdown(r)]
    out: list[RuleResult | None] = [None] * len(rules)
    if pushdown:
        results = run_pushdown(
            connection, relation, [rules[i] for i in pushdown], dialect=dialect, lookups=lookups, now=now
        )
        for i, result in zip(pushdown, results):
            out[i] = result
    if fallback:
        results = validate_relation(
            connection, relation, [rules[i] for i in fallback], dialect=dialect, columns=columns
        )
        for i, result in zip(fallback, results):
            out[i] = result
    return list(out)  # type: ignore[arg-type]


# --- evaluation (the SQL compiler lives in mesh_assets.quality.sql) ----------------------------


def evaluate(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    rules: tuple[QualityRule, ...] | list[QualityRule],
    *,
    lookups: dict[str, str] | None = None,
    now: dt.datetime | None = None,
    columns: list[str] | None = None,
) -> list[RuleResult]:
    """Evaluate ``rules`` on ``relation`` (a quoted name or table function) in DuckDB: the
    pushdown rules in one SQL statement, the others through GX. A rule whose SQL errors (a regex
    DuckDB rejects, a range on a text column) is reported as *errored*, not passed and not
    silently failed. On Trino: :func:`mesh_assets.quality.run.run_suite` with a DB-API
    connection and ``dialect="trino"``."""
    return run_suite(con, relation, list(rules), dialect="duckdb", lookups=lookups, now=now, columns=columns)


def register_references(con, catalog, product: DataProduct, rules) -> tuple[dict[str, str], dict[str, int]]:
    """Views of the *current* (main) snapshot of every product the rules reference:
    (``domain.product`` -> relation, ``domain.product`` -> snapshot id). A product without a
    table or snapshot is left out; its rules report as errored."""

    lookups: dict[str, str] = {}
    snapshots: dict[str, int] = {}
    for ref in sorted({r.kwargs["product"] for r in rules if kind_of(r.expectation) == "ref"}):
        try:
            table = catalog.load_table(referenced_contract(product, ref).table_identifier)
        except (NoSuchTableError, ContractError, OSError):
            continue
        snapshot = table.current_snapshot()
        if snapshot is None:
            continue
        lookups[ref] = engine.register_table(
            con, table, "ref_" + ref.replace(".", "__"), snapshot_id=snapshot.snapshot_id
        )
        snapshots[ref] = snapshot.snapshot_id
    return lookups, snapshots


def evaluate_on_trino(catalog, product: DataProduct, rules, snapshot_id: int | None):
    """The suite on Trino, over exactly the audited snapshot (``FOR VERSION AS OF``); other
    products the rules reference are read at their current snapshot."""

    lookups: dict[str, str] = {}
    snapshots: dict[str, int] = {}
    for ref in sorted({r.kwargs["product"] for r in rules if kind_of(r.expectation) == "ref"}):
        identifier = referenced_contract(product, ref).table_identifier
        if not catalog.catalog().table_exists(identifier):
            continue
        current = catalog.load_table(identifier).current_snapshot()
        if current is not None:
            lookups[ref] = trino_relation(identifier, current.snapshot_id)
            snapshots[ref] = current.snapshot_id
    connection = trino_connection(domain=product.domain)
    try:
        return run_suite(
            connection,
            trino_relation(product.table_identifier, snapshot_id),
            list(rules),
            dialect="trino",
            lookups=lookups,
            columns=[c.name for c in product.columns],
        ), snapshots
    finally:
        connection.close()
