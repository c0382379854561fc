"""The embedded default and the production switches are configuration only."""

import yaml

from mesh_assets.settings import ensure_dagster_home, load_settings


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
