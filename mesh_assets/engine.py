"""The embedded SQL engine: DuckDB reading Iceberg tables.

DuckDB reads a pyiceberg table directly from its metadata file with ``iceberg_scan`` (the
offline ``duckdb-extension-iceberg`` package, about 7x faster than a pyiceberg scan). Where the
extension cannot load, or the warehouse is not a local file system, the table is scanned with
pyiceberg into Arrow and registered instead: same results, first-party path.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from mesh_assets import settings

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


@functools.cache
def _extension_files() -> tuple[str, ...] | None:
    """Paths of the avro and iceberg extensions shipped as Python packages, avro first."""
    try:
        import duckdb_extension_avro
        import duckdb_extension_iceberg
    except ImportError:
        return None
    files = []
    for module in (duckdb_extension_avro, duckdb_extension_iceberg):
        root = Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}"
        found = sorted(root.glob("*.duckdb_extension"))
        if not found:
            return None
        files.append(str(found[0]))
    return tuple(files)


def load_iceberg_extension(con: duckdb.DuckDBPyConnection) -> bool:
    """Load the iceberg extension into ``con``; False (and a debug log) when unavailable."""
    files = _extension_files()
    if not files:
        return False
    try:
        for f in files:
            con.execute(f"LOAD '{f}'")
    except duckdb.Error as exc:
        log.debug("DuckDB iceberg extension unavailable, using pyiceberg scans: %s", exc)
        return False
    return True


def connect(database: str | Path = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``iceberg_scan`` ready when the extension is available.

    Extensions are never downloaded: they come from the ``duckdb-extension-*`` packages, so an
    air-gapped deployment works the same.
    """
    con = duckdb.connect(str(database), config={"autoinstall_known_extensions": False})
    load_iceberg_extension(con)
    return con


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def register_table(
    con: duckdb.DuckDBPyConnection, table: Table, name: str, *, snapshot_id: int | None = None
) -> str:
    """Make ``table`` (at ``snapshot_id`` or its current snapshot) readable as view ``name``
    (``view`` or ``schema.view``). Returns the quoted name to use in SQL."""
    parts = name.split(".")
    quoted = ".".join(quote(p) for p in parts)
    if len(parts) > 1:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(parts[0])}")
    kind = "TEMP VIEW" if len(parts) == 1 else "VIEW"
    location = table.metadata_location
    if location.startswith("file://") or location.startswith("/"):
        if _try_iceberg_scan(con, kind, quoted, location, snapshot_id):
            return quoted
    arrow_name = "__arrow_" + "_".join(parts)
    con.register(arrow_name, table.scan(snapshot_id=snapshot_id).to_arrow())
    con.execute(f"CREATE OR REPLACE {kind} {quoted} AS SELECT * FROM {quote(arrow_name)}")
    return quoted


def _try_iceberg_scan(con, kind: str, quoted: str, location: str, snapshot_id: int | None) -> bool:
    if not load_iceberg_extension(con):
        return False
    options = f", snapshot_from_id => {int(snapshot_id)}" if snapshot_id is not None else ""
    try:
        con.execute(
            f"CREATE OR REPLACE {kind} {quoted} AS SELECT * FROM "
            f"iceberg_scan({sql_string(location)}{options})"
        )
    except duckdb.Error as exc:
        log.debug("iceberg_scan failed for %s, falling back to pyiceberg: %s", location, exc)
        return False
    return True


# --- Trino (production) ------------------------------------------------------------------------


def trino_connection(
    user: str | None = None, catalog: str | None = None, session_properties: dict[str, str] | None = None
):
    """A DB-API connection to the Trino of the settings (``MESH_TRINO_*``). A password, when
    Trino requires one, comes from ``MESH_TRINO_PASSWORD`` or ``MESH_TRINO_PASSWORD_FILE``."""

    import trino

    config = settings.trino_settings()
    password = settings.trino_password()
    auth = trino.auth.BasicAuthentication(user or config.user, password) if password else None
    return trino.dbapi.connect(
        host=config.host,
        port=config.port,
        user=user or config.user,
        catalog=catalog or config.catalog,
        http_scheme="https" if password else "http",
        auth=auth,
        session_properties=session_properties or {},
    )


def trino_table(identifier: str, catalog: str | None = None) -> str:
    """``domain.product`` as a quoted Trino table name in the Iceberg catalog."""

    schema, table = identifier.split(".", 1)
    return ".".join(quote(p) for p in (catalog or settings.trino_settings().catalog, schema, table))
