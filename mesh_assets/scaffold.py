"""Self-service scaffolding: a new domain (a complete code location) or a new data product.

``mesh new domain NAME`` writes ``domains/NAME/`` (package, ``domain.yaml``, ``definitions.py``,
a sample contract with sample data so the domain materializes at once), the dbt folder
``dbt_project/models/NAME/``, a test, and registers the code location in ``workspace.yaml``.
``mesh new product DOMAIN NAME [--dbt]`` adds a contract (and, with ``--dbt``, its model).

Everything is checked before anything is written (names, owner, type, files that exist already:
never overwritten), and then written all or nothing: each file goes to a temporary name and is
renamed into place, and a failure part way removes what was written and restores what was
changed, so no half scaffold is ever left behind.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from mesh_assets.deploy import DNS_LABEL, render_domains_file
from mesh_assets.workspace import (
    DOMAIN_TYPES,
    contract_path,
    dbt_models_path,
    domain_file,
    domain_path,
    domains_root,
    workspace_file,
)

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class ScaffoldError(ValueError):
    pass


def _check_name(kind: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ScaffoldError(f"{kind} name {name!r} must be lower_snake_case (letters, digits, _)")
    if kind == "domain" and (not DNS_LABEL.fullmatch(name.replace("_", "-")) or len(name) > 40):
        raise ScaffoldError(
            f"domain name {name!r} must end with a letter or digit and have at most 40 characters "
            "(it names Kubernetes objects)"
        )


def _check_owner(owner: str) -> None:
    if not _OWNER.fullmatch(owner):
        raise ScaffoldError(f"owner {owner!r} must be a team name (letters, digits, '.', '_', '-')")


def _write_all(new: dict[Path, str], changed: dict[Path, str], then=None) -> list[Path]:
    """Create the files of ``new`` (none may exist), replace those of ``changed``, then those
    ``then()`` returns once the others are in place: all or nothing. Returns the paths written."""
    for path in new:
        if path.exists():
            raise ScaffoldError(f"{path} already exists: not overwriting it")
    made_dirs: list[Path] = []
    kept: dict[Path, str | None] = {}

    def write(path: Path, text: str) -> None:
        kept[path] = path.read_text() if path.exists() else None
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir()
            made_dirs.append(folder)
        tmp = path.with_name(f".{path.name}.mesh-new")
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    try:
        for path, text in [*new.items(), *changed.items()]:
            write(path, text)
        for path, text in (then() if then else {}).items():
            write(path, text)
    except BaseException:
        for path, before in reversed(kept.items()):
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(before)
        for folder in reversed(made_dirs):
            folder.rmdir()
        raise
    return list(kept)


def contract_text(domain: str, product: str, owner: str, *, dbt: bool) -> str:
    source = (
        "  - property: transform\n    value: dbt\n"
        if dbt
        else f"  - property: source\n    value: {{format: csv, file: {product}.csv, "
        f'demoData: "domains.{domain}:sample_data/{product}.csv"}}\n'
    )
    return f"""apiVersion: v3.1.0
kind: DataContract
id: urn:datamesh:{domain}:{product}
version: 1.0.0
status: draft
name: {product.replace("_", " ").title()}
domain: {domain}
dataProduct: {product}
description:
  purpose: Say what this product is for and who should use it (edit me).
team:
  name: {owner}
schema:
  - name: {product}
    physicalType: table
    description: One row per {product} record.
    properties:
      - name: id
        logicalType: string
        physicalType: string
        required: true
        primaryKey: true
        primaryKeyPosition: 1
        classification: internal
        description: Identifier of the record.
      - name: value
        logicalType: number
        physicalType: double
        classification: internal
        description: A measured value.
        quality:
          - type: custom
            engine: great-expectations
            implementation:
              type: expect_column_values_to_be_between
              kwargs: {{min_value: 0}}
    quality:
      - type: library
        metric: rowCount
        mustBeGreaterThan: 0
customProperties:
{source}  - property: visibility
    value: public
"""


def _product_files(project_dir: Path, domain: str, product: str, owner: str, *, dbt: bool) -> dict[Path, str]:
    root = domains_root(project_dir)
    files = {contract_path(domain, product, root): contract_text(domain, product, owner, dbt=dbt)}
    if dbt:
        files[dbt_models_path(domain, project_dir) / f"{product}.sql"] = (
            f"-- {product}: replace with the product's logic. Read other products with\n"
            f"-- {{{{ source('<domain>', '<product>') }}}}.\n"
            "select 'a' as id, cast(1.0 as double) as value\n"
        )
    else:
        files[domain_path(domain, root) / "sample_data" / f"{product}.csv"] = (
            "id,value\na,1.5\nb,2.0\nc,0.25\n"
        )
    return files


def new_product(project_dir: Path, domain: str, product: str, *, dbt: bool = False) -> list[Path]:
    _check_name("product", product)
    _check_name("domain", domain)
    declaration = domain_file(domain_path(domain, domains_root(project_dir)))
    if not declaration.exists():
        raise ScaffoldError(f"no domain {domain} (create it with `mesh new domain {domain}`)")
    owner = str((yaml.safe_load(declaration.read_text()) or {}).get("owner", ""))
    _check_owner(owner)
    return _write_all(_product_files(project_dir, domain, product, owner, dbt=dbt), {})


def new_domain(
    project_dir: Path, name: str, *, owner: str | None = None, domain_type: str = "source-aligned"
) -> list[Path]:
    _check_name("domain", name)
    owner = owner or f"{name.replace('_', '-')}-team"
    _check_owner(owner)
    if domain_type not in DOMAIN_TYPES:
        raise ScaffoldError(f"domain type {domain_type!r} is unknown; use one of {', '.join(DOMAIN_TYPES)}")
    domain_dir = domain_path(name, domains_root(project_dir))
    if domain_dir.exists():
        raise ScaffoldError(f"{domain_dir} already exists")
    new = {
        domain_dir / "__init__.py": "",
        domain_file(domain_dir): f"name: {name}\ndescription: >\n  What the {name} domain owns (edit me).\n"
        f"owner: {owner}\ntype: {domain_type}\n",
        domain_dir
        / "definitions.py": f'"""Code location of the {name} domain."""\n\nfrom mesh_assets import '
        "build_domain\n\ndefs = build_domain(__file__)\n",
        dbt_models_path(name, project_dir) / ".gitkeep": "",
        project_dir
        / "tests"
        / "domains"
        / f"test_{name}.py": f'''"""The {name} domain loads and its contracts hold."""

from mesh_assets.definitions import build_domain, load_domain
from mesh_assets.settings import DOMAINS_DIR


def test_{name}_definitions_load(mesh_home):
    domain = load_domain(DOMAINS_DIR / "{name}")
    defs = build_domain(DOMAINS_DIR / "{name}")
    keys = {{tuple(k.path) for k in defs.resolve_asset_graph().materializable_asset_keys}}
    assert {{("{name}", p.name) for p in domain.products}} <= keys
''',
        **_product_files(project_dir, name, "example", owner, dbt=False),
    }
    workspace = workspace_file(project_dir)
    text = workspace.read_text()
    if not text.endswith("\n"):
        text += "\n"
    changed = {
        workspace: text + f"  - python_module:\n      module_name: domains.{name}.definitions\n"
        f"      location_name: {name}\n"
    }
    chart_domains = project_dir / "helm" / "datamesh" / "domains.yaml"

    def chart() -> dict[Path, str]:
        """The Helm chart serves one code location per domain: its list, with the new domain."""
        if not chart_domains.exists():
            return {}
        return {chart_domains: render_domains_file(domains_root(project_dir))}

    return _write_all(new, changed, chart)
