"""The nightly ``<domain>_maintenance`` job and ``mesh maintain`` on a real domain, with effects
counted: two published versions of fleet.planes, a run killed after writing its audit branch
and a stray file in the table's folder.

``mesh maintain`` with today's clock fails the killed run and removes its audit branch, and
nothing else (every file is younger than the safety window, every snapshot younger than the
retention). The job, run as Dagster runs it with the clock eight days later (past the 7-day
retention and the 3-day window), expires the old snapshots and the checked tags, deletes every
file no remaining snapshot needs (the stray one included) and leaves the data as it was.
"""

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from meshtest import bumped, land
from reliability_support import (
    MESH,
    REPO,
    failure_message,
    kill_group,
    mesh_materialize,
    pause_env,
    start,
    wait_paused,
)

import mesh_assets.iceberg.maintenance as maintenance
from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.wap import audit_branch_name
from mesh_assets.settings import DOMAINS_DIR


def planes_version(bump: int) -> str:
    """The real planes file with every seat count raised by ``bump``."""
    return bumped("planes.csv", "seats", bump)


def files_on_disk(table) -> set[str]:
    root = Path(table.location().removeprefix("file://"))
    return {str(p) for p in root.rglob("*") if p.is_file()}


def test_maintenance_job_and_mesh_maintain_remove_exactly_what_nothing_needs(mesh_home, monkeypatch):
    for bump in (0, 1):  # two published versions
        land(mesh_home, "fleet", "planes.csv", planes_version(bump))
        mesh_materialize("fleet")
    land(mesh_home, "fleet", "planes.csv", planes_version(2))
    proc = start(
        [MESH, "materialize", "fleet"],
        mesh_home.parent / "killed.log",
        env=pause_env("audit_written:fleet.planes"),
    )
    try:
        wait_paused("audit_written", proc)
    finally:
        kill_group(proc)
    with dg.DagsterInstance.get() as instance:
        [killed] = instance.get_runs(limit=1)
    assert killed.status == dg.DagsterRunStatus.STARTED

    catalog = open_catalog()
    table = catalog.load_table("fleet.planes")
    branch = audit_branch_name(killed.run_id)
    current = table.current_snapshot().snapshot_id
    rows = table.scan().to_arrow().sort_by("tailnum")
    assert branch in table.metadata.refs and len(table.snapshots()) >= 4
    stray = table.location().removeprefix("file://") + "/data/stray-00000.parquet"
    with open(stray, "wb") as out:
        out.write(b"written by a writer that never committed")
    before = files_on_disk(table)
    snapshots_before = {s.snapshot_id for s in table.snapshots()}

    # today: everything is young, `mesh maintain` fails the killed run and removes only its branch
    result = subprocess.run(
        [MESH, "maintain", "fleet.planes"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"run {killed.run_id} marked failed: its worker process is gone (killed or crashed)",
        "fleet.planes                 expired 0 snapshot(s), 1 tag(s)/audit branch(es); removed 0 orphan "
        "file(s), 0 bytes; 1 kept as too young",  # the stray file
        f"{'':28} compacted 0 partition(s): data files 1 -> 1, manifests 1 -> 1",
        f"{'':28} removed audit branch(es) of runs no longer running: {branch}",
    ], result.stdout
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert "it was killed or crashed" in failure_message(instance, killed.run_id)
    table = catalog.load_table("fleet.planes")
    assert branch not in table.metadata.refs and table.current_snapshot().snapshot_id == current
    after = files_on_disk(table)
    assert before <= after and all(f.endswith(".metadata.json") for f in after - before)  # nothing deleted

    # eight days later, at night: the job as the schedule runs it
    later = datetime.now(UTC) + timedelta(days=8)
    monkeypatch.setattr(maintenance, "_now", lambda: later)
    job = build_domain(DOMAINS_DIR / "fleet").resolve_job_def("fleet_maintenance")
    with dg.DagsterInstance.get() as instance:
        run = job.execute_in_process(instance=instance)
        assert run.success
        [observation] = [
            e.event_specific_data.asset_observation
            for e in run.all_events
            if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
        ]
    table = catalog.load_table("fleet.planes")
    report = {k.removeprefix("maintenance/"): v.value for k, v in observation.metadata.items()}
    assert table.current_snapshot().snapshot_id == current
    assert set(table.metadata.refs) == {"main", "last-checked"}  # the checked-* tags expired
    assert report["expired_refs"] == 2  # checked-<run> of both versions
    remaining = {s.snapshot_id for s in table.snapshots()}
    assert (
        report["expired_snapshots"]
        == len(snapshots_before - remaining)
        == len(snapshots_before) - len(remaining)
    )
    assert table.current_snapshot().parent_snapshot_id not in remaining  # main's history expired
    after = files_on_disk(table)
    assert after == maintenance.referenced_files(table)  # no file that nothing needs, none missing
    removed = before - after
    assert stray in removed and report["orphan_files_removed"] == len(removed) > 1
    assert table.scan().to_arrow().sort_by("tailnum").equals(rows)  # the data did not change


KILLED_RUN = """
import os, signal
import dagster as dg
from mesh_assets.runs import worker_tags

@dg.op
def die():
    os.kill(os.getpid(), signal.SIGKILL)

@dg.job
def doomed():
    die()

with dg.DagsterInstance.get() as instance:
    doomed.execute_in_process(instance=instance, tags=worker_tags())
"""


def test_the_dead_runs_sensor_fails_a_killed_in_process_run_at_its_next_tick(mesh_home):
    """A run whose process was killed mid-step stays STARTED until one tick of the domain's
    ``<domain>_dead_runs`` sensor (running by default, at most one tick a minute) fails it."""
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN], cwd=REPO, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    sensor = build_domain(DOMAINS_DIR / "fleet").resolve_sensor_def("fleet_dead_runs")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 60
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert (tick.run_requests, tick.skip_message) == ([], "1 dead run(s) marked failed")
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert "it was killed or crashed" in failure_message(instance, run.run_id)
        again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        assert again.skip_message == "no dead run"


def test_the_maintenance_schedule_requests_the_maintenance_job_every_night(mesh_home):
    defs = build_domain(DOMAINS_DIR / "fleet")
    schedule = defs.resolve_schedule_def("fleet_maintenance_schedule")
    assert (schedule.cron_schedule, schedule.default_status) == (
        "30 3 * * *",
        dg.DefaultScheduleStatus.RUNNING,
    )
    with dg.DagsterInstance.get() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=datetime(2026, 11, 30, 3, 30, tzinfo=UTC)
        )
        tick = schedule.evaluate_tick(context)
    [request] = tick.run_requests
    assert isinstance(request, dg.RunRequest) and schedule.job_name == "fleet_maintenance"
    assert defs.resolve_job_def(schedule.job_name).name == "fleet_maintenance"
