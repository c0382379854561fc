"""The analyst notebooks named ``test_*.ipynb`` run with nbmake against the embedded demo mesh,
in a sandbox without any credential (tests/connect/notebook_sandbox.py), and the sandbox's
kernel can read no stack secret even when the process that starts it holds some."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_sandbox import run_notebooks

from mesh_assets.settings import PROJECT_DIR

NOTEBOOKS = sorted((PROJECT_DIR / "notebooks").glob("test_*.ipynb"))
PROBE = PROJECT_DIR / "notebooks" / "test_notebook_has_no_secrets.ipynb"


@pytest.fixture
def planted(mesh_home, monkeypatch) -> Path:
    """The starting process holds credentials, as CI's would after `eval "$(mesh stack env)"`:
    a stack secret file and credential variables (values made up here)."""
    secrets = mesh_home / "stack" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "catalog-password").write_text("planted-catalog-password\n")
    monkeypatch.setenv("MESH_CATALOG_PASSWORD_FILE", str(secrets / "catalog-password"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted-s3-secret")
    monkeypatch.setenv("MESH_TRINO_PASSWORD", "planted-trino-password")
    return secrets


def test_test_notebooks_pass_in_a_sandbox_without_credentials(materialized_mesh, planted):
    assert {p.name for p in NOTEBOOKS} >= {"test_delays_with_pandas.ipynb", PROBE.name}
    done = run_notebooks(materialized_mesh.home, NOTEBOOKS)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{len(NOTEBOOKS)} passed" in done.stdout
    assert "planted" not in done.stdout + done.stderr


def test_the_probe_notices_a_credential_that_is_there(materialized_mesh, planted):
    """The same probe, given a credential variable and the stack's secrets folder, fails naming
    both (without their values): the passing run above is not a probe that cannot fail."""
    done = run_notebooks(
        materialized_mesh.home,
        [PROBE],
        leak={"MESH_TRINO_PASSWORD": "planted-trino-password"},
        leak_dir=planted,
    )
    assert done.returncode == 1
    assert "AssertionError" in done.stdout
    assert "'variable MESH_TRINO_PASSWORD'" in done.stdout
    assert f"'file {planted / 'catalog-password'}'" in done.stdout
    assert "planted-trino-password" not in done.stdout + done.stderr
