"""Fixtures of the OpenMetadata exporter tests: one materialized mesh for the session (real
contracts, real dbt artifacts, a real Dagster instance with runs and check evaluations), the
Dagster definitions of each domain, and a fake OpenMetadata server per test.

Not a conftest.py on purpose: conftest modules outside packages all share the module name
``conftest``, and loading a second one would shadow ``tests/conftest.py`` for the modules that
``from meshtest import land``. Test modules import these fixtures by name; the session-wide
ones are cached here so that importing them into several modules materializes only once."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest
from om_fake_server import FakeOpenMetadata

from mesh_assets import cli

SENTINEL_JWT = "sentinel-openmetadata-bot-token-c0ffee"  # a placeholder, not a real JWT
MESH_ENV = ("MESH_CATALOG_URI", "MESH_WAREHOUSE", "MESH_LANDING", "MESH_ENGINE", "OPENMETADATA_HOST",
            "OPENMETADATA_JWT_TOKEN", "OPENMETADATA_JWT_TOKEN_FILE", "OPENMETADATA_DAGSTER_URL",
            "OPENMETADATA_DATABASE_SERVICE", "OPENMETADATA_PIPELINE_SERVICE", "MESH_TRINO_CATALOG")


def point_at(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("MESH_HOME", str(home))
    mp.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in MESH_ENV:
        mp.delenv(var, raising=False)


_CACHE: dict[str, object] = {}


@pytest.fixture(scope="session")
def materialized(tmp_path_factory) -> Path:
    """A MESH_HOME where every domain was landed and materialized (assets and checks), so
    ``$MESH_HOME/dbt/artifacts/<domain>/`` and the Dagster instance are real."""
    if "home" in _CACHE:
        return _CACHE["home"]
    home = tmp_path_factory.mktemp("om") / "mesh"
    with pytest.MonkeyPatch.context() as mp:
        point_at(mp, home)
        (home / "dagster").mkdir(parents=True)
        assert cli.main(["land"]) == 0
        reports = cli.materialize(cli.dependency_order(cli.workspace_domains()))
        assert all(r["success"] for r in reports), [r for r in reports if not r["success"]]
    _CACHE["home"] = home
    return home


@pytest.fixture(scope="session")
def domain_defs(materialized) -> dict:
    """``build_domain`` of every domain, built once (the slow part of collecting the mesh)."""
    from mesh_assets.domain import build_domain
    from mesh_assets.settings import DOMAINS_DIR

    if "defs" not in _CACHE:
        with pytest.MonkeyPatch.context() as mp:
            point_at(mp, materialized)
            _CACHE["defs"] = {d: build_domain(DOMAINS_DIR / d) for d in cli.workspace_domains()}
    return _CACHE["defs"]


@pytest.fixture
def om_home(materialized, monkeypatch) -> Path:
    """The materialized MESH_HOME as this test's environment (no OpenMetadata settings)."""
    point_at(monkeypatch, materialized)
    return materialized


@pytest.fixture
def om_home_copy(materialized, tmp_path, monkeypatch) -> Path:
    """A private copy of the materialized Dagster instance and dbt artifacts (for tests that
    add events to the instance)."""
    home = tmp_path / "mesh"
    shutil.copytree(materialized / "dagster", home / "dagster")
    shutil.copytree(materialized / "dbt" / "artifacts", home / "dbt" / "artifacts")
    point_at(monkeypatch, home)
    return home


@pytest.fixture
def fake_om(monkeypatch):
    """A fake OpenMetadata for one test; clients reach it through its ``client_urlopen`` (held
    requests time out, answered ones never do: no test depends on the machine's speed)."""
    server = FakeOpenMetadata(token=SENTINEL_JWT).start()
    monkeypatch.setattr(urllib.request, "urlopen", server.client_urlopen(urllib.request.urlopen))
    yield server
    server.stop()
