"""Reading landing files as record batches typed by the contract, never loaded whole, with one
strict literal grammar per contract type. A file that does not fit its contract fails with the
file, product, line, column and what to do; a value is shown only when its column is
classified ``public`` (otherwise ``<pii: 7 chars>``).

The grammar (the same with and without ``quarantine: true``; surrounding spaces are never
trimmed; empty, ``NA``, ``NULL`` and ``null`` are missing values):

==============  ====================================================================================
int, long       optionally signed decimal digits within the type's range: ``42``, ``-7``, ``+3``,
                ``007``; no hex (``0x10``), underscores, exponent or fraction
float, double   decimal notation with optional sign, fraction and exponent (``1.5``, ``-2e-3``,
                ``.5``); ``nan``, ``inf``, ``-inf`` and values that overflow (``1e400``) only in a
                column with ``allowNonFinite: true``
decimal(p,s)    optionally signed decimal notation (``12.50``, ``-3``, ``1e2``) that fits exactly:
                more than ``s`` fraction digits or ``p - s`` integer digits are refused, never
                rounded
boolean         ``true`` / ``false`` (any case), ``1`` / ``0``
date            ``YYYY-MM-DD``, a real calendar date
timestamp       ISO 8601 without a zone: ``YYYY-MM-DD``, ``YYYY-MM-DDThh[:mm[:ss[.ffffff]]]`` (or a
                space for ``T``); a value with a zone is refused
timestamptz     the same with a zone (``Z``, ``+hh:mm``, ``+hhmm``), stored in UTC; without a zone
                only when the contract's ``source.timezone`` says which zone it is in (a local
                time that does not exist or exists twice in that zone is refused)
time            ``hh:mm:ss[.ffffff]``
uuid            ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`` (hex)
string, binary  any text
==============  ====================================================================================

Values are checked column by column with Arrow compute (casts that refuse what they cannot
represent exactly, plus checks for what a cast would accept beyond the grammar), not row by row.
"""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mesh_assets.contract.model import Column, DataProduct
from mesh_assets.ingest.landing import IngestionError, Landed, fail

NULL_VALUES = ["", "NA", "NULL", "null"]
# The CSV reader's block: a batch holds about this much of the file. Arrow's streaming reader
# reads up to 32 blocks ahead of the batch being consumed (its background reader's default
# queue, not an option: ARROW-12090), so the block sets most of a read's memory: 16 MiB
# blocks held about 550 MiB, 4 MiB blocks 140 MiB, and read no slower (bench/ingest.py).
BATCH_BYTES = 4 << 20
MAX_BLOCK_BYTES = 256 << 20  # a row longer than this is refused (memory stays bounded)
_CSV_COLUMN = re.compile(r"CSV column #(\d+)")
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst")
_TIME = r"^[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$"
_ZONED = re.compile(r"(Z|[+-]\d\d:?\d\d)$")
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_EXPECTED = {
    "int": "optionally signed decimal digits within the int range (no hex, underscores, exponent or fraction)",
    "long": "optionally signed decimal digits within the long range (no hex, underscores, exponent or fraction)",
    "float": "a finite decimal number such as 1.5 or -2e-3",
    "double": "a finite decimal number such as 1.5 or -2e-3",
    "boolean": "true, false, 1 or 0",
    "date": "YYYY-MM-DD, a real calendar date",
    "timestamp": "ISO 8601 without a time zone, e.g. 2024-01-31T13:45:00",
    "timestamptz": "ISO 8601 with a time zone, e.g. 2024-01-31T13:45:00Z or +01:00",
    "time": "hh:mm:ss[.ffffff]",
    "uuid": "8-4-4-4-12 hexadecimal digits",
}


def mask(column: Column, value) -> str:
    """How a value appears in an error or in event metadata: itself (cut when long) for a
    ``public`` column, else only its classification and length."""
    text = "" if value is None else str(value)
    if column.classification != "public":
        return f"<{column.classification or 'unclassified'}: {len(text)} chars>"
    if len(text) > 100:
        return repr(f"{text[:100]}... ({len(text):,} characters)")
    return repr(text)


# --- the file as a whole -----------------------------------------------------------------------


def _format(landed: Landed) -> str:
    name = landed.path.name
    for suffix in _COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return (landed.product.source.get("format") or name.rsplit(".", 1)[-1]).lower()


def check_columns(landed: Landed) -> list[str]:
    """The file's column names, after checking they are exactly the contract's: no blank or
    repeated name, none missing, none extra."""
    product = landed.product
    fmt = _format(landed)
    if fmt == "csv":
        found = _csv_header(landed)
    elif fmt == "parquet":
        with landed.stream() as stream:
            try:
                found = pq.ParquetFile(stream).schema_arrow.names
            except pa.ArrowInvalid:
                raise fail(
                    landed.uri,
                    product,
                    "not a readable Parquet file (cut short or not Parquet at all); land the whole file again",
                ) from None
    else:
        raise fail(landed.uri, product, f"unsupported format '{fmt}' (use csv or parquet)")
    for position, name in enumerate(found, start=1):
        if not name.strip():
            raise fail(
                landed.uri,
                product,
                f"line 1: header column {position} has no name; name every column as contract "
                f"{product.path} does",
            )
        if found.index(name) != position - 1:
            raise fail(
                landed.uri,
                product,
                f"line 1: the header names column '{name}' twice (columns {found.index(name) + 1} and "
                f"{position}); which one is meant is ambiguous, so nothing is read. Fix the header",
                column=name,
            )
    wanted = [c.name for c in product.columns]
    missing = [c for c in wanted if c not in found]
    extra = [c for c in found if c not in wanted]
    if missing:
        raise fail(
            landed.uri,
            product,
            f"the file has no column '{missing[0]}' declared in contract "
            f"{product.path} (file columns: {', '.join(found)}); fix the file or the contract",
            column=missing[0],
        )
    if extra:
        raise fail(
            landed.uri,
            product,
            f"the file has column '{extra[0]}' that contract {product.path} does not declare; "
            "add it to the contract or drop it from the file",
            column=extra[0],
        )
    return found


def _csv_header(landed: Landed) -> list[str]:
    """The header's column names; an empty file or a header that is not UTF-8 fails clearly."""
    product = landed.product
    try:
        head = landed.head()
    except OSError as exc:  # a compressed stream that is cut short or corrupt
        raise fail(
            landed.uri, product, f"cannot be decompressed ({exc}); land the whole file again"
        ) from None
    first = head.split(b"\n", 1)[0]
    if not first.strip():
        raise fail(
            landed.uri,
            product,
            "the file is empty: expected a header line with the columns of "
            f"contract {product.path}, then one line per row",
        )
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(landed.uri, product, _not_utf8(1, first[exc.start], exc.start + 1)) from None
    if not landed.compression and landed.last_byte != b"\n":  # compressed streams check their length
        lines = sum(1 for _ in _line_shapes(landed))
        raise fail(
            landed.uri,
            product,
            f"line {lines}: the file does not end with a line break, so its last line may be cut "
            "short (a copy that stopped, a writer still writing); land the whole file, ending "
            "with a line break",
        )
    return next(csv.reader([text.rstrip("\r")]), [])


def _not_utf8(line: int, byte: int, position: int) -> str:
    return (
        f"line {line}: the file is not UTF-8 text (byte 0x{byte:02x} at position {position}, as "
        "latin-1/cp1252 encoders write it); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
    )


def _blocks(landed: Landed) -> Iterator[bytes]:
    with landed.stream() as stream:
        while block := stream.read(1 << 20):
            yield block


def _first_non_utf8(landed: Landed) -> str | None:
    """Where the first byte that is not UTF-8 is, as :func:`_not_utf8` says it, or None."""
    line, column, carry = 1, 0, b""
    for block in _blocks(landed):
        data, carry = carry + block, b""
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
                data, carry = data[: exc.start], data[exc.start :]  # a character split by the block
            else:
                before = data[: exc.start]
                breaks = before.count(b"\n")
                position = exc.start - before.rfind(b"\n") if breaks else column + exc.start + 1
                return _not_utf8(line + breaks, data[exc.start], position)
        breaks = data.count(b"\n")
        line += breaks
        column = len(data) - data.rfind(b"\n") - 1 if breaks else column + len(data)
    return None


def _line_shapes(landed: Landed) -> Iterator[tuple[bool, bool]]:
    """(odd number of quote characters, blank) of each line of the file, decompressed, without
    holding a line in memory."""
    odd, blank = False, True
    for block in _blocks(landed):
        parts = block.split(b"\n")
        for i, part in enumerate(parts):
            odd ^= part.count(b'"') % 2 == 1
            blank = blank and not part.strip(b"\r")
            if i < len(parts) - 1:
                yield odd, blank
                odd, blank = False, True
    if odd or not blank:
        yield odd, blank


def line_numbers(landed: Landed, rows: list[int]) -> dict[int, int]:
    """The line (1-based, as an editor counts) on which each data row of ``rows`` starts: the
    header and blank lines are skipped as the CSV reader skips them, and a quoted value may
    span lines. Parquet files have no lines: their rows count from 1. Error path only."""
    if _format(landed) != "csv":
        return {row: row + 1 for row in rows}
    wanted, found = set(rows), {}
    last = max(rows, default=-1)
    row, start, quoted = -1, 0, False
    for number, (odd, blank) in enumerate(_line_shapes(landed), start=1):
        if not quoted:
            if blank:
                continue
            start = number
        quoted ^= odd
        if not quoted:
            if row in wanted:
                found[row] = start
            row += 1
            if row > last:
                break
    if row in wanted and row not in found:
        found[row] = start
    return found


def _unreadable(landed: Landed, exc: pa.ArrowInvalid) -> IngestionError | None:
    """The clear error for a CSV that cannot be read at all (not CSV, not UTF-8), else None.
    Error path only; it names lines and positions, never the text of a line."""
    product = landed.product
    message = str(exc)
    if "invalid UTF8" in message:
        header = _csv_header(landed)
        found = _CSV_COLUMN.search(message)
        column = header[int(found.group(1))] if found and int(found.group(1)) < len(header) else None
        problem = _first_non_utf8(landed) or "the file is not UTF-8 text; re-encode it as UTF-8"
        return fail(landed.uri, product, problem, column=column)
    if "CSV parse error" not in message:
        return None
    invalid = []

    def first_invalid(row) -> str:
        if not invalid:
            invalid.append(row)
        return "skip"

    try:
        with landed.stream() as stream:
            for _ in pacsv.open_csv(
                stream,
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
        detail = f"{where}: expected {row.expected_columns} fields, found {row.actual_columns}"
    else:
        detail = "a quoted value is never closed"
    return fail(
        landed.uri,
        product,
        f"not valid CSV: {detail}; quote fields that contain the "
        "delimiter, a quote or a line break, and give every line the header's columns",
    )


# --- raw batches -------------------------------------------------------------------------------


def _csv_texts(landed: Landed, names: list[str]) -> Iterator[pa.RecordBatch]:
    """The CSV's rows as text columns, in batches. A row longer than the reader's block is
    read by starting over with a larger block (skipping the rows already given), up to
    :data:`MAX_BLOCK_BYTES`."""
    product = landed.product
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.large_string()),
        null_values=NULL_VALUES,
        strings_can_be_null=True,
        include_columns=names,
    )
    block, given = BATCH_BYTES, 0
    while True:
        skip = given
        try:
            with landed.stream() as stream:
                reader = pacsv.open_csv(
                    stream, read_options=pacsv.ReadOptions(block_size=block), convert_options=options
                )
                for batch in reader:
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    batch, skip = batch.slice(skip), 0
                    given += batch.num_rows
                    yield batch
            return
        except pa.ArrowInvalid as exc:
            if "straddling" in str(exc) and block < MAX_BLOCK_BYTES:
                block *= 4
                continue
            if "straddling" in str(exc):
                line = line_numbers(landed, [given]).get(given, "?")
                raise fail(
                    landed.uri,
                    product,
                    f"line {line}: a row is longer than {MAX_BLOCK_BYTES >> 20} MB, more than ingestion "
                    "reads at once; store such values outside the table (a file or object key per row)",
                ) from None
            raise _unreadable(landed, exc) or fail(landed.uri, product, f"cannot be read: {exc}") from None
        except OSError as exc:  # a compressed stream cut short
            raise fail(
                landed.uri, product, f"cannot be decompressed ({exc}); land the whole file again"
            ) from None


def _raw_batches(landed: Landed) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches with the contract's columns, as text (CSV) or as stored
    (Parquet)."""
    names = [c.name for c in landed.product.columns]
    if _format(landed) != "parquet":
        yield from _csv_texts(landed, names)
        return
    with landed.stream() as stream:
        yield from pq.ParquetFile(stream).iter_batches(columns=names)


# --- the grammar -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One batch judged against the contract: the rows that fit, typed; where the others are
    (``bad``: row positions in the batch) and why (``reasons``, one per bad row)."""

    good: pa.RecordBatch
    bad: list[int]
    reasons: list[str]


def _null(typ: pa.DataType) -> pa.Scalar:
    return pa.scalar(None, typ)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _cast(values: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """``values`` cast to ``target`` (null where they do not cast) and the mask of those that
    do not (None when all do). The failing values are found by halving, so a clean column
    costs one cast."""
    try:
        return values.cast(target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    failing = [False] * len(values)

    def mark(part: pa.Array, offset: int) -> None:
        if len(part) <= 8:
            for i in range(len(part)):
                try:
                    part.slice(i, 1).cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    failing[offset + i] = True
            return
        half = len(part) // 2
        for start, piece in ((0, part.slice(0, half)), (half, part.slice(half))):
            try:
                piece.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                mark(piece, offset + start)

    mark(values, 0)
    bad = pa.array(failing)
    return pc.if_else(bad, _null(values.type), values).cast(target), bad


def _either(a: pa.Array | None, b: pa.Array | None) -> pa.Array | None:
    """Either mask true (a missing value's null counts as false); None stands for all false."""
    masks = [m for m in (a, b) if m is not None]
    if not masks:
        return None
    return pc.fill_null(masks[0] if len(masks) == 1 else pc.or_(*masks), False)


def _integers(text: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    plus = pc.starts_with(text, "+")
    refused = None
    if _any(plus):  # Arrow's cast takes "-5" but not "+5"; "+-5" is no number
        text = pc.if_else(plus, pc.utf8_slice_codeunits(text, 1), text)
        refused = pc.and_(plus, pc.or_(pc.starts_with(text, "-"), pc.starts_with(text, "+")))
    hexadecimal = pc.or_(pc.match_substring(text, "x"), pc.match_substring(text, "X"))
    if _any(hexadecimal):  # Arrow's cast reads 0x10 as 16
        refused = _either(refused, hexadecimal)
    if refused is not None:
        text = pc.if_else(refused, _null(text.type), text)
    typed, bad = _cast(text, target)
    return typed, _either(refused, bad)


def _timestamps_in_zone(text: pa.Array, zone: str) -> pa.Array:
    """Local times without a zone, read in ``zone`` and stored in UTC; null where a value is no
    timestamp or names a time the zone skips or repeats (daylight saving)."""
    local, _ = _cast(text, pa.timestamp("us"))
    first = pc.assume_timezone(local, zone, ambiguous="earliest", nonexistent="earliest")
    last = pc.assume_timezone(local, zone, ambiguous="latest", nonexistent="latest")
    utc = pa.timestamp("us", "UTC")
    return pc.if_else(pc.equal(first, last), first, _null(first.type)).cast(utc)


def parse_column(text: pa.Array, column: Column, target: pa.DataType, zone: str | None):
    """``text`` (a CSV column) typed by the grammar: (values, null where refused; mask of the
    refused values or None)."""
    if pa.types.is_large_string(target) or pa.types.is_string(target):
        return text.cast(target), None
    if pa.types.is_binary(target) or pa.types.is_large_binary(target):
        return text.cast(target), None
    if pa.types.is_integer(target):
        return _integers(text, target)
    if pa.types.is_floating(target):
        typed, bad = _cast(text, target)
        if column.allow_non_finite:
            return typed, bad
        infinite = pc.fill_null(pc.invert(pc.is_finite(typed)), False)
        if not _any(infinite):
            return typed, bad
        return pc.if_else(infinite, _null(target), typed), _either(bad, infinite)
    if pa.types.is_timestamp(target) and target.tz is not None:
        typed, bad = _cast(text, target)
        if bad is None or zone is None:
            return typed, bad
        local = _timestamps_in_zone(pc.if_else(bad, text, _null(text.type)), zone)
        return pc.if_else(bad, local, typed), pc.and_(bad, pc.is_null(local))
    if pa.types.is_time(target):
        shaped = pc.fill_null(pc.match_substring_regex(text, _TIME), True)
        dated = pc.binary_join_element_wise(
            pa.scalar("1970-01-01T", text.type), text, pa.scalar("", text.type)
        )
        typed, bad = _cast(pc.if_else(shaped, dated, _null(text.type)), pa.timestamp("us"))
        return typed.cast(target), _either(bad, pc.invert(shaped))
    if isinstance(target, pa.UuidType):
        shaped = pc.fill_null(pc.match_substring_regex(text, _UUID), True)
        values = zip(text.to_pylist(), shaped.to_pylist())
        raw = [uuid.UUID(v).bytes if v is not None and ok else None for v, ok in values]
        return pa.ExtensionArray.from_storage(target, pa.array(raw, pa.binary(16))), pc.invert(shaped)
    return _cast(text, target)  # boolean, date, timestamp, decimal: Arrow's cast is the grammar


def _reason(column: Column, value, zone: str | None) -> str:
    """Why a present value of ``column`` was refused (the value masked unless public)."""
    kind = str(column.type).split("(")[0]
    shown = mask(column, value)
    if kind == "timestamptz" and not _ZONED.search(str(value)):
        if zone is None:
            return (
                f"value {shown} has no time zone; write it with one (Z or +hh:mm) or set "
                "source timezone in the contract"
            )
        return f"value {shown} is no valid local time in {zone} (not ISO 8601, or skipped or repeated there)"
    if kind in ("float", "double") and not column.allow_non_finite:
        return (
            f"value {shown} is not a valid {column.type} (a finite decimal number; nan and "
            "infinities need allowNonFinite: true on the column)"
        )
    if kind == "decimal":
        return (
            f"value {shown} is not a valid {column.type} (decimal notation that fits exactly, never rounded)"
        )
    expected = _EXPECTED.get(kind)
    return f"value {shown} is not a valid {column.type}" + (f" ({expected})" if expected else "")


def judge(batch: pa.RecordBatch, product: DataProduct) -> Judged:
    """Type one batch of raw rows by the contract's grammar, column by column."""
    target = product.arrow_schema()
    zone = product.timezone
    typed, refusals = [], []
    for column, field in zip(product.columns, target):
        values = batch.column(column.name)
        if pa.types.is_large_string(values.type) or pa.types.is_string(values.type):
            parsed, bad = parse_column(values.cast(pa.large_string()), column, field.type, zone)
        else:  # Parquet: typed already; a value that does not fit the contract's type is refused
            parsed, bad = _cast(values, field.type)
            if pa.types.is_floating(field.type) and not column.allow_non_finite:
                infinite = pc.fill_null(pc.invert(pc.is_finite(parsed)), False)
                if _any(infinite):
                    parsed, bad = pc.if_else(infinite, _null(field.type), parsed), _either(bad, infinite)
        missing = pc.is_null(values) if column.required else None
        if missing is not None and not _any(missing):
            missing = None
        typed.append(parsed)
        refusals.append((column, bad, missing, values))
    row_bad = None
    for _, bad, missing, _ in refusals:
        row_bad = _either(row_bad, _either(bad, missing))
    good = pa.RecordBatch.from_arrays(typed, schema=target)
    if row_bad is None or not _any(row_bad):
        return Judged(good, [], [])
    positions = pc.indices_nonzero(row_bad).to_pylist()
    reasons = []
    for position in positions:
        why = []
        for column, bad, missing, values in refusals:
            if bad is not None and bad[position].as_py():
                why.append(f"column {column.name}: {_reason(column, values[position].as_py(), zone)}")
            elif missing is not None and missing[position].as_py():
                why.append(f"column {column.name}: required value is missing")
        reasons.append("; ".join(why))
    return Judged(good.filter(pc.invert(row_bad)), positions, reasons)


# --- the two ways of reading -------------------------------------------------------------------


def read_batches(landed: Landed) -> Iterator[pa.RecordBatch]:
    """Record batches of the landed file typed and ordered as the contract says.

    The first row that does not fit stops the stream with an :class:`IngestionError` naming
    the line, the column and the reason."""
    product = landed.product
    check_columns(landed)
    first = 0
    for raw in _raw_batches(landed):
        judged = judge(raw, product)
        if judged.bad:
            row = first + judged.bad[0]
            line = line_numbers(landed, [row]).get(row, "?")
            reason = judged.reasons[0]
            column = reason.split(":", 1)[0].removeprefix("column ")
            where = "line" if _format(landed) == "csv" else "row"
            raise fail(
                landed.uri,
                product,
                f"{where} {line}: {reason.split(': ', 1)[1]}; fix the file, or set "
                "'quarantine: true' in the contract to set such rows aside",
                column=column,
            )
        first += raw.num_rows
        yield judged.good


def split_batches(landed: Landed) -> Iterator[tuple[pa.RecordBatch, pa.Table | None]]:
    """(good rows typed by the contract, bad rows as text with ``_reason`` and ``_row``, the
    row's position in the file counted from 0) per batch: the quarantine's reading, by the same
    grammar as :func:`read_batches`."""
    product = landed.product
    check_columns(landed)
    first = 0
    for raw in _raw_batches(landed):
        judged = judge(raw, product)
        bad = None
        if judged.bad:
            rows = raw.take(pa.array(judged.bad))
            bad = pa.Table.from_arrays(
                [rows.column(c.name).cast(pa.large_string()) for c in product.columns]
                + [
                    pa.array(judged.reasons, pa.large_string()),
                    pa.array([first + p for p in judged.bad], pa.int64()),
                ],
                names=[c.name for c in product.columns] + ["_reason", "_row"],
            )
        first += raw.num_rows
        yield judged.good, bad
