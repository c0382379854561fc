"""Contracts: parsing, what is derived from them, and the errors bad ones produce."""

from pathlib import Path

import pytest
import yaml
from pyiceberg import types as it

from mesh_assets.asset_specs import asset_spec
from mesh_assets.contract.errors import ContractError
from mesh_assets.quality.checks import check_specs
from mesh_assets.workspace import load_contract, load_domain_contracts


def _write(tmp_path: Path, doc: dict, name: str = "airlines") -> Path:
    path = tmp_path / "reference" / "products" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def airlines_doc(reference_dir) -> dict:
    return yaml.safe_load((reference_dir / "products" / "airlines.yaml").read_text())


def test_reference_contracts_parse(reference_dir):
    products = {p.name: p for p in load_domain_contracts(reference_dir)}
    assert set(products) == {"airlines", "airports", "timezones"}
    airports = products["airports"]
    assert airports.identifier == "reference.airports"
    assert airports.asset_key_path == ["reference", "airports"]
    assert airports.owner == "reference-data-team"
    assert airports.primary_key == ("faa",)
    assert airports.source["file"] == "airports.csv"
    assert products["timezones"].transform == "dbt"


def test_iceberg_schema_is_derived_from_the_contract(reference_dir):
    airports = load_contract(reference_dir / "products" / "airports.yaml")
    schema = airports.iceberg_schema()
    fields = {f.name: f for f in schema.fields}
    assert [f.name for f in schema.fields] == ["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"]
    assert fields["faa"].required and fields["faa"].field_type == it.StringType()
    assert fields["lat"].field_type == it.DoubleType() and fields["lat"].required
    assert fields["alt"].field_type == it.IntegerType() and not fields["alt"].required
    assert fields["faa"].doc == "FAA airport code."
    assert schema.identifier_field_ids == [fields["faa"].field_id]
    arrow = airports.arrow_schema()
    assert not arrow.field("faa").nullable and arrow.field("alt").nullable


def test_asset_spec_is_derived_from_the_contract(reference_dir):
    airports = load_contract(reference_dir / "products" / "airports.yaml")
    spec = asset_spec(airports, kinds={"iceberg"})
    assert spec.key.path == ["reference", "airports"]
    assert spec.group_name == "reference"
    assert spec.owners == ["team:reference-data-team"]
    assert spec.description.startswith("One row per airport")
    assert spec.tags["mesh/contract_version"] == "1.0.0"
    assert "classification/public" in spec.tags
    columns = {c.name: c for c in spec.metadata["dagster/column_schema"].columns}
    assert columns["lat"].type == "double"
    assert columns["faa"].constraints.nullable is False
    assert columns["faa"].constraints.unique is True
    assert columns["alt"].constraints.nullable is True


def test_checks_are_derived_from_the_contract(reference_dir):
    airlines = load_contract(reference_dir / "products" / "airlines.yaml")
    rules = {r.name: r for r in airlines.rules}
    assert set(rules) == {
        "not_null_carrier",
        "not_null_name",
        "unique_carrier",
        "row_count_between",
        "match_regex_carrier",
        "not_shrunk",
    }
    assert rules["not_null_carrier"].expectation == "expect_column_values_to_not_be_null"
    assert rules["row_count_between"].kwargs == {"min_value": 10, "max_value": 100}
    assert rules["not_shrunk"].expectation == "expect_table_row_count_to_not_shrink"
    assert rules["not_shrunk"].kwargs == {"max_shrink_percent": 50.0}  # the platform default
    assert rules["match_regex_carrier"].kwargs == {"regex": "^[A-Z0-9]{2}$", "column": "carrier"}
    specs = {s.name: s for s in check_specs(airlines)}
    assert set(specs) == set(rules)
    assert all(s.blocking for s in specs.values())
    airports = load_contract(reference_dir / "products" / "airports.yaml")
    alt = next(s for s in check_specs(airports) if s.name == "mean_between_alt")
    assert alt.blocking is False  # severity warn


def test_compound_primary_key_becomes_a_compound_uniqueness_rule(tmp_path, airlines_doc):
    props = airlines_doc["schema"][0]["properties"]
    props[1]["primaryKey"], props[1]["primaryKeyPosition"] = True, 2
    product = load_contract(_write(tmp_path, airlines_doc))
    assert product.primary_key == ("carrier", "name")
    rule = next(r for r in product.rules if r.name == "compound_unique_carrier_name")
    assert rule.kwargs == {"column_list": ["carrier", "name"]}


def test_unknown_type_names_file_product_and_column(tmp_path, airlines_doc):
    airlines_doc["schema"][0]["properties"][1]["physicalType"] = "varchar2000"
    path = _write(tmp_path, airlines_doc)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert str(path) in message and "product airlines" in message and "column name" in message
    assert "unknown type 'varchar2000'" in message


@pytest.mark.parametrize(
    "field,reported",
    [
        ("domain", "missing required field 'domain' (the platform needs domain, dataProduct and schema)"),
        ("version", "not a valid ODCS v3 contract at (top level): 'version' is a required property"),
        ("team", "missing owner: set team.name"),
    ],
)
def test_missing_required_field_is_reported(tmp_path, airlines_doc, field, reported):
    del airlines_doc[field]
    path = _write(tmp_path, airlines_doc)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    assert str(err.value).startswith(f"contract {path}, product airlines: {reported}")


def test_not_an_odcs_document(tmp_path, airlines_doc):
    airlines_doc["kind"] = "Table"
    with pytest.raises(ContractError, match="not a valid ODCS v3 contract at kind"):
        load_contract(_write(tmp_path, airlines_doc))


def test_missing_logical_type_names_the_column(tmp_path, airlines_doc):
    del airlines_doc["schema"][0]["properties"][0]["logicalType"]
    with pytest.raises(ContractError, match="column carrier: missing 'logicalType'"):
        load_contract(_write(tmp_path, airlines_doc))


def test_rule_on_undeclared_column(tmp_path, airlines_doc):
    airlines_doc["schema"][0]["quality"].append(
        {
            "type": "custom",
            "engine": "great-expectations",
            "implementation": {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "iata"}},
        }
    )
    with pytest.raises(ContractError, match="column iata: .*does not declare"):
        load_contract(_write(tmp_path, airlines_doc))


def test_unknown_expectation(tmp_path, airlines_doc):
    airlines_doc["schema"][0]["quality"].append(
        {
            "type": "custom",
            "engine": "great-expectations",
            "implementation": {"type": "expect_the_unexpected", "kwargs": {}},
        }
    )
    with pytest.raises(ContractError, match="unknown expectation 'expect_the_unexpected'"):
        load_contract(_write(tmp_path, airlines_doc))


def test_file_name_must_match_product(tmp_path, airlines_doc):
    with pytest.raises(ContractError, match="must match the file name"):
        load_contract(_write(tmp_path, airlines_doc, name="carriers"))


def test_contract_in_the_wrong_domain_folder(tmp_path, airlines_doc):
    with pytest.raises(ContractError, match="lives in domain 'fleet'"):
        load_contract(_write(tmp_path, airlines_doc), domain="fleet")


def test_dbt_rule_on_an_ingested_product_is_a_dbt_source_test(tmp_path, airlines_doc):
    from mesh_assets.dbt.project import contract_yaml

    airlines_doc["schema"][0]["properties"][0]["quality"].append(
        {
            "type": "custom",
            "engine": "dbt",
            "severity": "warn",
            "implementation": {"accepted_values": {"values": ["AA"]}},
        }
    )
    product = load_contract(_write(tmp_path, airlines_doc))
    [source] = contract_yaml(product.domain, [product])["sources"]
    column = source["tables"][0]["columns"][0]
    assert column["data_tests"] == [
        {"accepted_values": {"arguments": {"values": ["AA"]}, "config": {"severity": "warn"}}}
    ]


def _with_custom(doc: dict, **values) -> dict:
    custom = {c["property"]: c for c in doc["customProperties"]}
    for key, value in values.items():
        custom[key] = {"property": key, "value": value}
    return {**doc, "customProperties": list(custom.values())}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ({"file": "/etc/passwd"}, "source file '/etc/passwd' is an absolute path"),
        ({"file": "../fleet/planes.csv"}, "source file '../fleet/planes.csv' leaves or repeats folders"),
        ({"file": "a/./b.csv"}, "leaves or repeats folders"),
        ({"file": ".airlines.csv"}, "names a hidden file"),
        ({"file": "airlines.csv.part"}, "ends with one of .part, .tmp, .done"),
        ({"file": "air\nlines.csv"}, "holds a control character or a backslash"),
        ({"file": "airlines.csv", "settleSeconds": -1}, "settleSeconds -1 must be a number of seconds"),
        ({"file": "airlines.csv", "settleSeconds": "5s"}, "settleSeconds '5s' must be a number of seconds"),
        (
            {"file": "airlines.csv", "timezone": "Mars/Olympus"},
            "source timezone 'Mars/Olympus' is not a known time zone",
        ),
        ({"file": "airlines.csv", "settleSecond": 5}, "source has unknown key(s) settleSecond"),
        ({"file": "airlines.csv", "format": "xlsx"}, "source format 'xlsx' is not supported"),
    ],
)
def test_source_settings_are_checked(tmp_path, airlines_doc, source, problem):
    with pytest.raises(ContractError) as caught:
        load_contract(_write(tmp_path, _with_custom(airlines_doc, source=source)))
    assert problem in str(caught.value)
    assert "product airlines" in str(caught.value)


def test_source_settings_reach_the_product(tmp_path, airlines_doc):
    doc = _with_custom(
        airlines_doc,
        source={"file": "sub/airlines.csv.gz", "settleSeconds": 0.5, "timezone": "America/New_York"},
        maxShrinkPercent=10,
    )
    product = load_contract(_write(tmp_path, doc))
    assert (product.settle_seconds, product.timezone, product.max_shrink_percent) == (
        0.5,
        "America/New_York",
        10,
    )
    assert next(r for r in product.rules if r.name == "not_shrunk").kwargs == {"max_shrink_percent": 10}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"maxShrinkPercent": 150}, "maxShrinkPercent 150 must be a number from 0 to 100"),
        ({"maxShrinkPercent": True}, "maxShrinkPercent True must be a number from 0 to 100"),
    ],
)
def test_max_shrink_percent_is_checked(tmp_path, airlines_doc, extra, problem):
    with pytest.raises(ContractError, match=problem):
        load_contract(_write(tmp_path, _with_custom(airlines_doc, **extra)))


def test_max_shrink_percent_only_on_a_full_refresh(tmp_path, reference_dir):
    weather = yaml.safe_load(
        (reference_dir.parent / "weather" / "products" / "observations.yaml").read_text()
    )
    path = tmp_path / "weather" / "products" / "observations.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(_with_custom(weather, maxShrinkPercent=10)))
    with pytest.raises(
        ContractError, match="maxShrinkPercent applies to ingested products without dagsterPartitions"
    ):
        load_contract(path)


def test_allow_non_finite_only_on_float_columns(tmp_path, airlines_doc):
    carrier = airlines_doc["schema"][0]["properties"][0]
    carrier["customProperties"] = [{"property": "allowNonFinite", "value": True}]
    with pytest.raises(
        ContractError, match="allowNonFinite applies to float and double columns; this one is string"
    ):
        load_contract(_write(tmp_path, airlines_doc))


def test_names_with_a_trailing_newline_are_refused(tmp_path, airlines_doc):
    airlines_doc["schema"][0]["properties"][0]["name"] = "carrier\n"
    with pytest.raises(ContractError, match="column names must be lower_snake_case"):
        load_contract(_write(tmp_path, airlines_doc))


# --- streaming products (source format kafka) ---------------------------------------------------

KAFKA = {"format": "kafka", "topic": "reference.airlines", "key": "carrier"}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ({**KAFKA, "topic": "a topic"}, "kafka source topic 'a topic' is not a Kafka topic name"),
        ({**KAFKA, "key": "code"}, "kafka source key 'code' is not a column of the contract"),
        ({**KAFKA, "valueFormat": "protobuf"}, "kafka source valueFormat 'protobuf' is not supported"),
        ({**KAFKA, "mode": "merge"}, "kafka source mode 'merge' is not supported"),
        (
            {**KAFKA, "key": "name", "mode": "upsert"},
            "mode upsert needs 'key' to be the product's one-column primary key (key: 'name', primary key: ['carrier'])",
        ),
        ({**KAFKA, "maxRecords": 0}, "kafka source maxRecords 0 must be a whole number from 1 to 1,000,000"),
        ({**KAFKA, "maxSeconds": "5s"}, "kafka source maxSeconds '5s' must be a number of seconds above 0"),
        ({**KAFKA, "file": "airlines.csv"}, "kafka source has unknown key(s) file"),
    ],
)
def test_kafka_source_settings_are_checked(tmp_path, airlines_doc, source, problem):
    with pytest.raises(ContractError) as caught:
        load_contract(_write(tmp_path, _with_custom(airlines_doc, source=source)))
    assert problem in str(caught.value)
    assert "product airlines" in str(caught.value)


def test_kafka_source_reaches_the_product(tmp_path, airlines_doc):
    source = {**KAFKA, "mode": "upsert", "maxRecords": 500, "maxSeconds": 2}
    product = load_contract(_write(tmp_path, _with_custom(airlines_doc, source=source)))
    stream = product.stream
    assert (stream.topic, stream.key, stream.value_format, stream.mode) == (
        "reference.airlines",
        "carrier",
        "json",
        "upsert",
    )
    assert (stream.max_records, stream.max_seconds) == (500, 2.0)
    assert not product.landing_source
    defaults = load_contract(_write(tmp_path, _with_custom(airlines_doc, source=KAFKA))).stream
    assert (defaults.mode, defaults.max_records, defaults.max_seconds) == ("append", 10_000, 5.0)
    assert load_contract(_write(tmp_path, airlines_doc)).stream is None
