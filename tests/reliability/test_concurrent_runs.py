"""Concurrent Dagster runs of one product, as real `dagster asset materialize` processes on one
MESH_HOME and one Dagster instance. The product's pool lets one of its steps run at a time
(the ingestions ran one after the other here), the retry policy covers whatever still collides,
and the outcome is always consistent: each run ends successfully or with a clear error (a run
whose write came before another run's publication is refused at its own publication: the pool
is per step, and write and publish are two steps); main has exactly one publication per
successful run; the checked tags point into main's history; no raw pyiceberg error reaches
the output."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from meshtest import land
from reliability_support import REPO

from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import RUN_ID_PROPERTY
from mesh_assets.iceberg.wap import LAST_CHECKED, checked_tag_name, main_history
from mesh_assets.settings import ensure_dagster_home, load_settings

DAGSTER = str(Path(sys.executable).parent / "dagster")
RUNS = 4


def test_concurrent_materializations_of_one_product(mesh_home):
    land(mesh_home, "fleet", "planes.csv")
    ensure_dagster_home(load_settings())  # the instance limits each product's pool to one step
    with dg.DagsterInstance.get():  # its SQLite schema exists before several processes open it
        pass
    cmd = [DAGSTER, "asset", "materialize", "-m", "domains.fleet.definitions", "--select", "fleet/planes"]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(RUNS)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for out in outputs:  # a clear error at worst, never pyiceberg's own
        for raw in ("Cannot add snapshot with sequence number", "CommitFailedException", "NoSuchTableError"):
            assert raw not in out, out[-4000:]

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == RUNS
        succeeded = {r.run_id for r in runs if r.status == dg.DagsterRunStatus.SUCCESS}
        failures = {
            r.run_id: [
                e.dagster_event.step_failure_data.error
                for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            ]
            for r in runs
            if r.run_id not in succeeded
        }
    assert succeeded, failures
    for errors in failures.values():  # a run that lost the publish race says so, nothing else
        assert [e.cause.cls_name if e.cause else e.cls_name for e in errors] == ["PublishConflictError"], (
            errors
        )

    table = open_catalog().load_table("fleet.planes")
    current = {e.snapshot_id for e in table.metadata.snapshot_log}
    publications = {}
    for snapshot_id in current:
        summary = table.snapshot_by_id(snapshot_id).summary.additional_properties
        publications.setdefault(summary.get(RUN_ID_PROPERTY), []).append(snapshot_id)
    for run_id in succeeded:
        assert len(publications.get(run_id, [])) == 1, (run_id, publications)
    assert not set(publications) & set(failures)
    history = main_history(table)
    assert table.metadata.refs[LAST_CHECKED].snapshot_id in history
    for run_id in succeeded:
        assert table.metadata.refs[checked_tag_name(run_id)].snapshot_id in history
    for run_id in failures:
        assert checked_tag_name(run_id) not in table.metadata.refs
    assert table.scan().to_arrow().num_rows == 3322  # the planes, once
    print(f"{len(succeeded)} of {RUNS} runs published, {len(failures)} refused: {sorted(map(str, failures))}")
    assert os.environ["DAGSTER_HOME"].startswith(str(mesh_home))
