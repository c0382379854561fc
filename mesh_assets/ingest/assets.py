"""Ingestion: raw landing files -> contract-conformed Arrow record batches -> one Iceberg commit.

The raw file of product ``domain.product`` is ``$MESH_HOME/landing/<domain>/<source.file>``.
It is streamed as record batches typed by the contract (never loaded whole), checked against
the contract, and committed in a single Iceberg transaction that replaces exactly the rows the
materialization owns: the whole table, or the Dagster partition (range) being materialized.
A failure at any point, a crash included, leaves the table at its previous snapshot; a rerun
replaces the same rows again, so there are never duplicates.

Rows that break the contract (a value that does not parse as the column's type, a missing
required value) fail the write with the column, the reason and an example row, or, when the
contract sets ``quarantine: true``, go to ``<domain>.<product>__quarantine`` with the reason
while the good rows are written. Nothing is dropped silently.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from mesh_assets.asset_specs import StepChecks, asset_spec, writer_pool
from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import (
    PartitionSelection,
    dagster_partitions_def,
    selection_for,
    whole_range,
)
from mesh_assets.iceberg.catalog import IcebergCatalog, evolve_table, snapshot_metadata
from mesh_assets.iceberg.commit import (
    CONTRACT_VERSION_PROPERTY,
    INPUTS_PROPERTY,
    PARTITION_PROPERTY,
    RUN_ID_PROPERTY,
    SOURCE_FILE_PROPERTY,
    SOURCE_SHA256_PROPERTY,
    SOURCE_SIGNATURE_PROPERTY,
    commit_with_retry,
    replace_rows,
)
from mesh_assets.iceberg.wap import (
    audit_branch_name,
    branch_head,
    open_audit_branch,
    publish_unless_audited,
    wap_run_id,
)
from mesh_assets.ingest.landing import IngestionError, fail, pin
from mesh_assets.ingest.quarantine import _split_and_park, publish_quarantine
from mesh_assets.ingest.readers import check_columns, read_batches
from mesh_assets.settings import MeshSettings, pause_at

if TYPE_CHECKING:
    from pyiceberg.table import Table


@dataclass(frozen=True)
class IngestResult:
    table: "Table"
    rows_written: int
    rows_quarantined: int
    selection: PartitionSelection | None
    schema_changes: list[str]
    snapshot_id: int | None = None  # the snapshot written (on ``branch`` until published)
    branch: str | None = None
    commit_attempts: int = 1  # more than 1: concurrent writers won the earlier ones
    source: str | None = None  # the landing file read (a path or s3://bucket/key)


def _in_selection(
    batches: Iterable[pa.RecordBatch],
    selection: PartitionSelection | None,
    every_partition: PartitionSelection | None,
    fail,
) -> Iterator[pa.RecordBatch]:
    """Rows of ``selection``. A row that no partition of the product can hold (outside
    ``every_partition``) would never be written by any run: that stops the write."""
    for batch in batches:
        if every_partition is not None:
            homeless = batch.num_rows - pc.sum(every_partition.arrow_mask(batch)).as_py()
            if homeless:
                raise fail(homeless)
        yield batch if selection is None else batch.filter(selection.arrow_mask(batch))


def ingest(
    product: DataProduct,
    catalog,
    *,
    selection: PartitionSelection | None = None,
    settings: MeshSettings | None = None,
    run_id: str | None = None,
    branch: str | None = None,
) -> IngestResult:
    """Ingest the product's landing file: all rows, or the rows of ``selection``; committed to
    ``branch`` (write-audit-publish) or, when None, straight to main.

    Only a complete landing file is read, and only the bytes whose checksum the snapshot
    records (:func:`mesh_assets.ingest.landing.pin`)."""
    landed = pin(product, settings)
    check_columns(landed)  # before the table exists: a bad file creates nothing
    if not product.quarantine:
        next(read_batches(landed), None)  # a bad first batch fails before any table exists
    table, schema_changes = evolve_table(catalog, product)
    if branch is not None:
        pause_at("before_audit_branch", product.identifier)  # a test hook, see pause_at
        table = open_audit_branch(table, branch)
    schema = product.arrow_schema()
    col_type = product.column(selection.column).type if selection else None
    row_filter = selection.iceberg_filter(col_type) if selection else None
    properties = {
        SOURCE_FILE_PROPERTY: landed.path.name,
        SOURCE_SHA256_PROPERTY: landed.sha256,
        SOURCE_SIGNATURE_PROPERTY: landed.signature,
        CONTRACT_VERSION_PROPERTY: product.version,
        INPUTS_PROPERTY: "{}",
    }
    if run_id:
        properties[RUN_ID_PROPERTY] = run_id
    if selection:
        properties[PARTITION_PROPERTY] = selection.describe()
    counts = {"written": 0, "quarantined": 0}

    def write(live: "Table") -> None:
        if product.quarantine:
            good, bad = _split_and_park(landed, catalog, selection, properties, branch)
            counts["quarantined"] = bad
        else:
            good = read_batches(landed)

        def homeless(n: int) -> IngestionError:
            p = product.dagster_partitions
            return fail(
                landed.uri,
                product,
                f"{n} row(s) fall outside every partition of the "
                f"product ({every.describe()}): no run would ever write them. Extend "
                f"dagsterPartitions in contract {product.path}",
                column=p.column,
            )

        every = whole_range(product.dagster_partitions) if selection is not None else None
        counts["written"] = replace_rows(
            live, _in_selection(good, selection, every, homeless), schema, properties, row_filter, branch
        )

    committed = commit_with_retry(catalog, ".".join(table.name()), write)
    return IngestResult(
        committed.table,
        counts["written"],
        counts["quarantined"],
        selection,
        schema_changes,
        branch_head(committed.table, branch),
        branch,
        committed.attempts,
        landed.uri,
    )


# --- Dagster -----------------------------------------------------------------------------------


def ingestion_asset(product: DataProduct, checks: StepChecks | None = None) -> dg.AssetsDefinition:
    """The Dagster asset that ingests ``product`` from its landing file onto the run's audit
    branch, then evaluates ``checks`` (the contract's, which publish the branch) in the same
    step: the step holds the product's pool from the write to the publication, so concurrent
    runs of the product follow each other whole. A run may select the checks alone (they read
    main) or the asset alone (the branch stays unpublished unless no rule blocks).

    A partitioned product replaces exactly the rows of the partition (or, in a backfill, of the
    whole key range in one run and one commit)."""
    fmt = (product.source.get("format") or "csv").lower()
    partitions_def = dagster_partitions_def(product.dagster_partitions)
    spec = asset_spec(product, kinds={"iceberg", "python", fmt})
    if partitions_def is not None:
        spec = spec.replace_attributes(partitions_def=partitions_def)

    @dg.multi_asset(
        specs=[spec],
        check_specs=checks.specs if checks else None,
        can_subset=checks is not None,
        name=f"ingest_{product.name}",
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        pool=writer_pool(product),  # held from the write to the publication: one run at a time
    )
    def _ingest(context: dg.AssetExecutionContext, catalog: IcebergCatalog):
        if spec.key in context.selected_asset_keys:
            yield _write(context, catalog, product, partitions_def)
        if checks is not None:
            yield from checks.evaluate(context, catalog)

    return _ingest


def _write(context: dg.AssetExecutionContext, catalog: IcebergCatalog, product: DataProduct, partitions_def):
    """Ingest the landing file onto the run's audit branch; its materialization."""
    selection = selection_for(product.dagster_partitions, context) if partitions_def is not None else None
    branch = audit_branch_name(wap_run_id(context.run))  # shared by re-executions
    result = ingest(product, catalog.catalog(), selection=selection, run_id=context.run.run_id, branch=branch)
    pause_at("audit_written", product.identifier)  # a test hook, see pause_at
    table, published = publish_unless_audited(product, result.table, branch, context.run.run_id)
    if published and product.quarantine:
        publish_quarantine(catalog.catalog(), product, branch)
    summary = table.snapshot_by_id(result.snapshot_id).summary.additional_properties
    metadata = snapshot_metadata(table, inputs={}, snapshot_id=result.snapshot_id)
    metadata["wap/branch"] = branch
    metadata["wap/published"] = published
    metadata["mesh/source_file"] = result.source
    metadata["mesh/source_sha256"] = summary[SOURCE_SHA256_PROPERTY]
    metadata["mesh/rows_written"] = dg.MetadataValue.int(result.rows_written)
    metadata["mesh/commit_attempts"] = dg.MetadataValue.int(result.commit_attempts)
    if product.quarantine:
        metadata["mesh/rows_quarantined"] = dg.MetadataValue.int(result.rows_quarantined)
    if selection is not None:
        metadata["mesh/partition_rows"] = selection.describe()
    if result.schema_changes:
        metadata["mesh/schema_changes"] = dg.MetadataValue.json(result.schema_changes)
    context.log.info(
        f"{product.identifier}: snapshot {result.snapshot_id} on {branch}, "
        f"{result.rows_written} rows written"
        + (f" for {selection.describe()}" if selection else "")
        + (f", {result.rows_quarantined} quarantined" if product.quarantine else "")
    )
    return dg.MaterializeResult(asset_key=product.asset_key_path, metadata=metadata)
