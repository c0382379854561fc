"""Exporting the mesh to OpenMetadata: collect -> plan -> send.

Sources, nothing written twice:

* ``domain.yaml`` -> a Domain (``domainType`` Source-aligned / Consumer-aligned / Aggregate);
* each contract -> a Data Product and its Iceberg table (columns, types, descriptions,
  classification tags, primary key, owner team, retention), linked to its domain and product;
* each domain's Dagster asset graph -> a Dagster pipeline (tasks = assets), table-level lineage
  for every asset dependency, a test case per asset check;
* the dbt artifacts under ``$MESH_HOME/dbt/artifacts/<domain>/`` -> the columns of models
  without a contract and column-level lineage from the compiled SQL (sqlglot);
* the Dagster instance -> pipeline status per run and test case results per check evaluation.

:func:`collect` gathers these facts into a :class:`MeshView`; :func:`plan_export` turns a view
into ordered phases of PUT calls (services before databases before tables before lineage);
:class:`Exporter` sends them in concurrent batches, resolving entity references from the
server's answers. Every call is create-or-update: exporting twice changes nothing. The API
version (2.x by default, 1.x for servers up to 1.4) is chosen first
(:func:`mesh_assets.openmetadata.api.negotiate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from mesh_assets.openmetadata.api import ApiVersion, negotiate
from mesh_assets.openmetadata.client import OpenMetadataClient
from mesh_assets.openmetadata.collect import collect, latest_evaluations, run_facts
from mesh_assets.openmetadata.plan import ExportConfig, Plan, plan_export
from mesh_assets.openmetadata.send import Exporter, ExportReport, log
from mesh_assets.settings import load_settings, openmetadata_api_version, use_dagster_home

# --- entry points --------------------------------------------------------------------------------


def plan_mesh(
    graphs: Mapping[str, Any], api: ApiVersion, *, config: ExportConfig | None = None, instance=None
) -> Plan:
    """The full export of the domains of ``graphs`` (asset graphs by domain) for API ``api``,
    with the pipeline status of the runs behind each domain's latest materializations and the
    latest result of each check, read from the Dagster instance (``instance`` or
    ``$DAGSTER_HOME``'s)."""
    settings = load_settings()
    view = collect(graphs, settings=settings)
    if instance is None:
        use_dagster_home(settings)
        with dg.DagsterInstance.get() as instance:
            runs, evaluations = run_facts(instance, view), latest_evaluations(instance, view)
    else:
        runs, evaluations = run_facts(instance, view), latest_evaluations(instance, view)
    return plan_export(view, config, runs=runs, evaluations=evaluations, api=api)


def export_mesh(
    client: OpenMetadataClient,
    graphs: Mapping[str, Any],
    *,
    config: ExportConfig | None = None,
    instance=None,
    batch_size: int = 8,
    api: str | None = None,
) -> ExportReport:
    """Full, idempotent export of the domains of ``graphs`` (asset graphs by domain) with the
    latest pipeline status and check result of each from the Dagster instance, in the API
    version ``api`` (``1``, ``2``, or ``auto``: the server's; default
    ``OPENMETADATA_API_VERSION``)."""

    version = negotiate(api or openmetadata_api_version(), client.server_version)
    log.info("openmetadata: speaking the %s API to %s", version.label, client.base)
    plan = plan_mesh(graphs, version, config=config, instance=instance)
    for warning in plan.warnings:
        log.warning("openmetadata: %s", warning)
    return Exporter(client, batch_size=batch_size).run(plan)
