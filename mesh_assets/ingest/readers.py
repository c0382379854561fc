"""Reading landing files as record batches typed by the contract, never loaded whole. A file that
does not fit its contract fails with the file, product, column and line at fault."""

import csv
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mesh_assets import engine
from mesh_assets.contract.model import DataProduct

if TYPE_CHECKING:
    pass


from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from typing import TYPE_CHECKING

from pyiceberg import types as it

if TYPE_CHECKING:
    pass

NULL_VALUES = ["", "NA", "NULL", "null"]
BATCH_BYTES = 16 << 20
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")


class IngestionError(ValueError):
    """A raw file does not fit its contract. Names the file, product and column."""


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
        raise _fail(
            path,
            product,
            "the raw file is missing from the landing folder; copy it there (for the demo data: `mesh land`)",
        )
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
        raise _fail(
            path,
            product,
            f"the file has no column '{missing[0]}' declared in contract "
            f"{product.path} (file columns: {', '.join(found)}); fix the file or the "
            "contract",
            column=missing[0],
        )
    if extra:
        raise _fail(
            path,
            product,
            f"the file has column '{extra[0]}' that contract "
            f"{product.path} does not declare; add it to the contract or drop it from "
            "the file",
            column=extra[0],
        )
    return found


def _csv_header(path: Path, product: DataProduct) -> list[str]:
    """The header's column names; an empty file or a header that is not UTF-8 fails clearly."""
    with path.open("rb") as f:
        first = f.readline()
    if not first.strip():
        raise _fail(
            path,
            product,
            "the file is empty: expected a header line with the columns of "
            f"contract {product.path}, then one line per row",
        )
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(path, product, _not_utf8(1, first, exc)) from None
    return next(csv.reader([text]), [])


def _not_utf8(line: int, raw: bytes, exc: UnicodeDecodeError) -> str:
    return (
        f"line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at position "
        f"{exc.start + 1}, as latin-1/cp1252 encoders write it); re-encode the file as UTF-8, "
        "e.g. `iconv -f latin1 -t utf-8`"
    )


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
        return _fail(
            path, product, f"the file is not UTF-8 text ({message}); re-encode it as UTF-8", column=column
        )
    if "CSV parse error" not in message:
        return None
    invalid = []

    def first_invalid(row) -> str:
        if not invalid:
            invalid.append(row)
        return "skip"

    try:
        for _ in pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=BATCH_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=first_invalid),
        ):
            if invalid:
                break
    except pa.ArrowInvalid:
        pass
    if invalid:
        row = invalid[0]
        where = f"line {row.number}" if row.number is not None else "a line"
        detail = (
            f"{where}: expected {row.expected_columns} fields, found {row.actual_columns} "
            f"({_short(row.text, 200)!r})"
        )
    else:
        detail = _short(message.removeprefix("CSV parse error: "), 300)
    return _fail(
        path,
        product,
        f"not valid CSV: {detail}; quote fields that contain the "
        "delimiter, a quote or a line break, and give every line the header's columns",
    )


def _raw_batches(path: Path, product: DataProduct, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    if _format(path, product) == "parquet":
        yield from pq.ParquetFile(path).iter_batches(columns=list(types))
        return
    options = pacsv.ConvertOptions(
        column_types=types, null_values=NULL_VALUES, strings_can_be_null=True, include_columns=list(types)
    )
    try:
        yield from pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=BATCH_BYTES), convert_options=options
        )
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
            return _fail(
                path,
                product,
                f"line {line}: {reason.split(': ', 1)[1]} (row: {row}); "
                "fix the file, or set 'quarantine: true' in the contract to set such "
                "rows aside",
                column=column,
            )
    return _fail(path, product, "the file does not fit the contract")


def _as_batch(data: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    data = data.rename_columns(schema.names).cast(schema).combine_chunks()
    batches = data.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)


# --- quarantine --------------------------------------------------------------------------------


def _duckdb_type(t: it.IcebergType) -> str:
    if isinstance(t, it.DecimalType):
        return f"DECIMAL({t.precision}, {t.scale})"
    return {
        it.StringType: "VARCHAR",
        it.BooleanType: "BOOLEAN",
        it.IntegerType: "INTEGER",
        it.LongType: "BIGINT",
        it.FloatType: "FLOAT",
        it.DoubleType: "DOUBLE",
        it.DateType: "DATE",
        it.TimeType: "TIME",
        it.TimestampType: "TIMESTAMP",
        it.TimestamptzType: "TIMESTAMPTZ",
        it.BinaryType: "BLOB",
        it.UUIDType: "UUID",
    }[type(t)]


def split_batches(path: Path, product: DataProduct) -> Iterator[tuple[pa.RecordBatch, pa.Table | None]]:
    """(good rows typed by the contract, bad rows as text with ``_reason`` and ``_line``).

    The file is read as text and each value is cast with DuckDB's ``TRY_CAST``: a value that
    is present but does not cast, or a missing required value, makes its row bad.
    """

    _check_columns(path, product)
    target = product.arrow_schema()
    con = engine.connect()
    con.execute("SET TimeZone = 'UTC'")
    casts, reasons = [], []
    for c in product.columns:
        q, t = engine.quote(c.name), _duckdb_type(c.type)
        casts.append(f"TRY_CAST({q} AS {t}) AS {q}")
        shown = f"CASE WHEN length({q}) > 100 THEN left({q}, 100) || '...' ELSE {q} END"
        reasons.append(
            f"CASE WHEN {q} IS NOT NULL AND TRY_CAST({q} AS {t}) IS NULL THEN "
            f"'column {c.name}: value ''' || {shown} || ''' is not a valid {c.type}' END"
        )
        if c.required:
            reasons.append(f"CASE WHEN {q} IS NULL THEN 'column {c.name}: required value is missing' END")
    line = 2  # line 1 is the header
    texts = {c.name: pa.large_string() for c in product.columns}
    try:
        for raw in _raw_batches(path, product, texts):
            lines = pa.array(range(line, line + raw.num_rows), pa.int64())
            line += raw.num_rows
            con.register("raw", pa.Table.from_batches([raw]).append_column("_line", lines))
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE judged AS SELECT *, "
                f"concat_ws('; ', {', '.join(reasons)}) AS _reason FROM raw"
            )
            good = (
                con.execute(f"SELECT {', '.join(casts)} FROM judged WHERE _reason = '' ORDER BY _line")
                .arrow()
                .read_all()
            )
            bad = (
                con.execute(
                    "SELECT * EXCLUDE (_reason, _line), _reason, _line FROM judged "
                    "WHERE _reason <> '' ORDER BY _line"
                )
                .arrow()
                .read_all()
            )
            yield _as_batch(good, target), (bad if bad.num_rows else None)
    finally:
        con.close()
