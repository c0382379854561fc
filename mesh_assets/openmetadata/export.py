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
server's answers. Every call is create-or-update: exporting twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from mesh_assets.openmetadata.client import OpenMetadataClient
from mesh_assets.openmetadata.collect import collect, latest_evaluations, run_facts
from mesh_assets.openmetadata.plan import ExportConfig, plan_export
from mesh_assets.openmetadata.send import Exporter, ExportReport, log
from mesh_assets.settings import load_settings, use_dagster_home

# --- entry points --------------------------------------------------------------------------------


def export_mesh(
    client: OpenMetadataClient,
    graphs: Mapping[str, Any],
    *,
    config: ExportConfig | None = None,
    instance=None,
    batch_size: int = 8,
) -> ExportReport:
    """Full, idempotent export of the domains of ``graphs`` (asset graphs by domain) with the
    latest pipeline status and check result of each from the Dagster instance."""

    settings = load_settings()
    view = collect(graphs, settings=settings)
    if instance is None:
        use_dagster_home(settings)
        with dg.DagsterInstance.get() as instance:
            runs, evaluations = run_facts(instance, view), latest_evaluations(instance, view)
    else:
        runs, evaluations = run_facts(instance, view), latest_evaluations(instance, view)
    plan = plan_export(view, config, runs=runs, evaluations=evaluations)
    for warning in plan.warnings:
        log.warning("openmetadata: %s", warning)
    return Exporter(client, batch_size=batch_size).run(plan)
