"""Who may log in to the stack's Trino: its accounts, their groups and Trino's password file.

The registry is ``stack/secrets/accounts.json`` (mode 0600): for each account its groups, a
bcrypt hash of its password and whether it is a service account. From it the stack writes
Trino's password file (``stack/secrets/trino-passwords.db``, the file password authenticator's
``user:$2y$...`` lines) here, and :mod:`mesh_assets.access.policy_data` writes the members into
Trino's group file. Trino reloads both every :data:`REFRESH`, so a change applies to the next
query without a restart.

Two kinds of accounts:

* **people** (``mesh users add|remove|passwd``): a name, groups, a password they chose;
* **service accounts**, made by ``mesh stack up``: the platform's ``mesh`` (the operator's and
  the stack's own account; its groups come from the users file) and one ``domain-<name>`` per
  domain of the workspace, in group ``domain_<name>``, that the domain's code location uses
  for Trino, and the accounts of tools that read as a group of people (:data:`TOOL_ACCOUNTS`:
  ``superset``, an ``analyst``: the access policy applies to its dashboards and SQL Lab as to
  any analyst, PII masked). Their random passwords are files
  ``stack/secrets/trino-accounts/<account>``.

Passwords and hashes are never printed nor logged.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from mesh_assets.stack.layout import TRINO_USER, StackError, StackLayout
from mesh_assets.stack.tls import write_private

REFRESH = "5s"  # file.refresh-period of Trino's password and group files
BCRYPT_COST = 10  # Trino accepts 8 and more
MIN_PASSWORD = 12
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
GROUP_NAME = re.compile(r"[a-z][a-z0-9_]*")
DOMAIN_ACCOUNT_PREFIX = "domain-"
SUPERSET_ACCOUNT = "superset"
# service accounts of tools, and the groups (contract roles) they read as
TOOL_ACCOUNTS = {SUPERSET_ACCOUNT: ("analyst",)}


class AccountError(StackError):
    """An account command that cannot be carried out; the message says why and what to do."""


def domain_account(domain: str) -> str:
    """The service account of ``domain``'s code location: ``domain-<name>``."""
    return f"{DOMAIN_ACCOUNT_PREFIX}{domain}"


def domain_group(domain: str) -> str:
    """The group of ``domain``'s service account: ``domain_<name>``."""
    return f"domain_{domain}"


@dataclass(frozen=True)
class Account:
    name: str
    groups: tuple[str, ...]
    service: bool


def registry_file(layout: StackLayout) -> Path:
    return layout.secret_path("accounts.json")


def password_file(layout: StackLayout) -> Path:
    """Trino's ``file.password-file``."""
    return layout.secret_path("trino-passwords.db")


def accounts_dir(layout: StackLayout) -> Path:
    """The service accounts' password files (``MESH_TRINO_ACCOUNTS_DIR``)."""
    return layout.secret_path("trino-accounts")


def _load(layout: StackLayout) -> dict[str, dict]:
    path = registry_file(layout)
    if not path.exists():
        return {}
    return json.loads(path.read_text())["accounts"]


def _save(layout: StackLayout, accounts: dict[str, dict]) -> None:
    """The registry, then Trino's password file from it (each replaced atomically, 0600)."""
    layout.ensure_dirs()
    body = {"accounts": dict(sorted(accounts.items()))}
    write_private(registry_file(layout), (json.dumps(body, indent=2) + "\n").encode())
    lines = [f"{name}:{spec['hash']}" for name, spec in sorted(accounts.items())]
    write_private(password_file(layout), ("\n".join(lines) + "\n").encode())


def accounts(layout: StackLayout | None = None) -> list[Account]:
    """Every account that can log in, by name."""
    layout = layout or StackLayout.current()
    return [
        Account(name, tuple(spec["groups"]), spec.get("service", False))
        for name, spec in sorted(_load(layout).items())
    ]


def memberships(layout: StackLayout | None = None) -> dict[str, tuple[str, ...]]:
    """account -> groups, for Trino's group file (service accounts without groups of their own
    take theirs from the users file)."""
    return {a.name: a.groups for a in accounts(layout) if a.groups}


def hash_password(password: str) -> str:
    """bcrypt, in the ``$2y$`` spelling Trino's file authenticator requires."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    return "$2y$" + hashed[4:]


def _check_name(name: str) -> None:
    if not USER_NAME.fullmatch(name):
        raise AccountError(f"user name {name!r}: letters, digits, '.', '_', '@' and '-' only, not first")


def _check_groups(groups: list[str]) -> tuple[str, ...]:
    for group in groups:
        if not GROUP_NAME.fullmatch(group):
            raise AccountError(f"group {group!r}: lower_snake_case (a contract role's name)")
        if group.startswith("domain_"):
            raise AccountError(f"group {group!r} belongs to a domain's service account")
    return tuple(sorted(set(groups)))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is too short: at least {MIN_PASSWORD} characters")
    if ":" in password or "\n" in password:
        raise AccountError("the password may not contain ':' or a line break")


def _person(layout: StackLayout, name: str, registry: dict[str, dict]) -> dict:
    spec = registry.get(name)
    if spec is None:
        raise AccountError(f"no user {name!r} on this stack (`mesh users list` shows who there is)")
    if spec.get("service"):
        raise AccountError(
            f"{name!r} is a service account of the platform: `mesh stack up` manages it "
            f"(its password is {accounts_dir(layout) / name})"
        )
    return spec


def add(name: str, groups: list[str], password: str, layout: StackLayout | None = None) -> Account:
    layout = layout or StackLayout.current()
    _check_name(name)
    if name == TRINO_USER or name in TOOL_ACCOUNTS or name.startswith(DOMAIN_ACCOUNT_PREFIX):
        raise AccountError(f"{name!r} is reserved for the platform's service accounts")
    member_of = _check_groups(groups)
    _check_password(password)
    registry = _load(layout)
    if name in registry:
        raise AccountError(f"user {name!r} exists: `mesh users passwd {name}` changes the password")
    registry[name] = {"groups": list(member_of), "hash": hash_password(password), "service": False}
    _save(layout, registry)
    return Account(name, member_of, False)


def remove(name: str, layout: StackLayout | None = None) -> None:
    layout = layout or StackLayout.current()
    registry = _load(layout)
    _person(layout, name, registry)
    del registry[name]
    _save(layout, registry)


def passwd(name: str, password: str, layout: StackLayout | None = None) -> None:
    layout = layout or StackLayout.current()
    registry = _load(layout)
    spec = _person(layout, name, registry)
    _check_password(password)
    spec["hash"] = hash_password(password)
    _save(layout, registry)


def ensure_service_accounts(layout: StackLayout, domains: list[str]) -> list[str]:
    """``mesh``, ``domain-<name>`` for every domain and the :data:`TOOL_ACCOUNTS`: a random
    password file each (made once), registered with its hash. Returns the accounts made."""
    registry = _load(layout)
    wanted = {
        TRINO_USER: [],
        **{domain_account(d): [domain_group(d)] for d in domains},
        **{name: list(groups) for name, groups in TOOL_ACCOUNTS.items()},
    }
    directory = accounts_dir(layout)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    made = []
    for name, groups in wanted.items():
        secret_file = directory / name
        if not secret_file.exists():
            value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
            write_private(secret_file, (value + "\n").encode())
            registry.pop(name, None)
            made.append(name)
        if name not in registry:
            registry[name] = {
                "groups": groups,
                "hash": hash_password(secret_file.read_text().strip()),
                "service": True,
            }
    if made or not password_file(layout).exists():
        _save(layout, registry)
    return made
