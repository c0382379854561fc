"""``mesh stack up [--with superset] | down | status | env``: the production stack on loopback.
``up`` first builds the access policy folder that OPA and Trino read."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mesh_assets.access.policy_data import AccessConfigError, build, data_file
from mesh_assets.cli import add_verb
from mesh_assets.contract.errors import ContractError
from mesh_assets.stack import OPTIONAL_SERVICES, down, env_script, status, up
from mesh_assets.stack.layout import HOST, TRINO_CATALOG, TRINO_USER, StackError, StackLayout
from mesh_assets.workspace import workspace_domains


def _build_access(layout: StackLayout, say: Callable[[str], None] = print) -> None:
    """The policy data and Trino's group file, from the contracts and access/users.yaml (OPA
    and Trino pick up changes by themselves; `mesh access build` refreshes them too). A contract
    being edited does not stop the stack: the previous data stays in force, with a warning."""

    try:
        build(layout.access_dir)
    except (AccessConfigError, ContractError) as exc:
        if data_file(layout.access_dir).exists() and (layout.access_dir / "trino-groups.txt").exists():
            say(f"warning: the access policy data was not rebuilt, the previous one stays in force: {exc}")
            return
        raise StackError(f"the access policy data could not be built: {exc}") from None


# --- command line ---------------------------------------------------------------------------


def _cmd_up(args) -> int:
    try:
        up(prepare=_build_access, with_services=tuple(args.with_services or ()))
    except StackError as exc:
        print(f"mesh stack up: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_down(args) -> int:
    down(purge=args.purge)
    return 0


def _cmd_status(args) -> int:
    layout = StackLayout.current()
    current = status(layout)
    width = max(9, *(len(s.name) for s in current))
    for s in current:
        health = "ok" if s.healthy else "FAILING"
        pid = s.pid if s.pid is not None else "-"
        print(f"{s.name:{width}} {HOST}:{s.port:<6} pid {pid!s:8} {health:8} {s.detail}")
    domains = ", ".join(_domains_or_unknown())
    print(
        f"Trino: https://{HOST}:{layout.ports['trino-https']} (password login, CA {layout.ca_file}), "
        f"service account {TRINO_USER}, catalog {TRINO_CATALOG}, "
        f"schemas = domains ({domains}); warehouse {layout.warehouse} on {layout.s3_endpoint}"
    )
    print(
        f"access: OPA http://{HOST}:{layout.ports['opa']} decides for Trino (policy data "
        f"{layout.access_dir}, decision log {layout.log('opa')}; `mesh access audit`)"
    )
    print(
        f"streams: Kafka {HOST}:{layout.ports['kafka']} (KRaft controller {HOST}:{layout.ports['kafka-controller']})"
    )
    if all(s.healthy for s in current):
        print('production settings: eval "$(mesh stack env)"')
        return 0
    down_ones = [s.name for s in current if not s.healthy]
    print(
        f"stack NOT healthy: {', '.join(down_ones)} (`mesh stack up` starts what is missing; "
        f"logs in {layout.logs_dir})"
    )
    return 1


def _domains_or_unknown() -> list[str]:
    try:
        return workspace_domains()
    except Exception:  # noqa: BLE001 - status must print even with a broken workspace.yaml
        return ["?"]


def _cmd_env(args) -> int:
    layout = StackLayout.current()
    if not layout.secret_path("catalog-password").exists():
        print("mesh stack env: no stack yet; run `mesh stack up` first", file=sys.stderr)
        return 1
    sys.stdout.write(env_script(layout))
    return 0


def add_cli(subparsers) -> None:
    stack = add_verb(subparsers, "stack")
    verbs = stack.add_subparsers(dest="stack_command", required=True)
    up_p = verbs.add_parser("up", help="install what is missing and start every service")
    up_p.add_argument(
        "--with",
        dest="with_services",
        action="append",
        choices=OPTIONAL_SERVICES,
        help="also start this optional service (superset: dashboards and SQL Lab over Trino, port MESH_SUPERSET_PORT)",
    )
    up_p.set_defaults(fn=_cmd_up)
    down_p = verbs.add_parser("down", help="stop every service")
    down_p.add_argument("--purge", action="store_true", help="also delete the stack's data and credentials")
    down_p.set_defaults(fn=_cmd_down)
    verbs.add_parser("status", help="each service's port, pid and health (exit 1 if one fails)").set_defaults(
        fn=_cmd_status
    )
    verbs.add_parser("env", help='export lines for production mode: eval "$(mesh stack env)"').set_defaults(
        fn=_cmd_env
    )
