"""A sensor per source domain: it watches the landing zone and requests the ingestion of a
product whose file is new or changed."""

import json
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import dagster_partitions_def
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import SOURCE_SIGNATURE_PROPERTY
from mesh_assets.ingest.landing import landing_file


def _already_ingested(product: DataProduct, signature: str) -> bool:
    """Whether the product's current snapshot was ingested from exactly this landed file."""

    catalog = open_catalog()
    if not catalog.table_exists(product.table_identifier):
        return False
    snapshot = catalog.load_table(product.table_identifier).current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return summary.get(SOURCE_SIGNATURE_PROPERTY) == signature


def landing_sensor(domain: str, products: Sequence[DataProduct]) -> dg.SensorDefinition | None:
    """Requests the ingestion of every product whose landing file is new or changed."""
    ingested = [p for p in products if p.source]
    if not ingested:
        return None

    @dg.sensor(
        name=f"{domain}_landing",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[dg.AssetKey(p.asset_key_path) for p in ingested],
        description=f"New or changed raw files in the {domain} landing zone.",
    )
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
                tags |= {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            yield dg.RunRequest(
                run_key=f"{product.identifier}:{signature}",
                asset_selection=[key],
                tags=tags,
                asset_check_keys=[dg.AssetCheckKey(key, r.name) for r in product.rules],
            )
        context.update_cursor(json.dumps(seen, sort_keys=True))

    return _sensor
