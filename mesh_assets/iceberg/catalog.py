"""The Iceberg catalog: one pyiceberg SqlCatalog, SQLite locally and PostgreSQL in production.

Everything that creates, loads or commits Iceberg tables goes through this module, and so does
the provenance each commit records (snapshot summary properties ``mesh.*``).
"""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import dagster as dg

from mesh_assets.contract.model import DataProduct
from mesh_assets.iceberg.commit import INPUTS_PROPERTY, SCHEMA_CHANGES_PROPERTY
from mesh_assets.iceberg.schema import evolve
from mesh_assets.settings import MeshSettings, ensure_local_dirs, load_settings, secret

if TYPE_CHECKING:  # SQLAlchemy loads only when a catalog opens (_catalog); Table: annotations only
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.table import Table
TABLE_PROPERTIES = {
    # no retry inside pyiceberg: every conflict reaches the platform's one retry policy
    # (mesh_assets.iceberg.commit.commit_with_retry), which re-reads the table and counts it
    "commit.retry.num-retries": "0",
    # The Parquet layout Trino reads as fast as its own files (issue 21; bench/results.md, "Files
    # behind stack_trino_tpch_q1"). Trino reads each row group as one split, at a fixed cost per
    # split: TPC-H SF1 lineitem in 9 row groups of 711k rows cost Trino 1.1-1.5x the CPU of its
    # own copy (4 groups of 0.9-2.4M rows) for Q1/Q6/Q12; with the three settings below (3
    # groups) 0.96-1.04x (medians of 9, alternating). A streamed unpartitioned file is one row
    # group of up to this many rows, gathered in memory (mesh_assets.iceberg.datafiles): this
    # also bounds what an ingest holds (SF1 lineitem peaked at 980 MiB instead of 760).
    "write.parquet.row-group-limit": str(2 << 20),
    # Arrow bytes per streamed file (so per row group; 2Mi lineitem rows are ~380 MiB of Arrow)
    # and per sorted chunk of a partitioned write (which FILE_ROWS bounds first for most tables)
    "write.target-file-size-bytes": str(512 << 20),
    # pyarrow dictionary-encodes every column until its dictionary passes this size, then writes
    # plain pages; Trino's writer drops the dictionary of high-cardinality columns (keys, prices,
    # comments) early. With pyiceberg's 2 MiB the dictionaries of such columns cost Trino ~0.1x
    # more CPU on the same queries (Q6/Q12 1.17-1.29x -> 1.09-1.21x at 1Mi-row groups)
    "write.parquet.dict-size-bytes": str(256 << 10),
    # Parquet pages end at write.parquet.page-size-bytes (1 MiB) rather than at Iceberg's
    # default 20,000 rows: Trino scanned low-cardinality columns in 20,000-row pages at up to
    # 1.5x the CPU of its own files (mesh_assets.iceberg.datafiles._ParquetWriter applies it)
    "write.parquet.page-row-limit": str(1 << 20),
    "write.parquet.compression-codec": "zstd",
    # an append merges the table's manifests once 100 have piled up (pyiceberg's fast append
    # never does: each snapshot's manifest list grew by one, so each commit cost more than the
    # last; bench/history.py measures it)
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "100",
}


class CatalogError(RuntimeError):
    """The Iceberg catalog could not be opened; the message never contains its password."""


def _without_password(text: str) -> str:
    """``text`` with the catalog password (as given and percent-encoded) and the password part
    of any ``scheme://user:password@`` replaced by ``***``."""
    password = secret("MESH_CATALOG_PASSWORD")
    for form in sorted({password, quote(password, safe="")} if password else set(), key=len, reverse=True):
        text = text.replace(form, "***")
    return re.sub(r"(://[^:/@\s]*:)\S*@", r"\1***@", text)


@functools.lru_cache(maxsize=8)
def _catalog(settings: MeshSettings) -> SqlCatalog:
    from mesh_assets.iceberg.sqlcatalog import MeshSqlCatalog  # noqa: PLC0415  SQLAlchemy (0.3-0.7 s): only when a catalog opens

    ensure_local_dirs(settings)
    try:
        return MeshSqlCatalog(settings.catalog_name, **settings.catalog_properties())
    except Exception as exc:  # SQLAlchemy and drivers may echo the URI: never pass it on as is
        raise CatalogError(
            f"cannot open the Iceberg catalog {settings.catalog_name} at "
            f"{_without_password(settings.catalog_uri)}: {type(exc).__name__}: "
            f"{_without_password(str(exc))}. Check MESH_CATALOG_URI and the catalog password "
            "(MESH_CATALOG_PASSWORD or MESH_CATALOG_PASSWORD_FILE)."
        ) from None


def open_catalog(settings: MeshSettings | None = None) -> SqlCatalog:
    return _catalog(settings or load_settings())


def ensure_table(catalog: SqlCatalog, product: DataProduct) -> Table:
    """The product's table, created from its contract or evolved to it (additive changes only;
    see :mod:`mesh_assets.iceberg.schema`)."""
    return evolve_table(catalog, product)[0]


def evolve_table(catalog: SqlCatalog, product: DataProduct) -> tuple[Table, list[str]]:
    """``(table, applied changes)``; raises BreakingSchemaChange and changes nothing when the
    contract would break the live table."""

    return evolve(catalog, product, properties=TABLE_PROPERTIES)


def snapshot_id_metadata(snapshot_id: int) -> dg.TextMetadataValue:
    """A snapshot id as Dagster metadata: an identifier (text), not a number to plot."""
    return dg.MetadataValue.text(str(snapshot_id))


def snapshot_metadata(
    table: Table, *, inputs: dict[str, int] | None = None, snapshot_id: int | None = None
) -> dict[str, Any]:
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
        md["iceberg/snapshot_id"] = snapshot_id_metadata(snap.snapshot_id)
        md["dagster/row_count"] = dg.MetadataValue.int(int(summary.get("total-records", 0)))
        md["iceberg/data_files"] = dg.MetadataValue.int(int(summary.get("total-data-files", 0)))
        if inputs is None and INPUTS_PROPERTY in summary:
            inputs = json.loads(summary[INPUTS_PROPERTY])
        if SCHEMA_CHANGES_PROPERTY in summary:
            md["mesh/schema_changes"] = dg.MetadataValue.json(json.loads(summary[SCHEMA_CHANGES_PROPERTY]))
    md["iceberg/input_snapshots"] = dg.MetadataValue.json(inputs or {})
    return md


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.field_type),
                description=f.doc,
                constraints=dg.TableColumnConstraints(nullable=not f.required),
            )
            for f in table.schema().fields
        ]
    )


class IcebergCatalog(dg.ConfigurableResource):
    """Dagster resource for the mesh's Iceberg catalog, configured from the environment
    (see :mod:`mesh_assets.settings`)."""

    def catalog(self) -> SqlCatalog:
        return open_catalog()

    def load_table(self, identifier: str) -> Table:
        return self.catalog().load_table(identifier)

    def ensure_table(self, product: DataProduct) -> Table:
        return ensure_table(self.catalog(), product)
