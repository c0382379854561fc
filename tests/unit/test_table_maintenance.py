"""Maintenance on real tables: expiry keeps what must stay; orphan removal never deletes a
referenced file nor a young one, and the table reads the same before and after."""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pytest

from mesh_assets import cli
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import RUN_ID_PROPERTY
from mesh_assets.iceberg.maintenance import expire_snapshots, maintain, referenced_files, remove_orphan_files
from mesh_assets.workspace import load_contract

LATER = datetime.now(UTC) + timedelta(days=30)  # "now" for maintenance: all is old


@pytest.fixture
def airlines(reference_dir, mesh_home):
    """Four overwrites of reference.airlines: each leaves the previous data file unreferenced
    by the current snapshot (but referenced by older snapshots until they expire)."""
    product = load_contract(reference_dir / "products" / "airlines.yaml")
    catalog = open_catalog()
    from mesh_assets.iceberg.catalog import ensure_table

    table = ensure_table(catalog, product)
    for i in range(4):
        data = pa.table({"carrier": [f"A{i}", f"B{i}"], "name": ["x", "y"]}, schema=product.arrow_schema())
        if i == 0:
            table.append(data)
        else:
            table.overwrite(data)
    return product, catalog.load_table("reference.airlines")


def _all_files(table):
    root = table.location().removeprefix("file://")
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


def _age_everything(table):
    old = (datetime.now() - timedelta(days=10)).timestamp()
    for path in _all_files(table):
        os.utime(path, (old, old))


def test_expiry_keeps_current_and_tagged_snapshots(airlines):
    _, table = airlines
    snapshots = [s.snapshot_id for s in table.snapshots()]
    tagged = snapshots[1]
    table.manage_snapshots().create_tag(tagged, "audit-2013").commit()
    expired = expire_snapshots(table.refresh(), older_than=LATER)
    table = table.refresh()
    remaining = {s.snapshot_id for s in table.snapshots()}
    assert table.current_snapshot().snapshot_id in remaining and tagged in remaining
    assert set(expired) == set(snapshots) - remaining and expired


def test_orphans_are_removed_and_every_referenced_file_stays(airlines):
    _, table = airlines
    tagged = table.snapshots()[1].snapshot_id
    table.manage_snapshots().create_tag(tagged, "keep").commit()
    expire_snapshots(table.refresh(), older_than=LATER)
    table = table.refresh()
    current_rows = table.scan().to_arrow().to_pylist()
    tagged_rows = table.scan(snapshot_id=tagged).to_arrow().to_pylist()
    _age_everything(table)
    stray = os.path.join(table.location().removeprefix("file://"), "data", "stray.parquet")
    with open(stray, "wb") as f:
        f.write(b"not referenced")
    old = (datetime.now() - timedelta(days=10)).timestamp()
    os.utime(stray, (old, old))

    report = remove_orphan_files(table)
    assert report.removed and stray in report.removed
    table = open_catalog().load_table("reference.airlines")
    on_disk = _all_files(table)
    for path in referenced_files(table):  # nothing any snapshot needs is gone
        assert path in on_disk, path
    assert table.scan().to_arrow().to_pylist() == current_rows
    assert table.scan(snapshot_id=tagged).to_arrow().to_pylist() == tagged_rows


def test_young_files_and_dry_runs_are_never_deleted(airlines):
    _, table = airlines
    expire_snapshots(table, older_than=LATER)
    table = table.refresh()
    before = _all_files(table)
    report = remove_orphan_files(table)  # everything was just written: inside the window
    assert report.removed == [] and report.kept_too_young > 0
    _age_everything(table)
    dry = remove_orphan_files(table, dry_run=True)
    assert dry.removed and _all_files(table) == before


def test_maintain_uses_the_contract_retention(airlines):
    product, table = airlines
    _age_everything(table)
    report = maintain(product, open_catalog(), now=LATER, safety_window=timedelta(days=3))
    md = report.as_metadata()
    assert md["expired_snapshots"] == len(table.snapshots()) - 1
    assert md["orphan_files_removed"] > 0 and md["orphan_bytes_removed"] > 0
    assert len(open_catalog().load_table("reference.airlines").scan().to_arrow()) == 2
    assert maintain(product, open_catalog(), now=LATER).as_metadata()["expired_snapshots"] == 0


def test_stale_audit_branches_are_removed_after_retention(airlines):
    from mesh_assets.iceberg.wap import open_audit_branch

    product, table = airlines
    table = open_audit_branch(table, "audit-deadbeef")
    table.append(
        pa.table({"carrier": ["ZZ"], "name": ["rejected"]}, schema=product.arrow_schema()),
        branch="audit-deadbeef",
    )
    assert maintain(product, open_catalog()).expired_refs == []  # run unknown, young: kept
    report = maintain(product, open_catalog(), now=LATER)
    assert "audit-deadbeef" in report.expired_refs
    assert "audit-deadbeef" not in open_catalog().load_table("reference.airlines").metadata.refs


def test_audit_branches_of_runs_no_longer_running_are_removed(airlines, capsys):
    """A real Dagster instance knows three runs: one still running, one failed, one finished.
    Maintenance removes the branches of the failed and finished runs and of an unknown run
    past the grace period, and keeps the running run's branch whatever its age."""
    from mesh_assets.iceberg.maintenance import dagster_run_states, expire_audit_branches
    from mesh_assets.iceberg.wap import audit_branch_name, open_audit_branch

    product, table = airlines
    with dg.DagsterInstance.get() as instance:
        job = dg.JobDefinition(graph_def=dg.GraphDefinition(name="noop", node_defs=[]))
        runs = {}
        for status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS):
            runs[status] = instance.create_run_for_job(job_def=job, status=status).run_id
        branches = {status: audit_branch_name(run_id) for status, run_id in runs.items()}
        branches["unknown"] = "audit-0badc0de"
        for status, branch in branches.items():
            table = open_audit_branch(table, branch)
            run_id = runs.get(status, "0badc0de-0000-0000-0000-000000000000")
            data = pa.table({"carrier": ["ZZ"], "name": [str(status)]}, schema=product.arrow_schema())
            table.append(data, branch=branch, snapshot_properties={RUN_ID_PROPERTY: run_id})
            table = table.refresh()

        removed = expire_audit_branches(table, run_states=dagster_run_states(instance))
        assert removed == sorted(
            [branches[dg.DagsterRunStatus.FAILURE], branches[dg.DagsterRunStatus.SUCCESS]]
        )
        refs = open_catalog().load_table("reference.airlines").metadata.refs
        assert branches[dg.DagsterRunStatus.STARTED] in refs and "audit-0badc0de" in refs  # running; young

        report = maintain(product, open_catalog(), now=LATER, run_states=dagster_run_states(instance))
        assert report.removed_branches == ["audit-0badc0de"]  # unknown, past the grace period
        assert report.as_metadata()["removed_audit_branches"] == "audit-0badc0de"
        refs = open_catalog().load_table("reference.airlines").metadata.refs
        assert branches[dg.DagsterRunStatus.STARTED] in refs  # a running run's branch, 30 days "old"

    assert cli.main(["maintain", "reference.airlines"]) == 0  # the command asks the same instance
    assert "removed audit branch" not in capsys.readouterr().out  # nothing left to remove
