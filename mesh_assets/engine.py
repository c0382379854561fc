"""The embedded SQL engine: DuckDB reading Iceberg tables.

DuckDB reads a pyiceberg table directly from its metadata file with ``iceberg_scan`` (the
offline ``duckdb-extension-iceberg`` package, about 7x faster than a pyiceberg scan). Where the
extension cannot load, or the warehouse is not a local file system, the table is scanned with
pyiceberg into Arrow and registered instead: same results, first-party path.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import duckdb_extension_avro
import duckdb_extension_iceberg

from mesh_assets import settings

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)


@functools.cache
def _extension_files() -> tuple[str, ...] | None:
    """Paths of the avro and iceberg extensions shipped as Python packages, avro first (None
    when a package holds none for this DuckDB version)."""
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


_PROCESS_DATABASE: list[duckdb.DuckDBPyConnection] = []
_PROCESS_DATABASE_LOCK = threading.Lock()


def cursor() -> duckdb.DuckDBPyConnection:
    """A connection to this process's in-memory DuckDB database, opened (and its extensions
    loaded) once: DuckDB checks an extension's signature at every ``LOAD`` into a new database,
    about 0.2 s for the iceberg extension's 48 MiB, once per check step otherwise. Each cursor
    has its own temporary views, so this serves code that registers tables under one-part
    (temporary) names only; a ``schema.view`` would be seen by every cursor: use
    :func:`connect`."""
    with _PROCESS_DATABASE_LOCK:
        if not _PROCESS_DATABASE:
            _PROCESS_DATABASE.append(connect())
        return _PROCESS_DATABASE[0].cursor()


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

# Iceberg's JDBC catalog (inside Trino) says this when the PostgreSQL connection it kept died:
# the first catalog query after PostgreSQL restarted fails with it, before anything ran, and
# the next one reconnects. Nothing else is retried.
TRANSIENT_CATALOG_ERROR = "Cannot check and eventually update SQL schema"
# Trino's OPA access control says this for every query while it cannot reach OPA.
OPA_UNREACHABLE_ERROR = "Failed to query OPA backend"


class PolicyServiceUnreachable(ConnectionError):
    """Trino refused a query because it could not ask the policy service (OPA)."""


def is_transient_catalog_error(message: str) -> bool:
    """Trino's catalog lost its PostgreSQL connection (a restart): running again succeeds."""
    return TRANSIENT_CATALOG_ERROR in message


def policy_service_unreachable(message: str, url: str | None = None) -> PolicyServiceUnreachable | None:
    """The error that names the unreachable policy service (``url``, else ``MESH_OPA_URL``) and
    what to do, when ``message`` (a Trino error's) says that Trino could not ask OPA; None
    otherwise."""
    if OPA_UNREACHABLE_ERROR not in message:
        return None
    where = url or settings.opa_url() or "the OPA that Trino's access-control.properties names"
    return PolicyServiceUnreachable(
        f"the policy service (OPA, {where}) is unreachable, and Trino refuses every query "
        f"without it (Trino: {OPA_UNREACHABLE_ERROR}). `mesh stack status` shows why; "
        "`mesh stack up` starts it again"
    )


class TrinoCursor:
    """A Trino DB-API cursor whose ``execute`` runs a statement once more after a
    :data:`TRANSIENT_CATALOG_ERROR` and raises :class:`PolicyServiceUnreachable` when Trino
    could not ask OPA. Everything else is the driver's cursor."""

    def __init__(self, cursor, *, opa_url: str | None = None):
        self._cursor = cursor
        self._opa_url = opa_url  # named in the error (default: MESH_OPA_URL)

    def execute(self, operation, params=None):
        from trino.exceptions import TrinoQueryError  # noqa: PLC0415  the Trino client: production mode only

        for attempt in (1, 2):
            try:
                self._cursor.execute(operation, params)
                return self
            except TrinoQueryError as exc:
                if attempt == 1 and is_transient_catalog_error(exc.message):
                    log.warning(
                        "Trino: %s (its catalog reconnects); running the statement again", exc.message
                    )
                    continue
                unreachable = policy_service_unreachable(exc.message, self._opa_url)
                if unreachable is None:
                    raise
                raise unreachable from exc

    def __iter__(self):
        return iter(self._cursor)

    def __getattr__(self, name: str):
        return getattr(self._cursor, name)


@functools.cache
def _connection_class():
    import trino  # noqa: PLC0415  the Trino client: production mode only

    class TrinoConnection(trino.dbapi.Connection):
        def cursor(self, *args, **kwargs) -> TrinoCursor:
            return TrinoCursor(super().cursor(*args, **kwargs))

    return TrinoConnection


def trino_http_session(ca_file: str | None):
    """The HTTP session of a Trino connection that verifies the server with ``ca_file`` (None:
    the system's CAs). requests lets ``REQUESTS_CA_BUNDLE`` override a session's own ``verify``
    (psf/requests#3829), so a session with a CA file of its own ignores the environment."""
    import requests  # noqa: PLC0415  the Trino client's HTTP layer (0.1-0.2 s), loaded with it

    session = requests.Session()
    if ca_file:
        session.verify = ca_file
        session.trust_env = False
    return session


def trino_connection(
    user: str | None = None,
    catalog: str | None = None,
    session_properties: dict[str, str] | None = None,
    *,
    domain: str | None = None,
):
    """A DB-API connection to the Trino of the settings (``MESH_TRINO_*``) whose cursors are
    :class:`TrinoCursor`.

    It logs in with :func:`~mesh_assets.settings.trino_credentials` (``domain``: that domain's
    service account), over HTTPS verified with ``MESH_TRINO_CA_FILE`` when there is a password.
    ``user`` other than the login is an impersonation: Trino runs the queries as ``user`` only
    if the policy lets the logged-in account impersonate (the platform's operator account)."""

    import trino  # noqa: PLC0415  the Trino client: production mode only

    config = settings.trino_settings()
    login, password = settings.trino_credentials(domain)
    secure = password is not None
    return _connection_class()(
        host=config.host,
        port=config.port,
        user=user or login,
        catalog=catalog or config.catalog,
        http_scheme="https" if secure else "http",
        auth=trino.auth.BasicAuthentication(login, password) if secure else None,
        http_session=trino_http_session(config.ca_file if secure else None),
        session_properties=session_properties or {},
    )


def trino_table(identifier: str, catalog: str | None = None) -> str:
    """``domain.product`` as a quoted Trino table name in the Iceberg catalog."""

    schema, table = identifier.split(".", 1)
    return ".".join(quote(p) for p in (catalog or settings.trino_settings().catalog, schema, table))
