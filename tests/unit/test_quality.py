"""Quality rules evaluated by DuckDB, and their Dagster asset checks on a real Iceberg table."""

import types

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from meshtest import land
from pyiceberg.types import LongType, StringType

from mesh_assets.contract.model import Column, QualityRule
from mesh_assets.iceberg.catalog import IcebergCatalog
from mesh_assets.ingest.assets import ingestion_asset
from mesh_assets.quality.checks import contract_checks
from mesh_assets.quality.run import evaluate
from mesh_assets.workspace import load_contract

DATA = pa.table(
    {
        "code": ["AA", "B6", "dl", None, "AA"],
        "alt": [10, 20, 30, 40, 5000],
        "dst": ["A", "A", "N", "X", "A"],
        "k2": [1, 2, 3, 4, 1],
    }
)


def rule(expectation, name="r", **kwargs):
    return QualityRule(name=name, expectation=expectation, kwargs=kwargs)


@pytest.fixture
def con():
    c = duckdb.connect()
    c.register("t", DATA)
    yield c
    c.close()


@pytest.mark.parametrize(
    "r,passed,unexpected,sample",
    [
        (rule("expect_column_values_to_not_be_null", column="code"), False, 1, [None]),
        (rule("expect_column_values_to_not_be_null", column="alt"), True, 0, []),
        (
            rule("expect_column_values_to_be_between", column="alt", min_value=0, max_value=100),
            False,
            1,
            [5000],
        ),
        (rule("expect_column_values_to_be_in_set", column="dst", value_set=["A", "N"]), False, 1, ["X"]),
        (rule("expect_column_values_to_match_regex", column="code", regex="^[A-Z0-9]{2}$"), False, 1, ["dl"]),
        # GX semantics: every row of a duplicated value is unexpected (both "AA" rows), nulls ignored
        (rule("expect_column_values_to_be_unique", column="code"), False, 2, ["AA"]),
        (rule("expect_compound_columns_to_be_unique", column_list=["code", "k2"]), False, 2, [("AA", 1)]),
        (rule("expect_compound_columns_to_be_unique", column_list=["code", "alt"]), True, 0, []),
    ],
)
def test_row_rules(con, r, passed, unexpected, sample):
    [result] = evaluate(con, "t", [r])
    assert result.passed is passed
    assert result.unexpected_count == unexpected
    assert result.element_count == 5
    assert list(result.sample) == sample
    md = result.metadata()
    assert md["unexpected_count"] == unexpected
    if not passed:
        assert md["unexpected_percent"] > 0 and md["unexpected_sample"]


@pytest.mark.parametrize(
    "r,passed,observed",
    [
        (rule("expect_table_row_count_to_be_between", min_value=1, max_value=5), True, 5),
        (rule("expect_table_row_count_to_be_between", min_value=6), False, 5),
        (rule("expect_table_row_count_to_be_between", min_value=5, strict_min=True), False, 5),
        (rule("expect_column_mean_to_be_between", column="alt", max_value=100), False, 1020.0),
        (rule("expect_column_min_to_be_between", column="alt", min_value=10), True, 10),
        (rule("expect_column_max_to_be_between", column="alt", max_value=4999), False, 5000),
    ],
)
def test_aggregate_rules(con, r, passed, observed):
    [result] = evaluate(con, "t", [r])
    assert result.passed is passed
    assert result.metadata()["observed_value"] == observed


def test_shown_results_mask_each_classified_column_of_a_rule(con):
    """A compound key's sample masks only its classified part; counts of unexpected rows and
    rules on public columns stay as computed."""
    product = types.SimpleNamespace(
        columns=(
            Column("code", StringType(), classification="public"),
            Column("k2", LongType(), classification="pii"),
            Column("alt", LongType(), classification="confidential"),
        )
    )
    rules = [
        rule("expect_compound_columns_to_be_unique", "key", column_list=["code", "k2"]),
        rule("expect_column_values_to_be_unique", "k2", column="k2"),
        rule("expect_column_mean_to_be_between", "mean", column="alt", max_value=100),
        rule("expect_column_values_to_be_in_set", "dst", column="dst", value_set=["A"]),
    ]
    shown = [r.masked(product).metadata() for r in evaluate(con, "t", rules)]
    assert [(md.get("observed_value"), sorted(md.get("unexpected_sample", []))) for md in shown] == [
        (2, ["['AA', '<pii: 1 chars>']"]),
        (2, ["<pii: 1 chars>"]),
        ("<confidential: 6 chars>", []),
        (2, ["N", "X"]),
    ]


def test_mostly_tolerates_a_fraction(con):
    loose = rule("expect_column_values_to_be_in_set", column="dst", value_set=["A", "N"], mostly=0.8)
    strict = rule("expect_column_values_to_be_in_set", column="dst", value_set=["A", "N"], mostly=0.9)
    assert [r.passed for r in evaluate(con, "t", [loose, strict])] == [True, False]


def test_all_rules_in_one_pass_keep_their_own_results(con):
    rules = [
        rule("expect_column_values_to_not_be_null", "a", column="alt"),
        rule("expect_column_values_to_be_in_set", "b", column="dst", value_set=["A"]),
        rule("expect_table_row_count_to_be_between", "c", min_value=1),
    ]
    results = evaluate(con, "t", rules)
    assert [(r.rule.name, r.passed) for r in results] == [("a", True), ("b", False), ("c", True)]
    assert results[1].unexpected_count == 2


def test_hostile_values_and_names_stay_data(con):
    c = duckdb.connect()
    c.register("t", pa.table({'we"ird': ["x'); DROP TABLE t; --"]}))
    [result] = evaluate(
        c,
        "t",
        [rule("expect_column_values_to_be_in_set", column='we"ird', value_set=["x'); DROP TABLE t; --"])],
    )
    assert result.passed
    assert c.execute("select count(*) from t").fetchone() == (1,)


def _run_checks(reference_dir):
    airlines = load_contract(reference_dir / "products" / "airlines.yaml")
    result = dg.materialize(
        [ingestion_asset(airlines), contract_checks(airlines)],
        resources={"catalog": IcebergCatalog()},
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_clean_table_passes_every_check(mesh_home, reference_dir):
    land(mesh_home, "reference", "airlines.csv")
    evaluations = _run_checks(reference_dir)
    assert set(evaluations) == {
        "not_null_carrier",
        "not_null_name",
        "unique_carrier",
        "row_count_between",
        "match_regex_carrier",
        "not_shrunk",
    }
    assert all(e.passed for e in evaluations.values())
    assert evaluations["row_count_between"].metadata["observed_value"].value == 16


def test_violating_table_fails_its_checks_with_readable_metadata(mesh_home, reference_dir):
    rows = ["carrier,name"] + [f"C{i},Carrier {i}" for i in range(10)] + ["c1,lower case", "C1,duplicate"]
    land(mesh_home, "reference", "airlines.csv", "\n".join(rows) + "\n")
    evaluations = _run_checks(reference_dir)
    regex, unique = evaluations["match_regex_carrier"], evaluations["unique_carrier"]
    assert not regex.passed and not unique.passed
    assert regex.severity == dg.AssetCheckSeverity.ERROR
    assert regex.metadata["unexpected_count"].value == 1
    assert regex.metadata["unexpected_sample"].value == ["c1"]
    assert unique.metadata["unexpected_sample"].value == ["C1"]
    assert regex.metadata["expectation"].value == "expect_column_values_to_match_regex"
    assert evaluations["row_count_between"].passed and evaluations["not_null_name"].passed


def test_an_erroring_rule_is_reported_as_errored_not_failed(con):
    rules = [
        rule("expect_column_values_to_match_regex", "bad_regex", column="code", regex="(unclosed"),
        rule("expect_column_values_to_not_be_null", "ok", column="alt"),
    ]
    bad, ok = evaluate(con, "t", rules)
    assert bad.passed is False and bad.metadata()["status"] == "errored"
    assert bad.metadata()["error"] == "InvalidInputException: Invalid Input Error: missing ): (unclosed"
    assert ok.passed and ok.metadata()["status"] == "passed"


def test_an_unreadable_relation_errors_every_rule_with_the_engine_message(con):
    rules = [
        rule("expect_column_values_to_not_be_null", "a", column="code"),
        rule("expect_table_row_count_to_be_between", "b", min_value=1),
    ]
    results = evaluate(con, "no_such_table", rules)
    assert [r.status for r in results] == ["errored", "errored"]
    for result in results:
        assert result.error.startswith("CatalogException: Catalog Error: Table with name no_such_table")
