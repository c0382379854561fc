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
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from mesh_assets.catalog import (
    INPUTS_PROPERTY,
    IcebergCatalog,
    audit_branch_name,
    branch_head,
    snapshot_metadata,
    wap_run_id,
)
from mesh_assets.contracts import DataProduct, load_domain_contracts
from mesh_assets.settings import (
    DBT_PROJECT_DIR,
    DOMAINS_DIR,
    PARENTS_FILE_ENV,
    PARTITION_END_ENV,
    PARTITION_START_ENV,
    RUN_ID_ENV,
    MeshSettings,
    load_settings,
)
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


def _dbt_tests_by_column(p: DataProduct) -> dict[str | None, list]:
    """The contract's ``engine: dbt`` rules as dbt ``data_tests``, by column (None: table)."""
    tests: dict[str | None, list] = {}
    for column, test in p.dbt_tests:
        (name, args), = test.items()
        args = dict(args or {})
        config = args.pop("config", None)
        entry = {**({"arguments": args} if args else {}), **({"config": config} if config else {})}
        tests.setdefault(column, []).append({name: entry} if entry else name)
    return tests


def _model_properties(p: DataProduct) -> dict[str, Any]:
    tests = _dbt_tests_by_column(p)
    model: dict[str, Any] = {
        "name": p.name, "description": p.description,
        "config": {"meta": {"mesh_product": p.identifier},
                   "contract": {"enforced": "{{ target.type == 'trino' }}"}},
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
    # an ingested product's dbt rules are source tests (a dbt-built one's are model tests)
    tests = _dbt_tests_by_column(p) if p.transform != "dbt" else {}
    entry = {"name": p.name, "description": p.description,
             "columns": [{"name": c.name, "description": c.description or "",
                          **({"data_tests": tests[c.name]} if c.name in tests else {})}
                         for c in p.columns],
             **({"data_tests": tests[None]} if None in tests else {})}
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
    # the code that turns contracts into dbt YAML
    here = Path(__file__).parent
    paths += [here / "dbt.py", here / "contracts.py", here / "quality.py"]
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def prepare(settings: MeshSettings | None = None, *, force: bool = False) -> Path:
    """Generate the contract YAML and parse the project; returns the manifest path.

    A file lock keeps concurrent code locations from parsing the same project twice.
    """
    settings = settings or load_settings()
    target = settings.dbt_target
    manifest = manifest_path(target)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    def fresh() -> bool:
        return (not force and manifest.exists()
                and manifest.stat().st_mtime >= _newest_input_mtime()
                and all((DBT_PROJECT_DIR / "models" / d.name / GENERATED_YAML).exists()
                        for d in DOMAINS_DIR.iterdir() if (d / "products").is_dir()))

    if fresh():  # the common case at code-location load: no contract is read twice
        return manifest
    with open(manifest.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_contract_yaml()
        if fresh():
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
#
# The specs are built here from the prepared manifest, and dbt runs as a subprocess whose JSON
# log is read node by node. dagster-dbt does the same, but importing it pulls dbt-core into the
# code-location process (1.2 s of a 2.6 s load) and it initialises a dbt adapter in the run
# process; the mesh needs neither (bench/run.py measures both).

CHECK_PREFIX = "dbt"
UNIQUE_ID_KEY = "dbt/unique_id"


class DbtRunError(RuntimeError):
    """A dbt model (or a test's SQL) errored: names the node and dbt's message."""


def run_errors(run_results: Mapping[str, Any]) -> list[str]:
    """Nodes that errored in a dbt run (a test that ran and *failed* is not an error)."""
    return [f"{r['unique_id']}: {(r.get('message') or '').strip()}"
            for r in run_results.get("results", []) if r.get("status") in ("error", "runtime error")]


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


def _domain_of(props: Mapping[str, Any]) -> str:
    fqn = props.get("fqn") or []
    return fqn[1] if len(fqn) > 2 else props.get("schema", "default")


def domain_models(manifest: Mapping[str, Any], domain: str) -> list[str]:
    return [uid for uid, node in manifest.get("nodes", {}).items()
            if node["resource_type"] == "model" and _domain_of(node) == domain]


def tests_of(manifest: Mapping[str, Any], targets: set[str]) -> list[str]:
    """dbt tests attached to one of ``targets`` (model or source unique ids)."""
    out = []
    for uid, node in manifest.get("nodes", {}).items():
        if node["resource_type"] != "test":
            continue
        parents = node.get("depends_on", {}).get("nodes", [])
        attached = node.get("attached_node") or (parents[0] if len(parents) == 1 else None)
        if attached in targets:
            out.append(uid)
    return out


class DbtCli(dg.ConfigurableResource):
    """How the mesh runs dbt: the project, its profiles and the target of the current mode."""

    project_dir: str
    profiles_dir: str
    target: str

    def command(self, args: Sequence[str], target_path: Path) -> list[str]:
        return [dbt_executable(), *args, "--project-dir", self.project_dir,
                "--profiles-dir", self.profiles_dir, "--target", self.target,
                "--target-path", str(target_path)]


def dbt_resource(settings: MeshSettings) -> DbtCli:
    return DbtCli(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                  target=settings.dbt_target)


NODE_RESULT_EVENTS = ("LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult")


def stream_dbt(cmd: Sequence[str], env: Mapping[str, str], log, warm_up=None) -> Any:
    """Run dbt with a JSON log and yield each node's result as it finishes:
    ``{"unique_id", "status", "failures", "execution_time"}`` (statuses as in run_results)."""
    proc = subprocess.Popen(cmd, env={**env, "DBT_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if warm_up is not None:  # imports and connections the run needs, while dbt works
        threading.Thread(target=warm_up, daemon=True).start()
    tail: list[str] = []
    summary: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            tail = (tail + [line.rstrip()])[-40:]
            continue
        info, data = event.get("info", {}), event.get("data", {})
        message = info.get("msg") or ""
        tail = (tail + [message])[-40:]
        # warnings and errors become Dagster log events (each is an event-log write); a node's
        # result shows as its materialization or check evaluation, and in the summary below
        if message and info.get("level") in ("warn", "error"):
            log.warning(message)
        if info.get("name") in ("StatsLine", "EndOfRunSummary", "FinishedRunningStats") and message:
            summary.append(message)
        if info.get("name") in NODE_RESULT_EVENTS:
            node = data["node_info"]  # node_status: the run_results status of the node
            yield {"unique_id": node["unique_id"], "status": node.get("node_status"),
                   "failures": data.get("num_failures") or 0,
                   "execution_time": data.get("execution_time") or 0}
    code = proc.wait()
    if summary:
        log.info("dbt: " + " ".join(m.strip() for m in summary))
    if code not in (0, 1):  # 1: some node failed or errored (reported per node)
        raise DbtRunError(f"dbt exited with {code}:\n" + "\n".join(tail))


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


def _dbt_env(settings: MeshSettings, run_id: str, bounds: Mapping[str, str],
             parents_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (PARTITION_START_ENV, PARTITION_END_ENV)}
    env.update(dbt_env(settings))
    env["DBT_LOG_PATH"] = str(parents_file.parent)  # logs with the run's artifacts, not in the repo
    env[RUN_ID_ENV] = run_id  # recorded in each Iceberg snapshot; sources read its audit branch
    env[PARENTS_FILE_ENV] = str(parents_file)
    if bounds:  # the plugin replaces exactly these rows of the Iceberg table
        env[PARTITION_START_ENV] = bounds["mesh_partition_start"]
        env[PARTITION_END_ENV] = bounds["mesh_partition_end"]
    return env


def _check_result(manifest, translator, result: Mapping[str, Any]) -> dg.AssetCheckResult:
    spec = translator.get_check_spec(manifest, result["unique_id"])
    status = result.get("status")
    severity = dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        asset_key=spec.asset_key, check_name=spec.name, passed=status == "pass",
        severity=severity,
        metadata={"dbt/status": status, "dbt/failures": int(result.get("failures") or 0),
                  UNIQUE_ID_KEY: result["unique_id"]})


PARTIAL_PARSE = "partial_parse.msgpack"


def reuse_parse(settings: MeshSettings, name: str, target_path: Path):
    """dbt re-parses the whole project when its target folder has no ``partial_parse.msgpack``
    from an invocation with the same vars; each run has its own target folder, so the file is
    kept per dbt asset under ``$MESH_HOME/dbt/parse/`` and handed from run to run. Returns the
    function that keeps the run's file for the next one."""
    cache = settings.dbt_dir / "parse" / settings.dbt_target / name / PARTIAL_PARSE
    if cache.exists():
        shutil.copyfile(cache, target_path / PARTIAL_PARSE)

    def keep() -> None:
        produced = target_path / PARTIAL_PARSE
        if produced.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            shutil.copyfile(produced, tmp)
            tmp.replace(cache)
    return keep


def _warm_up(catalog: IcebergCatalog):
    """Open the Iceberg catalog (importing pyiceberg, SQLAlchemy, pyarrow) off the main thread."""
    def run() -> None:
        try:
            catalog.catalog()
            from mesh_assets import engine, quality  # noqa: F401  (the checks that follow)
        except Exception:  # the real use reports any problem
            pass
    return run


def partition_vars(selection) -> dict[str, str]:
    """dbt vars (and plugin env) of a partitioned run: the ISO bounds of its time window."""
    if selection is None or selection.values:
        return {}
    return {"mesh_partition_start": selection.start.isoformat(),
            "mesh_partition_end": selection.end.isoformat()}


def dbt_build_args(domain: str, models: Sequence[Mapping[str, Any]],
                   bounds: Mapping[str, str]) -> list[str]:
    """``dbt build`` of exactly these models (and, by dbt's eager indirect selection, their
    tests), with the domain and the partition bounds as vars."""
    return ["build", "--select", *(f"fqn:{'.'.join(m['fqn'])}" for m in models),
            "--vars", json.dumps({"mesh_domain": domain, **bounds})]


def _dbt_multi_asset(domain, manifest, translator, by_id, settings, uids, name, partitioning):
    from mesh_assets.partitions import dagster_partitions_def, selection_for

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


class PortViolation(ValueError):
    """A domain reads another domain's internal product."""


def check_ports(manifest: Mapping[str, Any], domain: str | None = None,
                domains_dir: Path = DOMAINS_DIR) -> None:
    """Every cross-domain source a model reads must be a public product of its domain."""
    from mesh_assets.contracts import contract_visibility

    problems = []
    for uid, node in manifest.get("nodes", {}).items():
        if node["resource_type"] != "model" or (domain and _domain_of(node) != domain):
            continue
        for parent in node.get("depends_on", {}).get("nodes", []):
            source = manifest.get("sources", {}).get(parent)
            if source is None or source["source_name"] == _domain_of(node):
                continue
            path = domains_dir / source["source_name"] / "products" / f"{source['name']}.yaml"
            if path.exists() and contract_visibility(path) != "public":
                problems.append(f"model {_domain_of(node)}.{node['name']} "
                                f"({node['original_file_path']}) reads {source['source_name']}."
                                f"{source['name']}, an internal product of domain "
                                f"{source['source_name']} (contract {path})")
    if problems:
        raise PortViolation("domains may only depend on other domains' public products: "
                            + "; ".join(problems) + ". Ask the owning team to publish it "
                            "(visibility: public) or read one of its public products.")


def artifacts_dir(settings: MeshSettings, domain: str) -> Path:
    """Stable home of a domain's latest dbt artifacts (for OpenMetadata's dbt workflow)."""
    return settings.dbt_dir / "artifacts" / domain


def artifacts_server(settings: MeshSettings, host: str = "127.0.0.1", port: int = 8765):
    """An HTTP server of ``$MESH_HOME/dbt/artifacts`` (``/<domain>/manifest.json``,
    ``catalog.json``, ``run_results.json``): the URLs OpenMetadata's dbt workflow reads with its
    HTTP source (``dbtHttpConfig``). Read-only: only GET and HEAD, no directory outside it."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = settings.dbt_dir / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    return ThreadingHTTPServer((host, port), handler)


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
        # a model's table is named after the model (on Trino, not its staging alias)
        name = node["name"] if section == "nodes" else node.get("identifier") or node["name"]
        identifier = f"{node['schema']}.{name}"
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
    """The Iceberg table a model or source node reads or writes (for a product's model: the
    product's table, not the staging relation dbt-trino builds)."""
    name = node.get("identifier") or node.get("alias") or node["name"]
    product = (products.get(f"{node['schema']}.{node['name']}")
               if node["resource_type"] == "model" else None)
    return product.table_identifier if product else f"{node['schema']}.{name}"


def publish_staged_model(catalog: IcebergCatalog, node: Mapping[str, Any], inputs: set[str], *,
                         run_id: str, bounds: Mapping[str, str]) -> str:
    """Trino mode: the rows dbt-trino built into ``<model>__staging`` are committed to the
    product's table the same way the DuckDB plugin commits them (contract conformance,
    partition replacement or merge, audit branch, recorded inputs)."""
    from mesh_assets.model_outputs import store_model_output

    staging = f"{node['schema']}.{node['alias']}"
    data = catalog.load_table(staging).scan().to_arrow()
    branch = audit_branch_name(run_id)
    snapshots = {}
    for identifier in inputs:
        table = catalog.load_table(identifier)
        head = branch_head(table, branch if branch in table.metadata.refs else None)
        if head is not None:
            snapshots[identifier] = head
    config = node.get("config") or {}
    identifier, _ = store_model_output(
        catalog.catalog(), node["schema"], node["name"], data, inputs=snapshots,
        strategy=config.get("incremental_strategy"), unique_key=config.get("unique_key"),
        run_id=run_id, bounds=(bounds["mesh_partition_start"], bounds["mesh_partition_end"])
        if bounds else None)
    return identifier


def drop_staging(staged: Sequence[str]) -> None:
    """Drop the staging relations of a Trino run (through Trino, which deletes their files)."""
    from mesh_assets.engine import trino_connection, trino_table

    if not staged:
        return
    cursor = trino_connection().cursor()
    for identifier in staged:
        cursor.execute(f"DROP TABLE IF EXISTS {trino_table(identifier)}")
        cursor.fetchall()


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
