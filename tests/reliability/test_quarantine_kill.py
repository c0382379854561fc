"""Quarantined rows become visible when their run publishes, even when the run is killed between
publishing the product and publishing its quarantine (issue 17).

weather.observations (``quarantine: true``, blocking rules) is ingested for January 2013 from a
file with bad rows, by a Dagster run stopped after its checks published the product's main and
before the quarantine table's audit branch was published (``after_publish``), and SIGKILLed there.
The rows parked on that branch then reach the quarantine table's main through ``mesh maintain``,
or through a re-execution of the killed run from its failure, which ends SUCCESS; and when a
newer run already published that partition's quarantine, the stale branch is dropped and the
newer rows stay.
"""

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from meshtest import NYCFLIGHTS, land
from reliability_support import MESH, REPO, kill_group, start, wait_paused

from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.wap import audit_branch_name
from mesh_assets.runs import WORKER_PID_TAG, fail_dead_runs
from mesh_assets.settings import DOMAINS_DIR, PAUSE_ENV

KEY = dg.AssetKey(["weather", "observations"])
QUARANTINE = "weather.observations__quarantine"
PARTITION = "2013-01-01"
JANUARY = "2013-01-01T00:00:00+00:00 <= time_hour < 2013-02-01T00:00:00+00:00"  # its rows' _partition
HERE = Path(__file__).resolve().parent

RUN_JOB = """
import sys
import dagster as dg
from test_quarantine_kill import PARTITION, observations_job
from mesh_assets.runs import worker_tags
with dg.DagsterInstance.get() as instance:
    options = (dg.ReexecutionOptions.from_failure(sys.argv[1], instance) if len(sys.argv) > 1
               else None)
    # execute_job gives a re-execution only the tags it is handed (the UI and the daemon's run
    # retries carry the parent's over): the partition, for the steps that run again
    tags = {"dagster/partition": PARTITION, **worker_tags()}
    result = dg.execute_job(dg.reconstructable(observations_job), instance, reexecution_options=options,
                            tags=tags, raise_on_error=False)
    print("RUN", result.run_id, result.success, flush=True)
"""


def observations_job():
    """weather.observations and its checks, in process (one process to kill); for
    ``dagster.reconstructable``."""
    defs = build_domain(DOMAINS_DIR / "weather")
    job = dg.define_asset_job(
        "observations_job",
        selection=dg.AssetSelection.assets(KEY) | dg.AssetSelection.checks_for_assets(KEY),
    )
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=[job],
        resources=defs.resources,
        executor=dg.in_process_executor,
    ).resolve_job_def("observations_job")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


def land_weather(home: Path, bad_rows: tuple[int, ...]) -> None:
    """The real weather file with ``temp`` of the data rows ``bad_rows`` (1 = first data row, file
    line 2; all on 1 January 2013) set to a text no contract accepts."""
    rows = list(csv.reader((NYCFLIGHTS / "weather.csv").read_text().splitlines()))
    temp = rows[0].index("temp")
    for row in bad_rows:
        rows[row][temp] = "warm"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    land(home, "weather", "weather.csv", buffer.getvalue())


def run_job(parent_run_id: str | None = None) -> tuple[str, bool]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_JOB, *([parent_run_id] if parent_run_id else [])],
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


def kill_at(checkpoint: str, log: Path) -> str:
    """Run the job until it stops at ``checkpoint`` of weather.observations, SIGKILL it; returns
    its run id."""
    point = f"{checkpoint}:weather.observations"
    proc = start([sys.executable, "-c", RUN_JOB], log, env=_env(**{PAUSE_ENV: point}))
    try:
        wait_paused(checkpoint, proc)
    finally:
        kill_group(proc)
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs(limit=1)
        assert run.tags[WORKER_PID_TAG] == str(proc.pid) and run.status == dg.DagsterRunStatus.STARTED
    return run.run_id


def mesh_maintain() -> list[str]:
    out = subprocess.run(
        [MESH, "maintain", "weather.observations"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout.splitlines()


def product_run_ids() -> list[str]:
    """The run recorded in each snapshot of the product's main, newest first."""
    table = open_catalog().load_table("weather.observations")
    out, snapshot = [], table.current_snapshot()
    while snapshot is not None:
        out.append(snapshot.summary.additional_properties.get("mesh.dagster.run_id"))
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return out


def quarantine_main() -> list[tuple]:
    """What the quarantine table's main shows: (line, temp, reason, partition) sorted."""
    data = open_catalog().load_table(QUARANTINE).scan().to_arrow()
    return sorted(
        zip(
            data.column("_line").to_pylist(),
            data.column("temp").to_pylist(),
            data.column("_reason").to_pylist(),
            data.column("_partition").to_pylist(),
            strict=True,
        )
    )


def audit_branches(identifier: str) -> list[str]:
    return sorted(n for n in open_catalog().load_table(identifier).metadata.refs if n.startswith("audit-"))


def parked(lines: tuple[int, ...]) -> list[tuple]:
    reason = (
        "column temp: value 'warm' is not a valid double (a finite decimal number; nan and "
        "infinities need allowNonFinite: true on the column)"
    )
    return [(line, "warm", reason, JANUARY) for line in lines]


def killed_with_parked_rows(mesh_home: Path) -> str:
    """A first clean run (no bad row), then a run of a file with three bad rows killed between the
    two publications: the product's main holds the killed run, the quarantine's main not its rows,
    which wait on its branch."""
    land_weather(mesh_home, ())
    assert run_job()[1]
    land_weather(mesh_home, (1, 2, 3))
    run_id = kill_at("after_publish", mesh_home.parent / "killed.log")
    assert product_run_ids()[0] == run_id
    assert quarantine_main() == []
    assert audit_branches(QUARANTINE) == [audit_branch_name(run_id)]
    assert audit_branches("weather.observations") == []
    return run_id


def published_line(run_id: str) -> str:
    return (
        f"{QUARANTINE} published the rows parked on audit branch(es) of runs that published the "
        f"product (unless a newer run had): {audit_branch_name(run_id)}"
    )


def test_mesh_maintain_publishes_the_rows_a_killed_run_left_on_its_branch(mesh_home):
    run_id = killed_with_parked_rows(mesh_home)
    out = mesh_maintain()
    assert out[0] == f"run {run_id} marked failed: its worker process is gone (killed or crashed)"
    assert out[1] == published_line(run_id), out
    assert quarantine_main() == parked((2, 3, 4))
    assert audit_branches(QUARANTINE) == []


def test_reexecution_from_failure_publishes_the_parked_rows(mesh_home):
    run_id = killed_with_parked_rows(mesh_home)
    with dg.DagsterInstance.get() as instance:
        assert fail_dead_runs(instance) == [run_id]
    rerun, success = run_job(parent_run_id=run_id)
    assert success, "re-execution from the failure did not succeed"
    with dg.DagsterInstance.get() as instance:
        assert instance.get_run_by_id(rerun).root_run_id == run_id
    assert quarantine_main() == parked((2, 3, 4))
    assert audit_branches(QUARANTINE) == []
    # the re-execution ran the ingestion step again (write, checks, publication are one step):
    # the same file published once more on top of the killed run's publication
    assert list(dict.fromkeys(product_run_ids()))[:2] == [rerun, run_id]  # (a replace: 2 snapshots)


def test_a_newer_publication_is_never_overwritten_by_a_stale_branch(mesh_home):
    run_id = killed_with_parked_rows(mesh_home)
    land_weather(mesh_home, (5, 6))
    newer, success = run_job()
    assert success and product_run_ids()[0] == newer
    assert quarantine_main() == parked((6, 7))
    assert published_line(run_id) in mesh_maintain()  # settled: the product had been published ...
    assert quarantine_main() == parked((6, 7))  # the newer run's rows, not the killed run's
    assert audit_branches(QUARANTINE) == []


def test_the_nightly_job_removes_the_branch_of_a_run_killed_before_it_published(mesh_home):
    land_weather(mesh_home, ())
    assert run_job()[1]
    before = product_run_ids()
    land_weather(mesh_home, (1, 2, 3))
    run_id = kill_at("before_publish", mesh_home.parent / "killed.log")
    assert audit_branches(QUARANTINE) == audit_branches("weather.observations") == [audit_branch_name(run_id)]
    job = build_domain(DOMAINS_DIR / "weather").resolve_job_def("weather_maintenance")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        [observation] = [
            e.event_specific_data.asset_observation
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
        ]
    report = {k.removeprefix("maintenance/"): v.value for k, v in observation.metadata.items()}
    assert report["quarantine_published_branches"] == ""  # its run never published the product
    assert report["quarantine_removed_branches"] == audit_branch_name(run_id)
    assert report["removed_audit_branches"] == audit_branch_name(run_id)
    assert audit_branches(QUARANTINE) == audit_branches("weather.observations") == []
    assert quarantine_main() == [] and product_run_ids() == before  # nothing published
