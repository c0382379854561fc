"""An unpartitioned stream of small batches becomes files of large row groups: the batches are
gathered up to the table's ``write.parquet.row-group-limit`` rows (Trino reads 64Ki-row groups,
the reader's batch size, about twice as slowly as its own), files still roll at their size."""

import random

import pyarrow as pa
import pyarrow.parquet as pq

from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
from mesh_assets.iceberg.datafiles import data_files

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])


def _table(identifier: str, properties: dict):
    """A new table of SCHEMA in namespace shop with ``properties``."""
    catalog = open_catalog()
    catalog.create_namespace_if_not_exists("shop")
    return catalog.create_table(identifier, schema=SCHEMA, properties=properties)


def test_small_batches_are_gathered_into_row_groups_of_the_limit(mesh_home, monkeypatch):
    monkeypatch.setattr("mesh_assets.iceberg.datafiles.FILE_ROWS", 3_000)
    table = _table("shop.items", {"write.parquet.row-group-limit": "1000"})
    batches = [
        pa.record_batch(
            [pa.array(range(n, n + 100), pa.int64()), pa.array([f"item {n}"] * 100)], schema=SCHEMA
        )
        for n in range(0, 5_000, 100)
    ]
    with table.transaction() as tx:
        files = list(data_files(tx, batches, SCHEMA))
        with tx._append_snapshot_producer({}) as append:  # as mesh_assets.iceberg.commit does
            for data_file in files:
                append.append_data_file(data_file)

    layout = []
    for data_file in files:
        with table.io.new_input(data_file.file_path).open() as f:
            meta = pq.ParquetFile(f).metadata
        layout.append([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    assert layout == [[1000, 1000, 1000], [1000, 1000]]
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == list(range(5_000))


def _write(table, batches, schema) -> list[list[int]]:
    """Rows per row group of each data file the platform's writer made of ``batches``."""
    with table.transaction() as tx:
        files = list(data_files(tx, batches, schema))
    layout = []
    for data_file in files:
        with table.io.new_input(data_file.file_path).open() as f:
            meta = pq.ParquetFile(f).metadata
        layout.append([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    return layout


def test_a_row_group_larger_than_a_file_of_rows_is_kept_whole(mesh_home, monkeypatch):
    """Trino reads a row group as one split: a file grows to hold the whole group."""
    monkeypatch.setattr("mesh_assets.iceberg.datafiles.FILE_ROWS", 1_000)
    table = _table("shop.items", {"write.parquet.row-group-limit": "4000"})
    batches = [
        pa.record_batch([pa.array(range(n, n + 100), pa.int64()), pa.array(["x"] * 100)], schema=SCHEMA)
        for n in range(0, 10_000, 100)
    ]
    assert _write(table, batches, SCHEMA) == [[4000], [4000], [2000]]


def test_a_high_cardinality_column_stops_its_dictionary_at_the_platforms_limit(mesh_home):
    """The platform's tables stop a column's dictionary once it passes
    write.parquet.dict-size-bytes (256 KiB; pyiceberg's default, 2 MiB, holds all 100,000 keys:
    781 KiB) and write plain pages after it, as Trino does for such columns."""
    table = _table("shop.keys", TABLE_PROPERTIES)
    keys = random.Random(21).sample(range(1 << 62), 100_000)  # distinct, incompressible
    batch = pa.record_batch([pa.array(keys, pa.int64()), pa.array(["x"] * len(keys))], schema=SCHEMA)
    with table.transaction() as tx:
        [data_file] = data_files(tx, [batch], SCHEMA)
    with table.io.new_input(data_file.file_path).open() as f:
        column = pq.ParquetFile(f).metadata.row_group(0).column(0)
    dictionary_bytes = column.data_page_offset - column.dictionary_page_offset
    # pyarrow checks the limit after each write batch of 20,000 values (pyiceberg's default)
    assert 256 << 10 < dictionary_bytes < (256 << 10) + 20_000 * 8 + 100  # + the page header


def test_pages_end_at_the_page_size_not_at_20000_rows(mesh_home):
    """The platform's tables end a Parquet page at write.parquet.page-row-limit rows (1Mi), so
    at its size (1 MiB) first: pages of a few KiB cost Trino up to 1.5x the CPU on
    low-cardinality columns. pyarrow does not expose page headers; what they cost shows it: a
    constant column of 200,000 rows is one data page on the platform's table, ten (a header and
    an encoded run each) at the default of 20,000 rows."""
    sizes, rows = {}, 200_000
    for name, properties in (("platform", TABLE_PROPERTIES), ("default", {})):
        table = _table(f"shop.{name}", properties)
        batch = pa.record_batch([pa.array(range(rows), pa.int64()), pa.array(["MAIL"] * rows)], schema=SCHEMA)
        with table.transaction() as tx:
            [data_file] = data_files(tx, [batch], SCHEMA)
        with table.io.new_input(data_file.file_path).open() as f:
            parquet = pq.ParquetFile(f)
            column = parquet.metadata.row_group(0).column(1)
            assert parquet.read().column("name").unique().to_pylist() == ["MAIL"]
        # the data pages: the column chunk after its dictionary page
        sizes[name] = column.total_compressed_size - (column.data_page_offset - column.dictionary_page_offset)
    assert sizes["default"] > 8 * sizes["platform"]  # measured: 590 and 59 bytes
