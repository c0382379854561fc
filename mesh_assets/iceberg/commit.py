"""Committing to an Iceberg table: one retry policy for every catalog mutation, row replacement
in one transaction, and the provenance keys each commit records in its snapshot summary."""

from __future__ import annotations

import logging
import random
import re
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import (
    TableUpdate,
    _apply_table_update,
    _TableMetadataUpdateContext,
    _update_table_metadata_log,
)
from pyiceberg.table.update.snapshot import ManageSnapshots
from pyiceberg.utils.datetime import datetime_to_millis

from mesh_assets.iceberg.datafiles import data_files
from mesh_assets.settings import commit_deadline_s, pause_at

if TYPE_CHECKING:  # annotations only
    from pyiceberg.catalog import Catalog

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

log = logging.getLogger(__name__)

# pyiceberg (like Iceberg's Java core before apache/iceberg#15126, see apache/iceberg#15001)
# raises this ValueError instead of CommitFailedException when a writer of another branch of
# the same table committed first: the snapshot it built took a sequence number that is no
# longer the next one. Re-reading the table and re-applying the write is the cure, as for any
# conflict. The pattern is pyiceberg 0.12's exact message (pyiceberg/table/update/__init__.py).
SEQUENCE_NUMBER_RACE = re.compile(
    r"^Cannot add snapshot with sequence number \d+ older than last sequence number \d+$"
)


def is_concurrent_update(exc: BaseException) -> bool:
    """Whether ``exc`` means "another writer committed first": nothing of this commit landed
    and re-applying it to the table as it is now can succeed."""
    if isinstance(exc, CommitFailedException):
        return True
    return type(exc) is ValueError and bool(SEQUENCE_NUMBER_RACE.match(str(exc)))


class CommitConflictError(RuntimeError):
    """Concurrent writers kept winning for longer than the deadline; nothing was written."""

    def __init__(
        self, identifier: str, attempts: int, seconds: float, deadline_s: float, last: BaseException
    ):
        self.identifier, self.attempts, self.seconds = identifier, attempts, seconds
        super().__init__(
            f"table {identifier}: {attempts} commit attempt(s) over {seconds:.1f} s all failed because "
            f"other writers committed first (last: {type(last).__name__}: {last}); this write "
            "changed nothing. Run it again when the other writers are done, reduce the number of "
            "concurrent writers, or allow more time with MESH_COMMIT_DEADLINE_S "
            f"(now {deadline_s:g} s)."
        )


@dataclass(frozen=True)
class Committed:
    """A successful :func:`commit_with_retry`: the table after it, what the write returned, how
    many attempts it took (``conflicts`` = attempts lost to other writers) and how long."""

    table: Table
    value: Any
    attempts: int
    seconds: float

    @property
    def conflicts(self) -> int:
        return self.attempts - 1


def commit_with_retry(
    catalog: Catalog,
    identifier: str | tuple[str, ...],
    write: Callable[[Table], Any],
    *,
    deadline_s: float | None = None,
    base_s: float = 0.05,
    cap_s: float = 2.0,
) -> Committed:
    """Run ``write(table)`` (which commits once) against the table as it is now, until it lands.

    Every catalog mutation of the platform goes through here: appends, overwrites, branch
    creation, publication, tags, rollback, maintenance. Tables are created with pyiceberg's own
    retry switched off (``commit.retry.num-retries`` 0, :data:`mesh_assets.iceberg.catalog.
    TABLE_PROPERTIES`), so each conflict reaches this loop: the table is loaded again and the
    whole write re-applied after a full-jitter exponential backoff. A failed commit changed
    nothing, so no write is lost and none applied twice; ``write`` must therefore be
    replayable (it re-reads its input and re-checks its preconditions on the table it gets).
    Exceptions that are not conflicts (:func:`is_concurrent_update`) propagate at once.

    After ``deadline_s`` (default: the ``MESH_COMMIT_DEADLINE_S`` setting) of conflicts the
    caller gets :class:`CommitConflictError`, naming the table, the attempts and the time."""
    deadline = commit_deadline_s() if deadline_s is None else deadline_s
    name = identifier if isinstance(identifier, str) else ".".join(identifier)
    start, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        table = catalog.load_table(identifier)
        try:
            value = write(table)
        except Exception as exc:
            if not is_concurrent_update(exc):
                raise
            waited = time.monotonic() - start
            if waited >= deadline:
                raise CommitConflictError(name, attempt, waited, deadline, exc) from exc
            pause = random.uniform(0, min(cap_s, base_s * 2**attempt))
            log.info("table %s: attempt %d lost to a concurrent writer (%s); retrying", name, attempt, exc)
            time.sleep(min(pause, max(deadline - waited, 0)))
            continue
        seconds = time.monotonic() - start
        if attempt > 1:
            log.info("table %s: committed at attempt %d after %.1f s of conflicts", name, attempt, seconds)
        return Committed(catalog.load_table(identifier), value, attempt, seconds)


MAIN = "main"


# --- writing -----------------------------------------------------------------------------------


def apply_updates(
    base: TableMetadata, updates: tuple[TableUpdate, ...], metadata_location: str | None = None
) -> TableMetadata:
    """``base`` with ``updates`` applied: pyiceberg 0.12's ``update_table_metadata`` (its
    default, unvalidated path: pyiceberg/table/update/__init__.py) without the deep copy of the
    whole result it ends with.

    At 1,000 snapshots each copy took 16-36 ms, and a write made three (two staged changes, one
    commit), more than the rest of the write (bench/history.py). The copy guards against
    updates that change their base in place; pyiceberg's updates are copy-on-write
    (``model_copy(update=...)`` with new lists and dicts) and the metadata models are frozen,
    so the result may share unchanged parts with ``base``.
    tests/unit/test_iceberg_metadata.py checks the result equals pyiceberg's on real writes."""
    context = _TableMetadataUpdateContext()
    metadata = base
    for update in updates:
        metadata = _apply_table_update(update, metadata, context)
    if context.has_changes():
        if metadata_location:
            metadata = _update_table_metadata_log(metadata, metadata_location, base.last_updated_ms)
        if base.last_updated_ms == metadata.last_updated_ms:
            metadata = metadata.model_copy(
                update={"last_updated_ms": datetime_to_millis(datetime.now().astimezone())}
            )
    metadata.spec().check_compatible(metadata.schema())
    metadata.sort_order().check_compatible(metadata.schema())
    return metadata


class MeshTransaction(Transaction):
    """pyiceberg's transaction, its ``table_metadata`` computed once per staged change and
    without a deep copy (:func:`apply_updates`).

    pyiceberg 0.12 applies the staged updates to a deep copy of the whole table metadata
    at every read of ``Transaction.table_metadata``, and its snapshot producers read it
    about 28 times per delete-and-append: a cost that grew with the table's snapshots
    (bench/history.py). The metadata models are frozen, so one result is shared while the
    table's metadata and the staged updates are the same objects (``_updates`` is a tuple,
    rebound on every staged change). The same cache was proposed upstream in
    apache/iceberg-python#3302 and #3784 (both closed unmerged): drop this class when a
    pyiceberg release caches it."""

    _cached: tuple | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        cached = self._cached
        if cached is None or cached[0] is not self._table.metadata or cached[1] is not self._updates:
            metadata = apply_updates(self._table.metadata, self._updates)
            cached = self._cached = (self._table.metadata, self._updates, metadata)
        return cached[2]


def transaction(table: Table) -> Transaction:
    """A transaction on ``table`` whose metadata is not recomputed on every read (see
    :class:`MeshTransaction`): the platform's writes open theirs here."""
    return MeshTransaction(table)


def replace_rows(
    table: Table,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    properties: dict[str, str],
    row_filter=None,
    branch: str | None = None,
    *,
    drop_branch: str | None = None,
) -> int:
    """Replace the rows matching ``row_filter`` (all rows when None) with ``batches``, in one
    atomic commit on ``branch`` (main when None), which also removes branch ``drop_branch``
    when given: a delete snapshot (unless the table has none yet) and one append snapshot of
    the new data files (:func:`mesh_assets.iceberg.datafiles.data_files`: split by partition,
    memory bounded). Returns the number of rows written."""

    row_filter = row_filter if row_filter is not None else AlwaysTrue()
    written = 0
    with transaction(table) as tx:
        # The delete half of an overwrite; skipped on a first write, which has nothing to delete
        # and would otherwise leave an empty snapshot behind.
        if table.current_snapshot() is not None:
            with warnings.catch_warnings():  # a partition written for the first time is empty
                warnings.filterwarnings("ignore", "Delete operation did not match any records")
                tx.delete(row_filter, snapshot_properties=properties, branch=branch or MAIN)
        # One append snapshot of files already split by partition (datafiles.py); pyiceberg's
        # own producer, so the table's manifest-merge setting applies as in Transaction.append.
        with tx._append_snapshot_producer(properties, branch=branch or MAIN) as append:
            for data_file in data_files(tx, batches, schema):
                append.append_data_file(data_file)
                written += data_file.record_count
        if drop_branch is not None and drop_branch in table.metadata.refs:
            ManageSnapshots(tx).remove_branch(drop_branch).commit()
        # a test hook (see pause_at): the data files are written, the commit has not happened
        pause_at("files_written", ".".join(table.name()))
    return written
