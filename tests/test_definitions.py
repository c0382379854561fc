"""Every code location listed in workspace.yaml loads, with the mesh's conventions."""

import importlib
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mesh_assets.settings import DOMAINS_DIR, PROJECT_DIR
from mesh_assets.workspace import load_domain_contracts

WORKSPACE = yaml.safe_load((PROJECT_DIR / "workspace.yaml").read_text())["load_from"]
LOCATIONS = [(e["python_module"]["location_name"], e["python_module"]["module_name"]) for e in WORKSPACE]


def test_workspace_lists_every_domain_folder():
    folders = sorted(p.name for p in DOMAINS_DIR.iterdir() if (p / "domain.yaml").exists())
    assert sorted(name for name, _ in LOCATIONS) == folders
    for name, module in LOCATIONS:
        assert module == f"domains.{name}.definitions"


@pytest.mark.parametrize("domain,module", LOCATIONS)
def test_code_location_loads(mesh_home, domain, module):
    defs = importlib.import_module(module).defs
    assert isinstance(defs, dg.Definitions)
    graph = defs.resolve_asset_graph()
    local = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    products = load_domain_contracts(DOMAINS_DIR / domain)
    # every product is an asset; dbt models without a contract (staging) are ephemeral: no asset
    assert products and {(domain, p.name) for p in products} == {tuple(k.path) for k in local}
    assert all(k.path[0] == domain for k in local)
    for key in local:
        assert graph.get(key).group_name == domain
    checks = {(tuple(k.asset_key.path), k.name) for k in graph.asset_check_keys}
    for product in products:
        for rule in product.rules:
            assert (tuple(product.asset_key_path), rule.name) in checks
    defs.resolve_implicit_global_asset_job_def()  # the whole location forms one valid job


def test_dagster_validates_the_workspace(mesh_home):
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            str(PROJECT_DIR / "workspace.yaml"),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, _ in LOCATIONS:
        assert f"Validation successful for code location {name}" in result.stdout + result.stderr


def test_analytics_depends_on_the_four_other_code_locations(mesh_home):
    defs = importlib.import_module("domains.analytics.definitions").defs
    graph = defs.resolve_asset_graph()
    upstream_domains = {
        parent.path[0]
        for key in graph.materializable_asset_keys
        for parent in graph.get(key).parent_keys
        if parent.path[0] != "analytics"
    }
    assert upstream_domains == {"reference", "fleet", "weather", "operations"}
    for key in upstream_domains:
        assert not any(k.path[0] == key for k in graph.materializable_asset_keys)  # other locations
