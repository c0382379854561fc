"""The local read path (``read(..., user=)``, ``mesh query --as-user``) on the embedded default,
with the policy evaluated by ``opa eval`` (no server): denials, row filters, masks, the audit
log, and a connection that cannot read around the policy."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from mesh_assets.access.audit import read_local
from mesh_assets.access.enforce import AccessDenied
from mesh_assets.cli import main
from mesh_assets.read_api import query, read
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract

FLIGHTS = [  # (origin, tailnum, carrier, flight, dest)
    ("JFK", "N14228", "UA", 1545, "IAH"),
    ("JFK", "N24211", "UA", 1714, "IAH"),
    ("LGA", "N14228", "AA", 1141, "MIA"),
    ("EWR", "N619AA", "B6", 725, "BQN"),
    ("JFK", None, "DL", 461, "ATL"),
]
PLANES = ["N14228", "N24211", "N619AA", "N000XX"]


def _table(product, rows: list[dict]) -> pa.Table:
    schema = product.arrow_schema()
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)


@pytest.fixture
def mesh(mesh_home, opa_eval, operator):
    """An embedded catalog with small operations.flights and fleet.planes tables."""
    from mesh_assets.iceberg.catalog import open_catalog

    catalog = open_catalog()
    flights = load_contract(DOMAINS_DIR / "operations" / "products" / "flights.yaml")
    planes = load_contract(DOMAINS_DIR / "fleet" / "products" / "planes.yaml")
    hour = datetime(2013, 1, 1, 5, tzinfo=UTC)
    for product, rows in (
        (
            flights,
            [
                {
                    "origin": o,
                    "tailnum": t,
                    "carrier": c,
                    "flight": f,
                    "dest": d,
                    "time_hour": hour,
                    "year": 2013,
                    "month": 1,
                    "day": 1,
                }
                for o, t, c, f, d in FLIGHTS
            ],
        ),
        (planes, [{"tailnum": t, "year": 2000 + i} for i, t in enumerate(PLANES)]),
    ):
        catalog.create_namespace_if_not_exists(product.domain)
        table = catalog.create_table(product.identifier, schema=product.iceberg_schema())
        table.append(_table(product, rows))
    return mesh_home


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_rows_masks_and_filters_per_user(mesh):
    everything = read("operations.flights", columns=["origin", "tailnum"])
    assert everything.num_rows == 5  # no user: the platform's own read
    alice = read("operations.flights", columns=["origin", "tailnum"], user="alice").to_pylist()
    assert sorted(r["origin"] for r in alice) == ["JFK", "JFK", "JFK"]  # analyst: JFK only
    assert sorted(r["tailnum"] or "" for r in alice) == sorted(["", sha("N14228"), sha("N24211")])
    carol = read("operations.flights", columns=["origin", "tailnum"], user="carol")
    assert carol.num_rows == 5 and "N619AA" in carol.column("tailnum").to_pylist()
    with pytest.raises(
        AccessDenied, match="Access Denied: Cannot select from columns .* iceberg.operations.flights"
    ):
        read("operations.flights", user="bob")
    with pytest.raises(PermissionError):
        read("fleet.planes", user="nobody")


def test_the_callers_filter_applies_to_what_the_user_sees(mesh):
    """As a WHERE on Trino: a filter on a masked column compares masked values."""
    raw = "N14228"
    assert read("operations.flights", filter=f"tailnum == '{raw}'", user="alice").num_rows == 0
    assert read("operations.flights", filter=f"tailnum == '{sha(raw)}'", user="alice").num_rows == 1
    assert read("operations.flights", filter=f"tailnum == '{raw}'", user="carol").num_rows == 2
    assert read("operations.flights", filter="origin == 'EWR'", user="alice").num_rows == 0
    df = read("operations.flights", columns=["origin"], limit=2, user="carol", pandas=True)
    assert list(df.columns) == ["origin"] and len(df) == 2


def test_governed_query_joins_on_hashed_keys(mesh):
    sql = (
        "select f.origin, f.tailnum, p.year from operations.flights f "
        "join fleet.planes p on p.tailnum = f.tailnum order by 1, 3"
    )
    con, relation = query(sql, user="alice")
    rows = relation.fetchall()
    con.close()
    # hashing is deterministic: the join still finds the planes, on JFK rows only
    assert rows == [("JFK", sha("N14228"), 2000), ("JFK", sha("N24211"), 2001)]
    con, relation = query(sql, user="carol")
    assert len(relation.fetchall()) == 4
    con.close()


@pytest.mark.parametrize(
    "sql,problem",
    [
        ("select * from bob.flights", None),  # not a product table: DuckDB reports it missing
        ("select * from read_parquet('x.parquet')", "table function read_parquet"),
        ("select * from flights", "is not a product"),
        ("create table x as select 1", "only one SELECT"),
        ("select 1; select 2", "only one SELECT"),
        ("select * from memory.main.flights", "catalog 'memory'"),
    ],
)
def test_the_governed_connection_reads_nothing_else(mesh, sql, problem):
    import duckdb

    if problem is None:
        with pytest.raises(duckdb.Error):
            query(sql, user="alice")
        return
    with pytest.raises(AccessDenied, match=problem):
        query(sql, user="alice")


def test_files_cannot_be_read_from_a_governed_connection(mesh):
    import duckdb

    con, _ = query("select count(*) from operations.flights", user="alice")
    with pytest.raises(duckdb.Error, match="disabled|external access|locked|Permission"):
        con.execute("select * from read_csv('/etc/hostname')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    con.close()


def test_cli_as_user_and_the_audit_log(mesh, capsys):
    assert (
        main(
            [
                "query",
                "--engine",
                "duckdb",
                "--as-user",
                "alice",
                "--format",
                "csv",
                "select origin, count(*) n from operations.flights group by 1",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == ["origin,n", "JFK,3"]
    with pytest.raises(SystemExit, match="Access Denied"):
        main(["query", "--engine", "duckdb", "--as-user", "bob", "select * from fleet.planes"])
    logged = list(read_local(mesh / "access" / "audit.jsonl"))
    # each read as a user is an operator's impersonation, recorded before the read
    assert [(d.operation, d.detail["as_user"], d.decision) for d in logged if d.product is None] == [
        ("ImpersonateUser", "alice", "allow"),
        ("ImpersonateUser", "bob", "allow"),
    ]
    decisions = [d for d in logged if d.product is not None]
    assert [(d.user, d.product, d.decision, d.source) for d in decisions] == [
        ("alice", "operations.flights", "allow", "duckdb"),
        ("bob", "fleet.planes", "deny", "duckdb"),
    ]
    assert decisions[0].detail["masked"] == ["tailnum"]
    assert decisions[0].detail["rowFilter"] == "(\"origin\" = 'JFK')"
    assert decisions[0].detail["policy"] == "opa eval"
    assert decisions[0].groups == ("analyst",)
    capsys.readouterr()
    assert main(["access", "audit", "--user", "bob", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["decision"] == "deny" and json.loads(line)["product"] == "fleet.planes"
    capsys.readouterr()
    assert main(["access", "audit", "--product", "operations"]) == 0
    out = capsys.readouterr().out
    assert "alice [analyst]" in out and "ALLOW" in out and "bob" not in out


def test_reading_as_a_user_without_the_operator_role_is_refused_and_recorded(mesh, monkeypatch, capsys):
    monkeypatch.delenv("MESH_OPERATOR")
    monkeypatch.setenv("MESH_USER", "eve")
    with pytest.raises(
        SystemExit, match="'eve' does not have the operator role: an operator sets MESH_OPERATOR=1"
    ):
        main(
            ["query", "--engine", "duckdb", "--as-user", "nobody_known", "select count(*) from fleet.planes"]
        )
    with pytest.raises(AccessDenied, match="operator role"):
        read("fleet.planes", user="carol")
    logged = list(read_local(mesh / "access" / "audit.jsonl"))
    assert [(d.user, d.operation, d.detail["as_user"], d.decision, d.source) for d in logged] == [
        ("eve", "ImpersonateUser", "nobody_known", "deny", "duckdb"),
        ("eve", "ImpersonateUser", "carol", "deny", "pyiceberg"),
    ]
    assert read("fleet.planes").num_rows > 0  # trusted-local: no user, the table as stored


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_policy_denies(mesh, monkeypatch):
    monkeypatch.setenv("MESH_OPA_URL", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(AccessDenied, match="could not be asked"):
        read("fleet.planes", user="carol")
    [decision] = [d for d in read_local(mesh / "access" / "audit.jsonl") if d.operation != "ImpersonateUser"]
    assert decision.decision == "deny" and "unreachable" in decision.detail["error"]


def test_without_a_server_the_same_rego_is_evaluated(mesh, monkeypatch):
    """No MESH_OPA_URL and nothing on the local OPA port: `opa eval` answers."""
    monkeypatch.delenv("MESH_OPA_URL")
    monkeypatch.setenv("MESH_OPA_PORT", str(_free_port()))
    assert read("fleet.planes", user="alice").column("tailnum").to_pylist()[0] == sha("N14228")
    [decision] = [d for d in read_local(mesh / "access" / "audit.jsonl") if d.operation != "ImpersonateUser"]
    assert decision.source == "pyiceberg" and decision.detail["policy"] == "opa eval"
