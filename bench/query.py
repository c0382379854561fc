"""Queries over platform-written Iceberg tables: DuckDB ``iceberg_scan`` vs a pyiceberg scan.

TPC-H lineitem and orders at ``BENCH_SF`` (tpchgen-cli Parquet in the landing zone) are
ingested once by the platform (untimed setup, ``mesh_assets.ingest.assets.ingest``). Then for Q1
(scan + aggregate), Q6 (selective scan) and Q12 (lineitem x orders join), alternating after a
warm-up, each in a fresh interpreter (timed inside, around table registration and query; the
connection, with the iceberg extension loaded on the platform side, is opened before the clock):

* platform: ``mesh_assets.engine.register_table`` (DuckDB ``iceberg_scan`` over the table's
  metadata; projection and filters pushed into the Parquet scan by DuckDB) + the query;
* baseline: a pyiceberg scan to Arrow of exactly the needed columns with the query's filter
  pushed down (``selected_fields``, ``row_filter``), registered in DuckDB + the same query
  (what a capable user of pyiceberg would write).

Results must be equal both ways. Peak RSS per process is recorded too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import run as bench_run
import tpch

QUERIES = {
    "q1": {
        "sql": """
            SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
                   sum(l_extendedprice) AS sum_base_price,
                   sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
                   sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
                   avg(l_quantity) AS avg_qty, avg(l_extendedprice) AS avg_price,
                   avg(l_discount) AS avg_disc, count(*) AS count_order
            FROM lineitem WHERE l_shipdate <= DATE '1998-09-02'
            GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus""",
        "scans": {
            "lineitem": (
                [
                    "l_returnflag",
                    "l_linestatus",
                    "l_quantity",
                    "l_extendedprice",
                    "l_discount",
                    "l_tax",
                    "l_shipdate",
                ],
                "l_shipdate <= '1998-09-02'",
            )
        },
    },
    "q6": {
        "sql": """
            SELECT sum(l_extendedprice * l_discount) AS revenue FROM lineitem
            WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
              AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24""",
        "scans": {
            "lineitem": (
                ["l_extendedprice", "l_discount", "l_shipdate", "l_quantity"],
                "l_shipdate >= '1994-01-01' and l_shipdate < '1995-01-01' and "
                "l_discount >= '0.05' and l_discount <= '0.07' and l_quantity < '24.00'",
            )
        },
    },
    "q12": {
        "sql": """
            SELECT l_shipmode,
                   sum(CASE WHEN o_orderpriority IN ('1-URGENT', '2-HIGH') THEN 1 ELSE 0 END) AS high_line_count,
                   sum(CASE WHEN o_orderpriority NOT IN ('1-URGENT', '2-HIGH') THEN 1 ELSE 0 END) AS low_line_count
            FROM orders JOIN lineitem ON o_orderkey = l_orderkey
            WHERE l_shipmode IN ('MAIL', 'SHIP') AND l_commitdate < l_receiptdate
              AND l_shipdate < l_commitdate AND l_receiptdate >= DATE '1994-01-01'
              AND l_receiptdate < DATE '1995-01-01'
            GROUP BY l_shipmode ORDER BY l_shipmode""",
        "scans": {
            "lineitem": (
                ["l_orderkey", "l_shipmode", "l_commitdate", "l_receiptdate", "l_shipdate"],
                "l_shipmode in ('MAIL', 'SHIP') and l_receiptdate >= '1994-01-01' "
                "and l_receiptdate < '1995-01-01'",
            ),
            "orders": (["o_orderkey", "o_orderpriority"], None),
        },
    },
}

SETUP = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.workspace import load_contract
    from mesh_assets.ingest.assets import ingest
    out = {}
    for path in sys.argv[1:]:
        product = load_contract(Path(path))
        start = time.perf_counter()
        result = ingest(product, open_catalog())
        out[product.name] = {"rows": result.rows_written, "s": time.perf_counter() - start,
                             "files": len(result.table.inspect.files())}
    print(json.dumps(out))
""")

PLATFORM = textwrap.dedent("""
    import json, sys, time
    from mesh_assets import engine
    from mesh_assets.iceberg.catalog import open_catalog
    q = json.loads(sys.argv[1])
    catalog = open_catalog()
    tables = {name: catalog.load_table(f"tpch.{name}") for name in q["scans"]}
    connect_start = time.perf_counter()
    con = engine.connect()
    connect_s = time.perf_counter() - connect_start
    start = time.perf_counter()
    for name, table in tables.items():
        engine.register_table(con, table, name)
    rows = con.execute(q["sql"]).fetchall()
    elapsed = time.perf_counter() - start
    print(json.dumps({"s": elapsed, "connect_s": connect_s, "result": [[str(v) for v in r] for r in rows]}))
""")

PYICEBERG = textwrap.dedent("""
    import json, sys, time
    import duckdb
    from mesh_assets.iceberg.catalog import open_catalog
    q = json.loads(sys.argv[1])
    catalog = open_catalog()
    tables = {name: catalog.load_table(f"tpch.{name}") for name in q["scans"]}
    connect_start = time.perf_counter()
    con = duckdb.connect()
    connect_s = time.perf_counter() - connect_start
    start = time.perf_counter()
    for name, (columns, row_filter) in q["scans"].items():
        scan = tables[name].scan(selected_fields=tuple(columns),
                                 **({"row_filter": row_filter} if row_filter else {}))
        con.register(name, scan.to_arrow())
    rows = con.execute(q["sql"]).fetchall()
    elapsed = time.perf_counter() - start
    print(json.dumps({"s": elapsed, "connect_s": connect_s, "result": [[str(v) for v in r] for r in rows]}))
""")


def setup_tables(home: Path, sf: float, contracts_dir: Path) -> dict:
    data = tpch.parquet_dir(sf)
    for name in ("lineitem", "orders"):
        bench_run.land(data / f"{name}.parquet", home / "landing" / "tpch" / f"{name}.parquet")
    contracts = tpch.write_contracts("parquet", contracts_dir)
    _, _, out = bench_run.run_measured(
        SETUP, [str(contracts["lineitem"]), str(contracts["orders"])], {"MESH_HOME": str(home)}
    )
    return bench_run.last_json(out)


def bench_query(repeats: int) -> list[dict]:
    sf = float(os.environ.get("BENCH_SF", 1))
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-query-"))
    env = {"MESH_HOME": str(home)}
    out = []
    try:
        loaded = setup_tables(home, sf, home / "contracts")
        print(
            f"-- TPC-H SF {sf:g}: "
            + ", ".join(
                f"{k} {v['rows']:,} rows in {v['files']} file(s), ingested in {v['s']:.1f} s"
                for k, v in loaded.items()
            ),
            flush=True,
        )
        for qname, q in QUERIES.items():
            arg = json.dumps({"sql": q["sql"], "scans": q["scans"]})

            def step(script):
                def run():
                    _, rss, stdout = bench_run.run_measured(script, [arg], env)
                    return {**bench_run.last_json(stdout), "rss": rss / 2**20}

                return run

            ps, ys = bench_run.rounds(
                repeats,
                step(PLATFORM),
                step(PYICEBERG),
                label=lambda p, y: (
                    f"{qname}: DuckDB iceberg_scan {p['s']:.2f} s / {p['rss']:.0f} MiB, "
                    f"pyiceberg scan + DuckDB {y['s']:.2f} s / {y['rss']:.0f} MiB"
                ),
            )
            for p, y in zip(ps, ys):
                if p["result"] != y["result"]:
                    raise AssertionError(
                        f"TPC-H {qname}: the two paths disagree: {p['result']} vs {y['result']}"
                    )
            out.append(
                bench_run._result(
                    f"query_tpch_{qname}_sf{sf:g}_duckdb_iceberg_scan",
                    "s",
                    [p["s"] for p in ps],
                    "pyiceberg scan to Arrow (projection + filter pushed down) + DuckDB",
                    [y["s"] for y in ys],
                    sf=sf,
                    lineitem_rows=loaded["lineitem"]["rows"],
                    peak_rss_mib=bench_run.stats([p["rss"] for p in ps])["median"],
                    baseline_peak_rss_mib=bench_run.stats([y["rss"] for y in ys])["median"],
                    connect_s_median=bench_run.stats([p["connect_s"] for p in ps])["median"],
                    note="timed inside a fresh process around table registration + query; opening "
                    "the DuckDB connection (loading the iceberg extension: connect_s_median) "
                    "is excluded from both sides",
                )
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out
