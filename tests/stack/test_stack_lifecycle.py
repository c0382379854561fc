"""`mesh stack up|status|env|down` as a person runs them: idempotent, honest about failures.

The destructive checks (a port taken, a killed Trino) run against a second stack in a
temporary MESH_HOME on free ports, so the stack the other tests and developers use is never
disturbed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mesh_assets import stack, tools
from mesh_assets.settings import load_settings
from mesh_assets.stack import trino as trino_mod
from mesh_assets.stack.layout import StackError, StackLayout
from mesh_assets.stack.processes import ServiceProcess

pytestmark = pytest.mark.stack

MESH = str(Path(sys.executable).parent / "mesh")


def mesh(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MESH, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def pids(layout: StackLayout) -> dict[str, int | None]:
    return {s.name: s.pid for s in stack.status(layout)}


def test_stack_up_twice_is_a_no_op(stack_layout):
    before = pids(stack_layout)
    for _ in range(2):
        result = mesh("stack", "up")
        assert result.returncode == 0, result.stderr
        assert "already up, nothing to do" in result.stdout
    assert pids(stack_layout) == before
    status = mesh("stack", "status")
    assert status.returncode == 0, status.stdout
    assert re.search(r"^trino +127\.0\.0\.1:", status.stdout, re.M) and "catalog iceberg" in status.stdout
    kafka_line = next(line for line in status.stdout.splitlines() if line.startswith("kafka"))
    port = stack_layout.ports["kafka"]
    assert f"127.0.0.1:{port}" in kafka_line and " ok " in kafka_line
    assert f"Kafka 4.3.1 (KRaft), bootstrap 127.0.0.1:{port}, 1 broker" in kafka_line


def test_env_names_credential_files_and_never_shows_a_credential(stack_layout, monkeypatch):
    result = mesh("stack", "env")
    assert result.returncode == 0
    for name in (
        "catalog-password",
        "dagster-password",
        "postgres-superuser",
        "s3-access-key",
        "s3-secret-key",
        "trino-shared-secret",
        "trino-accounts/mesh",
        "trino-accounts/domain-operations",
    ):
        assert stack_layout.secret(name) not in result.stdout
        assert (stack_layout.secret_path(name).stat().st_mode & 0o777) == 0o600
    assert "export MESH_ENGINE=trino" in result.stdout
    assert "export MESH_DAGSTER_STORAGE=postgres" in result.stdout
    # the settings module turns that environment into working catalog properties
    for key, value in stack.production_env(stack_layout).items():
        monkeypatch.setenv(key, value)
    props = load_settings().catalog_properties()
    assert props == stack.catalog_properties(stack_layout)


def test_dagster_instance_storage_reaches_postgres(stack_layout, tmp_path):
    """The production env gives Dagster an instance whose runs live in the stack's PostgreSQL."""
    env = {
        **stack.production_env(stack_layout, resolve_secrets=True),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    code = (
        "from mesh_assets.settings import ensure_dagster_home, load_settings\n"
        "ensure_dagster_home(load_settings())\n"
        "import dagster as dg\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    print(type(instance.run_storage).__name__, instance.get_runs_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[0] == "PostgresRunStorage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def second_stack(stack_layout):
    """Environment of a second, independent stack: temporary MESH_HOME (readable by the
    ``postgres`` user, which a pytest tmp_path is not), free ports, a small Trino heap."""
    home = Path(tempfile.mkdtemp(prefix="mesh-stack-test-"))
    home.chmod(0o755)
    env = {
        "MESH_HOME": str(home),
        "MESH_PG_PORT": str(_free_port()),
        "MESH_S3_PORT": str(_free_port()),
        "MESH_TRINO_PORT": str(_free_port()),
        "MESH_TRINO_HTTPS_PORT": str(_free_port()),
        "MESH_OPA_PORT": str(_free_port()),
        "MESH_KAFKA_PORT": str(_free_port()),
        "MESH_KAFKA_CONTROLLER_PORT": str(_free_port()),
        "MESH_TRINO_HEAP": "1G",
    }
    yield env
    mesh("stack", "down", "--purge", env=env)
    shutil.rmtree(home, ignore_errors=True)


def test_second_stack_reports_a_taken_port_then_a_killed_trino(second_stack):
    env = second_stack
    # 1. a port held by another program: a readable refusal, nothing started
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["MESH_PG_PORT"])))
        squatter.listen()
        result = mesh("stack", "up", env=env)
    assert result.returncode == 1
    assert (
        f"port {env['MESH_PG_PORT']} on 127.0.0.1, wanted by postgres, is taken by pid {os.getpid()}"
        in result.stderr
    )
    assert "MESH_PG_PORT" in result.stderr

    # 2. from scratch on free ports (downloads cached): up, healthy
    result = mesh("stack", "up", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    status = mesh("stack", "status", env=env)
    assert status.returncode == 0, status.stdout
    assert f"127.0.0.1:{env['MESH_TRINO_PORT']}" in status.stdout

    # 3. Trino killed behind the stack's back: status says so and fails
    pid = int((Path(env["MESH_HOME"]) / "stack" / "run" / "trino.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    status = mesh("stack", "status", env=env)
    assert status.returncode == 1
    trino_line = next(line for line in status.stdout.splitlines() if line.startswith("trino"))
    assert "NOT RUNNING" in trino_line and f"process {pid}" in trino_line and "mesh stack up" in trino_line
    assert "stack NOT healthy: trino" in status.stdout
    for line in status.stdout.splitlines():
        if line.startswith(("postgres", "s3 ", "kafka")):
            assert " ok " in line, line

    # 4. down stops the rest
    result = mesh("stack", "down", env=env)
    assert result.returncode == 0
    assert "trino: was not running" in result.stdout and "postgres: stopped" in result.stdout


# --- failure messages that need no stack ----------------------------------------------------


def test_a_failed_download_says_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("MESH_TOOLS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tools, "MAVEN_CENTRAL", f"http://127.0.0.1:{_free_port()}/maven2")
    with pytest.raises(StackError) as err:
        trino_mod.install()
    message = str(err.value)
    assert "Trino 476 could not be downloaded" in message
    assert "trino-server-476.tar.gz" in message and "MESH_MAVEN_REPO" in message


def test_a_process_dying_at_start_shows_the_end_of_its_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MESH_STACK_DIR", str(tmp_path / "stack"))
    layout = StackLayout.from_env()
    proc = ServiceProcess("trino", layout, marker="mesh-test-dies")
    proc.start(["sh", "-c", "echo 'mesh-test-dies: config error: no such catalog'; exit 3"])
    with pytest.raises(StackError) as err:
        proc.wait_until(lambda: False, timeout_s=30)
    assert "trino exited while starting" in str(err.value)
    assert "config error: no such catalog" in str(err.value)
