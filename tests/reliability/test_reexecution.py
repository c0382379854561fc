"""A Dagster run of the mesh killed midway, then re-executed from the failure, ends exactly where a
clean run ends.

The run is one job over the unpartitioned domains (reference and fleet: ingestion with
write-audit-publish, contract checks, dbt mart over ephemeral staging/intermediate, dbt source tests),
in-process executor, in a persistent DagsterInstance (``DAGSTER_HOME`` of the test). It is
SIGKILLed after its N-th successful step, marked failed (what Dagster's run monitoring does for
a run whose process died), and re-executed with ``ReexecutionOptions.from_failure``: only the
steps that did not succeed run again, under a new run id. Afterwards every table equals the
clean run's and every check's latest evaluation passed.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from meshtest import land
from reliability_support import (
    REPO,
    RUN_MESH_JOB,
    contents,
    kill_group,
    start,
    wait_for,
)

from mesh_assets.iceberg.catalog import open_catalog

TABLES = ("reference.airlines", "reference.airports", "reference.timezones", "fleet.planes")
HERE = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


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


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("clean") / "mesh"
    (home / "dagster").mkdir(parents=True)
    land_all(home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESH_HOME", str(home))
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        run_id, success = run_job()
        assert success
        from reliability_support import mesh_defs

        with dg.DagsterInstance.get() as instance:
            checks = latest_checks(instance, mesh_defs())
        return contents(open_catalog(), TABLES), checks


def kill_after_steps_then_reexecute(mesh_home, clean_run, steps_before_kill: int) -> dict:
    from reliability_support import mesh_defs

    clean_tables, clean_checks = clean_run
    assert set(clean_checks.values()) == {"SUCCEEDED"}, clean_checks
    land_all(mesh_home)
    with dg.DagsterInstance.get() as instance:
        proc = start([sys.executable, "-c", RUN_MESH_JOB], env=_env())

        def enough_steps():
            runs = instance.get_runs(limit=1)
            if not runs:
                return None
            done = instance.get_records_for_run(
                runs[0].run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
            ).records
            return runs[0] if len(done) >= steps_before_kill else None

        run = wait_for(enough_steps, 600, f"{steps_before_kill} successful steps", proc, interval=0.02)
        kill_group(proc)
        run = instance.get_run_by_id(run.run_id)
        assert run.status == dg.DagsterRunStatus.STARTED  # the process died mid-run
        succeeded = {
            r.event_log_entry.step_key
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
            ).records
        }
        # what the run monitor does for a run whose process is gone
        instance.report_run_failed(run, "run process killed (SIGKILL) by the reliability test")
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE

    reexecuted, success = run_job(parent_run_id=run.run_id)
    assert success, "re-execution from the failure did not succeed"
    with dg.DagsterInstance.get() as instance:
        child = instance.get_run_by_id(reexecuted)
        assert child.parent_run_id == run.run_id and child.root_run_id == run.run_id
        rerun_steps = {
            r.event_log_entry.step_key
            for r in instance.get_records_for_run(
                reexecuted, of_type=dg.DagsterEventType.STEP_SUCCESS
            ).records
        }
        assert not rerun_steps & succeeded, "a step that had succeeded ran again"
        checks = latest_checks(instance, mesh_defs())
    assert contents(open_catalog(), TABLES) == clean_tables
    assert checks == clean_checks
    return {"killed_after": sorted(succeeded), "reexecuted": sorted(rerun_steps)}


def test_run_killed_mid_mesh_then_reexecuted_from_failure_equals_a_clean_run(mesh_home, clean_run):
    # after 4 steps: the three ingestions are on their audit branches, one of them checked and
    # published; the other checks, dbt and the dbt tests are left to the re-execution
    print(kill_after_steps_then_reexecute(mesh_home, clean_run, steps_before_kill=4))
