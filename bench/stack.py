"""With the production stack up (`mesh stack up`): bulk ingestion vs Trino INSERT, and Trino
queries on tables the platform wrote.

* bench/trino_ingest.py (by the stack's author, called as is): pyiceberg bulk append vs Trino
  ``INSERT ... VALUES``; its entries are taken from the file it writes (``--out``, a temporary
  copy) into this run's results. ``BENCH_TRINO_ROWS`` (1,000,000) rows appended,
  ``BENCH_TRINO_INSERT_ROWS`` (5,000) inserted by Trino per round (its rate is extrapolated by
  that script, which says so in the entries).
* TPC-H lineitem at ``BENCH_STACK_SF`` (default ``BENCH_SF``) ingested by the platform in
  production mode (`mesh stack env`: catalog in PostgreSQL, warehouse in the S3 store) into a
  scratch schema, copied by Trino itself (``CREATE TABLE AS``), then Q1 and Q6 through Trino,
  alternating: the platform-written table vs the Trino-written copy (ratio ~1 = the platform's
  Parquet files are as good for Trino as Trino's own). The scratch schema is dropped afterwards.

When the stack is not up every entry is recorded as skipped, with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
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

NAMES = ("trino_ingest", "trino_tpch_q1", "trino_tpch_q6")

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


def bench_trino_queries(repeats: int) -> list[dict]:
    from mesh_assets import stack
    from mesh_assets.stack.layout import StackLayout
    from mesh_assets.stack.trino import Trino

    sf = float(os.environ.get("BENCH_STACK_SF", os.environ.get("BENCH_SF", 1)))
    layout = StackLayout.current()
    schema = f"bench_tpch_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-stack-"))
    conn = Trino(layout).connect(request_timeout=1800)
    cur = conn.cursor()

    def sql(statement: str):
        cur.execute(statement)
        return cur.fetchall()

    out = []
    try:
        data = tpch.parquet_dir(sf)
        bench_run.land(data / "lineitem.parquet", work / "landing" / schema / "lineitem.parquet")
        contract = tpch.write_contracts("parquet", work / "contracts", domain=schema)["lineitem"]
        # production mode as `eval "$(mesh stack env)"` sets it; credentials by file
        env = {**stack.production_env(layout), "MESH_LANDING": str(work / "landing")}
        _, _, stdout = bench_run.run_measured(INGEST, [str(contract)], env)
        loaded = bench_run.last_json(stdout)
        platform_table = f"iceberg.{schema}.lineitem"
        trino_table = f"iceberg.{schema}.lineitem_trino"
        start = time.perf_counter()
        sql(f"CREATE TABLE {trino_table} AS SELECT * FROM {platform_table}")
        ctas_s = time.perf_counter() - start
        counts = [sql(f"SELECT count(*) FROM {t}")[0][0] for t in (platform_table, trino_table)]
        assert counts == [loaded["rows"]] * 2, (counts, loaded)
        print(
            f"-- TPC-H SF {sf:g} lineitem ({loaded['rows']:,} rows): platform ingest to the stack "
            f"{loaded['s']:.1f} s ({loaded['files']} file(s)), Trino CTAS copy {ctas_s:.1f} s",
            flush=True,
        )
        for qname in ("q1", "q6"):
            text = QUERIES[qname]["sql"]

            def timed(table: str):
                def run():
                    start = time.perf_counter()
                    rows = sql(text.replace("FROM lineitem", f"FROM {table}"))
                    return {"s": time.perf_counter() - start, "rows": [[str(v) for v in r] for r in rows]}

                return run

            ps, ts = bench_run.rounds(
                repeats,
                timed(platform_table),
                timed(trino_table),
                label=lambda p, t: (
                    f"{qname} on Trino: platform-written {p['s']:.2f} s, Trino-written {t['s']:.2f} s"
                ),
            )
            for p, t in zip(ps, ts):
                assert p["rows"] == t["rows"], (qname, p["rows"], t["rows"])
            out.append(
                bench_run._result(
                    f"stack_trino_tpch_{qname}_sf{sf:g}_platform_written_table",
                    "s",
                    [p["s"] for p in ps],
                    "the same query on a Trino-written copy (CREATE TABLE AS)",
                    [t["s"] for t in ts],
                    sf=sf,
                    rows=loaded["rows"],
                    platform_files=loaded["files"],
                    platform_ingest_s=round(loaded["s"], 2),
                    trino_ctas_s=round(ctas_s, 2),
                    note="client wall time (execute + fetch) through the Trino of `mesh stack up`",
                )
            )
    finally:
        for name in ("lineitem", "lineitem_trino"):
            try:
                sql(f"DROP TABLE IF EXISTS iceberg.{schema}.{name}")
            except Exception:  # noqa: BLE001 - cleanup is best effort, the schema says what it is
                pass
        try:
            sql(f"DROP SCHEMA IF EXISTS iceberg.{schema}")
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(work, ignore_errors=True)
    return out


def bench_stack(repeats: int) -> list[dict]:
    problem = stack_problem()
    if problem:
        print(f"  skipped: {problem}", flush=True)
        return _skipped(problem)
    out = []
    for fn, name in (
        (bench_trino_ingest, "stack_trino_ingest"),
        (bench_trino_queries, "stack_trino_tpch_queries"),
    ):
        try:
            out += fn(repeats)
        except Exception as exc:  # one half failing keeps the other's figures
            import traceback

            traceback.print_exc()
            out.append(bench_run.skipped(f"{name}_failed", f"{type(exc).__name__}: {str(exc)[:500]}"))
    return out
