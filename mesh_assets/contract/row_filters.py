"""Row filters of the contracts: parsed, checked and written back as one canonical SQL predicate.

A contract's ``rowFilter`` (``origin = 'JFK'``) reaches two SQL engines: Trino (through OPA)
and DuckDB (the local read path). It is never passed through as written: DuckDB's own parser
reads it (``json_serialize_sql``), only a small, engine-neutral subset is accepted (column
references of the product, literals, comparisons, ``AND``/``OR``/``NOT``, ``IN``, ``BETWEEN``,
``LIKE``, ``IS [NOT] NULL``, ``DATE``/``TIMESTAMP`` literals), and the predicate is rendered
again from the parse tree with every identifier quoted and every string literal escaped. What
OPA hands to the engines is that rendering: the same text for both, with no way for a contract
to smuggle a second statement, a subquery or a function call into either engine.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from decimal import Decimal

import duckdb


class FilterError(ValueError):
    """The predicate is not acceptable; the message says what and why."""


_COMPARISONS = {
    "COMPARE_EQUAL": "=",
    "COMPARE_NOTEQUAL": "<>",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
}
_LIKE = {"~~": "LIKE", "!~~": "NOT LIKE"}
_INTEGERS = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}
_TYPED_LITERALS = {
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP_TZ": "TIMESTAMP",
}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@functools.cache
def _connection():

    return duckdb.connect(config={"enable_external_access": False, "autoinstall_known_extensions": False})


def parse_tree(predicate: str) -> dict:
    """DuckDB's parse tree of ``predicate`` (the WHERE clause of a one-statement SELECT)."""
    if not isinstance(predicate, str) or not predicate.strip():
        raise FilterError("must be a non-empty SQL predicate")
    if ";" in predicate or "--" in predicate or "/*" in predicate:
        raise FilterError("must be one predicate: no ';', no comments")
    raw = _connection().execute("SELECT json_serialize_sql(?)", [f"SELECT 1 WHERE {predicate}"]).fetchone()[0]
    tree = json.loads(raw)
    if tree.get("error"):
        raise FilterError(f"is not valid SQL: {tree.get('error_message', 'parse error')}")
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    if node.get("type") != "SELECT_NODE" or node.get("where_clause") is None:
        raise FilterError("must be one predicate")
    return node["where_clause"]


def canonical(predicate: str, columns: Iterable[str]) -> str:
    """``predicate`` rendered again from its parse tree, identifiers quoted; raises
    :class:`FilterError` for anything outside the accepted subset or an unknown column."""
    known = set(columns)
    return _render(parse_tree(predicate), known)


def _render(node: dict, columns: set[str]) -> str:
    cls, kind = node.get("class"), node.get("type")
    if cls == "COLUMN_REF":
        names = node.get("column_names") or []
        if len(names) != 1:
            raise FilterError(f"column reference {'.'.join(names)!r} must be a bare column name")
        if names[0] not in columns:
            raise FilterError(f"names column {names[0]!r}, which the product does not have")
        return quote_identifier(names[0])
    if cls == "CONSTANT":
        return _constant(node["value"])
    if cls == "CAST":
        target = (node.get("cast_type") or {}).get("id", "")
        child = node.get("child") or {}
        value = (child.get("value") or {}) if child.get("class") == "CONSTANT" else {}
        if node.get("try_cast") or (value.get("type") or {}).get("id") != "VARCHAR" or value.get("is_null"):
            raise FilterError("casts are limited to typed literals (DATE '2013-01-01')")
        if target == "BOOLEAN" and str(value.get("value")).lower() in ("t", "true", "f", "false"):
            return "TRUE" if str(value["value"]).lower() in ("t", "true") else "FALSE"
        if target not in _TYPED_LITERALS:
            raise FilterError(f"a literal of type {target} is not supported (DATE or TIMESTAMP)")
        return f"{_TYPED_LITERALS[target]} {quote_literal(str(value['value']))}"
    if cls == "CONJUNCTION":
        op = {"CONJUNCTION_AND": " AND ", "CONJUNCTION_OR": " OR "}.get(kind)
        if op is None:
            raise FilterError(f"unsupported {kind}")
        return "(" + op.join(_render(c, columns) for c in node["children"]) + ")"
    if cls == "COMPARISON" and kind in _COMPARISONS:
        return f"({_render(node['left'], columns)} {_COMPARISONS[kind]} {_render(node['right'], columns)})"
    if cls == "BETWEEN":
        return (
            f"({_render(node['input'], columns)} BETWEEN {_render(node['lower'], columns)} "
            f"AND {_render(node['upper'], columns)})"
        )
    if cls == "OPERATOR":
        children = node.get("children") or []
        if kind == "OPERATOR_NOT" and len(children) == 1:
            return f"(NOT {_render(children[0], columns)})"
        if kind in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL") and len(children) == 1:
            suffix = "IS NULL" if kind == "OPERATOR_IS_NULL" else "IS NOT NULL"
            return f"({_render(children[0], columns)} {suffix})"
        if kind in ("COMPARE_IN", "COMPARE_NOT_IN") and len(children) >= 2:
            op = "IN" if kind == "COMPARE_IN" else "NOT IN"
            items = ", ".join(_render(c, columns) for c in children[1:])
            return f"({_render(children[0], columns)} {op} ({items}))"
    if cls == "FUNCTION" and node.get("is_operator") and node.get("function_name") in _LIKE:
        children = node.get("children") or []
        if len(children) == 2:
            return (
                f"({_render(children[0], columns)} {_LIKE[node['function_name']]} "
                f"{_render(children[1], columns)})"
            )
    if cls == "FUNCTION":
        raise FilterError(
            f"calls function {node.get('function_name')!r}: row filters may only "
            "compare columns with literals (no functions)"
        )
    if cls == "SUBQUERY":
        raise FilterError("contains a subquery: row filters may only compare columns with literals")
    raise FilterError(
        f"uses {kind or cls}, which row filters do not support (comparisons, "
        "AND/OR/NOT, IN, BETWEEN, LIKE, IS NULL over columns and literals)"
    )


def _constant(value: dict) -> str:
    if value.get("is_null"):
        return "NULL"
    type_id = (value.get("type") or {}).get("id")
    raw = value.get("value")
    if type_id == "VARCHAR":
        return quote_literal(str(raw))
    if type_id == "BOOLEAN":
        return "TRUE" if raw else "FALSE"
    if type_id in _INTEGERS:
        return str(int(raw))
    if type_id == "DECIMAL":
        scale = int(((value.get("type") or {}).get("type_info") or {}).get("scale") or 0)
        return format(Decimal(int(raw)).scaleb(-scale), "f")
    if type_id in ("DOUBLE", "FLOAT"):
        number = float(raw)
        if number != number or number in (float("inf"), float("-inf")):
            raise FilterError("non-finite numbers are not supported")
        return f"{number!r}E0" if "e" not in repr(number) else repr(number).upper()
    raise FilterError(f"a literal of type {type_id} is not supported")
