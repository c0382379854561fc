"""Time travel, rollback, tags, the read API and the query command on real snapshots."""

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from meshtest import land

from mesh_assets import cli
from mesh_assets.access import audit
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.versions import VersionError, history, resolve_as_of
from mesh_assets.iceberg.wap import main_history, open_audit_branch, tag_checked
from mesh_assets.ingest.assets import ingest
from mesh_assets.read_api import read
from mesh_assets.workspace import load_contract

MESH = str(Path(sys.executable).parent / "mesh")
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


def test_rollback_to_a_checked_version_is_recorded(versions, monkeypatch, capsys):
    v1, v2, _ = versions
    monkeypatch.setenv("MESH_USER", "ops-alice")
    table = open_catalog().load_table("reference.airlines")
    tag_checked(table, v1, "abcdef123456")
    assert cli.main(["rollback", "reference.airlines", "checked-abcdef12"]) == 0
    assert f"reference.airlines now reads snapshot {v1} (rollback snapshot" in capsys.readouterr().out
    table = open_catalog().load_table("reference.airlines")
    marker = table.current_snapshot()
    assert marker.parent_snapshot_id == v1 and len(table.scan().to_arrow()) == 16
    summary = marker.summary.additional_properties
    assert {
        k: v for k, v in summary.items() if k.startswith("mesh.rollback.") and k != "mesh.rollback.at"
    } == {
        "mesh.rollback.to": str(v1),
        "mesh.rollback.from": str(v2),
        "mesh.rollback.user": "ops-alice",
        "mesh.rollback.reason": "",
        "mesh.rollback.forced": "false",
    }
    assert len(read("reference.airlines", as_of=v2)) == 10  # the newer version stays readable
    assert table.metadata.refs["last-checked"].snapshot_id == v1
    entry = [d for d in audit.read_local() if d.operation == "Rollback"][-1]
    assert (entry.user, entry.product, entry.decision, entry.source) == (
        "ops-alice",
        "reference.airlines",
        "allow",
        "mesh",
    )
    assert entry.detail["restored"] == str(v1) and entry.detail["previous"] == str(v2)


def test_rollback_to_unchecked_data_is_refused_unless_forced_with_a_reason(versions, monkeypatch, capsys):
    v1, v2, _ = versions
    monkeypatch.setenv("MESH_USER", "ops-bob")
    table = open_catalog().load_table("reference.airlines")
    tag_checked(table, v2, "abcdef123456")  # main's data passed its checks ...
    table = open_audit_branch(table.refresh(), "audit-deadbeef")  # ... a run's data did not
    rows = pa.table({"carrier": ["ZZ"], "name": ["rejected"]}, schema=table.schema().as_arrow())
    table.append(rows, branch="audit-deadbeef")
    rejected = table.refresh().metadata.refs["audit-deadbeef"].snapshot_id

    with pytest.raises(SystemExit) as refused:
        cli.main(["rollback", "reference.airlines", "audit-deadbeef"])
    assert refused.value.code == (
        f"mesh: table reference.airlines: snapshot {rejected} ('audit-deadbeef') never passed the blocking "
        "checks (no checked-<run> or last-checked tag points at it); rolling back to it would make unchecked "
        "data current. Roll back to a checked snapshot (`mesh history reference.airlines` shows the tags), "
        "or force it on record: --force --reason TEXT"
    )
    with pytest.raises(SystemExit, match="a forced rollback needs a reason"):
        cli.main(["rollback", "reference.airlines", "audit-deadbeef", "--force"])
    assert open_catalog().load_table("reference.airlines").current_snapshot().snapshot_id == v2  # unchanged
    assert [d.decision for d in audit.read_local() if d.operation == "Rollback"] == ["deny", "deny"]

    args = ["rollback", "reference.airlines", "audit-deadbeef", "--force", "--reason", "incident 42: replay"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"warning: snapshot {rejected} never passed the blocking checks; consumers now read it" in out
    table = open_catalog().load_table("reference.airlines")
    summary = table.current_snapshot().summary.additional_properties
    assert summary["mesh.rollback.to"] == str(rejected) and summary["mesh.rollback.forced"] == "true"
    assert (summary["mesh.rollback.user"], summary["mesh.rollback.reason"]) == (
        "ops-bob",
        "incident 42: replay",
    )
    assert read("reference.airlines").num_rows == 11
    # last-checked never points at unchecked data: the newest checked snapshot main still has
    assert table.metadata.refs["last-checked"].snapshot_id == v2 and v2 in main_history(table)
    forced = [d for d in audit.read_local() if d.operation == "Rollback"][-1]
    assert (forced.decision, forced.user, forced.detail["reason"]) == (
        "forced",
        "ops-bob",
        "incident 42: replay",
    )
    assert forced.detail["restored"] == str(rejected)


def test_unknown_versions_are_errors_naming_the_product_and_what_it_has(versions):
    v1, _, _ = versions
    tag_checked(open_catalog().load_table("reference.airlines"), v1, "abcdef123456")
    with pytest.raises(VersionError) as unknown_tag:
        read("reference.airlines", as_of="no-such-tag")
    assert str(unknown_tag.value).startswith(
        "table reference.airlines: 'no-such-tag' is neither a snapshot id, a tag or branch, nor an ISO "
        f"timestamp; tags: checked-abcdef12, last-checked; {len(history(open_catalog().load_table('reference.airlines')))} snapshot(s) from "
    )
    assert str(unknown_tag.value).endswith("(`mesh history reference.airlines` lists every version)")
    with pytest.raises(VersionError, match=r"^table reference.airlines: no snapshot 12345; tags: "):
        read("reference.airlines", as_of=12345)
    with pytest.raises(VersionError, match=r"no snapshot existed at 2001-01-01T00:00:00\+00:00; tags: "):
        read("reference.airlines", as_of="2001-01-01")


@pytest.mark.parametrize(
    "as_of,message",
    [
        ("no-such-tag", "mesh: --as-of no-such-tag: table reference.airlines: 'no-such-tag' is neither"),
        ("12345", "mesh: --as-of 12345: table reference.airlines: no snapshot 12345; tags: none;"),
        ("2001-01-01", "mesh: --as-of 2001-01-01: table reference.airlines: no snapshot existed at 2001"),
    ],
)
def test_query_command_fails_on_an_unknown_version(versions, as_of, message):
    sql = "select count(*) as n from reference.airlines"
    proc = subprocess.run([MESH, "query", sql, "--as-of", as_of], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_query_command_time_travels(versions, capsys):
    v1, _, _ = versions
    sql = "select count(*) as n from reference.airlines"
    assert cli.main(["query", sql, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "10"]
    assert cli.main(["query", sql, "--as-of", str(v1), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "16"]
