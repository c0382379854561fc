"""Write-audit-publish: a run writes to its own audit branch, checks read exactly that snapshot,
and only :func:`publish` moves main. Tags that mark checked snapshots and rollbacks live here
too: this module is the only code that moves main or a tag, and it does so through the one
retry policy (:func:`mesh_assets.iceberg.commit.commit_with_retry`).

Guarantees about the refs, under any interleaving of writers:

* main moves to an audited snapshot only when main is still its ancestor (:func:`publish`);
* ``checked-<run>`` and ``last-checked`` move in the same commit as that publication, so a run
  that lost the publish race moves no tag;
* ``last-checked`` always points into main's history (main's current snapshot or one of its
  ancestors): a rollback moves it back to the newest checked snapshot it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pyiceberg.table.update.snapshot import ManageSnapshots

from mesh_assets.iceberg.commit import Committed, commit_with_retry, transaction
from mesh_assets.iceberg.versions import VersionError, _name, resolve_as_of

if TYPE_CHECKING:  # annotations only
    from collections.abc import Callable

    from pyiceberg.table import Table

    from mesh_assets.contract.model import DataProduct


AUDIT_PREFIX = "audit-"
CHECKED_TAG_PREFIX = "checked-"
LAST_CHECKED = "last-checked"

# What a rollback records in the summary of the snapshot it commits (an empty append on top of
# the restored snapshot: same data, and a record of who, when and why).
ROLLBACK_TO_PROPERTY = "mesh.rollback.to"
ROLLBACK_FROM_PROPERTY = "mesh.rollback.from"
ROLLBACK_USER_PROPERTY = "mesh.rollback.user"
ROLLBACK_AT_PROPERTY = "mesh.rollback.at"
ROLLBACK_REASON_PROPERTY = "mesh.rollback.reason"
ROLLBACK_FORCED_PROPERTY = "mesh.rollback.forced"


class PublishConflictError(RuntimeError):
    """Main moved after the audit branch was opened: publishing would drop those commits."""


class RollbackRefused(VersionError):
    """The snapshot never passed the blocking checks and the rollback was not forced."""


def audit_branch_name(run_id: str) -> str:
    """The write-audit-publish branch of a Dagster run."""
    return f"{AUDIT_PREFIX}{run_id[:8]}"


def checked_tag_name(run_id: str) -> str:
    return f"{CHECKED_TAG_PREFIX}{run_id[:8]}"


def wap_run_id(run) -> str:
    """The run whose audit branch a step writes, reads and publishes: the root of a
    re-execution chain. A run re-executed from a failure (``ReexecutionOptions.from_failure``,
    Dagster's run retries) skips the steps that succeeded, so its checks must find the data
    those steps left unpublished on the branch of the original run."""
    return run.root_run_id or run.run_id


def _commit(table: Table, write: Callable[[Table], object]) -> Committed:
    return commit_with_retry(table.catalog, table.name(), write)


def open_audit_branch(table: Table, branch: str) -> Table:
    """A fresh branch ``branch`` at main's current snapshot (write-audit-publish).

    New data is committed to the branch, checked there, and only then published to main, so
    consumers of main never see unchecked rows. A table without any snapshot first gets an
    empty one on main (Iceberg branches need a snapshot to start from). A branch left by an
    earlier attempt of the same run is reset."""

    def seed(live: Table) -> None:
        if live.current_snapshot() is None:  # a concurrent writer may have seeded it meanwhile
            live.append(live.schema().as_arrow().empty_table())

    def create(live: Table) -> None:
        manage = live.manage_snapshots()
        if branch in live.metadata.refs:
            manage = manage.remove_branch(branch)
        manage.create_branch(snapshot_id=live.current_snapshot().snapshot_id, branch_name=branch).commit()

    if table.current_snapshot() is None:
        table = _commit(table, seed).table
    return _commit(table, create).table


def branch_head(table: Table, branch: str | None) -> int | None:
    """Snapshot id at the head of ``branch`` (main's current snapshot for None)."""
    if branch is None or branch == "main":
        current = table.current_snapshot()
        return current.snapshot_id if current else None
    ref = table.metadata.refs.get(branch)
    return ref.snapshot_id if ref else None


def lineage_of(table: Table, snapshot_id: int | None) -> list[int]:
    """``snapshot_id`` and its ancestors still in the table, newest first."""
    out: list[int] = []
    while snapshot_id is not None and snapshot_id not in out:
        snapshot = table.snapshot_by_id(snapshot_id)
        if snapshot is None:
            break
        out.append(snapshot_id)
        snapshot_id = snapshot.parent_snapshot_id
    return out


def main_history(table: Table) -> list[int]:
    """Main's current snapshot and its ancestors, newest first."""
    return lineage_of(table, branch_head(table, None))


def _is_ancestor(table: Table, ancestor: int | None, snapshot_id: int) -> bool:
    """Whether ``ancestor`` is ``snapshot_id`` or one of its ancestors (None: an empty main)."""
    return ancestor is None or ancestor in lineage_of(table, snapshot_id)


def _tag(manage, table: Table, name: str, snapshot_id: int, max_age_ms: int | None = None):
    """``manage`` with tag ``name`` (re)pointed at ``snapshot_id``."""
    if name in table.metadata.refs:
        manage = manage.remove_tag(name)
    return manage.create_tag(snapshot_id=snapshot_id, tag_name=name, max_ref_age_ms=max_age_ms)


def publish(
    table: Table,
    branch: str,
    *,
    run_id: str | None = None,
    tag_max_age_ms: int | None = None,
    checked_snapshot: int | None = None,
) -> int:
    """Fast-forward main to the head of ``branch`` and drop the branch; returns the snapshot id.

    With ``run_id`` (the snapshot passed every blocking check of that run) the same commit tags
    it ``checked-<run>`` (living ``tag_max_age_ms``) and moves ``last-checked`` to it: tags never
    move for a publication that did not happen.

    Refused when main is no longer an ancestor of the branch head (another writer published
    meanwhile): publishing would silently discard that writer's commit; and when the branch
    head is not ``checked_snapshot`` (given: the snapshot the checks read)."""

    def fast_forward(live: Table) -> int:
        head = branch_head(live, branch)
        if head is None:
            raise PublishConflictError(f"table {_name(live)}: no audit branch {branch}")
        if checked_snapshot is not None and head != checked_snapshot:
            raise PublishConflictError(
                f"table {_name(live)}: audit branch {branch} moved to {head} after its checks read "
                f"{checked_snapshot}; nothing published, no tag moved. Re-run the materialization."
            )
        main = branch_head(live, None)
        if not _is_ancestor(live, main, head):
            raise PublishConflictError(
                f"table {_name(live)}: main moved to {main} after audit branch {branch} was "
                f"opened; the audited snapshot {head} stays on the branch, unpublished, and no tag "
                "moved. Re-run the materialization to write and check on top of the new main."
            )
        manage = live.manage_snapshots().set_current_snapshot(snapshot_id=head).remove_branch(branch)
        if run_id is not None:
            manage = _tag(manage, live, checked_tag_name(run_id), head, tag_max_age_ms)
            manage = _tag(manage, live, LAST_CHECKED, head)
        manage.commit()
        return head

    return _commit(table, fast_forward).value


def tag_max_age_ms(product: DataProduct) -> int:
    """Checked-snapshot tags live as long as the contract's snapshot retention."""
    return int(product.retention.total_seconds() * 1000)


def publish_unless_audited(
    product: DataProduct, table: Table, branch: str, run_id: str
) -> tuple[Table, bool]:
    """Publish the audit ``branch`` of the step that wrote it when ``product`` has no blocking
    rule (nothing to audit: every blocking check, none, passed), through :func:`publish` with
    the tags a checks step gives (``checked-<run>`` living the contract's retention,
    ``last-checked``); otherwise leave it to the product's checks. Returns the table (refreshed
    when published) and whether it was published.

    One publish policy for every writer: ingestion, a stream's batch and a dbt model (the dbt
    step calls it once none of the model's blocking dbt tests failed) publish here, or their
    checks do."""
    if any(rule.severity == "error" for rule in product.rules):
        return table, False
    publish(table, branch, run_id=run_id, tag_max_age_ms=tag_max_age_ms(product))
    return table.refresh(), True


def tag_checked(table: Table, snapshot_id: int, run_id: str, *, max_age_ms: int | None = None) -> str:
    """Tag a snapshot that passed every blocking check outside write-audit-publish (checks run
    again on main): ``checked-<run>``, and ``last-checked`` when the snapshot is in main's
    history and not older than the snapshot ``last-checked`` points at now."""
    name = checked_tag_name(run_id)

    def tag(live: Table) -> None:
        manage = _tag(live.manage_snapshots(), live, name, snapshot_id, max_age_ms)
        last = live.metadata.refs.get(LAST_CHECKED)
        history = main_history(live)
        if snapshot_id in history and (
            last is None
            or last.snapshot_id not in history
            or _is_ancestor(live, last.snapshot_id, snapshot_id)
        ):
            manage = _tag(manage, live, LAST_CHECKED, snapshot_id)
        manage.commit()

    _commit(table, tag)
    return name


def is_checked(table: Table, snapshot_id: int) -> bool:
    """Whether ``snapshot_id`` passed every blocking check: a ``checked-<run>`` or
    ``last-checked`` tag points at it (only a publication after the checks, or
    :func:`tag_checked` after checks on main, creates them), or it is the snapshot an unforced
    rollback committed on top of such a snapshot (same data)."""
    for name, ref in table.metadata.refs.items():
        if ref.snapshot_id == snapshot_id and ref.snapshot_ref_type == "tag":
            if name == LAST_CHECKED or name.startswith(CHECKED_TAG_PREFIX):
                return True
    snapshot = table.snapshot_by_id(snapshot_id)
    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    restored = summary.get(ROLLBACK_TO_PROPERTY)
    return (
        restored is not None
        and summary.get(ROLLBACK_FORCED_PROPERTY) == "false"
        and is_checked(table, int(restored))
    )


@dataclass(frozen=True)
class Rollback:
    """A rollback done: main reads ``restored``'s data through the new snapshot ``snapshot_id``."""

    table: str
    restored: int
    previous: int | None
    snapshot_id: int
    user: str
    at: str
    reason: str
    forced: bool
    checked: bool

    def record(self) -> dict[str, str]:
        """Who, when, why: the rollback's entry for an audit log (no data values)."""
        return {
            "restored": str(self.restored),
            "previous": str(self.previous),
            "snapshot": str(self.snapshot_id),
            "reason": self.reason,
            "forced": str(self.forced).lower(),
            "checked": str(self.checked).lower(),
        }


def record_on_main(table: Table, properties: dict[str, str]) -> int:
    """Commit an empty snapshot on main whose summary holds ``properties``: a fact about the
    table's state (a stream's position moved by an operator) recorded without changing a row.
    Returns its snapshot id."""

    def apply(live: Table) -> int | None:
        live.append(live.schema().as_arrow().empty_table(), snapshot_properties=properties)
        return None

    return branch_head(_commit(table, apply).table, None)


def rollback(
    table: Table, snapshot: str | int, *, user: str, reason: str = "", force: bool = False
) -> Rollback:
    """Make ``snapshot`` (id, tag or timestamp) current again, on record.

    Refused (:class:`RollbackRefused`) for a snapshot that never passed the blocking checks
    (:func:`is_checked`: e.g. the head of a rejected run's audit branch) unless ``force`` with a
    ``reason``. One commit sets main to the snapshot, commits an empty snapshot on top of it whose
    summary records ``mesh.rollback.*`` (to, from, user, at, reason, forced) and moves
    ``last-checked`` to the newest checked snapshot of the new main's history (removing it when
    there is none). The newer snapshots stay readable by id until expired."""
    target = resolve_as_of(table, snapshot)
    if target is None:
        raise VersionError(f"table {_name(table)} has no snapshot to roll back to")
    checked = is_checked(table, target)
    if not checked and not force:
        raise RollbackRefused(
            f"table {_name(table)}: snapshot {target} ('{snapshot}') never passed the blocking checks "
            f"(no {CHECKED_TAG_PREFIX}<run> or {LAST_CHECKED} tag points at it); rolling back to it would "
            f"make unchecked data current. Roll back to a checked snapshot (`mesh history {_name(table)}` "
            f"shows the tags), or force it on record: --force --reason TEXT"
        )
    if force and not reason.strip():
        raise RollbackRefused(f"table {_name(table)}: a forced rollback needs a reason (--reason TEXT)")
    at = datetime.now(UTC).isoformat(timespec="seconds")

    def apply(live: Table) -> tuple[int | None, int]:
        previous = branch_head(live, None)
        properties = {
            ROLLBACK_TO_PROPERTY: str(target),
            ROLLBACK_FROM_PROPERTY: str(previous),
            ROLLBACK_USER_PROPERTY: user,
            ROLLBACK_AT_PROPERTY: at,
            ROLLBACK_REASON_PROPERTY: reason,
            ROLLBACK_FORCED_PROPERTY: str(force).lower(),
        }
        newest_checked = next((s for s in lineage_of(live, target) if is_checked(live, s)), None)
        with transaction(live) as tx:
            manage = ManageSnapshots(tx).set_current_snapshot(snapshot_id=target)
            if newest_checked is not None:
                manage = _tag(manage, live, LAST_CHECKED, newest_checked)
            elif LAST_CHECKED in live.metadata.refs:
                manage = manage.remove_tag(LAST_CHECKED)
            manage.commit()
            tx.append(live.schema().as_arrow().empty_table(), snapshot_properties=properties)
        return previous, branch_head(live, None)

    previous, marker = _commit(table, apply).value
    return Rollback(_name(table), target, previous, marker, user, at, reason, force, checked)
