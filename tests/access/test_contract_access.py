"""Access declarations in contracts (ODCS `roles`, column classification and masking), the
policy data generated from them, and the errors bad declarations produce."""

from __future__ import annotations

import json

import pytest

from mesh_assets.access.policy_data import AccessConfigError, build, group_file, load_users, policy_data
from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.row_filters import FilterError, canonical
from mesh_assets.workspace import all_products, load_contract


def column(doc: dict, name: str) -> dict:
    return next(p for p in doc["schema"][0]["properties"] if p["name"] == name)


def _products():
    return {p.identifier: p for p in all_products()}


def test_demo_contracts_declare_readers_clearance_filters_and_masks():
    products = _products()
    flights = products["operations.flights"]
    roles = {r.role: r for r in flights.roles}
    assert set(roles) == {"analyst", "pii_reader"}
    assert roles["analyst"].row_filter == "(\"origin\" = 'JFK')"
    assert roles["analyst"].clearance == ()
    assert roles["pii_reader"].clearance == ("pii",) and roles["pii_reader"].row_filter is None
    assert flights.column("tailnum").classification == "pii"
    assert flights.column("tailnum").masking == "hash"  # the default for pii text
    assert flights.column("origin").masking is None  # public: never masked
    assert products["operations.daily_performance"].column("cancelled").masking == "null"
    assert products["fleet.planes"].column("tailnum").masking == "hash"
    # every product names its readers: no product is readable by default
    assert all(p.roles for p in products.values())


def test_policy_data_from_the_demo_contracts():
    data = policy_data(all_products(), load_users())["mesh"]
    assert data["catalog"] == "iceberg"
    assert data["platform"] == {"users": ["mesh"], "groups": ["platform"]}
    assert data["tables"]["operations"]["flights"] == "operations.flights"
    flights = data["products"]["operations.flights"]
    assert flights["roles"]["analyst"] == {
        "access": "read",
        "clearance": [],
        "rowFilter": "(\"origin\" = 'JFK')",
    }
    # no rowFilter key at all (a JSON null would count as a filter in Rego)
    assert flights["roles"]["pii_reader"] == {"access": "read", "clearance": ["pii"]}
    assert flights["columns"]["tailnum"] == {"classification": "pii", "masking": "hash"}
    assert flights["columns"]["origin"] == {"classification": "public"}
    assert len(data["products"]) == 13


def test_users_file_becomes_trino_groups():
    users = load_users()
    assert users.groups_of("alice") == ("analyst",)
    assert users.groups_of("bob") == ()
    assert users.groups_of("carol") == ("analyst", "pii_reader")
    lines = group_file(users).splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["analyst:alice,carol", "pii_reader:carol", "platform:mesh"]


def test_build_writes_the_data_and_is_idempotent(tmp_path):
    first = build(tmp_path)
    assert first.changed and first.products == 13
    assert json.loads(first.data.read_text())["mesh"]["products"]["fleet.planes"]
    assert first.data == tmp_path / "opa" / "data.json"
    assert (tmp_path / "trino-groups.txt").read_text().count(":") == 3
    assert not build(tmp_path).changed


@pytest.mark.parametrize(
    "text,problem",
    [
        ("platform: {users: [mesh]}\nusers: {'al:ice': [analyst]}", "user name"),
        ("platform: {users: [mesh]}\nusers: {alice: [Analysts]}", "lower_snake_case"),
        ("users: {alice: [analyst]}", "platform"),
    ],
)
def test_users_file_errors(tmp_path, text, problem):
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(AccessConfigError, match=problem):
        load_users(path)


# --- validation: file, product, column in every message -------------------------------------


def _roles(doc, *roles):
    doc["roles"] = list(roles)
    return doc


@pytest.mark.parametrize(
    "mutate,message",
    [
        (
            lambda d: _roles(d, {"role": "Analysts", "access": "read"}),
            "role 'Analysts' must be lower_snake_case",
        ),
        (
            lambda d: _roles(d, {"role": "analyst", "access": "write"}),
            "role 'analyst': access 'write' is not supported",
        ),
        (lambda d: _roles(d, {"role": "analyst"}, {"role": "analyst"}), "role 'analyst' is declared twice"),
        (
            lambda d: _roles(
                d,
                {"role": "analyst", "customProperties": [{"property": "clearance", "value": ["top_secret"]}]},
            ),
            "clearance ['top_secret']",
        ),
        (
            lambda d: _roles(
                d, {"role": "analyst", "customProperties": [{"property": "filter", "value": "x = 1"}]}
            ),
            "unknown customProperties ['filter']",
        ),
        (
            lambda d: _roles(
                d,
                {
                    "role": "analyst",
                    "customProperties": [{"property": "rowFilter", "value": "origin = 'JFK'"}],
                },
            ),
            "rowFilter \"origin = 'JFK'\" names column 'origin', which the product does not have",
        ),
        (
            lambda d: _roles(
                d,
                {
                    "role": "analyst",
                    "customProperties": [{"property": "rowFilter", "value": "lower(type) = 'x'"}],
                },
            ),
            "calls function 'lower'",
        ),
    ],
)
def test_bad_roles_are_refused_with_file_and_product(planes_doc, write_contract, mutate, message):
    path = write_contract(mutate(planes_doc))
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert message in str(err.value)
    assert str(path) in str(err.value) and "product planes" in str(err.value)


@pytest.mark.parametrize(
    "name,classification,masking,message",
    [
        ("year", "secret", None, "classification 'secret' is unknown"),
        ("year", "public", "hash", "masking applies to confidential and pii columns"),
        ("year", "pii", "hash", "masking 'hash' needs a text column"),
        ("model", "pii", "scramble", "masking 'scramble' is unknown"),
    ],
)
def test_bad_column_access_is_refused_with_the_column(
    planes_doc, write_contract, name, classification, masking, message
):
    col = column(planes_doc, name)
    col["classification"] = classification
    if masking:
        col["customProperties"] = [{"property": "masking", "value": masking}]
    path = write_contract(planes_doc)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert message in str(err.value)
    assert f"column {name}" in str(err.value) and "product planes" in str(err.value)


def test_masking_methods_and_defaults(planes_doc, write_contract):
    column(planes_doc, "model")["classification"] = "pii"
    column(planes_doc, "model")["customProperties"] = [{"property": "masking", "value": "partial"}]
    column(planes_doc, "manufacturer")["classification"] = "confidential"  # text: default null
    column(planes_doc, "seats")["classification"] = "pii"  # number: default null
    column(planes_doc, "engine")["classification"] = "pii"
    column(planes_doc, "engine")["customProperties"] = [{"property": "masking", "value": None}]
    product = load_contract(write_contract(planes_doc))
    assert {c.name: c.masking for c in product.columns if c.masking} == {
        "tailnum": "hash",
        "model": "partial",
        "manufacturer": "null",
        "seats": "null",
        "engine": "null",
    }


# --- row filters: parsed, checked, re-rendered ----------------------------------------------

COLUMNS = ["origin", "dest", "dep_delay", "time_hour", "carrier"]


@pytest.mark.parametrize(
    "text,rendered",
    [
        ("origin = 'JFK'", "(\"origin\" = 'JFK')"),
        (
            "origin in ('JFK', 'LGA') and dep_delay > 10.5",
            "((\"origin\" IN ('JFK', 'LGA')) AND (\"dep_delay\" > 10.5))",
        ),
        ("dest = 'O''Hare'", "(\"dest\" = 'O''Hare')"),
        ("not (carrier like 'U%') or dest is null", '((NOT ("carrier" LIKE \'U%\')) OR ("dest" IS NULL))'),
        ("carrier not like 'U%'", "(\"carrier\" NOT LIKE 'U%')"),
        ("time_hour >= DATE '2013-06-01'", "(\"time_hour\" >= DATE '2013-06-01')"),
        ("dep_delay between -5 and 2.25", '("dep_delay" BETWEEN -5 AND 2.25)'),
    ],
)
def test_row_filters_are_rendered_again_with_quoted_identifiers(text, rendered):
    assert canonical(text, COLUMNS) == rendered


@pytest.mark.parametrize(
    "text,problem",
    [
        ("origin = 'JFK'; DROP TABLE operations.flights", "no ';'"),
        ("origin = 'JFK' OR 1=1 --", "no comments"),
        ("origin = (select max(origin) from operations.flights)", "subquery"),
        ("origin IN (SELECT faa FROM reference.airports)", "subquery"),
        ("t.origin = 'JFK'", "bare column name"),
        ("password = 'x'", "which the product does not have"),
        ("read_text('/etc/passwd') = ''", "calls function"),
        ("origin = 'JFK' UNION SELECT 1", "must be one predicate"),
        ("origin = 'JFK' AND", "not valid SQL"),
        ("", "non-empty"),
    ],
)
def test_hostile_row_filters_are_refused(text, problem):
    with pytest.raises(FilterError, match=problem):
        canonical(text, COLUMNS)
