"""One policy, two enforcement points, on the real stack: Trino (OPA access control, the file
group provider) and the local read path (DuckDB and pyiceberg, asking the same OPA) return
exactly the same rows for the same user, and both record their decisions.

Reads the mesh's own products in the stack's catalog (``make demo-prod`` or
tests/stack/test_production_mesh.py write them; missing ones are materialized first) and
writes only in a namespace of its own.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mesh_assets.access.audit import now
from mesh_assets.access.audit import query as audit_query
from mesh_assets.access.enforce import AccessDenied

pytestmark = pytest.mark.stack
MESH = str(Path(sys.executable).parent / "mesh")


def _order(row: tuple) -> tuple:
    """A sort key for rows with NULLs (NULLs first, never compared with values)."""
    return tuple((False, 0) if v is None else (True, v) for v in row)


def trino_rows(sql: str, user: str) -> list[tuple]:
    from mesh_assets.read_api import trino_query

    return sorted((tuple(r) for r in trino_query(sql, user=user)[1]), key=_order)


def local_rows(sql: str, user: str) -> list[tuple]:
    from mesh_assets.read_api import query

    con, relation = query(sql, user=user)
    try:
        return sorted((tuple(r) for r in relation.fetchall()), key=_order)
    finally:
        con.close()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_user_without_a_role_is_denied_by_trino_and_locally(prod_env):
    import trino

    t0 = now()
    with pytest.raises(trino.exceptions.TrinoUserError) as err:
        trino_rows("select count(*) from operations.flights", "bob")
    assert "Access Denied" in str(err.value) and "operations.flights" in str(err.value)
    with pytest.raises(AccessDenied, match="Access Denied"):
        local_rows("select count(*) from operations.flights", "bob")
    with pytest.raises(AccessDenied):
        from mesh_assets.read_api import read

        read("fleet.planes", user="bob")
    for engine in ("trino", "duckdb"):
        result = subprocess.run(
            [MESH, "query", "--engine", engine, "--as-user", "bob", "select * from fleet.planes"],
            env=prod_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode != 0 and "Access Denied" in result.stderr, (engine, result.stderr)
    # both enforcement points wrote the decisions down
    denied = audit_query(user="bob", product="operations.flights", since=t0)
    assert {(d.source, d.decision) for d in denied} >= {("trino", "deny"), ("duckdb", "deny")}
    assert {(d.source, d.decision) for d in audit_query(user="bob", product="fleet.planes", since=t0)} >= {
        ("trino", "deny"),
        ("pyiceberg", "deny"),
    }


def test_no_way_around_the_filters_and_masks_on_trino(prod_env):
    """What could read a product's rows without its row filter and masks is denied."""
    import trino

    from mesh_assets.iceberg.catalog import open_catalog

    snapshot = open_catalog().load_table("operations.flights").current_snapshot()
    for sql in (
        "select count(*) from TABLE(iceberg.system.table_changes('operations', 'flights', "
        f"{snapshot.parent_snapshot_id or 0}, {snapshot.snapshot_id}))",
        'select * from operations."flights$files"',  # column bounds of every file
        'select * from operations."flights$partitions"',
        "create view operations.v as select * from operations.flights",
    ):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            trino_rows(sql, "alice")
    # statistics and time travel go through the same filter and masks
    stats = {r[0]: r for r in trino_rows("show stats for operations.flights", "alice")}
    assert stats[None][4] == trino_rows("select count(*) from operations.flights", "alice")[0][0]
    assert stats["tailnum"][1:] == (None,) * 6
    old = trino_rows(
        f"select distinct origin from operations.flights for version as of {snapshot.snapshot_id}", "alice"
    )
    assert old == [("JFK",)]


def test_groups_come_from_trinos_group_provider(prod_env):
    assert trino_rows("select array_sort(current_groups())", "carol") == [(["analyst", "pii_reader"],)]
    assert trino_rows("select current_groups()", "bob") == [([],)]
    tables = {r[0] for r in trino_rows("show tables from iceberg.operations", "alice")}
    assert {"flights", "daily_performance"} <= tables
    assert not any(t.endswith("__quarantine") for t in tables)


QUERIES = [
    "select origin, tailnum, count(*) as n from operations.flights group by 1, 2",
    "select carrier, flight_date, origin, cancelled, flights from operations.daily_performance",
    "select f.origin, p.manufacturer, count(*) as n from operations.flights f "
    "join fleet.planes p on p.tailnum = f.tailnum group by 1, 2",
]


@pytest.mark.parametrize("user", ["alice", "carol", "mesh"])
@pytest.mark.parametrize("sql", QUERIES, ids=["masked+filtered", "confidential", "join"])
def test_trino_and_the_local_path_return_the_same_rows(prod_env, user, sql):
    on_trino = trino_rows(sql, user)
    locally = local_rows(sql, user)
    assert on_trino, sql
    assert locally == on_trino


def test_what_each_user_sees(prod_env):
    sql = "select origin, tailnum, count(*) from operations.flights group by 1, 2"
    alice, carol, mesh = (trino_rows(sql, u) for u in ("alice", "carol", "mesh"))
    assert carol == mesh  # cleared, no row filter
    assert {r[0] for r in alice} == {"JFK"}  # analyst: the row filter
    jfk = [r for r in mesh if r[0] == "JFK"]
    assert sum(r[2] for r in alice) == sum(r[2] for r in jfk)
    # the mask is sha256 of the stored value, in both engines
    expected = sorted(((o, sha(t) if t is not None else None, n) for o, t, n in jfk), key=_order)
    assert alice == expected
    daily = trino_rows("select count(*), count(cancelled) from operations.daily_performance", "carol")
    assert daily[0][0] > 0 and daily[0][1] == 0  # confidential: NULL without clearance
    assert trino_rows("select count(cancelled) > 0 from operations.daily_performance", "mesh") == [(True,)]


@pytest.mark.parametrize("user", ["alice", "carol"])
def test_read_api_on_both_engines_for_a_user(prod_env, user):
    from mesh_assets.read_api import read

    cols = ["origin", "tailnum", "flight", "time_hour"]
    local = read("operations.flights", columns=cols, filter="dest == 'ATL'", user=user)
    trino = read("operations.flights", columns=cols, filter="dest = 'ATL'", engine="trino", user=user)
    key = lambda r: tuple("" if v is None else str(v) for v in r.values())  # noqa: E731
    assert local.num_rows == trino.num_rows > 0
    assert sorted(map(key, local.to_pylist())) == sorted(map(key, trino.to_pylist()))


def test_cli_as_user_on_both_engines(prod_env):
    sql = "select origin, count(*) as n, min(tailnum) as t from operations.flights group by 1"
    out = {}
    for engine in ("trino", "duckdb"):
        result = subprocess.run(
            [MESH, "query", "--engine", engine, "--as-user", "alice", "--format", "csv", sql],
            env=prod_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        out[engine] = sorted(result.stdout.splitlines()[1:])
    assert out["trino"] == out["duckdb"]
    [row] = out["trino"]
    assert row.startswith("JFK,111279,") and re.fullmatch(r"JFK,\d+,[0-9a-f]{64}", row)


def test_mask_renderings_agree_between_engines(prod_env, tmp_path, write_contract, planes_doc):
    """hash, partial and null, as OPA renders them for Trino and for DuckDB, give the same
    values for the same inputs (unicode, short, empty and NULL included)."""
    import duckdb

    from mesh_assets.access.opa import evaluate
    from mesh_assets.access.policy_data import build, load_users
    from mesh_assets.engine import trino_connection
    from mesh_assets.workspace import load_contract

    props = {p["name"]: p for p in planes_doc["schema"][0]["properties"]}
    for name, method in (("model", "partial"), ("manufacturer", "hash"), ("type", "null")):
        props[name]["classification"] = "pii"
        props[name]["customProperties"] = [{"property": "masking", "value": method}]
    build(tmp_path, products=[load_contract(write_contract(planes_doc))], users=load_users())
    values = ["N14228", "A", "", "é漢字-x", None]
    trino_values = ", ".join(
        "(CAST(NULL AS varchar))" if v is None else "('" + v.replace("'", "''") + "')" for v in values
    )
    for name in ("model", "manufacturer", "type"):
        expressions = {}
        for dialect, stack_info, type_name in (
            ("trino", {"trinoVersion": "476"}, "varchar"),
            ("duckdb", {"duckdbVersion": "1"}, "VARCHAR"),
        ):
            answer = evaluate(
                "trino/columnMask",
                {
                    "context": {
                        "identity": {"user": "alice", "groups": ["analyst"]},
                        "softwareStack": stack_info,
                    },
                    "action": {
                        "operation": "GetColumnMask",
                        "resource": {
                            "column": {
                                "catalogName": "iceberg",
                                "schemaName": "fleet",
                                "tableName": "planes",
                                "columnName": name,
                                "columnType": type_name,
                            }
                        },
                    },
                },
                data_dir=tmp_path,
            )
            expressions[dialect] = answer.value["expression"]
        cursor = trino_connection().cursor()
        cursor.execute(f'SELECT {expressions["trino"]} FROM (VALUES {trino_values}) AS t("{name}")')
        on_trino = [r[0] for r in cursor.fetchall()]
        con = duckdb.connect()
        con.execute(f'CREATE TABLE t ("{name}" VARCHAR)')
        con.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
        locally = [r[0] for r in con.execute(f"SELECT {expressions['duckdb']} FROM t").fetchall()]
        assert on_trino == locally, (name, expressions)
    assert locally == [None] * 5  # type: null


def test_the_platform_keeps_full_access_and_readers_cannot_write(prod_env):
    import trino

    from mesh_assets.engine import trino_connection

    schema = f"stack_test_access_{uuid.uuid4().hex[:8]}"
    mesh = trino_connection(user="mesh").cursor()
    mesh.execute(f'CREATE SCHEMA iceberg."{schema}"')
    try:
        mesh.execute(f'CREATE TABLE iceberg."{schema}".t AS SELECT 1 AS x')
        mesh.fetchall()
        alice = trino_connection(user="alice").cursor()
        for sql in (
            f'DROP TABLE iceberg."{schema}".t',
            f'INSERT INTO iceberg."{schema}".t VALUES 2',
            f'CREATE TABLE iceberg."{schema}".u AS SELECT 1 AS x',
            f'SELECT * FROM iceberg."{schema}".t',
        ):
            with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
                alice.execute(sql)
                alice.fetchall()
        mesh.execute(f'ALTER TABLE iceberg."{schema}".t EXECUTE optimize')
        mesh.fetchall()
        mesh.execute(f'SELECT x FROM iceberg."{schema}".t')
        assert mesh.fetchall() == [[1]]
    finally:
        mesh.execute(f'DROP TABLE IF EXISTS iceberg."{schema}".t')
        mesh.fetchall()
        mesh.execute(f'DROP SCHEMA iceberg."{schema}"')
        mesh.fetchall()
