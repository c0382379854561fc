"""The embedded default and the production switches are configuration only."""

import os
import subprocess
import sys
import time

import dagster as dg
import yaml
from dagster._core.instance.config import dagster_instance_config

from mesh_assets.settings import PAUSE_ENV, ensure_dagster_home, load_settings, pause_marker


def test_embedded_default_lives_under_mesh_home(mesh_home):
    s = load_settings()
    assert s.home == mesh_home.resolve()
    assert s.catalog_uri == f"sqlite:///{mesh_home.resolve() / 'catalog.db'}"
    assert s.warehouse == (mesh_home.resolve() / "warehouse").as_uri()
    assert s.engine == "duckdb" and s.dbt_target == "local"


def test_production_settings_come_from_the_environment(mesh_home, monkeypatch, tmp_path):
    secret = tmp_path / "pg-password"
    secret.write_text("s3cr3t-value\n")
    monkeypatch.setenv("MESH_CATALOG_URI", "postgresql+psycopg2://mesh:{password}@db:5432/iceberg")
    monkeypatch.setenv("MESH_CATALOG_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("MESH_WAREHOUSE", "s3://warehouse/mesh")
    monkeypatch.setenv("MESH_S3_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("MESH_ENGINE", "trino")
    s = load_settings()
    props = s.catalog_properties()
    assert props["uri"] == "postgresql+psycopg2://mesh:s3cr3t-value@db:5432/iceberg"
    assert props["warehouse"] == "s3://warehouse/mesh"
    assert props["s3.endpoint"] == "http://127.0.0.1:9000" and props["s3.access-key-id"] == "key-id"
    assert s.dbt_target == "trino"
    assert "s3cr3t" not in repr(s.describe()) and "s3cr3t" not in repr(s)


def test_postgres_dagster_storage_references_env_vars_only(mesh_home, monkeypatch):
    monkeypatch.setenv("MESH_DAGSTER_STORAGE", "postgres")
    monkeypatch.setenv("DAGSTER_HOME", str(mesh_home / "dagster-pg"))
    home = ensure_dagster_home(load_settings())
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert all(isinstance(v, dict) and set(v) == {"env"} for k, v in db.items() if k != "scheme")


def test_dagster_instance_monitors_runs_and_retries_them_in_both_storages(mesh_home, monkeypatch):
    home = ensure_dagster_home(load_settings())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert instance.run_monitoring_enabled and instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_runtime_seconds == 0
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    monkeypatch.setenv("MESH_DAGSTER_STORAGE", "postgres")
    monkeypatch.setenv("DAGSTER_HOME", str(mesh_home / "dagster-pg"))
    pg_home = ensure_dagster_home(load_settings())
    config, _ = dagster_instance_config(str(pg_home))  # validated by Dagster, no connection made
    assert config["run_monitoring"]["enabled"] and config["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
    }
    assert "postgres" in config["storage"]


def test_dagster_yaml_mesh_wrote_is_renewed_and_a_hand_written_one_kept(mesh_home):
    config = mesh_home / "dagster" / "dagster.yaml"
    config.write_text("# Dagster instance: SQLite storage in this folder (the default).\n")  # before runs
    ensure_dagster_home(load_settings())
    assert "run_retries:" in config.read_text()
    config.write_text("telemetry:\n  enabled: false\n")
    ensure_dagster_home(load_settings())
    assert config.read_text() == "telemetry:\n  enabled: false\n"


PAUSE = """
import sys
from mesh_assets.settings import pause_at
pause_at("before_publish", "reference.airports")
print("went on", flush=True)
"""


def test_pause_at_stops_the_first_process_only_and_only_when_asked(mesh_home):
    def run(value: str | None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != PAUSE_ENV}
        return subprocess.Popen(
            [sys.executable, "-c", PAUSE],
            env=env | ({PAUSE_ENV: value} if value else {}),
            stdout=subprocess.PIPE,
            text=True,
        )

    for value in (None, "before_publish:reference.airlines", "after_publish"):  # not this checkpoint
        assert run(value).communicate(timeout=60)[0] == "went on\n"
    assert not pause_marker("before_publish").exists()
    first = run("before_publish:reference.airports")
    deadline = time.monotonic() + 60
    while not (pause_marker("before_publish").exists() and pause_marker("before_publish").read_text()):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    assert pause_marker("before_publish").read_text() == str(first.pid)
    assert run("before_publish").communicate(timeout=60)[0] == "went on\n"  # the marker is there
    assert first.poll() is None  # still stopped
    first.kill()
    first.wait()
