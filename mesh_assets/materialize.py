"""Materializing whole domains in the persistent Dagster instance, in process: what
``mesh materialize`` and ``mesh demo`` run (and the tests that need a materialized mesh).

One run per partitioning of a domain: its unpartitioned assets together, each partitioned group
as a single-run backfill of all its partitions, in dependency order. Each run is reported with
the assets it materialized and the outcome of every check it evaluated."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from mesh_assets.definitions import build_domain
from mesh_assets.runs import fail_dead_runs, worker_tags
from mesh_assets.settings import ensure_local_dirs, load_settings, use_dagster_home
from mesh_assets.workspace import (
    domain_path,
)


def materialize(domains: list[str], say: Callable[[str], None] = print) -> list[dict]:
    """Run every asset and check of ``domains`` in the persistent Dagster instance, after
    failing the runs of this machine whose worker process died (:mod:`mesh_assets.runs`)."""

    settings = load_settings()
    ensure_local_dirs(settings)
    use_dagster_home(settings)
    reports = []
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_dead_runs(instance):
            say(f"run {run_id} marked failed: its worker process is gone (killed or crashed)")
        for domain in domains:
            say(f"== materializing domain {domain} ==")
            defs = build_domain(domain_path(domain))
            job = defs.resolve_implicit_global_asset_job_def()
            for keys, tags in _runs(defs):
                start = time.monotonic()
                result = job.execute_in_process(
                    instance=instance,
                    raise_on_error=False,
                    asset_selection=keys,
                    tags={**tags, **worker_tags()},
                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                )
                reports.append(
                    {
                        "domain": domain,
                        "success": result.success,
                        "run_id": result.run_id,
                        "seconds": time.monotonic() - start,
                        "materialized": list(
                            dict.fromkeys(e.asset_key for e in result.get_asset_materialization_events())
                        ),
                        "checks": [CheckOutcome.of(c) for c in result.get_asset_check_evaluations()],
                    }
                )
    return reports


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
