"""Quarantine: with ``quarantine: true`` in the contract, rows that break it are parked in
``<domain>.<product>__quarantine`` with the reason, and the good rows are written. Rows are
judged by the same grammar as without quarantine (:mod:`mesh_assets.ingest.readers`).

Under write-audit-publish the parked rows wait on the quarantine table's branch of the same
name as the product's audit branch (``audit-<run>``) and reach its main only when the run
publishes the product (:func:`publish_quarantine`): a run whose checks failed leaves the
quarantine table's main as it was, its rows readable on the branch. Two tables cannot share one
Iceberg commit, so the quarantine's publication follows the product's; a run stopped between the
two has its rows published later by a re-execution of its checks or by maintenance
(:func:`publish_stranded_quarantine`, :func:`maintain_quarantine`)."""

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import TableAlreadyExistsError
from pyiceberg.expressions import AlwaysTrue, EqualTo
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import PartitionSelection
from mesh_assets.iceberg.catalog import TABLE_PROPERTIES
from mesh_assets.iceberg.commit import RUN_ID_PROPERTY, commit_with_retry, replace_rows
from mesh_assets.iceberg.maintenance import RunStates, expire_audit_branches, unknown_runs
from mesh_assets.iceberg.wap import AUDIT_PREFIX, lineage_of, main_history, open_audit_branch
from mesh_assets.ingest.landing import Landed
from mesh_assets.ingest.readers import line_numbers, parse_column, split_batches

QUARANTINE_SUFFIX = "__quarantine"
# the rows a quarantine commit replaced: a partition's ``_partition`` value, or "*" for all
QUARANTINE_PARTITION_PROPERTY = "mesh.quarantine.partition"
WHOLE_TABLE = "*"


def quarantine_identifier(product: DataProduct) -> str:
    return product.table_identifier + QUARANTINE_SUFFIX


def _rows_of(key: str):
    return AlwaysTrue() if key == WHOLE_TABLE else EqualTo("_partition", key)


def quarantine_schema(product: DataProduct) -> pa.Schema:
    return pa.schema(
        [pa.field(c.name, pa.large_string()) for c in product.columns]
        + [
            pa.field("_reason", pa.large_string()),
            pa.field("_line", pa.int64()),
            pa.field("_source_file", pa.large_string()),
            pa.field("_partition", pa.large_string()),
        ]
    )


def _split_and_park(landed: Landed, catalog, selection, properties, branch: str | None = None):
    """Split the file; commit its bad rows to the quarantine table first (on ``branch`` when
    given); return the good rows.

    Two tables cannot share one Iceberg commit: the quarantine rows of a partition are
    replaced (not appended) on every run, so a rerun after a failure converges."""
    product = landed.product
    good_batches, bad_tables = [], []
    for good, bad in split_batches(landed):
        good_batches.append(good)
        if bad is not None:
            bad_tables.append(bad)
    key = selection.describe() if selection else WHOLE_TABLE
    schema = quarantine_schema(product)
    if bad_tables:
        bad = pa.concat_tables(bad_tables)
        rows = bad.column("_row").to_pylist()
        lines = line_numbers(landed, rows)
        bad = bad.drop_columns(["_row"]).append_column(
            "_line", pa.array([lines.get(r) for r in rows], pa.int64())
        )
    else:
        bad = schema.empty_table().drop_columns(["_source_file", "_partition"])
    bad = bad.append_column("_source_file", pa.array([landed.path.name] * bad.num_rows, pa.large_string()))
    bad = bad.append_column("_partition", pa.array([key] * bad.num_rows, pa.large_string()))
    bad = bad.select(schema.names).cast(schema)
    if selection is not None and bad.num_rows:
        bad = _bad_rows_in_selection(bad, product, selection)
    park(catalog, product, bad, key, properties, branch)
    return good_batches, bad.num_rows


def park(
    catalog, product: DataProduct, bad: pa.Table, key: str, properties: dict, branch: str | None
) -> None:
    """Replace the quarantine table's rows of ``key`` (a partition, ``*``, or a stream batch)
    with ``bad`` (of :func:`quarantine_schema`), on ``branch`` when given; the table is made
    on first use and left alone while nothing was ever quarantined."""
    schema = quarantine_schema(product)
    identifier = quarantine_identifier(product)

    if bad.num_rows or catalog.table_exists(identifier):
        catalog.create_namespace_if_not_exists(product.domain)
        try:
            table = catalog.create_table(identifier, schema=schema, properties=TABLE_PROPERTIES)
        except TableAlreadyExistsError:
            table = catalog.load_table(identifier)
        if branch is not None:
            open_audit_branch(table, branch)
        parked = {**properties, QUARANTINE_PARTITION_PROPERTY: key}

        def replace(live):
            replace_rows(live, bad.to_batches(), schema, parked, _rows_of(key), branch)
            if (
                branch is not None
                and live.metadata.refs[branch].snapshot_id == live.current_snapshot().snapshot_id
            ):
                # nothing replaced: a snapshot of its own still marks what this run publishes
                live.append(schema.empty_table(), snapshot_properties=parked, branch=branch)

        commit_with_retry(catalog, identifier, replace)


def _summary(snapshot: Snapshot | None) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot is not None and snapshot.summary else {}


def _superseded(table: Table, head: Snapshot, key: str) -> bool:
    """Whether the quarantine table's main replaced rows of ``key`` (the same partition, or
    all rows) after the branch whose head is ``head`` was opened: a newer run's publication."""
    opened_on = set(lineage_of(table, head.snapshot_id))
    for snapshot_id in main_history(table):
        if snapshot_id in opened_on:  # main as the branch saw it: nothing newer below
            return False
        other = _summary(table.snapshot_by_id(snapshot_id)).get(QUARANTINE_PARTITION_PROPERTY)
        if other is not None and (other == key or WHOLE_TABLE in (other, key)):
            return True
    return False


def publish_quarantine(catalog, product: DataProduct, branch: str) -> int | None:
    """Make the rows the run parked on ``branch`` of the quarantine table visible on its main:
    the rows of the same partition (or all) are replaced with them in one commit, and the
    branch is dropped. When main already holds a newer publication of that partition (made
    after the branch was opened), the branch is only dropped: older rows never replace newer
    ones. Returns the rows published; None when nothing was: the run parked nothing (no
    quarantine table or no such branch), a newer run had published the partition, or the
    branch was published or reset meanwhile by another process."""
    identifier = quarantine_identifier(product)
    if not catalog.table_exists(identifier):
        return None
    table = catalog.load_table(identifier)
    ref = table.metadata.refs.get(branch)
    if ref is None:
        return None
    head = table.snapshot_by_id(ref.snapshot_id)
    key = _summary(head).get(QUARANTINE_PARTITION_PROPERTY)
    if key is None:  # the branch holds nothing this run parked
        return None
    schema = quarantine_schema(product)
    rows = table.scan(row_filter=_rows_of(key), snapshot_id=head.snapshot_id).to_arrow().cast(schema)
    properties = {k: v for k, v in _summary(head).items() if k.startswith("mesh.")}

    def move(live: Table) -> int | None:
        current = live.metadata.refs.get(branch)
        if current is None or current.snapshot_id != head.snapshot_id:  # published or reset meanwhile
            return None
        if _superseded(live, head, key):
            live.manage_snapshots().remove_branch(branch).commit()
            return None
        return replace_rows(live, rows.to_batches(), schema, properties, _rows_of(key), drop_branch=branch)

    return commit_with_retry(catalog, identifier, move).value


def publish_stranded_quarantine(catalog, product: DataProduct, branch: str) -> bool:
    """Finish the publication of a run stopped (killed) after it published the product and
    before it published the rows it parked on the quarantine table's ``branch``: when the
    product's main holds a snapshot of the run that parked the branch's head
    (:data:`~mesh_assets.iceberg.commit.RUN_ID_PROPERTY`), the rows are published
    (:func:`publish_quarantine`, which drops the branch instead when a newer run published the
    partition). Returns whether the branch belonged to such a run (its rows are now on main,
    or a newer run's are); False leaves it as it is: its run has not published (yet)."""
    identifier = quarantine_identifier(product)
    if not catalog.table_exists(identifier):
        return False
    quarantine = catalog.load_table(identifier)
    ref = quarantine.metadata.refs.get(branch)
    run_id = _summary(quarantine.snapshot_by_id(ref.snapshot_id)).get(RUN_ID_PROPERTY) if ref else None
    if run_id is None:
        return False
    table = catalog.load_table(product.table_identifier)
    if not any(_summary(table.snapshot_by_id(s)).get(RUN_ID_PROPERTY) == run_id for s in main_history(table)):
        return False
    publish_quarantine(catalog, product, branch)
    return True


@dataclass(frozen=True)
class QuarantineMaintenance:
    """What :func:`maintain_quarantine` did to a quarantine table's audit branches."""

    table: str
    published: list[str]  # of runs that had published the product: rows on main (or superseded)
    removed: list[str]  # of runs no longer running that never published the product

    def as_metadata(self) -> dict[str, str]:
        return {
            "quarantine_published_branches": ", ".join(self.published),
            "quarantine_removed_branches": ", ".join(self.removed),
        }


def maintain_quarantine(
    catalog,
    product: DataProduct,
    run_states: RunStates = unknown_runs,
    *,
    now: datetime | None = None,
) -> QuarantineMaintenance | None:
    """The product's quarantine table's audit branches: each one whose run published the product
    is published (:func:`publish_stranded_quarantine`), then those of runs no longer running are
    removed, by the rule of the product's own (:func:`~mesh_assets.iceberg.maintenance.
    expire_audit_branches`). None when the product has no quarantine table."""
    identifier = quarantine_identifier(product)
    if not catalog.table_exists(identifier):
        return None
    refs = catalog.load_table(identifier).metadata.refs
    branches = sorted(name for name in refs if name.startswith(AUDIT_PREFIX))
    published = [b for b in branches if publish_stranded_quarantine(catalog, product, b)]
    table = catalog.load_table(identifier)
    return QuarantineMaintenance(
        identifier, published, expire_audit_branches(table, run_states=run_states, now=now)
    )


def _bad_rows_in_selection(bad: pa.Table, product: DataProduct, selection: PartitionSelection) -> pa.Table:
    """Bad rows of the selected partition(s): those whose partition value parses into it, and
    those whose partition value does not parse at all (they belong to no partition)."""
    column = product.column(selection.column)
    target = product.arrow_schema().field(selection.column).type
    text = bad.column(selection.column).combine_chunks()
    parsed, _ = parse_column(text, column, target, product.timezone)
    batch = pa.RecordBatch.from_arrays([parsed], names=[selection.column])
    inside = pc.fill_null(selection.arrow_mask(batch), True)
    return bad.filter(pc.or_(inside, pc.is_null(parsed)))
