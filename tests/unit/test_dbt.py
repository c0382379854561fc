"""dbt integration: contracts become dbt sources, the translator keys every node by domain."""

import json

import dagster as dg
import pytest

from mesh_assets.dbt.assets import MeshDbtTranslator
from mesh_assets.dbt.project import contract_yaml, domain_models, prepare, table_models
from mesh_assets.settings import DOMAINS_DIR
from mesh_assets.workspace import load_domain_contracts


@pytest.fixture(scope="module")
def manifest():
    return json.loads(prepare().read_text())


@pytest.fixture(scope="module")
def translator():
    products = [p for d in ("reference", "weather") for p in load_domain_contracts(DOMAINS_DIR / d)]
    return MeshDbtTranslator("reference", {p.identifier: p for p in products})


def _spec(translator, manifest, name):
    uid = next(u for u, n in manifest["nodes"].items() if n["resource_type"] == "model" and n["name"] == name)
    return translator.get_asset_spec(manifest, uid, None)


def test_sources_are_generated_from_contracts():
    products = load_domain_contracts(DOMAINS_DIR / "weather")
    doc = contract_yaml("weather", products)
    [source] = doc["sources"]
    assert source["name"] == source["schema"] == "weather"
    assert source["meta"] == {"plugin": "mesh_iceberg"}
    tables = {t["name"]: t for t in source["tables"]}
    assert set(tables) == {"observations", "station_daily"}
    assert tables["observations"]["columns"][0] == {
        "name": "origin",
        "description": "Weather station, the FAA code of the airport.",
    }


def test_models_are_keyed_and_grouped_by_domain(translator, manifest):
    spec = _spec(translator, manifest, "station_daily")
    assert spec.key == dg.AssetKey(["weather", "station_daily"])
    assert spec.group_name == "weather"
    assert spec.owners == ["team:weather-team"]
    assert spec.description.startswith("Daily aggregates of weather.observations")
    assert {"dbt", "iceberg"} <= set(spec.kinds)
    columns = [c.name for c in spec.metadata["dagster/column_schema"].columns]
    assert columns[:2] == ["origin", "obs_date"]


def test_cross_domain_source_maps_to_the_producing_domains_asset(translator, manifest):
    spec = _spec(translator, manifest, "station_daily")
    assert {d.asset_key for d in spec.deps} == {
        dg.AssetKey(["weather", "observations"]),
        dg.AssetKey(["reference", "airports"]),
    }


def test_each_domain_owns_only_its_models(manifest):
    def names(domain):
        return {manifest["nodes"][u]["name"] for u in domain_models(manifest, domain)}

    assert names("reference") == {"stg_reference__airports", "int_reference__airport_zones", "timezones"}
    assert names("weather") == {"station_daily"}

    # staging and intermediate models are not products: ephemeral, so no table and no asset
    def tables(d):
        return {manifest["nodes"][u]["name"] for u in table_models(manifest, d)}

    assert tables("reference") == {"timezones"}
    assert tables("weather") == {"station_daily"}


def test_internal_models_are_not_assets_and_their_readers_depend_on_what_they_read(manifest):
    from mesh_assets.dbt.assets import dbt_model_assets
    from mesh_assets.settings import load_settings

    products = load_domain_contracts(DOMAINS_DIR / "reference")
    [models] = dbt_model_assets("reference", products, load_settings(), manifest)
    assert set(models.keys) == {dg.AssetKey(["reference", "timezones"])}
    [spec] = models.specs
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey(["reference", "airports"])}


def test_a_model_without_contract_must_be_ephemeral(manifest):
    import copy

    from mesh_assets.dbt.project import InternalModelError, check_internal_models

    check_internal_models(manifest, "reference")
    changed = copy.deepcopy(manifest)
    uid = next(u for u, n in changed["nodes"].items() if n["name"] == "stg_reference__airports")
    changed["nodes"][uid]["config"]["materialized"] = "table"
    with pytest.raises(InternalModelError) as err:
        check_internal_models(changed, "reference")
    assert "reference.stg_reference__airports" in str(err.value)
    assert "ephemeral" in str(err.value)


def test_model_properties_and_dbt_tests_come_from_the_contract():
    products = load_domain_contracts(DOMAINS_DIR / "reference")
    [model] = contract_yaml("reference", products)["models"]
    assert model["name"] == "timezones"
    columns = {c["name"]: c for c in model["columns"]}
    assert columns["airport_count"]["data_type"] == "bigint"
    assert columns["tzone"]["constraints"] == [{"type": "not_null"}]
    assert columns["tzone"]["data_tests"] == [
        {"relationships": {"arguments": {"to": "source('reference', 'airports')", "field": "tzone"}}}
    ]
    assert "accepted_values" in columns["utc_offset_hours"]["data_tests"][0]


def test_reading_another_domains_internal_product_is_refused(tmp_path, reference_dir, manifest):
    import shutil

    import yaml

    from mesh_assets.dbt.project import PortViolation, check_ports

    check_ports(manifest)  # the real mesh only reads public products
    domains = tmp_path / "domains"
    shutil.copytree(reference_dir, domains / "reference")
    path = domains / "reference" / "products" / "airports.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["customProperties"].append({"property": "visibility", "value": "internal"})
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(PortViolation) as err:
        check_ports(manifest, "weather", domains_dir=domains)
    assert "model weather.station_daily" in str(err.value)
    assert "reads reference.airports, an internal product" in str(err.value)
    check_ports(manifest, "reference", domains_dir=domains)  # its own domain may read it


def _test_id(manifest, prefix):
    return next(
        u
        for u, n in manifest["nodes"].items()
        if n["resource_type"] == "test" and n["name"].startswith(prefix)
    )


def _check_spec(translator, manifest, test_id):
    """The check dagster-dbt makes of a test, through the translator (as @dbt_assets does)."""
    test = manifest["nodes"][test_id]
    attached = test.get("attached_node") or test["depends_on"]["nodes"][0]
    asset_spec = translator.get_asset_spec(manifest, attached, None)
    return translator.get_asset_check_spec(asset_spec, manifest, test_id, None)


def test_dbt_tests_are_checks_on_their_model_blocking_by_severity(translator, manifest):
    spec = _check_spec(translator, manifest, _test_id(manifest, "accepted_values_timezones"))
    assert spec.asset_key == dg.AssetKey(["reference", "timezones"])
    assert spec.blocking is True
    # a relationships test reads two nodes; it belongs to the model it is declared on
    spec = _check_spec(translator, manifest, _test_id(manifest, "relationships_timezones"))
    assert spec.asset_key == dg.AssetKey(["reference", "timezones"])
    assert spec.additional_deps[0].asset_key == dg.AssetKey(["reference", "airports"])


def test_source_tests_are_warn_checks_on_the_ingested_product(manifest):
    from dagster_dbt.asset_utils import get_asset_check_key_for_test

    from mesh_assets.dbt.domain import source_test_check_spec

    test_id = _test_id(manifest, "source_accepted_values_fleet_planes_engine")
    spec = source_test_check_spec(manifest, test_id)
    assert spec.asset_key == dg.AssetKey(["fleet", "planes"])
    assert spec.blocking is False  # severity: warn in the contract
    # built without dagster-dbt at load, under the key dagster-dbt reports the test's result
    products = load_domain_contracts(DOMAINS_DIR / "fleet")
    translator = MeshDbtTranslator("fleet", {p.identifier: p for p in products})
    assert spec.key == get_asset_check_key_for_test(manifest, translator, test_id, None)


def test_domain_definitions_carry_dbt_checks_without_importing_dagster_dbt():
    import subprocess
    import sys

    code = (
        "import sys; from domains.fleet.definitions import defs; "
        "keys = {k.name for k in defs.resolve_asset_graph().asset_check_keys}; "
        "assert any(n.startswith('source_accepted_values_fleet_planes_engine') for n in keys), keys; "
        "assert 'dagster_dbt' not in sys.modules and 'dbt' not in sys.modules, 'dbt imported at load'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_build_selects_exactly_the_models_and_the_window_reaches_dbt_by_environment(manifest, tmp_path):
    from dagster_dbt.asset_utils import DAGSTER_DBT_SELECT_METADATA_KEY

    from mesh_assets.dbt.assets import dbt_model_assets
    from mesh_assets.dbt.runner import invocation_env
    from mesh_assets.settings import load_settings

    products = load_domain_contracts(DOMAINS_DIR / "weather")
    [models] = dbt_model_assets("weather", products, load_settings(), manifest)
    # dagster-dbt runs `dbt build --select <this>` (or the subset a run selects)
    assert models.op.tags[DAGSTER_DBT_SELECT_METADATA_KEY] == "fqn:datamesh.weather.marts.station_daily"
    # the window is dbt's environment (macros/mesh_partitions.sql reads it), never --vars: dbt
    # would parse the whole project again for every new window
    window = {
        "mesh_partition_start": "2013-01-01T00:00:00+00:00",
        "mesh_partition_end": "2013-02-01T00:00:00+00:00",
    }
    env = invocation_env(load_settings(), "weather", "run-1", tmp_path / "parents.json", window)
    assert env["MESH_PARTITION_START"] == "2013-01-01T00:00:00+00:00"
    assert env["MESH_PARTITION_END"] == "2013-02-01T00:00:00+00:00"
    # without a window the variables are unset in dbt's environment, whatever this one holds
    env = invocation_env(load_settings(), "weather", "run-1", tmp_path / "parents.json", {})
    assert env["MESH_PARTITION_START"] is None and env["MESH_PARTITION_END"] is None


def test_in_process_dbt_that_cannot_run_says_why_in_dbts_log_format_and_exits_2(tmp_path):
    from mesh_assets.dbt.inprocess import DbtThread

    not_a_folder = tmp_path / "parse"
    not_a_folder.write_text("")
    dbt = DbtThread(["dbt", "build"], {}, tmp_path, "local", prepared_dir=tmp_path, parse_dir=not_a_folder)
    events = [json.loads(line) for line in dbt.stdout]
    assert dbt.wait(timeout=60) == 2
    [error] = [e["info"] for e in events if e["info"]["level"] == "error"]
    assert error["msg"].startswith("dbt could not run in this process: NotADirectoryError"), error
