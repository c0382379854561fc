"""With the production stack up (`mesh stack up`): bulk ingestion vs Trino INSERT, and Trino
queries on tables the platform wrote.

* bench/trino_ingest.py (by the stack's author, called as is): pyiceberg bulk append vs Trino
  ``INSERT ... VALUES``; its entries are taken from the file it writes (``--out``, a temporary
  copy) into this run's results. ``BENCH_TRINO_ROWS`` (1,000,000) rows appended,
  ``BENCH_TRINO_INSERT_ROWS`` (5,000) inserted by Trino per round (its rate is extrapolated by
  that script, which says so in the entries).
* TPC-H lineitem and orders at each of ``BENCH_STACK_SF`` (comma-separated scale factors,
  default ``BENCH_SF``) ingested by the platform in production mode (`mesh stack env`: catalog
  in PostgreSQL, warehouse in the S3 store) into a scratch schema, copied by Trino itself (``CREATE TABLE AS``), then Q1, Q6 and
  Q12 through Trino, alternating: the platform-written tables vs the Trino-written copies
  (ratio ~1 = the platform's Parquet files are as good for Trino as Trino's own). The entries
  carry both lineitem tables' file layout (``file_layout``: Trino's ``$files`` and
  ``$properties``, the Parquet footer of a data file, the platform's writer properties of
  :data:`LAYOUT_PROPERTIES`) next to the platform's in earlier versions (:data:`EARLIER`), and
  Trino's CPU time per query on each side (the query's stats: steadier than the wall time on
  a loaded machine). The scratch schema is dropped afterwards.
* With a Trino cluster (``MESH_TRINO_WORKERS`` >= 2): Q1 on the platform-written lineitem on all
  the workers vs on one (the others stopped meanwhile, then started again).

When the stack is not up every entry is recorded as skipped, with the reason.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import run as bench_run
import tpch
from query import QUERIES

NAMES = ("trino_ingest", "trino_tpch_q1", "trino_tpch_q6", "trino_tpch_q12", "trino_tpch_q1_workers")
# The table properties of the platform's writer that decide what Trino reads (pyiceberg's
# defaults when not set: row groups of 1048576 rows, dictionaries of 2 MiB, 512 MiB of Arrow per
# file); Trino's own writer follows its session properties instead, so they are "(not set)" there
LAYOUT_PROPERTIES = (
    "write.parquet.row-group-limit",
    "write.parquet.dict-size-bytes",
    "write.parquet.page-row-limit",
    "write.target-file-size-bytes",
)
# The platform-written SF1 lineitem as Trino saw it in earlier versions of the platform
# (measured on this machine with this script's file_layout; "-": not recorded then)
EARLIER = {
    # before unpartitioned writes gathered their batches into row groups (2026-11-29): one row
    # group per 64Ki-row batch of the reader
    "platform at SF1, 64Ki-row groups": {
        "data files": "9",
        "median file size (MiB)": "21.7",
        "row groups per file (first file)": "13",
        "rows per row group (first file, median)": "65,536",
        "compression (first column)": "ZSTD",
        "dictionary-encoded columns (first row group)": "16 of 16",
        "Parquet writer": "parquet-cpp-arrow version 26.0.1",
        "Parquet format version": "2.6",
        "sort order": "none",
        "write.parquet.row-group-limit": "(not set)",
    },
    # files of 128 MiB of Arrow (commit d9bb690, 2026-11-30): Trino used 1.1-1.5x the CPU of
    # its own copy for Q1/Q6/Q12, measured alternating, median of 5-9
    "platform at SF1, 128 MiB files": {
        "data files": "9",
        "median file size (MiB)": "18.6",
        "row groups in all files (= Trino splits)": "9",
        "row groups per file (first file)": "1",
        "rows per row group (first file, median)": "710,919",
        "compression (first column)": "ZSTD",
        "dictionary-encoded columns (first row group)": "16 of 16",
        "largest dictionary page (first row group, compressed)": "831 KiB (l_extendedprice)",
        "columns with min/max statistics (first row group)": "16 of 16",
        "page index (first row group)": "none",
        "Parquet writer": "parquet-cpp-arrow version 26.0.1",
        "Parquet format version": "2.6",
        "sort order": "none",
        "write.parquet.row-group-limit": "(not set)",
        "write.parquet.dict-size-bytes": "(not set)",
        "write.target-file-size-bytes": "134217728",
    },
}

INGEST = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.workspace import load_contract
    from mesh_assets.ingest.assets import ingest
    product = load_contract(Path(sys.argv[1]))
    start = time.perf_counter()
    result = ingest(product, open_catalog())
    print(json.dumps({"rows": result.rows_written, "s": time.perf_counter() - start,
                      "files": len(result.table.inspect.files())}))
""")


def stack_problem() -> str | None:
    """None when every service of the stack is healthy, else why not."""
    try:
        from mesh_assets import stack
        from mesh_assets.stack.layout import StackLayout

        bad = [
            f"{s.name}: {s.detail.splitlines()[0]}"
            for s in stack.status(StackLayout.current())
            if not s.healthy
        ]
    except Exception as exc:  # noqa: BLE001 - any failure to ask is the answer
        return f"could not query the stack's status: {type(exc).__name__}: {exc}"
    if bad:
        return (
            "the production stack is not up (" + "; ".join(bad) + "); start it with "
            "`mesh stack up` (or `make stack-up`) and rerun `make bench` or "
            "`bench/run.py --only stack`"
        )
    return None


def _skipped(reason: str) -> list[dict]:
    return [bench_run.skipped(f"stack_{name}", reason) for name in NAMES]


def bench_trino_ingest(repeats: int) -> list[dict]:
    rows = bench_run.env_int("BENCH_TRINO_ROWS", 1_000_000)
    trino_rows = bench_run.env_int("BENCH_TRINO_INSERT_ROWS", 5_000)
    with tempfile.TemporaryDirectory(prefix="mesh-bench-trino-") as tmp:
        out = Path(tmp) / "results.json"
        proc = subprocess.run(
            [
                sys.executable,
                str(bench_run.BENCH_DIR / "trino_ingest.py"),
                "--rows",
                str(rows),
                "--trino-rows",
                str(trino_rows),
                "--repeats",
                str(repeats),
                "--out",
                str(out),
            ],
            cwd=bench_run.ROOT,
            text=True,
            capture_output=True,
        )
        sys.stdout.write(
            "".join(
                line + "\n"
                for line in proc.stdout.splitlines()  # its progress only
                if line.startswith(("==", "  round", "Trino measured"))
            )
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bench/trino_ingest.py failed:\n{proc.stderr[-3000:]}")
        return [{**b, "source": "bench/trino_ingest.py"} for b in json.loads(out.read_text())["benchmarks"]]


def file_layout(sql, catalog, table: str) -> dict[str, str]:
    """How ``table`` (``schema.name``) is laid out in files, as in :data:`EARLIER`: Trino's
    ``$files`` (with the row-group offsets it makes its splits of) and ``$properties``, the
    Parquet footer of its first data file (pyiceberg's IO)."""
    import pyarrow.parquet as pq

    schema, name = table.split(".")
    files = sql(
        f"SELECT file_path, file_size_in_bytes, cardinality(split_offsets) "
        f'FROM iceberg.{schema}."{name}$files" ORDER BY file_path'
    )
    properties = dict(sql(f'SELECT key, value FROM iceberg.{schema}."{name}$properties"'))
    iceberg = catalog.load_table(table)
    with iceberg.io.new_input(files[0][0]).open() as f:
        meta = pq.ParquetFile(f).metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    columns = [groups[0].column(c) for c in range(groups[0].num_columns)]
    dictionaries = {
        c.path_in_schema: c.data_page_offset - c.dictionary_page_offset
        for c in columns
        if c.has_dictionary_page
    }
    largest = max(dictionaries, key=dictionaries.get, default=None)
    with_stats = sum(c.is_stats_set and c.statistics.has_min_max for c in columns)
    return {
        "data files": str(len(files)),
        "median file size (MiB)": f"{statistics.median(size for _, size, _ in files) / 2**20:.1f}",
        "row groups in all files (= Trino splits)": str(sum(offsets or 0 for _, _, offsets in files)),
        "row groups per file (first file)": str(meta.num_row_groups),
        "rows per row group (first file, median)": f"{statistics.median(g.num_rows for g in groups):,.0f}",
        "compression (first column)": columns[0].compression,
        "dictionary-encoded columns (first row group)": f"{len(dictionaries)} of {len(columns)}",
        "largest dictionary page (first row group, compressed)": (
            f"{dictionaries[largest] / 2**10:,.0f} KiB ({largest})" if largest else "none"
        ),
        "columns with min/max statistics (first row group)": f"{with_stats} of {len(columns)}",
        "page index (first row group)": "yes" if any(c.has_column_index for c in columns) else "none",
        "Parquet writer": meta.created_by,
        "Parquet format version": meta.format_version,
        "sort order": "none" if iceberg.sort_order().is_unsorted else str(iceberg.sort_order()),
        **{prop: properties.get(prop, "(not set)") for prop in LAYOUT_PROPERTIES},
    }


def bench_trino_queries(repeats: int, sf: float) -> list[dict]:
    from pyiceberg.catalog.sql import SqlCatalog

    from mesh_assets import stack
    from mesh_assets.stack.layout import StackLayout
    from mesh_assets.stack.trino import Trino

    layout = StackLayout.current()
    schema = f"bench_tpch_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-stack-"))
    conn = Trino(layout).connect(request_timeout=1800)
    cur = conn.cursor()

    def sql(statement: str):
        cur.execute(statement)
        return cur.fetchall()

    out = []
    names = ("lineitem", "orders")
    try:
        data = tpch.parquet_dir(sf)
        contracts = tpch.write_contracts("parquet", work / "contracts", domain=schema)
        # production mode as `eval "$(mesh stack env)"` sets it; credentials by file
        env = {**stack.production_env(layout), "MESH_LANDING": str(work / "landing")}
        loaded, ctas_s = {}, {}
        for name in names:
            bench_run.land(data / f"{name}.parquet", work / "landing" / schema / f"{name}.parquet")
            _, _, stdout = bench_run.run_measured(INGEST, [str(contracts[name])], env)
            loaded[name] = bench_run.last_json(stdout)
            start = time.perf_counter()
            sql(f"CREATE TABLE iceberg.{schema}.{name}_trino AS SELECT * FROM iceberg.{schema}.{name}")
            ctas_s[name] = time.perf_counter() - start
            counts = [
                sql(f"SELECT count(*) FROM iceberg.{schema}.{t}")[0][0] for t in (name, f"{name}_trino")
            ]
            assert counts == [loaded[name]["rows"]] * 2, (counts, loaded[name])
        print(
            f"-- TPC-H SF {sf:g}: "
            + ", ".join(
                f"{name} ({loaded[name]['rows']:,} rows): platform ingest to the stack "
                f"{loaded[name]['s']:.1f} s ({loaded[name]['files']} file(s)), Trino CTAS copy {ctas_s[name]:.1f} s"
                for name in names
            ),
            flush=True,
        )
        catalog = SqlCatalog(layout.catalog_name, **stack.catalog_properties(layout))
        platform_layout = file_layout(sql, catalog, f"{schema}.lineitem")
        trino_layout = file_layout(sql, catalog, f"{schema}.lineitem_trino")
        layouts = {
            prop: {
                **{label: earlier.get(prop, "-") for label, earlier in EARLIER.items()},
                "Trino": trino_layout[prop],
                "platform": platform_layout[prop],
            }
            for prop in platform_layout
        }

        def timed(text: str, suffix: str):
            for name in names:
                text = text.replace(f"FROM {name}", f"FROM iceberg.{schema}.{name}{suffix}")
                text = text.replace(f"JOIN {name}", f"JOIN iceberg.{schema}.{name}{suffix}")

            def run():
                start = time.perf_counter()
                rows = sql(text)
                return {
                    "s": time.perf_counter() - start,
                    "cpu_s": cur.stats["cpuTimeMillis"] / 1000,  # Trino's, all its tasks
                    "rows": [[str(v) for v in r] for r in rows],
                }

            return run

        for qname in ("q1", "q6", "q12"):
            text = QUERIES[qname]["sql"]
            ps, ts = bench_run.rounds(
                repeats,
                timed(text, ""),
                timed(text, "_trino"),
                label=lambda p, t, q=qname: (
                    f"{q} on Trino: platform-written {p['s']:.2f} s (CPU {p['cpu_s']:.2f} s), "
                    f"Trino-written {t['s']:.2f} s (CPU {t['cpu_s']:.2f} s)"
                ),
            )
            for p, t in zip(ps, ts):
                assert p["rows"] == t["rows"], (qname, p["rows"], t["rows"])
            cpu = [statistics.median(r["cpu_s"] for r in side) for side in (ps, ts)]
            out.append(
                bench_run._result(
                    f"stack_trino_tpch_{qname}_sf{sf:g}_platform_written_table",
                    "s",
                    [p["s"] for p in ps],
                    "the same query on a Trino-written copy (CREATE TABLE AS)",
                    [t["s"] for t in ts],
                    sf=sf,
                    rows=loaded["lineitem"]["rows"],
                    platform_files=loaded["lineitem"]["files"],
                    platform_ingest_s=round(loaded["lineitem"]["s"], 2),
                    trino_ctas_s=round(ctas_s["lineitem"], 2),
                    trino_workers=len(layout.trino_workers),
                    trino_cpu_s_median={"platform-written": cpu[0], "Trino-written": cpu[1]},
                    **({"file_layout": layouts} if qname == "q1" else {}),
                    note="client wall time (execute + fetch) through the Trino of `mesh stack up`; "
                    f"Trino's CPU time (median): platform-written {cpu[0]:.2f} s, Trino-written "
                    f"{cpu[1]:.2f} s ({cpu[0] / cpu[1]:.2f}x)",
                )
            )
        out.append(bench_trino_workers(repeats, layout, timed(QUERIES["q1"]["sql"], ""), sf))
    finally:
        for name in names:
            for table in (name, f"{name}_trino"):
                try:
                    sql(f"DROP TABLE IF EXISTS iceberg.{schema}.{table}")
                except Exception:  # noqa: BLE001 - cleanup is best effort, the schema says what it is
                    pass
        try:
            sql(f"DROP SCHEMA IF EXISTS iceberg.{schema}")
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(work, ignore_errors=True)
    return out


def bench_trino_workers(repeats: int, layout, query, sf: float) -> dict:
    """``query`` on all of the cluster's workers, then on one: the others are stopped meanwhile
    (and started again after), so the rounds of each side run in a block, not alternating."""
    from mesh_assets.stack import trino as trino_mod
    from mesh_assets.stack.trino import Trino, TrinoWorker, active_workers

    name = f"stack_trino_tpch_q1_sf{sf:g}_workers"
    workers = [TrinoWorker(layout, n) for n in range(1, len(layout.trino_workers) + 1)]
    if len(workers) < 2:
        return bench_run.skipped(
            name,
            f"the stack runs {len(workers)} Trino worker(s): start it with MESH_TRINO_WORKERS=2 "
            "(`mesh stack down`, then `MESH_TRINO_WORKERS=2 mesh stack up`)",
        )

    def active() -> int:
        conn = Trino(layout).connect(request_timeout=60)
        try:
            return len(active_workers(conn.cursor()))
        finally:
            conn.close()

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 300
        while active() != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the coordinator did not see {count} active workers within 300 s")
            time.sleep(1)

    label = lambda r: f"q1 on Trino: {r['s']:.2f} s"  # noqa: E731
    [many] = bench_run.rounds(repeats, query, label=lambda r: f"{len(workers)} workers, " + label(r))
    for worker in workers[1:]:
        worker.stop()
    try:
        wait_for(1)
        [one] = bench_run.rounds(repeats, query, label=lambda r: "1 worker, " + label(r))
    finally:
        server, java = trino_mod.install(), trino_mod.java_home()
        for worker in workers[1:]:
            worker.start(server, java)
        wait_for(len(workers))
    assert [r["rows"] for r in many] == [r["rows"] for r in one]
    return bench_run._result(
        name,
        "s",
        [r["s"] for r in many],
        "the same query with 1 worker (the others stopped)",
        [r["s"] for r in one],
        sf=sf,
        trino_workers=len(workers),
        note=f"Q1 on the platform-written lineitem through a coordinator and {len(workers)} workers vs "
        "1 worker; each side's rounds in a block (stopping a worker takes a while), not alternating",
    )


def bench_stack(repeats: int) -> list[dict]:
    problem = stack_problem()
    if problem:
        print(f"  skipped: {problem}", flush=True)
        return _skipped(problem)
    out = []
    scale_factors = bench_run.env_list("BENCH_STACK_SF", os.environ.get("BENCH_SF", "1"))
    for fn, name in (
        (bench_trino_ingest, "stack_trino_ingest"),
        *(
            (functools.partial(bench_trino_queries, sf=float(sf)), f"stack_trino_tpch_sf{sf}_queries")
            for sf in scale_factors
        ),
    ):
        try:
            out += fn(repeats)
        except Exception as exc:  # one half failing keeps the other's figures
            import traceback

            traceback.print_exc()
            out.append(bench_run.skipped(f"{name}_failed", f"{type(exc).__name__}: {str(exc)[:500]}"))
    return out
