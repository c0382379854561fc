"""Who is asking, on the real stack: Trino over HTTPS with password logins (``mesh users``), the
platform's service accounts, and impersonation reserved to an operator.

Uses the trino client as any consumer would (``BasicAuthentication``, ``http_scheme="https"``,
the stack's CA). Accounts made here are named ``t_<random>`` and removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from mesh_assets.access.audit import now
from mesh_assets.access.audit import query as audit_query
from mesh_assets.stack import accounts
from mesh_assets.stack.layout import HOST

pytestmark = pytest.mark.stack
MESH = str(Path(sys.executable).parent / "mesh")
PASSWORD = "a long enough password"
ROWS = "select origin, tailnum from operations.flights where dest = 'ATL' order by 1, 2 limit 2000"


def connect(layout, user: str, password: str):
    import trino

    from mesh_assets.engine import trino_http_session

    return trino.dbapi.connect(
        host=HOST,
        port=layout.ports["trino-https"],
        user=user,
        catalog="iceberg",
        http_scheme="https",
        auth=trino.auth.BasicAuthentication(user, password),
        http_session=trino_http_session(str(layout.ca_file)),  # verify= with the stack's CA
    )


def rows(layout, user: str, password: str, sql: str) -> list:
    cursor = connect(layout, user, password).cursor()
    cursor.execute(sql)
    return cursor.fetchall()


def mesh(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MESH, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def operator_env(prod_env, stack_layout) -> dict:
    """The operator's shell on the stack's machine: ``mesh users`` acts on its MESH_HOME's stack."""
    return {**prod_env, "MESH_HOME": str(stack_layout.root.parent)}


@pytest.fixture
def person(operator_env, stack_layout, tmp_path):
    """``person(groups)`` -> the name of an account made with ``mesh users add``."""
    prod_env = operator_env
    made = []
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")

    def add(*groups: str) -> str:
        name = f"t_{uuid.uuid4().hex[:8]}"
        args = [a for g in groups for a in ("--group", g)]
        result = mesh(prod_env, "users", "add", name, *args, "--password-file", str(secret))
        assert result.returncode == 0, result.stderr
        made.append(name)
        return name

    yield add
    for name in made:
        if name in {a.name for a in accounts.accounts(stack_layout)}:
            mesh(prod_env, "users", "remove", name)


def refused(layout, user: str, password: str) -> bool:
    import trino

    try:
        rows(layout, user, password, "select 1")
    except trino.exceptions.HttpError as exc:
        assert "401" in str(exc)
        return True
    return False


def within_refresh(check) -> float:
    """Seconds until ``check()`` holds; fails after twice Trino's refresh period and a margin."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < 15, "Trino did not reload its password file within 15 s"
        time.sleep(0.5)
    return time.monotonic() - t0


def test_no_credentials_a_wrong_password_and_plain_http_are_refused(prod_env, stack_layout, person):
    https = f"https://{HOST}:{stack_layout.ports['trino-https']}/v1/statement"
    session = requests.Session()
    session.trust_env = False
    answer = session.post(
        https, data="select 1", headers={"X-Trino-User": "mesh"}, verify=stack_layout.ca_file
    )
    assert answer.status_code == 401
    name = person("analyst")
    assert refused(stack_layout, name, "not the password at all")
    assert refused(stack_layout, "mesh", PASSWORD)
    # the internal HTTP port refuses clients, even with the platform's own password
    mesh_password = (accounts.accounts_dir(stack_layout) / "mesh").read_text().strip()
    plain = session.post(
        f"http://{HOST}:{stack_layout.ports['trino']}/v1/statement",
        data="select 1",
        auth=("mesh", mesh_password),
    )
    assert plain.status_code == 403
    assert mesh_password not in plain.text


def test_an_analyst_reads_masked_and_filtered_rows_an_admin_reads_in_clear(prod_env, stack_layout, person):
    analyst, admin = person("analyst"), person("platform")
    seen = rows(stack_layout, analyst, PASSWORD, ROWS)
    assert seen and {origin for origin, _ in seen} == {"JFK"}  # the analyst role's row filter
    assert all(t is None or re.fullmatch(r"[0-9a-f]{64}", t) for _, t in seen)  # pii hashed
    clear = rows(stack_layout, admin, PASSWORD, ROWS.replace("limit 2000", ""))
    assert {origin for origin, _ in clear} == {"EWR", "JFK", "LGA"}
    assert any(t is not None and re.fullmatch(r"N[0-9A-Z]+", t) for _, t in clear)
    assert rows(stack_layout, analyst, PASSWORD, "select current_user, current_groups()") == [
        [analyst, ["analyst"]]
    ]


def test_a_domain_service_account_reads_public_products_not_internal_ones(prod_env, stack_layout):
    """domain-analytics reads operations.flights whole (its pipeline's input); made internal,
    fleet.planes is refused to it and still readable by its own domain's account."""
    import trino

    def login(domain: str):
        name = accounts.domain_account(domain)
        return name, (accounts.accounts_dir(stack_layout) / name).read_text().strip()

    analytics, fleet = login("analytics"), login("fleet")
    [[whole]] = rows(stack_layout, *analytics, "select count(*) from operations.flights")
    [[as_mesh]] = rows(stack_layout, "mesh", _mesh(stack_layout), "select count(*) from operations.flights")
    assert whole == as_mesh > 0
    assert rows(stack_layout, *analytics, "select count(*) from fleet.planes")[0][0] > 0
    data_file = stack_layout.access_dir / "opa" / "data.json"
    original = data_file.read_text()
    data = json.loads(original)
    data["mesh"]["products"]["fleet.planes"]["visibility"] = "internal"
    try:
        _replace(data_file, json.dumps(data))
        _wait_for_opa(stack_layout, "internal")
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied.*fleet.planes"):
            rows(stack_layout, *analytics, "select count(*) from fleet.planes")
        assert rows(stack_layout, *fleet, "select count(*) from fleet.planes")[0][0] > 0
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            rows(stack_layout, *fleet, "create table operations.t_planes as select 1 as x")
    finally:
        _replace(data_file, original)
        _wait_for_opa(stack_layout, "public")


def _mesh(layout) -> str:
    return (accounts.accounts_dir(layout) / "mesh").read_text().strip()


def _replace(path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.test")
    tmp.write_text(text)
    os.replace(tmp, path)


def _wait_for_opa(layout, visibility: str) -> None:
    url = f"http://{HOST}:{layout.ports['opa']}/v1/data/mesh/products/fleet.planes/visibility"
    t0 = time.monotonic()
    while requests.get(url, timeout=5).json().get("result") != visibility:
        assert time.monotonic() - t0 < 20, f"OPA did not load visibility {visibility}"
        time.sleep(0.2)


def test_a_removed_user_is_refused_at_the_next_query(operator_env, stack_layout, person):
    prod_env = operator_env
    name = person("analyst")
    within_refresh(lambda: not refused(stack_layout, name, PASSWORD))
    assert rows(stack_layout, name, PASSWORD, "select current_user") == [[name]]
    result = mesh(prod_env, "users", "remove", name)
    assert result.returncode == 0 and f"user {name} removed" in result.stdout
    waited = within_refresh(lambda: refused(stack_layout, name, PASSWORD))
    assert waited <= 15
    assert name not in mesh(prod_env, "users", "list").stdout


def test_passwd_replaces_the_password(operator_env, stack_layout, person, tmp_path):
    prod_env = operator_env
    name = person("analyst")
    within_refresh(lambda: not refused(stack_layout, name, PASSWORD))
    new = tmp_path / "new"
    new.write_text("the new long password\n")
    assert mesh(prod_env, "users", "passwd", name, "--password-file", str(new)).returncode == 0
    within_refresh(lambda: refused(stack_layout, name, PASSWORD))
    assert rows(stack_layout, name, "the new long password", "select current_user") == [[name]]


def test_impersonation_needs_the_operator_role_and_is_on_record(prod_env, stack_layout):
    t0 = now()
    plain = {k: v for k, v in prod_env.items() if k != "MESH_OPERATOR"}
    for engine in ("duckdb", "trino"):
        result = mesh(plain, "query", "--engine", engine, "--as-user", "nobody_at_all", "select 1")
        assert result.returncode == 1, result.stdout
        assert "does not have the operator role: an operator sets MESH_OPERATOR=1" in result.stderr
    result = mesh(prod_env, "query", "--engine", "trino", "--as-user", "carol", "select current_user")
    assert result.returncode == 0 and "carol" in result.stdout
    records = [d for d in audit_query(source="local", since=t0) if d.operation == "ImpersonateUser"]
    assert [(d.source, d.decision, d.detail["as_user"]) for d in records] == [
        ("duckdb", "deny", "nobody_at_all"),
        ("trino", "deny", "nobody_at_all"),
        ("trino", "allow", "carol"),
    ]
