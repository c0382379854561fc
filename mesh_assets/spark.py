"""Apache Spark as a second engine over the mesh's Iceberg catalog.

:func:`write_defaults` writes a ``spark-defaults.conf`` for the current mode: the Iceberg catalog
under the platform's catalog name (Iceberg's JDBC catalog on the same SQLite file or PostgreSQL
database as pyiceberg's SqlCatalog, so both see the same tables), the warehouse, and
``spark.jars`` naming the Iceberg Spark runtime and the JDBC driver (plus Iceberg's AWS bundle for
S3) downloaded once from Maven Central into ``$MESH_TOOLS_CACHE`` (default ``~/.cache/datamesh``):
a Spark session started with ``SPARK_CONF_DIR`` at that folder resolves nothing.

No credential is written into the file. In production mode the catalog's password and the S3
keys are read from the ``*_FILE`` secrets of the settings and written, in the formats the JVM
reads (a PostgreSQL ``pgpass`` file and an AWS credentials file), to ``credentials/`` beside the
configuration with mode 0600; the configuration only names those files (``-Dorg.postgresql.
pgpassfile``, ``-Daws.sharedCredentialsFile`` in ``spark.driver.defaultJavaOptions``). Spark reads the tables directly: Trino's access
policy (OPA) does not apply to it, the storage credential it is given is the boundary
(docs/connect.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from mesh_assets.settings import MeshSettings, aws_region, load_settings, secret
from mesh_assets.tools import maven_artifact

# pyspark 4.1 is the newest Spark line Iceberg publishes a runtime for on Maven Central
# (iceberg-spark-runtime-4.1_2.13; pyspark 4.2 and 4.3 have none yet).
PYSPARK_VERSION = "4.1.4"
ICEBERG_VERSION = "1.12.0"
SPARK_RUNTIME = ("org.apache.iceberg", "iceberg-spark-runtime-4.1_2.13", ICEBERG_VERSION)
SQLITE_JDBC = ("org.xerial", "sqlite-jdbc", "3.54.1.0")
POSTGRES_JDBC = ("org.postgresql", "postgresql", "42.7.14")
# S3FileIO and the AWS SDK v2 it needs
AWS_BUNDLE = ("org.apache.iceberg", "iceberg-aws-bundle", ICEBERG_VERSION)


class SparkConfigError(RuntimeError):
    """The settings cannot be expressed as a Spark configuration; the message says what to set."""


@dataclass(frozen=True)
class SparkDefaults:
    """What :func:`write_defaults` wrote."""

    path: Path  # spark-defaults.conf
    jars: tuple[Path, ...]
    credentials: tuple[Path, ...]  # production mode: pgpass and AWS credentials files (0600)


def production(settings: MeshSettings) -> bool:
    return not settings.catalog_uri.startswith("sqlite")


def jar_coordinates(settings: MeshSettings) -> list[tuple[str, str, str]]:
    """The Maven artifacts a Spark session needs for this mode."""
    if production(settings):
        return [SPARK_RUNTIME, POSTGRES_JDBC, AWS_BUNDLE]
    return [SPARK_RUNTIME, SQLITE_JDBC]


def jdbc_uri(settings: MeshSettings) -> tuple[str, str | None]:
    """The JDBC URL and user of the catalog database named by ``MESH_CATALOG_URI`` (SQLAlchemy)."""
    url = make_url(settings.catalog_uri)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise SparkConfigError(
                f"MESH_CATALOG_URI={settings.catalog_uri}: Spark needs a SQLite catalog file, not memory"
            )
        return f"jdbc:sqlite:{Path(url.database).resolve()}", None
    if url.get_backend_name() == "postgresql":
        port = f":{url.port}" if url.port else ""
        return f"jdbc:postgresql://{url.host}{port}/{url.database}", url.username
    raise SparkConfigError(
        f"MESH_CATALOG_URI uses {url.get_backend_name()}: Spark's JDBC catalog is configured here "
        "for sqlite and postgresql only"
    )


def catalog_properties(settings: MeshSettings) -> dict[str, str]:
    """``spark.sql.catalog.<name>.*`` settings: Iceberg's JDBC catalog over the platform's
    catalog database, named as the platform's catalog (no credential)."""
    uri, user = jdbc_uri(settings)
    prefix = f"spark.sql.catalog.{settings.catalog_name}"
    props = {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": uri,
        f"{prefix}.warehouse": settings.warehouse,
        # the layout pyiceberg's SqlCatalog writes (iceberg_type column): tables and views apart
        f"{prefix}.jdbc.schema-version": "V1",
    }
    if user:
        props[f"{prefix}.jdbc.user"] = user
    if settings.s3_endpoint:
        props |= {
            f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            f"{prefix}.s3.endpoint": settings.s3_endpoint,
            f"{prefix}.s3.path-style-access": "true",
            f"{prefix}.client.region": aws_region(),
        }
    return props


def _write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)
    return path


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def credential_files(settings: MeshSettings, folder: Path) -> dict[str, Path]:
    """Production mode: the catalog password as a ``pgpass`` file and the S3 keys as an AWS
    credentials file under ``folder`` (mode 0600), from ``MESH_CATALOG_PASSWORD(_FILE)`` and
    ``AWS_ACCESS_KEY_ID(_FILE)`` / ``AWS_SECRET_ACCESS_KEY(_FILE)``. Returns the Java system
    property naming each file."""
    files: dict[str, Path] = {}
    url = make_url(settings.catalog_uri)
    password = secret("MESH_CATALOG_PASSWORD")
    if url.get_backend_name() == "postgresql":
        if not password:
            raise SparkConfigError(
                "the catalog needs a password: set MESH_CATALOG_PASSWORD_FILE "
                '(eval "$(mesh stack env)" on the local stack)'
            )
        fields = [url.host or "*", str(url.port or "*"), url.database or "*", url.username or "*"]
        line = ":".join(_pgpass_field(f) for f in [*fields, password])
        files["org.postgresql.pgpassfile"] = _write_private(folder / "pgpass", line + "\n")
    if settings.warehouse.startswith("s3://"):
        key, secret_key = secret("AWS_ACCESS_KEY_ID"), secret("AWS_SECRET_ACCESS_KEY")
        if not (key and secret_key):
            raise SparkConfigError(
                "the S3 warehouse needs keys: set AWS_ACCESS_KEY_ID_FILE and AWS_SECRET_ACCESS_KEY_FILE"
            )
        text = f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret_key}\n"
        files["aws.sharedCredentialsFile"] = _write_private(folder / "aws-credentials", text)
    return files


def render(settings: MeshSettings, jars: list[Path], java_properties: dict[str, Path]) -> str:
    """The text of ``spark-defaults.conf``."""
    lines = [
        f"# Written by `mesh spark defaults` for catalog {settings.catalog_name} "
        f"({'production' if production(settings) else 'embedded'} mode). No credential is in this file.",
        "spark.sql.extensions org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        f"spark.sql.defaultCatalog {settings.catalog_name}",
        f"spark.jars {','.join(str(j) for j in jars)}",
        # the mesh's timestamps are UTC (timestamptz); show them so
        "spark.sql.session.timeZone UTC",
    ]
    lines += [f"{k} {v}" for k, v in catalog_properties(settings).items()]
    if java_properties:
        options = " ".join(f"-D{k}={v}" for k, v in java_properties.items())
        if settings.s3_endpoint:  # an S3-compatible server: never ask a cloud's instance metadata
            options += " -Daws.disableEc2Metadata=true"
        # defaultJavaOptions: a user's own --driver-java-options (extraJavaOptions) add to them
        lines += [
            f"spark.driver.defaultJavaOptions {options}",
            f"spark.executor.defaultJavaOptions {options}",
        ]
    return "\n".join(lines) + "\n"


def default_conf_dir(settings: MeshSettings) -> Path:
    return settings.home / "spark"


def write_defaults(conf_dir: Path | None = None, settings: MeshSettings | None = None) -> SparkDefaults:
    """Write ``<conf_dir>/spark-defaults.conf`` (default ``$MESH_HOME/spark``) for the current
    mode, downloading the jars it names once into the tools cache."""
    settings = settings or load_settings()
    conf_dir = conf_dir or default_conf_dir(settings)
    jars = [maven_artifact(*coordinates) for coordinates in jar_coordinates(settings)]
    java_properties = credential_files(settings, conf_dir / "credentials")
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "spark-defaults.conf"
    path.write_text(render(settings, jars, java_properties))
    return SparkDefaults(path, tuple(jars), tuple(java_properties.values()))
