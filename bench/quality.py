"""Benchmark: a 10-expectation quality suite on an Iceberg table, three ways, in one run.

    .venv/bin/python bench/quality.py [--rows N] [--repeats R]
    (or as part of `make bench`: bench/run.py --only quality)

* platform pushdown: ``mesh_assets.quality.run.evaluate`` (one SQL statement in DuckDB over the
  Iceberg snapshot; uniqueness as GX counts it);
* GX on pandas: the same rules through ``mesh_assets.quality.gx`` (Great Expectations 1.x,
  pandas data source), *including* reading the needed columns of the same snapshot into pandas,
  as the fallback path does;
* floor: one hand-written DuckDB aggregate computing the same 10 verdicts (count(DISTINCT) for
  uniqueness, no per-rule metadata).

Rows: ``BENCH_QUALITY_ROWS`` (default 10,000,000). Repeats: ``BENCH_REPEATS`` (default 3), after
one warm-up round. Each measurement runs in a fresh interpreter (time measured inside it, around
the evaluation only: imports and interpreter start excluded; peak RSS from ``wait4``, whole
process). Ratios are computed pair by pair within a round. Results are merged by name into
bench/results.json ({"name", "unit", "median", "min", "max", "baseline", "ratio_to_baseline"}).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import run as bench_run  # noqa: E402  (bench/run.py: measured subprocesses, results writer)

ROOT = BENCH_DIR.parent
DATA_DIR = bench_run.DATA_DIR

RULES = """
from mesh_assets.contract.model import QualityRule as R
import datetime as dt
RULES = [
    R("not_null_id", "expect_column_values_to_not_be_null", {"column": "id"}),
    R("unique_id", "expect_column_values_to_be_unique", {"column": "id"}),
    R("compound_unique", "expect_compound_columns_to_be_unique", {"column_list": ["carrier", "id"]}),
    R("between_qty", "expect_column_values_to_be_between", {"column": "qty", "min_value": 0, "max_value": 1000}),
    R("in_set_status", "expect_column_values_to_be_in_set", {"column": "status", "value_set": ["ok", "late", "cancelled", "diverted"]}),
    R("match_regex_code", "expect_column_values_to_match_regex", {"column": "code", "regex": "^N[0-9]{4}[A-Z]{2}$"}),
    R("not_null_amount", "expect_column_values_to_not_be_null", {"column": "amount", "mostly": 0.95}),
    R("row_count", "expect_table_row_count_to_be_between", {"min_value": 1}),
    R("mean_amount", "expect_column_mean_to_be_between", {"column": "amount", "min_value": 0, "max_value": 1000}),
    R("max_ts", "expect_column_max_to_be_between", {"column": "ts", "min_value": dt.datetime(2020, 1, 1), "max_value": dt.datetime(2030, 1, 1)}),
]
"""

OPEN = """
import os, sys, time, json
from mesh_assets import engine
from mesh_assets.iceberg.catalog import open_catalog
table = open_catalog().load_table("bench.quality")
con = engine.connect()
con.execute("SET enable_progress_bar = false")
relation = engine.register_table(con, table, "product", snapshot_id=table.current_snapshot().snapshot_id)
"""

PUSHDOWN = (
    OPEN
    + RULES
    + """
from mesh_assets.quality.checks import evaluate
start = time.perf_counter()
results = evaluate(con, relation, RULES)
elapsed = time.perf_counter() - start
assert all(r.passed for r in results), [(r.rule.name, r.metadata()) for r in results if not r.passed]
print(json.dumps({"s": elapsed}))
"""
)

GX = (
    OPEN
    + RULES
    + """
from mesh_assets.quality.gx import read_frame, validate_dataframe, _batch_definition
_batch_definition()  # GX import and context creation are not timed
start = time.perf_counter()
needed = []
for r in RULES:
    needed += [c for c in r.columns if c not in needed]
df = read_frame(con, relation, needed)
loaded = time.perf_counter()
results = validate_dataframe(df, RULES)
elapsed = time.perf_counter() - start
assert all(r.passed for r in results), [(r.rule.name, r.metadata()) for r in results if not r.passed]
print(json.dumps({"s": elapsed, "load_s": loaded - start}))
"""
)

HAND = (
    OPEN
    + """
start = time.perf_counter()
row = con.execute(f'''
    SELECT count(*) FILTER (WHERE id IS NULL) = 0,
           count(id) = count(DISTINCT id),
           count(*) = count(DISTINCT (carrier, id)),
           count(*) FILTER (WHERE qty < 0 OR qty > 1000) = 0,
           count(*) FILTER (WHERE status NOT IN ('ok', 'late', 'cancelled', 'diverted')) = 0,
           count(*) FILTER (WHERE NOT regexp_matches(code, '^N[0-9]{{4}}[A-Z]{{2}}$')) = 0,
           count(amount) >= 0.95 * count(*),
           count(*) >= 1,
           avg(amount) BETWEEN 0 AND 1000,
           max(ts) BETWEEN TIMESTAMP '2020-01-01' AND TIMESTAMP '2030-01-01'
    FROM {relation}''').fetchone()
elapsed = time.perf_counter() - start
assert all(row), row
print(json.dumps({"s": elapsed}))
"""
)


def make_table(home: Path, rows: int) -> None:
    """A Parquet file of ``rows`` generated rows, added to Iceberg table bench.quality."""
    import duckdb
    import pyarrow.parquet as pq
    from pyiceberg.catalog.sql import SqlCatalog

    parquet = DATA_DIR / f"quality_{rows}.parquet"
    if not parquet.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        print(f"generating {parquet} ({rows:,} rows) ...", flush=True)
        tmp = parquet.with_suffix(".part")
        duckdb.sql(f"""
            COPY (SELECT i AS id,
                         ['AA','B6','DL','UA','WN','EV','MQ','9E'][1 + i % 8] AS carrier,
                         (i * 7919 % 1001)::INTEGER AS qty,
                         ['ok','late','cancelled','diverted'][1 + (i * 31 % 4)] AS status,
                         'N' || lpad((i % 10000)::VARCHAR, 4, '0') ||
                             chr(65 + (i % 26)::INTEGER) || chr(65 + (i // 26 % 26)::INTEGER) AS code,
                         CASE WHEN i % 50 = 0 THEN NULL ELSE (i % 997) * 1.5 END::DOUBLE AS amount,
                         TIMESTAMP '2024-01-01' + to_seconds(i % 31536000) AS ts
                  FROM range({rows}) t(i))
            TO '{tmp}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)""")
        tmp.rename(parquet)
    (home / "warehouse").mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        "mesh", uri=f"sqlite:///{home / 'catalog.db'}", warehouse=(home / "warehouse").as_uri()
    )
    catalog.create_namespace_if_not_exists("bench")
    table = catalog.create_table("bench.quality", schema=pq.read_schema(parquet))
    table.add_files([str(parquet)])


def bench_quality(repeats: int, rows: int | None = None) -> list[dict]:
    rows = rows or int(os.environ.get("BENCH_QUALITY_ROWS", 10_000_000))
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-quality-"))
    env = {"MESH_HOME": str(home), "GX_ANALYTICS_ENABLED": "false"}
    series: dict[str, list[float]] = {
        k: [] for k in ("push", "gx", "hand", "gx_load", "push_rss", "gx_rss", "hand_rss")
    }
    try:
        os.environ["MESH_HOME"] = str(home)
        make_table(home, rows)
        for i in range(repeats + 1):
            measured = {}
            for key, script in (("push", PUSHDOWN), ("gx", GX), ("hand", HAND)):
                _, rss, out = bench_run.run_measured(textwrap.dedent(script), [], env)
                measured[key] = json.loads(out.splitlines()[-1])
                measured[key]["rss"] = rss / 2**20
            print(
                f"  round {i}: pushdown {measured['push']['s']:.2f} s / {measured['push']['rss']:.0f} MiB, "
                f"GX pandas {measured['gx']['s']:.2f} s (load {measured['gx']['load_s']:.2f} s) / "
                f"{measured['gx']['rss']:.0f} MiB, hand-written {measured['hand']['s']:.2f} s / "
                f"{measured['hand']['rss']:.0f} MiB" + (" (warm-up)" if i == 0 else ""),
                flush=True,
            )
            if i == 0:
                continue
            for key in ("push", "gx", "hand"):
                series[key].append(measured[key]["s"])
                series[f"{key}_rss"].append(measured[key]["rss"])
            series["gx_load"].append(measured["gx"]["load_s"])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    hand = "hand-written single DuckDB aggregate (same 10 verdicts)"
    push = "platform pushdown suite (DuckDB over Iceberg)"
    return [
        bench_run._result(
            f"quality_pushdown_10_expectations_{rows}_rows",
            "s",
            series["push"],
            hand,
            series["hand"],
            goal="ratio <= 2",
        ),
        bench_run._result(
            f"quality_gx_pandas_10_expectations_{rows}_rows",
            "s",
            series["gx"],
            push,
            series["push"],
            gx_load_median_s=statistics.median(series["gx_load"]),
            note="GX includes reading the 7 needed columns into pandas; ratio_to_baseline = GX / pushdown",
        ),
        bench_run._result(
            f"quality_pushdown_10_expectations_{rows}_rows_peak_rss",
            "MiB",
            series["push_rss"],
            hand,
            series["hand_rss"],
            gx_pandas_peak_rss_median_mib=statistics.median(series["gx_rss"]),
        ),
    ]


def bench_quality_for_run(repeats: int) -> list[dict]:
    """As part of `make bench`: ``BENCH_QUALITY_ROWS`` rows, 5,000,000 by default there (the
    whole run has to fit in about 20 minutes on 2 cores; this script alone defaults to 10M)."""
    return bench_quality(repeats, int(os.environ.get("BENCH_QUALITY_ROWS", 5_000_000)))


def merge_results(new: list[dict], out: Path) -> list[dict]:
    """``new`` replaces same-named entries of ``out``; the others stay (bench/run.py's writer)."""
    return bench_run.merge_results(new, out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_QUALITY_ROWS", 10_000_000)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.json")
    args = parser.parse_args()
    print(f"== quality (rows {args.rows:,}, {args.repeats} repeats after a warm-up) ==", flush=True)
    merge_results(bench_quality(args.repeats, args.rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
