"""A Dagster run of the mesh killed midway, then re-executed from the failure, ends exactly where a
clean run ends; and so does a re-execution killed in its turn.

The run is one job over the unpartitioned domains (reference and fleet: ingestion with
write-audit-publish, contract checks, dbt mart over ephemeral staging/intermediate, dbt source tests),
in-process executor, in a persistent DagsterInstance (``DAGSTER_HOME`` of the test). It is stopped
by the platform's test hook (``MESH_TEST_PAUSE_AT``) in the airports step, after its checks passed
and before it publishes, and SIGKILLed there; the platform marks it failed (``mesh_assets.runs``), and
``ReexecutionOptions.from_failure`` re-executes what did not succeed, under a new run id. That
re-execution is killed in its turn while dbt stores the timezones mart, and re-executed again.
Every re-execution runs only steps that had not succeeded, on the root run's audit branch; at
the end every table equals the clean run's, every check's latest evaluation passed and no audit
branch is left.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from meshtest import land, point_at
from reliability_support import (
    REPO,
    RUN_MESH_JOB,
    contents,
    failure_message,
    kill_group,
    mesh_defs,
    start,
    wait_paused,
)

from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.runs import WORKER_PID_TAG, fail_dead_runs
from mesh_assets.settings import PAUSE_ENV

TABLES = ("reference.airlines", "reference.airports", "reference.timezones", "fleet.planes")
HERE = Path(__file__).resolve().parent


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


def land_all(home: Path) -> None:
    land(home, "reference", "airlines.csv")
    land(home, "reference", "airports.csv")
    land(home, "fleet", "planes.csv")


def run_job(parent_run_id: str | None = None) -> tuple[str, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_MESH_JOB, *([parent_run_id] if parent_run_id else [])],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RUN ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, run_id, success = lines[-1].split()
    return run_id, success == "True"


def latest_checks(instance, job_defs) -> dict[str, str]:
    out = {}
    for key in job_defs.resolve_asset_graph().asset_check_keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        out[key.to_user_string()] = record.status.value if record else "never"
    return out


def succeeded_steps(instance, run_id: str) -> set[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
    return {r.event_log_entry.step_key for r in records}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("clean") / "mesh"
    (home / "dagster").mkdir(parents=True)
    land_all(home)
    with pytest.MonkeyPatch.context() as mp:
        point_at(mp, home)
        run_id, success = run_job()
        assert success
        with dg.DagsterInstance.get() as instance:
            checks = latest_checks(instance, mesh_defs())
        return contents(open_catalog(), TABLES), checks


def kill_at(point: str, log: Path, parent_run_id: str | None = None) -> str:
    """Run the mesh job (a re-execution of ``parent_run_id`` from its failure, if given) until
    it stops at ``point``, SIGKILL it, and let the platform mark it failed; returns its run id."""
    args = [parent_run_id] if parent_run_id else []
    proc = start([sys.executable, "-c", RUN_MESH_JOB, *args], log, env=_env(**{PAUSE_ENV: point}))
    try:
        wait_paused(point.split(":")[0], proc)  # the run's process (or its step's)
    finally:
        kill_group(proc)  # the run's process and everything it started
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs(limit=1)
        assert run.tags[WORKER_PID_TAG] == str(proc.pid) and run.status == dg.DagsterRunStatus.STARTED
        assert fail_dead_runs(instance) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert failure_message(instance, run.run_id).startswith(f"The run's worker process (pid {proc.pid} ")
    return run.run_id


def test_run_killed_twice_then_reexecuted_from_failure_equals_a_clean_run(mesh_home, clean_run):
    clean_tables, clean_checks = clean_run
    assert set(clean_checks.values()) == {"SUCCEEDED"}, clean_checks
    land_all(mesh_home)
    first = kill_at("before_publish:reference.airports", mesh_home.parent / "first.log")
    second = kill_at("dbt_store:reference.timezones", mesh_home.parent / "second.log", parent_run_id=first)
    third, success = run_job(parent_run_id=second)
    assert success, "re-execution from the failure did not succeed"

    with dg.DagsterInstance.get() as instance:
        for run_id, parent in ((second, first), (third, second)):
            run = instance.get_run_by_id(run_id)
            assert (run.parent_run_id, run.root_run_id) == (parent, first)
        done = [succeeded_steps(instance, r) for r in (first, second, third)]
        checks = latest_checks(instance, mesh_defs())
    # the first run ingested and published airlines; the airports step was cut short after its
    # checks, before publishing, so it ran again (on the root run's audit branch); dbt was cut
    # short in the second run
    assert "ingest_airlines" in done[0]
    assert "ingest_airports" not in done[0] and "ingest_airports" in done[1]
    assert "reference_dbt_models" not in done[1] and "reference_dbt_models" in done[2]
    assert not done[0] & done[1] and not (done[0] | done[1]) & done[2], "a step that had succeeded ran again"
    assert contents(open_catalog(), TABLES) == clean_tables
    assert checks == clean_checks
    catalog = open_catalog()
    assert not [r for t in TABLES for r in catalog.load_table(t).metadata.refs if r.startswith("audit-")]
