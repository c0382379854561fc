"""Scaffolding writes a complete, loadable code location and registers it."""

import re
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
    (landing / "example.csv.done").touch()  # the producer's word: complete
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


def _tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("name", "owner", "problem"),
    [
        ("billing\n", None, "domain name 'billing\\n' must be lower_snake_case"),
        ("bill\x07ing", None, "must be lower_snake_case"),
        ("billing_", None, "must end with a letter or digit"),
        ("billing", "team\x1b[31m", "owner 'team\\x1b[31m' must be a team name"),
        ("billing", "a: b", "owner 'a: b' must be a team name"),
    ],
)
def test_bad_names_write_nothing(tmp_path, name, owner, problem):
    shutil.copy(PROJECT_DIR / "workspace.yaml", tmp_path / "workspace.yaml")
    before = _tree(tmp_path)
    with pytest.raises(ScaffoldError, match=re.escape(problem)):
        new_domain(tmp_path, name, owner=owner)
    assert _tree(tmp_path) == before


def test_a_failure_part_way_leaves_nothing_behind(tmp_path, monkeypatch):
    """The Helm list is written last; when it fails, the domain written so far is removed and
    workspace.yaml is restored."""
    shutil.copy(PROJECT_DIR / "workspace.yaml", tmp_path / "workspace.yaml")
    chart = tmp_path / "helm" / "datamesh" / "domains.yaml"
    chart.parent.mkdir(parents=True)
    chart.write_text("# the chart's list\n")
    before = _tree(tmp_path)

    def broken(domains_dir):
        raise OSError("disk full")

    monkeypatch.setattr("mesh_assets.scaffold.render_domains_file", broken)
    with pytest.raises(OSError, match="disk full"):
        new_domain(tmp_path, "billing")
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["helm", "workspace.yaml"]
