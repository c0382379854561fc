"""Every step that writes or publishes a product's table runs in that product's Dagster pool."""

from mesh_assets.definitions import build_domain
from mesh_assets.settings import DOMAINS_DIR


def test_writers_and_publishing_checks_share_the_product_pool(mesh_home):
    defs = build_domain(DOMAINS_DIR / "reference")
    job = defs.resolve_implicit_global_asset_job_def()
    pools = {node.name: node.definition.pool for node in job.graph.nodes}
    assert pools["ingest_airlines"] == pools["check_airlines"] == "mesh/reference.airlines"
    assert pools["ingest_airports"] == pools["check_airports"] == "mesh/reference.airports"
    # one dbt step builds every model of the domain (one DuckDB file): one pool for the domain,
    # shared by the checks that publish its products
    assert pools["reference_dbt_models"] == pools["check_timezones"] == "mesh/reference/dbt"
    assert {n for n, p in pools.items() if p is None} == set(), pools  # every step here writes a product
