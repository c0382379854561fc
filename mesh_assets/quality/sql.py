"""Contract rules -> one SQL statement per product, for DuckDB (embedded) or Trino (production).

The pushdown compiler. Every rule it supports becomes one or two expressions of a single
``SELECT ... FROM <relation>``: row rules a ``count(*) FILTER`` (``count_if`` on Trino) over the
rows that break them, aggregate rules the aggregate itself. Uniqueness (GX counts *every* row of
a duplicated value) and referential integrity (an anti-join against the referenced product) need
a grouped / joined read of their own; they are scalar subqueries of the same statement.
Verdicts, ``mostly`` and percentages are computed in Python from the returned counts, exactly as
Great Expectations 1.x computes them (``tests/unit/test_quality_conformance.py`` proves it), so
no integer-division or float-rounding difference between dialects can change a verdict.

NaN is missing, as in GX (on pandas NaN and NULL are the same value): the statement reads the
relation through :func:`nan_as_null`, so a NaN counts as unexpected for not-null only, is left
out of ``between``/``in_set``/uniqueness and of their ``mostly`` base, and out of mean, min and
max. The engines disagree on NaN otherwise (DuckDB: NaN equals itself and sorts above +inf, so
``max`` returns it; Trino: every comparison with NaN is false, ``max`` skips it; both return NaN
for ``avg``). +inf and -inf are ordinary values on all three sides: outside any finite range,
equal to themselves, ``avg`` of both is NaN, reported as no observed value (a failure), as GX does.

Values from contracts reach SQL only as bound ``?`` parameters (both DuckDB and the Trino DB-API
client use qmark), column names only as quoted identifiers.

Dialect differences handled here: regex (``regexp_matches`` vs ``regexp_like``), ``regexp_replace``
(DuckDB needs the ``'g'`` flag), conditional counts (``FILTER`` vs ``count_if``), approximate
distinct counts, sampling (``USING SAMPLE`` vs ``TABLESAMPLE BERNOULLI``) and snapshot-pinned
relations (``iceberg_scan(..., snapshot_from_id)`` vs ``FOR VERSION AS OF``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from mesh_assets.contract.expectations import _AGG, SHRINK, kind_of, max_age, min_rows
from mesh_assets.contract.model import QualityRule
from mesh_assets.quality.results import SAMPLE_SIZE, RuleResult, map_percent, map_success

# --- dialects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    name: str

    def quote(self, ident: str) -> str:
        return '"' + ident.replace('"', '""') + '"'

    def text(self, expr: str) -> str:
        return f"CAST({expr} AS VARCHAR)"

    def regex(self, expr: str, pattern: str = "?") -> str:
        """True when ``expr`` contains a match of ``pattern`` (SQL: by default the bound
        parameter): a search, like GX on pandas; RE2 syntax in DuckDB and Trino alike."""
        fn = "regexp_matches" if self.name == "duckdb" else "regexp_like"
        return f"{fn}({expr}, {pattern})"

    def regex_replace_all(self, expr: str, pattern: str, replacement: str) -> str:
        """Replace every match; ``pattern``/``replacement`` are SQL (literals or ``?``)."""
        if self.name == "duckdb":
            return f"regexp_replace({expr}, {pattern}, {replacement}, 'g')"
        return f"regexp_replace({expr}, {pattern}, {replacement})"

    def count_if(self, predicate: str) -> str:
        if self.name == "duckdb":
            return f"count(*) FILTER (WHERE {predicate})"
        return f"count_if({predicate})"

    def approx_distinct(self, expr: str) -> str:
        return f"approx_count_distinct({expr})" if self.name == "duckdb" else f"approx_distinct({expr})"

    def is_nan(self, expr: str) -> str:
        return f"isnan({expr})" if self.name == "duckdb" else f"is_nan({expr})"

    def as_double(self, expr: str) -> str:
        return f"CAST({expr} AS DOUBLE)"

    def sample(self, relation: str, percent: float) -> str:
        """A Bernoulli row sample of ``relation`` usable in FROM."""
        p = float(percent)
        if self.name == "duckdb":
            return f"(SELECT * FROM {relation} USING SAMPLE {p} PERCENT (bernoulli))"
        return f"{relation} TABLESAMPLE BERNOULLI ({p})"

    def limit(self, n: int) -> str:
        return f"LIMIT {int(n)}"


DIALECTS = {"duckdb": Dialect("duckdb"), "trino": Dialect("trino")}


def get_dialect(name: str | Dialect) -> Dialect:
    if isinstance(name, Dialect):
        return name
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown SQL dialect '{name}' (use {', '.join(DIALECTS)})") from None


def trino_relation(identifier: str, snapshot_id: int | None = None, *, catalog: str = "iceberg") -> str:
    """``domain.product`` at a snapshot, as Trino reads it from its Iceberg connector."""
    d = DIALECTS["trino"]
    schema, table = identifier.split(".", 1)
    rel = f"{d.quote(catalog)}.{d.quote(schema)}.{d.quote(table)}"
    return rel + (f" FOR VERSION AS OF {int(snapshot_id)}" if snapshot_id is not None else "")


# floating-point column types as DuckDB (FLOAT, DOUBLE) and Trino (real, double) describe them
FLOATING_TYPES = frozenset({"float", "double", "real"})


def describe(connection, dialect: str | Dialect, relation: str) -> list[tuple[str, str]]:
    """(name, type) of every column of ``relation``, as the engine reads it (no row is read)."""
    d = get_dialect(dialect)
    if d.name == "duckdb" and hasattr(connection, "sql"):
        cur = connection.execute(f"SELECT * FROM {relation} LIMIT 0")
    else:
        cur = connection.cursor()
        cur.execute(f"SELECT * FROM {relation} LIMIT 0")
        cur.fetchall()  # Trino's client knows the columns once the query has finished
    return [(c[0], str(c[1])) for c in cur.description]


def nan_as_null(relation: str, columns: Sequence[tuple[str, str]], dialect: str | Dialect) -> str:
    """``relation`` as Great Expectations on pandas sees it: NaN in a floating-point column is
    NULL (``columns``: (name, type) of every column). Unchanged without such a column."""
    d = get_dialect(dialect)
    if not any(t.lower() in FLOATING_TYPES for _, t in columns):
        return relation
    select = []
    for name, type_name in columns:
        col = d.quote(name)
        if type_name.lower() in FLOATING_TYPES:
            select.append(f"CASE WHEN {d.is_nan(col)} THEN NULL ELSE {col} END AS {col}")
        else:
            select.append(col)
    return f"(SELECT {', '.join(select)} FROM {relation})"


def _as_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def between(observed: Any, kw: dict) -> bool:
    """GX's ``_validate_metric_value_between``: None/NaN fail, date strings parsed."""
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return False
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if isinstance(observed, dt.date):
        lo, hi = _as_datetime(lo), _as_datetime(hi)
        if not isinstance(observed, dt.datetime):
            lo = lo.date() if isinstance(lo, dt.datetime) else lo
            hi = hi.date() if isinstance(hi, dt.datetime) else hi
    if isinstance(observed, Decimal):
        observed = float(observed)
    ok = True
    if lo is not None:
        ok = observed > lo if kw.get("strict_min") else observed >= lo
    if ok and hi is not None:
        ok = observed < hi if kw.get("strict_max") else observed <= hi
    return bool(ok)


def freshness_threshold(kwargs: dict, now: dt.datetime, observed: Any = None) -> Any:
    """The oldest acceptable max(column): ``now - max_age``, naive UTC for a naive timestamp,
    a date for a date column."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    threshold = now - max_age(kwargs)
    if isinstance(observed, dt.datetime):
        return threshold if observed.tzinfo else threshold.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(observed, dt.date):
        return threshold.astimezone(dt.UTC).date()
    return threshold


# --- compilation -------------------------------------------------------------------------------


@dataclass
class Plan:
    """One SQL statement and how to read its single result row."""

    sql: str
    params: list
    slots: list[tuple[QualityRule, str, int]]  # (rule, kind, index of its first value)


def _range_predicate(expr: str, kw: dict, params: list) -> str:
    parts = []
    if kw.get("min_value") is not None:
        parts.append(f"{expr} {'>' if kw.get('strict_min') else '>='} ?")
        params.append(kw["min_value"])
    if kw.get("max_value") is not None:
        parts.append(f"{expr} {'<' if kw.get('strict_max') else '<='} ?")
        params.append(kw["max_value"])
    return " AND ".join(parts) or "TRUE"


def bad_rows_predicate(rule: QualityRule, d: Dialect, params: list, alias: str = "") -> str | None:
    """SQL true for a row that breaks a per-row rule (None for the other kinds)."""
    kw, e = rule.kwargs, rule.expectation
    col = alias + d.quote(kw["column"]) if "column" in kw else None
    if e == "expect_column_values_to_not_be_null":
        return f"{col} IS NULL"
    if e == "expect_column_values_to_be_between":
        return f"{col} IS NOT NULL AND NOT ({_range_predicate(col, kw, params)})"
    if e == "expect_column_values_to_be_in_set":
        values = list(kw["value_set"])
        if not values:
            return f"{col} IS NOT NULL"
        params.extend(values)
        return f"{col} IS NOT NULL AND {col} NOT IN ({', '.join('?' for _ in values)})"
    if e == "expect_column_values_to_match_regex":
        params.append(kw["regex"])
        return f"{col} IS NOT NULL AND NOT {d.regex(d.text(col))}"
    return None


def _dup_filter(rule: QualityRule, d: Dialect) -> tuple[list[str], str]:
    """(quoted key columns, WHERE predicate of the rows GX considers) of a uniqueness rule."""
    kw = rule.kwargs
    cols = [d.quote(c) for c in (kw.get("column_list") or [kw["column"]])]
    if "column_list" not in kw:
        return cols, f"{cols[0]} IS NOT NULL"
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    if ignore == "any_value_is_missing":
        return cols, " AND ".join(f"{c} IS NOT NULL" for c in cols)
    if ignore == "never":
        return cols, "TRUE"
    return cols, "NOT (" + " AND ".join(f"{c} IS NULL" for c in cols) + ")"


def _ref_predicate(rule: QualityRule, d: Dialect, lookups: dict[str, str], alias: str) -> str:
    kw = rule.kwargs
    ref = lookups[kw["product"]]
    col = f"{alias}{d.quote(kw['column'])}"
    return f"{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {ref} AS r WHERE r.{d.quote(kw['key'])} = {col})"


def compile_suite(
    rules: Sequence[QualityRule],
    relation: str,
    *,
    dialect: str | Dialect = "duckdb",
    lookups: dict[str, str] | None = None,
) -> Plan:
    """The single statement evaluating every pushdown rule of ``rules`` on ``relation``.

    ``lookups`` maps a referenced product (``domain.product``) to the relation holding its
    current snapshot, for ``expect_column_values_to_be_in_other_product``."""
    d = get_dialect(dialect)
    lookups = lookups or {}
    selects, params = ["count(*)"], []
    slots: list[tuple[QualityRule, str, int]] = []
    for rule in rules:
        kind = kind_of(rule.expectation)
        if kind is None:
            raise ValueError(f"{rule.expectation} is not compiled to SQL (runs through GX)")
        kw = rule.kwargs
        col = d.quote(kw["column"]) if "column" in kw else None
        slots.append((rule, kind, len(selects)))
        if kind == "row":
            selects += [
                d.count_if(bad_rows_predicate(rule, d, params)),
                f"count({col})" if col else "count(*)",
            ]
        elif kind == "dup":
            cols, keep = _dup_filter(rule, d)
            key = ", ".join(cols)
            selects += [
                f"(SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {relation} "
                f"WHERE {keep} GROUP BY {key} HAVING count(*) > 1) AS dup)",
                f"count({col})" if "column_list" not in kw else d.count_if(keep),
            ]
        elif kind == "ref":
            if kw["product"] not in lookups:
                raise KeyError(kw["product"])
            selects += [
                f"(SELECT count(*) FROM {relation} AS t WHERE {_ref_predicate(rule, d, lookups, 't.')})",
                f"count({col})",
            ]
        else:
            fn = _AGG[rule.expectation]
            selects.append(f"{fn}({col})" if fn else "count(*)")
    sql = "SELECT " + ",\n       ".join(selects) + f"\nFROM {relation}"
    return Plan(sql=sql, params=params, slots=slots)


def sample_query(
    rule: QualityRule,
    relation: str,
    *,
    dialect: str | Dialect = "duckdb",
    lookups: dict[str, str] | None = None,
) -> tuple[str, list]:
    """SQL for up to SAMPLE_SIZE distinct values (or keys) that break ``rule``."""
    d = get_dialect(dialect)
    params: list = []
    kind = kind_of(rule.expectation)
    kw = rule.kwargs
    if kind == "row":
        col = d.quote(kw["column"])
        bad = bad_rows_predicate(rule, d, params)
        return f"SELECT DISTINCT {col} FROM {relation} WHERE {bad} {d.limit(SAMPLE_SIZE)}", params
    if kind == "ref":
        col = d.quote(kw["column"])
        return (
            f"SELECT DISTINCT t.{col} FROM {relation} AS t WHERE "
            f"{_ref_predicate(rule, d, lookups or {}, 't.')} {d.limit(SAMPLE_SIZE)}"
        ), params
    cols, keep = _dup_filter(rule, d)
    key = ", ".join(cols)
    return (
        f"SELECT {key} FROM {relation} WHERE {keep} GROUP BY {key} HAVING count(*) > 1 {d.limit(SAMPLE_SIZE)}"
    ), params


# --- execution ---------------------------------------------------------------------------------


def _fetch(connection, dialect: Dialect, sql: str, params: list, many: bool = False):
    """Run through DuckDB's connection API or any DB-API 2.0 connection (Trino's included)."""
    if dialect.name == "duckdb" and hasattr(connection, "sql"):
        cur = connection.execute(sql, params)
    else:
        cur = connection.cursor()
        cur.execute(sql, params or None)
    return cur.fetchall() if many else cur.fetchone()


def _db_errors(dialect: Dialect) -> tuple[type[BaseException], ...]:
    if dialect.name == "duckdb":
        return (duckdb.Error,)
    return (Exception,)  # DB-API drivers raise their own Error hierarchy


def _judge(
    rule: QualityRule, kind: str, values: Sequence, start: int, total: int, now: dt.datetime, engine: str
) -> RuleResult:
    kw = rule.kwargs
    if kind == "agg":
        observed = _plain_number(values[start])
        details: dict[str, Any] = {}
        if rule.expectation == "expect_column_values_to_be_fresh":
            threshold = freshness_threshold(kw, now, observed)
            details["freshness/threshold"] = threshold
            details["freshness/max_age_hours"] = max_age(kw).total_seconds() / 3600
            passed = observed is not None and observed >= threshold
        elif rule.expectation == SHRINK:
            threshold = min_rows(kw)
            if threshold is not None:
                details["shrink/main_rows"] = kw["main_rows"]
                details["shrink/min_rows"] = threshold
            passed = threshold is None or observed >= threshold
        else:
            passed = between(observed, kw)
        return RuleResult(
            rule, passed=passed, observed_value=observed, element_count=total, engine=engine, details=details
        )
    unexpected, nonnull = int(values[start] or 0), int(values[start + 1] or 0)
    if rule.expectation == "expect_column_values_to_not_be_null":
        considered, pct_base = total, None
    else:
        considered, pct_base = nonnull, nonnull
    mostly = float(kw.get("mostly", 1.0))
    return RuleResult(
        rule,
        passed=map_success(total, considered, unexpected, mostly),
        observed_value=unexpected,
        element_count=total,
        unexpected_count=unexpected,
        unexpected_percent=map_percent(total, pct_base, unexpected),
        engine=engine,
    )


def _plain_number(value: Any) -> Any:
    """A Decimal as float; NaN (``avg`` of +inf and -inf) as None: GX reports no value."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return float(value) if isinstance(value, Decimal) else value


def run_pushdown(
    connection,
    relation: str,
    rules: Sequence[QualityRule],
    *,
    dialect: str | Dialect = "duckdb",
    lookups: dict[str, str] | None = None,
    now: dt.datetime | None = None,
    samples: bool = True,
) -> list[RuleResult]:
    """Evaluate pushdown ``rules`` in one statement over ``relation`` read through
    :func:`nan_as_null`; when it fails, rule by rule, so that a rule whose SQL errors (a regex the
    engine rejects, a range on a text column) is *errored* and the others still evaluate. When
    ``relation`` cannot be read at all, every rule is errored with the engine's message."""
    d = get_dialect(dialect)
    now = now or dt.datetime.now(dt.UTC)
    lookups = lookups or {}
    errors = _db_errors(d)
    engine = f"sql:{d.name}"
    out: list[RuleResult | None] = [None] * len(rules)
    runnable = []
    for i, rule in enumerate(rules):
        if kind_of(rule.expectation) == "ref" and rule.kwargs["product"] not in lookups:
            out[i] = RuleResult(
                rule,
                passed=False,
                engine=engine,
                error=f"referenced product {rule.kwargs['product']} has no "
                "readable snapshot (not materialized yet?)",
            )
        else:
            runnable.append(i)
    if not runnable:
        return list(out)  # type: ignore[arg-type]
    try:
        relation = nan_as_null(relation, describe(connection, d, relation), d)
    except errors as exc:
        for i in runnable:
            out[i] = RuleResult(rules[i], passed=False, engine=engine, error=f"{type(exc).__name__}: {exc}")
        return list(out)  # type: ignore[arg-type]

    def once(indexes: list[int]) -> list[RuleResult]:
        plan = compile_suite([rules[i] for i in indexes], relation, dialect=d, lookups=lookups)
        row = _fetch(connection, d, plan.sql, plan.params)
        total = int(row[0])
        judged = []
        for rule, kind, start in plan.slots:
            try:
                judged.append(_judge(rule, kind, row, start, total, now, engine))
            except (TypeError, ValueError) as exc:  # e.g. a bound of another type than the data
                judged.append(
                    RuleResult(
                        rule,
                        passed=False,
                        observed_value=row[start],
                        element_count=total,
                        engine=engine,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
        return judged

    try:
        for i, result in zip(runnable, once(runnable)):
            out[i] = result
    except errors:
        for i in runnable:
            try:
                out[i] = once([i])[0]
            except errors as exc:
                out[i] = RuleResult(
                    rules[i], passed=False, engine=engine, error=f"{type(exc).__name__}: {exc}"
                )
    if samples:
        for i, result in enumerate(out):
            if result is None or result.error or not result.unexpected_count:
                continue
            sql, params = sample_query(result.rule, relation, dialect=d, lookups=lookups)
            try:
                rows = _fetch(connection, d, sql, params, many=True)
            except errors:
                continue
            sample = tuple(r[0] if len(r) == 1 else tuple(r) for r in rows)
            out[i] = RuleResult(**{**result.__dict__, "sample": sample})
    return list(out)  # type: ignore[arg-type]
