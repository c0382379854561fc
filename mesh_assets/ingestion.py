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

import csv
import hashlib
import itertools
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyiceberg import types as it

from mesh_assets.catalog import (
    INPUTS_PROPERTY,
    TABLE_PROPERTIES,
    IcebergCatalog,
    audit_branch_name,
    branch_head,
    commit_with_retry,
    open_audit_branch,
    publish,
    evolve_table,
    snapshot_metadata,
    wap_run_id,
)
from mesh_assets.contracts import DataProduct
from mesh_assets.landing import landing_file
from mesh_assets.partitions import (
    PartitionSelection,
    dagster_partitions_def,
    selection_for,
    whole_range,
)
from mesh_assets.quality import quote_ident
from mesh_assets.settings import MeshSettings, load_settings
from mesh_assets.specs import asset_spec

if TYPE_CHECKING:
    from pyiceberg.table import Table

MAIN = "main"

NULL_VALUES = ["", "NA", "NULL", "null"]
BATCH_BYTES = 16 << 20
COMMIT_ROWS = 1_000_000
QUARANTINE_SUFFIX = "__quarantine"
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")


class IngestionError(ValueError):
    """A raw file does not fit its contract. Names the file, product and column."""


@dataclass(frozen=True)
class IngestResult:
    table: "Table"
    rows_written: int
    rows_quarantined: int
    selection: PartitionSelection | None
    schema_changes: list[str]
    snapshot_id: int | None = None  # the snapshot written (on ``branch`` until published)
    branch: str | None = None


def landing_path(product: DataProduct, settings: MeshSettings | None = None) -> Path:
    """A local path of the product's raw file (fetched first from an S3 landing zone)."""
    from mesh_assets.landing import local_path

    return local_path(product, settings)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(path: Path, product: DataProduct, problem: str, column: str | None = None) -> IngestionError:
    col = f", column {column}" if column else ""
    return IngestionError(f"raw file {path}, product {product.identifier}{col}: {problem}")


# --- reading -----------------------------------------------------------------------------------

def _format(path: Path, product: DataProduct) -> str:
    return (product.source.get("format") or path.suffix.lstrip(".")).lower()


def _check_columns(path: Path, product: DataProduct) -> list[str]:
    """The file's column names, after checking they are exactly the contract's."""
    if not path.exists():
        raise _fail(path, product, "the raw file is missing from the landing folder; copy it "
                    "there (for the demo data: `mesh land`)")
    fmt = _format(path, product)
    if fmt == "csv":
        found = _csv_header(path, product)
    elif fmt == "parquet":
        found = pq.ParquetFile(path).schema_arrow.names
    else:
        raise _fail(path, product, f"unsupported format '{fmt}' (use csv or parquet)")
    wanted = [c.name for c in product.columns]
    missing = [c for c in wanted if c not in found]
    extra = [c for c in found if c not in wanted]
    if missing:
        raise _fail(path, product, f"the file has no column '{missing[0]}' declared in contract "
                    f"{product.path} (file columns: {', '.join(found)}); fix the file or the "
                    "contract", column=missing[0])
    if extra:
        raise _fail(path, product, f"the file has column '{extra[0]}' that contract "
                    f"{product.path} does not declare; add it to the contract or drop it from "
                    "the file", column=extra[0])
    return found


def _csv_header(path: Path, product: DataProduct) -> list[str]:
    """The header's column names; an empty file or a header that is not UTF-8 fails clearly."""
    with path.open("rb") as f:
        first = f.readline()
    if not first.strip():
        raise _fail(path, product, "the file is empty: expected a header line with the columns of "
                    f"contract {product.path}, then one line per row")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(path, product, _not_utf8(1, first, exc)) from None
    return next(csv.reader([text]), [])


def _not_utf8(line: int, raw: bytes, exc: UnicodeDecodeError) -> str:
    return (f"line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position "
            f"{exc.start + 1}, as latin-1/cp1252 encoders write it); re-encode the file as UTF-8, "
            "e.g. `iconv -f latin1 -t utf-8`")


def _short(value, limit: int = 100):
    """A value as shown in an error message: long texts are cut (a field may be megabytes)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}... ({len(value):,} characters)"
    return value


def _unreadable(path: Path, product: DataProduct, exc: pa.ArrowInvalid) -> IngestionError | None:
    """The clear error for a CSV that cannot be read at all (not CSV, not UTF-8), else None (a
    value that does not convert: :func:`_first_bad_row` reports it). Error path only."""
    message = str(exc)
    if "invalid UTF8" in message:
        header = _csv_header(path, product)
        found = _CSV_COLUMN.search(message)
        column = header[int(found.group(1))] if found and int(found.group(1)) < len(header) else None
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as bad:
                    return _fail(path, product, _not_utf8(number, raw, bad), column=column)
        return _fail(path, product, f"the file is not UTF-8 text ({message}); re-encode it as "
                     "UTF-8", column=column)
    if "CSV parse error" not in message:
        return None
    invalid = []

    def first_invalid(row) -> str:
        if not invalid:
            invalid.append(row)
        return "skip"
    try:
        for _ in pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=BATCH_BYTES,
                                                                     use_threads=False),
                                parse_options=pacsv.ParseOptions(invalid_row_handler=first_invalid)):
            if invalid:
                break
    except pa.ArrowInvalid:
        pass
    if invalid:
        row = invalid[0]
        where = f"line {row.number}" if row.number is not None else "a line"
        detail = (f"{where}: expected {row.expected_columns} fields, found {row.actual_columns} "
                  f"({_short(row.text, 200)!r})")
    else:
        detail = _short(message.removeprefix("CSV parse error: "), 300)
    return _fail(path, product, f"not valid CSV: {detail}; quote fields that contain the "
                 "delimiter, a quote or a line break, and give every line the header's columns")


def _raw_batches(path: Path, product: DataProduct, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    if _format(path, product) == "parquet":
        yield from pq.ParquetFile(path).iter_batches(columns=list(types))
        return
    options = pacsv.ConvertOptions(column_types=types, null_values=NULL_VALUES,
                                   strings_can_be_null=True, include_columns=list(types))
    try:
        yield from pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=BATCH_BYTES),
                                  convert_options=options)
    except pa.ArrowInvalid as exc:
        unreadable = _unreadable(path, product, exc)
        if unreadable is None:
            raise
        raise unreadable from None


def read_batches(path: Path, product: DataProduct) -> Iterator[pa.RecordBatch]:
    """Record batches of ``path`` typed and ordered as the contract says.

    The first row that does not fit stops the stream with an :class:`IngestionError` naming
    the column, the reason and the offending row.
    """
    _check_columns(path, product)
    target = product.arrow_schema()
    try:
        for batch in _raw_batches(path, product, {f.name: f.type for f in target}):
            if any(not f.nullable and batch.column(f.name).null_count for f in target):
                raise _first_bad_row(path, product)
            yield batch.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise _first_bad_row(path, product) from None


def _first_bad_row(path: Path, product: DataProduct) -> IngestionError:
    """Re-read the file as text to report the first offending row (error path only)."""
    for _, bad in split_batches(path, product):
        if bad is not None and bad.num_rows:
            row = bad.slice(0, 1).to_pylist()[0]
            reason, line = row.pop("_reason"), row.pop("_line")
            for key in ("_source_file", "_partition"):
                row.pop(key, None)
            row = {k: _short(v) for k, v in row.items()}
            column = reason.split(":", 1)[0].removeprefix("column ")
            return _fail(path, product, f"line {line}: {reason.split(': ', 1)[1]} (row: {row}); "
                         "fix the file, or set 'quarantine: true' in the contract to set such "
                         "rows aside", column=column)
    return _fail(path, product, "the file does not fit the contract")


# --- quarantine --------------------------------------------------------------------------------

def _duckdb_type(t: it.IcebergType) -> str:
    if isinstance(t, it.DecimalType):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {
        it.StringType: "VARCHAR", it.BooleanType: "BOOLEAN", it.IntegerType: "INTEGER",
        it.LongType: "BIGINT", it.FloatType: "FLOAT", it.DoubleType: "DOUBLE",
        it.DateType: "DATE", it.TimeType: "TIME", it.TimestampType: "TIMESTAMP",
        it.TimestamptzType: "TIMESTAMPTZ", it.BinaryType: "BLOB", it.UUIDType: "UUID",
    }[type(t)]


def quarantine_schema(product: DataProduct) -> pa.Schema:
    return pa.schema([pa.field(c.name, pa.large_string()) for c in product.columns] + [
        pa.field("_reason", pa.large_string()), pa.field("_line", pa.int64()),
        pa.field("_source_file", pa.large_string()), pa.field("_partition", pa.large_string()),
    ])


def split_batches(path: Path, product: DataProduct) -> Iterator[tuple[pa.RecordBatch, pa.Table | None]]:
    """(good rows typed by the contract, bad rows as text with ``_reason`` and ``_line``).

    The file is read as text and each value is cast with DuckDB's ``TRY_CAST``: a value that
    is present but does not cast, or a missing required value, makes its row bad.
    """
    from mesh_assets import engine

    _check_columns(path, product)
    target = product.arrow_schema()
    con = engine.connect()
    con.execute("SET TimeZone = 'UTC'")
    casts, reasons = [], []
    for c in product.columns:
        q, t = quote_ident(c.name), _duckdb_type(c.type)
        casts.append(f"TRY_CAST({q} AS {t}) AS {q}")
        shown = f"CASE WHEN length({q}) > 100 THEN left({q}, 100) || '...' ELSE {q} END"
        reasons.append(f"CASE WHEN {q} IS NOT NULL AND TRY_CAST({q} AS {t}) IS NULL THEN "
                       f"'column {c.name}: value ''' || {shown} || ''' is not a valid {c.type}' END")
        if c.required:
            reasons.append(f"CASE WHEN {q} IS NULL THEN 'column {c.name}: required value "
                           "is missing' END")
    line = 2  # line 1 is the header
    texts = {c.name: pa.large_string() for c in product.columns}
    try:
        for raw in _raw_batches(path, product, texts):
            lines = pa.array(range(line, line + raw.num_rows), pa.int64())
            line += raw.num_rows
            con.register("raw", pa.Table.from_batches([raw]).append_column("_line", lines))
            con.execute(f"CREATE OR REPLACE TEMP TABLE judged AS SELECT *, "
                        f"concat_ws('; ', {', '.join(reasons)}) AS _reason FROM raw")
            good = con.execute(f"SELECT {', '.join(casts)} FROM judged WHERE _reason = '' "
                               "ORDER BY _line").arrow().read_all()
            bad = con.execute("SELECT * EXCLUDE (_reason, _line), _reason, _line FROM judged "
                              "WHERE _reason <> '' ORDER BY _line").arrow().read_all()
            yield _as_batch(good, target), (bad if bad.num_rows else None)
    finally:
        con.close()


def _as_batch(data: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    data = data.rename_columns(schema.names).cast(schema).combine_chunks()
    batches = data.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)


# --- writing -----------------------------------------------------------------------------------

def _chunks(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    """Bounded slices of the stream: memory stays flat whatever the input size."""
    pending, rows = [], 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= COMMIT_ROWS:
            yield pa.Table.from_batches(pending, schema=schema)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema=schema)


def replace_rows(table: "Table", batches: Iterable[pa.RecordBatch], schema: pa.Schema,
                 properties: dict[str, str], row_filter=None, branch: str | None = None) -> int:
    """Replace the rows matching ``row_filter`` (all rows when None) with ``batches``, in one
    atomic commit on ``branch`` (main when None). Returns the number of rows written."""
    from pyiceberg.expressions import AlwaysTrue

    row_filter = row_filter if row_filter is not None else AlwaysTrue()
    written = 0
    with table.transaction() as tx:
        # The delete half of an overwrite; skipped on a first write, which has nothing to delete
        # and would otherwise leave an empty snapshot behind.
        if table.current_snapshot() is not None:
            with warnings.catch_warnings():  # a partition written for the first time is empty
                warnings.filterwarnings("ignore", "Delete operation did not match any records")
                tx.delete(row_filter, snapshot_properties=properties, branch=branch or MAIN)
        for chunk in _chunks(batches, schema):
            tx.append(chunk, snapshot_properties=properties, branch=branch or MAIN)
            written += chunk.num_rows
    return written


def _in_selection(batches: Iterable[pa.RecordBatch], selection: PartitionSelection | None,
                  every_partition: PartitionSelection | None, fail) -> Iterator[pa.RecordBatch]:
    """Rows of ``selection``. A row that no partition of the product can hold (outside
    ``every_partition``) would never be written by any run: that stops the write."""
    for batch in batches:
        if every_partition is not None:
            homeless = batch.num_rows - pc.sum(every_partition.arrow_mask(batch)).as_py()
            if homeless:
                raise fail(homeless)
        yield batch if selection is None else batch.filter(selection.arrow_mask(batch))


def ingest(product: DataProduct, catalog, *, selection: PartitionSelection | None = None,
           settings: MeshSettings | None = None, run_id: str | None = None,
           branch: str | None = None) -> IngestResult:
    """Ingest the product's landing file: all rows, or the rows of ``selection``; committed to
    ``branch`` (write-audit-publish) or, when None, straight to main."""
    path = landing_path(product, settings)
    _check_columns(path, product)  # before the table exists: a bad file creates nothing
    if not product.quarantine:
        next(read_batches(path, product), None)  # a bad first batch fails before any table exists
    table, schema_changes = evolve_table(catalog, product)
    if branch is not None:
        table = open_audit_branch(table, branch)
    schema = product.arrow_schema()
    col_type = product.column(selection.column).type if selection else None
    row_filter = selection.iceberg_filter(col_type) if selection else None
    properties = {
        "mesh.source.file": path.name,
        "mesh.source.sha256": file_sha256(path),
        # what the landing sensor compares (mesh_assets.automation): the file as it landed
        "mesh.source.signature": getattr(landing_file(product, settings), "signature", ""),
        "mesh.contract.version": product.version,
        INPUTS_PROPERTY: "{}",
    }
    if run_id:
        properties["mesh.dagster.run_id"] = run_id
    if selection:
        properties["mesh.partition"] = selection.describe()
    counts = {"written": 0, "quarantined": 0}

    def write(live: "Table") -> None:
        if product.quarantine:
            good, bad = _split_and_park(path, product, catalog, selection, properties)
            counts["quarantined"] = bad
        else:
            good = read_batches(path, product)
        def homeless(n: int) -> IngestionError:
            p = product.dagster_partitions
            return _fail(path, product, f"{n} row(s) fall outside every partition of the "
                         f"product ({every.describe()}): no run would ever write them. Extend "
                         f"dagsterPartitions in contract {product.path}", column=p.column)

        every = whole_range(product.dagster_partitions) if selection is not None else None
        counts["written"] = replace_rows(live, _in_selection(good, selection, every, homeless),
                                         schema, properties, row_filter, branch)

    table = commit_with_retry(catalog, ".".join(table.name()), write)
    return IngestResult(table, counts["written"], counts["quarantined"], selection,
                        schema_changes, branch_head(table, branch), branch)


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
    found = schema.remove(schema.get_field_index("_partition")).remove(
        schema.get_field_index("_source_file"))
    bad = (pa.concat_tables([t.cast(found) for t in bad_tables]) if bad_tables
           else found.empty_table())
    bad = bad.append_column("_source_file", pa.array([path.name] * bad.num_rows, pa.large_string()))
    bad = bad.append_column("_partition", pa.array([key] * bad.num_rows, pa.large_string()))
    bad = bad.select(schema.names).cast(schema)
    if selection is not None and bad.num_rows:
        bad = _bad_rows_in_selection(bad, product, selection)
    identifier = product.table_identifier + QUARANTINE_SUFFIX
    from pyiceberg.expressions import EqualTo

    if bad.num_rows or catalog.table_exists(identifier):
        catalog.create_namespace_if_not_exists(product.domain)
        if not catalog.table_exists(identifier):
            catalog.create_table(identifier, schema=schema, properties=TABLE_PROPERTIES)
        row_filter = None if selection is None else EqualTo("_partition", key)
        commit_with_retry(catalog, identifier, lambda t: replace_rows(
            t, bad.to_batches(), schema, properties, row_filter))
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


# --- Dagster -----------------------------------------------------------------------------------

def ingestion_asset(product: DataProduct) -> dg.AssetsDefinition:
    """The Dagster asset that ingests ``product`` from its landing file.

    A partitioned product replaces exactly the rows of the partition (or, in a backfill, of the
    whole key range in one run and one commit)."""
    fmt = (product.source.get("format") or "csv").lower()
    partitions_def = dagster_partitions_def(product.dagster_partitions)
    spec = asset_spec(product, kinds={"iceberg", "python", fmt})
    if partitions_def is not None:
        spec = spec.replace_attributes(partitions_def=partitions_def)

    @dg.multi_asset(specs=[spec], name=f"ingest_{product.name}",
                    backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None)
    def _ingest(context: dg.AssetExecutionContext, catalog: IcebergCatalog):
        selection = (selection_for(product.dagster_partitions, context)
                     if partitions_def is not None else None)
        branch = audit_branch_name(wap_run_id(context.run))  # shared by re-executions
        result = ingest(product, catalog.catalog(), selection=selection,
                        run_id=context.run.run_id, branch=branch)
        table = result.table
        published = not any(r.severity == "error" for r in product.rules)
        if published:  # nothing to audit: no blocking rule
            publish(table, branch)
            table = table.refresh()
        summary = table.snapshot_by_id(result.snapshot_id).summary.additional_properties
        metadata = snapshot_metadata(table, inputs={}, snapshot_id=result.snapshot_id)
        metadata["wap/branch"] = branch
        metadata["wap/published"] = published
        landed = landing_file(product)
        metadata["mesh/source_file"] = landed.uri if landed else str(landing_path(product))
        metadata["mesh/source_sha256"] = summary["mesh.source.sha256"]
        metadata["mesh/rows_written"] = dg.MetadataValue.int(result.rows_written)
        if product.quarantine:
            metadata["mesh/rows_quarantined"] = dg.MetadataValue.int(result.rows_quarantined)
        if selection is not None:
            metadata["mesh/partition_rows"] = selection.describe()
        if result.schema_changes:
            metadata["mesh/schema_changes"] = dg.MetadataValue.json(result.schema_changes)
        context.log.info(f"{product.identifier}: snapshot {result.snapshot_id} on {branch}, "
                         f"{result.rows_written} rows written"
                         + (f" for {selection.describe()}" if selection else "")
                         + (f", {result.rows_quarantined} quarantined" if product.quarantine else ""))
        return dg.MaterializeResult(asset_key=product.asset_key_path, metadata=metadata)

    return _ingest
