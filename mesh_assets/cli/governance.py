"""``mesh lint`` (the federated governance rules) and ``mesh new`` (scaffolding)."""

from __future__ import annotations

import sys

from mesh_assets.cli import add_verb
from mesh_assets.cli.output import say
from mesh_assets.governance import lint_repository, rules_markdown
from mesh_assets.scaffold import ScaffoldError, new_domain, new_product
from mesh_assets.settings import PROJECT_DIR


def cmd_lint(args) -> int:
    """The federated governance rules (mesh_assets.governance), one line per violation."""

    if args.docs:  # the rules reference, committed as docs/governance.md
        sys.stdout.write(rules_markdown())
        return 0
    violations = lint_repository()
    for violation in violations:
        say(violation.format(PROJECT_DIR))
    say(f"mesh lint: {len(violations)} violation(s)" if violations else "mesh lint: all rules pass")
    return 1 if violations else 0


def cmd_new(args) -> int:

    try:
        if args.new_command == "domain":
            written = new_domain(PROJECT_DIR, args.name, owner=args.owner, domain_type=args.type)
        else:
            written = new_product(PROJECT_DIR, args.domain, args.name, dbt=args.dbt)
    except ScaffoldError as exc:
        raise SystemExit(f"mesh: {exc}") from None
    for path in written:
        say(f"wrote {path.relative_to(PROJECT_DIR)}")
    say(
        "next: edit the contract(s), then `mesh lint` and `mesh materialize "
        f"{args.name if args.new_command == 'domain' else args.domain}`"
    )
    return 0


def add_cli(sub) -> None:
    lint = add_verb(sub, "lint")
    lint.add_argument(
        "--docs",
        action="store_true",
        help="print the rules reference (docs/governance.md) instead of checking",
    )
    lint.set_defaults(fn=cmd_lint)
    new = add_verb(sub, "new")
    new_sub = new.add_subparsers(dest="new_command", required=True)
    nd = new_sub.add_parser("domain", help="a complete code location, registered in workspace.yaml")
    nd.add_argument("name")
    nd.add_argument("--owner", help="owner team (default: <name>-team)")
    nd.add_argument(
        "--type", default="source-aligned", choices=["source-aligned", "consumer-aligned", "aggregate"]
    )
    nd.set_defaults(fn=cmd_new)
    npr = new_sub.add_parser("product", help="a contract (and with --dbt its model)")
    npr.add_argument("domain")
    npr.add_argument("name")
    npr.add_argument("--dbt", action="store_true", help="built by a dbt model, not ingested")
    npr.set_defaults(fn=cmd_new)
