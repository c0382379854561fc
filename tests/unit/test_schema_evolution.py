"""The schema evolution matrix, on real Iceberg tables: additive changes are applied and old
data still reads; breaking changes are refused with their message and change nothing; a new
major version gets its own table while the old one stays readable."""

import dataclasses

import pyarrow as pa
import pytest
from pyiceberg import types as it

from mesh_assets import cli
from mesh_assets.contract.model import Column
from mesh_assets.iceberg.catalog import evolve_table, open_catalog
from mesh_assets.iceberg.schema import BreakingSchemaChange, contract_diff
from mesh_assets.workspace import load_contract


@pytest.fixture
def airports(reference_dir, mesh_home):
    product = load_contract(reference_dir / "products" / "airports.yaml")
    table, applied = evolve_table(open_catalog(), product)
    assert applied == []
    table.append(
        pa.table(
            {
                "faa": ["JFK"],
                "name": ["John F Kennedy Intl"],
                "lat": [40.6],
                "lon": [-73.8],
                "alt": [13],
                "tz": [-5],
                "dst": ["A"],
                "tzone": ["America/New_York"],
            },
            schema=product.arrow_schema(),
        )
    )
    return product


def _with(product, version=None, **changes):
    columns = []
    for c in product.columns:
        if c.name in changes:
            if changes[c.name] is None:
                continue
            c = dataclasses.replace(c, **changes[c.name])
        columns.append(c)
    columns += [c for c in changes.get("_add", [])]
    return dataclasses.replace(product, columns=tuple(columns), version=version or product.version)


ADDITIVE = [
    (
        "new optional column",
        {"_add": [Column("elevation_m", it.DoubleType(), description="metres")]},
        "+ column elevation_m (double, optional): additive",
        lambda s: s.find_field("elevation_m").field_type == it.DoubleType(),
    ),
    (
        "int -> long",
        {"alt": {"type": it.LongType()}},
        "~ column alt: int -> long: additive",
        lambda s: s.find_field("alt").field_type == it.LongType(),
    ),
    (
        "required -> optional",
        {"name": {"required": False}},
        "~ column name: required -> optional: additive",
        lambda s: not s.find_field("name").required,
    ),
    (
        "new description",
        {"tz": {"description": "UTC offset, hours"}},
        "~ column tz: description changed: additive",
        lambda s: s.find_field("tz").doc == "UTC offset, hours",
    ),
]


@pytest.mark.parametrize("label,changes,described,check", ADDITIVE, ids=[a[0] for a in ADDITIVE])
def test_additive_change_is_applied(airports, label, changes, described, check):
    table, applied = evolve_table(open_catalog(), _with(airports, **changes))
    assert applied == [described]
    assert check(table.schema())
    rows = table.scan().to_arrow().to_pylist()  # data written before the change still reads
    assert len(rows) == 1 and rows[0]["faa"] == "JFK"


def test_float_to_double_is_additive(mesh_home, airports):
    base = _with(airports, version="1.0.0", lat={"type": it.FloatType()})
    catalog = open_catalog()
    catalog.drop_table("reference.airports")
    evolve_table(catalog, base)
    table, applied = evolve_table(catalog, _with(base, lat={"type": it.DoubleType()}))
    assert applied == ["~ column lat: float -> double: additive"]


BREAKING = [
    ("drop", {"tzone": None}, "- column tzone (string) dropped: breaking", "tzone"),
    (
        "rename",
        {"tzone": None, "_add": [Column("time_zone", it.StringType())]},
        "a rename shows as a drop plus an add",
        "tzone",
    ),
    ("narrowing", {"lat": {"type": it.FloatType()}}, "~ column lat: double -> float: breaking", "lat"),
    (
        "incompatible type",
        {"dst": {"type": it.IntegerType()}},
        "~ column dst: string -> int: breaking",
        "dst",
    ),
    (
        "new required column",
        {"_add": [Column("iata", it.StringType(), required=True)]},
        "+ column iata (string, required): breaking",
        "iata",
    ),
    (
        "optional -> required",
        {"alt": {"required": True}},
        "~ column alt: optional -> required: breaking",
        "alt",
    ),
]


@pytest.mark.parametrize("label,changes,message,column", BREAKING, ids=[b[0] for b in BREAKING])
def test_breaking_change_is_refused(airports, label, changes, message, column):
    catalog = open_catalog()
    before = catalog.load_table("reference.airports")
    with pytest.raises(BreakingSchemaChange) as err:
        evolve_table(catalog, _with(airports, **changes))
    text = str(err.value)
    assert message in text and column in text
    assert str(airports.path) in text and "product reference.airports" in text
    assert "set version 2.0.0" in text and "reference.airports_v2" in text
    after = catalog.load_table("reference.airports")
    assert after.schema() == before.schema() and after.metadata_location == before.metadata_location


def test_column_reorder_is_not_a_change(airports):
    reordered = dataclasses.replace(airports, columns=tuple(reversed(airports.columns)))
    assert contract_diff(open_catalog(), reordered).is_empty


def test_major_version_gets_its_own_table_and_the_old_one_stays(airports):
    v2 = _with(airports, version="2.0.0", tzone=None, alt={"type": it.LongType(), "required": False})
    catalog = open_catalog()
    table, applied = evolve_table(catalog, v2)
    assert ".".join(table.name()) == "reference.airports_v2" and applied == []
    assert "tzone" not in [f.name for f in table.schema().fields]
    old = catalog.load_table("reference.airports")
    assert "tzone" in [f.name for f in old.schema().fields]
    assert old.scan().to_arrow().num_rows == 1  # consumers who have not moved still read v1


def test_contract_diff_command(airports, capsys, monkeypatch):
    assert cli.main(["contract", "diff", "reference.airports"]) == 0
    assert "no change" in capsys.readouterr().out


def test_partitioning_change_evolves_the_spec_and_keeps_old_files(airports):
    from mesh_assets.contract.partitions import PartitionField

    catalog = open_catalog()
    by_tz = dataclasses.replace(airports, partitioning=(PartitionField("tzone", "identity"),))
    table, applied = evolve_table(catalog, by_tz)
    assert applied == ["~ partitioning: unpartitioned -> [('tzone', 'identity')]: additive"]
    assert [f.name for f in table.spec().fields] == ["tzone"]
    table.append(
        pa.table(
            {
                "faa": ["LGA"],
                "name": ["La Guardia"],
                "lat": [40.7],
                "lon": [-73.8],
                "alt": [22],
                "tz": [-5],
                "dst": ["A"],
                "tzone": ["America/New_York"],
            },
            schema=airports.arrow_schema(),
        )
    )
    assert sorted(r["faa"] for r in table.scan().to_arrow().to_pylist()) == ["JFK", "LGA"]
    assert evolve_table(catalog, by_tz)[1] == []  # converged
