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
  :mod:`mesh_assets.dbt_iceberg_plugin`) and ``trino`` (dbt-trino on the Iceberg catalog).
"""

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import DAGSTER_DBT_UNIQUE_ID_METADATA_KEY as UNIQUE_ID_KEY

from mesh_assets.catalog import (
    INPUTS_PROPERTY,
    IcebergCatalog,
    audit_branch_name,
    branch_head,
    snapshot_metadata,
)
from mesh_assets.contracts import DataProduct, load_domain_contracts
from mesh_assets.dbt_iceberg_plugin import (
    PARENTS_FILE_ENV,
    PARTITION_END_ENV,
    PARTITION_START_ENV,
    RUN_ID_ENV,
)
from mesh_assets.settings import DBT_PROJECT_DIR, DOMAINS_DIR, MeshSettings, load_settings
from mesh_assets.specs import owners, product_metadata, product_tags

PROJECT_NAME = "datamesh"
PLUGIN_ALIAS = "mesh_iceberg"
GENERATED_YAML = "_mesh_products.yml"


def dbt_executable() -> str:
    return str(Path(sys.executable).parent / "dbt")


def manifest_path(target: str) -> Path:
    return DBT_PROJECT_DIR / "target" / target / "manifest.json"


def dbt_env(settings: MeshSettings) -> dict[str, str]:
    """Environment the dbt process needs (the profile reads these)."""
    return {"MESH_HOME": str(settings.home), "MESH_DBT_TARGET": settings.dbt_target,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


# --- contracts -> dbt YAML ---------------------------------------------------------------------

def contract_yaml(domain: str, products: Sequence[DataProduct]) -> dict[str, Any]:
    """The dbt source of a domain's products (other models read a product only through it) and
    the properties of its dbt-built products: descriptions, column types (the model contract,
    enforced on Trino; on DuckDB the plugin enforces the platform contract) and the contract's
    ``engine: dbt`` rules as ``data_tests``."""
    source = {
        "name": domain,
        "schema": domain,
        "description": f"Data products published by the {domain} domain (Iceberg tables).",
        "meta": {"plugin": PLUGIN_ALIAS},
        "tables": [table for p in products for table in _source_tables(p)],
    }
    models = [_model_properties(p) for p in products if p.transform == "dbt"]
    return {"version": 2, "sources": [source], **({"models": models} if models else {})}


def _model_properties(p: DataProduct) -> dict[str, Any]:
    tests: dict[str | None, list] = {}
    for column, test in p.dbt_tests:
        (name, args), = test.items()
        tests.setdefault(column, []).append({name: {"arguments": args}} if args else name)
    model: dict[str, Any] = {
        "name": p.name, "description": p.description,
        "columns": [{"name": c.name, "description": c.description or "",
                     "data_type": trino_type(c.type),
                     **({"constraints": [{"type": "not_null"}]} if c.required else {}),
                     **({"data_tests": tests[c.name]} if c.name in tests else {})}
                    for c in p.columns],
    }
    if None in tests:
        model["data_tests"] = tests[None]
    return model


def trino_type(t) -> str:
    """The SQL type name of an Iceberg type in Trino (the engine where dbt contracts apply)."""
    from pyiceberg import types as it

    if isinstance(t, it.DecimalType):
        return f"decimal({t.precision},{t.scale})"
    return {it.StringType: "varchar", it.BooleanType: "boolean", it.IntegerType: "integer",
            it.LongType: "bigint", it.FloatType: "real", it.DoubleType: "double",
            it.DateType: "date", it.TimeType: "time(6)", it.TimestampType: "timestamp(6)",
            it.TimestamptzType: "timestamp(6) with time zone", it.BinaryType: "varbinary",
            it.UUIDType: "uuid"}[type(t)]


def _source_tables(p: DataProduct) -> list[dict[str, Any]]:
    """``p.name`` reads the major-1 table; a newer major N is also ``p.name_vN``. Consumers
    move from one to the other when they are ready (see :mod:`mesh_assets.schema_evolution`)."""
    entry = {"name": p.name, "description": p.description,
             "columns": [{"name": c.name, "description": c.description or ""} for c in p.columns]}
    if p.table_identifier == p.identifier:
        return [entry]
    versioned = p.table_identifier.split(".", 1)[1]
    meta = {"dagster": {"asset_key": p.asset_key_path}}
    return [{**entry, "meta": meta},
            {**entry, "name": versioned, "meta": meta,
             "description": f"{p.description} (contract major version {p.major_version})"}]


def write_contract_yaml(domains_dir: Path = DOMAINS_DIR) -> list[Path]:
    written = []
    for domain_dir in sorted(p for p in domains_dir.iterdir() if (p / "products").is_dir()):
        models_dir = DBT_PROJECT_DIR / "models" / domain_dir.name
        models_dir.mkdir(parents=True, exist_ok=True)
        products = load_domain_contracts(domain_dir)
        path = models_dir / GENERATED_YAML
        text = ("# Generated from domains/%s/products/*.yaml by `mesh dbt prepare`. Do not edit.\n"
                % domain_dir.name) + yaml.safe_dump(contract_yaml(domain_dir.name, products),
                                                    sort_keys=False)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


# --- manifest ----------------------------------------------------------------------------------

def _newest_input_mtime() -> float:
    paths = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for pattern in ("models/**/*", "macros/**/*", "tests/**/*"):
        paths += DBT_PROJECT_DIR.glob(pattern)
    paths += DOMAINS_DIR.glob("*/products/*.yaml")
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def prepare(settings: MeshSettings | None = None, *, force: bool = False) -> Path:
    """Generate the contract YAML and parse the project; returns the manifest path.

    A file lock keeps concurrent code locations from parsing the same project twice.
    """
    settings = settings or load_settings()
    target = settings.dbt_target
    manifest = manifest_path(target)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_contract_yaml()
        if not force and manifest.exists() and manifest.stat().st_mtime >= _newest_input_mtime():
            return manifest
        cmd = [dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR),
               "--profiles-dir", str(DBT_PROJECT_DIR), "--target", target,
               "--target-path", str(manifest.parent), "--quiet"]
        result = subprocess.run(cmd, env={**os.environ, **dbt_env(settings)},
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"`dbt parse` failed for target {target}:\n"
                               f"{result.stdout[-4000:]}{result.stderr[-4000:]}")
    return manifest


# --- Dagster -----------------------------------------------------------------------------------

class DbtRunError(RuntimeError):
    """A dbt model (or a test's SQL) errored: names the node and dbt's message."""


def run_errors(run_results: Mapping[str, Any]) -> list[str]:
    """Nodes that errored in a dbt run (a test that ran and *failed* is not an error)."""
    return [f"{r['unique_id']}: {(r.get('message') or '').strip()}"
            for r in run_results.get("results", []) if r.get("status") in ("error", "runtime error")]


class MeshDbtTranslator(DagsterDbtTranslator):
    """Keys ``[domain, name]``, group = domain, and the contract's spec for dbt products."""

    def __init__(self, products: Mapping[str, DataProduct]):
        super().__init__()
        self._products = products

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        declared = (dbt_resource_props.get("meta") or {}).get("dagster", {}).get("asset_key")
        if declared:  # set by the generated sources of a product's newer major version
            return dg.AssetKey(declared)
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        return dg.AssetKey([_domain_of(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return dbt_resource_props["source_name"]
        return _domain_of(dbt_resource_props)

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        product = self._products.get(".".join(spec.key.path))
        if product is None or not unique_id.startswith("model."):
            return spec
        return spec.replace_attributes(
            description=product.description or spec.description,
            owners=owners(product),
            tags={**spec.tags, **product_tags(product)},
            kinds={"dbt", "iceberg", manifest.get("metadata", {}).get("adapter_type", "dbt")},
        ).merge_attributes(metadata=product_metadata(product))


def _domain_of(props: Mapping[str, Any]) -> str:
    fqn = props.get("fqn") or []
    return fqn[1] if len(fqn) > 2 else props.get("schema", "default")


def domain_models(manifest: Mapping[str, Any], domain: str) -> list[str]:
    return [uid for uid, node in manifest.get("nodes", {}).items()
            if node["resource_type"] == "model" and _domain_of(node) == domain]


def dbt_resource(settings: MeshSettings) -> DbtCliResource:
    return DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                          target=settings.dbt_target, dbt_executable=dbt_executable())


def dbt_domain_assets(domain: str, products: Sequence[DataProduct],
                      settings: MeshSettings) -> list[dg.AssetsDefinition]:
    """The dbt models of ``domain``: one multi-asset per partitioning (a model is partitioned
    when its product's contract declares ``dagsterPartitions``). Empty without models."""
    manifest_file = prepare(settings)
    manifest = json.loads(manifest_file.read_text())
    fqns = {manifest["nodes"][uid]["name"]: ".".join(manifest["nodes"][uid]["fqn"])
            for uid in domain_models(manifest, domain)}
    models = list(fqns)
    if not models:
        return []
    by_id = {p.identifier: p for p in products}
    check_ports(manifest, domain)
    translator = MeshDbtTranslator(by_id)
    groups: dict[Any, list[str]] = {}
    for name in models:
        product = by_id.get(f"{domain}.{name}")
        groups.setdefault(product.dagster_partitions if product else None, []).append(name)
    assets = []
    for partitioning, names in groups.items():
        partitioned = partitioning is not None
        select = (" ".join(f"fqn:{fqns[n]}" for n in names) if partitioned
                  else f"fqn:{PROJECT_NAME}.{domain}")
        exclude = " ".join(f"fqn:{fqns[n]}" for g, ns in groups.items()
                           if g is not None for n in ns) if not partitioned else ""
        suffix = f"_{partitioning.kind}_{partitioning.column}" if partitioned else ""
        assets.append(_dbt_multi_asset(domain, manifest, translator, by_id, settings, select,
                                       exclude, f"{domain}_dbt_models{suffix}", partitioning))
    return assets


class PortViolation(ValueError):
    """A domain reads another domain's internal product."""


def check_ports(manifest: Mapping[str, Any], domain: str | None = None,
                domains_dir: Path = DOMAINS_DIR) -> None:
    """Every cross-domain source a model reads must be a public product of its domain."""
    from mesh_assets.contracts import load_contract

    problems = []
    for uid, node in manifest.get("nodes", {}).items():
        if node["resource_type"] != "model" or (domain and _domain_of(node) != domain):
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            source = manifest.get("sources", {}).get(parent)
            if source is None or source["source_name"] == _domain_of(node):
                continue
            path = domains_dir / source["source_name"] / "products" / f"{source['name']}.yaml"
            if path.exists() and load_contract(path).visibility != "public":
                problems.append(f"model {_domain_of(node)}.{node['name']} "
                                f"({node['original_file_path']}) reads {source['source_name']}."
                                f"{source['name']}, an internal product of domain "
                                f"{source['source_name']} (contract {path})")
    if problems:
        raise PortViolation("domains may only depend on other domains' public products: "
                            + "; ".join(problems) + ". Ask the owning team to publish it "
                            "(visibility: public) or read one of its public products.")


def partition_vars(selection) -> dict[str, str]:
    """dbt vars (and plugin env) of a partitioned run: the ISO bounds of its time window."""
    if selection is None or selection.values:
        return {}
    return {"mesh_partition_start": selection.start.isoformat(),
            "mesh_partition_end": selection.end.isoformat()}


def _dbt_multi_asset(domain, manifest, translator, by_id, settings, select, exclude, name,
                     partitioning):
    from mesh_assets.partitions import dagster_partitions_def, selection_for

    partitions_def = dagster_partitions_def(partitioning)

    @dbt_assets(manifest=manifest, select=select, exclude=exclude or None, name=name,
                dagster_dbt_translator=translator, partitions_def=partitions_def,
                backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None)
    def _models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                catalog: IcebergCatalog):
        selection = selection_for(partitioning, context) if partitions_def else None
        bounds = partition_vars(selection)
        os.environ.update(dbt_env(settings))
        os.environ[RUN_ID_ENV] = context.run.run_id  # recorded in each Iceberg snapshot
        for var in (PARTITION_START_ENV, PARTITION_END_ENV):
            os.environ.pop(var, None)
        if bounds:  # the plugin replaces exactly these rows of the Iceberg table
            os.environ[PARTITION_START_ENV] = bounds["mesh_partition_start"]
            os.environ[PARTITION_END_ENV] = bounds["mesh_partition_end"]
        target_path = settings.dbt_dir / "runs" / context.run.run_id / name
        target_path.mkdir(parents=True, exist_ok=True)
        parents_file = target_path / "mesh_parents.json"
        parents_file.write_text(json.dumps({
            table_of(manifest["nodes"][uid], by_id): sorted(parent_tables(manifest, uid, by_id))
            for uid in domain_models(manifest, domain)}))
        os.environ[PARENTS_FILE_ENV] = str(parents_file)
        args = ["build", "--vars", json.dumps({"mesh_domain": domain, **bounds})]
        # A failing dbt *test* is a failed asset check (blocking downstream when its severity
        # is error), not a failed step; a model or test that errors fails the step below.
        invocation = dbt.cli(args, context=context, target_path=target_path, raise_on_error=False)
        for event in invocation.stream():
            if isinstance(event, dg.Output):
                key = context.asset_key_for_output(event.output_name)
                unique_id = context.assets_def.specs_by_key[key].metadata[UNIQUE_ID_KEY]
                metadata = iceberg_output_metadata(catalog, table_of(manifest["nodes"][unique_id], by_id),
                                                   parent_tables(manifest, unique_id, by_id),
                                                   audit_branch_name(context.run.run_id))
                if selection is not None:
                    metadata["mesh/partition_rows"] = selection.describe()
                yield event.with_metadata({**event.metadata, **metadata})
            else:
                yield event
        write_artifacts(settings, domain, target_path, catalog, audit_branch_name(context.run.run_id))
        errors = run_errors(invocation.get_artifact("run_results.json"))
        if errors:
            raise DbtRunError(f"dbt build of domain {domain} failed:\n" + "\n".join(errors))

    return _models


def artifacts_dir(settings: MeshSettings, domain: str) -> Path:
    """Stable home of a domain's latest dbt artifacts (for OpenMetadata's dbt workflow)."""
    return settings.dbt_dir / "artifacts" / domain


def write_artifacts(settings: MeshSettings, domain: str, target_path: Path,
                    catalog: IcebergCatalog, branch: str | None = None) -> Path:
    """Keep manifest.json and run_results.json of the run, and a catalog.json describing the
    Iceberg tables the models and sources really are (dbt's own ``docs generate`` would
    describe the DuckDB relations instead). Files are replaced atomically."""
    out = artifacts_dir(settings, domain)
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((target_path / "manifest.json").read_text())
    docs = {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
                         "generated_at": manifest["metadata"].get("generated_at"),
                         "invocation_id": manifest["metadata"].get("invocation_id")},
            "nodes": {}, "sources": {}, "errors": None}
    nodes = [(uid, n, "nodes") for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"]
    nodes += [(uid, n, "sources") for uid, n in manifest["sources"].items()]
    iceberg = catalog.catalog()
    for uid, node, section in nodes:
        identifier = f"{node['schema']}.{node.get('alias') or node.get('identifier') or node['name']}"
        if not iceberg.table_exists(identifier):
            continue
        table = iceberg.load_table(identifier)
        # the snapshot this run wrote (still on its audit branch until its checks publish it)
        head = branch_head(table, branch if branch in table.metadata.refs else None)
        snap = table.snapshot_by_id(head) if head is not None else None
        rows = int(snap.summary.additional_properties.get("total-records", 0)) if snap else 0
        docs[section][uid] = {
            "metadata": {"type": "ICEBERG TABLE", "schema": node["schema"],
                         "name": identifier.split(".")[1], "database": node.get("database"),
                         "comment": None, "owner": None},
            "columns": {f.name: {"type": str(f.field_type), "index": i, "name": f.name,
                                 "comment": f.doc}
                        for i, f in enumerate(table.schema().fields, start=1)},
            "stats": {"row_count": {"id": "row_count", "label": "Row count", "value": rows,
                                    "include": True, "description": "Rows in the current snapshot"}},
            "unique_id": uid,
        }
    for name, content in (("manifest.json", (target_path / "manifest.json").read_text()),
                          ("run_results.json", (target_path / "run_results.json").read_text()),
                          ("catalog.json", json.dumps(docs, indent=1))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(out / name)
    return out


def table_of(node: Mapping[str, Any], products: Mapping[str, DataProduct]) -> str:
    """The Iceberg table a model or source node reads or writes."""
    name = node.get("identifier") or node.get("alias") or node["name"]
    identifier = f"{node['schema']}.{name}"
    product = products.get(identifier) if node["resource_type"] == "model" else None
    return product.table_identifier if product else identifier


def parent_tables(manifest: Mapping[str, Any], unique_id: str,
                  products: Mapping[str, DataProduct]) -> set[str]:
    node = manifest["nodes"][unique_id]
    out = set()
    for parent in node.get("depends_on", {}).get("nodes", []):
        parent_node = manifest["sources"].get(parent) or manifest["nodes"].get(parent)
        if parent_node and parent_node["resource_type"] in ("source", "model"):
            out.add(table_of(parent_node, products))
    return out


def iceberg_output_metadata(catalog: IcebergCatalog, identifier: str, parents: set[str],
                            branch: str) -> dict[str, Any]:
    """Metadata of the snapshot the model wrote: the audit branch head when it is waiting for
    its checks, else main."""
    table = catalog.load_table(identifier)
    audited = branch in table.metadata.refs
    snapshot = table.snapshot_by_id(branch_head(table, branch if audited else None))
    recorded = {}
    if snapshot is not None and snapshot.summary:
        recorded = json.loads(snapshot.summary.additional_properties.get(INPUTS_PROPERTY, "{}"))
    inputs = {ident: snap for ident, snap in recorded.items() if ident in parents}
    metadata = snapshot_metadata(table, inputs=inputs,
                                 snapshot_id=snapshot.snapshot_id if snapshot else None)
    if audited:
        metadata["wap/branch"] = branch
    return metadata
