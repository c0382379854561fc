"""One domain folder -> one ``dagster.Definitions`` (one code location).

A domain is ``domains/<name>/`` with ``domain.yaml``, ``products/*.yaml`` (one contract per
product) and, for products built by dbt, models under ``dbt_project/models/<name>/``.
Platform-wide policy is applied here once, never per asset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from mesh_assets.contract.model import DataProduct
from mesh_assets.dbt.domain import dbt_domain_assets, dbt_resource
from mesh_assets.deploy import step_executor
from mesh_assets.iceberg.catalog import IcebergCatalog
from mesh_assets.iceberg.maintenance import maintenance_job
from mesh_assets.ingest.assets import ingestion_asset
from mesh_assets.ingest.quarantine import maintain_quarantine
from mesh_assets.ingest.sensors import landing_sensor
from mesh_assets.ingest.stream_assets import stream_asset, stream_sensor
from mesh_assets.openmetadata.sensor import openmetadata_sensor
from mesh_assets.quality.checks import contract_checks, step_checks
from mesh_assets.runs import dead_runs_sensor
from mesh_assets.settings import check_secrets, load_settings
from mesh_assets.workspace import load_domain


def build_domain(path: Path | str) -> dg.Definitions:
    """The Definitions of the domain at ``path`` (a folder, or a file inside it). A credential
    the settings refer to but that is missing stops the code location here, naming its Secret."""
    check_secrets()
    domain = load_domain(path)
    settings = load_settings()
    # an ingested product's checks run in its ingestion step (write, checks, publication: one
    # pool slot); a dbt model's in a step of their own after the domain's dbt step
    ingested = [p for p in domain.products if p.landing_source]
    streams = [p for p in domain.products if p.stream is not None]
    assets: list = [ingestion_asset(p, step_checks(p)) for p in ingested]
    assets += [stream_asset(p, step_checks(p)) for p in streams]
    assets += dbt_domain_assets(domain.name, domain.products, settings)
    assets = apply_policies(assets, domain.products)
    built = [p for p in domain.products if not p.landing_source and p.stream is None]
    checks = [c for p in built if (c := contract_checks(p)) is not None]
    maintenance, nightly = maintenance_job(domain.name, domain.products, maintain_quarantine)
    sensor = landing_sensor(domain.name, domain.products)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[maintenance],
        schedules=[nightly],
        sensors=([sensor] if sensor else [])
        + [stream_sensor(p) for p in streams]
        + [openmetadata_sensor(domain.name), dead_runs_sensor(domain.name)],
        resources={"catalog": IcebergCatalog(), "dbt": dbt_resource(settings)},
        executor=step_executor(),  # MESH_EXECUTOR=k8s: each step its own Kubernetes Job
    )


def apply_policies(assets: Sequence, products: Sequence[DataProduct]) -> list:
    """Freshness from each contract's SLA, eager automation for derived products."""
    by_key = {dg.AssetKey(p.asset_key_path): p for p in products}

    def policy(spec: dg.AssetSpec) -> dg.AssetSpec:
        product = by_key.get(spec.key)
        changes = {}
        if product is not None and product.freshness is not None:
            changes["freshness_policy"] = dg.FreshnessPolicy.time_window(fail_window=product.freshness)
        if product is None or product.transform == "dbt":
            changes["automation_condition"] = dg.AutomationCondition.eager()
        return spec.replace_attributes(**changes) if changes else spec

    return list(dg.map_asset_specs(policy, assets))
