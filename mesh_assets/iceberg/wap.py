"""Write-audit-publish: a run writes to its own audit branch, checks read exactly that snapshot,
and only :func:`publish` moves main. Tags that mark checked snapshots and rollbacks live here
too: this module is the only code that moves main or a tag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh_assets.iceberg.versions import VersionError, _name, resolve_as_of

if TYPE_CHECKING:  # SQLAlchemy and pyiceberg's table module load only when a catalog opens
    from pyiceberg.table import Table


from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyiceberg.table import Table


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
            "Re-run the materialization to write and check on top of the new main."
        )
    table.manage_snapshots().set_current_snapshot(snapshot_id=head).remove_branch(branch).commit()
    return head


CHECKED_TAG_PREFIX = "checked-"


def rollback(table: Table, snapshot: str | int) -> int:
    """Make ``snapshot`` (id, tag or timestamp) the current version again; returns its id.

    The newer snapshots stay in the table's history (and readable by id) until expired."""
    snapshot_id = resolve_as_of(table, snapshot)
    if snapshot_id is None:
        raise VersionError(f"table {_name(table)} has no snapshot to roll back to")
    table.manage_snapshots().set_current_snapshot(snapshot_id=snapshot_id).commit()
    return snapshot_id


def tag_checked(table: Table, snapshot_id: int, run_id: str, *, max_age_ms: int | None = None) -> str:
    """Tag a snapshot that passed every blocking check: ``checked-<run>``, and move the
    ``last-checked`` tag to it."""
    name = f"{CHECKED_TAG_PREFIX}{run_id[:8]}"
    manage = table.manage_snapshots()
    refs = table.metadata.refs
    if name not in refs:
        manage = manage.create_tag(snapshot_id=snapshot_id, tag_name=name, max_ref_age_ms=max_age_ms)
    if "last-checked" in refs:
        manage = manage.remove_tag("last-checked")
    manage.create_tag(snapshot_id=snapshot_id, tag_name="last-checked").commit()
    return name
