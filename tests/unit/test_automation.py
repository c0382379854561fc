"""Landing sensors request ingestion of new or changed files; policies come from contracts."""

import os
from datetime import timedelta

import dagster as dg
from meshtest import land

from mesh_assets.definitions import build_domain
from mesh_assets.settings import DOMAINS_DIR


def _evaluate(sensor, cursor):
    defs = build_domain(DOMAINS_DIR / "weather")
    context = dg.build_sensor_context(
        cursor=cursor, instance=dg.DagsterInstance.ephemeral(), definitions=defs
    )
    requests = list(sensor.evaluate_tick(context).run_requests)
    return requests, context.cursor


def test_landing_sensor_requests_new_and_changed_files_once(mesh_home):
    sensor = build_domain(DOMAINS_DIR / "weather").get_sensor_def("weather_landing")
    requests, cursor = _evaluate(sensor, None)
    assert requests == []  # nothing landed yet
    path = land(mesh_home, "weather", "weather.csv")
    [request], cursor = _evaluate(sensor, cursor)
    assert request.asset_selection == [dg.AssetKey(["weather", "observations"])]
    assert request.tags["dagster/asset_partition_range_start"] == "2013-01-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2013-12-01"
    assert {k.name for k in request.asset_check_keys} >= {"not_null_origin", "in_set_origin"}
    assert _evaluate(sensor, cursor)[0] == []  # unchanged: no new request
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    path.with_name("weather.csv.done").touch()
    assert _evaluate(sensor, cursor)[0] == []  # touched, same bytes: nothing to ingest
    land(mesh_home, "weather", "weather.csv", path.read_text().replace(",NA,", ",,", 1))
    [again], _ = _evaluate(sensor, cursor)
    assert again.run_key != request.run_key
    assert again.tags["mesh/source_sha256"] != request.tags["mesh/source_sha256"]


def test_freshness_and_automation_come_from_the_contracts(mesh_home):
    graph = build_domain(DOMAINS_DIR / "weather").resolve_asset_graph()
    observations = graph.get(dg.AssetKey(["weather", "observations"]))
    assert observations.freshness_policy.fail_window.to_timedelta() == timedelta(hours=24)
    assert observations.automation_condition is None  # ingestion is driven by the sensor


def _requested(result) -> list[str]:
    return sorted(r.key.to_user_string() for r in result.results if r.true_subset.size)


def test_a_derived_product_is_requested_when_its_upstream_product_is_materialized(mesh_home):
    """Dagster's own evaluator of automation conditions, against the mesh's instance: the dbt mart
    reference.timezones is requested after a real run materialized reference.airports, and not
    again while nothing new happened."""
    defs = build_domain(DOMAINS_DIR / "reference")
    land(mesh_home, "reference", "airports.csv")
    with dg.DagsterInstance.get() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert _requested(result) == []  # its input was never materialized
        airports = dg.AssetKey(["reference", "airports"])
        run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[airports]
        )
        assert run.success
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert _requested(result) == ["reference/timezones"] and result.total_requested == 1
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert _requested(result) == []  # nothing new: nothing requested


def test_a_consumer_product_waits_for_all_its_inputs_across_domains(mesh_home):
    """Across code locations (analytics reads four other domains' products): a consumer product is
    requested once every product it reads was materialized by its own domain, not before, and
    not again until one of them changes."""
    defs = build_domain(DOMAINS_DIR / "analytics")
    graph = defs.resolve_asset_graph()
    consumers = sorted(graph.materializable_asset_keys)
    upstream = sorted({p for k in consumers for p in graph.get(k).parent_keys} - set(consumers))
    late = dg.AssetKey(["weather", "observations"])  # the last input to arrive
    assert late in upstream and len(upstream) >= 4

    def readers(key) -> list[str]:
        return sorted(k.to_user_string() for k in consumers if key in graph.get(k).parent_keys)

    others = sorted(k.to_user_string() for k in consumers if late not in graph.get(k).parent_keys)
    assert readers(late) and others
    with dg.DagsterInstance.get() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert _requested(result) == []
        for key in upstream:
            if key != late:
                instance.report_runless_asset_event(dg.AssetMaterialization(key))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert _requested(result) == others  # the readers of the late input wait for it
        instance.report_runless_asset_event(dg.AssetMaterialization(late))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert _requested(result) == readers(late)
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert _requested(result) == []


def test_a_fresh_sensor_does_not_reingest_what_was_ingested_from_the_same_file(mesh_home):
    """A new sensor cursor (a fresh `dagster dev` after `mesh demo`) compares the landed file
    with the one recorded in the product's current snapshot: no spurious re-ingestion."""
    from mesh_assets.iceberg.catalog import open_catalog
    from mesh_assets.ingest.assets import ingest
    from mesh_assets.workspace import load_contract

    path = land(mesh_home, "fleet", "planes.csv")
    ingest(load_contract(DOMAINS_DIR / "fleet" / "products" / "planes.yaml"), open_catalog())
    defs = build_domain(DOMAINS_DIR / "fleet")
    sensor = defs.get_sensor_def("fleet_landing")
    context = dg.build_sensor_context(cursor=None, instance=dg.DagsterInstance.ephemeral(), definitions=defs)
    assert list(sensor.evaluate_tick(context).run_requests) == []
    land(mesh_home, "fleet", "planes.csv", path.read_text() + "N0NEW1,2020,,,,2,10,,\n")  # new content
    context = dg.build_sensor_context(
        cursor=context.cursor, definitions=defs, instance=dg.DagsterInstance.ephemeral()
    )
    [request] = list(sensor.evaluate_tick(context).run_requests)
    assert request.asset_selection == [dg.AssetKey(["fleet", "planes"])]
