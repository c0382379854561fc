"""Spark (pyspark 4.1, Iceberg's Spark runtime) as a second engine over the embedded mesh.

One Spark session, configured by nothing but the spark-defaults.conf that `mesh spark defaults`
wrote, reads every product of the materialized demo mesh with the same row counts as DuckDB, at
main and at tag ``last-checked``, and writes two tables (copy-on-write and merge-on-read
deletes) that the platform (``mesh_assets.read``, pyiceberg) and DuckDB then read, rows equal.

The demo mesh is shared by the session, so the test works on a home of its own holding a copy of
the catalog database only: existing products point at the demo's files (read only), the tables
Spark creates go to the test's warehouse. pyspark lives in its own environment
(tests/spark_env.py); the jars come from the tools cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from spark_env import pyspark_python

from mesh_assets import cli, engine, read
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.read_api import query

JOB = os.path.join(os.path.dirname(__file__), "spark_job.py")
TAG = "last-checked"
SOURCE = "reference.airports"
DELETE_WHERE = "tz = -5"
SPARK_TIMEOUT_S = 600


@pytest.fixture
def spark_home(materialized_mesh, mesh_home):
    """A home of its own whose catalog database is a copy of the demo mesh's."""
    shutil.copyfile(materialized_mesh.home / "catalog.db", mesh_home / "catalog.db")
    return mesh_home


def duckdb_counts(catalog, names: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Row counts by DuckDB (``iceberg_scan``) at main and at :data:`TAG`."""
    con = engine.connect()
    at_main, at_tag = {}, {}
    for name in names:
        table = catalog.load_table(name)
        view = engine.register_table(con, table, name.replace(".", "_"))
        at_main[name] = con.sql(f"SELECT count(*) FROM {view}").fetchone()[0]
        if TAG in table.refs():
            view = engine.register_table(
                con, table, "t_" + name.replace(".", "_"), snapshot_id=table.refs()[TAG].snapshot_id
            )
            at_tag[name] = con.sql(f"SELECT count(*) FROM {view}").fetchone()[0]
    return at_main, at_tag


def test_spark_reads_every_product_and_writes_tables_the_platform_reads(spark_home, tmp_path, capsys):
    catalog = open_catalog()
    products = sorted(".".join(i) for (ns,) in catalog.list_namespaces() for i in catalog.list_tables(ns))
    assert len(products) >= 11, products
    at_main, at_tag = duckdb_counts(catalog, products)
    # every product of the demo has its last checked version tagged, but the streaming product
    # (no batch in the demo: an empty table created from its contract)
    assert sorted(at_tag) == [p for p in products if p != "operations.flight_events"]
    assert at_main["operations.flights"] == 336_776

    conf_dir = tmp_path / "spark-conf"
    assert cli.main(["spark", "defaults", "--conf-dir", str(conf_dir)]) == 0
    conf = (conf_dir / "spark-defaults.conf").read_text()
    assert f"spark.sql.catalog.mesh.uri jdbc:sqlite:{spark_home / 'catalog.db'}\n" in conf

    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "products": products,
                "tag_products": list(at_tag),
                "tag": TAG,
                "namespace": "spark_out",
                "source_sql": f"SELECT * FROM mesh.{SOURCE}",
                "delete_where": DELETE_WHERE,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
    env |= {
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_IP": "127.0.0.1",
        # a short job: the JVM's quick compiler only and a serial GC start faster on 2 cores
        "PYSPARK_SUBMIT_ARGS": '--driver-java-options "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC" pyspark-shell',
    }
    started = time.monotonic()
    done = subprocess.run(
        [str(pyspark_python()), JOB, str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SPARK_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with capsys.disabled():
        print(
            f"\nspark: session {result['session_s']:.1f} s, job {result['total_s']:.1f} s, "
            f"process {time.monotonic() - started:.1f} s"
        )

    assert result["counts"] == at_main
    assert result["tag_counts"] == at_tag

    # what Spark wrote, read back by the platform and by DuckDB, against DuckDB's own answer
    full = query(f"SELECT count(*) FROM {SOURCE}")[1].fetchone()[0]
    kept = query(f"SELECT * FROM {SOURCE} WHERE NOT ({DELETE_WHERE}) OR tz IS NULL ORDER BY faa")[
        1
    ].fetchall()
    assert 0 < len(kept) < full
    for table, delete_files in (("carrier_cow", 0), ("carrier_mor", 1)):
        name = f"spark_out.{table}"
        assert result["written"][name.split(".")[1]] == {
            "rows": len(kept),
            "before_delete": full,
            "delete_files": delete_files,
        }
        assert read(name).num_rows == len(kept)
        assert read(name, as_of="before-delete").num_rows == full
        assert query(f"SELECT * FROM {name} ORDER BY faa")[1].fetchall() == kept
        summary = catalog.load_table(name).current_snapshot().summary
        assert summary.get("total-position-deletes") == ("0" if delete_files == 0 else str(full - len(kept)))
