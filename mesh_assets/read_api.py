"""Read API for analysts and notebooks: any product, any past version, as Arrow or pandas.

    import mesh_assets
    flights = mesh_assets.read("reference.airports", columns=["faa", "name"],
                               filter="tz = -5", as_of="last-checked")
    df = mesh_assets.read("weather.observations", pandas=True)

``as_of`` takes a snapshot id, a tag or branch, or an ISO timestamp; one the product does not
have raises :class:`~mesh_assets.iceberg.versions.VersionError` naming what it has (never the
current data in its place). ``filter`` is a pyiceberg
row filter (a string such as ``"origin = 'JFK' and temp > 80"`` or an expression); it prunes
partitions and files before anything is read.

Without ``user`` a read is *trusted-local*: it reads the Iceberg table directly with the
warehouse's credentials (whoever holds them reads everything; the policy applies on Trino).

``user="alice"`` reads as that user, an operator's impersonation for trying the policy: it needs
the operator role (``MESH_OPERATOR=1``) and is recorded in the audit log. The access policy
Trino enforces (OPA, from the contracts) applies: a denied product raises ``AccessDenied`` (a
``PermissionError``), row filters drop rows, masked columns come back masked, and ``filter``
then applies to what the user sees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue

from mesh_assets import engine, settings
from mesh_assets.access.enforce import governed_query, governed_read, impersonate
from mesh_assets.engine import quote, trino_connection, trino_table
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import resolve_as_of, resolve_as_of_tables


def read(
    identifier: str,
    *,
    columns: Sequence[str] | None = None,
    filter: Any = None,
    as_of: str | int | None = None,
    limit: int | None = None,
    pandas: bool = False,
    engine: str | None = None,
    user: str | None = None,
):
    """Rows of product ``identifier`` (``domain.product``) as a ``pyarrow.Table``
    (a ``pandas.DataFrame`` with ``pandas=True``). ``engine="trino"`` reads through Trino
    (``filter`` is then a SQL predicate); the default reads the Iceberg table directly.
    ``user`` applies the access policy of that user (on both engines)."""

    if engine == "trino":
        data = read_trino(identifier, columns=columns, filter=filter, as_of=as_of, limit=limit, user=user)
        return data.to_pandas() if pandas else data
    if engine not in (None, "duckdb", "iceberg"):
        raise ValueError(f"engine={engine!r}: expected 'duckdb' (direct) or 'trino'")
    if user is not None:
        data = governed_read(identifier, columns=columns, filter=filter, as_of=as_of, limit=limit, user=user)
        return data.to_pandas() if pandas else data

    table = open_catalog().load_table(identifier)
    snapshot_id = resolve_as_of(table, as_of)
    scan = table.scan(
        row_filter=filter if filter is not None else AlwaysTrue(),
        selected_fields=tuple(columns) if columns else ("*",),
        snapshot_id=snapshot_id,
        limit=limit,
    )
    data = scan.to_arrow()
    return data.to_pandas() if pandas else data


def _trino_version_clause(identifier: str, snapshot_id: int | None) -> str:

    clause = trino_table(identifier)
    return f"{clause} FOR VERSION AS OF {int(snapshot_id)}" if snapshot_id is not None else clause


def named_tables(sql: str, identifiers) -> list[str]:
    """The ``domain.product`` names among ``identifiers`` that ``sql`` mentions (unquoted)."""
    return [name for name in identifiers if _mention(name).search(sql)]


def _mention(name: str) -> re.Pattern:
    return re.compile(rf'(?<![\w."]){re.escape(name)}(?![\w"])')


def _tables(catalog) -> dict[str, Any]:
    """Every table of the catalog by ``domain.product`` name (not loaded)."""
    return {".".join(i): i for (ns,) in catalog.list_namespaces() for i in catalog.list_tables(ns)}


def trino_query(sql: str, *, as_of: str | int | None = None, user: str | None = None):
    """Run ``sql`` on Trino (the production engine, where access policies apply) and return
    ``(column names, rows)``. Tables are named ``domain.product`` as everywhere in the mesh;
    with ``as_of`` each product the query names is read at its snapshot for that id, tag or
    time (``FOR VERSION AS OF``), resolved exactly as ``mesh query --as-of`` does on DuckDB
    (:func:`~mesh_assets.iceberg.versions.resolve_as_of_tables`: unknown versions raise)."""

    if as_of is not None:
        catalog = open_catalog()
        idents = _tables(catalog)
        named = {n: catalog.load_table(idents[n]) for n in named_tables(sql, idents)}
        for name, snapshot_id in resolve_as_of_tables(named, as_of).items():
            sql = _mention(name).sub(lambda _m, n=name, s=snapshot_id: _trino_version_clause(n, s), sql)
    if user is not None and user != settings.trino_credentials()[0]:
        impersonate(user, source="trino")  # and Trino asks the policy whether the login may
    cursor = trino_connection(user=user).cursor()
    cursor.execute(sql)
    rows = cursor.fetchall()
    return [d[0] for d in cursor.description or []], rows


def read_trino(
    identifier: str,
    *,
    columns: Sequence[str] | None = None,
    filter: str | None = None,
    as_of: str | int | None = None,
    limit: int | None = None,
    user: str | None = None,
):
    """``read()`` through Trino: same rows, as a ``pyarrow.Table``, with Trino's access
    control applied for ``user``. ``filter`` is a SQL predicate."""

    snapshot_id = resolve_as_of(open_catalog().load_table(identifier), as_of) if as_of else None
    select = ", ".join(quote(c) for c in columns) if columns else "*"
    sql = f"SELECT {select} FROM {_trino_version_clause(identifier, snapshot_id)}"
    if filter:
        sql += f" WHERE {filter}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    names, rows = trino_query(sql, user=user)
    return (
        pa.Table.from_pylist([dict(zip(names, r)) for r in rows])
        if rows
        else pa.table({n: pa.array([], pa.null()) for n in names})
    )


def query(sql: str, as_of: str | None = None, user: str | None = None):
    """Run ``sql`` in DuckDB over every product (``domain.product``), optionally time travelled
    (:func:`~mesh_assets.iceberg.versions.resolve_as_of_tables` over the products the SQL
    names: a snapshot id or tag applies to the tables that have it, a time to all; a version
    none of them has raises ``VersionError``). With ``user``, the access policy applies as on
    Trino (:mod:`mesh_assets.access.enforce`): denied tables, row filters, column masks."""
    if user is not None:
        return governed_query(sql, as_of, user)

    catalog = open_catalog()
    con = engine.connect()
    idents = _tables(catalog)
    tables = {name: catalog.load_table(ident) for name, ident in idents.items()}
    named = set(named_tables(sql, idents))
    snapshots = {name: resolve_as_of(table, None) for name, table in tables.items() if name not in named}
    snapshots |= resolve_as_of_tables({n: tables[n] for n in named}, as_of)
    for name, snapshot_id in snapshots.items():
        if snapshot_id is not None:
            engine.register_table(con, tables[name], name, snapshot_id=snapshot_id)
    return con, con.sql(sql)
