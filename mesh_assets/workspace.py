"""TODO docstring"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.parser import load_domain_contracts
from mesh_assets.settings import (
    DOMAINS_DIR,
    PROJECT_DIR,
)

DOMAIN_TYPES = ("source-aligned", "consumer-aligned", "aggregate")


@dataclass(frozen=True)
class Domain:
    name: str
    path: Path
    description: str
    owner: str
    type: str
    products: tuple[DataProduct, ...]


def load_domain(path: Path | str) -> Domain:
    path = Path(path)
    if path.is_file():  # a module's __file__
        path = path.parent
    meta_file = path / "domain.yaml"
    if not meta_file.exists():
        raise ContractError(meta_file, "missing: every domain needs a domain.yaml "
                            "(name, description, owner, type)")
    meta = yaml.safe_load(meta_file.read_text()) or {}
    for key in ("name", "owner", "type"):
        if not meta.get(key):
            raise ContractError(meta_file, f"missing required field '{key}'")
    if meta["name"] != path.name:
        raise ContractError(meta_file, f"name '{meta['name']}' must equal the folder name "
                            f"'{path.name}'")
    if meta["type"] not in DOMAIN_TYPES:
        raise ContractError(meta_file, f"type '{meta['type']}' is not one of "
                            f"{', '.join(DOMAIN_TYPES)}")
    return Domain(name=meta["name"], path=path, description=meta.get("description", "").strip(),
                  owner=meta["owner"], type=meta["type"],
                  products=tuple(load_domain_contracts(path)))


def workspace_domains() -> list[str]:
    """Domains in workspace.yaml order (the location name is the domain)."""
    workspace = yaml.safe_load((PROJECT_DIR / "workspace.yaml").read_text())
    return [entry["python_module"]["location_name"] for entry in workspace["load_from"]]


def select_domains(names: list[str]) -> list[str]:
    known = workspace_domains()
    for name in names:
        if name not in known:
            raise SystemExit(f"mesh: unknown domain '{name}'; workspace.yaml lists "
                             f"{', '.join(known)}")
    return names or known


def all_products():

    for domain in workspace_domains():
        yield from load_domain_contracts(DOMAINS_DIR / domain)
