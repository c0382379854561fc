"""The nightly ``<domain>_maintenance`` job and ``mesh maintain`` on a real domain, with effects
counted: two published versions of fleet.planes, a run killed after writing its audit branch
and a stray file in the table's folder.

``mesh maintain`` with today's clock removes nothing (every file is younger than the safety
window, every snapshot younger than the retention). The job, run as Dagster runs it with the
clock eight days later (past the 7-day retention and the 3-day window), fails the killed run,
expires the old snapshots, the checked tags and the audit branch, deletes every file no
remaining snapshot needs (the stray one included) and leaves the data as it was.
"""

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
from meshtest import land
from reliability_support import (
    MESH,
    REPO,
    bumped,
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

    # today: everything is young, `mesh maintain` removes nothing
    result = subprocess.run(
        [MESH, "maintain", "fleet.planes"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "fleet.planes                 expired 0 snapshot(s), 0 tag(s)/audit branch(es); removed 0 orphan file(s)"
        in (result.stdout)
    ), result.stdout
    assert files_on_disk(catalog.load_table("fleet.planes")) == before

    # eight days later, at night: the job as the schedule runs it
    later = datetime.now(UTC) + timedelta(days=8)
    monkeypatch.setattr(maintenance, "_now", lambda: later)
    job = build_domain(DOMAINS_DIR / "fleet").resolve_job_def("fleet_maintenance")
    with dg.DagsterInstance.get() as instance:
        run = job.execute_in_process(instance=instance)
        assert run.success
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert "it was killed or crashed" in failure_message(instance, killed.run_id)
        [observation] = [
            e.event_specific_data.asset_observation
            for e in run.all_events
            if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
        ]
    table = catalog.load_table("fleet.planes")
    report = {k.removeprefix("maintenance/"): v.value for k, v in observation.metadata.items()}
    assert table.current_snapshot().snapshot_id == current
    assert set(table.metadata.refs) == {"main", "last-checked"}  # checked-* tags and the branch expired
    assert report["expired_refs"] == 3  # checked-<run> of both versions, the killed run's branch
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
