"""Shared fixtures. Every test gets its own MESH_HOME: nothing touches the developer's .mesh/.

Helpers that tests import by name live in ``meshtest.py`` (a module named ``conftest`` would
be ambiguous: the deploy and stack folders have conftest files of their own)."""

import fcntl
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.defs_state.base import _current_storage as dagster_current_state_storage
from meshtest import point_at

from mesh_assets import cli
from mesh_assets.dbt.project import dependency_order
from mesh_assets.materialize import CheckOutcome, materialize
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import workspace_domains


@pytest.fixture(autouse=True)
def _no_dagster_instance_left_current(request):
    """A test that leaves a Dagster instance entered leaves its definitions-state storage the
    thread's current one (a context variable, dagster 1.13): once that instance is gone, every
    later ``Definitions`` load in the process fails with "Attempted to resolve undefined
    DagsterInstance weakref" (seen in the serial stack session: the stream tests after the
    reliability ones). Tests run one process for many, so the variable is reset after each test,
    with a warning naming the test that left it set."""
    yield
    if dagster_current_state_storage.get() is not None:
        warnings.warn(f"{request.node.nodeid} left a Dagster instance's state storage current", stacklevel=1)
        dagster_current_state_storage.set(None)


RELIABILITY = Path(__file__).parent / "reliability"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Markers follow what a test needs, before ``-m`` selects: every test of tests/reliability
    is ``reliability`` (run one at a time: its timing is the point), and a test that uses the
    running production stack (the ``stack_layout`` fixture, directly or through another
    fixture) must be marked ``stack``, or collection stops naming it, so that ``-m "not stack"``
    never reaches a service."""
    unmarked = []
    for item in items:
        if item.path.is_relative_to(RELIABILITY):
            item.add_marker(pytest.mark.reliability)
        if "stack_layout" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("stack"):
            unmarked.append(item.nodeid)
    if unmarked:
        raise pytest.UsageError(
            "these tests use the production stack but are not marked `stack` "
            "(add `pytestmark = pytest.mark.stack` or `@pytest.mark.stack`):\n  " + "\n  ".join(unmarked)
        )


@pytest.fixture
def mesh_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "mesh"
    point_at(monkeypatch, home)
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
        pytest.fail(
            "the production stack is not up (`make test` starts it; by hand: "
            "`.venv/bin/mesh stack up`):\n" + "\n".join(f"  {s.name} {s.port}: {s.detail}" for s in bad),
            pytrace=False,
        )
    return layout


@dataclass(frozen=True)
class MaterializedMesh:
    home: Path  # its MESH_HOME (DAGSTER_HOME is home / "dagster")
    reports: list[dict]  # one per domain run, as `mesh materialize` reports them


def _report_json(report: dict) -> dict:
    return {
        **report,
        "materialized": [k.path for k in report["materialized"]],
        "checks": [[c.asset_key.path, c.check_name, c.passed, c.severity.value] for c in report["checks"]],
    }


def _report_of(data: dict) -> dict:
    return {
        **data,
        "materialized": [dg.AssetKey(p) for p in data["materialized"]],
        "checks": [
            CheckOutcome(dg.AssetKey(k), name, passed, dg.AssetCheckSeverity(severity))
            for k, name, passed, severity in data["checks"]
        ],
    }


@pytest.fixture(scope="session")
def materialized_mesh(tmp_path_factory) -> MaterializedMesh:
    """The demo mesh landed and materialized once for the whole session (every asset and check
    of every domain, in dependency order), for the suites that only read it: end to end,
    OpenMetadata, browser. Under pytest-xdist the first worker that asks builds it under a file
    lock and the others reuse it. A test that writes takes a copy or a home of its own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    home = root / "materialized-mesh"
    done = home / "reports.json"
    with (root / "materialized-mesh.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            with pytest.MonkeyPatch.context() as mp:
                point_at(mp, home)
                (home / "dagster").mkdir(parents=True, exist_ok=True)
                assert cli.main(["land"]) == 0
                reports = materialize(dependency_order(workspace_domains()))
            done.write_text(json.dumps([_report_json(r) for r in reports]))
    return MaterializedMesh(home, [_report_of(r) for r in json.loads(done.read_text())])
