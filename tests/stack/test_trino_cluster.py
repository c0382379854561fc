"""Trino as a cluster: `make test` starts the stack with ``MESH_TRINO_WORKERS=2``, so every stack
test runs its queries on two workers; this one shows the coordinator schedules on both.

The coordinator lists itself and both workers (``system.runtime.nodes``, node ids from each
node's own ``node-id`` file), and a scan of a table of several data files is split over the two
workers, none on the coordinator: the tasks that read the files (``system.runtime.tasks`` of
the query, physical input > 0) are on both workers and together read every row.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from mesh_assets.stack.trino import Trino, TrinoWorker

pytestmark = pytest.mark.stack

FILES = 8
ROWS_PER_FILE = 10_000


def test_a_query_is_split_over_both_workers(stack_layout, trino, trino_sql, iceberg_catalog, namespace):
    assert len(stack_layout.trino_workers) == 2, (
        f"the stack runs {len(stack_layout.trino_workers)} Trino workers: this test needs 2 "
        "(`make test` starts it so; by hand: MESH_TRINO_WORKERS=2 .venv/bin/mesh stack up)"
    )
    coordinator = Trino(stack_layout).node_properties()["node.id"]
    workers = {TrinoWorker(stack_layout, n).node_id() for n in (1, 2)}
    nodes = trino_sql("SELECT node_id, coordinator, state FROM system.runtime.nodes")
    assert sorted(nodes) == sorted(
        [[coordinator, True, "active"], *([node, False, "active"] for node in workers)]
    )

    table = iceberg_catalog.create_table(f"{namespace}.spread", schema=pa.schema([pa.field("k", pa.int64())]))
    for n in range(FILES):  # one data file per append
        table.append(pa.table({"k": pa.array(range(n * ROWS_PER_FILE, (n + 1) * ROWS_PER_FILE), pa.int64())}))
    assert len(table.inspect.files()) == FILES

    cur = trino.cursor()
    cur.execute(f'SELECT count(*), sum(k) FROM iceberg."{namespace}".spread')
    total = FILES * ROWS_PER_FILE
    assert cur.fetchall() == [[total, total * (total - 1) // 2]]
    scans = trino_sql(
        "SELECT node_id, sum(raw_input_rows) FROM system.runtime.tasks "
        f"WHERE query_id = '{cur.query_id}' AND physical_input_bytes > 0 GROUP BY node_id"
    )
    assert {node for node, _ in scans} == workers, scans
    assert sum(rows for _, rows in scans) == total
    assert all(rows > 0 for _, rows in scans)
