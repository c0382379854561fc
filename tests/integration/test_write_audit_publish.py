"""Write-audit-publish: new data reaches main (what consumers read) only after every blocking
check passed on exactly that data; rejected data stays inspectable on its audit branch."""

import dagster as dg
from meshtest import land

from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.iceberg.wap import audit_branch_name
from mesh_assets.ingest.assets import ingestion_asset
from mesh_assets.quality.checks import contract_checks
from mesh_assets.read_api import read
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract

KEY = dg.AssetKey(["reference", "airlines"])


def _run(product, instance, **kwargs):
    return dg.materialize(
        [ingestion_asset(product), contract_checks(product)],
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
