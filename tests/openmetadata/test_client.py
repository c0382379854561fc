"""The OpenMetadata client and exporter without a materialized mesh: the API version negotiated
from the server's, retries with backoff on 5xx and timeouts (bounded), a clear error on 4xx
naming the entity and field, and the bot JWT never in a payload, a log line or an exception."""

from __future__ import annotations

import logging
import traceback

import pytest
from om_fake_server import HOLD, FakeOpenMetadata
from om_fixtures import SENTINEL_JWT, fake_om  # noqa: F401 (fixture)

from mesh_assets.openmetadata import models as m
from mesh_assets.openmetadata.api import API_1, API_2, ApiVersionError, negotiate
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


def reference_plan(api=API_2):
    evaluation = Evaluation(
        ("reference", "airlines"),
        "unique_carrier",
        1_700_000_000_000,
        True,
        {"element_count": 16, "unexpected_count": 0, "observed_value": 0},
    )
    return plan_export(reference_view(), CONFIG, evaluations=[evaluation], api=api)


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
    assert all(c.status in (200, 201) for c in fake_om.calls if c.method != "GET")
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
        name="t",
        databaseSchema="s.d.x",
        columns=[m.Column("c", "STRING")],
        owners=[m.Ref("team", "x")],
        domains=["d"],
    )
    assert table.to_json(lambda r: {"id": "1", "type": r.type}) == {
        "name": "t",
        "databaseSchema": "s.d.x",
        "columns": [{"name": "c", "dataType": "STRING"}],
        "tableType": "Iceberg",
        "owners": [{"id": "1", "type": "team"}],
        "domains": ["d"],
    }
    assert table.to_json(lambda r: None)["owners"] == []  # an unknown user: no owner
    # the 1.x shape, derived in one place
    assert API_1.body(table, lambda r: {"id": "1", "type": r.type}) == {
        "name": "t",
        "databaseSchema": "s.d.x",
        "columns": [{"name": "c", "dataType": "STRING"}],
        "tableType": "Iceberg",
        "owner": {"id": "1", "type": "team"},
        "domain": "d",
    }
    assert "owner" not in API_1.body(table, lambda r: None)
    with pytest.raises(ValueError):
        table.to_json()


@pytest.mark.parametrize(
    "server, requested, expected",
    [("2.0.7", "auto", API_2), ("1.4.0", "auto", API_1), ("1.4.0", "2", API_2), ("2.0.7", "1", API_1)],
)
def test_the_api_version_follows_the_server_unless_chosen(server, requested, expected):
    fake = FakeOpenMetadata(token=SENTINEL_JWT, version=server).start()
    try:
        om = OpenMetadataClient(fake.url, SENTINEL_JWT)
        assert om.server_version() == server
        assert negotiate(requested, om.server_version) is expected
        asked = [c.path for c in fake.calls]
        assert asked == ["/api/v1/system/version"] * (2 if requested == "auto" else 1)
    finally:
        fake.stop()


def test_an_export_speaks_the_servers_api(monkeypatch):
    """The same plan, negotiated against a 1.4 and a 2.0 server: each gets its own endpoints
    and shapes, and accepts every body. Both get the test suites where the SDK 2.0.7 sends
    them (``.../executable``; 2.x also answers ``.../basic``)."""
    for version, suites, results in (
        ("1.4.0", "/api/v1/dataQuality/testSuites/executable", ("PUT", "/testCaseResult")),
        ("2.0.7", "/api/v1/dataQuality/testSuites/executable", ("POST", "/testCaseResults/")),
    ):
        fake = FakeOpenMetadata(token=SENTINEL_JWT, version=version).start()
        try:
            om = OpenMetadataClient(fake.url, SENTINEL_JWT)
            Exporter(om).run(reference_plan(negotiate("auto", om.server_version)))
            assert fake.schema_errors == [], version
            assert {c.path for c in fake.put_calls("testSuite")} == {suites}
            (result,) = fake.put_calls("testCaseResult")
            assert result.method == results[0] and results[1] in result.path and result.status == 201
            owner_field = "owner" if version == "1.4.0" else "owners"
            assert all(owner_field in e for e in fake.entities["table"].values())
        finally:
            fake.stop()


def test_negotiation_refuses_what_it_cannot_speak():
    with pytest.raises(ApiVersionError, match=r"OpenMetadata 1\.6\.3 is between the 1\.4 API and the 2\.x"):
        negotiate("auto", lambda: "1.6.3")
    with pytest.raises(ApiVersionError, match="expected one of auto, 1, 2"):
        negotiate("3", None)
    with pytest.raises(ApiVersionError, match="'unknown', which is not MAJOR.MINOR"):
        negotiate("auto", lambda: "unknown")
    assert negotiate("auto", None) is API_2  # nothing to ask (a dry run without a host)


def test_an_unknown_field_is_a_400_naming_entity_and_field(fake_om):
    """A 1.x body sent to a 2.x server (``--api 1`` against 2.0.7): the server refuses the
    field it does not know, and the error names the entity, the field and the way out."""
    with pytest.raises(OpenMetadataError) as failure:
        Exporter(client(fake_om), batch_size=1).run(reference_plan(API_1))
    error = failure.value
    assert (error.status, error.entity, error.field) == (400, "domain reference", "owner")
    assert str(error) == (
        "OpenMetadata rejected PUT /v1/domains for domain reference with HTTP 400: field 'owner': "
        'Unrecognized field "owner" (class CreateDomainRequest), not marked as ignorable '
        "(this server's API has no such field: choose its version with --api or "
        "OPENMETADATA_API_VERSION, or leave it to auto)"
    )
    assert "domain" not in fake_om.entities  # nothing was created from the refused body
