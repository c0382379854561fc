"""Materializing whole domains in the persistent Dagster instance, in process: what
``mesh materialize`` and ``mesh demo`` run (and the tests that need a materialized mesh).

One run per partitioning of a domain: its unpartitioned assets together, each partitioned group
as a single-run backfill of all its partitions, in dependency order. Each run is reported with
the assets it materialized (and the snapshot each wrote, from its materialization metadata),
why each other asset it was asked for was not materialized, and the outcome of every check it
evaluated."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mesh_assets.definitions import build_domain
from mesh_assets.iceberg.catalog import ensure_table, open_catalog
from mesh_assets.ingest.stream import lag, published_offsets
from mesh_assets.runs import fail_dead_runs, worker_tags
from mesh_assets.settings import ensure_local_dirs, load_settings, use_dagster_home
from mesh_assets.workspace import domain_path, load_domain


class InstanceUnavailable(RuntimeError):
    """The persistent Dagster instance could not be opened (its storage is unreachable)."""


def materialize(
    domains: list[str], say: Callable[[str], None] = print, *, streams: bool = False
) -> list[dict]:
    """Run every asset and check of ``domains`` in the persistent Dagster instance, after
    failing the runs of this machine whose worker process died (:mod:`mesh_assets.runs`);
    raises :class:`InstanceUnavailable` when that instance cannot be opened.

    Streaming products are fed by their sensors, not by these runs: their tables are only
    created from the contract (so models reading them run), unless ``streams``, which first
    commits their batches until each has caught up with its topic."""

    settings = load_settings()
    ensure_local_dirs(settings)
    use_dagster_home(settings)
    reports = []
    with _open_instance(settings.dagster_home) as instance:
        for run_id in fail_dead_runs(instance):
            say(f"run {run_id} marked failed: its worker process is gone (killed or crashed)")
        for domain in domains:
            say(f"== materializing domain {domain} ==")
            defs = build_domain(domain_path(domain))
            job = defs.resolve_implicit_global_asset_job_def()
            streaming = [p for p in load_domain(domain_path(domain)).products if p.stream is not None]
            catalog = open_catalog()
            runs = []
            for product in streaming:
                table = ensure_table(catalog, product)
                key = dg.AssetKey(product.asset_key_path)
                if streams:  # one run per batch, until main holds the topic up to its end
                    behind = lag(product, published_offsets(table))
                    runs += [([key], {})] * -(-behind // product.stream.max_records)
            skipped = {dg.AssetKey(p.asset_key_path) for p in streaming}
            for keys, tags in _runs(defs):
                batch_keys = [k for k in keys if k not in skipped]
                if batch_keys:
                    runs.append((batch_keys, tags))
            for keys, tags in runs:
                start = time.monotonic()
                result = job.execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    asset_selection=keys,
                    tags={**tags, **worker_tags()},
                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                )
                materializations = {e.asset_key: e for e in result.get_asset_materialization_events()}
                checks = [CheckOutcome.of(c) for c in result.get_asset_check_evaluations()]
                reports.append(
                    {
                        "domain": domain,
                        "success": result.success,
                        "run_id": result.run_id,
                        "seconds": time.monotonic() - start,
                        "materialized": list(materializations),
                        "written": {_name(k): _written(e) for k, e in materializations.items()},
                        "not_materialized": _not_materialized(
                            result, defs.resolve_asset_graph(), keys, materializations, checks
                        ),
                        "checks": checks,
                    }
                )
    return reports


def _open_instance(home) -> dg.DagsterInstance:
    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # noqa: BLE001 - whatever its storage raised, nothing can run
        root = exc
        while root.__cause__ is not None:
            root = root.__cause__
        causes = " <- ".join(f"{type(e).__name__}: {_first_line(e)}" for e in dict.fromkeys((exc, root)))
        raise InstanceUnavailable(
            f"the Dagster instance in {home} could not be opened ({causes}): is the "
            "database of its dagster.yaml up? On the local stack `mesh stack status` shows it and "
            "`mesh stack up` starts it"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _runs(defs) -> list[tuple[list, dict]]:
    """One run per partitioning: unpartitioned assets together; each partitioned group as a
    single-run backfill of all its partitions."""

    graph = defs.resolve_asset_graph()
    groups: dict = {}
    for key in graph.materializable_asset_keys:
        groups.setdefault(graph.get(key).partitions_def, []).append(key)
    # Runs go in dependency order: a group runs after the groups holding its upstream assets.
    order = {key: i for i, key in enumerate(graph.toposorted_asset_keys)}
    runs = []
    for partitions_def, keys in sorted(groups.items(), key=lambda g: max(order[k] for k in g[1])):
        tags = {}
        if partitions_def is not None:
            all_keys = partitions_def.get_partition_keys()
            tags = {ASSET_PARTITION_RANGE_START_TAG: all_keys[0], ASSET_PARTITION_RANGE_END_TAG: all_keys[-1]}
        runs.append((keys, tags))
    return runs


def _name(key: dg.AssetKey) -> str:
    return ".".join(key.path)


def _written(event) -> dict:
    """The snapshot a materialization wrote and its table's rows, from its metadata."""
    metadata = event.step_materialization_data.materialization.metadata
    snapshot, rows = metadata.get("iceberg/snapshot_id"), metadata.get("dagster/row_count")
    return {
        "snapshot_id": int(snapshot.value) if snapshot is not None else None,
        "rows": rows.value if rows is not None else None,
    }


def _not_materialized(result, graph, keys, materializations, checks) -> dict[str, str]:
    """``{domain.product: why}`` for each asset of the run's selection it did not materialize:
    the error of its own step, else what upstream in the run kept it from running."""
    failed_steps = {
        e.step_key: _error_line(e.step_failure_data.error) for e in result.get_step_failure_events()
    }
    layer = result.job_def.asset_layer
    out: dict[str, str] = {}
    for key in graph.toposorted_asset_keys:
        if key not in keys or key in materializations:
            continue
        step = str(layer.get_op_output_handle(key).node_handle)
        if step in failed_steps:
            out[_name(key)] = f"step {step} failed: {failed_steps[step]}"
            continue
        missing = [_name(k) for k in graph.get(key).parent_keys if k in keys and k not in materializations]
        blocked = sorted(
            f"{_name(c.asset_key)} {c.check_name}"
            for c in checks
            if c.asset_key in graph.get(key).parent_keys
            and not c.passed
            and c.severity == dg.AssetCheckSeverity.ERROR
        )
        if missing:
            out[_name(key)] = f"not run: upstream {', '.join(missing)} not materialized"
        elif blocked:
            out[_name(key)] = f"not run: blocking check(s) failed upstream: {', '.join(blocked)}"
        else:
            out[_name(key)] = f"step {step} ended without materializing it (see run {result.run_id})"
    return out


def _error_line(error) -> str:
    """The user error of a step failure (Dagster wraps it), its first line, at most 300 characters."""
    cause = error.cause if error.cause is not None else error
    text = cause.message.strip().splitlines()[0] if cause.message.strip() else cause.cls_name
    return text if len(text) <= 300 else text[:297] + "..."


class CheckOutcome(NamedTuple):
    """One asset check evaluation as the command line reports it."""

    asset_key: Any
    check_name: str
    passed: bool
    severity: Any  # dagster.AssetCheckSeverity

    @classmethod
    def of(cls, evaluation) -> CheckOutcome:
        """From a ``dagster.AssetCheckEvaluation``."""
        return cls(evaluation.asset_key, evaluation.check_name, evaluation.passed, evaluation.severity)
