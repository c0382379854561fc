"""Conformance: every expectation the SQL pushdown compiler supports gives the same verdict, the
same observed value and the same unexpected count/percent as Great Expectations 1.x itself (pandas
data source, ephemeral context) on shared fixtures: nulls, an empty table, duplicates, unicode,
boundary values, NaN and infinities; on DuckDB always, on Trino (the same fixtures written as
Iceberg tables through pyiceberg) when the production stack is up (marker ``stack``).

Where GX semantics are not the obvious SQL ones, ours follow GX's:
* unique: every row of a duplicated value is unexpected (``AA, AA`` -> 2, not 1); nulls ignored;
* compound unique: rows whose key columns are all null are ignored (``ignore_row_if``), rows with
  some nulls compare null == null;
* ``mostly``: ``(non-null - unexpected) / non-null >= mostly`` over the non-null rows (over all
  rows for not-null), vacuously true on no rows; ``unexpected_percent`` over the same base and
  None when there is none;
* aggregates (mean/min/max) of no rows are None, and None fails;
* regex is a search (not a full match) with RE2 semantics on both sides (pandas' arrow strings
  and DuckDB both use RE2);
* NaN is missing (pandas cannot tell it from null): unexpected for not-null, ignored by between,
  in_set, unique and their ``mostly`` base, skipped by mean/min/max; +inf and -inf are values
  (outside every finite range), and the mean of both is NaN, reported as no value (a failure).
Platform expectations run in GX through their GX mapping (gx_bridge): freshness as
expect_column_max_to_be_between with ``min_value = now - max_age``, referential integrity as
expect_column_values_to_be_in_set over the referenced key set, no sudden shrink as
expect_table_row_count_to_be_between with ``min_value`` = main's rows less the allowed drop.
"""

import datetime as dt
import math
import uuid

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from mesh_assets import stack
from mesh_assets.contract.expectations import EXPECTATIONS
from mesh_assets.contract.model import QualityRule
from mesh_assets.quality.gx import validate_dataframe
from mesh_assets.quality.run import evaluate, run_suite
from mesh_assets.quality.sql import trino_relation
from mesh_assets.stack.trino import Trino

NOW = dt.datetime(2024, 6, 10, 12, 0, tzinfo=dt.UTC)
SCHEMA = pa.schema(
    [
        ("s", pa.string()),
        ("n", pa.int64()),
        ("x", pa.float64()),
        ("ts", pa.timestamp("us")),
        ("k1", pa.string()),
        ("k2", pa.int64()),
        ("f", pa.float32()),
    ]
)
REF_KEYS = ["a", "b", "é", "日本"]
T = dt.datetime
NAN, INF = math.nan, math.inf


def table(**cols):
    rows = len(next(iter(cols.values())))
    full = {name: cols.get(name, [None] * rows) for name in SCHEMA.names}
    return pa.table(full, schema=SCHEMA)


FIXTURES = {
    "nulls": table(
        s=["a", None, "b", None, "zz"],
        n=[1, None, 5, None, 11],
        x=[0.5, None, None, 2.5, -1.0],
        ts=[T(2024, 6, 9), None, T(2024, 6, 1), None, None],
        k1=["a", None, "a", None, "b"],
        k2=[1, None, 1, None, None],
    ),
    "empty": table(s=[], n=[], x=[], ts=[], k1=[], k2=[]),
    "duplicates": table(
        s=["a", "a", "b", "b", "b", "c"],
        n=[1, 1, 2, 3, 3, 3],
        x=[1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
        ts=[T(2024, 6, 10, 11)] * 6,
        k1=["a", "a", "b", None, None, "c"],
        k2=[1, 1, 2, 7, 7, None],
    ),
    "unicode": table(
        s=["é", "日本", "a", "🙂", "É", "ab"],
        n=[0, 10, 5, 5, 10, 0],
        x=[0.0, -0.0, 1e-9, 3.5, 2.25, 10.0],
        ts=[T(2023, 1, 1), T(2024, 6, 9, 12), T(2024, 6, 9, 12, 0, 1), None, None, None],
        k1=["é", "é", "日本", "日本", "a", None],
        k2=[1, 2, 1, 1, 1, None],
    ),
    "boundary": table(
        s=["a", "b", "c", "d"],
        n=[0, 10, 0, 11],
        x=[0.0, 10.0, 5.0, 10.000001],
        ts=[T(2024, 6, 9, 12), T(2024, 6, 9, 11, 59, 59), None, T(2020, 1, 1)],
        k1=["a", "b", "c", "d"],
        k2=[1, 2, 3, 4],
    ),
    # NaN and nulls mixed: the mostly base of x is its 3 numbers, not 5 (GX: 2/3 pass, not 2/5)
    "nan": table(
        s=["a", "b", "c", "d", "e", "f"],
        n=[1, 2, 3, 4, 5, 6],
        x=[0.5, NAN, 2.0, None, NAN, 11.0],
        ts=[T(2024, 6, 10)] * 6,
        f=[NAN, 1.5, NAN, 2.5, None, 0.5],
    ),
    "infinities": table(
        s=["a", "b", "c", "d", "e"],
        n=[1, 2, 3, 4, 5],
        x=[INF, -INF, 1.0, NAN, INF],
        ts=[T(2024, 6, 10)] * 5,
        f=[-INF, 1.0, NAN, None, 2.0],
    ),
    "all_nan": table(s=["a", "b"], n=[1, 2], x=[NAN, NAN], ts=[T(2024, 6, 10)] * 2, f=[NAN, None]),
}


def r(name, expectation, **kwargs):
    return QualityRule(name=name, expectation=expectation, kwargs=kwargs)


CASES = [
    r("not_null_s", "expect_column_values_to_not_be_null", column="s"),
    r("not_null_n_mostly", "expect_column_values_to_not_be_null", column="n", mostly=0.7),
    r("between_n", "expect_column_values_to_be_between", column="n", min_value=0, max_value=10),
    r(
        "between_n_strict",
        "expect_column_values_to_be_between",
        column="n",
        min_value=0,
        max_value=10,
        strict_min=True,
        strict_max=True,
    ),
    r("between_x_min", "expect_column_values_to_be_between", column="x", min_value=-0.0),
    r(
        "between_n_mostly",
        "expect_column_values_to_be_between",
        column="n",
        min_value=0,
        max_value=10,
        mostly=0.75,
    ),
    r("in_set_s", "expect_column_values_to_be_in_set", column="s", value_set=["a", "b", "é", "日本"]),
    r("in_set_s_mostly", "expect_column_values_to_be_in_set", column="s", value_set=["a", "b"], mostly=0.5),
    r("in_set_n", "expect_column_values_to_be_in_set", column="n", value_set=[0, 1, 10]),
    r("in_set_x", "expect_column_values_to_be_in_set", column="x", value_set=[0.5, 1.0, 2.0, 2.5, INF]),
    r("not_null_x_mostly", "expect_column_values_to_not_be_null", column="x", mostly=0.6),
    r("not_null_f", "expect_column_values_to_not_be_null", column="f"),
    r("between_x_mostly", "expect_column_values_to_be_between", column="x", max_value=10, mostly=0.6),
    r("between_f", "expect_column_values_to_be_between", column="f", min_value=0, max_value=2),
    r("unique_x", "expect_column_values_to_be_unique", column="x"),
    r("compound_f_k2", "expect_compound_columns_to_be_unique", column_list=["f", "k2"]),
    r("regex_s", "expect_column_values_to_match_regex", column="s", regex="^[a-z]+$"),
    r("regex_s_search", "expect_column_values_to_match_regex", column="s", regex="b"),
    r("regex_s_two_chars", "expect_column_values_to_match_regex", column="s", regex="^.{2}$", mostly=0.3),
    r("unique_s", "expect_column_values_to_be_unique", column="s"),
    r("unique_n", "expect_column_values_to_be_unique", column="n"),
    r("unique_n_mostly", "expect_column_values_to_be_unique", column="n", mostly=0.5),
    r("compound", "expect_compound_columns_to_be_unique", column_list=["k1", "k2"]),
    r(
        "compound_any_missing",
        "expect_compound_columns_to_be_unique",
        column_list=["k1", "k2"],
        ignore_row_if="any_value_is_missing",
    ),
    r("row_count", "expect_table_row_count_to_be_between", min_value=1, max_value=5),
    r("row_count_strict", "expect_table_row_count_to_be_between", min_value=4, strict_min=True),
    # main held 7 rows: at most 50% fewer means at least 4 (the check adds main_rows itself)
    r("not_shrunk", "expect_table_row_count_to_not_shrink", max_shrink_percent=50, main_rows=7),
    r("mean_n", "expect_column_mean_to_be_between", column="n", min_value=2, max_value=5),
    r("mean_x", "expect_column_mean_to_be_between", column="x", max_value=2.5, strict_max=True),
    r("min_n", "expect_column_min_to_be_between", column="n", min_value=0, max_value=1),
    r("min_x", "expect_column_min_to_be_between", column="x", min_value=-1),
    r("max_x", "expect_column_max_to_be_between", column="x", max_value=10),
    r("mean_f", "expect_column_mean_to_be_between", column="f", min_value=0, max_value=2),
    r("max_n", "expect_column_max_to_be_between", column="n", max_value=10),
    r(
        "max_ts",
        "expect_column_max_to_be_between",
        column="ts",
        min_value=dt.datetime(2024, 6, 1),
        max_value=dt.datetime(2024, 6, 10),
    ),
    r("fresh_ts", "expect_column_values_to_be_fresh", column="ts", max_age={"hours": 24}),
    r("fresh_ts_week", "expect_column_values_to_be_fresh", column="ts", max_age="1w"),
    r(
        "ref_s",
        "expect_column_values_to_be_in_other_product",
        column="s",
        product="reference.codes",
        key="code",
    ),
    r(
        "ref_k1_mostly",
        "expect_column_values_to_be_in_other_product",
        column="k1",
        product="reference.codes",
        key="code",
        mostly=0.6,
    ),
]


def test_cases_cover_every_pushdown_expectation():
    assert {c.expectation for c in CASES} == set(EXPECTATIONS)


def _same(a, b) -> bool:
    if hasattr(a, "to_pydatetime"):
        a = a.to_pydatetime()
    if hasattr(b, "to_pydatetime"):
        b = b.to_pydatetime()
    if hasattr(a, "item"):
        a = a.item()
    if hasattr(b, "item"):
        b = b.item()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.fixture(scope="module")
def gx_results():
    """Great Expectations' own results, per fixture."""
    keys = {("reference.codes", "code"): REF_KEYS}
    return {
        name: validate_dataframe(data.to_pandas(), CASES, now=NOW, reference_keys=keys)
        for name, data in FIXTURES.items()
    }


@pytest.fixture(scope="module")
def duckdb_results():
    """The pushdown's results on DuckDB, per fixture."""
    out = {}
    for name, data in FIXTURES.items():
        con = duckdb.connect()
        con.register("t", data)
        con.register("codes", pa.table({"code": REF_KEYS}))
        out[name] = evaluate(con, "t", CASES, lookups={"reference.codes": "codes"}, now=NOW)
        con.close()
    return out


@pytest.fixture(scope="module")
def trino_results(stack_layout):
    """The pushdown's results on the stack's Trino, per fixture: each fixture an Iceberg table
    written by pyiceberg in a namespace of its own, dropped afterwards through Trino."""
    catalog = SqlCatalog(stack_layout.catalog_name, **stack.catalog_properties(stack_layout))
    connection = Trino(stack_layout).connect(request_timeout=120)
    namespace = f"conformance_{uuid.uuid4().hex[:10]}"
    catalog.create_namespace(namespace)
    tables = {**FIXTURES, "codes": pa.table({"code": REF_KEYS})}
    try:
        for name, data in tables.items():
            catalog.create_table(f"{namespace}.{name}", schema=data.schema).append(data)
        lookups = {"reference.codes": trino_relation(f"{namespace}.codes")}
        yield {
            name: run_suite(
                connection,
                trino_relation(f"{namespace}.{name}"),
                CASES,
                dialect="trino",
                lookups=lookups,
                now=NOW,
            )
            for name in FIXTURES
        }
    finally:
        cursor = connection.cursor()
        for name in tables:
            cursor.execute(f'DROP TABLE IF EXISTS iceberg."{namespace}"."{name}"')
            cursor.fetchall()
        catalog.drop_namespace(namespace)
        connection.close()


def _mismatches(ours, theirs, engine: str) -> list[str]:
    """Every difference between the pushdown's results and GX's (verdict, counts, percent,
    observed value of aggregates, sample when GX lists it whole), one line each."""
    assert len(ours) == len(theirs) == len(CASES)
    mismatches = []
    for case, a, b in zip(CASES, ours, theirs):
        assert a.rule is case and b.rule is case
        assert a.error is None, (case.name, a.error)
        assert b.error is None, (case.name, b.error)
        assert b.engine == "great_expectations" and a.engine == engine
        got = {
            "passed": a.passed,
            "unexpected_count": a.unexpected_count,
            "unexpected_percent": a.unexpected_percent,
            "element_count": a.element_count,
        }
        want = {
            "passed": b.passed,
            "unexpected_count": b.unexpected_count,
            "unexpected_percent": b.unexpected_percent,
            "element_count": b.element_count,
        }
        if a.unexpected_count is None:  # aggregates: GX reports an observed value
            got["observed"], want["observed"] = a.observed_value, b.observed_value
        for key in got:
            if not _same(got[key], want[key]):
                mismatches.append(f"{case.name}.{key}: pushdown {got[key]!r} != GX {want[key]!r}")
        if len(b.sample) < 5 and set(a.sample) != set(b.sample):  # GX: its partial list
            mismatches.append(f"{case.name}.sample: pushdown {a.sample!r} != GX {b.sample!r}")
    return mismatches


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_pushdown_matches_great_expectations(gx_results, duckdb_results, fixture):
    mismatches = _mismatches(duckdb_results[fixture], gx_results[fixture], "sql:duckdb")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.stack
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_trino_pushdown_matches_great_expectations(gx_results, trino_results, fixture):
    mismatches = _mismatches(trino_results[fixture], gx_results[fixture], "sql:trino")
    assert not mismatches, "\n".join(mismatches)


def test_fixtures_exercise_both_verdicts(gx_results):
    """The comparison is meaningful: across fixtures every case both passes and fails somewhere
    (or is vacuously true on the empty table and fails elsewhere)."""
    one_sided = [
        case.name
        for i, case in enumerate(CASES)
        if {gx_results[f][i].passed for f in FIXTURES} != {True, False}
    ]
    assert not one_sided


def test_gx_reports_errors_as_errored_not_failed():
    data = FIXTURES["nulls"].to_pandas()
    [bad, unknown_kwarg] = validate_dataframe(
        data,
        [
            r("bad_regex", "expect_column_values_to_match_regex", column="s", regex="(unclosed"),
            r("bad_kwarg", "expect_column_values_to_be_between", column="n", min_value=0, colour="red"),
        ],
    )
    assert bad.passed is False and bad.metadata()["status"] == "errored"
    assert bad.error == "great_expectations: Invalid regular expression: missing ): (unclosed"
    assert unknown_kwarg.passed is False and unknown_kwarg.metadata()["status"] == "errored"
    assert unknown_kwarg.error.startswith(
        "great_expectations configuration: 1 validation error for ExpectColumnValuesToBeBetween\ncolour\n"
    )
