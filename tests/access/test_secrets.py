"""No credential is ever written where people or other systems read: logs, Dagster's event log
and run records, materialization metadata, Iceberg metadata, exported payloads, error messages.

A real run with sentinel credentials: every credential variable the platform reads is set (from
the environment and from mounted secret files) to a unique sentinel in a temporary embedded
MESH_HOME, where they are harmless (a SQLite catalog and a file warehouse ignore them). The
run lands and materializes a domain (ingestion, dbt, checks), queries as a user through the
access policy, runs the OpenMetadata export as a dry run (and for real, against a host that
refuses), and fails to reach a catalog whose URI takes the password. Then every output line, every file under MESH_HOME, every Dagster
event-log entry and run record, and the exporter's payload are scanned: zero hits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from mesh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.e2e
MESH = str(Path(sys.executable).parent / "mesh")


def _sentinel(name: str) -> str:
    return f"SENTINEL{uuid.uuid4().hex[:12].upper()}{name.replace('_', '')[:12]}"


ENV_SECRETS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MESH_CATALOG_PASSWORD",
    "MESH_TRINO_PASSWORD",
    "DAGSTER_PG_PASSWORD",
)
FILE_SECRETS = ("OPENMETADATA_JWT_TOKEN",)  # mounted like a Kubernetes Secret (NAME_FILE)


def find(sentinels: dict[str, str], data: bytes | str, where: str) -> list[str]:
    if isinstance(data, str):
        data = data.encode(errors="replace")
    return [f"{name} in {where}" for name, value in sentinels.items() if value.encode() in data]


def scan_tree(sentinels: dict[str, str], root: Path, newer_than: float = 0.0) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_mtime >= newer_than:
            hits += find(sentinels, path.read_bytes(), str(path))
    return hits


def test_the_scanner_finds_a_sentinel_in_a_sqlite_database(tmp_path):
    """Positive control: a sentinel stored in SQLite (how Dagster keeps its event log) is found."""
    import sqlite3

    sentinels = {"X": _sentinel("X")}
    con = sqlite3.connect(tmp_path / "db.sqlite")
    con.execute("create table t (body text)")
    con.execute("insert into t values (?)", (f'{{"metadata": "{sentinels["X"]}"}}',))
    con.commit()
    con.close()
    assert scan_tree(sentinels, tmp_path) == [f"X in {tmp_path / 'db.sqlite'}"]


def test_no_credential_reaches_logs_events_metadata_or_payloads(mesh_home, tmp_path):
    started = time.time()
    sentinels = {name: _sentinel(name) for name in ENV_SECRETS + FILE_SECRETS}
    secret_files = tmp_path / "secrets"  # outside MESH_HOME: the mount, not the output
    secret_files.mkdir()
    env = {
        **os.environ,
        "MESH_HOME": str(mesh_home),
        "DAGSTER_HOME": str(mesh_home / "dagster"),
        "MESH_OPA_URL": "eval",
        "OPENMETADATA_HOST": "http://127.0.0.1:9",
    }
    for name in (
        "MESH_CATALOG_URI",
        "MESH_WAREHOUSE",
        "MESH_LANDING",
        "MESH_ENGINE",
        "MESH_S3_ENDPOINT",
        "MESH_DAGSTER_STORAGE",
        "MESH_OPA_DECISION_LOG",
    ):
        env.pop(name, None)
    for name in ENV_SECRETS:
        env[name] = sentinels[name]
    for name in FILE_SECRETS:
        (secret_files / name).write_text(sentinels[name] + "\n")
        env[f"{name}_FILE"] = str(secret_files / name)

    outputs: dict[str, str] = {}

    def mesh(*args: str, ok: bool = True, extra: dict | None = None) -> None:
        result = subprocess.run(
            [MESH, *args], env={**env, **(extra or {})}, capture_output=True, text=True, timeout=900
        )
        outputs[" ".join(args)] = result.stdout + result.stderr
        if ok:
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    mesh("info")
    mesh("land", "reference")
    mesh("materialize", "reference")  # ingestion, dbt (timezones), every check
    mesh("products")
    mesh(
        "query",
        "--engine",
        "duckdb",
        "--as-user",
        "alice",
        "select count(*) from reference.airports",
        extra={"MESH_OPERATOR": "1"},
    )
    mesh("openmetadata", "export", "--dry-run", "reference")  # the payload, with a token set
    # the real export, to a host that refuses: retries and the final error, token in hand
    mesh("openmetadata", "export", "reference", ok=False)
    # a catalog whose URI takes the password, unreachable: the error must not show it
    mesh(
        "query",
        "--engine",
        "duckdb",
        "select 1 from reference.airlines",
        ok=False,
        extra={"MESH_CATALOG_URI": "postgresql+psycopg2://mesh:{password}@127.0.0.1:9/mesh"},
    )
    assert "openmetadata export --dry-run reference" in outputs
    assert '"method": "PUT"' in outputs["openmetadata export --dry-run reference"]
    assert "Connection refused" in outputs["openmetadata export reference"]
    assert "OperationalError" in outputs["query --engine duckdb select 1 from reference.airlines"]

    hits: list[str] = []
    for command, text in outputs.items():
        hits += find(sentinels, text, f"output of `mesh {command}`")
    hits += scan_tree(sentinels, mesh_home)  # Dagster storage, logs, dbt, catalog, audit log
    for folder in ("target", "logs"):  # dbt's own files in the project, if it wrote any
        if (PROJECT_DIR / "dbt_project" / folder).exists():
            hits += scan_tree(sentinels, PROJECT_DIR / "dbt_project" / folder, newer_than=started)

    # the Dagster instance through its API: every event of every run (materialization and
    # check metadata included), run configs and tags
    import dagster as dg
    from dagster._serdes import serialize_value

    with dg.DagsterInstance.from_config(str(mesh_home / "dagster")) as instance:
        runs = instance.get_runs()
        assert runs, "the run left no record"
        events = 0
        for run in runs:
            hits += find(sentinels, serialize_value(run), f"run {run.run_id}")
            for entry in instance.all_logs(run.run_id):
                events += 1
                hits += find(sentinels, serialize_value(entry), f"event of run {run.run_id}")
        materializations = instance.fetch_materializations(
            dg.AssetKey(["reference", "airports"]), limit=10
        ).records
        assert materializations and materializations[0].asset_materialization.metadata
        for record in materializations:
            hits += find(
                sentinels, serialize_value(record.asset_materialization.metadata), "materialization metadata"
            )
    assert events > 50
    assert hits == []
