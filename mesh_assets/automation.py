"""Automation: landing sensors, declarative automation and freshness, applied once per domain.

* A sensor per source-aligned domain watches ``$MESH_HOME/landing/<domain>/`` (an S3 prefix in
  production): a new or changed raw file requests its product's ingestion, with its checks (so
  write-audit-publish can publish it). Partitioned products are re-ingested as one single-run
  backfill of all their partitions.
* Products built from other products (dbt models) update when their upstream products change
  and are not failing their blocking checks: ``AutomationCondition.eager()``.
* A contract's freshness SLA (``slaProperties: [{property: freshness, value: 24, unit: h}]``)
  becomes the asset's freshness policy, shown in the UI.
"""

import json
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mesh_assets.contracts import DataProduct
from mesh_assets.landing import landing_file
from mesh_assets.partitions import dagster_partitions_def


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


def _already_ingested(product: DataProduct, signature: str) -> bool:
    """Whether the product's current snapshot was ingested from exactly this landed file."""
    from mesh_assets.catalog import open_catalog

    catalog = open_catalog()
    if not catalog.table_exists(product.table_identifier):
        return False
    snapshot = catalog.load_table(product.table_identifier).current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return summary.get("mesh.source.signature") == signature


def landing_sensor(domain: str, products: Sequence[DataProduct]) -> dg.SensorDefinition | None:
    """Requests the ingestion of every product whose landing file is new or changed."""
    ingested = [p for p in products if p.source]
    if not ingested:
        return None

    @dg.sensor(name=f"{domain}_landing", minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               asset_selection=[dg.AssetKey(p.asset_key_path) for p in ingested],
               description=f"New or changed raw files in the {domain} landing zone.")
    def _sensor(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor or "{}")
        for product in ingested:
            landed = landing_file(product)  # a local file or an S3 object
            if landed is None:
                continue
            signature = landed.signature
            if product.identifier not in seen and _already_ingested(product, signature):
                seen[product.identifier] = signature  # a fresh sensor: not new, ingested before
            if seen.get(product.identifier) == signature:
                continue
            seen[product.identifier] = signature
            key = dg.AssetKey(product.asset_key_path)
            tags = {"mesh/landing_file": landed.uri.rsplit("/", 1)[-1]}
            partitions = dagster_partitions_def(product.dagster_partitions)
            if partitions is not None:
                keys = partitions.get_partition_keys()
                tags |= {ASSET_PARTITION_RANGE_START_TAG: keys[0],
                         ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            yield dg.RunRequest(
                run_key=f"{product.identifier}:{signature}", asset_selection=[key], tags=tags,
                asset_check_keys=[dg.AssetCheckKey(key, r.name) for r in product.rules])
        context.update_cursor(json.dumps(seen, sort_keys=True))

    return _sensor
