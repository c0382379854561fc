"""Read API for analysts and notebooks: any product, any past version, as Arrow or pandas.

    import mesh_assets
    flights = mesh_assets.read("reference.airports", columns=["faa", "name"],
                               filter="tz = -5", as_of="last-checked")
    df = mesh_assets.read("weather.observations", pandas=True)

``as_of`` takes a snapshot id, a tag or branch, or an ISO timestamp. ``filter`` is a pyiceberg
row filter (a string such as ``"origin = 'JFK' and temp > 80"`` or an expression); it prunes
partitions and files before anything is read.

``user="alice"`` reads as that user: the access policy Trino enforces (OPA, from the contracts)
applies here too: a denied product raises ``AccessDenied`` (a ``PermissionError``), row filters
drop rows, masked columns come back masked, and ``filter`` then applies to what the user sees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue

from mesh_assets import engine
from mesh_assets.access.enforce import governed_query, governed_read
from mesh_assets.engine import quote, trino_connection, trino_table
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import VersionError, is_timestamp, resolve_as_of


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


def trino_query(sql: str, *, as_of: str | int | None = None, user: str | None = None):
    """Run ``sql`` on Trino (the production engine, where access policies apply) and return
    ``(column names, rows)``. Tables are named ``domain.product`` as everywhere in the mesh;
    with ``as_of`` each product the query names is read at its snapshot for that id, tag or
    time (``FOR VERSION AS OF``), exactly the snapshot ``mesh query --as-of`` reads on DuckDB."""

    if as_of is not None:
        catalog = open_catalog()
        for (namespace,) in catalog.list_namespaces():
            for ident in catalog.list_tables(namespace):
                name = ".".join(ident)
                pattern = re.compile(rf'(?<![\w."]){re.escape(name)}(?![\w"])')
                if not pattern.search(sql):
                    continue
                table = catalog.load_table(ident)
                try:
                    snapshot_id = resolve_as_of(table, as_of)
                except VersionError:
                    snapshot_id = resolve_as_of(table, None)
                sql = pattern.sub(lambda _m, n=name, s=snapshot_id: _trino_version_clause(n, s), sql)
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
