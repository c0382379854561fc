"""dbt through Dagster on the local target: a failing dbt test is a failed (blocking) asset check."""

import dagster as dg
from meshtest import NYCFLIGHTS, land

from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.wap import audit_branch_name
from mesh_assets.read_api import read
from mesh_assets.settings import DOMAINS_DIR

ACCEPTED = "accepted_values_timezones_utc_offset_hours__False___10___9___8___7___6___5___4__8"


def _materialize():
    defs = build_domain(DOMAINS_DIR / "reference")
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_failing_dbt_test_is_a_failed_asset_check(mesh_home):
    land(mesh_home, "reference", "airlines.csv")
    airports = (NYCFLIGHTS / "airports.csv").read_text()
    land(mesh_home, "reference", "airports.csv", airports + "XXX,Test Field,10.0,10.0,100,3,N,Africa/Test\n")
    result = _materialize()
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations[ACCEPTED].passed is False
    assert evaluations[ACCEPTED].asset_key == dg.AssetKey(["reference", "timezones"])
    # dbt tests are blocking checks: the failure fails the dbt step (stopping downstream
    # assets); the model's output was stored on the run's audit branch and never published
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "DagsterAssetCheckFailedError" in str(failure.event_specific_data.error.cls_name)
    table = open_catalog().load_table("reference.timezones")
    assert table.scan().to_arrow().num_rows == 0  # main: what consumers read
    branch = audit_branch_name(result.run_id)
    rows = read("reference.timezones", as_of=branch).to_pylist()
    assert {"tzone": "Africa/Test", "utc_offset_hours": 3} in [
        {k: r[k] for k in ("tzone", "utc_offset_hours")} for r in rows
    ]


def test_dbt_artifacts_are_kept_and_served_over_http(mesh_home):
    """After a dbt run its manifest, run_results and catalog.json sit at a stable path under
    MESH_HOME, and `mesh dbt serve` serves them (OpenMetadata's dbt workflow reads URLs)."""
    import json
    import threading
    import urllib.request

    from mesh_assets.dbt.artifacts import artifacts_server
    from mesh_assets.settings import load_settings

    land(mesh_home, "reference", "airlines.csv")
    land(mesh_home, "reference", "airports.csv")
    assert _materialize().success
    server = artifacts_server(load_settings(), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/reference"
        manifest = json.load(urllib.request.urlopen(f"{base}/manifest.json"))
        catalog = json.load(urllib.request.urlopen(f"{base}/catalog.json"))
        results = json.load(urllib.request.urlopen(f"{base}/run_results.json"))
    finally:
        server.shutdown()
    assert "model.datamesh.timezones" in manifest["nodes"]
    assert catalog["nodes"]["model.datamesh.timezones"]["metadata"]["type"] == "ICEBERG TABLE"
    # the reference domain's one model and its two dbt tests, each by name (unique_id without
    # dbt's hash): the model built, both tests passed
    statuses = {r["unique_id"].split(".")[2]: r["status"] for r in results["results"]}
    assert statuses == {
        "timezones": "success",
        ACCEPTED: "pass",
        "relationships_timezones_tzone__tzone__source_reference_airports_": "pass",
    }
