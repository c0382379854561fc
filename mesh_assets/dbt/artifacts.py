"""dbt artifacts of each domain's last run (manifest, catalog, run results), kept under
``$MESH_HOME/dbt/artifacts/<domain>/`` and served over HTTP for OpenMetadata's dbt workflow."""

import functools
import json
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mesh_assets.iceberg.catalog import IcebergCatalog
from mesh_assets.iceberg.wap import branch_head
from mesh_assets.settings import MeshSettings


def artifacts_dir(settings: MeshSettings, domain: str) -> Path:
    """Stable home of a domain's latest dbt artifacts (for OpenMetadata's dbt workflow)."""
    return settings.dbt_dir / "artifacts" / domain


def artifacts_server(settings: MeshSettings, host: str = "127.0.0.1", port: int = 8765):
    """An HTTP server of ``$MESH_HOME/dbt/artifacts`` (``/<domain>/manifest.json``,
    ``catalog.json``, ``run_results.json``): the URLs OpenMetadata's dbt workflow reads with its
    HTTP source (``dbtHttpConfig``). Read-only: only GET and HEAD, no directory outside it."""

    root = settings.dbt_dir / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    return ThreadingHTTPServer((host, port), handler)


def write_artifacts(
    settings: MeshSettings, domain: str, target_path: Path, catalog: IcebergCatalog, branch: str | None = None
) -> Path:
    """Keep manifest.json and run_results.json of the run, and a catalog.json describing the
    Iceberg tables the models and sources really are (dbt's own ``docs generate`` would
    describe the DuckDB relations instead). The kept manifest names each product model by its
    product table, not by the ``<model>__staging`` relation dbt-trino built it into, so
    OpenMetadata's dbt workflow finds the tables the exporter created. Files are replaced
    atomically."""
    out = artifacts_dir(settings, domain)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _published_names(json.loads((target_path / "manifest.json").read_text()))
    docs = {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json",
            "generated_at": manifest["metadata"].get("generated_at"),
            "invocation_id": manifest["metadata"].get("invocation_id"),
        },
        "nodes": {},
        "sources": {},
        "errors": None,
    }
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
            "metadata": {
                "type": "ICEBERG TABLE",
                "schema": node["schema"],
                "name": identifier.split(".")[1],
                "database": node.get("database"),
                "comment": None,
                "owner": None,
            },
            "columns": {
                f.name: {"type": str(f.field_type), "index": i, "name": f.name, "comment": f.doc}
                for i, f in enumerate(table.schema().fields, start=1)
            },
            "stats": {
                "row_count": {
                    "id": "row_count",
                    "label": "Row count",
                    "value": rows,
                    "include": True,
                    "description": "Rows in the current snapshot",
                }
            },
            "unique_id": uid,
        }
    for name, content in (
        ("manifest.json", json.dumps(manifest)),
        ("run_results.json", (target_path / "run_results.json").read_text()),
        ("catalog.json", json.dumps(docs, indent=1)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(content)
        tmp.replace(out / name)
    return out


STAGING_SUFFIX = "__staging"  # dbt_project/macros/generate_alias_name.sql


def _published_names(manifest: dict) -> dict:
    """``manifest`` with each product model's alias and relation name set to its product table."""
    for node in manifest["nodes"].values():
        alias = node.get("alias") or ""
        if node["resource_type"] == "model" and alias == node["name"] + STAGING_SUFFIX:
            node["alias"] = node["name"]
            if node.get("relation_name"):
                node["relation_name"] = node["relation_name"].replace(alias, node["name"])
    return manifest
