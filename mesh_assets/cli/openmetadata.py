"""``mesh openmetadata export --host URL [DOMAIN ...]``: the whole mesh to OpenMetadata.

Full and idempotent: every entity is created or updated (PUT), so running it again changes
nothing. ``--api`` chooses the API version (default: the server's). ``--dry-run`` prints every
call an export would make, statuses and results included, without a host or a token.

``mesh openmetadata dbt-config DOMAIN`` writes the config of OpenMetadata's own dbt workflow
for the domain's artifacts (served, on S3 or local), naming the exporter's database service.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from mesh_assets.cli import add_verb
from mesh_assets.cli.output import chosen_domains
from mesh_assets.dbt.artifacts import artifacts_dir
from mesh_assets.definitions import build_domain
from mesh_assets.openmetadata.api import CHOICES, negotiate
from mesh_assets.openmetadata.client import OpenMetadataClient, OpenMetadataError
from mesh_assets.openmetadata.dbt_workflow import (
    SERVED,
    ArtifactSource,
    dbt_workflow,
    read_manifest,
    unmatched_nodes,
)
from mesh_assets.openmetadata.export import export_mesh, plan_mesh
from mesh_assets.openmetadata.plan import ExportConfig, fqn, placeholder
from mesh_assets.settings import load_settings, openmetadata_api_version, openmetadata_host
from mesh_assets.workspace import domain_path, load_domain, workspace_domains


def add_cli(subparsers) -> None:
    om = add_verb(subparsers, "openmetadata")
    verbs = om.add_subparsers(dest="openmetadata_command", required=True)
    export = verbs.add_parser(
        "export",
        help="create or update domains, data products, tables, pipelines, lineage, "
        "test cases and their latest results in OpenMetadata",
    )
    export.add_argument("domains", nargs="*", help="only these domains (default: all)")
    export.add_argument(
        "--host",
        default=openmetadata_host(),
        help="OpenMetadata URL, e.g. http://localhost:8585 (default: "
        "$OPENMETADATA_HOST); the bot JWT comes from OPENMETADATA_JWT_TOKEN "
        "or OPENMETADATA_JWT_TOKEN_FILE",
    )
    export.add_argument(
        "--api",
        choices=CHOICES,
        default=openmetadata_api_version(),
        help="OpenMetadata API version: 2 (servers 2.x), 1 (servers up to 1.4) or auto, the "
        "server's (GET /api/v1/system/version; a dry run asks no server and plans for 2) "
        "(default: $OPENMETADATA_API_VERSION or auto)",
    )
    export.add_argument(
        "--batch-size", type=int, default=8, help="requests sent concurrently within a phase (default 8)"
    )
    export.add_argument(
        "--dry-run",
        action="store_true",
        help="print every call the export would make (JSON lines), pipeline statuses and test "
        "results included; send nothing",
    )
    export.set_defaults(fn=cmd_export)

    dbt = verbs.add_parser(
        "dbt-config",
        help="write the config of OpenMetadata's dbt workflow for a domain (`metadata ingest -c FILE`)",
    )
    dbt.add_argument("domain")
    dbt.add_argument(
        "--host", default=openmetadata_host(), help="OpenMetadata URL (default: $OPENMETADATA_HOST)"
    )
    where = dbt.add_mutually_exclusive_group()
    where.add_argument(
        "--http",
        metavar="URL",
        help=f"base URL of the served artifacts (`mesh dbt serve`; default {SERVED})",
    )
    where.add_argument("--s3", metavar="S3_URL", help="s3://bucket/prefix holding <domain>/manifest.json...")
    where.add_argument("--local", metavar="DIR", help="a folder holding <domain>/manifest.json...")
    dbt.add_argument("-o", "--output", help="write the YAML here (default: standard output)")
    dbt.set_defaults(fn=cmd_dbt_config)


def cmd_export(args) -> int:

    domains = chosen_domains(args.domains)
    graphs = {d: build_domain(domain_path(d)).resolve_asset_graph() for d in domains}
    if args.dry_run:
        return _dry_run(args, graphs)
    if not args.host:
        raise SystemExit("mesh: no OpenMetadata host: pass --host URL or set OPENMETADATA_HOST")
    try:
        client = OpenMetadataClient.from_env(args.host)
        report = export_mesh(client, graphs, batch_size=args.batch_size, api=args.api)
    except (OpenMetadataError, ValueError) as exc:
        raise SystemExit(f"mesh: OpenMetadata export failed: {exc}") from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"exported {', '.join(domains)} to {client.base}: {report.summary()}")
    return 0


def _dry_run(args, graphs) -> int:
    """Print the calls of a full export as JSON lines (``method``, ``path``, ``entity``,
    ``kind``: the payload model, ``body``), without contacting a server: references carry
    placeholder ids (:func:`placeholder`), paths the planned FQNs."""
    try:
        api = negotiate(args.api, None)  # nothing is sent: auto plans for the 2.x API
        plan = plan_mesh(graphs, api, config=ExportConfig.from_env())
    except (OpenMetadataError, ValueError) as exc:
        raise SystemExit(f"mesh: OpenMetadata dry run failed: {exc}") from None
    for call in plan.calls:
        line = {
            "method": call.method,
            "path": call.planned_path(),
            "entity": call.entity,
            "kind": type(call.payload).__name__ if call.payload is not None else None,
            "body": plan.body(call, placeholder),
        }
        print(json.dumps(line, sort_keys=True))
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    series = sum(c.time_series for c in plan.calls)
    print(
        f"{len(plan.calls)} call(s) planned for the OpenMetadata {api.label} API "
        f"({series} of them pipeline statuses and test case results)",
        file=sys.stderr,
    )
    return 0


def cmd_dbt_config(args) -> int:
    """The dbt workflow config of a domain; a warning per dbt node OpenMetadata would not find
    among the exported tables."""
    if not args.host:
        raise SystemExit("mesh: no OpenMetadata host: pass --host URL or set OPENMETADATA_HOST")
    domain = chosen_domains([args.domain])[0]
    settings = load_settings()
    source = (
        ArtifactSource("s3", args.s3)
        if args.s3
        else ArtifactSource("local", args.local)
        if args.local
        else ArtifactSource("http", args.http or SERVED)
    )
    config = ExportConfig.from_env()
    try:
        manifest = read_manifest(artifacts_dir(settings, domain))
        workflow = dbt_workflow(
            domain, manifest, source=source, host=args.host, config=config, settings=settings
        )
    except (OSError, ValueError) as exc:
        raise SystemExit(f"mesh: openmetadata dbt-config {domain}: {exc}") from None
    tables = {
        fqn(config.database_service, config.database, *p.table_identifier.split(".", 1))
        for d in workspace_domains()
        for p in load_domain(domain_path(d)).products
    }
    for uid, missing in unmatched_nodes(manifest, config, tables).items():
        print(
            f"warning: dbt node {uid} is looked up as {missing}, which the export does not create: "
            "OpenMetadata's dbt workflow will skip it",
            file=sys.stderr,
        )
    text = f"# OpenMetadata's dbt workflow for domain {domain}: metadata ingest -c <this file>\n"
    text += yaml.safe_dump(workflow, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0
