"""Ingestion into a real Iceberg table (SQLite catalog, file warehouse) in a temporary MESH_HOME."""

import pytest
from meshtest import land
from pyiceberg.exceptions import NoSuchTableError

from mesh_assets.iceberg.catalog import TABLE_PROPERTIES, open_catalog
from mesh_assets.ingest.assets import ingest
from mesh_assets.ingest.readers import IngestionError
from mesh_assets.workspace import load_contract

GOOD = "faa,name,lat,lon,alt,tz,dst,tzone\nJFK,John F Kennedy Intl,40.64,-73.78,13,-5,A,America/New_York\n"


@pytest.fixture
def airports(reference_dir):
    return load_contract(reference_dir / "products" / "airports.yaml")


def test_real_file_is_ingested_and_reingesting_is_idempotent(mesh_home, airports):
    land(mesh_home, "reference", "airports.csv")
    catalog = open_catalog()
    first = ingest(airports, catalog).table
    assert first.scan().to_arrow().num_rows == 1458
    second = ingest(airports, catalog).table
    assert second.current_snapshot().snapshot_id != first.current_snapshot().snapshot_id
    assert second.scan().to_arrow().num_rows == 1458  # replaced, not appended
    summary = second.current_snapshot().summary.additional_properties
    assert summary["mesh.source.file"] == "airports.csv"
    assert len(summary["mesh.source.sha256"]) == 64


@pytest.mark.parametrize(
    "header,column,problem",
    [
        ("faa,name,lat,lon,alt,tz,dst", "tzone", "has no column 'tzone'"),
        ("faa,name,lat,lon,alt,tz,dst,tzone,iata", "iata", "does not declare"),
    ],
)
def test_columns_must_match_the_contract(mesh_home, airports, header, column, problem):
    row = "JFK,John F Kennedy Intl,40.64,-73.78,13,-5,A" + (",America/New_York" * (header.count(",") - 6))
    path = land(mesh_home, "reference", "airports.csv", f"{header}\n{row}\n")
    with pytest.raises(IngestionError) as err:
        ingest(airports, open_catalog())
    message = str(err.value)
    assert str(path) in message and "reference.airports" in message
    assert f"column {column}" in message and problem in message
    with pytest.raises(NoSuchTableError):  # nothing was written, not even an empty table
        open_catalog().load_table("reference.airports")


def test_unparseable_value_names_the_column(mesh_home, airports):
    land(
        mesh_home,
        "reference",
        "airports.csv",
        GOOD + "LGA,La Guardia,40.77,-73.87,high,-5,A,America/New_York\n",
    )
    with pytest.raises(IngestionError) as err:
        ingest(airports, open_catalog())
    message = str(err.value)
    assert message.endswith(
        "reference.airports, column alt: line 3: value 'high' is not a valid int (optionally signed "
        "decimal digits within the int range (no hex, underscores, exponent or fraction)); fix the "
        "file, or set 'quarantine: true' in the contract to set such rows aside"
    )
    assert "LGA" not in message  # only the offending value, never the whole row


def test_null_in_required_column_is_refused(mesh_home, airports):
    land(mesh_home, "reference", "airports.csv", GOOD + "LGA,,40.77,-73.87,22,-5,A,America/New_York\n")
    with pytest.raises(IngestionError, match="column name: line 3: required value is missing; fix the file"):
        ingest(airports, open_catalog())


def test_failed_write_leaves_the_previous_snapshot(mesh_home, airports, monkeypatch):
    # files (whole row groups) of 10 rows with FILE_ROWS below: written before the error surfaces
    monkeypatch.setitem(TABLE_PROPERTIES, "write.parquet.row-group-limit", "10")
    land(mesh_home, "reference", "airports.csv")
    catalog = open_catalog()
    before = ingest(airports, catalog).table.current_snapshot().snapshot_id
    # A bad row far into the file: the first batches stream into the transaction before the
    # error surfaces, so this exercises the atomic commit, not the up-front checks.
    monkeypatch.setattr("mesh_assets.ingest.readers.BATCH_BYTES", 4096)
    monkeypatch.setattr("mesh_assets.iceberg.datafiles.FILE_ROWS", 10)
    good = (mesh_home / "landing" / "reference" / "airports.csv").read_text()
    land(mesh_home, "reference", "airports.csv", good + "ZZZ,Broken,north,-73.8,1,-5,A,America/New_York\n")
    with pytest.raises(IngestionError, match="column lat"):
        ingest(airports, catalog)
    table = catalog.load_table("reference.airports")
    assert table.current_snapshot().snapshot_id == before
    assert table.scan().to_arrow().num_rows == 1458


def test_missing_landing_file_says_what_to_do(mesh_home, airports):
    with pytest.raises(IngestionError, match="missing from the landing folder.*mesh land"):
        ingest(airports, open_catalog())
