"""Write-audit-publish: new data reaches main (what consumers read) only after every blocking
check passed on exactly that data; rejected data stays inspectable on its audit branch."""

import uuid

import dagster as dg
from meshtest import NYCFLIGHTS, land

from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.iceberg.wap import audit_branch_name, checked_tag_name
from mesh_assets.ingest.assets import ingest, ingestion_asset
from mesh_assets.ingest.quarantine import QUARANTINE_SUFFIX
from mesh_assets.quality.checks import contract_checks, step_checks
from mesh_assets.read_api import read
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract

KEY = dg.AssetKey(["reference", "airlines"])


def _run(product, instance, **kwargs):
    return dg.materialize(
        [ingestion_asset(product, step_checks(product))],  # as build_domain: checks in the step
        resources={"catalog": IcebergCatalog()},
        instance=instance,
        raise_on_error=False,
        **kwargs,
    )


def test_failed_blocking_check_leaves_main_untouched(mesh_home):
    airlines = load_contract(DOMAINS_DIR / "reference" / "products" / "airlines.yaml")
    instance = dg.DagsterInstance.ephemeral()
    land(mesh_home, "reference", "airlines.csv")
    assert _run(airlines, instance).success
    good = open_catalog().load_table("reference.airlines").current_snapshot().snapshot_id

    rows = ["carrier,name"] + [f"C{i},Carrier {i}" for i in range(12)] + ["c1,lower case"]
    land(mesh_home, "reference", "airlines.csv", "\n".join(rows) + "\n")
    result = _run(airlines, instance)
    assert not result.success  # the blocking check failed

    table = open_catalog().load_table("reference.airlines")
    assert table.current_snapshot().snapshot_id == good  # consumers still read the good data
    assert len(read("reference.airlines")) == 16
    branch = audit_branch_name(result.run_id)
    rejected = table.metadata.refs[branch].snapshot_id  # kept for inspection ...
    assert len(read("reference.airlines", as_of=branch)) == 13
    evaluation = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "match_regex_carrier"
    )
    assert not evaluation.passed
    assert evaluation.metadata["wap/branch"].value == branch  # ... and named in the check
    assert evaluation.metadata["iceberg/snapshot_id"].value == str(rejected)
    assert evaluation.metadata["wap/published"].value is False


def test_passing_checks_publish_exactly_the_checked_snapshot(mesh_home):
    airlines = load_contract(DOMAINS_DIR / "reference" / "products" / "airlines.yaml")
    instance = dg.DagsterInstance.ephemeral()
    land(mesh_home, "reference", "airlines.csv")
    result = _run(airlines, instance)
    assert result.success
    table = open_catalog().load_table("reference.airlines")
    materialized = instance.get_latest_materialization_event(KEY).asset_materialization.metadata
    assert materialized["wap/published"].value is False  # written to the branch, not main ...
    checked = [e.metadata["iceberg/snapshot_id"].value for e in result.get_asset_check_evaluations()]
    assert set(checked) == {materialized["iceberg/snapshot_id"].value}
    assert str(table.current_snapshot().snapshot_id) == checked[0]  # ... then published after checks
    assert audit_branch_name(result.run_id) not in table.metadata.refs


def test_a_run_that_loses_the_publish_race_moves_no_tag(mesh_home):
    """Run B writes and audits on top of main, run C publishes meanwhile: B's checks pass but
    its publication is refused, and neither ``last-checked`` nor ``checked-<B>`` moves."""
    airlines = load_contract(DOMAINS_DIR / "reference" / "products" / "airlines.yaml")
    instance = dg.DagsterInstance.ephemeral()
    land(mesh_home, "reference", "airlines.csv")
    assert _run(airlines, instance).success

    loser = str(uuid.uuid4())
    real = (NYCFLIGHTS / "airlines.csv").read_text()
    land(mesh_home, "reference", "airlines.csv", real.replace("United Air Lines Inc.", "Loser Air"))
    ingest(airlines, open_catalog(), run_id=loser, branch=audit_branch_name(loser))
    land(mesh_home, "reference", "airlines.csv", real.replace("United Air Lines Inc.", "Winner Air"))
    winner = _run(airlines, instance)
    assert winner.success
    table = open_catalog().load_table("reference.airlines")
    published = table.current_snapshot().snapshot_id
    assert table.metadata.refs["last-checked"].snapshot_id == published

    defs = dg.Definitions(
        assets=[ingestion_asset(airlines, step_checks(airlines))],
        resources={"catalog": IcebergCatalog()},
        jobs=[dg.define_asset_job("checks", selection=dg.AssetSelection.checks_for_assets(KEY))],
    )
    lost = defs.resolve_job_def("checks").execute_in_process(
        instance=instance, run_id=loser, raise_on_error=False
    )
    assert not lost.success
    failure = next(e for e in lost.all_events if e.is_step_failure).step_failure_data.error.cause
    assert failure.cls_name == "PublishConflictError"
    assert (
        f"table reference.airlines: main moved to {published} after audit branch {audit_branch_name(loser)} "
        "was opened; the audited snapshot"
    ) in failure.message
    assert "stays on the branch, unpublished, and no tag moved" in failure.message
    table = table.refresh()
    assert table.current_snapshot().snapshot_id == published
    assert table.metadata.refs["last-checked"].snapshot_id == published  # not the loser's snapshot
    assert checked_tag_name(loser) not in table.metadata.refs
    assert checked_tag_name(winner.run_id) in table.metadata.refs
    names = read("reference.airlines", filter="carrier == 'UA'").column("name").to_pylist()
    assert names == ["Winner Air"]


WEATHER = (
    "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour"
)
GOOD_HOURS = [
    "EWR,2013,1,1,1,39.02,26.06,59.37,270,10.3,NA,0,1012,10,2013-01-01T06:00:00Z",
    "JFK,2013,1,1,1,39.02,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-01-01T06:00:00Z",
]
UNREADABLE = "LGA,2013,1,1,1,warm,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-01-01T06:00:00Z"
TOO_HOT = "LGA,2013,1,1,2,500,26.96,61.63,250,8.05,NA,0,1012.3,10,2013-01-01T07:00:00Z"


def test_quarantined_rows_become_visible_only_when_their_run_publishes(mesh_home):
    observations = load_contract(DOMAINS_DIR / "weather" / "products" / "observations.yaml")
    instance = dg.DagsterInstance.ephemeral()
    quarantine = "weather.observations" + QUARANTINE_SUFFIX

    land(mesh_home, "weather", "weather.csv", "\n".join([WEATHER, *GOOD_HOURS, UNREADABLE, TOO_HOT]) + "\n")
    failed = _run(observations, instance, partition_key="2013-01-01")
    assert not failed.success  # temp 500 fails the blocking range check
    catalog = open_catalog()
    assert read(quarantine).num_rows == 0  # the failed run's bad row is not visible ...
    branch = audit_branch_name(failed.run_id)
    held = read(quarantine, as_of=branch)  # ... it waits on the run's branch
    assert held.select(["_line", "_reason"]).to_pylist() == [
        {
            "_line": 4,
            "_reason": "column temp: value 'warm' is not a valid double (a finite decimal number; "
            "nan and infinities need allowNonFinite: true on the column)",
        }
    ]
    assert catalog.load_table("weather.observations").scan().to_arrow().num_rows == 0

    land(mesh_home, "weather", "weather.csv", "\n".join([WEATHER, *GOOD_HOURS, UNREADABLE]) + "\n")
    for _ in range(2):  # published, then a rerun converges
        passed = _run(observations, instance, partition_key="2013-01-01")
        assert passed.success
        parked = read(quarantine)
        assert (
            parked.select(["_line", "_reason"]).to_pylist() == held.select(["_line", "_reason"]).to_pylist()
        )
        table = catalog.load_table(quarantine)
        assert not [r for r in table.metadata.refs if r == audit_branch_name(passed.run_id)]
    assert read("weather.observations").num_rows == 2


def airlines_job():
    """The airlines ingestion and, in a step of their own (as a dbt model's), its checks as one
    in-process job (for ``dg.reconstructable``)."""
    airlines = load_contract(DOMAINS_DIR / "reference" / "products" / "airlines.yaml")
    return dg.Definitions(
        assets=[ingestion_asset(airlines)],
        asset_checks=[contract_checks(airlines)],
        jobs=[dg.define_asset_job("airlines", executor_def=dg.in_process_executor)],
        resources={"catalog": IcebergCatalog()},
    ).resolve_job_def("airlines")


def test_a_reexecution_whose_audit_branch_was_removed_fails_rather_than_check_main(mesh_home):
    """A failed run's data waits on its audit branch; maintenance removes the branch of a run
    no longer running. Re-executing that run from its failure afterwards must not check main
    instead (which would pass and leave the data silently unpublished): it fails and says what
    to do."""
    from mesh_assets.iceberg.maintenance import dagster_run_states, expire_audit_branches

    job = dg.reconstructable(airlines_job)
    with dg.instance_for_test() as instance:
        land(mesh_home, "reference", "airlines.csv")
        assert dg.execute_job(job, instance).success
        rows = ["carrier,name"] + [f"C{i},Carrier {i}" for i in range(12)] + ["c1,lower case"]
        land(mesh_home, "reference", "airlines.csv", "\n".join(rows) + "\n")
        with dg.execute_job(job, instance) as failed:
            assert not failed.success
            failed_id = failed.run_id
        branch = audit_branch_name(failed_id)
        table = open_catalog().load_table("reference.airlines")
        assert expire_audit_branches(table, run_states=dagster_run_states(instance)) == [branch]

        options = dg.ReexecutionOptions.from_failure(failed_id, instance)
        with dg.execute_job(job, instance, reexecution_options=options) as again:
            assert not again.success
            [failure] = [e for e in again.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
            assert failure.step_key == "check_airlines"  # only the failed step was re-executed
            assert failure.step_failure_data.user_failure_data.description == (
                f"reference.airlines: the audit branch {branch} holding this run's unpublished data is "
                "gone (maintenance removes the audit branches of runs that are no longer running): "
                "nothing was published; materialize the product again instead of re-executing this run"
            )
    assert open_catalog().load_table("reference.airlines").current_snapshot().snapshot_id == (
        table.current_snapshot().snapshot_id
    )
