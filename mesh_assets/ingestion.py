"""Ingestion: raw landing files -> contract-conformed Arrow record batches -> one Iceberg commit.

The raw file of product ``domain.product`` is ``$MESH_HOME/landing/<domain>/<source.file>``.
It is read as a stream of record batches typed by the contract, checked against the contract
before anything is written, and committed as a full refresh in a single Iceberg transaction:
a failure at any point leaves the table at its previous snapshot.
"""

import csv
import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mesh_assets.catalog import INPUTS_PROPERTY, IcebergCatalog, ensure_table, snapshot_metadata
from mesh_assets.contracts import DataProduct
from mesh_assets.settings import MeshSettings, load_settings
from mesh_assets.specs import asset_spec

if TYPE_CHECKING:
    from pyiceberg.table import Table

NULL_VALUES = ["", "NA", "NULL", "null"]
BATCH_BYTES = 16 << 20
COMMIT_ROWS = 1_000_000
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")


class IngestionError(ValueError):
    """A raw file does not fit its contract. Names the file, product and column."""


def landing_path(product: DataProduct, settings: MeshSettings | None = None) -> Path:
    settings = settings or load_settings()
    return settings.landing / product.domain / product.source["file"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(path: Path, product: DataProduct, problem: str, column: str | None = None) -> IngestionError:
    col = f", column {column}" if column else ""
    return IngestionError(f"raw file {path}, product {product.identifier}{col}: {problem}")


def _check_columns(path: Path, product: DataProduct, found: list[str]) -> None:
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


def read_batches(path: Path, product: DataProduct) -> Iterator[pa.RecordBatch]:
    """Record batches of ``path`` typed and ordered as the contract says."""
    if not path.exists():
        raise _fail(path, product, "the raw file is missing from the landing folder; copy it "
                    "there (for the demo data: `mesh land`)")
    fmt = (product.source.get("format") or path.suffix.lstrip(".")).lower()
    target = product.arrow_schema()
    if fmt == "csv":
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        _check_columns(path, product, header)
        batches = _csv_batches(path, product, header, target)
    elif fmt == "parquet":
        pf = pq.ParquetFile(path)
        _check_columns(path, product, pf.schema_arrow.names)
        batches = pf.iter_batches(columns=target.names)
    else:
        raise _fail(path, product, f"unsupported format '{fmt}' (use csv or parquet)")
    for batch in batches:
        yield _conform(path, product, batch, target)


def _csv_batches(path: Path, product: DataProduct, header: list[str],
                 target: pa.Schema) -> Iterator[pa.RecordBatch]:
    options = pacsv.ConvertOptions(
        column_types={f.name: f.type for f in target}, null_values=NULL_VALUES,
        strings_can_be_null=True, include_columns=target.names,
    )
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=BATCH_BYTES),
                                convert_options=options)
        yield from reader
    except pa.ArrowInvalid as exc:
        m = _CSV_COLUMN.search(str(exc))
        column = header[int(m.group(1))] if m and int(m.group(1)) < len(header) else None
        expected = str(product.column(column).type) if column else "the contract's type"
        raise _fail(path, product, f"a value does not parse as {expected}: {exc}",
                    column=column) from None


def _conform(path: Path, product: DataProduct, batch: pa.RecordBatch,
             target: pa.Schema) -> pa.RecordBatch:
    for field in target:
        if not field.nullable and batch.column(field.name).null_count:
            raise _fail(path, product, f"{batch.column(field.name).null_count} empty value(s) "
                        "in a required column", column=field.name)
    try:
        return batch.select(target.names).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _fail(path, product, f"values do not fit the contract's types: {exc}") from None


def _chunks(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    pending, rows = [], 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= COMMIT_ROWS:
            yield pa.Table.from_batches(pending, schema=schema)
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema=schema)


def write_full_refresh(table: "Table", batches: Iterable[pa.RecordBatch], schema: pa.Schema,
                       properties: dict[str, str]) -> None:
    """Replace the table's rows with ``batches`` in one atomic Iceberg commit."""
    # A first write has nothing to delete: appending avoids an empty delete snapshot.
    replace = table.current_snapshot() is not None
    with table.transaction() as tx:
        first = True
        for chunk in _chunks(batches, schema):
            if first and replace:
                tx.overwrite(chunk, snapshot_properties=properties)
            else:
                tx.append(chunk, snapshot_properties=properties)
            first = False
        if first and replace:  # an empty file empties the table
            tx.overwrite(schema.empty_table(), snapshot_properties=properties)


def ingest(product: DataProduct, catalog, *, settings: MeshSettings | None = None,
           run_id: str | None = None) -> "Table":
    """Ingest the product's landing file into its Iceberg table; returns the refreshed table."""
    path = landing_path(product, settings)
    batches = read_batches(path, product)
    first = next(batches, None)  # header and first batch are checked before the table exists
    table = ensure_table(catalog, product)
    properties = {
        "mesh.source.file": path.name,
        "mesh.source.sha256": file_sha256(path),
        "mesh.contract.version": product.version,
        INPUTS_PROPERTY: "{}",
    }
    if run_id:
        properties["mesh.dagster.run_id"] = run_id
    head = [first] if first is not None else []
    write_full_refresh(table, itertools.chain(head, batches), product.arrow_schema(), properties)
    return table.refresh()


def ingestion_asset(product: DataProduct) -> dg.AssetsDefinition:
    """The Dagster asset that ingests ``product`` from its landing file."""
    fmt = (product.source.get("format") or "csv").lower()

    @dg.multi_asset(specs=[asset_spec(product, kinds={"iceberg", "python", fmt})],
                    name=f"ingest_{product.name}")
    def _ingest(context: dg.AssetExecutionContext, catalog: IcebergCatalog):
        table = ingest(product, catalog.catalog(), run_id=context.run.run_id)
        summary = table.current_snapshot().summary.additional_properties
        metadata = snapshot_metadata(table, inputs={})
        metadata["mesh/source_file"] = dg.MetadataValue.path(str(landing_path(product)))
        metadata["mesh/source_sha256"] = summary["mesh.source.sha256"]
        context.log.info(f"{product.identifier}: snapshot {table.current_snapshot().snapshot_id},"
                         f" {summary.get('total-records')} rows")
        return dg.MaterializeResult(asset_key=product.asset_key_path, metadata=metadata)

    return _ingest
