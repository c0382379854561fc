"""The repository's domains and their contracts: the only module that knows the folder layout.

    workspace.yaml                       one code location per domain (location name = domain)
    domains/<domain>/domain.yaml         name, description, owner, type
    domains/<domain>/products/<p>.yaml   one ODCS contract per data product
    domains/<domain>/expectations/<p>.json   the product's generated GX suite

A contract may reference another product (``expect_column_values_to_be_in_other_product``):
loading it here checks that the referenced contract exists, declares the key, and is public
when it belongs to another domain. :func:`mesh_assets.contract.parser.parse_contract` reads one
file on its own; everything that loads contracts from the repository goes through this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from mesh_assets.contract.errors import ContractError
from mesh_assets.contract.expectations import kind_of
from mesh_assets.contract.model import DataProduct
from mesh_assets.contract.parser import parse_contract
from mesh_assets.settings import DBT_PROJECT_DIR, DOMAINS_DIR, PROJECT_DIR

DOMAIN_TYPES = ("source-aligned", "consumer-aligned", "aggregate")
DOMAIN_FILE = "domain.yaml"
PRODUCTS = "products"
EXPECTATIONS = "expectations"
WORKSPACE_FILE = PROJECT_DIR / "workspace.yaml"


class WorkspaceError(ValueError):
    """A domain named by a command is not part of the workspace."""


@dataclass(frozen=True)
class Domain:
    name: str
    path: Path
    description: str
    owner: str
    type: str
    products: tuple[DataProduct, ...]


# --- paths ---------------------------------------------------------------------------------------


def domains_root(project_dir: Path = PROJECT_DIR) -> Path:
    """``<project_dir>/domains``: the folder of every domain of a repository (this one by default)."""
    return project_dir / DOMAINS_DIR.relative_to(PROJECT_DIR)


def workspace_file(project_dir: Path = PROJECT_DIR) -> Path:
    """``<project_dir>/workspace.yaml``: one code location per domain."""
    return project_dir / WORKSPACE_FILE.relative_to(PROJECT_DIR)


def dbt_models_path(domain: str, project_dir: Path = PROJECT_DIR) -> Path:
    """``<project_dir>/dbt_project/models/<domain>/``: the folder of the domain's dbt models."""
    return project_dir / DBT_PROJECT_DIR.relative_to(PROJECT_DIR) / "models" / domain


def domain_path(domain: str, root: Path = DOMAINS_DIR) -> Path:
    return root / domain


def domain_file(domain_dir: Path) -> Path:
    return domain_dir / DOMAIN_FILE


def contract_path(domain: str, product: str, root: Path = DOMAINS_DIR) -> Path:
    """``domains/<domain>/products/<product>.yaml`` (it may not exist)."""
    return root / domain / PRODUCTS / f"{product}.yaml"


def contract_files(domain_dir: Path) -> list[Path]:
    """The contract files of one domain folder, sorted by product name."""
    return sorted((domain_dir / PRODUCTS).glob("*.yaml"))


def all_contract_files(root: Path = DOMAINS_DIR) -> list[Path]:
    """Every contract file of every domain folder under ``root``."""
    return sorted(root.glob(f"*/{PRODUCTS}/*.yaml"))


def domain_folders(root: Path = DOMAINS_DIR) -> list[Path]:
    """Folders under ``root`` that are domains (they hold a domain.yaml); none if it is missing."""
    return sorted(p.parent for p in root.glob(f"*/{DOMAIN_FILE}"))


def folders_with_products(root: Path = DOMAINS_DIR) -> list[Path]:
    """Folders under ``root`` that hold a products folder (the dbt sources come from these)."""
    return sorted(p.parent for p in root.glob(f"*/{PRODUCTS}") if p.is_dir())


def expectations_path(product: DataProduct) -> Path:
    """Where the product's GX suite is written, beside its contract."""
    return product.path.parent.parent / EXPECTATIONS / f"{product.name}.json"


def _root_of(product: DataProduct) -> Path:
    """The domains folder a contract lives in (a test's copy of the repository included)."""
    return product.path.parent.parent.parent


# --- loading -------------------------------------------------------------------------------------


def load_contract(path: Path | str, *, domain: str | None = None) -> DataProduct:
    """The contract at ``path``, with its references to other products checked."""
    product = parse_contract(path, domain=domain)
    check_references(product)
    return product


def load_domain_contracts(domain_dir: Path | str) -> list[DataProduct]:
    """Every contract in ``<domain>/products/*.yaml``, sorted by product name."""
    domain_dir = Path(domain_dir)
    return [load_contract(f, domain=domain_dir.name) for f in contract_files(domain_dir)]


def load_product(identifier: str, root: Path = DOMAINS_DIR) -> DataProduct:
    """The contract of ``domain.product``; ValueError naming the file when it has none."""
    domain, _, name = identifier.partition(".")
    path = contract_path(domain, name, root)
    if not name or not path.exists():
        raise ValueError(f"no data product {identifier!r}: expected a contract at {path}")
    return load_contract(path, domain=domain)


def referenced_contract(product: DataProduct, ref: str) -> DataProduct:
    """The contract of ``ref`` (``domain.product``), found beside ``product``'s domain."""
    domain, name = ref.split(".")
    return load_contract(contract_path(domain, name, _root_of(product)))


def check_references(product: DataProduct) -> None:
    """Every product a rule references has a contract declaring the key, readable from here."""
    for rule in product.rules:
        if kind_of(rule.expectation) != "ref":
            continue
        where = f"quality rule '{rule.name}' ({rule.expectation})"
        target, key, column = str(rule.kwargs["product"]), rule.kwargs["key"], rule.column
        domain, name = target.split(".")
        path = contract_path(domain, name, _root_of(product))
        if not path.exists():
            raise ContractError(
                product.path,
                f"{where}: references product {target}, which has no "
                f"contract ({domain}/{PRODUCTS}/{name}.yaml)",
                product=product.name,
                column=column,
            )
        raw = yaml.safe_load(path.read_text()) or {}
        tables = raw.get("schema") or [{}]
        names = {p.get("name") for p in (tables[0] or {}).get("properties") or []}
        if key not in names:
            raise ContractError(
                product.path,
                f"{where}: references {target}.{key}, a column {target} does not declare",
                product=product.name,
                column=column,
            )
        custom = {c.get("property"): c.get("value") for c in raw.get("customProperties") or []}
        if domain != product.domain and custom.get("visibility") == "internal":
            raise ContractError(
                product.path,
                f"{where}: references {target}, an internal product of domain {domain}",
                product=product.name,
                column=column,
                hint="reference a public product",
            )


def load_domain(path: Path | str) -> Domain:
    """The domain folder at ``path`` (or the folder of a file inside it, a module's ``__file__``)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    meta_file = domain_file(path)
    if not meta_file.exists():
        raise ContractError(
            meta_file, "missing: every domain needs a domain.yaml (name, description, owner, type)"
        )
    meta = yaml.safe_load(meta_file.read_text()) or {}
    for key in ("name", "owner", "type"):
        if not meta.get(key):
            raise ContractError(meta_file, f"missing required field '{key}'")
    if meta["name"] != path.name:
        raise ContractError(meta_file, f"name '{meta['name']}' must equal the folder name '{path.name}'")
    if meta["type"] not in DOMAIN_TYPES:
        raise ContractError(meta_file, f"type '{meta['type']}' is not one of {', '.join(DOMAIN_TYPES)}")
    return Domain(
        name=meta["name"],
        path=path,
        description=meta.get("description", "").strip(),
        owner=meta["owner"],
        type=meta["type"],
        products=tuple(load_domain_contracts(path)),
    )


# --- the workspace -------------------------------------------------------------------------------


def workspace_domains(workspace_file: Path = WORKSPACE_FILE) -> list[str]:
    """Domains in workspace.yaml order (the location name is the domain)."""
    workspace = yaml.safe_load(workspace_file.read_text())
    return [entry["python_module"]["location_name"] for entry in workspace["load_from"]]


def select_domains(names: list[str]) -> list[str]:
    """``names`` (all domains when empty), each checked against workspace.yaml."""
    known = workspace_domains()
    for name in names:
        if name not in known:
            raise WorkspaceError(f"unknown domain '{name}'; workspace.yaml lists {', '.join(known)}")
    return names or known


def all_products() -> list[DataProduct]:
    """Every product of every domain of workspace.yaml."""
    return [p for domain in workspace_domains() for p in load_domain_contracts(domain_path(domain))]
