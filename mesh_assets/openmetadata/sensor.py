"""A Dagster sensor per domain that exports to OpenMetadata after materializations and asset
check evaluations.

Without ``OPENMETADATA_HOST`` the sensor is created stopped and, if started anyway, skips at
once (one environment lookup, no import of the exporter). With it, each tick looks for
materializations and check evaluations of the domain's assets newer than its cursor; when
there are some, it asks the server's API version (unless ``OPENMETADATA_API_VERSION`` sets
it) and exports the domain (tables, pipeline, lineage, test cases: skipped when
their digest did not change since the last export), the status of the runs involved and one
test case result per new check evaluation. A failed export leaves the cursor where it was (the
next tick retries) and fails the tick with the exporter's message.
"""

from __future__ import annotations

import json

import dagster as dg

from mesh_assets.openmetadata.api import negotiate
from mesh_assets.openmetadata.client import OpenMetadataClient
from mesh_assets.openmetadata.collect import collect, evaluation_of, run_facts
from mesh_assets.openmetadata.plan import ExportConfig, plan_export
from mesh_assets.openmetadata.send import Exporter
from mesh_assets.settings import openmetadata_api_version, openmetadata_host

HOST_ENV = "OPENMETADATA_HOST"
HISTORY = 20  # check evaluations looked at per check and tick


def openmetadata_sensor(domain: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{domain}_openmetadata",
        minimum_interval_seconds=60,
        default_status=(
            dg.DefaultSensorStatus.RUNNING if openmetadata_host() else dg.DefaultSensorStatus.STOPPED
        ),
        description=f"Exports the {domain} domain's metadata, lineage, run status and check "
        f"results to OpenMetadata (needs {HOST_ENV}).",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        if not openmetadata_host():
            return dg.SkipReason(f"{HOST_ENV} is not set: nothing to export")
        return export_new_events(context, domain)

    return _sensor


def export_new_events(context: dg.SensorEvaluationContext, domain: str):

    instance = context.instance
    graph = context.repository_def.asset_graph
    cursor = json.loads(context.cursor or "{}")
    seen_m: dict[str, int] = cursor.get("materializations", {})
    seen_c: dict[str, int] = cursor.get("checks", {})
    pending: list[str] = cursor.get("pending_runs", [])

    keys = [k for k in graph.materializable_asset_keys if k.path[0] == domain]
    new_m: dict[str, int] = {}
    run_ids: set[str] = set(pending)
    for key in keys:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=seen_m.get(key.to_user_string())), limit=1
        )
        if result.records:
            record = result.records[0]
            new_m[key.to_user_string()] = record.storage_id
            run_ids.add(record.event_log_entry.run_id)
    evaluations, new_c = [], {}
    for check_key in graph.asset_check_keys:
        if check_key.asset_key.path[0] != domain:
            continue
        name = check_key.to_user_string()
        last = seen_c.get(name)
        history = instance.event_log_storage.get_asset_check_execution_history(
            check_key, limit=HISTORY if last is not None else 1
        )
        for record in history:
            if last is not None and record.id <= last:
                continue
            evaluation = evaluation_of(record)
            if evaluation is None:  # planned or still running
                continue
            evaluations.append(evaluation)
            new_c[name] = max(new_c.get(name, 0), record.id)
            if evaluation.run_id:
                run_ids.add(evaluation.run_id)
    if not (new_m or new_c or pending):
        return dg.SkipReason(f"no new materialization or check evaluation in domain {domain}")

    client = OpenMetadataClient.from_env()
    api = negotiate(openmetadata_api_version(), client.server_version)
    view = collect({domain: graph})
    runs = run_facts(instance, view, run_ids)
    plan = plan_export(view, ExportConfig.from_env(), runs=runs, evaluations=evaluations, api=api)
    digest = plan.structure_digest()
    report = Exporter(client).run(plan, time_series_only=digest == cursor.get("digest"))
    for warning in report.warnings:
        context.log.warning(f"openmetadata: {warning}")
    context.log.info(f"openmetadata: domain {domain}: {report.summary()}")
    still_running = sorted({r.run_id for rs in runs.values() for r in rs if r.status == "Pending"})
    context.update_cursor(
        json.dumps(
            {
                "materializations": {**seen_m, **new_m},
                "checks": {**seen_c, **new_c},
                "pending_runs": still_running,
                "digest": digest,
            },
            sort_keys=True,
        )
    )
    return dg.SkipReason(f"exported to OpenMetadata: {report.summary()}")
