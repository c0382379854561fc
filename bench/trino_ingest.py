"""Ingesting rows into Iceberg on the stack: pyiceberg bulk append vs Trino INSERT ... VALUES.

    .venv/bin/mesh stack up
    .venv/bin/python bench/trino_ingest.py [--rows 1000000] [--trino-rows 20000] [--batch 1000]

The same synthetic rows (flights-like: ids, codes, delays, distances, dates, timestamps) go
into two fresh tables of the same schema: once as one pyiceberg ``append`` of an Arrow table,
once as Trino ``INSERT INTO ... VALUES`` statements of ``--batch`` rows each (what a client
without a bulk path does: every statement is planned, written and committed as a snapshot).
Trino ingests ``--trino-rows`` rows per round (1M would take far too long) and its time for
``--rows`` is extrapolated linearly from its rate, which the output says. Rows/s are compared
round by round; the results are merged into bench/results.json (entries of the same name are
replaced, the others kept) and bench/results.md is rewritten.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench_run  # noqa: E402  (bench/run.py: machine(), versions(), write_results())

from mesh_assets import stack  # noqa: E402
from mesh_assets.stack.layout import StackLayout  # noqa: E402
from mesh_assets.stack.trino import Trino  # noqa: E402

CARRIERS = ["AA", "B6", "DL", "EV", "MQ", "UA", "US", "WN", "9E", "VX"]
AIRPORTS = ["JFK", "LGA", "EWR", "ATL", "ORD", "LAX", "SFO", "BOS", "MIA", "DFW"]


def flights(rows: int, seed: int = 13) -> pa.Table:
    rng = random.Random(seed)
    base = dt.datetime(2013, 1, 1)
    ts = [base + dt.timedelta(minutes=rng.randint(0, 525_600)) for _ in range(rows)]
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "carrier": pa.array([rng.choice(CARRIERS) for _ in range(rows)]),
            "origin": pa.array([rng.choice(AIRPORTS) for _ in range(rows)]),
            "dest": pa.array([rng.choice(AIRPORTS) for _ in range(rows)]),
            "dep_delay": pa.array(
                [None if rng.random() < 0.03 else round(rng.gauss(12, 40), 1) for _ in range(rows)],
                pa.float64(),
            ),
            "distance": pa.array([rng.randint(80, 4983) for _ in range(rows)], pa.int32()),
            "flight_date": pa.array([t.date() for t in ts], pa.date32()),
            "sched_dep": pa.array(ts, pa.timestamp("us")),
        }
    )


TRINO_COLUMNS = (
    "id bigint, carrier varchar, origin varchar, dest varchar, dep_delay double, "
    "distance integer, flight_date date, sched_dep timestamp(6)"
)


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, float):
        return f"DOUBLE '{value!r}'"
    return str(value)


def insert_statements(table: pa.Table, relation: str, batch: int) -> list[str]:
    rows = table.to_pylist()
    return [
        f"INSERT INTO {relation} VALUES "
        + ", ".join("(" + ", ".join(_literal(v) for v in row.values()) + ")" for row in rows[i : i + batch])
        for i in range(0, len(rows), batch)
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the pyiceberg append")
    parser.add_argument(
        "--trino-rows", type=int, default=20_000, help="rows Trino ingests per round (extrapolated to --rows)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="rows per INSERT statement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(bench_run.ROOT) / "bench" / "results.json")
    args = parser.parse_args()

    layout = StackLayout.current()
    bad = [s.name for s in stack.status(layout) if not s.healthy]
    if bad:
        raise SystemExit(f"the stack is not healthy ({', '.join(bad)}): run `mesh stack up`")
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(layout.catalog_name, **stack.catalog_properties(layout))
    conn = Trino(layout).connect(request_timeout=600)
    cur = conn.cursor()

    def sql(statement: str):
        cur.execute(statement)
        return cur.fetchall()

    ns = f"bench_{uuid.uuid4().hex[:8]}"
    catalog.create_namespace(ns)
    data = flights(args.rows)
    sample = data.slice(0, min(args.trino_rows, args.rows))
    print(
        f"== pyiceberg append of {args.rows:,} rows vs Trino INSERT VALUES ({args.batch} rows per "
        f"statement) of {sample.num_rows:,} rows, {args.repeats} rounds after a warm-up ==",
        flush=True,
    )
    py_rates, trino_rates, py_secs = [], [], []
    try:
        for i in range(args.repeats + 1):
            table = catalog.create_table(f"{ns}.py_{i}", data.schema)
            start = time.perf_counter()
            table.append(data)
            py_s = time.perf_counter() - start
            assert sql(f"SELECT count(*) FROM iceberg.{ns}.py_{i}") == [[args.rows]]

            relation = f"iceberg.{ns}.trino_{i}"
            sql(f"CREATE TABLE {relation} ({TRINO_COLUMNS})")
            statements = insert_statements(sample, relation, args.batch)  # built before the clock
            start = time.perf_counter()
            for statement in statements:
                sql(statement)
            trino_s = time.perf_counter() - start
            assert sql(f"SELECT count(*) FROM {relation}") == [[sample.num_rows]]
            for name in (f"py_{i}", f"trino_{i}"):
                sql(f"DROP TABLE iceberg.{ns}.{name}")

            py_rate, trino_rate = args.rows / py_s, sample.num_rows / trino_s
            print(
                f"  round {i}: pyiceberg {args.rows:,} rows in {py_s:.2f} s ({py_rate:,.0f} rows/s); "
                f"Trino {sample.num_rows:,} rows in {trino_s:.1f} s ({trino_rate:,.0f} rows/s, "
                f"{trino_s / len(statements):.2f} s per statement)" + (" (warm-up)" if i == 0 else ""),
                flush=True,
            )
            if i:
                py_rates.append(py_rate)
                trino_rates.append(trino_rate)
                py_secs.append(py_s)
    finally:
        for identifier in catalog.list_tables(ns):
            sql(f"DROP TABLE IF EXISTS iceberg.{ns}.{identifier[-1]}")
        catalog.drop_namespace(ns)

    extrapolated = [args.rows / r for r in trino_rates]
    note = (
        f"Trino measured on {sample.num_rows:,} rows per round ({len(statements)} statements of "
        f"{args.batch} rows); its {args.rows:,}-row time is extrapolated linearly from that rate"
    )
    results = [
        {
            "name": f"trino_insert_values_{args.batch}_per_statement_rate",
            "unit": "rows/s",
            **bench_run.stats(trino_rates),
            "baseline": {
                "name": f"pyiceberg bulk append of {args.rows:,} rows",
                "unit": "rows/s",
                **bench_run.stats(py_rates),
            },
            "ratio_to_baseline": statistics.median(t / p for t, p in zip(trino_rates, py_rates)),
            "note": note,
        },
        {
            "name": f"ingest_{args.rows}_rows_trino_insert_values_wall",
            "unit": "s",
            **bench_run.stats(extrapolated),
            "baseline": {
                "name": f"pyiceberg bulk append of {args.rows:,} rows",
                "unit": "s",
                **bench_run.stats(py_secs),
            },
            "ratio_to_baseline": statistics.median(e / p for e, p in zip(extrapolated, py_secs)),
            "extrapolated": True,
            "note": note,
        },
    ]
    print(note)
    merge_results(results, args.out)
    return 0


def merge_results(results: list[dict], out: Path) -> None:
    """Replace the entries of the same name in ``out`` (bench/run.py's document), keep others."""
    previous = json.loads(out.read_text())["benchmarks"] if out.exists() else []
    names = {r["name"] for r in results}
    bench_run.write_results([b for b in previous if b["name"] not in names] + results, out)


if __name__ == "__main__":
    sys.exit(main())
