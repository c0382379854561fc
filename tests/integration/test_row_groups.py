"""An unpartitioned stream of small batches becomes files of large row groups: the batches are
gathered up to the table's ``write.parquet.row-group-limit`` rows (Trino reads 64Ki-row groups,
the reader's batch size, about twice as slowly as its own), files still roll at their size."""

import pyarrow as pa
import pyarrow.parquet as pq

from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.datafiles import data_files

SCHEMA = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])


def test_small_batches_are_gathered_into_row_groups_of_the_limit(mesh_home, monkeypatch):
    monkeypatch.setattr("mesh_assets.iceberg.datafiles.FILE_ROWS", 3_000)
    catalog = open_catalog()
    catalog.create_namespace("shop")
    table = catalog.create_table(
        "shop.items", schema=SCHEMA, properties={"write.parquet.row-group-limit": "1000"}
    )
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
