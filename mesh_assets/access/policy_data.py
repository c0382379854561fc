"""The policy's data, generated from the contracts and the mesh's users file (``mesh access build``).

The Rego policy (``mesh_assets/access/policies/trino.rego``) is fixed and committed; what it decides
from is generated here, under ``$MESH_HOME/access/``:

``opa/data.json``      ``data.mesh``: products, their tables, reader roles (clearance, row
                       filter) and column classifications and masks; the platform's identities
                       (a folder of its own: OPA watches it and reloads on every change)
``trino-groups.txt``   Trino's file group provider (``group:user1,user2``), from the users file
                       and the stack's accounts
``audit.jsonl``        the local read path's decisions (:mod:`mesh_assets.access.audit`)

The users file (``access/users.yaml`` in the repository, ``MESH_ACCESS_USERS`` overrides) maps
users to groups as code: the platform's identities and the users a policy is tried with. The
local stack's accounts (``mesh users add --group``, the ``domain-<name>`` service accounts,
:mod:`mesh_assets.stack.accounts`) add theirs; for a name in both, the account's groups win.
In production groups come from the identity provider and the file only names the platform's
identities.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from mesh_assets import settings
from mesh_assets.contract.model import DataProduct
from mesh_assets.stack import accounts
from mesh_assets.stack.layout import StackLayout
from mesh_assets.workspace import WORKSPACE_FILE, all_contract_files, all_products, workspace_domains

POLICY_DIR = Path(__file__).resolve().parent / "policies"
POLICY_FILES = ("trino.rego", "decision_logs.rego")
_GROUP = re.compile(r"[a-z][a-z0-9_]*")
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")


class AccessConfigError(ValueError):
    """The users file or the generated policy data is not usable; the message says why."""


@dataclass(frozen=True)
class Users:
    platform_users: tuple[str, ...]
    platform_groups: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]  # user -> groups
    path: Path | None = None

    def groups_of(self, user: str) -> tuple[str, ...]:
        return self.groups.get(user, ())

    def with_accounts(self, memberships: dict[str, tuple[str, ...]]) -> Users:
        """These users with the stack's accounts' groups (an account's groups win)."""
        return Users(self.platform_users, self.platform_groups, {**self.groups, **memberships}, self.path)


def stack_accounts() -> dict[str, tuple[str, ...]]:
    """account -> groups of this MESH_HOME's stack (empty without a stack)."""
    return accounts.memberships(StackLayout.current())


def effective_users() -> Users:
    """The users file with the stack's accounts: who is in which group, as Trino sees it."""
    return load_users().with_accounts(stack_accounts())


def users_file() -> Path:

    return settings.access_users_file()


def access_dir() -> Path:
    """Where ``mesh access build`` writes: ``$MESH_HOME/access`` (``MESH_ACCESS_DIR`` overrides)."""

    return settings.access_dir()


def data_file(directory: Path) -> Path:
    return directory / "opa" / "data.json"


def load_users(path: Path | None = None) -> Users:
    path = path or users_file()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise AccessConfigError(f"users file {path} is missing (MESH_ACCESS_USERS names another)") from None
    except yaml.YAMLError as exc:
        raise AccessConfigError(f"users file {path} is not valid YAML: {exc}") from None
    platform = raw.get("platform") or {}
    platform_users = tuple(platform.get("users") or ())
    platform_groups = tuple(platform.get("groups") or ())
    groups: dict[str, tuple[str, ...]] = {}
    for user, member_of in (raw.get("users") or {}).items():
        user = str(user)
        if not _USER.fullmatch(user):
            raise AccessConfigError(
                f"users file {path}: user name {user!r} may hold letters, digits, '.', '_', '@' and '-' only"
            )
        member_of = member_of or []
        if not isinstance(member_of, list):
            raise AccessConfigError(f"users file {path}: user {user}: groups must be a list")
        for group in member_of:
            if not isinstance(group, str) or not _GROUP.fullmatch(group):
                raise AccessConfigError(
                    f"users file {path}: user {user}: group {group!r} must be lower_snake_case"
                )
        groups[user] = tuple(sorted(set(member_of)))
    for user in platform_users:
        if not _USER.fullmatch(str(user)):
            raise AccessConfigError(f"users file {path}: platform user {user!r} is not a user name")
    for group in platform_groups:
        if not _GROUP.fullmatch(str(group)):
            raise AccessConfigError(f"users file {path}: platform group {group!r} must be lower_snake_case")
    if not platform_users and not platform_groups:
        raise AccessConfigError(
            f"users file {path}: `platform` must name the service user "
            "(users: [mesh]) or its group: without it the platform itself "
            "cannot write"
        )
    return Users(tuple(map(str, platform_users)), tuple(map(str, platform_groups)), groups, path)


def product_policy(product: DataProduct) -> dict:
    roles = {}
    for role in product.roles:
        spec: dict = {"access": role.access, "clearance": list(role.clearance)}
        if role.row_filter is not None:  # absent, not null: a null is defined (true) in Rego
            spec["rowFilter"] = role.row_filter
        roles[role.role] = spec
    columns = {}
    for column in product.columns:
        spec = {"classification": column.classification or "unclassified"}
        if column.masking is not None:
            spec["masking"] = column.masking
        columns[column.name] = spec
    return {"owner": product.owner, "visibility": product.visibility, "roles": roles, "columns": columns}


def product_tables(product: DataProduct) -> list[str]:
    """The Iceberg tables that hold the product: its current major's table and, from major 2
    on, the previous major's table that consumers may still read."""
    tables = [product.table_identifier.split(".", 1)[1]]
    if product.major_version >= 2:
        tables.append(product.name)
    return tables


def policy_data(products: list[DataProduct], users: Users, catalog: str | None = None) -> dict:
    """``data.mesh`` of the policy."""
    tables: dict[str, dict[str, str]] = {}
    for product in products:
        for table in product_tables(product):
            tables.setdefault(product.domain, {})[table] = product.identifier
    domains = sorted(set(workspace_domains()) | {p.domain for p in products})
    return {
        "mesh": {
            "catalog": catalog or settings.trino_settings().catalog,
            "platform": {"users": sorted(users.platform_users), "groups": sorted(users.platform_groups)},
            # the group of each domain's service account -> the domain whose pipeline it is
            "domain_groups": {accounts.domain_group(d): d for d in domains},
            "tables": tables,
            "products": {
                p.identifier: product_policy(p) for p in sorted(products, key=lambda p: p.identifier)
            },
        }
    }


def group_file(users: Users) -> str:
    """Trino's file group provider format: one ``group:user1,user2`` line per group."""
    members: dict[str, set[str]] = {}
    for user, groups in users.groups.items():
        for group in groups:
            members.setdefault(group, set()).add(user)
    lines = ["# generated by `mesh access build` from the users file; do not edit"]
    lines += [f"{group}:{','.join(sorted(names))}" for group, names in sorted(members.items())]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Built:
    directory: Path
    data: Path
    groups: Path
    products: int
    users: int
    changed: bool


def _write(path: Path, text: str) -> bool:
    """Replace ``path`` atomically (OPA and Trino watch these files); False when unchanged."""
    if path.exists() and path.read_text() == text:
        path.touch()  # up to date with its inputs (ensure_built compares times)
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def build(
    directory: Path | None = None, *, products: list[DataProduct] | None = None, users: Users | None = None
) -> Built:
    """Write the policy data and Trino's group file into ``directory`` (``$MESH_HOME/access``);
    the users are the users file's, with the stack's accounts when ``directory`` is the one
    the stack's Trino reads."""
    directory = directory or access_dir()
    data_file(directory).parent.mkdir(parents=True, exist_ok=True)
    products = all_products() if products is None else products
    if users is None:
        stacks = directory.resolve() == StackLayout.current().access_dir.resolve()
        users = effective_users() if stacks else load_users()
    data = json.dumps(policy_data(products, users), indent=2, sort_keys=True) + "\n"
    changed = _write(data_file(directory), data)
    for name in POLICY_FILES:  # the policy folder a server loads whole (`mesh stack up`)
        changed |= _write(data_file(directory).parent / name, (POLICY_DIR / name).read_text())
    changed |= _write(directory / "trino-groups.txt", group_file(users))
    return Built(
        directory,
        data_file(directory),
        directory / "trino-groups.txt",
        len(products),
        len(users.groups),
        changed,
    )


def inputs() -> list[Path]:
    """The files the generated data depends on (for staleness checks)."""

    return [
        users_file(),
        accounts.registry_file(StackLayout.current()),
        WORKSPACE_FILE,
        *all_contract_files(),
    ]


def ensure_built(directory: Path | None = None) -> Path:
    """The access directory, rebuilt when a contract or the users file is newer than its data."""
    directory = directory or access_dir()
    data = data_file(directory)
    newest = max((p.stat().st_mtime for p in inputs() if p.exists()), default=0)
    if not data.exists() or data.stat().st_mtime < newest or not (directory / "trino-groups.txt").exists():
        build(directory)
    return directory
