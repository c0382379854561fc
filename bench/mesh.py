"""The whole demo mesh through Dagster vs the same work by hand; dbt through Dagster vs plain dbt.

* ``bench_mesh``: ``mesh demo`` in a fresh ``MESH_HOME``/``DAGSTER_HOME`` (landing, every
  domain's runs in dependency order with write-audit-publish, checks, reports, summary) against
  bench/mesh_by_hand.py in another fresh ``MESH_HOME`` (pyarrow + pyiceberg ingestion, one plain
  ``dbt build`` of all models on the same target, one DuckDB query per product for the checks).
  Both must produce the same row count in every table; the hand script's phases are recorded.
* ``bench_dbt`` (``--only dbt``, not in the default set: ``mesh`` covers it): the dbt part of
  the demo through Dagster vs a plain ``dbt build`` of the same models, per unpartitioned domain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import run as bench_run

BIN = Path(sys.executable).parent


def _fresh_home(prefix: str) -> Path:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    (home / "dagster").mkdir()
    return home


def _env(home: Path) -> dict[str, str]:
    env = {"MESH_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    return env


def _clean_env() -> None:
    """Benchmarks run on the embedded default, whatever the calling shell exported."""
    for var in (
        "MESH_CATALOG_URI",
        "MESH_WAREHOUSE",
        "MESH_LANDING",
        "MESH_ENGINE",
        "MESH_S3_ENDPOINT",
        "MESH_DAGSTER_STORAGE",
        "MESH_PROJECT_DIR",
    ):
        os.environ.pop(var, None)


SUMMARY_LINE = re.compile(r"^([a-z_]+\.[a-z_0-9]+)\s+(\d+)\s+(-?\d+)\s+(\d+)/(\d+) passed")


def through_dagster() -> dict:
    home = _fresh_home("mesh-bench-demo-")
    try:
        wall, rss, out = bench_run.run_command([str(BIN / "mesh"), "demo"], _env(home), timeout=1800)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    rows, checks = {}, 0
    for line in out.splitlines():
        m = SUMMARY_LINE.match(line.strip())
        if m:
            rows[m.group(1)] = int(m.group(2))
            checks += int(m.group(5))
    return {"s": wall, "rss": rss / 2**20, "rows": rows, "checks": checks}


def by_hand() -> dict:
    home = _fresh_home("mesh-bench-hand-")
    try:
        wall, rss, out = bench_run.run_command(
            [sys.executable, str(bench_run.BENCH_DIR / "mesh_by_hand.py")], _env(home), timeout=1800
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"s": wall, "rss": rss / 2**20, **bench_run.last_json(out)}


def bench_mesh(repeats: int) -> list[dict]:
    _clean_env()
    subprocess.run([str(BIN / "mesh"), "dbt", "prepare"], check=True, capture_output=True, cwd=bench_run.ROOT)
    ds, hs = bench_run.rounds(
        repeats,
        through_dagster,
        by_hand,
        label=lambda d, h: (
            f"mesh demo {d['s']:.1f} s ({len(d['rows'])} tables, {d['checks']} checks); "
            f"by hand {h['s']:.1f} s (ingest {h['ingest_s']:.1f}, dbt {h['dbt_s']:.1f}, "
            f"checks {h['checks_s']:.1f})"
        ),
    )
    for d, h in zip(ds, hs):  # every product table (the demo also lists its dbt layers)
        theirs = {k: d["rows"].get(k) for k in h["rows"]}
        if theirs != h["rows"]:
            raise AssertionError(f"the two ways disagree on row counts: dagster {theirs} vs hand {h['rows']}")
    phases = {
        k: bench_run.stats([h[k] for h in hs])["median"] for k in ("land_s", "ingest_s", "dbt_s", "checks_s")
    }
    return [
        bench_run._result(
            "mesh_demo_through_dagster_wall",
            "s",
            [d["s"] for d in ds],
            "the same work by hand (bench/mesh_by_hand.py)",
            [h["s"] for h in hs],
            tables=len(ds[-1]["rows"]),
            product_tables=len(hs[-1]["rows"]),
            product_rows_total=sum(hs[-1]["rows"].values()),
            checks=ds[-1]["checks"],
            baseline_check_queries=hs[-1]["queries"],
            baseline_rules=hs[-1]["rules"],
            baseline_phases_median_s=phases,
            peak_rss_mib=bench_run.stats([d["rss"] for d in ds])["median"],
            baseline_peak_rss_mib=bench_run.stats([h["rss"] for h in hs])["median"],
            note="end to end, fresh MESH_HOME each: `mesh demo` (5 domains, one Dagster run per "
            "domain and partitioning, write-audit-publish, checks with reports) vs plain pyarrow + "
            "pyiceberg + one `dbt build` + one DuckDB query per product; identical row counts "
            "in every product table verified each round",
        )
    ]


def bench_dbt(repeats: int) -> list[dict]:
    """The dbt part of the demo through Dagster vs a plain `dbt build` of the same models."""
    _clean_env()
    home = _fresh_home("mesh-bench-dbt-")
    env = {**os.environ, **_env(home)}
    subprocess.run([str(BIN / "mesh"), "demo"], env=env, check=True, capture_output=True)
    out = []
    try:
        for domain in ("reference", "analytics"):  # unpartitioned dbt domains
            dagster_run = textwrap.dedent(f"""
                import dagster as dg
                from mesh_assets.definitions import build_domain
                from mesh_assets.settings import DOMAINS_DIR
                defs = build_domain(DOMAINS_DIR / "{domain}")
                graph = defs.resolve_asset_graph()
                keys = [k for k in graph.materializable_asset_keys if "dbt" in graph.get(k).kinds]
                job = defs.resolve_implicit_global_asset_job_def()
                with dg.DagsterInstance.get() as instance:
                    assert job.execute_in_process(instance=instance, asset_selection=keys).success
            """)

            def dagster_step():
                start = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-c", dagster_run],
                    env=env,
                    check=True,
                    capture_output=True,
                    cwd=bench_run.ROOT,
                )
                return time.perf_counter() - start

            def plain_dbt():
                start = time.perf_counter()
                subprocess.run(
                    [
                        str(BIN / "dbt"),
                        "build",
                        "--project-dir",
                        "dbt_project",
                        "--profiles-dir",
                        "dbt_project",
                        "--select",
                        f"fqn:datamesh.{domain}",
                        "--vars",
                        json.dumps({"mesh_domain": domain}),
                        "--target-path",
                        str(home / "plain-dbt"),
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                    cwd=bench_run.ROOT,
                )
                return time.perf_counter() - start

            xs, ys = bench_run._pairs(repeats, dagster_step, plain_dbt)
            out.append(
                bench_run._result(
                    f"dbt_build_{domain}_through_dagster",
                    "s",
                    xs,
                    "plain dbt build (same models, same target)",
                    ys,
                    goal="ratio <= 1.5",
                )
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out
