"""Partitioned products on real data: Dagster partitions map to Iceberg rows, rewrites are
idempotent, a backfill runs as one run and one commit, and bad rows go to quarantine."""

import csv
from collections import Counter

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from meshtest import NYCFLIGHTS, land

from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.ingest.assets import ingestion_asset
from mesh_assets.ingest.quarantine import QUARANTINE_SUFFIX
from mesh_assets.quality.checks import contract_checks
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract

KEY = dg.AssetKey(["weather", "observations"])


@pytest.fixture
def observations():
    return load_contract(DOMAINS_DIR / "weather" / "products" / "observations.yaml")


def _month_counts() -> Counter:
    with (NYCFLIGHTS / "weather.csv").open(newline="") as f:
        return Counter(r["time_hour"][:7] for r in csv.DictReader(f))


def _run(product, instance, **kwargs):
    """The ingestion asset and its checks: new data reaches main once its checks pass."""
    return dg.materialize(
        [ingestion_asset(product), contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
        instance=instance,
        **kwargs,
    )


def test_partition_rewrite_replaces_exactly_that_partition(mesh_home, observations):
    land(mesh_home, "weather", "weather.csv")
    counts = _month_counts()
    instance = dg.DagsterInstance.ephemeral()
    assert _run(observations, instance, partition_key="2013-01-01").success
    table = open_catalog().load_table("weather.observations")
    assert len(table.scan().to_arrow()) == counts["2013-01"]
    first = table.current_snapshot().snapshot_id

    assert _run(observations, instance, partition_key="2013-01-01").success  # idempotent
    assert _run(observations, instance, partition_key="2013-02-01").success
    table = table.refresh()
    rows = table.scan().to_arrow()
    assert len(rows) == counts["2013-01"] + counts["2013-02"]
    months = Counter(t.strftime("%Y-%m") for t in rows.column("time_hour").to_pylist())
    assert months == {"2013-01": counts["2013-01"], "2013-02": counts["2013-02"]}
    assert table.scan(snapshot_id=first).to_arrow().num_rows == counts["2013-01"]

    # hidden partitioning: month(time_hour), origin
    assert [f.name for f in table.spec().fields] == ["time_hour_month", "origin"]
    partitions = {tuple(t.file.partition) for t in table.scan().plan_files()}
    assert len(partitions) == 2 * 3  # two months x three airports

    md = instance.get_latest_materialization_event(KEY).asset_materialization.metadata
    assert md["mesh/rows_written"].value == counts["2013-02"]
    assert md["dagster/row_count"].value == len(rows)


def test_backfill_of_a_range_is_one_run_and_one_commit(mesh_home, observations):
    land(mesh_home, "weather", "weather.csv")
    instance = dg.DagsterInstance.ephemeral()
    result = _run(
        observations,
        instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: "2013-03-01", ASSET_PARTITION_RANGE_END_TAG: "2013-05-01"},
    )
    assert result.success
    counts = _month_counts()
    table = open_catalog().load_table("weather.observations")
    assert len(table.scan().to_arrow()) == counts["2013-03"] + counts["2013-04"] + counts["2013-05"]
    # one run materialized all three partitions, committing one Iceberg transaction
    events = result.get_asset_materialization_events()
    assert {e.partition for e in events} == {"2013-03-01", "2013-04-01", "2013-05-01"}
    runs = {s.summary.additional_properties.get("mesh.dagster.run_id") for s in table.snapshots()}
    assert runs - {None} == {result.run_id}  # (None: the empty snapshot a new table starts from)


def test_quarantine_keeps_good_rows_and_sets_bad_ones_aside(mesh_home, observations):
    header = "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour"
    good = [
        "EWR,2013,1,1,1,39.02,26.06,59.37,270,10.3,NA,0,1012,10,2013-01-01T06:00:00Z",
        "JFK,2013,1,1,1,39.02,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-01-01T06:00:00Z",
    ]
    bad = [
        "LGA,2013,1,1,1,warm,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-01-01T06:00:00Z",
        ",2013,1,1,2,39.9,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-01-01T07:00:00Z",
        "LGA,2013,2,1,1,39.0,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-02-01T06:00:00Z",
    ]
    land(mesh_home, "weather", "weather.csv", "\n".join([header] + good + bad[:2] + [bad[2]]) + "\n")
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # a rerun converges: same rows written, same rows quarantined
        assert _run(observations, instance, partition_key="2013-01-01").success
        md = instance.get_latest_materialization_event(KEY).asset_materialization.metadata
        assert md["mesh/rows_written"].value == 2
        assert md["mesh/rows_quarantined"].value == 2
    catalog = open_catalog()
    assert len(catalog.load_table("weather.observations").scan().to_arrow()) == 2
    parked = catalog.load_table("weather.observations" + QUARANTINE_SUFFIX).scan().to_arrow().to_pylist()
    assert sorted(r["_line"] for r in parked) == [4, 5]
    reasons = {r["_line"]: r["_reason"] for r in parked}
    assert reasons[4] == (
        "column temp: value 'warm' is not a valid double (a finite decimal number; nan and "
        "infinities need allowNonFinite: true on the column)"
    )
    assert reasons[5] == "column origin: required value is missing"
    assert {r["_source_file"] for r in parked} == {"weather.csv"}
    assert parked[0]["temp"] in ("warm", "39.9")  # raw text kept for inspection


def test_rows_outside_every_partition_stop_the_write(mesh_home, observations):
    from mesh_assets.contract.partitions import selection_for_keys
    from mesh_assets.ingest.assets import ingest
    from mesh_assets.ingest.readers import IngestionError

    header, *rows = (NYCFLIGHTS / "weather.csv").read_text().splitlines()
    late = rows[0].replace("2013-01-01T06:00:00Z", "2014-03-01T06:00:00Z").replace(",2013,1,1,", ",2014,3,1,")
    land(mesh_home, "weather", "weather.csv", "\n".join([header] + rows[:50] + [late]) + "\n")
    selection = selection_for_keys(observations.dagster_partitions, "2013-01-01", "2013-01-01")
    with pytest.raises(IngestionError, match=r"column time_hour: 1 row\(s\) fall outside every partition"):
        ingest(observations, open_catalog(), selection=selection)
    assert open_catalog().load_table("weather.observations").scan().to_arrow().num_rows == 0
