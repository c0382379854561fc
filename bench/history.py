"""Commit cost against history: the platform's append to a fresh table vs to one with a long history.

``bench_history``: one day-partitioned table (10 days per append, so 10 data files per
snapshot) is given ``BENCH_HISTORY_SNAPSHOTS`` (``0,100,500,1000``) append snapshots; at each
point the platform's write of 10 new days (:func:`mesh_assets.iceberg.commit.replace_rows`
through :func:`~mesh_assets.iceberg.commit.commit_with_retry`, as an ingest commits: load,
delete of the days it replaces, append, load) is timed, and compared with the same write at
0 snapshots. Twice: with the platform's table properties
(:data:`mesh_assets.iceberg.catalog.TABLE_PROPERTIES`: manifest merging on) and with
pyiceberg's default fast append (one more manifest per snapshot, never merged); both write
through the platform's transaction (:func:`mesh_assets.iceberg.commit.transaction`), so the
other half of the old cost (pyiceberg re-copying the whole metadata ~28 times per write) is in
neither. Then :func:`mesh_assets.iceberg.maintenance.compact` rewrites
the long-history table's small files and manifests and the write is timed again.

History is built in transactions of up to 100 appends (one metadata commit each): the same
snapshots and files as single commits, in a fraction of the time. Embedded SQLite catalog,
local warehouse, one fresh interpreter per variant.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import run as bench_run

SCRIPT = textwrap.dedent("""
    import datetime as dt, json, statistics, sys, time
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import DateType, DoubleType, LongType, NestedField
    from mesh_assets.iceberg.catalog import TABLE_PROPERTIES
    from mesh_assets.iceberg.commit import commit_with_retry, replace_rows
    from mesh_assets.iceberg.maintenance import compact

    home, merging, points, repeats = sys.argv[1], sys.argv[2] == "merge", json.loads(sys.argv[3]), int(sys.argv[4])
    DAYS, ROWS = 10, 100  # per append: 10 days (10 data files) of 100 rows each
    catalog = SqlCatalog("bench", uri=f"sqlite:///{home}/catalog.db", warehouse=f"file://{home}/warehouse")
    catalog.create_namespace("bench")
    properties = dict(TABLE_PROPERTIES)
    if not merging:
        properties = {k: v for k, v in properties.items() if not k.startswith("commit.manifest")}
    schema = Schema(
        NestedField(1, "day", DateType(), required=False),
        NestedField(2, "id", LongType(), required=False),
        NestedField(3, "value", DoubleType(), required=False),
    )
    spec = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=DayTransform(), name="day_day"))
    table = catalog.create_table("bench.history", schema=schema, partition_spec=spec, properties=properties)
    arrow = table.schema().as_arrow()
    start_day = dt.date(2000, 1, 1)
    written = 0  # appends so far: the next one covers days written * DAYS ...

    def batch(n):
        first = n * DAYS
        days = [start_day + dt.timedelta(days=first + i // ROWS) for i in range(DAYS * ROWS)]
        return pa.table({"day": days, "id": list(range(DAYS * ROWS)), "value": [0.5] * (DAYS * ROWS)}, schema=arrow)

    def window(n):
        lo, hi = start_day + dt.timedelta(days=n * DAYS), start_day + dt.timedelta(days=(n + 1) * DAYS)
        return And(GreaterThanOrEqual("day", lo.isoformat()), LessThan("day", hi.isoformat()))

    def platform_write():
        global written
        data, rows = batch(written), window(written)
        t = time.perf_counter()
        commit_with_retry(catalog, "bench.history", lambda tb: replace_rows(tb, data.to_batches(), arrow, {}, rows))
        written += 1
        return time.perf_counter() - t

    def measure():
        return statistics.median([platform_write() for _ in range(repeats + 1)][1:])  # first: warm-up

    def shape():
        t = catalog.load_table("bench.history")
        current = t.current_snapshot()
        return {"snapshots": len(t.snapshots()), "data_files": len(t.inspect.files()) if current else 0,
                "manifests": len(current.manifests(t.io)) if current else 0}

    out = {"points": []}
    build_s = 0.0
    for target in points:
        t0 = time.perf_counter()
        while len(catalog.load_table("bench.history").snapshots()) < target:
            tb = catalog.load_table("bench.history")
            with tb.transaction() as tx:
                for _ in range(min(100, target - len(tb.snapshots()))):
                    tx.append(batch(written))
                    written += 1
        build_s += time.perf_counter() - t0
        before = shape()
        out["points"].append({**before, "history": target, "append_s": measure()})
    t0 = time.perf_counter()
    report = compact(catalog.load_table("bench.history"))
    out["compact_s"] = time.perf_counter() - t0
    out["compacted"] = {**shape(), "append_s": measure(), "report": report.as_metadata()}
    out["build_s"] = build_s
    print(json.dumps(out))
""")


def _variant(merging: bool, points: list[int], repeats: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-history-"))
    try:
        wall, rss, out = bench_run.run_measured(
            SCRIPT,
            [str(home), "merge" if merging else "fast", f"[{','.join(map(str, points))}]", str(repeats)],
            {},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"wall_s": wall, **bench_run.last_json(out)}


def bench_history(repeats: int) -> list[dict]:
    points = [int(n) for n in bench_run.env_list("BENCH_HISTORY_SNAPSHOTS", "0,100,500,1000")]
    if points[0] != 0:
        points.insert(0, 0)
    results = []
    for merging, label in ((True, "platform"), (False, "fast_append")):
        v = _variant(merging, points, repeats)
        fresh = v["points"][0]
        for p in v["points"]:
            print(
                f"  {label}: {p['history']:>5} snapshots, {p['data_files']:>6} files, "
                f"{p['manifests']:>5} manifests: append {p['append_s'] * 1000:.0f} ms",
                flush=True,
            )
        print(
            f"  {label}: compacted in {v['compact_s']:.1f} s -> {v['compacted']['data_files']} files, "
            f"{v['compacted']['manifests']} manifests: append {v['compacted']['append_s'] * 1000:.0f} ms",
            flush=True,
        )
        for p in v["points"][1:]:
            results.append(
                bench_run._result(
                    f"commit_{label}_after_{p['history']}_snapshots",
                    "s",
                    [p["append_s"]],
                    "the same write to the same table at 0 snapshots",
                    [fresh["append_s"]],
                    **({"goal": "ratio <= 1.5"} if merging else {}),
                    snapshots=p["snapshots"],
                    data_files=p["data_files"],
                    manifests=p["manifests"],
                    baseline_manifests=fresh["manifests"],
                    note=(
                        "platform table properties (manifest merging)"
                        if merging
                        else "pyiceberg's default fast append, manifests never merged (the platform's "
                        "transaction all the same: the write path before had neither)"
                    )
                    + f"; median of {repeats} writes of 10 days (10 files, 1,000 rows) after a warm-up write",
                )
            )
        last = v["points"][-1]
        results.append(
            bench_run._result(
                f"commit_{label}_after_{last['history']}_snapshots_compacted",
                "s",
                [v["compacted"]["append_s"]],
                "the same write to the same table at 0 snapshots",
                [fresh["append_s"]],
                compact_s=v["compact_s"],
                data_files=v["compacted"]["data_files"],
                manifests=v["compacted"]["manifests"],
                snapshots=v["compacted"]["snapshots"],
                history_build_s=v["build_s"],
                note="after mesh_assets.iceberg.maintenance.compact (small files and manifests "
                "rewritten; snapshots kept)",
            )
        )
    return results
