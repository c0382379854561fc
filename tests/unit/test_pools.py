"""Every step that writes or publishes a product's table runs in that product's Dagster pool; an
ingested product's write, checks and publication are one step, so one slot of its pool covers
them all (tests/reliability/test_concurrent_runs.py shows concurrent runs then follow each other)."""

import dagster as dg

from mesh_assets.definitions import build_domain
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_product


def test_an_ingested_products_write_checks_and_publication_are_one_step_in_its_pool(mesh_home):
    defs = build_domain(DOMAINS_DIR / "reference")
    job = defs.resolve_implicit_global_asset_job_def()
    pools = {node.name: node.definition.pool for node in job.graph.nodes}
    assert pools == {
        "ingest_airlines": "mesh/reference.airlines",
        "ingest_airports": "mesh/reference.airports",
        # one dbt step builds every model of the domain (one DuckDB file): one pool for the
        # domain, shared by the checks that publish its products
        "reference_dbt_models": "mesh/reference/dbt",
        "check_timezones": "mesh/reference/dbt",
    }
    for name in ("airlines", "airports"):
        ingest = defs.resolve_assets_def(dg.AssetKey(["reference", name]))
        assert ingest.node_def.name == f"ingest_{name}"
        rules = {r.name for r in load_product(f"reference.{name}").rules}
        assert {k.name for k in ingest.check_keys} == rules  # every contract rule, in the same step
