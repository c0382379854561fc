"""The embedded default and the production switches are configuration only."""

import os
import subprocess
import sys
import time
from urllib.parse import quote

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from sqlalchemy.engine import make_url

from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import CatalogError, open_catalog
from mesh_assets.settings import (
    DOMAINS_DIR,
    PAUSE_ENV,
    MissingSecretError,
    check_secrets,
    ensure_dagster_home,
    load_settings,
    pause_marker,
)


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


PASSWORD = "p@ss/w#rd:%?"  # every character that ends or splits a URI's userinfo


def test_a_catalog_password_with_uri_characters_is_escaped(mesh_home, monkeypatch):
    monkeypatch.setenv("MESH_CATALOG_URI", "postgresql+psycopg2://mesh:{password}@db.internal:5432/iceberg")
    monkeypatch.setenv("MESH_CATALOG_PASSWORD", PASSWORD)
    url = make_url(load_settings().catalog_properties()["uri"])
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "mesh",
        PASSWORD,
        "db.internal",
        5432,
        "iceberg",
    )


@pytest.mark.parametrize(
    "template",
    [
        # SQLAlchemy refuses credentials in a SQLite URL: a real SQLite catalog, refused
        "sqlite://mesh:{password}@/{home}/catalog.db",
        "nosuchdialect://mesh:{password}@db.internal/iceberg",
    ],
)
def test_a_catalog_that_cannot_open_never_shows_its_password(mesh_home, monkeypatch, template):
    uri = template.replace("{home}", str(mesh_home).lstrip("/"))
    monkeypatch.setenv("MESH_CATALOG_URI", uri)
    monkeypatch.setenv("MESH_CATALOG_PASSWORD", PASSWORD)
    with pytest.raises(CatalogError) as failed:
        open_catalog()
    message = str(failed.value)
    shown = uri.replace("{password}", "***")
    assert message.startswith(f"cannot open the Iceberg catalog mesh at {shown}: "), message
    assert message.endswith(
        "Check MESH_CATALOG_URI and the catalog password (MESH_CATALOG_PASSWORD or MESH_CATALOG_PASSWORD_FILE)."
    )
    for fragment in ("p@ss", "w#rd", "ss/w", "rd:%", quote(PASSWORD, safe="")[:6]):
        assert fragment not in message, fragment
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


def test_the_embedded_sqlite_catalog_still_opens(mesh_home, monkeypatch):
    monkeypatch.setenv("MESH_CATALOG_PASSWORD", PASSWORD)  # no {password} in the URI: unused
    catalog = open_catalog()
    catalog.create_namespace("plain")
    assert ("plain",) in catalog.list_namespaces() and (mesh_home / "catalog.db").exists()


def test_dagster_instances_limit_every_pool_to_one_step(mesh_home, monkeypatch):
    for storage in ("sqlite", "postgres"):
        monkeypatch.setenv("MESH_DAGSTER_STORAGE", storage)
        monkeypatch.setenv("DAGSTER_HOME", str(mesh_home / f"dagster-{storage}"))
        config = yaml.safe_load((ensure_dagster_home(load_settings()) / "dagster.yaml").read_text())
        assert config["concurrency"] == {"pools": {"default_limit": 1}}, storage
    older = mesh_home / "dagster-older"  # written by mesh before pools existed: completed once
    older.mkdir()
    (older / "dagster.yaml").write_text("# Dagster instance: SQLite storage in this folder (the default).\n")
    monkeypatch.setenv("MESH_DAGSTER_STORAGE", "sqlite")
    monkeypatch.setenv("DAGSTER_HOME", str(older))
    ensure_dagster_home(load_settings())
    ensure_dagster_home(load_settings())
    renewed = yaml.safe_load((older / "dagster.yaml").read_text())
    assert set(renewed) == {"run_monitoring", "run_retries", "concurrency"}
    assert renewed["concurrency"] == {"pools": {"default_limit": 1}}
    theirs = mesh_home / "dagster-theirs"
    theirs.mkdir()
    (theirs / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(theirs))
    ensure_dagster_home(load_settings())
    assert (theirs / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
    with dg.DagsterInstance.from_config(str(mesh_home / "dagster-sqlite")) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_a_missing_credential_stops_a_code_location_naming_its_secret(mesh_home, monkeypatch, tmp_path):
    check_secrets()  # the embedded default needs none
    monkeypatch.setenv("MESH_CATALOG_URI", "postgresql+psycopg2://mesh:{password}@db:5432/iceberg")
    with pytest.raises(MissingSecretError, match=r"set Helm value secrets\.catalog\.name"):
        check_secrets()
    present = tmp_path / "password"
    present.write_text("s3cr3t-value")
    monkeypatch.setenv("MESH_CATALOG_PASSWORD_FILE", str(present))
    monkeypatch.setenv("MESH_TRINO_PASSWORD_FILE", str(tmp_path / "trino-login" / "password"))
    with pytest.raises(MissingSecretError) as raised:
        check_secrets()
    message = str(raised.value)
    assert message == (
        f"missing credentials: MESH_TRINO_PASSWORD_FILE={tmp_path}/trino-login/password: no such file, or empty; "
        "mount the Secret of Helm value secrets.trino"
    )
    assert "s3cr3t" not in message
    with pytest.raises(MissingSecretError, match="secrets.trino"):  # as the code server loads
        build_domain(DOMAINS_DIR / "fleet")
    (tmp_path / "trino-login").mkdir()
    (tmp_path / "trino-login" / "password").write_text("")  # a Secret key mounted empty
    with pytest.raises(MissingSecretError, match="no such file, or empty"):
        check_secrets()
    monkeypatch.setenv("MESH_TRINO_PASSWORD", "given-directly")
    check_secrets()
