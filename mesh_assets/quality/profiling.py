"""``mesh profile DOMAIN.PRODUCT``: quality rules proposed from the observed data.

GX 1.x removed profilers and data assistants, so proposals are computed here, in SQL where the
data is (DuckDB over the Iceberg snapshot; the statements are dialect-aware like the checks):
one aggregate pass for every column (rows, nulls, distinct count, min/max, string lengths,
character classes, what text values parse as), then one small grouped query per column that
may hold a small value set or a formatted string. Nothing is loaded into pandas.

The result is a reviewable contract snippet in the ODCS quality format the contracts use,
printed as YAML: ``required`` (no nulls), ``unique`` (all values distinct), ``invalidValues``
with ``validValues`` (small value sets), value ranges, a regex for formatted strings, and a
row-count band. Proposals describe the data as it is; a person decides what is a rule.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from mesh_assets import engine
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import resolve_as_of
from mesh_assets.quality.sql import Dialect, _fetch, get_dialect
from mesh_assets.settings import PROJECT_DIR
from mesh_assets.workspace import contract_path, load_contract

VALUE_SET_MAX = 12  # propose a value set up to this many distinct values ...
VALUE_SET_MIN_REPEAT = 3  # ... when each value repeats on average at least this often
SHAPES_MAX = 4  # at most this many distinct string shapes become one alternation regex
ROW_BAND = (0.5, 2.0)  # proposed row count band around the observed count

_TYPES = {  # DuckDB / Trino type -> (logicalType, physicalType) of the contracts
    "BIGINT": ("integer", "bigint"),
    "INTEGER": ("integer", "int"),
    "INT": ("integer", "int"),
    "SMALLINT": ("integer", "int"),
    "TINYINT": ("integer", "int"),
    "HUGEINT": ("integer", "bigint"),
    "DOUBLE": ("number", "double"),
    "FLOAT": ("number", "float"),
    "REAL": ("number", "float"),
    "VARCHAR": ("string", "string"),
    "BOOLEAN": ("boolean", "boolean"),
    "DATE": ("date", "date"),
    "TIMESTAMP": ("timestamp", "timestamp"),
    "TIMESTAMP WITH TIME ZONE": ("timestamp", "timestamptz"),
    "TIMESTAMP(6)": ("timestamp", "timestamp"),
    "TIMESTAMP(6) WITH TIME ZONE": ("timestamp", "timestamptz"),
    "TIME": ("time", "time"),
}
_NUMERIC = ("integer", "number")
_PARSES = (("bigint", "BIGINT"), ("double", "DOUBLE"), ("date", "DATE"), ("timestamp", "TIMESTAMP"))
_CLASSES = (
    ("upper", "[A-Z]", "A-Z"),
    ("lower", "[a-z]", "a-z"),
    ("digit", "[0-9]", "0-9"),
    ("other", "[^A-Za-z0-9]", None),
)


@dataclass
class ColumnProfile:
    name: str
    sql_type: str
    logical: str
    physical: str
    rows: int = 0
    nonnull: int = 0
    distinct: int = 0
    min: Any = None
    max: Any = None
    mean: Any = None
    min_len: int | None = None
    max_len: int | None = None
    classes: dict[str, int] = field(default_factory=dict)
    parses_as: list[str] = field(default_factory=list)
    values: list | None = None  # the small value set, when there is one
    shapes: list[str] | None = None  # the few shapes of a formatted string

    @property
    def is_text(self) -> bool:
        return self.logical == "string"


def _type(sql_type: str) -> tuple[str, str]:
    t = sql_type.upper()
    if t.startswith("DECIMAL"):
        return "number", t.lower().replace(" ", "")
    if t.startswith("VARCHAR"):
        return "string", "string"
    return _TYPES.get(t, ("string", t.lower()))


def column_types(con, relation: str) -> list[tuple[str, str]]:
    """(name, SQL type) of each column of a DuckDB relation."""
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def stats_query(
    relation: str,
    columns: Sequence[tuple[str, str]],
    *,
    dialect: str | Dialect = "duckdb",
    sample_percent: float | None = None,
) -> str:
    """One aggregate over ``relation`` with every column's statistics."""
    d = get_dialect(dialect)
    source = d.sample(relation, sample_percent) if sample_percent else relation
    selects = ["count(*)"]
    for name, sql_type in columns:
        c = d.quote(name)
        logical, _ = _type(sql_type)
        distinct = d.approx_distinct(c) if sample_percent else f"count(DISTINCT {c})"
        selects += [f"count({c})", distinct]
        if logical == "boolean":
            selects += ["NULL", "NULL", "NULL"]
        else:
            selects += [f"min({c})", f"max({c})", f"avg({c})" if logical in _NUMERIC else "NULL"]
        if logical == "string":
            selects += [f"min(length({c}))", f"max(length({c}))"]
            selects += [d.count_if(d.regex(c, _literal(rx))) for _, rx, _ in _CLASSES]
            selects += [f"count(TRY_CAST({c} AS {t}))" for _, t in _PARSES]
    return "SELECT " + ",\n       ".join(selects) + f"\nFROM {source}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _shape_expr(d: Dialect, col: str) -> str:
    expr = col
    for pattern, mark in (("[A-Z]", "A"), ("[a-z]", "a"), ("[0-9]", "9")):
        expr = d.regex_replace_all(expr, _literal(pattern), _literal(mark))
    return expr


def profile_relation(
    con,
    relation: str,
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    dialect: str | Dialect = "duckdb",
    sample_percent: float | None = None,
) -> tuple[int, list[ColumnProfile]]:
    """(row count, column profiles) of ``relation`` through a DuckDB or DB-API connection."""

    d = get_dialect(dialect)
    columns = list(columns or column_types(con, relation))
    row = _fetch(con, d, stats_query(relation, columns, dialect=d, sample_percent=sample_percent), [])
    rows = int(row[0])
    i = 1
    profiles = []
    for name, sql_type in columns:
        logical, physical = _type(sql_type)
        p = ColumnProfile(name=name, sql_type=sql_type, logical=logical, physical=physical, rows=rows)
        p.nonnull, p.distinct = int(row[i] or 0), int(row[i + 1] or 0)
        p.min, p.max, p.mean = row[i + 2], row[i + 3], row[i + 4]
        i += 5
        if logical == "string":
            p.min_len, p.max_len = row[i], row[i + 1]
            p.classes = {k: int(row[i + 2 + j] or 0) for j, (k, _, _) in enumerate(_CLASSES)}
            i += 2 + len(_CLASSES)
            p.parses_as = [
                t for j, (t, _) in enumerate(_PARSES) if p.nonnull and int(row[i + j] or 0) == p.nonnull
            ]
            i += len(_PARSES)
        profiles.append(p)
    source = d.sample(relation, sample_percent) if sample_percent else relation
    for p in profiles:
        c = d.quote(p.name)
        if p.nonnull and p.distinct <= VALUE_SET_MAX and p.logical in ("string", "integer"):
            found = _fetch(
                con,
                d,
                f"SELECT DISTINCT {c} FROM {source} WHERE {c} IS NOT NULL "
                f"ORDER BY 1 {d.limit(VALUE_SET_MAX + 1)}",
                [],
                many=True,
            )
            p.values = [r[0] for r in found]
        if p.is_text and p.nonnull and p.max_len is not None and p.max_len <= 64:
            found = _fetch(
                con,
                d,
                f"SELECT {_shape_expr(d, c)} AS shape, count(*) AS n FROM "
                f"{source} WHERE {c} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC "
                f"{d.limit(SHAPES_MAX + 1)}",
                [],
                many=True,
            )
            p.shapes = [r[0] for r in found] if len(found) <= SHAPES_MAX else None
    return rows, profiles


def _shape_regex(shape: str) -> str:
    """``AA99`` -> ``[A-Z]{2}[0-9]{2}``; other characters stay literal (escaped)."""
    out = []
    for m in re.finditer(r"(A+|a+|9+|.)", shape, re.S):
        run = m.group(0)
        cls = {"A": "[A-Z]", "a": "[a-z]", "9": "[0-9]"}.get(run[0])
        if cls is None:
            out.append(re.escape(run))
        else:
            out.append(cls + (f"{{{len(run)}}}" if len(run) > 1 else ""))
    return "".join(out)


def propose_regex(p: ColumnProfile) -> str | None:
    """A regex every value matches, for strings that look formatted (codes, identifiers)."""
    if not p.is_text or not p.nonnull or p.min_len is None or p.max_len is None or p.max_len > 64:
        return None
    if (
        p.values is not None
        and len(p.values) <= VALUE_SET_MAX
        and p.distinct * VALUE_SET_MIN_REPEAT <= p.nonnull
    ):
        return None  # a value set says more
    if not p.classes.get("other") and p.min_len > 0:
        chars = "".join(c for k, _, c in _CLASSES if c and p.classes.get(k))
        length = f"{{{p.min_len}}}" if p.min_len == p.max_len else f"{{{p.min_len},{p.max_len}}}"
        return f"^[{chars}]{length}$"
    if p.shapes:
        parts = sorted({_shape_regex(s) for s in p.shapes})
        return "^" + (parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")") + "$"
    return None


def _gx(expectation: str, kwargs: dict, description: str) -> dict:
    return {
        "type": "custom",
        "engine": "great-expectations",
        "description": description,
        "implementation": {"type": expectation, "kwargs": kwargs},
    }


def _value(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, float):
        return float(v)
    if hasattr(v, "is_finite"):  # Decimal
        return float(v)
    return v


def propose(rows: int, profiles: Sequence[ColumnProfile], *, table_name: str, sampled: bool = False) -> dict:
    """The ODCS ``schema`` snippet (one table) with the proposed rules."""
    props = []
    for p in profiles:
        prop: dict[str, Any] = {"name": p.name, "logicalType": p.logical, "physicalType": p.physical}
        quality: list[dict] = []
        if rows and p.nonnull == rows:
            prop["required"] = True
        elif rows and p.nonnull and p.nonnull / rows >= 0.95:
            mostly = math.floor(p.nonnull / rows * 100) / 100
            quality.append(
                _gx(
                    "expect_column_values_to_not_be_null",
                    {"mostly": mostly},
                    f"observed {rows - p.nonnull:,} null(s) in {rows:,} rows",
                )
            )
        if not sampled and p.nonnull > 1 and p.distinct == p.nonnull and p.logical != "boolean":
            prop["unique"] = True
        small = (
            p.values is not None
            and len(p.values) <= VALUE_SET_MAX
            and p.distinct * VALUE_SET_MIN_REPEAT <= p.nonnull
        )
        if small:
            quality.append(
                {
                    "type": "library",
                    "metric": "invalidValues",
                    "arguments": {"validValues": [_value(v) for v in p.values]},
                    "mustBe": 0,
                    "description": f"observed {len(p.values)} distinct value(s)",
                }
            )
        elif p.logical in _NUMERIC + ("date", "timestamp") and p.min is not None:
            quality.append(
                _gx(
                    "expect_column_values_to_be_between",
                    {"min_value": _value(p.min), "max_value": _value(p.max)},
                    "observed range" + (f", mean {float(p.mean):.4g}" if p.mean is not None else ""),
                )
            )
        if (regex := propose_regex(p)) is not None:
            quality.append(
                _gx(
                    "expect_column_values_to_match_regex",
                    {"regex": regex},
                    f"every value matches; lengths {p.min_len}-{p.max_len}",
                )
            )
        if quality:
            prop["quality"] = quality
        props.append(prop)
    lo, hi = math.floor(rows * ROW_BAND[0]), math.ceil(rows * ROW_BAND[1])
    table = {
        "name": table_name,
        "quality": [
            {
                "type": "library",
                "metric": "rowCount",
                "mustBeBetween": [lo, hi],
                "severity": "warn",
                "description": f"observed {rows:,} rows; band {ROW_BAND[0]}x-{ROW_BAND[1]}x",
            }
        ],
        "properties": props,
    }
    return {"schema": [table]}


class _Dumper(yaml.SafeDumper):
    """Block style, except short lists of scalars and expectation kwargs (flow style)."""


def _represent_list(dumper: yaml.SafeDumper, data: list):
    flow = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render(snippet: dict, *, header: Sequence[str] = ()) -> str:
    body = yaml.dump(snippet, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "".join(f"# {line}\n" for line in header) + body


def type_notes(profiles: Sequence[ColumnProfile], product=None) -> list[str]:
    notes = []
    for p in profiles:
        if p.is_text and p.parses_as:
            notes.append(f"{p.name}: every value parses as {p.parses_as[0]} (stored as {p.physical})")
        if product is not None:
            try:
                declared = str(product.column(p.name).type)
            except KeyError:
                notes.append(f"{p.name}: in the table but not in the contract")
                continue
            observed = {
                "string": "string",
                "int": "int",
                "bigint": "long",
                "double": "double",
                "float": "float",
                "date": "date",
                "timestamp": "timestamp",
                "timestamptz": "timestamptz",
                "boolean": "boolean",
            }.get(p.physical, p.physical)
            if declared != observed and not declared.startswith("decimal"):
                notes.append(f"{p.name}: contract type {declared}, table type {p.sql_type}")
    return notes


def profile_product(identifier: str, *, as_of: str | None = None, sample_percent: float | None = None) -> str:
    """The proposal for ``domain.product`` (its Iceberg table, current snapshot or ``as_of``)."""

    domain, name = identifier.split(".", 1)
    path = contract_path(domain, name)
    product = load_contract(path) if path.exists() else None
    table_id = product.table_identifier if product else identifier
    table = open_catalog().load_table(table_id)
    snapshot_id = resolve_as_of(table, as_of)
    con = engine.connect()
    con.execute("SET enable_progress_bar = false")
    try:
        relation = engine.register_table(con, table, "profiled", snapshot_id=snapshot_id)
        rows, profiles = profile_relation(con, relation, sample_percent=sample_percent)
    finally:
        con.close()
    snippet = propose(rows, profiles, table_name=name, sampled=bool(sample_percent))
    where = path.relative_to(PROJECT_DIR) if product else f"domains/{domain}/products/{name}.yaml"
    header = [
        f"mesh profile {identifier}: rules proposed from snapshot {snapshot_id} of "
        f"{table_id} ({rows:,} rows{f', {sample_percent}% sample' if sample_percent else ''}),",
        f"computed {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} in SQL (DuckDB over Iceberg).",
        f"Review, then merge what holds by intent into {where} (ODCS v3 quality format).",
    ]
    header += [f"note: {n}" for n in type_notes(profiles, product)]
    return render(snippet, header=header)
