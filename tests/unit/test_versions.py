"""Time travel, rollback, tags, the read API and the query command on real snapshots."""

import time
from datetime import UTC, datetime

import pytest
from meshtest import land

from mesh_assets import cli
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import VersionError, history, resolve_as_of
from mesh_assets.iceberg.wap import rollback, tag_checked
from mesh_assets.ingest.assets import ingest
from mesh_assets.read_api import read
from mesh_assets.workspace import load_contract

SMALL = "carrier,name\nAA,American Airlines Inc.\nUA,United Air Lines Inc.\n" + "".join(
    f"Z{i},Carrier {i}\n" for i in range(8)
)


@pytest.fixture
def versions(mesh_home, reference_dir):
    """airlines committed twice: v1 = the real 16 carriers, v2 = a 10-row file."""
    airlines = load_contract(reference_dir / "products" / "airlines.yaml")
    land(mesh_home, "reference", "airlines.csv")
    v1 = ingest(airlines, open_catalog(), run_id="run-one").table.current_snapshot()
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    land(mesh_home, "reference", "airlines.csv", SMALL)
    v2 = ingest(airlines, open_catalog(), run_id="run-two").table.current_snapshot()
    return v1.snapshot_id, v2.snapshot_id, between


def test_read_api_time_travels_by_id_tag_and_time(versions):
    v1, v2, between = versions
    assert len(read("reference.airlines")) == 10
    assert len(read("reference.airlines", as_of=v1)) == 16
    assert len(read("reference.airlines", as_of=between.isoformat())) == 16
    table = open_catalog().load_table("reference.airlines")
    tag_checked(table, v1, "abcdef123456")
    assert len(read("reference.airlines", as_of="last-checked")) == 16
    assert len(read("reference.airlines", as_of="checked-abcdef12")) == 16
    rows = read("reference.airlines", columns=["name"], filter="carrier == 'UA'", as_of=v1)
    assert rows.column_names == ["name"] and rows.to_pylist() == [{"name": "United Air Lines Inc."}]
    df = read("reference.airlines", pandas=True)
    assert list(df.columns) == ["carrier", "name"] and len(df) == 10


def test_unknown_version_is_a_clear_error(versions):
    table = open_catalog().load_table("reference.airlines")
    with pytest.raises(VersionError, match="reference.airlines: 'yesterday' is neither"):
        resolve_as_of(table, "yesterday")
    with pytest.raises(VersionError, match="no snapshot existed at 2001"):
        resolve_as_of(table, "2001-01-01T00:00:00")


def test_history_names_the_run_behind_each_snapshot(versions):
    v1, v2, _ = versions
    rows = history(open_catalog().load_table("reference.airlines"))
    by_id = {r["snapshot_id"]: r for r in rows}
    assert by_id[v1]["run_id"] == "run-one" and by_id[v1]["rows"] == 16
    assert by_id[v2]["run_id"] == "run-two" and by_id[v2]["current"]


def test_rollback_restores_a_past_version(versions, capsys):
    v1, v2, _ = versions
    assert cli.main(["rollback", "reference.airlines", str(v1)]) == 0
    table = open_catalog().load_table("reference.airlines")
    assert table.current_snapshot().snapshot_id == v1
    assert len(table.scan().to_arrow()) == 16
    assert len(read("reference.airlines", as_of=v2)) == 10  # newer version still readable
    rollback(table, v2)
    assert len(read("reference.airlines")) == 10


def test_query_command_time_travels(versions, capsys):
    v1, _, _ = versions
    sql = "select count(*) as n from reference.airlines"
    assert cli.main(["query", sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "10"]
    assert cli.main(["query", sql, "--as-of", str(v1), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "16"]
