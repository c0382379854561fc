"""Collect: the facts of the domains to export, from the asset graphs it is given (it never
builds a domain), the contracts, the dbt artifacts under ``$MESH_HOME/dbt/artifacts/<domain>/``
and the Dagster instance (run statuses, check evaluations), gathered into a :class:`MeshView`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from mesh_assets.dbt.artifacts import artifacts_dir
from mesh_assets.dbt.project import manifest_path
from mesh_assets.settings import load_settings
from mesh_assets.workspace import domain_file, domain_path, load_domain

DBT_UNIQUE_ID_KEY = "dagster_dbt/unique_id"  # dagster-dbt's metadata of a dbt node's asset or check


# --- facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckView:
    asset: tuple[str, ...]
    name: str
    description: str | None = None
    blocking: bool = False
    rule: Any = None  # mesh_assets.contract.model.QualityRule of a contract check
    dbt_test: Mapping | None = None  # the dbt manifest's test node of a dbt test check


@dataclass(frozen=True)
class AssetView:
    key: tuple[str, ...]
    domain: str
    table: str  # Iceberg identifier ``namespace.table``
    materializable: bool
    parents: tuple[tuple[str, ...], ...] = ()
    product: Any = None  # mesh_assets.contract.model.DataProduct
    description: str | None = None
    dbt_unique_id: str | None = None
    checks: tuple[CheckView, ...] = ()

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]

    @property
    def task_name(self) -> str:
        return "/".join(self.key)


@dataclass(frozen=True)
class RunFacts:
    """One Dagster run as a pipeline status."""

    run_id: str
    status: str  # OpenMetadata statusType
    start_ms: int
    end_ms: int | None
    tasks: tuple[tuple[str, str, int | None], ...]  # (task name, status, end ms)


@dataclass(frozen=True)
class Evaluation:
    """One asset check evaluation as a test case result."""

    asset: tuple[str, ...]
    check: str
    timestamp_ms: int
    passed: bool
    metadata: Mapping[str, Any]
    run_id: str | None = None


@dataclass
class MeshView:
    domains: dict[str, Any]  # name -> mesh_assets.workspace.Domain
    assets: dict[tuple[str, ...], AssetView]
    primary: tuple[str, ...]  # domains exported in full
    manifests: dict[str, dict] = field(default_factory=dict)  # domain -> dbt manifest
    catalogs: dict[str, dict] = field(default_factory=dict)  # domain -> dbt catalog.json
    warnings: list[str] = field(default_factory=list)

    def products(self):
        seen = {}
        for asset in self.assets.values():
            if asset.product is not None:
                seen[asset.product.identifier] = asset.product
        return list(seen.values())


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def collect(graphs: Mapping[str, Any], settings=None) -> MeshView:
    """The facts of the domains of ``graphs`` (and of the tables they read in other domains).

    ``graphs``: the Dagster asset graph of each domain to export, by domain name (a sensor
    passes its repository's; ``mesh openmetadata export`` builds each domain's definitions)."""

    settings = settings or load_settings()
    domains = list(graphs)
    view = MeshView(domains={}, assets={}, primary=tuple(domains))
    prepared = None
    for name in domains:
        view.domains[name] = load_domain(domain_path(name))
        artifacts = artifacts_dir(settings, name)
        manifest = _read_json(artifacts / "manifest.json")
        if manifest is None:
            prepared = (
                prepared if prepared is not None else (_read_json(manifest_path(settings.dbt_target)) or {})
            )
            manifest = prepared
            if any(p.transform == "dbt" for p in view.domains[name].products):
                view.warnings.append(
                    f"domain {name}: no dbt artifacts in {artifacts} yet "
                    "(materialize its dbt models): no column-level lineage"
                )
        view.manifests[name] = manifest
        view.catalogs[name] = _read_json(artifacts / "catalog.json") or {}

    def product_of(key: tuple[str, ...]):
        domain = key[0]
        if domain not in view.domains:
            path = domain_path(domain)
            if not domain_file(path).exists():
                return None
            view.domains[domain] = load_domain(path)
        return next((p for p in view.domains[domain].products if p.name == key[-1]), None)

    for name in domains:
        graph = graphs[name]
        manifest = view.manifests[name]
        checks_by_asset: dict[tuple, list[CheckView]] = {}
        for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.path, k.name)):
            key = tuple(check_key.asset_key.path)
            spec = graph.get_check_spec(check_key)
            product = product_of(key)
            rule = (
                next((r for r in product.rules if r.name == check_key.name), None)
                if product is not None
                else None
            )
            test = None
            if rule is None:
                uid = (spec.metadata or {}).get(DBT_UNIQUE_ID_KEY)
                test = _dbt_test(manifest, check_key.name, str(getattr(uid, "value", uid)) if uid else None)
            checks_by_asset.setdefault(key, []).append(
                CheckView(
                    asset=key,
                    name=check_key.name,
                    description=spec.description,
                    blocking=bool(spec.blocking),
                    rule=rule,
                    dbt_test=test,
                )
            )
        for asset_key in graph.get_all_asset_keys():
            key = tuple(asset_key.path)
            node = graph.get(asset_key)
            materializable = bool(node.is_materializable) and key[0] == name
            if key in view.assets and not materializable:
                continue  # already known (from its own domain, or as another's upstream)
            product = product_of(key)
            metadata = node.metadata or {}
            uid = metadata.get(DBT_UNIQUE_ID_KEY)
            uid = str(getattr(uid, "value", uid)) if uid else _dbt_model_id(manifest, key)
            dbt_node = manifest.get("nodes", {}).get(uid or "") or {}
            if product is not None:
                table = product.table_identifier
            elif dbt_node:
                table = f"{dbt_node['schema']}.{dbt_node.get('alias') or dbt_node['name']}"
            else:
                named = metadata.get("dagster/table_name")
                named = str(getattr(named, "value", named) or "")
                table = ".".join(named.split(".")[-2:]) if named.count(".") else ".".join(key[-2:])
            view.assets[key] = AssetView(
                key=key,
                domain=key[0],
                table=table,
                materializable=materializable,
                parents=tuple(sorted(tuple(p.path) for p in node.parent_keys)) if materializable else (),
                product=product,
                description=(product.description if product is not None else node.description),
                dbt_unique_id=uid,
                checks=tuple(checks_by_asset.get(key, ())) if materializable else (),
            )
    return view


def _dbt_model_id(manifest: Mapping, key: tuple[str, ...]) -> str | None:
    """The dbt model of asset ``[domain, model]`` (domain = its folder under models/)."""
    for uid, node in (manifest or {}).get("nodes", {}).items():
        node_fqn = node.get("fqn") or []
        if (
            node.get("resource_type") == "model"
            and node.get("name") == key[-1]
            and len(node_fqn) > 2
            and node_fqn[1] == key[0]
        ):
            return uid
    return None


def _dbt_test(manifest: Mapping, check_name: str, unique_id: str | None) -> Mapping | None:
    nodes = manifest.get("nodes", {}) if manifest else {}
    if unique_id and unique_id in nodes:
        return nodes[unique_id]
    return next(
        (n for n in nodes.values() if n.get("resource_type") == "test" and n.get("name") == check_name), None
    )


# --- Dagster instance -> statuses and results ---------------------------------------------------

_RUN_STATUS = {"SUCCESS": "Successful", "FAILURE": "Failed", "CANCELED": "Failed"}


def run_facts(instance, view: MeshView, run_ids: Iterable[str] | None = None) -> dict[str, list[RunFacts]]:
    """Pipeline statuses by domain: the runs that materialized the domains' assets (their
    latest materialization, or exactly ``run_ids``)."""

    keys_by_domain: dict[str, dict] = {}
    for asset in view.assets.values():
        if asset.materializable and asset.domain in view.primary:
            keys_by_domain.setdefault(asset.domain, {})[dg.AssetKey(list(asset.key))] = asset
    all_keys = {k: d for d, keys in keys_by_domain.items() for k in keys}
    if run_ids is None:
        run_ids = set()
        for key in all_keys:
            event = instance.get_latest_materialization_event(key)
            if event is not None:
                run_ids.add(event.run_id)
    run_ids = sorted(set(run_ids))
    out: dict[str, list[RunFacts]] = {}
    if not run_ids:
        return out
    for record in instance.get_run_records(dg.RunsFilter(run_ids=run_ids)):
        run = record.dagster_run
        done: dict = {}
        for event in instance.get_records_for_run(
            run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ).records:
            entry = event.event_log_entry
            done[entry.dagster_event.asset_key] = int(entry.timestamp * 1000)
        selected = set(run.asset_selection or ()) | set(done)
        status = _RUN_STATUS.get(run.status.value, "Pending")
        start = record.start_time or record.create_timestamp.timestamp()
        end = int(record.end_time * 1000) if record.end_time else None
        for domain, keys in keys_by_domain.items():
            mine = [k for k in keys if k in selected]
            if not mine:
                continue
            tasks = []
            for key in sorted(mine, key=lambda k: k.path):
                task_status = (
                    "Successful"
                    if key in done
                    else "Failed"
                    if status == "Failed"
                    else "Pending"
                    if status == "Pending"
                    else "Skipped"
                )
                tasks.append((keys[key].task_name, task_status, done.get(key)))
            out.setdefault(domain, []).append(
                RunFacts(
                    run_id=run.run_id,
                    status=status,
                    start_ms=int(start * 1000),
                    end_ms=end,
                    tasks=tuple(tasks),
                )
            )
    for runs in out.values():
        runs.sort(key=lambda r: r.start_ms)
    return out


def evaluation_of(record) -> Evaluation | None:
    """An asset check execution record of the Dagster instance, when it has completed."""
    event = getattr(record, "event", None)
    if event is None or event.dagster_event is None:
        return None
    data = event.dagster_event.event_specific_data
    if not hasattr(data, "passed"):
        return None
    metadata = {k: getattr(v, "value", v) for k, v in (data.metadata or {}).items()}
    return Evaluation(
        asset=tuple(data.asset_key.path),
        check=data.check_name,
        timestamp_ms=int(event.timestamp * 1000),
        passed=bool(data.passed),
        metadata=metadata,
        run_id=event.run_id,
    )


def latest_evaluations(instance, view: MeshView) -> list[Evaluation]:

    out = []
    for asset in view.assets.values():
        for check in asset.checks:
            record = instance.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(dg.AssetKey(list(check.asset)), check.name)
            )
            evaluation = evaluation_of(record) if record is not None else None
            if evaluation is not None:
                out.append(evaluation)
    return out
