"""Versions and provenance of data products: Iceberg snapshots, tags, time travel, lineage.

Every commit the platform makes records, in the snapshot summary, the Dagster run that made it
(``mesh.dagster.run_id``), the input snapshots it read (``mesh.inputs``) and, for ingested
products, the source file and its checksum (``mesh.source.file`` / ``mesh.source.sha256``).
That is enough to answer "which exact inputs produced this version?" recursively up the mesh,
and to read or restore any past version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mesh_assets.iceberg.commit import (
    INPUTS_PROPERTY,
    RUN_ID_PROPERTY,
    SOURCE_FILE_PROPERTY,
    SOURCE_SHA256_PROPERTY,
)

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table


class VersionError(ValueError):
    """A snapshot, tag or time does not exist for the table named in the message."""


def _name(table: Table) -> str:
    return ".".join(table.name())


def _summary(snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot and snapshot.summary else {}


def resolve_as_of(table: Table, as_of: str | int | None) -> int | None:
    """The snapshot id ``as_of`` designates: a snapshot id, a tag or branch name, or an ISO
    timestamp (the snapshot current at that time). None means the current snapshot."""
    if as_of is None or as_of == "":
        current = table.current_snapshot()
        return current.snapshot_id if current else None
    text = str(as_of).strip()
    if text.lstrip("-").isdigit() and table.snapshot_by_id(int(text)) is not None:
        return int(text)
    ref = table.metadata.refs.get(text)
    if ref is not None:
        return ref.snapshot_id
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise VersionError(
            f"table {_name(table)}: '{text}' is neither a snapshot id, a tag or "
            "branch, nor an ISO timestamp (see `mesh history`)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
    if snapshot is None:
        raise VersionError(f"table {_name(table)}: no snapshot existed at {moment.isoformat()}")
    return snapshot.snapshot_id


def history(table: Table) -> list[dict[str, Any]]:
    """Snapshots oldest first, with the run that made each and the refs pointing at it."""
    refs: dict[int, list[str]] = {}
    for name, ref in table.metadata.refs.items():
        refs.setdefault(ref.snapshot_id, []).append(name)
    current = table.current_snapshot()
    rows = []
    for entry in table.metadata.snapshot_log:
        snap = table.snapshot_by_id(entry.snapshot_id)
        if snap is None:  # expired
            continue
        summary = _summary(snap)
        rows.append(
            {
                "snapshot_id": snap.snapshot_id,
                "committed_at": datetime.fromtimestamp(snap.timestamp_ms / 1000, UTC),
                "operation": snap.summary.operation.value if snap.summary else "",
                "rows": int(summary.get("total-records", 0)),
                "run_id": summary.get(RUN_ID_PROPERTY, ""),
                "refs": sorted(refs.get(snap.snapshot_id, [])),
                "current": current is not None and snap.snapshot_id == current.snapshot_id,
            }
        )
    return rows


@dataclass
class LineageNode:
    identifier: str
    snapshot_id: int | None
    run_id: str = ""
    source_file: str = ""
    source_sha256: str = ""
    inputs: list[LineageNode] = field(default_factory=list)
    missing: str = ""

    def lines(self, depth: int = 0) -> list[str]:
        pad = "  " * depth + ("<- " if depth else "")
        text = f"{pad}{self.identifier} @ {self.snapshot_id}"
        if self.run_id:
            text += f" (run {self.run_id[:8]})"
        if self.source_file:
            text += f" from file {self.source_file} sha256:{self.source_sha256[:12]}"
        if self.missing:
            text += f" [{self.missing}]"
        out = [text]
        for node in self.inputs:
            out += node.lines(depth + 1)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "snapshot_id": self.snapshot_id,
            "run_id": self.run_id,
            "source_file": self.source_file,
            "source_sha256": self.source_sha256,
            "missing": self.missing,
            "inputs": [n.as_dict() for n in self.inputs],
        }


def lineage(
    catalog: Catalog, identifier: str, snapshot: str | int | None = None, *, _depth: int = 0
) -> LineageNode:
    """The exact input snapshots that produced ``identifier`` at ``snapshot``, recursively."""
    table = catalog.load_table(identifier)
    snapshot_id = resolve_as_of(table, snapshot)
    snap = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    summary = _summary(snap)
    node = LineageNode(
        identifier,
        snapshot_id,
        run_id=summary.get(RUN_ID_PROPERTY, ""),
        source_file=summary.get(SOURCE_FILE_PROPERTY, ""),
        source_sha256=summary.get(SOURCE_SHA256_PROPERTY, ""),
    )
    if _depth > 50:
        node.missing = "lineage deeper than 50 levels: stopped"
        return node
    for upstream, upstream_snapshot in sorted(json.loads(summary.get(INPUTS_PROPERTY, "{}")).items()):
        if not catalog.table_exists(upstream):
            node.inputs.append(LineageNode(upstream, upstream_snapshot, missing="table dropped"))
            continue
        if catalog.load_table(upstream).snapshot_by_id(upstream_snapshot) is None:
            node.inputs.append(LineageNode(upstream, upstream_snapshot, missing="snapshot expired"))
            continue
        node.inputs.append(lineage(catalog, upstream, upstream_snapshot, _depth=_depth + 1))
    return node


def is_timestamp(as_of: str | None) -> bool:
    """Whether ``as_of`` names a point in time (an ISO timestamp), not a snapshot id or a ref:
    a table that did not exist yet at that time is then absent, not read at its current state."""
    if not as_of:
        return False

    try:
        datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError:
        return False
    return not as_of.lstrip("-").isdigit()
