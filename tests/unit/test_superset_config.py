"""Superset's configuration and what ``mesh superset sync`` derives from the contracts, without a
running Superset (tests/browser/test_superset.py runs the real one)."""

from __future__ import annotations

import re
import socket

import pytest
from sqlalchemy.engine import make_url
from trino.auth import BasicAuthentication

from mesh_assets.stack import accounts
from mesh_assets.stack.layout import SECRETS, StackLayout
from mesh_assets.stack.superset import Superset
from mesh_assets.superset import (
    PII_MARK,
    SupersetSyncError,
    charts,
    column_spec,
    public_products,
    sync,
    trino_uri,
)
from mesh_assets.workspace import load_product


@pytest.fixture
def layout(mesh_home) -> StackLayout:
    layout = StackLayout.from_env()
    layout.ensure_secrets()
    accounts.ensure_service_accounts(layout, ["fleet"])
    return layout


def _load_config(layout: StackLayout) -> tuple[str, dict]:
    text = Superset(layout).config()
    namespace: dict = {}
    exec(compile(text, "superset_config.py", "exec"), namespace)
    return text, namespace


def test_config_holds_no_credential_and_reads_each_from_its_file(layout):
    text, config = _load_config(layout)
    superset_password = (accounts.accounts_dir(layout) / "superset").read_text().strip()
    for secret in [*(layout.secret(name) for name in SECRETS), superset_password]:
        assert secret not in text
    assert config["SECRET_KEY"] == layout.secret("superset-secret-key")
    assert config["SQLALCHEMY_DATABASE_URI"] == (
        f"postgresql+psycopg2://superset:{layout.secret('superset-db-password')}"
        f"@127.0.0.1:{layout.ports['postgres']}/superset"
    )


def test_connections_to_the_stacks_trino_log_in_as_the_superset_account(layout):
    _, config = _load_config(layout)
    mutate = config["DB_CONNECTION_MUTATOR"]
    uri = make_url(trino_uri(layout))
    assert uri.password is None and uri.username == "superset"
    same_uri, params = mutate(uri, {"connect_args": {"source": "superset"}}, "admin", None, None)
    assert same_uri == uri
    auth = params["connect_args"]["auth"]
    assert isinstance(auth, BasicAuthentication)
    assert (auth._username, auth._password) == (
        "superset",
        (accounts.accounts_dir(layout) / "superset").read_text().strip(),
    )
    assert params["connect_args"] | {"auth": None} == {
        "source": "superset",
        "http_scheme": "https",
        "verify": str(layout.ca_file),
        "auth": None,
    }
    # any other database (another host, port or login) is left alone
    for other in (
        "trino://superset@example.org:8443/iceberg",
        f"trino://alice@127.0.0.1:{layout.ports['trino-https']}/iceberg",
        f"trino://superset@127.0.0.1:{layout.ports['trino']}/iceberg",
        f"postgresql://superset@127.0.0.1:{layout.ports['trino-https']}/x",
    ):
        assert mutate(make_url(other), {}, "admin", None, None) == (make_url(other), {})


def test_pii_columns_are_marked_and_others_keep_the_contracts_words():
    flights = load_product("operations.flights")
    tailnum = column_spec(flights, flights.column("tailnum"))
    assert tailnum["verbose_name"] == "tailnum" + PII_MARK
    assert tailnum["description"] == (
        f"{flights.column('tailnum').description} PII: readers without pii clearance "
        "(Superset's account among them) see it masked (hash)."
    )
    origin = column_spec(flights, flights.column("origin"))
    assert origin == {
        "column_name": "origin",
        "verbose_name": "origin",
        "description": flights.column("origin").description,
    }


def test_every_chart_reads_columns_its_products_contract_declares():
    products = {p.identifier: p for p in public_products()}
    for name, (identifier, form) in charts().items():
        assert identifier.startswith("analytics."), name
        declared = {c.name for c in products[identifier].columns}
        named = set(form.get("groupby", [])) | ({form["x_axis"]} if "x_axis" in form else set())
        metrics = form.get("metrics", []) + ([form["metric"]] if "metric" in form else [])
        for metric in metrics:  # the lower-case words of the SQL: column names (SUM is upper-case)
            named |= set(re.findall(r"[a-z_]+", metric["sqlExpression"]))
        assert named and named <= declared, (name, named - declared)


def test_sync_without_a_running_superset_says_how_to_start_it(layout, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(layout.ports, "superset", port)
    with pytest.raises(SupersetSyncError) as failed:
        sync(layout, say=lambda _: None)
    assert str(failed.value) == (
        f"Superset does not answer at http://127.0.0.1:{port}: start it with `mesh stack up --with superset`"
    )
