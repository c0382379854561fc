"""Table metadata at a cost flat in history: the platform's transaction
(``mesh_assets.iceberg.commit.transaction``) computes its metadata once per staged change and
without pyiceberg's deep copy (``apply_updates``), the catalog (``MeshSqlCatalog``) parses each
metadata file once per process; both give exactly what pyiceberg gives, never stale."""

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.serializers import FromInputFile
from pyiceberg.table.update import update_table_metadata
from pyiceberg.table.update.snapshot import ManageSnapshots

from mesh_assets.iceberg.catalog import ensure_table, open_catalog
from mesh_assets.iceberg.commit import apply_updates, replace_rows, transaction
from mesh_assets.iceberg.sqlcatalog import MeshSqlCatalog
from mesh_assets.settings import load_settings
from mesh_assets.workspace import load_contract


@pytest.fixture
def airlines(reference_dir, mesh_home):
    return load_contract(reference_dir / "products" / "airlines.yaml")


def _rows(product, carriers):
    return pa.table({"carrier": carriers, "name": ["x"] * len(carriers)}, schema=product.arrow_schema())


def _write(table, product, carriers):
    return replace_rows(
        table, _rows(product, carriers).to_batches(), product.arrow_schema(), {"mesh.test": "w"}
    )


def _other_process_catalog():
    """What another process opens: pyiceberg's own catalog on the same database, no cache."""
    settings = load_settings()
    return SqlCatalog(settings.catalog_name, **settings.catalog_properties())


def test_metadata_is_shared_until_a_change_is_staged(airlines):
    table = ensure_table(open_catalog(), airlines)
    tx = transaction(table)
    first = tx.table_metadata
    assert tx.table_metadata is first  # no second deep copy of the whole metadata
    tx.set_properties({"mesh.test": "1"})
    staged = tx.table_metadata
    assert staged is not first and staged.properties["mesh.test"] == "1"
    assert "mesh.test" not in first.properties


def test_replace_rows_commits_through_it(airlines):
    table = ensure_table(open_catalog(), airlines)
    for carriers in (["AA", "BB"], ["CC"]):
        assert _write(table, airlines, carriers) == len(carriers)
        table = open_catalog().load_table(airlines.table_identifier)
    assert table.scan().to_arrow().column("carrier").to_pylist() == ["CC"]
    assert table.current_snapshot().summary.additional_properties["mesh.test"] == "w"


def _without_clock(metadata):
    return metadata.model_dump(exclude={"last_updated_ms"})


@pytest.mark.parametrize("stage", ["overwrite", "properties_and_branch"])
def test_apply_updates_gives_what_pyiceberg_gives(airlines, stage):
    """The oracle is pyiceberg's own ``update_table_metadata``, on the updates of real writes
    (the wall clock it may stamp aside), and the base stays as it was."""
    table = ensure_table(open_catalog(), airlines)
    _write(table, airlines, ["AA"])
    table = open_catalog().load_table(airlines.table_identifier)
    base, before = table.metadata, _without_clock(table.metadata)
    tx = transaction(table)
    if stage == "overwrite":
        tx.delete("carrier == 'AA'")
        tx.append(_rows(airlines, ["BB", "CC"]))
    else:
        tx.set_properties({"mesh.test": "1"})
        ManageSnapshots(tx).create_branch(table.current_snapshot().snapshot_id, "audit").commit()
    updates = tx._updates
    assert len(updates) >= 2
    for location in (None, table.metadata_location):  # staged in a transaction; staged for the commit
        ours = apply_updates(base, updates, location)
        theirs = update_table_metadata(base, updates, metadata_location=location)
        assert _without_clock(ours) == _without_clock(theirs)
        assert ours.last_updated_ms > base.last_updated_ms
    assert _without_clock(base) == before


def test_the_catalog_parses_a_metadata_file_once(airlines, monkeypatch):
    parses = []
    parse = FromInputFile.table_metadata
    monkeypatch.setattr(
        FromInputFile, "table_metadata", lambda f, *a: parses.append(f.location) or parse(f, *a)
    )
    catalog = open_catalog()
    assert isinstance(catalog, MeshSqlCatalog)
    table = ensure_table(catalog, airlines)
    _write(table, airlines, ["AA"])
    parses.clear()
    loaded = catalog.load_table(airlines.table_identifier)
    first = loaded.metadata_location
    _write(loaded, airlines, ["BB"])  # its commit re-reads the table: no parse either
    again = catalog.load_table(airlines.table_identifier)
    assert parses == []
    assert again.metadata_location not in (None, first)
    # what this process kept is exactly what the file says
    on_disk = _other_process_catalog().load_table(airlines.table_identifier)
    assert on_disk.metadata_location == again.metadata_location
    assert on_disk.metadata == again.metadata
    assert again.scan().to_arrow().column("carrier").to_pylist() == ["BB"]


def test_another_writers_commit_is_seen_and_conflicts_still_fail(airlines):
    from pyiceberg.exceptions import CommitFailedException

    catalog = open_catalog()
    _write(ensure_table(catalog, airlines), airlines, ["AA"])
    ours = catalog.load_table(airlines.table_identifier)
    other = _other_process_catalog()
    _write(other.load_table(airlines.table_identifier), airlines, ["ZZ"])
    seen = catalog.load_table(airlines.table_identifier)
    assert seen.metadata_location == other.load_table(airlines.table_identifier).metadata_location
    assert seen.scan().to_arrow().column("carrier").to_pylist() == ["ZZ"]
    with pytest.raises(CommitFailedException):  # a write staged on the old metadata is refused
        _write(ours, airlines, ["BB"])
    assert catalog.load_table(airlines.table_identifier).scan().to_arrow().column("carrier").to_pylist() == [
        "ZZ"
    ]


def test_metadata_loaded_earlier_never_changes(airlines):
    """Loads share one metadata object now: no write may change it in place."""
    catalog = open_catalog()
    table = ensure_table(catalog, airlines)
    _write(table, airlines, ["AA"])
    earlier = catalog.load_table(airlines.table_identifier)
    before = earlier.metadata.model_dump_json()
    _write(catalog.load_table(airlines.table_identifier), airlines, ["BB"])
    table = catalog.load_table(airlines.table_identifier)
    with transaction(table) as tx:
        tx.set_properties({"mesh.test": "1"})
        ManageSnapshots(tx).create_branch(table.current_snapshot().snapshot_id, "audit").commit()
    table = catalog.load_table(airlines.table_identifier)
    ManageSnapshots(transaction(table)).remove_branch("audit").commit()
    table = catalog.load_table(airlines.table_identifier)
    table.maintenance.expire_snapshots().by_id(earlier.current_snapshot().snapshot_id).commit()
    assert earlier.metadata.model_dump_json() == before
    assert (
        catalog.load_table(airlines.table_identifier).metadata
        == _other_process_catalog().load_table(airlines.table_identifier).metadata
    )


def test_a_commit_lost_after_its_metadata_file_is_written_is_not_remembered(airlines, monkeypatch):
    """The other writer moves the table between our metadata file and our catalog update: our
    commit fails, and this process then sees the other writer's table, not its own file."""
    from pyiceberg.exceptions import CommitFailedException

    catalog = open_catalog()
    _write(ensure_table(catalog, airlines), airlines, ["AA"])
    ours = catalog.load_table(airlines.table_identifier)
    write_metadata = catalog._write_metadata

    def and_then_another_writer(**kwargs):
        write_metadata(**kwargs)
        monkeypatch.delattr(catalog, "_write_metadata")
        _write(_other_process_catalog().load_table(airlines.table_identifier), airlines, ["ZZ"])

    monkeypatch.setattr(catalog, "_write_metadata", and_then_another_writer, raising=False)
    with pytest.raises(CommitFailedException, match="updated by another process"):
        _write(ours, airlines, ["BB"])
    seen = catalog.load_table(airlines.table_identifier)
    assert seen.metadata == _other_process_catalog().load_table(airlines.table_identifier).metadata
    assert seen.scan().to_arrow().column("carrier").to_pylist() == ["ZZ"]


def test_a_dropped_and_recreated_table_is_read_again(airlines):
    catalog = open_catalog()
    _write(ensure_table(catalog, airlines), airlines, ["AA"])
    catalog.drop_table(airlines.table_identifier)
    table = ensure_table(catalog, airlines)
    assert table.current_snapshot() is None and table.scan().to_arrow().num_rows == 0


def test_the_copied_pyiceberg_code_is_unchanged():
    """``apply_updates`` and ``MeshSqlCatalog._update_and_stage_table`` copy pyiceberg 0.12.0's
    ``update_table_metadata`` and ``MetastoreCatalog._update_and_stage_table`` (without the deep copy):
    when a pyiceberg release changes either, re-read the copies against it, then update these."""
    import hashlib
    import inspect

    from pyiceberg.catalog import MetastoreCatalog

    digests = {
        f.__qualname__: hashlib.sha256(inspect.getsource(f).encode()).hexdigest()[:16]
        for f in (update_table_metadata, MetastoreCatalog._update_and_stage_table)
    }
    assert digests == {
        "update_table_metadata": "cdfaa6553c2f4d68",
        "MetastoreCatalog._update_and_stage_table": "2a491d0056395468",
    }
