"""Arrow record batches -> Iceberg data files, split by the table's partition spec.

pyiceberg 0.12 splits an appended Arrow table by filtering the whole table once per partition
value (``_determine_partitions``), so its cost grows with rows x partitions, and it takes a
partitioned table only whole, in memory. Here the rows are split once: each bounded chunk of
the stream is sorted by its partition values (O(n log n)) and cut into one slice per value.
When the stream is larger than one chunk, the sorted chunks are spilled to local Arrow IPC
files and merged partition by partition, so a partition still becomes one data file (or a few,
when it outgrows the target size) whatever the order of the input, while memory holds about
one chunk. pyiceberg writes every file (:func:`pyiceberg.io.pyarrow.write_file`: field ids,
column statistics, the table's location provider and Parquet properties); the caller adds the
returned :class:`DataFile` s to a snapshot (:func:`mesh_assets.iceberg.commit.replace_rows`).

An unpartitioned table's stream is written as it comes into a file that rolls over at the
target size, so memory stays flat however large the input: it holds one row group, gathered
from the incoming batches up to the table's ``write.parquet.row-group-limit`` rows. Writing
each batch as it came made row groups of the reader's batch size (64Ki rows), which Trino reads
about twice as slowly as the large row groups it writes itself (bench/results.md).
"""

from __future__ import annotations

import itertools
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible,
    _to_requested_schema,
    pyarrow_to_schema,
    write_file,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.schema import sanitize_column_names
from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, TableProperties, Transaction, WriteTask
from pyiceberg.table.locations import load_location_provider
from pyiceberg.typedef import Record
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int

FILE_ROWS = 1_000_000  # rows per data file and per sorted chunk, at most
_KEY = "_mesh_partition_{}"  # the computed partition values, next to the data while sorting


def _target_bytes(writer: _Writer) -> int:
    """The table's ``write.target-file-size-bytes`` (in Arrow bytes, as pyiceberg reads it)."""
    return property_as_int(
        writer.metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )


def _cut(batches: Iterable[pa.RecordBatch], max_bytes: int) -> Iterator[tuple[pa.RecordBatch, bool]]:
    """``batches`` cut into consecutive groups of at most :data:`FILE_ROWS` rows and about
    ``max_bytes`` Arrow bytes (a batch larger than either is sliced): (piece, whether the piece
    ends its group), lazily."""
    rows = size = 0
    for batch in batches:
        while batch.num_rows:
            room = FILE_ROWS - rows
            if batch.nbytes and size + batch.nbytes > max_bytes:
                room = min(room, max(1, batch.num_rows * (max_bytes - size) // batch.nbytes))
            head, batch = batch.slice(0, room), batch.slice(room)
            rows, size = rows + head.num_rows, size + head.nbytes
            full = rows >= FILE_ROWS or size >= max_bytes
            if full:
                rows = size = 0
            yield head, full


def _bounded(batches: Iterable[pa.RecordBatch], max_bytes: int) -> Iterator[list[pa.RecordBatch]]:
    """The groups of :func:`_cut` as lists."""
    group = []
    for piece, full in _cut(batches, max_bytes):
        group.append(piece)
        if full:
            yield group
            group = []
    if group:
        yield group


@dataclass
class _Writer:
    """pyiceberg's writer of one transaction: each :meth:`write` call writes one data file per
    group of batches (in parallel, on pyiceberg's executor)."""

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
        self.write_uuid, self.counter = uuid.uuid4(), itertools.count()

    def write(self, files: list[tuple[list[pa.RecordBatch], PartitionKey | None]]) -> list[DataFile]:
        tasks = [
            WriteTask(self.write_uuid, next(self.counter), self.task_schema, batches, partition_key=key)
            for batches, key in files
        ]
        return list(write_file(self.tx._table.io, self.metadata, iter(tasks)))

    def stream(self, batches: Iterable[pa.RecordBatch]) -> Iterator[DataFile]:
        """Unpartitioned files written as the batches come, a row group at a time (the batches
        gathered up to ``write.parquet.row-group-limit`` rows or the file's end), so memory
        holds a row group, not a file: pyiceberg's ``write_file`` step by step, with its
        Parquet writer (field ids, statistics), file names and location provider."""
        properties, io = self.metadata.properties, self.tx._table.io
        file_format = FileFormat(
            properties.get(TableProperties.WRITE_FILE_FORMAT, TableProperties.WRITE_FILE_FORMAT_DEFAULT)
        )
        model = FileFormatFactory.get(file_format)
        locations = load_location_provider(self.metadata.location, properties)
        file_schema = sanitize_column_names(self.table_schema)
        row_group = property_as_int(
            properties,
            TableProperties.PARQUET_ROW_GROUP_LIMIT,
            TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT,
        )
        path = output = writer = None
        pending: list[pa.RecordBatch] = []
        for piece, full in _cut(batches, _target_bytes(self)):
            if writer is None:
                task = WriteTask(self.write_uuid, next(self.counter), self.task_schema, [])
                path = locations.new_data_location(task.generate_data_file_filename(model.file_extension()))
                output = io.new_output(path)
                writer = model.create_writer(output, file_schema, properties)
            pending.append(
                _to_requested_schema(
                    file_schema,
                    self.task_schema,
                    piece,
                    downcast_ns_timestamp_to_us=self.downcast,
                    include_field_ids=True,
                    format_model=model,
                )
            )
            if full or sum(batch.num_rows for batch in pending) >= row_group:
                writer.write(pa.Table.from_batches(pending))
                pending = []
            if full:
                yield self._data_file(path, output, writer.close(), file_format)
                writer = None
        if writer is not None:
            if pending:
                writer.write(pa.Table.from_batches(pending))
            yield self._data_file(path, output, writer.close(), file_format)

    def _data_file(self, path, output, statistics, file_format) -> DataFile:
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=file_format,
            partition=Record(),
            file_size_in_bytes=len(output),
            sort_order_id=None,
            spec_id=self.metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )


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
    """``chunk`` sorted by the values of the partition spec's transforms, cut into one slice per
    distinct value (the values are computed by pyiceberg's own transforms)."""
    spec, schema = writer.spec, writer.table_schema
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


def _partitioned(writer: _Writer, batches: Iterable[pa.RecordBatch]) -> Iterator[DataFile]:
    """Sort each chunk by partition, spill all but the last, then write partition after
    partition: each partition's slices of every run, in files of bounded size, many small
    partitions per call of pyiceberg's (parallel) writer."""
    target = _target_bytes(writer)
    with tempfile.TemporaryDirectory(prefix="mesh-partition-runs-") as spill:
        runs: list[_SortedRun] = []
        for number, group in enumerate(_bounded(batches, target)):
            if runs:
                runs[-1] = runs[-1].spill(Path(spill) / f"run-{number - 1}.arrow")
            runs.append(_sorted_run(writer, pa.Table.from_batches(group, writer.schema)))
        partitions = dict.fromkeys(key for run in runs for key in run.slices)
        pending, size = [], 0
        for key in partitions:
            rows = (batch for run in runs for batch in run.rows_of(key))
            for group in _bounded(rows, target):
                pending.append((group, _partition_key(writer, key)))
                size += sum(batch.nbytes for batch in group)
                if size >= target:
                    yield from writer.write(pending)
                    pending, size = [], 0
        if pending:
            yield from writer.write(pending)
