"""``mesh openmetadata export --host URL [DOMAIN ...]``: the whole mesh to OpenMetadata.

Full and idempotent: every entity is created or updated (PUT), so running it again changes
nothing. ``--dry-run`` prints what would be sent, without a host or a token.
"""

from __future__ import annotations

import json
import sys

from mesh_assets.cli import add_verb
from mesh_assets.cli.output import chosen_domains
from mesh_assets.definitions import build_domain
from mesh_assets.openmetadata.client import OpenMetadataClient, OpenMetadataError
from mesh_assets.openmetadata.collect import collect
from mesh_assets.openmetadata.export import export_mesh
from mesh_assets.openmetadata.plan import ExportConfig, plan_export
from mesh_assets.settings import openmetadata_host
from mesh_assets.workspace import domain_path


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
        "--batch-size", type=int, default=8, help="requests sent concurrently within a phase (default 8)"
    )
    export.add_argument(
        "--dry-run", action="store_true", help="print the calls that would be made (JSON lines), send nothing"
    )
    export.set_defaults(fn=cmd_export)


def cmd_export(args) -> int:

    domains = chosen_domains(args.domains)
    graphs = {d: build_domain(domain_path(d)).resolve_asset_graph() for d in domains}
    if args.dry_run:
        plan = plan_export(collect(graphs), ExportConfig.from_env())
        for call in plan.calls:
            body = (
                call.payload.to_json(lambda r: f"<{type(r).__name__} {r.type} {r.fqn}>")
                if call.payload is not None
                else None
            )
            print(
                json.dumps(
                    {"method": call.method, "path": call.path, "entity": call.entity, "body": body},
                    sort_keys=True,
                )
            )
        for warning in plan.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"{len(plan.calls)} call(s) planned (pipeline statuses and check results are "
            "read from the Dagster instance at export time)",
            file=sys.stderr,
        )
        return 0
    if not args.host:
        raise SystemExit("mesh: no OpenMetadata host: pass --host URL or set OPENMETADATA_HOST")
    try:
        client = OpenMetadataClient.from_env(args.host)
        report = export_mesh(client, graphs, batch_size=args.batch_size)
    except (OpenMetadataError, ValueError) as exc:
        raise SystemExit(f"mesh: OpenMetadata export failed: {exc}") from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"exported {', '.join(domains)} to {client.base}: {report.summary()}")
    return 0
