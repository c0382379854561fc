"""Quarantine: with ``quarantine: true`` in the contract, rows that break it are parked in
``<domain>.<product>__quarantine`` with the reason, and the good rows are written."""

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
from pyiceberg.expressions import EqualTo

from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import PartitionSelection
from mesh_assets.iceberg.catalog import TABLE_PROPERTIES
from mesh_assets.iceberg.commit import commit_with_retry, replace_rows
from mesh_assets.ingest.readers import split_batches

if TYPE_CHECKING:
    pass
QUARANTINE_SUFFIX = "__quarantine"


def quarantine_schema(product: DataProduct) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, pa.large_string()) for c in product.columns]
        + [
            pa.field("_reason", pa.large_string()),
            pa.field("_line", pa.int64()),
            pa.field("_source_file", pa.large_string()),
            pa.field("_partition", pa.large_string()),
        ]
    )


def _split_and_park(path: Path, product: DataProduct, catalog, selection, properties):
    """Split the file; commit its bad rows to the quarantine table first; return the good rows.

    Two tables cannot share one Iceberg commit: the quarantine rows of a partition are
    replaced (not appended) on every run, so a rerun after a failure converges."""
    good_batches, bad_tables = [], []
    for good, bad in split_batches(path, product):
        good_batches.append(good)
        if bad is not None:
            bad_tables.append(bad)
    key = selection.describe() if selection else "*"
    schema = quarantine_schema(product)
    found = schema.remove(schema.get_field_index("_partition")).remove(schema.get_field_index("_source_file"))
    bad = pa.concat_tables([t.cast(found) for t in bad_tables]) if bad_tables else found.empty_table()
    bad = bad.append_column("_source_file", pa.array([path.name] * bad.num_rows, pa.large_string()))
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


def _bad_rows_in_selection(bad: pa.Table, product: DataProduct, selection: PartitionSelection) -> pa.Table:
    """Bad rows of the selected partition(s): those whose partition value parses into it, and
    those whose partition value does not parse at all (they belong to no partition)."""
    column = bad.column(selection.column)
    target = product.arrow_schema().field(selection.column).type
    keep = []
    for value in column.to_pylist():
        try:
            parsed = pa.array([value], pa.large_string()).cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            keep.append(True)
            continue
        batch = pa.RecordBatch.from_arrays([parsed], names=[selection.column])
        keep.append(value is None or bool(selection.arrow_mask(batch)[0].as_py()))
    return bad.filter(pa.array(keep))
