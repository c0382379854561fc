"""Conformance with the official OpenMetadata SDK (``openmetadata-ingestion`` 2.0.7.0): every
payload of a full export of the demo mesh (a dry run: pipeline statuses and test case results
included) and the dbt workflow configs validate against the SDK's generated pydantic models,
in the SDK's own environment (``om_sdk``; made on first use, PyPI needed then). The 1.x shape
is refused by the same models exactly where the APIs differ (the validator can fail), the
fake server's picture of the 2.x API (``om2_fields.json``) is the SDK's, and the SDK's own
client sends the writes whose endpoints moved (test suite, test case result, pipeline status)
with the exporter's method and path, accepted by the fake 2.x server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import om2_spec
import pytest
import yaml
from om_fake_server import ROUTES, FakeOpenMetadata
from om_fixtures import SENTINEL_JWT, materialized, om_home  # noqa: F401 (fixtures)
from om_sdk import sdk_python
from test_client import CONFIG, reference_view

from mesh_assets import cli
from mesh_assets.openmetadata import models as m
from mesh_assets.openmetadata.api import negotiate
from mesh_assets.openmetadata.client import OpenMetadataClient
from mesh_assets.openmetadata.collect import Evaluation, RunFacts
from mesh_assets.openmetadata.plan import plan_export
from mesh_assets.openmetadata.send import Exporter

pytestmark = pytest.mark.e2e

VALIDATOR = Path(__file__).with_name("sdk_validate.py")
SDK_CLIENT = Path(__file__).with_name("sdk_client.py")
WORKFLOW_MODEL = "metadataIngestion.workflow.OpenMetadataWorkflowConfig"
RESULT_MODELS = ("tests.basic.TestCaseResult",)  # what the SDK itself posts as a result
KINDS = {
    "CreateClassification",
    "CreateTag",
    "CreateTeam",
    "CreateDomain",
    "CreateDataProduct",
    "CreateDatabaseService",
    "CreateDatabase",
    "CreateDatabaseSchema",
    "CreateTable",
    "CreatePipelineService",
    "CreatePipeline",
    "PipelineStatus",
    "AddLineage",
    "CreateTestSuite",
    "CreateTestDefinition",
    "CreateTestCase",
    "TestCaseResult",
}


@pytest.fixture(scope="module")
def sdk() -> Path:
    python, took = sdk_python()
    if took is not None:
        print(f"\nSDK environment made in {took:.0f} s: {python}")
    return python


def run_sdk(sdk: Path, *args: str) -> dict:
    done = subprocess.run(
        [str(sdk), str(VALIDATOR), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def dry_run(capsys, *args: str) -> list[dict]:
    assert cli.main(["openmetadata", "export", "--dry-run", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def payloads(printed: list[dict], prefix: str = "") -> list[dict]:
    return [
        {
            "kind": prefix + p["kind"],
            "entity": p["entity"],
            "models": [getattr(m, p["kind"]).SDK_MODEL]
            + (list(RESULT_MODELS) if p["kind"] == "TestCaseResult" else []),
            "body": p["body"],
        }
        for p in printed
    ]


def dbt_configs(capsys) -> list[dict]:
    out = []
    for where in ([], ["--s3", "s3://warehouse/dbt-artifacts"], ["--local", "/srv/dbt-artifacts"]):
        assert cli.main(["openmetadata", "dbt-config", "analytics", "--host", "http://om:8585", *where]) == 0
        body = yaml.safe_load(capsys.readouterr().out)
        kind = body["source"]["sourceConfig"]["config"]["dbtConfigSource"]["dbtConfigType"]
        out.append(
            {
                "kind": f"dbt workflow ({kind})",
                "entity": "analytics",
                "models": [WORKFLOW_MODEL],
                "body": body,
            }
        )
    return out


def test_a_full_export_validates_against_the_sdk_models(sdk, om_home, capsys, tmp_path):
    v2 = dry_run(capsys)
    v1 = dry_run(capsys, "--api", "1")
    file = tmp_path / "payloads.json"
    file.write_text(
        json.dumps({"payloads": payloads(v2) + payloads(v1, "1.x "), "workflows": dbt_configs(capsys)})
    )
    report = run_sdk(sdk, "validate", str(file))
    assert report["sdk"] == m.SDK_VERSION
    kinds = report["kinds"]
    counts = {k: v["payloads"] for k, v in sorted(kinds.items()) if not k.startswith("1.x ")}
    exported = {k: n for k, n in counts.items() if k in KINDS}
    print(  # the figures the README quotes
        f"\nopenmetadata-ingestion {report['sdk']}: a full export makes {sum(exported.values())} payloads, "
        f"per kind {json.dumps(exported)}; dbt workflow configs: {sum(counts.values()) - sum(exported.values())}"
    )

    # 2.x: every kind present, not one failure; the request models refuse unknown fields
    assert {k for k in kinds if not k.startswith(("1.x ", "dbt "))} == KINDS
    failures = {k: v["failures"][:5] for k, v in kinds.items() if v["failures"] and not k.startswith("1.x ")}
    assert failures == {}
    assert sum(counts.values()) == len(v2) + 3 and len(v2) > 200
    assert counts["PipelineStatus"] == 6 and counts["TestCaseResult"] > 70
    assert all(report["forbid"][getattr(m, k).SDK_MODEL] for k in KINDS)
    assert report["forbid"][WORKFLOW_MODEL]

    # 1.x: refused exactly where the APIs differ, nowhere else
    refused = {
        (k.removeprefix("1.x "), f["field"].split(".")[0])
        for k, v in kinds.items()
        if k.startswith("1.x ")
        for f in v["failures"]
    }
    assert refused == {
        ("CreateDomain", "owner"),
        ("CreateDataProduct", "owner"),
        ("CreateDataProduct", "domain"),
        ("CreateDataProduct", "domains"),  # required in 2.x
        ("CreateDatabaseSchema", "owner"),
        ("CreateDatabaseSchema", "domain"),
        ("CreateTable", "owner"),
        ("CreateTable", "domain"),
        ("CreatePipeline", "owner"),
        ("CreatePipeline", "domain"),
        ("CreateTestCase", "testSuite"),
        ("CreateTestDefinition", "testPlatforms"),
    }


def test_the_fake_servers_2x_fields_are_the_sdks(sdk):
    roots = sorted({route[2] for route in ROUTES[2]})
    assert run_sdk(sdk, "fields", *roots) == om2_spec.known(), (
        f"the SDK's models changed: regenerate {om2_spec.FIELDS_FILE.name} with "
        f"`{sdk} {VALIDATOR} fields {' '.join(roots)}`"
    )


def test_the_sdks_own_client_sends_the_moved_writes_where_the_exporter_does(sdk):
    """The SDK's client methods (``create_or_update_executable_test_suite``,
    ``add_pipeline_status``, ``add_test_case_results``: what its dbt workflow, REST sink and
    Great Expectations action call) against the fake 2.0.7 server, after the exporter: for the
    same table, pipeline and test case both use the same method and path, the fake's 2.x route
    for it accepts the SDK's body (no schema error) and the SDK parses the fake's answer."""
    view = reference_view()
    airlines = view.assets[("reference", "airlines")]
    start = 1_700_000_000_000
    entities = {
        "table": "mesh.iceberg.reference.airlines",
        "pipeline": "dagster.reference",
        "task": airlines.task_name,
        "test_case": "mesh.iceberg.reference.airlines.carrier.unique_carrier",
        "timestamp": start + 60_000,
    }
    run = RunFacts("run-1", "Successful", start, start + 1, ((airlines.task_name, "Successful", None),))
    evaluation = Evaluation(airlines.key, "unique_carrier", start, True, {"observed_value": 0})
    fake = FakeOpenMetadata(token=SENTINEL_JWT, version="2.0.7").start()
    try:
        om = OpenMetadataClient(fake.url, SENTINEL_JWT)
        api = negotiate("auto", om.server_version)
        Exporter(om).run(
            plan_export(view, CONFIG, runs={"reference": [run]}, evaluations=[evaluation], api=api)
        )
        exporter = list(fake.calls)
        done = subprocess.run(
            [str(sdk), str(SDK_CLIENT), fake.url, json.dumps(entities)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "OPENMETADATA_JWT_TOKEN": SENTINEL_JWT},
        )
    finally:
        fake.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {
        "sdk": m.SDK_VERSION,
        "answers": {
            "create_or_update_executable_test_suite": entities["table"],
            "add_pipeline_status": entities["timestamp"],
            "add_test_case_results": entities["timestamp"],
        },
    }
    sdk_calls = fake.calls[len(exporter) :]
    assert fake.schema_errors == [] and all(c.status in (200, 201) for c in sdk_calls)

    def writes(calls, kind):
        routed = [(c, fake.route(c.method, c.path)) for c in calls]
        return {(c.method, c.path) for c, route in routed if route is not None and route[3] == kind}

    moved = {
        "testSuite": {("PUT", "/api/v1/dataQuality/testSuites/executable")},
        "pipelineStatus": {("PUT", "/api/v1/pipelines/dagster.reference/status")},
        "testCaseResult": {
            (
                "POST",
                "/api/v1/dataQuality/testCases/testCaseResults/mesh.iceberg.reference.airlines.carrier.unique_carrier",
            )
        },
    }
    for kind, expected in moved.items():
        assert writes(sdk_calls, kind) == writes(exporter, kind) == expected, kind
    # the SDK's only other request: its version check
    assert [(c.method, c.path) for c in sdk_calls if c.method == "GET"] == [("GET", "/api/v1/system/version")]
    assert len(sdk_calls) == 4
    # the suite names its table in the same field (1.x: executableEntityReference)
    suites = {c.body["basicEntityReference"] for c in exporter if c.path.endswith("/testSuites/executable")}
    (received,) = [c.body for c in sdk_calls if c.path.endswith("/testSuites/executable")]
    assert received["basicEntityReference"] == entities["table"] and entities["table"] in suites
