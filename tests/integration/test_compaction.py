"""Compaction on the embedded default (``mesh_assets.iceberg.maintenance.compact``, run by
``maintain``): many small appends become one file per partition and one manifest, the rows
read the same, a tag still travels back to what it saw, and an open audit branch stops it."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from mesh_assets.iceberg import maintenance
from mesh_assets.iceberg.catalog import ensure_table, open_catalog
from mesh_assets.iceberg.commit import INPUTS_PROPERTY, RUN_ID_PROPERTY, transaction
from mesh_assets.iceberg.maintenance import COMPACTED_PROPERTY, RunState, compact, maintain
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_contract

APPENDS = 12  # two rows each, one per partition (month(time_hour), origin): 24 small files


def _rows(table, **scan) -> list[tuple]:
    rows = table.scan(**scan).to_arrow().select(["origin", "time_hour", "temp"]).to_pylist()
    return sorted((r["origin"], r["time_hour"], r["temp"]) for r in rows)


def _manifests(table) -> int:
    return len(table.current_snapshot().manifests(table.io))


@pytest.fixture
def observations(mesh_home):
    """weather.observations (partitioned by month and origin) after APPENDS appends of two
    rows, all in January 2013; tag ``sixth`` marks the snapshot after the sixth append."""
    product = load_contract(DOMAINS_DIR / "weather" / "products" / "observations.yaml")
    table = ensure_table(open_catalog(), product)
    schema = product.arrow_schema()
    for i in range(APPENDS):
        data = {f.name: pa.nulls(2, f.type) for f in schema}
        data |= {
            "origin": pa.array(["EWR", "JFK"], schema.field("origin").type),
            "time_hour": pa.array([datetime(2013, 1, 1 + i, h, tzinfo=UTC) for h in (0, 1)]),
            "temp": pa.array([i + 0.25, i + 0.5]),
        }
        provenance = {RUN_ID_PROPERTY: f"run-{i}", INPUTS_PROPERTY: "{}"}
        table.append(pa.table(data).cast(schema), snapshot_properties=provenance)
        if i == 5:
            table.manage_snapshots().create_tag(table.current_snapshot().snapshot_id, "sixth").commit()
    return product, open_catalog().load_table(product.table_identifier)


def test_small_files_and_manifests_are_compacted_and_read_the_same(observations, monkeypatch):
    _, table = observations
    opened = []  # the platform's transactions compaction opened (metadata computed once per change)
    monkeypatch.setattr(maintenance, "transaction", lambda live: opened.append(live) or transaction(live))
    assert table.properties["commit.manifest-merge.enabled"] == "true"  # set at creation
    rows, tagged = _rows(table), _rows(table, snapshot_id=table.metadata.refs["sixth"].snapshot_id)
    assert len(table.inspect.files()) == 2 * APPENDS and _manifests(table) == APPENDS
    before = len(table.snapshots())

    report = compact(table)

    table = open_catalog().load_table("weather.observations")
    assert report.as_metadata() == {
        "data_files_before": 2 * APPENDS,
        "data_files_after": 2,
        "manifests_before": APPENDS,
        "manifests_after": 1,
        "partitions_rewritten": 2,
        "compaction_skipped": "",
    }
    assert len(table.inspect.files()) == 2 and _manifests(table) == 1
    assert _rows(table) == rows and len(rows) == 2 * APPENDS
    assert _rows(table, snapshot_id=table.metadata.refs["sixth"].snapshot_id) == tagged
    assert len(tagged) == 12
    new = table.snapshots()[before:]
    assert [s.summary.additional_properties[COMPACTED_PROPERTY] for s in new] == [
        "compact-files",
        "compact-manifests",
    ]
    assert len(opened) == 2  # both snapshots committed through the platform's transaction
    # the provenance of the rows (lineage, stream offsets) stays on main's head
    assert {s.summary.additional_properties[RUN_ID_PROPERTY] for s in new} == {f"run-{APPENDS - 1}"}
    assert table.current_snapshot().summary.additional_properties["total-records"] == str(2 * APPENDS)
    # the table's own merge settings are back as they were
    assert table.properties["commit.manifest.min-count-to-merge"] == "100"

    again = compact(table)  # nothing left to do: no snapshot
    assert again.partitions_rewritten == 0 and again.files_after == 2 and again.manifests_after == 1
    assert len(open_catalog().load_table("weather.observations").snapshots()) == len(table.snapshots())


def test_maintain_compacts_after_expiry_and_the_tag_still_travels(observations):
    product, table = observations
    tagged = _rows(table, snapshot_id=table.metadata.refs["sixth"].snapshot_id)
    later = datetime.now(UTC) + timedelta(days=30)  # every snapshot past the 7-day retention

    report = maintain(product, open_catalog(), now=later, run_states=lambda *_: RunState.DONE)

    table = open_catalog().load_table("weather.observations")
    md = report.as_metadata()
    assert (md["data_files_before"], md["data_files_after"], md["manifests_after"]) == (24, 2, 1)
    assert md["expired_snapshots"] == APPENDS - 2  # all but the tagged and the current one
    assert _rows(table, snapshot_id=table.metadata.refs["sixth"].snapshot_id) == tagged
    assert len(_rows(table)) == 2 * APPENDS


def test_an_open_audit_branch_stops_compaction(observations):
    _, table = observations
    table.manage_snapshots().create_branch(table.current_snapshot().snapshot_id, "audit-1234abcd").commit()
    table = table.refresh()
    snapshots = len(table.snapshots())

    report = compact(table)

    assert (
        report.skipped
        == "write-audit-publish branch(es) still open, their runs could not publish: audit-1234abcd"
    )
    assert (report.files_after, report.manifests_after) == (2 * APPENDS, APPENDS)
    assert len(open_catalog().load_table("weather.observations").snapshots()) == snapshots
