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
from meshtest import point_at
from om_fake_server import FakeOpenMetadata

from mesh_assets.workspace import workspace_domains

SENTINEL_JWT = "sentinel-openmetadata-bot-token-c0ffee"  # a placeholder, not a real JWT


@pytest.fixture(scope="session")
def materialized(materialized_mesh) -> Path:
    """The session's materialized mesh (tests/conftest.py): real dbt artifacts in
    ``$MESH_HOME/dbt/artifacts/<domain>/`` and a real Dagster instance with runs and checks."""
    assert all(r["success"] for r in materialized_mesh.reports), [
        r for r in materialized_mesh.reports if not r["success"]
    ]
    return materialized_mesh.home


_CACHE: dict[str, object] = {}


@pytest.fixture(scope="session")
def domain_defs(materialized) -> dict:
    """``build_domain`` of every domain, built once (the slow part of collecting the mesh)."""
    from mesh_assets.definitions import build_domain
    from mesh_assets.settings import DOMAINS_DIR

    if "defs" not in _CACHE:
        with pytest.MonkeyPatch.context() as mp:
            point_at(mp, materialized)
            _CACHE["defs"] = {d: build_domain(DOMAINS_DIR / d) for d in workspace_domains()}
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
