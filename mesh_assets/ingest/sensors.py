"""A sensor per source domain: it watches the landing zone and requests the ingestion of a
product whose file has new content and is complete.

A tick stats each landing file (cheap). Only when the stat changed (size, modification or change
time, inode: a replacement that keeps size and modification time still changes the inode or the
change time) and the file is complete (:mod:`mesh_assets.ingest.landing`: its ``.done`` marker,
or unchanged for ``settleSeconds``) is the file read for its SHA-256; a run is requested when that
checksum differs from the one last requested (or, for a fresh cursor, from the one recorded in
the product's current snapshot). A touched but unchanged file requests nothing. The cursor keeps
two short strings per product: the stat signature and the checksum.
"""

import json
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import dagster_partitions_def
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import SOURCE_SHA256_PROPERTY
from mesh_assets.ingest.landing import IngestionError, landing_file, pin


def _ingested_checksum(product: DataProduct) -> str | None:
    """The checksum of the landing file the product's current snapshot was ingested from."""

    catalog = open_catalog()
    if not catalog.table_exists(product.table_identifier):
        return None
    snapshot = catalog.load_table(product.table_identifier).current_snapshot()
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return summary.get(SOURCE_SHA256_PROPERTY)


def landing_sensor(domain: str, products: Sequence[DataProduct]) -> dg.SensorDefinition | None:
    """Requests the ingestion of every product whose landing file is complete and has new content."""
    ingested = [p for p in products if p.landing_source]
    if not ingested:
        return None

    @dg.sensor(
        name=f"{domain}_landing",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[dg.AssetKey(p.asset_key_path) for p in ingested],
        description=f"New, complete raw files in the {domain} landing zone.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor or "{}")
        for product in ingested:
            before = seen.get(product.identifier) or {}
            try:
                landed = landing_file(product)  # a local file or an S3 object: a stat, no read
                if landed is None or landed.signature == before.get("signature") or landed.settle_left > 0:
                    continue  # nothing there, nothing changed, or still being written
                pinned = pin(product, wait=False)
            except IngestionError as exc:  # a link, a directory, a file changing under us
                context.log.warning(str(exc))
                continue
            known = before.get("sha256") if before else _ingested_checksum(product)
            seen[product.identifier] = {"signature": pinned.signature, "sha256": pinned.sha256}
            if pinned.sha256 == known:
                continue  # touched, renamed or rewritten with the same bytes
            key = dg.AssetKey(product.asset_key_path)
            tags = {"mesh/landing_file": landed.uri.rsplit("/", 1)[-1], "mesh/source_sha256": pinned.sha256}
            partitions = dagster_partitions_def(product.dagster_partitions)
            if partitions is not None:
                keys = partitions.get_partition_keys()
                tags |= {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
            yield dg.RunRequest(
                run_key=f"{product.identifier}:{pinned.sha256}:{pinned.signature}",
                asset_selection=[key],
                tags=tags,
                asset_check_keys=[dg.AssetCheckKey(key, r.name) for r in product.rules],
            )
        context.update_cursor(json.dumps(seen, sort_keys=True))

    return _sensor
