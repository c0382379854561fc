"""The full export (`mesh openmetadata export`) of a materialized mesh to a fake OpenMetadata
2.0.7 (and 1.4.0 for the 1.x path): payloads the server accepts (2.x: the SDK's fields; 1.x:
the official 1.4 JSON Schemas), endpoints, order, entities, lineage (column level across
domains, exact), test cases and results, idempotency, the dry run."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import om_spec
import pytest
from om_fake_server import ROUTES, FakeOpenMetadata
from om_fixtures import (  # noqa: F401 (fixtures)
    SENTINEL_JWT,
    domain_defs,
    materialized,
    om_home,
    point_at,
)

from mesh_assets.openmetadata.client import OpenMetadataClient
from mesh_assets.openmetadata.export import export_mesh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def graphs(domain_defs):
    return {d: defs.resolve_asset_graph() for d, defs in domain_defs.items()}


@pytest.fixture(scope="module")
def exported(materialized, graphs):
    """One full export for the module's read-only tests: (fake server, report)."""
    server = FakeOpenMetadata(token=SENTINEL_JWT).start()
    with pytest.MonkeyPatch.context() as mp:
        point_at(mp, materialized)
        report = export_mesh(OpenMetadataClient(server.url, SENTINEL_JWT), graphs)
        yield server, report
    server.stop()


def test_every_payload_is_what_a_2x_server_accepts(exported):
    fake, _ = exported
    assert fake.schema_errors == []
    assert fake.calls[0].path == "/api/v1/system/version"  # the API was negotiated first
    writes = [c for c in fake.calls if c.method != "GET"]
    assert all(c.status in (200, 201) for c in writes), [
        (c.path, c.response) for c in writes if c.status > 201
    ]
    # every kind of payload the exporter knows was sent, each to its 2.x endpoint
    assert {fake.route(c.method, c.path)[3] for c in writes} == {r[3] for r in ROUTES[2]}
    assert len(writes) > 200


def test_the_1x_path_is_valid_against_the_official_1_4_schemas(materialized, graphs):
    """A 1.4 server gets the 1.x shape: one ``owner`` and ``domain``, test cases naming their
    executable suite, results PUT to ``.../{fqn}/testCaseResult``; every body valid against
    the JSON Schemas of openmetadata-spec 1.4.0."""
    fake = FakeOpenMetadata(token=SENTINEL_JWT, version="1.4.0").start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            point_at(mp, materialized)
            report = export_mesh(OpenMetadataClient(fake.url, SENTINEL_JWT), graphs)
    finally:
        fake.stop()
    assert fake.schema_errors == []
    writes = [c for c in fake.calls if c.method != "GET"]
    assert {c.method for c in writes} == {"PUT"}
    for call in writes:
        assert om_spec.errors(fake.route(call.method, call.path)[2], call.body) == []
    assert {fake.route(c.method, c.path)[3] for c in writes} == {r[3] for r in ROUTES[1]}
    assert report.calls == len(writes)
    teams = {e["id"]: name for name, e in fake.entities["team"].items()}
    airlines = fake.entities["table"]["mesh.iceberg.reference.airlines"]
    assert airlines["domain"] == "reference" and teams[airlines["owner"]["id"]] == "reference-data-team"
    assert "owners" not in airlines and "domains" not in airlines
    case = fake.entities["testCase"]["mesh.iceberg.reference.airlines.carrier.not_null_carrier"]
    assert case["testSuite"] == "mesh.iceberg.reference.airlines.testSuite"
    definition = fake.entities["testDefinition"]["meshAssetCheck"]
    assert definition["testPlatforms"] == ["GreatExpectations", "DBT", "Other"]
    results = fake.put_calls("testCaseResult")
    assert results and all(c.path.endswith("/testCaseResult") for c in results)


def test_the_jwt_is_in_no_payload_and_only_in_the_auth_header(exported):
    fake, report = exported
    assert all(SENTINEL_JWT not in json.dumps(c.body) for c in fake.calls)
    assert all(SENTINEL_JWT not in json.dumps(e) for es in fake.entities.values() for e in es.values())
    assert SENTINEL_JWT not in repr(report)
    for call in fake.calls:
        assert [k for k, v in call.headers.items() if SENTINEL_JWT in v] == ["Authorization"]


def test_endpoints_methods_and_order(exported):
    fake, _ = exported
    order = [(fake.route(c.method, c.path) or (None, None, None, f"GET {c.path}"))[3] for c in fake.calls]
    assert {(c.method, fake.route(c.method, c.path)[3]) for c in fake.calls if c.method == "POST"} == {
        ("POST", "testCaseResult")
    }
    assert {c.method for c in fake.calls} == {"GET", "PUT", "POST"}
    assert all(c.status in (200, 201, 404) for c in fake.calls)
    assert all(c.status != 404 or c.method == "GET" for c in fake.calls)

    def first(kind):
        return order.index(kind)

    def last(kind):
        return len(order) - 1 - order[::-1].index(kind)

    assert last("classification") < first("tag")
    assert last("team") < first("domain") and last("domain") < first("dataProduct")
    assert last("dataProduct") < first("table")
    assert last("databaseService") < first("database") < first("databaseSchema")
    assert last("databaseSchema") < first("table")
    assert last("pipelineService") < first("pipeline")
    assert last("table") < first("lineage") and last("pipeline") < first("lineage")
    assert last("pipeline") < first("pipelineStatus")
    assert last("testSuite") < first("testCase") and last("testDefinition") < first("testCase")
    assert last("testCase") < first("testCaseResult")
    # every request carried the bot token
    assert all(c.headers.get("Authorization") == f"Bearer {SENTINEL_JWT}" for c in fake.calls)


def test_domains_data_products_and_tables(exported):
    fake, _ = exported
    domains = fake.entities["domain"]
    assert {d: e["domainType"] for d, e in domains.items()} == {
        "reference": "Source-aligned",
        "fleet": "Source-aligned",
        "weather": "Source-aligned",
        "operations": "Source-aligned",
        "analytics": "Consumer-aligned",
    }
    teams = {e["id"]: name for name, e in fake.entities["team"].items()}
    assert [teams[o["id"]] for o in domains["analytics"]["owners"]] == ["analytics-team"]
    products = fake.entities["dataProduct"]
    assert len(products) == 13
    assert products["analytics-delays_by_weather"]["domains"] == ["analytics"]
    assert fake.entities["databaseService"]["mesh"]["serviceType"] == "Trino"
    assert set(fake.entities["databaseSchema"]) == {f"mesh.iceberg.{d}" for d in domains}

    tables = fake.entities["table"]
    assert set(tables) == {
        f"mesh.iceberg.{t}"
        for t in (
            "reference.airlines",
            "reference.airports",
            "reference.timezones",
            "fleet.planes",
            "weather.observations",
            "weather.station_daily",
            "operations.flights",
            "operations.daily_performance",
            "analytics.delays_by_weather",
            "analytics.delays_by_carrier_month",
            "analytics.delays_by_aircraft_age",
            "operations.flight_events",
            "operations.live_departures",
        )
    }
    airlines = tables["mesh.iceberg.reference.airlines"]
    assert airlines["tableType"] == "Iceberg"
    assert airlines["domains"] == ["reference"] and airlines["dataProducts"] == ["reference-airlines"]
    assert [teams[o["id"]] for o in airlines["owners"]] == ["reference-data-team"]
    assert airlines["retentionPeriod"].startswith("P")
    carrier = airlines["columns"][0]
    assert carrier["name"] == "carrier" and carrier["dataType"] == "STRING"
    assert carrier["constraint"] == "PRIMARY_KEY" and carrier["description"]
    assert carrier["tags"] == [
        {
            "tagFQN": "DataClassification.public",
            "source": "Classification",
            "labelType": "Automated",
            "state": "Confirmed",
        }
    ]
    # a compound primary key is a table constraint
    carrier_month = tables["mesh.iceberg.analytics.delays_by_carrier_month"]
    assert carrier_month["tableConstraints"] == [
        {"constraintType": "PRIMARY_KEY", "columns": ["carrier", "month"]}
    ]
    # dbt models without a contract (staging, intermediate) are ephemeral: no table to export
    assert not any("stg_" in fqn or "int_" in fqn for fqn in tables)


def test_one_pipeline_per_domain_with_assets_as_tasks_and_run_status(exported, graphs):
    fake, _ = exported
    pipelines = fake.entities["pipeline"]
    assert set(pipelines) == {f"dagster.{d}" for d in graphs}
    for domain, graph in graphs.items():
        tasks = {t["name"] for t in pipelines[f"dagster.{domain}"]["tasks"]}
        assert tasks == {k.to_user_string() for k in graph.materializable_asset_keys if k.path[0] == domain}
    reference = {t["name"]: t for t in pipelines["dagster.reference"]["tasks"]}
    # the mart reads the ingested product through ephemeral staging and intermediate models
    assert reference["reference/airports"]["downstreamTasks"] == ["reference/timezones"]
    statuses = fake.series["pipelineStatus"]
    assert {fqn for fqn, _ in statuses} == set(pipelines)
    for (_fqn, _), status in statuses.items():
        assert status["executionStatus"] == "Successful"
        assert {t["executionStatus"] for t in status["taskStatus"]} == {"Successful"}


def test_a_lineage_edge_per_asset_dependency_with_its_pipeline(exported, graphs):
    fake, _ = exported
    ids = fake.by_id()
    edges = {}
    for (src, dst), body in fake.series["lineage"].items():
        details = body["edge"]["lineageDetails"]
        edges[(ids[src][1]["fullyQualifiedName"], ids[dst][1]["fullyQualifiedName"])] = ids[
            details["pipeline"]["id"]
        ][1]["fullyQualifiedName"]
    expected = {}
    for domain, graph in graphs.items():
        for key in graph.materializable_asset_keys:
            for parent in graph.get(key).parent_keys:
                expected[(f"mesh.iceberg.{'.'.join(parent.path)}", f"mesh.iceberg.{'.'.join(key.path)}")] = (
                    f"dagster.{domain}"
                )
    assert edges == expected
    assert len(edges) == 11


def _column_lineage(fake, source, target):
    ids = {e["fullyQualifiedName"]: e["id"] for e in fake.entities["table"].values()}
    body = fake.series["lineage"][(ids[f"mesh.iceberg.{source}"], ids[f"mesh.iceberg.{target}"])]
    return {
        c["toColumn"].rsplit(".", 1)[1]: sorted(f.rsplit(".", 1)[1] for f in c["fromColumns"])
        for c in body["edge"]["lineageDetails"].get("columnsLineage", [])
    }, body


def test_cross_domain_column_lineage_from_the_dbt_manifest_is_exact(exported):
    fake, _ = exported
    from_flights, body = _column_lineage(fake, "operations.flights", "analytics.delays_by_weather")
    assert from_flights == {"mean_dep_delay_min": ["dep_delay"], "delayed_share": ["dep_delay"]}
    details = body["edge"]["lineageDetails"]
    assert details["source"] == "DbtLineage"
    assert '"operations"."flights"' in details["sqlQuery"]
    columns = {c["toColumn"]: c for c in details["columnsLineage"]}
    assert columns["mesh.iceberg.analytics.delays_by_weather.mean_dep_delay_min"] == {
        "fromColumns": ["mesh.iceberg.operations.flights.dep_delay"],
        "toColumn": "mesh.iceberg.analytics.delays_by_weather.mean_dep_delay_min",
        "function": "AVG(dep_delay)",
    }
    from_weather, _ = _column_lineage(fake, "weather.observations", "analytics.delays_by_weather")
    assert from_weather == {"condition": ["origin", "precip", "visib", "wind_speed"]}
    assert _column_lineage(fake, "reference.airlines", "analytics.delays_by_carrier_month")[0] == {
        "carrier_name": ["name"]
    }
    assert _column_lineage(fake, "operations.flights", "analytics.delays_by_carrier_month")[0] == {
        "carrier": ["carrier"],
        "month": ["month"],
        "mean_arr_delay_min": ["arr_delay"],
        "delayed_share": ["arr_delay"],
    }
    assert _column_lineage(fake, "fleet.planes", "analytics.delays_by_aircraft_age")[0] == {
        "age_band_years": ["year"]
    }
    # within a domain too, through the ephemeral staging and intermediate models (CTEs of the
    # mart's compiled SQL) down to the ingested product's columns
    within = _column_lineage(fake, "reference.airports", "reference.timezones")[0]
    assert within["utc_offset_hours"] == ["tz"] and within["observes_dst"] == ["dst"]


def test_a_test_case_per_asset_check_and_its_latest_result(exported, graphs):
    fake, _ = exported
    cases = fake.entities["testCase"]
    checks = {(tuple(k.asset_key.path), k.name) for g in graphs.values() for k in g.asset_check_keys}
    assert len(cases) == len(checks)
    linked = set()
    for case in cases.values():
        table = re.fullmatch(r"<#E::table::([^:>]+)(::columns::\w+)?>", case["entityLink"]).group(1)
        linked.add((tuple(table.split(".")[2:4]), case["name"]))
    assert linked == checks
    not_null = cases["mesh.iceberg.reference.airlines.carrier.not_null_carrier"]
    assert not_null["testDefinition"] == "columnValuesToBeNotNull"
    assert not_null["entityLink"] == "<#E::table::mesh.iceberg.reference.airlines::columns::carrier>"
    assert "testSuite" not in not_null  # 2.x: the table's basic test suite holds it
    suite = fake.entities["testSuite"]["mesh.iceberg.reference.airlines.testSuite"]
    assert suite["name"] == "mesh.iceberg.reference.airlines.testSuite"  # as the SDK names it
    assert suite["basicEntityReference"]["fullyQualifiedName"] == "mesh.iceberg.reference.airlines"
    in_set = cases["mesh.iceberg.analytics.delays_by_weather.condition.in_set_condition"]
    assert in_set["testDefinition"] == "columnValuesToBeInSet"
    assert json.loads(in_set["parameterValues"][0]["value"])[0] == "clear"
    rows = cases["mesh.iceberg.analytics.delays_by_weather.row_count_between"]
    assert rows["parameterValues"] == [{"name": "minValue", "value": "3"}]  # mustBeGreaterThan 2

    results = fake.series["testCaseResult"]
    assert {fqn for fqn, _ in results} <= set(cases)
    # checks never evaluated have no result: those of the streaming product (no batch in the demo)
    evaluated = {c for c in checks if c[0] != ("operations", "flight_events")}
    assert len(results) >= len(evaluated) - 2
    assert {r["testCaseStatus"] for r in results.values()} == {"Success"}
    result = next(
        r
        for (fqn, _), r in results.items()
        if fqn == "mesh.iceberg.reference.airlines.carrier.not_null_carrier"
    )
    assert result["failedRows"] == 0 and result["passedRows"] == 16


def test_a_second_export_creates_nothing_new(exported, graphs, om_home):
    fake, first = exported
    entities = {k: dict(v) for k, v in fake.entities.items()}
    series = {k: dict(v) for k, v in fake.series.items()}
    before = len(fake.calls)
    second = export_mesh(OpenMetadataClient(fake.url, SENTINEL_JWT), graphs)
    assert first.created > 200 and second.created == 0
    assert second.calls == first.calls
    assert {c.status for c in fake.calls[before:]} == {200}
    assert fake.entities == entities and fake.series == series


def test_dbt_artifacts_stay_available_for_openmetadata_dbt_workflow(om_home):
    for domain in ("reference", "weather", "operations", "analytics"):
        folder = om_home / "dbt" / "artifacts" / domain
        for name in ("manifest.json", "catalog.json", "run_results.json"):
            assert (folder / name).is_file(), folder / name
    manifest = json.loads((om_home / "dbt/artifacts/analytics/manifest.json").read_text())
    assert manifest["nodes"]["model.datamesh.delays_by_weather"]["compiled_code"]
    assert SENTINEL_JWT not in (om_home / "dbt/artifacts/analytics/manifest.json").read_text()


def _without_ids(value):
    """A body with each entity reference as (type, FQN): ids differ between runs."""
    if isinstance(value, dict):
        if set(value) == {"id", "type", "fullyQualifiedName"}:
            return (value["type"], value["fullyQualifiedName"])
        return {k: _without_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def test_dry_run_prints_every_call_the_export_makes(exported, om_home, capsys):
    """Without a host, the dry run plans for 2.x and prints exactly the writes of a real
    export (same order within each phase, same bodies but the ids), pipeline statuses and
    test case results included."""
    from mesh_assets import cli

    fake, _ = exported
    assert cli.main(["openmetadata", "export", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    printed = [json.loads(line) for line in out.splitlines()]
    starts = [i for i, c in enumerate(fake.calls) if c.path == "/api/v1/system/version"] + [len(fake.calls)]
    sent = [c for c in fake.calls[starts[0] : starts[1]] if c.method != "GET"]  # the first export
    assert sorted((p["method"], "/api" + p["path"]) for p in printed) == sorted(
        (c.method, c.path) for c in sent
    )
    by_call = {(c.method, c.path, json.dumps(_without_ids(c.body), sort_keys=True)) for c in sent}
    assert {
        (p["method"], "/api" + p["path"], json.dumps(_without_ids(p["body"]), sort_keys=True))
        for p in printed
    } == by_call
    kinds = [p["kind"] for p in printed]
    statuses, results = kinds.count("PipelineStatus"), kinds.count("TestCaseResult")
    assert statuses == len(fake.series["pipelineStatus"]) == 6  # the demo's runs
    assert results == len(fake.series["testCaseResult"]) > 70
    assert f"{len(printed)} call(s) planned for the OpenMetadata 2.x API ({statuses + results} of them" in err
    result = next(p for p in printed if p["kind"] == "TestCaseResult")
    assert result["method"] == "POST"
    assert urlsplit(result["path"]).path.startswith("/v1/dataQuality/testCases/testCaseResults/mesh.iceberg.")


def test_dbt_workflow_config_finds_the_exported_tables(exported, om_home, capsys, monkeypatch):
    """`mesh openmetadata dbt-config DOMAIN`: OpenMetadata's dbt workflow, pointed at the
    served artifacts and the exporter's database service, looks every materialized model and
    source up as a table the export created (no duplicates, none missing); the token is a
    reference, never its value; a node named otherwise (a trino-target `__staging` alias) is
    warned about."""
    import copy

    import yaml

    from mesh_assets import cli
    from mesh_assets.openmetadata.dbt_workflow import lookups, unmatched_nodes
    from mesh_assets.openmetadata.plan import ExportConfig

    fake, _ = exported
    tables = set(fake.entities["table"])
    config = ExportConfig.from_env()
    for domain in ("reference", "weather", "operations", "analytics"):
        manifest = json.loads((om_home / "dbt" / "artifacts" / domain / "manifest.json").read_text())
        found = lookups(manifest, config)
        assert found and set(found.values()) <= tables, set(found.values()) - tables
    monkeypatch.setenv("OPENMETADATA_JWT_TOKEN", SENTINEL_JWT)
    assert cli.main(["openmetadata", "dbt-config", "analytics", "--host", "http://om:8585"]) == 0
    out, err = capsys.readouterr()
    assert SENTINEL_JWT not in out and "warning" not in err
    workflow = yaml.safe_load(out)
    source = workflow["source"]
    assert source["serviceName"] == "mesh" and source["type"] == "dbt"
    dbt = source["sourceConfig"]["config"]
    assert dbt["catalogMapping"] == {"memory": "iceberg"}  # dbt's in-memory DuckDB database
    assert dbt["dbtConfigSource"] == {
        "dbtConfigType": "http",
        "dbtManifestHttpPath": "http://127.0.0.1:8765/analytics/manifest.json",
        "dbtCatalogHttpPath": "http://127.0.0.1:8765/analytics/catalog.json",
        "dbtRunResultsHttpPath": "http://127.0.0.1:8765/analytics/run_results.json",
    }
    assert workflow["workflowConfig"]["openMetadataServerConfig"] == {
        "hostPort": "http://om:8585/api",
        "authProvider": "openmetadata",
        "securityConfig": {"jwtToken": "${OPENMETADATA_JWT_TOKEN}"},
    }
    manifest = json.loads((om_home / "dbt/artifacts/analytics/manifest.json").read_text())
    staged = copy.deepcopy(manifest)
    staged["nodes"]["model.datamesh.delays_by_weather"]["alias"] = "delays_by_weather__staging"
    assert unmatched_nodes(staged, config, tables) == {
        "model.datamesh.delays_by_weather": "mesh.iceberg.analytics.delays_by_weather__staging"
    }
