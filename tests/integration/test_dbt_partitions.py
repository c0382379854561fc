"""A partitioned dbt model on Iceberg: Dagster partitions reach dbt as the run's window, and a
run for one month adds that month without rewriting the others (local target: dbt-duckdb +
plugin); another window does not make dbt parse the project again."""

import json

import dagster as dg
from meshtest import land

from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.ingest.assets import ingest
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract


def _files(identifier):
    table = open_catalog().load_table(identifier)
    return {t.file.file_path for t in table.scan().plan_files()}


def _dbt_logs(mesh_home, result) -> dict[str, list[dict]]:
    """The structured logs of a run's dbt invocations, by invocation folder."""
    runs = mesh_home / "dbt" / "runs" / result.run_id
    return {
        log.parent.name: [json.loads(line)["info"] for line in log.read_text().splitlines()]
        for log in runs.glob("*/dbt.log")
    }


def _full_parses(logs: dict[str, list[dict]]) -> list[str]:
    """dbt's reason for each whole-project parse (event I024: "Unable to do partial parsing")."""
    return [info["msg"] for infos in logs.values() for info in infos if info["code"] == "I024"]


def test_monthly_dbt_model_adds_a_partition_without_rewriting_others(mesh_home):
    land(mesh_home, "reference", "airports.csv")
    land(mesh_home, "weather", "weather.csv")
    ingest(load_contract(DOMAINS_DIR / "reference" / "products" / "airports.yaml"), open_catalog())
    job = build_domain(DOMAINS_DIR / "weather").resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()

    assert job.execute_in_process(partition_key="2013-01-01", instance=instance).success
    january = _files("weather.station_daily")
    rows = open_catalog().load_table("weather.station_daily").scan().to_arrow()
    assert {d.strftime("%Y-%m") for d in rows.column("obs_date").to_pylist()} == {"2013-01"}
    assert len(rows) == 31 * 3

    february = job.execute_in_process(partition_key="2013-02-01", instance=instance)
    assert february.success
    # another window, same parse: the window reaches dbt by environment, not by --vars
    logs = _dbt_logs(mesh_home, february)
    assert any(name.startswith("weather_dbt_models") for name in logs), logs.keys()
    assert _full_parses(logs) == []
    table = open_catalog().load_table("weather.station_daily")
    rows = table.scan().to_arrow()
    assert len(rows) == 31 * 3 + 28 * 3
    assert january <= _files("weather.station_daily")  # January's files were not rewritten
    summary = table.current_snapshot().summary.additional_properties
    assert summary["mesh.partition"].startswith("2013-02-01T00:00:00+00:00 <= obs_date")

    # rerunning February replaces it: same rows, no duplicates
    assert job.execute_in_process(partition_key="2013-02-01", instance=instance).success
    assert len(open_catalog().load_table("weather.station_daily").scan().to_arrow()) == 31 * 3 + 28 * 3
    md = instance.get_latest_materialization_event(
        dg.AssetKey(["weather", "station_daily"])
    ).asset_materialization.metadata
    assert md["mesh/partition_rows"].value.startswith("2013-02-01")
