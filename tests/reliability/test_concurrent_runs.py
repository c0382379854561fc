"""Concurrent Dagster runs of one product, as real `dagster asset materialize` processes on one
MESH_HOME and one Dagster instance: the product's write, checks and publication are one step
holding the product's concurrency pool (limit 1), so the runs follow each other whole, each
publishing on top of the one before; a run whose step span (STEP_START to STEP_SUCCESS, from the
instance's event log) overlapped another's (two claims of the embedded instance's slot at the same
instant, see below) is refused at its publication, never anything else; main has exactly one
publication per successful run; the checked tags point into main's history; no raw pyiceberg
error reaches the output."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from meshtest import land
from reliability_support import REPO

from mesh_assets.asset_specs import writer_pool
from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import RUN_ID_PROPERTY
from mesh_assets.iceberg.wap import (
    LAST_CHECKED,
    audit_branch_name,
    checked_tag_name,
    lineage_of,
    main_history,
)
from mesh_assets.settings import DOMAINS_DIR, ensure_dagster_home, load_settings
from mesh_assets.workspace import load_product

DAGSTER = str(Path(sys.executable).parent / "dagster")
RUNS = 4


def product_steps() -> set[str]:
    """The steps of fleet.planes' runs that hold its pool: those that write or publish it."""
    job = build_domain(DOMAINS_DIR / "fleet").resolve_implicit_global_asset_job_def()
    pool = writer_pool(load_product("fleet.planes"))
    return {node.name for node in job.graph.nodes if node.definition.pool == pool}


def step_span(instance: dg.DagsterInstance, run_id: str, steps: set[str]) -> tuple[float, float]:
    """From the first STEP_START of ``steps`` in the run to their last STEP_SUCCESS or
    STEP_FAILURE, as the instance's event log records them."""
    records = {
        kind: [
            r.event_log_entry
            for r in instance.get_records_for_run(run_id, of_type=kind).records
            if r.event_log_entry.step_key in steps
        ]
        for kind in (
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        )
    }
    starts = records[dg.DagsterEventType.STEP_START]
    ends = records[dg.DagsterEventType.STEP_SUCCESS] + records[dg.DagsterEventType.STEP_FAILURE]
    assert {e.step_key for e in starts} == {e.step_key for e in ends} == steps, (run_id, starts, ends)
    return min(e.timestamp for e in starts), max(e.timestamp for e in ends)


def test_concurrent_materializations_of_one_product_follow_each_other(mesh_home):
    land(mesh_home, "fleet", "planes.csv")
    ensure_dagster_home(load_settings())  # the instance limits each product's pool to one step
    with dg.DagsterInstance.get():  # its SQLite schema exists before several processes open it
        pass
    cmd = [DAGSTER, "asset", "materialize", "-m", "domains.fleet.definitions", "--select", "fleet/planes"]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(RUNS)
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for out in outputs:  # never pyiceberg's own error
        for raw in ("Cannot add snapshot with sequence number", "CommitFailedException", "NoSuchTableError"):
            assert raw not in out, out[-4000:]

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == RUNS
        failures = {
            r.run_id: [
                # the step's error wraps the platform's (dagster's DagsterExecutionStepExecutionError)
                (
                    e.dagster_event.step_failure_data.error.cause or e.dagster_event.step_failure_data.error
                ).cls_name
                for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            ]
            for r in runs
            if r.status != dg.DagsterRunStatus.SUCCESS
        }
        steps = product_steps()
        spans = sorted(step_span(instance, r.run_id, steps) + (r.run_id,) for r in runs)
        checks = {
            r.run_id: sorted(
                (
                    e.dagster_event.asset_check_evaluation_data.check_name,
                    e.dagster_event.asset_check_evaluation_data.passed,
                )
                for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
                if e.step_key in steps  # the contract's checks (not the dbt source tests)
            )
            for r in runs
        }
    # The pool holds the product from the write to the publication (one step), so runs follow
    # each other. On this embedded instance (SQLite) Dagster's slot claim is a SELECT then an
    # UPDATE without a row lock (FOR UPDATE is PostgreSQL's; dagster 1.13 sql_event_log
    # _claim_concurrency_slot), so two claims at the same instant can both win: then the later
    # publication is refused (PublishConflictError), nothing is published twice, a rerun converges.
    # So: a run that overlapped no other succeeded; a run that failed overlapped one and was refused.
    overlapped = set()
    for i, (_, end, run_id) in enumerate(spans):
        for other_start, _, other in spans[i + 1 :]:
            if other_start < end:
                overlapped |= {run_id, other}
    for run_id, errors in failures.items():
        assert run_id in overlapped, (run_id, errors)
        assert errors == ["PublishConflictError"], errors
    assert len(failures) < RUNS  # the first to claim published
    assert steps == {"ingest_planes"}
    rules = sorted((r.name, True) for r in load_product("fleet.planes").rules)
    # every published run: all of them, passed (a refused run's step raised before yielding them)
    assert all(c == rules for run_id, c in checks.items() if run_id not in failures), checks

    table = open_catalog().load_table("fleet.planes")
    publications: dict[str | None, list[int]] = {}
    for entry in table.metadata.snapshot_log:  # every snapshot main has pointed at
        summary = table.snapshot_by_id(entry.snapshot_id).summary.additional_properties
        publications.setdefault(summary.get(RUN_ID_PROPERTY), []).append(entry.snapshot_id)
    assert len(publications.pop(None)) == 1  # the empty snapshot the first audit branch started from
    order = [run_id for _, _, run_id in spans if run_id not in failures]  # the publishing runs, in turn
    assert sorted(publications) == sorted(order), publications
    assert all(len(p) == 1 for p in publications.values()), publications  # one publication per run
    for earlier, later in zip(order, order[1:]):  # each on top of the one before
        assert publications[earlier][0] in lineage_of(table, publications[later][0]), (earlier, later)
    history = main_history(table)
    assert history[0] == publications[order[-1]][0] == table.metadata.refs[LAST_CHECKED].snapshot_id
    for run_id in order:
        assert table.metadata.refs[checked_tag_name(run_id)].snapshot_id == publications[run_id][0]
        assert publications[run_id][0] in history
    # only a refused run keeps its audit branch (maintenance removes it once the run is over)
    assert {r for r in table.metadata.refs if r.startswith("audit-")} == {
        audit_branch_name(r) for r in failures
    }
    assert table.scan().to_arrow().num_rows == 3322  # the planes, once
    waits = [round(start - end, 2) for (_, end, _), (start, _, _) in zip(spans, spans[1:])]
    print(f"{RUNS} runs, each published once; gaps between one run's step and the next: {waits} s")
    assert os.environ["DAGSTER_HOME"].startswith(str(mesh_home))
