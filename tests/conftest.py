"""Shared fixtures. Every test gets its own MESH_HOME: nothing touches the developer's .mesh/.

Helpers that tests import by name live in ``meshtest.py`` (a module named ``conftest`` would
be ambiguous: the deploy and stack folders have conftest files of their own)."""

from pathlib import Path

import pytest

from mesh_assets.settings import DOMAINS_DIR


@pytest.fixture
def mesh_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "mesh"
    monkeypatch.setenv("MESH_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in ("MESH_CATALOG_URI", "MESH_WAREHOUSE", "MESH_LANDING", "MESH_ENGINE",
                "MESH_S3_ENDPOINT", "MESH_DAGSTER_STORAGE", "MESH_CATALOG_NAME"):
        monkeypatch.delenv(var, raising=False)
    (home / "dagster").mkdir(parents=True)
    return home


@pytest.fixture
def reference_dir() -> Path:
    return DOMAINS_DIR / "reference"


@pytest.fixture(scope="session")
def stack_layout():
    """The running production stack (tests/stack, tests/access). Fails, never skips, when it is
    down: `make test` starts it, and a skipped interop test would let CI pass unchecked."""
    from mesh_assets import stack
    from mesh_assets.stack.layout import StackLayout

    layout = StackLayout.current()
    bad = [s for s in stack.status(layout) if not s.healthy]
    if bad:
        pytest.fail("the production stack is not up (`make test` starts it; by hand: "
                    "`.venv/bin/mesh stack up`):\n"
                    + "\n".join(f"  {s.name} {s.port}: {s.detail}" for s in bad), pytrace=False)
    return layout
