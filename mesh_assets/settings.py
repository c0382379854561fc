"""Where the platform keeps its state and which services it talks to.

All environment logic lives here. The embedded default needs no services: a SQLite Iceberg
catalog, a local file warehouse and DuckDB, all under ``$MESH_HOME`` (default ``.mesh/`` at the
project root). Production is reached by environment variables only:

============================  ===========================================  =========================
variable                      meaning                                      embedded default
============================  ===========================================  =========================
``MESH_HOME``                 all local state                              ``<project>/.mesh``
``MESH_CATALOG_URI``          SQLAlchemy URI of the Iceberg SQL catalog    SQLite in ``$MESH_HOME``
``MESH_CATALOG_NAME``         catalog name (= Trino jdbc catalog-name)     ``mesh``
``MESH_WAREHOUSE``            warehouse root (``file://`` or ``s3://``)    ``$MESH_HOME/warehouse``
``MESH_S3_ENDPOINT``          S3-compatible endpoint URL                   (unset)
``MESH_ENGINE``               ``duckdb`` or ``trino`` (= dbt target)       ``duckdb``
``MESH_LANDING``              landing zone: a folder or ``s3://b/prefix``   ``$MESH_HOME/landing``
``MESH_DAGSTER_STORAGE``      ``sqlite`` or ``postgres`` (Dagster instance)  ``sqlite``
============================  ===========================================  =========================

Credentials are never settings: the catalog URI may reference ``MESH_CATALOG_PASSWORD`` (read
from the environment or from the file named by ``MESH_CATALOG_PASSWORD_FILE``); S3 keys come
from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``. None of them is ever logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(os.environ.get("MESH_PROJECT_DIR", Path(__file__).resolve().parent.parent))
DOMAINS_DIR = PROJECT_DIR / "domains"
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"

# Set by a dbt asset for its dbt process (read by mesh_assets.dbt.plugin):
RUN_ID_ENV = "MESH_DAGSTER_RUN_ID"  # the Dagster run, recorded in each Iceberg snapshot
# JSON file {model table: [tables it reads]}, so each snapshot records exactly its own inputs
PARENTS_FILE_ENV = "MESH_DBT_PARENTS_FILE"
# a partitioned model's output replaces only the rows of this window
PARTITION_START_ENV = "MESH_PARTITION_START"
PARTITION_END_ENV = "MESH_PARTITION_END"


def _secret(name: str) -> str | None:
    """A credential from ``NAME`` or from the file named by ``NAME_FILE`` (Kubernetes Secrets)."""
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


@dataclass(frozen=True)
class MeshSettings:
    home: Path
    catalog_name: str
    catalog_uri: str
    warehouse: str
    landing_uri: str  # a folder, or s3://bucket/prefix (see mesh_assets.ingest.landing)
    engine: str
    s3_endpoint: str | None

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME", self.home / "dagster"))

    @property
    def landing(self) -> Path:
        """The local landing folder (the download cache when the landing zone is on S3)."""
        if self.landing_uri.startswith("s3://"):
            return self.home / "landing-cache"
        return Path(self.landing_uri)

    @property
    def dbt_target(self) -> str:
        return "local" if self.engine == "duckdb" else "trino"

    @property
    def duckdb_dir(self) -> Path:
        return self.home / "duckdb"

    @property
    def dbt_dir(self) -> Path:
        return self.home / "dbt"

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg SqlCatalog properties, credentials included (never log the result)."""
        uri = self.catalog_uri
        password = _secret("MESH_CATALOG_PASSWORD")
        if password and "{password}" in uri:
            uri = uri.replace("{password}", password)
        props = {"uri": uri, "warehouse": self.warehouse}
        if self.s3_endpoint:
            props["s3.endpoint"] = self.s3_endpoint
            props["s3.path-style-access"] = "true"
            # without a region pyiceberg asks AWS itself where the bucket lives (no network here)
            props["s3.region"] = "us-east-1"
        for key, env in (("s3.access-key-id", "AWS_ACCESS_KEY_ID"),
                         ("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
                         ("s3.region", "AWS_REGION")):
            value = _secret(env)
            if value:
                props[key] = value
        return props

    def describe(self) -> dict[str, str]:
        """What is safe to show a person: no credentials."""
        return {
            "MESH_HOME": str(self.home),
            "catalog": f"{self.catalog_name} ({self.catalog_uri.split(':', 1)[0]})",
            "warehouse": self.warehouse,
            "engine": self.engine,
        }


def load_settings() -> MeshSettings:
    home = Path(os.environ.get("MESH_HOME", PROJECT_DIR / ".mesh")).resolve()
    engine = os.environ.get("MESH_ENGINE", "duckdb")
    if engine not in ("duckdb", "trino"):
        raise ValueError(f"MESH_ENGINE={engine!r}: expected 'duckdb' (embedded) or 'trino'")
    return MeshSettings(
        home=home,
        catalog_name=os.environ.get("MESH_CATALOG_NAME", "mesh"),
        catalog_uri=os.environ.get("MESH_CATALOG_URI", f"sqlite:///{home / 'catalog.db'}"),
        warehouse=os.environ.get("MESH_WAREHOUSE", (home / "warehouse").as_uri()),
        landing_uri=os.environ.get("MESH_LANDING", str(home / "landing")),
        engine=engine,
        s3_endpoint=os.environ.get("MESH_S3_ENDPOINT"),
    )


def ensure_local_dirs(settings: MeshSettings) -> None:
    """Create the folders the embedded default writes to (no-op for remote stores)."""
    for path in (settings.home, settings.landing, settings.duckdb_dir, settings.dbt_dir / "external",
                 settings.dagster_home):
        path.mkdir(parents=True, exist_ok=True)
    if settings.warehouse.startswith("file://"):
        Path(settings.warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


# Dagster instance storage in PostgreSQL (dagster-postgres). The file names environment
# variables only, so it holds no credential; Dagster resolves them when the instance starts.
DAGSTER_POSTGRES_YAML = """\
# Written by mesh (MESH_DAGSTER_STORAGE=postgres). Values come from the environment.
storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      db_name: {env: DAGSTER_PG_DB}
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, whose server-side parameters break
      # dagster-postgres' `NOTIFY run_events, %s` (every event write fails): use psycopg2
      scheme: postgresql+psycopg2
"""


def ensure_dagster_home(settings: MeshSettings) -> Path:
    """Create DAGSTER_HOME; with ``MESH_DAGSTER_STORAGE=postgres`` give it a dagster.yaml that
    keeps runs, events and schedules in PostgreSQL. An existing dagster.yaml is left alone."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    storage = os.environ.get("MESH_DAGSTER_STORAGE", "sqlite")
    if storage not in ("sqlite", "postgres"):
        raise ValueError(f"MESH_DAGSTER_STORAGE={storage!r}: expected 'sqlite' or 'postgres'")
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_POSTGRES_YAML if storage == "postgres" else
                          "# Dagster instance: SQLite storage in this folder (the default).\n")
    return home
