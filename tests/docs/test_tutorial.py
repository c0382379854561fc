"""docs/tutorial.md cannot go stale: its ```bash blocks run, in order, in a copy of the repository.

The copy leaves out .venv, .mesh, .git and build outputs, and uses the installed virtual
environment through a symlink (``.venv -> <repo>/.venv``) with ``PYTHONPATH`` and
``MESH_PROJECT_DIR`` pointing at the copy, so its ``mesh_assets`` and ``domains`` are the ones
imported and nothing in the real repository changes. Its state is the copy's own ``.mesh/``.

An HTML comment just before a block (invisible on the rendered page) says what to expect:

    <!-- tutorial-test: exit=1 expect="MESH004" expect="..." -->   exit status, output substrings
    <!-- tutorial-test: skip (why) -->                               not run (installs, servers)

A block without one must exit 0.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mesh_assets.settings import PROJECT_DIR

pytestmark = pytest.mark.e2e

TUTORIAL = PROJECT_DIR / "docs" / "tutorial.md"
BLOCK = re.compile(
    r"(?:<!--\s*tutorial-test:(?P<directive>.*?)-->\s*\n)?^```bash\n(?P<code>.*?)^```", re.S | re.M
)
LEFT_OUT = {".venv", ".mesh", ".git", "test-artifacts", "dbt_project/target", "dbt_project/logs"}
BLOCK_TIMEOUT_S = 600


@dataclass
class Block:
    number: int
    code: str
    skip: bool = False
    exit: int = 0
    expect: tuple[str, ...] = ()


def tutorial_blocks(text: str) -> list[Block]:
    blocks = []
    for number, m in enumerate(BLOCK.finditer(text), start=1):
        directive = m["directive"] or ""
        exit_code = re.search(r"\bexit=(\d+)", directive)
        blocks.append(
            Block(
                number,
                m["code"],
                skip=bool(re.match(r"\s*skip\b", directive)),
                exit=int(exit_code[1]) if exit_code else 0,
                expect=tuple(re.findall(r'expect="([^"]*)"', directive)),
            )
        )
    return blocks


def _copy_project(dst: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(PROJECT_DIR)
        return {n for n in names if (rel / n).as_posix() in LEFT_OUT or n in ("__pycache__", ".pytest_cache")}

    shutil.copytree(PROJECT_DIR, dst, ignore=ignore, symlinks=True)
    (dst / ".venv").symlink_to(PROJECT_DIR / ".venv")
    return dst


def _fingerprint() -> dict[str, str]:
    """What the tutorial would change if it ran in the real repository."""
    files = [PROJECT_DIR / "workspace.yaml", PROJECT_DIR / "helm" / "datamesh" / "domains.yaml"]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.exists()}


def test_blocks_are_parsed():
    blocks = tutorial_blocks(TUTORIAL.read_text())
    commands = "\n".join(b.code for b in blocks if not b.skip)
    for verb in (
        "mesh new domain",
        "mesh new product",
        "mesh lint",
        "mesh land",
        "mesh materialize",
        "mesh products",
        "mesh query",
        "mesh history",
    ):
        assert verb in commands, verb
    assert any(b.exit == 1 for b in blocks) and all(
        b.skip or b.expect or "cat >" in b.code or "rm " in b.code for b in blocks
    )


def test_tutorial_runs_in_a_copy_of_the_repository(tmp_path):
    before = _fingerprint()
    repo = _copy_project(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESH_", "DAGSTER_"))}
    env |= {
        "MESH_PROJECT_DIR": str(repo),
        "PYTHONPATH": str(repo),
        "MESH_HOME": str(repo / ".mesh"),
        "PYTHONUNBUFFERED": "1",
    }
    ran = 0
    for block in tutorial_blocks(TUTORIAL.read_text()):
        if block.skip:
            continue
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.code],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        output = result.stdout + result.stderr
        where = (
            f"docs/tutorial.md bash block {block.number}:\n{block.code}\n"
            f"--- exit {result.returncode}, output (last 4000 chars):\n{output[-4000:]}"
        )
        assert result.returncode == block.exit, where
        for expected in block.expect:
            assert expected in output, f"expected {expected!r} in the output of {where}"
        ran += 1
    assert ran >= 10
    # the copy got the new domain; the real repository did not
    assert (repo / "domains" / "billing" / "products" / "invoices.yaml").exists()
    assert "location_name: billing" in (repo / "workspace.yaml").read_text()
    assert not (PROJECT_DIR / "domains" / "billing").exists()
    assert _fingerprint() == before
