"""The whole mesh in production mode on the stack: Iceberg catalog in PostgreSQL, warehouse and
landing zone in S3, dbt on the ``trino`` target, checks executed by Trino, Dagster storage in
PostgreSQL. Switching is configuration only (the environment of ``mesh stack env``).

The demo writes the mesh's own schemas (reference, fleet, ...) of the stack's catalog: a run is
idempotent (every write replaces what it owns), so the test and ``make demo-prod`` can share it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest

from mesh_assets import stack

MESH = str(Path(sys.executable).parent / "mesh")
pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def production(stack_layout, tmp_path_factory):
    """``mesh demo`` in production mode; yields the environment it ran with."""
    home = tmp_path_factory.mktemp("prod") / "mesh"
    env = {**os.environ, **stack.production_env(stack_layout, resolve_secrets=True), "MESH_HOME": str(home)}
    # --stream: 3,000 flights replayed as events through the stack's Kafka into the streaming
    # product (mode upsert: a second run of the demo changes none of its rows)
    result = subprocess.run(
        [MESH, "demo", "--stream", "3000"], env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return env


@pytest.fixture
def in_production(production, monkeypatch):
    """This process configured like the production run (for pyiceberg, DuckDB and Trino reads)."""
    for key, value in production.items():
        if key.startswith(("MESH_", "AWS_", "DAGSTER_")):
            monkeypatch.setenv(key, value)
    return production


def _products():
    from mesh_assets.workspace import all_products

    return [p for p in all_products()]


def test_every_product_reads_the_same_on_trino_and_pyiceberg(in_production):
    """Row counts and column checksums of every product: Trino vs pyiceberg over the same
    snapshot (what the platform wrote, whichever engine computed it)."""
    from mesh_assets.engine import quote, trino_connection, trino_table
    from mesh_assets.iceberg.catalog import open_catalog

    catalog = open_catalog()
    cursor = trino_connection().cursor()
    products = _products()
    assert len(products) == 13
    for product in products:
        table = catalog.load_table(product.table_identifier)
        data = table.scan().to_arrow()
        assert data.num_rows > 0, product.identifier
        numeric = [
            f.name for f in data.schema if str(f.type).startswith(("int", "double", "float", "decimal"))
        ]
        select = (
            ["count(*)"]
            + [f"count({quote(c)})" for c in data.column_names]
            + [f"sum(cast({quote(c)} as double))" for c in numeric]
        )
        cursor.execute(
            f"SELECT {', '.join(select)} FROM {trino_table(product.table_identifier)} "
            f"FOR VERSION AS OF {table.current_snapshot().snapshot_id}"
        )
        [row] = cursor.fetchall()
        expected = [data.num_rows] + [data.num_rows - data.column(c).null_count for c in data.column_names]
        assert list(row[: len(expected)]) == expected, product.identifier
        for name, got in zip(numeric, row[len(expected) :]):
            want = pc.sum(pc.cast(data.column(name), "float64")).as_py() or 0.0
            assert math.isclose(got or 0.0, want, rel_tol=1e-9, abs_tol=1e-6), (
                product.identifier,
                name,
                got,
                want,
            )


def test_dbt_trino_model_equals_the_same_sql_on_duckdb(in_production):
    """A cross-domain mart built by dbt-trino holds exactly what DuckDB computes from the same
    input snapshots; pyiceberg and DuckDB read the table the platform committed."""
    from mesh_assets.read_api import query, read

    built = read("analytics.delays_by_carrier_month").sort_by(
        [("carrier", "ascending"), ("month", "ascending")]
    )
    con, relation = query("""
        select f.carrier, a.name as carrier_name, f.month, count(*) as flights,
               avg(f.arr_delay) as mean_arr_delay_min
        from operations.flights f left join reference.airlines a on a.carrier = f.carrier
        group by 1, 2, 3 order by 1, 3""")
    expected = relation.fetchall()
    con.close()
    assert len(expected) == built.num_rows == 185
    rows = built.select(["carrier", "carrier_name", "month", "flights", "mean_arr_delay_min"]).to_pylist()
    for want, got in zip(expected, rows):
        assert (got["carrier"], got["carrier_name"], got["month"], got["flights"]) == want[:4]
        assert math.isclose(got["mean_arr_delay_min"], want[4], rel_tol=1e-9)


def test_kept_dbt_manifest_names_product_tables_not_staging_relations(in_production):
    """dbt-trino builds each product model into ``<model>__staging``; the manifest the platform
    keeps for OpenMetadata's dbt workflow names the product table, so the workflow finds the
    tables the exporter created (mesh openmetadata dbt-config warns about nothing)."""
    home = Path(in_production["MESH_HOME"])
    manifest = json.loads((home / "dbt" / "artifacts" / "analytics" / "manifest.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert models["delays_by_weather"]["alias"] == "delays_by_weather"
    assert models["delays_by_weather"]["relation_name"] == '"iceberg"."analytics"."delays_by_weather"'
    result = subprocess.run(
        [MESH, "openmetadata", "dbt-config", "analytics", "--host", "http://om:8585"],
        env=in_production,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_time_travel_on_trino_returns_what_duckdb_returns(in_production):
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.read_api import query, trino_query

    table = open_catalog().load_table("reference.airports")
    sql = "select count(*), sum(alt), min(faa), max(faa) from reference.airports"
    for snapshot in table.snapshots():
        con, relation = query(sql, as_of=str(snapshot.snapshot_id))
        duck = relation.fetchall()
        con.close()
        _, trino_rows = trino_query(sql, as_of=str(snapshot.snapshot_id))
        assert [tuple(r) for r in trino_rows] == [tuple(r) for r in duck], snapshot.snapshot_id


def test_read_api_on_both_engines(in_production):
    from mesh_assets.read_api import read

    direct = read("reference.airports", columns=["faa", "tz"], filter="tz = -5")
    through_trino = read("reference.airports", columns=["faa", "tz"], filter="tz = -5", engine="trino")
    assert sorted(direct.column("faa").to_pylist()) == sorted(through_trino.column("faa").to_pylist())
    assert direct.num_rows > 400


def test_checks_ran_on_trino_and_dagster_runs_are_in_postgres(in_production):
    import dagster as dg
    from dagster._core.storage.runs.base import RunStorage

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert isinstance(instance.run_storage, RunStorage)
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(["reference", "airports"]), "unique_faa"), limit=1
        )
        assert records, "no check evaluation recorded in PostgreSQL"
        evaluation = records[0].event.dagster_event.event_specific_data
        assert evaluation.passed
        assert evaluation.metadata["engine"].value == "sql:trino"


def test_landing_zone_is_an_s3_prefix(in_production, stack_layout):
    """`mesh land` put the raw files in S3 (listed through the S3 API, byte for byte the demo
    files) and none in a local landing folder; ingestion read them from there (the source file
    recorded in the snapshot, the download cache next to it)."""
    from meshtest import NYCFLIGHTS
    from pyarrow import fs

    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.stack.objectstore import ObjectStore

    s3 = ObjectStore(stack_layout).filesystem()
    prefix = "warehouse/landing/reference"
    listed = s3.get_file_info(fs.FileSelector(prefix, allow_not_found=True))
    assert sorted(info.path for info in listed if info.type == fs.FileType.File) == [
        f"{prefix}/airlines.csv",
        f"{prefix}/airlines.csv.done",  # the completion marker `mesh land` writes after the file
        f"{prefix}/airports.csv",
        f"{prefix}/airports.csv.done",
    ]
    for name in ("airlines.csv", "airports.csv"):
        with s3.open_input_stream(f"{prefix}/{name}") as stream:
            assert stream.read() == (NYCFLIGHTS / name).read_bytes(), name
    home = Path(in_production["MESH_HOME"])
    assert not (home / "landing").exists()
    cached = sorted(p.name for p in (home / "landing-cache" / "reference").glob("*.csv"))
    assert cached == ["airlines.csv", "airports.csv"]
    summary = open_catalog().load_table("reference.airlines").current_snapshot().summary
    assert summary.additional_properties["mesh.source.file"] == "airlines.csv"


def test_maintenance_compacts_small_files_with_trino(in_production):
    """`mesh maintain` in production mode runs Trino's optimize, expire_snapshots and
    remove_orphan_files: fleet.planes rewritten first as four small files (same rows) is compacted
    into fewer files by a `replace` commit, and reads exactly as before."""
    from mesh_assets.iceberg.catalog import open_catalog

    table = open_catalog().load_table("fleet.planes")
    data = table.scan().to_arrow().sort_by("tailnum")
    quarter = -(-data.num_rows // 4)
    table.overwrite(data.slice(0, quarter))
    for start in range(quarter, data.num_rows, quarter):
        table.append(data.slice(start, quarter))
    table = table.refresh()
    files_before = len(list(table.scan().plan_files()))
    assert files_before >= 4
    assert table.scan().to_arrow().sort_by("tailnum").equals(data)
    result = subprocess.run(
        [MESH, "maintain", "fleet.planes"],
        env=in_production,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("fleet.planes "), result.stdout
    table = table.refresh()
    assert table.current_snapshot().summary.operation.value == "replace"  # optimize's commit
    assert len(list(table.scan().plan_files())) < files_before
    # Trino's files read back as string where pyiceberg's were large_string: same values
    assert table.scan().to_arrow().sort_by("tailnum").cast(data.schema).equals(data)
