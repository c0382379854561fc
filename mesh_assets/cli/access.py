"""``mesh access build`` and ``mesh access audit``."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from mesh_assets.access.audit import query
from mesh_assets.access.policy_data import AccessConfigError, build
from mesh_assets.cli import add_verb
from mesh_assets.contract.errors import ContractError


def add_cli(subparsers) -> None:
    access = add_verb(subparsers, "access")
    verbs = access.add_subparsers(dest="access_command", required=True)
    build = verbs.add_parser(
        "build",
        help="write the OPA policy data and Trino's group file from the contracts and access/users.yaml",
    )
    build.set_defaults(fn=cmd_build)
    audit = verbs.add_parser(
        "audit",
        help="access decisions: Trino's (OPA decision log) and the "
        "local read path's ($MESH_HOME/access/audit.jsonl)",
    )
    audit.add_argument("--user", help="only this user's decisions")
    audit.add_argument("--product", metavar="DOMAIN[.PRODUCT]", help="only decisions on this product")
    audit.add_argument("--source", choices=["local", "trino"], help="only one enforcement point")
    audit.add_argument("--since", metavar="ISO_TIME", help="only decisions from this time on (UTC)")
    audit.add_argument("--limit", type=int, default=50, help="the most recent N (default 50; 0: all)")
    audit.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    audit.set_defaults(fn=cmd_audit)


def cmd_build(args) -> int:

    try:
        built = build()
    except (AccessConfigError, ContractError) as exc:
        raise SystemExit(f"mesh access build: {exc}") from None
    state = "written" if built.changed else "unchanged"
    print(
        f"policy data {state}: {built.data} ({built.products} products), Trino group file "
        f"{built.groups} ({built.users} users)"
    )
    print("a running OPA and Trino pick the changes up by themselves (OPA --watch, file.refresh-period=5s)")
    return 0


def cmd_audit(args) -> int:

    found = query(user=args.user, product=args.product, source=args.source, since=args.since)
    if args.limit:
        found = found[-args.limit :]
    if args.json:
        for decision in found:
            sys.stdout.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
        return 0
    if not found:
        print("no decision recorded" + (" for that selection" if args.user or args.product else ""))
        return 0
    print(f"{'time':24}  {'source':9} {'user [groups]':28} {'operation':18} {'product':34} decision")
    for decision in found:
        print(decision.line())
    return 0
