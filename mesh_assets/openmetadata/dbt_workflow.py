"""OpenMetadata's own dbt workflow for a domain: the ingestion config ``metadata ingest -c`` runs.

The workflow reads a domain's dbt artifacts (``manifest.json``, ``catalog.json``,
``run_results.json`` kept under ``$MESH_HOME/dbt/artifacts/<domain>/``) from where they are
served (``mesh dbt serve``, HTTP), from S3, or from local files, and adds dbt's descriptions,
tags, model SQL, tests and lineage to the tables the exporter created. It never creates a table:
it looks each node up as ``<service>.<database>.<schema>.<alias>``, so the config names the
exporter's database service, and ``catalogMapping`` maps the database the manifest names (dbt's
in-memory DuckDB, ``memory``, on the ``local`` target; the Trino catalog on ``trino``) to the exporter's
database. :func:`unmatched_nodes` lists what the workflow would still not find.

No credential is written: the bot's token and S3 keys are ``${VARIABLE}`` references that
``metadata ingest`` expands from its environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mesh_assets.openmetadata.client import TOKEN_ENV, api_base
from mesh_assets.openmetadata.plan import ExportConfig
from mesh_assets.settings import MeshSettings, aws_region

ARTIFACTS = {"Manifest": "manifest.json", "Catalog": "catalog.json", "RunResults": "run_results.json"}
SERVED = "http://127.0.0.1:8765"  # `mesh dbt serve`'s default address


@dataclass(frozen=True)
class ArtifactSource:
    """Where the workflow reads a domain's artifacts: ``http`` (a base URL serving
    ``/<domain>/manifest.json``...), ``s3`` (``s3://bucket/prefix``, the domain's files under
    ``prefix/<domain>/``) or ``local`` (the folder holding ``<domain>/manifest.json``...)."""

    kind: str
    location: str


def _config_source(source: ArtifactSource, domain: str, settings: MeshSettings) -> dict:
    if source.kind == "http":
        base = f"{source.location.rstrip('/')}/{domain}"
        return {"dbtConfigType": "http"} | {f"dbt{k}HttpPath": f"{base}/{f}" for k, f in ARTIFACTS.items()}
    if source.kind == "local":
        folder = Path(source.location) / domain
        return {"dbtConfigType": "local"} | {f"dbt{k}FilePath": str(folder / f) for k, f in ARTIFACTS.items()}
    if source.kind == "s3":
        url = urlsplit(source.location)
        if url.scheme != "s3" or not url.netloc:
            raise ValueError(f"S3 location {source.location!r}: expected s3://bucket[/prefix]")
        security = {
            "awsAccessKeyId": "${AWS_ACCESS_KEY_ID}",
            "awsSecretAccessKey": "${AWS_SECRET_ACCESS_KEY}",
            "awsRegion": aws_region(),
        }
        if settings.s3_endpoint:
            security["endPointURL"] = settings.s3_endpoint
        prefix = "/".join(p for p in (url.path.strip("/"), domain) if p)
        return {
            "dbtConfigType": "s3",
            "dbtSecurityConfig": security,
            "dbtPrefixConfig": {"dbtBucketName": url.netloc, "dbtObjectPrefix": prefix},
        }
    raise ValueError(f"artifact source {source.kind!r}: expected http, s3 or local")


def manifest_databases(manifest: Mapping) -> list[str]:
    """The databases the manifest's models and sources name."""
    nodes = list(manifest.get("nodes", {}).values()) + list(manifest.get("sources", {}).values())
    return sorted({n["database"] for n in nodes if n.get("database")})


def dbt_workflow(
    domain: str,
    manifest: Mapping,
    *,
    source: ArtifactSource,
    host: str,
    config: ExportConfig,
    settings: MeshSettings,
) -> dict:
    """The workflow config (``OpenMetadataWorkflowConfig``) of ``domain``'s dbt artifacts."""
    return {
        "source": {
            "type": "dbt",
            "serviceName": config.database_service,
            "sourceConfig": {
                "config": {
                    "type": "DBT",
                    "dbtConfigSource": _config_source(source, domain, settings),
                    "catalogMapping": {db: config.database for db in manifest_databases(manifest)},
                    "dbtUpdateDescriptions": False,  # the contracts' descriptions, exported, stay
                    "includeTags": True,
                }
            },
        },
        "sink": {"type": "metadata-rest", "config": {}},
        "workflowConfig": {
            "loggerLevel": "INFO",
            "openMetadataServerConfig": {
                "hostPort": api_base(host),
                "authProvider": "openmetadata",
                "securityConfig": {"jwtToken": f"${{{TOKEN_ENV}}}"},
            },
        },
    }


def lookups(manifest: Mapping, config: ExportConfig) -> dict[str, str]:
    """The table each materialized model and source of ``manifest`` is looked up as by the
    workflow (``service.database.schema.name``, database mapped as ``catalogMapping`` does), by
    dbt unique id."""
    out = {}
    for uid, node in manifest.get("nodes", {}).items():
        materialized = (node.get("config") or {}).get("materialized")
        if node.get("resource_type") in ("model", "snapshot", "seed") and materialized != "ephemeral":
            name = node.get("alias") or node["name"]
            out[uid] = ".".join((config.database_service, config.database, node["schema"], name))
    for uid, node in manifest.get("sources", {}).items():
        name = node.get("identifier") or node["name"]
        out[uid] = ".".join((config.database_service, config.database, node["schema"], name))
    return out


def unmatched_nodes(manifest: Mapping, config: ExportConfig, tables: set[str]) -> dict[str, str]:
    """The nodes whose lookup names no table in ``tables`` (FQNs the exporter created), by
    unique id: a manifest not kept by the platform (which renames dbt-trino's ``<model>__staging``
    relations to their product tables, :mod:`mesh_assets.dbt.artifacts`) or a model never exported."""
    return {uid: fqn for uid, fqn in lookups(manifest, config).items() if fqn not in tables}


def read_manifest(artifacts: Path) -> dict:
    """The domain's kept manifest; a clear error when the domain has not run dbt yet."""
    path = artifacts / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no dbt artifacts for this domain yet: materialize its dbt models first "
            "(`mesh materialize DOMAIN`)"
        )
    return json.loads(path.read_text())
