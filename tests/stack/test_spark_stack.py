"""Spark on the production stack: `mesh spark defaults` in production mode (Iceberg's JDBC
catalog on the stack's PostgreSQL, S3FileIO on its S3 server, credentials only by file
reference), read and written by one Spark session, checked against Trino and pyiceberg."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from spark_env import pyspark_python

from mesh_assets import cli, stack
from mesh_assets.workspace import workspace_domains

pytestmark = pytest.mark.stack

JOB = Path(__file__).parent.parent / "connect" / "spark_job.py"


def test_spark_reads_and_writes_the_stack_as_trino_sees_it(
    stack_layout, iceberg_catalog, namespace, trino_sql, tmp_path, monkeypatch
):
    for key, value in stack.production_env(stack_layout).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MESH_HOME", str(tmp_path / "home"))
    conf_dir = tmp_path / "spark-conf"
    assert cli.main(["spark", "defaults", "--conf-dir", str(conf_dir)]) == 0

    conf = (conf_dir / "spark-defaults.conf").read_text()
    for name in ("catalog-password", "s3-access-key", "s3-secret-key"):
        assert stack_layout.secret(name) not in conf, name
    assert f"-Dorg.postgresql.pgpassfile={conf_dir / 'credentials' / 'pgpass'}" in conf
    for path in (conf_dir / "credentials").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    # the mesh's products on the stack (those a production demo has written), as Trino counts them
    products = sorted(
        ".".join(i)
        for domain in workspace_domains()
        if (domain,) in iceberg_catalog.list_namespaces()
        for i in iceberg_catalog.list_tables(domain)
    )
    trino_counts = {p: trino_sql(f"SELECT count(*) FROM iceberg.{p}")[0][0] for p in products}
    tagged = [p for p in products if "last-checked" in iceberg_catalog.load_table(p).refs()]
    trino_tag_counts = {
        p: trino_sql(f"SELECT count(*) FROM iceberg.{p} FOR VERSION AS OF 'last-checked'")[0][0]
        for p in tagged
    }

    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "products": products,
                "tag_products": tagged,
                "tag": "last-checked",
                "namespace": namespace,
                "source_sql": "SELECT id, CAST(id % 7 AS INT) AS tz FROM range(7000)",
                "delete_where": "tz = 3",
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "AWS_", "MESH_"))}
    env |= {"SPARK_CONF_DIR": str(conf_dir), "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(
        [str(pyspark_python()), str(JOB), str(spec)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["counts"] == trino_counts
    assert result["tag_counts"] == trino_tag_counts
    print(
        f"\nspark on the stack: {len(products)} products; session {result['session_s']:.1f} s, job {result['total_s']:.1f} s"
    )

    for table, delete_files in (("carrier_cow", 0), ("carrier_mor", 1)):
        assert result["written"][table] == {"rows": 6000, "before_delete": 7000, "delete_files": delete_files}
        name = f'iceberg."{namespace}".{table}'
        assert trino_sql(f"SELECT count(*), count_if(tz = 3) FROM {name}") == [[6000, 0]]
        assert trino_sql(f"SELECT count(*) FROM {name} FOR VERSION AS OF 'before-delete'") == [[7000]]
        scanned = iceberg_catalog.load_table((namespace, table)).scan().to_arrow()
        assert scanned.num_rows == 6000
