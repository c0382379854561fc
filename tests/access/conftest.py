"""Fixtures of the access tests.

Unit tests evaluate the committed policy with the ``opa`` binary (``MESH_OPA_URL=eval``): no
server, and never the shared stack's OPA. The stack tests (``test_stack_access.py``) ask the
stack's own OPA through Trino and the local read path.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mesh_assets.settings import DOMAINS_DIR


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    from mesh_assets import tools

    return tools.go_tool("opa")


@pytest.fixture
def opa_eval(monkeypatch, opa_binary):
    """The local read path evaluates the policy with `opa eval` (no server)."""
    monkeypatch.setenv("MESH_OPA_URL", "eval")
    monkeypatch.delenv("MESH_ACCESS_GROUPS", raising=False)


@pytest.fixture
def planes_doc() -> dict:
    return yaml.safe_load((DOMAINS_DIR / "fleet" / "products" / "planes.yaml").read_text())


@pytest.fixture
def write_contract(tmp_path):
    """``write_contract(doc, name=None)`` -> path of ``<tmp>/fleet/products/<name>.yaml``."""

    def write(doc: dict, name: str | None = None) -> Path:
        doc = copy.deepcopy(doc)
        name = name or doc["dataProduct"]
        path = tmp_path / doc.get("domain", "fleet") / "products" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write
