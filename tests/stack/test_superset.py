"""Superset on the stack, as an analyst meets it: ``mesh superset sync`` provisions the stack's
Superset (``mesh stack up --with superset``; ``make test`` starts it) from the contracts, and a
real (headless) Chromium logs in, finds every chart of the delays dashboard drawn with the
numbers Trino gives, and runs a query in SQL Lab.

The mesh must be on the stack. In ``make test`` this module runs after
tests/stack/test_production_mesh.py, whose ``mesh demo`` in production mode put it there; run
alone, the ``stack_mesh`` fixture runs that demo first when a public product's table is missing
(idempotent: the two share it). The browser is tests/browser's (Debian's Chromium, headless,
its fixtures imported below). Screenshots go to ``test-artifacts/superset/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path
from urllib.parse import urlencode

import psycopg2
import pytest
from browser.conftest import browser_context, chromium, page  # noqa: F401 - fixtures
from playwright.sync_api import expect

from mesh_assets import stack
from mesh_assets.settings import PROJECT_DIR
from mesh_assets.stack.accounts import SUPERSET_ACCOUNT, accounts_dir
from mesh_assets.stack.layout import HOST
from mesh_assets.stack.superset import ADMIN, Superset
from mesh_assets.stack.trino import Trino
from mesh_assets.superset import (
    DASHBOARD_SLUG,
    DATABASE,
    PII_MARK,
    SupersetClient,
    charts,
    public_products,
    sync,
)

pytestmark = [pytest.mark.stack, pytest.mark.browser]

MESH = str(Path(sys.executable).parent / "mesh")
ARTIFACTS = PROJECT_DIR / "test-artifacts" / "superset"
ECHARTS = ("Mean arrival delay by carrier and month", "Mean departure delay by weather",
           "Mean arrival delay by aircraft age (years)")  # fmt: skip


@pytest.fixture(scope="module")
def superset(stack_layout) -> Superset:
    service = Superset(stack_layout)
    current = {s.name: s for s in stack.status(stack_layout)}
    if "superset" not in current or not current["superset"].healthy:
        detail = current["superset"].detail if "superset" in current else "not started"
        pytest.fail(
            f"Superset is not running on the stack ({detail}): `make test` starts it; by hand "
            "`.venv/bin/mesh stack up --with superset`",
            pytrace=False,
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return service


@pytest.fixture(scope="module")
def trino_rows(stack_layout):
    """``trino_rows(sql)``: all rows, as the platform's account ``mesh`` reads them."""
    conn = Trino(stack_layout).connect(request_timeout=120)

    def run(sql: str) -> list[list]:
        cursor = conn.cursor()
        cursor.execute(sql)
        return cursor.fetchall()

    yield run
    conn.close()


@pytest.fixture(scope="module")
def stack_mesh(stack_layout, trino_rows, tmp_path_factory):
    """The demo mesh on the stack (``mesh demo`` in production mode when a public product's
    table is missing)."""
    tables = {f"{schema}.{table}" for schema, table in trino_rows(
        "SELECT table_schema, table_name FROM iceberg.information_schema.tables")}  # fmt: skip
    if not all(p.table_identifier in tables for p in public_products()):
        home = tmp_path_factory.mktemp("superset-prod") / "mesh"
        env = {
            **os.environ,
            **stack.production_env(stack_layout, resolve_secrets=True),
            "MESH_HOME": str(home),
        }
        done = subprocess.run(
            [MESH, "demo", "--stream", "3000"], env=env, capture_output=True, text=True, timeout=1200
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


@pytest.fixture(scope="module")
def synced(superset, stack_mesh, stack_layout):
    """``mesh superset sync`` as a person runs it; returns its output."""
    done = subprocess.run([MESH, "superset", "sync"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def superset_page(page, request, stack_layout):
    """tests/browser's page; on a failure its screenshot and Superset's log go to the artifacts."""
    failed = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed:
        page.screenshot(path=ARTIFACTS / f"{request.node.name}-FAILED.png", full_page=True)
        shutil.copyfile(stack_layout.log("superset"), ARTIFACTS / "superset.log")


@pytest.fixture(scope="module")
def api(superset, stack_layout) -> SupersetClient:
    return SupersetClient(superset.url, ADMIN, stack_layout.secret("superset-admin-password"))


def test_sync_makes_datasets_from_contracts_and_is_idempotent(synced, api, stack_layout):
    again = sync(stack_layout, say=lambda _: None)
    assert again.missing == []
    products = public_products()
    assert sorted(again.datasets) == sorted(p.identifier for p in products)
    assert sorted(again.charts) == sorted(charts())
    # a second run updates, never duplicates
    for resource, key, count in (
        ("database", "database_name", 1),
        ("dataset", "table_name", len(products)),
        ("chart", "slice_name", len(charts())),
        ("dashboard", "slug", 1),
    ):
        items = api.all(resource)
        assert len(items) == count, (resource, [i[key] for i in items])

    flights = next(p for p in products if p.identifier == "operations.flights")
    dataset = api.call("GET", f"/dataset/{again.datasets['operations.flights']}", what="test")["result"]
    assert dataset["description"].startswith(flights.description)
    columns = {c["column_name"]: c for c in dataset["columns"]}
    assert set(columns) == {c.name for c in flights.columns}
    for column in flights.columns:
        shown = columns[column.name]
        if column.classification == "pii":
            assert shown["verbose_name"] == column.name.replace("_", " ") + PII_MARK
            assert shown["description"].startswith(f"{column.description} PII:")
        else:
            assert shown["verbose_name"] == column.name.replace("_", " ")
            assert shown["description"] == (column.description or "")
    assert "tailnum" in {c.name for c in flights.columns if c.classification == "pii"}


def test_superset_stores_no_trino_password(synced, api, stack_layout, superset):
    """The database's URI names the account only; nothing secret is in Superset's metadata
    database nor in its log."""
    database = next(d for d in api.all("database") if d["database_name"] == DATABASE)
    connection = api.call("GET", f"/database/{database['id']}/connection", what="test")["result"]
    assert connection["sqlalchemy_uri"] == (
        f"trino://{SUPERSET_ACCOUNT}@{HOST}:{stack_layout.ports['trino-https']}/iceberg"
    )
    password = (accounts_dir(stack_layout) / SUPERSET_ACCOUNT).read_text().strip()
    with (
        closing(
            psycopg2.connect(
                host=HOST,
                port=stack_layout.ports["postgres"],
                user="postgres",
                password=stack_layout.secret("postgres-superuser"),
                dbname="superset",
            )
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute("SELECT sqlalchemy_uri, password, extra FROM dbs")
        rows = cursor.fetchall()
    # no password column, no credential in the extra; the encrypted extra (Superset decrypts it
    # for the API, masking passwords) is empty: no auth_params
    assert rows == [(connection["sqlalchemy_uri"], None, rows[0][2])]
    assert password not in str(rows)
    assert connection["masked_encrypted_extra"] == "{}" and connection["parameters"] == {}
    log = stack_layout.log("superset").read_text(errors="replace")
    for name in ("superset-admin-password", "superset-db-password", "superset-secret-key"):
        assert stack_layout.secret(name) not in log, name
    assert password not in log


def test_superset_reads_as_an_analyst(synced, api, trino_rows):
    """Superset's queries run as its Trino account, an analyst: the contracts' row filter and
    PII mask apply (SQL Lab's API, the path every chart and query takes)."""
    database = next(d for d in api.all("database") if d["database_name"] == DATABASE)
    result = api.call(
        "POST",
        "/sqllab/execute/",
        body={
            "database_id": database["id"],
            "sql": "SELECT count(*) AS n, count(DISTINCT origin) AS origins, min(tailnum) AS tailnum "
            "FROM operations.flights WHERE tailnum IS NOT NULL",
            "runAsync": False,
            "client_id": uuid.uuid4().hex[:10],  # Superset's key of the query: one per run
        },
        what="a SQL Lab query",
    )
    [row] = result["data"]
    [[expected]] = trino_rows(
        "SELECT count(*) FROM iceberg.operations.flights WHERE tailnum IS NOT NULL AND origin = 'JFK'"
    )
    assert (row["n"], row["origins"]) == (expected, 1)  # the analyst's row filter: origin = 'JFK'
    assert re.fullmatch(r"[0-9a-f]{64}", row["tailnum"]), "tailnum is pii: an analyst sees its hash"


def _login(page, superset: Superset, stack_layout) -> None:
    """Sign in through the login form (the browser of the module may be signed in already).
    The form is React's: filled before it is drawn, it would be drawn again empty."""
    page.goto(f"{superset.url}/login/", wait_until="networkidle")
    if "/login/" not in page.url:
        return
    username, password = (
        page.locator("[data-test='username-input']"),
        page.locator("[data-test='password-input']"),
    )
    username.fill(ADMIN)
    expect(username).to_have_value(ADMIN)
    secret = stack_layout.secret("superset-admin-password")
    password.fill(secret)
    assert password.evaluate("e => e.value.length") == len(secret)  # never the value in a message
    page.locator("[data-test='login-button']").click()
    page.wait_for_url(re.compile(r"/superset/welcome/"))


def _drawn_pixels(canvas) -> int:
    """How many pixels of a canvas are not transparent: ECharts draws its marks on canvases."""
    return canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""
    )


def test_dashboard_charts_render_with_the_data(synced, superset, stack_layout, trino_rows, superset_page):
    page = superset_page
    _login(page, superset, stack_layout)
    page.goto(f"{superset.url}/superset/dashboard/{DASHBOARD_SLUG}/")
    holders = page.locator("[data-test='dashboard-component-chart-holder']")
    expect(holders).to_have_count(len(charts()))
    [[total]] = trino_rows("SELECT sum(flights) FROM iceberg.analytics.delays_by_carrier_month")
    carriers = trino_rows("SELECT DISTINCT carrier FROM iceberg.analytics.delays_by_carrier_month")
    for name in charts():
        holder = holders.filter(has=page.get_by_text(name, exact=True))
        expect(holder).to_have_count(1)
        chart = holder.locator(".chart-container")
        expect(chart).to_be_visible()
        expect(chart.locator(".loading")).to_have_count(0)
        expect(holder.locator("[data-test='chart-error'], .alert-danger, .ant-alert-error")).to_have_count(0)
        if name in ECHARTS:
            canvas = chart.locator("canvas").first
            expect(canvas).to_be_visible()
            page.wait_for_function(
                """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false; }""",
                arg=canvas.element_handle(),
            )
            assert _drawn_pixels(canvas) > 1000, name
    big_number = holders.filter(has=page.get_by_text("Flights in 2013", exact=True))
    expect(big_number.locator(".header-line")).to_have_text(f"{total:,d}")
    table = holders.filter(has=page.get_by_text("Flights and delays by carrier", exact=True))
    expect(table.locator("tbody tr")).to_have_count(len(carriers))
    assert sorted(table.locator("tbody tr td:first-child").all_inner_texts()) == sorted(c for [c] in carriers)
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)


def test_sql_lab_runs_a_query_over_a_product(synced, api, superset, stack_layout, trino_rows, superset_page):
    """SQL Lab opened on the database with a query (its ``dbid``/``sql`` link), run with its
    button: the result grid holds exactly the rows Trino gives the platform."""
    page = superset_page
    _login(page, superset, stack_layout)
    database = next(d for d in api.all("database") if d["database_name"] == DATABASE)
    sql = (
        "SELECT carrier, sum(flights) AS flights FROM analytics.delays_by_carrier_month "
        "GROUP BY carrier ORDER BY carrier"
    )
    expected = [
        [carrier, str(flights)]
        for carrier, flights in trino_rows(sql.replace(" analytics.", " iceberg.analytics."))
    ]
    page.goto(f"{superset.url}/sqllab/?{urlencode({'dbid': database['id'], 'sql': sql})}")
    page.locator("[data-test='run-query-action']").click()
    results = page.locator("[data-test='table-container']")
    expect(results.locator(".ag-center-cols-container [role='row']")).to_have_count(len(expected))
    expect(page.get_by_text(f"{len(expected)} rows", exact=True)).to_be_visible()
    shown = results.evaluate(
        """grid => [...grid.querySelectorAll(".ag-center-cols-container [role='row']")]
            .sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))
            .map(row => ['carrier', 'flights'].map(
                col => row.querySelector(`[col-id='${col}']`).innerText.trim()))"""
    )
    assert shown == expected
    page.screenshot(path=ARTIFACTS / "sql-lab.png", full_page=True)
