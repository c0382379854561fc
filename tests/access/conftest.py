"""Fixtures of the access tests.

Unit tests evaluate the committed policy with the ``opa`` binary (``MESH_OPA_URL=eval``): no
server, and never the shared stack's OPA. The stack tests (``test_stack_access.py``) ask the
stack's own OPA through Trino and the local read path.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mesh_assets import stack
from mesh_assets.settings import DOMAINS_DIR

MESH = str(Path(sys.executable).parent / "mesh")
NEEDED = ("operations.flights", "operations.daily_performance", "fleet.planes")


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
def operator(monkeypatch):
    """The caller has the operator role: reading as another user is allowed (and recorded)."""
    monkeypatch.setenv("MESH_OPERATOR", "1")


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


@pytest.fixture(scope="module")
def prod_env(stack_layout, tmp_path_factory):
    """This process (and the CLI subprocesses) in production mode on the stack, with the
    products the tests read present in its catalog."""
    home = tmp_path_factory.mktemp("access") / "mesh"
    env = {
        **stack.production_env(stack_layout, resolve_secrets=True),
        "MESH_HOME": str(home),
        "MESH_OPERATOR": "1",  # these tests try the policy as alice, bob, carol: impersonation
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("MESH_ACCESS_GROUPS", raising=False)
        from mesh_assets.iceberg.catalog import open_catalog

        catalog = open_catalog()
        missing = [
            p
            for p in NEEDED
            if not catalog.table_exists(p)
            or catalog.load_table(p).current_snapshot() is None
            or catalog.load_table(p).scan(limit=1).to_arrow().num_rows == 0
        ]
        if missing:
            full = {**os.environ, **env}
            # operations' dbt tests read reference.airlines: its domain comes first
            for verb in ("land", "materialize"):
                result = subprocess.run(
                    [MESH, verb, "reference", "fleet", "operations"],
                    env=full,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield {**os.environ, **env}
