"""Committing to an Iceberg table: one retry policy for every writer, row replacement in one
transaction, and the provenance keys each commit records in its snapshot summary."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue

if TYPE_CHECKING:  # SQLAlchemy and pyiceberg's table module load only when a catalog opens
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyiceberg.table import Table

# Provenance every commit of the platform records in its snapshot summary (and the contract
# version also as a table property).
INPUTS_PROPERTY = "mesh.inputs"  # JSON {input table: snapshot id read}
SCHEMA_CHANGES_PROPERTY = "mesh.schema_changes"  # JSON list of changes applied before the commit
RUN_ID_PROPERTY = "mesh.dagster.run_id"  # the Dagster run that wrote it
CONTRACT_VERSION_PROPERTY = "mesh.contract.version"
PARTITION_PROPERTY = "mesh.partition"  # the Dagster partition (range) the commit replaced
SOURCE_FILE_PROPERTY = "mesh.source.file"  # ingested products: the landing file ...
SOURCE_SHA256_PROPERTY = "mesh.source.sha256"  # ... the checksum of its bytes ...
SOURCE_SIGNATURE_PROPERTY = "mesh.source.signature"  # ... and its landing signature (sensors)
PRODUCER_PROPERTY = "mesh.producer"  # dbt-built products: "dbt"


COMMIT_DEADLINE_S = 300.0


class CommitConflictError(RuntimeError):
    """Concurrent writers kept winning for longer than the deadline; nothing was written."""


def commit_with_retry(
    catalog: SqlCatalog,
    identifier: str,
    write: Callable[[Table], None],
    *,
    deadline_s: float = COMMIT_DEADLINE_S,
    base_s: float = 0.05,
    cap_s: float = 2.0,
) -> Table:
    """Run ``write(table)`` (which commits once) until it commits, against the latest metadata.

    pyiceberg retries a conflicting commit a few times itself; under heavy contention (16
    writers) some commits still fail. Each failure here reloads the table and re-runs the whole
    write, after a full-jitter exponential backoff, so no write is lost and none is applied
    twice (a failed commit changed nothing). ``write`` must therefore be replayable: it re-reads
    its input. After ``deadline_s`` the caller gets :class:`CommitConflictError`.
    """
    start, attempt = time.monotonic(), 0
    while True:
        table = catalog.load_table(identifier)
        try:
            write(table)
            return table.refresh()
        except CommitFailedException as exc:
            attempt += 1
            waited = time.monotonic() - start
            if waited > deadline_s:
                raise CommitConflictError(
                    f"table {identifier}: commit failed {attempt} times over {waited:.0f} s "
                    "because other writers kept committing first; this write changed nothing. "
                    "Retry later or reduce the number of concurrent writers."
                ) from exc
            time.sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))


MAIN = "main"
COMMIT_ROWS = 1_000_000


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


def replace_rows(
    table: Table,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    properties: dict[str, str],
    row_filter=None,
    branch: str | None = None,
) -> int:
    """Replace the rows matching ``row_filter`` (all rows when None) with ``batches``, in one
    atomic commit on ``branch`` (main when None). Returns the number of rows written."""

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
