"""The Iceberg catalog: one pyiceberg SqlCatalog, SQLite locally and PostgreSQL in production.

Everything that creates, loads or commits Iceberg tables goes through this module, and so does
the provenance each commit records (snapshot summary properties ``mesh.*``).
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dagster as dg
from pyiceberg.exceptions import CommitFailedException

from mesh_assets.contracts import DataProduct
from mesh_assets.settings import MeshSettings, ensure_local_dirs, load_settings

if TYPE_CHECKING:  # SQLAlchemy and pyiceberg's table module load only when a catalog opens
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table

INPUTS_PROPERTY = "mesh.inputs"
SCHEMA_CHANGES_PROPERTY = "mesh.schema_changes"
TABLE_PROPERTIES = {
    # pyiceberg's own retry of a conflicting commit, before commit_with_retry's
    "commit.retry.num-retries": "10",
    # bounds the Arrow bytes buffered per data file when streaming (default 512 MiB)
    "write.target-file-size-bytes": str(128 << 20),
    "write.parquet.compression-codec": "zstd",
}


COMMIT_DEADLINE_S = 300.0


AUDIT_PREFIX = "audit-"


class PublishConflictError(RuntimeError):
    """Main moved after the audit branch was opened: publishing would drop those commits."""


def audit_branch_name(run_id: str) -> str:
    """The write-audit-publish branch of a Dagster run."""
    return f"{AUDIT_PREFIX}{run_id[:8]}"


def wap_run_id(run) -> str:
    """The run whose audit branch a step writes, reads and publishes: the root of a
    re-execution chain. A run re-executed from a failure (``ReexecutionOptions.from_failure``,
    Dagster's run retries) skips the steps that succeeded, so its checks must find the data
    those steps left unpublished on the branch of the original run."""
    return run.root_run_id or run.run_id


def open_audit_branch(table: Table, branch: str) -> Table:
    """A fresh branch ``branch`` at main's current snapshot (write-audit-publish).

    New data is committed to the branch, checked there, and only then published to main, so
    consumers of main never see unchecked rows. A table without any snapshot first gets an
    empty one on main (Iceberg branches need a snapshot to start from). A branch left by an
    earlier attempt of the same run is reset."""
    if table.current_snapshot() is None:
        table.append(table.schema().as_arrow().empty_table())
        table = table.refresh()
    manage = table.manage_snapshots()
    if branch in table.metadata.refs:
        manage = manage.remove_branch(branch)
    manage.create_branch(snapshot_id=table.current_snapshot().snapshot_id, branch_name=branch).commit()
    return table.refresh()


def branch_head(table: Table, branch: str | None) -> int | None:
    """Snapshot id at the head of ``branch`` (main's current snapshot for None)."""
    if branch is None or branch == "main":
        current = table.current_snapshot()
        return current.snapshot_id if current else None
    ref = table.metadata.refs.get(branch)
    return ref.snapshot_id if ref else None


def publish(table: Table, branch: str) -> int:
    """Fast-forward main to the head of ``branch`` and drop the branch; returns the snapshot id.

    Refused when main is no longer an ancestor of the branch head (another writer published
    meanwhile): publishing would silently discard that writer's commit."""
    head = branch_head(table, branch)
    if head is None:
        raise PublishConflictError(f"table {'.'.join(table.name())}: no audit branch {branch}")
    main = table.current_snapshot().snapshot_id if table.current_snapshot() else None
    ancestor, seen = head, set()
    while ancestor is not None and ancestor != main and ancestor not in seen:
        seen.add(ancestor)
        snap = table.snapshot_by_id(ancestor)
        ancestor = snap.parent_snapshot_id if snap else None
    if ancestor != main:
        raise PublishConflictError(
            f"table {'.'.join(table.name())}: main moved to {main} after audit branch {branch} "
            f"was opened; the audited snapshot {head} stays on the branch, unpublished. "
            "Re-run the materialization to write and check on top of the new main.")
    table.manage_snapshots().set_current_snapshot(snapshot_id=head).remove_branch(branch).commit()
    return head


class CommitConflictError(RuntimeError):
    """Concurrent writers kept winning for longer than the deadline; nothing was written."""


def commit_with_retry(catalog: SqlCatalog, identifier: str, write: Callable[[Table], None], *,
                      deadline_s: float = COMMIT_DEADLINE_S, base_s: float = 0.05,
                      cap_s: float = 2.0) -> Table:
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
                    "Retry later or reduce the number of concurrent writers.") from exc
            time.sleep(random.uniform(0, min(cap_s, base_s * 2 ** attempt)))


@functools.lru_cache(maxsize=8)
def _catalog(settings: MeshSettings) -> SqlCatalog:
    from pyiceberg.catalog.sql import SqlCatalog

    ensure_local_dirs(settings)
    return SqlCatalog(settings.catalog_name, **settings.catalog_properties())


def open_catalog(settings: MeshSettings | None = None) -> SqlCatalog:
    return _catalog(settings or load_settings())


def ensure_table(catalog: SqlCatalog, product: DataProduct) -> Table:
    """The product's table, created from its contract or evolved to it (additive changes only;
    see :mod:`mesh_assets.schema_evolution`)."""
    return evolve_table(catalog, product)[0]


def evolve_table(catalog: SqlCatalog, product: DataProduct) -> tuple[Table, list[str]]:
    """``(table, applied changes)``; raises BreakingSchemaChange and changes nothing when the
    contract would break the live table."""
    from mesh_assets.schema_evolution import evolve

    return evolve(catalog, product, properties=TABLE_PROPERTIES)


def snapshot_metadata(table: Table, *, inputs: dict[str, int] | None = None,
                      snapshot_id: int | None = None) -> dict[str, Any]:
    """Materialization metadata of a snapshot (default: main's current one)."""
    snap = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else table.current_snapshot()
    identifier = ".".join(table.name())
    md: dict[str, Any] = {
        "dagster/table_name": identifier,
        "iceberg/identifier": identifier,
        "iceberg/metadata_location": table.metadata_location,
        "dagster/column_schema": column_schema(table),
    }
    if snap is not None:
        summary = snap.summary.additional_properties if snap.summary else {}
        md["iceberg/snapshot_id"] = dg.MetadataValue.int(snap.snapshot_id)
        md["dagster/row_count"] = dg.MetadataValue.int(int(summary.get("total-records", 0)))
        md["iceberg/data_files"] = dg.MetadataValue.int(int(summary.get("total-data-files", 0)))
        if inputs is None and INPUTS_PROPERTY in summary:
            inputs = json.loads(summary[INPUTS_PROPERTY])
        if SCHEMA_CHANGES_PROPERTY in summary:
            md["mesh/schema_changes"] = dg.MetadataValue.json(json.loads(summary[SCHEMA_CHANGES_PROPERTY]))
    md["iceberg/input_snapshots"] = dg.MetadataValue.json(inputs or {})
    return md


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name=f.name, type=str(f.field_type), description=f.doc,
                       constraints=dg.TableColumnConstraints(nullable=not f.required))
        for f in table.schema().fields
    ])


class IcebergCatalog(dg.ConfigurableResource):
    """Dagster resource for the mesh's Iceberg catalog, configured from the environment
    (see :mod:`mesh_assets.settings`)."""

    def catalog(self) -> SqlCatalog:
        return open_catalog()

    def load_table(self, identifier: str) -> Table:
        return self.catalog().load_table(identifier)

    def ensure_table(self, product: DataProduct) -> Table:
        return ensure_table(self.catalog(), product)
