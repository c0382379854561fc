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


def step_kind(step_key: str) -> str:
    """What a step of the demo's runs does, from its name (the platform's op names)."""
    if "_dbt_models" in step_key:
        return "dbt_models"
    if step_key.endswith("_dbt_source_tests"):
        return "dbt_source_tests"
    for prefix in ("ingest_", "check_", "stream_"):
        if step_key.startswith(prefix):
            return prefix.rstrip("_")
    return "other"


DBT_PHASES = (  # dbt's structured log (codes of dbt-core 1.11's events) -> the phase it ends
    ("A001", "dbt_start_s"),  # "Running with dbt=": dbt's start (in the step's process)
    ("W006", "dbt_parse_s"),  # "Found N models": profile, adapter, project parse (once a process)
    ("Q024", "dbt_connect_s"),  # first node begins: DuckDB, the Iceberg plugin, schemas
    ("Q039", "dbt_nodes_s"),  # "Command `dbt build` succeeded": the models and tests
)


def dbt_log_phases(log: Path, started: float, finished: float) -> dict[str, float]:
    """One dbt invocation's phases from its ``dbt.log`` (JSON lines), between Dagster's
    "Running dbt command" (``started``) and "Finished dbt command" (``finished``); ``dbt_exit_s``
    is the end of the command to the last of its events read by the step, ``dbt_full_parses``
    1 when dbt could not reuse a partial parse."""
    import datetime as dt

    seen: dict[str, float] = {}
    full_parse = 0
    for line in log.read_text().splitlines():
        info = json.loads(line)["info"]
        code = info["code"]
        if code == "I024":
            full_parse = 1
        if code in dict(DBT_PHASES) and code not in seen:
            seen[code] = dt.datetime.fromisoformat(info["ts"].replace("Z", "+00:00")).timestamp()
    out, last = {"dbt_full_parses": full_parse}, started
    for code, phase in DBT_PHASES:
        if code in seen:
            out[phase] = seen[code] - last
            last = seen[code]
    out["dbt_exit_s"] = finished - last
    return out


def run_breakdown(dagster_home: Path, mesh_home: Path | None = None) -> dict:
    """Where the runs of a finished ``mesh demo`` spent their time, from the event log of its
    Dagster instance (the timestamps Dagster stores with each event), summed over its runs:

    * ``run_planning_s``: the run's first event to its start (the planned events, one per asset
      and check); ``run_setup_teardown_s``: start to the first step, the last step to the end
      (executor, resources, log capture);
    * ``step_<kind>_s``: steps by kind (ingest, check, dbt_models, dbt_source_tests, ...), start
      to success or failure; ``dbt_process_s`` the dbt subprocesses inside them (dagster-dbt's
      "Running dbt command" to "Finished dbt command"); ``between_steps_s``: one step's end to
      the next one's start;
    * ``events``, ``steps``, ``runs``, and ``event_write_median_s``: the median time between a
      step output and the materialization or check evaluation Dagster writes for it (nothing
      but the event log's own write), times ``events`` = ``event_writes_estimate_s``;
    * with ``mesh_home``, each dbt process split by its own log (:func:`dbt_log_phases`)."""
    import dagster as dg

    kind = dg.DagsterEventType
    bookkeeping = {kind.ASSET_MATERIALIZATION, kind.ASSET_CHECK_EVALUATION}  # after a STEP_OUTPUT
    step_events = {kind.STEP_START, kind.STEP_SUCCESS, kind.STEP_FAILURE}
    out: dict = {"runs": 0, "steps": 0, "events": 0}
    sums: dict[str, float] = {}
    writes: list[float] = []

    def add(key: str, seconds: float) -> None:
        sums[key] = sums.get(key, 0.0) + seconds

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for record in instance.get_run_records():
            logs = instance.all_logs(record.dagster_run.run_id)
            out["runs"] += 1
            out["events"] += len(logs)
            add("runs_s", logs[-1].timestamp - logs[0].timestamp)
            kinds = [(e, e.dagster_event.event_type if e.dagster_event else None) for e in logs]
            started = next(e.timestamp for e, k in kinds if k == kind.RUN_START)
            add("run_planning_s", started - logs[0].timestamp)
            steps = [(e, k) for e, k in kinds if k in step_events]
            if steps:
                add("run_setup_teardown_s", steps[0][0].timestamp - started)
                add("run_setup_teardown_s", logs[-1].timestamp - steps[-1][0].timestamp)
            begun: dict[str, float] = {}
            last_end = None
            for e, k in steps:
                if k == kind.STEP_START:
                    begun[e.step_key] = e.timestamp
                    if last_end is not None:
                        add("between_steps_s", e.timestamp - last_end)
                    out["steps"] += 1
                else:
                    add(f"step_{step_kind(e.step_key)}_s", e.timestamp - begun.pop(e.step_key))
                    last_end = e.timestamp
            dbt_started = None
            for previous, (e, k) in zip(logs, kinds[1:]):
                message = e.user_message or ""
                if k is None and message.startswith("Running dbt command"):
                    dbt_started = e.timestamp
                elif k is None and message.startswith("Finished dbt command") and dbt_started:
                    add("dbt_process_s", e.timestamp - dbt_started)
                    folder = e.step_key.replace("_dbt_source_tests", "_source_tests")
                    log = (mesh_home or Path("/nonexistent")) / "dbt" / "runs" / e.run_id / folder / "dbt.log"
                    if log.exists():
                        out["dbt_invocations"] = out.get("dbt_invocations", 0) + 1
                        for phase, seconds in dbt_log_phases(log, dbt_started, e.timestamp).items():
                            add(phase, seconds)
                elif k in bookkeeping and previous.dagster_event is not None:
                    writes.append(e.timestamp - previous.timestamp)
    out.update({k: round(v, 2) for k, v in sorted(sums.items())})
    if writes:
        median = sorted(writes)[len(writes) // 2]
        out["event_write_median_s"] = round(median, 4)
        out["event_writes_estimate_s"] = round(median * out["events"], 2)
    return out


def through_dagster() -> dict:
    home = _fresh_home("mesh-bench-demo-")
    try:
        wall, rss, out = bench_run.run_command([str(BIN / "mesh"), "demo"], _env(home), timeout=1800)
        breakdown = run_breakdown(home / "dagster", home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    breakdown["outside_runs_s"] = round(wall - breakdown["runs_s"], 2)
    rows, checks = {}, 0
    for line in out.splitlines():
        m = SUMMARY_LINE.match(line.strip())
        if m:
            rows[m.group(1)] = int(m.group(2))
            checks += int(m.group(5))
    return {"s": wall, "rss": rss / 2**20, "rows": rows, "checks": checks, "breakdown": breakdown}


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
    breakdown = {k: bench_run.stats([d["breakdown"][k] for d in ds])["median"] for k in ds[-1]["breakdown"]}
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
            breakdown=breakdown,
            breakdown_note="medians over the rounds, summed over the demo's runs, from the "
            "event log of each round's Dagster instance (bench/mesh.py run_breakdown); "
            "outside_runs_s: the `mesh demo` process besides its runs (imports, landing, "
            "definitions loads, summary); the baseline's phases: land_s, ingest_s, dbt_s, checks_s",
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
