"""Streaming products in Dagster: the asset that commits one micro-batch, and the sensor that
asks for it while the topic holds messages main has not (see :mod:`mesh_assets.ingest.stream`).

A run of ``ingest_<product>`` reads one batch from main's position, commits it with its
offsets to the run's audit branch, and the product's checks publish it in the same step, as for
a landing file.
The sensor ``<domain>_<product>_stream`` requests a run when the topic's end lies beyond
main's position and no run of the product is queued or in progress, so batches follow each
other without overlapping; while the product is stopped it requests nothing and says why.
"""

import dagster as dg
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, DagsterRunStatus, RunsFilter

from mesh_assets.asset_specs import StepChecks, asset_spec, writer_pool
from mesh_assets.contract.model import DataProduct
from mesh_assets.iceberg.catalog import IcebergCatalog, open_catalog, snapshot_metadata
from mesh_assets.iceberg.wap import audit_branch_name, publish_unless_audited, wap_run_id
from mesh_assets.ingest.quarantine import publish_quarantine
from mesh_assets.ingest.stream import (
    StreamError,
    StreamStopped,
    format_offsets,
    ingest_batch,
    lag,
    published_offsets,
    stopped_reason,
)
from mesh_assets.settings import pause_at

STREAM_TAG = "mesh/stream"
SENSOR_INTERVAL_S = 10
_ACTIVE = [*IN_PROGRESS_RUN_STATUSES, DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]


def stream_asset(product: DataProduct, checks: StepChecks | None = None) -> dg.AssetsDefinition:
    """The Dagster asset that commits the next micro-batch of ``product``'s topic to the run's
    audit branch, then evaluates ``checks`` (which publish it) in the same step, holding the
    product's pool from the write to the publication (as :func:`~mesh_assets.ingest.assets.ingestion_asset`)."""
    spec = asset_spec(product, kinds={"iceberg", "python", "kafka"})

    @dg.multi_asset(
        specs=[spec],
        check_specs=checks.specs if checks else None,
        can_subset=checks is not None,
        name=f"ingest_{product.name}",
        pool=writer_pool(product),
    )
    def _ingest(context: dg.AssetExecutionContext, catalog: IcebergCatalog):
        if spec.key in context.selected_asset_keys:
            yield _commit_batch(context, catalog, product)
        if checks is not None:
            yield from checks.evaluate(context, catalog)

    return _ingest


def _commit_batch(context: dg.AssetExecutionContext, catalog: IcebergCatalog, product: DataProduct):
    """Commit the next batch onto the run's audit branch; its materialization."""
    branch = audit_branch_name(wap_run_id(context.run))
    try:
        result = ingest_batch(product, catalog.catalog(), branch=branch, run_id=context.run.run_id)
    except StreamStopped as exc:
        raise dg.Failure(str(exc)) from None
    pause_at("audit_written", product.identifier)  # a test hook, see pause_at
    table, published = publish_unless_audited(product, result.table, branch, context.run.run_id)
    if published and product.quarantine:
        publish_quarantine(catalog.catalog(), product, branch)
    metadata = snapshot_metadata(table, inputs={}, snapshot_id=result.snapshot_id)
    metadata["wap/branch"] = branch
    metadata["wap/published"] = published
    metadata["mesh/stream_topic"] = result.batch.topic
    metadata["mesh/stream_from"] = format_offsets(result.batch.start)
    metadata["mesh/stream_to"] = format_offsets(result.batch.end)
    metadata["mesh/messages"] = dg.MetadataValue.int(len(result.batch.messages))
    metadata["mesh/rows_written"] = dg.MetadataValue.int(result.rows_written)
    if product.stream.mode == "upsert":
        metadata["mesh/rows_deleted"] = dg.MetadataValue.int(result.rows_deleted)
    if product.quarantine:
        metadata["mesh/rows_quarantined"] = dg.MetadataValue.int(result.rows_quarantined)
    if result.schema_changes:
        metadata["mesh/schema_changes"] = dg.MetadataValue.json(result.schema_changes)
    context.log.info(
        f"{product.identifier}: {result.batch.describe()}: {len(result.batch.messages)} messages, "
        f"{result.rows_written} rows written"
        + (f", {result.rows_deleted} deleted" if result.rows_deleted else "")
        + (f", {result.rows_quarantined} quarantined" if result.rows_quarantined else "")
        + f"; snapshot {result.snapshot_id} on {branch}"
    )
    return dg.MaterializeResult(asset_key=product.asset_key_path, metadata=metadata)


def stream_sensor(product: DataProduct) -> dg.SensorDefinition:
    """Requests the next batch of ``product`` while its topic is ahead of main."""
    key = dg.AssetKey(product.asset_key_path)

    @dg.sensor(
        name=f"{product.domain}_{product.name}_stream",
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        asset_selection=[key],
        description=f"New messages in Kafka topic {product.stream.topic} for {product.identifier}.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        active = context.instance.get_runs(
            filters=RunsFilter(tags={STREAM_TAG: product.identifier}, statuses=_ACTIVE), limit=1
        )
        if active:
            return dg.SkipReason(f"run {active[0].run_id} of {product.identifier} is not finished")
        catalog = open_catalog()
        position: dict[int, int] = {}
        if catalog.table_exists(product.table_identifier):
            table = catalog.load_table(product.table_identifier)
            stopped = stopped_reason(table, product)
            if stopped:
                context.log.error(stopped)
                return dg.SkipReason(stopped)
            position = published_offsets(table)
        try:
            behind = lag(product, position)
        except StreamError as exc:
            context.log.warning(str(exc))
            return dg.SkipReason(str(exc))
        if not behind:
            return dg.SkipReason(
                f"{product.identifier}: main holds topic {product.stream.topic} up to its end"
            )
        return dg.RunRequest(
            asset_selection=[key],
            asset_check_keys=[dg.AssetCheckKey(key, r.name) for r in product.rules],
            tags={STREAM_TAG: product.identifier, "mesh/stream_from": format_offsets(position)},
        )

    return _sensor
