"""Scaffolding writes a complete, loadable code location and registers it."""

import shutil

import dagster as dg
import pytest
import yaml

from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog
from mesh_assets.ingest.assets import ingestion_asset
from mesh_assets.quality.checks import contract_checks
from mesh_assets.scaffold import ScaffoldError, new_domain, new_product
from mesh_assets.settings import PROJECT_DIR
from mesh_assets.workspace import load_domain_contracts


def test_new_domain_is_a_complete_code_location(tmp_path, mesh_home):
    shutil.copy(PROJECT_DIR / "workspace.yaml", tmp_path / "workspace.yaml")
    written = new_domain(tmp_path, "billing", owner="billing-team")
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {
        "domains/billing/domain.yaml",
        "domains/billing/definitions.py",
        "domains/billing/products/example.yaml",
        "domains/billing/sample_data/example.csv",
        "tests/domains/test_billing.py",
        "workspace.yaml",
    } <= names
    entries = yaml.safe_load((tmp_path / "workspace.yaml").read_text())["load_from"]
    assert entries[-1]["python_module"] == {
        "module_name": "domains.billing.definitions",
        "location_name": "billing",
    }
    [product] = load_domain_contracts(tmp_path / "domains" / "billing")
    assert product.identifier == "billing.example" and product.owner == "billing-team"
    # the sample product materializes and passes its checks as generated
    landing = mesh_home / "landing" / "billing"
    landing.mkdir(parents=True)
    shutil.copy(tmp_path / "domains" / "billing" / "sample_data" / "example.csv", landing)
    result = dg.materialize(
        [ingestion_asset(product), contract_checks(product)],
        resources={"catalog": IcebergCatalog()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert len(open_catalog().load_table("billing.example").scan().to_arrow()) == 3

    from mesh_assets.governance import lint_project

    shutil.copytree(PROJECT_DIR / "domains" / "reference", tmp_path / "domains" / "reference")
    # the generated domain follows every rule (the copied workspace lists domains not copied here)
    assert [v.format(tmp_path) for v in lint_project(tmp_path) if v.rule != "MESH010"] == []
    new_product(tmp_path, "billing", "invoices", dbt=True)
    assert (tmp_path / "dbt_project" / "models" / "billing" / "invoices.sql").exists()
    with pytest.raises(ScaffoldError, match="already exists"):
        new_domain(tmp_path, "billing")
    with pytest.raises(ScaffoldError, match="lower_snake_case"):
        new_product(tmp_path, "billing", "Bad-Name")
