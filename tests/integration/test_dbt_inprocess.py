"""dbt on the local target runs in the step's own process (mesh_assets/dbt/inprocess.py), one
invocation after another with the project parsed once: nothing of one invocation (dbt-duckdb's
in-memory DuckDB and the plugin's sources, the manifest dbt compiles in place) may reach the
next. Two materializations of the reference domain in this test's process, the airports
changed in between: the second timezones mart (staging and intermediate models are ephemeral,
injected as CTEs) is built from the new airports; then the weather domain's build records as
its mart's inputs exactly the two tables it read (the plugin of an earlier invocation would
hold reference's models and every snapshot it loaded)."""

import json
import os

import pytest
from meshtest import airports_version, land

from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import INPUTS_PROPERTY
from mesh_assets.materialize import materialize


def _timezones() -> dict[str, tuple]:
    rows = open_catalog().load_table("reference.timezones").scan().to_arrow().to_pylist()
    return {r["tzone"]: (r["airport_count"], r["mean_altitude_ft"], r["max_altitude_ft"]) for r in rows}


def _dbt_pids(home, run_id: str, step: str) -> set[int]:
    log = home / "dbt" / "runs" / run_id / step / "dbt.log"
    return {json.loads(line)["info"]["pid"] for line in log.read_text().splitlines()}


def test_consecutive_dbt_builds_in_one_process_each_read_the_current_sources(mesh_home):
    land(mesh_home, "reference", "airlines.csv")
    land(mesh_home, "reference", "airports.csv", airports_version(0))
    [first_run] = materialize(["reference"], say=lambda _: None)
    first = _timezones()

    land(mesh_home, "reference", "airports.csv", airports_version(1000))
    land(mesh_home, "weather", "weather.csv")
    second_run, *weather_runs = materialize(["reference", "weather"], say=lambda _: None)
    second = _timezones()

    assert first_run["success"] and second_run["success"], (first_run, second_run)
    assert first and set(second) == set(first)
    for zone, (count, mean, highest) in first.items():
        assert second[zone][::2] == (count, highest + 1000), zone
        assert second[zone][1] == pytest.approx(mean + 1000, abs=1e-9), zone
    for report in (first_run, second_run):  # dbt ran here, not in a dbt process
        assert _dbt_pids(mesh_home, report["run_id"], "reference_dbt_models") == {os.getpid()}

    assert all(r["success"] for r in weather_runs), weather_runs
    catalog = open_catalog()
    summary = catalog.load_table("weather.station_daily").current_snapshot().summary
    read = {
        t: catalog.load_table(t).current_snapshot().snapshot_id
        for t in ("weather.observations", "reference.airports")
    }
    assert json.loads(summary[INPUTS_PROPERTY]) == read  # the two sources of its model
