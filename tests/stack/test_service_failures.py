"""When a service of the stack fails: what the platform says and does, on the session's stack.

Each test stops or stalls one service with the stack's own means and restores it in a
``finally`` (``mesh stack up`` starts what is not running), so the tests after it find the
stack whole even when an assertion failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from mesh_assets import stack
from mesh_assets.stack.objectstore import ObjectStore
from mesh_assets.stack.opa import Opa
from mesh_assets.stack.postgres import Postgres, bin_dir
from mesh_assets.stack.trino import Trino

pytestmark = pytest.mark.stack

MESH = str(Path(sys.executable).parent / "mesh")


def mesh(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MESH, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


@contextmanager
def restored(layout):
    """Whatever the test stopped runs again afterwards (``mesh stack up``), assertions or not."""
    try:
        yield
    finally:
        up = mesh("stack", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert all(s.healthy for s in stack.status(layout))


def killed(service) -> int:
    """SIGKILL the service's process (behind the stack's back); its pid."""
    pid = service.process.pid()
    os.kill(pid, signal.SIGKILL)
    while service.process.pid() is not None:
        time.sleep(0.05)
    return pid


def line_of(output: str, service: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"{service} "))


@pytest.fixture
def production(stack_layout, tmp_path):
    """The environment of production mode on the session's stack, with its own MESH_HOME."""
    return {**stack.production_env(stack_layout, resolve_secrets=True), "MESH_HOME": str(tmp_path / "mesh")}


def opa_unreachable(layout) -> str:
    return (
        f"the policy service (OPA, http://127.0.0.1:{layout.ports['opa']}) is unreachable, and Trino "
        "refuses every query without it (Trino: Failed to query OPA backend). `mesh stack status` "
        "shows why; `mesh stack up` starts it again"
    )


def test_trino_catalog_works_right_after_postgresql_restarts(stack_layout):
    """PostgreSQL's restart ends the catalog connections Trino pooled: Trino reconnects them
    (retryable-status-codes) instead of failing the next queries, and status checks the
    catalog end to end (tables listed, a table's metadata read)."""
    trino = Trino(stack_layout)

    def catalog_query(_) -> list:
        conn = trino.connect(request_timeout=60)
        try:
            cursor = conn.cursor()  # the driver's own cursor: no retry of the platform's
            cursor.execute("SELECT table_schema, table_name FROM iceberg.information_schema.tables")
            return cursor.fetchall()
        finally:
            conn.close()

    with ThreadPoolExecutor(4) as pool:  # every pooled catalog connection in use once
        tables = list(pool.map(catalog_query, range(4)))[0]
    pg = Postgres(stack_layout)
    with restored(stack_layout):
        assert pg.stop()
        pg.start(bin_dir())
        pg.process.wait_until(pg.accepts_superuser, 30)
        with ThreadPoolExecutor(4) as pool:
            after = list(pool.map(catalog_query, range(4)))
        assert all(sorted(a) == sorted(tables) for a in after)
        status = mesh("stack", "status")
        assert status.returncode == 0, status.stdout
        trino_line = line_of(status.stdout, "trino")
        assert re.search(
            r" ok +Trino 476, (coordinator of (\d+) of \2 workers active, )?SELECT 1 ok, catalog iceberg: (\d+ tables listed, \w+\.\w+: \d+ snapshots read "
            r"from its metadata|no table yet)$",
            trino_line,
        ), trino_line


def test_opa_killed_every_trino_path_names_the_policy_service(stack_layout, production, monkeypatch):
    from mesh_assets.engine import PolicyServiceUnreachable, trino_connection
    from mesh_assets.quality.run import run_suite
    from mesh_assets.quality.sql import trino_relation
    from mesh_assets.read_api import read
    from mesh_assets.workspace import all_products

    message = opa_unreachable(stack_layout)
    opa = Opa(stack_layout)
    with restored(stack_layout):
        pid = killed(opa)
        status = mesh("stack", "status")
        assert status.returncode == 1
        assert line_of(status.stdout, "opa").endswith(
            f"FAILING  NOT RUNNING: process {pid} (from {opa.process.pidfile}) is gone; `mesh stack up` "
            f"starts it again. Last lines of {opa.process.log}:"
        )
        assert '"decision_id"' not in status.stdout  # OPA's own lines only, not its decision log
        assert line_of(status.stdout, "trino").endswith(
            "FAILING  running, but refuses every query while OPA fails (see the opa line)"
        )
        assert "stack NOT healthy: opa, trino" in status.stdout

        query = mesh("query", "--engine", "trino", "SELECT 1", env=production)
        assert (query.returncode, query.stderr) == (1, f"mesh: query failed on Trino: {message}\n")

        with monkeypatch.context() as mp:  # undone before `mesh stack up` restores OPA
            for key, value in production.items():
                mp.setenv(key, value)
            with pytest.raises(PolicyServiceUnreachable) as err:
                read("reference.airlines", engine="trino")
            assert str(err.value) == message

            product = next(p for p in all_products() if p.identifier == "reference.airlines")
            connection = trino_connection()
            try:
                results = run_suite(
                    connection, trino_relation("reference.airlines"), product.rules, dialect="trino"
                )
            finally:
                connection.close()
        assert [(r.passed, r.error) for r in results] == [
            (False, f"PolicyServiceUnreachable: {message}")
        ] * len(product.rules)


def test_opa_stalled_status_names_the_health_endpoint(stack_layout):
    opa = Opa(stack_layout)
    pid = opa.process.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        status = mesh("stack", "status", timeout=60)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert status.returncode == 1
    assert line_of(status.stdout, "opa").endswith(
        f"FAILING  running but not healthy: ConnectionError: health endpoint error: GET "
        f"http://127.0.0.1:{stack_layout.ports['opa']}/health did not answer within 3 s (timed out): "
        "the process is stalled or overloaded"
    )
    assert mesh("stack", "status").returncode == 0


def test_s3_down_materialize_reports_each_product_and_fails(stack_layout, production):
    port = stack_layout.ports["s3"]
    with restored(stack_layout):
        killed(ObjectStore(stack_layout))
        result = mesh("materialize", "reference", env=production, timeout=300)
        assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
        summary = result.stdout.split("== summary ==\n", 1)[1].splitlines()
        unreachable = (
            r"OSError: When getting information for key 'landing/reference/{file}' in bucket "
            r"'warehouse': AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, "
            r"Could not connect to server; Details: Failed to connect to 127\.0\.0\.1:{port} after "
            r"\d+ ms: Could not connect to server"
        )
        assert re.fullmatch(
            r"reference\.airlines +- +- +NOT MATERIALIZED: step ingest_airlines failed: "
            + unreachable.format(file="airlines\\.csv", port=port),
            summary[1],
        ), summary[1]
        assert re.fullmatch(
            r"reference\.airports +- +- +NOT MATERIALIZED: step ingest_airports failed: "
            + unreachable.format(file="airports\\.csv", port=port),
            summary[2],
        ), summary[2]
        assert re.fullmatch(
            r"reference\.timezones +- +- +NOT MATERIALIZED: not run: upstream reference\.airports "
            r"not materialized",
            summary[3],
        ), summary[3]
        assert re.fullmatch(r"   domain reference: run [0-9a-f-]{36} FAILED in [\d.]+ s", summary[4])
        assert "Traceback" not in result.stdout.split("== summary ==", 1)[1]


def test_postgresql_down_materialize_says_so_and_collapses_retry_warnings(stack_layout, production):
    pg = Postgres(stack_layout)
    port = stack_layout.ports["postgres"]
    with restored(stack_layout):
        assert pg.stop()
        result = mesh("materialize", "reference", env=production, timeout=120)
        assert result.returncode == 1
        refused = (
            f'(psycopg2.OperationalError) connection to server at "127.0.0.1", port {port} failed: '
            "Connection refused"
        )
        warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING:root:")]
        assert warnings == [
            f"WARNING:root:Retrying failed database connection: {refused}",
            f"WARNING:root:Retrying failed database connection: {refused} [repeated 5 more times]",
        ]
        assert result.stderr.splitlines()[-1] == (
            f"mesh: the Dagster instance in {production['DAGSTER_HOME']} could not be opened "
            "(DagsterPostgresException: too many retries for DB connection <- OperationalError: "
            f'connection to server at "127.0.0.1", port {port} failed: Connection refused): is the '
            "database of its dagster.yaml up? On the local stack `mesh stack status` shows it and "
            "`mesh stack up` starts it"
        )


def test_a_run_cut_off_by_a_postgresql_outage_ends_failed_at_the_next_materialize(stack_layout, production):
    """A run whose process died while PostgreSQL (the Dagster storage) was down could not record
    its own end: it stays STARTED until the next `mesh materialize` finds its worker gone and
    reports it failed, in the same PostgreSQL-backed instance."""
    marker = Path(production["MESH_HOME"]) / "paused" / "audit_written"
    proc = subprocess.Popen(
        [MESH, "materialize", "fleet"],
        env={**os.environ, **production, "MESH_TEST_PAUSE_AT": "audit_written:fleet.planes"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (marker.exists() and marker.read_text()):  # stopped with the audit branch written
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        with restored(stack_layout):
            assert Postgres(stack_layout).stop()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = mesh("materialize", "fleet", env=production, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if "marked failed" in line]
    run_id = line.split()[1]
    assert line == f"run {run_id} marked failed: its worker process is gone (killed or crashed)"
    status = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import dagster as dg; print(dg.DagsterInstance.get().get_run_by_id({run_id!r}).status.value)",
        ],
        env={**os.environ, **production},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.stdout.strip() == "FAILURE", status.stdout + status.stderr
