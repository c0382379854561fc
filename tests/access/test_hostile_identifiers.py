"""Every identifier and value that reaches SQL is quoted or refused.

Contracts are the only place product, column and role names come from: the loader refuses any
name that is not a lower_snake_case identifier, with the file, product and column. What does
reach SQL is quoted (identifiers) or rendered again from a parse tree (row filters); the tests
below feed hostile names to each quoting path and check that it stays one identifier.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from mesh_assets.access.opa import evaluate
from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.row_filters import quote_identifier, quote_literal
from mesh_assets.engine import quote, sql_string, trino_table
from mesh_assets.workspace import load_contract

HOSTILE = [
    'x"; DROP TABLE y; --',
    "x'; DROP TABLE y; --",
    'a"."b',
    "tail num",
    "Tailnum",
    "1tailnum",
    "tailnum;",
    "ταιλ",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_the_loader_refuses_hostile_column_names(planes_doc, write_contract, name):
    planes_doc["schema"][0]["properties"][1]["name"] = name
    path = write_contract(planes_doc)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert "column names must be lower_snake_case" in message
    assert f"column {name}" in message and "product planes" in message and str(path) in message


@pytest.mark.parametrize("name", ['pla"nes', "pla'nes", "planes; drop", "Planes"])
def test_the_loader_refuses_hostile_product_names(planes_doc, write_contract, name):
    planes_doc["dataProduct"] = name
    path = write_contract(planes_doc, name=name)  # the file name matches: only the name is wrong
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert f"dataProduct '{name}' must be lower_snake_case" in str(err.value)


@pytest.mark.parametrize("name", ["fleet'; --", 'fle"et', "Fleet"])
def test_the_loader_refuses_hostile_domain_names(planes_doc, write_contract, name):
    planes_doc["domain"] = name
    with pytest.raises(ContractError, match="domain .* must be lower_snake_case"):
        load_contract(write_contract(planes_doc))


def test_the_loader_refuses_hostile_role_names(planes_doc, write_contract):
    planes_doc["roles"] = [{"role": "analyst:alice,bob", "access": "read"}]  # a group file line
    with pytest.raises(ContractError, match="must be lower_snake_case"):
        load_contract(write_contract(planes_doc))


@pytest.mark.parametrize("name", HOSTILE)
def test_quoted_identifiers_stay_one_identifier_in_duckdb(name):
    for quoting in (quote, quote_identifier):
        con = duckdb.connect()
        con.execute(f"CREATE TABLE t ({quoting(name)} VARCHAR)")
        con.execute(f"INSERT INTO t VALUES ({sql_string(name)})")
        assert [d[0] for d in con.execute("SELECT * FROM t").description] == [name]
        assert con.execute(f"SELECT {quoting(name)} FROM t").fetchall() == [(name,)]
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (1,)


def test_literals_and_trino_names_are_escaped():
    assert quote_literal("O'Hare'; --") == "'O''Hare''; --'"
    assert trino_table('a"b.c"d', catalog="iceberg") == '"iceberg"."a""b"."c""d"'


def test_the_policy_quotes_column_names_in_mask_expressions(tmp_path, opa_binary):
    """Even a column name the loader would refuse is one quoted identifier in the mask OPA
    returns, for both engines (defence in depth: the data is generated, never hand-written)."""
    name = 'x"; DROP TABLE y; --'
    data = {
        "mesh": {
            "catalog": "iceberg",
            "platform": {"users": ["mesh"], "groups": []},
            "tables": {"d": {"t": "d.t"}},
            "products": {
                "d.t": {
                    "roles": {"analyst": {"access": "read", "clearance": []}},
                    "columns": {name: {"classification": "pii", "masking": "hash"}},
                }
            },
        }
    }
    (tmp_path / "opa").mkdir()
    (tmp_path / "opa" / "data.json").write_text(json.dumps(data))
    column = {
        "catalogName": "iceberg",
        "schemaName": "d",
        "tableName": "t",
        "columnName": name,
        "columnType": "varchar",
    }
    masks = {}
    for dialect, stack in (("trino", {"trinoVersion": "476"}), ("duckdb", {"duckdbVersion": "1"})):
        answer = evaluate(
            "trino/columnMask",
            {
                "context": {"identity": {"user": "alice", "groups": ["analyst"]}, "softwareStack": stack},
                "action": {"operation": "GetColumnMask", "resource": {"column": column}},
            },
            data_dir=tmp_path,
        )
        masks[dialect] = answer.value["expression"]
    assert masks["trino"] == 'lower(to_hex(sha256(to_utf8("x""; DROP TABLE y; --"))))'
    assert masks["duckdb"] == 'sha256("x""; DROP TABLE y; --")'
    con = duckdb.connect()
    con.execute(f"CREATE TABLE y AS SELECT 'N1' AS {quote(name)}")
    assert con.execute(f"SELECT {masks['duckdb']} FROM y").fetchone()[0] == hashlib.sha256(b"N1").hexdigest()
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'y'").fetchone() == (1,)
