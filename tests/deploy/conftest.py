"""Fixtures of the deployment tests: a real ``helm`` binary and the chart rendered once per
value set.

helm is built from the Go module proxy with ``go install`` on the first run (a few minutes on
2 cores) and cached outside the repository (``mesh_assets.tools.go_tool``, under
``$MESH_TOOLS_CACHE``, default ``~/.cache/datamesh``); later runs reuse the binary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_support import VALUE_SETS, Rendered, template

from mesh_assets.deploy import domain_entries
from mesh_assets.tools import go_tool


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary (built with `go install` on first use, cached outside the repo)."""
    return go_tool("helm")


@pytest.fixture(scope="session")
def render(helm):
    """``render(values_file, *extra_helm_args, check=True)``: `helm template` of the chart."""
    return lambda values_file, *extra, check=True: template(helm, values_file, *extra, check=check)


@pytest.fixture(scope="session")
def rendered_sets(helm) -> dict[str, Rendered]:
    sets = {}
    for name, values_file in VALUE_SETS.items():
        out = template(helm, values_file).stdout
        sets[name] = Rendered(name, values_file, [d for d in yaml.safe_load_all(out) if d])
    return sets


@pytest.fixture(params=sorted(VALUE_SETS))
def rendered(request, rendered_sets) -> Rendered:
    return rendered_sets[request.param]


@pytest.fixture(scope="session")
def domains() -> list[dict]:
    return domain_entries()
