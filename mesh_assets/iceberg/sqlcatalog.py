"""pyiceberg's SqlCatalog at a commit cost that does not grow with the table's history.

At 1,000 snapshots a platform write spent most of its time re-reading the table's metadata
(bench/history.py): three parses of the whole metadata JSON (the load before the write, the
load inside ``commit_table``, the load after it) and three deep copies of it (two staged
changes and the commit, see :func:`mesh_assets.iceberg.commit.apply_updates`).

A metadata file is never changed once written (each commit writes a new one under a new name
and moves the catalog's pointer), so the metadata parsed from a location, or written to it by
this process, stays right for that location. :class:`MeshSqlCatalog` keeps the last one per
table and still asks the catalog database for the current location on every load, so a commit
by any other writer is seen exactly as before. The same cache was proposed upstream in
apache/iceberg-python#3302 and #3784 (both closed unmerged).

SQLAlchemy loads with this module (0.3-0.7 s): :mod:`mesh_assets.iceberg.catalog` imports it
only when a catalog opens.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import CommitTableResponse, StagedTable, Table
from pyiceberg.table.locations import load_location_provider

from mesh_assets.iceberg.commit import apply_updates

if TYPE_CHECKING:  # annotations only
    from pyiceberg.catalog.sql import IcebergTables
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.update import TableRequirement, TableUpdate
    from pyiceberg.typedef import Identifier


class MeshSqlCatalog(SqlCatalog):
    """SqlCatalog that parses each table's metadata file once per process and stages commits
    without pyiceberg's deep copy of the whole metadata."""

    def __init__(self, name: str, **properties: str):
        super().__init__(name, **properties)
        self._lock = threading.Lock()
        # table -> the last (metadata location, metadata) this process read or wrote
        self._metadata: dict[Identifier, tuple[str, TableMetadata]] = {}

    def _remember(
        self, identifier: Identifier, location: str, metadata: TableMetadata, *, replacing: str | None = None
    ) -> None:
        """Keep ``metadata`` as what ``location`` holds; with ``replacing``, only while what is
        kept is still that location (a slower thread must not put back an older commit)."""
        with self._lock:
            known = self._metadata.get(identifier)
            if replacing is None or known is None or known[0] == replacing:
                self._metadata[identifier] = (location, metadata)

    def _forget(self, identifier: str | Identifier) -> None:
        with self._lock:
            self._metadata.pop(Catalog.identifier_to_tuple(identifier), None)

    def _convert_orm_to_iceberg(self, orm_table: IcebergTables) -> Table:
        """The table behind a catalog row (pyiceberg's method of the same name, which every load
        goes through), its metadata parsed only when the row points at a file not seen before."""
        location, namespace, name = (
            orm_table.metadata_location,
            orm_table.table_namespace,
            orm_table.table_name,
        )
        if not (location and namespace and name):  # pyiceberg's own error for an incomplete row
            return super()._convert_orm_to_iceberg(orm_table)
        identifier = (*Catalog.identifier_to_tuple(namespace), name)
        with self._lock:
            known = self._metadata.get(identifier)
        if known is None or known[0] != location:
            table = super()._convert_orm_to_iceberg(orm_table)
            self._remember(identifier, location, table.metadata)
            return table
        metadata = known[1]
        return Table(
            identifier=identifier,
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(metadata.properties, location),
            catalog=self,
        )

    def commit_table(
        self, table: Table, requirements: tuple[TableRequirement, ...], updates: tuple[TableUpdate, ...]
    ) -> CommitTableResponse:
        response = super().commit_table(table, requirements, updates)
        self._remember(
            table.name(), response.metadata_location, response.metadata, replacing=table.metadata_location
        )
        return response

    def drop_table(self, identifier: str | Identifier) -> None:
        super().drop_table(identifier)
        self._forget(identifier)

    def rename_table(self, from_identifier: str | Identifier, to_identifier: str | Identifier) -> Table:
        self._forget(from_identifier)
        return super().rename_table(from_identifier, to_identifier)

    def register_table(
        self, identifier: str | Identifier, metadata_location: str, overwrite: bool = False
    ) -> Table:
        self._forget(identifier)  # a location may be registered again with other content
        return super().register_table(identifier, metadata_location, overwrite)

    def _update_and_stage_table(
        self,
        current_table: Table | None,
        table_identifier: Identifier,
        requirements: tuple[TableRequirement, ...],
        updates: tuple[TableUpdate, ...],
    ) -> StagedTable:
        """pyiceberg's staging of a commit (``Catalog._update_and_stage_table``), for an existing
        table through :func:`~mesh_assets.iceberg.commit.apply_updates`; a new table is created
        by pyiceberg's own path, which validates the whole metadata."""
        if current_table is None:
            return super()._update_and_stage_table(current_table, table_identifier, requirements, updates)
        for requirement in requirements:
            requirement.validate(current_table.metadata)
        metadata = apply_updates(current_table.metadata, updates, current_table.metadata_location)
        version = self._parse_metadata_version(current_table.metadata_location) + 1
        location = load_location_provider(
            metadata.location, metadata.properties
        ).new_table_metadata_file_location(version)
        return StagedTable(
            identifier=table_identifier,
            metadata=metadata,
            metadata_location=location,
            io=self._load_file_io(properties=metadata.properties, location=location),
            catalog=self,
        )
