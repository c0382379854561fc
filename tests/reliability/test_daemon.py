"""The Dagster daemon, for real: a `dagster-daemon run` process over a workspace of one domain
(fleet) and the Dagster instance mesh configures (run monitoring and run retries on).

A file dropped in the landing zone makes the landing sensor request a run, which the daemon
launches through the code server; the run worker is SIGKILLed at a checkpoint of the platform
(``MESH_TEST_PAUSE_AT``: after writing the audit branch, before the checks), so the run fails
from outside its code; the daemon's run retries re-execute it from the failure, and the retry
publishes exactly the landed file.
"""

import os
import signal
import sys
import time
from pathlib import Path

import dagster as dg
from meshtest import NYCFLIGHTS, land
from reliability_support import REPO, kill_group, output, start, wait_for, wait_paused

from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.settings import PAUSE_ENV, ensure_dagster_home, load_settings

DAEMON = str(Path(sys.executable).parent / "dagster-daemon")
WORKSPACE = f"""
load_from:
  - python_module:
      module_name: domains.fleet.definitions
      location_name: fleet
      working_directory: {REPO}
"""


def parent_of(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def engine_messages(instance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    return [r.event_log_entry.dagster_event.message for r in records]


def test_sensor_requests_a_run_and_the_daemon_retries_it_after_its_worker_died(mesh_home):
    ensure_dagster_home(load_settings())
    path = land(mesh_home, "fleet", "planes.csv")
    day_ago = time.time() - 86400  # settled long ago, for a sensor that waits for files to settle
    os.utime(path, (day_ago, day_ago))
    workspace = mesh_home.parent / "workspace.yaml"
    workspace.write_text(WORKSPACE)
    env = {**os.environ, PAUSE_ENV: "audit_written:fleet.planes"}
    daemon = start([DAEMON, "run", "-w", str(workspace)], mesh_home.parent / "daemon.log", env=env)
    try:
        step = wait_paused("audit_written", daemon, timeout=300)  # the ingestion step's process
        with dg.DagsterInstance.get() as instance:
            [run] = instance.get_runs()
            assert run.tags["dagster/sensor_name"] == "fleet_landing"  # requested by one tick
            assert run.asset_selection == {dg.AssetKey(["fleet", "planes"])}
            assert run.status == dg.DagsterRunStatus.STARTED
            worker = parent_of(step)  # the run worker (the executor's process)
            assert f"(pid: {worker})" in " ".join(
                r.event_log_entry.dagster_event.message
                for r in instance.get_records_for_run(
                    run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
                ).records
            )
            for pid in (worker, step):  # the pod dies: its processes end at once
                os.kill(pid, signal.SIGKILL)

            def retried():
                runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
                return (
                    runs
                    and runs[0].status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
                    and runs[0]
                )

            retry = wait_for(retried, 300, "the daemon's retry of the run to end", daemon, interval=1)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            why = f"Run execution process for {run.run_id} was terminated by signal 9 (SIGKILL)."
            messages = engine_messages(instance, run.run_id)
            assert any(why in m for m in messages), messages  # the code server saw it die
            assert retry.status == dg.DagsterRunStatus.SUCCESS, output(daemon)[-3000:]
            assert (retry.tags["dagster/retry_number"], retry.root_run_id) == ("1", run.run_id)
            done = {
                r.event_log_entry.step_key
                for r in instance.get_records_for_run(
                    retry.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
                ).records
            }
            assert done == {"ingest_planes"}  # write, checks and publication: one step
    finally:
        kill_group(daemon)
    table = open_catalog().load_table("fleet.planes")
    rows = len((NYCFLIGHTS / "planes.csv").read_text().splitlines()) - 1
    assert len(table.scan().to_arrow()) == rows == 3322
    assert table.metadata.refs["last-checked"].snapshot_id == table.current_snapshot().snapshot_id
    assert not [name for name in table.metadata.refs if name.startswith("audit-")]
