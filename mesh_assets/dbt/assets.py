"""dbt integration: one dbt project, each domain's code location owning ``models/<domain>/``.

* Keys: a model is ``[domain, model]`` (domain = its folder under ``models/``); a source
  ``source('<domain>', '<product>')`` is the asset ``[domain, product]``, so Dagster draws the
  edge to the producing domain's asset, across code locations.
* Contracts drive dbt: :func:`write_contract_yaml` generates, per domain, the dbt source of the
  domain's products (``models/<domain>/_mesh_products.yml``, git-ignored, rebuilt by
  :func:`prepare`).
* The manifest is prepared once (``mesh dbt prepare``, run by ``make install``) and read at
  code-location load; it is rebuilt only when a model or contract is newer than it.
* Targets: ``local`` (dbt-duckdb; models stored as Iceberg tables by
  :mod:`mesh_assets.dbt.plugin`) and ``trino`` (dbt-trino on the Iceberg catalog).
"""


import json
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from mesh_assets.asset_specs import owners, product_metadata, product_tags
from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.partitions import dagster_partitions_def, selection_for
from mesh_assets.dbt.artifacts import write_artifacts
from mesh_assets.dbt.outputs import (
    drop_staging,
    iceberg_output_metadata,
    parent_tables,
    publish_staged_model,
    table_of,
)
from mesh_assets.dbt.project import _domain_of, check_ports, domain_models, prepare, tests_of
from mesh_assets.dbt.runner import (
    DbtCli,
    DbtRunError,
    _dbt_env,
    dbt_build_args,
    partition_vars,
    reuse_parse,
    run_errors,
    stream_dbt,
)
from mesh_assets.iceberg.catalog import IcebergCatalog
from mesh_assets.iceberg.wap import audit_branch_name, wap_run_id
from mesh_assets.settings import (
    MeshSettings,
)

# --- Dagster -----------------------------------------------------------------------------------
#
# The specs are built here from the prepared manifest, and dbt runs as a subprocess whose JSON
# log is read node by node. dagster-dbt does the same, but importing it pulls dbt-core into the
# code-location process (1.2 s of a 2.6 s load) and it initialises a dbt adapter in the run
# process; the mesh needs neither (bench/run.py measures both).

UNIQUE_ID_KEY = "dbt/unique_id"


class MeshDbtTranslator:
    """dbt node -> Dagster: keys ``[domain, name]``, group = domain, and the contract's spec for
    dbt-built products. The one place that decides how dbt appears in Dagster."""

    def __init__(self, products: Mapping[str, DataProduct]):
        self._products = products

    def get_asset_key(self, props: Mapping[str, Any]) -> dg.AssetKey:
        declared = (props.get("meta") or {}).get("dagster", {}).get("asset_key")
        if declared:  # set by the generated sources of a product's newer major version
            return dg.AssetKey(declared)
        if props["resource_type"] == "source":
            return dg.AssetKey([props["source_name"], props["name"]])
        return dg.AssetKey([_domain_of(props), props["name"]])

    def get_group_name(self, props: Mapping[str, Any]) -> str:
        return props["source_name"] if props["resource_type"] == "source" else _domain_of(props)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str,
                       project: Any = None) -> dg.AssetSpec:
        node = manifest["nodes"][unique_id]
        key = self.get_asset_key(node)
        deps = []
        for parent in node.get("depends_on", {}).get("nodes", []):
            props = manifest.get("sources", {}).get(parent) or manifest["nodes"].get(parent)
            if props and props["resource_type"] in ("source", "model", "seed", "snapshot"):
                deps.append(self.get_asset_key(props))
        adapter = manifest.get("metadata", {}).get("adapter_type", "dbt")
        spec = dg.AssetSpec(
            key=key, deps=sorted(set(deps), key=lambda k: k.path),
            description=node.get("description") or f"dbt model {node['name']}",
            group_name=self.get_group_name(node), kinds={"dbt", adapter},
            metadata={UNIQUE_ID_KEY: unique_id,
                      "dbt/path": node.get("original_file_path", "")},
            skippable=True)
        product = self._products.get(".".join(key.path))
        if product is None:
            return spec
        return spec.replace_attributes(
            description=product.description or spec.description,
            owners=owners(product),
            tags=product_tags(product),
            kinds={"dbt", "iceberg", adapter},
        ).merge_attributes(metadata=product_metadata(product))

    def get_check_spec(self, manifest: Mapping[str, Any], test_id: str) -> dg.AssetCheckSpec | None:
        """The asset check of a dbt test on a model or a source (None for other tests)."""
        test = manifest["nodes"][test_id]
        attached = test.get("attached_node")
        parents = test.get("depends_on", {}).get("nodes", [])
        if attached is None and len(parents) == 1:
            attached = parents[0]
        target = manifest["nodes"].get(attached) or manifest.get("sources", {}).get(attached)
        if target is None or target["resource_type"] not in ("model", "source"):
            return None
        severity = str((test.get("config") or {}).get("severity", "ERROR")).upper()
        kind = (test.get("test_metadata") or {}).get("name", "singular")
        return dg.AssetCheckSpec(
            name=test["name"], asset=self.get_asset_key(target), blocking=severity == "ERROR",
            description=test.get("description") or f"dbt {kind} test ({severity.lower()})",
            metadata={UNIQUE_ID_KEY: test_id})


def dbt_domain_assets(domain: str, products: Sequence[DataProduct],
                      settings: MeshSettings) -> list:
    """The dbt models of ``domain``: one multi-asset per partitioning (a model is partitioned
    when its product's contract declares ``dagsterPartitions``), and the domain's dbt source
    tests as checks on its products. Empty without models or source tests."""
    manifest_file = prepare(settings)
    manifest = json.loads(manifest_file.read_text())
    models = domain_models(manifest, domain)
    by_id = {p.identifier: p for p in products}
    translator = MeshDbtTranslator(by_id)
    out: list = []
    if models:
        check_ports(manifest, domain)
        groups: dict[Any, list[str]] = {}
        for uid in models:
            product = by_id.get(f"{domain}.{manifest['nodes'][uid]['name']}")
            groups.setdefault(product.dagster_partitions if product else None, []).append(uid)
        for partitioning, uids in groups.items():
            suffix = f"_{partitioning.kind}_{partitioning.column}" if partitioning else ""
            out.append(_dbt_multi_asset(domain, manifest, translator, by_id, settings, uids,
                                        f"{domain}_dbt_models{suffix}", partitioning))
    sources = {uid for uid, s in manifest.get("sources", {}).items() if s["source_name"] == domain}
    source_tests = tests_of(manifest, sources)
    if source_tests:
        out.append(_dbt_source_checks(domain, manifest, translator, settings, source_tests))
    return out


def _check_result(manifest, translator, result: Mapping[str, Any]) -> dg.AssetCheckResult:
    spec = translator.get_check_spec(manifest, result["unique_id"])
    status = result.get("status")
    severity = dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        asset_key=spec.asset_key, check_name=spec.name, passed=status == "pass",
        severity=severity,
        metadata={"dbt/status": status, "dbt/failures": int(result.get("failures") or 0),
                  UNIQUE_ID_KEY: result["unique_id"]})


def _warm_up(catalog: IcebergCatalog):
    """Open the Iceberg catalog (importing pyiceberg, SQLAlchemy, pyarrow) off the main thread."""
    def run() -> None:
        try:
            catalog.catalog()
        except Exception:  # the real use reports any problem
            pass
    return run


def _dbt_multi_asset(domain, manifest, translator, by_id, settings, uids, name, partitioning):

    partitions_def = dagster_partitions_def(partitioning)
    specs = [translator.get_asset_spec(manifest, uid) for uid in uids]
    uid_of = {spec.key: uid for spec, uid in zip(specs, uids)}
    check_specs = [s for t in tests_of(manifest, set(uids))
                   if (s := translator.get_check_spec(manifest, t)) is not None]

    @dg.multi_asset(specs=specs, check_specs=check_specs, name=name, can_subset=True,
                    partitions_def=partitions_def,
                    backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None)
    def _models(context: dg.AssetExecutionContext, dbt: DbtCli, catalog: IcebergCatalog):
        selection = selection_for(partitioning, context) if partitions_def else None
        bounds = partition_vars(selection)
        run_id = wap_run_id(context.run)  # a re-execution works on its root run's audit branch
        branch = audit_branch_name(run_id)
        selected = [uid_of[k] for k in context.selected_asset_keys if k in uid_of]
        target_path = settings.dbt_dir / "runs" / run_id / name
        target_path.mkdir(parents=True, exist_ok=True)
        parents_file = target_path / "mesh_parents.json"
        parents_file.write_text(json.dumps({
            table_of(manifest["nodes"][uid], by_id): sorted(parent_tables(manifest, uid, by_id))
            for uid in domain_models(manifest, domain)}))
        cmd = dbt.command(dbt_build_args(domain, [manifest["nodes"][u] for u in selected], bounds),
                          target_path)
        staged: list[str] = []
        # A failing dbt *test* is a failed asset check (blocking downstream when its severity
        # is error), not a failed step; a model or test that errors fails the step below.
        keep_parse = reuse_parse(settings, name, target_path)
        for result in stream_dbt(cmd, _dbt_env(settings, run_id, bounds, parents_file), context.log,
                                 warm_up=_warm_up(catalog)):
            uid, status = result["unique_id"], result.get("status")
            if uid.startswith("test."):
                if status not in ("error", "runtime error", "skipped") and \
                        translator.get_check_spec(manifest, uid) is not None:
                    yield _check_result(manifest, translator, result)
                continue
            node = manifest["nodes"].get(uid)
            if node is None or uid not in selected or status != "success":
                continue
            if node["alias"] != node["name"]:  # Trino: a product's model, built into staging
                publish_staged_model(catalog, node, parent_tables(manifest, uid, by_id),
                                     run_id=run_id, bounds=bounds)
                staged.append(f"{node['schema']}.{node['alias']}")
            metadata = iceberg_output_metadata(catalog, table_of(node, by_id),
                                               parent_tables(manifest, uid, by_id), branch)
            metadata["dbt/execution_time_s"] = round(float(result.get("execution_time") or 0), 3)
            if selection is not None:
                metadata["mesh/partition_rows"] = selection.describe()
            yield dg.MaterializeResult(asset_key=translator.get_asset_key(node), metadata=metadata)
        keep_parse()
        write_artifacts(settings, domain, target_path, catalog, branch)
        drop_staging(staged)
        errors = run_errors(json.loads((target_path / "run_results.json").read_text()))
        if errors:
            raise DbtRunError(f"dbt build of domain {domain} failed:\n" + "\n".join(errors))

    return _models


def _dbt_source_checks(domain, manifest, translator, settings, test_ids):
    """dbt tests declared on the domain's sources (its products), run as checks on them."""
    specs = [s for t in test_ids if (s := translator.get_check_spec(manifest, t)) is not None]
    by_name = {(s.asset_key, s.name): t for s, t in zip(specs, test_ids)}

    @dg.multi_asset_check(specs=specs, name=f"{domain}_dbt_source_tests", can_subset=True)
    def _source_tests(context: dg.AssetCheckExecutionContext, dbt: DbtCli):
        run_id = wap_run_id(context.run)  # sources read the audit branch of the root run
        target_path = settings.dbt_dir / "runs" / run_id / f"{domain}_source_tests"
        target_path.mkdir(parents=True, exist_ok=True)
        parents_file = target_path / "mesh_parents.json"
        parents_file.write_text("{}")
        chosen = [by_name[(k.asset_key, k.name)] for k in context.selected_asset_check_keys]
        args = ["test", "--select", *(manifest["nodes"][t]["name"] for t in chosen),
                "--vars", json.dumps({"mesh_domain": domain})]
        for result in stream_dbt(dbt.command(args, target_path),
                                 _dbt_env(settings, run_id, {}, parents_file), context.log):
            if result["status"] not in ("error", "runtime error") and result["unique_id"] in chosen:
                yield _check_result(manifest, translator, result)
        errors = run_errors(json.loads((target_path / "run_results.json").read_text()))
        if errors:
            raise DbtRunError(f"dbt source tests of domain {domain} errored:\n" + "\n".join(errors))

    return _source_tests
