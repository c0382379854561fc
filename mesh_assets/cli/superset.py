"""``mesh superset sync``: the stack's Superset (``mesh stack up --with superset``) gets the mesh:
a database on Trino, a dataset per public product, the delays dashboard (:mod:`mesh_assets.superset`)."""

from __future__ import annotations

import sys

from mesh_assets.cli import add_verb
from mesh_assets.stack.layout import StackError
from mesh_assets.superset import SupersetSyncError, sync


def _cmd_sync(args) -> int:
    try:
        result = sync()
    except (SupersetSyncError, StackError, OSError) as exc:
        print(f"mesh superset sync: {exc}", file=sys.stderr)
        return 1
    print(
        f"open {result.dashboard_url} (login admin, password in the stack's secrets/superset-admin-password)"
    )
    return 0


def add_cli(subparsers) -> None:
    superset = add_verb(subparsers, "superset")
    verbs = superset.add_subparsers(dest="superset_command", required=True)
    verbs.add_parser(
        "sync",
        help="create or update the Trino database, one dataset per public product and the delays dashboard",
    ).set_defaults(fn=_cmd_sync)
