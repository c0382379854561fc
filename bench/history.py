"""Commit cost against history: the platform's append to a fresh table vs to one with a long history.

``bench_history``: one day-partitioned table (10 days per append, so 10 data files per
snapshot) is given ``BENCH_HISTORY_SNAPSHOTS`` (``0,100,500,1000``) append snapshots; at each
point the platform's write of 10 new days (:func:`mesh_assets.iceberg.commit.replace_rows`
through :func:`~mesh_assets.iceberg.commit.commit_with_retry`, as an ingest commits: load,
delete of the days it replaces, append, load) is timed, and compared with the same write at
0 snapshots, twice: the first write of a newly opened catalog (which reads the table's
metadata, as a new process does) and its second (which finds it, as the commit after a step's
own load of the table does; :class:`mesh_assets.iceberg.sqlcatalog.MeshSqlCatalog`). All of it
twice: with the platform's table properties
(:data:`mesh_assets.iceberg.catalog.TABLE_PROPERTIES`: manifest merging on) and with
pyiceberg's default fast append (one more manifest per snapshot, never merged); both write
through the platform's transaction and catalog, so pyiceberg's own costs that grew with the
history (re-parsing and deep-copying the whole metadata, several times per write) are in
neither. Then :func:`mesh_assets.iceberg.maintenance.compact` rewrites
the long-history table's small files and manifests and the write is timed again.

History is built in transactions of up to 100 appends (one metadata commit each): the same
snapshots and files as single commits, in a fraction of the time. Embedded SQLite catalog,
local warehouse, one fresh interpreter per variant.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import textwrap
from pathlib import Path

import run as bench_run

SCRIPT = textwrap.dedent("""
    import datetime as dt, json, statistics, sys, time
    import pyarrow as pa
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import DateType, DoubleType, LongType, NestedField
    from mesh_assets.iceberg.catalog import TABLE_PROPERTIES
    from mesh_assets.iceberg.commit import commit_with_retry, replace_rows, transaction
    from mesh_assets.iceberg.maintenance import compact
    from mesh_assets.iceberg.sqlcatalog import MeshSqlCatalog

    home, merging, points, writes = sys.argv[1], sys.argv[2] == "merge", json.loads(sys.argv[3]), int(sys.argv[4])
    DAYS, ROWS = 10, 100  # per append: 10 days (10 data files) of 100 rows each

    def open_catalog():  # the platform's catalog, as a process opens it
        return MeshSqlCatalog("bench", uri=f"sqlite:///{home}/catalog.db", warehouse=f"file://{home}/warehouse")

    catalog = open_catalog()
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

    def platform_write(cat):
        global written
        data, rows = batch(written), window(written)
        t = time.perf_counter()
        commit_with_retry(cat, "bench.history", lambda tb: replace_rows(tb, data.to_batches(), arrow, {}, rows))
        written += 1
        return time.perf_counter() - t

    def measure():
        # pairs of writes by a newly opened catalog: the first parses the table's metadata (a
        # new process: a Dagster step, a CLI command), the second finds it (the commit after
        # the step's own load of the table, a long-lived writer's next commit)
        platform_write(open_catalog())  # warm-up
        first, next_ = [], []
        for _ in range(writes):
            cat = open_catalog()
            first.append(platform_write(cat))
            next_.append(platform_write(cat))
            cat.engine.dispose()
        return {"append_s": next_, "first_append_s": first}

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
            with transaction(tb) as tx:
                for _ in range(min(100, target - len(tb.snapshots()))):
                    tx.append(batch(written))
                    written += 1
        build_s += time.perf_counter() - t0
        before = shape()
        out["points"].append({**before, "history": target, **measure()})
    t0 = time.perf_counter()
    report = compact(catalog.load_table("bench.history"))
    out["compact_s"] = time.perf_counter() - t0
    out["compacted"] = {**shape(), **measure(), "report": report.as_metadata()}
    out["build_s"] = build_s
    print(json.dumps(out))
""")


def _variant(merging: bool, points: list[int], writes: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-history-"))
    try:
        wall, rss, out = bench_run.run_measured(
            SCRIPT,
            [str(home), "merge" if merging else "fast", f"[{','.join(map(str, points))}]", str(writes)],
            {},
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"wall_s": wall, **bench_run.last_json(out)}


# (result name part, key in the script's output, what the write is)
KINDS = (
    (
        "",
        "append_s",
        "the second write of a newly opened catalog (the table's metadata already read: "
        "the commit after a step's own load of the table, a long-lived writer's next commit)",
    ),
    (
        "first_",
        "first_append_s",
        "the first write of a newly opened catalog, which reads and parses the "
        "table's metadata (a new process: a Dagster step, a CLI command)",
    ),
)


def _in_ms(xs: list[float]) -> list[float]:
    return [x * 1000 for x in xs]


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.0f} ms"


def bench_history(repeats: int) -> list[dict]:
    points = [int(n) for n in bench_run.env_list("BENCH_HISTORY_SNAPSHOTS", "0,100,500,1000")]
    if points[0] != 0:
        points.insert(0, 0)
    writes = max(5, 3 * repeats)  # pairs of writes per point: each is a few tens of ms
    results = []
    for merging, label in ((True, "platform"), (False, "fast_append")):
        v = _variant(merging, points, writes)
        fresh = v["points"][0]
        for p in [*v["points"], {**v["compacted"], "history": "compacted"}]:
            print(
                f"  {label}: {p['history']:>9} snapshots, {p['data_files']:>6} files, {p['manifests']:>5} "
                f"manifests: append {_ms(p['append_s'])}, first append of a process {_ms(p['first_append_s'])}",
                flush=True,
            )
        kind = (
            "platform table properties (manifest merging)"
            if merging
            else (
                "pyiceberg's default fast append, manifests never merged (the platform's transaction "
                "and catalog all the same)"
            )
        )
        for part, key, what in KINDS:
            for p in v["points"][1:]:
                results.append(
                    bench_run._result(
                        f"commit_{label}_{part}after_{p['history']}_snapshots",
                        "ms",
                        _in_ms(p[key]),
                        "the same write to the same table at 0 snapshots",
                        _in_ms(fresh[key]),
                        **({"goal": "ratio <= 1.5"} if merging else {}),
                        snapshots=p["snapshots"],
                        data_files=p["data_files"],
                        manifests=p["manifests"],
                        baseline_manifests=fresh["manifests"],
                        note=f"{kind}; {what}; {writes} writes of 10 days (10 files, 1,000 rows) after a warm-up "
                        "write, paired in order with the writes at 0 snapshots",
                    )
                )
            last = v["points"][-1]
            results.append(
                bench_run._result(
                    f"commit_{label}_{part}after_{last['history']}_snapshots_compacted",
                    "ms",
                    _in_ms(v["compacted"][key]),
                    "the same write to the same table at 0 snapshots",
                    _in_ms(fresh[key]),
                    compact_s=v["compact_s"],
                    data_files=v["compacted"]["data_files"],
                    manifests=v["compacted"]["manifests"],
                    snapshots=v["compacted"]["snapshots"],
                    history_build_s=v["build_s"],
                    note=f"after mesh_assets.iceberg.maintenance.compact (small files and manifests rewritten; "
                    f"snapshots kept); {what}",
                )
            )
    return results
