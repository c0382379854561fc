"""dbt source tests (contract rules with ``engine: dbt`` on an ingested product) run as asset
checks on the product, through Dagster, on the local target."""

import dagster as dg
from meshtest import NYCFLIGHTS, land

from mesh_assets.definitions import build_domain
from mesh_assets.settings import DOMAINS_DIR


def test_source_test_is_a_warn_check_on_the_ingested_product(mesh_home):
    planes = (NYCFLIGHTS / "planes.csv").read_text()
    land(
        mesh_home,
        "fleet",
        "planes.csv",
        planes + "N0STEAM,2004,Fixed wing single engine,STEPHENSON,ROCKET,1,2,NA,Steam\n",
    )
    defs = build_domain(DOMAINS_DIR / "fleet")
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    [name] = [n for n in evaluations if n.startswith("source_accepted_values_fleet_planes_engine")]
    check = evaluations[name]
    assert check.asset_key == dg.AssetKey(["fleet", "planes"])
    assert check.passed is False
    assert check.severity == dg.AssetCheckSeverity.WARN  # severity: warn in the contract
    # exactly the one unknown engine type (dagster-dbt: the failures dbt counted)
    assert check.metadata["dagster_dbt/failed_row_count"].value == 1
    assert result.success  # a warning does not fail the run
