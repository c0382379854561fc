"""The OpenMetadata client and exporter without a materialized mesh: retries with backoff on 5xx
and timeouts (bounded), a clear error on 4xx naming the entity and field, and the bot JWT never
in a payload, a log line or an exception."""

from __future__ import annotations

import logging
import traceback

import om_spec
import pytest
from om_fake_server import HOLD, _route
from om_fixtures import SENTINEL_JWT, fake_om  # noqa: F401 (fixture)

from mesh_assets.openmetadata import models as m
from mesh_assets.openmetadata.client import (
    OpenMetadataClient,
    OpenMetadataError,
    OpenMetadataUnavailable,
    api_base,
    field_of,
)
from mesh_assets.openmetadata.collect import AssetView, CheckView, Evaluation, MeshView
from mesh_assets.openmetadata.plan import ExportConfig, plan_export
from mesh_assets.openmetadata.send import Exporter
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_domain

CONFIG = ExportConfig(trino_host_port="trino:8080", trino_user="mesh")


def reference_view() -> MeshView:
    """The reference domain's ingested products as a view (no Dagster, no dbt needed)."""
    domain = load_domain(DOMAINS_DIR / "reference")
    assets = {}
    for p in domain.products:
        if p.source:
            assets[tuple(p.asset_key_path)] = AssetView(
                key=tuple(p.asset_key_path),
                domain="reference",
                table=p.table_identifier,
                materializable=True,
                product=p,
                description=p.description,
                checks=tuple(
                    CheckView(tuple(p.asset_key_path), r.name, r.description, True, rule=r) for r in p.rules
                ),
            )
    return MeshView(domains={"reference": domain}, assets=assets, primary=("reference",))


def reference_plan():
    evaluation = Evaluation(
        ("reference", "airlines"),
        "unique_carrier",
        1_700_000_000_000,
        True,
        {"element_count": 16, "unexpected_count": 0, "observed_value": 0},
    )
    return plan_export(reference_view(), CONFIG, evaluations=[evaluation])


def client(server, **kwargs) -> OpenMetadataClient:
    sleeps = kwargs.pop("sleeps", [])
    return OpenMetadataClient(server.url, SENTINEL_JWT, sleep=sleeps.append, **kwargs)


def test_api_base_and_field_names():
    assert api_base("http://om:8585") == "http://om:8585/api"
    assert api_base("http://om:8585/api/") == "http://om:8585/api"
    with pytest.raises(ValueError):
        api_base("om:8585")
    assert field_of("[columns[0].dataType must not be null]") == "columns[0].dataType"
    assert field_of('Unrecognized field "owners" (class CreateTable), not marked as ignorable') == "owners"
    assert field_of("query param name must not be null") == "name"


def test_small_export_is_schema_valid_and_ordered(fake_om):
    report = Exporter(client(fake_om)).run(reference_plan())
    assert fake_om.schema_errors == []
    for call in fake_om.calls:
        route = _route(call.method, call.path)
        if route:
            assert om_spec.errors(route[2], call.body) == []
    assert report.created == report.calls and report.calls > 20
    assert set(fake_om.entities["table"]) == {
        "mesh.iceberg.reference.airlines",
        "mesh.iceberg.reference.airports",
    }
    assert fake_om.entities["databaseService"]["mesh"]["connection"] == {
        "config": {
            "type": "Trino",
            "scheme": "trino",
            "hostPort": "trino:8080",
            "username": "mesh",
            "catalog": "iceberg",
        }
    }
    (result,) = fake_om.series["testCaseResult"].values()
    assert result["testCaseStatus"] == "Success" and result["passedRows"] == 16


def test_5xx_and_timeouts_are_retried_with_backoff(fake_om):
    fake_om.fail("PUT", "/api/v1/tables", 503, 502)
    fake_om.fail("PUT", "/api/v1/lineage|/api/v1/dataQuality/testCases", HOLD)  # one timeout
    sleeps = []
    report = Exporter(client(fake_om, sleeps=sleeps, timeout=0.4)).run(reference_plan())
    (held,) = fake_om.release()  # the request left unanswered, once it reached the server
    tables = fake_om.put_calls("table")
    assert [c.status for c in tables][:2] == [503, 502]
    assert len(fake_om.entities["table"]) == 2 and report.calls > 20
    test_cases = fake_om.put_calls("testCase")
    assert len(test_cases) == len(fake_om.entities["testCase"]) + 1  # the timed-out attempt
    assert held in test_cases
    assert len(sleeps) == 3 and all(0 < s <= 10 for s in sleeps)


def test_retries_are_bounded(fake_om):
    fake_om.fail("PUT", "/api/v1/domains", *[500] * 10)
    sleeps = []
    with pytest.raises(OpenMetadataUnavailable) as failure:
        Exporter(client(fake_om, sleeps=sleeps, max_attempts=4)).run(reference_plan())
    assert len(fake_om.put_calls("domain")) == 4 and len(sleeps) == 3
    assert sleeps[0] < sleeps[2]  # exponential
    message = str(failure.value)
    assert "domain reference" in message and "after 4 attempts" in message and "HTTP 500" in message
    assert "table" not in fake_om.entities  # nothing after a failed phase


def test_4xx_is_a_clear_error_naming_entity_and_field(fake_om):
    fake_om.fail("PUT", "/api/v1/tables", 400, message="[columns[1].dataType must not be null]")
    with pytest.raises(OpenMetadataError) as failure:
        Exporter(client(fake_om), batch_size=1).run(reference_plan())
    error = failure.value
    assert error.status == 400 and error.field == "columns[1].dataType"
    assert error.entity == "table mesh.iceberg.reference.airlines"
    assert "table mesh.iceberg.reference.airlines" in str(error)
    assert "field 'columns[1].dataType'" in str(error)
    assert len(fake_om.put_calls("table")) == 1  # a 4xx is not retried


def test_a_wrong_token_says_what_to_set(fake_om):
    with pytest.raises(OpenMetadataError) as failure:
        Exporter(OpenMetadataClient(fake_om.url, "not-the-bot-token")).run(reference_plan())
    assert failure.value.status == 401 and "OPENMETADATA_JWT_TOKEN" in str(failure.value)
    assert "not-the-bot-token" not in str(failure.value)


def test_the_jwt_never_leaks(fake_om, caplog, capsys, monkeypatch, tmp_path):
    """The bot token from a mounted secret file: only ever in the Authorization header."""
    secret = tmp_path / "jwt"
    secret.write_text(SENTINEL_JWT + "\n")
    monkeypatch.delenv("OPENMETADATA_JWT_TOKEN", raising=False)
    monkeypatch.setenv("OPENMETADATA_JWT_TOKEN_FILE", str(secret))
    caplog.set_level(logging.DEBUG)
    om = OpenMetadataClient.from_env(fake_om.url, sleep=lambda s: None, timeout=0.4)
    fake_om.fail("PUT", "/api/v1/domains", 503, HOLD)  # a 503, then a timeout
    # the server echoes the token in its error message: masked
    fake_om.fail("PUT", "/api/v1/tables", 400, message=f"bad token {SENTINEL_JWT} in field name")
    with pytest.raises(OpenMetadataError) as failure:
        Exporter(om).run(reference_plan())
    fake_om.release()
    texts = [
        str(failure.value),
        repr(failure.value),
        repr(failure.value.args),
        repr(om),
        "".join(traceback.format_exception(failure.value)),
        caplog.text,
        *capsys.readouterr(),
    ]
    texts += [repr(c.body) for c in fake_om.calls]  # what the exporter sent
    leaks = [
        t[max(0, t.find(SENTINEL_JWT) - 300) : t.find(SENTINEL_JWT) + 80] for t in texts if SENTINEL_JWT in t
    ]
    assert leaks == []
    assert "***" in str(failure.value)
    assert {c.headers.get("Authorization") for c in fake_om.calls} == {f"Bearer {SENTINEL_JWT}"}
    assert any("retry" in r.getMessage() for r in caplog.records)  # it logged, without the token


def test_payload_models_drop_unset_fields_and_resolve_references():
    table = m.CreateTable(
        name="t", databaseSchema="s.d.x", columns=[m.Column("c", "STRING")], owner=m.Ref("team", "x")
    )
    assert table.to_json(lambda r: {"id": "1", "type": r.type}) == {
        "name": "t",
        "databaseSchema": "s.d.x",
        "columns": [{"name": "c", "dataType": "STRING"}],
        "tableType": "Iceberg",
        "owner": {"id": "1", "type": "team"},
    }
    assert "owner" not in table.to_json(lambda r: None)
    with pytest.raises(ValueError):
        table.to_json()
