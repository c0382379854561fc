"""The local read path's enforcement point: the policy's decisions applied to DuckDB and
pyiceberg reads (``mesh query --as-user U``, ``mesh_assets.read(..., user=U)``).

For each table a query reads, the policy is asked once (:func:`decide`: Trino's own three
questions, SelectFromColumns, GetRowFilters and GetColumnMask, evaluated by OPA over the same
Rego Trino uses) and the answer is applied exactly as Trino applies it:

* denied: :class:`AccessDenied`, nothing is read;
* row filters: the table's rows are filtered first, on the stored values;
* column masks: the SQL expressions OPA returns (rendered for DuckDB) replace the columns, with
  the same names and types.

The governed query sees only those governed tables: the raw scan is never registered in the
connection, table functions and other catalogs are refused, and the connection is locked
(``enable_external_access = false``) before the user's SQL runs, so the files under the
warehouse cannot be read around the policy from SQL. It is not a security boundary against
someone who can read the warehouse's files with their own credentials: that boundary is Trino
(and the object store's credentials), which enforces the same policy.

Reading *as* a user is an operator's impersonation, for trying the policy: it requires the
operator role (``MESH_OPERATOR=1``, :func:`~mesh_assets.settings.operator_role`) and each one is
written to the audit log (``ImpersonateUser``, by whom, as whom) before anything is read; without
the role it is refused and recorded as denied. A read without a user is trusted-local: whoever
runs it holds the warehouse's credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
from pyiceberg.expressions import parser
from pyiceberg.expressions.visitors import bind
from pyiceberg.io.pyarrow import expression_to_pyarrow, schema_to_pyarrow

from mesh_assets import settings
from mesh_assets.access import audit
from mesh_assets.access.opa import PolicyUnavailable, ask
from mesh_assets.access.policy_data import effective_users
from mesh_assets.contract.row_filters import quote_identifier
from mesh_assets.engine import quote
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import resolve_as_of, resolve_as_of_tables


class AccessDenied(PermissionError):
    """The policy denies the access (the message reads like Trino's)."""


@dataclass(frozen=True)
class TableDecision:
    product: str  # domain.table as read
    allow: bool
    row_filters: tuple[str, ...] = ()
    masks: dict[str, str] = field(default_factory=dict)  # column -> DuckDB expression
    source: str = ""


def groups_of(user: str) -> list[str]:
    """The user's groups: ``MESH_ACCESS_GROUPS`` (comma-separated, as an identity provider
    would assert them) or the users file with the stack's accounts (what Trino's group provider
    reads)."""

    asserted = settings.asserted_groups()
    if asserted is not None:
        return asserted
    return sorted(effective_users().groups_of(user))


def impersonate(user: str, *, source: str) -> None:
    """Check that the caller may read as ``user`` (the operator role) and record the
    impersonation in the audit log; raises :class:`AccessDenied` (recorded too) without it."""
    operator = settings.mesh_user()
    allowed = settings.operator_role()
    audit.record(
        audit.Decision(
            audit.now(),
            operator,
            (),
            source,
            "ImpersonateUser",
            None,
            "allow" if allowed else "deny",
            {"as_user": user, **({} if allowed else {"error": "no operator role (MESH_OPERATOR)"})},
        )
    )
    if not allowed:
        raise AccessDenied(
            f"Access Denied: reading as user {user!r} is an operator's impersonation and "
            f"{operator!r} does not have the operator role: an operator sets MESH_OPERATOR=1 "
            "(docs/security.md, 'Reading as another user'); to read as yourself, log in to Trino"
        )


def _context(user: str, groups: list[str]) -> dict:

    return {
        "identity": {"user": user, "groups": groups},
        "softwareStack": {"duckdbVersion": duckdb.__version__},
    }


def _catalog() -> str:
    return settings.trino_settings().catalog


def decide(
    user: str,
    schema: str,
    table: str,
    columns: list[tuple[str, str]],
    *,
    source: str,
    groups: list[str] | None = None,
) -> TableDecision:
    """The policy's decision for ``user`` reading ``schema.table`` (columns: name, DuckDB
    type), recorded in the audit log. Raises :class:`AccessDenied` when denied or when the
    policy cannot be asked."""
    groups = groups_of(user) if groups is None else groups
    product = f"{schema}.{table}"
    input_doc = {
        "context": _context(user, groups),
        "table": {
            "catalogName": _catalog(),
            "schemaName": schema,
            "tableName": table,
            "columns": [{"name": n, "type": t} for n, t in columns],
        },
    }

    def record(outcome: str, detail: dict) -> None:
        audit.record(
            audit.Decision(
                audit.now(), user, tuple(groups), source, "SelectFromColumns", product, outcome, detail
            )
        )

    try:
        answer = ask("trino/local_table_decision", input_doc)
    except PolicyUnavailable as exc:
        record("deny", {"error": str(exc)[:300]})
        raise AccessDenied(f"Access Denied: the access policy could not be asked: {exc}") from None
    value = answer.value or {}
    decision = TableDecision(
        product=product,
        allow=value.get("allow") is True,
        row_filters=tuple(value.get("rowFilters") or ()),
        masks=dict(value.get("columnMasks") or {}),
        source=answer.source,
    )
    detail = {"columns": sorted(n for n, _ in columns), "policy": answer.source}
    if decision.allow:
        detail.update(masked=sorted(decision.masks), rowFilter=" OR ".join(decision.row_filters) or None)
    record("allow" if decision.allow else "deny", detail)
    if not decision.allow:
        raise AccessDenied(
            f"Access Denied: Cannot select from columns "
            f"[{', '.join(sorted(n for n, _ in columns))}] in table or view "
            f"{_catalog()}.{product}"
        )
    return decision


def governed_select(decision: TableDecision, columns: list[str], relation: str) -> str:
    """``SELECT <masked columns> FROM relation WHERE <row filters>``: the table as the policy
    lets the user see it (``relation`` holds the stored rows)."""
    select = ", ".join(
        f"{decision.masks[c]} AS {quote_identifier(c)}" if c in decision.masks else quote_identifier(c)
        for c in columns
    )
    sql = f"SELECT {select} FROM {relation}"
    if decision.row_filters:
        sql += " WHERE " + " AND ".join(f"({f})" for f in decision.row_filters)
    return sql


def _duckdb_columns(con, arrow_schema) -> list[tuple[str, str]]:
    rel = con.from_arrow(arrow_schema.empty_table())
    return [(name, str(dtype)) for name, dtype in zip(rel.columns, rel.types)]


def _governed_table(
    con, table, snapshot_id, user: str, schema: str, name: str, *, source: str, groups: list[str], target: str
) -> TableDecision:
    """Create ``target`` in ``con``: the table at ``snapshot_id`` as the policy shows it to
    ``user`` (raises :class:`AccessDenied` first when denied)."""

    scan = table.scan(snapshot_id=snapshot_id)
    arrow_schema = schema_to_pyarrow(scan.projection(), include_field_ids=False)
    decision = decide(
        user, schema, name, _duckdb_columns(con, arrow_schema), source=source, groups=groups
    )  # denied: raises before anything is read
    raw = scan.to_arrow() if snapshot_id is not None else arrow_schema.empty_table()
    con.register("__mesh_raw", raw)
    try:
        con.execute(
            f"CREATE TABLE {target} AS " + governed_select(decision, list(raw.column_names), "__mesh_raw")
        )
    finally:
        con.unregister("__mesh_raw")
    return decision


# --- mesh query --as-user -------------------------------------------------------------------


def _parse(sql: str) -> dict:

    con = duckdb.connect(config={"enable_external_access": False})
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    finally:
        con.close()
    if tree.get("error"):
        raise AccessDenied(f"with a user, only one SELECT statement is allowed ({tree.get('error_message')})")
    if len(tree.get("statements") or []) != 1:
        raise AccessDenied("with a user, only one SELECT statement is allowed")
    return tree


def referenced_tables(sql: str) -> list[tuple[str, str]]:
    """``(schema, table)`` of every table the SELECT reads (CTEs resolved, subqueries
    included); raises :class:`AccessDenied` for table functions, other catalogs and time-travel
    clauses (use ``--as-of``)."""
    tree = _parse(sql)
    ctes: set[str] = set()
    refs: list[dict] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("cte_map"), dict):
                ctes.update(item["key"] for item in node["cte_map"].get("map") or [])
            kind = node.get("type")
            if kind == "BASE_TABLE":
                refs.append(node)
            elif kind == "TABLE_FUNCTION":
                fn = (node.get("function") or {}).get("function_name", "?")
                raise AccessDenied(
                    f"table function {fn}() is not available with a user: it reads around the access policy"
                )
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    out: list[tuple[str, str]] = []
    for ref in refs:
        schema, name = ref.get("schema_name") or "", ref.get("table_name") or ""
        if ref.get("catalog_name"):
            raise AccessDenied(f"catalog {ref['catalog_name']!r} is not available with a user")
        if ref.get("at_clause"):
            raise AccessDenied("AT (...) time travel is not available with a user: use --as-of")
        if not schema:
            if name in ctes:
                continue
            raise AccessDenied(f"table {name!r} is not a product: name products domain.product")
        if (schema, name) not in out:
            out.append((schema, name))
    return out


def governed_query(sql: str, as_of: str | None, user: str):
    """``mesh query`` as ``user``: the tables the SQL reads, each as the policy shows it to
    that user, then the SQL in a connection that can read nothing else. Returns
    ``(connection, relation)`` like :func:`mesh_assets.cli.products.query`."""

    impersonate(user, source="duckdb")
    groups = groups_of(user)
    catalog = open_catalog()
    loaded = {}
    for schema, name in referenced_tables(sql):
        try:
            loaded[(schema, name)] = catalog.load_table((schema, name))
        except Exception:  # noqa: BLE001 - not a table: DuckDB says so when the SQL runs
            continue
    # the same resolution as mesh query without --as-user: an unknown version is an error
    snapshots = resolve_as_of_tables({f"{s}.{n}": t for (s, n), t in loaded.items()}, as_of)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    for (schema, name), table in loaded.items():
        snapshot_id = snapshots[f"{schema}.{name}"]
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
        _governed_table(
            con,
            table,
            snapshot_id,
            user,
            schema,
            name,
            source="duckdb",
            groups=groups,
            target=f"{quote(schema)}.{quote(name)}",
        )
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, con.sql(sql)


# --- read(..., user=) -----------------------------------------------------------------------


def governed_read(identifier: str, *, columns=None, filter=None, as_of=None, limit=None, user: str):
    """``read()`` for ``user``: the pyiceberg snapshot as the policy shows it, then the
    caller's ``filter`` over the visible (masked) values, as Trino applies a WHERE clause."""

    impersonate(user, source="pyiceberg")
    schema, name = identifier.split(".", 1)
    table = open_catalog().load_table(identifier)
    snapshot_id = resolve_as_of(table, as_of)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    try:
        _governed_table(
            con,
            table,
            snapshot_id,
            user,
            schema,
            name,
            source="pyiceberg",
            groups=groups_of(user),
            target="governed",
        )
        data: pa.Table = con.execute("SELECT * FROM governed").to_arrow_table()
    finally:
        con.close()
    if filter is not None:
        expr = parser.parse(filter) if isinstance(filter, str) else filter
        data = data.filter(expression_to_pyarrow(bind(table.schema(), expr, case_sensitive=True)))
    if columns:
        data = data.select(list(columns))
    if limit is not None:
        data = data.slice(0, int(limit))
    return data
