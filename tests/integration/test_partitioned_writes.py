"""Partitioned ingest at the platform's write path (mesh_assets/iceberg/datafiles.py): rows are
split by partition once, a partition becomes one data file (more only past the file size)
however the input is ordered and however many sorted chunks it was spilled as, the table reads
back equal to the input through pyiceberg and DuckDB, and a filter prunes to its partition."""

import datetime as dt
import random
from collections import Counter

import pyarrow as pa
import pytest
from meshtest import land

from mesh_assets.engine import connect, sql_string
from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
from mesh_assets.iceberg.commit import SOURCE_SHA256_PROPERTY
from mesh_assets.ingest.assets import ingest
from mesh_assets.workspace import load_contract

CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: urn:datamesh:shop:sales
version: 1.0.0
status: active
domain: shop
dataProduct: sales
team:
  name: shop-team
schema:
  - name: sales
    physicalType: table
    description: Sales, partitioned by day and region.
    properties:
      - name: id
        logicalType: integer
        physicalType: long
        required: true
      - name: sold_on
        logicalType: date
        physicalType: date
        required: true
        partitioned: true
        partitionKeyPosition: 1
        customProperties:
          - property: partitionTransform
            value: day
      - name: region
        logicalType: string
        physicalType: string
        required: true
        partitioned: true
        partitionKeyPosition: 2
      - name: amount
        logicalType: number
        physicalType: double
customProperties:
  - property: source
    value: {format: csv, file: sales.csv}
"""
START = dt.date(2024, 1, 1)
DAYS, REGIONS = 40, ("east", "north", "west")
BIG = (START + dt.timedelta(days=7), "west")  # a partition larger than one data file


@pytest.fixture
def sales(tmp_path):
    path = tmp_path / "shop" / "products" / "sales.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(CONTRACT)
    return load_contract(path)


def _rows(seed: int = 7) -> list[tuple]:
    """Rows in random order: 40 days x 3 regions, 20 rows each, and 1,300 more in BIG (2,400 + 1,300
    rows); every tenth amount missing."""
    keys = [(START + dt.timedelta(days=d), r) for d in range(DAYS) for r in REGIONS for _ in range(20)]
    keys += [BIG] * 1300
    random.Random(seed).shuffle(keys)
    return [(i, day, region, None if i % 10 == 0 else i / 4) for i, (day, region) in enumerate(keys)]


def _csv(rows) -> str:
    lines = ["id,sold_on,region,amount"]
    lines += [f"{i},{day.isoformat()},{region},{'' if a is None else a}" for i, day, region, a in rows]
    return "\n".join(lines) + "\n"


def _as_tuples(table: pa.Table) -> list[tuple]:
    return sorted(zip(*(table.column(c).to_pylist() for c in ("id", "sold_on", "region", "amount"))))


def test_each_partition_is_one_file_across_spilled_chunks(mesh_home, sales, monkeypatch):
    rows = _rows()
    land(mesh_home, "shop", "sales.csv", _csv(rows))
    # 500 rows per chunk and per file: the 3,700 rows arrive as 8 sorted chunks, 7 of them
    # spilled to disk and merged back per partition
    monkeypatch.setattr("mesh_assets.iceberg.datafiles.FILE_ROWS", 500)
    monkeypatch.setattr("mesh_assets.ingest.readers.BATCH_BYTES", 4096)
    result = ingest(sales, open_catalog())
    table = result.table
    assert result.rows_written == len(rows) == 3700

    files = table.inspect.files().to_pylist()
    per_partition = Counter((f["partition"]["sold_on_day"], f["partition"]["region"]) for f in files)
    expected = {
        (day, region): 1 for day in (START + dt.timedelta(days=d) for d in range(DAYS)) for region in REGIONS
    }
    expected[BIG] = 3  # 1,320 rows in files of at most 500 rows
    assert dict(per_partition) == expected
    wanted = Counter((day, region) for _, day, region, _ in rows)
    got = Counter()
    for f in files:
        got[(f["partition"]["sold_on_day"], f["partition"]["region"])] += f["record_count"]
    assert got == wanted

    # one commit: a single append snapshot holding every file, with the provenance keys
    snapshot = table.current_snapshot()
    summary = snapshot.summary
    assert snapshot.parent_snapshot_id is None and summary.operation.value == "append"
    assert summary["added-data-files"] == str(len(files)) == "122"
    assert summary["added-records"] == "3700"
    assert (
        summary[SOURCE_SHA256_PROPERTY]
        == result.table.snapshot_by_id(result.snapshot_id).summary[SOURCE_SHA256_PROPERTY]
    )

    assert _as_tuples(table.scan().to_arrow()) == sorted(rows)
    con = connect()
    duck = con.execute(
        f"SELECT id, sold_on, region, amount FROM iceberg_scan({sql_string(table.metadata_location)})"
    ).fetchall()
    assert sorted(duck) == sorted(rows)

    # partition pruning: a filter on the partition column plans only that partition's files
    day = START + dt.timedelta(days=7)
    planned = list(table.scan(row_filter=f"sold_on = '{day.isoformat()}' and region = 'west'").plan_files())
    assert len(planned) == 3
    assert {tuple(t.file.partition) for t in planned} == {((day - dt.date(1970, 1, 1)).days, "west")}
    planned = list(table.scan(row_filter=f"sold_on = '{START.isoformat()}'").plan_files())
    assert sorted(t.file.partition[1] for t in planned) == list(REGIONS)
    assert sum(t.file.record_count for t in planned) == 60


def test_a_rerun_replaces_the_rows_and_an_unpartitioned_stream_rolls_files(mesh_home, sales, monkeypatch):
    rows = _rows()
    land(mesh_home, "shop", "sales.csv", _csv(rows))
    catalog = open_catalog()
    ingest(sales, catalog)
    rows = _rows(seed=8)[:1000]  # fewer rows, another order: exactly these remain
    land(mesh_home, "shop", "sales.csv", _csv(rows))
    table = ingest(sales, catalog).table
    assert _as_tuples(table.scan().to_arrow()) == sorted(rows)
    live = table.inspect.files().to_pylist()
    assert len(live) == len({(f["partition"]["sold_on_day"], f["partition"]["region"]) for f in live})

    monkeypatch.setattr("mesh_assets.iceberg.datafiles.FILE_ROWS", 300)
    # a streamed file holds whole row groups: the new table's groups are of 300 rows too
    monkeypatch.setitem(TABLE_PROPERTIES, "write.parquet.row-group-limit", "300")
    flat_contract = CONTRACT.replace("sales\n", "sales_flat\n")
    for block in (
        "        partitioned: true\n        partitionKeyPosition: 1\n        customProperties:\n"
        "          - property: partitionTransform\n            value: day\n",
        "        partitioned: true\n        partitionKeyPosition: 2\n",
    ):
        assert block in flat_contract
        flat_contract = flat_contract.replace(block, "")
    path = sales.path.with_name("sales_flat.yaml")
    path.write_text(flat_contract)
    flat = ingest(load_contract(path), catalog)
    assert [f["record_count"] for f in flat.table.inspect.files().to_pylist()] == [300, 300, 300, 100]
    assert _as_tuples(flat.table.scan().to_arrow()) == sorted(rows)
