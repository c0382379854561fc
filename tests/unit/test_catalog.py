"""The catalog refuses tables that drifted from their contract; dbt output is held to its contract."""

import dataclasses

import pyarrow as pa
import pytest
from pyiceberg import types as it

from mesh_assets import cli
from mesh_assets.dbt.outputs import DbtContractError, conform_to_contract
from mesh_assets.iceberg.catalog import ensure_table, open_catalog
from mesh_assets.iceberg.schema import BreakingSchemaChange
from mesh_assets.workspace import load_contract


@pytest.fixture
def timezones(reference_dir):
    return load_contract(reference_dir / "products" / "timezones.yaml")


def test_table_is_created_from_the_contract_once(mesh_home, timezones):
    catalog = open_catalog()
    table = ensure_table(catalog, timezones)
    assert table.schema().find_field("airport_count").field_type == it.LongType()
    assert ensure_table(catalog, timezones).metadata_location == table.metadata_location


def test_breaking_drift_is_refused_and_a_table_can_be_dropped(mesh_home, timezones):
    catalog = open_catalog()
    ensure_table(catalog, timezones)
    changed = dataclasses.replace(timezones, columns=timezones.columns[:-1])
    with pytest.raises(BreakingSchemaChange) as err:
        ensure_table(catalog, changed)
    assert "reference.timezones" in str(err.value) and "max_altitude_ft" in str(err.value)
    assert cli.main(["drop", "reference.timezones"]) == 0
    assert not catalog.table_exists("reference.timezones")


def _model_output(**overrides):
    data = {
        "tzone": ["America/New_York"],
        "airport_count": [519],
        "utc_offset_hours": [-5],
        "observes_dst": [True],
        "mean_altitude_ft": [500.5],
        "max_altitude_ft": [4000],
    }
    data.update(overrides)
    return pa.table({k: v for k, v in data.items() if v is not None})


def test_model_output_is_cast_to_the_contract(timezones):
    out = conform_to_contract(_model_output(), timezones)
    assert out.schema.field("utc_offset_hours").type == pa.int32()
    assert not out.schema.field("tzone").nullable


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"max_altitude_ft": None}, "column max_altitude_ft: the model does not produce"),
        ({"extra": [1]}, "column extra: the model produces undeclared"),
        ({"tzone": [None]}, "column tzone: 1 null value"),
        ({"airport_count": ["many"]}, "types do not fit the contract"),
    ],
)
def test_model_output_violating_the_contract_is_refused(timezones, overrides, message):
    with pytest.raises(DbtContractError, match=message) as err:
        conform_to_contract(_model_output(**overrides), timezones)
    assert "reference.timezones" in str(err.value) and "timezones.yaml" in str(err.value)


def test_merge_strategy_upserts_on_the_unique_key(mesh_home, timezones):
    from mesh_assets.dbt.outputs import write_model_output

    table = ensure_table(open_catalog(), timezones)
    schema = timezones.arrow_schema()
    first = conform_to_contract(
        pa.table(
            {
                "tzone": ["A", "B"],
                "airport_count": [1, 2],
                "utc_offset_hours": [-5, -6],
                "observes_dst": [True, True],
                "mean_altitude_ft": [1.0, 2.0],
                "max_altitude_ft": [1, 2],
            }
        ),
        timezones,
    )
    write_model_output(table, first, {}, strategy="merge", unique_key="tzone")
    second = conform_to_contract(
        pa.table(
            {
                "tzone": ["B", "C"],
                "airport_count": [20, 3],
                "utc_offset_hours": [-6, -7],
                "observes_dst": [True, False],
                "mean_altitude_ft": [2.0, 3.0],
                "max_altitude_ft": [2, 3],
            }
        ),
        timezones,
    )
    write_model_output(table.refresh(), second, {}, strategy="merge", unique_key=["tzone"])
    rows = {r["tzone"]: r["airport_count"] for r in table.refresh().scan().to_arrow().to_pylist()}
    assert rows == {"A": 1, "B": 20, "C": 3}
    assert schema.names == list(second.column_names)
