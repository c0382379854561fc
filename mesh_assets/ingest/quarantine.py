"""Quarantine: with ``quarantine: true`` in the contract, rows that break it are parked in
``<domain>.<product>__quarantine`` with the reason, and the good rows are written. Rows are
judged by the same grammar as without quarantine (:mod:`mesh_assets.ingest.readers`)."""

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import EqualTo

from mesh_assets.contract.partitions import PartitionSelection
from mesh_assets.iceberg.catalog import TABLE_PROPERTIES
from mesh_assets.iceberg.commit import commit_with_retry, replace_rows
from mesh_assets.ingest.landing import Landed
from mesh_assets.ingest.readers import line_numbers, parse_column, split_batches

QUARANTINE_SUFFIX = "__quarantine"


def quarantine_schema(product) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, pa.large_string()) for c in product.columns]
        + [
            pa.field("_reason", pa.large_string()),
            pa.field("_line", pa.int64()),
            pa.field("_source_file", pa.large_string()),
            pa.field("_partition", pa.large_string()),
        ]
    )


def _split_and_park(landed: Landed, catalog, selection, properties):
    """Split the file; commit its bad rows to the quarantine table first; return the good rows.

    Two tables cannot share one Iceberg commit: the quarantine rows of a partition are
    replaced (not appended) on every run, so a rerun after a failure converges."""
    product = landed.product
    good_batches, bad_tables = [], []
    for good, bad in split_batches(landed):
        good_batches.append(good)
        if bad is not None:
            bad_tables.append(bad)
    key = selection.describe() if selection else "*"
    schema = quarantine_schema(product)
    if bad_tables:
        bad = pa.concat_tables(bad_tables)
        rows = bad.column("_row").to_pylist()
        lines = line_numbers(landed, rows)
        bad = bad.drop_columns(["_row"]).append_column(
            "_line", pa.array([lines.get(r) for r in rows], pa.int64())
        )
    else:
        bad = schema.empty_table().drop_columns(["_source_file", "_partition"])
    bad = bad.append_column("_source_file", pa.array([landed.path.name] * bad.num_rows, pa.large_string()))
    bad = bad.append_column("_partition", pa.array([key] * bad.num_rows, pa.large_string()))
    bad = bad.select(schema.names).cast(schema)
    if selection is not None and bad.num_rows:
        bad = _bad_rows_in_selection(bad, product, selection)
    identifier = product.table_identifier + QUARANTINE_SUFFIX

    if bad.num_rows or catalog.table_exists(identifier):
        catalog.create_namespace_if_not_exists(product.domain)
        if not catalog.table_exists(identifier):
            catalog.create_table(identifier, schema=schema, properties=TABLE_PROPERTIES)
        row_filter = None if selection is None else EqualTo("_partition", key)
        commit_with_retry(
            catalog, identifier, lambda t: replace_rows(t, bad.to_batches(), schema, properties, row_filter)
        )
    return good_batches, bad.num_rows


def _bad_rows_in_selection(bad: pa.Table, product, selection: PartitionSelection) -> pa.Table:
    """Bad rows of the selected partition(s): those whose partition value parses into it, and
    those whose partition value does not parse at all (they belong to no partition)."""
    column = product.column(selection.column)
    target = product.arrow_schema().field(selection.column).type
    text = bad.column(selection.column).combine_chunks()
    parsed, _ = parse_column(text, column, target, product.timezone)
    batch = pa.RecordBatch.from_arrays([parsed], names=[selection.column])
    inside = pc.fill_null(selection.arrow_mask(batch), True)
    return bad.filter(pc.or_(inside, pc.is_null(parsed)))
