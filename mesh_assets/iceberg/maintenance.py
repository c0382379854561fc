"""Table maintenance: expire old snapshots, compact small files and manifests, then delete the
files no snapshot needs any more.

Safety rules, in order of importance:

1. A file that any remaining snapshot references is never deleted: data and delete files of
   every manifest of every snapshot, the manifests, the manifest lists, statistics files, the
   current metadata file and the previous ones still in the metadata log.
2. A file younger than the safety window (default 3 days) is never deleted, referenced or not:
   a concurrent writer may have written it and not yet committed.
3. Snapshots older than the contract's ``retention`` expire, except the current one, the last
   ``retain_last`` ones, and any snapshot a tag or branch points to. Tags with a maximum age
   (the ``checked-*`` tags) are removed first once older than their age, and so are the audit
   branches (``audit-<run>``) of runs that are no longer running: finished, failed or canceled in
   the Dagster instance, or unknown to it and older than a grace period. A running run's
   branch is never removed.

pyiceberg 0.12 expires snapshots but leaves their files on disk and has no orphan-file
removal; :func:`remove_orphan_files` is that missing half. Nor has it compaction or a manifest
rewrite: :func:`compact` is the platform's (Trino's ``optimize`` and ``optimize_manifests`` in
production mode).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

import dagster as dg
from pyarrow import fs as pafs
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import TableProperties

from mesh_assets.engine import trino_connection, trino_table
from mesh_assets.iceberg.catalog import IcebergCatalog
from mesh_assets.iceberg.commit import RUN_ID_PROPERTY, commit_with_retry, transaction
from mesh_assets.iceberg.datafiles import data_files
from mesh_assets.iceberg.wap import AUDIT_PREFIX
from mesh_assets.runs import fail_dead_runs
from mesh_assets.settings import load_settings

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from mesh_assets.contract.model import DataProduct

SAFETY_WINDOW = timedelta(days=3)
# how long an audit branch whose run the Dagster instance does not know is kept (a run of another
# instance, or one whose record is not written yet)
AUDIT_BRANCH_GRACE = timedelta(days=1)


class RunState(Enum):
    RUNNING = "running"  # queued, starting, started, canceling: its branch is in use
    DONE = "done"  # finished, failed or canceled
    UNKNOWN = "unknown"  # not in the Dagster instance


# (the run id prefix an audit branch is named after, the run recorded in its head snapshot)
RunStates = Callable[[str, str], RunState]
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def dagster_run_states(instance: dg.DagsterInstance) -> RunStates:
    """The state of an audit branch's run in ``instance``. A branch is named after the root run
    of a re-execution chain (:func:`mesh_assets.iceberg.wap.wap_run_id`): it is in use while any
    run of that chain has not finished."""
    unfinished = instance.get_runs(
        filters=dg.RunsFilter(statuses=[s for s in dg.DagsterRunStatus if s not in FINISHED])
    )
    running = {r.run_id[:8] for r in unfinished} | {(r.root_run_id or r.run_id)[:8] for r in unfinished}

    def state(prefix: str, writer_run_id: str) -> RunState:
        if prefix in running:
            return RunState.RUNNING
        run = instance.get_run_by_id(writer_run_id) if writer_run_id else None
        if run is not None and (run.root_run_id or run.run_id)[:8] == prefix:
            return RunState.DONE
        return RunState.UNKNOWN

    return state


def unknown_runs(prefix: str, writer_run_id: str) -> RunState:
    """Without a Dagster instance to ask, every run is unknown: only the grace period applies."""
    return RunState.UNKNOWN


def _now() -> datetime:
    return datetime.now(UTC)


def _norm(path: str) -> str:
    """One spelling per file: ``file:///a/b`` and ``/a/b`` alike; ``s3://b/k`` -> ``b/k``."""
    for prefix in ("file://", "s3://", "s3a://", "gs://"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def expire_tags(table: "Table", *, now: datetime | None = None) -> list[str]:
    """Remove tags older than their own ``max-ref-age-ms``; returns their names."""
    now_ms = int((now or _now()).timestamp() * 1000)

    def expired_in(live: "Table") -> list[str]:
        return [
            name
            for name, ref in live.metadata.refs.items()
            if ref.snapshot_ref_type == "tag"
            and ref.max_ref_age_ms is not None
            and (snapshot := live.snapshot_by_id(ref.snapshot_id)) is not None
            and now_ms - snapshot.timestamp_ms > ref.max_ref_age_ms
        ]

    return _remove_refs(table, expired_in, tags=True)


def _remove_refs(table: "Table", select: Callable[["Table"], list[str]], *, tags: bool) -> list[str]:
    """Remove the tags (or branches) ``select`` picks on the table as it is at commit time."""
    if not select(table):
        return []

    def remove(live: "Table") -> list[str]:
        names = select(live)
        if names:
            manage = live.manage_snapshots()
            for name in names:
                manage = manage.remove_tag(name) if tags else manage.remove_branch(name)
            manage.commit()
        return names

    return commit_with_retry(table.catalog, table.name(), remove).value


def expire_audit_branches(
    table: "Table",
    *,
    run_states: RunStates = unknown_runs,
    now: datetime | None = None,
    grace: timedelta = AUDIT_BRANCH_GRACE,
) -> list[str]:
    """Remove the write-audit-publish branches whose run is no longer running: finished, failed
    or canceled (``run_states``), or unknown and with a head older than ``grace``. A running
    run's branch stays whatever its age. Returns the names removed."""
    limit_ms = int(((now or _now()) - grace).timestamp() * 1000)

    def stale(live: "Table") -> list[str]:
        out = []
        for name, ref in live.metadata.refs.items():
            if ref.snapshot_ref_type != "branch" or not name.startswith(AUDIT_PREFIX):
                continue
            head = live.snapshot_by_id(ref.snapshot_id)
            summary = head.summary.additional_properties if head and head.summary else {}
            state = run_states(name.removeprefix(AUDIT_PREFIX), summary.get(RUN_ID_PROPERTY, ""))
            old = head is None or head.timestamp_ms < limit_ms
            if state is RunState.DONE or (state is RunState.UNKNOWN and old):
                out.append(name)
        return sorted(out)

    return _remove_refs(table, stale, tags=False)


def expire_snapshots(table: "Table", *, older_than: datetime, retain_last: int = 1) -> list[int]:
    """Expire snapshots committed before ``older_than``; returns the expired ids.

    The current snapshot, the ``retain_last`` newest ones and every snapshot a tag or branch
    points to are kept."""
    limit_ms = int(older_than.timestamp() * 1000)

    def doomed_in(live: "Table") -> list[int]:
        snapshots = sorted(live.metadata.snapshots, key=lambda s: s.timestamp_ms)
        keep = {s.snapshot_id for s in snapshots[-retain_last:]} if retain_last > 0 else set()
        keep |= {ref.snapshot_id for ref in live.metadata.refs.values()}
        if live.current_snapshot() is not None:
            keep.add(live.current_snapshot().snapshot_id)
        return [s.snapshot_id for s in snapshots if s.timestamp_ms < limit_ms and s.snapshot_id not in keep]

    if not doomed_in(table):
        return []

    def expire(live: "Table") -> list[int]:
        doomed = doomed_in(live)
        if doomed:
            live.maintenance.expire_snapshots().by_ids(doomed).commit()
        return doomed

    return commit_with_retry(table.catalog, table.name(), expire).value


COMPACTED_PROPERTY = "mesh.maintenance"  # snapshot summary: what a maintenance commit did
ROLLBACK_PREFIX = "mesh.rollback."  # a rollback's record (iceberg.wap), not carried over
# Fewer manifests than this are left as they are: merging the two of an ordinary overwrite
# would be one more snapshot every night for nothing (appends merge at 100 by themselves).
MANIFESTS_TO_MERGE = 10


@dataclass
class CompactionReport:
    """What :func:`compact` did to main: data files and manifests before and after, and why
    it did nothing when it did not."""

    files_before: int = 0
    files_after: int = 0
    manifests_before: int = 0
    manifests_after: int = 0
    partitions_rewritten: int = 0
    skipped: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        return {
            "data_files_before": self.files_before,
            "data_files_after": self.files_after,
            "manifests_before": self.manifests_before,
            "manifests_after": self.manifests_after,
            "partitions_rewritten": self.partitions_rewritten,
            "compaction_skipped": self.skipped or "",
        }


def _small_file_groups(table: "Table") -> list[list]:
    """Main's scan tasks of the current partition spec grouped by partition, only the groups
    with two or more files under the table's target file size and no delete file to apply."""
    target = int(
        table.properties.get(
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES, TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT
        )
    )
    groups: dict[tuple, list] = {}
    for task in table.scan().plan_files():
        f = task.file
        if f.spec_id == table.spec().spec_id and f.file_size_in_bytes < target:
            groups.setdefault(tuple(f.partition), []).append(task)
    return [tasks for tasks in groups.values() if len(tasks) > 1 and not any(t.delete_files for t in tasks)]


def _carried(table: "Table", what: str) -> dict[str, str]:
    """The summary of a maintenance snapshot: ``mesh.maintenance`` = ``what``, and the
    provenance of main's current snapshot, whose rows it holds (the run, inputs, source file,
    stream offsets: lineage and the next stream batch read them from main's head), not its
    rollback record."""
    summary = table.current_snapshot().summary.additional_properties
    carried = {
        k: v for k, v in summary.items() if k.startswith("mesh.") and not k.startswith(ROLLBACK_PREFIX)
    }
    return {**carried, COMPACTED_PROPERTY: what}


def compact(table: "Table") -> CompactionReport:
    """Rewrite main's small data files and its manifests, leaving its rows as they are.

    pyiceberg 0.12 has neither Trino's ``optimize`` nor ``rewrite_manifests``: in each
    partition holding two or more files under the target file size, those files are read
    (schema evolution applied, as a scan does) and written again split by partition and target
    size (:func:`mesh_assets.iceberg.datafiles.data_files`), replacing them in one overwrite
    snapshot (which carries main's provenance, :func:`_carried`); then, when main had :data:`MANIFESTS_TO_MERGE` manifests or more, one empty merge
    append packs them (pyiceberg's manifest merging, minimum count 2, the table's target
    manifest size). Both snapshots are marked
    ``mesh.maintenance``; earlier snapshots, tags and time travel are untouched (their files
    stay until their snapshots expire).

    Not while a write-audit-publish branch is open: its run could no longer publish (main
    would have moved), so the table is left as it is and the report says why."""

    def count(live: "Table") -> tuple[int, int]:
        snapshot = live.current_snapshot()
        if snapshot is None:
            return 0, 0
        manifests = snapshot.manifests(live.io)
        return sum(m.existing_files_count + m.added_files_count for m in manifests), len(manifests)

    report = CompactionReport()
    report.files_before, report.manifests_before = count(table)
    open_branches = sorted(n for n in table.metadata.refs if n.startswith(AUDIT_PREFIX))
    if open_branches:
        report.skipped = f"write-audit-publish branch(es) still open, their runs could not publish: {', '.join(open_branches)}"
    elif table.current_snapshot() is None:
        report.skipped = "no snapshot"
    if report.skipped:
        report.files_after, report.manifests_after = report.files_before, report.manifests_before
        return report

    def rewrite_files(live: "Table") -> int:
        groups = _small_file_groups(live)
        if not groups:
            return 0
        scan = ArrowScan(live.metadata, live.io, live.schema(), AlwaysTrue())
        arrow_schema = live.schema().as_arrow()
        with transaction(live) as tx:
            rewrite = tx.update_snapshot(snapshot_properties=_carried(live, "compact-files")).overwrite()
            with rewrite:
                for tasks in groups:
                    rows = scan.to_table(tasks).cast(arrow_schema)
                    for task in tasks:
                        rewrite.delete_data_file(task.file)
                    for new_file in data_files(tx, rows.to_batches(), arrow_schema):
                        rewrite.append_data_file(new_file)
        return len(groups)

    def merge_manifests(live: "Table") -> None:
        if (
            report.manifests_before < MANIFESTS_TO_MERGE
            or len(live.current_snapshot().manifests(live.io)) < 2
        ):
            return
        keys = (TableProperties.MANIFEST_MERGE_ENABLED, TableProperties.MANIFEST_MIN_MERGE_COUNT)
        restore = {key: live.properties[key] for key in keys if key in live.properties}
        with transaction(live) as tx:
            tx.set_properties({keys[0]: "true", keys[1]: "2"})
            with tx.update_snapshot(snapshot_properties=_carried(live, "compact-manifests")).merge_append():
                pass  # no file added: the existing manifests are merged
            if unset := [key for key in keys if key not in restore]:
                tx.remove_properties(*unset)
            if restore:
                tx.set_properties(restore)

    report.partitions_rewritten = commit_with_retry(table.catalog, table.name(), rewrite_files).value
    live = commit_with_retry(table.catalog, table.name(), merge_manifests).table
    report.files_after, report.manifests_after = count(live)
    return report


def referenced_files(table: "Table") -> set[str]:
    """Every file the table's metadata still reaches (normalized paths)."""
    io, meta = table.io, table.metadata
    refs = {_norm(table.metadata_location)}
    refs |= {_norm(entry.metadata_file) for entry in meta.metadata_log}
    refs |= {_norm(s.statistics_path) for s in getattr(meta, "statistics", []) or []}
    refs |= {_norm(s.statistics_path) for s in getattr(meta, "partition_statistics", []) or []}
    for snapshot in meta.snapshots:
        refs.add(_norm(snapshot.manifest_list))
        for manifest in snapshot.manifests(io):
            refs.add(_norm(manifest.manifest_path))
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):
                refs.add(_norm(entry.data_file.file_path))
    return refs


@dataclass
class OrphanReport:
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    referenced: int = 0
    kept_too_young: int = 0
    dry_run: bool = False


def remove_orphan_files(
    table: "Table",
    *,
    older_than: timedelta = SAFETY_WINDOW,
    now: datetime | None = None,
    dry_run: bool = False,
) -> OrphanReport:
    """Delete files under the table's location that no snapshot references and that are
    older than ``older_than`` (the safety window)."""

    filesystem, root = pafs.FileSystem.from_uri(table.location())
    referenced = referenced_files(table)
    cutoff = (now or _now()) - older_than
    report = OrphanReport(referenced=len(referenced), dry_run=dry_run)
    for info in filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File or _norm(info.path) in referenced:
            continue
        mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=UTC)
        if mtime > cutoff:
            report.kept_too_young += 1
            continue
        if not dry_run:
            filesystem.delete_file(info.path)
        report.removed.append(info.path)
        report.removed_bytes += info.size or 0
    return report


@dataclass
class MaintenanceReport:
    table: str
    expired_refs: list[str]  # tags past their age and audit branches removed
    expired_snapshots: list[int]
    orphans: OrphanReport
    compaction: CompactionReport | None = None  # None: Trino's optimize did it, or a dry run

    @property
    def removed_branches(self) -> list[str]:
        return [name for name in self.expired_refs if name.startswith(AUDIT_PREFIX)]

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "expired_refs": len(self.expired_refs),
            "removed_audit_branches": ", ".join(self.removed_branches),
            "expired_snapshots": len(self.expired_snapshots),
            "orphan_files_removed": len(self.orphans.removed),
            "orphan_bytes_removed": self.orphans.removed_bytes,
            "files_referenced": self.orphans.referenced,
            "files_kept_too_young": self.orphans.kept_too_young,
            "dry_run": self.orphans.dry_run,
            **(self.compaction.as_metadata() if self.compaction else {}),
        }


def _trino_duration(delta: timedelta) -> str:
    """A Trino duration literal (whole seconds)."""
    return f"{max(int(delta.total_seconds()), 0)}s"


def maintain_with_trino(
    product: "DataProduct",
    catalog,
    *,
    now: datetime | None = None,
    safety_window: timedelta = SAFETY_WINDOW,
    run_states: RunStates = unknown_runs,
) -> MaintenanceReport:
    """Production mode: Trino's own table procedures do the work where the data is:
    ``optimize`` (small files) and ``optimize_manifests``, ``expire_snapshots`` past the contract's
    retention and ``remove_orphan_files`` past the safety window. Tags and stale audit
    branches are expired first, as on the embedded path, so their snapshots can go."""

    identifier = product.table_identifier
    now = now or _now()
    table = catalog.load_table(identifier)
    refs = expire_tags(table, now=now)
    refs += expire_audit_branches(table.refresh(), run_states=run_states, now=now)
    before = {s.snapshot_id for s in table.refresh().snapshots()}
    files_before = referenced_files(table.refresh())
    # the contract's retention and the platform's safety window rule, not Trino's 7-day default
    catalog_name = trino_table(identifier).split(".")[0].strip('"')
    cursor = trino_connection(
        domain=product.domain,
        session_properties={
            f"{catalog_name}.expire_snapshots_min_retention": _trino_duration(product.retention),
            f"{catalog_name}.remove_orphan_files_min_retention": _trino_duration(safety_window),
        },
    ).cursor()
    name = trino_table(identifier)
    for statement in (
        f"ALTER TABLE {name} EXECUTE optimize",
        f"ALTER TABLE {name} EXECUTE optimize_manifests",
        f"ALTER TABLE {name} EXECUTE expire_snapshots(retention_threshold => "
        f"'{_trino_duration(product.retention)}')",
        f"ALTER TABLE {name} EXECUTE remove_orphan_files(retention_threshold => "
        f"'{_trino_duration(safety_window)}')",
    ):
        cursor.execute(statement)
        cursor.fetchall()
    table = table.refresh()
    after = {s.snapshot_id for s in table.snapshots()}
    orphans = OrphanReport(referenced=len(referenced_files(table)))
    orphans.removed = sorted(files_before - referenced_files(table))
    return MaintenanceReport(identifier, refs, sorted(before - after), orphans)


def maintain(
    product: "DataProduct",
    catalog,
    *,
    now: datetime | None = None,
    safety_window: timedelta = SAFETY_WINDOW,
    dry_run: bool = False,
    run_states: RunStates = unknown_runs,
) -> MaintenanceReport | None:
    """Remove expired tags and the audit branches of runs no longer running (``run_states``:
    :func:`dagster_run_states` of the instance), expire the product's snapshots past its
    retention, compact main's small files and manifests (:func:`compact`), then remove orphan
    files (with Trino's procedures in production mode, ``MESH_ENGINE=trino``). None when the
    product has no table yet."""

    identifier = product.table_identifier
    if not catalog.table_exists(identifier):
        return None
    if load_settings().engine == "trino" and not dry_run:
        return maintain_with_trino(
            product, catalog, now=now, safety_window=safety_window, run_states=run_states
        )
    now = now or _now()
    table = catalog.load_table(identifier)
    tags, expired, compaction = [], [], None
    if not dry_run:
        tags = expire_tags(table, now=now)
        tags += expire_audit_branches(table.refresh(), run_states=run_states, now=now)
        expired = expire_snapshots(table.refresh(), older_than=now - product.retention)
        compaction = compact(table.refresh())
    orphans = remove_orphan_files(table.refresh(), older_than=safety_window, now=now, dry_run=dry_run)
    return MaintenanceReport(identifier, tags, expired, orphans, compaction)


# The maintenance of a product's quarantine table (mesh_assets.ingest.quarantine.maintain_quarantine,
# handed in by mesh_assets.definitions: this layer knows no ingestion): (catalog, product, run
# states) -> a report with ``as_metadata()``, or None when there is no such table.
QuarantineMaintainer = Callable[[Any, "DataProduct", RunStates], Any]


def maintenance_job(domain: str, products, maintain_quarantine: QuarantineMaintainer | None = None):
    """A Dagster job maintaining every product table of ``domain`` (and, with
    ``maintain_quarantine``, first the quarantine table of each product that has one), and its
    daily schedule. It first fails the runs of this machine whose worker process died
    (:mod:`mesh_assets.runs`)."""

    @dg.op(name=f"maintain_{domain}_tables")
    def _maintain(context: dg.OpExecutionContext, catalog: IcebergCatalog):
        for run_id in fail_dead_runs(context.instance):
            context.log.warning(f"run {run_id} marked failed: its worker process is gone")
        run_states = dagster_run_states(context.instance)
        for product in products:
            quarantine = None
            if maintain_quarantine is not None and product.quarantine:
                quarantine = maintain_quarantine(catalog.catalog(), product, run_states)
            report = maintain(product, catalog.catalog(), run_states=run_states)
            if report is None:
                continue
            metadata = {**report.as_metadata(), **(quarantine.as_metadata() if quarantine else {})}
            context.log.info(f"{report.table}: {metadata}")
            context.log_event(
                dg.AssetObservation(
                    asset_key=product.asset_key_path,
                    metadata={f"maintenance/{k}": v for k, v in metadata.items()},
                )
            )

    @dg.job(
        name=f"{domain}_maintenance",
        description=f"Expire snapshots and remove orphan files of the {domain} domain's tables.",
    )
    def _job():
        _maintain()

    schedule = dg.ScheduleDefinition(
        job=_job, cron_schedule="30 3 * * *", default_status=dg.DefaultScheduleStatus.RUNNING
    )
    return _job, schedule
