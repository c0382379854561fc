"""``mesh users add|remove|passwd|list``: the people who may log in to the stack's Trino.

Each command changes the stack's account registry and Trino's password file
(:mod:`mesh_assets.stack.accounts`), then Trino's group file (``mesh access build``); Trino reloads
both within its refresh period (5 s): no restart. A password comes from ``--password-file``
(its first line) or is asked for twice on the terminal; it is never echoed nor printed.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from mesh_assets.access.policy_data import AccessConfigError, build
from mesh_assets.cli import add_verb
from mesh_assets.contract.errors import ContractError
from mesh_assets.stack import accounts
from mesh_assets.stack.layout import StackError, StackLayout


def _password(args, name: str) -> str:
    if args.password_file:
        try:
            lines = Path(args.password_file).read_text().splitlines()
        except OSError as exc:
            raise StackError(f"--password-file {args.password_file}: {exc.strerror}") from None
        if not lines:
            raise StackError(f"--password-file {args.password_file} is empty")
        return lines[0]
    if not sys.stdin.isatty():
        raise StackError("no terminal to ask for the password on: give --password-file FILE")
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
        raise StackError("the two passwords differ; nothing changed")
    return first


def _apply_groups(layout: StackLayout) -> None:
    """Trino's group file (and the policy data) with the accounts' groups."""
    try:
        build(layout.access_dir)
    except (AccessConfigError, ContractError) as exc:
        raise StackError(
            f"the accounts changed, but Trino's group file could not be rebuilt: {exc}"
        ) from None


def _stack() -> StackLayout:
    layout = StackLayout.current()
    if not accounts.password_file(layout).exists():
        raise StackError(f"no stack in {layout.root}: `mesh stack up` first")
    return layout


def cmd_add(args) -> int:
    layout = _stack()
    account = accounts.add(args.name, args.group or [], _password(args, args.name), layout)
    _apply_groups(layout)
    groups = ", ".join(account.groups) or "no group"
    print(f"user {account.name} added ({groups}); Trino accepts it within {accounts.REFRESH}")
    return 0


def cmd_remove(args) -> int:
    layout = _stack()
    accounts.remove(args.name, layout)
    _apply_groups(layout)
    print(f"user {args.name} removed; Trino refuses it within {accounts.REFRESH}")
    return 0


def cmd_passwd(args) -> int:
    layout = _stack()
    accounts.passwd(args.name, _password(args, args.name), layout)
    print(f"password of {args.name} changed; Trino takes the new one within {accounts.REFRESH}")
    return 0


def cmd_list(args) -> int:
    layout = _stack()
    print(f"{'user':24} {'kind':8} groups")
    for account in accounts.accounts(layout):
        kind = "service" if account.service else "person"
        print(f"{account.name:24} {kind:8} {', '.join(account.groups) or '-'}")
    return 0


def _run(fn):
    def run(args) -> int:
        try:
            return fn(args)
        except StackError as exc:
            print(f"mesh users {args.users_command}: {exc}", file=sys.stderr)
            return 1

    return run


def add_cli(subparsers) -> None:
    users = add_verb(subparsers, "users")
    verbs = users.add_subparsers(dest="users_command", required=True)
    add = verbs.add_parser("add", help="a person who may log in to Trino, with the groups contracts grant to")
    add.add_argument("name")
    add.add_argument("--group", action="append", metavar="G", help="a group (a contract role); repeatable")
    add.add_argument("--password-file", metavar="F", help="read the password from F (else: asked)")
    add.set_defaults(fn=_run(cmd_add))
    remove = verbs.add_parser("remove", help="a person may no longer log in")
    remove.add_argument("name")
    remove.set_defaults(fn=_run(cmd_remove))
    passwd = verbs.add_parser("passwd", help="a new password for a person")
    passwd.add_argument("name")
    passwd.add_argument("--password-file", metavar="F", help="read the password from F (else: asked)")
    passwd.set_defaults(fn=_run(cmd_passwd))
    verbs.add_parser(
        "list", help="who may log in, service accounts included, with their groups"
    ).set_defaults(fn=_run(cmd_list))
