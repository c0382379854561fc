"""`mesh spark defaults` without Spark: what the configuration says for each mode, and that no
credential is ever in it (the production credentials go to 0600 files it names)."""

from __future__ import annotations

import stat

import pytest

from mesh_assets.settings import load_settings
from mesh_assets.spark import SparkConfigError, catalog_properties, credential_files, jdbc_uri, render

CATALOG_PASSWORD = "p@ss:w/rd\\#1"  # every character pgpass or a URI would mangle
S3_SECRET = "s3-secret-value"


@pytest.fixture
def production(mesh_home, tmp_path, monkeypatch):
    (tmp_path / "catalog").write_text(CATALOG_PASSWORD + "\n")
    (tmp_path / "s3-key").write_text("AKIAEXAMPLE\n")
    (tmp_path / "s3-secret").write_text(S3_SECRET + "\n")
    monkeypatch.setenv("MESH_CATALOG_URI", "postgresql+psycopg2://iceberg:{password}@127.0.0.1:5433/mesh")
    monkeypatch.setenv("MESH_CATALOG_PASSWORD_FILE", str(tmp_path / "catalog"))
    monkeypatch.setenv("MESH_WAREHOUSE", "s3://warehouse/mesh")
    monkeypatch.setenv("MESH_S3_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID_FILE", str(tmp_path / "s3-key"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_FILE", str(tmp_path / "s3-secret"))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return load_settings()


def test_embedded_mode_is_a_jdbc_catalog_on_the_sqlite_file(mesh_home):
    settings = load_settings()
    assert catalog_properties(settings) == {
        "spark.sql.catalog.mesh": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.catalog.mesh.type": "jdbc",
        "spark.sql.catalog.mesh.uri": f"jdbc:sqlite:{mesh_home / 'catalog.db'}",
        "spark.sql.catalog.mesh.warehouse": (mesh_home / "warehouse").as_uri(),
        "spark.sql.catalog.mesh.jdbc.schema-version": "V1",
    }
    assert credential_files(settings, mesh_home / "credentials") == {}


def test_production_names_credential_files_and_holds_no_credential(production, tmp_path):
    files = credential_files(production, tmp_path / "conf" / "credentials")
    text = render(production, [tmp_path / "a.jar"], files)
    assert CATALOG_PASSWORD not in text and S3_SECRET not in text and "AKIAEXAMPLE" not in text
    assert "spark.sql.catalog.mesh.uri jdbc:postgresql://127.0.0.1:5433/mesh\n" in text
    assert "spark.sql.catalog.mesh.jdbc.user iceberg\n" in text
    assert "spark.sql.catalog.mesh.io-impl org.apache.iceberg.aws.s3.S3FileIO\n" in text
    assert "spark.sql.catalog.mesh.s3.endpoint http://127.0.0.1:9000\n" in text
    options = f"-Dorg.postgresql.pgpassfile={files['org.postgresql.pgpassfile']} " + (
        f"-Daws.sharedCredentialsFile={files['aws.sharedCredentialsFile']} -Daws.disableEc2Metadata=true"
    )
    assert f"spark.driver.defaultJavaOptions {options}\n" in text
    # pgpass escapes ':' and '\\' in a field
    assert files["org.postgresql.pgpassfile"].read_text() == "127.0.0.1:5433:mesh:iceberg:p@ss\\:w/rd\\\\#1\n"
    assert files["aws.sharedCredentialsFile"].read_text() == (
        f"[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {S3_SECRET}\n"
    )
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_missing_catalog_password_is_named(production, monkeypatch, tmp_path):
    monkeypatch.delenv("MESH_CATALOG_PASSWORD_FILE")
    with pytest.raises(
        SparkConfigError, match="the catalog needs a password: set MESH_CATALOG_PASSWORD_FILE"
    ):
        credential_files(load_settings(), tmp_path)


def test_other_catalog_databases_are_refused(mesh_home, monkeypatch):
    monkeypatch.setenv("MESH_CATALOG_URI", "mysql://u@h/db")
    with pytest.raises(SparkConfigError, match="MESH_CATALOG_URI uses mysql"):
        jdbc_uri(load_settings())
