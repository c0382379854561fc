"""The per-domain OpenMetadata sensor: stopped and a no-op without OPENMETADATA_HOST; with it,
exports after new materializations and check evaluations (each evaluation one result), and
nothing when nothing happened."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from om_fixtures import (  # noqa: F401 (fixtures)
    SENTINEL_JWT,
    domain_defs,
    fake_om,
    materialized,
    om_home_copy,
)

pytestmark = pytest.mark.e2e


def test_without_a_host_the_sensor_is_stopped_and_does_nothing(domain_defs, monkeypatch):
    monkeypatch.delenv("OPENMETADATA_HOST", raising=False)
    for domain, defs in domain_defs.items():
        sensor = defs.get_sensor_def(f"{domain}_openmetadata")
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        # no instance, no repository: it must return before touching either
        result = sensor(dg.build_sensor_context())
        assert isinstance(result, dg.SkipReason) and "OPENMETADATA_HOST" in result.skip_message


def test_sensor_exports_new_materializations_and_each_check_evaluation(
    om_home_copy, domain_defs, fake_om, monkeypatch
):
    monkeypatch.setenv("OPENMETADATA_HOST", fake_om.url)
    monkeypatch.setenv("OPENMETADATA_JWT_TOKEN", SENTINEL_JWT)
    defs = domain_defs["analytics"]
    sensor = defs.get_sensor_def("analytics_openmetadata")
    checks = {k for k in defs.resolve_asset_graph().asset_check_keys}
    with dg.DagsterInstance.get() as instance:
        first = dg.build_sensor_context(instance=instance, definitions=defs)
        result = sensor(first)
        assert "exported to OpenMetadata" in result.skip_message
        assert set(fake_om.entities["pipeline"]) == {"dagster.analytics"}
        # the upstream tables of other domains exist too, so lineage edges could be drawn
        assert len(fake_om.series["lineage"]) == 6
        assert len(fake_om.series["testCaseResult"]) == len(checks)
        (status,) = fake_om.series["pipelineStatus"].values()
        assert status["executionStatus"] == "Successful"
        cursor = json.loads(first.cursor)
        assert set(cursor["materializations"]) == {
            "analytics/delays_by_weather",
            "analytics/delays_by_carrier_month",
            "analytics/delays_by_aircraft_age",
        }

        # nothing new: nothing sent
        sent = len(fake_om.calls)
        second = dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor)
        assert "no new" in sensor(second).skip_message
        assert len(fake_om.calls) == sent

        # a new evaluation: exactly its result (the metadata did not change)
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(["analytics", "delays_by_weather"]),
                check_name="row_count_between",
                passed=False,
                metadata={"observed_value": 1, "element_count": 1},
            )
        )
        third = dg.build_sensor_context(instance=instance, definitions=defs, cursor=first.cursor)
        sensor(third)
        new = fake_om.calls[sent:]
        assert [(c.method, c.path) for c in new] == [
            ("GET", "/api/v1/system/version"),  # each export speaks the server's API
            (
                "POST",
                "/api/v1/dataQuality/testCases/testCaseResults/"
                "mesh.iceberg.analytics.delays_by_weather.row_count_between",
            ),
        ]
        assert new[1].body["testCaseStatus"] == "Failed" and new[1].status == 201
        assert SENTINEL_JWT not in third.cursor and SENTINEL_JWT not in first.cursor
