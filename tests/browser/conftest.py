"""The Dagster UI as a person meets it, served over a materialized mesh.

One module-scoped ``dagster_ui``: a private copy of the session's materialized mesh (every
domain landed and materialized, tests/conftest.py) as MESH_HOME/DAGSTER_HOME, ``dagster-webserver
-w workspace.yaml`` loading the five code locations on a free loopback port, then
``dagster-daemon run`` (it dequeues the runs the UI launches). Before the daemon starts, the
landing sensors are switched off through the UI's GraphQL endpoint: the mesh has already
ingested the files they watch, and the only runs of the test must be the ones it launches.

The browser is Debian's Chromium (``make browser`` installs it; Playwright never downloads
one), headless, with a fresh profile and no background networking (the test must not
depend on outside connections). Screenshots and the servers' logs go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mesh_assets.settings import PROJECT_DIR
from mesh_assets.workspace import workspace_domains

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = PROJECT_DIR / "test-artifacts" / "browser"
BIN = Path(sys.executable).parent
DOMAINS = tuple(workspace_domains())
# generous: the machine is slow and shared
SERVER_TIMEOUT_S = 240
UI_TIMEOUT_MS = 90_000
# expect() waits up to this long for a state (its own default, 5 s, is a race on a busy machine)
expect.set_options(timeout=UI_TIMEOUT_MS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class DagsterUI:
    url: str
    mesh_home: Path
    logs: Path
    processes: list = field(default_factory=list)

    def check_alive(self) -> None:
        for process in self.processes:
            process.check_alive()

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def locations(self) -> dict[str, dict]:
        data = self.graphql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message }
              ... on RepositoryLocation { repositories { name sensors { name sensorState { id status } } } }
            } } } } }""")
        return {e["name"]: e for e in data["workspaceOrError"]["locationEntries"]}


class _Process:
    """A server started in its own process group, stopped with the group (its code servers)."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path):
        self.name, self.log = name, logs / f"{name}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            argv, cwd=PROJECT_DIR, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{_tail(self.log)}", pytrace=False)

    def stop(self) -> None:
        pgid = self.proc.pid  # start_new_session: the group is ours alone
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            # the group's code servers leave after their parent; make sure they do
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.5)
            else:
                continue
            break
        self._out.close()


def _wait(what: str, ready, timeout_s: float, processes: list[_Process]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        try:
            if ready():
                return
        except (OSError, urllib.error.URLError, AssertionError, KeyError, TypeError):
            pass
        time.sleep(2)
    pytest.fail(
        f"timed out after {timeout_s:.0f} s waiting for {what}:\n"
        + "\n".join(f"--- {p.log}\n{_tail(p.log)}" for p in processes),
        pytrace=False,
    )


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test runs it)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory, materialized_mesh) -> Iterator[DagsterUI]:
    """The webserver and daemon over a private copy of the session's materialized mesh (its
    Dagster instance, catalog, landing zone and dbt state; the Iceberg files are shared, read
    only: a materialization from the UI adds new files beside them, never changes one)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert all(r["success"] for r in materialized_mesh.reports)
    home = tmp_path_factory.mktemp("browser") / "mesh"
    shutil.copytree(materialized_mesh.home, home, ignore=shutil.ignore_patterns("warehouse", "reports.json"))
    dagster_home = home / "dagster"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MESH_", "DAGSTER_", "AWS_")) or k == "MESH_PROJECT_DIR"
    }
    env |= {
        "MESH_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "PYTHONUNBUFFERED": "1",
        "MESH_WAREHOUSE": (materialized_mesh.home / "warehouse").as_uri(),
    }
    port = _free_port()
    ui = DagsterUI(url=f"http://127.0.0.1:{port}", mesh_home=home, logs=ARTIFACTS)
    started: list[_Process] = []
    try:
        webserver = _Process(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            env,
            ARTIFACTS,
        )
        started.append(webserver)

        def all_loaded() -> bool:
            entries = ui.locations()
            return set(entries) == set(DOMAINS) and all(e["loadStatus"] == "LOADED" for e in entries.values())

        _wait("the webserver to load every code location", all_loaded, SERVER_TIMEOUT_S, [webserver])
        for entry in ui.locations().values():
            for repository in entry["locationOrLoadError"].get("repositories", []):
                for sensor in repository["sensors"]:
                    if sensor["name"].endswith("_landing") and sensor["sensorState"]["status"] == "RUNNING":
                        result = ui.graphql(
                            """mutation($id: String) { stopSensor(id: $id) { __typename
                            ... on StopSensorMutationResult { instigationState { status } } } }""",
                            {"id": sensor["sensorState"]["id"]},
                        )
                        assert result["stopSensor"]["instigationState"]["status"] == "STOPPED", result
        daemon = _Process(
            "dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, ARTIFACTS
        )
        started.append(daemon)
        ui.processes = started
        yield ui
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture(scope="module")
def browser_context(chromium, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.set_default_navigation_timeout(UI_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context, request):
    page = browser_context.new_page()

    def skip_dialog() -> None:
        page.get_by_role("button", name="Skip").click()
        # the click leaves the mouse mid-page, where it may hover a graph node (which highlights
        # and redraws its edges): park it in the corner, away from what the tests look at
        page.mouse.move(0, 0)

    # Dagster's one-time "Join the Dagster community" dialog, whenever it shows up
    page.add_locator_handler(page.get_by_text("Join the Dagster community"), skip_dialog)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        page.screenshot(path=ARTIFACTS / f"{request.node.name}-FAILED.png", full_page=True)
    page.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
