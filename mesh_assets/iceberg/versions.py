"""Versions and provenance of data products: Iceberg snapshots, tags, time travel, lineage.

Every commit the platform makes records, in the snapshot summary, the Dagster run that made it
(``mesh.dagster.run_id``), the input snapshots it read (``mesh.inputs``) and, for ingested
products, the source file and its checksum (``mesh.source.file`` / ``mesh.source.sha256``).
That is enough to answer "which exact inputs produced this version?" recursively up the mesh,
and to read or restore any past version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
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


def known_versions(table: Table, limit: int = 5) -> str:
    """What ``table`` can be read at, for an error message: its newest tags, its branches and
    the span of its snapshots."""
    refs = table.metadata.refs
    stamp = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
    tags = sorted(
        (n for n, r in refs.items() if r.snapshot_ref_type == "tag"),
        key=lambda n: (-stamp.get(refs[n].snapshot_id, 0), n),
    )
    branches = sorted(n for n, r in refs.items() if r.snapshot_ref_type == "branch" and n != "main")
    parts = [f"tags: {', '.join(tags[:limit]) + (', ...' if len(tags) > limit else '') or 'none'}"]
    if branches:
        parts.append(f"branches: {', '.join(branches[:limit]) + (', ...' if len(branches) > limit else '')}")
    if stamp:
        first, last = (
            datetime.fromtimestamp(ms / 1000, UTC).isoformat()
            for ms in (min(stamp.values()), max(stamp.values()))
        )
        parts.append(f"{len(stamp)} snapshot(s) from {first} to {last}")
    return "; ".join(parts) + f" (`mesh history {_name(table)}` lists every version)"


def resolve_as_of(table: Table, as_of: str | int | None) -> int | None:
    """The snapshot id ``as_of`` designates: a snapshot id (digits only), a tag or branch name,
    or an ISO timestamp (the snapshot current at that time). None means the current snapshot.
    Anything the table does not have is a :class:`VersionError` naming the table and what it
    has: never the current snapshot in its place."""
    if as_of is None or as_of == "":
        current = table.current_snapshot()
        return current.snapshot_id if current else None
    text = str(as_of).strip()
    if re.fullmatch(r"-?\d+", text):
        if table.snapshot_by_id(int(text)) is None:
            raise VersionError(f"table {_name(table)}: no snapshot {text}; {known_versions(table)}")
        return int(text)
    ref = table.metadata.refs.get(text)
    if ref is not None:
        return ref.snapshot_id
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise VersionError(
            f"table {_name(table)}: '{text}' is neither a snapshot id, a tag or branch, nor an ISO "
            f"timestamp; {known_versions(table)}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    snapshot = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
    if snapshot is None:
        raise VersionError(
            f"table {_name(table)}: no snapshot existed at {moment.isoformat()}; {known_versions(table)}"
        )
    return snapshot.snapshot_id


def resolve_as_of_tables(tables: Mapping[str, Table], as_of: str | int | None) -> dict[str, int | None]:
    """The snapshot each of ``tables`` (the products a query reads, by name) is read at, for
    one ``as_of`` (``mesh query --as-of``, on DuckDB and on Trino alike).

    A time applies to every table: a table without a snapshot at that time is an error naming
    it. A snapshot id or a tag/branch applies to the tables that have it and the others are
    read at their current snapshot; an id or name that none of them has is an error naming
    each table and what it has. None reads every table at its current snapshot."""
    if as_of is None or as_of == "":
        return {name: resolve_as_of(table, None) for name, table in tables.items()}
    if is_timestamp(str(as_of)):
        return {name: resolve_as_of(table, as_of) for name, table in tables.items()}
    if not tables:
        raise VersionError(f"--as-of {as_of}: the query names no data product (domain.product) to read at it")
    found, missing = {}, []
    for name, table in tables.items():
        try:
            found[name] = resolve_as_of(table, as_of)
        except VersionError as exc:
            missing.append(str(exc))
            found[name] = resolve_as_of(table, None)
    if len(missing) == len(tables):
        raise VersionError(" | ".join(missing))
    return found


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
    """Whether ``as_of`` names a point in time (an ISO timestamp), not a snapshot id or a ref."""
    if not as_of or re.fullmatch(r"-?\d+", str(as_of).strip()):
        return False
    try:
        datetime.fromisoformat(str(as_of).strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
