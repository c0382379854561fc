"""Quality beyond the core vocabulary: freshness and referential-integrity expectations, the GX
fallback, load-time validation (definitions load and `mesh lint`), committed GX suites, the
Trino dialect, profiling, HTML reports."""

import datetime as dt
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import duckdb
import pyarrow as pa
import pytest
import sqlglot
import yaml
from meshtest import land

from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.expectations import is_pushdown, kind_of
from mesh_assets.contract.model import QualityRule
from mesh_assets.contract.rules import rules_from_contract
from mesh_assets.governance import lint_project
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.quality.run import evaluate
from mesh_assets.quality.sql import compile_suite, nan_as_null, sample_query, trino_relation
from mesh_assets.settings import DOMAINS_DIR, PROJECT_DIR
from mesh_assets.workspace import load_contract

UTC = dt.UTC


@pytest.fixture
def project(tmp_path):
    """reference (copied) + a domain `ops` with product `legs` whose rules a test sets."""
    shutil.copytree(DOMAINS_DIR / "reference", tmp_path / "domains" / "reference")
    ops = tmp_path / "domains" / "ops"
    (ops / "products").mkdir(parents=True)
    (ops / "domain.yaml").write_text(
        "name: ops\ndescription: Test domain.\nowner: ops-team\ntype: source-aligned\n"
    )
    (tmp_path / "workspace.yaml").write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_module": {"module_name": f"domains.{d}.definitions", "location_name": d}}
                    for d in ("reference", "ops")
                ]
            }
        )
    )
    return tmp_path


def legs(project, column_quality=None, table_quality=None):
    """Write domains/ops/products/legs.yaml; returns its path."""

    def prop(name, logical, physical, **extra):
        return {
            "name": name,
            "logicalType": logical,
            "physicalType": physical,
            "description": name,
            "classification": "public",
            **extra,
        }

    props = [
        prop("leg_id", "integer", "bigint", required=True, primaryKey=True),
        prop("carrier", "string", "string"),
        prop("departed_at", "timestamp", "timestamp"),
        prop("seats", "integer", "int"),
    ]
    for p in props:
        if p["name"] in (column_quality or {}):
            p["quality"] = column_quality[p["name"]]
    doc = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": "urn:test:ops:legs",
        "version": "1.0.0",
        "status": "active",
        "domain": "ops",
        "dataProduct": "legs",
        "team": {"name": "ops-team"},
        "schema": [
            {
                "name": "legs",
                "physicalType": "table",
                "description": "Legs.",
                "properties": props,
                "quality": table_quality or [],
            }
        ],
        "customProperties": [{"property": "source", "value": {"format": "csv", "file": "legs.csv"}}],
    }
    path = project / "domains" / "ops" / "products" / "legs.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def gx(expectation, severity=None, name=None, **kwargs):
    q = {
        "type": "custom",
        "engine": "great-expectations",
        "implementation": {"type": expectation, "kwargs": kwargs},
    }
    if severity:
        q["severity"] = severity
    if name:
        q["name"] = name
    return q


# --- contracts ---------------------------------------------------------------------------------


def test_freshness_reference_and_gx_only_rules_load(project):
    path = legs(
        project,
        column_quality={
            "departed_at": [gx("expect_column_values_to_be_fresh", max_age={"hours": 6})],
            "carrier": [
                gx(
                    "expect_column_values_to_be_in_other_product",
                    severity="warn",
                    product="reference.airlines",
                    key="carrier",
                ),
                gx("expect_column_value_lengths_to_be_between", min_value=2, max_value=2),
            ],
        },
        table_quality=[
            gx(
                "expect_column_pair_values_a_to_be_greater_than_b",
                column_A="leg_id",
                column_B="seats",
                or_equal=True,
            )
        ],
    )
    rules = {r.name: r for r in load_contract(path).rules}
    assert rules["fresh_departed_at"].severity == "error"
    assert rules["in_product_carrier"].severity == "warn"
    assert (
        rules["value_lengths_to_be_between_carrier"].expectation
        == "expect_column_value_lengths_to_be_between"
    )
    assert "pair_values_a_to_be_greater_than_b_leg_id_seats" in rules
    assert is_pushdown(rules["fresh_departed_at"]) and is_pushdown(rules["in_product_carrier"])
    assert not is_pushdown(rules["value_lengths_to_be_between_carrier"])


@pytest.mark.parametrize(
    "quality,message",
    [
        (
            {"carrier": [gx("expect_column_values_to_be_purple", name="purple")]},
            "quality rule 'purple' (expect_column_values_to_be_purple): unknown expectation",
        ),
        (
            {"carrier": [gx("expect_column_value_lengths_to_be_between", min_value=1, column="carrrier")]},
            "column carrrier: quality rule",
        ),
        (
            {None: [gx("expect_column_pair_values_to_be_equal", column_A="carrier", column_B="nope")]},
            "column nope",
        ),
        (
            {"carrier": [gx("expect_column_values_to_match_regex", regex="x", colour="red")]},
            "has no kwarg(s) colour",
        ),
        (
            {"carrier": [gx("expect_column_values_to_match_like_pattern", like_pattern="A%")]},
            "cannot run on this platform",
        ),
        (
            {"seats": [gx("expect_column_values_to_be_fresh", max_age={"hours": 1})]},
            "freshness needs a date or timestamp column",
        ),
        (
            {"departed_at": [gx("expect_column_values_to_be_fresh", max_age="soon")]},
            "max_age must be a positive duration",
        ),
        (
            {
                "carrier": [
                    gx("expect_column_values_to_be_in_other_product", product="reference.nope", key="carrier")
                ]
            },
            "references product reference.nope, which has no contract",
        ),
        (
            {
                "carrier": [
                    gx(
                        "expect_column_values_to_be_in_other_product",
                        product="reference.airlines",
                        key="code",
                    )
                ]
            },
            "references reference.airlines.code, a column",
        ),
    ],
)
def test_bad_rules_fail_load_and_lint_naming_file_and_rule(project, quality, message):
    table_quality = quality.pop(None, None)
    path = legs(project, column_quality=quality, table_quality=table_quality)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert str(path) in str(err.value) and message in str(err.value)
    from mesh_assets.definitions import build_domain  # definitions load fails the same way

    with pytest.raises(ContractError, match="legs"):
        build_domain(project / "domains" / "ops")
    [violation] = [v for v in lint_project(project) if v.rule == "MESH001"]
    assert violation.file == path and message in violation.message


def test_reference_to_an_internal_product_of_another_domain_is_refused(project):
    airlines = project / "domains" / "reference" / "products" / "airlines.yaml"
    doc = yaml.safe_load(airlines.read_text())
    doc["customProperties"].append({"property": "visibility", "value": "internal"})
    airlines.write_text(yaml.safe_dump(doc, sort_keys=False))
    path = legs(
        project,
        column_quality={
            "carrier": [
                gx("expect_column_values_to_be_in_other_product", product="reference.airlines", key="carrier")
            ]
        },
    )
    with pytest.raises(ContractError, match="internal product"):
        load_contract(path)


def test_gx_catalog_matches_the_installed_great_expectations():
    from mesh_assets.quality.gx import CATALOG_FILE, generate_catalog

    assert CATALOG_FILE.read_text() == generate_catalog(), (
        "run: python -m mesh_assets.quality.gx --write-catalog"
    )


def test_definitions_load_does_not_import_great_expectations(mesh_home):
    code = (
        "import sys, domains.reference.definitions, domains.operations.definitions;"
        "print(sorted(m for m in sys.modules if m.startswith(('great_expectations', 'pandas'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert "great_expectations" not in out


# --- GX suites ---------------------------------------------------------------------------------


def test_committed_suites_are_in_sync_and_load_in_great_expectations():
    from mesh_assets.cli.quality import suite_status
    from mesh_assets.quality.gx import _import_gx

    expected, stale = suite_status()
    assert not stale, f"stale GX suites (run `mesh quality suites`): {stale}"
    assert len(expected) == 13  # one suite per product of the demo mesh, every product has rules
    gx = _import_gx()
    for path in expected:
        data = json.loads(path.read_text())
        suite = gx.ExpectationSuite(**data)
        assert suite.name == data["name"] and len(suite.expectations) == len(data["expectations"])
        assert [e["type"] for e in suite.to_json_dict()["expectations"]] == [
            e["type"] for e in data["expectations"]
        ]


def test_platform_expectations_map_onto_gx_core_expectations(project):
    from mesh_assets.quality.gx import _import_gx, suite_dict

    path = legs(
        project,
        column_quality={
            "departed_at": [gx("expect_column_values_to_be_fresh", severity="warn", max_age={"hours": 6})],
            "carrier": [
                gx(
                    "expect_column_values_to_be_in_other_product",
                    product="reference.airlines",
                    key="carrier",
                    mostly=0.99,
                )
            ],
        },
    )
    suite = suite_dict(load_contract(path))
    by_rule = {e["meta"]["mesh"]["rule"]: e for e in suite["expectations"]}
    fresh, ref = by_rule["fresh_departed_at"], by_rule["in_product_carrier"]
    assert fresh["type"] == "expect_column_max_to_be_between" and fresh["severity"] == "warning"
    assert fresh["kwargs"]["min_value"] == {"$PARAMETER": "now() - timedelta(hours=6)"}
    assert ref["type"] == "expect_column_values_to_be_in_set"
    assert ref["kwargs"] == {
        "column": "carrier",
        "mostly": 0.99,
        "value_set": {"$PARAMETER": "mesh_keys__reference__airlines__carrier"},
    }
    assert ref["meta"]["mesh"]["platform_expectation"]["kwargs"]["product"] == "reference.airlines"
    gx_suite = _import_gx().ExpectationSuite(**suite)  # GX accepts it, parameters and all
    assert len(gx_suite.expectations) == len(suite["expectations"])


# --- Trino -------------------------------------------------------------------------------------

ALL_PUSHDOWN = [
    QualityRule("a", "expect_column_values_to_not_be_null", {"column": "carrier", "mostly": 0.9}),
    QualityRule(
        "b",
        "expect_column_values_to_be_between",
        {"column": "seats", "min_value": 1, "max_value": 500, "strict_max": True},
    ),
    QualityRule("c", "expect_column_values_to_be_in_set", {"column": "carrier", "value_set": ["AA", "B6"]}),
    QualityRule("d", "expect_column_values_to_match_regex", {"column": "carrier", "regex": "^[A-Z]{2}$"}),
    QualityRule("e", "expect_column_values_to_be_unique", {"column": "leg_id"}),
    QualityRule("f", "expect_compound_columns_to_be_unique", {"column_list": ["leg_id", "carrier"]}),
    QualityRule("g", "expect_table_row_count_to_be_between", {"min_value": 1}),
    QualityRule("h", "expect_column_mean_to_be_between", {"column": "seats", "max_value": 300}),
    QualityRule("i", "expect_column_min_to_be_between", {"column": "seats", "min_value": 0}),
    QualityRule("j", "expect_column_max_to_be_between", {"column": "seats", "max_value": 900}),
    QualityRule("k", "expect_column_values_to_be_fresh", {"column": "departed_at", "max_age": "1d"}),
    QualityRule(
        "l",
        "expect_column_values_to_be_in_other_product",
        {"column": "carrier", "product": "reference.airlines", "key": "carrier"},
    ),
]


def test_trino_sql_is_generated_and_parses_as_trino():
    relation = trino_relation("ops.legs", 123456789)
    lookups = {"reference.airlines": trino_relation("reference.airlines", 42)}
    plan = compile_suite(ALL_PUSHDOWN, relation, dialect="trino", lookups=lookups)
    assert "regexp_like(" in plan.sql and "regexp_matches" not in plan.sql
    assert "count_if(" in plan.sql and "FILTER" not in plan.sql
    assert 'FROM "iceberg"."ops"."legs" FOR VERSION AS OF 123456789' in plan.sql
    assert 'NOT EXISTS (SELECT 1 FROM "iceberg"."reference"."airlines" FOR VERSION AS OF 42' in plan.sql
    assert plan.sql.count("?") == len(plan.params) == 5  # values are parameters, never SQL text
    [tree] = sqlglot.parse(plan.sql, read="trino")
    assert tree is not None and tree.find(sqlglot.exp.Select)
    for rule in ALL_PUSHDOWN:
        if rule.expectation in (
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_unique",
            "expect_column_values_to_be_in_other_product",
        ):
            sql, params = sample_query(rule, relation, dialect="trino", lookups=lookups)
            assert sqlglot.parse_one(sql, read="trino") is not None


# what DuckDB's SQL of the compiler spells differently in Trino's
# what DuckDB's SQL of the compiler spells differently in Trino's
DIALECT_DIFFERENCES = {
    "count(*) FILTER (WHERE ": "count_if(",  # the FILTER clause's ")" closes count_if
    "regexp_matches(": "regexp_like(",
    "isnan(": "is_nan(",
}


def _in_trino_spelling(duckdb_sql: str) -> str:
    for spelled, in_trino in DIALECT_DIFFERENCES.items():
        duckdb_sql = duckdb_sql.replace(spelled, in_trino)
    return duckdb_sql


def test_duckdb_and_trino_sql_differ_only_where_the_dialects_do():
    """The statement and the sample queries of every pushdown expectation, compiled for both
    dialects over a relation with a double column (NaN read as NULL): each parses in its own
    dialect, the parameters are the same, and DuckDB's text with the dialect differences
    replaced is Trino's text, character for character."""
    names = ["leg_id", "carrier", "seats", "departed_at"]
    types = {
        "duckdb": ["BIGINT", "VARCHAR", "DOUBLE", "TIMESTAMP"],
        "trino": ["bigint", "varchar", "double", "timestamp(6)"],
    }
    lookups = {"reference.airlines": '"r"'}
    compiled = {}
    for dialect in types:
        relation = nan_as_null('"t"', list(zip(names, types[dialect])), dialect)
        plan = compile_suite(ALL_PUSHDOWN, relation, dialect=dialect, lookups=lookups)
        samples = [
            sample_query(rule, relation, dialect=dialect, lookups=lookups)
            for rule in ALL_PUSHDOWN
            if kind_of(rule.expectation) != "agg"
        ]
        for sql in [plan.sql] + [sql for sql, _ in samples]:
            assert sqlglot.parse_one(sql, read=dialect) is not None
        compiled[dialect] = (plan, samples)
    (duck, duck_samples), (trino, trino_samples) = compiled["duckdb"], compiled["trino"]
    for spelled, in_trino in DIALECT_DIFFERENCES.items():
        assert spelled in duck.sql and in_trino in trino.sql and in_trino not in duck.sql
    assert _in_trino_spelling(duck.sql) == trino.sql
    assert duck.params == trino.params == [1, 500, "AA", "B6", "^[A-Z]{2}$"]
    assert len(duck_samples) == len(trino_samples) == 7
    for (duck_sql, duck_params), (trino_sql, trino_params) in zip(duck_samples, trino_samples):
        assert _in_trino_spelling(duck_sql) == trino_sql and duck_params == trino_params


class _DbApi:
    """A DB-API 2.0 connection (what the Trino client gives) over DuckDB, qmark parameters."""

    def __init__(self, con):
        self.con = con

    def cursor(self):
        con = self.con

        class Cursor:
            description = None

            def execute(self, sql, params=None):
                self._rel = con.execute(sql, params or [])
                self.description = self._rel.description

            def fetchone(self):
                return self._rel.fetchone()

            def fetchall(self):
                return self._rel.fetchall()

        return Cursor()


def test_run_suite_takes_any_dbapi_connection():
    from mesh_assets.quality.run import run_suite

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE legs AS SELECT * FROM (VALUES (1, 'AA', 100), (2, 'ZZ', 200)) v(leg_id, carrier, seats)"
    )
    con.execute("CREATE TABLE airlines AS SELECT 'AA' AS carrier")
    rules = [
        ALL_PUSHDOWN[2],
        ALL_PUSHDOWN[11],
        QualityRule("lengths", "expect_column_value_lengths_to_equal", {"column": "carrier", "value": 2}),
    ]
    # "duckdb-dbapi" is not a dialect: use the generic path with DuckDB's SQL
    from mesh_assets.quality.sql import Dialect

    results = run_suite(
        _DbApi(con), "legs", rules, dialect=Dialect("duckdb"), lookups={"reference.airlines": "airlines"}
    )
    assert [(r.passed, r.unexpected_count) for r in results] == [(False, 1), (False, 1), (True, 0)]
    assert results[1].sample == ("ZZ",) and results[2].engine == "great_expectations"


# --- evaluation details --------------------------------------------------------------------------


def test_freshness_compares_in_utc_for_naive_aware_and_date_columns():
    now = dt.datetime(2024, 6, 10, 12, tzinfo=UTC)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    con.register(
        "t",
        pa.table(
            {
                "naive": pa.array([dt.datetime(2024, 6, 9, 13)], pa.timestamp("us")),
                "aware": pa.array([dt.datetime(2024, 6, 9, 11, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
                "day": pa.array([dt.date(2024, 6, 9)], pa.date32()),
            }
        ),
    )
    rules = [
        QualityRule(c, "expect_column_values_to_be_fresh", {"column": c, "max_age": {"hours": 24}})
        for c in ("naive", "aware", "day")
    ]
    naive, aware, day = evaluate(con, "t", rules, now=now)
    assert naive.passed and not aware.passed and day.passed
    assert naive.metadata()["observed_value"] == "2024-06-09T13:00:00"
    assert naive.metadata()["freshness/threshold"] == "2024-06-09T12:00:00"


def test_missing_reference_snapshot_is_errored_not_skipped():
    con = duckdb.connect()
    con.register("t", pa.table({"carrier": ["AA"]}))
    [result] = evaluate(con, "t", [ALL_PUSHDOWN[11]], lookups={})
    assert result.metadata()["status"] == "errored" and "reference.airlines" in result.error


def test_report_escapes_values(tmp_path):
    from mesh_assets.quality.report import write_report
    from mesh_assets.quality.results import RuleResult

    product = load_contract(DOMAINS_DIR / "reference" / "products" / "airlines.yaml")
    rule = QualityRule(
        "<script>", "expect_column_values_to_be_in_set", {"column": "carrier", "value_set": ["<b>"]}
    )
    path = write_report(
        product,
        [RuleResult(rule, passed=False, unexpected_count=1, unexpected_percent=50.0, sample=("<img>",))],
        run_id="r1",
        snapshot_id=7,
        home=tmp_path,
    )
    text = path.read_text()
    assert path == tmp_path / "quality" / "reports" / "reference" / "airlines" / "r1.html"
    assert "<script>" not in text and "&lt;script&gt;" in text and "&lt;img&gt;" in text


# --- on real Iceberg tables ----------------------------------------------------------------------


def test_profile_proposals_hold_on_the_table_they_come_from(mesh_home):
    from mesh_assets.cli import main
    from mesh_assets.ingest.assets import ingest
    from mesh_assets.quality.profiling import profile_product

    for name in ("airlines", "planes"):
        domain = "reference" if name == "airlines" else "fleet"
        land(mesh_home, domain, f"{name}.csv")
        ingest(load_contract(DOMAINS_DIR / domain / "products" / f"{name}.yaml"), open_catalog())
    text = profile_product("fleet.planes")
    snippet = yaml.safe_load(text)  # a reviewable ODCS snippet
    table = snippet["schema"][0]
    props = {p["name"]: p for p in table["properties"]}
    assert props["tailnum"]["required"] is True and props["tailnum"].get("unique") is True
    assert any(
        q.get("implementation", {}).get("type") == "expect_column_values_to_match_regex"
        for q in props["tailnum"]["quality"]
    )
    assert {q.get("metric") for q in props["engines"]["quality"]} == {"invalidValues"}
    assert table["quality"][0]["metric"] == "rowCount"

    planes = load_contract(DOMAINS_DIR / "fleet" / "products" / "planes.yaml")
    columns = tuple(
        replace(
            c,
            required=bool(props[c.name].get("required")),
            unique=bool(props[c.name].get("unique")),
            primary_key_position=None,
        )
        for c in planes.columns
    )
    proposed = rules_from_contract(replace(planes, columns=columns), table)
    assert len(proposed) > 15
    from mesh_assets import engine

    con = engine.connect()
    relation = engine.register_table(con, open_catalog().load_table("fleet.planes"), "p")
    results = evaluate(con, relation, proposed)
    assert [r.rule.name for r in results if not r.passed] == []
    assert main(["profile", "reference.airlines"]) == 0


def test_checks_run_fallback_and_reference_rules_and_link_a_report(mesh_home, tmp_path):
    """A product with a GX-only rule and a reference rule, checked by Dagster on real Iceberg."""
    import dagster as dg

    from mesh_assets.iceberg.catalog import IcebergCatalog
    from mesh_assets.ingest.assets import ingest, ingestion_asset
    from mesh_assets.quality.checks import contract_checks

    project = tmp_path / "proj"
    shutil.copytree(DOMAINS_DIR / "reference", project / "domains" / "reference")
    ops = project / "domains" / "ops"
    (ops / "products").mkdir(parents=True)
    path = legs(
        project,
        column_quality={
            "carrier": [
                gx(
                    "expect_column_values_to_be_in_other_product",
                    product="reference.airlines",
                    key="carrier",
                    severity="warn",
                ),
                gx("expect_column_value_lengths_to_equal", value=2),
            ],
            "departed_at": [gx("expect_column_values_to_be_fresh", max_age={"days": 36500})],
        },
    )
    land(mesh_home, "reference", "airlines.csv")
    ingest(load_contract(project / "domains" / "reference" / "products" / "airlines.yaml"), open_catalog())
    land(
        mesh_home,
        "ops",
        "legs.csv",
        "leg_id,carrier,departed_at,seats\n1,AA,2024-01-01 10:00:00,100\n2,ZZZ,2024-01-02 10:00:00,150\n",
    )
    product = load_contract(path)
    result = dg.materialize(
        [ingestion_asset(product), contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )
    ev = {e.check_name: e for e in result.get_asset_check_evaluations()}
    ref, lengths, fresh = (
        ev["in_product_carrier"],
        ev["value_lengths_to_equal_carrier"],
        ev["fresh_departed_at"],
    )
    assert not ref.passed and ref.severity == dg.AssetCheckSeverity.WARN
    assert ref.metadata["unexpected_sample"].value == ["ZZZ"]
    assert ref.metadata["reference/snapshot_id"].value == str(
        open_catalog().load_table("reference.airlines").current_snapshot().snapshot_id
    )
    assert not lengths.passed and lengths.metadata["engine"].value == "great_expectations"
    assert lengths.metadata["unexpected_count"].value == 1
    assert lengths.metadata["unexpected_sample"].value == ["ZZZ"]
    assert fresh.passed and fresh.metadata["observed_value"].value == "2024-01-02T10:00:00"
    report = ref.metadata["quality/report"].value
    assert (
        report.endswith(f"{result.run_id}.html") and "value_lengths_to_equal_carrier" in open(report).read()
    )
    assert lengths.metadata["wap/published"].value is False  # a blocking GX rule failed: not published
