"""Arrow record batches -> Iceberg data files, split by the table's partition spec.

pyiceberg 0.12 splits an appended Arrow table by filtering the whole table once per partition
value (``_determine_partitions``), so its cost grows with rows x partitions, and it takes a
partitioned table only whole, in memory. Here the rows are split once: each bounded chunk of
the stream is sorted by its partition values (O(n log n)) and cut into one slice per value.
When the stream is larger than one chunk, the sorted chunks are spilled to local Arrow IPC
files (sorting and spilling on a thread of their own while the next chunk is read) and merged
partition by partition, so a partition still becomes one data file (or a few, when it outgrows
the target size) whatever the order of the input, while memory holds a few chunks. Every file
is written as pyiceberg's :func:`pyiceberg.io.pyarrow.write_file` writes it (field ids, column
statistics, the table's location provider and Parquet properties), from batches converted to
the file schema once, as they arrive: converting each partition's slices per file cost more
than the Parquet writing at 2,500 partitions. The caller adds the returned :class:`DataFile` s
to a snapshot (:func:`mesh_assets.iceberg.commit.replace_rows`).

An unpartitioned table's stream is written as it comes into a file that rolls over at the
target size, so memory stays flat however large the input: it holds one row group, gathered
from the incoming batches up to the table's ``write.parquet.row-group-limit`` rows. Writing
each batch as it came made row groups of the reader's batch size (64Ki rows), which Trino reads
about twice as slowly as the large row groups it writes itself (bench/results.md). Parquet
pages end at the table's ``write.parquet.page-row-limit`` rows, as Iceberg defines that
property (:class:`_ParquetWriter`).
"""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    ParquetFormatWriter,
    _check_pyarrow_schema_compatible,
    _to_requested_schema,
    pyarrow_to_schema,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.schema import sanitize_column_names
from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, TableProperties, Transaction, WriteTask
from pyiceberg.table.locations import load_location_provider
from pyiceberg.typedef import Record
from pyiceberg.utils.concurrent import ExecutorFactory
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int

FILE_ROWS = 1_000_000  # rows per sorted chunk and per data file (unless one row group is larger), at most
_KEY = "_mesh_partition_{}"  # the computed partition values, next to the data while sorting


def _target_bytes(writer: _Writer) -> int:
    """The table's ``write.target-file-size-bytes`` (in Arrow bytes, as pyiceberg reads it)."""
    return property_as_int(
        writer.metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )


def _cut(
    batches: Iterable[pa.RecordBatch], max_rows: int, max_bytes: int | None = None
) -> Iterator[tuple[pa.RecordBatch, bool]]:
    """``batches`` cut into consecutive groups of at most ``max_rows`` rows and, when given,
    about ``max_bytes`` Arrow bytes (a batch larger than either is sliced): (piece, whether the
    piece ends its group), lazily."""
    rows = size = 0
    for batch in batches:
        while batch.num_rows:
            room = max_rows - rows
            if max_bytes is not None and batch.nbytes and size + batch.nbytes > max_bytes:
                room = min(room, max(1, batch.num_rows * (max_bytes - size) // batch.nbytes))
            head, batch = batch.slice(0, room), batch.slice(room)
            rows += head.num_rows
            full = rows >= max_rows
            if max_bytes is not None:
                size += head.nbytes
                full = full or size >= max_bytes
            if full:
                rows = size = 0
            yield head, full


def _bounded(
    batches: Iterable[pa.RecordBatch], max_rows: int, max_bytes: int | None = None
) -> Iterator[list[pa.RecordBatch]]:
    """The groups of :func:`_cut` as lists."""
    group = []
    for piece, full in _cut(batches, max_rows, max_bytes):
        group.append(piece)
        if full:
            yield group
            group = []
    if group:
        yield group


class _ParquetWriter(ParquetFormatWriter):
    """pyiceberg's Parquet file writer, its pages ending at ``write.parquet.page-row-limit``
    rows, as Iceberg defines that table property (and its Java writer, Spark's, applies it).

    pyiceberg 0.12 hands the property to pyarrow as ``write_batch_size`` instead
    (apache/iceberg-python#1017), and Arrow since 21 ends every page at 20,000 rows unless
    ``max_rows_per_page`` says otherwise (apache/arrow#47090). A low-cardinality column's pages
    were then a few KiB each, and Trino spent 1.3-1.5x the CPU of its own files scanning such
    columns (l_shipmode, the dates: SF5 Q12 1.09-1.13x); with pages that end at
    ``write.parquet.page-size-bytes`` (1 MiB) first, Q1/Q6/Q12 took 0.93-1.04x (bench/results.md).
    The page size is checked every pyiceberg default page-row-limit rows, as before."""

    def __init__(self, output_file, file_schema, properties):
        super().__init__(output_file, file_schema, properties)
        self._parquet_writer_kwargs |= {
            "max_rows_per_page": property_as_int(
                properties,
                TableProperties.PARQUET_PAGE_ROW_LIMIT,
                TableProperties.PARQUET_PAGE_ROW_LIMIT_DEFAULT,
            ),
            "write_batch_size": TableProperties.PARQUET_PAGE_ROW_LIMIT_DEFAULT,
        }


@dataclass
class _Writer:
    """pyiceberg's data-file writing for one transaction, step by step: the same schema checks,
    Arrow conversion (field ids, sanitized names), Parquet writer (column statistics, the
    table's Parquet properties), file names and location provider as ``write_file``, with each
    batch converted once as it arrives rather than once per file it ends up in."""

    tx: Transaction
    schema: pa.Schema

    def __post_init__(self):
        # one copy of the transaction's metadata: pyiceberg rebuilds it on every access
        self.metadata = metadata = self.tx.table_metadata
        self.spec, self.table_schema = metadata.spec(), metadata.schema()
        self.downcast = downcast = Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False
        # the same schema handling as pyiceberg's own append
        _check_pyarrow_schema_compatible(
            metadata.schema(),
            self.schema,
            downcast_ns_timestamp_to_us=downcast,
            format_version=metadata.format_version,
        )
        self.task_schema = pyarrow_to_schema(
            self.schema,
            name_mapping=metadata.schema().name_mapping,
            downcast_ns_timestamp_to_us=downcast,
            format_version=metadata.format_version,
        )
        self.properties, self.io = metadata.properties, self.tx._table.io
        self.file_format = FileFormat(
            self.properties.get(TableProperties.WRITE_FILE_FORMAT, TableProperties.WRITE_FILE_FORMAT_DEFAULT)
        )
        self.model = FileFormatFactory.get(self.file_format)
        self.locations = load_location_provider(metadata.location, self.properties)
        self.file_schema = sanitize_column_names(self.table_schema)
        self.row_group = property_as_int(
            self.properties,
            TableProperties.PARQUET_ROW_GROUP_LIMIT,
            TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT,
        )
        self.write_uuid, self.counter = uuid.uuid4(), itertools.count()

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """``batch`` as the data file stores it (file schema, field ids)."""
        return _to_requested_schema(
            self.file_schema,
            self.task_schema,
            batch,
            downcast_ns_timestamp_to_us=self.downcast,
            include_field_ids=True,
            format_model=self.model,
        )

    def _open(self, key: PartitionKey | None):
        """A new data file (of partition ``key``): its path, output and format writer."""
        task = WriteTask(self.write_uuid, next(self.counter), self.task_schema, [], partition_key=key)
        path = self.locations.new_data_location(
            task.generate_data_file_filename(self.model.file_extension()), partition_key=key
        )
        output = self.io.new_output(path)
        if self.file_format == FileFormat.PARQUET:
            return path, output, _ParquetWriter(output, self.file_schema, self.properties)
        return path, output, self.model.create_writer(output, self.file_schema, self.properties)

    def _data_file(self, path, output, statistics, key: PartitionKey | None) -> DataFile:
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=self.file_format,
            partition=key.partition if key else Record(),
            file_size_in_bytes=len(output),
            sort_order_id=None,
            spec_id=self.metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )

    def _write_file(self, file: tuple[list[pa.RecordBatch], PartitionKey | None]) -> DataFile:
        batches, key = file
        path, output, writer = self._open(key)
        writer.write(pa.Table.from_batches(batches))
        return self._data_file(path, output, writer.close(), key)

    def write(self, files: list[tuple[list[pa.RecordBatch], PartitionKey | None]]) -> list[DataFile]:
        """One data file per group of converted batches (:meth:`convert`), in parallel on
        pyiceberg's executor."""
        return list(ExecutorFactory.get_or_create().map(self._write_file, files))

    def stream(self, batches: Iterable[pa.RecordBatch]) -> Iterator[DataFile]:
        """Unpartitioned files written as the batches come, a row group at a time (the batches
        gathered up to ``write.parquet.row-group-limit`` rows or the file's end), so memory
        holds a row group, not a file."""
        path = output = writer = None
        pending: list[pa.RecordBatch] = []
        # a file holds at least one whole row group (Trino reads each row group as a split)
        for piece, full in _cut(batches, max(FILE_ROWS, self.row_group), _target_bytes(self)):
            if writer is None:
                path, output, writer = self._open(None)
            pending.append(self.convert(piece))
            if full or sum(batch.num_rows for batch in pending) >= self.row_group:
                writer.write(pa.Table.from_batches(pending))
                pending = []
            if full:
                yield self._data_file(path, output, writer.close(), None)
                writer = None
        if writer is not None:
            if pending:
                writer.write(pa.Table.from_batches(pending))
            yield self._data_file(path, output, writer.close(), None)


def data_files(tx: Transaction, batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> Iterator[DataFile]:
    """The data files holding ``batches`` (typed by ``schema``), written for ``tx``'s table:
    split by its partition spec, at most :data:`FILE_ROWS` rows and about the table's target
    file size each."""
    writer = _Writer(tx, schema)
    if writer.spec.is_unpartitioned():
        yield from writer.stream(batches)
    else:
        yield from _partitioned(writer, batches)


# --- partitioned tables ------------------------------------------------------------------------


@dataclass
class _SortedRun:
    """One chunk of the stream sorted by partition values: ``slices`` maps a partition's values
    to its rows, as batches kept in memory or, once spilled, as batch numbers of an IPC file."""

    slices: dict[tuple, list]
    table: pa.Table | None = None
    reader: pa.ipc.RecordBatchFileReader | None = None

    def rows_of(self, key: tuple) -> list[pa.RecordBatch]:
        if self.reader is None:
            return self.slices.get(key, [])
        return [self.reader.get_batch(i) for i in self.slices.get(key, [])]

    def spill(self, path: Path) -> _SortedRun:
        """The same run read back from an Arrow IPC file at ``path`` (memory freed)."""
        numbers, count = {}, 0
        with pa.ipc.new_file(str(path), self.table.schema) as out:
            for key, batches in self.slices.items():
                numbers[key] = list(range(count, count + len(batches)))
                for batch in batches:
                    out.write_batch(batch)
                count += len(batches)
        return _SortedRun(numbers, reader=pa.ipc.open_file(pa.OSFile(str(path))))


def _sorted_run(writer: _Writer, chunk: pa.Table) -> _SortedRun:
    """``chunk`` (converted, :meth:`_Writer.convert`) sorted by the values of the partition
    spec's transforms, cut into one slice per distinct value (the values are computed by
    pyiceberg's own transforms)."""
    spec, schema = writer.spec, writer.file_schema
    names = [_KEY.format(i) for i in range(len(spec.fields))]
    keys = pa.table(
        {
            name: field.transform.pyarrow_transform(schema.find_field(field.source_id).field_type)(
                chunk.column(schema.find_column_name(field.source_id))
            )
            for name, field in zip(names, spec.fields, strict=True)
        }
    )
    order = pc.sort_indices(keys, sort_keys=[(n, "ascending", "at_end") for n in names])
    keys, chunk = keys.take(order), chunk.take(order)
    # unthreaded group_by keeps the order of first appearance: here, the sorted order
    counts = keys.group_by(names, use_threads=False).aggregate([([], "count_all")])
    slices, start = {}, 0
    for row in counts.to_pylist():
        key = tuple(row[n] for n in names)
        slices[key] = chunk.slice(start, row["count_all"]).to_batches()
        start += row["count_all"]
    return _SortedRun(slices, table=chunk)


def _partition_key(writer: _Writer, key: tuple) -> PartitionKey:
    return PartitionKey(
        field_values=[
            PartitionFieldValue(f, value) for f, value in zip(writer.spec.fields, key, strict=True)
        ],
        partition_spec=writer.spec,
        schema=writer.table_schema,
    )


def _spill(run: Future[_SortedRun], path: Path) -> _SortedRun:
    return run.result().spill(path)


def _partitioned(writer: _Writer, batches: Iterable[pa.RecordBatch]) -> Iterator[DataFile]:
    """Sort each chunk by partition, spill all but the last, then write partition after
    partition: each partition's slices of every run, in files of bounded size, many small
    partitions per call of the (parallel) writer. A file's bound in rows comes from the input's
    average row size (Arrow bytes), so the merge never measures the slices it gathers."""
    target = _target_bytes(writer)
    with (
        tempfile.TemporaryDirectory(prefix="mesh-partition-runs-") as spill,
        ThreadPoolExecutor(1, thread_name_prefix="mesh-sort") as sorter,
    ):
        spilled: list[Future[_SortedRun]] = []
        newest: Future[_SortedRun] | None = None
        rows = size = 0
        for number, group in enumerate(_bounded(map(writer.convert, batches), FILE_ROWS, target)):
            chunk = pa.Table.from_batches(group)
            rows, size = rows + chunk.num_rows, size + chunk.nbytes
            if spilled:  # at most one chunk sorted or spilled behind the one read
                spilled[-1].result()
            if newest is not None:
                spilled.append(sorter.submit(_spill, newest, Path(spill) / f"run-{number - 1}.arrow"))
            newest = sorter.submit(_sorted_run, writer, chunk)
        runs = [run.result() for run in spilled] + ([newest.result()] if newest else [])
        file_rows = max(1, min(FILE_ROWS, target * rows // max(size, 1)))
        partitions = dict.fromkeys(key for run in runs for key in run.slices)
        pending, pending_rows = [], 0
        for key in partitions:
            slices = (batch for run in runs for batch in run.rows_of(key))
            for group in _bounded(slices, file_rows):
                pending.append((group, _partition_key(writer, key)))
                pending_rows += sum(batch.num_rows for batch in group)
                if pending_rows >= file_rows:
                    yield from writer.write(pending)
                    pending, pending_rows = [], 0
        if pending:
            yield from writer.write(pending)
