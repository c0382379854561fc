"""One domain folder -> one ``dagster.Definitions`` (one code location).

A domain is ``domains/<name>/`` with ``domain.yaml``, ``products/*.yaml`` (one contract per
product) and, for products built by dbt, models under ``dbt_project/models/<name>/``.
Platform-wide policy is applied here once, never per asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

from mesh_assets.automation import apply_policies, landing_sensor
from mesh_assets.catalog import IcebergCatalog
from mesh_assets.contracts import ContractError, DataProduct, load_domain_contracts
from mesh_assets.dbt import dbt_domain_assets, dbt_resource
from mesh_assets.deploy import step_executor
from mesh_assets.ingestion import ingestion_asset
from mesh_assets.openmetadata.sensor import openmetadata_sensor
from mesh_assets.quality import contract_checks
from mesh_assets.settings import load_settings
from mesh_assets.table_maintenance import maintenance_job

DOMAIN_TYPES = ("source-aligned", "consumer-aligned", "aggregate")


@dataclass(frozen=True)
class Domain:
    name: str
    path: Path
    description: str
    owner: str
    type: str
    products: tuple[DataProduct, ...]


def load_domain(path: Path | str) -> Domain:
    path = Path(path)
    if path.is_file():  # a module's __file__
        path = path.parent
    meta_file = path / "domain.yaml"
    if not meta_file.exists():
        raise ContractError(meta_file, "missing: every domain needs a domain.yaml "
                            "(name, description, owner, type)")
    meta = yaml.safe_load(meta_file.read_text()) or {}
    for key in ("name", "owner", "type"):
        if not meta.get(key):
            raise ContractError(meta_file, f"missing required field '{key}'")
    if meta["name"] != path.name:
        raise ContractError(meta_file, f"name '{meta['name']}' must equal the folder name "
                            f"'{path.name}'")
    if meta["type"] not in DOMAIN_TYPES:
        raise ContractError(meta_file, f"type '{meta['type']}' is not one of "
                            f"{', '.join(DOMAIN_TYPES)}")
    return Domain(name=meta["name"], path=path, description=meta.get("description", "").strip(),
                  owner=meta["owner"], type=meta["type"],
                  products=tuple(load_domain_contracts(path)))


def build_domain(path: Path | str) -> dg.Definitions:
    """The Definitions of the domain at ``path`` (a folder, or a file inside it)."""
    domain = load_domain(path)
    settings = load_settings()
    assets: list = [ingestion_asset(p) for p in domain.products if p.source]
    assets += dbt_domain_assets(domain.name, domain.products, settings)
    assets = apply_policies(assets, domain.products)
    checks = [c for p in domain.products if (c := contract_checks(p)) is not None]
    maintenance, nightly = maintenance_job(domain.name, domain.products)
    sensor = landing_sensor(domain.name, domain.products)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[maintenance],
        schedules=[nightly],
        sensors=([sensor] if sensor else []) + [openmetadata_sensor(domain.name)],
        resources={"catalog": IcebergCatalog(), "dbt": dbt_resource(settings)},
        executor=step_executor(),  # MESH_EXECUTOR=k8s: each step its own Kubernetes Job
    )
