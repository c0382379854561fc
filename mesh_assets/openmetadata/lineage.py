"""Column-level lineage of dbt models, computed from the compiled SQL in a dbt manifest with
sqlglot's lineage module (sqlglot ships with dbt).

For every output column of a model, the leaves of its lineage tree are the columns of the
tables the model reads (dbt sources and models, i.e. Iceberg tables ``schema.table``). A column
built only from ``count(*)`` or constants has no source column and no column lineage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mesh_assets.openmetadata")

# dbt adapter -> sqlglot dialect
DIALECTS = {"duckdb": "duckdb", "trino": "trino", "postgres": "postgres", "spark": "spark"}


@dataclass(frozen=True)
class ColumnEdge:
    """``to_column`` of the model is computed from ``from_columns`` (``(schema, table, column)``)
    by the SQL expression ``function``."""

    to_column: str
    from_columns: tuple[tuple[str, str, str], ...]
    function: str | None = None


def model_column_lineage(
    sql: str,
    *,
    dialect: str | None,
    schema: Mapping[str, Mapping[str, Mapping[str, str]]],
    columns: list[str] | None = None,
) -> list[ColumnEdge]:
    """Column lineage of one compiled ``select``.

    ``schema``: ``{schema: {table: {column: type}}}`` of the tables it reads (lets sqlglot
    qualify unqualified columns and expand ``*``). ``columns``: the output columns to trace
    (default: every column of the select). Raises ``ValueError`` when the SQL does not parse.
    """
    import sqlglot  # noqa: PLC0415  sqlglot (0.4 s): column lineage only
    from sqlglot import exp  # noqa: PLC0415  (same)
    from sqlglot.errors import SqlglotError  # noqa: PLC0415  (same)
    from sqlglot.lineage import lineage  # noqa: PLC0415  (same)

    try:
        tree = sqlglot.parse_one(sql, dialect=dialect)
    except SqlglotError as exc:
        raise ValueError(f"sqlglot cannot parse the compiled SQL: {exc}") from None
    selects = {s.alias_or_name: s for s in tree.selects} if isinstance(tree, exp.Query) else {}
    wanted = columns if columns is not None else list(selects)
    # sqlglot wants the catalog level too when the SQL names it: key the schema under every
    # catalog the SQL uses (dbt-duckdb writes "<database>"."<schema>"."<table>").
    catalogs = {t.catalog for t in tree.find_all(exp.Table) if t.catalog}
    nested: dict = {c: dict(schema) for c in catalogs} if catalogs else dict(schema)
    edges = []
    for column in wanted:
        if column not in selects:
            continue
        try:
            root = lineage(column, tree, schema=nested, dialect=dialect)
        except (SqlglotError, KeyError, ValueError) as exc:
            log.info("no column lineage for %s: %s", column, exc)
            continue
        leaves = set()
        for node in root.walk():
            if node.downstream or not isinstance(node.expression, exp.Table):
                continue
            table = node.expression
            leaves.add((table.db, table.name, node.name.rsplit(".", 1)[-1]))
        if leaves:
            expression = selects[column]
            if isinstance(expression, exp.Alias):
                expression = expression.this
            function = None if isinstance(expression, exp.Column) else expression.sql(dialect=dialect)
            edges.append(ColumnEdge(column, tuple(sorted(leaves)), function))
    return edges


def compiled_sql(manifest: Mapping[str, Any], unique_id: str) -> str | None:
    node = manifest.get("nodes", {}).get(unique_id) or {}
    return node.get("compiled_code") or node.get("compiled_sql")


def dialect_of(manifest: Mapping[str, Any]) -> str | None:
    return DIALECTS.get(manifest.get("metadata", {}).get("adapter_type", ""))
