"""The platform's transaction (``mesh_assets.iceberg.commit.transaction``): its metadata is
computed once per staged change, never stale, and a write through it commits as pyiceberg's."""

import pyarrow as pa

from mesh_assets.iceberg.catalog import ensure_table, open_catalog
from mesh_assets.iceberg.commit import replace_rows, transaction
from mesh_assets.workspace import load_contract


def test_metadata_is_shared_until_a_change_is_staged(reference_dir, mesh_home):
    product = load_contract(reference_dir / "products" / "airlines.yaml")
    table = ensure_table(open_catalog(), product)
    tx = transaction(table)
    first = tx.table_metadata
    assert tx.table_metadata is first  # no second deep copy of the whole metadata
    tx.set_properties({"mesh.test": "1"})
    staged = tx.table_metadata
    assert staged is not first and staged.properties["mesh.test"] == "1"
    assert "mesh.test" not in first.properties


def test_replace_rows_commits_through_it(reference_dir, mesh_home):
    product = load_contract(reference_dir / "products" / "airlines.yaml")
    table = ensure_table(open_catalog(), product)
    schema = product.arrow_schema()
    for carriers in (["AA", "BB"], ["CC"]):
        data = pa.table({"carrier": carriers, "name": ["x"] * len(carriers)}, schema=schema)
        assert replace_rows(table, data.to_batches(), schema, {"mesh.test": "w"}) == len(carriers)
        table = open_catalog().load_table(product.table_identifier)
    assert table.scan().to_arrow().column("carrier").to_pylist() == ["CC"]
    assert table.current_snapshot().summary.additional_properties["mesh.test"] == "w"
