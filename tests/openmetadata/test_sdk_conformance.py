"""Conformance with the official OpenMetadata SDK (``openmetadata-ingestion`` 2.0.7.0): every
payload of a full export of the demo mesh (a dry run: pipeline statuses and test case results
included) and the dbt workflow configs validate against the SDK's generated pydantic models,
in the SDK's own environment (``om_sdk``; made on first use, PyPI needed then). The 1.x shape
is refused by the same models exactly where the APIs differ (the validator can fail), and the
fake server's picture of the 2.x API (``om2_fields.json``) is the SDK's."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import om2_spec
import pytest
import yaml
from om_fake_server import ROUTES
from om_fixtures import materialized, om_home  # noqa: F401 (fixtures)
from om_sdk import sdk_python

from mesh_assets import cli
from mesh_assets.openmetadata import models as m

pytestmark = pytest.mark.e2e

VALIDATOR = Path(__file__).with_name("sdk_validate.py")
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
    print(f"\nopenmetadata-ingestion {report['sdk']}: payloads per kind {json.dumps(counts)}")

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
